"""The Analyzer interface: one file in, edges (reasons to keep other files) and unknowns out.

The pipeline runs a worklist: every newly kept file is offered to every analyzer whose
`wants` accepts it; `analyze` yields Edges from that file (or from "<root>") to the files it
needs, and Unknowns for what it could not decide (the file stays kept). Analyzers read the
image only through the RootFS in their context.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from slim.fs.rootfs import RootFS
from slim.model import Edge, FileEntry, ImageConfig, Unknown


@dataclass
class AnalysisContext:
    """What analyzers may look at: the image filesystem, its config, and shared caches."""

    fs: RootFS
    config: ImageConfig
    options: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)  # per-run memo shared by analyzers


class Analyzer(ABC):
    """Finds what one kind of file needs."""

    name: str = ""

    def __init__(self, ctx: AnalysisContext) -> None:
        self.ctx = ctx

    @abstractmethod
    def wants(self, entry: FileEntry) -> bool:
        """Whether this analyzer has something to say about `entry` (a resolved regular file)."""

    @abstractmethod
    def analyze(self, entry: FileEntry) -> Iterable[Edge | Unknown]:
        """Edges from `entry.path` to what it needs, and Unknowns. Never raises for bad input."""


def tidy(results: Iterable[Edge | Unknown]) -> list[Edge | Unknown]:
    """Distinct edges (self-edges dropped), sorted, then distinct unknowns, sorted."""
    items = list(results)
    edges = sorted({e for e in items if isinstance(e, Edge) and e.src != e.dst})
    unknowns = sorted({u for u in items if isinstance(u, Unknown)})
    return [*edges, *unknowns]
