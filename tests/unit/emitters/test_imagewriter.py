"""Tests of the deterministic image writer: every layout round-trips through slim.pipeline.load."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from slim.emitters import imagewriter
from slim.emitters.imagewriter import LayerBlob, LayerTarWriter, compress_layer, write_image
from slim.errors import EmitError, UsageError
from slim.model import EntryKind, FileEntry
from slim.pipeline import load_image

CONFIG = {
    "architecture": "amd64",
    "os": "linux",
    "config": {"Entrypoint": ["/bin/app"], "Env": ["PATH=/bin"], "WorkingDir": "/"},
    "history": [{"created_by": "base"}, {"created_by": "top"}],
}


def _file(path: str, data: bytes, **kw: object) -> tuple[FileEntry, io.BytesIO]:
    return FileEntry(path=path, kind=EntryKind.FILE, size=len(data), **kw), io.BytesIO(data)  # type: ignore[arg-type]


def _layers(tmp_path, compression=("gzip", "zstd")) -> list[LayerBlob]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    blobs = tmp_path / "blobs"
    base = tmp_path / "base.tar"
    with open(base, "wb") as out, LayerTarWriter(out) as w:
        # added out of order on purpose: the writer sorts
        w.add(*_file("/bin/app", b"\x7fELF" + b"x" * 100, mode=0o755, xattrs=(("security.capability", "AQIDBA=="),)))
        w.add(FileEntry("/bin", EntryKind.DIR, mode=0o755))
        w.add(FileEntry("/bin/app2", EntryKind.HARDLINK, mode=0o755, linkname="/bin/app"))
        w.add(FileEntry("/bin/sh", EntryKind.SYMLINK, mode=0o777, linkname="app"))
        w.add(FileEntry("/dev/null", EntryKind.CHAR, mode=0o666, devmajor=1, devminor=3))
        w.add(FileEntry("/run/fifo", EntryKind.FIFO, mode=0o600, uid=1000, gid=1000))
        w.add(*_file("/etc/gone", b"bye\n"))
        w.add(*_file("/etc/keep/a", b"a\n"))
        w.add(*_file("/etc/keep/b", b"b\n"))
    top = tmp_path / "top.tar"
    with open(top, "wb") as out, LayerTarWriter(out) as w:
        w.add_whiteout("/etc/gone")
        w.add_opaque("/etc/keep")
        w.add(*_file("/etc/keep/c", b"c\n"))
    return [compress_layer(str(base), str(blobs), compression[0]), compress_layer(str(top), str(blobs), compression[1])]


DESTS = [
    ("oci", "oci:{d}/img:v1", "oci:{d}/img:v1"),
    ("oci-archive", "oci-archive:{d}/img.tar", "oci-archive:{d}/img.tar"),
    ("docker-oci", "docker-archive:{d}/img.tar", "docker-archive:{d}/img.tar"),
    ("docker-legacy", "docker-archive:{d}/img.tar", "docker-archive:{d}/img.tar"),
]


@pytest.mark.parametrize(("name", "dest", "ref"), DESTS, ids=[d[0] for d in DESTS])
def test_round_trip(tmp_path, name: str, dest: str, ref: str) -> None:
    layers = _layers(tmp_path)
    out = tmp_path / "out"
    form = "legacy" if name == "docker-legacy" else "oci"
    digest = write_image(dest.format(d=out), layers, CONFIG, tag="example/app:v1", docker_form=form)
    with load_image(ref.format(d=out)) as img:
        assert img.image.digest == digest
        assert img.image.config.entrypoint == ("/bin/app",)
        assert [r.diff_id for r in img.layers] == [b.diff_id for b in layers]
        fs = img.rootfs
        app = fs.get("/bin/app")
        assert app is not None and app.mode == 0o755 and app.size == 104
        assert dict(app.xattrs) == {"security.capability": "AQIDBA=="}
        link = fs.get("/bin/app2")
        assert link is not None and link.kind is EntryKind.HARDLINK and link.linkname == "/bin/app"
        assert fs.readlink("/bin/sh") == "app"
        dev = fs.get("/dev/null")
        assert dev is not None and dev.kind is EntryKind.CHAR and (dev.devmajor, dev.devminor) == (1, 3)
        fifo = fs.get("/run/fifo")
        assert fifo is not None and fifo.kind is EntryKind.FIFO and (fifo.uid, fifo.gid) == (1000, 1000)
        assert not fs.exists("/etc/gone")  # whiteout
        assert fs.listdir("/etc/keep") == ["c"]  # opaque directory
        assert fs.read("/bin/app").startswith(b"\x7fELF")
    if name == "docker-legacy":
        with tarfile.open(out / "img.tar") as tf:
            names = tf.getnames()
        assert "manifest.json" in names and "repositories" in names
        assert sum(n.endswith("/layer.tar") for n in names) == 2
        assert not any(n.startswith("blobs/") for n in names)
    if name == "docker-oci":
        with tarfile.open(out / "img.tar") as tf:
            names = tf.getnames()
        assert {"oci-layout", "index.json", "manifest.json"} <= set(names)


def test_all_forms_share_the_config_digest(tmp_path) -> None:
    layers = _layers(tmp_path)
    digests = {
        write_image(f"oci:{tmp_path}/a", layers, CONFIG),
        write_image(f"oci-archive:{tmp_path}/b.tar", layers, CONFIG),
        write_image(f"docker-archive:{tmp_path}/c.tar", layers, CONFIG, docker_form="legacy"),
        write_image(f"docker-archive:{tmp_path}/d.tar", layers, CONFIG, docker_form="oci"),
    }
    assert len(digests) == 1


@pytest.mark.parametrize("form", ["oci", "legacy"])
def test_deterministic_bytes(tmp_path, form: str) -> None:
    results = []
    for run in ("one", "two"):
        d = tmp_path / run
        layers = _layers(d, ("gzip", "none"))
        digest = write_image(f"docker-archive:{d}/img.tar", layers, CONFIG, docker_form=form)
        results.append((digest, [b.digest for b in layers], hashlib.sha256((d / "img.tar").read_bytes()).hexdigest()))
    assert results[0] == results[1]


def test_tar_is_sorted_with_fixed_metadata(tmp_path) -> None:
    buf = io.BytesIO()
    with LayerTarWriter(buf, mtime=42) as w:
        w.add(*_file("/z", b"z", mtime=999))
        w.add(FileEntry("/a/b-link", EntryKind.HARDLINK, linkname="/z"))
        w.add(*_file("/a-b", b"x"))
        w.add(*_file("/a/b", b"y", mtime=7), keep_mtime=True)
        w.add(FileEntry("/a", EntryKind.DIR, mode=0o755))
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tf:
        members = tf.getmembers()
    assert [m.name for m in members] == ["a", "a/b", "a-b", "z", "a/b-link"]
    assert {m.name: m.mtime for m in members} == {"a": 42, "a/b": 7, "a-b": 42, "z": 42, "a/b-link": 42}
    assert all(m.uname == "" and m.gname == "" for m in members)
    assert members[-1].linkname == "z"


def test_gzip_blob_is_deterministic_and_nameless(tmp_path) -> None:
    tar = tmp_path / "l.tar"
    with open(tar, "wb") as out, LayerTarWriter(out) as w:
        w.add(*_file("/f", b"data"))
    a = compress_layer(str(tar), str(tmp_path / "a"))
    b = compress_layer(str(tar), str(tmp_path / "b"))
    assert a.digest == b.digest and a.diff_id == b.diff_id
    with open(a.path, "rb") as f:
        raw = f.read()
    assert raw[:2] == b"\x1f\x8b" and raw[3] == 0  # FLG: no FNAME
    assert raw[4:8] == b"\0\0\0\0"  # MTIME 0
    assert os.path.basename(a.path) == a.digest.split(":")[1]
    z = compress_layer(str(tar), str(tmp_path / "z"), "zstd")
    assert z.media_type.endswith("+zstd") and z.diff_id == a.diff_id
    with pytest.raises(EmitError, match="unknown layer compression"):
        compress_layer(str(tar), str(tmp_path), "lz4")


def test_writer_rejects_bad_entries() -> None:
    with LayerTarWriter(io.BytesIO()) as w:
        w.add(*_file("/a", b"1"))
        with pytest.raises(EmitError, match="added twice"):
            w.add(*_file("a", b"1"))
        with pytest.raises(EmitError, match="without data"):
            w.add(FileEntry("/b", EntryKind.FILE, size=3))
        with pytest.raises(EmitError, match="data has 1"):
            w.add(FileEntry("/c", EntryKind.FILE, size=5), io.BytesIO(b"1"))
        with pytest.raises(EmitError, match="without a target"):
            w.add(FileEntry("/d", EntryKind.SYMLINK))


@pytest.mark.parametrize("dest", ["oci:{d}/img", "docker-archive:{d}/img.tar", "oci-archive:{d}/img.tar"])
def test_failure_mid_write_leaves_no_dest(tmp_path, monkeypatch, dest: str) -> None:
    layers = _layers(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    real_put = imagewriter._Sink.put
    calls = []

    def failing_put(self, name, data=None, path=""):
        calls.append(name)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_put(self, name, data, path)

    monkeypatch.setattr(imagewriter._Sink, "put", failing_put)
    with pytest.raises(EmitError, match="No space left"):
        write_image(dest.format(d=out), layers, CONFIG, docker_form="legacy")
    assert os.listdir(out) == []


def test_failure_keeps_previous_image(tmp_path, monkeypatch) -> None:
    layers = _layers(tmp_path)
    dest = f"oci:{tmp_path}/img"
    digest = write_image(dest, layers, CONFIG)
    monkeypatch.setattr(imagewriter._Sink, "put", lambda *a, **k: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(EmitError):
        write_image(dest, layers, {**CONFIG, "config": {"Cmd": ["x"]}})
    with load_image(dest) as img:
        assert img.image.digest == digest
    assert sorted(os.listdir(tmp_path)) == ["base.tar", "blobs", "img", "top.tar"]


def test_bad_arguments(tmp_path) -> None:
    layers = _layers(tmp_path)
    with pytest.raises(UsageError, match="must be oci:DIR"):
        write_image(f"dir:{tmp_path}/x", layers, CONFIG)
    with pytest.raises(EmitError, match="docker_form"):
        write_image(f"docker-archive:{tmp_path}/x.tar", layers, CONFIG, docker_form="v1")
    with pytest.raises(EmitError, match="history has 1"):
        write_image(f"oci:{tmp_path}/x", layers, {**CONFIG, "history": [{"created_by": "one"}]})


def test_docker_repo_tags(tmp_path) -> None:
    import json

    layers = _layers(tmp_path)
    write_image(f"docker-archive:{tmp_path}/a.tar", layers, CONFIG, tag="example/app:v2")
    with tarfile.open(tmp_path / "a.tar") as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["example/app:v2"]
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "v2"
    write_image(f"docker-archive:{tmp_path}/b.tar", layers, CONFIG, tag="v3", docker_form="legacy")
    with tarfile.open(tmp_path / "b.tar") as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        repositories = json.load(tf.extractfile("repositories"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["v3:latest"]
    assert repositories == {"v3": {"latest": manifest[0]["Layers"][-1].split("/")[0]}}


def test_parallel_gzip_is_one_deterministic_gzip_member() -> None:
    import gzip as _gzip
    import io as _io
    import os as _os
    import zlib as _zlib

    from slim.emitters.imagewriter import GZIP_BLOCK, parallel_gzip

    data = _os.urandom(GZIP_BLOCK) + b"text " * (GZIP_BLOCK // 2) + bytes(GZIP_BLOCK + 17)
    outs = []
    for threads in (1, 2, 5):
        out = _io.BytesIO()
        parallel_gzip(_io.BytesIO(data), out, 6, threads)
        outs.append(out.getvalue())
    assert outs[0] == outs[1] == outs[2]  # the bytes never depend on the thread count
    blob = outs[0]
    assert _gzip.decompress(blob) == data
    d = _zlib.decompressobj(31)
    assert d.decompress(blob) == data and d.eof and d.unused_data == b""  # one member
    assert blob[4:8] == b"\0\0\0\0"  # mtime 0
    assert len(blob) <= len(_gzip.compress(data, 6)) * 1.01
    for small in (b"", b"x"):
        out = _io.BytesIO()
        parallel_gzip(_io.BytesIO(small), out)
        assert _gzip.decompress(out.getvalue()) == small


def test_a_blob_that_does_not_inflate_to_the_known_diff_id_is_refused(tmp_path, monkeypatch) -> None:
    """slim build verifies the plain tar and publishes its compressed form: the compressed blob
    must be proven to inflate to exactly that tar, whatever the compressor did."""
    import gzip

    tar = tmp_path / "layer.tar"
    buf = io.BytesIO()
    with LayerTarWriter(buf) as w:
        w.add(FileEntry("/a", EntryKind.FILE, 0o644, 0, 0, 3), io.BytesIO(b"abc"))
    tar.write_bytes(buf.getvalue())
    diff_id = "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()
    good = compress_layer(str(tar), str(tmp_path / "ok"), "gzip", diff_id=diff_id)
    assert good.diff_id == diff_id and gzip.decompress(Path(good.path).read_bytes()) == buf.getvalue()

    def wrong(src, dst, level=6, threads=None):  # type: ignore[no-untyped-def]
        dst.write(gzip.compress(src.read() + b"\0", mtime=0))

    monkeypatch.setattr(imagewriter, "parallel_gzip", wrong)
    with pytest.raises(EmitError, match="gzip blob inflates to sha256:.*, not " + diff_id):
        compress_layer(str(tar), str(tmp_path / "bad"), "gzip", diff_id=diff_id)
    assert os.listdir(tmp_path / "bad") == []  # nothing left behind
