"""The committed sample images: they load in both forms, match digests.json, and say what the README says."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from slim.model import EntryKind
from slim.pipeline import load_image
from tests.conftest import require

SAMPLES = Path(__file__).resolve().parents[2] / "sample_images"
DIGESTS = json.loads((SAMPLES / "digests.json").read_text())
NAMES = sorted(DIGESTS["images"])


def refs(name: str) -> list[str]:
    return [f"docker-archive:{SAMPLES / name / (name + '.docker.tar')}", f"oci:{SAMPLES / name / (name + '.oci')}"]


def elf(fs, path: str) -> ELFFile:
    return ELFFile(io.BytesIO(fs.read(path)))


def test_every_recipe_has_a_committed_image() -> None:
    sys.path.insert(0, str(SAMPLES))
    try:
        from importlib import import_module

        import recipes

        names = {import_module(f"recipes.{m}").NAME for m in recipes.MODULES}
    finally:
        sys.path.remove(str(SAMPLES))
    assert names == set(NAMES) == {"hello-glibc", "busybox-static", "layers-whiteouts", "shell-entrypoint", "hello-musl"}


@pytest.mark.parametrize("name", NAMES)
def test_both_forms_load_with_the_recorded_digests(name: str) -> None:
    want = DIGESTS["images"][name]
    configs = []
    for ref in refs(name):
        with load_image(ref) as img:
            assert img.image.digest == want["config_digest"], ref
            assert [r.diff_id for r in img.layers] == [layer["diff_id"] for layer in want["layers"]], ref
            assert img.issues == [], ref
            configs.append(img.image.config)
            files = sorted((e.path, e.kind, e.size, e.linkname) for e in img.rootfs.walk())
            configs.append(files)
    assert configs[0] == configs[2] and configs[1] == configs[3]
    tar = SAMPLES / name / f"{name}.docker.tar"
    assert "sha256:" + hashlib.sha256(tar.read_bytes()).hexdigest() == want["docker_tar_sha256"]
    with tarfile.open(tar) as tf:
        members = set(tf.getnames())
    if want["docker_form"] == "legacy":
        assert "repositories" in members and any(m.endswith("/layer.tar") for m in members)
    else:
        assert {"oci-layout", "index.json", "manifest.json"} <= members


def test_forms_and_compressions_are_mixed() -> None:
    forms = {d["docker_form"] for d in DIGESTS["images"].values()}
    media = {layer["media_type"] for d in DIGESTS["images"].values() for layer in d["layers"]}
    assert forms == {"oci", "legacy"}
    assert any(m.endswith("+gzip") for m in media)
    assert any(m.endswith("+zstd") for m in media) and any(m.endswith(".tar") for m in media)


def test_total_size_under_20_mb() -> None:
    total = sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert total < 20 << 20


def readme_squash() -> list[tuple[str, str, int]]:
    text = (SAMPLES / "README.md").read_text()
    match = re.search(r"<!-- squash:layers-whiteouts -->\s*```text\n(.*?)```", text, re.S)
    assert match, "README.md lost its layers-whiteouts squash block"
    rows = []
    for line in match.group(1).splitlines():
        parts = line.split()
        rows.append((parts[0], parts[1], int(parts[2]) if len(parts) > 2 else 0))
    return rows


@pytest.mark.parametrize("ref", refs("layers-whiteouts"))
def test_layers_whiteouts_squash_matches_readme(ref: str) -> None:
    with load_image(ref) as img:
        got = [(e.path, e.kind.value, e.size) for e in img.rootfs.walk()]
        assert got == readme_squash()
        # whiteouts: layer 1 hid /etc/app/{x,y} (opaque) and /data/b; layer 2 removed /data (a rewritten, c)
        assert sorted(e.path for e in img.deleted[1]) == ["/data/b", "/etc/app/x", "/etc/app/y"]
        assert sorted(e.path for e in img.deleted[2]) == ["/data", "/data/a", "/data/c"]
        assert [r.compression for r in img.layers] in (["none"] * 3, ["gzip", "zstd", "none"])


@pytest.mark.parametrize("ref", refs("hello-glibc"))
def test_hello_glibc_layout(ref: str) -> None:
    with load_image(ref) as img:
        fs = img.rootfs
        cfg = img.image.config
        assert cfg.entrypoint == ("/app/hello",) and cfg.workdir == "/app"
        assert cfg.env_dict["LANG"] == "C.UTF-8" and "/usr/bin" in cfg.path_dirs
        hello = elf(fs, "/app/hello")
        interp = next(s for s in hello.iter_segments() if s["p_type"] == "PT_INTERP").get_interp_name()
        needed = sorted(t.needed for t in hello.get_section_by_name(".dynamic").iter_tags() if t.entry.d_tag == "DT_NEEDED")
        assert interp == "/lib64/ld-linux-x86-64.so.2" and needed == ["libc.so.6", "libz.so.1"]
        # merged /usr: every path resolves through the top-level symlinks
        assert fs.readlink("/lib") == "usr/lib" and fs.readlink("/lib64") == "usr/lib64"
        assert fs.resolve(interp).path == "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
        assert fs.resolve("/lib/x86_64-linux-gnu/libz.so.1").path == "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"
        assert fs.is_file("/usr/lib/x86_64-linux-gnu/libc.so.6")
        # a real glibc ld.so.cache (new format) naming our libraries
        cache = fs.read("/etc/ld.so.cache")
        assert cache.startswith(b"glibc-ld.so.cache1.1")
        for soname in (b"libc.so.6", b"libz.so.1", b"ld-linux-x86-64.so.2"):
            assert soname in cache
        assert b"/lib/x86_64-linux-gnu/libz.so.1" in cache
        assert "/usr/lib/x86_64-linux-gnu" in fs.read_text("/etc/ld.so.conf.d/x86_64-linux-gnu.conf")
        # dpkg database: consistent — every listed path exists (through the /lib symlink)
        status = fs.read_text("/var/lib/dpkg/status")
        assert re.findall(r"^Package: (\S+)", status, re.M) == ["docs-only", "libc6", "zlib1g", "zlib1g-dev"]
        for lst in ("docs-only", "libc6:amd64", "zlib1g:amd64", "zlib1g-dev"):
            for path in fs.read_text(f"/var/lib/dpkg/info/{lst}.list").split():
                assert fs.exists(path), f"{lst}.list: {path}"
        # the deliberate waste is there
        for waste in (
            "/usr/share/doc/docs-only/README", "/usr/share/man/man1/docs-only.1.gz", "/tmp/build.log",
            "/var/cache/apt/pkgcache.bin", "/app/__pycache__/x.cpython-311.pyc", "/usr/include/zlib.h",
            "/usr/lib/x86_64-linux-gnu/libz.a", "/usr/share/locale/de/LC_MESSAGES/libc.mo",
            "/usr/share/locale/fr/LC_MESSAGES/libc.mo",
        ):
            assert fs.is_file(waste), waste
        assert fs.glob("/var/lib/apt/lists/*")
        assert not fs.exists("/app/x.py")  # the .pyc is orphaned on purpose
        assert [len(layer.tree.entries) > 0 for layer in img.layers] == [True, True]


@pytest.mark.parametrize("ref", refs("hello-musl"))
def test_hello_musl_layout(ref: str) -> None:
    with load_image(ref) as img:
        fs = img.rootfs
        hello = elf(fs, "/app/hello")
        interp = next(s for s in hello.iter_segments() if s["p_type"] == "PT_INTERP").get_interp_name()
        assert interp == "/lib/ld-musl-x86_64.so.1"
        assert fs.get(interp).kind is EntryKind.FILE
        assert fs.resolve("/lib/libc.musl-x86_64.so.1").path == interp
        assert fs.read_text("/etc/ld-musl-x86_64.path").split() == ["/lib:/usr/lib"]
        assert img.image.config.entrypoint == ("/app/hello",)


@pytest.mark.parametrize("ref", refs("shell-entrypoint") + refs("busybox-static"))
def test_busybox_images(ref: str) -> None:
    with load_image(ref) as img:
        fs = img.rootfs
        assert elf(fs, "/bin/busybox").get_section_by_name(".interp") is None  # static
        for applet in ("sh", "ls", "cat", "echo"):
            assert fs.resolve(f"/bin/{applet}").path == "/bin/busybox"
        if "shell-entrypoint" in ref:
            assert img.image.config.entrypoint == ("/app/start.sh",)
            start = fs.read_text("/app/start.sh")
            assert start.startswith("#!/bin/sh\n") and fs.get("/app/start.sh").mode == 0o755
            assert ". /app/lib.sh" in start and "cat /app/config.txt" in start and "/usr/bin/env ls /app" in start
            assert fs.resolve("/usr/bin/env").path == "/bin/busybox"
            assert fs.is_file("/app/lib.sh") and fs.is_file("/app/config.txt")
        else:
            assert img.image.config.cmd == ("/bin/sh", "-c", "echo hello from busybox")


def test_rebuild_reproduces_committed_digests(tmp_path) -> None:
    for tool in ("gcc", "musl-gcc", "apt-get", "dpkg-deb", "ldconfig"):
        require(shutil.which(tool) is not None, f"{tool} not installed")
    proc = subprocess.run(
        [sys.executable, str(SAMPLES / "build.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    require(proc.returncode == 0, f"build.py failed (apt download unavailable?): {proc.stderr.strip()[-300:]}")
    rebuilt = json.loads((tmp_path / "digests.json").read_text())
    if rebuilt["inputs"] != DIGESTS["inputs"]:
        changed = sorted(k for k in set(rebuilt["inputs"]) | set(DIGESTS["inputs"]) if rebuilt["inputs"].get(k) != DIGESTS["inputs"].get(k))
        pytest.skip(f"host inputs differ from the committed build ({', '.join(changed)}); rebuild to refresh")
    assert rebuilt["images"] == DIGESTS["images"]
    for name in NAMES:
        a = (tmp_path / name / f"{name}.docker.tar").read_bytes()
        assert a == (SAMPLES / name / f"{name}.docker.tar").read_bytes(), name
        assert sorted(os.listdir(tmp_path / name / f"{name}.oci" / "blobs" / "sha256")) == sorted(
            os.listdir(SAMPLES / name / f"{name}.oci" / "blobs" / "sha256")
        )
