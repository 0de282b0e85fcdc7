"""The one forward-only reader of layer tars: headers parsed with `struct`, contents read only
when a caller asks for them.

`tarfile` in stream mode costs ~40 µs per member (a 10 KiB internal buffer, a TarInfo built
field by field, member data skipped through three layers of read calls); a layer of 18,000
members spent more time there than in decompressing it. This reader parses the formats
layers are written in — POSIX ustar, pax (local and global extended headers), GNU (long
names and link names, old-style sparse members) and the pax GNU sparse formats 0.0, 0.1 and
1.0 — with the same field semantics as `tarfile` (so every reader of a layer agrees on what
it holds), and it is stricter where `tarfile` is silent:

* a corrupt header anywhere is an error (tarfile ends the archive there without a word);
* a stream that ends inside a header, inside member data or right after an extended
  header is an error;
* pax global headers are ignored, as Docker ignores them (tarfile applies them, path
  included, to every later member);
* an extended header (pax, GNU long name) larger than MAX_EXTENDED_HEADER is refused before
  it is read; so is a negative size, an out-of-range id or mtime, a NUL in a link target,
  and a sparse map whose runs overlap, run backwards or overrun the member.

Members expose the `tarfile.TarInfo` attributes slim uses (name, type, linkname, mode, uid,
gid, size, mtime, devmajor, devminor, pax_headers and the is*() tests); errors are
`tarfile.ReadError`, so callers keep catching `tarfile.TarError`.
"""

from __future__ import annotations

import io
import math
import re
import struct
import tarfile
from collections.abc import Iterator
from typing import BinaryIO

BLOCK = 512
MAX_EXTENDED_HEADER = 8 << 20  # a pax or GNU long-name header is read into memory whole
MAX_SPARSE_RUNS = 1 << 20
_ZERO = bytes(BLOCK)
_CHUNK = 1 << 20

# typeflags (POSIX.1-2008 ustar, pax; GNU)
REGTYPE, AREGTYPE, LNKTYPE, SYMTYPE = b"0", b"\0", b"1", b"2"
CHRTYPE, BLKTYPE, DIRTYPE, FIFOTYPE, CONTTYPE = b"3", b"4", b"5", b"6", b"7"
GNU_LONGNAME, GNU_LONGLINK, GNU_SPARSE = b"L", b"K", b"S"
PAX_LOCAL, PAX_GLOBAL, SOLARIS_PAX = b"x", b"g", b"X"
_REGULAR = frozenset((REGTYPE, AREGTYPE, CONTTYPE, GNU_SPARSE))
_SUPPORTED = _REGULAR | {LNKTYPE, SYMTYPE, CHRTYPE, BLKTYPE, DIRTYPE, FIFOTYPE}
_GNU_TYPES = frozenset((GNU_LONGNAME, GNU_LONGLINK, GNU_SPARSE))
_EXTENDED = frozenset((PAX_LOCAL, PAX_GLOBAL, SOLARIS_PAX, GNU_LONGNAME, GNU_LONGLINK))
_SIGNED = struct.Struct("148b8x356b")
_END = (0, 0x20)  # what ends a numeric field
_PAX_RECORD = re.compile(rb"(\d+) ([^=]+)=")
_PAX_INT = ("size", "uid", "gid")


class TarFormatError(tarfile.ReadError):
    """A tar stream slim refuses to read (corrupt, truncated or hostile)."""


def _str(field: bytes) -> str:
    end = field.find(b"\0")
    return (field if end < 0 else field[:end]).decode("utf-8", "surrogateescape")


def _num(field: bytes) -> int:
    """A numeric header field: octal digits, or GNU base-256 (high bit set; 0xff negative)."""
    if field[0] in (0x80, 0xFF):
        n = int.from_bytes(field[1:], "big")
        return n - (256 ** (len(field) - 1)) if field[0] == 0xFF else n
    end = field.find(b"\0")
    text = (field if end < 0 else field[:end]).strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise TarFormatError(f"invalid numeric header field {bytes(field)!r}") from None


class TarMember:
    """One member: the attributes of tarfile.TarInfo that slim reads."""

    __slots__ = ("devmajor", "devminor", "gid", "linkname", "mode", "mtime", "name",
                 "pax_headers", "size", "sparse", "stored", "type", "uid")

    def __init__(self) -> None:
        self.name = ""
        self.type = REGTYPE
        self.mode = 0
        self.uid = 0
        self.gid = 0
        self.size = 0  # the file's size (a sparse file's expanded size)
        self.mtime: int | float = 0
        self.linkname = ""
        self.devmajor = 0
        self.devminor = 0
        self.pax_headers: dict[str, str] = {}
        self.sparse: list[tuple[int, int]] | None = None  # (offset, length) data runs
        self.stored = 0  # data bytes that follow the header(s) in the archive

    def isreg(self) -> bool:
        return self.type in _REGULAR

    isfile = isreg

    def isdir(self) -> bool:
        return self.type == DIRTYPE

    def issym(self) -> bool:
        return self.type == SYMTYPE

    def islnk(self) -> bool:
        return self.type == LNKTYPE

    def ischr(self) -> bool:
        return self.type == CHRTYPE

    def isblk(self) -> bool:
        return self.type == BLKTYPE

    def isfifo(self) -> bool:
        return self.type == FIFOTYPE

    def isdev(self) -> bool:
        return self.type in (CHRTYPE, BLKTYPE, FIFOTYPE)

    def __repr__(self) -> str:
        return f"<TarMember {self.name!r} type {self.type!r} size {self.size}>"


class TarReader:
    """Iterate the members of a tar stream; `extractfile(member)` reads the current one."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.offset = 0  # bytes consumed from the stream
        self._pending = 0  # data + padding of the current member not read yet
        self._current: TarMember | None = None
        self._reader: _MemberReader | None = None
        self._scratch = bytearray(_CHUNK)

    def __enter__(self) -> TarReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._current = None

    # -- raw stream ----------------------------------------------------------------------------
    def _read(self, n: int) -> bytes:
        data = self._stream.read(n)
        if len(data) < n:
            parts = [data]
            got = len(data)
            while got < n:
                more = self._stream.read(n - got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        self.offset += len(data)
        return data

    def _exact(self, n: int, what: str) -> bytes:
        data = self._read(n)
        if len(data) != n:
            raise TarFormatError(f"unexpected end of data in {what} at byte {self.offset}")
        return data

    def _skip(self, n: int) -> None:
        view = memoryview(self._scratch)
        while n > 0:
            got = self._stream.readinto(view[: min(n, _CHUNK)])  # type: ignore[attr-defined]
            if not got:
                raise TarFormatError(f"unexpected end of data at byte {self.offset}")
            n -= got
            self.offset += got

    # -- members -------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[TarMember]:
        while True:
            if self._reader is not None:
                self._reader.detach_member()
                self._reader = None
            if self._pending:
                self._skip(self._pending)
                self._pending = 0
            member = self._next()
            if member is None:
                return
            self._current = member
            yield member

    def _block(self, first: bool) -> bytes | None:
        """The next header block; None at a clean end (a zero block, or the end of the stream
        at a block boundary after the first member)."""
        buf = self._read(BLOCK)
        if not buf:
            if first and self.offset == 0:
                raise TarFormatError("empty file")
            if not first:
                raise TarFormatError(f"unexpected end of data after an extended header at byte {self.offset}")
            return None
        if len(buf) != BLOCK:
            raise TarFormatError(f"truncated header at byte {self.offset - len(buf)}")
        if buf == _ZERO:
            if not first:
                raise TarFormatError(f"end-of-archive block after an extended header at byte {self.offset - BLOCK}")
            return None
        return buf

    def _next(self) -> TarMember | None:
        local: dict[str, str] = {}
        longname: str | None = None
        longlink: str | None = None
        sparse_raw = b""
        first = True
        while True:
            buf = self._block(first)
            if buf is None:
                return None
            at = self.offset - BLOCK
            member = self._header(buf, at)
            if member.type not in _EXTENDED:
                break
            first = False
            if not 0 <= member.size <= MAX_EXTENDED_HEADER:
                raise TarFormatError(f"extended header of {member.size} bytes at byte {at} "
                                     f"(at most {MAX_EXTENDED_HEADER})")
            data = self._exact(member.size, "an extended header")
            self._skip(-member.size % BLOCK)
            if member.type == GNU_LONGNAME:
                longname = _str(data)
            elif member.type == GNU_LONGLINK:
                longlink = _str(data)
            elif member.type != PAX_GLOBAL:  # global headers are ignored, as Docker does
                local.update(_pax_records(data))
                sparse_raw += data
        if longname is not None:
            member.name = longname
        if longlink is not None:
            member.linkname = longlink
        stored = member.size
        realsize = None
        if member.type == GNU_SPARSE:
            member.sparse, realsize = self._old_gnu_sparse(buf)
        if local:
            _apply_pax(member, local)
            stored = member.size  # the pax size, when there is one, is the stored size
            for key in ("GNU.sparse.size", "GNU.sparse.realsize"):
                if key in local:
                    realsize = _decimal(local[key], key, member.name)
        if member.isdir():
            member.name = member.name.rstrip("/")
        if member.isreg() or member.type not in _SUPPORTED:
            member.stored = stored
        self._check(member, stored)
        self._pending = member.stored + (-member.stored % BLOCK)
        if realsize is not None:
            member.size = realsize
        if "GNU.sparse.map" in local:  # pax sparse 0.1
            member.sparse = _pairs(local["GNU.sparse.map"].split(","), member.name)
        elif "GNU.sparse.size" in local:  # pax sparse 0.0: the runs are repeated records
            offsets = re.findall(rb"\d+ GNU.sparse.offset=(\d+)\n", sparse_raw)
            lengths = re.findall(rb"\d+ GNU.sparse.numbytes=(\d+)\n", sparse_raw)
            if len(offsets) != len(lengths):
                raise TarFormatError(f"{member.name}: corrupt sparse map")
            member.sparse = _pairs([x for pair in zip(offsets, lengths, strict=True) for x in pair],
                                   member.name)
        elif local.get("GNU.sparse.major") == "1" and local.get("GNU.sparse.minor") == "0":
            member.sparse = self._gnu_sparse_10(member)
        if member.sparse is not None:
            if not member.isreg():
                raise TarFormatError(f"{member.name}: a sparse map on a member that is no file")
            _check_sparse(member)
        return member

    def _header(self, buf: bytes, at: int) -> TarMember:
        try:
            return self._parse_header(buf)
        except TarFormatError as exc:
            raise TarFormatError(f"corrupt member header at byte {at}: {exc}") from None

    @staticmethod
    def _parse_header(buf: bytes) -> TarMember:
        chksum = _num(buf[148:156])  # the sum of the header's bytes, its own field read as spaces
        if chksum != 256 + sum(buf) - sum(buf[148:156]) and chksum != 256 + sum(_SIGNED.unpack_from(buf)):
            raise TarFormatError("bad checksum")  # (old tars summed signed bytes)
        m = TarMember()
        # The common form of the five numbers, octal digits and one NUL or space (what Docker,
        # GNU tar and Go's archive/tar write), is read in one go; any other form, and any field
        # the one go refuses, is read field by field by _num, which gives the same value.
        if buf[107] in _END and buf[115] in _END and buf[123] in _END and buf[135] in _END \
                and buf[147] in _END:
            try:
                m.mode = int(buf[100:107], 8)
                m.uid = int(buf[108:115], 8)
                m.gid = int(buf[116:123], 8)
                m.size = int(buf[124:135], 8)
                m.mtime = int(buf[136:147], 8)
            except ValueError:
                TarReader._numbers(m, buf)
        else:
            TarReader._numbers(m, buf)
        return TarReader._names(m, buf)

    @staticmethod
    def _numbers(m: TarMember, buf: bytes) -> None:
        m.mode = _num(buf[100:108])
        m.uid = _num(buf[108:116])
        m.gid = _num(buf[116:124])
        m.size = _num(buf[124:136])
        m.mtime = _num(buf[136:148])

    @staticmethod
    def _names(m: TarMember, buf: bytes) -> TarMember:
        m.name = _str(buf[0:100])
        m.type = buf[156:157]
        m.linkname = _str(buf[157:257])
        if m.type in (CHRTYPE, BLKTYPE):
            m.devmajor = _num(buf[329:337])
            m.devminor = _num(buf[337:345])
        if m.type == AREGTYPE and m.name.endswith("/"):  # old V7: a directory
            m.type = DIRTYPE
        if m.type not in _GNU_TYPES and buf[345] != 0:
            prefix = _str(buf[345:500])
            if prefix:
                m.name = prefix + "/" + m.name
        return m

    def _old_gnu_sparse(self, buf: bytes) -> tuple[list[tuple[int, int]], int]:
        runs: list[tuple[int, int]] = []
        for i in range(4):
            pos = 386 + 24 * i
            if buf[pos] == 0:
                break
            runs.append((_num(buf[pos:pos + 12]), _num(buf[pos + 12:pos + 24])))
        realsize = _num(buf[483:495])
        extended = buf[482]
        while extended:
            ext = self._exact(BLOCK, "a sparse header")
            for i in range(21):
                pos = 24 * i
                if ext[pos] == 0:
                    break
                runs.append((_num(ext[pos:pos + 12]), _num(ext[pos + 12:pos + 24])))
            if len(runs) > MAX_SPARSE_RUNS:
                raise TarFormatError(f"more than {MAX_SPARSE_RUNS} sparse runs")
            extended = ext[504]
        return runs, realsize

    def _gnu_sparse_10(self, member: TarMember) -> list[tuple[int, int]]:
        """The map that opens the data of a pax 1.0 sparse member (decimal numbers, one per
        line: the count, then offset/length pairs, padded to a block)."""
        numbers: list[bytes] = []
        buf = b""
        used = 0
        count = -1
        while count < 0 or len(numbers) < 1 + 2 * count:
            if b"\n" not in buf:
                if used + BLOCK > member.stored or used >= MAX_EXTENDED_HEADER:
                    raise TarFormatError(f"{member.name}: sparse map overruns the member")
                buf += self._exact(BLOCK, "a sparse map")
                used += BLOCK
                continue
            line, buf = buf.split(b"\n", 1)
            if not line.isdigit():
                raise TarFormatError(f"{member.name}: corrupt sparse map")
            numbers.append(line)
            if count < 0:
                count = int(line)
                if count > MAX_SPARSE_RUNS:
                    raise TarFormatError(f"{member.name}: more than {MAX_SPARSE_RUNS} sparse runs")
        member.stored -= used
        self._pending -= used
        return _pairs(numbers[1:], member.name)

    @staticmethod
    def _check(m: TarMember, stored: int) -> None:
        name = m.name
        if m.size < 0 or stored < 0:
            raise TarFormatError(f"{name}: negative size {min(m.size, stored)}")
        for what in ("uid", "gid"):
            value = getattr(m, what)
            if not 0 <= value < 1 << 32:
                raise TarFormatError(f"{name}: {what} {value} out of range")
        if not math.isfinite(m.mtime) or abs(m.mtime) >= 1 << 62:
            raise TarFormatError(f"{name}: mtime {m.mtime} out of range")
        if "\x00" in m.linkname:
            raise TarFormatError(f"{name}: link target contains a NUL byte")
        if not 0 <= m.mode < 1 << 32:
            raise TarFormatError(f"{name}: mode {m.mode} out of range")

    def extractfile(self, member: TarMember) -> BinaryIO | None:
        """A reader of `member`'s contents (sparse members expanded, holes as zeros); only for
        the member the iteration is at, valid until the next one. None for non-files."""
        if not member.isreg():
            return None
        if member is not self._current:
            raise TarFormatError(f"{member.name}: contents asked for after the reader moved on")
        if self._reader is None:
            self._reader = _MemberReader(self, member)
        return self._reader  # type: ignore[return-value]


def _decimal(value: str, key: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise TarFormatError(f"{name}: invalid {key} {value!r}") from None


def _pax_records(data: bytes) -> dict[str, str]:
    """The records of one pax extended header (POSIX.1-2008 pax "Extended Header Records")."""
    out: dict[str, str] = {}
    pos = 0
    while (m := _PAX_RECORD.match(data, pos)) is not None:
        length = int(m.group(1))
        if length < len(m.group(0)) + 1 or pos + length > len(data) or data[pos + length - 1:pos + length] != b"\n":
            raise TarFormatError("corrupt pax extended header record")
        key = m.group(2).decode("utf-8", "surrogateescape")
        out[key] = data[m.end():pos + length - 1].decode("utf-8", "surrogateescape")
        pos += length
    return out


def _apply_pax(m: TarMember, pax: dict[str, str]) -> None:
    """The pax records that replace header fields (POSIX.1-2008 pax "pax Header Block"), with
    tarfile's reading of them: a number that does not parse counts as 0."""
    for key, value in pax.items():
        if key == "path":
            m.name = value.rstrip("/")
        elif key == "linkpath":
            m.linkname = value
        elif key in _PAX_INT:
            try:
                setattr(m, key, int(value))
            except ValueError:
                setattr(m, key, 0)
        elif key == "mtime":
            try:
                m.mtime = float(value)
            except ValueError:
                m.mtime = 0
        elif key == "GNU.sparse.name":
            m.name = value
    m.pax_headers = dict(pax)


def _pairs(numbers: list[str] | list[bytes], name: str) -> list[tuple[int, int]]:
    try:
        values = [int(x) for x in numbers]
    except ValueError:
        raise TarFormatError(f"{name}: corrupt sparse map") from None
    if len(values) % 2 or len(values) > 2 * MAX_SPARSE_RUNS:
        raise TarFormatError(f"{name}: corrupt sparse map")
    return list(zip(values[::2], values[1::2], strict=True))


def _check_sparse(m: TarMember) -> None:
    """Runs must be in order, not overlap, end within the file and fit the stored bytes."""
    assert m.sparse is not None
    end = 0
    total = 0
    for offset, length in m.sparse:
        if offset < end or length < 0:
            raise TarFormatError(f"{m.name}: sparse runs overlap or run backwards")
        end = offset + length
        total += length
    if end > m.size or total > m.stored:
        raise TarFormatError(f"{m.name}: sparse map overruns the member ({end} > {m.size} or "
                             f"{total} stored bytes > {m.stored})")


class _MemberReader(io.RawIOBase):
    """The current member's contents, read from the stream as asked (holes of a sparse
    member as zeros, never stored)."""

    def __init__(self, tar: TarReader, member: TarMember) -> None:
        self._tar = tar
        self._pos = 0  # position in the (expanded) file
        self._size = member.size if member.sparse is not None else min(member.size, member.stored)
        # (file offset, length, stored?) extents covering [0, size)
        extents: list[tuple[int, int, bool]] = []
        if member.sparse is None:
            extents.append((0, self._size, True))
        else:
            at = 0
            for offset, length in member.sparse:
                if offset > at:
                    extents.append((at, offset - at, False))
                if length:
                    extents.append((offset, length, True))
                at = offset + length
            if member.size > at:
                extents.append((at, member.size - at, False))
        self._extents = extents
        self._i = 0
        self._attached = True

    def detach_member(self) -> None:
        self._attached = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that is left when negative), short only at the end."""
        left = self._size - self._pos
        n = left if size is None or size < 0 else min(size, left)
        parts: list[bytes] = []
        while n > 0:  # in pieces: a header may claim more than the stream holds
            buf = bytearray(min(n, _CHUNK))
            got = self.readinto(buf)
            if not got:
                break
            parts.append(bytes(buf) if got == len(buf) else bytes(buf[:got]))
            n -= got
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self._attached:
            raise TarFormatError("member contents read after the reader moved on")
        while self._i < len(self._extents):
            offset, length, stored = self._extents[self._i]
            left = offset + length - self._pos
            if left <= 0:
                self._i += 1
                continue
            n = min(len(b), left)
            if not stored:
                b[:n] = bytes(n)
                self._pos += n
                return n
            tar = self._tar
            got = tar._stream.readinto(memoryview(b)[:n])  # type: ignore[attr-defined]
            if not got:
                raise TarFormatError(f"unexpected end of data at byte {tar.offset}")
            tar.offset += got
            tar._pending -= got
            self._pos += got
            return got
        return 0


__all__ = ["MAX_EXTENDED_HEADER", "TarFormatError", "TarMember", "TarReader"]
