"""The HTML report: one self-contained file (inline CSS, a few lines of inline JS, inline SVG).

Nothing is fetched when the file is viewed — no fonts, scripts or images from the network — so it
can be attached to a CI run and opened offline. The treemaps are laid out here in Python with the
squarified algorithm (Bruls, Huizing & van Wijk, "Squarified Treemaps", 2000: lay areas, largest
first, in rows along the shorter side while the worst aspect ratio improves) and emitted as SVG
rectangles; each rectangle is split into kept (green) and removable (red) parts.

Every string from the image is HTML-escaped (`html.escape`, quotes included) before it reaches
the page: the image is untrusted input.
"""

from __future__ import annotations

import html
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slim.result import AnalysisResult, KeptFile
from slim.units import format_bytes

TREEMAP_W, TREEMAP_H = 960, 480
MAX_ROWS = 50
MAX_CHAINS = 15


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class Block:
    """One treemap item: a label, its bytes and how many of them are kept."""

    label: str
    size: int
    kept: int


def _worst(row: Sequence[float], side: float) -> float:
    """The worst aspect ratio of `row` laid along a side of length `side` (the paper's worst())."""
    total = sum(row)
    if total <= 0 or side <= 0:
        return float("inf")
    return max(max(side * side * a / (total * total), (total * total) / (side * side * a)) for a in row)


def squarify(sizes: Sequence[float], rect: Rect) -> list[Rect]:
    """Rectangles tiling `rect` with areas proportional to `sizes` (sorted largest first by the
    caller; zero sizes get empty rectangles). Returned in the order of `sizes`."""
    total = float(sum(sizes))
    if total <= 0 or rect.w <= 0 or rect.h <= 0:
        return [Rect(rect.x, rect.y, 0, 0) for _ in sizes]
    scale = rect.w * rect.h / total
    areas = [s * scale for s in sizes]
    x, y, w, h = rect.x, rect.y, rect.w, rect.h
    out: list[Rect] = []
    i = 0
    while i < len(areas):
        side = min(w, h)
        row = [areas[i]]
        i += 1
        while i < len(areas) and _worst([*row, areas[i]], side) <= _worst(row, side):
            row.append(areas[i])
            i += 1
        row_total = sum(row)
        if w >= h:  # a column along the left edge
            col_w = min(row_total / h, w) if h else 0.0  # clamp rounding overrun
            cy = y
            for k, a in enumerate(row):
                # the last tile ends exactly at the edge: no floating-point overrun
                rh = (y + h - cy) if k == len(row) - 1 else (a / col_w if col_w else 0.0)
                out.append(Rect(x, cy, col_w, rh))
                cy += rh
            x, w = x + col_w, max(w - col_w, 0.0)
        else:  # a row along the top edge
            row_h = min(row_total / w, h) if w else 0.0
            cx = x
            for k, a in enumerate(row):
                rw = (x + w - cx) if k == len(row) - 1 else (a / row_h if row_h else 0.0)
                out.append(Rect(cx, y, rw, row_h))
                cx += rw
            y, h = y + row_h, max(h - row_h, 0.0)
    return out


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f} %" if whole else "-"


# -- treemap data ----------------------------------------------------------------------------
def _kept_under(keep: Sequence[KeptFile], directory: str) -> int:
    prefix = directory.rstrip("/") + "/"
    return sum(k.size_bytes for k in keep if k.path.startswith(prefix))


def directory_groups(result: AnalysisResult) -> list[tuple[Block, list[Block]]]:
    """Top-level directories (from result.largest_dirs), each with its listed sub-directories as
    leaves plus an "other files" remainder; the rest of the image is one "(other)" group."""
    listed = {d.path: d.size_bytes for d in result.largest_dirs}
    keep = result.keep
    have_keep = result.removable is not None

    def kept(path: str) -> int:
        return _kept_under(keep, path) if have_keep else 0

    def leaves(path: str) -> list[Block]:
        children = [p for p in listed if posixpath.dirname(p) == path]
        if not children:
            return [Block(path, listed[path], min(kept(path), listed[path]))]
        out: list[Block] = []
        for child in children:
            out.extend(leaves(child))
        rest = listed[path] - sum(listed[c] for c in children)
        rest_kept = kept(path) - sum(kept(c) for c in children)
        if rest > 0:
            out.append(Block(f"{path}/ (other files)", rest, max(min(rest_kept, rest), 0)))
        return out

    groups = []
    tops = sorted((p for p in listed if posixpath.dirname(p) == "/"), key=lambda p: (-listed[p], p))
    for top in tops:
        blocks = sorted(leaves(top), key=lambda b: (-b.size, b.label))
        groups.append((Block(top, listed[top], min(kept(top), listed[top])), blocks))
    rest = result.image.size_bytes - sum(listed[t] for t in tops)
    if rest > 0:
        rest_kept = (result.reachable.size_bytes if result.reachable else 0) - sum(g[0].kept for g in groups)
        block = Block("(other)", rest, max(min(rest_kept, rest), 0) if have_keep else 0)
        groups.append((block, [block]))
    return sorted(groups, key=lambda g: (-g[0].size, g[0].label))


def package_blocks(result: AnalysisResult) -> list[Block]:
    """One block per package plus the bytes no package owns."""
    blocks = [Block(f"{p.name} {p.version} ({p.manager})", p.size_bytes, p.kept_bytes) for p in result.packages if p.size_bytes > 0]
    owned = sum(p.size_bytes for p in result.packages)
    rest = result.image.size_bytes - owned
    if rest > 0:
        kept = (result.reachable.size_bytes if result.reachable else 0) - sum(p.kept_bytes for p in result.packages)
        blocks.append(Block("(not in a package)", rest, max(min(kept, rest), 0)))
    return sorted(blocks, key=lambda b: (-b.size, b.label))


# -- SVG -------------------------------------------------------------------------------------
def _split(rect: Rect, block: Block) -> list[tuple[Rect, str]]:
    """The block's rectangle cut into its kept and removable parts along the longer side."""
    frac = block.kept / block.size if block.size else 0.0
    if rect.w >= rect.h:
        a = Rect(rect.x, rect.y, rect.w * frac, rect.h)
        b = Rect(rect.x + rect.w * frac, rect.y, rect.w * (1 - frac), rect.h)
    else:
        a = Rect(rect.x, rect.y, rect.w, rect.h * frac)
        b = Rect(rect.x, rect.y + rect.h * frac, rect.w, rect.h * (1 - frac))
    return [(a, "kept"), (b, "removable")]


def _svg_block(rect: Rect, block: Block, total: int, has_keep: bool) -> list[str]:
    title = _esc(f"{block.label}: {format_bytes(block.size)} ({_pct(block.size, total)})"
                 + (f", kept {format_bytes(block.kept)}, removable {format_bytes(block.size - block.kept)}" if has_keep else ""))
    out = [f'<g class="blk"><title>{title}</title>']
    parts = _split(rect, block) if has_keep else [(rect, "unknown")]
    for r, cls in parts:
        if r.w > 0 and r.h > 0:
            out.append(f'<rect class="{cls}" x="{r.x:.2f}" y="{r.y:.2f}" width="{r.w:.2f}" height="{r.h:.2f}"/>')
    out.append(f'<rect class="edge" x="{rect.x:.2f}" y="{rect.y:.2f}" width="{rect.w:.2f}" height="{rect.h:.2f}"/>')
    if rect.w > 60 and rect.h > 16:
        label = block.label if len(block.label) * 6.5 < rect.w else block.label[: max(int(rect.w / 6.5) - 1, 1)] + "…"
        out.append(f'<text x="{rect.x + 3:.2f}" y="{rect.y + 13:.2f}">{_esc(label)}</text>')
    out.append("</g>")
    return out


def treemap_svg(groups: list[tuple[Block, list[Block]]], total: int, has_keep: bool, label: str) -> str:
    """A two-level treemap: groups squarified in the canvas, their blocks inside each group."""
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_esc(label)}" '
           f'viewBox="0 0 {TREEMAP_W} {TREEMAP_H}" width="100%" preserveAspectRatio="none">']
    canvas = Rect(0, 0, TREEMAP_W, TREEMAP_H)
    for (_group, blocks), grect in zip(groups, squarify([g.size for g, _ in groups], canvas), strict=True):
        inner = Rect(grect.x + 1, grect.y + 1, max(grect.w - 2, 0), max(grect.h - 2, 0))
        for block, brect in zip(blocks, squarify([b.size for b in blocks], inner), strict=True):
            out.extend(_svg_block(brect, block, total, has_keep))
        out.append(f'<rect class="group" x="{grect.x:.2f}" y="{grect.y:.2f}" width="{grect.w:.2f}" height="{grect.h:.2f}"/>')
    out.append("</svg>")
    return "\n".join(out)


# -- page ------------------------------------------------------------------------------------
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1b1f24;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.sub{color:#57606a;margin-bottom:16px;word-break:break-all}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #d0d7de;border-radius:6px;padding:10px 14px;min-width:150px}
.card .v{font-size:22px;font-weight:600}.card .l{color:#57606a;font-size:12px}
table{border-collapse:collapse;margin:4px 0}th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;white-space:nowrap}th{background:#f6f8fa}
td.p{word-break:break-all;font-family:ui-monospace,monospace;font-size:12px}
svg{border:1px solid #d0d7de;display:block;max-width:1100px}
svg text{font:11px sans-serif;fill:#111;pointer-events:none}
rect.kept{fill:#4caf50}rect.removable{fill:#e57373}rect.unknown{fill:#90a4ae}
rect.edge{fill:none;stroke:#fff;stroke-width:1}rect.group{fill:none;stroke:#263238;stroke-width:2}
g.blk:hover rect.edge{stroke:#000;stroke-width:2}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:-2px}
.tabs button{font:inherit;padding:4px 12px;margin-right:4px;border:1px solid #d0d7de;background:#f6f8fa;border-radius:4px;cursor:pointer}
.tabs button[aria-pressed=true]{background:#0969da;color:#fff}
.status-pass{color:#1a7f37}.status-warn{color:#9a6700}.status-fail{color:#cf222e;font-weight:600}
ol.chain{margin:2px 0 8px;padding-left:20px;font-family:ui-monospace,monospace;font-size:12px}
"""

_JS = """
document.querySelectorAll('.tabs button').forEach(function(b){b.addEventListener('click',function(){
document.querySelectorAll('.tabs button').forEach(function(o){o.setAttribute('aria-pressed',o===b?'true':'false');
document.getElementById(o.dataset.view).hidden=(o!==b);});});});
"""


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int], cls: dict[int, str] | None = None) -> str:
    cls = cls or {}
    head = "".join(f'<th{" class=n" if i in numeric else ""}>{_esc(h)}</th>' for i, h in enumerate(header))
    body = []
    for r in rows:
        cells = "".join(
            f'<td class="{"n" if i in numeric else cls.get(i, "")}">{c}</td>' for i, c in enumerate(r)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _card(ident: str, value: str, label: str, data: object) -> str:
    return (f'<div class="card"><div class="v" id="{ident}" data-value="{_esc(data)}">{_esc(value)}</div>'
            f'<div class="l">{_esc(label)}</div></div>')


def _chains(result: AnalysisResult, why: Callable[[str], Any] | None) -> str:
    kept = [k for k in sorted(result.keep, key=lambda k: (-k.size_bytes, k.path)) if k.size_bytes > 0][:MAX_CHAINS]
    if not kept:
        return "<p>No kept files (run the static analysis).</p>"
    items = []
    for k in kept:
        steps = why(k.path) if why is not None else None
        head = f"<b>{_esc(k.path)}</b> ({_esc(format_bytes(k.size_bytes))})"
        if steps:
            chain = "".join(
                f"<li>{_esc(s.dst)} <i>← {_esc(s.kind)}</i>{(' — ' + _esc(s.evidence)) if s.evidence else ''}</li>"
                for s in steps
            )
            items.append(f"<li>{head}<ol class=chain>{chain}</ol></li>")
        else:
            items.append(f"<li>{head}: {_esc(', '.join(k.reasons) or '-')}</li>")
    return f"<ol>{''.join(items)}</ol>"


def render_html(result: AnalysisResult, why: Callable[[str], Any] | None = None) -> str:
    """The report page. `why(path)` (e.g. `closure.graph.why`) returns a path's evidence chain
    (steps with src, dst, kind, evidence) for the dependency-chain section; without it the
    section lists each kept file's edge kinds."""
    img = result.image
    size = img.size_bytes
    has_keep = result.removable is not None
    cards = [_card("size", format_bytes(size), f"image size ({size} bytes, {img.file_count} files)", size)]
    if result.removable is not None:
        rem = result.removable.size_bytes
        cards.append(_card("removable", format_bytes(rem), f"removable ({rem} bytes)", rem))
        cards.append(_card("removable-percent", _pct(rem, size), "of the image is removable", rem / size if size else 0))
    if result.efficiency is not None:
        cards.append(_card("efficiency", f"{100 * result.efficiency.score:.1f} %", "layer efficiency (dive)", result.efficiency.score))
    waste = sum(w.size_bytes for w in result.waste)
    if result.waste:
        cards.append(_card("waste", format_bytes(waste), "likely waste", waste))
    cards.append(_card("layers", str(len(img.layers)), "layers", len(img.layers)))

    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        # no network at view time: a CSP that forbids every fetch backs up the promise
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>slim report: {_esc(img.reference)}</title><style>{_CSS}</style></head><body>",
        f"<h1>slim report</h1><div class=sub>{_esc(img.reference)} · {_esc(img.digest or '-')} · {_esc(img.os)}/{_esc(img.architecture)}</div>",
        f'<div class="cards">{"".join(cards)}</div>',
    ]

    if result.verdicts:
        rows = [[_esc(v.rule), f'<span class="status-{_esc(v.status)}">{_esc(v.status)}</span>', _esc(v.measured), _esc(v.threshold), _esc(v.message)]
                for v in sorted(result.verdicts, key=lambda v: v.rule)]
        parts += ["<h2>Budget</h2>", _table(["gate", "status", "measured", "threshold", "detail"], rows, set())]

    legend = ('<div class="legend">' + ('<span style="background:#4caf50"></span>kept<span style="background:#e57373"></span>removable'
              if has_keep else '<span style="background:#90a4ae"></span>size (run the static analysis for kept vs removable)') + "</div>")
    parts += ["<h2>Treemap</h2>", '<div class="tabs"><button data-view="tm-dirs" aria-pressed="true">by directory</button>'
              '<button data-view="tm-pkgs" aria-pressed="false">by package</button></div>', legend,
              f'<div id="tm-dirs">{treemap_svg(directory_groups(result), size, has_keep, "treemap by directory")}</div>']
    pkg_blocks = package_blocks(result)
    parts.append(f'<div id="tm-pkgs" hidden>{treemap_svg([(b, [b]) for b in pkg_blocks], size, has_keep, "treemap by package")}</div>')

    rows = [[_esc(la.index), _esc(format_bytes(la.size_bytes)), _esc(la.file_count),
             _esc(format_bytes(la.blob_bytes) if la.blob_bytes else "-"), _esc(la.created_by or "-"), _esc(la.digest or "-")]
            for la in sorted(img.layers, key=lambda la: la.index)]
    parts += ["<h2>Layers</h2>", _table(["#", "size", "files", "blob", "created by", "digest"], rows, {0, 1, 2, 3}, {4: "p", 5: "p"})]

    if result.packages:
        pkgs = sorted(result.packages, key=lambda p: (-(p.size_bytes - p.kept_bytes), p.manager, p.name))[:MAX_ROWS]
        rows = [[_esc(p.name), _esc(p.version), _esc(p.manager), _esc(format_bytes(p.size_bytes)), _esc(format_bytes(p.kept_bytes)),
                 _esc(format_bytes(p.size_bytes - p.kept_bytes)), "yes" if p.unused else ""] for p in pkgs]
        parts += [f"<h2>Packages ({len(result.packages)})</h2>",
                  _table(["package", "version", "manager", "size", "kept", "removable", "unused"], rows, {3, 4, 5})]

    parts += ["<h2>Top dependency chains</h2>", _chains(result, why)]

    if result.waste:
        rows = [[_esc(w.name), _esc(format_bytes(w.size_bytes)), _esc(_pct(w.size_bytes, size)), _esc(w.file_count), _esc(w.description)]
                for w in sorted(result.waste, key=lambda w: (-w.size_bytes, w.name))]
        parts += ["<h2>Likely waste</h2>", _table(["category", "size", "share", "files", "what"], rows, {1, 2, 3})]
    if result.largest_files:
        rows = [[_esc(f.path), _esc(format_bytes(f.size_bytes)), _esc(_pct(f.size_bytes, size))] for f in result.largest_files]
        parts += ["<h2>Largest files</h2>", _table(["file", "size", "share"], rows, {1, 2}, {0: "p"})]
    if result.unknowns:
        rows = [[_esc(u.path), _esc(u.reason)] for u in sorted(result.unknowns, key=lambda u: (u.path, u.reason))[:MAX_ROWS]]
        parts += [f"<h2>Unknowns ({len(result.unknowns)}; kept to be safe)</h2>", _table(["path", "reason"], rows, set(), {0: "p"})]
    parts += [f"<script>{_JS}</script>", "</body></html>"]
    return "\n".join(parts) + "\n"
