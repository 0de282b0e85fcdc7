"""`slim diff BASE HEAD`: what a change did to an image — bytes added and removed per layer,
package and directory, new and removed packages, and the efficiency change.

Packages (dpkg, apk and language packages, slim.analyzers.packages) are compared by the files
each image really has, not only by what its database lists: a package is "removed" only when
none of its files is left, "partly-kept" when the head keeps some of the base's files of the
same version (what `slim build` does), "changed" for another version or other content.

Both images are compared as squashed filesystems (what a container sees). A regular file counts as
changed when its size differs (slim reads only candidates' contents, so equal-size rewrites are
not detected); a changed file's old size is "removed" and its new size "added". Directory rows
aggregate files into their directory truncated to `DIR_DEPTH` components, so rows never overlap
and their sums equal the image totals. Layers are matched by diff_id (the uncompressed content
digest, OCI image-spec config `rootfs.diff_ids`), so recompressing a layer is not a change.
Output is deterministic: every list is sorted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import posixpath
from dataclasses import asdict, dataclass
from typing import Any

from slim.model import EntryKind
from slim.result import AnalysisResult
from slim.units import format_bytes

log = logging.getLogger(__name__)

DIR_DEPTH = 3  # /usr/lib/x86_64-linux-gnu
MAX_ROWS = 30  # rows per table in text and markdown (JSON has all)


@dataclass(frozen=True)
class ImageSnapshot:
    """One side of a diff: the analysis plus every non-directory path → (size, identity), where
    identity is the kind and link target (a retargeted symlink is a change of 0 bytes)."""

    result: AnalysisResult
    files: dict[str, tuple[int, str]]


@dataclass(frozen=True)
class SideSummary:
    reference: str
    digest: str
    size_bytes: int
    file_count: int
    layer_count: int
    efficiency: float | None
    wasted_bytes: int | None
    removable_bytes: int | None


@dataclass(frozen=True)
class LayerChange:
    status: str  # added | removed | shared
    base_index: int | None
    head_index: int | None
    diff_id: str
    created_by: str
    size_bytes: int


@dataclass(frozen=True)
class PackageChange:
    status: str  # added | removed | partly-kept | changed | unchanged
    manager: str
    name: str
    base_version: str
    head_version: str
    base_bytes: int
    head_bytes: int
    base_files: int = 0
    head_files: int = 0
    arch: str = ""


@dataclass(frozen=True)
class DirectoryChange:
    path: str
    added_bytes: int
    removed_bytes: int
    added_files: int
    removed_files: int

    @property
    def net_bytes(self) -> int:
        return self.added_bytes - self.removed_bytes


@dataclass(frozen=True)
class ImageDiff:
    """The whole comparison; `unchanged` is True when nothing differs."""

    base: SideSummary
    head: SideSummary
    added_bytes: int
    removed_bytes: int
    layers: tuple[LayerChange, ...]
    packages: tuple[PackageChange, ...]  # every package, unchanged ones included
    directories: tuple[DirectoryChange, ...]  # only directories with a change, largest first

    @property
    def size_delta(self) -> int:
        return self.head.size_bytes - self.base.size_bytes

    @property
    def efficiency_delta(self) -> float | None:
        if self.base.efficiency is None or self.head.efficiency is None:
            return None
        return self.head.efficiency - self.base.efficiency

    @property
    def unchanged(self) -> bool:
        return (
            self.added_bytes == 0 and self.removed_bytes == 0 and not self.directories
            and all(layer.status == "shared" for layer in self.layers)
            and all(p.status == "unchanged" for p in self.packages)
        )


# -- building --------------------------------------------------------------------------------
def file_sizes(rootfs: Any) -> dict[str, tuple[int, str]]:
    """Every non-directory path of a RootFS → (size (0 for links and devices), kind:link target)."""
    return {
        e.path: (e.size if e.kind is EntryKind.FILE else 0, f"{e.kind.name}:{e.linkname or ''}")
        for e in rootfs.walk() if e.kind is not EntryKind.DIR
    }


def snapshot(reference: str) -> ImageSnapshot:
    """Load and summarize `reference` (no static closure) with its packages and file sizes.

    Raises SourceError / LayerError / RuleError.
    """
    from slim.analyzers.packages import package_summaries, read_packages
    from slim.pipeline import load_image
    from slim.summary import summarize

    with load_image(reference) as loaded:
        result = summarize(loaded)
        packages = package_summaries(read_packages(loaded.rootfs), loaded.rootfs, None)
        return ImageSnapshot(dataclasses.replace(result, packages=packages), file_sizes(loaded.rootfs))


def _side(result: AnalysisResult) -> SideSummary:
    img, eff = result.image, result.efficiency
    return SideSummary(
        reference=img.reference, digest=img.digest, size_bytes=img.size_bytes,
        file_count=img.file_count, layer_count=len(img.layers),
        efficiency=eff.score if eff else None, wasted_bytes=eff.wasted_bytes if eff else None,
        removable_bytes=result.removable.size_bytes if result.removable else None,
    )


def _dir_key(path: str) -> str:
    parent = posixpath.dirname(path) or "/"
    parts = [p for p in parent.split("/") if p]
    return "/" + "/".join(parts[:DIR_DEPTH])


def _layers(base: AnalysisResult, head: AnalysisResult) -> list[LayerChange]:
    def ident(layer: Any) -> str:
        return str(layer.diff_id or layer.digest)

    base_ids = {ident(layer): layer for layer in base.image.layers}
    head_ids = {ident(layer) for layer in head.image.layers}
    out = []
    for layer in sorted(head.image.layers, key=lambda la: la.index):
        match = base_ids.get(ident(layer))
        out.append(LayerChange(
            "shared" if match is not None else "added", match.index if match else None, layer.index,
            ident(layer), layer.created_by, layer.size_bytes,
        ))
    for layer in sorted(base.image.layers, key=lambda la: la.index):
        if ident(layer) not in head_ids:
            out.append(LayerChange("removed", layer.index, None, ident(layer), layer.created_by, layer.size_bytes))
    return out


def _by_key(result: AnalysisResult) -> dict[tuple[str, str, str], tuple[str, int, int]]:
    """(manager, name, arch) -> (version, bytes, files); one package found in several places
    (a distribution in two virtualenvs) is summed."""
    out: dict[tuple[str, str, str], tuple[str, int, int]] = {}
    for p in result.packages:
        key = (p.manager, p.name, p.arch)
        version, size, files = out.get(key, (p.version, 0, 0))
        out[key] = (version, size + p.size_bytes, files + p.file_count)
    return out


def package_change(base: tuple[str, int, int] | None, head: tuple[str, int, int] | None) -> str:
    """added, removed (no file left), partly-kept (same version, a subset of its files and
    bytes), changed, or unchanged; each side is (version, bytes, files)."""
    if base is None:
        return "added"
    if head is None or (head[2] == 0 and base[2] > 0):
        return "removed"
    if base[0] != head[0]:
        return "changed"
    if base[1:] == head[1:]:
        return "unchanged"
    if head[1] <= base[1] and head[2] <= base[2]:
        return "partly-kept"
    return "changed"


def _packages(base: AnalysisResult, head: AnalysisResult) -> list[PackageChange]:
    before, after = _by_key(base), _by_key(head)
    out = []
    for key in sorted(set(before) | set(after)):
        b, a = before.get(key), after.get(key)
        out.append(PackageChange(
            package_change(b, a), key[0], key[1], b[0] if b else "", a[0] if a else "",
            b[1] if b else 0, a[1] if a else 0, b[2] if b else 0, a[2] if a else 0, key[2],
        ))
    return out


def diff_snapshots(base: ImageSnapshot, head: ImageSnapshot) -> ImageDiff:
    """Compare two analysed images (pure: no I/O)."""
    dirs: dict[str, list[int]] = {}  # path → [added bytes, removed bytes, added files, removed files]
    for path in sorted(set(base.files) | set(head.files)):
        old, new = base.files.get(path), head.files.get(path)
        if old == new:
            continue
        acc = dirs.setdefault(_dir_key(path), [0, 0, 0, 0])
        if new is not None:
            acc[0] += new[0]
            acc[2] += 1
        if old is not None:
            acc[1] += old[0]
            acc[3] += 1
    directories = sorted(
        (DirectoryChange(p, a[0], a[1], a[2], a[3]) for p, a in dirs.items()),
        key=lambda d: (-(d.added_bytes + d.removed_bytes), d.path),
    )
    return ImageDiff(
        base=_side(base.result), head=_side(head.result),
        added_bytes=sum(d.added_bytes for d in directories),
        removed_bytes=sum(d.removed_bytes for d in directories),
        layers=tuple(_layers(base.result, head.result)),
        packages=tuple(_packages(base.result, head.result)),
        directories=tuple(directories),
    )


def diff_images(base_ref: str, head_ref: str) -> ImageDiff:
    """Load both references and compare them. Raises SourceError / LayerError."""
    return diff_snapshots(snapshot(base_ref), snapshot(head_ref))


# -- rendering -------------------------------------------------------------------------------
def _signed(n: int) -> str:
    return ("+" if n > 0 else "") + format_bytes(n) if n else "0 B"


def _eff(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _eff_delta(d: ImageDiff) -> str:
    delta = d.efficiency_delta
    return "-" if delta is None else f"{100 * delta:+.1f} pp"


def diff_dict(d: ImageDiff) -> dict[str, Any]:
    """The diff as plain JSON data (every list sorted as in ImageDiff)."""
    data = asdict(d)
    data["size_delta"] = d.size_delta
    data["efficiency_delta"] = None if d.efficiency_delta is None else round(d.efficiency_delta, 6)
    data["unchanged"] = d.unchanged
    data["packages"] = [p for p in data["packages"] if p["status"] != "unchanged"]
    data["unchanged_packages"] = sum(1 for p in d.packages if p.status == "unchanged")
    for side in ("base", "head"):
        if data[side]["efficiency"] is not None:
            data[side]["efficiency"] = round(data[side]["efficiency"], 6)
    for row in data["directories"]:
        row["net_bytes"] = row["added_bytes"] - row["removed_bytes"]
    return data


def render_diff_json(d: ImageDiff) -> str:
    return json.dumps(diff_dict(d), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def _headline(d: ImageDiff) -> str:
    b, h = d.base, d.head
    if d.unchanged:
        return f"no change: {h.reference} has the same files, layers and packages as {b.reference}"
    return (
        f"{b.reference} → {h.reference}: size {format_bytes(b.size_bytes)} → {format_bytes(h.size_bytes)} "
        f"({_signed(d.size_delta)}); added {format_bytes(d.added_bytes)}, removed {format_bytes(d.removed_bytes)}; "
        f"efficiency {_eff(b.efficiency)} → {_eff(h.efficiency)} ({_eff_delta(d)})"
    )


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()

    return [fmt(header), *(fmt(r) for r in rows)]


def _package_rows(d: ImageDiff) -> list[list[str]]:
    return [
        [p.status, p.name, p.manager, p.base_version or "-", p.head_version or "-",
         f"{p.base_files} → {p.head_files}", _signed(p.head_bytes - p.base_bytes)]
        for p in sorted(d.packages, key=lambda p: (p.status, p.manager, p.name, p.arch))
        if p.status != "unchanged"
    ]


def _package_counts(d: ImageDiff) -> str:
    """'2 removed, 3 partly-kept, 40 unchanged' in a fixed order."""
    order = ("added", "removed", "partly-kept", "changed", "unchanged")
    counts = {s: sum(1 for p in d.packages if p.status == s) for s in order}
    return ", ".join(f"{counts[s]} {s}" for s in order if counts[s]) or "none"


def _layer_rows(d: ImageDiff) -> list[list[str]]:
    return [
        [la.status, "-" if la.base_index is None else str(la.base_index),
         "-" if la.head_index is None else str(la.head_index),
         ("+" if la.status == "added" else "-" if la.status == "removed" else "") + format_bytes(la.size_bytes),
         (la.created_by or la.diff_id)[:80]]
        for la in d.layers
    ]


def _dir_rows(d: ImageDiff) -> list[list[str]]:
    return [
        [format_bytes(x.added_bytes), format_bytes(x.removed_bytes), _signed(x.net_bytes),
         f"+{x.added_files}/-{x.removed_files}", x.path]
        for x in d.directories[:MAX_ROWS]
    ]


def render_diff_text(d: ImageDiff) -> str:
    """A plain-text diff (fixed columns, no colour) for terminals and logs."""
    lines = [_headline(d), ""]
    lines.append(f"files: {d.base.file_count} → {d.head.file_count}   layers: {d.base.layer_count} → {d.head.layer_count}")
    lines += ["", "Layers"]
    lines += _table(["status", "base#", "head#", "size", "created by"], _layer_rows(d), {1, 2, 3})
    rows = _package_rows(d)
    lines += ["", f"Packages ({_package_counts(d)})"]
    if rows:
        lines += _table(["status", "package", "manager", "base", "head", "files", "bytes"], rows, {6})
    lines += ["", f"Directories ({len(d.directories)} changed)"]
    if d.directories:
        lines += _table(["added", "removed", "net", "files", "directory"], _dir_rows(d), {0, 1, 2, 3})
        if len(d.directories) > MAX_ROWS:
            lines.append(f"… {len(d.directories) - MAX_ROWS} more (see --format json)")
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("`", "'").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in rows]
    return out


def render_diff_markdown(d: ImageDiff) -> str:
    """The diff for a pull-request comment."""
    lines = ["## slim diff", "", f"**{_md_escape(_headline(d))}**", ""]
    lines += _md_table(
        ["", "base", "head", "change"],
        [
            ["size", format_bytes(d.base.size_bytes), format_bytes(d.head.size_bytes), _signed(d.size_delta)],
            ["files", str(d.base.file_count), str(d.head.file_count), f"{d.head.file_count - d.base.file_count:+d}"],
            ["layers", str(d.base.layer_count), str(d.head.layer_count), f"{d.head.layer_count - d.base.layer_count:+d}"],
            ["efficiency", _eff(d.base.efficiency), _eff(d.head.efficiency), _eff_delta(d)],
        ],
    )
    rows = _package_rows(d)
    if rows:
        lines += ["", "### Packages", ""]
        lines += _md_table(["status", "package", "manager", "base", "head", "files", "bytes"], rows[:MAX_ROWS])
    if d.directories:
        lines += ["", "### Directories", ""]
        lines += _md_table(["added", "removed", "net", "files", "directory"], _dir_rows(d))
        if len(d.directories) > MAX_ROWS:
            lines.append(f"\n_… {len(d.directories) - MAX_ROWS} more directories (see `slim diff --format json`)._")
    lines += ["", "<details><summary>Layers</summary>", ""]
    lines += _md_table(["status", "base#", "head#", "size", "created by"], _layer_rows(d))
    lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


RENDERERS = {"text": render_diff_text, "markdown": render_diff_markdown, "json": render_diff_json}
