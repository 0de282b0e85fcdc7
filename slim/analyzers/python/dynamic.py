"""Python modules imported by name at run time: what `import` statements do not show.

* **Dotted names in strings.** Frameworks import what their settings name (`INSTALLED_APPS =
  ["django.contrib.humanize"]`, gunicorn's `"gunicorn.workers.sync.SyncWorker"`,
  `importlib.import_module(settings.ROOT_URLCONF)`). A quoted string that names a module (or
  an attribute of one: the module is the name without its last part) is an import edge
  (docstrings and comments are prose, not read). In the application's files any such name counts; in a library, only names inside its own top-level
  package (its plugin tables), so that a docstring mentioning another library keeps nothing.
* **Extension modules** import Python modules through the C API by literal name
  (`PyImport_ImportModule("numpy._core._exceptions")` in numpy's `_multiarray_umath`): the
  dotted names of its own top-level package found in a kept extension module's bytes are
  import edges too.
* **Computed names.** `importlib.import_module(f"pkg.sub.{x}")`, `__import__(var)`: when the
  name has a literal dotted prefix, every module of that package is kept; otherwise every module
  of the importing file's own package (its directory, `tests`/`test` directories excepted).
  Either way the import is reported as an Unknown that says what was kept. A file that
  enumerates packages (`pkgutil.walk_packages`/`iter_modules`) imports every module of each
  package it names by a string, and so does the application's own code (settings naming app
  packages a framework loads by convention).
* **Entry points.** `load_entry_point('dist==1.0', 'console_scripts', 'name')` (setuptools'
  console-script shims, which Debian ships in /usr/bin) loads the object `entry_points.txt`
  of the distribution names: its module is an import edge, the distribution's metadata is kept
  (importlib.metadata reads it at run time).
"""

from __future__ import annotations

import configparser
import itertools
import logging
import posixpath
import re
from collections.abc import Iterable, Iterator

from slim.analyzers.base import AnalysisContext, link_edges
from slim.analyzers.python.env import PythonEnv, PythonState, _package_dir_of
from slim.analyzers.python.resolver import FOREIGN_MODULES, resolve_module
from slim.elf import imported_symbols
from slim.errors import SlimError
from slim.model import Edge, Unknown, under

log = logging.getLogger(__name__)

MAX_NAMES = 2000  # dotted names looked up per file
MAX_SUBTREE = 5000  # modules kept for one computed-name import
CHUNK = 1 << 20
SKIPPED_DIRS = ("tests", "test")

_QUOTED_DOTTED = re.compile(r"""['"]([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?::[A-Za-z_]\w*)?['"]""")
_PROSE = re.compile(r'''"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|#[^\n]*''')
_ENTRY_POINT = re.compile(
    r"""load_entry_point\(\s*['"]([A-Za-z0-9_.\-]+)(?:[=<>!~][^'"]*)?['"]\s*,\s*['"]([^'"]+)['"]\s*,"""
    r"""\s*['"]([^'"]+)['"]""")


def module_file(ctx: AnalysisContext, env: PythonEnv, name: str, search: list[str]) -> str | None:
    """The file module `name` (or, failing that, `name` without its last part: an attribute)
    resolves to; None when neither is a module with a file. Memoized per interpreter."""
    memo = ctx.service(PythonState).named_modules
    key = (env.interpreter + "\0" + "\0".join(search), name)
    if key not in memo:
        found = None
        for cand in (name, name.rpartition(".")[0]):
            if "." not in cand and cand != name:
                break
            chain = resolve_module(ctx, env, cand, search) if cand else None
            if chain and chain[-1].path and len(chain) == cand.count(".") + 1:
                found = chain[-1].path
                break
        memo[key] = found
    return memo[key]


def quoted_dotted_names(source: str) -> list[str]:
    """The distinct names the first 4 * MAX_NAMES quoted dotted strings of `source` spell,
    sorted: what dotted_string_edges looks up before it blanks prose. A parse computes them
    with the imports (imports._scan), in a worker when one is running."""
    return sorted({m.group(1) for m in itertools.islice(_QUOTED_DOTTED.finditer(source), 4 * MAX_NAMES)})


def _prose_blanked(source: str) -> str:
    """`source` with triple-quoted strings (docstrings) and comments blanked, lines kept:
    prose mentions modules it does not import."""
    def blank(m: re.Match[str]) -> str:
        return "\n" * m.group(0).count("\n")

    return _PROSE.sub(blank, source)


SOURCE_SCAN_LIMIT = 8 << 20  # bytes of one kept source the fixpoint scans read for names


def unread_sources(ctx: AnalysisContext, kept: Iterable[str], read: set[str]) -> Iterator[tuple[str, str]]:
    """(path, text) of each kept Python source not in `read` yet (added to it), at most
    SOURCE_SCAN_LIMIT bytes each: the fixpoint scans read a file once per set of names they
    look for. In path order: what a scan records first (the file that names a module) must
    not depend on the order of a set, which changes from run to run (string hashing)."""
    for path in sorted(kept):
        if path in read or not path.endswith(".py") or not ctx.fs.has_content(path):
            continue
        read.add(path)
        try:
            yield path, ctx.fs.read_text(path, SOURCE_SCAN_LIMIT)
        except (SlimError, OSError):
            continue


def dotted_string_edges(ctx: AnalysisContext, env: PythonEnv, path: str, source: str,
                        search: list[str]) -> list[Edge]:
    """Import edges for the module names quoted strings of `source` spell (module doc)."""
    loc = _package_dir_of(env, path)
    own = loc[1] if loc is not None else ""
    out: list[Edge] = []
    seen: set[str] = set()

    def names_module(name: str) -> bool:
        top = name.split(".", 1)[0]
        if top in FOREIGN_MODULES or (loc is not None and top != own):
            return False
        hit = module_file(ctx, env, name, search)
        return bool(hit) and hit != path

    # Blanking prose only removes names: when no name of the raw source is a module, none of
    # the blanked source is (most files; blanking costs 10x the scan). Past MAX_NAMES distinct
    # names, blank anyway.
    scanned = ctx.service(PythonState).dotted  # from the parse of this very source, if any
    raw = scanned[1] if scanned is not None and scanned[0] is source else quoted_dotted_names(source)
    if len(raw) < 4 * MAX_NAMES and not any(names_module(n) for n in raw):
        return []
    source = _prose_blanked(source)
    # pkgutil.iter_modules/walk_packages + import_module: Django's template engine imports every
    # module of "django.templatetags" this way (django/template/backends/django.py).
    enumerates = "walk_packages(" in source or "iter_modules(" in source
    for m in _QUOTED_DOTTED.finditer(source):
        name = m.group(1)
        if name in seen:
            continue
        seen.add(name)
        if len(seen) > MAX_NAMES:
            break
        if names_module(name):
            hit = module_file(ctx, env, name, search)  # memoized
            assert hit is not None
            line = source.count("\n", 0, m.start()) + 1
            out.extend(link_edges(ctx, path, hit, "import", f"{path}:{line}: module named by string {name!r}"))
            pkg_dir = posixpath.dirname(hit)
            if (posixpath.basename(hit).startswith("__init__.") and posixpath.basename(pkg_dir) ==
                    name.rsplit(".", 1)[-1] and (enumerates or loc is None)):
                why = ("enumerates the package's modules (pkgutil) and imports them" if enumerates else
                       "the application names the package: frameworks load an app package's "
                       "modules by convention (Django's INSTALLED_APPS: templatetags, management "
                       "commands, migrations)")
                ev = f"{path}:{line}: {why}: {name}"
                out.extend(Edge(path, mod, "import", ev) for mod in package_modules(ctx, env, pkg_dir)
                           if mod != path)
    return out


def extension_name_edges(ctx: AnalysisContext, env: PythonEnv, path: str) -> list[Edge | Unknown]:
    """Import edges for the modules of its own package an extension module names (module doc).
    The file is streamed; names are capped at MAX_NAMES."""
    loc = _package_dir_of(env, path)
    if loc is None or "." in loc[1]:
        return []
    own = loc[1].encode()
    pattern = re.compile(re.escape(own) + rb"(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
    names: set[str] = set()
    try:
        with ctx.fs.open(path) as f:
            tail = b""
            while len(names) <= MAX_NAMES:
                chunk = f.read(CHUNK)
                if not chunk:
                    break
                data = tail + chunk
                for m in pattern.finditer(data):
                    before = data[m.start() - 1:m.start()] if m.start() else b""
                    if not (before.isalnum() or before in (b"_", b".")):
                        names.add(m.group(0).decode())
                tail = data[-256:]
    except (SlimError, OSError) as exc:
        return [Unknown(path, f"extension module not read for module names: {exc}")]
    out: list[Edge | Unknown] = []
    for name in sorted(names)[:MAX_NAMES]:
        hit = module_file(ctx, env, name, list(env.sys_path))
        if hit and hit != path:
            out.extend(link_edges(ctx, path, hit, "import", f"extension module names {name!r}"))
    return out


# What an extension module imports modules or runs Python code with (the C API). One whose
# dynamic symbols import none of these imports nothing by name: its strings are method and
# attribute names (`_multibytecodec` spells "readline", the StreamReader method).
_IMPORTING_SYMBOLS = ("PyImport_", "_PyImport_", "PyCapsule_Import", "PyRun_", "Py_CompileString",
                      "PyEval_EvalCode", "PyEval_GetBuiltins", "_PyEval_GetBuiltin")
_C_STRING = re.compile(rb"\x00([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?=\x00)")
MAX_STDLIB_EXTENSION = 16 << 20


def stdlib_extension_edges(ctx: AnalysisContext, env: PythonEnv, path: str) -> list[Edge | Unknown]:
    """Import edges for what a standard-library extension module (lib-dynload) imports through
    the C API: the NUL-terminated strings in its bytes that name a standard-library module
    (`_json` → `json.decoder`, `_zoneinfo` → `zoneinfo._common`), and the module of a capsule
    it imports (`PyCapsule_Import("_socket.CAPI")` in `_ssl` → `_socket`). Modules are looked
    up in the standard library only, so a string that happens to be a word names nothing. A
    module whose dynamic symbols include no import function (_IMPORTING_SYMBOLS) imports
    nothing; when its symbols cannot be read (or none are), its strings are followed."""
    try:
        symbols = imported_symbols(ctx.fs, path)
    except SlimError as exc:
        log.debug("%s: symbols not read (%s): its strings are followed", path, exc)
        symbols = set()
    if symbols and not any(s.startswith(_IMPORTING_SYMBOLS) for s in symbols):
        return []
    try:
        data = ctx.fs.read(path, MAX_STDLIB_EXTENSION)
    except (SlimError, OSError) as exc:
        return [Unknown(path, f"extension module not read for module names: {exc}")]
    own = posixpath.basename(path).split(".", 1)[0]
    stdlib_dirs = [env.stdlib, posixpath.join(env.stdlib, "lib-dynload")]
    names: set[str] = set()
    for m in _C_STRING.finditer(data):
        name = m.group(1).decode()
        head, _, last = name.rpartition(".")
        names.add(head if head and "CAPI" in last else name)
        if len(names) > MAX_NAMES:
            break
    out: list[Edge | Unknown] = []
    for name in sorted(names - {own}):
        chain = resolve_module(ctx, env, name, stdlib_dirs)
        if chain and len(chain) == name.count(".") + 1 and chain[-1].path and chain[-1].path != path:
            for hit in chain:
                if hit.path:
                    out.extend(link_edges(ctx, path, hit.path, "import", f"extension module imports {name!r} (C API)"))
    return out


def package_modules(ctx: AnalysisContext, env: PythonEnv, directory: str) -> list[str]:
    """Every module file (source, extension, sourceless bytecode) below package `directory`,
    test directories excepted."""
    out: list[str] = []
    for e in ctx.files_under(directory):
        rel = e.path[len(directory) + 1:].split("/")
        if "__pycache__" in rel or any(part in SKIPPED_DIRS for part in rel[:-1]):
            continue
        if e.path.endswith((".py", ".pyc")) or any(e.path.endswith(s) for s in env.ext_suffixes):
            out.append(e.path)
    return out[:MAX_SUBTREE]


def computed_import_edges(ctx: AnalysisContext, env: PythonEnv, path: str, line: int,
                          reason: str, prefix: str, search: list[str]) -> list[Edge | Unknown]:
    """What a computed-name import keeps (module doc), and the Unknown that reports it."""
    directory = ""
    if prefix:
        chain = resolve_module(ctx, env, prefix, search)
        if chain and chain[-1].kind == "package" and chain[-1].path:
            directory = posixpath.dirname(chain[-1].path)
    if not directory:
        loc = _package_dir_of(env, path)
        if loc is not None and posixpath.dirname(path) != loc[0] and not under(path, env.stdlib):
            directory = posixpath.dirname(path)
    if not directory:
        return [Unknown(path, f"line {line}: dynamic import: {reason}")]
    modules = package_modules(ctx, env, directory)
    site = _package_dir_of(env, directory + "/__init__.py")
    what = directory[len(site[0].rstrip("/")) + 1:].replace("/", ".") if site else directory
    out: list[Edge | Unknown] = [Unknown(path, f"line {line}: dynamic import: {reason}; every module "
                                               f"of package {what} kept ({len(modules)} files)")]
    ev = f"{path}:{line}: computed import inside package {what}"
    out.extend(Edge(path, m, "import", ev) for m in modules if m != path)
    return out


def _dist_info_dirs(ctx: AnalysisContext, env: PythonEnv, dist: str) -> list[str]:
    """The metadata directories (`.dist-info`, `.egg-info`) of distribution `dist` on sys.path."""
    want = re.sub(r"[-_.]+", "_", dist).lower()
    out: list[str] = []
    for site in env.site_dirs:
        for name in ctx.fs.listdir(site):
            stem, dot, ext = name.rpartition(".")
            if not dot or ext not in ("dist-info", "egg-info"):
                continue
            if re.sub(r"[-_.]+", "_", stem.split("-", 1)[0]).lower() == want:
                out.append(posixpath.join(site, name))
    return out


def entry_point_edges(ctx: AnalysisContext, env: PythonEnv, path: str, source: str,
                      search: Iterable[str]) -> list[Edge | Unknown]:
    """What setuptools' `load_entry_point(dist, group, name)` loads (module doc)."""
    out: list[Edge | Unknown] = []
    for m in _ENTRY_POINT.finditer(source):
        dist, group, name = m.groups()
        infos = _dist_info_dirs(ctx, env, dist)
        if not infos:
            out.append(Unknown(path, f"entry point {group}/{name}: distribution {dist!r} not found"))
            continue
        ev = f"load_entry_point({dist!r}, {group!r}, {name!r})"
        target = ""
        for info in infos:
            for e in ctx.files_under(info) if ctx.fs.is_dir(info) else ():
                out.append(Edge(path, e.path, "package", f"{ev}: distribution metadata"))
            if ctx.fs.is_file(info):
                out.append(Edge(path, info, "package", f"{ev}: distribution metadata"))
            target = target or _entry_point_target(ctx, posixpath.join(info, "entry_points.txt"), group, name)
        module = target.split(":", 1)[0].strip()
        hit = module_file(ctx, env, module, list(search)) if module else None
        if hit is None:
            out.append(Unknown(path, f"{ev}: entry point not found in entry_points.txt"))
            continue
        out.extend(link_edges(ctx, path, hit, "import", f"{ev} -> {target}"))
    return out


def _entry_point_target(ctx: AnalysisContext, path: str, group: str, name: str) -> str:
    """`module:attr` of entry point `name` in section `group` of an entry_points.txt."""
    if not ctx.fs.is_file(path):
        return ""
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(ctx.fs.read_text(path))
        return parser.get(group, name, fallback="")
    except (configparser.Error, SlimError) as exc:
        log.debug("%s: %s", path, exc)
        return ""


__all__ = ["computed_import_edges", "dotted_string_edges", "entry_point_edges",
           "extension_name_edges", "module_file", "package_modules", "quoted_dotted_names",
           "stdlib_extension_edges"]
