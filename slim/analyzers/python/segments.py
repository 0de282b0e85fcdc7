"""Parse only the parts of a module that can hold an import.

`scan_imports` needs the syntax tree of every statement that holds an import, with what
encloses it (a `try`, an `if TYPE_CHECKING:`, a function). A top-level statement whose text never
spells `import` holds no import statement and no `import_module`/`__import__` call, so its tree
is not needed. In the Python sources of the bench images about 60 % of the bytes are in such
statements (whole classes and functions), and `ast.parse` costs about 0.15 µs a byte: parsing
only the rest is about 2.5 times faster.

Where a top-level statement starts is found from the text alone: a line that starts in column 0
with something other than white space, a comment or a closing bracket, and is none of

* a clause continuing the statement before it (`else`, `elif`, `except`, `finally`);
* the line after a decorator line (`@…`), which belongs to the decorated definition;
* the line after a backslash continuation;
* inside a triple-quoted string: an odd number of `\"\"\"` or `'''` before it (a docstring with text in
  column 0 is common; a triple quote inside a comment or a one-line string can only make this
  merge more statements, or stop at a line the parse below refuses).

Consecutive statements that spell `import` (or `__main__`) are parsed together, at their own
line numbers. A part that does not parse (a boundary taken inside a bracket, say) makes the whole
module parsed. So does a `__main__` block that names a private name: deadcode.py decides which
private functions only that block calls from every statement of the module. A module with a CR
line end is parsed whole too (column 0 is found after LF).

What a partial parse does not do is reject a module whose other statements are not valid Python:
their imports are followed instead of being reported as unparseable, which keeps more, never less.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Callable

_START = re.compile(r"(?m)^(?=[^\s#)\]}])")  # column 0: not blank, a comment or a closing bracket
_CLAUSE = re.compile(r"(?:else|elif|except|finally)\b")
_WORDS = ("import", "__main__")  # what a statement scan_imports reads spells


def _starts(source: str) -> list[int]:
    """Offsets of the lines that start a new top-level statement (after the first)."""
    out: list[int] = []
    dq = sq = 0  # triple quotes before the candidate line
    last = 0
    after_decorator = source.startswith("@")
    for m in _START.finditer(source, 1):
        at = m.start()
        dq += source.count('"""', last, at)
        sq += source.count("'''", last, at)
        last = at
        decorated, after_decorator = after_decorator, source.startswith("@", at)
        if (decorated or dq & 1 or sq & 1 or source.startswith("\\\n", at - 2)
                or _CLAUSE.match(source, at)):
            continue
        out.append(at)
    return out


def import_tree(source: str, path: str, main_guard: Callable[[ast.AST], bool]) -> tuple[ast.Module, int]:
    """A module of the top-level statements of `source` that can hold an import (at their
    own lines), and the module's last line, or (the whole tree, 0) when it had to be parsed
    whole. `main_guard(test)`: whether an `if` test is `__name__ == "__main__"`. Raises what
    ast.parse raises, from the whole parse."""
    if "\r" in source:
        return ast.parse(source, filename=path), 0
    words = _WORDS if "__main__" in source else _WORDS[:1]
    bounds = [0, *_starts(source), len(source)]
    runs: list[tuple[int, int]] = []  # [start, end) of consecutive statements that spell them
    for a, b in itertools.pairwise(bounds):
        if all(source.find(word, a, b) < 0 for word in words):
            continue
        if runs and runs[-1][1] == a:
            runs[-1] = (runs[-1][0], b)
        else:
            runs.append((a, b))
    if len(runs) == 1 and runs[0] == (0, len(source)):
        return ast.parse(source, filename=path), 0
    body: list[ast.stmt] = []
    line, done = 1, 0
    try:
        for a, b in runs:
            line += source.count("\n", done, a)
            done = a
            body.extend(ast.parse("\n" * (line - 1) + source[a:b], filename=path).body)
    except (SyntaxError, ValueError):
        return ast.parse(source, filename=path), 0
    if len(words) > 1 and _main_names_private(body, main_guard):
        return ast.parse(source, filename=path), 0
    return ast.Module(body=body, type_ignores=[]), source.count("\n") + 1


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
