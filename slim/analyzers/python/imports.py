"""Python imports: the import statements of a source (AST) and the edges they make.

Imports are found with `ast` (every Import/ImportFrom anywhere, function bodies included, plus
`importlib.import_module("lit")` and `__import__("lit")`) and resolved on the interpreter's
sys.path (slim.analyzers.python.resolver). Parent packages' `__init__.py` come along, and
`__pycache__/<mod>.cpython-3XY.pyc` is kept with its source (importlib validates caches by
stat-ing the source, PEP 3147). For every imported distribution its non-code files are kept
(RECORD of its `.dist-info`, else the package directory): templates, JSON, `cacert.pem`. The
interpreter's own startup imports and a command line's script, `-m module` or `-c code` are the
roots.
"""

from __future__ import annotations

import ast
import io
import logging
import posixpath
import re
import tokenize
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from slim.analyzers.base import AnalysisContext, Declined, Parses, link_edges
from slim.analyzers.python import dynamic
from slim.analyzers.python.absent import DeadImport, dead_after, dead_spans
from slim.analyzers.python.accelerators import accelerators_load
from slim.analyzers.python.deadcode import dead_functions
from slim.analyzers.python.django import (
    DjangoState,
    is_django_catalog,
    is_load_backend,
    uninstalled_app_file,
)
from slim.analyzers.python.dynamic import (
    _prose_blanked,
    computed_import_edges,
    quoted_dotted_names,
    unread_sources,
)
from slim.analyzers.python.env import (
    _INTERP_RE,
    PythonEnv,
    PythonState,
    _package_dir_of,
    python_env,
)
from slim.analyzers.python.resolver import (
    FOREIGN_MODULES,
    ModuleHit,
    _find_in_dirs,
    resolve_module,
    resolve_vendored,
)
from slim.analyzers.python.segments import import_tree
from slim.errors import SlimError
from slim.model import ROOT, Edge, Unknown, normpath, under

log = logging.getLogger(__name__)

# What `python3 -I -X importtime -c pass` imports on CPython 3.11 before user code (measured on
# the host's 3.11.7; the list is the same for python.org and Debian builds). `os` doubles as the
# prefix landmark Modules/getpath.py looks for; `encodings` is kept whole because the codec for
# any locale or `open(encoding=…)` is imported lazily by name.
STARTUP_MODULES = (
    "encodings", "encodings.aliases", "encodings.utf_8", "codecs", "abc", "io", "stat",
    "_collections_abc", "genericpath", "posixpath", "os", "_sitebuiltins", "site",
    "sitecustomize", "usercustomize", "zipimport", "importlib._bootstrap",
    "importlib._bootstrap_external", "runpy",
)


# -- AST scanning --------------------------------------------------------------------------
@dataclass(frozen=True)
class ImportRef:
    """One import statement's target: dotted name, relative level, names imported from it."""

    module: str
    level: int
    line: int
    names: tuple[str, ...] = ()
    guarded: bool = False  # inside try/except ImportError (an optional dependency)
    dynamic: str = ""  # non-empty: a dynamic import we could not read (reason)
    main_only: bool = False  # under `if __name__ == "__main__":` (runs only as a script)
    prefix: str = ""  # a computed name's literal dotted package prefix (f"pkg.sub.{x}" → pkg.sub)
    attr_gate: tuple[str, ...] = ()  # runs in the module's __getattr__ only for these names (PEP 562)
    # the last line of the block the statement is in: when it fails, nothing after it up to
    # there runs (absent.py)
    block_end: int = 0
    # in an `except ImportError:` handler whose try only imports these top-level modules
    # ("mod", or "mod:name,name" for `from mod import name, name`): it runs only when one of
    # them fails to import (accelerators.py)
    fallback_for: tuple[str, ...] = ()
    # guarded, and no handler of the guard raises or exits: the code goes on without the module
    degrades: bool = False


_GUARD_NAMES = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


def _is_import_guard(node: ast.Try) -> bool:
    for h in node.handlers:
        if h.type is None:
            return True
        types = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
        for t in types:
            if isinstance(t, ast.Name) and t.id in _GUARD_NAMES:
                return True
            if isinstance(t, ast.Attribute) and t.attr in _GUARD_NAMES:
                return True
    return False


_EXITS = frozenset({"exit", "_exit", "quit", "abort"})


def _handlers_go_on(node: ast.Try) -> bool:
    """Whether no handler of a try raises or exits (sys.exit, os._exit, os.abort, quit)."""
    for h in node.handlers:
        for sub in ast.walk(h):
            if isinstance(sub, ast.Raise):
                return False
            if isinstance(sub, ast.Call):
                f = sub.func
                name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
                if name in _EXITS:
                    return False
    return True


def _platform_value(node: ast.AST) -> str | None:
    """The value of `sys.platform` / `os.name` on Linux when `node` names one of them."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        if (node.value.id, node.attr) == ("sys", "platform"):
            return "linux"
        if (node.value.id, node.attr) == ("os", "name"):
            return "posix"
    return None


def static_condition(test: ast.AST) -> bool | None:
    """Evaluate an `if` test that is decided on Linux before running: platform checks,
    `TYPE_CHECKING` (False at run time), `__name__ == "__main__"` is handled by the caller."""
    if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
        return False
    if isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING":
        return False
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = static_condition(test.operand)
        return None if inner is None else not inner
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.comparators[0], ast.Constant):
        value = _platform_value(test.left)
        const = test.comparators[0].value
        if value is not None and isinstance(const, str):
            if isinstance(test.ops[0], ast.Eq):
                return value == const
            if isinstance(test.ops[0], ast.NotEq):
                return value != const
    if isinstance(test, ast.Call) and isinstance(test.func, ast.Attribute) and test.func.attr == "startswith" \
            and test.args and isinstance(test.args[0], ast.Constant) and isinstance(test.args[0].value, str):
        value = _platform_value(test.func.value)
        if value is not None:
            return value.startswith(test.args[0].value)
    return None


def _is_main_guard(test: ast.AST) -> bool:
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and len(test.comparators) == 1 and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__" and isinstance(test.ops[0], ast.Eq))


def literal_prefix(node: ast.AST | None) -> str:
    """The dotted package a computed module name starts with: `f"pkg.sub.{x}"`, `"pkg.sub." +
    x`, `"pkg.sub.%s" % x` and `"pkg.sub.{}".format(x)` give "pkg.sub"; "" when unknown or
    relative (a leading '.')."""
    text = ""
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        text = str(node.values[0].value)
    elif isinstance(node, ast.BinOp) and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
        text = node.left.value.split("%", 1)[0] if isinstance(node.op, ast.Mod) else node.left.value
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return literal_prefix(node.left)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format" \
            and isinstance(node.func.value, ast.Constant) and isinstance(node.func.value.value, str):
        text = node.func.value.value.split("{", 1)[0]
    package = text.rpartition(".")[0]
    return package if package and not package.startswith(".") and all(
        p.isidentifier() for p in package.split(".")) else ""


def _attr_test(test: ast.AST, arg: str) -> tuple[str, ...]:
    """The attribute names `if name == "x":` / `if name in ("x", "y"):` selects, for the
    argument `arg` of a module's `__getattr__`; () for any other test."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and len(test.comparators) == 1):
        return ()
    left, op, right = test.left, test.ops[0], test.comparators[0]
    if isinstance(op, ast.Eq) and isinstance(right, ast.Name) and right.id == arg:
        left, right = right, left
    if not (isinstance(left, ast.Name) and left.id == arg):
        return ()
    if isinstance(op, ast.Eq) and isinstance(right, ast.Constant) and isinstance(right.value, str):
        return (right.value,)
    if isinstance(op, ast.In) and isinstance(right, (ast.Tuple, ast.List, ast.Set)):
        names = [e.value for e in right.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        return tuple(names) if len(names) == len(right.elts) else ()
    return ()


def _getattr_gates(tree: ast.AST) -> dict[int, tuple[str, ...]]:
    """id(If) → attribute names, for the `if name == "x":` tests inside a module-level
    `def __getattr__(name)` (PEP 562 lazy attributes: numpy.testing, concurrent.futures'
    ProcessPoolExecutor): what their bodies import is imported only when code asks the module
    for that attribute."""
    if not isinstance(tree, ast.Module):
        return {}
    out: dict[int, tuple[str, ...]] = {}
    todo: list[ast.stmt] = list(tree.body)
    while todo:  # module level, through if/else, try and with blocks (numpy defines it in an else:)
        node = todo.pop()
        if isinstance(node, ast.FunctionDef):
            if node.name == "__getattr__" and node.args.args:
                arg = node.args.args[0].arg
                out.update((id(n), names) for n in ast.walk(node)
                           if isinstance(n, ast.If) and (names := _attr_test(n.test, arg)))
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for part in ("body", "orelse", "finalbody"):
                todo.extend(getattr(node, part, ()))
            for handler in getattr(node, "handlers", ()):
                todo.extend(handler.body)
    return out


def _block_ends(tree: ast.AST, module_end: int = 0) -> dict[int, int]:
    """id(import statement) → the last line of the block it is in. Python runs a block's
    statements in order and leaves it at the first exception, so when the import fails no
    line after it up to there runs: not the rest of its block, nor what the block's later
    statements hold (a `def` after it is never executed, so neither is its body).
    `module_end`, when given, is the module's last line (a tree of only some of its top-level
    statements, segments.py)."""
    out: dict[int, int] = {}

    def block(stmts: list[ast.stmt], end: int = 0) -> None:
        end = end or getattr(stmts[-1], "end_lineno", None) or stmts[-1].lineno
        for st in stmts:
            if isinstance(st, ast.Import | ast.ImportFrom):
                out[id(st)] = end
                continue
            for name in ("body", "orelse", "finalbody"):
                sub = getattr(st, name, None)
                if isinstance(sub, list) and sub and isinstance(sub[0], ast.stmt):
                    block(sub)
            for part in (*getattr(st, "handlers", ()), *getattr(st, "cases", ())):
                if part.body:
                    block(part.body)

    if isinstance(tree, ast.Module) and tree.body:
        block(tree.body, module_end)
    return out


def _plain_imports(body: list[ast.stmt]) -> tuple[str, ...]:
    """What a try body imports when it does nothing but import top-level modules by absolute
    name ("mod" or "mod:name,name"); () for any other body. Only such a body can be proven
    not to fail (accelerators.py), and then its except handler never runs."""
    out: list[str] = []
    for stmt in body:
        if isinstance(stmt, ast.Import) and all("." not in a.name for a in stmt.names):
            out += [a.name for a in stmt.names]
        elif isinstance(stmt, ast.ImportFrom) and not stmt.level and stmt.module and "." not in stmt.module:
            out.append(f"{stmt.module}:{','.join(a.name for a in stmt.names)}")
        else:
            return ()
    return tuple(out)


def _block_fields() -> dict[type, tuple[str, ...]]:
    """Per AST node class, its fields that hold statements, except handlers or match cases
    (in field order: the order ast.iter_child_nodes visits them)."""
    out: dict[type, tuple[str, ...]] = {}
    for cls in (ast.Module, ast.Interactive, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                ast.For, ast.AsyncFor, ast.While, ast.If, ast.With, ast.AsyncWith, ast.Match,
                ast.Try, getattr(ast, "TryStar", ast.Try), ast.ExceptHandler, ast.match_case):
        out[cls] = tuple(f for f in cls._fields if f in ("body", "orelse", "finalbody", "handlers", "cases"))
    return out


_BLOCK_FIELDS = _block_fields()


def scan_imports(tree: ast.AST, calls: bool = True, module_end: int = 0) -> list[ImportRef]:
    """Every import in a module: statements anywhere, importlib/`__import__` calls.

    Branches decided on Linux are pruned (`if sys.platform == "win32":`, `if os.name == "nt":`,
    `if TYPE_CHECKING:`); imports under `if __name__ == "__main__":`, and in the private
    functions only that block calls (deadcode.py), are marked `main_only`. Imports under an
    `if name == "x":` of a module-level `__getattr__` carry `attr_gate` (see _getattr_gates).
    With `calls=False` (the source never names `import_module` or `__import__`) expressions are
    not walked: import statements only live in statement bodies, which is most of the speed.
    `module_end`: the module's last line when `tree` holds only some of its top-level
    statements (segments.import_tree).
    """
    out: list[ImportRef] = []
    dead = dead_functions(tree, _is_main_guard)
    block_ends = _block_ends(tree, module_end)
    gates = _getattr_gates(tree)
    gate: tuple[str, ...] = ()
    fallback: tuple[str, ...] = ()
    degrades = False

    def visit(node: ast.AST, guarded: bool, main_only: bool) -> None:
        nonlocal gate, fallback, degrades
        if dead and id(node) in dead:  # only the __main__ block calls it (deadcode.py)
            main_only = True
        if isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            g = _is_import_guard(node)  # type: ignore[arg-type]
            outer_degrades = degrades
            if g:
                degrades = _handlers_go_on(node)  # type: ignore[arg-type]
            for child in node.body:  # type: ignore[attr-defined]
                visit(child, guarded or g, main_only)
            degrades = outer_degrades
            # an `except ImportError:` handler is the fallback of the try's imports (Python 2
            # names, optional accelerators): it runs only when they fail, so its own imports
            # are optional too
            outer_fallback = fallback
            fallback = (_plain_imports(node.body) if g else ()) or fallback  # type: ignore[attr-defined]
            for handler in node.handlers:  # type: ignore[attr-defined]
                for child in handler.body:
                    visit(child, guarded or g, main_only)
            fallback = outer_fallback
            for part in (node.orelse, node.finalbody):  # type: ignore[attr-defined]
                for child in part:
                    visit(child, guarded, main_only)
            return
        if isinstance(node, ast.If):
            decided = static_condition(node.test)
            is_main = _is_main_guard(node.test)
            if calls:
                visit(node.test, guarded, main_only)
            if decided is not False:
                outer = gate
                gate = gates.get(id(node), gate)
                for child in node.body:
                    visit(child, guarded, main_only or is_main)
                gate = outer
            if decided is not True:
                for child in node.orelse:
                    visit(child, guarded, main_only)
            return
        if isinstance(node, ast.Import):
            for a in node.names:
                out.append(ImportRef(a.name, 0, node.lineno, (), guarded, main_only=main_only, attr_gate=gate,
                                     block_end=block_ends.get(id(node), 0), fallback_for=fallback, degrades=degrades))
        elif isinstance(node, ast.ImportFrom):
            out.append(ImportRef(node.module or "", node.level, node.lineno,
                                 tuple(a.name for a in node.names), guarded, main_only=main_only,
                                 attr_gate=gate, block_end=block_ends.get(id(node), 0), fallback_for=fallback, degrades=degrades))
        elif isinstance(node, ast.Call):
            f = node.func
            fname = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if fname in ("import_module", "__import__"):
                arg = node.args[0] if node.args else None
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    lit = arg.value
                    if lit.startswith("."):
                        out.append(ImportRef(lit, 0, node.lineno, (), guarded,
                                             dynamic=f"relative {fname}({lit!r})", main_only=main_only))
                    else:
                        out.append(ImportRef(lit, 0, node.lineno, (), guarded, main_only=main_only))
                else:
                    out.append(ImportRef("", 0, node.lineno, (), guarded,
                                         dynamic=f"{fname}() with a non-literal name", main_only=main_only,
                                         prefix=literal_prefix(arg)))
        outer_degrades = degrades
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            degrades = False  # its body runs when called, outside the try around the def
        if calls:
            for child in ast.iter_child_nodes(node):
                visit(child, guarded, main_only)
        else:  # statements live only in these fields (expressions hold none: a lambda's is one)
            for name in _BLOCK_FIELDS.get(type(node), ()):
                for child in getattr(node, name):
                    visit(child, guarded, main_only)
        degrades = outer_degrades

    visit(tree, False, False)
    return out


MAX_PARSE_TOKENS = 200_000  # the largest real modules measured have ~65k (mypy/checker.py)


_TOKEN_PIECES = re.compile(r"\w+|[^\w\s]")


def _more_tokens_than(source: str, limit: int) -> bool:
    """Whether `source` has more than `limit` tokens (the tokenize module: linear, constant
    memory, stops at the limit). A source it cannot tokenize is left to ast.parse.

    A bound in C comes first, and most large modules stay under it: every token but a line's
    NEWLINE (or NL), INDENT and DEDENTs (no more DEDENTs than INDENTs in all) holds a run of
    word characters or another visible character of its own, and one run holds at most two
    (`1if`: a number, then a name). tokenize, in Python, costs 30 times as much."""
    if 2 * len(_TOKEN_PIECES.findall(source)) + 3 * (source.count("\n") + 1) + 1 <= limit:
        return False
    count = 0
    try:
        for _ in tokenize.generate_tokens(io.StringIO(source).readline):
            count += 1
            if count > limit:
                return True
    except (tokenize.TokenError, SyntaxError, ValueError, RecursionError):
        return False
    return False


# -- edges ---------------------------------------------------------------------------------
# Standard-library modules CPython 3.11+ freezes into the interpreter (Tools/build/
# freeze_modules.py): imported from the frozen code, never from their bytecode cache. Without
# frozen modules (`-X frozen_modules=off`, a build directory) a missing cache is compiled from
# the source, which is kept.
FROZEN_STDLIB = frozenset({
    "abc", "codecs", "io", "_collections_abc", "_sitebuiltins", "genericpath", "ntpath", "posixpath",
    "os", "site", "stat", "runpy", "zipimport", "importlib.util", "importlib.machinery",
    "importlib._bootstrap", "importlib._bootstrap_external",
})


def _frozen(env: PythonEnv | None, d: str, stem: str) -> bool:
    if env is None or env.version < (3, 11) or not under(d, env.stdlib):
        return False
    rel = d[len(env.stdlib):].strip("/").replace("/", ".")
    return (f"{rel}.{stem}" if rel else stem) in FROZEN_STDLIB


def _pycache_edges(ctx: AnalysisContext, env: PythonEnv | None, src: str) -> list[Edge]:
    """`dir/mod.py` → `dir/__pycache__/mod.<tag>.pyc` (PEP 3147), kept with its source (not
    for a module the interpreter has frozen: FROZEN_STDLIB)."""
    if not src.endswith(".py"):
        return []
    d, base = posixpath.split(src)
    stem = base[:-3]
    if _frozen(env, d, stem):
        return []
    out: list[Edge] = []
    tags = [env.cache_tag] if env else []
    names = ctx.fs.listdir(posixpath.join(d, "__pycache__"))
    for n in names:
        if n.startswith(stem + ".") and n.endswith(".pyc") and (not tags or n.split(".")[1] in tags):
            out.append(Edge(src, posixpath.join(d, "__pycache__", n), "import", "bytecode cache of the source (PEP 3147)"))
    return out


def _hit_edges(ctx: AnalysisContext, src: str, chain: list[ModuleHit], evidence: str) -> list[Edge]:
    out: list[Edge] = []
    for hit in chain:
        if hit.path:
            out.extend(link_edges(ctx, src, hit.path, "import", evidence))
    return out


def _dist_index(ctx: AnalysisContext, site: str) -> dict[str, tuple[str, list[str]]]:
    """Per site dir: top-level name → (dist-info or egg-info dir, files of the distribution:
    RECORD's, or for an egg-info its metadata and package directories)."""
    dists = ctx.service(PythonState).dists
    if site in dists:
        return dists[site]
    index: dict[str, tuple[str, list[str]]] = {}
    for name in sorted(ctx.fs.listdir(site)):
        if name.endswith(".egg-info"):
            for top, egg_files in _egg_info(ctx, site, name).items():
                index.setdefault(top, (posixpath.join(site, name), egg_files))
            continue
        if not name.endswith(".dist-info"):
            continue
        info = posixpath.join(site, name)
        record = posixpath.join(info, "RECORD")
        files: list[str] = []
        if ctx.fs.is_file(record):
            try:
                for line in ctx.fs.read_text(record).splitlines():
                    rel = line.rsplit(",", 2)[0].strip().strip('"') if line.count(",") >= 2 else line.strip()
                    if rel and not rel.startswith(("..", "/")):
                        files.append(normpath(posixpath.join(site, rel)))
            except (SlimError, OSError) as exc:
                log.debug("%s: unreadable RECORD: %s", record, exc)
        files += [posixpath.join(info, f) for f in ctx.fs.listdir(info)]
        for f in files:
            if under(f, site) and f != site:
                top = f[len(site) + 1:].split("/")[0]
                if top.endswith(".py"):
                    top = top[:-3]
                elif ".cpython-" in top or top.endswith(".so"):
                    top = top.split(".")[0]
                index.setdefault(top, (info, files))
    dists[site] = index
    return index


def _egg_info(ctx: AnalysisContext, site: str, name: str) -> dict[str, list[str]]:
    """Top-level name → files of an `.egg-info` distribution (setuptools; Debian's python3-*
    packages ship these): no RECORD, so the metadata plus every file of each package that
    `top_level.txt` names. importlib.metadata reads the metadata at run time (version(),
    entry points), so it goes wherever the package goes."""
    info = posixpath.join(site, name)
    meta = [posixpath.join(info, f) for f in ctx.fs.listdir(info)] if ctx.fs.is_dir(info) else [info]
    tops: list[str] = []
    top_level = posixpath.join(info, "top_level.txt")
    if ctx.fs.is_file(top_level):
        try:
            tops = [t.strip() for t in ctx.fs.read_text(top_level).splitlines() if t.strip()]
        except (SlimError, OSError) as exc:
            log.debug("%s: %s", top_level, exc)
    if not tops:
        tops = [name.split("-", 1)[0].removesuffix(".egg-info")]
    out: dict[str, list[str]] = {}
    for top in tops:
        pkg = posixpath.join(site, top)
        out[top] = meta + ([e.path for e in ctx.files_under(pkg)] if ctx.fs.is_dir(pkg) else [])
    return out


_CODE_SUFFIXES = (".py", ".pyc", ".pyi")
# Not package data at run time: gettext (Lib/gettext.py find()/translation()) and Django's
# DjangoTranslation load compiled `.mo` catalogs only; `.po`/`.pot` sources are read by the
# message tools (msgfmt, makemessages/compilemessages, Babel), not by the app.
_NOT_DATA_SUFFIXES = (*_CODE_SUFFIXES, ".po", ".pot")


# Directories holding a package's test suite: their data is read by their test modules
_TEST_DIRS = frozenset({"tests", "test"})


def _test_root(site: str, path: str) -> str:
    """The test-suite directory below a top-level package that `path` is in
    (`…/numpy/_core/tests` for `…/numpy/_core/tests/data/x.csv`), or ""."""
    if not under(path, site) or path == site:
        return ""
    parts = path[len(site) + 1:].split("/")
    for i in range(1, len(parts) - 1):
        if parts[i] in _TEST_DIRS:
            return posixpath.join(site, *parts[:i + 1])
    return ""


def package_data_edges(ctx: AnalysisContext, env: PythonEnv, path: str) -> list[Edge]:
    """Non-code files of the distribution (or package directory) that `path` belongs to.

    Files inside a test-suite directory of the package (`numpy/_core/tests/data/*.csv`, 1.4 MB
    in numpy) come only with a kept module of that directory: test data is read by the tests,
    which find it next to themselves (`os.path.dirname(__file__)`)."""
    loc = _package_dir_of(env, path)
    if loc is None:
        return []
    site, top = loc
    done = ctx.service(PythonState).pkgdata_done
    scopes = {s for s in ("", _test_root(site, path)) if (site, top, s) not in done}
    if not scopes:
        return []
    done.update((site, top, s) for s in scopes)
    dist = _dist_index(ctx, site).get(top) if site in env.site_dirs else None
    django = None
    if dist is not None:
        info, files = dist
        ev = f"package data of {posixpath.basename(info)} (RECORD)"
        # a distribution with several top-level packages (setuptools: setuptools, pkg_resources,
        # _distutils_hack): the data of the one imported, its metadata, files beside no package
        own = posixpath.join(site, top) + "/"

        def ours(f: str) -> bool:
            rel = f[len(site) + 1:] if under(f, site) else ""
            return "/" not in rel or f.startswith(own) or under(f, info)

        candidates = [f for f in sorted(set(files)) if ours(f)]
        django = ctx.service(DjangoState).settings if top == "django" else None
    else:
        pkg_dir = posixpath.join(site, top)
        if not ctx.fs.is_dir(pkg_dir):
            return []
        ev = f"package data in {pkg_dir}"
        candidates = [e.path for e in ctx.files_under(pkg_dir)]
    i18n_off = f"USE_I18N = False in {', '.join(django.modules)}" if django and django.i18n_off else ""
    apps = django.apps if django is not None else None
    declined = ctx.service(Declined)
    out: list[Edge] = []
    for f in candidates:
        if f.endswith(_NOT_DATA_SUFFIXES) or "/__pycache__/" in f:
            continue
        test_root = _test_root(site, f)
        if test_root not in scopes:
            if test_root and "" in scopes:
                declined.add(path, f, f"{ev}: test data of {test_root}, kept only with a module of it")
            continue
        if i18n_off and is_django_catalog(site, top, f):
            declined.add(path, f, f"{ev}: {i18n_off}")
            continue
        app = uninstalled_app_file(site, top, f, apps) if apps is not None else ""
        if app:
            declined.add(path, f, f"{ev}: {app} is not in INSTALLED_APPS")
            continue
        if dist is None or ctx.fs.is_file(f):  # a RECORD may list files the image lacks
            out.append(Edge(path, f, "package", ev))
    return out


def startup_edges(ctx: AnalysisContext, env: PythonEnv) -> list[Edge]:
    """What the interpreter itself loads before user code (see STARTUP_MODULES), .pth files."""
    src = env.real
    out: list[Edge] = list(env.extra_edges)
    for mod in STARTUP_MODULES:
        chain = resolve_module(ctx, env, mod)
        if chain:
            out.extend(_hit_edges(ctx, src, chain, f"interpreter startup imports {mod}"))
            for hit in chain:
                # the bytecode cache sits beside the name imported, not beside a symlink's
                # target (Debian's sitecustomize.py links to /etc/python3.11)
                if hit.path:
                    out.extend(Edge(src, e.dst, e.kind, e.evidence) for e in _pycache_edges(ctx, env, hit.path))
    for d in env.site_dirs:
        # Lib/site.py stats each site directory and adds the ones that exist to sys.path
        out.append(Edge(src, d, "import", "site directory: Lib/site.py adds it when it exists"))
    enc = posixpath.join(env.stdlib, "encodings")
    for e in ctx.files_under(enc):
        if e.path.endswith(".py"):
            out.append(Edge(src, e.path, "import", "interpreter startup: encodings (codecs load lazily by name)"))
    # lib-dynload holds the stdlib's extension modules; the directory must exist (getpath.py).
    for p in env.pth_files:
        out.append(Edge(src, p, "import", "site .pth file processed at startup (Lib/site.py)"))
        try:
            text = ctx.fs.read_text(p)
        except (SlimError, OSError):
            continue
        for line in text.splitlines():
            if line.startswith(("import ", "import\t")):
                # Lib/site.py addpackage exec()s the line: follow its literal imports
                for item in import_edges(ctx, env, p, line):
                    if isinstance(item, Edge):
                        out.append(item)
    # the startup set (all of encodings/ among it) is reached by no import: parse it ahead here
    scan_ahead(ctx, env, [e.dst for e in out if e.dst.endswith(".py")])
    return [e for e in out if e.src != e.dst]


def _scan_version() -> str:
    """A digest of the code that turns a source into ImportRefs (this module, deadcode.py and
    segments.py): a cached scan is reused only by the very code that made it."""
    global _SCAN_VERSION
    if not _SCAN_VERSION:
        import hashlib
        import inspect
        import sys

        from slim.analyzers.python import deadcode, segments

        text = "".join(inspect.getsource(m) for m in (sys.modules[__name__], deadcode, segments, dynamic))
        _SCAN_VERSION = hashlib.sha256(text.encode()).hexdigest()[:16]
    return _SCAN_VERSION


_SCAN_VERSION = ""


def _scan(source: str, path: str, version: tuple[int, int]) -> tuple[str, object]:
    """("refs", {"refs": [ImportRef as dict …], "dotted": quoted_dotted_names}) or ("unknown",
    why): the cacheable part of a parse."""
    raw = source
    calls = "import_module" in source or "__import__" in source
    if len(source) > MAX_PARSE_TOKENS and _more_tokens_than(source, MAX_PARSE_TOKENS):
        return "unknown", (f"more than {MAX_PARSE_TOKENS} Python tokens: not parsed (a parse would "
                           "cost about 1 KB of memory per token); its imports are not analyzed")
    if source.startswith("\ufeff"):
        source = source[1:]  # a UTF-8 byte order mark, which Python's own decoding skips
    try:
        tree, module_end = import_tree(source, path, _is_main_guard)
        refs = scan_imports(tree, calls=calls, module_end=module_end)
    except (SyntaxError, ValueError) as exc:
        return "unknown", f"not parseable as Python {version[0]}.{version[1]}: {exc}"
    except (RecursionError, MemoryError):
        return "unknown", "nested too deeply to parse; its imports are not analyzed"
    # shallow: the fields are str, int, bool and tuples of str
    return "refs", {"refs": [dict(vars(r)) for r in refs], "dotted": quoted_dotted_names(raw)}


def _parse_kind(env: PythonEnv) -> str:
    import sys

    return (f"py-imports/{_scan_version()}/{sys.version_info[0]}.{sys.version_info[1]}/"
            f"{env.version[0]}.{env.version[1]}")


AHEAD_LIMIT = 1 << 20


def scan_ahead(ctx: AnalysisContext, env: PythonEnv, paths: Iterable[str]) -> None:
    """Start parsing the Python sources `paths` in a worker (Parses.ahead) before the
    worklist reaches them; each path once per run."""
    state = ctx.service(PythonState)
    calls = []
    for path in paths:
        if path in state.ahead or not path.endswith(".py"):
            continue
        state.ahead.add(path)
        entry = ctx.fs.stat(path)
        if entry is None or entry.size > AHEAD_LIMIT or not ctx.fs.has_content(path):
            continue  # a large source is parsed (or refused) when the worklist reaches it
        try:
            data = ctx.fs.read(path)
        except (SlimError, OSError):
            continue
        source = data.decode("utf-8", errors="replace")  # as PythonAnalyzer.analyze reads it
        calls.append((_parse_kind(env), source.encode("utf-8", "surrogatepass"), _scan,
                      (source, path, env.version)))
    if calls:
        ctx.service(Parses).ahead_many(calls)


def _decode_scan(v: Any) -> tuple[str, Any]:
    """A cached _scan result; ValueError for an entry of another shape (parsed again)."""
    what, value = str(v[0]), v[1]
    if what == "refs" and not (isinstance(value, dict) and isinstance(value.get("refs"), list)
                               and isinstance(value.get("dotted"), list)):
        raise ValueError("not a scan of this version")
    return what, value


def parsed_imports(ctx: AnalysisContext, env: PythonEnv, path: str, source: str) -> list[ImportRef] | Unknown:
    """The imports `source` names (scan_imports), or an Unknown when it cannot be parsed;
    from the parse cache when the same bytes were scanned before (slim.cache.ParseStore).

    A source with more than MAX_PARSE_TOKENS tokens, or nested deeper than the parser or
    the scan can recurse, is not parsed: an Unknown keeps it (its imports are not followed).
    ast.parse holds about 1 KB per token, so 1 MB of `a\n` lines cost 930 MB of RSS.
    """
    kind = _parse_kind(env)
    what, value = ctx.service(Parses).memo(
        kind, source.encode("utf-8", "surrogatepass"), lambda: _scan(source, path, env.version),
        encode=list, decode=_decode_scan)
    if what == "unknown":
        return Unknown(path, str(value))
    assert isinstance(value, dict)
    ctx.service(PythonState).dotted = (source, list(value["dotted"]))
    return [ImportRef(**{**r, "names": tuple(r["names"]), "attr_gate": tuple(r.get("attr_gate", ())),
                         "block_end": int(r.get("block_end", 0)),
                         "fallback_for": tuple(r.get("fallback_for", ())),
                         "degrades": bool(r.get("degrades", False))})
            for r in value["refs"]]


def import_edges(ctx: AnalysisContext, env: PythonEnv, path: str, source: str,
                 extra_dirs: Iterable[str] = ()) -> list[Edge | Unknown]:
    """Edges from one Python source file to the modules it imports (and Unknowns). The edges
    of an import a module's `__getattr__` makes only for some attribute names are held back
    in PythonState.lazy (see lazy_import_edges)."""
    parsed = parsed_imports(ctx, env, path, source)
    if isinstance(parsed, Unknown):
        return [parsed]
    state = ctx.service(PythonState)
    site = _Site(
        path=path, in_stdlib=under(path, env.stdlib),
        search=list(dict.fromkeys([*extra_dirs, *env.sys_path])),
        # A file outside sys.path (the application's) may be the __main__ script even when the
        # roots were computed in another context: its `if __name__ == "__main__":` imports count.
        maybe_main=path in state.main_scripts or path == "<root>" or _package_dir_of(env, path) is None)
    out: list[Edge | Unknown] = []
    spans = dead_spans(ctx, env, path, parsed)
    for ref in parsed:
        missing = dead_after(ref.line, spans)
        if missing:
            held: list[Edge | Unknown] = []
            _one_import(ctx, env, site, ref, held)
            _record_declined(ctx, path, held, f"{path}:{ref.line}: runs only after `import {missing}`, "
                                              "which this image cannot provide")
            state.dead.append(DeadImport(path, ref.line, missing, tuple(e for e in held if isinstance(e, Edge)),
                                         tuple(u for u in held if isinstance(u, Unknown))))
            continue
        if ref.attr_gate:
            held = []
            _one_import(ctx, env, site, ref, held)
            edges = tuple(e for e in held if isinstance(e, Edge))
            if edges:
                state.lazy.append(LazyImport(path, ref.attr_gate, edges, _module_name(env, path)))
            continue
        _one_import(ctx, env, site, ref, out)
    scan_ahead(ctx, env, sorted({e.dst for e in out if isinstance(e, Edge)}))
    return out


@dataclass(frozen=True)
class _Site:
    """Where an import statement is: what decides how it resolves."""

    path: str
    in_stdlib: bool
    search: list[str]
    maybe_main: bool  # the file may run as __main__


# Modules that only serve a person typing at a terminal. Their importers guard the import and
# go on without them (site's interactive hook, pdb, cmd, code.interact, `flask shell`, Django's
# `shell`): input() then reads plain lines, with no editing, completion or history. An import
# that is not guarded, or whose handler raises or exits, is followed.
TERMINAL_ONLY = frozenset({"readline"})


def _runs_elsewhere(env: PythonEnv, path: str, top: str, module: str, guarded: bool) -> str:
    """Why `path`'s import of `module` runs only on a path a program does not take, so the
    edge is made elsewhere or not at all ("" when it may run):

    * setuptools' `_distutils_hack` imports setuptools/distutils from its finder (someone
      imports distutils: see _distutils_edges) or from do_override (setuptools imports it);
    * `help()` at the interactive prompt (Lib/_sitebuiltins.py's `_Helper`) imports pydoc,
      which brings pydoc_data (700 kB of topics), http.server, email …;
    * the stdlib imports CPython's regression-test package only in helpers its test suite
      calls (multiprocessing.util._cleanup_tests: `from test import support`, which imports
      distutils and so setuptools in a venv);
    * pydoc imports pydoc_data.topics (1.2 MB with its bytecode) only in `Helper`, for
      `help("keyword")` and `help("TOPIC")`, inside `try:` … `except ImportError:` that answers
      "documentation is not available" (`guarded`: a pydoc that imports it unguarded keeps it).

    The same import in any other file — the program's own `import pydoc` — is followed."""
    if posixpath.basename(posixpath.dirname(path)) == "_distutils_hack":
        return ("setuptools' distutils hack imports it when the program imports distutils"
                if top in ("setuptools", "distutils") else "")
    if not under(path, env.stdlib):
        return ""
    name = posixpath.basename(path)
    if name == "_sitebuiltins.py" and module == "pydoc":
        return "only help() at the interactive prompt imports it"
    if name == "pydoc.py" and guarded and top == "pydoc_data":
        return "only help('keyword') reads the topics, and says they are not available without them"
    if top == "test" and not under(path, posixpath.join(env.stdlib, "test")):
        return "only CPython's own test suite runs this import"
    return ""


def _decline(ctx: AnalysisContext, env: PythonEnv, site: _Site, ref: ImportRef, why: str) -> None:
    """Record the files `ref` would have kept (as if it were followed) as declined, with `why`."""
    held: list[Edge | Unknown] = []
    _one_import(ctx, env, site, replace(ref, fallback_for=(), degrades=False), held, declining=True)
    _record_declined(ctx, site.path, held, f"{site.path}:{ref.line}: import {ref.module or '.'}: {why}")


def _record_declined(ctx: AnalysisContext, src: str, held: Iterable[Edge | Unknown], why: str) -> None:
    """The targets of the edges `src` would have made, as declined for `why` (slim why)."""
    declined = ctx.service(Declined)
    for e in held:
        if isinstance(e, Edge):
            declined.add(src, e.dst, why)


def _django_backends(ctx: AnalysisContext, env: PythonEnv, path: str, line: int,
                     search: list[str]) -> list[Edge] | None:
    """The edges of Django's `load_backend` import when the settings prove its ENGINEs (the
    `base` module of each), else None (django.py)."""
    if not is_load_backend(ctx, path, line):
        return None
    django = ctx.service(DjangoState).settings
    if django is None or django.engines is None:
        return None
    out: list[Edge] = []
    for engine in django.engines:
        chain = resolve_module(ctx, env, f"{engine}.base", search)
        if not chain or not chain[-1].path or len(chain) != engine.count(".") + 2:
            return None  # a configured backend slim cannot find: keep what it kept before
        ev = (f"{path}:{line}: load_backend imports {engine}.base (DATABASES ENGINE in "
              f"{', '.join(django.modules)})")
        out.extend(_hit_edges(ctx, path, chain, ev))
    return out


def _one_import(ctx: AnalysisContext, env: PythonEnv, site: _Site, ref: ImportRef,
                out: list[Edge | Unknown], declining: bool = False) -> None:
    """The edges (and Unknowns) of one import statement, appended to `out`."""
    path, in_stdlib, search = site.path, site.in_stdlib, site.search
    where = f"{path}:{ref.line}"
    if ref.main_only and not site.maybe_main:
        return  # an imported module is never __main__ (its self-test block does not run)
    if ref.fallback_for:
        why = accelerators_load(ctx, env, ref.fallback_for, search)
        if why:
            _decline(ctx, env, site, ref, f"in an except ImportError handler that never runs ({why})")
            return
    if ref.dynamic:
        if in_stdlib:
            log.debug("%s: line %d: %s (stdlib machinery; not reported)", path, ref.line, ref.dynamic)
            return
        backends = _django_backends(ctx, env, path, ref.line, search)
        if backends is not None:
            out.extend(backends)
            return
        kept = computed_import_edges(ctx, env, path, ref.line, ref.dynamic, ref.prefix, search)
        out.extend(k for k in kept if isinstance(k, Edge) or not ref.guarded)
        return
    if ref.level:
        base = posixpath.dirname(path)
        for _ in range(ref.level - 1):
            base = posixpath.dirname(base)
        if ref.module:
            chain = resolve_module(ctx, env, ref.module, [base])
            targets = [(chain, ref.module)]
        else:
            chain = []
            targets = []
        for n in ref.names:
            sub = f"{ref.module}.{n}" if ref.module else n
            if n != "*":
                targets.append((resolve_module(ctx, env, sub, [base]), sub))
        init = posixpath.join(base, "__init__.py")
        if ctx.fs.is_file(init):
            out.append(Edge(path, init, "import", f"{where}: relative import's package"))
        for i, (ch, name) in enumerate(targets):
            if ch:
                out.extend(_hit_edges(ctx, path, ch, f"{where}: from {'.' * ref.level}{ref.module} import"))
            elif i == 0 and ref.module and not ref.guarded:
                out.append(Unknown(path, f"line {ref.line}: relative import {'.' * ref.level}{name} not found"))
        return
    top = ref.module.split(".")[0]
    if top in FOREIGN_MODULES or not ref.module:
        return
    elsewhere = "" if declining else _runs_elsewhere(env, path, top, ref.module, ref.guarded)
    if elsewhere:
        _decline(ctx, env, site, ref, elsewhere)
        return
    if ref.degrades and top in TERMINAL_ONLY:
        _decline(ctx, env, site, ref, f"{top} only serves a terminal, and the code goes on without it")
        return
    if top == "distutils":
        out.extend(_distutils_edges(ctx, env, path, ref.module, where))
    chain = resolve_module(ctx, env, ref.module, search) or resolve_vendored(ctx, env, ref.module, search)
    if chain is None:
        if not ref.guarded and not in_stdlib:
            out.append(Unknown(path, f"line {ref.line}: import {ref.module}: not found on sys.path"))
        return
    out.extend(_hit_edges(ctx, path, chain, f"{where}: import {ref.module}"))
    last = chain[-1]
    if last.kind in ("package", "namespace"):
        dirs = [posixpath.dirname(last.path)] if last.path else list(last.parents)
        for n in ref.names:
            if n == "*":
                continue
            sub_hit = _find_in_dirs(ctx, env, n, dirs)
            if sub_hit and sub_hit.path:
                out.extend(link_edges(ctx, path, sub_hit.path, "import", f"{where}: from {ref.module} import {n}"))
    if last.kind == "bytecode":
        out.append(Unknown(last.path or path, "sourceless module: its imports are not analyzed"))


@dataclass(frozen=True)
class LazyImport:
    """An import a module's `__getattr__` makes only when asked for one of `attrs` (PEP 562):
    its edges are added once kept code names one of them (lazy_import_edges)."""

    module_file: str
    attrs: tuple[str, ...]
    edges: tuple[Edge, ...]
    module: str = ""  # its dotted name: `from module import *` asks for every name in __all__


def _module_name(env: PythonEnv, path: str) -> str:
    """The dotted name `path` is imported as ("" outside sys.path)."""
    loc = _package_dir_of(env, path)
    if loc is None or not path.endswith(".py"):
        return ""
    rel = path[len(loc[0].rstrip("/")) + 1:-3].split("/")
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


def _uses_patterns(attrs: Iterable[str]) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """Code that can reach a lazy attribute: `mod.attr`, an import line naming it (`from mod
    import attr`, not `import x as attr`, which only binds a name), or `getattr(mod, "attr")`.
    A bare string is not enough: `'distutils' in sys.modules` asks no module for an attribute.
    Three patterns, each starting with a literal the regex engine searches for (one pattern
    of three alternatives tried at every position was 17 times slower on numpy's sources);
    the import pattern's word boundary before `import` is checked by the caller (_uses)."""
    alt = "|".join(sorted(re.escape(a) for a in attrs))
    return (re.compile(rf"\.\s*(?:{alt})\b"),
            re.compile(rf"import\b[^\n]*(?<!\bas )\b(?:{alt})\b"),
            re.compile(rf"""getattr\s*\([^,()]+,\s*['"](?:{alt})['"]"""))


def _uses(patterns: tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]], text: str) -> Iterator[re.Match[str]]:
    """The matches of _uses_patterns in `text` (possibly overlapping: every use is found)."""
    dotted, imports, getattrs = patterns
    yield from dotted.finditer(text)
    if "import" in text:
        pos = 0
        while (m := imports.search(text, pos)) is not None:
            before = text[m.start() - 1] if m.start() else ""
            if before.isalnum() or before == "_":  # `reimport`: not the keyword
                pos = m.start() + 1
                continue
            yield m
            pos = m.end()
    if "getattr" in text:
        yield from getattrs.finditer(text)


_WORD = re.compile(r"[A-Za-z_]\w*")


_STAR_IMPORT = re.compile(r"import[ \t]+\*")  # what every `from M import *` holds


def lazy_import_edges(ctx: AnalysisContext, kept: Iterable[str]) -> list[Edge]:
    """The held-back lazy imports (LazyImport) that kept code can now trigger: one of their
    attribute names appears, outside docstrings and comments, in a kept Python file other than
    the module itself. Called whenever the keep set stops growing, until it adds nothing, so
    the answer does not depend on the order files were visited; what no kept code names is not
    kept. Files are scanned once per set of attribute names."""
    state = ctx.service(PythonState)
    if not state.lazy:
        return []
    attrs = frozenset(a for lazy in state.lazy for a in lazy.attrs)
    modules = frozenset(lazy.module for lazy in state.lazy if lazy.module)
    if not (attrs <= state.lazy_attrs and modules <= state.lazy_modules):
        # new names: every file is scanned again for all of them
        state.lazy_attrs, state.lazy_modules = attrs | state.lazy_attrs, modules | state.lazy_modules
        state.lazy_scanned, state.lazy_users, state.lazy_star_users = set(), {}, {}
    attrs, modules = state.lazy_attrs, state.lazy_modules
    patterns = _uses_patterns(attrs)
    star = re.compile(r"^[ \t]*from[ \t]+(" + "|".join(sorted(re.escape(m) for m in modules)) +
                      r")[ \t]+import[ \t]+\*", re.M) if modules else None
    for path, text in unread_sources(ctx, kept, state.lazy_scanned):
        if "\r" in text:  # line numbers as the parser counts them (a lone CR ends a line)
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        # a line-anchored pattern is tried at every line; `import *` is searched for first
        if star is not None and "*" in text and _STAR_IMPORT.search(text):
            for m in star.finditer(text):
                state.lazy_star_users.setdefault(m.group(1), set()).add(path)
        if not any(a in text for a in attrs):
            continue  # most files: no name at all, not even in a docstring (a substring search)
        blanked = _prose_blanked(text)
        dead = state.dead_spans.get(path, ())
        for m in _uses(patterns, blanked):
            if dead and dead_after(blanked.count("\n", 0, m.start()) + 1, dead):
                continue  # code that never runs (absent.py) asks for nothing
            for word in _WORD.findall(m.group(0)):
                if word in attrs:
                    state.lazy_users.setdefault(word, set()).add(path)
    out: list[Edge] = []
    still: list[LazyImport] = []
    for lazy in state.lazy:
        named = sorted({u for a in lazy.attrs for u in state.lazy_users.get(a, ()) if u != lazy.module_file}
                       | state.lazy_star_users.get(lazy.module, set()))
        if not named:
            still.append(lazy)
            continue
        why = (f"{named[0]} names {'/'.join(lazy.attrs)}, which {lazy.module_file} imports lazily "
               "(PEP 562 __getattr__)")
        out.extend(Edge(e.src, e.dst, e.kind, f"{e.evidence}; {why}") for e in lazy.edges)
    state.lazy = still
    return out


def _distutils_edges(ctx: AnalysisContext, env: PythonEnv, path: str, module: str, where: str) -> list[Edge]:
    """setuptools' `distutils-precedence.pth` installs _distutils_hack, whose meta-path finder
    answers `import distutils` with `setuptools._distutils` (so all of setuptools' __init__
    runs). Its `import setuptools` executes only then, so the edge is made here, from the file
    that imports distutils, not from the hack: an app that never imports distutils keeps no
    setuptools. The stdlib's distutils stays kept as well (the hack falls back to it)."""
    if not any(posixpath.basename(p) == "distutils-precedence.pth" for p in env.pth_files):
        return []
    target = "setuptools._distutils" + module[len("distutils"):]
    chain = resolve_module(ctx, env, target)
    if not chain:
        return []
    return _hit_edges(ctx, path, chain, f"{where}: import {module}, served by {target} "
                                        "(_distutils_hack from distutils-precedence.pth)")


# -- roots ---------------------------------------------------------------------------------
# Interpreter options that take an argument (Modules/main.c, `python3 --help`).
_OPTS_WITH_ARG = {"-W", "-X", "--check-hash-based-pycs"}


def python_roots(ctx: AnalysisContext, argv: list[str]) -> list[Edge | Unknown]:
    """Edges from "<root>" for a Python command line: the script, `-m module` or `-c code`.

    `argv[0]` is the interpreter (a name is looked up on the image PATH). The interpreter's
    startup set comes along. Returns [] when argv is not a Python command line.
    """
    if not argv:
        return []
    interp = argv[0] if argv[0].startswith("/") else ctx.which(argv[0])
    if not interp or not (_INTERP_RE.match(posixpath.basename(ctx.fs.realpath(interp)))
                          or _INTERP_RE.match(posixpath.basename(interp))):
        return []
    env = python_env(ctx, interp)
    if env is None:
        return [Unknown(interp, "Python interpreter without a recognizable stdlib (lib/pythonX.Y/os.py)")]
    wd = ctx.config.workdir or "/"
    out: list[Edge | Unknown] = [*startup_edges(ctx, env), *env.unknowns]
    state = ctx.service(PythonState)
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "-m" and i + 1 < len(argv):
            mod = argv[i + 1]
            state.add_main_dir(wd)
            chain = resolve_module(ctx, env, mod, [wd, *env.sys_path])
            if chain is None:
                out.append(Unknown(interp, f"python -m {mod}: module not found on sys.path"))
                break
            out.extend(_hit_edges(ctx, ROOT, chain, f"python -m {mod}"))
            last = chain[-1]
            if last.kind in ("package", "namespace"):
                dirs = [posixpath.dirname(last.path)] if last.path else list(last.parents)
                main = _find_in_dirs(ctx, env, "__main__", dirs)
                if main and main.path:
                    state.main_scripts.add(main.path)
                    out.append(Edge(ROOT, main.path, "entrypoint", f"python -m {mod} runs {mod}.__main__"))
            elif last.path:
                state.main_scripts.add(last.path)
            break
        if a == "-c" and i + 1 < len(argv):
            state.add_main_dir(wd)
            for item in import_edges(ctx, env, "<root>", argv[i + 1], [wd]):
                out.append(item if isinstance(item, Edge) else Unknown(interp, f"python -c: {item.reason}"))
            break
        if a in _OPTS_WITH_ARG:
            i += 2
            continue
        if a.startswith("-") and a != "-":
            i += 1
            continue
        script = normpath(posixpath.join(wd, a))
        if ctx.fs.is_file(script):
            state.add_main_dir(posixpath.dirname(script))
            state.main_scripts.add(ctx.fs.realpath(script))
            out.extend(link_edges(ctx, ROOT, script, "entrypoint", f"python script {a}"))
        elif ctx.fs.is_dir(script):
            main_py = posixpath.join(script, "__main__.py")
            if ctx.fs.is_file(main_py):
                state.add_main_dir(script)
                state.main_scripts.add(main_py)
                out.append(Edge(ROOT, main_py, "entrypoint", f"python runs directory {a}"))
        else:
            out.append(Unknown(interp, f"python script {a}: not found in the image"))
        break
    return out


__all__ = ["STARTUP_MODULES", "ImportRef", "LazyImport", "import_edges", "lazy_import_edges", "package_data_edges", "python_roots",
           "scan_imports", "startup_edges", "static_condition"]
