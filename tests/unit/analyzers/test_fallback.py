"""The fallback for interpreters slim does not analyze: library trees and the app kept whole."""

from __future__ import annotations

from pathlib import Path

from slim.analyzers import ANALYZERS
from slim.analyzers.fallback import FallbackInterpreterAnalyzer, interpreter_of
from slim.entrypoint import entry_roots
from slim.model import Edge, Unknown
from tests.unit.analyzers.test_python import ELF, context, write_tree

FILES: dict[str, str | bytes] = {
    "/usr/bin/lua5.4": ELF,
    "/usr/bin/tclsh8.6": ELF,
    "/usr/bin/sed": ELF,
    "/usr/share/lua/5.4/socket.lua": "return {}\n",
    "/usr/lib/x86_64-linux-gnu/lua/5.4/socket/core.so": ELF,
    "/usr/share/tcltk/tcl8.6/init.tcl": "",
    "/srv/app/main.lua": "local m = require('helpers')\n",
    "/srv/app/helpers.lua": "return {}\n",
    "/srv/app/static/logo.txt": "logo",
    "/usr/local/bin/report": "#!/usr/bin/env tclsh8.6\nputs hi\n",
    "/usr/local/bin/other": "#!/bin/sh\n",
}
LINKS = {"/usr/bin/lua": "lua5.4"}


def test_interpreter_names(tmp_path: Path) -> None:
    names = {"lua5.4": "Lua", "luajit-2.1.0": "Lua", "tclsh8.6": "Tcl", "Rscript": "R",
             "beam.smp": "Erlang", "elixir": "Erlang", "guile3.0": "Guile", "dotnet": ".NET",
             "python3": None, "sh": None, "mono-sgen": "Mono", "julia": "Julia", "wish": "Tcl",
             "R": "R", "erl": "Erlang", "xlua": None, "dotnet2": None, "mono-": None}
    write_tree(tmp_path, {f"/usr/bin/{n}": ELF for n in names}, {"/usr/bin/lua": "lua5.4"}, {})
    with context(tmp_path) as ctx:
        for name, language in names.items():
            hit = interpreter_of(ctx, f"/usr/bin/{name}")
            assert (hit.language if hit else None) == language, name
        lua = interpreter_of(ctx, "/usr/bin/lua")  # through its link
        assert lua is not None and lua.language == "Lua"


def test_lua_entrypoint_keeps_libraries_and_app(tmp_path: Path) -> None:
    write_tree(tmp_path, FILES, LINKS, {"Env": ["PATH=/usr/local/bin:/usr/bin"], "WorkingDir": "/",
                                        "Cmd": ["lua", "/srv/app/main.lua"]})
    with context(tmp_path) as ctx:
        roots = entry_roots(ctx, [cls(ctx) for cls in ANALYZERS])
        got = {e.dst for e in roots if isinstance(e, Edge)}
        assert {"/usr/bin/lua", "/srv/app/main.lua", "/srv/app/helpers.lua", "/srv/app/static/logo.txt"} <= got
        entry = ctx.fs.stat("/usr/bin/lua5.4")
        analyzer = FallbackInterpreterAnalyzer(ctx)
        assert entry is not None and analyzer.wants(entry)
        items = analyzer.analyze(entry)
    libs = {e.dst for e in items if isinstance(e, Edge)}
    assert libs == {"/usr/share/lua/5.4/socket.lua", "/usr/lib/x86_64-linux-gnu/lua/5.4/socket/core.so"}
    unknowns = [u for u in items if isinstance(u, Unknown)]
    assert len(unknowns) == 1 and unknowns[0].path == "/usr/bin/lua5.4"
    assert unknowns[0].reason.startswith("Lua interpreter: slim does not analyze Lua; its library trees kept whole (2 files")


def test_script_with_a_fallback_shebang(tmp_path: Path) -> None:
    write_tree(tmp_path, FILES, LINKS, {"Env": ["PATH=/usr/local/bin:/usr/bin"]})
    with context(tmp_path) as ctx:
        analyzer = FallbackInterpreterAnalyzer(ctx)
        report, other, sed = (ctx.fs.stat(p) for p in ("/usr/local/bin/report", "/usr/local/bin/other", "/usr/bin/sed"))
        assert report is not None and other is not None and sed is not None
        assert analyzer.wants(report) and not analyzer.wants(other) and not analyzer.wants(sed)
        # /usr/local/bin is no application directory: the script alone (its interpreter is
        # kept through the #! line by the script analyzer, and brings Tcl's library)
        assert analyzer.analyze(report) == []
        tcl = ctx.fs.stat("/usr/bin/tclsh8.6")
        assert tcl is not None
        assert "/usr/share/tcltk/tcl8.6/init.tcl" in {e.dst for e in analyzer.analyze(tcl) if isinstance(e, Edge)}
