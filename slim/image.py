"""An opened image read once into a squashed, read-only filesystem view: `load()` → LoadedImage.

This sits below everything that consumes a loaded image (the summary, efficiency, the keep set,
the image writer, runners) and above sources (where images come from) and fs (layer reading,
squashing): it is the one place the two meet. `prepare_root` unpacks the image into a host
directory for a runner.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from slim.errors import SourceError
from slim.fs.extract import extract_layers
from slim.fs.layer import Capture, ContentStore, LayerReadResult
from slim.fs.rootfs import RootFS
from slim.fs.tree import SquashedTree
from slim.model import FileEntry, Issue
from slim.refs import ImageRef
from slim.sources import BlobImage, DirectoryImage, Image, open_image

log = logging.getLogger(__name__)

ByteProgress = Callable[[int], None]


@dataclass
class LoadedImage:
    """An opened image with its squashed RootFS and what each layer contributed. Closing it
    removes every temporary file the read made."""

    image: Image
    rootfs: RootFS
    layers: list[LayerReadResult]
    deleted: list[list[FileEntry]] = field(default_factory=list)  # per layer: lower entries removed

    @property
    def issues(self) -> list[Issue]:
        return self.rootfs.issues

    def close(self) -> None:
        self.rootfs.close()
        self.image.close()

    def __enter__(self) -> LoadedImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load(reference: str | ImageRef | Image, *, capture: Capture | None = None,
         on_bytes: ByteProgress | None = None, pull: bool = False,
         when_stored: Sequence[tuple[str, Callable[[], None]]] = ()) -> LoadedImage:
    """Open `reference` (or take an opened Image) and read every layer once.

    `capture` says which file contents are kept for analysis (None: every regular file);
    `when_stored`: (suffix, callback) pairs, each called once when the reader first stores a
    file whose path ends so (ContentStore.when_stored). Raises SourceError / LayerError; on
    error nothing is left behind.
    """
    image = reference if isinstance(reference, Image) else open_image(reference, pull=pull)
    store = ContentStore(capture)
    for suffix, callback in when_stored:
        store.when_stored(suffix, callback)
    squashed = SquashedTree()
    results: list[LayerReadResult] = []
    deleted: list[list[FileEntry]] = []
    issues: list[Issue] = []
    try:
        for result in image.read_layers(store, on_bytes):
            deleted.append(squashed.apply(result.tree))
            issues.extend(result.issues)
            results.append(result)
    except BaseException:
        store.close()
        image.close()
        raise
    return LoadedImage(image=image, rootfs=RootFS(squashed, store, issues), layers=results,
                       deleted=deleted)


def prepare_root(image: Image, workdir: str, on_bytes: ByteProgress | None = None,
                 *, private: bool = False) -> str:
    """A host directory holding the image's root filesystem; returns its path.

    An image with layers is extracted into `workdir/rootfs`, which the caller owns and removes.
    A `rootfs:DIR` image is used in place, or with `private` copied there (owners, modes,
    links and FIFOs kept; devices and sockets skipped), so a run may write it and change
    its owners. Raises LayerError / SourceError.
    """
    if isinstance(image, DirectoryImage):
        if not private:
            return image.root
        dest = os.path.join(workdir, "rootfs")
        _copy_tree(image.root, dest)
        return dest
    if not isinstance(image, BlobImage):
        raise SourceError(f"{image.ref}: cannot extract layers of a {type(image).__name__}")
    dest = os.path.join(workdir, "rootfs")
    os.mkdir(dest, 0o755)
    openers = [partial(image.open_blob, layer.index) for layer in image.layers]
    report = extract_layers(openers, dest, name=str(image.ref), on_bytes=on_bytes)
    for item in sorted(report.skipped, key=lambda s: (s.layer, s.path)):
        log.info("%s: layer %d: %s: not extracted: %s", image.ref, item.layer, item.path, item.reason)
    return dest


def _copy_tree(src: str, dest: str) -> None:
    """Copy a root filesystem without following a single link; keep owners when root."""
    as_root = os.geteuid() == 0
    dir_modes: list[tuple[str, int]] = []  # applied last, deepest first: 0555 dirs still fill

    def copy_one(path: str, target: str, st: os.stat_result) -> None:
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(path), target)
        elif stat.S_ISDIR(st.st_mode):
            os.mkdir(target, 0o700)
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as fi, open(target, "xb") as fo:
                shutil.copyfileobj(fi, fo, 1 << 20)
        elif stat.S_ISFIFO(st.st_mode):
            os.mkfifo(target, mode)
        else:
            return  # devices and sockets never reach a sandbox
        if as_root:
            os.chown(target, st.st_uid, st.st_gid, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            dir_modes.append((target, mode))
        elif not stat.S_ISLNK(st.st_mode):
            os.chmod(target, mode)

    copy_one(src, dest, os.lstat(src))
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        rel = os.path.relpath(dirpath, src)
        for name in sorted(dirnames) + sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                copy_one(path, os.path.join(dest, rel, name), os.lstat(path))
            except OSError as exc:
                log.info("%s: not copied: %s", path, exc.strerror)
    for target, mode in reversed(dir_modes):
        os.chmod(target, mode)


__all__ = ["LoadedImage", "load", "prepare_root"]
