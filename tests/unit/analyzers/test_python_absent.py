"""Imports after an import of a module the image lacks never run (slim.analyzers.python.absent)."""

from __future__ import annotations

import ast
from pathlib import Path

from slim.analyzers.python import PythonAnalyzer, python_roots
from slim.analyzers.python.imports import scan_imports
from tests.unit.analyzers.test_python import (
    PY_CONFIG,
    PY_FILES,
    PY_LINKS,
    SITE,
    closure,
    context,
    write_tree,
)

HEAVY = f"{SITE}/heavy/__init__.py"
LAZY = f"{SITE}/lazypkg/__init__.py"
LAZY_SUB = f"{SITE}/lazypkg/extra.py"
TESTER = '''import sys


def run_tests():
    import pytest
    import heavy
    args = ["--pyargs", "lazypkg.extra"]
    return pytest.main(args)


def elsewhere():
    import json
'''


def _keep(tmp_path: Path, app: str, extra: dict[str, str | bytes] | None = None) -> set[str]:
    files: dict[str, str | bytes] = {
        **PY_FILES, "/app/app.py": app, f"{SITE}/tester.py": TESTER, HEAVY: "",
        LAZY: "def __getattr__(name):\n    if name == 'extra':\n        import lazypkg.extra\n"
              "        return lazypkg.extra\n    raise AttributeError(name)\n",
        LAZY_SUB: "", **(extra or {}),
    }
    write_tree(tmp_path, files, PY_LINKS, PY_CONFIG)
    with context(tmp_path) as ctx:
        keep, _, _ = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer])
    return keep


def test_what_follows_an_import_of_an_absent_module_in_its_block_is_not_followed(tmp_path: Path) -> None:
    keep = _keep(tmp_path, "import lazypkg\nimport tester\n")
    assert f"{SITE}/tester.py" in keep
    # `import heavy` runs only after `import pytest`, which no file of the image provides
    assert HEAVY not in keep
    # and `lazypkg.extra` in the dead lines asks lazypkg's __getattr__ for nothing
    assert LAZY_SUB not in keep
    assert "/usr/lib/python3.11/json/__init__.py" in keep  # another function: runs


def test_a_module_the_image_holds_anywhere_may_be_imported(tmp_path: Path) -> None:
    # not on sys.path, but a directory added at run time could provide it
    keep = _keep(tmp_path, "import tester\n", {"/srv/tools/pytest/__init__.py": ""})
    assert HEAVY in keep
    keep = _keep(tmp_path / "wheel", "import tester\n", {"/srv/pytest-8.0-py3-none-any.whl": b"PK"})
    assert HEAVY in keep


def test_kept_code_that_names_the_module_in_a_string_releases_what_follows(tmp_path: Path) -> None:
    app = "import sys\nimport tester\nsys.modules['pytest'] = object()\n"
    keep = _keep(tmp_path, app)
    assert HEAVY in keep


def test_only_the_block_after_the_failing_import_is_dead(tmp_path: Path) -> None:
    app = ("import tester\n"
           "try:\n    import pytest\nexcept ImportError:\n    pass\n"
           "import heavy\n")  # after the try statement: runs
    assert HEAVY in _keep(tmp_path, app)
    app = "import tester\nif tester:\n    import pytest\nimport heavy\n"  # the `if` may not run
    assert HEAVY in _keep(tmp_path / "if", app)


def test_block_ends_cover_nested_statements_and_later_functions() -> None:
    src = ("import os\n"             # 1
           "def f():\n"              # 2
           "    import a\n"          # 3
           "    if x:\n"             # 4
           "        import b\n"      # 5
           "        import c\n"      # 6
           "    import d\n"          # 7
           "import e\n"              # 8
           "def g():\n"              # 9
           "    return 1\n")         # 10
    ends = {r.module: r.block_end for r in scan_imports(ast.parse(src))}
    assert ends == {"os": 10, "a": 7, "b": 6, "c": 6, "d": 7, "e": 10}


def test_distutils_served_by_setuptools_hack_is_not_absent(tmp_path: Path) -> None:
    from slim.analyzers.python.absent import absent
    from slim.analyzers.python.env import python_env

    files: dict[str, str | bytes] = {**PY_FILES, "/app/app.py": ""}
    files = {p: c for p, c in files.items() if "/distutils" not in p}
    write_tree(tmp_path, {**files, f"{SITE}/distutils-precedence.pth": "import _distutils_hack\n"},
               PY_LINKS, PY_CONFIG)
    with context(tmp_path) as ctx:
        env = python_env(ctx, "/usr/bin/python3.11")
        assert env is not None
        assert not absent(ctx, env, "distutils")
        assert absent(ctx, env, "pytest")


def test_a_released_import_counts_for_lazy_attributes_in_the_same_round(tmp_path: Path) -> None:
    # `heavy` is kept anyway (the app imports it), so releasing the held-back `import heavy`
    # adds no file; what the released lines name (lazypkg.extra) must still count
    from slim.pipeline import AnalyzeOptions, analyze, load_image

    app = "import heavy\nimport lazypkg\nimport tester\nNAME = 'pytest'\n"
    _keep(tmp_path, app)  # writes the tree; the pipeline's worklist (one round per dry run)
    with load_image(f"rootfs:{tmp_path}") as loaded:
        closure = analyze(loaded, AnalyzeOptions()).closure
    assert closure is not None
    assert HEAVY in closure.keep and LAZY_SUB in closure.keep


def test_standard_library_names_are_never_absent(tmp_path: Path) -> None:
    from slim.analyzers.python.absent import absent
    from slim.analyzers.python.env import python_env

    write_tree(tmp_path, {**PY_FILES, "/app/app.py": ""}, PY_LINKS, PY_CONFIG)
    with context(tmp_path) as ctx:
        env = python_env(ctx, "/usr/bin/python3.11")
        assert env is not None
        # no file of these in the tree: built in, or left out of the image on purpose
        for name in ("math", "tkinter", "_decimal", "__hello__"):
            assert not absent(ctx, env, name), name


def test_a_zip_on_sys_path_or_named_by_kept_code_may_provide_anything(tmp_path: Path) -> None:
    from tests.unit.analyzers.test_python import write_tree as write

    # a zip on PYTHONPATH: zipimport loads any module from it, whatever the zip is named
    files = {**PY_FILES, "/app/app.py": "import tester\n", f"{SITE}/tester.py": TESTER, HEAVY: "",
             "/app/vendor.zip": b"PK\x05\x06" + bytes(18)}
    config = {**PY_CONFIG, "Env": [*PY_CONFIG["Env"], "PYTHONPATH=/app/vendor.zip"]}
    write(tmp_path / "a", files, PY_LINKS, config)
    with context(tmp_path / "a") as ctx:
        keep, _, _ = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer])
    assert HEAVY in keep
    # a zip elsewhere that kept code names: it may put it on sys.path
    app = "import sys\nimport tester\nsys.path.insert(0, '/opt/deps.zip')\n"
    assert HEAVY in _keep(tmp_path / "b", app, {"/opt/deps.zip": b"PK\x05\x06" + bytes(18)})
    # its directory named by a file that works on sys.path
    app = "import sys\nimport tester\nD = '/opt'\nsys.path[:0] = [D + '/x.zip']\n"
    assert HEAVY in _keep(tmp_path / "c", app, {"/opt/deps.zip": b"PK\x05\x06" + bytes(18)})
    # its directory named where nothing touches sys.path: no reason to think it is imported from
    app = "import tester\nWHEELS = '/opt'\n"
    assert HEAVY not in _keep(tmp_path / "d", app, {"/opt/deps.zip": b"PK\x05\x06" + bytes(18)})


def test_python_2_modules_are_never_absent(tmp_path: Path) -> None:
    import dataclasses

    from slim.analyzers.python.absent import absent
    from slim.analyzers.python.env import python_env

    write_tree(tmp_path, {**PY_FILES, "/app/app.py": ""}, PY_LINKS, PY_CONFIG)
    with context(tmp_path) as ctx:
        env = python_env(ctx, "/usr/bin/python3.11")
        assert env is not None and absent(ctx, env, "cPickle")
        assert not absent(ctx, dataclasses.replace(env, version=(2, 7)), "cPickle")


def test_a_lone_carriage_return_ends_a_line_for_the_dead_lines_too(tmp_path: Path) -> None:
    # lazypkg.extra runs at module level, after f; counted with "\n" only it fell in f's dead lines
    app = "import lazypkg\ndef f():\n    import pytest\n    x = 1\r\r\rlazypkg.extra\n"
    assert LAZY_SUB in _keep(tmp_path, app)


def test_a_released_import_reports_what_it_could_not_find(tmp_path: Path) -> None:
    files = {**PY_FILES, "/app/app.py": "import sys\nimport tester\nN = 'pytest'\n",
             f"{SITE}/tester.py": "def run():\n    import pytest\n    import nothere\n"}
    write_tree(tmp_path, files, PY_LINKS, PY_CONFIG)
    with context(tmp_path) as ctx:
        _, _, unknowns = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer])
    assert any("import nothere" in u.reason for u in unknowns)


_SEEDED = """
import sys
from pathlib import Path
from slim.analyzers.python import PythonAnalyzer, python_roots
from tests.unit.analyzers.test_python import PY_CONFIG, PY_FILES, PY_LINKS, SITE, closure, context, write_tree
tmp = Path(sys.argv[1])
files = {**PY_FILES, "/app/app.py": "import sys\\nimport tester\\nimport b_names\\nimport a_names\\n",
         f"{SITE}/tester.py": "def run():\\n    import pytest\\n    import json\\n",
         f"{SITE}/a_names.py": "N = 'pytest'\\n", f"{SITE}/b_names.py": "M = 'pytest'\\n"}
write_tree(tmp, files, PY_LINKS, PY_CONFIG)
with context(tmp) as ctx:
    _, edges, _ = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer])
print(sorted({e.evidence for e in edges if "in a string" in e.evidence}))
"""


def test_the_file_named_as_evidence_does_not_depend_on_string_hashing(tmp_path: Path) -> None:
    """Two kept files name the absent module; the released edges' evidence names the first
    in path order, in every process (a set's order changes with PYTHONHASHSEED: reports and
    graph exports of one image differed from run to run)."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[3]
    answers = set()
    for seed in ("1", "2", "3", "4"):
        proc = subprocess.run([sys.executable, "-c", _SEEDED, str(tmp_path / seed)], cwd=repo,
                              env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        answers.add(proc.stdout)
    (answer,) = answers
    assert "a_names.py names 'pytest'" in answer and "b_names.py" not in answer
