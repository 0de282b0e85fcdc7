"""Reading one layer blob in a single streaming pass.

The blob is hashed as it is read (its stored digest) and so is the uncompressed tar (its
diff_id). Compression is sniffed from the first bytes: gzip, zstd or none. Every member header
becomes a FileEntry; contents are read only for analysis candidates (ELF, scripts, language
sources, package databases, configs), which are copied into a ContentStore on disk so later reads
need no second decompression. Unsafe members (names climbing above the root, hardlinks to
outside) are skipped and reported as Issues; they never reach the host filesystem.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import queue
import shutil
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from slim.errors import LayerError
from slim.fs.tree import OPAQUE_MARKER, WHITEOUT_PREFIX, FileTree
from slim.globs import GlobSet
from slim.model import EntryKind, FileEntry, Issue, LayerInfo, normpath

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 1 << 20

# Contents larger than this are not copied for analysis; the file is kept and reported.
MAX_STORED_FILE = 1 << 30
HEAD_BYTES = 4



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
        return gzip.GzipFile(fileobj=peek, mode="rb"), "gzip"  # type: ignore[return-value]
    if head.startswith(ZSTD_MAGIC):
        return io.BufferedReader(ZstdReader(peek), CHUNK), "zstd"
    return peek, "none"


class PackReader(io.RawIOBase):
    """A read-only window of the pack file, read with pread (no per-file open or seek state)."""

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
        data = os.pread(self.fd, n, self.pos)
        b[: len(data)] = data
        self.pos += len(data)
        return len(data)


class ContentStore:
    """File contents copied out of layers, keyed by layer + path.

    Contents are appended to one pack file in a private temp directory (one file per store: on
    images with thousands of candidates, creating a file each cost more than decompressing).
    A rootfs: source references host files instead of copying them. `capture` says which files
    are copied (None: every regular file, for tools and tests).
    """

    def __init__(self, capture: Capture | None = None) -> None:
        self.root = tempfile.mkdtemp(prefix="slim-content-")
        self.wants: Callable[[str, bytes], bool] = (
            capture.matcher() if capture is not None else (lambda _path, _head: True))
        self.index: dict[tuple[int, str], tuple[int, int]] = {}  # → (offset, size) in the pack
        self.host: dict[tuple[int, str], str] = {}
        self._pack: BinaryIO | None = None
        self._fd = -1

    def put_stream(self, layer: int, path: str, head: bytes, stream: BinaryIO) -> None:
        if self._pack is None:
            self._pack = open(os.path.join(self.root, "pack"), "w+b")  # noqa: SIM115 - closed in close()
            self._fd = self._pack.fileno()
        pack = self._pack
        pack.seek(0, os.SEEK_END)
        start = pack.tell()
        pack.write(head)
        shutil.copyfileobj(stream, pack, CHUNK)
        self.index[(layer, path)] = (start, pack.tell() - start)

    def put_host_file(self, layer: int, path: str, host_path: str) -> None:
        """Reference a file that already lives on the host (rootfs: sources); no copy."""
        self.host[(layer, path)] = host_path

    def has(self, layer: int, path: str) -> bool:
        return (layer, path) in self.index or (layer, path) in self.host

    def open(self, layer: int, path: str) -> BinaryIO | None:
        key = (layer, path)
        if key in self.index:
            assert self._pack is not None
            self._pack.flush()
            start, size = self.index[key]
            return io.BufferedReader(PackReader(self._fd, start, size), CHUNK)
        name = self.host.get(key)
        if name is None:
            return None
        # O_NOFOLLOW: the walk saw no symlink at this path; refuse one that appeared since.
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        return os.fdopen(fd, "rb")

    def close(self) -> None:
        if self._pack is not None:
            self._pack.close()
            self._pack = None
        shutil.rmtree(self.root, ignore_errors=True)


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
    depth = 0
    for part in raw.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            depth -= 1
            if depth < 0:
                return None, "member name climbs above the image root; skipped"
        else:
            depth += 1
    return normpath(raw), problem


def _xattrs(member: tarfile.TarInfo) -> tuple[tuple[str, str], ...]:
    out = []
    for key, value in (member.pax_headers or {}).items():
        if key.startswith("SCHILY.xattr."):
            out.append((key[len("SCHILY.xattr.") :], value))
    return tuple(sorted(out))


class _Decoder:
    """Incremental decompression of gzip (multi-member), zstd (multi-frame) or plain data.

    zlib and zstandard release the GIL on large buffers, so running this in a thread lets the
    tar parsing in the caller's thread use the second core. `truncated` tells, at the end of
    the input, whether it stopped inside a member (gzip) or frame (zstd).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.in_member = False
        self._obj: Any = self._new() if kind != "none" else None

    def _new(self) -> Any:
        if self.kind == "gzip":
            return zlib.decompressobj(31)  # gzip header, CRC32 and ISIZE trailer checked
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()

    def feed(self, data: bytes) -> list[bytes]:
        if self._obj is None:
            return [data]
        out: list[bytes] = []
        while data:
            self.in_member = True
            out.append(self._obj.decompress(data))
            if not self._obj.eof:
                break
            # member/frame complete: what follows is the next one (or padding)
            data = self._obj.unused_data
            self._obj = self._new()
            self.in_member = False
            if self.kind == "gzip" and not data.strip(b"\x00"):
                break  # zero padding after the last gzip member
        return out

    @property
    def truncated(self) -> bool:
        return self.in_member


class _Pipe(io.RawIOBase):
    """Reads a blob in a background thread: hash the stored bytes, decompress, hash the tar,
    hand the tar bytes over through a bounded queue. Errors re-raise in the reader."""

    def __init__(self, blob: BinaryIO, on_bytes: Callable[[int], None] | None) -> None:
        self.blob_sha = hashlib.sha256()
        self.tar_sha = hashlib.sha256()
        self.blob_count = 0
        self.tar_count = 0
        self.compression = "none"
        self._q: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=16)
        self._buf = memoryview(b"")
        self._done = False
        self._stop = threading.Event()
        self._on_bytes = on_bytes
        self._blob = blob
        self._thread = threading.Thread(target=self._run, name="slim-layer-reader", daemon=True)
        self._thread.start()

    def _put(self, item: bytes | BaseException | None) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            chunk = self._blob.read(CHUNK)
            if chunk.startswith(GZIP_MAGIC):
                self.compression = "gzip"
            elif chunk.startswith(ZSTD_MAGIC):
                self.compression = "zstd"
            decoder = _Decoder(self.compression)
            while chunk and not self._stop.is_set():
                self.blob_sha.update(chunk)
                self.blob_count += len(chunk)
                for piece in decoder.feed(chunk):
                    if piece:
                        self.tar_sha.update(piece)
                        self.tar_count += len(piece)
                        self._put(piece)
                if self._on_bytes is not None:
                    self._on_bytes(len(chunk))
                chunk = self._blob.read(CHUNK)
            if decoder.truncated:
                raise EOFError("compressed stream ended before its end marker")
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

    def stop(self) -> None:
        """End the reader thread (after an error while parsing)."""
        self._stop.set()
        self._thread.join()


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

    Raises LayerError when the stream is truncated or corrupt, or when its digest or diff_id
    does not match (with `verify`).
    """
    label = name or info.digest or f"layer {info.index}"
    result = LayerReadResult(tree=FileTree())
    pipe = _Pipe(blob, on_bytes)
    try:
        stream = io.BufferedReader(pipe, CHUNK)
        with tarfile.open(fileobj=stream, mode="r|", errorlevel=1) as tf:
            for member in tf:
                _add_member(tf, member, info.index, store, result)
        pipe.drain()  # tar padding after the end-of-archive blocks, and the gzip trailer
    except (EOFError, zlib.error, tarfile.TarError, OSError) as exc:
        pipe.stop()
        raise LayerError(f"{label}: corrupt or truncated layer ({pipe.compression}): {exc}") from None
    except Exception as exc:  # zstandard raises its own ZstdError
        pipe.stop()
        if type(exc).__name__ == "ZstdError":
            raise LayerError(f"{label}: corrupt zstd layer: {exc}") from None
        raise
    result.compression = pipe.compression
    result.blob_digest = "sha256:" + pipe.blob_sha.hexdigest()
    result.diff_id = "sha256:" + pipe.tar_sha.hexdigest()
    result.blob_bytes = pipe.blob_count
    result.tar_bytes = pipe.tar_count
    if verify:
        if info.digest and info.digest.startswith("sha256:") and info.digest != result.blob_digest:
            raise LayerError(f"{label}: digest mismatch: manifest says {info.digest}, blob is {result.blob_digest}")
        if expected_diff_id and expected_diff_id.startswith("sha256:") and expected_diff_id != result.diff_id:
            raise LayerError(f"{label}: diff_id mismatch: config says {expected_diff_id}, tar is {result.diff_id}")
    return result


def _add_member(
    tf: tarfile.TarFile,
    member: tarfile.TarInfo,
    layer: int,
    store: ContentStore | None,
    result: LayerReadResult,
) -> None:
    path, problem = _member_path(member.name)
    if path is None:
        result.issues.append(Issue(member.name, problem or "unsafe member", layer))
        return
    if problem:
        result.issues.append(Issue(path, problem, layer))
    base = path.rsplit("/", 1)[-1]
    parent = path.rsplit("/", 1)[0] or "/"
    if base == OPAQUE_MARKER:
        result.tree.opaque.add(parent)
        return
    if base.startswith(WHITEOUT_PREFIX):
        target = normpath(parent + "/" + base[len(WHITEOUT_PREFIX) :])
        result.tree.whiteouts.add(target)
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
    if kind is EntryKind.FILE and store is not None and size > 0:
        fobj = tf.extractfile(member)
        if fobj is None:
            return
        head = fobj.read(HEAD_BYTES)
        if store.wants(path, head):
            if size > MAX_STORED_FILE:
                result.issues.append(Issue(path, f"{size} bytes: too large to analyze; kept", layer))
                return
            store.put_stream(layer, path, head, fobj)  # type: ignore[arg-type]
