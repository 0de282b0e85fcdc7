"""Reading one layer blob in a single streaming pass.

The blob is hashed as it is read (its stored digest) and so is the uncompressed tar (its
diff_id). Compression is sniffed from the first bytes: gzip, zstd or none. Every member header
becomes a FileEntry; contents are read only for analysis candidates (ELF, scripts, language
sources, package databases, configs), which are copied into a ContentStore on disk so later reads
need no second decompression. Unsafe members (names climbing above the root, hardlinks to
outside) are skipped and reported as Issues; they never reach the host filesystem.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import logging
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from slim.errors import LayerError
from slim.fs.tree import OPAQUE_MARKER, WHITEOUT_PREFIX, FileTree
from slim.model import EntryKind, FileEntry, Issue, LayerInfo, normpath

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 1 << 20

# Contents larger than this are not copied for analysis; the file is kept and reported.
MAX_STORED_FILE = 1 << 30
HEAD_BYTES = 4

# Paths whose contents analyzers read even when they are neither ELF nor a script.
CONTENT_GLOBS: tuple[str, ...] = (
    "/etc/*",
    "/etc/**",
    "/var/lib/dpkg/status",
    "/var/lib/dpkg/info/*.list",
    "/var/lib/dpkg/info/*.conffiles",
    "/var/lib/dpkg/status.d/*",
    "/lib/apk/db/installed",
    "/usr/lib/os-release",
    "*.py",
    "*.pth",
    "*.pm",
    "*.pl",
    "*.js",
    "*.mjs",
    "*.cjs",
    "*/package.json",
    "*.jar",
    "*/RECORD",
    "*/top_level.txt",
    "*.conf",
    "*.toml",
    "*.cfg",
    "*.ini",
    "*.sh",
)
_CONTENT_RE = re.compile("|".join(fnmatch.translate(g) for g in CONTENT_GLOBS))


def wants_content(path: str, head: bytes) -> bool:
    """Whether analyzers may need the contents of this regular file."""
    if head.startswith(b"\x7fELF") or head.startswith(b"#!"):
        return True
    return _CONTENT_RE.match(path) is not None


class HashingReader(io.RawIOBase):
    """Wraps a binary stream, hashing every byte read and counting them."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.raw.read(len(b))
        n = len(data)
        b[:n] = data
        self.sha.update(data)
        self.count += n
        return n

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


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
        return io.BufferedReader(ZstdReader(peek), CHUNK), "zstd"  # type: ignore[arg-type]
    return peek, "none"  # type: ignore[return-value]


class ContentStore:
    """A directory on disk holding file contents copied out of layers, keyed by layer + path."""

    def __init__(self, root: str | None = None) -> None:
        self._owned = root is None
        self.root = root or tempfile.mkdtemp(prefix="slim-content-")
        self.index: dict[tuple[int, str], str] = {}

    def _name(self, layer: int, path: str) -> str:
        digest = hashlib.sha1(f"{layer}\0{path}".encode()).hexdigest()
        return os.path.join(self.root, digest[:2], digest[2:])

    def put_stream(self, layer: int, path: str, head: bytes, stream: BinaryIO) -> None:
        name = self._name(layer, path)
        os.makedirs(os.path.dirname(name), exist_ok=True)
        with open(name, "wb") as out:
            out.write(head)
            shutil.copyfileobj(stream, out, CHUNK)
        self.index[(layer, path)] = name

    def put_host_file(self, layer: int, path: str, host_path: str) -> None:
        """Reference a file that already lives on the host (rootfs: sources); no copy."""
        self.index[(layer, path)] = host_path

    def has(self, layer: int, path: str) -> bool:
        return (layer, path) in self.index

    def open(self, layer: int, path: str) -> BinaryIO | None:
        name = self.index.get((layer, path))
        if name is None:
            return None
        # O_NOFOLLOW: a stored name is never a symlink we created; refuse one if it appears.
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        return os.fdopen(fd, "rb")

    def close(self) -> None:
        if self._owned:
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
    """Read one layer blob in one pass.

    Raises LayerError when the stream is truncated or corrupt, or when its digest or diff_id
    does not match (with `verify`).
    """
    label = name or info.digest or f"layer {info.index}"
    hashed_blob = HashingReader(blob)
    counted: BinaryIO = io.BufferedReader(hashed_blob, CHUNK)  # type: ignore[arg-type]
    result = LayerReadResult(tree=FileTree())
    try:
        tar_stream, result.compression = decompressed(counted)
        hashed_tar = HashingReader(tar_stream)
        last = [0]

        def progress() -> None:
            if on_bytes is not None and hashed_blob.count - last[0] >= CHUNK:
                on_bytes(hashed_blob.count - last[0])
                last[0] = hashed_blob.count

        with tarfile.open(fileobj=hashed_tar, mode="r|", errorlevel=1) as tf:  # type: ignore[call-overload]
            for member in tf:
                _add_member(tf, member, info.index, store, result)
                progress()
        hashed_tar.drain()  # tar padding after the end-of-archive blocks
        if result.compression == "gzip":
            tar_stream.read()  # let GzipFile check the trailer CRC
        hashed_blob.drain()
        if on_bytes is not None:
            on_bytes(hashed_blob.count - last[0])
    except (EOFError, zlib.error, gzip.BadGzipFile, tarfile.TarError, OSError) as exc:
        raise LayerError(f"{label}: corrupt or truncated layer ({result.compression}): {exc}") from None
    except Exception as exc:  # zstandard raises its own ZstdError
        if type(exc).__name__ == "ZstdError":
            raise LayerError(f"{label}: corrupt zstd layer: {exc}") from None
        raise
    result.blob_digest = hashed_blob.digest
    result.diff_id = hashed_tar.digest
    result.blob_bytes = hashed_blob.count
    result.tar_bytes = hashed_tar.count
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
        target, _ = _member_path(member.linkname)
        if target is None:
            result.issues.append(Issue(path, f"hardlink target {member.linkname!r} climbs above the image root; skipped", layer))
            return
        linkname = target
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
        if wants_content(path, head):
            if size > MAX_STORED_FILE:
                result.issues.append(Issue(path, f"{size} bytes: too large to analyze; kept", layer))
                return
            store.put_stream(layer, path, head, fobj)  # type: ignore[arg-type]
