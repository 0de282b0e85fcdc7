"""The low-level, deterministic image writer: layer tars, compressed blobs, image layouts.

Everything that writes an image (the sample recipes, the bench harness, `slim build`) goes through
here, so the byte-level rules live in one place:

* Layer tars (OCI image-spec layer.md "Changesets"): PAX format, member names relative (no
  leading '/'), owner names empty, mtimes fixed, members sorted by path components with hard
  links after every other member (a link's target must already exist when a tar is extracted
  in order). Extended attributes are PAX `SCHILY.xattr.*` records, as GNU tar and Docker write them.
  Whiteouts are empty regular files `.wh.NAME`; an opaque directory holds `.wh..wh..opq`.
* Blobs: gzip with mtime 0 and no file name (RFC 1952 header fields that would otherwise vary),
  zstd, or uncompressed; stored as `<dir>/<sha256 hex>`.
* Layouts: OCI image-layout (`oci-layout`, `index.json`, `blobs/sha256/…`), as a directory or an
  uncompressed tar, optionally with referrer artifacts (image-spec 1.1 manifest.md "Guidelines
  for Artifact Usage": an empty config, the artifact as the one layer, `artifactType`, and a
  `subject` naming the image manifest; listed in index.json after the image); `docker save` archives in both the Docker 25+ OCI-in-archive form and the
  legacy form (`<id>/layer.tar`, `<config hex>.json`, `manifest.json`, `repositories`).
  JSON is written with sorted keys and no whitespace; outer tars are sorted with fixed metadata.
* Atomicity and safety: an image is written into a temporary sibling of its destination and
  renamed into place (slim.outputs), so a failure never leaves a half-written image behind, and
  an `oci:` directory replaces only a previous slim layout (`is_slim_layout`). A layer blob
  already on the same filesystem is hard-linked into an `oci:` layout, not copied (layouts
  sharing a layer then store it once).
* Sparse: file data, layer tars and archives go through slim.outputs.SparseWriter, so the
  zeros of a sparse file (or of a zero-filled bomb) are holes in every file slim writes, never
  disk; only the compressed blob holds them, compressed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import posixpath
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from slim import __version__, reaper
from slim.errors import EmitError
from slim.fs.layer import decompressed, stream_digest
from slim.fs.tree import OPAQUE_MARKER, WHITEOUT_PREFIX
from slim.model import EntryKind, FileEntry, normpath
from slim.outputs import SparseWriter, atomic_dir, atomic_file, copy_sparse
from slim.refs import parse_output, split_name

log = logging.getLogger(__name__)

CHUNK = 1 << 20

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_EMPTY = "application/vnd.oci.empty.v1+json"  # image-spec 1.1 "the empty descriptor"
EMPTY_JSON = b"{}"
MEDIA_LAYER = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
REF_NAME = "org.opencontainers.image.ref.name"
TITLE = "org.opencontainers.image.title"
SLIM_ANNOTATION = "org.slim.version"  # on index entries slim wrote (see is_slim_layout)

_KIND_TYPE = {
    EntryKind.FILE: tarfile.REGTYPE,
    EntryKind.DIR: tarfile.DIRTYPE,
    EntryKind.SYMLINK: tarfile.SYMTYPE,
    EntryKind.HARDLINK: tarfile.LNKTYPE,
    EntryKind.CHAR: tarfile.CHRTYPE,
    EntryKind.BLOCK: tarfile.BLKTYPE,
    EntryKind.FIFO: tarfile.FIFOTYPE,
}


@dataclass(frozen=True)
class LayerBlob:
    """A layer blob on disk: its stored digest, the digest of its tar (diff_id), size and type."""

    path: str
    digest: str
    diff_id: str
    size: int
    media_type: str


@dataclass(frozen=True)
class Referrer:
    """An artifact that refers to the image (an SBOM): its artifactType (= the blob's media
    type), its bytes and the file name recorded as the blob's title."""

    artifact_type: str
    data: bytes
    title: str


def canonical_json(doc: Any) -> bytes:
    """JSON with sorted keys and no whitespace: the same document gives the same bytes."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _sort_key(path: str) -> tuple[str, ...]:
    # Component-wise order keeps every directory right before its contents ("a", "a/b", "a-b").
    return tuple(path.strip("/").split("/"))


@dataclass
class _Pending:
    info: tarfile.TarInfo
    offset: int  # into the spool; -1 when the member has no data


class LayerTarWriter:
    """Writes one deterministic, uncompressed layer tar to `out` (a context manager).

    Members are collected (file data is spooled to a temporary file) and written sorted when the
    writer closes, so the order of `add` calls does not change the bytes.
    """

    def __init__(self, out: BinaryIO, mtime: int = 0, keep_mtime: bool = False) -> None:
        self.out = out
        self.mtime = int(mtime)
        self.keep_mtime = keep_mtime
        self._members: dict[str, _Pending] = {}
        self._spool: BinaryIO = tempfile.TemporaryFile(prefix="slim-layer-")  # noqa: SIM115 (closed in close())
        self._spool_size = 0  # written with SparseWriter (pwrite), not through the file object
        self._closed = False

    def __enter__(self) -> LayerTarWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._spool.close()
            self._closed = True

    def _name(self, path: str) -> str:
        name = normpath(path).lstrip("/")
        if not name:
            raise EmitError(f"{path}: the root directory is not a layer member")
        if name in self._members:
            raise EmitError(f"{path}: added twice to the same layer")
        return name

    def _info(self, name: str, kind: EntryKind, mode: int, mtime: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = _KIND_TYPE[kind]
        info.mode = mode & 0o7777
        info.mtime = mtime if self.keep_mtime else self.mtime
        info.uname = info.gname = ""
        return info

    def add(self, entry: FileEntry, data: BinaryIO | None = None, *, keep_mtime: bool | None = None) -> None:
        """Add one entry; a FILE needs `data` (its whole content is read now).

        The member's mtime is the writer's fixed `mtime` unless `keep_mtime` (here or on the
        writer) asks for `entry.mtime`.

        Raises EmitError for a duplicate path, a FILE without data, or a size mismatch.
        """
        if self._closed:
            raise EmitError(f"{entry.path}: layer writer is closed")
        name = self._name(entry.path)
        info = self._info(name, entry.kind, entry.mode, entry.mtime)
        if keep_mtime is not None:
            info.mtime = entry.mtime if keep_mtime else self.mtime
        info.uid, info.gid = entry.uid, entry.gid
        if entry.xattrs:
            info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in sorted(entry.xattrs)}
        offset = -1
        if entry.kind is EntryKind.FILE:
            if data is None:
                if entry.size:
                    raise EmitError(f"{entry.path}: regular file of {entry.size} bytes added without data")
                data = io.BytesIO()
            offset = self._spool_size
            writer = SparseWriter(self._spool.fileno(), offset)
            while chunk := data.read(CHUNK):
                writer.write(chunk)
            writer.close()
            copied = writer.written
            self._spool_size = writer.pos
            if entry.size and entry.size != copied:
                raise EmitError(f"{entry.path}: entry says {entry.size} bytes, data has {copied}")
            info.size = copied
        elif entry.kind in (EntryKind.SYMLINK, EntryKind.HARDLINK):
            if not entry.linkname:
                raise EmitError(f"{entry.path}: {entry.kind.value} without a target")
            # A hard link names another member of the archive: relative, like member names.
            info.linkname = (
                normpath(entry.linkname).lstrip("/") if entry.kind is EntryKind.HARDLINK else entry.linkname
            )
        elif entry.kind in (EntryKind.CHAR, EntryKind.BLOCK):
            info.devmajor, info.devminor = entry.devmajor, entry.devminor
        self._members[name] = _Pending(info, offset)

    def _marker(self, path: str) -> None:
        name = self._name(path)
        self._members[name] = _Pending(self._info(name, EntryKind.FILE, 0o644, 0), -1)

    def add_whiteout(self, path: str) -> None:
        """Delete `path` (and its subtree) of the layers below: an empty `.wh.NAME` member."""
        path = normpath(path)
        if path == "/":
            raise EmitError("/: the root cannot be whited out; use add_opaque('/')")
        self._marker(posixpath.join(posixpath.dirname(path), WHITEOUT_PREFIX + posixpath.basename(path)))

    def add_opaque(self, dir_path: str) -> None:
        """Hide every lower-layer entry of directory `dir_path`: a `.wh..wh..opq` member."""
        self._marker(posixpath.join(normpath(dir_path), OPAQUE_MARKER))

    def close(self) -> None:
        """Write the sorted members and the end-of-archive blocks to `out`."""
        if self._closed:
            return
        self._closed = True
        names = sorted(self._members, key=_sort_key)
        # Hard links last: their targets are then already in the archive (tar extracts in order).
        ordered = [n for n in names if self._members[n].info.type != tarfile.LNKTYPE]
        ordered += [n for n in names if self._members[n].info.type == tarfile.LNKTYPE]
        try:
            with tarfile.open(fileobj=self.out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                for name in ordered:
                    pending = self._members[name]
                    if pending.offset < 0:
                        tf.addfile(pending.info)
                    else:
                        self._spool.seek(pending.offset)
                        tf.addfile(pending.info, self._spool)
        finally:
            self._spool.close()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _sha256_file(path: str) -> tuple[str, int]:
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return "sha256:" + sha.hexdigest(), size


GZIP_BLOCK = 1 << 20  # input bytes per independently compressed piece (parallel_gzip)
_DICT = 32 << 10  # deflate's window: each piece is primed with the 32 KiB before it


def _deflate_piece(data: bytes, primer: bytes, level: int, last: bool) -> bytes:
    c = (zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, primer) if primer
         else zlib.compressobj(level, zlib.DEFLATED, -15))
    return c.compress(data) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def parallel_gzip(src: BinaryIO, dst: BinaryIO, level: int = 6, threads: int | None = None) -> None:
    """gzip `src` into `dst` on several cores, as pigz does: the input is cut into GZIP_BLOCK
    pieces, each deflated on its own (zlib releases the GIL) with the 32 KiB before it as its
    dictionary and ended with a sync flush, so the pieces join into one deflate stream of one
    gzip member (RFC 1951 §3.2.3 blocks, RFC 1952 member; mtime 0, no name). The bytes depend on
    the input and `level` only, never on the thread count; the size is within ~0.1 % of one
    zlib stream's. Memory holds at most 2 x threads pieces."""
    from concurrent.futures import ThreadPoolExecutor

    threads = threads or max(1, min(os.cpu_count() or 1, 8))
    xfl = 2 if level == 9 else 4 if level == 1 else 0
    dst.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes([xfl, 255]))
    crc = 0
    size = 0
    pending: list[Any] = []
    primer = b""
    with ThreadPoolExecutor(threads) as pool:
        piece = src.read(GZIP_BLOCK)
        while True:
            nxt = src.read(GZIP_BLOCK) if piece else b""
            last = not nxt
            crc = zlib.crc32(piece, crc)
            size += len(piece)
            pending.append(pool.submit(_deflate_piece, piece, primer, level, last))
            primer = piece[-_DICT:]
            while len(pending) >= 2 * threads or (last and pending):
                dst.write(pending.pop(0).result())
            if last:
                break
            piece = nxt
    dst.write(crc.to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little"))


def plain_blob(tar_path: str) -> LayerBlob:
    """An uncompressed layer tar as a blob of its own (digest = diff_id), left where it is.
    Raises EmitError when it cannot be read."""
    try:
        diff_id, size = _sha256_file(tar_path)
    except OSError as exc:
        raise EmitError(f"{tar_path}: cannot read layer tar: {exc.strerror or exc}") from None
    return LayerBlob(path=tar_path, digest=diff_id, diff_id=diff_id, size=size, media_type=MEDIA_LAYER["none"])


class Cancelled(EmitError):
    """A write stopped on request (its `stop` event was set): nothing it wrote is left."""


class _Stoppable:
    """A reader that raises Cancelled once `stop` is set (checked before every read)."""

    def __init__(self, src: BinaryIO, stop: threading.Event, what: str) -> None:
        self._src, self._stop, self._what = src, stop, what

    def read(self, size: int = -1) -> bytes:
        if self._stop.is_set():
            raise Cancelled(f"{self._what}: write cancelled")
        return self._src.read(size)


def _inflated_digest(path: str, stop: threading.Event | None) -> str:
    """sha256 of what the compressed blob at `path` inflates to."""
    with open(path, "rb") as f:
        stream, _ = decompressed(f if stop is None else _Stoppable(f, stop, path))  # type: ignore[arg-type]
        return stream_digest(stream)


def compress_layer(tar_path: str, out_dir: str, compression: str = "gzip", *, level: int | None = None,
                   diff_id: str = "", stop: threading.Event | None = None,
                   threads: int | None = None) -> LayerBlob:
    """Compress an uncompressed layer tar into `out_dir/<sha256 hex of the blob>`.

    gzip is written with mtime 0 and an empty file name so equal tars give equal blobs (on any
    number of `threads`). `diff_id`: the tar's digest as the caller knows it (an image it ran);
    the written blob is then inflated again and must give exactly that digest, so the blob is
    proven to carry those bytes. `stop`: set it to end the write early (Cancelled; the partial
    blob is removed).
    Raises EmitError for an unknown compression, an unreadable tar, or a blob that does not
    inflate to `diff_id`.
    """
    if compression not in MEDIA_LAYER:
        raise EmitError(f"{tar_path}: unknown layer compression {compression!r} (gzip, zstd, none)")
    os.makedirs(out_dir, exist_ok=True)
    check = bool(diff_id) and compression != "none"
    try:
        diff_id = diff_id or _sha256_file(tar_path)[0]
        fd, tmp = tempfile.mkstemp(prefix=".blob-", dir=out_dir)
        try:
            with os.fdopen(fd, "wb") as raw, open(tar_path, "rb") as plain:
                src: Any = plain if stop is None else _Stoppable(plain, stop, tar_path)
                if compression == "gzip":
                    parallel_gzip(src, raw, 9 if level is None else level, threads)
                elif compression == "zstd":
                    import zstandard

                    cctx = zstandard.ZstdCompressor(level=19 if level is None else level, write_checksum=True)
                    cctx.copy_stream(src, raw, write_size=CHUNK)
                else:
                    copy_sparse(src, raw.fileno())
            digest, size = _sha256_file(tmp)
            if check and (inflated := _inflated_digest(tmp, stop)) != diff_id:
                raise EmitError(f"{tar_path}: the {compression} blob inflates to {inflated}, not {diff_id}")
            path = os.path.join(out_dir, digest.split(":", 1)[1])
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise EmitError(f"{tar_path}: cannot write layer blob: {exc.strerror or exc}") from None
    log.debug("layer %s: %s blob %s (%d bytes)", tar_path, compression, digest, size)
    return LayerBlob(path=path, digest=digest, diff_id=diff_id, size=size, media_type=MEDIA_LAYER[compression])


# -- image layouts ------------------------------------------------------------------------------


@dataclass
class _Blob:
    """One blob of the layout: bytes in memory or a file on disk."""

    digest: str
    data: bytes | None = None
    path: str = ""

    @property
    def name(self) -> str:
        return "blobs/sha256/" + self.digest.split(":", 1)[1]


class _Sink:
    """Where layout files go: a directory tree or a deterministic uncompressed tar."""

    def __init__(self, root: str | None, tar: tarfile.TarFile | None) -> None:
        self.root = root
        self.tar = tar
        self.dirs: set[str] = set()

    def _dirs(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d in self.dirs:
                continue
            self.dirs.add(d)
            if self.tar is not None:
                info = tarfile.TarInfo(d + "/")
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                info.uname = info.gname = ""
                self.tar.addfile(info)
            else:
                assert self.root is not None
                os.makedirs(os.path.join(self.root, d), mode=0o755, exist_ok=True)

    def put(self, name: str, data: bytes | None = None, path: str = "") -> None:
        self._dirs(name)
        if self.tar is not None:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = 0o644, 0
            info.uname = info.gname = ""
            if data is not None:
                info.size = len(data)
                self.tar.addfile(info, io.BytesIO(data))
            else:
                info.size = os.path.getsize(path)
                with open(path, "rb") as f:
                    self.tar.addfile(info, f)
            return
        assert self.root is not None
        host = os.path.join(self.root, name)
        if data is not None:
            with open(host, "wb") as f:
                f.write(data)
        else:
            try:  # a blob is content-addressed and never changed: layouts may share its inode
                os.link(path, host)
            except OSError:
                with open(path, "rb") as src, open(host, "wb") as dst:
                    copy_sparse(src, dst.fileno())
        os.chmod(host, 0o644)


def _uncompressed(blob: LayerBlob, tmpdir: str) -> tuple[str, str]:
    """(path, diff_id) of the uncompressed tar of a layer blob (the blob itself when plain)."""
    if blob.media_type == MEDIA_LAYER["none"]:
        return blob.path, blob.diff_id
    out = os.path.join(tmpdir, blob.diff_id.split(":", 1)[1] + ".tar")
    if not os.path.exists(out):
        with open(blob.path, "rb") as f, open(out, "wb") as dst:
            stream, _ = decompressed(f)
            copy_sparse(stream, dst.fileno())
    diff_id, _ = _sha256_file(out)
    if diff_id != blob.diff_id:
        raise EmitError(f"{blob.path}: uncompressed tar is {diff_id}, LayerBlob says {blob.diff_id}")
    return out, diff_id


def _image_config(layers: list[LayerBlob], config: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise EmitError("image config: expected a JSON object")
    doc = json.loads(json.dumps(config))  # a deep copy that is surely JSON
    doc.setdefault("architecture", "amd64")
    doc.setdefault("os", "linux")
    doc["rootfs"] = {"type": "layers", "diff_ids": [b.diff_id for b in layers]}
    history = doc.get("history")
    if history is not None:
        # image-spec config.md: history entries that are not empty_layer map onto layers in order
        real = [h for h in history if isinstance(h, dict) and not h.get("empty_layer")]
        if len(real) != len(layers):
            raise EmitError(f"image config: history has {len(real)} non-empty entries for {len(layers)} layers")
    return doc


def is_slim_layout(path: str) -> bool:
    """Whether directory `path` is an OCI layout slim wrote (its index names a manifest with
    slim's annotation): the only kind of directory an `oci:` output may replace."""
    try:
        with open(os.path.join(path, "index.json"), encoding="utf-8") as f:
            index = json.load(f)
        manifests = index.get("manifests") if isinstance(index, dict) else None
        return (os.path.isfile(os.path.join(path, "oci-layout")) and isinstance(manifests, list)
                and any(isinstance(m, dict) and isinstance(m.get("annotations"), dict)
                        and SLIM_ANNOTATION in m["annotations"] for m in manifests))
    except (OSError, ValueError):
        return False


def write_image(
    dest: str,
    layers: list[LayerBlob],
    config: dict[str, Any],
    *,
    tag: str | None = "latest",
    docker_form: str = "oci",
    mark_slim: bool = False,
    referrers: Sequence[Referrer] = (),
) -> str:
    """Write an image with these layers (base first) and OCI image `config` to `dest`.

    dest: "oci:DIR[:TAG]" | "oci-archive:FILE" | "docker-archive:FILE". `rootfs.diff_ids` is
    filled from the layers. `tag` is "NAME:TAG" or a bare "TAG": the OCI ref.name annotation gets
    the TAG part; a docker archive's RepoTags get "NAME:TAG" ("TAG:latest" for a bare tag). With
    `tag=None` (and no tag in `dest`) the image is written without a name: no RepoTags, so
    `docker load` never takes over a name another image has.
    docker_form: "oci" (Docker 25+ OCI-in-archive) or "legacy" (`<id>/layer.tar`).
    `mark_slim` annotates the index entry as slim's output (`is_slim_layout`). `referrers` are
    written as artifact manifests whose `subject` is the image (OCI layouts only).
    An existing destination is replaced as a whole (an OCI directory is not merged into).
    Returns the config digest ("sha256:…", the image ID). Raises EmitError.
    """
    out = parse_output(dest)
    if out.transport == "docker":
        raise EmitError(f"{dest}: write to oci:, oci-archive: or docker-archive:, then push")
    if referrers and out.transport == "docker-archive":
        raise EmitError(f"{dest}: a docker-archive cannot carry referrer artifacts")
    transport, location = out.transport, out.location
    if docker_form not in ("oci", "legacy"):
        raise EmitError(f"{dest}: docker_form must be 'oci' or 'legacy', not {docker_form!r}")
    repo, short = split_name(out.tag or tag or "")
    if not short and repo:  # a bare "TAG" names the tag; a bare "repo/name" takes "latest"
        repo, short = ("", repo) if "/" not in repo else (repo, "latest")
    repo_tag = (f"{repo}:{short}" if repo else f"{short}:latest") if short else ""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(location)), exist_ok=True)
    except OSError as exc:
        raise EmitError(f"{dest}: cannot create its directory: {exc.strerror}") from None
    cfg_bytes = canonical_json(_image_config(layers, config))
    cfg_digest = "sha256:" + hashlib.sha256(cfg_bytes).hexdigest()
    try:
        with reaper.temporary_directory(prefix="slim-write-") as scratch:
            if transport == "docker-archive" and docker_form == "legacy":
                files = _legacy_files(layers, cfg_bytes, cfg_digest, repo_tag, scratch)
            else:
                files = _oci_files(layers, cfg_bytes, cfg_digest, short, repo_tag,
                                   transport == "docker-archive", mark_slim, referrers)
            if transport == "oci":
                with atomic_dir(location, what="OCI layout", is_previous=is_slim_layout) as tmp:
                    sink = _Sink(tmp, None)
                    for name, data, path in files:
                        sink.put(name, data, path)
            else:
                with atomic_file(location, what="image archive") as tmp, open(tmp, "wb") as raw:
                    sparse = SparseWriter(raw.fileno())
                    with tarfile.open(fileobj=sparse, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
                        sink = _Sink(None, tf)
                        for name, data, path in sorted(files, key=lambda f: _sort_key(f[0])):
                            sink.put(name, data, path)
                    sparse.close()
                    os.chmod(tmp, 0o644)
    except OSError as exc:
        raise EmitError(f"{dest}: cannot write image: {exc.strerror or exc}") from None
    log.info("wrote %s (config %s, %d layers)", dest, cfg_digest, len(layers))
    return cfg_digest


_File = tuple[str, bytes | None, str]  # (name in the layout, bytes or None, host path)


def _oci_files(
    layers: list[LayerBlob], cfg_bytes: bytes, cfg_digest: str, short: str, repo_tag: str,
    docker: bool, mark_slim: bool = False, referrers: Sequence[Referrer] = (),
) -> list[_File]:
    """Files of an OCI image layout (image-spec image-layout.md), plus Docker's manifest.json."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": cfg_digest, "size": len(cfg_bytes)},
        "layers": [{"mediaType": b.media_type, "digest": b.digest, "size": b.size} for b in layers],
    }
    man_bytes = canonical_json(manifest)
    man_digest = "sha256:" + hashlib.sha256(man_bytes).hexdigest()
    annotations = {REF_NAME: short} if short else {}
    if mark_slim:
        annotations[SLIM_ANNOTATION] = __version__
    if docker and repo_tag:  # Docker 25+ `docker save` also names the image for containerd
        annotations["io.containerd.image.name"] = repo_tag
    index: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_INDEX,
        "manifests": [
            {"mediaType": MEDIA_OCI_MANIFEST, "digest": man_digest, "size": len(man_bytes), "annotations": annotations}
        ],
    }
    blobs: dict[str, _Blob] = {}
    for b in layers:
        blobs.setdefault(b.digest, _Blob(b.digest, path=b.path))
    blobs[cfg_digest] = _Blob(cfg_digest, data=cfg_bytes)
    blobs[man_digest] = _Blob(man_digest, data=man_bytes)
    subject = {"mediaType": MEDIA_OCI_MANIFEST, "digest": man_digest, "size": len(man_bytes)}
    for ref in referrers:
        empty_digest = _sha256(EMPTY_JSON)
        data_digest = _sha256(ref.data)
        artifact = {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "artifactType": ref.artifact_type,
            "config": {"mediaType": MEDIA_OCI_EMPTY, "digest": empty_digest, "size": len(EMPTY_JSON)},
            "layers": [{"mediaType": ref.artifact_type, "digest": data_digest, "size": len(ref.data),
                        "annotations": {TITLE: ref.title}}],
            "subject": subject,
        }
        art_bytes = canonical_json(artifact)
        art_digest = _sha256(art_bytes)
        blobs[empty_digest] = _Blob(empty_digest, data=EMPTY_JSON)
        blobs[data_digest] = _Blob(data_digest, data=ref.data)
        blobs[art_digest] = _Blob(art_digest, data=art_bytes)
        index["manifests"].append({"mediaType": MEDIA_OCI_MANIFEST, "digest": art_digest,
                                   "size": len(art_bytes), "artifactType": ref.artifact_type})
    files: list[_File] = [("oci-layout", OCI_LAYOUT, ""), ("index.json", canonical_json(index), "")]
    files += [(blob.name, blob.data, blob.path) for blob in blobs.values()]
    if docker:
        entry = {
            "Config": _Blob(cfg_digest).name,
            "RepoTags": [repo_tag] if repo_tag else [],
            "Layers": [_Blob(b.digest).name for b in layers],
        }
        files.append(("manifest.json", canonical_json([entry]), ""))
    return files


def _legacy_files(
    layers: list[LayerBlob], cfg_bytes: bytes, cfg_digest: str, repo_tag: str, scratch: str
) -> list[_File]:
    """Files of a legacy `docker save` archive (Docker image spec v1.2 tarball)."""
    files: list[_File] = []
    layer_names: list[str] = []
    seen: set[str] = set()
    parent = ""
    for b in layers:
        tar_path, diff_id = _uncompressed(b, scratch)
        # A v1 layer ID chains the parent, so the same tar at two positions gets two directories.
        layer_id = hashlib.sha256(f"{parent}\n{diff_id}".encode()).hexdigest()
        parent = layer_id
        layer_names.append(f"{layer_id}/layer.tar")
        if layer_id in seen:
            continue
        seen.add(layer_id)
        files.append((f"{layer_id}/VERSION", b"1.0", ""))
        files.append((f"{layer_id}/layer.tar", None, tar_path))
    cfg_name = cfg_digest.split(":", 1)[1] + ".json"
    files.append((cfg_name, cfg_bytes, ""))
    entry = {"Config": cfg_name, "RepoTags": [repo_tag] if repo_tag else [], "Layers": layer_names}
    files.append(("manifest.json", canonical_json([entry]), ""))
    repo, _, short = repo_tag.rpartition(":")
    if parent and repo_tag:
        files.append(("repositories", canonical_json({repo: {short: parent}}), ""))
    return files
