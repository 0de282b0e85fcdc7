"""Registry of the language-aware analyzers (Python, Node.js, Java, Perl) and their root helpers.

The lead merges `LANGUAGE_ANALYZERS` (and `APP_ANALYZERS`) into the pipeline's ANALYZERS. Roots:
`LANGUAGE_ROOTS` maps a language to `f(ctx, argv) -> [Edge | Unknown]`, each returning [] when
argv is not that language's command line; `app_roots(ctx, entry_script)` adds the application's
own files.
"""

from __future__ import annotations

from collections.abc import Callable

from slim.analyzers.app import AppConfigAnalyzer, app_roots, docroot_edges, path_literal_edges
from slim.analyzers.base import AnalysisContext, Analyzer
from slim.analyzers.java import JavaAnalyzer, java_roots
from slim.analyzers.node import NodeAnalyzer, node_roots
from slim.analyzers.perl import PerlAnalyzer, perl_roots
from slim.analyzers.python import PythonAnalyzer, python_roots
from slim.model import Edge, Unknown

LANGUAGE_ANALYZERS: list[type[Analyzer]] = [PythonAnalyzer, NodeAnalyzer, JavaAnalyzer, PerlAnalyzer]
APP_ANALYZERS: list[type[Analyzer]] = [AppConfigAnalyzer]

RootsFn = Callable[[AnalysisContext, list[str]], list[Edge | Unknown]]
LANGUAGE_ROOTS: dict[str, RootsFn] = {
    "python": python_roots,
    "node": node_roots,
    "java": java_roots,
    "perl": perl_roots,
}


def language_roots(ctx: AnalysisContext, argv: list[str]) -> list[Edge | Unknown]:
    """Root edges from whichever language recognizes `argv` (all are tried; results merged)."""
    out: set[Edge | Unknown] = set()
    for fn in LANGUAGE_ROOTS.values():
        out.update(fn(ctx, list(argv)))
    edges = sorted(e for e in out if isinstance(e, Edge))
    unknowns = sorted(u for u in out if isinstance(u, Unknown))
    return [*edges, *unknowns]


__all__ = ["APP_ANALYZERS", "LANGUAGE_ANALYZERS", "LANGUAGE_ROOTS", "app_roots", "docroot_edges",
           "language_roots", "path_literal_edges"]
