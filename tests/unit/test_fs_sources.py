"""Layer reading, squashing, chroot resolution and image sources — including hostile input."""

from __future__ import annotations

import gzip
import os
import posixpath
import subprocess
import tarfile

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from slim.errors import LayerError, SlimError, SourceError
from slim.fs.tree import FileTree, squash
from slim.model import EntryKind, FileEntry, normpath, parent
from slim.pipeline import load_image
from slim.refs import parse_ref
from tests.imagekit import M, layer_tar, sha, write_docker_archive, write_oci


def paths(loaded) -> list[str]:
    return [e.path for e in loaded.rootfs.walk()]


# -- squashing ------------------------------------------------------------------------------
def three_layers() -> list[bytes]:
    return [
        layer_tar([M("data", "d"), M("data/a", data=b"1"), M("data/b", data=b"22"),
                   M("etc", "d"), M("etc/app", "d"), M("etc/app/x", data=b"x"), M("etc/app/y", data=b"y")]),
        layer_tar([M("data/.wh.b"), M("etc/app/.wh..wh..opq"), M("etc/app/z", data=b"z"),
                   M("data/a", data=b"1111")]),
        layer_tar([M(".wh.data"), M("srv", "d"), M("srv/file", data=b"s")]),
    ]


def test_whiteouts_and_opaque_directories(tmp_path):
    write_oci(str(tmp_path), three_layers())
    with load_image(f"oci:{tmp_path}") as li:
        assert paths(li) == ["/etc", "/etc/app", "/etc/app/z", "/srv", "/srv/file"]
        # layer 1 deleted b, x and y; layer 2 deleted the whole /data subtree (a from layer 1)
        assert sorted(e.path for e in li.deleted[1]) == ["/data/b", "/etc/app/x", "/etc/app/y"]
        assert sorted(e.path for e in li.deleted[2]) == ["/data", "/data/a"]
        assert li.rootfs.size_bytes == 2


def test_same_layer_entries_survive_own_whiteout():
    # OCI: whiteouts apply to lower layers only
    tree = FileTree()
    tree.add(FileEntry("/a", EntryKind.FILE, size=1))
    tree.whiteouts.add("/a")
    lower = FileTree()
    lower.add(FileEntry("/a", EntryKind.FILE, size=5))
    merged = squash([lower, tree])
    assert merged.get("/a").size == 1


def test_file_replaced_by_directory_and_back():
    l0, l1, l2 = FileTree(), FileTree(), FileTree()
    l0.add(FileEntry("/x", EntryKind.FILE, size=3))
    l1.add(FileEntry("/x/y", EntryKind.FILE, size=4))  # implies /x is now a directory
    l2.add(FileEntry("/x", EntryKind.FILE, size=5))  # and a file again: /x/y disappears
    merged = squash([l0, l1])
    assert merged.get("/x").kind is EntryKind.DIR and merged.get("/x/y").size == 4
    merged.apply(l2)
    assert merged.get("/x").size == 5 and merged.get("/x/y") is None


# -- chroot resolution ----------------------------------------------------------------------
def link_image(tmp_path) -> str:
    write_oci(str(tmp_path), [layer_tar([
        M("usr", "d"), M("usr/lib", "d"), M("usr/lib/libc.so.6", data=b"\x7fELF"),
        M("lib", "l", link="usr/lib"),
        M("abs", "l", link="/usr/lib/libc.so.6"),
        M("climb", "l", link="../../../../usr/lib/libc.so.6"),
        M("escape", "l", link="../../../../etc/passwd"),
        M("loop1", "l", link="loop2"), M("loop2", "l", link="loop1"),
        M("self", "l", link="self"),
        M("hard", "h", link="usr/lib/libc.so.6"),
    ])])
    return f"oci:{tmp_path}"


def test_resolution_has_chroot_semantics(tmp_path):
    with load_image(link_image(tmp_path)) as li:
        fs = li.rootfs
        r = fs.resolve("/lib/libc.so.6")
        assert (r.path, r.links, r.exists) == ("/usr/lib/libc.so.6", ("/lib",), True)
        assert fs.resolve("/abs").path == "/usr/lib/libc.so.6"
        # '..' stops at the image root: climbing links land inside the image
        assert fs.resolve("/climb").path == "/usr/lib/libc.so.6"
        esc = fs.resolve("/escape")
        assert not esc.exists and esc.path == "/etc/passwd"  # the image's, never the host's
        assert fs.resolve("/loop1").error == "symlink loop"
        assert fs.resolve("/self").error == "symlink loop"
        assert fs.resolve("/lib/libc.so.6/x").error == "not a directory"
        assert fs.read("/lib/libc.so.6") == b"\x7fELF"
        assert fs.stat("/hard").size == 4 and fs.read("/hard") == b"\x7fELF"
        with pytest.raises(SlimError, match="/escape"):
            fs.read("/escape")
        # a hard-linked inode counts once in the image size
        assert fs.size_bytes == 4


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["..", ".", "a", "b", "", "lib", "usr"]), max_size=12))
def test_normpath_never_escapes(parts):
    p = normpath("/".join(parts))
    assert p.startswith("/") and ".." not in p.split("/")
    assert parent(p) == posixpath.dirname(p)  # on a normalized path, what the tree and reader use


# -- hostile members ------------------------------------------------------------------------
def test_traversal_and_absolute_members_are_contained(tmp_path):
    tar = layer_tar([M("../../etc/passwd", data=b"root::0:0"), M("/etc/shadow", data=b"x"),
                     M("ok", data=b"fine"), M("bad", "h", link="../../outside")])
    write_oci(str(tmp_path), [tar])
    with load_image(f"oci:{tmp_path}") as li:
        assert paths(li) == ["/etc", "/etc/shadow", "/ok"]
        reasons = {i.path: i.reason for i in li.issues}
        assert "climbs above the image root" in reasons["../../etc/passwd"]
        assert "absolute member name" in reasons["/etc/shadow"]
        assert "climbs above the image root" in reasons["/bad"]
    assert not os.path.exists("/etc/passwd_slim_test")  # nothing written on the host


def test_truncated_gzip_layer_is_a_one_line_error(tmp_path):
    write_oci(str(tmp_path), [layer_tar([M("a", data=os.urandom(50000))])])
    blobs = tmp_path / "blobs" / "sha256"
    for b in blobs.iterdir():
        data = b.read_bytes()
        if data[:2] == b"\x1f\x8b":
            b.write_bytes(data[: len(data) // 2])
    with pytest.raises((LayerError, SourceError)) as exc:
        load_image(f"oci:{tmp_path}")
    assert "\n" not in str(exc.value)


def test_truncated_gzip_in_docker_archive(tmp_path):
    path = str(tmp_path / "img.tar")
    write_docker_archive(path, [layer_tar([M("a", data=os.urandom(50000))])], compress=True,
                         corrupt={0: lambda b: b[: len(b) // 2]})
    with pytest.raises(LayerError, match=r"layer 0.*corrupt or truncated"):
        load_image(f"docker-archive:{path}")


def test_blob_digest_mismatch(tmp_path):
    write_oci(str(tmp_path), [layer_tar([M("a", data=b"hello")])], compress=False)
    blobs = tmp_path / "blobs" / "sha256"
    for b in blobs.iterdir():
        data = b.read_bytes()
        if b"hello" in data:
            b.write_bytes(data.replace(b"hello", b"HELLO"))
    with pytest.raises(LayerError, match="digest mismatch"):
        load_image(f"oci:{tmp_path}")


def test_diff_id_mismatch_in_legacy_archive(tmp_path):
    path = str(tmp_path / "img.tar")
    write_docker_archive(path, [layer_tar([M("a", data=b"hello")])],
                         corrupt={0: lambda b: b.replace(b"hello", b"HELLO")})
    with pytest.raises(LayerError, match="diff_id mismatch"):
        load_image(f"docker-archive:{path}")


def test_missing_manifest_json(tmp_path):
    path = tmp_path / "img.tar"
    with tarfile.open(path, "w") as tf:
        tf.add(__file__, arcname="something.json")
    with pytest.raises(SourceError, match=r"img.tar.*manifest.json"):
        load_image(f"docker-archive:{path}")


@pytest.mark.parametrize("ref", ["docker-archive:/nonexistent/x.tar", "oci:/nonexistent/dir",
                                 "rootfs:/nonexistent/root", "oci-archive:/nonexistent.tar"])
def test_reference_that_does_not_exist(ref):
    with pytest.raises(SourceError, match="nonexistent"):
        load_image(ref)


def test_zero_byte_and_sparse_huge_file(tmp_path):
    # a sparse 2 GB file made by GNU tar --sparse: headers are read, contents never are
    root = tmp_path / "root"
    root.mkdir()
    (root / "empty").write_bytes(b"")
    with open(root / "huge.img", "wb") as f:
        f.truncate(2 << 30)
    tar = tmp_path / "layer.tar"
    subprocess.run(["tar", "--sparse", "-C", str(root), "-cf", str(tar), "empty", "huge.img"], check=True)
    assert tar.stat().st_size < 1 << 20
    write_oci(str(tmp_path / "img"), [tar.read_bytes()])
    with load_image(f"oci:{tmp_path / 'img'}") as li:
        fs = li.rootfs
        assert fs.get("/empty").size == 0 and fs.read("/empty") == b""
        assert fs.get("/huge.img").size == 2 << 30
        assert fs.size_bytes == 2 << 30


def test_zstd_and_uncompressed_layers(tmp_path):
    t0 = layer_tar([M("a", data=b"aaa")])
    t1 = layer_tar([M("b.sh", data=b"#!/bin/sh\necho hi\n")])
    write_oci(str(tmp_path), [t0, t1], compress=False)
    blobs = tmp_path / "blobs" / "sha256"
    # recompress layer 1 as zstd and rewrite the manifest to point at it
    import json
    idx = json.loads((tmp_path / "index.json").read_text())
    mdig = idx["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((blobs / mdig).read_bytes())
    z = zstandard.ZstdCompressor().compress(t1)
    (blobs / sha(z).split(":")[1]).write_bytes(z)
    manifest["layers"][1] = {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": sha(z), "size": len(z)}
    mb = json.dumps(manifest).encode()
    (blobs / sha(mb).split(":")[1]).write_bytes(mb)
    idx["manifests"][0]["digest"] = sha(mb)
    (tmp_path / "index.json").write_text(json.dumps(idx))
    with load_image(f"oci:{tmp_path}") as li:
        assert [r.compression for r in li.layers] == ["none", "zstd"]
        assert li.rootfs.read("/b.sh").startswith(b"#!")


def test_same_image_from_three_sources_gives_same_view(tmp_path):
    tars = three_layers()
    cfg = {"Entrypoint": ["/srv/file"], "Env": ["PATH=/bin"]}
    d1 = write_oci(str(tmp_path / "oci"), tars, cfg)
    d2 = write_docker_archive(str(tmp_path / "d.tar"), tars, cfg)
    # an oci-archive is the layout in a tar
    with tarfile.open(tmp_path / "o.tar", "w") as tf:
        for name in os.listdir(tmp_path / "oci"):
            tf.add(tmp_path / "oci" / name, arcname=name)
    assert d1 == d2
    views = []
    for ref in (f"oci:{tmp_path / 'oci'}", f"docker-archive:{tmp_path / 'd.tar'}", f"oci-archive:{tmp_path / 'o.tar'}",
                str(tmp_path / "d.tar")):
        with load_image(ref) as li:
            views.append((li.image.digest, li.image.config, [(e.path, e.size, e.kind) for e in li.rootfs.walk()]))
    assert all(v == views[0] for v in views)


def test_multi_arch_index_picks_host_platform(tmp_path):
    from slim.sources.archive import host_platform
    os_, arch = host_platform()
    write_oci(str(tmp_path), [layer_tar([M("mine", data=b"1")])], platform={"os": os_, "architecture": arch})
    import json
    idx = json.loads((tmp_path / "index.json").read_text())
    other = dict(idx["manifests"][0], platform={"os": "linux", "architecture": "s390x"})
    idx["manifests"].insert(0, other)
    (tmp_path / "index.json").write_text(json.dumps(idx))
    with load_image(f"oci:{tmp_path}") as li:
        assert paths(li) == ["/mine"]
    idx["manifests"] = [other]
    (tmp_path / "index.json").write_text(json.dumps(idx))
    with pytest.raises(SourceError, match="s390x"):
        load_image(f"oci:{tmp_path}")


def test_rootfs_source_walks_without_following_links(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "app").write_bytes(b"#!/bin/sh\n")
    os.symlink("/", tmp_path / "hostroot")  # must not be followed into the host
    with load_image(f"rootfs:{tmp_path}") as li:
        assert paths(li) == ["/bin", "/bin/app", "/hostroot"]
        assert li.rootfs.resolve("/hostroot/bin/app").path == "/bin/app"
        assert li.rootfs.read("/bin/app") == b"#!/bin/sh\n"


def test_rootfs_source_reports_what_it_cannot_read(tmp_path, monkeypatch):
    (tmp_path / "ok").write_bytes(b"x")
    os.symlink("elsewhere", tmp_path / "link")
    real = os.readlink

    def denied(path, *a, **kw):  # a /proc/1/cwd-like link: lstat works, readlink is refused
        if str(path).endswith("/link"):
            raise PermissionError(13, "Permission denied")
        return real(path, *a, **kw)

    monkeypatch.setattr(os, "readlink", denied)
    with load_image(f"rootfs:{tmp_path}") as li:
        assert paths(li) == ["/ok"]
        assert any(i.path == "/link" and "Permission denied" in i.reason for i in li.issues)


def test_parse_ref_forms(tmp_path):
    assert parse_ref("docker://reg.example/app:1").transport == "docker"
    assert parse_ref("oci:/x/y:v1").tag == "v1"
    assert parse_ref("alpine:3.19").transport == "auto"
    with pytest.raises(SourceError):
        parse_ref("")
    gz = tmp_path / "x.tar"
    gz.write_bytes(gzip.compress(b"junk"))
    with pytest.raises(SourceError, match=r"x\.tar"):
        parse_ref(str(gz))


def test_captured_contents_are_seekable(tmp_path):
    write_oci(str(tmp_path), [layer_tar([M("bin/x", data=b"\x7fELF" + bytes(range(100)))])])
    with load_image(f"oci:{tmp_path}") as li, li.rootfs.open("/bin/x") as f:
        f.seek(10)
        assert f.read(2) == bytes([6, 7]) and f.tell() == 12
        f.seek(-1, 2)
        assert f.read() == bytes([99])


# -- issue 20: a mistyped name never goes to Docker Hub, a failed pull leaves nothing ---------
def test_bare_name_is_not_pulled_without_pull(monkeypatch, tmp_path) -> None:
    import slim.sources as sources
    from slim.errors import SourceError

    monkeypatch.setattr(sources, "daemon_available", lambda: False)
    called = []

    class Opened:
        ref = None

    monkeypatch.setattr(sources.RegistrySource, "open", lambda self, ref: called.append(ref) or Opened())
    with pytest.raises(SourceError) as err:
        sources.open_image("myapp:latst")
    assert str(err.value).startswith("myapp:latst: no such image or file")
    assert "--pull" in str(err.value) and not called
    sources.open_image("myapp:latst", pull=True)  # asked for: the registry is tried
    assert called


def test_failed_pull_leaves_no_cache_and_one_short_line(monkeypatch, tmp_path) -> None:
    import subprocess

    from slim.errors import SourceError
    from slim.refs import ImageRef
    from slim.sources import registry

    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(registry.shutil, "which", lambda name: "/usr/bin/skopeo")
    log = ('time="2026-12-01T10:00:00Z" level=fatal msg="Error initializing source '
           'docker://nosuch:latest: reading manifest latest in docker.io/library/nosuch: '
           'requested access to the resource is denied ' + "x" * 300 + '"')
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", log))
    with pytest.raises(SourceError) as err:
        registry.RegistrySource().open(ImageRef("docker", "nosuch:latest"))
    message = str(err.value)
    assert message.startswith("docker://nosuch:latest: Error initializing source")
    assert len(message) < 260 and "level=fatal" not in message
    assert not any((tmp_path / "cache").rglob("nosuch*"))


def test_recent_reads_answer_any_limit_as_the_store_would(tmp_path):
    """RootFS keeps its last reads (analyzers read one file after another, several the same
    one): each answer is what a read of the store gives, for any order of limits."""
    from slim.fs import rootfs

    big = bytes(range(256)) * 40  # 10 KiB
    write_oci(tmp_path, [layer_tar([M("a.py", data=big), M("b.py", data=b"#!/bin/sh\n"),
                                    *(M(f"f{i}.py", data=bytes([i]) * 600) for i in range(12))])])
    with load_image(f"oci:{tmp_path}") as li:
        fs = li.rootfs
        store = fs.store
        for limit in (2, None, 4, 600, 513, 10240, 20000, None, 1, 0):
            expected = b"" if limit == 0 else store.read(fs.get("/a.py").layer, "/a.py", limit)
            assert fs.read("/a.py", limit) == expected, limit
        assert fs.read("/b.py", 2) == b"#!" and fs.read("/b.py") == b"#!/bin/sh\n" and fs.read("/b.py", 600) == b"#!/bin/sh\n"
        for i in range(12):
            assert fs.read(f"/f{i}.py", 4) == bytes([i]) * 4 and fs.read(f"/f{i}.py") == bytes([i]) * 600
        assert len(fs._recent) == rootfs.RECENT_READS


@pytest.mark.parametrize("kind", ["oci", "docker-archive"])
def test_a_blob_changed_after_its_analysis_is_never_written(tmp_path, kind):
    """read_files (the writer's second read of a layer, for contents the analysis did not
    copy) checks the blob against its digest and diff_id: bytes that changed since they were
    analyzed raise LayerError instead of going into a minimal image."""
    tar = layer_tar([M("app/data.bin", data=b"hello" * 1000)])
    if kind == "oci":
        write_oci(str(tmp_path), [tar], compress=False)
        ref, files = f"oci:{tmp_path}", list((tmp_path / "blobs" / "sha256").iterdir())
    else:
        path = tmp_path / "img.tar"
        write_docker_archive(str(path), [tar])
        ref, files = f"docker-archive:{path}", [path]
    with load_image(ref) as loaded:
        read = [(i, p, f.read()) for i, p, f in loaded.image.read_files({0: {"/app/data.bin"}})]
        assert read == [(0, "/app/data.bin", b"hello" * 1000)]
        for f in files:  # the same length, other bytes
            data = f.read_bytes()
            if b"hello" in data:
                f.write_bytes(data.replace(b"hello", b"HELLO"))
        with pytest.raises(LayerError, match=r"(digest|diff_id) mismatch"):
            for _i, _p, stream in loaded.image.read_files({0: {"/app/data.bin"}}):
                stream.read()
