"""Waste categories: files a runtime image rarely needs (caches, docs, foreign locales …).

The categories are data (rules/waste.toml, validated at load); this module matches the squashed
filesystem against them and sums bytes and counts. A file is counted once, in the first category
of the file that matches, so the totals of all categories add up.

Two categories need more than a glob (the `condition` key):

* ``orphaned-pycache``: ``__pycache__/NAME.TAG.pyc`` is only ever loaded for an existing
  ``NAME.py`` (PEP 3147; importlib's SourceFileLoader looks up the cache from the source), so
  without that source it is dead weight. A sourceless ``NAME.pyc`` *beside* where ``NAME.py``
  would be is importable (SourcelessFileLoader) and is never counted.
* ``foreign-locale``: the locale name is the path component right after the glob's literal
  directory prefix (``/usr/share/locale/de/…`` → ``de``). Its language (the part before ``_``,
  ``.`` or ``@``, as in POSIX ``language[_territory][.codeset][@modifier]``) is kept when it is
  ``C``, ``POSIX``, ``en`` (the fallback most software ships and falls back to) or a language named
  by the image's ``LANG``, ``LANGUAGE`` (a ':' list) or any ``LC_*`` variable.
"""

from __future__ import annotations

import logging
import posixpath
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from slim.errors import RuleError
from slim.fs.rootfs import RootFS
from slim.globs import GlobSet, check_glob, compile_glob
from slim.model import EntryKind, ImageConfig
from slim.result import WasteCategory
from slim.rules import rule_file

log = logging.getLogger(__name__)

CONDITIONS = ("orphaned-pycache", "foreign-locale")
ALWAYS_KEPT_LANGUAGES = frozenset({"C", "POSIX", "en"})
MAX_EXAMPLES = 5
_ALLOWED_KEYS = {"description", "globs", "exclude", "condition"}


@dataclass(frozen=True)
class WasteRule:
    """One validated category of rules/waste.toml."""

    name: str
    description: str
    globs: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    condition: str = ""

    _match: GlobSet = field(init=False, repr=False, compare=False)
    _exclude: GlobSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # frozen: derived matchers are set once, here (dataclasses docs, "Frozen instances");
        # GlobSet answers `/DIR/**` with a prefix test, not a regex (5,000 of Django's paths)
        object.__setattr__(self, "_match", GlobSet(self.globs))
        object.__setattr__(self, "_exclude", GlobSet(self.exclude))

    def matches_path(self, path: str) -> bool:
        return self._match.match(path) and not (self._exclude and self._exclude.match(path))

    def locale_name(self, path: str) -> str:
        """The component after the literal prefix of the first glob matching `path` ("" if none)."""
        for glob in self.globs:
            prefix = _glob_prefix(glob)
            if path.startswith(prefix) and compile_glob(glob).match(path):
                return path[len(prefix) :].split("/", 1)[0]
        return ""


def _glob_prefix(glob: str) -> str:
    """The literal directory prefix of a glob, ending in '/' ("/usr/share/locale/*/**" → "/usr/share/locale/")."""
    first = min((i for i, c in enumerate(glob) if c in "*?["), default=len(glob))
    return glob[: glob.rfind("/", 0, first) + 1]


def load_waste_rules(path: Path | str | None = None) -> tuple[WasteRule, ...]:
    """Load and validate a waste rule file (default: the shipped rules/waste.toml).

    Raises RuleError naming the file and the category for invalid TOML, unknown keys, missing
    or mistyped fields, bad globs and unknown conditions.
    """
    file = Path(path) if path is not None else rule_file("waste.toml")
    try:
        doc = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RuleError(f"{file}: cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RuleError(f"{file}: invalid TOML: {exc}") from None
    unknown_top = sorted(set(doc) - {"category"})
    if unknown_top:
        raise RuleError(f"{file}: unknown top-level key {unknown_top[0]!r} (expected [category.NAME] tables)")
    categories = doc.get("category")
    if not isinstance(categories, dict) or not categories:
        raise RuleError(f"{file}: no [category.NAME] tables")
    rules: list[WasteRule] = []
    for name, table in categories.items():  # TOML tables keep file order
        where = f"{file}: [category.{name}]"
        if not isinstance(table, dict):
            raise RuleError(f"{where}: must be a table")
        extra = sorted(set(table) - _ALLOWED_KEYS)
        if extra:
            raise RuleError(f"{where}: unknown key {extra[0]!r} (allowed: {', '.join(sorted(_ALLOWED_KEYS))})")
        description = table.get("description")
        if not isinstance(description, str) or not description.strip():
            raise RuleError(f"{where}: missing field 'description' (a non-empty string)")
        globs = _glob_list(table, "globs", where, required=True)
        exclude = _glob_list(table, "exclude", where, required=False)
        condition = table.get("condition", "")
        if not isinstance(condition, str) or (condition and condition not in CONDITIONS):
            raise RuleError(f"{where}: unknown condition {condition!r} (known: {', '.join(CONDITIONS)})")
        rules.append(WasteRule(str(name), description.strip(), globs, exclude, condition))
    return tuple(rules)


def _glob_list(table: dict[str, object], key: str, where: str, *, required: bool) -> tuple[str, ...]:
    value = table.get(key)
    if value is None:
        if required:
            raise RuleError(f"{where}: missing field {key!r} (a list of absolute globs)")
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or (required and not value):
        raise RuleError(f"{where}: {key!r} must be a non-empty list of strings")
    for glob in value:
        if not glob.startswith("/"):
            raise RuleError(f"{where}: bad glob {glob!r}: must be an absolute image path")
        problem = check_glob(glob)
        if problem:
            raise RuleError(f"{where}: bad glob {glob!r}: {problem}")
    return tuple(value)


def image_languages(config: ImageConfig) -> frozenset[str]:
    """Languages the image uses: C, POSIX, en plus those of LANG, LANGUAGE and LC_*."""
    langs = set(ALWAYS_KEPT_LANGUAGES)
    for key, value in config.env_dict.items():
        if key == "LANG" or key.startswith("LC_"):
            values = [value]
        elif key == "LANGUAGE":
            values = value.split(":")
        else:
            continue
        for v in values:
            lang = _language(v)
            if lang:
                langs.add(lang)
    return frozenset(langs)


def _language(locale: str) -> str:
    return re.split(r"[_.@]", locale.strip(), maxsplit=1)[0]


def _orphaned_pycache(rootfs: RootFS, path: str) -> bool:
    cache_dir = posixpath.dirname(path)
    module = posixpath.basename(path).split(".", 1)[0]
    source = posixpath.join(posixpath.dirname(cache_dir), module + ".py")
    return not rootfs.tree.entries.get(source)


def find_waste(
    rootfs: RootFS, config: ImageConfig, rules: tuple[WasteRule, ...] | None = None
) -> list[WasteCategory]:
    """Bytes and counts per waste category over the squashed filesystem, in rule-file order.

    Counts every non-directory entry; bytes are regular-file sizes (a hard link adds none, its
    inode is counted once at the file). Categories with no match are left out.
    Raises RuleError when the shipped rule file is invalid.
    """
    rules = load_waste_rules() if rules is None else rules
    languages = image_languages(config)
    found: dict[str, list[tuple[int, str]]] = {r.name: [] for r in rules}
    any_rule = GlobSet(g for r in rules for g in r.globs)  # one test rejects most files
    for path, entry in rootfs.tree.entries.items():
        if entry.kind is EntryKind.DIR or not any_rule.match(path):
            continue
        for rule in rules:
            if not rule.matches_path(entry.path):
                continue
            if rule.condition == "orphaned-pycache" and not _orphaned_pycache(rootfs, entry.path):
                continue
            if rule.condition == "foreign-locale":
                name = rule.locale_name(entry.path)
                if not name or _language(name) in languages:
                    continue
            found[rule.name].append((entry.size if entry.kind is EntryKind.FILE else 0, entry.path))
            break
    out: list[WasteCategory] = []
    for rule in rules:
        hits = found[rule.name]
        if not hits:
            continue
        examples = tuple(p for _, p in sorted(hits, key=lambda h: (-h[0], h[1]))[:MAX_EXAMPLES])
        total = sum(size for size, _ in hits)
        log.info("waste %s: %d files, %d bytes", rule.name, len(hits), total)
        out.append(WasteCategory(rule.name, rule.description, total, len(hits), examples))
    return out
