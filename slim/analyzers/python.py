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
"""

from __future__ import annotations

import ast
import logging
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from slim.analyzers.app import link_edges, under, which
from slim.analyzers.base import AnalysisContext, Analyzer
from slim.errors import SlimError
from slim.model import ROOT, Edge, FileEntry, Unknown, normpath

log = logging.getLogger(__name__)

MAX_SOURCE = 8 << 20
_VERSION_RE = re.compile(r"python(\d)\.(\d+)$")
_INTERP_RE = re.compile(r"^python\d?(\.\d+)?[a-z]?$")

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


@dataclass(frozen=True)
class PythonEnv:
    """One interpreter of the image and the sys.path it computes."""

    interpreter: str  # the path as found (e.g. /usr/bin/python3)
    real: str  # symlinks resolved
    version: tuple[int, int]
    prefix: str
    stdlib: str
    sys_path: tuple[str, ...]
    site_dirs: tuple[str, ...]
    pth_files: tuple[str, ...] = ()
    unknowns: tuple[Unknown, ...] = ()
    extra_edges: tuple[Edge, ...] = field(default=())

    @property
    def ext_suffixes(self) -> tuple[str, ...]:
        """importlib.machinery.EXTENSION_SUFFIXES for Linux x86-64/aarch64 builds."""
        tag = f"cpython-{self.version[0]}{self.version[1]}"
        return (f".{tag}-x86_64-linux-gnu.so", f".{tag}-aarch64-linux-gnu.so",
                f".{tag}-x86_64-linux-musl.so", f".{tag}-aarch64-linux-musl.so", ".abi3.so", ".so")

    @property
    def cache_tag(self) -> str:
        return f"cpython-{self.version[0]}{self.version[1]}"


@dataclass(frozen=True)
class ModuleHit:
    """Where an import resolved: the file (None for a namespace package) and its packages."""

    name: str
    path: str | None
    kind: str  # "source" | "package" | "extension" | "bytecode" | "namespace" | "builtin"
    parents: tuple[str, ...] = ()  # __init__.py files of parent packages


# -- interpreter and sys.path --------------------------------------------------------------
def _version_of(ctx: AnalysisContext, real: str) -> tuple[int, int] | None:
    m = _VERSION_RE.search(posixpath.basename(real))
    if m:
        return int(m.group(1)), int(m.group(2))
    prefix = posixpath.dirname(posixpath.dirname(real))
    for d in ctx.fs.listdir(posixpath.join(prefix, "lib")):
        m = _VERSION_RE.search(d)
        if m and ctx.fs.is_file(posixpath.join(prefix, "lib", d, "os.py")):
            return int(m.group(1)), int(m.group(2))
    return None


def find_interpreter(ctx: AnalysisContext) -> str | None:
    """The image's default Python: `python3` then `python` on the image PATH."""
    for name in ("python3", "python"):
        p = which(ctx, name)
        if p:
            return p
    found = sorted(ctx.fs.glob("/usr/bin/python3.*") + ctx.fs.glob("/usr/local/bin/python3.*"))
    return next((p for p in found if _VERSION_RE.search(p)), None)


def python_env(ctx: AnalysisContext, interpreter: str | None = None) -> PythonEnv | None:
    """Compute (and memoize) the sys.path of `interpreter` (default: the image's python3)."""
    interpreter = interpreter or find_interpreter(ctx)
    if not interpreter:
        return None
    key = f"python.env:{interpreter}"
    if key in ctx.cache:
        return ctx.cache[key]
    env = _compute_env(ctx, interpreter)
    ctx.cache[key] = env
    return env


def _compute_env(ctx: AnalysisContext, interpreter: str) -> PythonEnv | None:
    fs = ctx.fs
    unknowns: list[Unknown] = []
    extra: list[Edge] = []
    # A venv: pyvenv.cfg beside the (unresolved) executable or one level up (Modules/getpath.py).
    venv = ""
    home = ""
    system_site = True
    bindir = posixpath.dirname(interpreter)
    for cand in (posixpath.join(bindir, "pyvenv.cfg"), posixpath.join(posixpath.dirname(bindir), "pyvenv.cfg")):
        if fs.is_file(cand):
            venv = posixpath.dirname(cand)
            extra.append(Edge(interpreter, cand, "interpreter", "venv configuration"))
            try:
                for line in fs.read_text(cand).splitlines():
                    k, _, v = line.partition("=")
                    k, v = k.strip(), v.strip()
                    if k == "home":
                        home = v
                    elif k == "include-system-site-packages":
                        system_site = v.lower() == "true"
            except (SlimError, OSError) as exc:
                unknowns.append(Unknown(cand, f"unreadable pyvenv.cfg: {exc}"))
            break
    real = fs.realpath(interpreter)
    if venv and home:
        base = fs.realpath(posixpath.join(normpath(home), posixpath.basename(interpreter)))
        if fs.is_file(base):
            real = base
    version = _version_of(ctx, real)
    if version is None:
        return None
    prefix = posixpath.dirname(posixpath.dirname(real))
    vx = f"python{version[0]}.{version[1]}"
    stdlib = posixpath.join(prefix, "lib", vx)
    env_vars = ctx.config.env_dict
    paths: list[str] = []
    wd = ctx.config.workdir or "/"
    for p in env_vars.get("PYTHONPATH", "").split(":"):
        if p:
            paths.append(normpath(posixpath.join(wd, p)))
    paths += [stdlib, posixpath.join(stdlib, "lib-dynload")]
    site_dirs: list[str] = []
    if venv:
        site_dirs.append(posixpath.join(venv, "lib", vx, "site-packages"))
    if not venv or system_site:
        home_dir = env_vars.get("HOME", "/root")
        site_dirs.append(posixpath.join(home_dir, ".local", "lib", vx, "site-packages"))
        # python.org layout (Lib/site.py getsitepackages)
        site_dirs.append(posixpath.join(prefix, "lib", vx, "site-packages"))
        # Debian's patched site.py (python3.11 package, debian/patches/distutils-install-layout)
        site_dirs += [f"/usr/local/lib/{vx}/dist-packages", "/usr/lib/python3/dist-packages",
                      f"/usr/lib/{vx}/dist-packages"]
    site_dirs = [d for i, d in enumerate(site_dirs) if d not in site_dirs[:i] and fs.is_dir(d)]
    paths += site_dirs
    # .pth files: processed in sorted order per site dir (Lib/site.py addsitedir).
    pth_files: list[str] = []
    for d in list(site_dirs):
        for name in sorted(fs.listdir(d)):
            if not name.endswith(".pth"):
                continue
            pth = posixpath.join(d, name)
            pth_files.append(pth)
            try:
                text = fs.read_text(pth)
            except (SlimError, OSError) as exc:
                unknowns.append(Unknown(pth, f"unreadable .pth file: {exc}"))
                continue
            for n, line in enumerate(text.splitlines(), 1):
                s = line.strip()
                if not s or s.startswith("#"):
                    continue
                if s.startswith(("import ", "import\t")):
                    unknowns.append(Unknown(pth, f"line {n}: executes code at startup: {s[:80]}"))
                    continue
                p = normpath(posixpath.join(d, s))
                if fs.is_dir(p) and p not in paths:
                    paths.append(p)
    paths = [p for i, p in enumerate(paths) if p not in paths[:i]]
    return PythonEnv(interpreter=interpreter, real=real, version=version, prefix=prefix,
                     stdlib=stdlib, sys_path=tuple(paths), site_dirs=tuple(site_dirs),
                     pth_files=tuple(pth_files), unknowns=tuple(unknowns), extra_edges=tuple(extra))


# -- module resolution ---------------------------------------------------------------------
def _find_in_dirs(ctx: AnalysisContext, env: PythonEnv, name: str, dirs: Iterable[str]) -> ModuleHit | None:
    """FileFinder over `dirs` for one name component. Namespace portions are returned last."""
    fs = ctx.fs
    portions: list[str] = []
    for d in dirs:
        base = posixpath.join(d, name)
        if fs.is_dir(base):
            for init in ("__init__.py", "__init__.pyc", *("__init__" + s for s in env.ext_suffixes)):
                ip = posixpath.join(base, init)
                if fs.is_file(ip):
                    return ModuleHit(name, ip, "package")
            portions.append(base)
        for suf in env.ext_suffixes:
            if fs.is_file(base + suf):
                return ModuleHit(name, base + suf, "extension")
        if fs.is_file(base + ".py"):
            return ModuleHit(name, base + ".py", "source")
        if fs.is_file(base + ".pyc"):
            return ModuleHit(name, base + ".pyc", "bytecode")
    if portions:
        return ModuleHit(name, None, "namespace", parents=tuple(portions))
    return None


def resolve_module(ctx: AnalysisContext, env: PythonEnv, dotted: str,
                   search: Iterable[str] | None = None) -> list[ModuleHit] | None:
    """Resolve `a.b.c` to the chain of hits [a, a.b, a.b.c]; None when some part is missing."""
    parts = dotted.split(".")
    if parts[0] in BUILTIN_MODULES and len(parts) == 1:
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


def scan_imports(tree: ast.AST, calls: bool = True) -> list[ImportRef]:
    """Every import in a module: statements anywhere, importlib/`__import__` calls.

    Branches decided on Linux are pruned (`if sys.platform == "win32":`, `if os.name == "nt":`,
    `if TYPE_CHECKING:`); imports under `if __name__ == "__main__":` are marked `main_only`.
    With `calls=False` (the source never names `import_module` or `__import__`) expressions are
    not walked: import statements only live in statement bodies, which is most of the speed.
    """
    out: list[ImportRef] = []
    block_parts = (ast.stmt, ast.excepthandler, ast.match_case)

    def visit(node: ast.AST, guarded: bool, main_only: bool) -> None:
        if isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            g = _is_import_guard(node)  # type: ignore[arg-type]
            for child in node.body:  # type: ignore[attr-defined]
                visit(child, guarded or g, main_only)
            for part in (node.handlers, node.orelse, node.finalbody):  # type: ignore[attr-defined]
                for child in part:
                    visit(child, guarded, main_only)
            return
        if isinstance(node, ast.If):
            decided = static_condition(node.test)
            is_main = _is_main_guard(node.test)
            if calls:
                visit(node.test, guarded, main_only)
            if decided is not False:
                for child in node.body:
                    visit(child, guarded, main_only or is_main)
            if decided is not True:
                for child in node.orelse:
                    visit(child, guarded, main_only)
            return
        if isinstance(node, ast.Import):
            for a in node.names:
                out.append(ImportRef(a.name, 0, node.lineno, (), guarded, main_only=main_only))
        elif isinstance(node, ast.ImportFrom):
            out.append(ImportRef(node.module or "", node.level, node.lineno,
                                 tuple(a.name for a in node.names), guarded, main_only=main_only))
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
                                         dynamic=f"{fname}() with a non-literal name", main_only=main_only))
        for child in ast.iter_child_nodes(node):
            if calls or isinstance(child, block_parts):
                visit(child, guarded, main_only)

    visit(tree, False, False)
    return out


# -- edges ---------------------------------------------------------------------------------
def _pycache_edges(ctx: AnalysisContext, env: PythonEnv | None, src: str) -> list[Edge]:
    """`dir/mod.py` → `dir/__pycache__/mod.<tag>.pyc` (PEP 3147), kept with its source."""
    if not src.endswith(".py"):
        return []
    d, base = posixpath.split(src)
    stem = base[:-3]
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


def _package_dir_of(env: PythonEnv, path: str) -> tuple[str, str] | None:
    """(sys.path dir, top-level name) of a module file found under a sys.path entry."""
    best = None
    for d in env.sys_path:
        if under(path, d) and path != d and (best is None or len(d) > len(best)):
            best = d
    if best is None:
        return None
    top = path[len(best.rstrip("/")) + 1:].split("/")[0]
    return best, top


def _dist_index(ctx: AnalysisContext, site: str) -> dict[str, tuple[str, list[str]]]:
    """Per site dir: top-level name → (dist-info dir, files of the distribution from RECORD)."""
    key = f"python.dists:{site}"
    if key in ctx.cache:
        return ctx.cache[key]
    index: dict[str, tuple[str, list[str]]] = {}
    for name in sorted(ctx.fs.listdir(site)):
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
    ctx.cache[key] = index
    return index


_CODE_SUFFIXES = (".py", ".pyc", ".pyi")


def package_data_edges(ctx: AnalysisContext, env: PythonEnv, path: str) -> list[Edge]:
    """Non-code files of the distribution (or package directory) that `path` belongs to."""
    loc = _package_dir_of(env, path)
    if loc is None:
        return []
    site, top = loc
    done: set[tuple[str, str]] = ctx.cache.setdefault("python.pkgdata.done", set())
    if (site, top) in done:
        return []
    done.add((site, top))
    out: list[Edge] = []
    dist = _dist_index(ctx, site).get(top) if site in env.site_dirs else None
    if dist is not None:
        info, files = dist
        ev = f"package data of {posixpath.basename(info)} (RECORD)"
        for f in sorted(set(files)):
            if not f.endswith(_CODE_SUFFIXES) and "/__pycache__/" not in f and ctx.fs.is_file(f):
                out.append(Edge(path, f, "package", ev))
        return out
    pkg_dir = posixpath.join(site, top)
    if not ctx.fs.is_dir(pkg_dir):
        return []
    ev = f"package data in {pkg_dir}"
    from slim.analyzers.app import files_under

    for e in files_under(ctx, pkg_dir):
        if not e.path.endswith(_CODE_SUFFIXES) and "/__pycache__/" not in e.path:
            out.append(Edge(path, e.path, "package", ev))
    return out


def startup_edges(ctx: AnalysisContext, env: PythonEnv) -> list[Edge]:
    """What the interpreter itself loads before user code (see STARTUP_MODULES), .pth files."""
    src = env.real
    out: list[Edge] = list(env.extra_edges)
    for mod in STARTUP_MODULES:
        chain = resolve_module(ctx, env, mod)
        if chain:
            out.extend(_hit_edges(ctx, src, chain, f"interpreter startup imports {mod}"))
    enc = posixpath.join(env.stdlib, "encodings")
    from slim.analyzers.app import files_under

    for e in files_under(ctx, enc):
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
    return [e for e in out if e.src != e.dst]


def import_edges(ctx: AnalysisContext, env: PythonEnv, path: str, source: str,
                 extra_dirs: Iterable[str] = ()) -> list[Edge | Unknown]:
    """Edges from one Python source file to the modules it imports (and Unknowns)."""
    try:
        tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError) as exc:
        return [Unknown(path, f"not parseable as Python {env.version[0]}.{env.version[1]}: {exc}")]
    in_stdlib = under(path, env.stdlib)
    search = list(dict.fromkeys([*extra_dirs, *env.sys_path]))
    out: list[Edge | Unknown] = []
    main_scripts = ctx.cache.get("python.main_scripts", set())
    # A file outside sys.path (the application's) may be the __main__ script even when the
    # roots were computed in another context: its `if __name__ == "__main__":` imports count.
    outside_sys_path = _package_dir_of(env, path) is None
    calls = "import_module" in source or "__import__" in source
    for ref in scan_imports(tree, calls=calls):
        where = f"{path}:{ref.line}"
        if ref.main_only and path not in main_scripts and path != "<root>" and not outside_sys_path:
            continue  # an imported module is never __main__ (its self-test block does not run)
        if ref.dynamic:
            if in_stdlib:
                log.debug("%s: line %d: %s (stdlib machinery; not reported)", path, ref.line, ref.dynamic)
            elif not ref.guarded:
                out.append(Unknown(path, f"line {ref.line}: dynamic import: {ref.dynamic}"))
            continue
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
            continue
        top = ref.module.split(".")[0]
        if top in FOREIGN_MODULES or not ref.module:
            continue
        chain = resolve_module(ctx, env, ref.module, search)
        if chain is None:
            if not ref.guarded and not in_stdlib:
                out.append(Unknown(path, f"line {ref.line}: import {ref.module}: not found on sys.path"))
            continue
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
    return out


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
    interp = argv[0] if argv[0].startswith("/") else which(ctx, argv[0])
    if not interp or not (_INTERP_RE.match(posixpath.basename(ctx.fs.realpath(interp)))
                          or _INTERP_RE.match(posixpath.basename(interp))):
        return []
    env = python_env(ctx, interp)
    if env is None:
        return [Unknown(interp, "Python interpreter without a recognizable stdlib (lib/pythonX.Y/os.py)")]
    wd = ctx.config.workdir or "/"
    out: list[Edge | Unknown] = [*startup_edges(ctx, env), *env.unknowns]
    main_dirs: list[str] = ctx.cache.setdefault("python.main_dirs", [])
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "-m" and i + 1 < len(argv):
            mod = argv[i + 1]
            if wd not in main_dirs:
                main_dirs.append(wd)
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
                    ctx.cache.setdefault("python.main_scripts", set()).add(main.path)
                    out.append(Edge(ROOT, main.path, "entrypoint", f"python -m {mod} runs {mod}.__main__"))
            elif last.path:
                ctx.cache.setdefault("python.main_scripts", set()).add(last.path)
            break
        if a == "-c" and i + 1 < len(argv):
            if wd not in main_dirs:
                main_dirs.append(wd)
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
            d = posixpath.dirname(script)
            if d not in main_dirs:
                main_dirs.append(d)
            ctx.cache.setdefault("python.main_scripts", set()).add(ctx.fs.realpath(script))
            out.extend(link_edges(ctx, ROOT, script, "entrypoint", f"python script {a}"))
        elif ctx.fs.is_dir(script):
            main_py = posixpath.join(script, "__main__.py")
            if ctx.fs.is_file(main_py):
                main_dirs.append(script)
                ctx.cache.setdefault("python.main_scripts", set()).add(main_py)
                out.append(Edge(ROOT, main_py, "entrypoint", f"python runs directory {a}"))
        else:
            out.append(Unknown(interp, f"python script {a}: not found in the image"))
        break
    return out


class PythonAnalyzer(Analyzer):
    """Python sources (`*.py`, `#!…python` scripts) → imported modules, caches, package data;
    a Python interpreter binary → its startup set."""

    name = "python"

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
        return self.ctx.fs.has_content(entry.path) and self._shebang(entry.path) is not None

    def analyze(self, entry: FileEntry) -> Iterable[Edge | Unknown]:
        path = entry.path
        base = posixpath.basename(path)
        if _INTERP_RE.match(base) and not path.endswith(".py"):
            env = python_env(self.ctx, path)
            if env is None:
                return []
            return sorted(set(startup_edges(self.ctx, env))) + sorted(set(env.unknowns))
        prog = None if path.endswith(".py") else self._shebang(path)
        interp = None
        if prog:
            interp = prog if prog.startswith("/") else which(self.ctx, prog)
        env = python_env(self.ctx, interp)
        if env is None:
            return [Unknown(path, "Python source but no Python interpreter in the image")]
        try:
            data = self.ctx.fs.read(path, MAX_SOURCE)
        except (SlimError, OSError) as exc:
            return [Unknown(path, f"cannot read Python source: {exc}")]
        source = data.decode("utf-8", errors="replace")
        extra: list[str] = list(self.ctx.cache.get("python.main_dirs", []))
        if _package_dir_of(env, path) is None:
            # Not under sys.path: an application file; sys.path[0] is its script's directory.
            extra.insert(0, posixpath.dirname(path))
            if self.ctx.config.workdir:  # sys.path[0] of `python -m`/`-c` is the cwd
                extra.append(normpath(self.ctx.config.workdir))
        results: list[Edge | Unknown] = list(import_edges(self.ctx, env, path, source, extra))
        results.extend(_pycache_edges(self.ctx, env, path))
        if prog is None or path.endswith(".py"):
            results.extend(_parent_init_edges(self.ctx, env, path))
        results.extend(package_data_edges(self.ctx, env, path))
        edges = sorted({r for r in results if isinstance(r, Edge) and r.src != r.dst})
        unknowns = sorted({r for r in results if isinstance(r, Unknown)})
        return [*edges, *unknowns]


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
