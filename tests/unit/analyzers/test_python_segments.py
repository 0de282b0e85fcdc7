"""Parsing only the statements that can hold an import (slim.analyzers.python.segments) finds
exactly what a parse of the whole module finds."""

from __future__ import annotations

import ast
import sysconfig
from pathlib import Path

import pytest

from slim.analyzers.python.imports import _is_main_guard, _scan, scan_imports
from slim.analyzers.python.segments import import_tree


def _both(source: str) -> tuple[list[object], list[object], int]:
    """(refs from the whole tree, refs from import_tree, import_tree's module end)."""
    calls = "import_module" in source or "__import__" in source
    lines = source.count("\n") + 1
    whole = scan_imports(ast.parse(source), calls, lines)
    tree, end = import_tree(source, "<test>", _is_main_guard)
    return list(whole), list(scan_imports(tree, calls, end or lines)), end


def _modules(refs: list[object]) -> list[str]:
    return [r.module for r in refs]  # type: ignore[attr-defined]


TRICKY = {
    "docstring with code in column 0 before an import": (
        'def f():\n    """Example:\nif TYPE_CHECKING:\n    x = 1\n    """\n    import foo\n\n\ndef g():\n'
        "    return 1\n", ["foo"]),
    "decorators": "@dec\n@dec2(\n    1)\ndef f():\n    import a\n\n\nclass C:\n    pass\n",
    "guards and clauses": (
        "try:\n    import a\nexcept ImportError:\n    import b\nelse:\n    x = 1\nfinally:\n    y = 2\n"
        "if TYPE_CHECKING:\n    import typesonly\nelif x:\n    import c\nelse:\n    import d\n"
        "def h():\n    return 2\n", ["a", "b", "c", "d"]),
    "backslash continuation": "x = 1 + \\\n2\nimport b\nz = 3\n",
    "column 0 inside brackets": "x = [\n'a',\n]\nimport c\ny = (\n1)\n",
    "a triple quote in a comment": "# a stray \"\"\"\nimport a\ndef f():\n    pass\nimport b\n",
    "calls": "import importlib\ndef f():\n    return importlib.import_module('m')\ndef g():\n    pass\n",
    "__main__ naming a private function": (
        "def _selftest():\n    import doctest\n\n\ndef main():\n    pass\n\n\n"
        "if __name__ == '__main__':\n    _selftest()\n"),
    "__main__ naming public names only": (
        "def _helper():\n    import json\n\n\ndef main():\n    import csv\n\n\n"
        "if __name__ == '__main__':\n    import sys\n    main()\n"),
    "module __getattr__": (
        "def __getattr__(name):\n    if name == 'x':\n        import heavy\n        return heavy\n"
        "    raise AttributeError(name)\n\n\nclass Other:\n    pass\n"),
}


@pytest.mark.parametrize("case", sorted(TRICKY))
def test_tricky_sources_give_what_a_whole_parse_gives(case: str) -> None:
    value = TRICKY[case]
    source, expected = value if isinstance(value, tuple) else (value, None)
    whole, part, _ = _both(source)
    assert part == whole
    if expected is not None:
        assert _modules(part) == expected


def test_statements_without_imports_are_not_parsed() -> None:
    source = "import a\n\n\nclass Big:\n    def m(self):\n        return 1\n\n\ndef f():\n    import b\n"
    tree, end = import_tree(source, "<test>", _is_main_guard)
    assert [type(s).__name__ for s in tree.body] == ["Import", "FunctionDef"]
    assert end == source.count("\n") + 1
    assert [s.lineno for s in tree.body] == [1, 9]


def test_a_top_level_import_blocks_to_the_end_of_the_module() -> None:
    """Lines after a failing top-level import never run, up to the module's end, also when the
    tree holds only some of the statements (absent.py reads block_end)."""
    source = "import pytest\nx = 1\ndef f():\n    pass\nimport later\n"
    _, part, end = _both(source)
    assert end
    assert {r.module: r.block_end for r in part} == {"pytest": 6, "later": 6}  # type: ignore[attr-defined]


def test_what_needs_the_whole_module_is_parsed_whole() -> None:
    for source in ("import a\r\nx = 1\r\n",  # CR line ends
                   "def _t():\n    import d\nif __name__ == '__main__':\n    _t()\n",  # deadcode.py
                   "x = [\n'a',\nimport_b]\ny = 1\n"):  # a part that does not parse
        assert import_tree(source, "<test>", _is_main_guard)[1] == 0
    refs = {r.module: r.main_only for r in _both(str(TRICKY["__main__ naming a private function"]))[1]}  # type: ignore[attr-defined]
    assert refs == {"doctest": True}


def test_a_broken_statement_without_imports_does_not_hide_the_others() -> None:
    kind, scan = _scan("import os\ndef broken(:\n    pass\nimport json\n", "/x.py", (3, 11))
    assert kind == "refs" and [r["module"] for r in scan["refs"]] == ["os", "json"]  # type: ignore[index]
    kind, why = _scan("import os\ndef broken(:\n    import json\n", "/x.py", (3, 11))
    assert kind == "unknown" and "not parseable" in str(why)


def test_a_byte_order_mark_is_skipped_as_python_does() -> None:
    kind, scan = _scan("\ufeffimport os\n", "/x.py", (3, 11))
    assert kind == "refs" and [r["module"] for r in scan["refs"]] == ["os"]  # type: ignore[index]


def test_the_standard_library_gives_the_same_imports() -> None:
    """Every 4th module of the running interpreter's standard library, its own tests left out
    (~200 files): the same ImportRefs, and most of them really parsed in part."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.rglob("*.py")
                   if not {"test", "tests", "site-packages", "dist-packages"} & set(p.relative_to(stdlib).parts))[::4]
    assert len(files) > 100
    partial = 0
    for path in files:
        source = path.read_bytes().decode("utf-8", "replace").removeprefix("\ufeff")
        try:
            ast.parse(source)
        except (SyntaxError, ValueError):
            continue  # test data written in Python 2 (lib2to3)
        whole, part, end = _both(source)
        assert part == whole, path
        partial += bool(end)
    assert partial > len(files) * 0.7


def test_the_token_bound_never_undercounts() -> None:
    """_more_tokens_than answers from a bound computed in C when it can; the answer is the one
    counting with tokenize gives, around the true count."""
    import io
    import tokenize

    from slim.analyzers.python.imports import _more_tokens_than

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = [p.read_text("utf-8", "replace") for p in sorted(stdlib.glob("*.py"))[::10]]
    sources += ["x = 1if y else 2\n", "def f():\n    if a:\n        if b:\n            c\nd\n",
                "s = '''a\nb''' + r'\\'' # c\n"]
    for source in sources:
        n = sum(1 for _ in tokenize.generate_tokens(io.StringIO(source).readline))
        assert _more_tokens_than(source, n - 1) and not _more_tokens_than(source, n)


SWALLOWING = '''# a stray """ in a comment
def f():
    """
text in column 0
"""
    return 1
import os
X = """
value
"""
'''


def test_a_stray_triple_quote_never_hides_an_import() -> None:
    """The triple quote in the comment flips the count: a part then starts at the docstring's
    closing quote, which parses as a string holding `import os`. The module is parsed whole."""
    whole, part, end = _both(SWALLOWING)
    assert part == whole and "os" in _modules(part) and end == 0


CLASS = '''class A(Base):
    """Doc."""

    def one(self):
        return [i for i in range(10)]

    @property
    def two(self):
        import json
        return json

    # a comment
    def three(self):
        return 3
'''


def test_class_members_without_imports_are_not_parsed() -> None:
    from slim.analyzers.python.segments import _thinned

    thin = _thinned(CLASS, 0, len(CLASS))
    assert thin.count("\n") == CLASS.count("\n")
    assert "def one" not in thin and '"""Doc."""' not in thin  # made `pass`
    assert "import json" in thin and "def three" in thin  # holds an import; ends the block
    whole, part, end = _both(CLASS + "import os\n")
    assert part == whole and end and _modules(part) == ["json", "os"]
    for odd in ("class A:\n    x = (\n    1)\n    def f(self):\n        import json\n    y = 2\n",
                'class A:\n    def f(self):\n        """\ncolumn 0\n"""\n        import json\n    y = 2\n'):
        whole, part, _ = _both(odd + "import os\n")  # a continuation line; column 0 in a docstring
        assert part == whole and "json" in _modules(part)


def test_one_parse_however_many_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts are parsed together, the statements between them made blank lines: parsing each
    part at its own line by padding it with newlines made 20,000 alternating imports cost
    10 s (quadratic), against 0.4 s for a whole parse."""
    import slim.analyzers.python.segments as segments

    calls: list[int] = []
    real = ast.parse

    def counting(source: str, *args: object, **kwargs: object) -> ast.AST:
        calls.append(len(source))
        return real(source, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(segments.ast, "parse", counting)
    source = "".join(f"import a{i}\nx = {i}\n" for i in range(3000))
    tree, end = import_tree(source, "<test>", _is_main_guard)
    assert end and calls == [len(source) - sum(len(f"x = {i}") for i in range(3000))]
    assert [s.lineno for s in tree.body] == list(range(1, 6000, 2))


def test_a_parse_carries_the_quoted_dotted_names_of_its_source() -> None:
    """dotted_string_edges takes the names from the parse (done in a worker when one runs):
    they are the names it would scan itself, byte order mark and prose included."""
    from slim.analyzers.python.dynamic import quoted_dotted_names

    source = '\ufeffx = "a.b"\ny = \'c.d:e\'\n"""doc "f.g" """\nz = "a.b"\n'
    kind, scan = _scan(source, "/x.py", (3, 11))
    assert kind == "refs"
    assert scan["dotted"] == quoted_dotted_names(source) == ["a.b", "c.d", "f.g"]  # type: ignore[index]
