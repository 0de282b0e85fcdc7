"""Python: the interpreter's sys.path computed from the image, and the import graph from the AST.

sys.path is rebuilt the way CPython does it (Modules/getpath.py and Lib/site.py, 3.11), from
the IMAGE, never the host: PYTHONPATH from the image Env, `<prefix>/lib/pythonX.Y`,
`lib-dynload`, then site directories (python.org builds: `<prefix>/lib/pythonX.Y/site-packages`;
Debian's patched site.py: `/usr/local/lib/pythonX.Y/dist-packages`, `/usr/lib/python3/dist-packages`,
`/usr/lib/pythonX.Y/dist-packages`), a venv's `pyvenv.cfg`, the user site, and `.pth` files.

Imports are found with `ast` (every Import/ImportFrom anywhere, function bodies included, plus
`importlib.import_module("lit")` and `__import__("lit")`) and resolved like importlib's
PathFinder/FileFinder: a package directory with `__init__.py`, then extension modules
(`.cpython-3XY-<triplet>.so`, `.abi3.so`, `.so`), sources, sourceless `.pyc`; a directory
without `__init__` is a namespace portion (PEP 420). Parent packages' `__init__.py` come along,
and `__pycache__/<mod>.cpython-3XY.pyc` is kept with its source (importlib validates caches by
stat-ing the source, PEP 3147). For every imported distribution its non-code files are kept
(RECORD of its `.dist-info`, else the package directory): templates, JSON, `cacert.pem`.

The package's modules: `env` (interpreters, sys.path, `.pth` files), `resolver` (module
resolution), `imports` (AST scanning, import edges, package data, roots); the analyzer is here.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence, Set

from slim.analyzers.base import AnalysisContext, Analyzer, tidy
from slim.analyzers.python.absent import dead_import_edges
from slim.analyzers.python.dynamic import (
    dotted_string_edges,
    entry_point_edges,
    extension_name_edges,
    stdlib_extension_edges,
)
from slim.analyzers.python.env import (
    _INTERP_RE,
    PythonEnv,
    PythonState,
    _package_dir_of,
    env_for_file,
    python_env,
)
from slim.analyzers.python.imports import (
    _pycache_edges,
    import_edges,
    lazy_import_edges,
    package_data_edges,
    python_roots,
    scan_ahead,
    scan_imports,
    startup_edges,
)
from slim.analyzers.python.resolver import ModuleHit, resolve_module
from slim.errors import SlimError
from slim.fs.layer import Capture
from slim.model import Edge, FileEntry, Unknown, normpath, under

MAX_SOURCE = 8 << 20
MAX_EXTENSION_SCAN = 256 << 20  # larger extension modules are not scanned for module names
_EXTENSION = re.compile(r"\.(cpython-3\d+-[a-z0-9_]+-linux-[a-z]+|abi3)\.so$")


class PythonAnalyzer(Analyzer):
    """Python sources (`*.py`, `#!…python` scripts) → imported modules, caches, package data;
    a Python interpreter binary → its startup set."""

    name = "python"
    capture = Capture(globs=("**/*.py", "**/*.pth", "**/RECORD", "**/top_level.txt", "**/entry_points.txt",
                             "**/pyvenv.cfg"))

    def entry_roots(self, argv: Sequence[str]) -> list[Edge | Unknown]:
        return python_roots(self.ctx, list(argv))

    def at_fixpoint(self, kept: Set[str]) -> list[Edge | Unknown]:
        # held-back imports first: a released one's file is read again for lazy attribute
        # names in this same round (its edges may add no file, and then no round follows)
        released = dead_import_edges(self.ctx, kept)
        return [*released, *lazy_import_edges(self.ctx, kept)]

    def _shebang(self, path: str) -> str | None:
        try:
            head = self.ctx.fs.read(path, 256)
        except (SlimError, OSError):
            return None
        if not head.startswith(b"#!"):
            return None
        line = head[2:].split(b"\n")[0].decode("utf-8", "replace").strip().split()
        if not line:
            return None
        prog = line[0]
        if posixpath.basename(prog) == "env":
            rest = [w for w in line[1:] if not w.startswith("-")]
            if not rest:
                return None
            prog = rest[0]
        return prog if "python" in posixpath.basename(prog) else None

    def wants(self, entry: FileEntry) -> bool:
        if not entry.is_file:
            return False
        base = posixpath.basename(entry.path)
        if entry.path.endswith(".py"):
            return True
        if _INTERP_RE.match(base) and under(entry.path, "/") and "/bin/" in entry.path:
            return True
        if _EXTENSION.search(base):
            return entry.size <= MAX_EXTENSION_SCAN and self.ctx.fs.has_content(entry.path)
        return self.ctx.fs.has_content(entry.path) and self._shebang(entry.path) is not None

    def analyze(self, entry: FileEntry) -> Iterable[Edge | Unknown]:
        path = entry.path
        base = posixpath.basename(path)
        if _INTERP_RE.match(base) and not path.endswith(".py"):
            env = python_env(self.ctx, path)
            if env is None:
                return []
            return sorted(set(startup_edges(self.ctx, env))) + sorted(set(env.unknowns))
        if _EXTENSION.search(base):
            env = env_for_file(self.ctx, path)
            if env is not None and posixpath.dirname(path) == posixpath.join(env.stdlib, "lib-dynload"):
                return self._ahead(env, tidy(stdlib_extension_edges(self.ctx, env, path)))
            if env is None or _package_dir_of(env, path) is None:
                return []
            return self._ahead(env, tidy([*extension_name_edges(self.ctx, env, path),
                                          *package_data_edges(self.ctx, env, path)]))
        prog = None if path.endswith(".py") else self._shebang(path)
        interp = None
        if prog:
            interp = prog if prog.startswith("/") else self.ctx.which(prog)
        env = python_env(self.ctx, interp) if interp else env_for_file(self.ctx, path)
        if env is None:
            return [Unknown(path, "Python source but no Python interpreter in the image")]
        try:
            data = self.ctx.fs.read(path, MAX_SOURCE)
        except (SlimError, OSError) as exc:
            return [Unknown(path, f"cannot read Python source: {exc}")]
        source = data.decode("utf-8", errors="replace")
        extra: list[str] = list(self.ctx.service(PythonState).main_dirs)
        if _package_dir_of(env, path) is None:
            # Not under sys.path: an application file; sys.path[0] is its script's directory.
            extra.insert(0, posixpath.dirname(path))
            if self.ctx.config.workdir:  # sys.path[0] of `python -m`/`-c` is the cwd
                extra.append(normpath(self.ctx.config.workdir))
        results: list[Edge | Unknown] = list(import_edges(self.ctx, env, path, source, extra))
        if interp:
            # run by that interpreter: its startup set (a venv's pyvenv.cfg, .pth files) comes too
            results.extend(startup_edges(self.ctx, env))
        search = list(dict.fromkeys([*extra, *env.sys_path]))
        results.extend(dotted_string_edges(self.ctx, env, path, source, search))
        if "load_entry_point" in source:
            results.extend(entry_point_edges(self.ctx, env, path, source, search))
        results.extend(_pycache_edges(self.ctx, env, path))
        if prog is None or path.endswith(".py"):
            results.extend(_parent_init_edges(self.ctx, env, path))
        results.extend(package_data_edges(self.ctx, env, path))
        return self._ahead(env, tidy(results))

    def _ahead(self, env: PythonEnv, results: list[Edge | Unknown]) -> list[Edge | Unknown]:
        """`results`, after starting the parse of every Python source they keep (scan_ahead):
        imports start theirs when resolved (startup_edges those of the startup set), but modules
        named in strings (Django's settings), package data and enclosing packages are sources
        too (of Django's 1,100, 380 were parsed in the process, not ahead; 160 with this)."""
        scan_ahead(self.ctx, env, [e.dst for e in results if isinstance(e, Edge) and e.dst.endswith(".py")])
        return results


def _parent_init_edges(ctx: AnalysisContext, env: PythonEnv, path: str) -> list[Edge]:
    """A module inside a package needs every enclosing package's `__init__.py`."""
    loc = _package_dir_of(env, path)
    if loc is None:
        return []
    site = loc[0]
    out: list[Edge] = []
    d = posixpath.dirname(path)
    while under(d, site) and d != site.rstrip("/"):
        init = posixpath.join(d, "__init__.py")
        if init != path and ctx.fs.is_file(init):
            out.append(Edge(path, init, "import", "enclosing package"))
        d = posixpath.dirname(d)
    return out


__all__ = ["ModuleHit", "PythonAnalyzer", "PythonEnv", "import_edges", "python_env",
           "python_roots", "resolve_module", "scan_imports", "startup_edges"]
