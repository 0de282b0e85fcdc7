"""The human report: a short summary first (what can go and why), then the tables.

The summary (at most 15 lines) answers the questions a reader opens the report for: how big the
image is, how much of it the app does not need (`removable`) and how much is waste by pattern
(`likely waste`), which packages and directories hold the removable bytes, and the verdicts
(probes, gates, unknowns). The tables follow, the actionable ones first (packages, directories,
files, waste, kept files, unknowns, gates), the image's own details last (metadata, layers,
efficiency). Sections about the app appear only when they have content. Sizes are SI units
(kB, MB …, slim.units); exact bytes are in the JSON report. A file is a non-directory entry
(regular file, symlink, hard link), the same count everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from slim.result import AnalysisResult, PathBytes
from slim.units import format_bytes

MAX_ROWS = 15  # rows per table for lists that can be long (keep, packages, unknowns)
TOP_ROWS = 10  # largest directories and files (the JSON report has 20)
SUMMARY_TOP = 5  # packages and directories named in the summary


def _percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f} %" if whole else "-"


def headline(result: AnalysisResult) -> str:
    """One line with the numbers that matter: size, files, layers, efficiency, waste."""
    img = result.image
    parts = [
        f"{img.reference}: {format_bytes(img.size_bytes)} in {img.file_count} files, "
        f"{len(img.layers)} layer{'s' if len(img.layers) != 1 else ''}"
    ]
    if result.efficiency is not None:
        parts.append(f"efficiency {100 * result.efficiency.score:.1f} %")
    waste = sum(w.size_bytes for w in result.waste)
    if result.waste:
        parts.append(f"likely waste {format_bytes(waste)} ({_percent(waste, img.size_bytes)})")
    if result.removable is not None:
        parts.append(f"removable {format_bytes(result.removable.size_bytes)}")
    return " · ".join(parts)


def _paths_table(title: str, rows: list[PathBytes], total: int, count_label: str = "") -> Table:
    """size · share of `total` (omitted when 0) · count (omitted without a label) · path."""
    table = Table(title=title, title_justify="left")
    table.add_column("size", justify="right")
    if total:
        table.add_column("share", justify="right")
    if count_label:
        table.add_column(count_label, justify="right")
    table.add_column("path", overflow="fold")
    for row in rows:
        cells: list[str | Text] = [format_bytes(row.size_bytes)]
        if total:
            cells.append(_percent(row.size_bytes, total))
        if count_label:
            cells.append(str(row.count))
        cells.append(Text(row.path))
        table.add_row(*cells)
    return table


def render_text(result: AnalysisResult, console: Console) -> None:
    """Print the report to `console` (its width and colour settings are the caller's)."""
    console.print(Text(headline(result), style="bold"), soft_wrap=True)  # one greppable line
    for line in summary_lines(result):
        console.print(Text(line), soft_wrap=True)
    console.print()
    for section in SECTIONS:
        section(result, console)


def removable_packages(result: AnalysisResult, top: int = SUMMARY_TOP) -> list[tuple[str, int]]:
    """(name, bytes a minimal image drops) of the packages that lose the most, largest first."""
    rows = [(p.name, p.size_bytes - p.kept_bytes) for p in result.packages
            if p.size_bytes > p.kept_bytes]
    return sorted(rows, key=lambda r: (-r[1], r[0]))[:top]


def removable_dirs(result: AnalysisResult, top: int = SUMMARY_TOP) -> list[tuple[str, int]]:
    """(directory, bytes under it the app does not need) among the largest directories, none
    inside another: ranked by the removable bytes not already in a listed subdirectory, so
    /usr/share/locale is named rather than /usr."""
    kept = [(k.path, k.size_bytes) for k in result.keep]
    rows: dict[str, int] = {}
    for d in result.largest_dirs:
        inside = sum(size for path, size in kept if path.startswith(d.path + "/"))
        if d.size_bytes > inside:
            rows[d.path] = d.size_bytes - inside

    def own(path: str) -> int:
        children = [q for q in rows if q.startswith(path + "/")
                    and not any(q.startswith(r + "/") for r in rows if r.startswith(path + "/"))]
        return rows[path] - sum(rows[q] for q in children)

    chosen: list[tuple[str, int]] = []
    for path in sorted(rows, key=lambda p: (-own(p), p)):
        if not any(path.startswith(c + "/") or c.startswith(path + "/") for c, _ in chosen):
            chosen.append((path, rows[path]))
    return sorted(chosen[:top], key=lambda r: (-r[1], r[0]))


def _verdict_line(result: AnalysisResult) -> str:
    parts = []
    if result.probes:
        failed = [p.spec for p in result.probes if not p.passed]
        parts.append(f"probes {len(result.probes) - len(failed)}/{len(result.probes)} passed"
                     + (f" (failed: {', '.join(failed[:3])})" if failed else ""))
    if result.verdicts:
        counts = {s: sum(1 for v in result.verdicts if v.status == s) for s in ("pass", "warn", "fail")}
        fails = [v.rule for v in result.verdicts if v.status == "fail"]
        parts.append(f"gates {counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail"
                     + (f" ({', '.join(fails[:3])})" if fails else ""))
    else:
        parts.append("gates: none configured (slim check reads .slim.toml)")
    if result.removable is not None:
        parts.append(f"{len(result.unknowns)} unknown{'s' if len(result.unknowns) != 1 else ''}"
                     + (" (kept to be safe)" if result.unknowns else ""))
    return "verdicts: " + " · ".join(parts)


def summary_lines(result: AnalysisResult) -> list[str]:
    """The summary under the headline: at most 15 lines, the numbers a reader acts on."""
    img = result.image
    lines = []
    if result.removable is not None and result.reachable is not None:
        lines.append(f"removable: {format_bytes(result.removable.size_bytes)} "
                     f"({_percent(result.removable.size_bytes, img.size_bytes)}) in "
                     f"{result.removable.file_count} files the app does not need; it needs "
                     f"{format_bytes(result.reachable.size_bytes)} in {result.reachable.file_count} files")
    else:
        lines.append("removable: not computed (--no-static); only where the bytes are")
    waste = sum(w.size_bytes for w in result.waste)
    if result.waste:
        names = ", ".join(w.name for w in sorted(result.waste, key=lambda w: -w.size_bytes)[:4])
        lines.append(f"likely waste: {format_bytes(waste)} ({_percent(waste, img.size_bytes)}) by "
                     f"pattern, needed or not ({names})")
    pkgs = removable_packages(result)
    if pkgs:
        lines.append("top removable packages: " + " · ".join(f"{n} {format_bytes(b)}" for n, b in pkgs))
    dirs = removable_dirs(result) if result.keep else []
    if dirs:
        lines.append("top removable directories: " + " · ".join(f"{p} {format_bytes(b)}" for p, b in dirs))
    lines.append(_verdict_line(result))
    if result.removable is not None:
        lines.append(f"next: slim build {img.reference} -o docker-archive:slim.tar  "
                     "(writes the minimal image and checks it behaves the same)")
    return lines[:14]


def _metadata_section(result: AnalysisResult, console: Console) -> None:
    """The image's digest, platform, entrypoint, cmd, user and workdir."""
    img = result.image
    meta = Table.grid(padding=(0, 2))
    meta.add_column(style="dim")
    meta.add_column(overflow="fold")
    # image metadata is untrusted: Text() so '[...]' in it is never read as rich markup
    meta.add_row("digest", Text(img.digest or "-"))
    meta.add_row("platform", Text(f"{img.os}/{img.architecture}"))
    meta.add_row("entrypoint", Text(" ".join(img.entrypoint) or "-"))
    meta.add_row("cmd", Text(" ".join(img.cmd) or "-"))
    meta.add_row("user", Text(img.user or "(root)"))
    meta.add_row("workdir", Text(img.workdir or "/"))
    console.print(meta)


def _layers_section(result: AnalysisResult, console: Console) -> None:
    """One row per layer: size, files, blob size, the history's `created_by`."""
    layers = Table(title="Layers", title_justify="left")
    for col, justify in (("#", "right"), ("size", "right"), ("files", "right"), ("blob", "right"), ("created by", "left")):
        layers.add_column(col, justify=justify, overflow="fold" if col == "created by" else "ellipsis")  # type: ignore[arg-type]
    for layer in result.image.layers:
        layers.add_row(
            str(layer.index), format_bytes(layer.size_bytes), str(layer.file_count),
            format_bytes(layer.blob_bytes) if layer.blob_bytes else "-", Text(layer.created_by or "-"),
        )
    console.print(layers)


def _efficiency_section(result: AnalysisResult, console: Console) -> None:
    """dive's efficiency metrics and the paths found in several layers."""
    eff = result.efficiency
    if eff is not None:
        table = Table(title="Efficiency (dive's metrics; see slim/efficiency.py)", title_justify="left")
        table.add_column("metric")
        table.add_column("value", justify="right")
        table.add_row("score", f"{100 * eff.score:.1f} %")
        table.add_row("wasted bytes (dive: all copies of paths in ≥2 layers)", format_bytes(eff.wasted_bytes))
        table.add_row("user wasted (of layers 1..n)", f"{100 * eff.user_wasted_percent:.1f} %")
        table.add_row("removable by squashing layers", format_bytes(eff.removable_by_squash_bytes))
        console.print(table)
        if eff.inefficient:
            console.print(_paths_table("Paths in several layers (all copies)", list(eff.inefficient[:MAX_ROWS]), 0, "layers"))


def _largest_section(result: AnalysisResult, console: Console) -> None:
    """The largest directories and files, with their share of the image."""
    img = result.image
    if result.largest_dirs:
        console.print(_paths_table("Largest directories (nested ones with the same bytes collapsed)",
                                   result.largest_dirs[:TOP_ROWS], img.size_bytes, "files"))
    if result.largest_files:
        console.print(_paths_table("Largest files", result.largest_files[:TOP_ROWS], img.size_bytes))


def _waste_section(result: AnalysisResult, console: Console) -> None:
    """Likely waste by category, largest first."""
    img = result.image
    if result.waste:
        table = Table(title="Likely waste", title_justify="left")
        table.add_column("category")
        table.add_column("size", justify="right")
        table.add_column("share", justify="right")
        table.add_column("files", justify="right")
        table.add_column("what", overflow="fold")
        for w in sorted(result.waste, key=lambda w: (-w.size_bytes, w.name)):
            table.add_row(w.name, format_bytes(w.size_bytes), _percent(w.size_bytes, img.size_bytes), str(w.file_count), Text(w.description))
        console.print(table)


def _reachability_section(result: AnalysisResult, console: Console) -> None:
    """Reachable and removable totals of the static analysis."""
    if result.reachable is not None or result.removable is not None:
        table = Table(title="Reachability", title_justify="left")
        table.add_column("set")
        table.add_column("size", justify="right")
        table.add_column("files", justify="right")
        for name, totals in (("reachable", result.reachable), ("removable", result.removable)):
            if totals is not None:
                table.add_row(name, format_bytes(totals.size_bytes), str(totals.file_count))
        console.print(table)


def _keep_section(result: AnalysisResult, console: Console) -> None:
    """The largest kept files and why they are kept."""
    if result.keep:
        # the count is reachable.file_count: kept non-directory entries, as everywhere
        count = result.reachable.file_count if result.reachable is not None else len(result.keep)
        table = Table(title=f"Kept files ({count}; largest {min(MAX_ROWS, count)})", title_justify="left")
        table.add_column("size", justify="right")
        table.add_column("why")
        table.add_column("path", overflow="fold")
        for k in sorted(result.keep, key=lambda k: (-k.size_bytes, k.path))[:MAX_ROWS]:
            table.add_row(format_bytes(k.size_bytes), ", ".join(k.reasons), Text(k.path))
        console.print(table)


def _excess_section(result: AnalysisResult, console: Console) -> None:
    """With a trace: the kept bytes no traced run touched, by reason and by chain (slim.excess)."""
    ex = result.excess
    if ex is None or not ex.untouched.file_count:
        return
    console.print(Text(
        f"Kept but untouched by the traced run: {format_bytes(ex.untouched.size_bytes)} in "
        f"{ex.untouched.file_count} files (the run touched {format_bytes(ex.traced.size_bytes)} in "
        f"{ex.traced.file_count}). Candidates for --drop, or for a deeper probe if the app needs them.",
        style="bold"))
    table = Table(title="Untouched bytes by the reason that keeps them", title_justify="left")
    for col in ("reason", "size", "files"):
        table.add_column(col, justify="left" if col == "reason" else "right")
    for r in ex.by_reason[:MAX_ROWS]:
        table.add_row(Text(r.reason), format_bytes(r.size_bytes), str(r.file_count))
    console.print(table)
    chains = Table(title="Heaviest untouched chains (slim why PATH shows the rest)", title_justify="left")
    for col in ("size", "files", "entry", "kept by", "largest file"):
        chains.add_column(col, justify="right" if col in ("size", "files") else "left", overflow="fold")
    for c in ex.chains:
        by = f"{c.kind} {c.evidence}".strip() + f" from {c.src}"
        largest = c.heaviest[0].path if c.heaviest else ""
        chains.add_row(format_bytes(c.size_bytes), str(c.file_count), Text(c.path), Text(by), Text(largest))
    console.print(chains)


def _packages_section(result: AnalysisResult, console: Console) -> None:
    """The largest installed packages, what the minimal image keeps of each (bytes, files) and
    their status: kept, partly-kept or removed."""
    if result.packages:
        counts = {s: sum(1 for p in result.packages if p.status == s) for s in ("kept", "partly-kept", "removed")}
        detail = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        title = f"Packages ({len(result.packages)}{'; ' + detail if detail else ''})"
        table = Table(title=title, title_justify="left")
        for col in ("package", "version", "manager", "size", "kept", "files kept", "status"):
            table.add_column(col, justify="right" if col in ("size", "kept", "files kept") else "left")
        for p in sorted(result.packages, key=lambda p: (-p.size_bytes, p.manager, p.name))[:MAX_ROWS]:
            status = p.status or ("unused" if p.unused else "")
            table.add_row(Text(p.name), Text(p.version), p.manager, format_bytes(p.size_bytes),
                          format_bytes(p.kept_bytes), f"{p.kept_files}/{p.file_count}", status)
        console.print(table)


def _unknowns_section(result: AnalysisResult, console: Console) -> None:
    """What the analysis could not decide (kept to be safe)."""
    if result.unknowns:
        table = Table(title=f"Unknowns ({len(result.unknowns)}; kept to be safe)", title_justify="left")
        table.add_column("path", overflow="fold")
        table.add_column("reason", overflow="fold")
        for u in sorted(result.unknowns, key=lambda u: (u.path, u.reason))[:MAX_ROWS]:
            table.add_row(Text(u.path), Text(u.reason))
        if len(result.unknowns) > MAX_ROWS:
            table.add_row(f"… {len(result.unknowns) - MAX_ROWS} more (see the JSON report)", "")
        console.print(table)


def _gates_section(result: AnalysisResult, console: Console) -> None:
    """The budget verdicts (slim.budget), by rule name."""
    if result.verdicts:
        table = Table(title="Gates", title_justify="left")
        for col in ("rule", "status", "measured", "threshold"):
            table.add_column(col)
        for v in sorted(result.verdicts, key=lambda v: v.rule):
            style = {"pass": "green", "warn": "yellow", "fail": "bold red"}.get(v.status, "")
            table.add_row(Text(v.rule), Text(v.status, style=style), Text(v.measured), Text(v.threshold))
        console.print(table)


# The sections after the headline, in the order they are printed.
SECTIONS: tuple[Callable[[AnalysisResult, Console], None], ...] = (
    _packages_section, _largest_section, _waste_section, _reachability_section, _keep_section,
    _excess_section, _unknowns_section, _gates_section, _metadata_section, _layers_section,
    _efficiency_section,
)
