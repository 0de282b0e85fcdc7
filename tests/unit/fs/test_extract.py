"""Safe layer extraction: whiteouts and malicious tars never write outside dest."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from slim.errors import LayerError
from slim.fs.extract import extract_tar, member_parts


def layer(*members: tuple[str, str, object]) -> io.BytesIO:
    """A layer tar: (name, kind, payload) with kind file|dir|sym|link|chr|fifo."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            data = b""
            if kind == "file":
                data = payload if isinstance(payload, bytes) else b""
                info.size = len(data)
                info.mode = 0o644
            elif kind == "exe":
                data = payload if isinstance(payload, bytes) else b""
                info.size = len(data)
                info.mode = 0o4755
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = int(payload) if isinstance(payload, int) else 0o755
            elif kind == "sym":
                info.type = tarfile.SYMTYPE
                info.linkname = str(payload)
            elif kind == "link":
                info.type = tarfile.LNKTYPE
                info.linkname = str(payload)
            elif kind == "chr":
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = 1, 3
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tf.addfile(info, io.BytesIO(data) if data else None)
    buf.seek(0)
    return buf


@pytest.fixture
def box(tmp_path: Path) -> tuple[Path, Path]:
    """(dest, outside): dest inside a sandbox dir; outside is a sibling the tars aim at."""
    dest = tmp_path / "dest"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("original")
    return dest, outside


def snapshot(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): (p.read_text() if p.is_file() and not p.is_symlink() else "")
            for p in path.rglob("*")}


def test_member_parts() -> None:
    assert member_parts("./a/b/../c") == ["a", "c"]
    assert member_parts("/etc/passwd") == ["etc", "passwd"]
    assert member_parts("../x") is None
    assert member_parts("a/../../x") is None
    assert member_parts("a\x00b") is None


def test_regular_layers_modes_and_whiteouts(box: tuple[Path, Path]) -> None:
    dest, _ = box
    extract_tar(layer(("etc", "dir", 0o755), ("etc/a", "file", b"A"), ("etc/b", "file", b"B"),
                      ("bin", "dir", 0o555), ("bin/tool", "exe", b"\x7fELF"),
                      ("keep", "dir", 0o755), ("keep/old", "file", b"old"),
                      ("keep/sub", "dir", 0o755), ("keep/sub/deep", "file", b"deep"),
                      ("lib", "sym", "usr/lib"), ("usr/lib", "dir", 0o755),
                      ("etc/hard", "link", "etc/a")), str(dest), 0)
    assert (dest / "etc/a").read_text() == "A"
    assert os.stat(dest / "etc/hard").st_ino == os.stat(dest / "etc/a").st_ino
    assert (os.stat(dest / "bin/tool").st_mode & 0o7777) == 0o4755
    assert (os.stat(dest / "bin").st_mode & 0o777) == 0o555  # applied after its contents
    assert os.readlink(dest / "lib") == "usr/lib"
    # layer 1: whiteout a file, make keep/ opaque while adding a new entry, write through lib
    report = extract_tar(layer(("etc/.wh.b", "file", b""), ("keep/.wh..wh..opq", "file", b""),
                               ("keep/new", "file", b"new"), ("lib/libx.so", "file", b"x")),
                         str(dest), 1)
    assert report.skipped == []
    assert not (dest / "etc/b").exists()
    assert sorted(os.listdir(dest / "keep")) == ["new"]
    # a directory symlink met on the way is resolved inside dest, not replaced
    assert (dest / "usr/lib/libx.so").read_text() == "x"
    assert os.path.islink(dest / "lib")


def test_names_climbing_above_root_are_skipped(box: tuple[Path, Path]) -> None:
    dest, outside = box
    before = snapshot(outside)
    report = extract_tar(layer(("../outside/victim", "file", b"pwned"),
                               ("a/../../outside/new", "file", b"pwned")), str(dest))
    assert snapshot(outside) == before
    assert len(report.skipped) == 2
    assert all("climbs" in s.reason for s in report.skipped)


def test_symlink_then_write_through_it_stays_inside(box: tuple[Path, Path]) -> None:
    dest, outside = box
    before = snapshot(outside)
    # absolute and relative links pointing out of dest (a lower layer), then writes through
    # them (the layer above)
    extract_tar(layer(("evil", "sym", str(outside)), ("rel", "sym", "../../outside"),
                      ("f", "sym", str(outside / "victim"))), str(dest))
    extract_tar(layer(("evil/victim", "file", b"pwned"), ("rel/new", "file", b"pwned"),
                      ("f", "file", b"replaced")), str(dest), 1)
    assert snapshot(outside) == before
    # the escaping links were resolved inside dest: absolute = dest + path, `..` stops at dest
    assert (dest / str(outside).lstrip("/") / "victim").read_text() == "pwned"
    assert (dest / "outside/new").read_text() == "pwned"
    # the final component is replaced, never written through
    assert (dest / "f").read_text() == "replaced" and not (dest / "f").is_symlink()


@pytest.mark.parametrize("members, message", [
    ((("evil", "sym", "/tmp"), ("evil/victim", "file", b"x")), "written through the symlink /evil"),
    ((("f", "sym", "/etc/passwd"), ("f", "file", b"x")), "/f: appears twice"),
    ((("a", "file", b""), ("a/b", "file", b"x")), "below /a, which the same layer made a non-directory"),
    ((("d/x", "file", b""), ("d", "file", b"x")), "/d: replaces a directory"),
])
def test_same_layer_tricks_are_refused(box: tuple[Path, Path], members, message) -> None:
    dest, outside = box
    before = snapshot(outside)
    with pytest.raises(LayerError, match=message):
        extract_tar(layer(*members), str(dest), what="img: layer 0")
    assert snapshot(outside) == before


def test_hardlinks_must_stay_inside(box: tuple[Path, Path]) -> None:
    dest, outside = box
    report = extract_tar(layer(("h1", "link", str(outside / "victim")),
                               ("h2", "link", "../outside/victim"),
                               ("esc", "sym", str(outside)), ("h3", "link", "esc/victim")),
                         str(dest))
    for name in ("h1", "h3"):
        assert not (dest / name).exists() or os.stat(dest / name).st_ino != os.stat(
            outside / "victim").st_ino
    assert not (dest / "h2").exists()
    assert {s.path for s in report.skipped} >= {"/h1", "/h2", "/h3"}
    assert os.stat(outside / "victim").st_nlink == 1


def test_devices_skipped_fifos_made(box: tuple[Path, Path]) -> None:
    dest, _ = box
    report = extract_tar(layer(("dev", "dir", 0o755), ("dev/null", "chr", None),
                               ("run/fifo", "fifo", None)), str(dest))
    assert not (dest / "dev/null").exists()
    assert [s.path for s in report.skipped] == ["/dev/null"]
    assert "device" in report.skipped[0].reason
    assert os.path.exists(dest / "run/fifo")


def test_opaque_marker_before_entries_and_dir_replacing_file(box: tuple[Path, Path]) -> None:
    dest, _ = box
    extract_tar(layer(("d", "dir", 0o755), ("d/x", "file", b"1"), ("d/s", "dir", 0o755),
                      ("d/s/y", "file", b"2"), ("p", "file", b"was a file")), str(dest), 0)
    extract_tar(layer(("d/.wh..wh..opq", "file", b""), ("d/s", "dir", 0o755),
                      ("d/s/z", "file", b"3"), ("p", "dir", 0o755)), str(dest), 1)
    assert sorted(str(p.relative_to(dest)) for p in (dest / "d").rglob("*")) == ["d/s", "d/s/z"]
    assert (dest / "p").is_dir()


SAMPLES = Path(__file__).resolve().parents[3] / "sample_images"


@pytest.mark.parametrize("name", ["layers-whiteouts", "hello-glibc", "busybox-static"])
@pytest.mark.parametrize("form", ["docker-archive", "oci"])
def test_sample_images_extract_to_the_squashed_tree(name: str, form: str, tmp_path: Path) -> None:
    from slim.image import prepare_root
    from slim.pipeline import load_image
    from tests.conftest import require

    path = SAMPLES / name / (f"{name}.docker.tar" if form == "docker-archive" else f"{name}.oci")
    require(path.exists(), f"{path}: sample image not built")
    with load_image(f"{form}:{path}") as loaded:
        root = prepare_root(loaded.image, str(tmp_path))
        want = {e.path: e for e in loaded.rootfs.walk() if e.path != "/"}
    on_disk = {"/" + str(p.relative_to(root)) for p in Path(root).rglob("*")}
    assert on_disk == set(want)
    for path_, entry in want.items():
        host = Path(root) / path_.lstrip("/")
        if entry.kind.value == "symlink":
            assert os.readlink(host) == entry.linkname
        elif entry.kind.value == "file":
            assert host.stat().st_size == entry.size
            assert host.stat().st_mode & 0o7777 == entry.mode & 0o7777


def test_directory_images_are_used_in_place(tmp_path: Path) -> None:
    from slim.image import prepare_root
    from slim.pipeline import load_image

    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin/app").write_text("x")
    with load_image(f"rootfs:{tree}") as loaded:
        assert prepare_root(loaded.image, str(tmp_path / "work")) == str(tree.resolve())


@pytest.mark.root
def test_xattrs_and_owners_restored_as_root(box: tuple[Path, Path]) -> None:
    from tests.conftest import is_root, require

    require(is_root(), "restoring owners and xattrs needs root")
    dest, _ = box
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("ping")
        info.size, info.mode, info.uid, info.gid = 1, 0o755, 1234, 567
        info.pax_headers = {"SCHILY.xattr.user.slim": "v1",
                            "SCHILY.xattr.security.selinux": "host_label"}
        tf.addfile(info, io.BytesIO(b"x"))
    buf.seek(0)
    extract_tar(buf, str(dest))
    st = os.lstat(dest / "ping")
    assert (st.st_uid, st.st_gid) == (1234, 567)
    assert os.getxattr(dest / "ping", "user.slim") == b"v1"
