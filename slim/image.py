"""An opened image read once into a squashed, read-only filesystem view: `load()` → LoadedImage.

This sits below everything that consumes a loaded image (the summary, efficiency, the keep set,
the image writer, runners) and above sources (where images come from) and fs (layer reading,
squashing): it is the one place the two meet. `prepare_root` unpacks the image into a host
directory for a runner.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
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
         on_bytes: ByteProgress | None = None, pull: bool = False) -> LoadedImage:
    """Open `reference` (or take an opened Image) and read every layer once.

    `capture` says which file contents are kept for analysis (None: every regular file).
    Raises SourceError / LayerError; on error nothing is left behind.
    """
    image = reference if isinstance(reference, Image) else open_image(reference, pull=pull)
    store = ContentStore(capture)
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


def prepare_root(image: Image, workdir: str, on_bytes: ByteProgress | None = None) -> str:
    """A host directory holding the image's root filesystem; returns its path.

    A `rootfs:DIR` image is used in place (its root); any other image is extracted into
    `workdir/rootfs`, which the caller owns and removes. Raises LayerError / SourceError.
    """
    if isinstance(image, DirectoryImage):
        return image.root
    if not isinstance(image, BlobImage):
        raise SourceError(f"{image.ref}: cannot extract layers of a {type(image).__name__}")
    dest = os.path.join(workdir, "rootfs")
    os.mkdir(dest, 0o755)
    openers = [partial(image.open_blob, layer.index) for layer in image.layers]
    report = extract_layers(openers, dest, name=str(image.ref), on_bytes=on_bytes)
    for item in sorted(report.skipped, key=lambda s: (s.layer, s.path)):
        log.info("%s: layer %d: %s: not extracted: %s", image.ref, item.layer, item.path, item.reason)
    return dest


__all__ = ["LoadedImage", "load", "prepare_root"]
