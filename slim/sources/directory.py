"""`rootfs:DIR` — a root filesystem on the host (unpacked image, debootstrap tree, chroot).

The directory is walked without following symlinks; every entry becomes one synthetic layer.
Contents are never copied: the ContentStore references the host file, reached only through a
path this module built from a walk that never crossed a symlink, so reads cannot escape DIR.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

from slim.errors import SourceError
from slim.fs.layer import ContentStore, LayerReadResult
from slim.fs.tree import FileTree
from slim.model import EntryKind, FileEntry, ImageConfig, Issue, LayerInfo
from slim.refs import ImageRef
from slim.sources.base import ByteProgress, Image, Source, config_from_oci, load_json

CONFIG_SIDECAR = ".slim-config.json"  # optional OCI-style image config beside the tree


class DirectoryImage(Image):
    """A host directory seen as a one-layer image."""

    def __init__(self, ref: ImageRef, root: str, config: ImageConfig, raw: dict) -> None:
        self.ref = ref
        self.root = os.path.realpath(root)
        self.config = config
        self.raw_config = raw
        self.diff_ids = []
        self.digest = ""
        self.layers = [LayerInfo(index=0, digest="", diff_id="", size=0, created_by=f"rootfs:{root}")]

    def read_layers(
        self, store: ContentStore | None, on_bytes: ByteProgress | None = None
    ) -> Iterator[LayerReadResult]:
        tree = FileTree()
        issues: list[Issue] = []
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            rel_dir = "/" + os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            rel_dir = "/" if rel_dir == "/." else rel_dir
            dirnames.sort()
            names = sorted(dirnames) + sorted(filenames)
            for name in names:
                host = os.path.join(dirpath, name)
                path = (rel_dir.rstrip("/") + "/" + name) if rel_dir != "/" else "/" + name
                if rel_dir == "/" and name == CONFIG_SIDECAR:
                    continue
                try:
                    st = os.lstat(host)
                    entry = _entry(path, host, st)
                except OSError as exc:  # unreadable (a link in /proc, a permission): reported
                    issues.append(Issue(path, f"cannot read: {exc.strerror}", 0))
                    continue
                if entry is None:
                    issues.append(Issue(path, "socket or unknown file type; skipped", 0))
                    continue
                tree.add(entry)
                if entry.kind is EntryKind.FILE and store is not None and entry.size > 0:
                    # every file is readable in place: index it, copy nothing
                    store.put_host_file(0, path, host)
            # never descend into directory symlinks: os.walk(followlinks=False) already doesn't
        digest = hashlib.sha256(
            "\n".join(f"{e.path}:{e.kind.value}:{e.size}:{e.mtime}" for e in tree.entries.values()).encode()
        ).hexdigest()
        result = LayerReadResult(tree=tree, issues=issues, diff_id="sha256:" + digest)
        result.tar_bytes = tree.size
        if on_bytes is not None:
            on_bytes(tree.size)
        yield result


    def read_files(self, wanted: dict[int, set[str]]) -> Iterator[tuple[int, str, BinaryIO]]:
        for path in sorted(wanted.get(0, ())):
            host = os.path.join(self.root, path.lstrip("/"))
            # the walk saw no symlink on this path; refuse one that appeared since
            parent = os.path.realpath(os.path.dirname(host))
            if parent != self.root and not parent.startswith(self.root + os.sep):
                raise SourceError(f"rootfs:{self.root}: {path} now leads outside the root")
            try:
                fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError as exc:
                raise SourceError(f"rootfs:{self.root}: {path}: {exc.strerror}") from None
            with os.fdopen(fd, "rb") as f:
                yield 0, path, f


def _entry(path: str, host: str, st: os.stat_result) -> FileEntry | None:
    mode = stat.S_IMODE(st.st_mode)
    common = {"path": path, "mode": mode, "uid": st.st_uid, "gid": st.st_gid, "mtime": int(st.st_mtime)}
    if stat.S_ISREG(st.st_mode):
        return FileEntry(kind=EntryKind.FILE, size=st.st_size, **common)  # type: ignore[arg-type]
    if stat.S_ISDIR(st.st_mode):
        return FileEntry(kind=EntryKind.DIR, **common)  # type: ignore[arg-type]
    if stat.S_ISLNK(st.st_mode):
        return FileEntry(kind=EntryKind.SYMLINK, linkname=os.readlink(host), **common)  # type: ignore[arg-type]
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        kind = EntryKind.CHAR if stat.S_ISCHR(st.st_mode) else EntryKind.BLOCK
        return FileEntry(kind=kind, devmajor=os.major(st.st_rdev), devminor=os.minor(st.st_rdev), **common)  # type: ignore[arg-type]
    if stat.S_ISFIFO(st.st_mode):
        return FileEntry(kind=EntryKind.FIFO, **common)  # type: ignore[arg-type]
    return None


class DirectorySource(Source):
    """Opens `rootfs:DIR`. An optional DIR/.slim-config.json supplies an OCI image config."""

    def open(self, ref: ImageRef) -> Image:
        root = ref.location
        if not os.path.isdir(root):
            raise SourceError(f"rootfs:{root}: no such directory")
        raw: dict = {}
        sidecar = os.path.join(root, CONFIG_SIDECAR)
        if os.path.isfile(sidecar) and not os.path.islink(sidecar):
            with open(sidecar, "rb") as f:
                raw = load_json(f.read(), sidecar)
        config, _, _ = config_from_oci(raw, f"rootfs:{root}") if raw else (ImageConfig(), [], [])
        return DirectoryImage(ref, root, config, raw)


__all__ = ["CONFIG_SIDECAR", "DirectoryImage", "DirectorySource", "json"]
