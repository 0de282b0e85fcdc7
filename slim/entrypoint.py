"""What the container runs: roots of the keep set from Entrypoint + Cmd.

The program is found as execvp finds it (slim.programs.which, with the image's PATH and
WorkingDir); `/usr/bin/env [-i] [VAR=x …] PROG` is looked through to PROG; `sh -c "…"` strings
are scanned as shell scripts (slim.analyzers.script); arguments that name image files are
kept; and every registered analyzer is asked whether it understands the command line
(`python3 -m app`, `java -jar app.jar`, `node server.js`).
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Iterable, Sequence

from slim.analyzers.base import AnalysisContext, Analyzer
from slim.analyzers.script import parse_sh_c
from slim.model import ROOT, Edge, Unknown, normpath
from slim.programs import is_shell

log = logging.getLogger(__name__)


def entry_roots(ctx: AnalysisContext, analyzers: Iterable[Analyzer],
                argv: Sequence[str] | None = None) -> list[Edge | Unknown]:
    """Edges from ROOT for the program the container runs and what its arguments name."""
    fs, config = ctx.fs, ctx.config
    argv = list(config.argv if argv is None else argv)
    out: list[Edge | Unknown] = []
    if not argv:
        out.append(Unknown("<entrypoint>", "image has neither Entrypoint nor Cmd"))
        return out
    i = 0
    while i < len(argv):
        word = argv[i]
        prog = ctx.which(word)
        if prog is None:
            out.append(Unknown(word, "entrypoint program not found in the image (PATH: "
                               + ":".join(config.path_dirs) + ")"))
            return out
        out.append(Edge(ROOT, prog, "entrypoint", f"argv[{i}] {word}"))
        real = fs.realpath(prog)
        # /usr/bin/env [-i] [VAR=x …] PROG args: the real program is the next plain word
        if "env" in (posixpath.basename(word), posixpath.basename(real)):
            j = i + 1
            while j < len(argv) and (argv[j].startswith("-") or "=" in argv[j]):
                j += 1
            if j < len(argv):
                i = j
                continue
        if is_shell(word, real, argv[i + 1 :]) and "-c" in argv[i + 1 :]:
            k = argv.index("-c", i + 1)
            if k + 1 < len(argv):
                out.extend(_sh_c_roots(ctx, argv[k + 1], f"argv[{k + 1}] sh -c"))
        out.extend(_arg_roots(ctx, argv, i))
        out.extend(language_roots(analyzers, [prog, *argv[i + 1 :]]))
        break
    return out


def _arg_roots(ctx: AnalysisContext, argv: list[str], prog_at: int) -> list[Edge]:
    """Arguments that name files in the image (configs, scripts, data)."""
    wd = ctx.config.workdir or "/"
    out: list[Edge] = []
    for j, arg in enumerate(argv[prog_at + 1 :], start=prog_at + 1):
        for cand in _arg_paths(arg):
            path = normpath(posixpath.join(wd, cand))
            if path != "/" and ctx.fs.exists(path):
                out.append(Edge(ROOT, path, "entrypoint", f"argv[{j}] {arg}"))
    return out


def _arg_paths(arg: str) -> list[str]:
    """Candidate paths in one argument: the argument itself, or the value of --opt=VALUE."""
    if arg.startswith("-"):
        _, eq, value = arg.partition("=")
        return [value] if eq and value else []
    return [arg] if arg and not re.search(r"[\s;|&$`]", arg) else []


def _sh_c_roots(ctx: AnalysisContext, script: str, evidence: str) -> list[Edge | Unknown]:
    out: list[Edge | Unknown] = []
    for word, path in parse_sh_c(script, ctx):
        if path:
            out.append(Edge(ROOT, path, "entrypoint", f"{evidence}: {word}"))
        else:
            out.append(Unknown("<entrypoint>", f"{evidence}: {word!r} not found in PATH"))
    return out


def language_roots(analyzers: Iterable[Analyzer], argv: list[str]) -> list[Edge | Unknown]:
    """Root edges from every analyzer that recognizes `argv` (argv[0] resolved), merged.

    An analyzer that fails here must not lose files: its failure is an Unknown on the program.
    """
    out: set[Edge | Unknown] = set()
    for analyzer in analyzers:
        try:
            out.update(analyzer.entry_roots(argv))
        except Exception as exc:  # an analyzer bug: keep and report, never crash the closure
            log.debug("%s: entry roots failed", analyzer.name, exc_info=True)
            out.add(Unknown(argv[0], f"{analyzer.name} analyzer failed on the command line: "
                                     f"{type(exc).__name__}: {exc}"))
    edges = sorted(e for e in out if isinstance(e, Edge))
    unknowns = sorted(u for u in out if isinstance(u, Unknown))
    return [*edges, *unknowns]


__all__ = ["entry_roots", "language_roots"]
