"""Python interpreters of the image and the sys.path each computes.

sys.path is rebuilt the way CPython does it (Modules/getpath.py and Lib/site.py, 3.11), from
the IMAGE, never the host: PYTHONPATH from the image Env, `<prefix>/lib/pythonX.Y`,
`lib-dynload`, then site directories (python.org builds: `<prefix>/lib/pythonX.Y/site-packages`;
Debian's patched site.py: `/usr/local/lib/pythonX.Y/dist-packages`, `/usr/lib/python3/dist-packages`,
`/usr/lib/pythonX.Y/dist-packages`), a venv's `pyvenv.cfg`, the user site, and `.pth` files.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

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
        self.pkgdata_done: set[tuple[str, str]] = set()
        self.main_scripts: set[str] = set()
        self.main_dirs: list[str] = []

    def add_main_dir(self, d: str) -> None:
        if d not in self.main_dirs:
            self.main_dirs.append(d)


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
                     pth_files=tuple(pth_files), unknowns=tuple(unknowns), extra_edges=tuple(extra))


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


__all__ = ["PythonEnv", "PythonState", "find_interpreter", "python_env"]
