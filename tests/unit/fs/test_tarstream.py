"""slim.fs.tarstream reads what tarfile reads (differential, on every format layers are written
in, GNU tar's sparse formats included) and refuses what tarfile lets through silently."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from slim.fs.tarstream import TarFormatError, TarReader


def _tarfile_view(data: bytes) -> list[tuple]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tf:
        for m in tf:
            digest = hashlib.sha256(tf.extractfile(m).read()).hexdigest() if m.isreg() else None  # type: ignore[union-attr]
            out.append((m.name, m.type, m.size if m.isreg() else 0, m.linkname, m.mode, m.uid, m.gid,
                        int(m.mtime), sorted((m.pax_headers or {}).items()), digest,
                        (m.devmajor, m.devminor) if m.ischr() or m.isblk() else None))
    return out


def _reader_view(data: bytes, head: int = 4) -> list[tuple]:
    out = []
    with TarReader(io.BufferedReader(io.BytesIO(data))) as tr:  # type: ignore[arg-type]
        for m in tr:
            digest = None
            if m.isreg():
                f = tr.extractfile(m)
                assert f is not None
                sha = hashlib.sha256(f.read(head))  # a head first, as the layer reader does
                while chunk := f.read(1 << 16):
                    sha.update(chunk)
                digest = sha.hexdigest()
            out.append((m.name, m.type, m.size if m.isreg() else 0, m.linkname, m.mode, m.uid, m.gid,
                        int(m.mtime), sorted(m.pax_headers.items()), digest,
                        (m.devmajor, m.devminor) if m.ischr() or m.isblk() else None))
    return out


def _python_tar(fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, uid in (("a/b", 3_000_000), ("x" * 300, 5), ("ü/é", 0)):  # base-256 uid, long name
            ti = tarfile.TarInfo(name)
            ti.uid, ti.size, ti.mtime = uid, 3, 1_700_000_000
            if fmt == tarfile.PAX_FORMAT:
                ti.pax_headers = {"SCHILY.xattr.user.k": "v"}
            tf.addfile(ti, io.BytesIO(b"abc"))
        for name, kind, link in (("dir/", tarfile.DIRTYPE, ""), ("l", tarfile.SYMTYPE, "y" * 400),
                                 ("h", tarfile.LNKTYPE, "a/b"), ("fifo", tarfile.FIFOTYPE, "")):
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = kind, link
            tf.addfile(ti)
        dev = tarfile.TarInfo("null")
        dev.type, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 1, 3
        tf.addfile(dev)
        big = tarfile.TarInfo("big")
        big.size = 3 << 20
        tf.addfile(big, io.BytesIO(os.urandom(3 << 20)))
    return buf.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_same_members_as_tarfile(fmt: int) -> None:
    if fmt == tarfile.USTAR_FORMAT:  # no long names, no base-256 in ustar
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
            for i in range(3):
                ti = tarfile.TarInfo(f"p{'q' * 120}/f{i}")  # split into prefix + name
                ti.size = i
                tf.addfile(ti, io.BytesIO(b"z" * i))
        data = buf.getvalue()
    else:
        data = _python_tar(fmt)
    assert _reader_view(data) == _tarfile_view(data)
    assert _reader_view(data, head=0) == _tarfile_view(data)


def _sparse_source(root: Path) -> None:
    root.mkdir()
    with open(root / "holes.img", "wb") as f:
        f.seek(3 << 20)
        f.write(b"data" * 1000)
        f.seek(9 << 20)
        f.write(b"tail")
        f.truncate(12 << 20)
    with open(root / "many.img", "wb") as f:  # more runs than an old GNU header holds
        for i in range(30):
            f.seek(i << 16)
            f.write(b"x" * 100)
        f.truncate((30 << 16) + 4096)
    (root / "plain").write_text("hello")
    (root / ("n" * 150)).write_text("long")


@pytest.mark.parametrize("args", [["--format=gnu"], ["--format=oldgnu"],
                                  ["--format=posix", "--sparse-version=0.0"],
                                  ["--format=posix", "--sparse-version=0.1"],
                                  ["--format=posix", "--sparse-version=1.0"]])
def test_gnu_tar_sparse_formats_match_tarfile(tmp_path: Path, args: list[str]) -> None:
    if shutil.which("tar") is None:
        pytest.skip("GNU tar")
    _sparse_source(tmp_path / "src")
    out = tmp_path / "x.tar"
    subprocess.run(["tar", "--sparse", *args, "-C", str(tmp_path / "src"), "-cf", str(out), "."], check=True)
    data = out.read_bytes()
    assert len(data) < 1 << 20  # holes are not stored …
    view = _reader_view(data)
    assert view == _tarfile_view(data)
    sizes = {name: size for name, _t, size, *_ in view}
    assert sizes["./holes.img"] == 12 << 20  # … but the file reads back expanded


def _one(name: str, data: bytes, fmt: int = tarfile.USTAR_FORMAT, **fields) -> bytes:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    for key, value in fields.items():
        setattr(ti, key, value)
    return ti.tobuf(fmt) + data + bytes(-len(data) % 512)


def _members(data: bytes) -> list[str]:
    with TarReader(io.BufferedReader(io.BytesIO(data))) as tr:  # type: ignore[arg-type]
        return [m.name for m in tr]


def test_truncated_member_data_or_header_is_an_error() -> None:
    data = _one("a", b"x" * 2000) + _one("b", b"y")
    with pytest.raises(TarFormatError, match="unexpected end of data"):
        _members(data[:1000])
    with pytest.raises(TarFormatError, match="truncated header"):
        _members(data[:len(_one("a", b"x" * 2000)) + 100])


def test_clean_ends() -> None:
    data = _one("a", b"x")
    assert _members(data) == ["a"]  # no end-of-archive blocks: the end of the stream
    assert _members(data + bytes(1024) + b"garbage after the end") == ["a"]
    with pytest.raises(TarFormatError, match="empty file"):
        _members(b"")


def test_corrupt_header_anywhere_is_an_error() -> None:
    bad = bytearray(_one("b", b"2"))
    bad[148:156] = b"0000000\x00"
    with pytest.raises(TarFormatError, match="corrupt member header at byte 1024: bad checksum"):
        _members(_one("a", b"1") + bytes(bad))
    odd = bytearray(_one("c", b""))
    odd[124:136] = b"zz\x00" + bytes(9)  # size field not octal (checksum fixed below)
    odd[148:156] = b" " * 8
    odd[148:156] = f"{sum(odd):06o}\x00 ".encode()
    with pytest.raises(TarFormatError, match="invalid numeric header field"):
        _members(bytes(odd))


def test_extended_headers_are_bounded_and_checked() -> None:
    huge = tarfile.TarInfo("././@PaxHeader")
    huge.type, huge.size = tarfile.XHDTYPE, 9 << 20
    with pytest.raises(TarFormatError, match="extended header of 9437184 bytes"):
        _members(huge.tobuf(tarfile.USTAR_FORMAT))
    record = b"30 path=" + b"p" * 10 + b"\n"  # the length says 30, the record is 19 bytes
    pax = tarfile.TarInfo("h")
    pax.type, pax.size = tarfile.XHDTYPE, len(record)
    with pytest.raises(TarFormatError, match="corrupt pax"):
        _members(pax.tobuf(tarfile.USTAR_FORMAT) + record + bytes(-len(record) % 512) + _one("a", b""))
    # an extended header followed by the end of the archive
    good = b"14 path=hello\n"
    pax.size = len(good)
    with pytest.raises(TarFormatError, match="after an extended header"):
        _members(pax.tobuf(tarfile.USTAR_FORMAT) + good + bytes(-len(good) % 512) + bytes(1024))


def test_global_headers_are_ignored_as_docker_does() -> None:
    record = b"15 path=hijack\n"
    glob = tarfile.TarInfo("g")
    glob.type, glob.size = tarfile.XGLTYPE, len(record)
    data = glob.tobuf(tarfile.USTAR_FORMAT) + record + bytes(-len(record) % 512) + _one("a", b"")
    assert _members(data) == ["a"]


def test_sparse_map_overrunning_the_member_is_refused() -> None:
    ti = tarfile.TarInfo("s")
    ti.size = 512
    ti.pax_headers = {"GNU.sparse.map": "0,100,50,600", "GNU.sparse.realsize": "1000"}  # runs overlap
    data = ti.tobuf(tarfile.PAX_FORMAT) + bytes(512)
    with pytest.raises(TarFormatError, match="overlap"):
        _members(data)
    ti.pax_headers = {"GNU.sparse.map": "0,100,500,600", "GNU.sparse.realsize": "1000"}  # 700 > 512 stored
    with pytest.raises(TarFormatError, match="overruns"):
        _members(ti.tobuf(tarfile.PAX_FORMAT) + bytes(512))


def test_contents_only_while_at_the_member() -> None:
    data = _one("a", b"1") + _one("b", b"2")
    with TarReader(io.BufferedReader(io.BytesIO(data))) as tr:  # type: ignore[arg-type]
        it = iter(tr)
        a = next(it)
        fa = tr.extractfile(a)
        b = next(it)
        with pytest.raises(TarFormatError):
            tr.extractfile(a)
        with pytest.raises(TarFormatError):
            fa.read()  # type: ignore[union-attr]
        assert tr.extractfile(b).read() == b"2"  # type: ignore[union-attr]


def test_a_checksum_summed_over_signed_bytes_is_accepted() -> None:
    """Old tar implementations summed the header as signed chars: a name with bytes over 0x7f
    then has another checksum, which tarfile accepts too."""
    header = bytearray(_one("caf\xe9", b"x", fmt=tarfile.GNU_FORMAT)[:512])
    header[148:156] = b" " * 8
    signed = sum(b - 256 if b > 127 else b for b in header)
    assert signed != sum(header)
    header[148:156] = f"{signed:06o}\x00 ".encode()
    data = bytes(header) + _one("caf\xe9", b"x", fmt=tarfile.GNU_FORMAT)[512:]
    assert _members(data) == ["caf\xe9"]
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert [m.name for m in tf] == ["caf\xe9"]


_SPELLINGS = [b"0000644\x00", b"0000644 ", b"644\x00\x00\x00\x00\x00", b" 644 \x00\x00\x00", b"00000644",
              b"\x00" * 8, b" " * 8, b"0000000\x00", b"06\x0044\x00\x00\x00", b"0_644\x00\x00\x00",
              b"+644\x00\x00\x00\x00", b"-644\x00\x00\x00\x00", b"\x0c644\x00\x00\x00\x00", b"zz\x00\x00\x00\x00\x00\x00",
              b"0000648\x00", b"06 44\x00\x00\x00", b"\x80" + bytes(6) + b"\x05", b"\xff" * 8,
              b"7777777\x00", b"7777777 ", b"\x00644\x00\x00\x00\x00"]


@pytest.mark.parametrize("spelling", _SPELLINGS)
def test_numeric_fields_read_the_same_in_either_path(spelling: bytes) -> None:
    """The one-go read of the common octal form gives what _num gives, field by field, for
    every spelling of every numeric field (and refuses what _num refuses)."""
    from slim.fs.tarstream import _num

    fields = {"mode": (100, 8), "uid": (108, 8), "gid": (116, 8), "size": (124, 12), "mtime": (136, 12)}
    for name, (at, width) in fields.items():
        raw = spelling if width == 8 else b"0000" + spelling if spelling[:1].isdigit() else spelling + bytes(4)
        header = bytearray(_one("a", b"")[:512])
        header[at:at + width] = raw
        header[148:156] = b" " * 8
        header[148:156] = f"{sum(header):06o}\x00 ".encode()
        try:
            want: int | str = _num(bytes(raw))
        except TarFormatError:
            want = "refused"
        try:
            got: int | str = getattr(TarReader._parse_header(bytes(header)), name)
        except TarFormatError:
            got = "refused"
        assert got == want, (name, raw)
