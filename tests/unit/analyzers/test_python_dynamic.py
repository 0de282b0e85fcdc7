"""Python in venvs and modules imported by name: console scripts, entry points, computed imports,
dotted names in strings and in extension modules, interpreters with built-in modules."""

from __future__ import annotations

import ast
from pathlib import Path

from slim.analyzers.python import PythonAnalyzer, python_env, python_roots
from slim.analyzers.python.env import env_for_file
from slim.analyzers.python.imports import literal_prefix
from slim.analyzers.script import ScriptAnalyzer
from slim.entrypoint import entry_roots
from slim.model import ROOT, Edge, Unknown
from tests.unit.analyzers.test_python import (
    ELF,
    PY_FILES,
    PY_LINKS,
    STD,
    closure,
    context,
    write_tree,
)

VENV = "/opt/venv"
VSITE = f"{VENV}/lib/python3.11/site-packages"
DEB = "/usr/lib/python3/dist-packages"

GUNICORN_SHIM = """#!/opt/venv/bin/python3
# -*- coding: utf-8 -*-
import re
import sys
from gunicorn.app.wsgiapp import run
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(run())
"""
EASY_INSTALL_SHIM = """#!/usr/bin/python3
# EASY-INSTALL-ENTRY-SCRIPT: 'supervisor==4.2.5','console_scripts','supervisord'
import re
import sys
try:
    from importlib.metadata import distribution
except ImportError:
    from pkg_resources import load_entry_point
if __name__ == '__main__':
    sys.exit(load_entry_point('supervisor==4.2.5', 'console_scripts', 'supervisord')())
"""

FILES: dict[str, str | bytes] = {
    **PY_FILES,
    f"{VENV}/pyvenv.cfg": "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.2\n",
    f"{VENV}/bin/gunicorn": GUNICORN_SHIM,
    f"{VENV}/bin/pip": "#!/opt/venv/bin/python3\nfrom pip._internal.cli.main import main\n",
    f"{VSITE}/gunicorn/__init__.py": "",
    f"{VSITE}/gunicorn/app/__init__.py": "",
    f"{VSITE}/gunicorn/app/wsgiapp.py": "from gunicorn import util\n\ndef run():\n    util.load('x')\n",
    # gunicorn's util.load_class: importlib.import_module(name) with a computed name, and a
    # table of worker classes named by strings
    f"{VSITE}/gunicorn/util.py": ("import importlib\n\nWORKERS = {'sync': 'gunicorn.workers.sync.SyncWorker'}\n"
                                 "# see 'other.lib.thing' in the docs\n\n"
                                 "def load(name):\n    return importlib.import_module(name)\n"),
    f"{VSITE}/gunicorn/workers/__init__.py": "",
    f"{VSITE}/gunicorn/workers/sync.py": "class SyncWorker: pass\n",
    f"{VSITE}/gunicorn/workers/gthread.py": "",
    f"{VSITE}/gunicorn/tests/test_x.py": "import pytest\n",
    f"{VSITE}/other/__init__.py": "",
    f"{VSITE}/other/lib.py": "",
    f"{VSITE}/pip/__init__.py": "",
    # numpy: a shim package importing by f-string prefix, an extension module naming modules
    f"{VSITE}/numpy/__init__.py": "from numpy._core import multiarray\nfrom numpy import compat\n",
    f"{VSITE}/numpy/_core/__init__.py": "from . import multiarray\n",
    f"{VSITE}/numpy/_core/multiarray.py": "from numpy._core._multiarray_umath import *\n",
    f"{VSITE}/numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so":
        ELF + b"\0numpy._core._exceptions\0numpy.dtypes.BoolDType\0xnumpy._core.nope\0",
    f"{VSITE}/numpy/_core/_exceptions.py": "",
    f"{VSITE}/numpy/_core/_unused.py": "",
    f"{VSITE}/numpy/dtypes.py": "",
    f"{VSITE}/numpy/compat/__init__.py": ("import importlib\n\ndef __getattr__(n):\n"
                                          "    return importlib.import_module(f'numpy.linalg.{n}')\n"),
    f"{VSITE}/numpy/linalg/__init__.py": "",
    f"{VSITE}/numpy/linalg/_umath_linalg.cpython-311-x86_64-linux-gnu.so": ELF,
    f"{VSITE}/numpy/fft/__init__.py": "",
    # the application, run by the venv's gunicorn
    "/app/mysite/__init__.py": "",
    "/app/mysite/settings.py": "INSTALLED_APPS = ['numpy.fft', 'mysite.urls']\nROOT_URLCONF = 'mysite.urls'\n",
    "/app/mysite/urls.py": "import numpy\n",
    # Debian's supervisor: an egg-info distribution and a setuptools console-script shim
    "/usr/bin/supervisord": EASY_INSTALL_SHIM,
    f"{DEB}/pkg_resources/__init__.py": "",
    f"{DEB}/supervisor/__init__.py": "",
    f"{DEB}/supervisor/supervisord.py": "from supervisor import options\n",
    f"{DEB}/supervisor/options.py": "",
    f"{DEB}/supervisor/version.txt": "4.2.5\n",
    f"{DEB}/supervisor-4.2.5.egg-info/PKG-INFO": "Name: supervisor\nVersion: 4.2.5\n",
    f"{DEB}/supervisor-4.2.5.egg-info/top_level.txt": "supervisor\n",
    f"{DEB}/supervisor-4.2.5.egg-info/entry_points.txt": (
        "[console_scripts]\nsupervisorctl = supervisor.supervisorctl:main\n"
        "supervisord = supervisor.supervisord:main\n"),
}
LINKS = {**PY_LINKS, f"{VENV}/bin/python3": "/usr/bin/python3", f"{VENV}/bin/python": "python3"}
CONFIG = {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "WorkingDir": "/app",
          "Entrypoint": [f"{VENV}/bin/gunicorn"], "Cmd": ["--chdir", "/app", "mysite.wsgi:application"]}


def test_app_files_use_the_venv_of_the_console_script(tmp_path: Path) -> None:
    write_tree(tmp_path, FILES, LINKS, CONFIG)
    with context(tmp_path) as ctx:
        env = env_for_file(ctx, "/app/mysite/urls.py")
        assert env is not None and env.interpreter == f"{VENV}/bin/python3"
        lib = env_for_file(ctx, f"{VSITE}/gunicorn/util.py")
        assert lib is not None and VSITE in lib.site_dirs
        system = env_for_file(ctx, f"{DEB}/supervisor/options.py")
        assert system is not None and DEB in system.site_dirs


def test_console_script_of_a_venv(tmp_path: Path) -> None:
    write_tree(tmp_path, FILES, LINKS, CONFIG)
    with context(tmp_path) as ctx:
        roots = entry_roots(ctx, [PythonAnalyzer(ctx), ScriptAnalyzer(ctx)])
        assert Edge(ROOT, f"{VENV}/bin/gunicorn", "entrypoint", f"argv[0] {VENV}/bin/gunicorn") in roots
        app = [Edge(ROOT, f"/app/mysite/{n}", "app", "") for n in ("settings.py", "urls.py")]
        keep, _edges, unknowns = closure(ctx, [*roots, *app], [PythonAnalyzer, ScriptAnalyzer])
    assert {f"{VENV}/pyvenv.cfg", f"{VSITE}/gunicorn/app/wsgiapp.py", f"{VSITE}/gunicorn/util.py",
            f"{VSITE}/numpy/__init__.py"} <= keep
    # strings naming modules: a library's own plugin table, the application's settings
    assert {f"{VSITE}/gunicorn/workers/sync.py", f"{VSITE}/numpy/fft/__init__.py"} <= keep
    assert f"{VSITE}/other/lib.py" not in keep  # another package named in a library: no edge
    assert f"{VSITE}/pip/__init__.py" not in keep  # pip is no import of anything kept
    # numpy: extension module strings, the f-string prefix numpy.linalg
    assert {f"{VSITE}/numpy/_core/_exceptions.py", f"{VSITE}/numpy/dtypes.py",
            f"{VSITE}/numpy/linalg/_umath_linalg.cpython-311-x86_64-linux-gnu.so"} <= keep
    assert f"{VSITE}/numpy/_core/_unused.py" not in keep
    # the computed import in gunicorn/util.py keeps every gunicorn module but its tests
    assert f"{VSITE}/gunicorn/workers/gthread.py" in keep
    assert f"{VSITE}/gunicorn/tests/test_x.py" not in keep
    reasons = [u.reason for u in unknowns if u.path == f"{VSITE}/gunicorn/util.py"]
    assert reasons == ["line 7: dynamic import: import_module() with a non-literal name; every module "
                       "of package gunicorn kept (7 files)"]
    compat = [u.reason for u in unknowns if u.path == f"{VSITE}/numpy/compat/__init__.py"]
    assert compat == ["line 4: dynamic import: import_module() with a non-literal name; every module "
                      "of package numpy.linalg kept (2 files)"]
    # (/app/app.py of the shared tree imports what this venv lacks: `--chdir /app` keeps /app)
    assert not [u for u in unknowns if "not found" in u.reason and u.path != "/app/app.py"], unknowns


def test_setuptools_entry_point_shim_and_egg_info(tmp_path: Path) -> None:
    write_tree(tmp_path, FILES, LINKS, {**CONFIG, "Entrypoint": ["/usr/bin/supervisord"], "Cmd": ["-n"]})
    with context(tmp_path) as ctx:
        roots = entry_roots(ctx, [PythonAnalyzer(ctx), ScriptAnalyzer(ctx)])
        keep, _edges, unknowns = closure(ctx, roots, [PythonAnalyzer, ScriptAnalyzer])
    assert {f"{DEB}/supervisor/supervisord.py", f"{DEB}/supervisor/options.py",
            f"{DEB}/supervisor/__init__.py", f"{DEB}/supervisor-4.2.5.egg-info/entry_points.txt",
            f"{DEB}/supervisor-4.2.5.egg-info/PKG-INFO",  # importlib.metadata reads it
            f"{DEB}/supervisor/version.txt"} <= keep  # package data of an egg-info distribution
    assert not [u for u in unknowns if "supervisor" in u.path], unknowns


def test_literal_prefix_of_computed_names() -> None:
    def prefix(expr: str) -> str:
        node = ast.parse(expr, mode="eval").body
        return literal_prefix(node)

    assert prefix("f'numpy._core.{name}'") == "numpy._core"
    assert prefix("'pkg.plugins.' + name") == "pkg.plugins"
    assert prefix("'pkg.backends.%s.base' % name") == "pkg.backends"
    assert prefix("'pkg.sub.{}'.format(x)") == "pkg.sub"
    assert prefix("name") == "" and prefix("'.' + name") == "" and prefix("f'{a}.{b}'") == ""


def test_builtin_modules_come_from_the_interpreter(tmp_path: Path) -> None:
    """Debian builds math, _struct … into python3.11: `import math` needs no file."""
    files = {**FILES, "/usr/bin/python3.11": ELF + b"\0PyInit_math\0PyInit__struct\0"}
    write_tree(tmp_path, files, LINKS, CONFIG)
    with context(tmp_path) as ctx:
        env = python_env(ctx, "/usr/bin/python3")
        assert env is not None and {"math", "_struct", "sys"} <= env.builtins
        from slim.analyzers.python import import_edges

        items = import_edges(ctx, env, "/app/x.py", "import math\nimport _struct\nimport cmath\n")
        assert [u.reason for u in items if isinstance(u, Unknown)] == [
            "line 3: import cmath: not found on sys.path"]
        assert STD in env.sys_path


def test_python2_fallbacks_in_import_error_handlers_are_optional(tmp_path: Path) -> None:
    write_tree(tmp_path, FILES, LINKS, CONFIG)
    source = ("try:\n    import xmlrpc.client as xmlrpclib\nexcept ImportError:\n    import xmlrpclib\n"
              "try:\n    import json\nexcept Exception:\n    import simplejson as json\n")
    with context(tmp_path) as ctx:
        env = python_env(ctx, "/usr/bin/python3")
        assert env is not None
        from slim.analyzers.python import import_edges

        items = import_edges(ctx, env, "/app/compat.py", source)
    assert not [u for u in items if isinstance(u, Unknown)], items
    assert f"{STD}/json/__init__.py" in {e.dst for e in items if isinstance(e, Edge)}


def test_dotted_names_in_prose_are_not_imports(tmp_path: Path) -> None:
    from slim.analyzers.python.dynamic import dotted_string_edges

    write_tree(tmp_path, FILES, LINKS, CONFIG)
    source = ('"""Workers: see \'gunicorn.workers.gthread\'."""\n'
              "# or 'gunicorn.workers.sync'\nDEFAULT = 'gunicorn.app.wsgiapp'\n")
    with context(tmp_path) as ctx:
        env = env_for_file(ctx, f"{VSITE}/gunicorn/config.py")
        assert env is not None
        edges = dotted_string_edges(ctx, env, f"{VSITE}/gunicorn/config.py", source, list(env.sys_path))
    assert {e.dst for e in edges} == {f"{VSITE}/gunicorn/app/wsgiapp.py"}
    assert edges[0].evidence.endswith(":3: module named by string 'gunicorn.app.wsgiapp'")



def test_a_stdlib_extension_without_import_functions_imports_nothing(tmp_path: Path) -> None:
    from tests.unit.analyzers.conftest import need_gcc, shlib

    need_gcc()
    dyn = f"{STD}/lib-dynload"
    files = dict(PY_FILES, **{"/app/a.py": "import _codec\n", "/app/b.py": "import _importer\n"})
    write_tree(tmp_path, files, PY_LINKS, {"Cmd": ["python3", "/app/a.py"]})
    # both spell "json": a method name in one, a module the other imports
    names = 'const char *names[] = {"json", "readline", 0};\n'
    shlib(tmp_path, f"{dyn}/_codec.cpython-311-x86_64-linux-gnu.so", "_codec.so", body=names)
    shlib(tmp_path, f"{dyn}/_importer.cpython-311-x86_64-linux-gnu.so", "_importer.so",
          body=names + "extern void *PyImport_ImportModule(const char *);\n"
                       "void *load(void) { return PyImport_ImportModule(names[0]); }\n")
    with context(tmp_path) as ctx:
        keep, _, _ = closure(ctx, python_roots(ctx, ["python3", "/app/a.py"]), [PythonAnalyzer])
    assert f"{dyn}/_codec.cpython-311-x86_64-linux-gnu.so" in keep
    assert f"{STD}/json/__init__.py" not in keep  # no import function: "json" names nothing
    with context(tmp_path) as ctx:
        keep, edges, _ = closure(ctx, python_roots(ctx, ["python3", "/app/b.py"]), [PythonAnalyzer])
    assert f"{STD}/json/__init__.py" in keep
    assert f"{dyn}/_importer.cpython-311-x86_64-linux-gnu.so" in {e.src for e in edges if e.dst == f"{STD}/json/__init__.py"}
