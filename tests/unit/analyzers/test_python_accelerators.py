"""`except ImportError:` fallbacks of C accelerators (accelerators.py), on gcc-built objects."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slim.analyzers.base import Declined
from slim.analyzers.elf import ElfAnalyzer
from slim.analyzers.python import PythonAnalyzer, python_roots
from slim.analyzers.python.imports import scan_imports
from tests.imagekit import write_tree
from tests.unit.analyzers.conftest import MULTIARCH, cc, glibc_root, need_gcc, shlib
from tests.unit.analyzers.test_python import PY_CONFIG, PY_FILES, PY_LINKS, STD, closure, context

DYN = f"{STD}/lib-dynload"
FAST = f"{DYN}/_fast.cpython-311-x86_64-linux-gnu.so"
# decimal.py's shape: the C module, else the pure-Python one
USER = ("try:\n    from _fast import *\n    from _fast import __doc__\n    from _fast import fast_version\n"
        "except ImportError:\n    from _pyfast import *\n    from _pyfast import fast_version\n")
# the names a C module's method table and PyModule_Add* calls write into its read-only data
FAST_C = ('extern int libfast_fn(void);\nconst char *names[] = {"fast_version", "fast_sum", 0};\n'
          "int init(void) { return libfast_fn(); }\n")


def _image(root: Path, *, user: str = USER, libfast: bool = True, fast_c: str = FAST_C,
           fast_bytes: bytes | None = None) -> Path:
    files = dict(PY_FILES)
    files.pop("/usr/bin/python3.11")
    files[f"{STD}/fastmod.py"] = user
    files[f"{STD}/_pyfast.py"] = "import slowhelper\nfast_version = '1'\n"
    files[f"{STD}/slowhelper.py"] = ""
    files["/app/app.py"] = "import fastmod\n"
    write_tree(root, files, PY_LINKS, PY_CONFIG)
    glibc_root(root)
    cc(root, "/usr/bin/python3.11", "int main(void) { return 0; }\n", "-pie", "-fPIE")
    lib = f"/{MULTIARCH}/libfast.so.1"
    shlib(root, lib, "libfast.so.1")
    if fast_bytes is not None:
        (root / FAST.lstrip("/")).write_bytes(fast_bytes)
    else:
        shlib(root, FAST, "_fast.so", f"-L{root}/{MULTIARCH}", "-l:libfast.so.1", body=fast_c)
    if not libfast:
        os.unlink(root / lib.lstrip("/"))
    return root


def _keep(root: Path) -> set[str]:
    with context(root) as ctx:
        keep, _, _ = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer, ElfAnalyzer])
    return keep


def test_the_fallback_of_an_accelerator_that_loads_is_not_kept(tmp_path: Path) -> None:
    need_gcc()
    root = _image(tmp_path)
    with context(root) as ctx:
        keep, _, _ = closure(ctx, python_roots(ctx, ["python3", "app.py"]), [PythonAnalyzer, ElfAnalyzer])
        declined = ctx.service(Declined).of(f"{STD}/_pyfast.py")
    assert {FAST, f"/{MULTIARCH}/libfast.so.1", f"{STD}/fastmod.py"} <= keep
    assert f"{STD}/_pyfast.py" not in keep and f"{STD}/slowhelper.py" not in keep
    # `slim why` says which import was not followed, and why
    assert [src for src, _ in declined] == [f"{STD}/fastmod.py"]
    assert f"{STD}/fastmod.py:6: import _pyfast: in an except ImportError handler that never runs" in declined[0][1]
    assert FAST in declined[0][1]


@pytest.mark.parametrize("case", ["library missing", "name not in the object", "body does more",
                                  "not an object", "a source module", "a dotted module"])
def test_the_fallback_is_kept_when_the_accelerator_may_not_load(tmp_path: Path, case: str) -> None:
    need_gcc()
    if case == "library missing":
        root = _image(tmp_path, libfast=False)
    elif case == "name not in the object":
        root = _image(tmp_path, user=USER.replace("import fast_version", "import fast_mul"))
    elif case == "body does more":  # the call may raise ImportError: the handler may run
        root = _image(tmp_path, user=USER.replace("except", "    fast_version()\nexcept"))
    elif case == "not an object":
        root = _image(tmp_path, fast_bytes=b"\x7fELF\x02\x01\x01" + b"\x00" * 57)
    elif case == "a source module":
        root = _image(tmp_path)
        os.unlink(root / FAST.lstrip("/"))
        (root / f"{STD}/_fast.py".lstrip("/")).write_text("import _missing_dependency\nfast_version = 2\n")
    else:
        root = _image(tmp_path, user=USER.replace("from _fast import", "from fastpkg._fast import"))
        (root / f"{STD}/fastpkg".lstrip("/")).mkdir()
        (root / f"{STD}/fastpkg/__init__.py".lstrip("/")).write_text("")
        os.rename(root / FAST.lstrip("/"), root / f"{STD}/fastpkg/_fast.cpython-311-x86_64-linux-gnu.so".lstrip("/"))
    keep = _keep(root)
    assert {f"{STD}/_pyfast.py", f"{STD}/slowhelper.py"} <= keep


def test_only_except_handlers_of_plain_import_bodies_are_fallbacks() -> None:
    import ast

    refs = scan_imports(ast.parse(
        "try:\n    import _a\n    from _b import x, y\nexcept ImportError:\n    import pa\n"
        "    try:\n        import q\n    except ImportError:\n        import pq\n"
        "else:\n    import after\n"
        "try:\n    import pkg.sub\nexcept ImportError:\n    import other\n"
        "try:\n    from . import rel\nexcept ImportError:\n    import other2\n"))
    by = {r.module or r.names[0]: r.fallback_for for r in refs}
    assert by["_a"] == by["_b"] == by["after"] == by["pkg.sub"] == ()
    assert by["pa"] == by["q"] == ("_a", "_b:x,y")  # the nested try's body runs only in the handler
    assert by["pq"] == ("q",)
    assert by["other"] == by["other2"] == ()  # dotted or relative: not proven here
