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
