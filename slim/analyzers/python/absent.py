"""Imports that never run because an import before them in the same block fails.

numpy's `np.test()` starts with `import pytest` and goes on to import numpy.distutils,
numpy.testing and f2py (17.6 MB of the numpy bench image with the setuptools they pull in); an
image without pytest can never get past the first line, so nothing after it in that function
is needed. Python runs a block's statements in order and
leaves it at the first exception, so an import statement preceded (in its block or an
enclosing one: ImportRef.block_end) by an import of a module the image cannot provide is dead
code, and so is everything else those lines say (imports.lazy_import_edges skips them).

A top-level module is **absent** when all of these hold:

* it is not a name of the standard library (`sys.stdlib_module_names`: a module built into the
  interpreter has no file, and an image's Python may build in more than slim can see), nor
  one of CPython's frozen test modules;
* it is not built into the interpreter and does not resolve on the image's sys.path
  (.pth files and PYTHONPATH included), nor through setuptools' vendoring importer;
* no file or directory anywhere in the image is named like it (`X`, `X.py`, `X.*.so` …), so a
  directory added to sys.path at run time cannot provide it either;
* no file is on the image's sys.path (zipimport loads from any zip there, whatever it is
  named), and no zip archive (`.zip`, `.egg`, `.whl`, `.pyz`, `.pex`) in the image is named
  like it (a wheel's file name starts with its distribution's name);
* the interpreter is Python 3 (Python 2's built-in modules have other names and symbols);
* no meta-path finder slim knows serves it: setuptools' `distutils-precedence.pth` answers
  `import distutils` from setuptools._distutils (Python 3.12 has no distutils of its own).

A held-back import is released (its edges and unknowns added) when kept Python code spells
the module's name in a string literal (outside docstrings and comments): code that names a
module it does not ship may create it (`sys.modules["X"] = …`), map it in a meta-path finder
(setuptools' editable installs) or find it somewhere slim does not look. Every held-back import
is released when kept code names a zip archive of the image, or names its directory in a file
that also works on sys.path: it may put the archive there, and slim does not read what an
archive holds. (An archive put on sys.path by a file that spells out neither its name nor its
directory escapes this: Debian's sysconfig data names /usr/share/python-wheels without using
it, so a directory alone is not enough.) The check runs each time the
worklist runs dry and only ever adds edges, so the result does not depend on the order files
were visited.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from slim.analyzers.base import AnalysisContext
from slim.analyzers.python.dynamic import _prose_blanked, unread_sources
from slim.analyzers.python.env import PythonEnv, PythonState
from slim.analyzers.python.resolver import resolve_module, resolve_vendored
from slim.model import Edge, Unknown

if TYPE_CHECKING:
    from slim.analyzers.python.imports import ImportRef

ARCHIVES = (".zip", ".egg", ".whl", ".pyz", ".pex")
FROZEN_ONLY = frozenset({"__hello__", "__hello_alias__", "__hello_only__", "__phello__",
                         "__phello_alias__"})  # CPython's frozen test modules: no file anywhere


@dataclass(frozen=True)
class DeadImport:
    """An import statement of `path` that runs only after `missing` was imported."""

    path: str
    line: int
    missing: str
    edges: tuple[Edge, ...]
    unknowns: tuple[Unknown, ...] = ()


def _image_names(ctx: AnalysisContext) -> frozenset[str]:
    """What every file and directory name of the image could provide as a top-level module:
    the name up to its first '.', and for zip archives the part before the first '-'."""
    state = ctx.service(PythonState)
    if state.image_names is None:
        names: set[str] = set()
        archives: set[str] = set()
        for path in ctx.fs.tree.entries:
            base = path.rsplit("/", 1)[-1]
            names.add(base.split(".", 1)[0])
            if base.endswith(ARCHIVES):
                names.add(base.split("-", 1)[0].split(".", 1)[0].lower())
                archives.update((base, path.rsplit("/", 1)[0] or "/"))
        state.image_names = frozenset(names)
        state.image_archives = frozenset(archives)
    return state.image_names


def absent(ctx: AnalysisContext, env: PythonEnv, top: str) -> bool:
    """Whether importing the top-level module `top` fails in this image (module doc)."""
    if not top.isidentifier() or top in sys.stdlib_module_names or top in FROZEN_ONLY:
        return False  # the standard library may be built in where slim cannot see it
    if top == "distutils" and any(p.endswith("/distutils-precedence.pth") for p in env.pth_files):
        return False  # setuptools' _distutils_hack serves it from setuptools._distutils
    if env.version[0] < 3:
        return False
    state = ctx.service(PythonState)
    key = (env.interpreter, top)
    if key not in state.absent:
        names = _image_names(ctx)
        state.absent[key] = (top not in names and top.lower() not in names
                             and not any(ctx.fs.is_file(p) for p in env.sys_path)
                             and resolve_module(ctx, env, top) is None
                             and resolve_vendored(ctx, env, top) is None)
    return state.absent[key]


def dead_spans(ctx: AnalysisContext, env: PythonEnv, path: str,
               refs: Iterable[ImportRef]) -> list[tuple[int, int, str]]:
    """(line, last, module): the lines after `line` up to `last` never run, because the import
    statement on `line` imports `module`, which is absent; recorded for `path`."""
    spans = [(r.line, r.block_end, top) for r in refs
             if r.block_end > r.line and not r.level and not r.dynamic and r.module
             and absent(ctx, env, top := r.module.split(".")[0])]
    if spans:
        ctx.service(PythonState).dead_spans[path] = spans
    return spans


def dead_after(line: int, spans: Iterable[tuple[int, int, str]]) -> str:
    """The absent module whose import makes `line` dead code (dead_spans), "" when none does."""
    return next((module for first, last, module in spans if first < line <= last), "")


def _archive_use(path: str, text: str, archives: frozenset[str]) -> tuple[str, str] | None:
    """(path, what it names) when `text` names a zip archive of the image, or names the
    directory of one and also works on sys.path (where it could put the archive)."""
    for name in sorted(archives):
        if name in text and (not name.startswith("/") or "sys.path" in text or "path_hooks" in text):
            return path, name
    return None


def dead_import_edges(ctx: AnalysisContext, kept: Iterable[str]) -> list[Edge | Unknown]:
    """The held-back imports whose missing module kept code names in a string literal: their
    edges, now added (module doc). Each kept file is read once per set of names. A released
    import's file is scanned again for lazy attribute names (imports.lazy_import_edges skips
    the lines of held-back imports)."""
    state = ctx.service(PythonState)
    if not state.dead:
        return []
    missing = frozenset(d.missing for d in state.dead)
    if not missing <= state.dead_names:
        state.dead_names = missing | state.dead_names
        state.dead_scanned, state.dead_named = set(), {}
    names = state.dead_names
    archives = state.image_archives
    alt = "|".join(sorted(map(re.escape, names)))
    quoted = re.compile("'[^'\\n]*?\\b(" + alt + ")\\b[^'\\n]*'|" + '"[^"\\n]*?\\b(' + alt + ')\\b[^"\\n]*"')
    for path, text in unread_sources(ctx, kept, state.dead_scanned):
        if archives and state.archive_user is None:
            state.archive_user = _archive_use(path, text, archives)
        if not any(n in text for n in names):
            continue
        for m in quoted.finditer(_prose_blanked(text)):
            state.dead_named.setdefault(m.group(1) or m.group(2), path)
    out: list[Edge | Unknown] = []
    still: list[DeadImport] = []
    for dead in state.dead:
        named = state.dead_named.get(dead.missing)
        if named is not None:
            why = f"; {named} names {dead.missing!r} in a string, so it may be provided at run time"
        elif state.archive_user is not None:
            user, archive = state.archive_user
            why = f"; {user} names {archive}, a zip archive's name or directory: it may provide any module"
        else:
            still.append(dead)
            continue
        out.extend(Edge(e.src, e.dst, e.kind, e.evidence + why) for e in dead.edges)
        out.extend(dead.unknowns)
        # the code after the import may run after all: what it names counts for lazy
        # attributes again
        spans = state.dead_spans.get(dead.path, [])
        state.dead_spans[dead.path] = [s for s in spans if s[2] != dead.missing]
        state.lazy_scanned.discard(dead.path)
    state.dead = still
    return out


__all__ = ["DeadImport", "absent", "dead_after", "dead_import_edges", "dead_spans"]
