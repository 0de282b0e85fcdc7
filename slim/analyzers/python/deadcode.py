"""Module-private functions that only the module's own `__main__` block can call.

`pickle.py` ends with `if __name__ == "__main__": _test()`, and `_test` imports doctest (2 MB
with what doctest imports); `random.py`'s `_test_generator` imports statistics. When a module is
imported, not run, its `__main__` block never runs (imports.py already skips the imports written
inside it) — and neither can a function nothing else calls. Such a function's imports are as
dead as the block's.

A top-level function is dead when all of these hold:

* its name starts with `_` and is not a dunder (PEP 8: internal to the module — another module
  naming it is a contract break we accept, and verification still runs);
* it has no decorators (a decorator may register it: `@atexit.register`, `@app.route`);
* the `__main__` block names it, directly or through other such functions;
* nothing else in the module names it: no load of the name, no attribute of that name
  (`self._test`, `mod._test`), no string equal to it (`getattr`, `globals()[…]`), and it is not
  in a literal `__all__`. A private function the module never names at all is live — another
  module of its package calls it.

Live is a closure: a function named from live code is live, and so is everything it names.
"""

from __future__ import annotations

import ast
from collections.abc import Callable


def _candidates(tree: ast.Module) -> dict[str, ast.AST]:
    out: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.decorator_list:
            name = node.name
            if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                out[name] = node
    return out


def _names_in(node: ast.AST, wanted: set[str]) -> set[str]:
    """Which of `wanted` `node` names: loads, attributes, string constants."""
    found: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id in wanted:
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute) and sub.attr in wanted:
            found.add(sub.attr)
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str) and sub.value in wanted:
            found.add(sub.value)
    return found


def dead_functions(tree: ast.AST, is_main_guard: Callable[[ast.AST], bool]) -> set[int]:
    """`id()`s of the FunctionDef nodes of `tree` that only its `__main__` block can reach
    (`is_main_guard(test)`: whether an `if` test is `__name__ == "__main__"`)."""
    if not isinstance(tree, ast.Module):
        return set()
    if not any(isinstance(n, ast.If) and is_main_guard(n.test) for n in tree.body):
        return set()  # no __main__ block: nothing is dead (the common case, at no cost)
    candidates = _candidates(tree)
    if not candidates:
        return set()
    wanted = set(candidates)
    live: set[str] = set()
    from_main: set[str] = set()
    uses: dict[str, set[str]] = {}  # candidate → the candidates its body names
    for node in tree.body:
        if isinstance(node, ast.If) and is_main_guard(node.test):
            for child in node.body:
                from_main |= _names_in(child, wanted)
            for other in node.orelse:  # an `else:` of the guard runs on import
                live |= _names_in(other, wanted)
            continue
        name = getattr(node, "name", None)
        if name in candidates and node is candidates[name]:
            uses[name] = _names_in(node, wanted) - {name}
            continue
        live |= _names_in(node, wanted)
    live = _closure(live, uses)
    return {id(candidates[name]) for name in _closure(from_main, uses) - live}


def _closure(names: set[str], uses: dict[str, set[str]]) -> set[str]:
    """`names` and every candidate they name, transitively."""
    out = set(names)
    todo = list(names)
    while todo:
        for other in uses.get(todo.pop(), set()):
            if other not in out:
                out.add(other)
                todo.append(other)
    return out


__all__ = ["dead_functions"]
