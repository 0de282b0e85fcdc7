"""Layer efficiency: dive's metrics (wagoodman/dive), with two of its quirks corrected.

dive's definitions (dive/filetree/efficiency.go `Efficiency`, dive/image/analysis.go), which we keep
so users comparing the two tools see the same meaning:

* Every *leaf* of every layer tree is an occurrence of its path in that layer, base layer included.
  Its size is the file size from the tar header; a whiteout of a file has size 0; a whiteout of a
  directory has the total size of the deleted subtree in the stack of all lower layers.
* ``cumulative(p) = Σ size`` over the layers where p occurs, ``min(p) = min size``.
* **score = Σ_p min(p) / Σ_p cumulative(p)** (1.0 when the denominator is 0).
* Inefficient paths are those occurring in two or more layers, largest cumulative first.
* **wasted_bytes = Σ cumulative(p) over inefficient paths.**
* **user_wasted_percent = wasted_bytes / Σ size of layers 1..n** (the base layer 0 excluded). Like
  dive's, it is a ratio (0.1 = 10 %; it can exceed 1); the layer size here is the regular-file bytes
  the layer adds. 0.0 when the image has only a base layer.

Our handling of dive's quirks (wagoodman/dive dive/filetree/efficiency.go):

(a) dive records a deleted *directory* as one occurrence at the directory's path whose size is the
    whole deleted subtree. That path appears once, so min == cumulative and removing a directory
    with a later ``RUN rm -rf`` counts as *no* waste (and even raises the score). We instead give
    every regular file the deletion removed (``LoadedImage.deleted``: exactly the lower entries a
    layer's whiteouts and opaque markers removed) a 0-size occurrence at its own path, as dive already
    does for a single deleted file. Removed directories therefore count as waste, and opaque
    directories (``.wh..wh..opq``, which dive does not size at all) are handled the same way.
    When a layer both deletes and re-adds a path, the re-added entry is that layer's occurrence.
(b) dive's wasted_bytes includes the copy that survives (a 2 kB file replaced by a 5 kB one is
    "7 kB wasted"). We still report that number as ``wasted_bytes`` — computed over our occurrences —
    so it can be compared with dive, and add ``removable_by_squash_bytes = Σ_p (cumulative(p) -
    live(p))`` where live(p) is p's size in the squashed filesystem (0 when deleted): the bytes that
    squashing the layers would really save.

Directories are not occurrences here: a directory leaf in dive is an empty directory of tar size 0,
which adds nothing to either sum, only noise to the inefficient list.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from slim.fs.tree import FileTree
from slim.model import EntryKind, FileEntry
from slim.result import Efficiency, PathBytes

if TYPE_CHECKING:
    from slim.image import LoadedImage

log = logging.getLogger(__name__)

MAX_INEFFICIENT = 100  # the report lists at most this many inefficient paths (largest first)


class _Occurrences:
    """Per path: cumulative size, minimum size and the layers it occurs in (plain dicts: fast)."""

    def __init__(self) -> None:
        self.cumulative: dict[str, int] = {}
        self.minimum: dict[str, int] = {}
        self.layers: dict[str, list[int]] = {}

    def add(self, path: str, layer: int, size: int) -> None:
        seen = self.layers.get(path)
        if seen is None:
            self.cumulative[path] = size
            self.minimum[path] = size
            self.layers[path] = [layer]
            return
        self.cumulative[path] += size
        if size < self.minimum[path]:
            self.minimum[path] = size
        seen.append(layer)


@dataclass(frozen=True)
class PathEfficiency:
    """One path's occurrences across layers."""

    path: str
    cumulative: int
    minimum: int
    layers: tuple[int, ...]


@dataclass(frozen=True)
class LayerEfficiency:
    """The full computation, before it is cut down to the report's `Efficiency`."""

    score: float
    wasted_bytes: int
    user_wasted_percent: float
    removable_by_squash_bytes: int
    inefficient: tuple[PathEfficiency, ...]  # largest cumulative first, then by path (maybe cut)


def _occurrences_slim(
    trees: Sequence[FileTree], deleted: Sequence[Iterable[FileEntry]]
) -> _Occurrences:
    data = _Occurrences()
    for index, tree in enumerate(trees):
        for path, entry in tree.entries.items():
            if entry.kind is EntryKind.DIR:
                continue
            data.add(path, index, entry.size)
        removed = deleted[index] if index < len(deleted) else ()
        for entry in removed:
            # quirk (a): each deleted file is a 0-size occurrence at its own path, unless the
            # same layer put the path back (then that entry was its occurrence, counted above).
            if entry.kind is EntryKind.DIR:
                continue
            other = tree.entries.get(entry.path)
            if other is not None and other.kind is not EntryKind.DIR:
                continue
            data.add(entry.path, index, 0)
    return data


def _occurrences_dive(
    trees: Sequence[FileTree], deleted: Sequence[Iterable[FileEntry]]
) -> _Occurrences:
    """dive's own occurrences, kept to show (and test) what quirk (a) changes.

    A whiteout is one occurrence at its path; when the lower entry was a directory *recorded in
    a layer* its size is the subtree's (dive's `StackTreeRange` + `VisitDepthChildFirst`), else 0:
    dive's `AddPath` makes implied parent directories with an empty FileInfo (IsDir false), so a
    deleted implied directory sizes 0 — which is why dive's unit test scores 0.75.
    """
    data = _Occurrences()
    explicit_dirs: set[str] = set()
    for index, tree in enumerate(trees):
        removed = list(deleted[index]) if index < len(deleted) else []
        for target in sorted(tree.whiteouts):
            size = 0
            if target in explicit_dirs:
                prefix = target.rstrip("/") + "/"
                size = sum(e.size for e in removed if e.kind is EntryKind.FILE and e.path.startswith(prefix))
            data.add(target, index, size)
        for path, entry in tree.entries.items():
            if entry.kind is EntryKind.DIR:
                explicit_dirs.add(path)
                continue
            data.add(path, index, entry.size)
    return data


def efficiency_of_layers(
    trees: Sequence[FileTree],
    deleted: Sequence[Iterable[FileEntry]],
    live_sizes: Mapping[str, int],
    *,
    quirks: str = "slim",
    limit: int | None = None,
) -> LayerEfficiency:
    """Compute the metrics over layer trees (base first).

    `deleted[i]` are the lower entries layer i's whiteouts removed (slim.image.load records them);
    `live_sizes` maps a path to its regular-file size in the squashed filesystem. `quirks` is
    "slim" (our corrections, the default) or "dive" (dive's behaviour, for comparison and tests).
    `limit` keeps only that many inefficient paths (the largest); the totals cover all of them.
    Raises ValueError for an unknown `quirks`.
    """
    if quirks == "slim":
        data = _occurrences_slim(trees, deleted)
    elif quirks == "dive":
        data = _occurrences_dive(trees, deleted)
    else:
        raise ValueError(f"{quirks}: unknown quirks mode (slim|dive)")
    total_min = sum(data.minimum.values())
    total_cum = sum(data.cumulative.values())
    score = 1.0 if total_cum == 0 else total_min / total_cum
    multi = [path for path, layers in data.layers.items() if len(layers) >= 2]
    wasted = sum(data.cumulative[path] for path in multi)

    def order(path: str) -> tuple[int, str]:
        return (-data.cumulative[path], path)

    chosen = sorted(multi, key=order) if limit is None else heapq.nsmallest(limit, multi, key=order)
    inefficient = [
        PathEfficiency(path, data.cumulative[path], data.minimum[path], tuple(data.layers[path]))
        for path in chosen
    ]
    user_bytes = sum(tree.size for tree in trees[1:])
    user_wasted = wasted / user_bytes if user_bytes else 0.0
    removable = sum(max(0, cum - live_sizes.get(path, 0)) for path, cum in data.cumulative.items())
    return LayerEfficiency(
        score=score,
        wasted_bytes=wasted,
        user_wasted_percent=user_wasted,
        removable_by_squash_bytes=removable,
        inefficient=tuple(inefficient),
    )


def compute_efficiency(loaded: LoadedImage) -> Efficiency:
    """dive-style efficiency of a loaded image, with our corrections (module docstring)."""
    trees = [layer.tree for layer in loaded.layers]
    live = {
        path: entry.size
        for path, entry in loaded.rootfs.tree.entries.items()
        if entry.kind is EntryKind.FILE
    }
    full = efficiency_of_layers(trees, loaded.deleted, live, limit=MAX_INEFFICIENT)
    log.info(
        "efficiency %.4f, wasted %d bytes (dive), removable by squash %d bytes, %d inefficient paths listed",
        full.score, full.wasted_bytes, full.removable_by_squash_bytes, len(full.inefficient),
    )
    return Efficiency(
        score=round(full.score, 6),
        wasted_bytes=full.wasted_bytes,
        user_wasted_percent=round(full.user_wasted_percent, 6),
        removable_by_squash_bytes=full.removable_by_squash_bytes,
        inefficient=tuple(
            PathBytes(p.path, p.cumulative, len(p.layers)) for p in full.inefficient
        ),
    )
