"""Python module resolution: dotted names to files on a computed sys.path.

Imports are resolved like importlib's PathFinder/FileFinder: a package directory with
`__init__.py`, then extension modules (`.cpython-3XY-<triplet>.so`, `.abi3.so`, `.so`),
sources, sourceless `.pyc`; a directory without `__init__` is a namespace portion (PEP 420).
Modules compiled into the interpreter need no file; modules of other platforms are never looked
for.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

from slim.analyzers.base import AnalysisContext
from slim.analyzers.python.env import PythonEnv, PythonState

# Modules compiled into the interpreter (sys.builtin_module_names of CPython 3.11 on Debian 12
# and python.org Linux builds): imports of these need no file.
BUILTIN_MODULES = frozenset({
    "_abc", "_ast", "_codecs", "_collections", "_functools", "_imp", "_io", "_locale",
    "_operator", "_signal", "_sre", "_stat", "_string", "_symtable", "_thread", "_tokenize",
    "_tracemalloc", "_warnings", "_weakref", "atexit", "builtins", "errno", "faulthandler",
    "gc", "itertools", "marshal", "posix", "pwd", "sys", "time", "xxsubtype",
    "_frozen_importlib", "_frozen_importlib_external", "__main__",
})
# Platform modules the stdlib imports conditionally; absent on Linux by design.
FOREIGN_MODULES = frozenset({
    "nt", "msvcrt", "_winapi", "winreg", "_winreg", "winsound", "_overlapped", "_msi", "msilib",
    "_scproxy", "java", "org", "vms_lib", "riscos", "riscospath", "os2",
    "ce", "_emscripten_info", "_wasi",
})


@dataclass(frozen=True)
class ModuleHit:
    """Where an import resolved: the file (None for a namespace package) and its packages."""

    name: str
    path: str | None
    kind: str  # "source" | "package" | "extension" | "bytecode" | "namespace" | "builtin"
    parents: tuple[str, ...] = ()  # __init__.py files of parent packages


# -- module resolution ---------------------------------------------------------------------
def _names_in(ctx: AnalysisContext, directory: str) -> frozenset[str]:
    """The names in an image directory (through links), computed once per run."""
    memo = ctx.service(PythonState).dir_names
    names = memo.get(directory)
    if names is None:
        names = memo[directory] = frozenset(ctx.fs.listdir(directory))
    return names


def _find_in_dir(ctx: AnalysisContext, env: PythonEnv, name: str, d: str) -> tuple[str, str] | None:
    """FileFinder in one directory: (kind, path) with kind package, extension, source,
    bytecode or portion (a directory without __init__: a namespace portion); None. Most
    lookups miss: the directory's listing answers those without resolving a path."""
    key = (d, name, env.ext_suffixes)
    memo = ctx.service(PythonState).found
    if key in memo:
        return memo[key]
    names = _names_in(ctx, d)
    found: tuple[str, str] | None = None
    fs = ctx.fs
    base = posixpath.join(d, name)
    if name in names and fs.is_dir(base):
        for init in ("__init__.py", "__init__.pyc", *("__init__" + s for s in env.ext_suffixes)):
            ip = posixpath.join(base, init)
            if fs.is_file(ip):
                found = ("package", ip)
                break
        else:
            found = ("portion", base)
    if found is None or found[0] == "portion":
        for suffix, kind in [*((s, "extension") for s in env.ext_suffixes), (".py", "source"), (".pyc", "bytecode")]:
            if name + suffix in names and fs.is_file(base + suffix):
                found = (kind, base + suffix)
                break
    memo[key] = found
    return found


def _find_in_dirs(ctx: AnalysisContext, env: PythonEnv, name: str, dirs: Iterable[str]) -> ModuleHit | None:
    """FileFinder over `dirs` for one name component. Namespace portions are returned last."""
    portions: list[str] = []
    for d in dirs:
        found = _find_in_dir(ctx, env, name, d)
        if found is None:
            continue
        kind, path = found
        if kind == "portion":
            portions.append(path)
            continue
        return ModuleHit(name, path, kind)
    if portions:
        return ModuleHit(name, None, "namespace", parents=tuple(portions))
    return None


def resolve_module(ctx: AnalysisContext, env: PythonEnv, dotted: str,
                   search: Iterable[str] | None = None) -> list[ModuleHit] | None:
    """Resolve `a.b.c` to the chain of hits [a, a.b, a.b.c]; None when some part is missing."""
    parts = dotted.split(".")
    if len(parts) == 1 and (parts[0] in BUILTIN_MODULES or parts[0] in env.builtins):
        return [ModuleHit(dotted, None, "builtin")]
    dirs = list(search) if search is not None else list(env.sys_path)
    chain: list[ModuleHit] = []
    for i, part in enumerate(parts):
        hit = _find_in_dirs(ctx, env, part, dirs)
        if hit is None:
            return None
        chain.append(ModuleHit(".".join(parts[: i + 1]), hit.path, hit.kind, hit.parents))
        if hit.kind == "package" and hit.path:
            dirs = [posixpath.dirname(hit.path)]
        elif hit.kind == "namespace":
            dirs = list(hit.parents)
        elif i < len(parts) - 1:
            # A plain module has no submodules on disk, but it may put one in sys.modules
            # itself (`os` sets `os.path`): the import works when the module is present.
            return chain
    return chain


def resolve_vendored(ctx: AnalysisContext, env: PythonEnv, dotted: str,
                     search: Iterable[str] | None = None) -> list[ModuleHit] | None:
    """`pkg.extern.NAME` as setuptools' and pkg_resources' VendorImporter (a meta path finder in
    `pkg/extern/__init__.py`) loads it: `pkg._vendor.NAME`, else the top-level `NAME`."""
    parts = dotted.split(".")
    if len(parts) < 3 or parts[1] != "extern":
        return None
    rest = ".".join(parts[2:])
    return (resolve_module(ctx, env, f"{parts[0]}._vendor.{rest}", search)
            or resolve_module(ctx, env, rest, search))


__all__ = ["BUILTIN_MODULES", "FOREIGN_MODULES", "ModuleHit", "resolve_module", "resolve_vendored"]
