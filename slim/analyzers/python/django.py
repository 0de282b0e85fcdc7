"""What a Django project's settings prove it never loads.

Three things Django would otherwise make slim keep whole are decided by settings:

* Message catalogs. With `USE_I18N = False` Django's translation machinery is off
  (django/utils/translation/__init__.py picks trans_null, which returns messages unchanged and
  opens no catalog), so none of the `.mo` files under Django's own `locale/` directories is
  read: about 7 MB of package data in Django 5.
* Database backends. `load_backend` (django/db/utils.py) imports `"%s.base" % ENGINE` for the
  databases configured in `DATABASES` (an empty DATABASES, or a database without ENGINE, is
  `django.db.backends.dummy`). That computed import made slim keep every module of django.db;
  with literal ENGINEs it keeps `<ENGINE>.base` of each.
* The static files, templates and catalogs of contrib apps. Django finds an app's `static/`
  (staticfiles' AppDirectoriesFinder), `templates/` and `jinja2/` (the app_directories
  loaders) and `locale/` (the translation machinery) only for the apps in `INSTALLED_APPS`; the
  admin's static files alone are 1.4 MB. With a literal INSTALLED_APPS, those directories of a
  `django.contrib` app it does not name are not kept (the app's modules and other data are,
  when imported: `auth`'s common-passwords list is read by a validator named in settings).

Each narrowing holds only when it is proven for every settings module the image could run
with (`settings_of`): the module DJANGO_SETTINGS_MODULE names (the image's environment, and
every literal `os.environ.setdefault("DJANGO_SETTINGS_MODULE", "…")` or assignment in the
application's own files) and every other `settings.py` or `settings/` module of the
application, so a `docker run -e DJANGO_SETTINGS_MODULE=…` with another of them changes
nothing. A setting is proven only as a literal assigned once at module level and never named
again in that module; a star import, `globals()`, `exec` and the like, a name that cannot be
found, or `settings.configure(` anywhere in the application prove nothing, and everything is
kept as before.
"""

from __future__ import annotations

import ast
import functools
import logging
import posixpath
import re
from dataclasses import dataclass

from slim.analyzers.app import LIBRARY_DIRS
from slim.analyzers.base import AnalysisContext
from slim.errors import SlimError

log = logging.getLogger(__name__)

_DSM_LITERAL = re.compile(r"""["']DJANGO_SETTINGS_MODULE["']\s*(?:,|\]\s*=)\s*["']([A-Za-z_][\w.]*)["']""")
_DSM_QUOTED = re.compile(r"""["']DJANGO_SETTINGS_MODULE["']""")
# shell, Dockerfile-style env files, supervisord and systemd units, an image's Env and argv
_DSM_SHELL = re.compile(r"""\bDJANGO_SETTINGS_MODULE\s*=\s*["']?([A-Za-z_][\w.]*)["']?(?=[\s;&|)]|$)""")
_DSM_WORD = re.compile(r"\bDJANGO_SETTINGS_MODULE\s*=")
_SETTINGS_FLAG = re.compile(r"""--settings[= ]\s*["']?([A-Za-z_][\w.]*)["']?(?=[\s;&|)]|$)""")
MAX_TEXT = 1 << 20
_DYNAMIC_NAMES = frozenset({"globals", "locals", "vars", "exec", "eval", "setattr", "__dict__",
                            "__import__", "import_module"})
DUMMY = "django.db.backends.dummy"
_RENAMED = {"django.db.backends.postgresql_psycopg2": "django.db.backends.postgresql"}
CATALOG = re.compile(r"/locale/[^/]+/LC_MESSAGES/[^/]+\.mo$")
MAX_APP_FILES = 20_000


@dataclass(frozen=True)
class DjangoSettings:
    """What every settings module proves; `modules` are the files read."""

    modules: tuple[str, ...]
    i18n_off: bool  # USE_I18N = False in every one
    engines: tuple[str, ...] | None  # the database engines they configure; None: not proven
    apps: tuple[str, ...] | None = None  # INSTALLED_APPS, all of them; None: not proven


class DjangoState:
    """The settings of the image's Django project, read once per run (None: no Django
    settings found, or none proven)."""

    def __init__(self, ctx: AnalysisContext) -> None:
        self.ctx = ctx

    @functools.cached_property
    def settings(self) -> DjangoSettings | None:
        settings = settings_of(self.ctx)
        if settings is not None:
            log.info("Django settings %s: USE_I18N off: %s; database engines: %s; installed apps: %s",
                     ", ".join(settings.modules), settings.i18n_off, settings.engines, settings.apps)
        return settings


def _app_files(ctx: AnalysisContext) -> list[str] | None:
    """The application's own files slim holds the contents of: outside every Python library
    directory (the standard library, site- and dist-packages); None when there are too many."""
    out = []
    for e in ctx.files_under("/"):
        if e.is_file and not LIBRARY_DIRS.search(e.path) and ctx.fs.has_content(e.path):
            out.append(e.path)
            if len(out) > MAX_APP_FILES:
                return None
    return out


def _named_settings(text: str, python: bool) -> set[str] | None:
    """The settings modules `text` names (DJANGO_SETTINGS_MODULE, `--settings`); None when it
    names one by a value that is not a literal."""
    names: set[str] = set()
    if "DJANGO_SETTINGS_MODULE" in text:
        literal = (_DSM_LITERAL if python else _DSM_SHELL).findall(text)
        if len((_DSM_QUOTED if python else _DSM_WORD).findall(text)) != len(literal):
            return None
        names.update(literal)
    if not python and "--settings" in text:
        literal = _SETTINGS_FLAG.findall(text)
        if text.count("--settings") != len(literal):
            return None
        names.update(literal)
    return names


def settings_of(ctx: AnalysisContext) -> DjangoSettings | None:
    """The proven settings of every settings module the image could run with (module doc)."""
    files = _app_files(ctx)
    if files is None:
        return None
    config = ctx.config
    named = _named_settings(" ".join([*config.argv, *(f"{k}={v}" for k, v in config.env_dict.items())]),
                            python=False)
    if named is None:
        return None
    names = set(named)
    sources = [p for p in files if p.endswith(".py")]
    candidates: set[str] = set()
    for path in files:
        python = path.endswith(".py")
        if python and (posixpath.basename(path) == "settings.py"
                       or posixpath.basename(posixpath.dirname(path)) == "settings"):
            candidates.add(path)
        try:
            head = ctx.fs.read(path, 4096)
            if b"\x00" in head:
                continue  # a binary (the image's programs and libraries): no settings named there
            data = ctx.fs.read(path, MAX_TEXT) if len(head) == 4096 else head
        except (SlimError, OSError):
            if python:
                return None  # an application source slim cannot read may set anything
            continue
        text = data.decode("utf-8", errors="replace")
        found = _named_settings(text, python)
        if found is None:
            return None
        names |= found
        if python and "settings.configure(" in text:
            return None  # settings given in code, not by a module
    if not names:
        return None  # no Django project this analysis can see
    for name in names:
        rel = name.replace(".", "/")
        hits = [p for p in sources if p.endswith((f"/{rel}.py", f"/{rel}/__init__.py"))]
        if not hits:
            return None  # the settings module is not an application file slim can read
        candidates.update(hits)
    i18n_off = True
    engines: set[str] | None = set()
    apps: set[str] | None = set()
    for path in sorted(candidates):
        facts = _module_facts(ctx, path)
        if facts is None:
            return None
        use_i18n, module_engines, module_apps = facts
        i18n_off = i18n_off and use_i18n is False
        if engines is not None:
            engines = None if module_engines is None else engines | module_engines
        if apps is not None:
            apps = None if module_apps is None else apps | module_apps
    return DjangoSettings(tuple(sorted(candidates)), i18n_off,
                          tuple(sorted(engines)) if engines is not None else None,
                          tuple(sorted(apps)) if apps is not None else None)


def _module_facts(ctx: AnalysisContext, path: str) -> tuple[object, set[str] | None, set[str] | None] | None:
    """(USE_I18N's proven value — None when not proven —, the database engines and the
    installed apps — None when not proven —) of one settings module; None when the module
    proves nothing."""
    try:
        tree = ast.parse(ctx.fs.read_text(path), filename=path)
    except (SlimError, OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    uses: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
            return None  # settings from another module: not read here
        if isinstance(node, ast.Name):
            if node.id in _DYNAMIC_NAMES:
                return None
            uses[node.id] = uses.get(node.id, 0) + 1
        elif isinstance(node, ast.Attribute) and node.attr in _DYNAMIC_NAMES:
            return None
    values: dict[str, ast.expr] = {}
    for stmt in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        for t in targets:
            if isinstance(t, ast.Name) and value is not None:
                values[t.id] = value
    use_i18n: object = None
    if uses.get("USE_I18N", 0) == 0:
        use_i18n = True  # Django's default
    elif uses["USE_I18N"] == 1 and "USE_I18N" in values:
        node = values["USE_I18N"]
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            use_i18n = node.value
    engines: set[str] | None = None
    if uses.get("DATABASES", 0) == 0:
        engines = {DUMMY}  # Django's default: {}
    elif uses["DATABASES"] == 1 and "DATABASES" in values:
        engines = _engines(values["DATABASES"])
    apps: set[str] | None = None
    if uses.get("INSTALLED_APPS", 0) == 0:
        apps = set()  # Django's default: []
    elif uses["INSTALLED_APPS"] == 1 and "INSTALLED_APPS" in values:
        node = values["INSTALLED_APPS"]
        if isinstance(node, (ast.List, ast.Tuple)) and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            apps = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return use_i18n, engines, apps


def _engines(node: ast.expr) -> set[str] | None:
    """The ENGINEs of a literal DATABASES dict (a database without one, or none at all, is the
    dummy backend); None when they are not all literal."""
    if not isinstance(node, ast.Dict):
        return None
    if not node.keys:
        return {DUMMY}
    out: set[str] = set()
    for key, db in zip(node.keys, node.values, strict=True):
        if key is None or not isinstance(db, ast.Dict) or any(k is None for k in db.keys):
            return None  # `**other` merges: not literal
        engine: str | None = DUMMY
        for k, v in zip(db.keys, db.values, strict=True):
            if isinstance(k, ast.Constant) and k.value == "ENGINE":
                engine = v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else None
            elif not isinstance(k, ast.Constant):
                return None
        if engine is None:
            return None
        out.add(_RENAMED.get(engine, engine))
    return out


def is_load_backend(ctx: AnalysisContext, path: str, line: int) -> bool:
    """Whether line `line` of `path` is the computed import of Django's `load_backend`."""
    if not path.endswith("/django/db/utils.py"):
        return False
    try:
        lines = ctx.fs.read_text(path).splitlines()
    except (SlimError, OSError):
        return False
    return 0 < line <= len(lines) and '"%s.base" % backend_name' in lines[line - 1]


# the directories of an app Django reads only when the app is installed (module doc)
_APP_DIRS = re.compile(r"^django/contrib/([A-Za-z_]\w*)/(?:static|templates|jinja2|locale)/")


def uninstalled_app_file(site: str, top: str, path: str, apps: tuple[str, ...]) -> str:
    """The contrib app (`django.contrib.admin`) whose static, templates, jinja2 or locale
    directory `path` is in, when INSTALLED_APPS (`apps`) does not name it; "" otherwise. An
    entry installs an app when it is the app's module or below it (`….apps.AdminConfig`)."""
    if top != "django" or not path.startswith(site + "/"):
        return ""
    m = _APP_DIRS.match(path[len(site) + 1:])
    if m is None:
        return ""
    app = f"django.contrib.{m.group(1)}"
    return "" if any(a == app or a.startswith(app + ".") for a in apps) else app


def is_django_catalog(site: str, top: str, path: str) -> bool:
    """Whether `path` is a message catalog of Django's own locale directories."""
    return top == "django" and path.startswith(posixpath.join(site, "django") + "/") and bool(CATALOG.search(path))


__all__ = ["DjangoSettings", "DjangoState", "is_django_catalog", "is_load_backend", "settings_of",
           "uninstalled_app_file"]
