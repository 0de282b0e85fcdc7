"""`except ImportError:` fallbacks of C accelerators that will load.

The stdlib and many libraries import a C implementation and fall back to a pure-Python one:

    try:
        from _decimal import *
        from _decimal import __version__
    except ImportError:
        from _pydecimal import *          # 230 kB of source, and its bytecode

The handler runs only when the try body fails. When that body does nothing but import
top-level modules (ImportRef.fallback_for), each of which the image provides as an extension
module that will load, the handler never runs and its imports are not followed. An extension
module loads when:

* it resolves on the interpreter's sys.path to an extension module (`.cpython-3XY-….so`,
  `.abi3.so`, `.so`) that is a readable ELF shared object;
* every DT_NEEDED of it, and of what those load, is found by the dynamic loader's search
  (slim.analyzers.ldso.resolver, the rules the ELF analyzer keeps them by);
* every name the body takes from it (`from _decimal import __version__`) is written in the
  object as a NUL-terminated string: the module's method table and PyModule_Add* calls name
  them there; a name that is not in the object cannot be one of its attributes.

Anything else — a source module (its own imports could fail), a package, a name not found, an
unreadable object, a missing library — leaves the fallback followed as before. What cannot be
proven here: that the module's init function does not raise; an accelerator whose init fails
on an image where its libraries are all present is a broken build, which the original image
would show too (its fallback would then be in use and the traced run would keep it).
"""

from __future__ import annotations

import logging

from slim.analyzers.base import AnalysisContext
from slim.analyzers.elf import Loader
from slim.analyzers.python.env import PythonEnv, PythonState
from slim.analyzers.python.resolver import resolve_module
from slim.elf import ElfInfo
from slim.errors import SlimError

log = logging.getLogger(__name__)

MAX_OBJECT = 16 << 20  # an accelerator larger than this is not read for its names (fallback kept)
MAX_LIBRARIES = 256  # libraries followed per accelerator before giving up (keep the fallback)
# attributes importlib gives every module, whatever its code defines
MODULE_ATTRS = frozenset({"__doc__", "__name__", "__file__", "__loader__", "__package__", "__spec__",
                          "__dict__"})


def accelerators_load(ctx: AnalysisContext, env: PythonEnv, imports: tuple[str, ...],
                      search: list[str]) -> str:
    """Why the try body importing `imports` ("mod" / "mod:name,…") cannot fail, or "" when
    that is not proven (module docstring). Memoized per interpreter and body."""
    memo = ctx.service(PythonState).accelerators
    key = (env.real, imports, tuple(search))
    if key not in memo:
        memo[key] = _prove(ctx, env, imports, search)
    return memo[key]


def _prove(ctx: AnalysisContext, env: PythonEnv, imports: tuple[str, ...], search: list[str]) -> str:
    loaded: list[str] = []
    for item in imports:
        module, _, names = item.partition(":")
        chain = resolve_module(ctx, env, module, search)
        if not chain or len(chain) != 1 or chain[0].kind != "extension" or not chain[0].path:
            return ""
        path = chain[0].path
        if not _libraries_found(ctx, env, path):
            return ""
        wanted = [n for n in names.split(",") if n and n != "*" and n not in MODULE_ATTRS]
        if wanted and not _names_written(ctx, path, wanted):
            return ""
        loaded.append(path)
    return "its try imports only extension modules that load: " + ", ".join(dict.fromkeys(loaded))


def _libraries_found(ctx: AnalysisContext, env: PythonEnv, path: str) -> bool:
    """Whether the object at `path` and every library it needs, transitively, are found by
    the loader of the interpreter's process."""
    resolver = ctx.service(Loader).resolver
    try:
        root = resolver.elf(path)
        chain: tuple[ElfInfo, ...] = (resolver.elf(env.real),)
    except SlimError:
        return False
    if root.etype != "DYN":
        return False
    todo, seen = [(root, chain)], {root.path}
    while todo:
        obj, loaders = todo.pop()
        for name in obj.needed:
            res = resolver.resolve(name, obj, loaders)
            if res.path is None:
                return False
            if res.path in seen:
                continue
            seen.add(res.path)
            if len(seen) > MAX_LIBRARIES:
                return False
            try:
                todo.append((resolver.elf(res.path), (obj, *loaders)))
            except SlimError:
                return False
    return True


def _names_written(ctx: AnalysisContext, path: str, names: list[str]) -> bool:
    """Whether every name is a whole NUL-terminated string of the object (a name merged into
    the tail of a longer string is not found: the fallback is then kept)."""
    entry = ctx.fs.stat(path)
    if entry is None or entry.size > MAX_OBJECT:
        return False
    try:
        data = ctx.fs.read(path, MAX_OBJECT)
    except (SlimError, OSError) as exc:
        log.debug("%s: not read for its names: %s", path, exc)
        return False
    return all(b"\x00" + n.encode() + b"\x00" in data for n in names)
