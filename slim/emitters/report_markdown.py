"""The Markdown report: an AnalysisResult sized for a pull-request comment.

GitHub rejects comment bodies over 65,536 characters, so the report stays under `MAX_CHARS`:
tables are cut to a row limit with a note, the limit shrinks until the report fits, and as a
last resort the text is cut at a line boundary with a note. The headline and the main tables are
visible; long lists are folded into `<details>` (GitHub Flavored Markdown renders raw HTML blocks).

Image data is untrusted, so every string from it is escaped: Markdown punctuation is
backslash-escaped (CommonMark §2.4), and `< > & | @` and backticks become character references
so a path can neither inject HTML, break a table row (GFM tables split on `|` before inline
parsing) nor @-mention a user.
"""

from __future__ import annotations

from collections.abc import Sequence

from slim.result import AnalysisResult, KeptFile, PathBytes
from slim.units import format_bytes

MAX_CHARS = 65_000
ROW_LIMITS = (25, 15, 10, 5, 3)  # tried in order until the report fits

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "&#124;", "@": "&#64;", "`": "&#96;"}
_BACKSLASHED = set("\\*_[]#~!")


def md_text(value: object) -> str:
    """Escape untrusted text for a Markdown table cell or paragraph (one line)."""
    out = []
    for ch in str(value):
        if ch in _ENTITIES:
            out.append(_ENTITIES[ch])
        elif ch in _BACKSLASHED:
            out.append("\\" + ch)
        elif ch in "\r\n\t":
            out.append(" ")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append("\N{REPLACEMENT CHARACTER}")
        else:
            out.append(ch)
    return "".join(out)


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f} %" if whole else "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], limit: int, what: str) -> list[str]:
    """A GFM table of at most `limit` rows, with a note naming how many were left out."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if h.endswith("§") else "---" for h in header) + "|"]
    out[0] = out[0].replace("§", "")
    out += ["| " + " | ".join(r) + " |" for r in rows[:limit]]
    if len(rows) > limit:
        out += ["", f"_… {len(rows) - limit} more {what} not shown (see `slim analyze --format json`)._"]
    return out


def headline(result: AnalysisResult) -> str:
    """One bold line: size, removable bytes and share, efficiency, waste."""
    img = result.image
    parts = [f"**{format_bytes(img.size_bytes)}** in {img.file_count} files, {len(img.layers)} layer{'s' if len(img.layers) != 1 else ''}"]
    if result.removable is not None:
        parts.append(f"removable **{format_bytes(result.removable.size_bytes)} ({_pct(result.removable.size_bytes, img.size_bytes)})**")
    if result.efficiency is not None:
        parts.append(f"efficiency **{100 * result.efficiency.score:.1f} %**")
    if result.waste:
        waste = sum(w.size_bytes for w in result.waste)
        parts.append(f"likely waste {format_bytes(waste)} ({_pct(waste, img.size_bytes)})")
    return " · ".join(parts)


def _kept_under(keep: Sequence[KeptFile], directory: str) -> int:
    prefix = directory.rstrip("/") + "/"
    return sum(k.size_bytes for k in keep if k.path.startswith(prefix))


def removable_dirs(result: AnalysisResult) -> list[PathBytes]:
    """Of the largest directories, bytes not kept by the closure, most removable first."""
    if result.removable is None:
        return []
    rows = [PathBytes(d.path, d.size_bytes - _kept_under(result.keep, d.path), d.count) for d in result.largest_dirs]
    return sorted((r for r in rows if r.size_bytes > 0), key=lambda r: (-r.size_bytes, r.path))


def _status(status: str) -> str:
    return {"pass": "✅ pass", "warn": "⚠️ warn", "fail": "❌ fail"}.get(status, md_text(status))


def _sections(result: AnalysisResult, limit: int) -> list[str]:
    img = result.image
    size = img.size_bytes
    out = [f"## slim report: {md_text(img.reference)}", "", headline(result), ""]

    if result.verdicts:
        rows = [[md_text(v.rule), _status(v.status), md_text(v.measured), md_text(v.threshold), md_text(v.message)]
                for v in sorted(result.verdicts, key=lambda v: v.rule)]
        out += ["### Budget", "", *_table(["gate", "status", "measured", "threshold", "detail"], rows, len(rows), "gates"), ""]

    summary = [["image size", format_bytes(size), f"{img.file_count} files"]]
    if result.reachable is not None:
        summary.append(["reachable (kept)", format_bytes(result.reachable.size_bytes), f"{result.reachable.file_count} files"])
    if result.removable is not None:
        summary.append(["removable", f"{format_bytes(result.removable.size_bytes)} ({_pct(result.removable.size_bytes, size)})",
                        f"{result.removable.file_count} files"])
    eff = result.efficiency
    if eff is not None:
        summary.append(["layer efficiency", f"{100 * eff.score:.1f} %", f"{format_bytes(eff.removable_by_squash_bytes)} removable by squashing"])
    out += [*_table(["", "size§", "detail"], summary, len(summary), "rows"), ""]

    pkgs = sorted(result.packages, key=lambda p: (-(p.size_bytes - p.kept_bytes), p.manager, p.name))
    pkgs = [p for p in pkgs if p.size_bytes - p.kept_bytes > 0]
    if pkgs and result.removable is not None:
        rows = [[md_text(p.name), md_text(p.version), md_text(p.manager), format_bytes(p.size_bytes),
                 format_bytes(p.size_bytes - p.kept_bytes), "yes" if p.unused else ""] for p in pkgs]
        out += ["### Top removable packages", "", *_table(["package", "version", "manager", "size§", "removable§", "unused"], rows, limit, "packages"), ""]

    dirs = removable_dirs(result)
    if dirs:
        rows = [[md_text(d.path), format_bytes(d.size_bytes), _pct(d.size_bytes, size)] for d in dirs]
        out += ["### Top removable directories", "", *_table(["directory", "removable§", "share§"], rows, limit, "directories"), ""]
    elif result.largest_dirs:
        rows = [[md_text(d.path), format_bytes(d.size_bytes), _pct(d.size_bytes, size), str(d.count)] for d in result.largest_dirs]
        out += ["### Largest directories", "", *_table(["directory", "size§", "share§", "files§"], rows, limit, "directories"), ""]

    if result.waste:
        rows = [[md_text(w.name), format_bytes(w.size_bytes), _pct(w.size_bytes, size), str(w.file_count), md_text(w.description)]
                for w in sorted(result.waste, key=lambda w: (-w.size_bytes, w.name))]
        out += ["### Likely waste", "", *_table(["category", "size§", "share§", "files§", "what"], rows, limit, "categories"), ""]

    rows = [[str(la.index), format_bytes(la.size_bytes), str(la.file_count), format_bytes(la.blob_bytes) if la.blob_bytes else "-",
             md_text((la.created_by or "-")[:200])] for la in sorted(img.layers, key=lambda la: la.index)]
    out += ["### Layers", "", *_table(["#§", "size§", "files§", "blob§", "created by"], rows, limit, "layers"), ""]

    # details, folded
    meta = [["digest", md_text(img.digest or "-")], ["platform", md_text(f"{img.os}/{img.architecture}")],
            ["entrypoint", md_text(" ".join(img.entrypoint) or "-")], ["cmd", md_text(" ".join(img.cmd) or "-")],
            ["user", md_text(img.user or "(root)")], ["workdir", md_text(img.workdir or "/")]]
    out += ["<details><summary>Image</summary>", "", *_table(["", ""], meta, len(meta), "rows"), "", "</details>", ""]
    if result.largest_files:
        rows = [[md_text(f.path), format_bytes(f.size_bytes), _pct(f.size_bytes, size)] for f in result.largest_files]
        out += ["<details><summary>Largest files</summary>", "", *_table(["file", "size§", "share§"], rows, limit, "files"), "", "</details>", ""]
    if eff is not None and eff.inefficient:
        rows = [[md_text(p.path), format_bytes(p.size_bytes), str(p.count)] for p in eff.inefficient]
        out += [f"<details><summary>Paths in several layers (dive's wasted bytes {format_bytes(eff.wasted_bytes)})</summary>", "",
                *_table(["path", "bytes in all layers§", "layers§"], rows, limit, "paths"), "", "</details>", ""]
    if result.keep:
        kept = sorted(result.keep, key=lambda k: (-k.size_bytes, k.path))
        rows = [[md_text(k.path), format_bytes(k.size_bytes), md_text(", ".join(k.reasons))] for k in kept]
        out += [f"<details><summary>Kept files ({len(kept)})</summary>", "", *_table(["path", "size§", "why"], rows, limit, "kept files"), "", "</details>", ""]
    ex = result.excess
    if ex is not None and ex.untouched.file_count:
        rows = [[md_text(f"{c.kind} {c.evidence}".strip() + f" from {c.src}"), md_text(c.path),
                 format_bytes(c.size_bytes), str(c.file_count)] for c in ex.chains]
        out += [f"<details><summary>Kept but untouched by the traced run: {format_bytes(ex.untouched.size_bytes)} "
                f"in {ex.untouched.file_count} files (touched: {format_bytes(ex.traced.size_bytes)})</summary>", "",
                *_table(["kept by", "entry", "size§", "files§"], rows, limit, "chains"), "", "</details>", ""]
    if result.unknowns:
        rows = [[md_text(u.path), md_text(u.reason)] for u in sorted(result.unknowns, key=lambda u: (u.path, u.reason))]
        out += [f"<details><summary>Unknowns ({len(rows)}; kept to be safe)</summary>", "", *_table(["path", "reason"], rows, limit, "unknowns"), "", "</details>", ""]
    out.append("<sub>Generated by slim. Sizes are regular-file bytes of the squashed filesystem; "
               "efficiency follows dive's definition.</sub>")
    return out


def render_markdown(result: AnalysisResult, max_chars: int = MAX_CHARS) -> str:
    """The report as GitHub Flavored Markdown, at most `max_chars` characters."""
    text = ""
    for limit in ROW_LIMITS:
        text = "\n".join(_sections(result, limit)) + "\n"
        if len(text) <= max_chars:
            return text
    note = "\n\n_Report truncated to fit a pull-request comment; see `slim analyze --format json`._\n"
    cut = text[: max_chars - len(note) - 40]
    cut = cut[: cut.rfind("\n")] if "\n" in cut else cut
    if cut.count("<details>") > cut.count("</details>"):
        cut += "\n\n</details>"
    return cut + note
