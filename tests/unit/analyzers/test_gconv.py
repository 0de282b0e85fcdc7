"""gconv: iconv's configuration once something imports iconv_open; a module only for a charset
the app names (its locale, a script, an ELF string), never for a Python source's literal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slim.analyzers.elf import ElfAnalyzer
from slim.analyzers.gconv import GconvAnalyzer, charset_names, parse_gconv_modules
from slim.analyzers.script import ScriptAnalyzer
from slim.elf import imported_symbols
from slim.model import ROOT, Edge
from tests.unit.analyzers.test_python import closure, context, write_tree

GCONV = "/usr/lib/x86_64-linux-gnu/gconv"
MODULES = """\
# comment
alias	ISO-IR-100//		ISO-8859-1//
alias	LATIN1//		ISO-8859-1//
alias	ISO8859-1//		ISO-8859-1//
module	ISO-8859-1//		INTERNAL		ISO8859-1	1
module	INTERNAL		ISO-8859-1//		ISO8859-1	1
alias	EUCJP//			EUC-JP//
module	EUC-JP//		INTERNAL		EUC-JP		1
module	INTERNAL		EUC-JP//		EUC-JP		1
"""


@pytest.fixture()
def bash() -> bytes:
    if not os.path.isfile("/bin/bash"):
        pytest.skip("needs the host's /bin/bash")
    return Path("/bin/bash").read_bytes()


def _tree(tmp_path: Path, bash: bytes, extra: dict[str, str | bytes] | None = None,
          env: list[str] | None = None) -> Path:
    files: dict[str, str | bytes] = {
        "/bin/bash": bash,
        f"{GCONV}/gconv-modules": MODULES,
        f"{GCONV}/gconv-modules.cache": b"\x00cache",
        f"{GCONV}/ISO8859-1.so": b"\x7fELF module",
        f"{GCONV}/EUC-JP.so": b"\x7fELF module",
        **(extra or {}),
    }
    write_tree(tmp_path, files, config={"Env": env or []})
    return tmp_path


def _keep(root: Path, *paths: str) -> set[str]:
    with context(root) as ctx:
        if "iconv_open" not in imported_symbols(ctx.fs, "/bin/bash"):
            pytest.skip("this host's bash does not import iconv_open")
        roots = [Edge(ROOT, p, "entrypoint", "") for p in paths]
        keep, _, _ = closure(ctx, roots, [ElfAnalyzer, ScriptAnalyzer, GconvAnalyzer])
    return keep


def test_parse_gconv_modules_follows_aliases() -> None:
    modules: dict[str, set[str]] = {}
    aliases: dict[str, str] = {}
    parse_gconv_modules(MODULES, GCONV, modules, aliases)
    assert modules["ISO-8859-1"] == {f"{GCONV}/ISO8859-1.so"}
    assert aliases["LATIN1"] == "ISO-8859-1" and "INTERNAL" not in modules
    assert {"latin1", "ISO-8859-1//TRANSLIT", "utf-8"} <= charset_names(b"iconv -f latin1 'ISO-8859-1//TRANSLIT' utf-8")


def test_configuration_without_modules_when_nothing_names_a_charset(tmp_path: Path, bash: bytes) -> None:
    keep = _keep(_tree(tmp_path, bash), "/bin/bash")
    assert {f"{GCONV}/gconv-modules", f"{GCONV}/gconv-modules.cache"} <= keep
    assert not {f"{GCONV}/ISO8859-1.so", f"{GCONV}/EUC-JP.so"} & keep


@pytest.mark.parametrize("order", ["script first", "program first"])
def test_a_script_naming_a_charset_keeps_its_module(tmp_path: Path, bash: bytes, order: str) -> None:
    root = _tree(tmp_path, bash, {"/app/run.sh": "#!/bin/bash\niconv -f latin1 -t UTF-8 in.txt\n"})
    paths = ("/app/run.sh", "/bin/bash") if order == "script first" else ("/bin/bash", "/app/run.sh")
    keep = _keep(root, *paths)
    assert f"{GCONV}/ISO8859-1.so" in keep and f"{GCONV}/EUC-JP.so" not in keep


def test_python_literals_and_programs_without_iconv_keep_no_module(tmp_path: Path, bash: bytes) -> None:
    root = _tree(tmp_path, bash, {"/app/app.py": "data.encode('euc-jp')\n",
                                  "/app/notes.txt": "latin1\n"})
    keep = _keep(root, "/bin/bash", "/app/app.py")
    assert f"{GCONV}/EUC-JP.so" not in keep
    # nothing imports iconv_open: a text naming a charset keeps nothing
    keep = _keep(root, "/app/notes.txt")
    assert not any("/gconv/" in p for p in keep)


def test_the_locale_charset_keeps_its_module(tmp_path: Path, bash: bytes) -> None:
    keep = _keep(_tree(tmp_path, bash, env=["LANG=ja_JP.EUC-JP"]), "/bin/bash")
    assert f"{GCONV}/EUC-JP.so" in keep and f"{GCONV}/ISO8859-1.so" not in keep
