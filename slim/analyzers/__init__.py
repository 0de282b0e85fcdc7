"""Static analyzers: one file in, edges and unknowns out. ANALYZERS is the registry.

Each entry names a module and class; a module that is not importable (an optional
dependency missing) is skipped with a debug log, so one broken analyzer never stops the rest.
"""

from __future__ import annotations

import importlib
import logging

from slim.analyzers.base import AnalysisContext, Analyzer

log = logging.getLogger(__name__)

ANALYZERS: dict[str, str] = {
    "elf": "slim.analyzers.ldso:ElfAnalyzer",
    "script": "slim.analyzers.script:ScriptAnalyzer",
    "config": "slim.analyzers.config:ConfigAnalyzer",
    "python": "slim.analyzers.python:PythonAnalyzer",
    "node": "slim.analyzers.node:NodeAnalyzer",
    "java": "slim.analyzers.java:JavaAnalyzer",
    "perl": "slim.analyzers.perl:PerlAnalyzer",
    "app-config": "slim.analyzers.app:AppConfigAnalyzer",
}


def analyzer_classes(names: list[str] | None = None) -> list[type[Analyzer]]:
    """The analyzer classes of the registry (all, or those named), in registry order."""
    out: list[type[Analyzer]] = []
    for name, spec in ANALYZERS.items():
        if names is not None and name not in names:
            continue
        module, _, cls = spec.partition(":")
        try:
            out.append(getattr(importlib.import_module(module), cls))
        except (ImportError, AttributeError) as exc:
            log.debug("analyzer %s unavailable: %s", name, exc)
    return out


__all__ = ["ANALYZERS", "AnalysisContext", "Analyzer", "analyzer_classes"]
