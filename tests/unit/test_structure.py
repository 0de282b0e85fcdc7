"""The seams hold: every analyzer is registered, nothing imports in a circle."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import slim
import slim.analyzers
from slim.analyzers import ANALYZERS, analyzer_capture
from slim.analyzers.base import Analyzer

ROOT = Path(slim.__file__).resolve().parent


def _modules(package: str) -> list[str]:
    pkg = importlib.import_module(package)
    return sorted(m.name for m in pkgutil.walk_packages(pkg.__path__, package + "."))


def test_every_analyzer_is_registered_once() -> None:
    found: set[type[Analyzer]] = set()
    for name in _modules("slim.analyzers"):
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Analyzer) and obj is not Analyzer and obj.__module__ == name:
                found.add(obj)
    assert found == set(ANALYZERS), "an Analyzer subclass is missing from ANALYZERS (or extra)"
    names = [cls.name for cls in ANALYZERS]
    assert all(names) and len(names) == len(set(names))
    capture = analyzer_capture()
    assert b"\x7fELF" in capture.magics and b"#!" in capture.magics
    assert "**/*.py" in capture.globs and "/var/lib/dpkg/status" in capture.globs


def test_a_broken_analyzer_is_an_import_error_not_a_silent_skip() -> None:
    code = ("import sys; sys.modules['slim.analyzers.node'] = None\n"
            "try:\n    import slim.analyzers\nexcept ImportError as e:\n    print('loud', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("loud")


def _imports(path: Path, module: str) -> set[str]:
    """slim modules imported at module level (not inside functions or TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("slim"):
                out.add(node.module)
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in ALL:
                        out.add(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("slim"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    return {m for m in out if m in ALL and m != module and not package.startswith(m + ".")
            and m != package} | {m for m in out if m in ALL and m.startswith(module + ".")}


ALL = set(_modules("slim")) | {"slim"}


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for name in ALL:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None
        graph[name] = _imports(Path(spec.origin), name)
    # a package importing its own submodules is how packages work; anything else must be a DAG
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if dep.startswith(node + "."):
                continue
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep):], dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    code = ("import importlib, sys\n"
            f"for name in {sorted(ALL - {'slim.__main__'})!r}:\n"
            "    for m in [k for k in sys.modules if k == 'slim' or k.startswith('slim.')]:\n"
            "        del sys.modules[m]\n"
            "    importlib.import_module(name)\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
