"""PythonAnalyzer and python_roots on a small fake Debian-style image built in a temp dir."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from slim.analyzers.base import AnalysisContext, AnalysisOptions, Analyzer
from slim.analyzers.python import PythonAnalyzer, python_env, python_roots, resolve_module
from slim.model import Edge, Unknown
from slim.pipeline import load_image
from tests.imagekit import write_tree

ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 57


@contextmanager
def context(root: Path, **options: object) -> Iterator[AnalysisContext]:
    with load_image(f"rootfs:{root}") as img:
        yield AnalysisContext(img.rootfs, img.image.config, options=AnalysisOptions(**options))  # type: ignore[arg-type]


def closure(ctx: AnalysisContext, roots: Iterable[Edge | Unknown],
            analyzers: list[Callable[[AnalysisContext], Analyzer]]) -> tuple[set[str], list[Edge], list[Unknown]]:
    """A minimal worklist like the pipeline's: offer every newly kept file to every analyzer,
    and ask them `at_fixpoint` whenever it runs dry."""
    instances = [a(ctx) for a in analyzers]
    edges: list[Edge] = []
    unknowns: list[Unknown] = []
    keep: set[str] = set()
    todo: list[Edge | Unknown] = list(roots)
    while todo:
        while todo:
            item = todo.pop()
            if isinstance(item, Unknown):
                unknowns.append(item)
                continue
            edges.append(item)
            if item.dst in keep:
                continue
            keep.add(item.dst)
            entry = ctx.fs.stat(item.dst)
            if entry is None or not entry.is_file:
                continue
            entry = ctx.fs.get(ctx.fs.realpath(item.dst)) or entry
            for a in instances:
                if a.wants(entry):
                    todo.extend(a.analyze(entry))
        todo = [item for a in instances for item in a.at_fixpoint(keep)]
    return keep, edges, unknowns


SITE = "/usr/lib/python3/dist-packages"
STD = "/usr/lib/python3.11"

PY_FILES: dict[str, str | bytes] = {
    "/usr/bin/python3.11": ELF,
    f"{STD}/os.py": "import abc\nimport posixpath\n",
    f"{STD}/abc.py": "",
    f"{STD}/posixpath.py": "import genericpath\n",
    f"{STD}/genericpath.py": "",
    f"{STD}/codecs.py": "",
    f"{STD}/io.py": "import abc\n",
    f"{STD}/site.py": "import os\nimport sys\n",
    f"{STD}/encodings/__init__.py": "import codecs\n",
    f"{STD}/encodings/utf_8.py": "import codecs\n",
    f"{STD}/encodings/latin_1.py": "import codecs\n",
    f"{STD}/json/__init__.py": "from .decoder import JSONDecoder\n",
    f"{STD}/json/decoder.py": "import re\n",
    f"{STD}/re.py": "",
    f"{STD}/unused.py": "",
    f"{STD}/importlib/__init__.py": "",
    f"{STD}/sqlite3/__init__.py": "from sqlite3.dbapi2 import *\n",
    f"{STD}/sqlite3/dbapi2.py": "from _sqlite3 import *\n",
    f"{STD}/lib-dynload/_sqlite3.cpython-311-x86_64-linux-gnu.so": ELF,
    # a distribution with RECORD: templates are package data
    f"{SITE}/webkit/__init__.py": "from webkit.render import render\n",
    f"{SITE}/webkit/render.py": (
        "import os\n\ndef render(n):\n"
        "    return open(os.path.join(os.path.dirname(__file__), 'templates', n)).read()\n"
    ),
    f"{SITE}/webkit/templates/index.html": "<html></html>",
    f"{SITE}/webkit/__pycache__/render.cpython-311.pyc": b"\x00" * 16,
    f"{SITE}/webkit/__pycache__/render.cpython-39.pyc": b"\x00" * 16,
    f"{SITE}/webkit-1.0.dist-info/RECORD": (
        "webkit/__init__.py,sha256=x,1\nwebkit/render.py,sha256=x,1\n"
        "webkit/templates/index.html,sha256=x,1\nwebkit-1.0.dist-info/METADATA,,\n"
        "../../../bin/webkit,,\n"
    ),
    f"{SITE}/webkit-1.0.dist-info/METADATA": "Name: webkit\n",
    # no RECORD (Debian-packaged): data read through importlib.resources
    f"{SITE}/certifi/__init__.py": "from .core import where\n",
    f"{SITE}/certifi/core.py": "from importlib.resources import files\n\ndef where():\n"
                               "    return files('certifi') / 'cacert.pem'\n",
    f"{SITE}/certifi/cacert.pem": "-----BEGIN CERTIFICATE-----\n",
    f"{SITE}/fastext.cpython-311-x86_64-linux-gnu.so": ELF,
    f"{SITE}/notused/__init__.py": "",
    f"{SITE}/nspkg/part/mod.py": "",
    f"{SITE}/extra.pth": "/opt/extra\nimport _virtualenv\n",
    "/opt/extra/extramod.py": "",
    # the application
    "/app/app.py": (
        "import importlib\nimport json\nimport webkit\nimport certifi\nimport fastext\n"
        "from helpers import util\nimport nspkg.part.mod\nimport extramod\n\n"
        "def handler():\n    import sqlite3\n    return sqlite3\n\n"
        "plugin = importlib.import_module('plugins.alpha')\n"
        "try:\n    import optional_thing\nexcept ImportError:\n    optional_thing = None\n"
        "name = 'x'\nmod = __import__(name)\n"
        "import missing_thing\n"
    ),
    "/app/helpers/__init__.py": "",
    "/app/helpers/util.py": "from . import sibling\nfrom .sibling import VALUE\n",
    "/app/helpers/sibling.py": "VALUE = 1\n",
    "/app/helpers/__pycache__/sibling.cpython-311.pyc": b"\x00" * 16,
    "/app/plugins/__init__.py": "",
    "/app/plugins/alpha.py": "",
    "/app/plugins/beta.py": "",
}
PY_LINKS = {"/usr/bin/python3": "python3.11"}
PY_CONFIG = {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "WorkingDir": "/app",
             "Cmd": ["python3", "app.py"]}


def test_sys_path_from_image(tmp_path: Path) -> None:
    write_tree(tmp_path, PY_FILES, PY_LINKS, {**PY_CONFIG, "Env": ["PYTHONPATH=/srv/lib"]})
    (tmp_path / "srv/lib").mkdir(parents=True)
    with context(tmp_path) as ctx:
        env = python_env(ctx)
        assert env is not None
        assert env.version == (3, 11)
        assert env.real == "/usr/bin/python3.11"
        assert env.sys_path[:3] == ("/srv/lib", STD, f"{STD}/lib-dynload")
        assert SITE in env.sys_path and "/opt/extra" in env.sys_path
        assert any("_virtualenv" in u.reason for u in env.unknowns)
        chain = resolve_module(ctx, env, "nspkg.part.mod")
        assert chain is not None and chain[0].kind == "namespace"
        assert chain[-1].path == f"{SITE}/nspkg/part/mod.py"
        assert resolve_module(ctx, env, "sys")[0].kind == "builtin"  # type: ignore[index]
        assert resolve_module(ctx, env, "nope") is None


def test_closure_of_python_app(tmp_path: Path) -> None:
    write_tree(tmp_path, PY_FILES, PY_LINKS, PY_CONFIG)
    with context(tmp_path) as ctx:
        roots = python_roots(ctx, ["python3", "app.py"])
        keep, edges, unknowns = closure(ctx, roots, [PythonAnalyzer])
    expected = {
        "/app/app.py",
        f"{STD}/json/__init__.py", f"{STD}/json/decoder.py",  # relative import inside stdlib
        f"{STD}/sqlite3/__init__.py", f"{STD}/sqlite3/dbapi2.py",  # lazy import in a function
        f"{STD}/lib-dynload/_sqlite3.cpython-311-x86_64-linux-gnu.so",  # extension module
        f"{STD}/encodings/latin_1.py", f"{STD}/site.py", f"{STD}/os.py",  # startup set
        f"{SITE}/webkit/render.py", f"{SITE}/webkit/templates/index.html",  # RECORD data
        f"{SITE}/webkit-1.0.dist-info/METADATA",
        f"{SITE}/webkit/__pycache__/render.cpython-311.pyc",  # cache kept with its source
        f"{SITE}/certifi/cacert.pem",  # package dir data (no RECORD)
        f"{SITE}/fastext.cpython-311-x86_64-linux-gnu.so",
        f"{SITE}/nspkg/part/mod.py", f"{SITE}/extra.pth", "/opt/extra/extramod.py",
        "/app/helpers/__init__.py", "/app/helpers/util.py", "/app/helpers/sibling.py",
        "/app/helpers/__pycache__/sibling.cpython-311.pyc",
        "/app/plugins/__init__.py", "/app/plugins/alpha.py",  # importlib literal
    }
    assert expected <= keep, sorted(expected - keep)
    for dropped in (f"{STD}/unused.py", f"{SITE}/notused/__init__.py", "/app/plugins/beta.py",
                    f"{SITE}/webkit/__pycache__/render.cpython-39.pyc"):
        assert dropped not in keep
    reasons = " ".join(u.reason for u in unknowns if u.path == "/app/app.py")
    assert "missing_thing" in reasons and "line 21" in reasons
    assert "non-literal" in reasons
    assert "optional_thing" not in reasons  # guarded by except ImportError
    ev = [e for e in edges if e.dst == f"{STD}/sqlite3/__init__.py" and e.src == "/app/app.py"]
    assert ev and "app.py:11" in ev[0].evidence


def test_dash_m_and_shebang_script(tmp_path: Path) -> None:
    files = dict(PY_FILES)
    files[f"{STD}/http/__init__.py"] = ""
    files[f"{STD}/http/server.py"] = "import json\n"
    files["/usr/local/bin/tool"] = "#!/usr/bin/python3\nfrom webkit.render import render\n"
    write_tree(tmp_path, files, PY_LINKS, PY_CONFIG)
    with context(tmp_path) as ctx:
        keep, _, _ = closure(ctx, python_roots(ctx, ["/usr/bin/python3", "-u", "-m", "http.server"]),
                             [PythonAnalyzer])
        assert {f"{STD}/http/__init__.py", f"{STD}/http/server.py", f"{STD}/json/decoder.py"} <= keep
        analyzer = PythonAnalyzer(ctx)
        entry = ctx.fs.get("/usr/local/bin/tool")
        assert entry is not None and analyzer.wants(entry)
        dsts = {e.dst for e in analyzer.analyze(entry) if isinstance(e, Edge)}
        assert f"{SITE}/webkit/render.py" in dsts and f"{SITE}/webkit/__init__.py" in dsts
        assert python_roots(ctx, ["/bin/sh", "-c", "true"]) == []


def test_syntax_error_is_unknown(tmp_path: Path) -> None:
    files = dict(PY_FILES)
    files["/app/app.py"] = "import os\ndef broken(:\n    import json\n"
    write_tree(tmp_path, files, PY_LINKS, PY_CONFIG)
    with context(tmp_path) as ctx:
        entry = ctx.fs.get("/app/app.py")
        assert entry is not None
        out = list(PythonAnalyzer(ctx).analyze(entry))
    assert any(isinstance(u, Unknown) and "not parseable" in u.reason for u in out)


def test_platform_branches_main_guard_and_pth_imports(tmp_path: Path) -> None:
    import ast

    from slim.analyzers.python import scan_imports

    src = ("import sys, os\nif sys.platform == 'win32':\n    import winonly\nelse:\n    import posixonly\n"
           "if os.name != 'nt':\n    import alsoposix\nif TYPE_CHECKING:\n    import typesonly\n"
           "if __name__ == '__main__':\n    import selftest\nimport os.path\n")
    refs = {r.module: r for r in scan_imports(ast.parse(src))}
    assert "winonly" not in refs and "typesonly" not in refs
    assert {"posixonly", "alsoposix", "os.path"} <= set(refs)
    assert refs["selftest"].main_only and not refs["posixonly"].main_only

    files = dict(PY_FILES)
    files[f"{SITE}/extra.pth"] = "import _hack; __import__('_hack').install()\n"
    files[f"{SITE}/_hack/__init__.py"] = ""
    files[f"{SITE}/lib_mod.py"] = "if __name__ == '__main__':\n    import doctest_like\nimport os.path\n"
    files["/app/app.py"] = "import lib_mod\nif __name__ == '__main__':\n    import json\n"
    write_tree(tmp_path, files, PY_LINKS, PY_CONFIG)
    with context(tmp_path) as ctx:
        keep, _, unknowns = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer])
    assert f"{SITE}/_hack/__init__.py" in keep  # literal import executed by a .pth line
    assert f"{STD}/json/__init__.py" in keep  # the entry script IS __main__
    assert not any("os.path" in u.reason or "doctest_like" in u.reason for u in unknowns)
    assert any(u.path == f"{SITE}/extra.pth" and "executes code" in u.reason for u in unknowns)


def test_main_guard_of_app_script_without_shared_roots_context(tmp_path: Path) -> None:
    files = dict(PY_FILES)
    files["/app/app.py"] = "if __name__ == '__main__':\n    from helpers import util\n"
    write_tree(tmp_path, files, PY_LINKS, PY_CONFIG)
    with context(tmp_path) as ctx:  # no python_roots call: nothing recorded in ctx.cache
        out = PythonAnalyzer(ctx).analyze(ctx.fs.get("/app/app.py"))  # type: ignore[arg-type]
        dsts = {e.dst for e in out if isinstance(e, Edge)}
        assert "/app/helpers/util.py" in dsts
        code = python_roots(ctx, ["python3", "-c", "import json"])
        assert f"{STD}/json/__init__.py" in {e.dst for e in code if isinstance(e, Edge)}


def test_venv_sys_path(tmp_path: Path) -> None:
    files = dict(PY_FILES)
    files["/opt/venv/pyvenv.cfg"] = "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.2\n"
    files["/opt/venv/lib/python3.11/site-packages/flask/__init__.py"] = "import webkit\n"
    links = {**PY_LINKS, "/opt/venv/bin/python": "/usr/bin/python3.11"}
    write_tree(tmp_path, files, links, {**PY_CONFIG, "Cmd": ["/opt/venv/bin/python", "app.py"]})
    with context(tmp_path) as ctx:
        env = python_env(ctx, "/opt/venv/bin/python")
        assert env is not None and env.stdlib == STD
        assert env.site_dirs == ("/opt/venv/lib/python3.11/site-packages",)  # system site excluded
        roots = python_roots(ctx, list(ctx.config.argv))
        assert any(isinstance(e, Edge) and e.dst == "/opt/venv/pyvenv.cfg" for e in roots)
        assert resolve_module(ctx, env, "flask") is not None
        assert resolve_module(ctx, env, "webkit") is None


def test_stdlib_extension_modules_import_through_the_c_api(tmp_path: Path) -> None:
    dyn = f"{STD}/lib-dynload"
    files = dict(PY_FILES)
    # _ssl imports the _socket capsule; _json imports json.decoder; other strings name nothing
    files[f"{dyn}/_ssl.cpython-311-x86_64-linux-gnu.so"] = ELF + b"\x00_socket.CAPI\x00ssl\x00" \
        b"json\x00not_a_module\x00_ssl\x00"
    files[f"{dyn}/_socket.cpython-311-x86_64-linux-gnu.so"] = ELF
    files[f"{dyn}/_nis.cpython-311-x86_64-linux-gnu.so"] = ELF  # imported by nothing
    files["/app/app.py"] = "import _ssl\n"
    write_tree(tmp_path, files, PY_LINKS, PY_CONFIG)
    with context(tmp_path) as ctx:
        keep, edges, _ = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer])
    assert f"{dyn}/_ssl.cpython-311-x86_64-linux-gnu.so" in keep
    assert f"{dyn}/_socket.cpython-311-x86_64-linux-gnu.so" in keep  # the capsule's module
    assert f"{STD}/json/__init__.py" in keep
    assert f"{dyn}/_nis.cpython-311-x86_64-linux-gnu.so" not in keep
    ev = [e.evidence for e in edges if e.dst.endswith("_socket.cpython-311-x86_64-linux-gnu.so")]
    assert ev == ["extension module imports '_socket' (C API)"]


def test_distutils_hack_keeps_setuptools_only_for_distutils_users(tmp_path: Path) -> None:
    hack = ("import sys\nimport os\n\ndef ensure_local_distutils():\n    import importlib\n"
            "    importlib.import_module('distutils')\n    core = importlib.import_module('distutils.core')\n\n"
            "class DistutilsMetaFinder:\n"
            "    def spec_for_distutils(self):\n        import importlib\n"
            "        try:\n            mod = importlib.import_module('setuptools._distutils')\n"
            "        except Exception:\n            return\n")
    files = dict(PY_FILES)
    files[f"{SITE}/distutils-precedence.pth"] = (
        "import os; var = 'SETUPTOOLS_USE_DISTUTILS'; enabled = os.environ.get(var, 'local') == 'local'; "
        "enabled and __import__('_distutils_hack').add_shim(); \n")
    files[f"{SITE}/_distutils_hack/__init__.py"] = hack
    files[f"{SITE}/setuptools/__init__.py"] = "import setuptools.dist\n"
    files[f"{SITE}/setuptools/dist.py"] = ""
    files[f"{SITE}/setuptools/_distutils/__init__.py"] = ""
    files[f"{SITE}/setuptools/_distutils/core.py"] = ""
    files[f"{SITE}/setuptools/cli-arm64.exe"] = b"MZ"  # data of the setuptools package
    files[f"{SITE}/setuptools-66.1.1.dist-info/RECORD"] = (
        "_distutils_hack/__init__.py,,\nsetuptools/__init__.py,,\nsetuptools/cli-arm64.exe,,\n"
        "distutils-precedence.pth,,\nsetuptools-66.1.1.dist-info/METADATA,,\n")
    files[f"{SITE}/setuptools-66.1.1.dist-info/METADATA"] = "Name: setuptools\n"
    files[f"{STD}/distutils/__init__.py"] = ""
    files[f"{STD}/distutils/core.py"] = ""
    # translations: the compiled catalog is data, its source is not
    files[f"{SITE}/webkit/locale/de/LC_MESSAGES/django.mo"] = b"\xde\x12\x04\x95"
    files[f"{SITE}/webkit/locale/de/LC_MESSAGES/django.po"] = 'msgid "x"\n'
    files[f"{SITE}/webkit-1.0.dist-info/RECORD"] = str(files[f"{SITE}/webkit-1.0.dist-info/RECORD"]) + (
        "webkit/locale/de/LC_MESSAGES/django.mo,,\nwebkit/locale/de/LC_MESSAGES/django.po,,\n")
    files["/app/app.py"] = "import webkit\n"
    write_tree(tmp_path / "plain", files, PY_LINKS, PY_CONFIG)
    with context(tmp_path / "plain") as ctx:
        keep, _, _ = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer])
    assert f"{SITE}/_distutils_hack/__init__.py" in keep
    # the hack's distribution is setuptools': its metadata comes along, not setuptools' data
    assert f"{SITE}/setuptools-66.1.1.dist-info/METADATA" in keep
    assert not any(p.startswith(f"{SITE}/setuptools/") for p in keep)
    assert f"{SITE}/webkit/locale/de/LC_MESSAGES/django.mo" in keep
    assert f"{SITE}/webkit/locale/de/LC_MESSAGES/django.po" not in keep

    files["/app/app.py"] = "import webkit\nfrom distutils.core import setup\n"
    write_tree(tmp_path / "uses", files, PY_LINKS, PY_CONFIG)
    with context(tmp_path / "uses") as ctx:
        keep, edges, _ = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer])
    assert {f"{SITE}/setuptools/__init__.py", f"{SITE}/setuptools/dist.py", f"{SITE}/setuptools/cli-arm64.exe",
            f"{SITE}/setuptools/_distutils/core.py", f"{STD}/distutils/core.py"} <= keep
    assert any("_distutils_hack" in e.evidence for e in edges if e.dst.endswith("_distutils/core.py"))


def test_packages_enumerated_by_pkgutil_or_named_by_the_app_keep_their_modules(tmp_path: Path) -> None:
    files = dict(PY_FILES)
    # Django's template engine: walk_packages over a package named by string, import_module each
    files[f"{SITE}/webkit/template/__init__.py"] = ""
    files[f"{SITE}/webkit/template/engine.py"] = (
        "from importlib import import_module\nfrom pkgutil import walk_packages\n\n"
        "def libraries():\n    pkg = import_module('webkit.tags')\n"
        "    for entry in walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        import_module(entry[1])\n")
    files[f"{SITE}/webkit/__init__.py"] = "from webkit.render import render\nimport webkit.template.engine\n"
    files[f"{SITE}/webkit/tags/__init__.py"] = ""
    files[f"{SITE}/webkit/tags/static.py"] = ""
    files[f"{SITE}/webkit/tags/i18n.py"] = ""
    files[f"{SITE}/webkit/contrib/__init__.py"] = ""
    files[f"{SITE}/webkit/contrib/humanize/__init__.py"] = ""
    files[f"{SITE}/webkit/contrib/humanize/templatetags/__init__.py"] = ""
    files[f"{SITE}/webkit/contrib/humanize/templatetags/humanize.py"] = ""
    files[f"{SITE}/webkit/contrib/admin/__init__.py"] = ""
    files[f"{SITE}/webkit/contrib/admin/models.py"] = ""
    files["/app/app.py"] = "import webkit\nINSTALLED_APPS = ['webkit.contrib.humanize']\n"
    write_tree(tmp_path, files, PY_LINKS, PY_CONFIG)
    with context(tmp_path) as ctx:
        keep, edges, _ = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer])
    assert {f"{SITE}/webkit/tags/static.py", f"{SITE}/webkit/tags/i18n.py"} <= keep
    assert f"{SITE}/webkit/contrib/humanize/templatetags/humanize.py" in keep
    assert f"{SITE}/webkit/contrib/admin/models.py" not in keep  # named by nothing
    ev = {e.evidence for e in edges if e.dst == f"{SITE}/webkit/tags/i18n.py"}
    assert any("pkgutil" in x for x in ev)


def test_help_at_the_prompt_does_not_keep_pydoc(tmp_path: Path) -> None:
    files = dict(PY_FILES)
    files[f"{STD}/_sitebuiltins.py"] = "import sys\n\nclass _Helper:\n    def __call__(self):\n        import pydoc\n"
    # the stdlib's own test-suite helpers: multiprocessing.util._cleanup_tests
    files[f"{STD}/json/decoder.py"] = "import re\n\ndef _cleanup_tests():\n    from test import support\n"
    files[f"{STD}/test/__init__.py"] = ""
    files[f"{STD}/test/support/__init__.py"] = "from test import regrtest\n"
    files[f"{STD}/test/regrtest.py"] = ""
    files[f"{STD}/pydoc.py"] = "import pydoc_data.topics\n"
    files[f"{STD}/pydoc_data/__init__.py"] = ""
    files[f"{STD}/pydoc_data/topics.py"] = ""
    write_tree(tmp_path / "plain", files, PY_LINKS, PY_CONFIG)
    with context(tmp_path / "plain") as ctx:
        keep, _, _ = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer])
    assert f"{STD}/_sitebuiltins.py" in keep and f"{STD}/pydoc.py" not in keep
    assert f"{STD}/json/decoder.py" in keep and f"{STD}/test/support/__init__.py" not in keep
    files["/app/app.py"] = "import pydoc\nfrom test import support\n"  # a program's own imports count
    write_tree(tmp_path / "uses", files, PY_LINKS, PY_CONFIG)
    with context(tmp_path / "uses") as ctx:
        keep, _, _ = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer])
    assert {f"{STD}/pydoc.py", f"{STD}/pydoc_data/topics.py"} <= keep
    # …and the test package's imports of itself are followed
    assert {f"{STD}/test/support/__init__.py", f"{STD}/test/regrtest.py"} <= keep
    # pydoc's Helper imports the topics inside `try: … except ImportError:` (Lib/pydoc.py):
    # without them help("if") says the documentation is not available
    files[f"{STD}/pydoc.py"] = ("import sys\n\nclass Helper:\n    def _gettopic(self, topic):\n"
                                "        try:\n            import pydoc_data.topics\n"
                                "        except ImportError:\n            return 'not available'\n")
    write_tree(tmp_path / "guarded", files, PY_LINKS, PY_CONFIG)
    with context(tmp_path / "guarded") as ctx:
        keep, _, _ = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer])
    assert f"{STD}/pydoc.py" in keep
    assert not keep & {f"{STD}/pydoc_data/__init__.py", f"{STD}/pydoc_data/topics.py"}


LAZY_INIT = (
    "import sys\nfrom ._core import array\n\nif sys.flags.optimize > 9:\n    pass\nelse:\n"  # numpy's layout
    "  def __getattr__(attr):\n"
    "    \"\"\"Lazy submodules (PEP 562), e.g. `np.testing`.\"\"\"\n"
    "    if attr == 'testing':\n        import numlike.testing as testing\n        return testing\n"
    "    elif attr in ('distutils', 'f2py'):\n        from . import distutils\n        return distutils\n"
    "    import numlike.always\n    raise AttributeError(attr)\n")


def _lazy_files(app: str) -> dict[str, str | bytes]:
    files = dict(PY_FILES)
    files.update({f"{SITE}/numlike/__init__.py": LAZY_INIT, f"{SITE}/numlike/_core.py": "",
                  f"{SITE}/numlike/always.py": "", f"{SITE}/numlike/testing/__init__.py": "import unittest\n",
                  f"{SITE}/numlike/distutils.py": "", f"{STD}/unittest/__init__.py": "",
                  "/app/app.py": app})
    return files


def test_lazy_module_attributes_are_kept_only_when_kept_code_names_them(tmp_path: Path) -> None:
    def kept(name: str, app: str) -> tuple[set[str], list[Edge]]:
        write_tree(tmp_path / name, _lazy_files(app), PY_LINKS, PY_CONFIG)
        with context(tmp_path / name) as ctx:
            keep, edges, _ = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer])
        return keep, edges

    testing, dist = f"{SITE}/numlike/testing/__init__.py", f"{SITE}/numlike/distutils.py"
    # the app only uses the array: neither lazy submodule; the unconditional one is kept
    keep, _ = kept("plain", "import numlike, sys\nx = numlike.array([1])\n# numlike.testing in a comment\n"
                            "y = 'testing' in sys.modules\n")
    assert f"{SITE}/numlike/always.py" in keep and testing not in keep and dist not in keep
    assert f"{STD}/unittest/__init__.py" not in keep
    # attribute access, an import line and a string each name it
    keep, edges = kept("attr", "import numlike as np\nnp.testing.assert_equal(1, 1)\n")
    assert {testing, f"{STD}/unittest/__init__.py"} <= keep and dist not in keep
    assert any("PEP 562" in e.evidence and "/app/app.py names testing" in e.evidence
               for e in edges if e.dst == testing)
    keep, _ = kept("from", "from numlike import array, f2py\n")
    assert dist in keep and testing not in keep
    keep, _ = kept("string", "import numlike\nm = getattr(numlike, 'distutils')\n")
    assert dist in keep
    # a star import asks the module for every name of its __all__: every lazy one is kept
    keep, _ = kept("star", "from numlike import *\n")
    assert {dist, testing} <= keep
    keep, _ = kept("star-tab", "def f(*args):\n    pass\nfrom  numlike  import\t*\n")
    assert {dist, testing} <= keep
    # named by a library the app imports (found at the fixpoint, whatever the visiting order)
    files = _lazy_files("import helper_lib\n")
    files[f"{SITE}/helper_lib.py"] = "import numlike\ndef check(a):\n    return numlike.testing.ok(a)\n"
    write_tree(tmp_path / "lib", files, PY_LINKS, PY_CONFIG)
    with context(tmp_path / "lib") as ctx:
        keep, _, _ = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer])
    assert testing in keep


def test_parsing_ahead_in_a_worker_finds_what_parsing_in_the_process_finds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from slim.analyzers.base import Parses

    write_tree(tmp_path, PY_FILES, PY_LINKS, PY_CONFIG)
    monkeypatch.setenv("SLIM_NO_CACHE", "1")
    found = {}
    for workers in ("0", "1"):
        monkeypatch.setenv("SLIM_PARSE_WORKERS", workers)
        with context(tmp_path) as ctx:
            keep, edges, unknowns = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer])
            parses = ctx.service(Parses)
            parses.flush()
        found[workers] = (keep, sorted(edges), sorted(unknowns), parses.from_workers)
    assert found["0"][:3] == found["1"][:3]
    assert found["0"][3] == 0 and found["1"][3] > 0  # the worker parsed some modules


def test_sources_kept_other_than_by_an_import_are_parsed_ahead_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The interpreter's startup set and dotted names in strings (and package data, enclosing
    packages) reach sources no import statement names; they are handed to the parse workers when found,
    not parsed in the process when the worklist reaches them."""
    import slim.analyzers.python as python_pkg
    import slim.analyzers.python.imports as imports_mod

    named = "HANDLER = 'plugins.beta'\n"  # a module named in a string (a Django setting's way)
    write_tree(tmp_path, {**PY_FILES, "/app/app.py": named + str(PY_FILES["/app/app.py"])}, PY_LINKS, PY_CONFIG)
    monkeypatch.setenv("SLIM_NO_CACHE", "1")
    monkeypatch.setenv("SLIM_PARSE_WORKERS", "1")
    handed: set[str] = set()
    original = python_pkg.scan_ahead

    def recording(ctx: AnalysisContext, env: object, paths: Iterable[str]) -> None:
        paths = list(paths)
        handed.update(paths)
        original(ctx, env, paths)  # type: ignore[arg-type]

    monkeypatch.setattr(python_pkg, "scan_ahead", recording)
    monkeypatch.setattr(imports_mod, "scan_ahead", recording)  # the startup set is handed there
    with context(tmp_path) as ctx:
        keep, _edges, _unknowns = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer])
        from slim.analyzers.base import Parses

        ctx.service(Parses).flush()
    assert {f"{STD}/site.py", f"{STD}/encodings/latin_1.py"} <= handed  # the startup set
    assert "/app/plugins/beta.py" in handed  # kept for the string, which no import statement names
    assert handed <= keep


def test_startup_keeps_site_dirs_and_the_bytecode_beside_a_linked_module(tmp_path: Path) -> None:
    """What the original's start stats and the minimal image must have too (else verification
    sees missing-file events): every existing site directory, even empty, and the .pyc of a
    startup module next to the name imported, not next to its symlink's target."""
    files = dict(PY_FILES)
    files["/etc/python3.11/sitecustomize.py"] = "import os\n"
    files[f"{STD}/__pycache__/sitecustomize.cpython-311.pyc"] = b"\x00" * 16
    files["/usr/local/lib/python3.11/dist-packages/.keep"] = ""
    links = {**PY_LINKS, f"{STD}/sitecustomize.py": "/etc/python3.11/sitecustomize.py"}
    write_tree(tmp_path, files, links, PY_CONFIG)
    (tmp_path / "usr/local/lib/python3.11/dist-packages/.keep").unlink()  # an empty site dir
    with context(tmp_path) as ctx:
        keep, _, _ = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer])
    assert f"{STD}/__pycache__/sitecustomize.cpython-311.pyc" in keep
    assert {"/usr/local/lib/python3.11/dist-packages", SITE} <= keep


def test_an_import_alias_is_not_a_use_of_a_lazy_attribute() -> None:
    from slim.analyzers.python.imports import _uses, _uses_patterns

    patterns = _uses_patterns(["ma"])
    for line in ("import numpy._core.multiarray as ma",  # binds a name, asks nothing
                 "reimport(ma)", "x = ma + 1", "'ma' in sys.modules"):
        assert not list(_uses(patterns, line)), line
    for line in ("from numpy import ma", "from numpy import ma as m", "x = np.ma.array(1)",
                 'getattr(np, "ma")', "reimport(x); import numpy.ma", "x = (np.\n     ma)"):
        assert list(_uses(patterns, line)), line


def test_test_suite_data_comes_only_with_a_kept_module_of_its_test_directory(tmp_path: Path) -> None:
    files = dict(PY_FILES)
    data = {f"{SITE}/webkit/tests/data/sample.json": "{}", f"{SITE}/webkit/core/tests/big.csv": "a,b\n",
            f"{SITE}/certifi/tests/fixture.pem": "x"}  # with RECORD, and a package without one
    files.update(data)
    files[f"{SITE}/webkit/tests/__init__.py"] = ""
    files[f"{SITE}/webkit/tests/test_render.py"] = "import os\n"
    files[f"{SITE}/webkit/core/__init__.py"] = ""
    files[f"{SITE}/webkit/core/tests/test_core.py"] = ""
    files[f"{SITE}/webkit-1.0.dist-info/RECORD"] += "".join(
        f"{p[len(SITE) + 1:]},sha256=x,1\n" for p in [*data, f"{SITE}/webkit/tests/test_render.py"]
        if p.startswith(f"{SITE}/webkit/"))
    write_tree(tmp_path / "app", files, PY_LINKS, PY_CONFIG)
    with context(tmp_path / "app") as ctx:
        keep, _, _ = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer])
    assert {f"{SITE}/webkit/templates/index.html", f"{SITE}/certifi/cacert.pem"} <= keep
    assert not keep & set(data)
    files["/app/app.py"] = "import webkit.tests.test_render\n" + files["/app/app.py"]
    write_tree(tmp_path / "tests", files, PY_LINKS, PY_CONFIG)
    with context(tmp_path / "tests") as ctx:
        keep, edges, _ = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer])
    assert f"{SITE}/webkit/tests/data/sample.json" in keep  # its test module is kept
    assert not keep & {f"{SITE}/webkit/core/tests/big.csv", f"{SITE}/certifi/tests/fixture.pem"}
    assert [e.src for e in edges if e.dst == f"{SITE}/webkit/tests/data/sample.json"] == [
        f"{SITE}/webkit/tests/test_render.py"]


@pytest.mark.parametrize(("app", "kept"), [
    ("import pdb\n", False),  # site's interactive hook and pdb guard it and go on without it
    ("import pdb\nimport readline\n", True),  # the program's own, unguarded
    ("import pdb\ntry:\n    import readline\nexcept ImportError:\n    sys.exit('needs readline')\n", True),
    ("import pdb\ntry:\n    def f():\n        import readline\nexcept ImportError:\n    pass\n", True),
])
def test_readline_is_kept_only_where_the_code_needs_it(tmp_path: Path, app: str, kept: bool) -> None:
    files = dict(PY_FILES)
    rl = f"{STD}/lib-dynload/readline.cpython-311-x86_64-linux-gnu.so"
    files[rl] = ELF
    files[f"{STD}/site.py"] = ("import os\nimport sys\n\ndef enablerlcompleter():\n    def register_readline():\n"
                               "        try:\n            import readline\n            import rlcompleter\n"
                               "        except ImportError:\n            return\n"
                               "    sys.__interactivehook__ = register_readline\n")
    files[f"{STD}/rlcompleter.py"] = ""
    files[f"{STD}/pdb.py"] = ("import os\n\nclass Pdb:\n    def __init__(self):\n        try:\n"
                              "            import readline\n            readline.set_completer_delims(' ')\n"
                              "        except ImportError:\n            pass\n")
    files["/app/app.py"] = app
    write_tree(tmp_path, files, PY_LINKS, PY_CONFIG)
    with context(tmp_path) as ctx:
        keep, _, _ = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer])
    assert f"{STD}/pdb.py" in keep and f"{STD}/site.py" in keep
    assert (rl in keep) is kept
    assert f"{STD}/rlcompleter.py" in keep  # not a terminal-only module itself: followed as before


def test_the_bytecode_of_modules_the_interpreter_freezes_is_not_kept(tmp_path: Path) -> None:
    files = dict(PY_FILES)
    frozen = [f"{STD}/__pycache__/os.cpython-311.pyc", f"{STD}/__pycache__/site.cpython-311.pyc"]
    files.update({p: b"\x00" * 16 for p in [*frozen, f"{STD}/json/__pycache__/decoder.cpython-311.pyc"]})
    write_tree(tmp_path, files, PY_LINKS, PY_CONFIG)
    with context(tmp_path) as ctx:
        keep, _, _ = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer])
    assert {f"{STD}/os.py", f"{STD}/site.py", f"{STD}/json/__pycache__/decoder.cpython-311.pyc"} <= keep
    assert not keep & set(frozen)  # Python 3.11 runs os and site from its frozen copies
