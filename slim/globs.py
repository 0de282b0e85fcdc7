"""The one glob dialect for every user-facing pattern: `--keep`, `--drop`, rule packs, waste
categories and `forbid_paths` budgets.

The dialect is the one .gitignore, pre-commit and GitHub Actions users already know, matched
with wcmatch (`wcmatch.glob`, flags GLOBSTAR | DOTMATCH):

* `*`, `?` and `[…]` match inside one path component (`*` never crosses '/');
* `**` as a whole component matches zero or more components (`/usr/**/gcc` matches
  `/usr/gcc` and `/usr/lib/gcc-x/gcc`; `/**/*.a` matches `/x.a`);
* dot files are matched by `*` like any other name (an image has no notion of hidden files);
* a pattern is matched against the whole absolute path.

Config files that mean glob(3) (ld.so.conf `include`, nginx and lighttpd `include`) are
matched component by component against the image directory listing: that is
`RootFS.glob3`, not this module.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from wcmatch import glob as _wc

FLAGS = _wc.GLOBSTAR | _wc.DOTMATCH
MAGIC = frozenset("*?[")


@functools.lru_cache(maxsize=4096)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """The compiled regex of one pattern (cached). Raises ValueError for an invalid pattern."""
    include, _exclude = _wc.translate(pattern, flags=FLAGS)
    return re.compile(include[0])


def has_magic(pattern: str) -> bool:
    """Whether `pattern` holds a wildcard (otherwise it names one path literally)."""
    return any(ch in MAGIC for ch in pattern)


def literal_prefix(pattern: str) -> str:
    """The part of `pattern` before its first wildcard: every match starts with it."""
    cut = min((i for i, ch in enumerate(pattern) if ch in MAGIC), default=len(pattern))
    return pattern[:cut]


_CLASS = re.compile(r"\[!?\]?[^\]]*\]")


def required_literal(pattern: str) -> str:
    """The longest piece of `pattern` every matching path holds verbatim: the longest run of
    plain characters inside one component ("" when the pattern escapes with a backslash)."""
    if "\\" in pattern:
        return ""
    best = ""
    for component in pattern.split("/"):
        for piece in re.split(r"[*?]", _CLASS.sub("*", component)):
            if len(piece) > len(best):
                best = piece
    return best


def check_glob(pattern: str, *, compiled: bool = True) -> str:
    """Why `pattern` is not a valid glob ("" when it is). An unclosed '[' is reported as a
    mistake rather than taken as a literal bracket, as fnmatch would silently do.
    `compiled=False` skips compiling the regex (what else could be wrong): for slim's own rule
    packs, which a unit test compiles, and which every run loads (~300 compiles, 60 ms)."""
    i = 0
    while i < len(pattern):
        if pattern[i] == "[":
            close = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("]", "!") else i + 1)
            if close < 0:
                return f"unclosed '[' at position {i}"
            i = close
        i += 1
    if not compiled:
        return ""
    try:
        compile_glob(pattern)
    except (ValueError, re.error) as exc:
        return str(exc)
    return ""


class GlobSet:
    """Several patterns matched at once (any-of).

    `match` is on the hot path of reading a layer (every member is tested against what the
    analyzers capture), so the common shapes skip the regex engine: a literal path is a set
    lookup, `**/NAME` and `**/*.EXT` are suffix tests, `/DIR/**` a prefix test — each exactly
    what the regex would answer (tests/unit/test_globs_refs.py compares them). Each other
    pattern runs its own regex only when the path holds the pattern's longest literal piece
    (every match holds it verbatim): `**/php/**/*.ini` costs a substring test on a path
    without ".ini", where one combined regex cost ~16 µs per path on the layer reader.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(dict.fromkeys(patterns))
        self._exact: set[str] = set()
        names: list[str] = []  # `**/NAME`: the path is NAME or ends with /NAME
        suffixes: list[str] = []  # `**/*.EXT` (and `**/*TAIL`): the last component ends so
        prefixes: list[str] = []  # `/DIR/**`: below DIR
        rest: list[tuple[str, re.Pattern[str]]] = []
        for pattern in self.patterns:
            if not has_magic(pattern):
                self._exact.add(pattern)
            elif pattern.startswith("**/*") and pattern[4:] and not has_magic(pattern[4:]) and "/" not in pattern[4:]:
                suffixes.append(pattern[4:])
            elif pattern.startswith("**/") and not has_magic(pattern[3:]):
                names.append(pattern[3:])
            elif pattern.endswith("/**") and not has_magic(pattern[:-3]) and pattern.startswith("/"):
                prefixes.append(pattern[:-2])
            else:
                rest.append((required_literal(pattern), compile_glob(pattern)))
        self._names = tuple(names)
        self._name_suffixes = tuple("/" + n for n in names)
        self._suffixes = tuple(suffixes)
        self._prefixes = tuple(prefixes)
        self._rest = tuple(rest)
        # one scan for any of the literal pieces, so most paths skip the per-pattern tests
        lits = sorted({lit for lit, _ in rest})
        self._any_literal = (re.compile("|".join(map(re.escape, lits))) if rest and "" not in lits
                             else None)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def match(self, path: str) -> bool:
        return (path in self._exact or path.endswith(self._suffixes)
                or path.endswith(self._name_suffixes) or path in self._names
                or path.startswith(self._prefixes)
                or (bool(self._rest)
                    and (self._any_literal is None or self._any_literal.search(path) is not None)
                    and any(lit in path and rx.match(path) is not None for lit, rx in self._rest)))

    def first(self, path: str) -> str | None:
        """The first pattern matching `path`, or None."""
        for pattern in self.patterns:
            if compile_glob(pattern).match(path):
                return pattern
        return None

    def filter(self, paths: Iterable[str]) -> list[str]:
        """The paths matching any pattern, sorted."""
        return sorted(p for p in paths if self.match(p))


def match(path: str, pattern: str) -> bool:
    """Whether `path` matches one pattern of the dialect."""
    return compile_glob(pattern).match(path) is not None


__all__ = ["GlobSet", "check_glob", "compile_glob", "has_magic", "literal_prefix", "match",
           "required_literal"]
