"""Reading one layer blob in a single streaming pass.

The blob is hashed as it is read (its stored digest) and so is the uncompressed tar (its
diff_id). Compression is sniffed from the first bytes: gzip, zstd or none. Every member header
becomes a FileEntry; contents are read only for analysis candidates (ELF, scripts, language
sources, package databases, configs), which are copied into a ContentStore on disk so later reads
need no second decompression. Unsafe members (names climbing above the root, hardlinks to
outside) are skipped and reported as Issues; they never reach the host filesystem.

The blob is untrusted, so every cost is bounded by its size or by a constant:

* decompression hands out at most INFLATE_STEP bytes per step (zlib `max_length`; zstd is fed at
  most ZSTD_BLOCKS_PER_STEP blocks of at most 128 KiB each, RFC 8878 §3.1.1.2.4), so a
  1 MB frame that expands to 4 GiB never sits in memory;
* tar headers are parsed by slim.fs.tarstream, which refuses extended headers (PAX, GNU long
  names) larger than MAX_EXTENDED_HEADER, a corrupt header anywhere, a stream that ends
  inside a member, a negative size and a sparse map that overruns its member;
* a sparse member's holes are never stored: its contents are expanded only when read, and
  written back as holes (slim.outputs.SparseWriter);
* a member path seen twice in one layer, a member written through a symlink of the same
  layer, or a non-directory over a directory the layer already wrote into is refused
  (LayerError naming the member): the two readers of a layer (this model, fs.extract) would
  otherwise disagree about what the image holds;
* whiteouts must name one entry (`.wh.NAME`, NAME not empty, `.` or `..`; `.wh..wh.*` other
  than the opaque marker is reserved by the OCI image-spec) or they are ignored with an Issue.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import logging
import math
import os
import queue
import tarfile
import tempfile
import threading
import types
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Self, cast

from slim.errors import LayerError
from slim.fs.tarstream import MAX_EXTENDED_HEADER, TarMember, TarReader
from slim.fs.tree import OPAQUE_MARKER, WHITEOUT_PREFIX, FileTree
from slim.globs import GlobSet
from slim.model import EntryKind, FileEntry, Issue, LayerInfo, normpath, parent
from slim.outputs import SparseWriter

log = logging.getLogger(__name__)

_gzip_mod: types.ModuleType = gzip
_inflate_mod: types.ModuleType = zlib
_INFLATE_ERRORS: tuple[type[BaseException], ...] = (zlib.error,)
try:  # ISA-L inflates gzip about twice as fast as zlib (same format, same checks)
    from isal import igzip as _igzip
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
    pass
else:
    _gzip_mod, _inflate_mod = _igzip, _isal_zlib
    _INFLATE_ERRORS = (zlib.error, cast(type[BaseException], _isal_zlib.error))

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 1 << 20
# Bytes the reader thread inflates (and reads of the blob) per step, and the steps it may hold
# ready: 16 MiB in flight, as in 16 steps of 1 MiB, but a quarter of the returns to the GIL.
# Each inflate call gives the GIL back and must take it again from the thread parsing the tar,
# which hands it over only at a switch interval (slim.tune_switching): in 1 MiB steps the
# inflater spent as long waiting as working (Django's layers: 0.8 s for 0.4 s of its CPU).
INFLATE_STEP = 4 << 20
INFLATE_AHEAD = 4

# Contents larger than this are not copied for analysis; the file is kept and reported.
MAX_STORED_FILE = 1 << 30
HEAD_BYTES = 4
MAX_PACKS = 128  # per-layer pack files of a content store (Docker's overlay2 stacks at most 128 layers)
ZSTD_BLOCKS_PER_STEP = 32  # x 128 KiB of output at most per decompress() call (INFLATE_STEP)
READ_BUFFER = 16 << 10  # readers of stored contents: small reads must stay small
SMALL_FILE = 64 << 10  # a stored file this small is gathered with others into one write
GATHER_BYTES = 1 << 20  # bytes gathered before they are written
DIGEST_ALGORITHMS = ("sha256", "sha384", "sha512")  # OCI image-spec descriptor.md "Digests"

@dataclass(frozen=True)
class Capture:
    """Which file contents the layer reader copies for analysis: regular files whose path
    matches one of `globs` (slim.globs dialect) or whose first bytes start with one of
    `magics`. Analyzers and rules declare theirs; the union is passed to the ContentStore."""

    globs: tuple[str, ...] = ()
    magics: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        for magic in self.magics:
            if not 0 < len(magic) <= HEAD_BYTES:
                raise ValueError(f"capture magic {magic!r}: 1 to {HEAD_BYTES} bytes")

    def __or__(self, other: Capture) -> Capture:
        return Capture(tuple(dict.fromkeys(self.globs + other.globs)),
                       tuple(dict.fromkeys(self.magics + other.magics)))

    def matcher(self) -> Callable[[str, bytes], bool]:
        """A fast `(path, head) -> bool` test for this policy."""
        globs = GlobSet(self.globs)
        magics = self.magics

        def wants(path: str, head: bytes) -> bool:
            return head.startswith(magics) or globs.match(path)

        return wants


class ZstdReader(io.RawIOBase):
    """A readable stream of zstd-decompressed data (multi-frame safe)."""

    def __init__(self, raw: BinaryIO) -> None:
        import zstandard

        self._reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._reader.read(len(b))
        n = len(data)
        b[:n] = data
        return n


class _Peek(io.RawIOBase):
    """Lets us sniff the first bytes of a non-seekable stream and still read them."""

    def __init__(self, raw: BinaryIO, head: bytes) -> None:
        self.raw = raw
        self.head = head

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.head:
            n = min(len(b), len(self.head))
            b[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.raw.read(len(b))
        n = len(data)
        b[:n] = data
        return n


def decompressed(blob: BinaryIO) -> tuple[BinaryIO, str]:
    """Sniff the compression of `blob`; return the tar stream and "gzip" | "zstd" | "none"."""
    head = blob.read(4)
    peek = io.BufferedReader(_Peek(blob, head), CHUNK)
    if head.startswith(GZIP_MAGIC):
        return cast(BinaryIO, _gzip_mod.GzipFile(fileobj=peek, mode="rb")), "gzip"
    if head.startswith(ZSTD_MAGIC):
        return io.BufferedReader(ZstdReader(peek), CHUNK), "zstd"
    return peek, "none"


def corrupt_errors() -> tuple[type[BaseException], ...]:
    """What reading a corrupt, truncated or hostile layer stream raises (tarfile, zlib,
    zstandard, gzip and the file layer), for callers that turn it into a LayerError."""
    import zstandard

    return (EOFError, *_INFLATE_ERRORS, tarfile.TarError, OSError, zstandard.ZstdError)


class PackReader(io.RawIOBase):
    """A read-only window of the pack file, read with pread (no per-file open or seek state).

    Every read asks the kernel for exactly what was asked (or what is left): a 2-byte read of a
    large file is a 2-byte pread, not a buffer refill (50k hard links to one big file were
    50k 1 MiB copies), and `read()` of the whole window is one allocation.
    """

    def __init__(self, fd: int, start: int, size: int) -> None:
        self.fd = fd
        self.start = start
        self.pos = start
        self.end = start + size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True  # pyelftools seeks around the ELF file

    def tell(self) -> int:
        return self.pos - self.start

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: self.start, os.SEEK_CUR: self.pos, os.SEEK_END: self.end}[whence]
        self.pos = max(self.start, base + offset)
        return self.pos - self.start

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self.end - self.pos)
        if n <= 0:
            return 0
        n = os.preadv(self.fd, [memoryview(b)[:n]], self.pos)
        self.pos += n
        return n

    def readall(self) -> bytes:
        parts: list[bytes] = []
        while self.pos < self.end:
            data = os.pread(self.fd, self.end - self.pos, self.pos)  # one allocation, usually
            if not data:
                break
            parts.append(data)
            self.pos += len(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)


def _store_error(path: str, exc: OSError) -> LayerError:
    return LayerError(f"{path}: cannot be stored for analysis in {tempfile.gettempdir()}: "
                      f"{exc.strerror or exc}")


class ContentStore:
    """File contents copied out of layers, keyed by layer + path.

    Contents are appended to one pack file per layer (one file per store and layer: on images
    with thousands of candidates, creating a file each cost more than decompressing). A pack is
    an unnamed file (O_TMPFILE): nothing is left behind however the process ends, even on
    SIGKILL; the layer cache (slim.layer_cache) may give it a name in the cache once the layer
    was read whole. Zero runs become holes (slim.outputs.SparseWriter), so a zero-filled bomb
    costs no disk. A rootfs: source references host files instead of copying them. `capture`
    says which files are copied (None: every regular file, for tools and tests).
    """

    def __init__(self, capture: Capture | None = None, pack_dir: str | None = None) -> None:
        self.wants: Callable[[str, bytes], bool] = (
            capture.matcher() if capture is not None else (lambda _path, _head: True))
        # an empty policy: the layer reader need not even look at the first bytes of a file
        self.captures = capture is None or bool(capture.globs or capture.magics)
        self.index: dict[tuple[int, str], tuple[int, int]] = {}  # → (offset, size) in the layer's pack
        self.host: dict[tuple[int, str], str] = {}
        self.capture = capture
        self.pack_dir = pack_dir  # where new packs live (a cache directory), else TMPDIR
        self.packs_in_dir: set[int] = set()  # layers whose pack was created in pack_dir
        self._packs: dict[int, BinaryIO] = {}  # layer → its pack
        self._sizes: dict[int, int] = {}  # pack fd → bytes written
        self._overflow: BinaryIO | None = None  # shared by the layers beyond MAX_PACKS
        self._gathered: dict[int, tuple[int, bytearray, str]] = {}  # pack fd → (offset, bytes, a path)
        self._hooks: list[tuple[str, Callable[[], None]]] = []  # see when_stored
        self._hook_suffixes: tuple[str, ...] = ()

    def when_stored(self, suffix: str, callback: Callable[[], None]) -> None:
        """Call `callback` once, when the first file whose path ends with `suffix` is stored."""
        self._hooks.append((suffix, callback))
        self._hook_suffixes = tuple(h[0] for h in self._hooks)

    def _stored(self, path: str) -> None:
        fired = [h for h in self._hooks if path.endswith(h[0])]
        for hook in fired:
            self._hooks.remove(hook)
        self._hook_suffixes = tuple(h[0] for h in self._hooks)
        for hook in fired:
            try:
                hook[1]()
            except Exception:  # a hint to start work early: the reading goes on without it
                logging.getLogger(__name__).debug("a store hook failed", exc_info=True)

    def _new_pack(self, layer: int) -> BinaryIO:
        if self.pack_dir is not None:
            try:  # unnamed, on the cache's filesystem: it can be linked there later
                fd = os.open(self.pack_dir, os.O_TMPFILE | os.O_RDWR, 0o600)
                self.packs_in_dir.add(layer)
                return os.fdopen(fd, "w+b")
            except (OSError, AttributeError):
                self.pack_dir = None
        return tempfile.TemporaryFile(prefix="slim-content-")

    def pack_fd(self, layer: int) -> int | None:
        """The file descriptor of `layer`'s pack (None when nothing of it was stored)."""
        self.flush()
        pack = self._packs.get(layer)
        return pack.fileno() if pack is not None else None

    def layer_index(self, layer: int) -> dict[str, tuple[int, int]]:
        """path → (offset, size) in `layer`'s pack."""
        return {path: loc for (lay, path), loc in self.index.items() if lay == layer}

    def attach_pack(self, layer: int, pack: BinaryIO, index: dict[str, tuple[int, int]]) -> None:
        """Use an existing pack (a cached layer's) for `layer`; the store closes it."""
        old = self._packs.pop(layer, None)
        if old is not None and old is not self._overflow:
            old.close()
        self._packs[layer] = pack
        for path, loc in index.items():
            self.index[(layer, path)] = loc

    def put_stream(self, layer: int, path: str, head: bytes, stream: BinaryIO) -> None:
        """Copy `head` and the rest of `stream` into the pack. Raises LayerError when the
        pack cannot be written (a full disk is not a corrupt layer).

        Small files are gathered and written GATHER_BYTES at a time (`flush`): one pwrite per
        file cost 34 µs on a disk-backed TMPDIR, 0.15 s of reading the Django image."""
        data = head + stream.read(CHUNK)
        more = stream.read(CHUNK) if len(data) <= SMALL_FILE else b""
        try:
            pack = self._packs.get(layer)
            if pack is None:
                if len(self._packs) < MAX_PACKS:
                    pack = self._new_pack(layer)
                else:  # a hostile image with thousands of layers must not cost a file each
                    if self._overflow is None:
                        self._overflow = tempfile.TemporaryFile(prefix="slim-content-")  # noqa: SIM115
                    pack = self._overflow
                self._packs[layer] = pack
            fd = pack.fileno()
            start = self._sizes.get(fd, 0)
            small = len(data) <= SMALL_FILE and not more  # the whole file, gathered
            if small:
                at, gathered, _ = self._gathered.get(fd) or (start, bytearray(), path)
                gathered += data
                self._gathered[fd] = (at, gathered, path)
                if len(gathered) >= GATHER_BYTES:
                    self._write_gathered(fd)
            else:
                if fd in self._gathered:
                    self._write_gathered(fd)  # the gathered files lie before this one
                writer = SparseWriter(fd, start)
                writer.write(data)
                if more:
                    writer.write(more)
        except OSError as exc:
            raise _store_error(path, exc) from None
        if not small:
            while chunk := stream.read(CHUNK):
                try:
                    writer.write(chunk)
                except OSError as exc:
                    raise _store_error(path, exc) from None
            writer.close()
        size = len(data) if small else writer.written
        self._sizes[fd] = start + size
        self.index[(layer, path)] = (start, size)
        if self._hook_suffixes and path.endswith(self._hook_suffixes):
            self._stored(path)

    def put_host_file(self, layer: int, path: str, host_path: str) -> None:
        """Reference a file that already lives on the host (rootfs: sources); no copy."""
        self.host[(layer, path)] = host_path

    def has(self, layer: int, path: str) -> bool:
        return (layer, path) in self.index or (layer, path) in self.host

    def _write_gathered(self, fd: int) -> None:
        at, gathered, _ = self._gathered.pop(fd)
        writer = SparseWriter(fd, at)  # zero blocks of the gathered files stay holes
        writer.write(bytes(gathered))
        writer.close()

    def flush(self) -> None:
        """Write the gathered small files (before their pack is read or handed on). Raises
        LayerError when a pack cannot be written."""
        for fd in list(self._gathered):
            path = self._gathered[fd][2]
            try:
                self._write_gathered(fd)
            except OSError as exc:
                raise _store_error(path, exc) from None

    def read(self, layer: int, path: str, limit: int | None = None) -> bytes | None:
        """Up to `limit` bytes of a stored file in one pread (None when not stored): a 2-byte
        `#!` check of a large file reads 2 bytes."""
        if self._gathered:
            self.flush()
        key = (layer, path)
        if key in self.index:
            start, size = self.index[key]
            fd = self._packs[layer].fileno()
            return PackReader(fd, start, min(size, size if limit is None else limit)).readall()
        stream = self.open(layer, path)
        if stream is None:
            return None
        with stream:
            return stream.read() if limit is None else stream.read(limit)

    def open(self, layer: int, path: str) -> BinaryIO | None:
        if self._gathered:
            self.flush()
        key = (layer, path)
        if key in self.index:
            start, size = self.index[key]
            return io.BufferedReader(PackReader(self._packs[layer].fileno(), start, size), READ_BUFFER)
        name = self.host.get(key)
        if name is None:
            return None
        # O_NOFOLLOW: the walk saw no symlink at this path; refuse one that appeared since.
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        return os.fdopen(fd, "rb", READ_BUFFER)

    def close(self) -> None:
        self._gathered.clear()
        for pack in self._packs.values():
            pack.close()  # the overflow pack more than once: closing is idempotent
        self._packs.clear()
        self._overflow = None


@dataclass
class LayerReadResult:
    """What one pass over a layer produced."""

    tree: FileTree
    issues: list[Issue] = field(default_factory=list)
    blob_digest: str = ""
    diff_id: str = ""
    compression: str = "none"
    blob_bytes: int = 0
    tar_bytes: int = 0


_TYPE_KIND = {
    tarfile.REGTYPE: EntryKind.FILE,
    tarfile.AREGTYPE: EntryKind.FILE,
    tarfile.CONTTYPE: EntryKind.FILE,
    tarfile.GNUTYPE_SPARSE: EntryKind.FILE,
    tarfile.DIRTYPE: EntryKind.DIR,
    tarfile.SYMTYPE: EntryKind.SYMLINK,
    tarfile.LNKTYPE: EntryKind.HARDLINK,
    tarfile.CHRTYPE: EntryKind.CHAR,
    tarfile.BLKTYPE: EntryKind.BLOCK,
    tarfile.FIFOTYPE: EntryKind.FIFO,
}


def _member_path(name: str) -> tuple[str | None, str | None]:
    """Normalize a tar member name; returns (path, problem). path is None when unsafe."""
    if "\x00" in name:
        return None, "member name contains a NUL byte"
    problem = None
    raw = name
    if raw.startswith("/"):
        problem = "absolute member name, taken relative to the image root"
        raw = raw.lstrip("/")
    split = raw.split("/")
    if ".." in split:
        depth = 0
        for part in split:
            if part in ("", "."):
                continue
            if part == "..":
                depth -= 1
                if depth < 0:
                    return None, "member name climbs above the image root; skipped"
            else:
                depth += 1
    return normpath(raw), problem


def _xattrs(member: TarMember) -> tuple[tuple[str, str], ...]:
    out = []
    for key, value in (member.pax_headers or {}).items():
        if key.startswith("SCHILY.xattr."):
            out.append((key[len("SCHILY.xattr.") :], value))
    return tuple(sorted(out))


class _ZstdFrames:
    """Walks the frame and block headers of a zstd stream (RFC 8878 §3.1) without decoding,
    to tell the decoder where it may stop: after at most ZSTD_BLOCKS_PER_STEP blocks (each
    decodes to at most 128 KiB, §3.1.1.2.4) and at every frame end. `complete` says whether
    the input so far ends between frames (else it was truncated). Skippable frames (§3.1.2)
    are walked over too."""

    def __init__(self) -> None:
        self.state = "magic"
        self.need = 4  # bytes the current state still wants
        self.buf = bytearray()  # a header being collected
        self.checksum = False
        self.blocks = 0  # block ends since the last cut

    @property
    def complete(self) -> bool:
        return self.state == "magic" and not self.buf

    def cuts(self, data: bytes) -> Iterator[tuple[int, bool]]:
        """Offsets into `data` after which the decoder should be called, each with whether a
        frame ends there. Raises ValueError on a malformed header."""
        i, n = 0, len(data)
        while i < n:
            if self.state in ("payload", "skip"):
                take = min(self.need, n - i)
                i += take
                self.need -= take
                if self.need == 0:
                    yield from self._after_payload(i)
                continue
            take = min(self.need - len(self.buf), n - i)
            self.buf += data[i : i + take]
            i += take
            if len(self.buf) == self.need:
                header = bytes(self.buf)
                self.buf.clear()
                yield from self._header(header, i)

    def _header(self, h: bytes, at: int) -> Iterator[tuple[int, bool]]:
        if self.state == "magic":
            magic = int.from_bytes(h, "little")
            if h == ZSTD_MAGIC:
                self.state, self.need = "descriptor", 1
            elif magic & 0xFFFFFFF0 == 0x184D2A50:
                self.state, self.need = "skip_size", 4
            else:
                raise ValueError("not a zstd frame")
        elif self.state == "descriptor":
            fhd = h[0]
            fcs_flag, single, dict_flag = fhd >> 6, (fhd >> 5) & 1, fhd & 3
            if fhd & 0x08:
                raise ValueError("reserved bit set in a zstd frame header")
            self.checksum = bool(fhd & 0x04)
            rest = (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
            rest += (1 if single else 0, 2, 4, 8)[fcs_flag]
            self.state, self.need = ("frame_rest", rest) if rest else ("block", 3)
        elif self.state == "frame_rest":
            self.state, self.need = "block", 3
        elif self.state == "block":
            header = int.from_bytes(h, "little")
            last, kind, size = header & 1, (header >> 1) & 3, header >> 3
            if kind == 3:
                raise ValueError("reserved zstd block type")
            self.last = bool(last)
            payload = 1 if kind == 1 else size
            self.state, self.need = "payload", payload
            if payload == 0:
                yield from self._after_payload(at)
        elif self.state == "checksum":
            yield from self._frame_end(at)
        elif self.state == "skip_size":
            size = int.from_bytes(h, "little")
            self.state, self.need = "skip", size
            if size == 0:
                yield from self._frame_end(at)

    def _after_payload(self, at: int) -> Iterator[tuple[int, bool]]:
        if self.state == "skip":
            yield from self._frame_end(at)
            return
        self.blocks += 1
        if self.last:
            if self.checksum:
                self.state, self.need = "checksum", 4
            else:
                yield from self._frame_end(at)
            return
        self.state, self.need = "block", 3
        if self.blocks >= ZSTD_BLOCKS_PER_STEP:
            self.blocks = 0
            yield at, False

    def _frame_end(self, at: int) -> Iterator[tuple[int, bool]]:
        self.state, self.need, self.blocks = "magic", 4, 0
        yield at, True


class _Decoder:
    """Incremental decompression of gzip (multi-member), zstd (multi-frame) or plain data,
    handing out at most INFLATE_STEP bytes per piece whatever the compression ratio.

    zlib and zstandard release the GIL on large buffers, so running this in a thread lets the
    tar parsing in the caller's thread use the second core. `truncated` tells, at the end of
    the input, whether it stopped inside a member (gzip) or frame (zstd).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.in_member = False
        self._frames = _ZstdFrames() if kind == "zstd" else None
        self._obj: Any = self._new() if kind != "none" else None

    def _new(self) -> Any:
        if self.kind == "gzip":
            return _inflate_mod.decompressobj(31)  # gzip header, CRC32 and ISIZE trailer checked
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self.kind == "none":
            yield data
        elif self.kind == "gzip":
            yield from self._gzip(data)
        else:
            yield from self._zstd(data)

    def _gzip(self, data: bytes) -> Iterator[bytes]:
        while data:
            self.in_member = True
            out = self._obj.decompress(data, INFLATE_STEP)
            if out:
                yield out
            if self._obj.eof:
                # member complete: what follows is the next one (or padding)
                data = self._obj.unused_data
                self._obj = self._new()
                self.in_member = False
                if not data.strip(b"\x00"):
                    return  # zero padding after the last gzip member
                continue
            data = self._obj.unconsumed_tail
            while not data and len(out) == INFLATE_STEP:
                out = self._obj.decompress(b"", INFLATE_STEP)  # output still held back by zlib
                if out:
                    yield out
                data = self._obj.unconsumed_tail

    def _zstd(self, data: bytes) -> Iterator[bytes]:
        assert self._frames is not None
        view = memoryview(data)
        done = 0
        try:
            cuts = list(self._frames.cuts(data))
        except ValueError as exc:
            raise EOFError(f"corrupt zstd stream: {exc}") from None
        for at, frame_end in [*cuts, (len(data), False)]:
            if at > done:
                self.in_member = True
                out = self._obj.decompress(view[done:at])
                if out:
                    yield out
                done = at
            if frame_end:
                if not self._obj.eof:
                    raise EOFError("zstd frame ended before its last block decoded")
                self._obj = self._new()
                self.in_member = False
        self.in_member = not self._frames.complete

    @property
    def truncated(self) -> bool:
        return self.in_member


class _Pipe(io.RawIOBase):
    """Reads a blob in a background thread: decompress and hand the tar bytes over through a
    bounded queue; a third thread hashes the stored bytes and the tar (hashlib and the
    inflaters release the GIL, so with the reader's own parsing the three share the cores:
    hashing inline made the decompressing thread the bottleneck, the reader waited on it 0.3-1.4 s
    per image). Errors re-raise in the reader. `finish` waits for the digests."""

    def __init__(self, blob: BinaryIO, on_bytes: Callable[[int], None] | None,
                 blob_alg: str = "sha256", tar_alg: str = "sha256") -> None:
        self.blob_sha = hashlib.sha256()
        self.tar_sha = hashlib.sha256()
        # the manifest or config may name another algorithm: verify with that one too
        self.blob_other = hashlib.new(blob_alg) if blob_alg != "sha256" else None
        self.tar_other = hashlib.new(tar_alg) if tar_alg != "sha256" else None
        self.blob_count = 0
        self.tar_count = 0
        self.compression = "none"
        self._q: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=INFLATE_AHEAD)
        self._hq: queue.Queue[tuple[tuple[Any, ...], bytes] | None] = queue.Queue(maxsize=INFLATE_AHEAD)
        self._buf = memoryview(b"")
        self._done = False
        self._stop = threading.Event()
        self._on_bytes = on_bytes
        self._blob = blob
        self._blob_hashes = tuple(h for h in (self.blob_sha, self.blob_other) if h is not None)
        self._tar_hashes = tuple(h for h in (self.tar_sha, self.tar_other) if h is not None)
        self._hash_error: BaseException | None = None
        self._hasher = threading.Thread(target=self._hash, name="slim-layer-hasher", daemon=True)
        self._hasher.start()
        self._thread = threading.Thread(target=self._run, name="slim-layer-reader", daemon=True)
        try:
            self._thread.start()
        except BaseException:
            self._stop.set()  # the hasher ends too
            raise

    def _put(self, item: object, into: queue.Queue[Any] | None = None) -> None:
        into = cast("queue.Queue[Any]", self._q) if into is None else into
        while not self._stop.is_set():
            try:
                into.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _hash(self) -> None:
        while True:
            try:
                item = self._hq.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if item is None:
                return
            if self._hash_error is not None:
                continue  # keep taking what the reader puts, so it never blocks; finish raises
            hashes, data = item
            try:
                for h in hashes:
                    h.update(data)
            except BaseException as exc:  # re-raised by finish
                self._hash_error = exc

    def _run(self) -> None:
        try:
            chunk = self._blob.read(INFLATE_STEP)
            if chunk.startswith(GZIP_MAGIC):
                self.compression = "gzip"
            elif chunk.startswith(ZSTD_MAGIC):
                self.compression = "zstd"
            decoder = _Decoder(self.compression)
            blob_hashes, tar_hashes = self._blob_hashes, self._tar_hashes
            if self.compression == "none":
                # the tar is the blob: hash its bytes once, for the digests of both
                self.tar_sha = self.blob_sha
                if self.tar_other is not None and self.blob_other is not None \
                        and self.tar_other.name == self.blob_other.name:
                    self.tar_other = self.blob_other
                blob_hashes = tuple(dict.fromkeys((*self._blob_hashes, self.tar_sha, *(
                    (self.tar_other,) if self.tar_other is not None else ()))))
                tar_hashes = ()
            while chunk and not self._stop.is_set():
                self._put((blob_hashes, chunk), self._hq)
                self.blob_count += len(chunk)
                for piece in decoder.feed(chunk):
                    if piece:
                        if tar_hashes:
                            self._put((tar_hashes, piece), self._hq)
                        self.tar_count += len(piece)
                        self._put(piece)
                if self._on_bytes is not None:
                    self._on_bytes(len(chunk))
                chunk = self._blob.read(INFLATE_STEP)
            if decoder.truncated:
                raise EOFError("compressed stream ended before its end marker")
            self._put(None, self._hq)
            self._put(None)
        except BaseException as exc:  # handed to the reading thread
            self._put(exc)

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buf and not self._done:
            item = self._q.get()
            if item is None:
                self._done = True
            elif isinstance(item, BaseException):
                self._done = True
                raise item
            else:
                self._buf = memoryview(item)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def finish(self) -> None:
        """Wait until every byte read is hashed (after the stream's end was read); re-raises
        what hashing raised."""
        self._hasher.join()
        if self._hash_error is not None:
            raise self._hash_error

    def stop(self) -> None:
        """End the reader and hasher threads (after an error while parsing)."""
        self._stop.set()
        self._thread.join()
        self._hasher.join()


def _check_digests(pipe: _Pipe, digest: str, diff_id: str, label: str) -> None:
    """Compare what `pipe` hashed with the blob's `digest` and the tar's `diff_id` (each only
    when given). Raises LayerError."""
    if digest:
        got = (f"{pipe.blob_other.name}:{pipe.blob_other.hexdigest()}" if pipe.blob_other is not None
               else "sha256:" + pipe.blob_sha.hexdigest())
        if got != digest:
            raise LayerError(f"{label}: digest mismatch: manifest says {digest}, blob is {got}")
    if diff_id:
        got = (f"{pipe.tar_other.name}:{pipe.tar_other.hexdigest()}" if pipe.tar_other is not None
               else "sha256:" + pipe.tar_sha.hexdigest())
        if got != diff_id:
            raise LayerError(f"{label}: diff_id mismatch: config says {diff_id}, tar is {got}")


@contextlib.contextmanager
def _piped(blob: BinaryIO, on_bytes: Callable[[int], None] | None, blob_alg: str, tar_alg: str,
           label: str) -> Iterator[_Pipe]:
    """A _Pipe over `blob` for the block, which reads the tar from it. When the block ends, the
    rest (tar padding after the end-of-archive blocks, the gzip trailer) is read and every byte
    hashed; when it raises (a refused member, an interrupt), the threads are stopped first, and
    a corrupt stream becomes a LayerError naming `label`."""
    pipe = _Pipe(blob, on_bytes, blob_alg or "sha256", tar_alg or "sha256")
    try:
        yield pipe
        pipe.drain()
        pipe.finish()
    except corrupt_errors() as exc:
        pipe.stop()
        raise LayerError(f"{label}: corrupt or truncated layer ({pipe.compression}): {exc}") from None
    except BaseException:
        pipe.stop()
        raise


@contextlib.contextmanager
def verified_tar(blob: BinaryIO, digest: str, diff_id: str, label: str) -> Iterator[BinaryIO]:
    """The tar stream of a layer blob read again (decompressed and hashed in threads, as
    read_layer does), checked at the end against the blob's `digest` and the tar's `diff_id`:
    the bytes a writer takes from it are the bytes that were analyzed, or it raises
    LayerError (also for a corrupt stream). A block left early stops the threads."""
    with _piped(blob, None, _digest_alg(digest, "digest", label),
                _digest_alg(diff_id, "diff_id", label), label) as pipe:
        yield io.BufferedReader(pipe, CHUNK)
    _check_digests(pipe, digest, diff_id, label)


def stream_digest(stream: BinaryIO, alg: str = "sha256") -> str:
    """`ALG:HEX` of what is left in `stream` (hashlib.file_digest: no copy per chunk)."""
    # typing.BinaryIO declares no readinto; every stream slim opens (files, BufferedReaders) has it
    return f"{alg}:" + hashlib.file_digest(stream, alg).hexdigest()  # type: ignore[arg-type]


def _digest_alg(digest: str, what: str, label: str) -> str:
    """The algorithm of `digest` ("" when there is none). Raises LayerError for one slim
    cannot verify or a malformed value."""
    if not digest:
        return ""
    alg, sep, hexpart = digest.partition(":")
    if not sep or alg not in DIGEST_ALGORITHMS:
        raise LayerError(f"{label}: {what} {digest!r}: unsupported digest algorithm "
                         f"(expected one of {', '.join(DIGEST_ALGORITHMS)})")
    if len(hexpart) != hashlib.new(alg).digest_size * 2 or not all(c in "0123456789abcdef" for c in hexpart):
        raise LayerError(f"{label}: {what} {digest!r}: not a valid {alg} digest")
    return alg


class _CheckedTarInfo(tarfile.TarInfo):
    """tarfile.TarInfo that refuses what tarfile would accept silently or at any cost.

    tarfile ends an archive without a word at a corrupt header found after the first member
    (TarFile.next treats InvalidHeaderError there as the end); reads a PAX or GNU long-name
    header into memory whatever its size; and takes negative sizes, out-of-range ids and
    non-finite mtimes from base-256 fields or PAX records. Each becomes a HeaderError, which
    TarFile.next raises as ReadError.
    """

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> Self:
        try:
            return super().fromtarfile(tar)
        except (tarfile.InvalidHeaderError, tarfile.TruncatedHeaderError) as exc:  # type: ignore[attr-defined]
            raise tarfile.ReadError(f"corrupt member header at byte {tar.offset}: {exc}") from None

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED_TYPES and not 0 <= self.size <= MAX_EXTENDED_HEADER:
            raise tarfile.ReadError(f"extended header of {self.size} bytes "
                                    f"(at most {MAX_EXTENDED_HEADER})")
        member: tarfile.TarInfo = super()._proc_member(tar)  # type: ignore[misc]
        name = member.name
        if member.size < 0:
            raise tarfile.ReadError(f"{name}: negative size {member.size}")
        for what in ("uid", "gid"):
            value = getattr(member, what)
            if not 0 <= value < 1 << 32:
                raise tarfile.ReadError(f"{name}: {what} {value} out of range")
        if not math.isfinite(member.mtime) or abs(member.mtime) >= 1 << 62:
            raise tarfile.ReadError(f"{name}: mtime {member.mtime} out of range")
        if "\x00" in member.linkname:
            raise tarfile.ReadError(f"{name}: link target contains a NUL byte")
        return member


_EXTENDED_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                   tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


def checked_tarinfo() -> type[tarfile.TarInfo]:
    """The TarInfo class with the checks above, for readers of whole archives (`tarinfo=`)."""
    return _CheckedTarInfo


def open_tar_stream(stream: BinaryIO) -> TarReader:
    """The one way slim reads a layer tar (the model, extraction, re-reading files for a
    build): slim.fs.tarstream, so every reader agrees on what a layer holds."""
    return TarReader(stream)


class LayerGuard:
    """Refuses, for one layer, what the two readers of a layer (this model and fs.extract)
    would not agree on, as Docker refuses it: a member path seen twice (a directory repeated
    as a directory is harmless and allowed), a member below a symlink or a non-directory of
    the same layer (written through a link), and a non-directory replacing a directory the
    layer already wrote into.

    Parents are checked up to the nearest one already known to be a directory, so a layer
    in tar order (parents first) costs O(1) dictionary lookups per member.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.members: dict[str, str] = {}  # path → "dir" | "symlink" | "other"
        self.dirs: set[str] = set()  # directories members were written into

    def check(self, path: str, kind: str) -> None:
        """Record member `path` of `kind` ("dir", "symlink" or "other"). Raises LayerError."""
        if path == "/":
            return
        if path in self.members:
            if kind == "dir" and self.members[path] == "dir":
                return  # the same directory again: both readers keep it, with the last mode
            raise LayerError(f"{self.label}: {path}: appears twice in the layer")
        if kind != "dir" and path in self.dirs:
            raise LayerError(f"{self.label}: {path}: replaces a directory the same layer "
                             "already wrote into")
        d = parent(path)
        walked: list[str] = []
        while d != "/" and d not in self.dirs:
            seen = self.members.get(d)
            if seen == "symlink":
                raise LayerError(f"{self.label}: {path}: written through the symlink {d} of "
                                 "the same layer")
            if seen == "other":
                raise LayerError(f"{self.label}: {path}: below {d}, which the same layer "
                                 "made a non-directory")
            walked.append(d)
            d = parent(d)
        self.dirs.update(walked)
        self.members[path] = kind
        if kind == "dir":
            self.dirs.add(path)


def whiteout_target(name: str) -> str | None:
    """What a `.wh.NAME` member deletes (NAME), or None when the name is no valid whiteout:
    empty, `.`, `..`, or reserved (`.wh..wh.*` other than the opaque marker; OCI image-spec
    layer.md "Whiteouts")."""
    victim = name[len(WHITEOUT_PREFIX):]
    if victim in ("", ".", "..") or victim.startswith(WHITEOUT_PREFIX):
        return None
    return victim


def read_layer(
    blob: BinaryIO,
    info: LayerInfo,
    store: ContentStore | None,
    *,
    verify: bool = True,
    expected_diff_id: str = "",
    on_bytes: Callable[[int], None] | None = None,
    name: str = "",
) -> LayerReadResult:
    """Read one layer blob in one pass (decompression and hashing in a second thread).

    Raises LayerError when the stream is truncated or corrupt, when a member is refused (see
    the module doc), or when its digest or diff_id does not match (with `verify`; sha256,
    sha384 and sha512 digests are checked).
    """
    label = name or info.digest or f"layer {info.index}"
    blob_alg = _digest_alg(info.digest, "digest", label) if verify else ""
    tar_alg = _digest_alg(expected_diff_id, "diff_id", label) if verify else ""
    result = LayerReadResult(tree=FileTree())
    guard = LayerGuard(label)
    with _piped(blob, on_bytes, blob_alg, tar_alg, label) as pipe:
        with open_tar_stream(io.BufferedReader(pipe, CHUNK)) as tf:
            for member in tf:
                _add_member(tf, member, info.index, store, result, guard)
        if store is not None:
            store.flush()  # a write error is this layer's, reported as it is read
    result.compression = pipe.compression
    result.blob_digest = "sha256:" + pipe.blob_sha.hexdigest()
    result.diff_id = "sha256:" + pipe.tar_sha.hexdigest()
    result.blob_bytes = pipe.blob_count
    result.tar_bytes = pipe.tar_count
    if verify:
        _check_digests(pipe, info.digest, expected_diff_id, label)
    return result


def _add_member(
    tf: TarReader,
    member: TarMember,
    layer: int,
    store: ContentStore | None,
    result: LayerReadResult,
    guard: LayerGuard,
) -> None:
    path, problem = _member_path(member.name)
    if path is None:
        result.issues.append(Issue(member.name, problem or "unsafe member", layer))
        return
    if problem:
        result.issues.append(Issue(path, problem, layer))
    guard.check(path, "dir" if member.isdir() else "symlink" if member.issym() else "other")
    base = path.rsplit("/", 1)[-1]
    folder = parent(path)
    if base == OPAQUE_MARKER:
        result.tree.opaque.add(folder)
        return
    if base.startswith(WHITEOUT_PREFIX):
        victim = whiteout_target(base)
        if victim is None:
            result.issues.append(Issue(path, "not a valid whiteout name; ignored", layer))
            return
        result.tree.whiteouts.add(normpath(folder + "/" + victim))
        return
    kind = _TYPE_KIND.get(member.type)
    if kind is None:
        result.issues.append(Issue(path, f"unsupported tar member type {member.type!r}; skipped", layer))
        return
    linkname = ""
    if kind is EntryKind.SYMLINK:
        linkname = member.linkname
    elif kind is EntryKind.HARDLINK:
        link_target, _ = _member_path(member.linkname)
        if link_target is None:
            result.issues.append(Issue(path, f"hardlink target {member.linkname!r} climbs above the image root; skipped", layer))
            return
        linkname = link_target
    size = member.size if kind is EntryKind.FILE else 0
    entry = FileEntry(
        path=path,
        kind=kind,
        mode=member.mode & 0o7777,
        uid=member.uid,
        gid=member.gid,
        size=size,
        linkname=linkname,
        layer=layer,
        mtime=int(member.mtime),
        xattrs=_xattrs(member),
        devmajor=member.devmajor if kind in (EntryKind.CHAR, EntryKind.BLOCK) else 0,
        devminor=member.devminor if kind in (EntryKind.CHAR, EntryKind.BLOCK) else 0,
    )
    result.tree.add(entry)
    if kind is EntryKind.FILE and store is not None and store.captures and size > 0:
        fobj = tf.extractfile(member)
        if fobj is None:
            return
        head = fobj.read(HEAD_BYTES)
        if store.wants(path, head):
            if size > MAX_STORED_FILE:
                result.issues.append(Issue(path, f"{size} bytes: too large to analyze; kept", layer))
                return
            store.put_stream(layer, path, head, fobj)
