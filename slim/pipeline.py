"""The whole data flow, short: open → read layers once → squash → analyze → AnalysisResult."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from slim.fs.layer import ContentStore, LayerReadResult
from slim.fs.rootfs import RootFS
from slim.fs.tree import SquashedTree
from slim.model import FileEntry, Issue
from slim.sources import Image, open_image
from slim.sources.base import parse_ref

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


@dataclass
class LoadedImage:
    """An opened image with its squashed RootFS and what each layer contributed."""

    image: Image
    rootfs: RootFS
    layers: list[LayerReadResult]
    deleted: list[list[FileEntry]] = field(default_factory=list)  # per layer: lower entries removed
    lower_sizes: list[dict[str, int]] = field(default_factory=list)

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


def load(reference: str, on_bytes: Progress | None = None, image: Image | None = None) -> LoadedImage:
    """Open `reference` and read every layer once into a squashed RootFS.

    Raises SourceError / LayerError; on error nothing is left behind.
    """
    image = image or open_image(parse_ref(reference) if isinstance(reference, str) else reference)
    store = ContentStore()
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
    rootfs = RootFS(squashed, store, issues)
    return LoadedImage(image=image, rootfs=rootfs, layers=results, deleted=deleted)
