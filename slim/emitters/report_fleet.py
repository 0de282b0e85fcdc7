"""The `slim fleet` report: Markdown (a pull-request comment), HTML (one self-contained page
with stacked bar charts drawn as inline SVG, like report_html) and JSON (fleet.json).

Every bar is one layout of the whole fleet; its segments are the bytes two or more services
share and each service's own bytes (slim.footprint.Measure). Names come from the user's image
references and every string is HTML-escaped all the same.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

from slim.footprint import Footprint, Measure
from slim.units import format_bytes

METRICS = (
    ("pulled", "pulled", "what a node downloads to run every service (= what a registry stores): compressed layer blobs, each once"),
    ("stored", "stored", "what a node keeps on disk: unpacked layers, each once (one snapshot per ChainID)"),
    ("page_cache", "page cache", "estimated memory for file pages with every service on one host: each service's kept files, counted once per layer that holds them"),
)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#bcbd22", "#17becf", "#7f7f7f")
SHARED_COLOR = "#455a64"
BAR_W, BAR_H, LABEL_W = 640, 26, 260


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.2f}x" if b else "-"


def _m(f: Footprint, metric: str) -> Measure:
    m: Measure = getattr(f, metric)
    return m


def _status(verified: bool | None) -> str:
    return "yes" if verified else "NO" if verified is False else "not verified"


def render_fleet_markdown(outcome: Any, feet: Sequence[Footprint]) -> str:
    """The report as Markdown."""
    names = [p.name for p in outcome.services]
    given = next((f for f in feet if f.key == "given"), None)
    lines = [f"# slim fleet: {len(names)} services", "",
             f"Written: `--layers {outcome.layout}`, one OCI layout per service "
             f"({outcome.workers} Dask worker{'s' if outcome.workers != 1 else ''}, "
             f"{outcome.seconds:.0f} s).", "",
             "## The whole fleet", "",
             "| layout | layers per service | pulled | stored | page cache | pulled vs as given |",
             "|---|---|---|---|---|---|"]
    for f in feet:
        counts = sorted(set(f.layers.values()))
        layers = "-" if counts == [0] else "/".join(str(c) for c in counts)
        lines.append(f"| {f.title} | {layers} | {format_bytes(f.pulled.total)} | "
                     f"{format_bytes(f.stored.total)} | {format_bytes(f.page_cache.total)} | "
                     f"{_ratio(f.pulled.total, given.pulled.total) if given else '-'} |")
    lines += ["", *[f"- **{label}**: {what}." for _, label, what in METRICS],
              "- Unikernels share nothing: one VM image per service, kernel + its files "
              "(pulled: the files gzip-compressed, as the service's one-layer blob)."]
    lines += ["", "## Per service: pulled to run it alone", "",
              "| service | verified | " + " | ".join(f.title for f in feet) + " |",
              "|---|---|" + "---|" * len(feet)]
    published = {p.name: p for p in outcome.published}
    for p in outcome.services:
        pub = published.get(p.name)
        ok = _status(pub.verified if pub else p.verified)
        cells = [format_bytes(f.pulled.alone.get(p.name, 0)) for f in feet]
        lines.append(f"| {p.name} | {ok} | " + " | ".join(cells) + " |")
    lines += ["", "## The shared base", "",
              f"{outcome.base_files} files, {format_bytes(outcome.base_bytes)}: every entry kept "
              f"identically (path, type, mode, owner, mtime, xattrs, link target, content "
              f"sha256) by {outcome.min_share} or more services; when two versions of one path "
              "qualify, the one with more bytes * services wins. A node running one service "
              "alone also pulls base files that service does not use:", ""]
    lines += [f"- {name}: {format_bytes(outcome.base_unused.get(name, 0))} of the base unused"
              for name in names]
    notes = [f"- {f.title}: kernel size from {f.note}" for f in feet if f.note]
    if notes:
        lines += ["", "Kernel sizes (published approximations, rules/unikernels/*.toml):", "", *notes]
    return "\n".join(lines) + "\n"


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def stacked_bars(feet: Sequence[Footprint], metric: str, names: Sequence[str]) -> str:
    """One horizontal stacked bar per layout: shared bytes, then each service's own."""
    peak = max((_m(f, metric).total for f in feet), default=0) or 1
    height = BAR_H * len(feet) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_esc(metric)}" '
           f'viewBox="0 0 {LABEL_W + BAR_W + 110} {height}" width="100%">']
    for row, f in enumerate(feet):
        m = _m(f, metric)
        y = row * BAR_H + 4
        out.append(f'<text x="{LABEL_W - 6}" y="{y + 15}" text-anchor="end">{_esc(f.title)}</text>')
        x = float(LABEL_W)
        segments = [("shared by 2+ services", m.shared, SHARED_COLOR)]
        segments += [(n, m.unique.get(n, 0), PALETTE[i % len(PALETTE)]) for i, n in enumerate(names)]
        for label, size, color in segments:
            w = BAR_W * size / peak
            if w <= 0:
                continue
            title = _esc(f"{f.title}: {label}: {format_bytes(size)}")
            out.append(f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{BAR_H - 6}" '
                       f'fill="{color}"><title>{title}</title></rect>')
            x += w
        out.append(f'<text x="{x + 6:.2f}" y="{y + 15}">{_esc(format_bytes(m.total))}</text>')
    out.append("</svg>")
    return "\n".join(out)


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1b1f24}
h1{font-size:20px}h2{font-size:16px;margin:24px 0 6px}
table{border-collapse:collapse}th,td{border:1px solid #d0d7de;padding:3px 8px}
td.n{text-align:right}th{background:#f6f8fa}svg{max-width:1100px;display:block}
svg text{font:12px sans-serif;fill:#111}pre{white-space:pre-wrap}.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px}
"""


def render_fleet_html(outcome: Any, feet: Sequence[Footprint]) -> str:
    """The report as one self-contained HTML page (nothing fetched when viewed)."""
    names = [p.name for p in outcome.services]
    legend = [f'<span style="background:{SHARED_COLOR}"></span>shared by 2+ services']
    legend += [f'<span style="background:{PALETTE[i % len(PALETTE)]}"></span>{_esc(n)}'
               for i, n in enumerate(names)]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
             "style-src 'unsafe-inline'\">",
             f"<title>slim fleet: {len(names)} services</title><style>{_CSS}</style></head><body>",
             f"<h1>slim fleet: {len(names)} services</h1>",
             f'<div class="legend">{"".join(legend)}</div>']
    for metric, label, what in METRICS:
        parts += [f"<h2>{_esc(label)}</h2><p>{_esc(what)}.</p>", stacked_bars(feet, metric, names)]
    rows = []
    for f in feet:
        cells = "".join(f'<td class="n">{_esc(format_bytes(_m(f, m).total))}</td>' for m, _, _ in METRICS)
        rows.append(f"<tr><td>{_esc(f.title)}</td>{cells}</tr>")
    head = "".join(f"<th>{_esc(label)}</th>" for _, label, _ in METRICS)
    parts += ["<h2>Totals</h2>", f"<table><tr><th>layout</th>{head}</tr>{''.join(rows)}</table>"]
    parts += ["<h2>Report</h2>", f"<pre>{_esc(render_fleet_markdown(outcome, feet))}</pre>",
              "</body></html>"]
    return "\n".join(parts) + "\n"


def render_fleet_json(outcome: Any, feet: Sequence[Footprint]) -> str:
    """fleet.json: services, published images and every footprint (sorted keys)."""
    def measure(m: Measure) -> dict[str, Any]:
        return {"total": m.total, "shared": m.shared, "unique": dict(sorted(m.unique.items())),
                "alone": dict(sorted(m.alone.items()))}

    published = {p.name: p for p in outcome.published}
    doc = {
        "schema": "slim-fleet/1",
        "layout": outcome.layout,
        "min_share": outcome.min_share,
        "base": {"files": outcome.base_files, "bytes": outcome.base_bytes,
                 "unused": dict(sorted(outcome.base_unused.items()))},
        "services": [{
            "name": p.name, "reference": p.spec.reference, "digest": p.image_digest,
            "original_bytes": p.original_bytes, "minimal_bytes": p.minimal_bytes,
            "fixes": p.fixes,
            "image": published[p.name].digest if p.name in published else "",
            "verified": published[p.name].verified if p.name in published else p.verified,
            "compared": list(published[p.name].compared) if p.name in published else [],
        } for p in outcome.services],
        "footprints": [{"layout": f.key, "title": f.title, "layers": dict(sorted(f.layers.items())),
                        "pulled": measure(f.pulled), "stored": measure(f.stored),
                        "page_cache": measure(f.page_cache), "note": f.note} for f in feet],
    }
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


__all__ = ["render_fleet_html", "render_fleet_json", "render_fleet_markdown", "stacked_bars"]
