"""Parse only the parts of a module that can hold an import.

`scan_imports` needs the syntax tree of every statement that holds an import, with what
encloses it (a `try`, an `if TYPE_CHECKING:`, a function). A top-level statement whose text never
spells `import` holds no import statement and no `import_module`/`__import__` call, so its tree
is not needed. In the Python sources of the bench images about 60 % of the bytes are in such
statements (whole classes and functions), and more than half of what is left is the methods of
classes that import in one method: parsing only the rest is about 3 times faster than `ast.parse`
of the whole module.

Where a top-level statement starts is found from the text alone: a line that starts in column 0
with something other than white space, a comment or a closing bracket, and is none of

* a clause continuing the statement before it (`else`, `elif`, `except`, `finally`);
* the line after a decorator line (`@…`), which belongs to the decorated definition;
* the line after a backslash continuation;
* inside a triple-quoted string: an odd number of `\"\"\"` or `'''` before it (a docstring with
  text in column 0 is common).

The statements that spell `import` (or `__main__`) are parsed in one parse of the source with
every other statement made blank lines, so each keeps its line numbers. In a class with a one-line header, the statements of its body are found the same
way at the indentation of its first statement, and those that do not spell `import` (but the
last, which ends the block) are parsed as `pass` on the same lines (_thinned).

A wrong boundary (one taken inside a bracket) makes a part that does not parse, and then the
whole module is parsed. A triple quote that is no string's (one in a comment) miscounts, and a
part can start inside a string: the parse then reads the string's closing quote as an opening
one and takes the code after it for the string's text. So a string statement spanning lines that
read as imports makes the module parsed whole too (a docstring showing an import does the
same). So does a `__main__` block that names a private name: deadcode.py decides which private
functions only that block calls from every statement of the module. A module with a CR line end
is parsed whole (column 0 is found after LF).

What a partial parse does not do is reject a module whose other statements are not valid Python:
their imports are followed instead of being reported as unparseable, which keeps more, never less.
"""

from __future__ import annotations

import ast
import functools
import itertools
import re
from collections.abc import Callable

_CLAUSE = re.compile(r"(?:else|elif|except|finally)\b")
_WORDS = ("import", "__main__")  # what a statement scan_imports reads spells
_CLASS_HEADER = re.compile(r"class[ \t]+\w+[ \t]*(?:\([^\n]*\))?[ \t]*:[ \t]*(?:#[^\n]*)?\n")
_FIRST_STATEMENT = re.compile(r"(?m)^([ \t]+)[^\s#]")  # an indented line that is not blank or a comment
_BLANK_OR_COMMENT = re.compile(r"(?m)^[ \t]*(?:#[^\n]*)?\n")


@functools.lru_cache(maxsize=32)
def _line_start(indent: str) -> re.Pattern[str]:
    """A line at exactly `indent` that starts something: not blank, a comment or a closing bracket."""
    return re.compile(f"(?m)^{re.escape(indent)}(?=[^\\s#)\\]}}])")


@functools.lru_cache(maxsize=32)
def _shallower(indent: str) -> re.Pattern[str]:
    """A line that is neither blank, a comment, nor indented by at least `indent`."""
    return re.compile(f"(?m)^(?!{re.escape(indent)}|[ \\t]*(?:#|\\n|$))")


def _starts(source: str, indent: str = "", start: int = 1, end: int | None = None) -> list[int]:
    """Offsets of the lines in source[start:end] that start a new statement of the block at
    `indent` (the module's by default; rules in the module doc)."""
    out: list[int] = []
    dq = sq = 0  # triple quotes before the candidate line
    last = start - 1
    after_decorator = source.startswith("@", start - 1 + len(indent))  # the first statement's
    for m in _line_start(indent).finditer(source, start, len(source) if end is None else end):
        at = m.start()
        dq += source.count('"""', last, at)
        sq += source.count("'''", last, at)
        last = at
        code = at + len(indent)
        decorated, after_decorator = after_decorator, source.startswith("@", code)
        if (decorated or dq & 1 or sq & 1 or source.startswith("\\\n", at - 2)
                or _CLAUSE.match(source, code)):
            continue
        out.append(at)
    return out


def _thinned(source: str, a: int, b: int) -> str:
    """source[a:b], a top-level statement, as it is parsed: when it is a class with a one-line
    header, each statement of its body that does not spell `import` (but the last, which ends the
    block) becomes `pass` on the same lines. A class holds most of a module's code, and an import
    in it is mostly in one method. The body's indentation is that of its first statement (the
    rule of the language); a line less indented (column 0 in a docstring, a continuation line)
    leaves the class whole."""
    at = a
    while source.startswith("@", at):  # one-line decorators
        at = source.find("\n", at, b) + 1
        if at <= 0:
            return source[a:b]
    header = _CLASS_HEADER.match(source, at, b)
    if header is None:
        return source[a:b]
    body = header.end()
    first = _FIRST_STATEMENT.search(source, body, b)
    if first is None or source.count("\n", body, first.start()) != len(
            _BLANK_OR_COMMENT.findall(source, body, first.start())):
        return source[a:b]  # a line before the first statement that is not blank or a comment
    indent = first.group(1)
    if _shallower(indent).search(source, first.start(), b):
        return source[a:b]
    bounds = [first.start(), *_starts(source, indent, first.start() + 1, b), b]
    if len(bounds) < 3:
        return source[a:b]
    parts = [source[a:first.start()]]
    for x, y in itertools.pairwise(bounds[:-1]):
        if source.find("import", x, y) >= 0:
            parts.append(source[x:y])
        else:
            parts.append(indent + "pass" + "\n" * source.count("\n", x, y))
    parts.append(source[bounds[-2]:b])
    return "".join(parts)


def import_tree(source: str, path: str, main_guard: Callable[[ast.AST], bool]) -> tuple[ast.Module, int]:
    """A module of the top-level statements of `source` that can hold an import (at their
    own lines), and the module's last line, or (the whole tree, 0) when it had to be parsed
    whole. `main_guard(test)`: whether an `if` test is `__name__ == "__main__"`. Raises what
    ast.parse raises, from the whole parse.

    One parse of the source with every other statement made blank lines (so the lines stay
    where they are, and the work stays linear in the size of the source)."""
    if "\r" in source:
        return ast.parse(source, filename=path), 0
    words = _WORDS if "__main__" in source else _WORDS[:1]
    bounds = [0, *_starts(source), len(source)]
    if len(bounds) == 2 and any(word in source for word in words):
        return ast.parse(source, filename=path), 0  # one statement, which may import
    pieces: list[str] = []
    for a, b in itertools.pairwise(bounds):
        if any(source.find(word, a, b) >= 0 for word in words):
            pieces.append(_thinned(source, a, b))
        else:
            pieces.append("\n" * source.count("\n", a, b))
    try:
        body = ast.parse("".join(pieces), filename=path).body
    except (SyntaxError, ValueError):
        return ast.parse(source, filename=path), 0
    if _may_have_swallowed(body) or (len(words) > 1 and _main_names_private(body, main_guard)):
        return ast.parse(source, filename=path), 0
    return ast.Module(body=body, type_ignores=[]), source.count("\n") + 1


_IMPORT_LINE = re.compile(r"(?m)(?:^[ \t]*|[:;][ \t]*)(?:import[ \t]+[\w.]|from[ \t]+[\w.]+[ \t]+import\b)")


def _may_have_swallowed(body: list[ast.stmt]) -> bool:
    """Whether a string statement of `body` (or of a class in it) spans lines that read as
    import statements. A miscounted triple quote (one in a comment) can make a part start
    inside a string; the parse then reads the string's closing quote as an opening one and
    real imports as the string's text. A docstring showing an import looks the same: either
    way the module is parsed whole."""
    for node in body:
        if isinstance(node, ast.ClassDef) and _may_have_swallowed(node.body):
            return True
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str) and "\n" in node.value.value
                and _IMPORT_LINE.search(node.value.value)):
            return True
    return False


def _main_names_private(body: list[ast.stmt], main_guard: Callable[[ast.AST], bool]) -> bool:
    """Whether a `__main__` block names a private name (`_x`, not a dunder): a load, an
    attribute or a string, as deadcode.py counts them."""
    for node in body:
        if isinstance(node, ast.If) and main_guard(node.test):
            for sub in ast.walk(node):
                name = (sub.id if isinstance(sub, ast.Name) else sub.attr if isinstance(sub, ast.Attribute)
                        else sub.value if isinstance(sub, ast.Constant) and isinstance(sub.value, str) else "")
                if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                    return True
    return False


__all__ = ["import_tree"]
