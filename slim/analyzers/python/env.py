"""Python interpreters of the image and the sys.path each computes.

sys.path is rebuilt the way CPython does it (Modules/getpath.py and Lib/site.py, 3.11), from
the IMAGE, never the host: PYTHONPATH from the image Env, `<prefix>/lib/pythonX.Y`,
`lib-dynload`, then site directories (python.org builds: `<prefix>/lib/pythonX.Y/site-packages`;
Debian's patched site.py: `/usr/local/lib/pythonX.Y/dist-packages`, `/usr/lib/python3/dist-packages`,
`/usr/lib/pythonX.Y/dist-packages`), a venv's `pyvenv.cfg`, the user site, and `.pth` files.

A file is analyzed with the interpreter that would import it (`env_for_file`): the one whose
sys.path holds it — every virtual environment of the image (a directory with `pyvenv.cfg` and
`bin/python*`) is a candidate besides the default `python3` — else, for the application's own
files, the interpreter the container starts (`python` in the Entrypoint, or the `#!` line of a
console script such as a venv's `bin/gunicorn`), else the default.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from slim.analyzers.base import AnalysisContext
from slim.errors import SlimError
from slim.model import Edge, Unknown, normpath, under

_VERSION_RE = re.compile(r"python(\d)\.(\d+)$")
_INTERP_RE = re.compile(r"^python\d?(\.\d+)?[a-z]?$")


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
    builtins: frozenset[str] = frozenset()  # modules compiled into the interpreter (PyInit_*)

    @property
    def ext_suffixes(self) -> tuple[str, ...]:
        """importlib.machinery.EXTENSION_SUFFIXES for Linux x86-64/aarch64 builds."""
        tag = f"cpython-{self.version[0]}{self.version[1]}"
        return (f".{tag}-x86_64-linux-gnu.so", f".{tag}-aarch64-linux-gnu.so",
                f".{tag}-x86_64-linux-musl.so", f".{tag}-aarch64-linux-musl.so", ".abi3.so", ".so")

    @property
    def cache_tag(self) -> str:
        return f"cpython-{self.version[0]}{self.version[1]}"


class PythonState:
    """What the Python analyzer and its roots share during one run: one computed sys.path per
    interpreter, one distribution index per site directory, the distributions whose package
    data was added, and the scripts and directories that run as `__main__`."""

    def __init__(self, ctx: AnalysisContext) -> None:
        self.envs: dict[str, PythonEnv | None] = {}
        self.dists: dict[str, dict[str, tuple[str, list[str]]]] = {}
        self.pkgdata_done: set[tuple[str, str, str]] = set()  # (site, top, test dir or "")
        self.main_scripts: set[str] = set()
        self.main_dirs: list[str] = []
        self.venv_interpreters: list[str] | None = None  # computed on first use
        self.entry: tuple[str | None] | None = None  # (entry_interpreter,) once computed
        self.env_candidates: list[PythonEnv] | None = None  # env_for_file's, once computed
        self.named_modules: dict[tuple[str, str], str | None] = {}  # (interpreter, name) → file
        self.dir_names: dict[str, frozenset[str]] = {}  # directory → the names in it
        self.found: dict[tuple[str, str, tuple[str, ...]], tuple[str, str] | None] = {}  # FileFinder memo
        # PEP 562 lazy imports held back until kept code names their attribute (imports.LazyImport)
        self.lazy: list[Any] = []
        self.lazy_attrs: frozenset[str] = frozenset()
        self.lazy_scanned: set[str] = set()
        self.lazy_users: dict[str, set[str]] = {}
        self.lazy_modules: frozenset[str] = frozenset()
        self.lazy_star_users: dict[str, set[str]] = {}  # module → files doing `from module import *`
        # imports after one of a module the image lacks, held back (absent.DeadImport)
        self.image_names: frozenset[str] | None = None
        self.image_archives: frozenset[str] = frozenset()  # zip archives' names and directories
        self.archive_user: tuple[str, str] | None = None  # a kept file naming one of them
        self.absent: dict[tuple[str, str], bool] = {}
        self.dead: list[Any] = []
        self.dead_names: frozenset[str] = frozenset()
        self.dead_scanned: set[str] = set()
        self.dead_named: dict[str, str] = {}  # module name → a kept file that quotes it
        self.dead_spans: dict[str, list[tuple[int, int, str]]] = {}  # file → (after, to, module)
        self.ahead: set[str] = set()  # sources handed to Parses.ahead
        # (source, its quoted dotted names) of the source parsed last (dynamic.quoted_dotted_names)
        self.dotted: tuple[str, list[str]] | None = None
        # (interpreter, try body, sys.path) → why its except handler never runs (accelerators.py)
        self.accelerators: dict[tuple[str, tuple[str, ...], tuple[str, ...]], str] = {}

    def add_main_dir(self, d: str) -> None:
        if d not in self.main_dirs:
            self.main_dirs.append(d)


def _venv_interpreters(ctx: AnalysisContext) -> list[str]:
    """`bin/python3` (or `bin/python`) of every virtual environment in the image (PEP 405:
    a directory holding `pyvenv.cfg`)."""
    state = ctx.service(PythonState)
    if state.venv_interpreters is None:
        found: list[str] = []
        for e in ctx.files_under("/"):
            if posixpath.basename(e.path) != "pyvenv.cfg":
                continue
            venv = posixpath.dirname(e.path)
            for name in ("python3", "python"):
                cand = posixpath.join(venv, "bin", name)
                if ctx.fs.exists(cand):
                    found.append(cand)
                    break
        state.venv_interpreters = sorted(found)
    return state.venv_interpreters


def entry_interpreter(ctx: AnalysisContext) -> str | None:
    """The Python interpreter the container's Entrypoint/Cmd starts, directly (`python3 app.py`)
    or through a `#!` script (a console script); computed once a run (it reads only the image
    config and filesystem)."""
    state = ctx.service(PythonState)
    if state.entry is None:
        state.entry = (_entry_interpreter(ctx),)
    return state.entry[0]


def _entry_interpreter(ctx: AnalysisContext) -> str | None:
    argv = ctx.config.argv
    prog = ctx.which(argv[0]) if argv else None
    if prog and _INTERP_RE.match(posixpath.basename(prog)):
        return prog
    if prog and ctx.fs.has_content(prog):
        try:
            head = ctx.fs.read(prog, 256)
        except SlimError:
            head = b""
        words = head[2:].split(b"\n")[0].decode("utf-8", "replace").split() if head.startswith(b"#!") else []
        if words and posixpath.basename(words[0]) == "env":
            words = [w for w in words[1:] if not w.startswith("-")]
        if words and _INTERP_RE.match(posixpath.basename(words[0])):
            return words[0] if words[0].startswith("/") else ctx.which(words[0])
    return None


def env_for_file(ctx: AnalysisContext, path: str) -> PythonEnv | None:
    """The environment that imports module file `path` (module doc)."""
    state = ctx.service(PythonState)
    candidates = state.env_candidates
    if candidates is None:  # the same for every file of a run
        candidates = []
        for interp in [entry_interpreter(ctx), *_venv_interpreters(ctx), None]:
            env = python_env(ctx, interp)
            if env is not None and env not in candidates:
                candidates.append(env)
        state.env_candidates = candidates
    best: tuple[int, PythonEnv] | None = None
    for env in candidates:
        loc = _package_dir_of(env, path)
        if loc is not None and (best is None or len(loc[0]) > best[0]):
            best = (len(loc[0]), env)
    if best is not None:
        return best[1]
    return candidates[0] if candidates else None


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
        p = ctx.which(name)
        if p:
            return p
    found = sorted(ctx.fs.glob("/usr/bin/python3.*") + ctx.fs.glob("/usr/local/bin/python3.*"))
    return next((p for p in found if _VERSION_RE.search(p)), None)


def python_env(ctx: AnalysisContext, interpreter: str | None = None) -> PythonEnv | None:
    """Compute (and memoize) the sys.path of `interpreter` (default: the image's python3)."""
    interpreter = interpreter or find_interpreter(ctx)
    if not interpreter:
        return None
    envs = ctx.service(PythonState).envs
    if interpreter not in envs:
        envs[interpreter] = _compute_env(ctx, interpreter)
    return envs[interpreter]


def _compute_env(ctx: AnalysisContext, interpreter: str) -> PythonEnv | None:
    fs = ctx.fs
    unknowns: list[Unknown] = []
    extra: list[Edge] = []
    venv, home, system_site = _read_venv(ctx, interpreter, unknowns, extra)
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
    site_dirs = _site_dirs(ctx, venv, system_site, prefix, vx)
    paths += site_dirs
    pth_files = _process_pth_files(ctx, site_dirs, paths, unknowns)
    paths = [p for i, p in enumerate(paths) if p not in paths[:i]]
    return PythonEnv(interpreter=interpreter, real=real, version=version, prefix=prefix,
                     stdlib=stdlib, sys_path=tuple(paths), site_dirs=tuple(site_dirs),
                     pth_files=tuple(pth_files), unknowns=tuple(unknowns), extra_edges=tuple(extra),
                     builtins=_builtin_modules(ctx, real, prefix, vx))


_PYINIT = re.compile(rb"PyInit_([A-Za-z0-9_]+)\x00")


def _builtin_modules(ctx: AnalysisContext, real: str, prefix: str, vx: str) -> frozenset[str]:
    """Modules compiled into the interpreter: the `PyInit_<name>` functions of its binary or of
    the libpython it links (Modules/config.c's inittab: Debian builds math, _struct, zlib … in).
    Streamed; the base list of slim.analyzers.python.resolver always counts."""
    from slim.analyzers.python.resolver import BUILTIN_MODULES

    names: set[str] = set(BUILTIN_MODULES)
    libs = [real, *ctx.fs.glob3(f"{prefix}/lib/lib{vx}*.so*"), *ctx.fs.glob3(f"/usr/lib/*/lib{vx}*.so*")]
    for path in dict.fromkeys(ctx.fs.realpath(p) for p in libs):
        try:
            with ctx.fs.open(path) as f:
                tail = b""
                while chunk := f.read(1 << 20):
                    names.update(m.decode() for m in _PYINIT.findall(tail + chunk))
                    tail = chunk[-64:]
        except (SlimError, OSError):
            continue
    return frozenset(names)


def _read_venv(ctx: AnalysisContext, interpreter: str, unknowns: list[Unknown],
               extra: list[Edge]) -> tuple[str, str, bool]:
    """(venv directory or "", its `home`, include-system-site-packages) of `interpreter`."""
    fs = ctx.fs
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
    return venv, home, system_site


def _site_dirs(ctx: AnalysisContext, venv: str, system_site: bool, prefix: str, vx: str) -> list[str]:
    """The site directories that exist in the image, in sys.path order (Lib/site.py)."""
    fs = ctx.fs
    env_vars = ctx.config.env_dict
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
    return site_dirs


def _process_pth_files(ctx: AnalysisContext, site_dirs: list[str], paths: list[str],
                       unknowns: list[Unknown]) -> list[str]:
    """Append the directories `.pth` files name to `paths`; return the `.pth` files read."""
    fs = ctx.fs
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
    return pth_files


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


__all__ = ["PythonEnv", "PythonState", "entry_interpreter", "env_for_file", "find_interpreter",
           "python_env"]
