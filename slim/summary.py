"""The image part of `slim analyze`: summary, layers, efficiency, largest paths, waste, unknowns.

`summarize(loaded)` turns a LoadedImage into an AnalysisResult whose keep/packages/syscalls fields
are still empty; the static closure and tracing fill those in later.
"""

from __future__ import annotations

import heapq
import logging
import posixpath

from slim.efficiency import compute_efficiency
from slim.fs.rootfs import RootFS
from slim.image import LoadedImage
from slim.model import EntryKind, parent
from slim.result import AnalysisResult, ImageSummary, LayerSummary, PathBytes, UnknownItem
from slim.waste import find_waste

log = logging.getLogger(__name__)

TOP_N = 20  # largest directories and files listed


def summarize(loaded: LoadedImage, top: int = TOP_N) -> AnalysisResult:
    """Everything the image itself tells: no analysis of what the app uses.

    Raises RuleError when the shipped waste rules are invalid.
    """
    return AnalysisResult(
        image=image_summary(loaded),
        efficiency=compute_efficiency(loaded),
        largest_dirs=largest_dirs(loaded.rootfs, top),
        largest_files=largest_files(loaded.rootfs, top),
        waste=find_waste(loaded.rootfs, loaded.image.config),
        unknowns=unknowns_from_issues(loaded),
    )


def image_summary(loaded: LoadedImage) -> ImageSummary:
    """Image metadata, squashed size (a hard-linked inode once) and what each layer adds."""
    image = loaded.image
    config = image.config
    layers = []
    for index, read in enumerate(loaded.layers):
        info = image.layers[index] if index < len(image.layers) else None
        layers.append(
            LayerSummary(
                index=index,
                digest=read.blob_digest or (info.digest if info else ""),
                diff_id=read.diff_id or (info.diff_id if info else ""),
                created_by=info.created_by if info else "",
                size_bytes=read.tree.size,
                file_count=read.tree.file_count,
                blob_bytes=read.blob_bytes or (info.size if info else 0),
            )
        )
    return ImageSummary(
        reference=str(image.ref),
        digest=image.digest or "",
        os=config.os,
        architecture=config.architecture,
        entrypoint=tuple(config.entrypoint),
        cmd=tuple(config.cmd),
        env=dict(sorted(config.env_dict.items())),
        workdir=config.workdir,
        user=config.user,
        size_bytes=loaded.rootfs.size_bytes,
        file_count=loaded.rootfs.file_count,
        layers=tuple(layers),
        exposed_ports=tuple(sorted(config.exposed_ports)),
    )


def largest_dirs(rootfs: RootFS, top: int = TOP_N) -> list[PathBytes]:
    """Directories by recursive regular-file size (count = files below), largest first; "/"
    excluded, and so is a directory whose bytes all lie in one of its subdirectories."""
    # Sum per immediate parent first, then push each directory's own totals up its ancestors:
    # directories are far fewer than files, so this is cheaper than walking up from every file.
    own: dict[str, list[int]] = {}
    for path, entry in rootfs.tree.entries.items():
        if entry.kind is EntryKind.DIR or path == "/":
            continue
        acc = own.setdefault(parent(path), [0, 0])
        acc[0] += entry.size if entry.kind is EntryKind.FILE else 0
        acc[1] += 1
    sizes: dict[str, list[int]] = {}
    for folder, (size, count) in own.items():
        cur = folder
        while cur not in ("/", ""):
            acc = sizes.setdefault(cur, [0, 0])
            acc[0] += size
            acc[1] += count
            cur = parent(cur)
    # nested directories collapse: a directory whose bytes are all in one subdirectory (/usr
    # when everything is under /usr/lib) says nothing its subdirectory does not; list the child
    redundant = {posixpath.dirname(d) for d, (size, _) in sizes.items()
                 if size and sizes.get(posixpath.dirname(d), [0])[0] == size}
    best = heapq.nsmallest(top, ((d, acc) for d, acc in sizes.items() if d not in redundant),
                           key=lambda kv: (-kv[1][0], kv[0]))
    return [PathBytes(path, acc[0], acc[1]) for path, acc in best]


def largest_files(rootfs: RootFS, top: int = TOP_N) -> list[PathBytes]:
    """Regular files by size, largest first (ties by path)."""
    files = ((e.size, p) for p, e in rootfs.tree.entries.items() if e.kind is EntryKind.FILE)
    best = heapq.nsmallest(top, files, key=lambda sp: (-sp[0], sp[1]))
    return [PathBytes(path, size, 1) for size, path in best]


def unknowns_from_issues(loaded: LoadedImage) -> list[UnknownItem]:
    """Problems contained while reading (unsafe members, unreadable files) as report unknowns."""
    items = set()
    for issue in loaded.issues:
        where = f" (layer {issue.layer})" if issue.layer >= 0 and len(loaded.layers) > 1 else ""
        items.add(UnknownItem(issue.path, issue.reason + where))
    return sorted(items, key=lambda u: (u.path, u.reason))
