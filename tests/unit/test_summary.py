"""summarize(): image summary, per-layer numbers, largest paths, waste and unknowns.

`build_oci_layout` is the recipe for the small images these tests (and the emitter and CLI
tests) read: layer tars written with tarfile into an OCI image layout.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

from slim.pipeline import load_image
from slim.summary import summarize

Layer = dict[str, "bytes | str | None"]  # path → file bytes | "->target" symlink | None (directory)


def _layer_tar(members: Layer) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path in sorted(members):
            value = members[path]
            info = tarfile.TarInfo(path.lstrip("/"))
            info.mtime = 0
            if value is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tf.addfile(info)
            elif isinstance(value, str) and value.startswith("=>"):
                info.type = tarfile.LNKTYPE
                info.linkname = value[2:].lstrip("/")
                tf.addfile(info)
            elif isinstance(value, str):
                info.type = tarfile.SYMTYPE
                info.linkname = value.removeprefix("->")
                tf.addfile(info)
            else:
                info.size = len(value)
                info.mode = 0o755
                tf.addfile(info, io.BytesIO(value))
    return buf.getvalue()


def build_oci_layout(
    root: Path, layers: list[Layer], config: dict | None = None, history: list[str] | None = None
) -> str:
    """Write an OCI image layout with gzip layers to `root`; returns the `oci:` reference."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return "sha256:" + digest

    layer_descs, diff_ids = [], []
    for members in layers:
        tar = _layer_tar(members)
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        blob = gzip.compress(tar, mtime=0)
        layer_descs.append(
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(blob), "size": len(blob)}
        )
    cfg = {
        "architecture": "amd64",
        "os": "linux",
        "config": config or {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": h} for h in (history or [f"layer {i}" for i in range(len(layers))])],
    }
    cfg_bytes = json.dumps(cfg).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(cfg_bytes), "size": len(cfg_bytes)},
        "layers": layer_descs,
    }
    man_bytes = json.dumps(manifest).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [{"mediaType": manifest["mediaType"], "digest": put(man_bytes), "size": len(man_bytes)}],
    }
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(json.dumps(index))
    return f"oci:{root}"


SAMPLE_LAYERS: list[Layer] = [
    {
        "/usr": None,
        "/usr/bin": None,
        "/usr/bin/app": b"\x7fELF" + b"a" * 4000,
        "/usr/share": None,
        "/usr/share/doc": None,
        "/usr/share/doc/app": None,
        "/usr/share/doc/app/README": b"r" * 300,
        "/etc": None,
        "/etc/app.conf": b"c" * 100,
    },
    {
        "/var": None,
        "/var/lib": None,
        "/var/lib/apt": None,
        "/var/lib/apt/lists": None,
        "/var/lib/apt/lists/deb_Packages": b"p" * 2000,
        "/etc": None,
        "/etc/app.conf": b"C" * 150,  # replaces the base copy
        "/usr/bin/app2": "=>/usr/bin/app",  # hard link: its inode counts once
        "/usr/bin/sh": "->app",
    },
    {
        "/var/lib/apt/.wh.lists": b"",  # rm -rf /var/lib/apt/lists
        "/tmp": None,
        "/tmp/build.log": b"l" * 50,
    },
]
SAMPLE_CONFIG = {"Entrypoint": ["/usr/bin/app"], "Cmd": ["--serve"], "Env": ["PATH=/usr/bin", "LANG=C.UTF-8"], "User": "app"}


def sample_image(tmp_path: Path) -> str:
    return build_oci_layout(tmp_path / "img", SAMPLE_LAYERS, SAMPLE_CONFIG, ["FROM base", "RUN apt-get update", "RUN rm -rf lists"])


def test_summary_of_a_three_layer_image(tmp_path: Path) -> None:
    ref = sample_image(tmp_path)
    with load_image(ref) as loaded:
        result = summarize(loaded)
    img = result.image
    # live regular files: app 4004, README 300, app.conf 150, build.log 50; the hard link adds none
    assert img.size_bytes == 4004 + 300 + 150 + 50
    assert img.file_count == 6  # app, app2 (link), sh, README, app.conf, build.log
    assert img.entrypoint == ("/usr/bin/app",) and img.cmd == ("--serve",)
    assert img.env == {"LANG": "C.UTF-8", "PATH": "/usr/bin"}
    assert img.user == "app"
    assert [layer.created_by for layer in img.layers] == ["FROM base", "RUN apt-get update", "RUN rm -rf lists"]
    assert [layer.size_bytes for layer in img.layers] == [4404, 2150, 50]
    assert [layer.file_count for layer in img.layers] == [3, 4, 1]
    assert all(layer.digest.startswith("sha256:") and layer.blob_bytes > 0 for layer in img.layers)
    assert img.digest.startswith("sha256:")

    # largest: directories by recursive size, files by size
    assert result.largest_files[0].path == "/usr/bin/app"
    assert [f.path for f in result.largest_files][:3] == ["/usr/bin/app", "/usr/share/doc/app/README", "/etc/app.conf"]
    dirs = {d.path: d for d in result.largest_dirs}
    assert dirs["/usr"].size_bytes == 4304 and dirs["/usr"].count == 4
    assert result.largest_dirs[0].path == "/usr"
    assert "/var/lib/apt/lists" not in dirs  # deleted in layer 2

    # waste in the squashed fs: docs and the temp file; the apt lists are gone
    waste = {w.name: w for w in result.waste}
    assert set(waste) == {"docs", "temp"}
    assert waste["docs"].size_bytes == 300 and waste["temp"].examples == ("/tmp/build.log",)

    # efficiency with quirk (a): the deleted apt list is a 0-size occurrence in layer 2
    eff = result.efficiency
    assert eff is not None
    paths = {p.path: p for p in eff.inefficient}
    assert set(paths) == {"/etc/app.conf", "/var/lib/apt/lists/deb_Packages"}
    assert paths["/var/lib/apt/lists/deb_Packages"].count == 2
    assert eff.wasted_bytes == (100 + 150) + 2000
    assert eff.removable_by_squash_bytes == 100 + 2000
    assert eff.user_wasted_percent == round(2250 / (2150 + 50), 6)
    assert result.unknowns == []


def test_unsafe_members_become_unknowns(tmp_path: Path) -> None:
    ref = build_oci_layout(tmp_path / "img", [{"/ok": b"x", "../../escape": b"bad"}])
    with load_image(ref) as loaded:
        result = summarize(loaded)
    assert [u.path for u in result.unknowns] == ["../../escape"]
    assert "climbs above" in result.unknowns[0].reason
    assert result.image.file_count == 1


def test_rootfs_directory(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/include").mkdir(parents=True)
    (root / "usr/include/stdio.h").write_bytes(b"h" * 10)
    (root / "bin").mkdir()
    (root / "bin/tool").write_bytes(b"t" * 90)
    with load_image(f"rootfs:{root}") as loaded:
        result = summarize(loaded)
    assert result.image.size_bytes == 100 and len(result.image.layers) == 1
    assert result.efficiency is not None and result.efficiency.score == 1.0
    assert [(w.name, w.size_bytes) for w in result.waste] == [("headers", 10)]
