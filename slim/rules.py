"""Rule packs: where the shipped rules live, loading and validating TOML files, applying them.

A rule says "if X is kept (or the image's Env / files say so), keep Y": the hints static analysis
cannot see because a loader or library opens the files at run time (NSS modules named by
/etc/nsswitch.conf, gconv modules, locale data, zoneinfo, CA bundles, a daemon's plugins).
The file format is documented in rules/README.md. Every rule that fires becomes an
`Edge(trigger, path, "rule", rule_name)`, so `slim why` shows which rule kept a file.

Validation happens at load time, as auditwheel validates its policy files: every error is a
RuleError naming the file and the entry (`f"{file}: [rule.NAME]: …"`).
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slim.elf import ELF_MAGIC, imported_symbols, is_elf
from slim.errors import AnalysisError, RuleError
from slim.fs.layer import Capture
from slim.fs.rootfs import RootFS
from slim.globs import GlobSet, check_glob, has_magic
from slim.model import ROOT, Edge, ImageConfig, Unknown, normpath

# What rules read besides what they keep: configuration under /etc (nsswitch.conf, the
# localtime link) and ELF symbol tables (`when.imports`).
CAPTURE = Capture(globs=("/etc/**",), magics=(ELF_MAGIC,))

log = logging.getLogger(__name__)


def rules_dir() -> Path:
    """The shipped rules/ directory: inside the wheel (slim/_rules) or the source checkout."""
    here = Path(__file__).resolve().parent
    installed = here / "_rules"
    if installed.is_dir():
        return installed
    checkout = here.parent / "rules"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"{installed}: shipped rules are missing")


def rule_file(name: str) -> Path:
    """Path of one shipped rule file, e.g. rule_file("waste.toml")."""
    return rules_dir() / name


# -- the data ---------------------------------------------------------------------------------

RULE_KEYS = {"description", "when", "keep", "handler"}
WHEN_KEYS = {"kept", "always", "env", "file_exists", "imports"}
MAX_HANDLER_PATHS = 100_000  # a bound on what one handler may add (hostile images)


@dataclass(frozen=True)
class Condition:
    """When a rule fires. Lists are any-of; different keys must all hold.

    `kept` makes the rule per-path (RuleSet.apply); without it the rule is global
    (RuleSet.always) and fires when `always` is set or its env / file_exists tests hold.
    """

    kept: tuple[str, ...] = ()
    always: bool = False
    env: tuple[str, ...] = ()
    file_exists: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()  # with kept: the kept ELF file imports one of these symbols

    def environment_holds(self, fs: RootFS, config: ImageConfig) -> bool:
        if self.env:
            env = config.env_dict
            if not any(env.get(name) for name in self.env):
                return False
        return not self.file_exists or any(fs.lexists(p) or fs.exists(p) for p in self.file_exists)


@dataclass(frozen=True)
class Rule:
    """One validated `[rule.NAME]` entry."""

    name: str
    file: str
    when: Condition
    keep: tuple[str, ...] = ()
    handler: str = ""
    description: str = ""


def _contains_any(fs: RootFS, path: str, needles: list[bytes]) -> bool:
    """Whether a file's bytes contain one of `needles`, read in chunks (never whole)."""
    if not fs.has_content(path):
        return False
    overlap = max(len(n) for n in needles) - 1
    tail = b""
    try:
        with fs.open(path) as f:
            while chunk := f.read(1 << 20):
                window = tail + chunk
                if any(n in window for n in needles):
                    return True
                tail = window[-overlap:] if overlap > 0 else b""
    except (AnalysisError, OSError):
        return False
    return False


# -- handlers: rules whose paths depend on what the image says ---------------------------------

Handler = Callable[[RootFS, ImageConfig], list[str]]

# glibc's built-in defaults when /etc/nsswitch.conf is missing (nss/nsswitch.c, nss_database.c):
# "files" for everything, hosts: "dns files" — the modules are loaded by name.
NSS_DEFAULT_SERVICES = ("files", "dns")
NSS_LIB_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib")


def nsswitch_services(text: str) -> list[str]:
    """Service names of an nsswitch.conf (`passwd: files systemd [NOTFOUND=return] ldap`).

    Syntax as glibc's nss/nss_database.c reads it: `database: service [STATUS=action] …`,
    `#` comments; action brackets are not services.
    """
    services: set[str] = set()
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if ":" not in line:
            continue
        _, _, rest = line.partition(":")
        rest = re.sub(r"\[[^\]]*\]", " ", rest)
        for word in rest.split():
            if re.fullmatch(r"[A-Za-z0-9_.-]+", word):
                services.add(word)
    return sorted(services)


def _nss_handler(fs: RootFS, config: ImageConfig) -> list[str]:
    """libnss_<service>.so.2 for every service /etc/nsswitch.conf names, in any lib dir."""
    services: list[str]
    try:
        services = nsswitch_services(fs.read_text("/etc/nsswitch.conf"))
    except AnalysisError:
        services = list(NSS_DEFAULT_SERVICES)
    out: list[str] = []
    for svc in services:
        name = f"libnss_{svc}.so.2"
        regex = re.compile(
            "(" + "|".join(re.escape(d) for d in NSS_LIB_DIRS) + r")(/.*)?/" + re.escape(name) + "$"
        )
        out.extend(p for p in fs.tree.entries if p.endswith(name) and regex.match(p))
    return sorted(set(out))


LOCALE_VARS = (
    "LC_ALL", "LANG", "LANGUAGE", "LC_CTYPE", "LC_NUMERIC", "LC_TIME", "LC_COLLATE",
    "LC_MONETARY", "LC_MESSAGES", "LC_PAPER", "LC_NAME", "LC_ADDRESS", "LC_TELEPHONE",
    "LC_MEASUREMENT", "LC_IDENTIFICATION",
)
LOCALE_DIRS = ("/usr/lib/locale", "/usr/share/locale-langpack")


def locale_names(value: str) -> list[str]:
    """The directory names glibc tries for a locale value (locale/findlocale.c with
    _nl_explode_name): the name as given, with the codeset normalized (UTF-8 → utf8),
    then without codeset and modifier, then the bare language."""
    value = value.strip()
    if not value or value in ("C", "POSIX") or "/" in value:
        return []
    out = [value]
    lang, _, rest = value.partition("@")
    modifier = "@" + rest if rest else ""
    base, dot, codeset = lang.partition(".")
    if dot:
        norm = re.sub(r"[^a-z0-9]", "", codeset.lower())
        if norm and not norm.isdigit():
            out.append(f"{base}.{norm}{modifier}")
        elif norm:
            out.append(f"{base}.iso{norm}{modifier}")
        out.append(f"{base}.{codeset}")
    out.append(base)
    out.append(base.split("_", 1)[0])
    seen: list[str] = []
    for name in out:
        if name and name not in seen:
            seen.append(name)
    return seen


def _locale_handler(fs: RootFS, config: ImageConfig) -> list[str]:
    """Locale data for the LANG / LC_* / LANGUAGE values of the image's Env."""
    env = config.env_dict
    values: list[str] = []
    for var in LOCALE_VARS:
        val = env.get(var, "")
        values.extend(val.split(":") if var == "LANGUAGE" else [val])
    out: set[str] = set()
    named = False
    for val in values:
        for name in locale_names(val):
            if name.upper() in ("C.UTF-8", "C.UTF8"):
                continue
            named = True
            for d in LOCALE_DIRS:
                path = f"{d}/{name}"
                if fs.is_dir(path):
                    out.add(path)
                    out.update(p for p in fs.tree.entries if p.startswith(fs.realpath(path) + "/"))
                elif fs.exists(path):
                    out.add(path)
    if named:
        # glibc looks in the archive first (locale/loadarchive.c), then the directories
        for p in ("/usr/lib/locale/locale-archive", "/usr/lib/locale/locale-archive.tmpl"):
            if fs.exists(p):
                out.add(p)
    return sorted(out)


ZONEINFO = "/usr/share/zoneinfo"


def _zoneinfo_handler(fs: RootFS, config: ImageConfig) -> list[str]:
    """The zone TZ names (or /etc/localtime points to), UTC; all of zoneinfo when unsure.

    glibc time/tzfile.c: TZ=":Area/City" or "Area/City" is a file under TZDIR (or absolute);
    a POSIX rule string ("EST5EDT,M3.2.0,M11.1.0") may still read `posixrules`. When TZ names
    no single zone file we keep the whole database (conservative).
    """
    out: set[str] = set()
    for p in (f"{ZONEINFO}/UTC", f"{ZONEINFO}/Etc/UTC", f"{ZONEINFO}/posixrules",
              "/etc/localtime", "/etc/timezone"):
        if fs.lexists(p) or fs.exists(p):
            out.add(p)
    if fs.lexists("/etc/localtime"):
        res = fs.resolve("/etc/localtime")
        if res.exists:
            out.add(res.path)
    tz = config.env_dict.get("TZ", "")
    if tz:
        name = tz[1:] if tz.startswith(":") else tz
        cands = [name] if name.startswith("/") else [f"{ZONEINFO}/{name}"]
        found = [c for c in cands if ".." not in c and fs.is_file(c)]
        if found:
            out.update(found)
        else:
            real = fs.realpath(ZONEINFO)  # /usr/share/zoneinfo may itself be a link
            if fs.exists(ZONEINFO):
                out.add(ZONEINFO)
            out.update(p for p in fs.tree.entries if p.startswith(real + "/"))
    return sorted(out)


HANDLERS: dict[str, Handler] = {
    "nss": _nss_handler,
    "locale": _locale_handler,
    "zoneinfo": _zoneinfo_handler,
}


# -- the rule set ----------------------------------------------------------------------------


@dataclass
class RuleSet:
    """Validated rules, ready to apply. Glob expansions are cached per RootFS."""

    rules: list[Rule] = field(default_factory=list)
    _kept_res: list[tuple[Rule, GlobSet]] = field(default_factory=list, repr=False)
    _any_kept: GlobSet = field(default_factory=lambda: GlobSet(()), repr=False)
    _cache_fs: RootFS | None = field(default=None, repr=False)
    _cache_config: ImageConfig | None = field(default=None, repr=False)
    _cache: dict[str, list[str]] = field(default_factory=dict, repr=False)
    _failed: dict[str, str] = field(default_factory=dict, repr=False)  # cache key → why

    def __post_init__(self) -> None:
        self._compile()

    def _compile(self) -> None:
        self.rules.sort(key=lambda r: r.name)
        self._kept_res = [(r, GlobSet(r.when.kept)) for r in self.rules if r.when.kept]
        # every rule's `when.kept` at once: most kept paths match none (one test, not thirty)
        self._any_kept = GlobSet(g for r in self.rules for g in r.when.kept)

    def add(self, rule: Rule) -> None:
        """Add (or replace, by name) one rule."""
        self.rules = [r for r in self.rules if r.name != rule.name] + [rule]
        self._compile()

    def names(self) -> list[str]:
        return [r.name for r in self.rules]

    def get(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)

    def _expand(self, fs: RootFS, config: ImageConfig, rule: Rule) -> tuple[list[str], list[Unknown]]:
        """(paths the rule keeps in this image, Unknowns for what a handler could not read)."""
        if self._cache_fs is not fs or self._cache_config is not config:
            self._cache_fs, self._cache_config, self._cache, self._failed = fs, config, {}, {}
        out: set[str] = set()
        unknowns: list[Unknown] = []
        for pattern in rule.keep:
            if pattern not in self._cache:
                if has_magic(pattern):
                    self._cache[pattern] = fs.glob(pattern)
                else:
                    self._cache[pattern] = [pattern] if fs.lexists(pattern) or fs.exists(pattern) else []
            out.update(self._cache[pattern])
        if rule.handler:
            key = "handler:" + rule.handler
            if key not in self._cache:
                try:
                    self._cache[key] = HANDLERS[rule.handler](fs, config)[:MAX_HANDLER_PATHS]
                except AnalysisError as exc:  # unreadable input: reported, never silent
                    self._cache[key] = []
                    self._failed[key] = str(exc)
            out.update(self._cache[key])
            if key in self._failed:
                unknowns.append(Unknown(f"<rule {rule.name}>", f"handler {rule.handler}: "
                                        f"{self._failed[key]}; its files may be missing"))
        return sorted(out), unknowns

    def apply(self, kept_path: str, fs: RootFS, config: ImageConfig) -> list[Edge | Unknown]:
        """Edges for every rule whose `when.kept` matches `kept_path` (and whose env holds),
        and Unknowns for what a rule could not read."""
        out: set[Edge | Unknown] = set()
        if not self._any_kept.match(kept_path):
            return []
        for rule, globs in self._kept_res:
            if not globs.match(kept_path) or not rule.when.environment_holds(fs, config):
                continue
            targets, unknowns = self._expand(fs, config, rule)
            out.update(unknowns)
            if not targets:
                continue  # nothing to keep in this image: no need to look at the ELF
            if rule.when.imports:
                imports = self._imports(fs, kept_path, rule.when.imports)
                if isinstance(imports, Unknown):
                    out.add(imports)  # unreadable symbols: keep (conservative) and say so
                elif not imports:
                    continue
            out.update(Edge(kept_path, dst, "rule", rule.name) for dst in targets if dst != kept_path)
        return _sorted(out)

    def _imports(self, fs: RootFS, path: str, names: tuple[str, ...]) -> bool | Unknown:
        """Whether ELF `path` has an undefined dynamic symbol named in `names` (it calls it
        through the loader, e.g. iconv_open from libc); an Unknown when it cannot be read."""
        key = "imports:" + path
        if key not in self._cache:
            # a symbol's name is in .dynstr: when no name occurs in the bytes, none is imported
            self._cache[key] = []
            if is_elf(fs, path) and _contains_any(fs, path, [n.encode() for n in names]):
                try:
                    self._cache[key] = sorted(imported_symbols(fs, path))
                except AnalysisError as exc:
                    self._failed[key] = str(exc)
        if key in self._failed:
            return Unknown(path, f"dynamic symbols unreadable ({self._failed[key]}); "
                                 f"rules on {', '.join(names)} applied anyway")
        return any(n in self._cache[key] for n in names)

    def always(self, fs: RootFS, config: ImageConfig) -> list[Edge | Unknown]:
        """Edges from the root for rules that need no kept file (always / env / file_exists)."""
        out: set[Edge | Unknown] = set()
        for rule in self.rules:
            if rule.when.kept:
                continue
            if not (rule.when.always or rule.when.env or rule.when.file_exists):
                continue
            if not rule.when.environment_holds(fs, config):
                continue
            targets, unknowns = self._expand(fs, config, rule)
            out.update(unknowns)
            out.update(Edge(ROOT, dst, "rule", rule.name) for dst in targets)
        return _sorted(out)


def _sorted(items: Iterable[Edge | Unknown]) -> list[Edge | Unknown]:
    items = set(items)
    return [*sorted(e for e in items if isinstance(e, Edge)),
            *sorted(u for u in items if isinstance(u, Unknown))]


# -- loading and validation ------------------------------------------------------------------


def _strs(value: Any, where: str, key: str) -> tuple[str, ...]:
    """A string or a list of strings, as a tuple; RuleError otherwise."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RuleError(f"{where}: '{key}' must be a string or a list of strings, "
                        f"got {type(value).__name__}")
    if not value:
        raise RuleError(f"{where}: '{key}' is empty")
    return tuple(value)


def _check_glob(pattern: str, where: str, key: str, *, absolute: bool, compiled: bool = True) -> None:
    if not pattern.strip():
        raise RuleError(f"{where}: '{key}': empty glob")
    if absolute and not pattern.startswith("/"):
        raise RuleError(f"{where}: '{key}': {pattern!r} must be an absolute image path")
    if not absolute and not (pattern.startswith(("/", "**/")) or pattern == "**"):
        raise RuleError(f"{where}: '{key}': {pattern!r} must start with '/' or '**/' "
                        "(`*` stays in one path component; write **/NAME for any directory)")
    if ".." in pattern.split("/"):
        raise RuleError(f"{where}: '{key}': {pattern!r} must not contain '..'")
    problem = check_glob(pattern, compiled=compiled)
    if problem:
        raise RuleError(f"{where}: '{key}': {pattern!r}: {problem}")


def _parse_rule(name: str, body: Any, file: str, compiled: bool = True) -> Rule:
    where = f"{file}: [rule.{name}]"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise RuleError(f"{where}: rule names use letters, digits, '.', '_' and '-'")
    if not isinstance(body, dict):
        raise RuleError(f"{where}: must be a table")
    unknown = sorted(set(body) - RULE_KEYS)
    if unknown:
        raise RuleError(f"{where}: unknown key(s) {', '.join(unknown)} "
                        f"(allowed: {', '.join(sorted(RULE_KEYS))})")
    if "when" not in body:
        raise RuleError(f"{where}: missing 'when'")
    if "keep" not in body and "handler" not in body:
        raise RuleError(f"{where}: missing 'keep' (or 'handler')")
    description = body.get("description", "")
    if not isinstance(description, str):
        raise RuleError(f"{where}: 'description' must be a string")
    handler = body.get("handler", "")
    if not isinstance(handler, str):
        raise RuleError(f"{where}: 'handler' must be a string")
    if handler and handler not in HANDLERS:
        raise RuleError(f"{where}: unknown handler {handler!r} (known: {', '.join(sorted(HANDLERS))})")
    keep = _strs(body["keep"], where, "keep") if "keep" in body else ()
    for pattern in keep:
        _check_glob(pattern, where, "keep", absolute=True, compiled=compiled)

    when = body["when"]
    if isinstance(when, (str, list)):  # shorthand: when = "GLOB" (or a list) is when.kept
        when = {"kept": when}
    if not isinstance(when, dict):
        raise RuleError(f"{where}: 'when' must be a table, a glob or a list of globs")
    unknown = sorted(set(when) - WHEN_KEYS)
    if unknown:
        raise RuleError(f"{where}: 'when' has unknown key(s) {', '.join(unknown)} "
                        f"(allowed: {', '.join(sorted(WHEN_KEYS))})")
    if not when:
        raise RuleError(f"{where}: 'when' is empty")
    always = when.get("always", False)
    if not isinstance(always, bool):
        raise RuleError(f"{where}: 'when.always' must be a boolean")
    if "always" in when and not always:
        raise RuleError(f"{where}: 'when.always = false' never fires; remove the rule instead")
    if always and len(when) > 1:
        raise RuleError(f"{where}: 'when.always' cannot be combined with other conditions")
    kept = _strs(when["kept"], where, "when.kept") if "kept" in when else ()
    for pattern in kept:
        _check_glob(pattern, where, "when.kept", absolute=False, compiled=compiled)
    env = _strs(when["env"], where, "when.env") if "env" in when else ()
    for var in env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
            raise RuleError(f"{where}: 'when.env': {var!r} is not a variable name")
    exists = _strs(when["file_exists"], where, "when.file_exists") if "file_exists" in when else ()
    for path in exists:
        if not path.startswith("/") or has_magic(path):
            raise RuleError(f"{where}: 'when.file_exists': {path!r} must be an absolute path (no glob)")
    imports = _strs(when["imports"], where, "when.imports") if "imports" in when else ()
    if imports and not kept:
        raise RuleError(f"{where}: 'when.imports' needs 'when.kept' (the files to look into)")
    for sym in imports:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.@]*", sym):
            raise RuleError(f"{where}: 'when.imports': {sym!r} is not a symbol name")
    return Rule(
        name=name, file=file,
        when=Condition(kept, always, env, tuple(normpath(p) for p in exists), imports),
        keep=keep, handler=handler, description=description,
    )


def parse_rule_pack(text: str, file: str, *, required: bool = True) -> list[Rule]:
    """The rules of one TOML document. A document without `[rule.*]` tables is no rule pack:
    an error when `required`, else an empty list (the shipped dir holds other TOML data too)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{file}: invalid TOML: {exc}") from None
    if "rule" not in doc:
        if required:
            raise RuleError(f"{file}: no [rule.NAME] tables")
        return []
    unknown = sorted(set(doc) - {"rule"})
    if unknown:
        raise RuleError(f"{file}: unknown top-level key(s) {', '.join(unknown)} (only [rule.NAME])")
    table = doc["rule"]
    if not isinstance(table, dict):
        raise RuleError(f"{file}: 'rule' must be a table of [rule.NAME] tables")
    return [_parse_rule(name, body, file, compiled=required) for name, body in sorted(table.items())]


def _pack_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.glob("*.toml") if p.is_file())
    raise RuleError(f"{path}: no such rules directory")


def load_rules(dirs: Iterable[Path | str] = (), *, shipped: bool = True) -> RuleSet:
    """The shipped rule packs plus those in each user `--rules DIR` (a file is accepted too).

    A later rule with the name of an earlier one (a user rule overriding a shipped one)
    replaces it; the same name twice within one directory is an error.
    Raises RuleError naming the file and the entry.
    """
    sources: list[tuple[Path, bool]] = []
    if shipped:
        sources.append((rules_dir(), False))
    sources.extend((Path(d), True) for d in dirs)
    by_name: dict[str, Rule] = {}
    for source, required in sources:
        seen: dict[str, str] = {}
        for f in _pack_files(source):
            try:
                text = f.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise RuleError(f"{f}: cannot read: {exc}") from None
            for rule in parse_rule_pack(text, str(f), required=required):
                if rule.name in seen:
                    raise RuleError(f"{f}: [rule.{rule.name}]: already defined in {seen[rule.name]}")
                seen[rule.name] = str(f)
                if rule.name in by_name:
                    log.debug("rule %s from %s overrides %s", rule.name, f, by_name[rule.name].file)
                by_name[rule.name] = rule
    return RuleSet(list(by_name.values()))


def keep_glob_edges(fs: RootFS, patterns: Iterable[str]) -> list[Edge]:
    """Edges from the root for user `--keep GLOB`s (evidence names the glob). A pattern
    without wildcards keeps that path; when it is a directory, its whole subtree."""
    out: list[Edge] = []
    for pattern in patterns:
        if has_magic(pattern):
            paths = fs.glob(pattern)
        else:
            path = normpath(pattern)
            paths = [path] if fs.lexists(path) else []
            if fs.is_dir(path):
                paths += fs.glob(fs.realpath(path).rstrip("/") + "/**")
        out.extend(Edge(ROOT, p, "rule", f"--keep {pattern}") for p in paths)
    return sorted(set(out))


__all__ = [
    "HANDLERS",
    "Condition",
    "Rule",
    "RuleSet",
    "keep_glob_edges",
    "load_rules",
    "locale_names",
    "nsswitch_services",
    "parse_rule_pack",
    "rule_file",
    "rules_dir",
]
