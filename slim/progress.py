"""Progress that tells the truth: named phases with what is counted in each.

Long commands go through phases — reading layers (bytes), analyzing (files visited), running the
image traced, writing, verifying — and a user should see which one is running and that it moves,
never a bar sitting at 100 % while the real work goes on. The flow reports to a `Phases`
object; the CLI shows it on stderr when that is a terminal (`RichPhases`), everything else gets
`SILENT`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Phases(Protocol):
    """Where the flow says what it is doing."""

    def phase(self, name: str, total: int | None = None, unit: str = "") -> None:
        """A new phase begins (the previous one is done). `unit` is "bytes", "files" or ""
        (a phase without a count: a spinner and the elapsed time)."""

    def advance(self, n: int = 1) -> None:
        """`n` more units of the current phase are done."""

    def stop(self) -> None:
        """The work is done: the last phase ends and the display goes (output follows)."""

    def note(self, message: str) -> None:
        """A one-line note that stays (a probe left out, a repair)."""


class _Silent:
    def phase(self, name: str, total: int | None = None, unit: str = "") -> None:
        return None

    def advance(self, n: int = 1) -> None:
        return None

    def stop(self) -> None:
        return None

    def note(self, message: str) -> None:
        return None


SILENT: Phases = _Silent()


class SayPhases(_Silent):
    """Phases and notes as plain lines through `say` (logs, pipes: no live display)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say

    def phase(self, name: str, total: int | None = None, unit: str = "") -> None:
        self.say(name)

    def note(self, message: str) -> None:
        self.say(message)


class RichPhases:
    """Phases as rich progress lines: a finished phase stays as one line with its count and
    time, the running one spins (or fills a bar when its total is known)."""

    def __init__(self, progress: Any) -> None:  # a started rich.progress.Progress
        self.progress = progress
        self.task: Any = None
        self.unit = ""

    @classmethod
    def columns(cls) -> list[Any]:
        from rich.progress import BarColumn, SpinnerColumn, TextColumn, TimeElapsedColumn

        return [SpinnerColumn(finished_text="✓"), TextColumn("{task.description}"),
                BarColumn(bar_width=24), TextColumn("{task.fields[count]}"), TimeElapsedColumn()]

    def _count(self, done: float) -> str:
        from slim.units import format_bytes

        if self.unit == "bytes":
            return format_bytes(int(done))
        if self.unit:
            return f"{int(done)} {self.unit}"
        return ""

    def _finish(self) -> None:
        if self.task is not None:
            t = self.progress.tasks[self.task]
            self.progress.update(self.task, total=t.completed or 1, completed=t.completed or 1,
                                 count=self._count(t.completed))
            self.progress.stop_task(self.task)

    def phase(self, name: str, total: int | None = None, unit: str = "") -> None:
        self._finish()
        self.unit = unit
        self.task = self.progress.add_task(name, total=total, count=self._count(0))

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)
            t = self.progress.tasks[self.task]
            self.progress.update(self.task, count=self._count(t.completed))

    def stop(self) -> None:
        self._finish()
        self.task = None
        self.progress.stop()

    def note(self, message: str) -> None:
        self.progress.console.print(f"slim: {message}", markup=False, highlight=False)


__all__ = ["SILENT", "Phases", "RichPhases", "SayPhases"]
