"""Emitters: render an AnalysisResult into one artifact. `EMITTERS` drives `--format`.

A report emitter is an `Emitter(name, extension, emit)` where `emit(result, out, color=…)` writes
the whole report to a text stream; adding a format (markdown, html) is one module and one entry.
Each `emit` imports its renderer when called: a command pays only for the format it writes
(the HTML renderer and Rich cost about 25 ms to import, a tenth of slim's start-up).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from slim.result import AnalysisResult

TEXT_WIDTH = 120  # width when the text report is not going to a terminal and COLUMNS is unset


def text_width() -> int:
    """The width of text output that does not go to a terminal: $COLUMNS when it is a number
    (as `COLUMNS=200 slim analyze … | less` asks), else TEXT_WIDTH."""
    import os

    value = os.environ.get("COLUMNS", "")
    return int(value) if value.isdigit() and 20 <= int(value) <= 10000 else TEXT_WIDTH


@dataclass(frozen=True)
class Emitter:
    """One report format: its name on the command line, file extension and writer."""

    name: str
    extension: str
    emit: Callable[..., None]  # (result, out: TextIO, *, color: bool) -> None


def emit_json(result: AnalysisResult, out: TextIO, *, color: bool = False) -> None:
    from slim.emitters.report_json import render_json

    out.write(render_json(result))


def emit_text(result: AnalysisResult, out: TextIO, *, color: bool = False) -> None:
    from rich.console import Console

    from slim.emitters.report_text import render_text

    console = Console(
        file=out,
        force_terminal=color,
        no_color=not color,
        width=None if color else text_width(),
        highlight=False,
        soft_wrap=False,
    )
    render_text(result, console)


def emit_markdown(result: AnalysisResult, out: TextIO, *, color: bool = False) -> None:
    from slim.emitters.report_markdown import render_markdown

    out.write(render_markdown(result))


def emit_html(result: AnalysisResult, out: TextIO, *, color: bool = False, why: Callable[[str], object] | None = None) -> None:
    """`why` (e.g. `closure.graph.why`) adds evidence chains to the dependency-chain section."""
    from slim.emitters.report_html import render_html

    out.write(render_html(result, why=why))


EMITTERS: dict[str, Emitter] = {
    "html": Emitter("html", "html", emit_html),
    "json": Emitter("json", "json", emit_json),
    "markdown": Emitter("markdown", "md", emit_markdown),
    "text": Emitter("text", "txt", emit_text),
}

__all__ = [
    "EMITTERS",
    "Emitter",
    "emit_html",
    "emit_json",
    "emit_markdown",
    "emit_text",
    "text_width",
]
