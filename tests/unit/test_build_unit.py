"""`slim build` pieces that need no runner: staging, publishing, repair candidates, comparing,
and the keep-set precision fixes found while building the bench images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slim.build import _fix_candidates, _publish, _stage, _work_parent
from slim.emitters.image import minimal_entries
from slim.errors import RuleError, UsageError
from slim.pipeline import load_image
from slim.refs import OutputRef, parse_output
from slim.rules import parse_rule_pack
from slim.tracers.base import RunResult
from slim.tracers.probes import Observation, _wire, parse_probe
from slim.tracers.trace import Trace
from slim.verify import compare_observation


def _rootfs(tmp_path: Path) -> str:
    root = tmp_path / "root"
    (root / "app").mkdir(parents=True)
    (root / "lib").mkdir()
    (root / "app" / "hello").write_bytes(b"\x7fELF-not-really")
    (root / "lib" / "libz.so.1.2.13").write_bytes(b"z" * 100)
    os.symlink("libz.so.1.2.13", root / "lib" / "libz.so.1")
    (root / "lib" / "libunused.so").write_bytes(b"u")
    return str(root)


def _trace(found: dict[str, bool]) -> Trace:
    """A trace where each path was opened (True) or looked up and missing (False)."""
    t = Trace()
    for path, ok in found.items():
        acc = t.access(path)
        if ok:
            acc.opened = True
        else:
            acc.errors.add("ENOENT")
    return t


def _stage_dest(dest: str, work: str) -> str:
    return str(_stage(parse_output(dest), work))


def test_stage_dest_keeps_the_transport(tmp_path: Path) -> None:
    work = str(tmp_path)
    assert _stage_dest("oci:/out/img", work) == f"oci:{work}/image.oci"
    assert _stage_dest("oci:/out/img:v2", work) == f"oci:{work}/image.oci:v2"  # the tag survives
    assert _stage_dest("oci-archive:/out/i.tar", work) == f"oci-archive:{work}/image.tar"
    assert _stage_dest("docker-archive:/out/i.tar", work) == f"docker-archive:{work}/image.tar"
    assert _stage_dest("docker://localhost:5000/x:1", work).startswith("oci:")
    with pytest.raises(UsageError, match="rootfs:/x: must be"):
        _stage_dest("rootfs:/x", work)


def test_work_parent_is_beside_the_destination(tmp_path: Path) -> None:
    dest = tmp_path / "deep" / "out"
    assert _work_parent(parse_output(f"oci:{dest}")) == str(tmp_path / "deep")
    assert _work_parent(parse_output("docker://localhost:5000/x")) is None


def test_publish_replaces_a_directory_whole(tmp_path: Path) -> None:
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "index.json").write_text("new")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "stale-blob").write_text("old")
    _publish(OutputRef("oci", str(staged)), OutputRef("oci", str(dest)))
    assert sorted(os.listdir(dest)) == ["index.json"]
    assert (dest / "index.json").read_text() == "new"
    assert not staged.exists()
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no .slim-old left behind


def test_publish_replaces_an_archive(tmp_path: Path) -> None:
    staged = tmp_path / "image.tar"
    staged.write_bytes(b"new")
    dest = tmp_path / "sub" / "final.tar"
    dest.parent.mkdir()  # check_destination refuses a missing parent before any work
    _publish(OutputRef("docker-archive", str(staged)), OutputRef("docker-archive", str(dest)))
    assert dest.read_bytes() == b"new"
    staged.write_bytes(b"newer")
    _publish(OutputRef("docker-archive", str(staged)), OutputRef("docker-archive", str(dest)))
    assert dest.read_bytes() == b"newer"
    assert sorted(os.listdir(dest.parent)) == ["final.tar"]


def test_fix_candidates_are_what_the_original_found_and_the_minimal_missed(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    original = RunResult(_trace({"/app/hello": True, "/lib/libz.so.1": True,
                                 "/lib/libz.so.1.2.13": True, "/etc/missing.conf": False,
                                 "/proc/self/maps": True, "/": True}), [], 0)
    minimal = RunResult(_trace({"/app/hello": True, "/lib/libz.so.1": False,
                                "/etc/missing.conf": False}), [], 127)
    with load_image(f"rootfs:{root}") as loaded:
        keep = {"/app/hello", "/app"}
        got = _fix_candidates(original, minimal, loaded, keep)
    # libz: found by the original, missing in the minimal run; its target: used by the original
    # only. Never a path missing in both runs, a kernel file, "/" or a kept path.
    assert got == ["/lib/libz.so.1", "/lib/libz.so.1.2.13"]


def test_fix_candidates_ignore_paths_absent_from_the_image(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    original = RunResult(_trace({"/tmp/socket": True}), [], 0)
    minimal = RunResult(_trace({"/tmp/socket": False}), [], 1)
    with load_image(f"rootfs:{root}") as loaded:
        assert _fix_candidates(original, minimal, loaded, set()) == []


def test_minimal_entries_never_write_the_root(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    with load_image(f"rootfs:{root}") as loaded:
        paths = [e.path for e, _ in minimal_entries(loaded, {"/", "/lib/libz.so.1"})]
    assert paths == ["/lib", "/lib/libz.so.1"]


def test_compare_ignores_volatile_numbers_not_text() -> None:
    a = Observation("tcp:1", body=b"STAT pid 7\r\nSTAT uptime 3\r\nEND\r\n")
    b = Observation("tcp:1", body=b"STAT pid 1234\r\nSTAT uptime 12\r\nEND\r\n")
    assert compare_observation(a, b).same
    c = Observation("tcp:1", body=b"ERROR\r\n")
    assert compare_observation(a, c).differences == ("reply differs (32 bytes became 7): now 'ERROR'",)
    d = Observation("cmd:x", exit_code=0)
    e = Observation("cmd:x", exit_code=127)
    assert compare_observation(d, e).differences == ("exit code 0 became 127",)


def test_tcp_probe_bytes_are_the_escaped_bytes() -> None:
    probe = parse_probe(r"tcp:15432:\x00\x00\x00\x08\x04\xd2\x16\x2f:N")
    assert _wire(probe.send) == bytes.fromhex("0000000804d2162f")
    assert parse_probe(probe.spec) == probe  # the spec re-escapes unprintable bytes
    assert _wire(parse_probe("tcp:1:é").send) == "é".encode()


def test_fix_candidates_see_kept_files_through_links(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    os.symlink("lib", Path(root) / "lib64")
    original = RunResult(_trace({"/lib64/libz.so.1": True}), [], 0)
    minimal = RunResult(_trace({}), [], 1)
    with load_image(f"rootfs:{root}") as loaded:
        # the file and every link on the way are kept: not a fix, whatever the spelling
        keep = {"/lib64", "/lib", "/lib/libz.so.1", "/lib/libz.so.1.2.13"}
        assert _fix_candidates(original, minimal, loaded, keep) == []
        # the link the app went through is not kept: that is the fix
        assert _fix_candidates(original, minimal, loaded, keep - {"/lib64"}) == ["/lib64/libz.so.1"]


def test_when_imports_needs_kept() -> None:
    with pytest.raises(RuleError, match=r"'when\.imports' needs 'when\.kept'"):
        parse_rule_pack('[rule.x]\nwhen.imports = ["iconv_open"]\nwhen.env = "LANG"\nkeep = ["/a"]\n',
                        "t.toml")
    with pytest.raises(RuleError, match="not a symbol name"):
        parse_rule_pack('[rule.x]\nwhen.kept = ["**"]\nwhen.imports = ["a b"]\nkeep = ["/a"]\n', "t.toml")


STATUS = """\
Package: lighttpd
Status: install ok installed
Architecture: amd64
Version: 1.4.69-1
Conffiles:
 /etc/lighttpd/lighttpd.conf 0123
 /etc/init.d/lighttpd 4567
 /etc/cron.daily/lighttpd 89ab
 /etc/logrotate.d/lighttpd cdef

"""


def _put(root: Path, path: str, data: str, mode: int = 0o644) -> None:
    f = root / path.lstrip("/")
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(data)
    f.chmod(mode)


def test_service_manager_conffiles_are_not_the_programs(tmp_path: Path) -> None:
    from slim.analyzers.packages import package_edges, read_packages

    root = tmp_path / "root"
    _put(root, "/var/lib/dpkg/status", STATUS)
    _put(root, "/var/lib/dpkg/info/lighttpd.list", "/usr/sbin/lighttpd\n/etc/lighttpd/lighttpd.conf\n"
         "/etc/init.d/lighttpd\n/etc/cron.daily/lighttpd\n/etc/logrotate.d/lighttpd\n")
    _put(root, "/usr/sbin/lighttpd", "\x7fELF" + "x" * 100, 0o755)
    for conf in ("/etc/lighttpd/lighttpd.conf", "/etc/init.d/lighttpd", "/etc/cron.daily/lighttpd",
                 "/etc/logrotate.d/lighttpd"):
        _put(root, conf, "#!/bin/sh\nexec /usr/sbin/start-stop-daemon\n", 0o755)
    with load_image(f"rootfs:{root}") as loaded:
        edges = package_edges(read_packages(loaded.rootfs), "/usr/sbin/lighttpd")
    # the daemon reads its configuration; init, cron and logrotate read the rest
    assert [e.dst for e in edges] == ["/etc/lighttpd/lighttpd.conf"]


def test_app_keeps_its_empty_directories_and_skips_account_files(tmp_path: Path) -> None:
    from slim.pipeline import AnalyzeOptions, analyze

    root = tmp_path / "root"
    _put(root, "/var/lib/pg/data/PG_VERSION", "15\n")
    (root / "var/lib/pg/data/pg_notify").mkdir()
    (root / "var/lib/pg/data/pg_wal/archive_status").mkdir(parents=True)
    _put(root, "/bin/server", "#!/bin/sh\nexec true\n", 0o755)
    _put(root, "/bin/sh", "\x7fELF" + "s" * 100, 0o755)
    _put(root, "/bin/bash", "\x7fELF" + "b" * 100, 0o755)
    _put(root, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n")
    cfg = {"config": {"Entrypoint": ["/bin/server"], "WorkingDir": "/var/lib/pg"}}
    (root / ".slim-config.json").write_text(__import__("json").dumps(cfg))
    with load_image(f"rootfs:{root}") as loaded:
        closure = analyze(loaded, AnalyzeOptions(keep=("/etc/passwd",))).closure
    assert closure is not None
    for d in ("/var/lib/pg/data/pg_notify", "/var/lib/pg/data/pg_wal/archive_status"):
        assert d in closure.keep
    assert "/var/lib/pg/data/PG_VERSION" in closure.keep
    # /etc/passwd names root's login shell; nothing in the app runs it
    assert "/etc/passwd" in closure.keep and "/bin/bash" not in closure.keep


@pytest.mark.parametrize("name, ok", [
    ("app:slim", True), ("example.org/team/app:1.2", True), ("localhost:5000/app:v1", True),
    ("slim-bench/hello-glibc:minimal", True), ("app", True),
    ("hello-glibc (sample):minimal", False), ("App:1", False), ("app:", False), (":tag", False),
    ("app@sha256:" + "0" * 64, False), ("a//b:c", False), ("app:" + "t" * 129, False),
])
def test_image_names_are_docker_references(name: str, ok: bool) -> None:
    from slim.refs import image_name_problem

    assert (image_name_problem(name) == "") is ok


def test_a_name_docker_load_would_refuse_is_refused_before_any_work(tmp_path: Path) -> None:
    """`docker load` stores the image, then fails on a bad RepoTags name and leaves it unnamed:
    --tag and docker-archive:FILE:NAME are checked first, with a one-line usage error."""
    from slim.build import BuildOptions, check_destination

    out = tmp_path / "out.tar"
    for dest, tag in ((f"docker-archive:{out}", "slim-bench/hello-glibc (sample):minimal"),
                      (f"docker-archive:{out}:Bad Name", "")):
        with pytest.raises(UsageError, match="not an image name"):
            check_destination(dest, BuildOptions(dest=dest, tag=tag))
    check_destination(f"docker-archive:{out}:good/name:v1", BuildOptions(dest=str(out), tag="mine:v2"))
    assert not out.exists()


def test_keep_base_keeps_an_uncompressed_base_blob_as_it_is(tmp_path: Path) -> None:
    """A docker-archive's layers are plain tars: with --keep-base the base blob is still the
    source's own (same digest, still plain), never compressed on the way out."""
    from slim.emitters.image import build_image
    from slim.emitters.imagewriter import compress_layer, write_image
    from slim.fs.layer import decompressed
    from slim.pipeline import AnalyzeOptions, analyze

    samples = Path(__file__).resolve().parents[2] / "sample_images"
    blobs = []
    with load_image(f"oci:{samples / 'hello-glibc' / 'hello-glibc.oci'}") as src:
        for i in range(len(src.layers)):
            tar = tmp_path / f"{i}.tar"
            with src.image.open_blob(i) as blob, open(tar, "wb") as out:
                out.write(decompressed(blob)[0].read())
            blobs.append(compress_layer(str(tar), str(tmp_path / "blobs"), "none"))
        config = src.image.raw_config
    write_image(f"oci:{tmp_path / 'plain'}", blobs, config)
    with load_image(f"oci:{tmp_path / 'plain'}") as loaded:
        keep = analyze(loaded, AnalyzeOptions()).closure.keep
        built = build_image(loaded, keep, f"oci:{tmp_path / 'out'}", keep_base=1)
    assert built.layers == 2
    with load_image(f"oci:{tmp_path / 'out'}") as out_image:
        assert out_image.image.layers[0].digest == blobs[0].digest
        assert [r.compression for r in out_image.layers] == ["none", "gzip"]


def test_preserved_layers_are_laid_plain_and_published_compressed(tmp_path: Path) -> None:
    """--layers preserve: each slimmed layer is laid out once as a plain tar, and a compressed
    write of them is the same image (same ID), with every layer gzipped."""
    from slim.emitters.image import lay_image
    from slim.pipeline import AnalyzeOptions, analyze

    samples = Path(__file__).resolve().parents[2] / "sample_images"
    with load_image(f"oci:{samples / 'hello-glibc' / 'hello-glibc.oci'}") as loaded:
        keep = analyze(loaded, AnalyzeOptions()).closure.keep
        with lay_image(loaded, keep, layers="preserve") as laid:
            assert len(laid.plain) == len(loaded.layers) and not laid.kept
            assert {b.media_type.rsplit(".", 1)[-1] for b in laid.plain} == {"tar"}
            plain = laid.write(f"oci:{tmp_path / 'plain'}", "none")
            packed = laid.write(f"oci:{tmp_path / 'gz'}", "gzip")
    assert plain.digest == packed.digest and packed.layers == len(laid.plain)
    with load_image(f"oci:{tmp_path / 'gz'}") as out:
        assert {r.compression for r in out.layers} == {"gzip"}
