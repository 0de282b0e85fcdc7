"""Static analyzers: one file in, edges and unknowns out. `ANALYZERS` is the registry.

Adding an analyzer is one module (a subclass of `Analyzer` declaring its `capture`, `wants`,
`analyze` and, when it understands command lines, `entry_roots`) and one line below. Every
module is imported eagerly: a broken analyzer is an import error, never a silent skip.
"""

from __future__ import annotations

from slim.analyzers.app import AppConfigAnalyzer
from slim.analyzers.base import AnalysisContext, AnalysisOptions, Analyzer
from slim.analyzers.config import ConfigAnalyzer
from slim.analyzers.elf import ElfAnalyzer
from slim.analyzers.elfdata import ElfDataAnalyzer
from slim.analyzers.fallback import FallbackInterpreterAnalyzer
from slim.analyzers.gconv import GconvAnalyzer
from slim.analyzers.java import JavaAnalyzer
from slim.analyzers.node import NodeAnalyzer
from slim.analyzers.packages import PackageAnalyzer
from slim.analyzers.perl import PerlAnalyzer
from slim.analyzers.php import PhpAnalyzer
from slim.analyzers.procman import ProcessManagerAnalyzer
from slim.analyzers.python import PythonAnalyzer
from slim.analyzers.ruby import RubyAnalyzer
from slim.analyzers.script import ScriptAnalyzer
from slim.fs.layer import Capture

# Order is the order files are offered to analyzers (it only decides the order of edges).
ANALYZERS: tuple[type[Analyzer], ...] = (
    ElfAnalyzer,
    ElfDataAnalyzer,
    ScriptAnalyzer,
    ConfigAnalyzer,
    PythonAnalyzer,
    NodeAnalyzer,
    JavaAnalyzer,
    PerlAnalyzer,
    RubyAnalyzer,
    PhpAnalyzer,
    ProcessManagerAnalyzer,
    FallbackInterpreterAnalyzer,
    AppConfigAnalyzer,
    PackageAnalyzer,
    GconvAnalyzer,
)


def analyzer_capture() -> Capture:
    """The union of what the registered analyzers read (the layer reader copies exactly it)."""
    out = Capture()
    for cls in ANALYZERS:
        out = out | cls.capture
    return out


__all__ = ["ANALYZERS", "AnalysisContext", "AnalysisOptions", "Analyzer", "analyzer_capture"]
