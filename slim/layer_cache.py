"""Layers read before, read back: the tree and the captured contents of a layer blob.

An image that shares base layers with one analyzed before (the same base image, the next
build of an application) pays only for its new layers: for a layer met before, slim hashes
the blob (no decompression, no tar parsing) and, when the bytes are the ones it read then,
takes the layer's entries, issues and digests from `<key>.json` and the contents it captured
from `<key>.pack`.

The key is sha256 over the blob's digest, the capture policy (which contents were copied) and
slim's code (`result_cache.code_digest`): every part is a digest slim computed. The entry is
looked up by the digest the manifest claims (or, for a legacy archive, the diff_id the config
claims) and used only after the blob hashes to the digest the entry was written for, so a
hostile image cannot plant an entry another image reads, and a lying manifest gets the same
error as without the cache (the blob is then read as usual). Entries are JSON, never pickle.

A pack is the content store's own file for the layer (an unnamed file created in the cache
directory and linked in when the layer was read whole: no second copy, nothing left behind
if slim is killed). The cache holds at most MAX_BYTES (packs and entries; the least recently
used go first). `SLIM_NO_CACHE=1` / `--no-cache` turn it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from slim.cache import cache_dir, digest_key, disabled, read_json, write_json
from slim.fs.layer import Capture, ContentStore, LayerReadResult, stream_digest
from slim.fs.tree import FileTree
from slim.model import EntryKind, FileEntry, Issue, LayerInfo

log = logging.getLogger(__name__)

FORMAT = 1
MAX_BYTES = 2 << 30
KIND = "layers"


def policy_digest(capture: Capture | None) -> str:
    """What a store copies, as a digest (None: everything)."""
    if capture is None:
        return "all"
    return hashlib.sha256(json.dumps([sorted(capture.globs), sorted(m.hex() for m in capture.magics)])
                          .encode()).hexdigest()


class LayerCache:
    """Cached layer reads for one content store (one capture policy)."""

    def __init__(self, store: ContentStore) -> None:
        from slim.result_cache import code_digest

        self.store = store
        self.directory = cache_dir(KIND)
        self.salt = digest_key(policy_digest(store.capture), code_digest())

    @classmethod
    def for_store(cls, store: ContentStore | None) -> LayerCache | None:
        """A cache for `store`, or None when caching is off or the directory is unusable; the
        store then creates its packs in the cache directory."""
        if store is None or disabled() or store.host:
            return None
        cache = cls(store)
        try:
            cache.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.debug("layer cache off: %s", exc)
            return None
        store.pack_dir = str(cache.directory)
        return cache

    def _key(self, blob_digest: str) -> str:
        return digest_key(blob_digest, self.salt)

    def lookup(self, info: LayerInfo, expected_diff_id: str, open_blob: Any) -> LayerReadResult | None:
        """The cached read of layer `info`, or None (read it as usual)."""
        claims = [d for d in (info.digest, expected_diff_id) if d.startswith("sha256:")]
        for claim in dict.fromkeys(claims):
            meta_path = self.directory / f"{self._key(claim)}.json"
            doc = read_json(meta_path, FORMAT)
            if doc is None:
                continue
            try:
                with open_blob() as blob:
                    actual = stream_digest(blob)
            except OSError:
                return None
            if actual != doc.get("blob_digest"):
                return None  # not the bytes the entry was written for: read the blob
            if info.digest.startswith("sha256:") and info.digest != actual:
                return None
            if expected_diff_id.startswith("sha256:") and expected_diff_id != doc.get("diff_id"):
                return None  # read_layer reports the mismatch
            try:
                return self._restore(doc, info.index, meta_path)
            except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
                log.debug("layer cache: %s unusable: %s", meta_path, exc)
                return None
        return None

    def _restore(self, doc: dict[str, Any], layer: int, meta_path: Path) -> LayerReadResult:
        tree = FileTree()
        for row in doc["entries"]:
            path, kind, mode, uid, gid, size, linkname, mtime, xattrs, major, minor = row
            tree.add(FileEntry(path=path, kind=EntryKind(kind), mode=mode, uid=uid, gid=gid, size=size,
                               linkname=linkname, layer=layer, mtime=mtime,
                               xattrs=tuple((str(k), str(v)) for k, v in xattrs),
                               devmajor=major, devminor=minor))
        tree.whiteouts = set(doc["whiteouts"])
        tree.opaque = set(doc["opaque"])
        index = {path: (int(off), int(size)) for path, (off, size) in doc["index"].items()}
        if index:
            pack_path = meta_path.with_suffix(".pack")
            fd = os.open(pack_path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            pack = os.fdopen(fd, "rb")
            if os.fstat(fd).st_size < max(off + size for off, size in index.values()):
                pack.close()
                raise ValueError("pack shorter than its index")
            self.store.attach_pack(layer, pack, index)
        with contextlib.suppress(OSError):
            os.utime(meta_path)  # recently used
        result = LayerReadResult(tree=tree, issues=[Issue(p, r, layer) for p, r in doc["issues"]],
                                 blob_digest=doc["blob_digest"], diff_id=doc["diff_id"],
                                 compression=doc["compression"], blob_bytes=doc["blob_bytes"],
                                 tar_bytes=doc["tar_bytes"])
        return result

    def save(self, layer: int, result: LayerReadResult) -> None:
        """Remember a layer read whole (its pack is linked into the cache)."""
        if not result.blob_digest.startswith("sha256:"):
            return
        key = self._key(result.blob_digest)
        meta_path = self.directory / f"{key}.json"
        index = self.store.layer_index(layer)
        doc = {
            "format": FORMAT, "blob_digest": result.blob_digest, "diff_id": result.diff_id,
            "compression": result.compression, "blob_bytes": result.blob_bytes,
            "tar_bytes": result.tar_bytes,
            "entries": [[e.path, e.kind.value, e.mode, e.uid, e.gid, e.size, e.linkname, e.mtime,
                         [list(x) for x in e.xattrs], e.devmajor, e.devminor]
                        for e in result.tree.entries.values()],
            "whiteouts": sorted(result.tree.whiteouts), "opaque": sorted(result.tree.opaque),
            "issues": [[i.path, i.reason] for i in result.issues],
            "index": {path: list(loc) for path, loc in index.items()},
        }
        try:
            if index:
                fd = self.store.pack_fd(layer)
                if fd is None or layer not in self.store.packs_in_dir:
                    return  # the pack is not in the cache directory: not worth a copy
                pack_path = meta_path.with_suffix(".pack")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(pack_path)
                # linkat(AT_SYMLINK_FOLLOW) of the unnamed file (a directory fd makes Python call
                # linkat; plain link() does not follow /proc's magic link)
                dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.link(f"/proc/self/fd/{fd}", pack_path.name, dst_dir_fd=dir_fd, follow_symlinks=True)
                finally:
                    os.close(dir_fd)
            write_json(meta_path, doc)
            self._prune()
        except OSError as exc:
            log.debug("layer cache: %s not written: %s", meta_path, exc)

    def _prune(self) -> None:
        """Remove the least recently used entries beyond MAX_BYTES."""
        entries = []
        total = 0
        for meta in self.directory.glob("*.json"):
            pack = meta.with_suffix(".pack")
            try:
                size = meta.stat().st_size + (pack.stat().st_blocks * 512 if pack.exists() else 0)
                entries.append((meta.stat().st_mtime, meta, pack, size))
            except OSError:
                continue
            total += size
        for _mtime, meta, pack, size in sorted(entries):
            if total <= MAX_BYTES:
                break
            for p in (meta, pack):
                with contextlib.suppress(OSError):
                    p.unlink()
            total -= size


__all__ = ["MAX_BYTES", "LayerCache", "policy_digest"]
