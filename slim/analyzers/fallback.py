"""A safe fallback for interpreters slim has no analyzer for (Lua, Tcl, R, Erlang/Elixir, Guile,
Julia, .NET, Mono …).

Such an interpreter loads its libraries by names slim cannot read, so when one is kept its
whole library trees are kept (INTERPRETERS below: the directories each one searches by default,
for the Debian packages and the usual /usr/local and /opt installs) and an Unknown says so. The
application's files go with it: a script it runs (a command line `lua app.lua`, or a script
whose `#!` names it) keeps its own directory whole when that directory is the application's
(slim.analyzers.commands.is_data_dir), since its modules sit beside it. Keep is conservative:
nothing here is dropped for being unread.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass

from slim.analyzers.base import AnalysisContext, Analyzer, link_edges, tidy
from slim.analyzers.commands import is_data_dir, tree_edges
from slim.analyzers.script import parse_shebang
from slim.errors import SlimError
from slim.fs.layer import Capture
from slim.model import ROOT, Edge, FileEntry, Unknown, normpath


@dataclass(frozen=True)
class Interpreter:
    """A language slim does not analyze: how its interpreter is named, where its libraries live."""

    language: str
    names: re.Pattern[str]  # the interpreter's file name (links resolved or not)
    libraries: tuple[str, ...]  # globs (slim.globs dialect) of its library trees


INTERPRETERS = (
    Interpreter("Lua", re.compile(r"^(lua|luajit)[\d.]*(-[\d.]+)?$"),
                ("/usr/share/lua/**", "/usr/lib/*/lua/**", "/usr/lib/lua/**", "/usr/local/share/lua/**",
                 "/usr/local/lib/lua/**", "/usr/share/luajit*/**", "/usr/local/share/luajit*/**")),
    Interpreter("Tcl", re.compile(r"^(tclsh|wish|expect)[\d.]*$"),
                ("/usr/share/tcltk/**", "/usr/lib/tcltk/**", "/usr/share/tcl*/**", "/usr/lib/tcl*/**",
                 "/usr/local/lib/tcl*/**", "/usr/lib/*/tcl*/**")),
    Interpreter("R", re.compile(r"^(R|Rscript|exec/R)$"),
                ("/usr/lib/R/**", "/usr/share/R/**", "/usr/local/lib/R/**", "/etc/R/**",
                 "/opt/R/**")),
    Interpreter("Erlang", re.compile(r"^(erl|erlexec|beam|beam\.smp|escript|elixir|iex|mix)$"),
                ("/usr/lib/erlang/**", "/usr/local/lib/erlang/**", "/usr/lib/elixir/**",
                 "/usr/local/lib/elixir/**", "/opt/erlang/**")),
    Interpreter("Guile", re.compile(r"^guile[\d.]*$"),
                ("/usr/share/guile/**", "/usr/lib/*/guile/**", "/usr/local/share/guile/**",
                 "/usr/local/lib/guile/**")),
    Interpreter("Julia", re.compile(r"^julia$"),
                ("/usr/share/julia/**", "/usr/lib/*/julia/**", "/usr/local/julia/**", "/opt/julia*/**")),
    Interpreter(".NET", re.compile(r"^dotnet$"),
                ("/usr/share/dotnet/**", "/usr/lib/dotnet/**", "/opt/dotnet/**")),
    Interpreter("Mono", re.compile(r"^mono(-sgen)?$"), ("/usr/lib/mono/**", "/etc/mono/**")),
)


# every interpreter's name pattern in one regex: group iN matches when INTERPRETERS[N]'s does
# (the alternatives are tried in order, as the loop over INTERPRETERS would)
_ANY_NAME = re.compile("|".join(f"(?P<i{n}>{i.names.pattern})" for n, i in enumerate(INTERPRETERS)))


def interpreter_of(ctx: AnalysisContext, path: str) -> Interpreter | None:
    """The fallback language of program `path` (its name or its link target's), or None."""
    for name in (posixpath.basename(path), posixpath.basename(ctx.fs.realpath(path))):
        if (m := _ANY_NAME.match(name)) is not None:
            return next(INTERPRETERS[int(k[1:])] for k, v in m.groupdict().items() if v is not None)
    return None


def library_edges(ctx: AnalysisContext, program: str, interp: Interpreter) -> list[Edge | Unknown]:
    """Every file of the interpreter's library trees, and the Unknown that reports it."""
    files: dict[str, None] = {}
    for pattern in interp.libraries:
        for hit in ctx.fs.glob(pattern):
            if not ctx.fs.is_dir(hit):
                files.setdefault(hit, None)
    ev = f"{interp.language} libraries (no {interp.language} analyzer: kept whole)"
    out: list[Edge | Unknown] = [Edge(program, f, "import", ev) for f in files]
    roots = sorted({"/".join(p.split("/")[:4]) for p in files})
    out.append(Unknown(program, f"{interp.language} interpreter: slim does not analyze {interp.language}; "
                                f"its library trees kept whole ({len(files)} files"
                                + (f" under {', '.join(roots[:4])}" if roots else "") + ")"))
    return out


def script_dir_edges(ctx: AnalysisContext, src: str, script: str, interp: Interpreter) -> list[Edge | Unknown]:
    """The application's directory beside a script run by a fallback interpreter, whole."""
    directory = posixpath.dirname(script)
    if not is_data_dir(ctx.fs.realpath(directory)):
        return []
    return tree_edges(ctx, src, directory, "app",
                      f"{interp.language} script {script}: its directory is the application")


class FallbackInterpreterAnalyzer(Analyzer):
    """Interpreters slim cannot analyze → their library trees and the application's files."""

    name = "fallback"
    capture = Capture()

    def wants(self, entry: FileEntry) -> bool:
        if not entry.is_file:
            return False
        if interpreter_of(self.ctx, entry.path) is not None and "/bin/" in entry.path + "/":
            return True
        return self._shebang(entry.path) is not None

    def _shebang(self, path: str) -> Interpreter | None:
        if not self.ctx.fs.has_content(path):
            return None
        try:
            head = self.ctx.fs.read(path, 258)
        except SlimError:
            return None
        parsed = parse_shebang(head)
        if parsed is None:
            return None
        interp, arg = parsed
        if posixpath.basename(interp) == "env" and arg:
            interp = next((w for w in arg.split() if not w.startswith("-")), interp)
        return interpreter_of(self.ctx, interp)

    def analyze(self, entry: FileEntry) -> list[Edge | Unknown]:
        interp = interpreter_of(self.ctx, entry.path)
        if interp is not None and "/bin/" in entry.path + "/":
            return tidy(library_edges(self.ctx, entry.path, interp))
        by_shebang = self._shebang(entry.path)
        return tidy(script_dir_edges(self.ctx, entry.path, entry.path, by_shebang)) if by_shebang else []

    def entry_roots(self, argv: Sequence[str]) -> list[Edge | Unknown]:
        if not argv:
            return []
        interp = interpreter_of(self.ctx, argv[0])
        if interp is None:
            return []
        wd = self.ctx.config.workdir or "/"
        for arg in argv[1:]:
            if arg.startswith("-"):
                continue
            script = normpath(posixpath.join(wd, arg))
            if self.ctx.fs.is_file(script):
                return [*link_edges(self.ctx, ROOT, script, "entrypoint", f"{interp.language} script {arg}"),
                        *script_dir_edges(self.ctx, ROOT, script, interp)]
            break
        return []


__all__ = ["INTERPRETERS", "FallbackInterpreterAnalyzer", "Interpreter", "interpreter_of"]
