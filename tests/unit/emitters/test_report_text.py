"""The text report: headline numbers, tables, optional sections, no markup injection."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

from rich.console import Console

from slim.emitters import EMITTERS
from slim.emitters.report_text import headline, render_text
from slim.pipeline import load_image
from slim.result import KeptFile, PackageSummary, UnknownItem
from slim.summary import summarize
from slim.units import format_bytes
from tests.unit.test_summary import sample_image


def _render(result) -> str:
    out = io.StringIO()
    render_text(result, Console(file=out, width=160, no_color=True, force_terminal=False))
    return out.getvalue()


def test_format_bytes_is_si() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 kB"
    assert format_bytes(3 * 1000**3) == "3.0 GB"
    assert format_bytes(-2000) == "-2.0 kB"


def test_text_contains_headline_numbers(tmp_path: Path) -> None:
    with load_image(sample_image(tmp_path)) as loaded:
        result = summarize(loaded)
    text = _render(result)
    img = result.image
    assert headline(result) in text
    assert format_bytes(img.size_bytes) in text and f"{img.file_count} files" in text
    assert "3 layers" in text
    assert f"efficiency {100 * result.efficiency.score:.1f} %" in text
    for section in ("Layers", "Efficiency", "Largest directories", "Largest files", "Likely waste"):
        assert section in text
    assert "RUN apt-get update" in text and "/usr/bin/app" in text
    # sections about the app only when they have content
    assert "Kept files" not in text and "Packages (" not in text and "Unknowns" not in text


def test_optional_sections_and_untrusted_markup(tmp_path: Path) -> None:
    with load_image(sample_image(tmp_path)) as loaded:
        result = summarize(loaded)
    result = dataclasses.replace(
        result, keep=[KeptFile("/etc/[bold]x[/bold]", 10, ("config",))],
        packages=[PackageSummary("curl", "8.0", "dpkg", 1000, 10, False)],
        unknowns=[UnknownItem("/weird", "link loop")])
    text = _render(result)
    assert "Kept files" in text and "/etc/[bold]x[/bold]" in text  # shown literally, not as markup
    assert "Packages (1)" in text and "curl" in text and "Unknowns" in text and "link loop" in text


def test_text_emitter_writes_to_a_stream(tmp_path: Path) -> None:
    with load_image(sample_image(tmp_path)) as loaded:
        result = summarize(loaded)
    out = io.StringIO()
    EMITTERS["text"].emit(result, out, color=False)
    assert "\x1b[" not in out.getvalue()  # no colour codes in files
    assert headline(result) in out.getvalue()


def _analyzed_sample(tmp_path: Path):
    with load_image(sample_image(tmp_path)) as loaded:
        result = summarize(loaded)
    from slim.result import Totals

    return dataclasses.replace(
        result,
        keep=[KeptFile("/usr/bin/app", 4004, ("entrypoint",)), KeptFile("/usr", 0, ("parent-dir",))],
        reachable=Totals(4004, 1), removable=Totals(result.image.size_bytes - 4004, result.image.file_count - 1),
        packages=[PackageSummary("docs-pkg", "1", "dpkg", 300, 0, True, 1, 0, "removed"),
                  PackageSummary("app", "1", "dpkg", 4004, 4004, False, 1, 1, "kept")])


def test_summary_opens_the_report(tmp_path: Path) -> None:
    """Issue 20: 10-15 lines that say size, removable, top removable packages and directories
    and the verdicts come before any table."""
    result = _analyzed_sample(tmp_path)
    text = _render(result)
    before_tables = text.split("\n\n", 1)[0].splitlines()
    assert 3 <= len(before_tables) <= 15
    head = "\n".join(before_tables)
    assert headline(result) in head
    assert f"removable: {format_bytes(result.removable.size_bytes)}" in head
    assert f"in {result.removable.file_count} files the app does not need" in head
    assert "top removable packages: docs-pkg 300 B" in head and "app 4" not in head
    assert "top removable directories: /usr/share/doc/app 300 B" in head
    assert "verdicts: gates: none configured" in head
    # one count of files everywhere: the headline's = removable + needed
    assert result.removable.file_count + result.reachable.file_count == result.image.file_count
    assert "Kept files (1;" in text  # the reachable count, not the kept directories
    # the tables follow, the actionable ones first
    assert text.index("Packages (2") < text.index("Largest directories") < text.index("Layers")


def test_largest_directories_collapse_nested_paths(tmp_path: Path) -> None:
    with load_image(sample_image(tmp_path)) as loaded:
        result = summarize(loaded)
    dirs = {d.path: d.size_bytes for d in result.largest_dirs}
    # /usr/share holds only /usr/share/doc/app: one row for the three, the deepest
    assert "/usr/share/doc/app" in dirs and "/usr/share/doc" not in dirs and "/usr/share" not in dirs
    for path, size in dirs.items():
        parent = path.rsplit("/", 1)[0]
        assert dirs.get(parent) != size, path  # no parent repeated with its child's bytes


def test_text_width_follows_columns_when_piped(tmp_path: Path, monkeypatch) -> None:
    result = _analyzed_sample(tmp_path)
    for columns, width in (("70", 70), ("200", 200), ("x", 120)):
        monkeypatch.setenv("COLUMNS", columns)
        out = io.StringIO()
        EMITTERS["text"].emit(result, out, color=False)
        table_lines = [line for line in out.getvalue().splitlines() if line.startswith(("┏", "│", "└"))]
        assert table_lines and max(len(line) for line in table_lines) <= width
        if columns == "70":
            assert all(len(line) <= 70 for line in table_lines)
