"""Django settings that prove what Django never loads (slim.analyzers.python.django): message
catalogs with USE_I18N = False, database backends other than the configured ENGINEs, the
static files, templates and catalogs of contrib apps INSTALLED_APPS does not name."""

from __future__ import annotations

from pathlib import Path

import pytest

from slim.analyzers.python import PythonAnalyzer
from slim.analyzers.python.django import settings_of
from slim.analyzers.script import ScriptAnalyzer
from slim.entrypoint import entry_roots
from tests.unit.analyzers.test_python import PY_FILES, PY_LINKS, closure, context, write_tree
from tests.unit.analyzers.test_python_dynamic import GUNICORN_SHIM

VENV = "/opt/venv"
VSITE = f"{VENV}/lib/python3.11/site-packages"
DJ = f"{VSITE}/django"
CATALOG = f"{DJ}/conf/locale/de/LC_MESSAGES/django.mo"
ADMIN_CATALOG = f"{DJ}/contrib/admin/locale/fr/LC_MESSAGES/django.mo"
STATIC = f"{DJ}/contrib/admin/static/admin/css/base.css"
LOAD_BACKEND = '''from importlib import import_module


def load_backend(backend_name):
    return import_module("%s.base" % backend_name)
'''
DJANGO = {
    f"{DJ}/__init__.py": "",
    f"{DJ}/db/__init__.py": "from django.db.utils import load_backend\n",
    f"{DJ}/db/utils.py": LOAD_BACKEND,
    f"{DJ}/db/backends/__init__.py": "",
    **{f"{DJ}/db/backends/{b}/{m}.py": "" for b in ("dummy", "sqlite3", "postgresql")
       for m in ("__init__", "base")},
    CATALOG: b"\xde\x12\x04\x95catalog",
    ADMIN_CATALOG: b"\xde\x12\x04\x95catalog",
    STATIC: "body {}",
}
RECORD = "".join(f"{p[len(VSITE) + 1:]},,\n" for p in DJANGO)
WSGI = 'import os\nimport django.db\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")\n'
CONFIG = {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "WorkingDir": "/app",
          "Entrypoint": [f"{VENV}/bin/gunicorn"], "Cmd": ["--chdir", "/app", "mysite.wsgi:application"]}


def _image(tmp_path: Path, settings: str, extra: dict[str, str] | None = None,
           config: dict | None = None) -> None:
    files: dict[str, str | bytes] = {
        **PY_FILES, **DJANGO,
        f"{VENV}/pyvenv.cfg": "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.2\n",
        f"{VENV}/bin/gunicorn": GUNICORN_SHIM,
        f"{VSITE}/gunicorn/__init__.py": "",
        f"{VSITE}/gunicorn/app/__init__.py": "",
        f"{VSITE}/gunicorn/app/wsgiapp.py": "import mysite.wsgi\n\ndef run():\n    pass\n",
        f"{VSITE}/django-5.2.dist-info/RECORD": RECORD,
        f"{VSITE}/django-5.2.dist-info/METADATA": "Name: Django\n",
        "/app/mysite/__init__.py": "",
        "/app/mysite/wsgi.py": WSGI,
        "/app/mysite/settings.py": settings,
        **(extra or {}),
    }
    links = {**PY_LINKS, f"{VENV}/bin/python3": "/usr/bin/python3", f"{VENV}/bin/python": "python3"}
    write_tree(tmp_path, files, links, config or CONFIG)


def _kept(tmp_path: Path) -> set[str]:
    with context(tmp_path) as ctx:
        roots = entry_roots(ctx, [PythonAnalyzer(ctx), ScriptAnalyzer(ctx)])
        keep, _edges, _unknowns = closure(ctx, roots, [PythonAnalyzer, ScriptAnalyzer])
    return keep


def _backends(keep: set[str]) -> set[str]:
    return {b for b in ("dummy", "sqlite3", "postgresql") if f"{DJ}/db/backends/{b}/base.py" in keep}


PROVEN = "USE_I18N = False\nDATABASES: dict = {}\nINSTALLED_APPS = ['django.contrib.admin']\n"


def test_settings_prove_no_catalogs_and_the_dummy_backend(tmp_path: Path) -> None:
    _image(tmp_path, PROVEN)
    keep = _kept(tmp_path)
    assert CATALOG not in keep and ADMIN_CATALOG not in keep
    assert STATIC in keep  # other package data stays
    assert _backends(keep) == {"dummy"}
    assert "/app/mysite/settings.py" in keep and f"{DJ}/db/utils.py" in keep


def test_literal_engines_are_the_backends_kept(tmp_path: Path) -> None:
    _image(tmp_path, 'from pathlib import Path\nDATABASES = {"default": {"ENGINE": '
                     '"django.db.backends.sqlite3", "NAME": Path("/data") / "db.sqlite3"}}\n')
    keep = _kept(tmp_path)
    assert _backends(keep) == {"sqlite3"}
    assert CATALOG in keep  # USE_I18N defaults to True


def test_each_setting_is_proven_on_its_own(tmp_path: Path) -> None:
    _image(tmp_path, "import dj_database_url\nDATABASES = {'default': dj_database_url.config()}\n"
                     "USE_I18N = False\n")
    keep = _kept(tmp_path)
    assert CATALOG not in keep
    assert _backends(keep) == {"dummy", "sqlite3", "postgresql"}  # a computed ENGINE: all


@pytest.mark.parametrize("settings", [
    "DATABASES = {}\nDATABASES['default'] = {'ENGINE': 'x.y'}\nUSE_I18N = False\nUSE_I18N = True\n"
    "INSTALLED_APPS = ['django.contrib.admin']\n",
    "from .base import *\nDATABASES = {}\nUSE_I18N = False\n",
    "import os\nUSE_I18N = os.environ.get('I18N') == '1'\nDATABASES = {}\nglobals()['USE_I18N'] = True\n",
])
def test_settings_that_prove_nothing_keep_everything(tmp_path: Path, settings: str) -> None:
    _image(tmp_path, settings)
    keep = _kept(tmp_path)
    assert CATALOG in keep and ADMIN_CATALOG in keep
    assert _backends(keep) == {"dummy", "sqlite3", "postgresql"}


def test_every_settings_module_the_image_could_run_with_must_agree(tmp_path: Path) -> None:
    # another settings package of the app, and one the image's command line names
    _image(tmp_path, PROVEN, {"/app/mysite/settings/__init__.py": "DATABASES = {}\n"})
    assert CATALOG in _kept(tmp_path)
    prod = {**CONFIG, "Cmd": ["--chdir", "/app", "--env", "DJANGO_SETTINGS_MODULE=mysite.prod",
                              "mysite.wsgi:application"]}
    _image(tmp_path / "b", PROVEN, {"/app/mysite/prod.py": "USE_I18N = True\n"}, prod)
    assert CATALOG in _kept(tmp_path / "b")
    _image(tmp_path / "c", PROVEN, {"/app/mysite/prod.py": PROVEN}, prod)
    with context(tmp_path / "c") as ctx:
        settings = settings_of(ctx)
    assert settings is not None and settings.i18n_off
    assert settings.modules == ("/app/mysite/prod.py", "/app/mysite/settings.py")


@pytest.mark.parametrize("wsgi", [
    'import os\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", f"{os.uname()[1]}.settings")\n',
    'from django.conf import settings\nsettings.configure(USE_I18N=True)\n',
])
def test_settings_chosen_in_code_prove_nothing(tmp_path: Path, wsgi: str) -> None:
    _image(tmp_path, PROVEN, {"/app/mysite/wsgi.py": "import django.db\n" + wsgi})
    with context(tmp_path) as ctx:
        assert settings_of(ctx) is None
    assert CATALOG in _kept(tmp_path)


@pytest.mark.parametrize(("apps", "admin"), [
    ("INSTALLED_APPS = ['django.contrib.auth']\n", False),
    ("", False),  # Django's default: no app
    ("INSTALLED_APPS = ('django.contrib.auth', 'django.contrib.admin.apps.SimpleAdminConfig')\n", True),
    ("APPS = ['django.contrib.auth']\nINSTALLED_APPS = APPS + []\n", True),  # not a literal: not proven
])
def test_contrib_apps_not_installed_leave_their_static_templates_and_catalogs(
        tmp_path: Path, apps: str, admin: bool) -> None:
    auth = f"{DJ}/contrib/auth"
    extra = {f"{auth}/__init__.py": "", f"{auth}/password_validation.py": "",
             f"{auth}/common-passwords.txt.gz": "x", f"{auth}/templates/registration/x.html": "x",
             f"{DJ}/contrib/admin/__init__.py": "", f"{DJ}/contrib/__init__.py": "",
             f"{DJ}/contrib/admin/templates/admin/base.html": "x"}
    wsgi = WSGI + "import django.contrib.auth.password_validation\nimport django.contrib.admin\n"
    record = "".join(f"{p[len(VSITE) + 1:]},,\n" for p in extra)
    _image(tmp_path, "DATABASES = {}\n" + apps,
           {**extra, "/app/mysite/wsgi.py": wsgi, f"{VSITE}/django-5.2.dist-info/RECORD": RECORD + record})
    keep = _kept(tmp_path)
    admin_dirs = {STATIC, ADMIN_CATALOG, f"{DJ}/contrib/admin/templates/admin/base.html"}
    assert (admin_dirs <= keep) if admin else not (admin_dirs & keep)
    assert f"{auth}/common-passwords.txt.gz" in keep  # not an app directory: data its code reads
    if apps.startswith("INSTALLED_APPS = ['django.contrib.auth']"):
        assert f"{auth}/templates/registration/x.html" in keep  # auth is installed
