"""What the container runs: roots of the keep set from Entrypoint + Cmd.

The program is found as execvp finds it (slim.programs.which, with the image's PATH and
WorkingDir). Then, as the programs themselves would:

* a wrapper (`/usr/bin/env [-i] [VAR=x …] PROG`, `tini --`, `dumb-init`, `gosu USER`,
  `su-exec`, `setpriv …`; slim.analyzers.commands.WRAPPERS) is looked through to the command
  it runs;
* `sh -c "…"` strings are scanned as shell scripts (slim.analyzers.script), their arguments too;
* arguments that name image files are kept (a directory of application data whole);
* every registered analyzer is asked whether it understands the command line (`python3 -m
  app`, `java -jar app.jar`, `supervisord -c FILE`);
* an entrypoint script that runs its own arguments (`exec "$@"`, `exec gosu app "$@"`, `"$1"`:
  docker-php-entrypoint, docker-entrypoint.sh) makes the rest of the command line — usually the
  Cmd — a command too, and so does the program it prepends with `set -- PROG "$@"` when the
  arguments start with an option.

`command_roots` reads any command line this way; process managers use it for the programs they
start (slim.analyzers.procman), with the configuration file as the edges' source.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterable, Sequence

from slim.analyzers.base import AnalysisContext, Analyzer
from slim.analyzers.commands import WRAPPERS, argument_edges, unwrap
from slim.analyzers.script import runs_arguments, sh_c_edges
from slim.model import ROOT, Edge, Unknown, normpath
from slim.programs import is_shell

log = logging.getLogger(__name__)

MAX_COMMAND_DEPTH = 8  # wrappers and entrypoint scripts nested deeper are not followed


def entry_roots(ctx: AnalysisContext, analyzers: Iterable[Analyzer],
                argv: Sequence[str] | None = None) -> list[Edge | Unknown]:
    """Edges from ROOT for the program the container runs and what its arguments name."""
    argv = list(ctx.config.argv if argv is None else argv)
    if not argv:
        return [Unknown("<entrypoint>", "image has neither Entrypoint nor Cmd")]
    return command_roots(ctx, list(analyzers), argv)


def _broken_candidate(ctx: AnalysisContext, word: str, cwd: str) -> tuple[str, str] | None:
    """(path, why) for the first place execvp would look for `word` that exists but cannot be
    resolved (a symlink loop, a link pointing nowhere), so "not found" is not said of it."""
    dirs = [""] if "/" in word else [d or cwd for d in ctx.config.path_dirs]
    for d in dirs:
        path = normpath(posixpath.join(cwd, d, word))
        if not ctx.fs.lexists(path):
            continue
        res = ctx.fs.resolve(path)
        if res.error:
            return path, res.error
        if not res.exists:
            return path, f"a symlink to {res.path}, which is not in the image"
    return None


def command_roots(ctx: AnalysisContext, analyzers: Sequence[Analyzer], argv: Sequence[str],
                  src: str = ROOT, label: str = "argv", cwd: str | None = None,
                  _offset: int = 0, _depth: int = 0) -> list[Edge | Unknown]:
    """Edges from `src` for command line `argv`: its program, the command a wrapper or an
    entrypoint script runs, `sh -c` strings, argument files and what the language analyzers
    find. `label` names the command line in evidence; `cwd` is its working directory (default:
    the image's WorkingDir). Unknowns are reported on `src` ("<entrypoint>" for the root)."""
    who = "<entrypoint>" if src == ROOT else src
    kind = "entrypoint" if src == ROOT else "exec"
    argv = list(argv)
    cwd = cwd or ctx.config.workdir or "/"
    word = argv[0]
    prog = ctx.which(word, cwd)
    if prog is None:
        where = "the image" if "/" in word else "PATH (" + ":".join(ctx.config.path_dirs) + ")"
        broken = _broken_candidate(ctx, word, cwd)
        why = f"{broken[0]}: {broken[1]}" if broken else f"not found in {where}"
        return [Unknown(word if src == ROOT else who, f"{label}[{_offset}]: program {word!r} {why}")]
    out: list[Edge | Unknown] = [Edge(src, prog, kind, f"{label}[{_offset}] {word}")]
    if _depth >= MAX_COMMAND_DEPTH:
        return [*out, Unknown(who, f"{label}: commands nested deeper than {MAX_COMMAND_DEPTH}")]
    real = ctx.fs.realpath(prog)
    args = argv[1:]
    names = (posixpath.basename(word), posixpath.basename(real))
    wrapper = next((n for n in names if n in WRAPPERS), "")
    if wrapper:
        rest = unwrap(wrapper, args) or []
        if rest:
            out.extend(command_roots(ctx, analyzers, rest, src, label, cwd,
                                     _offset + len(argv) - len(rest), _depth + 1))
        return out
    if (is_shell(word, real, args) or names[0] in ("su", "runuser")) and "-c" in args:
        k = args.index("-c")
        if k + 1 < len(args):
            ev = f"{label}[{_offset + k + 2}] {names[0]} -c"
            out.extend(sh_c_edges(ctx, args[k + 1], src, ev))
    out.extend(argument_edges(ctx, src, args, cwd, kind, f"{label}[{_offset}] {word}"))
    out.extend(_retarget(language_roots(analyzers, [prog, *args]), src))
    out.extend(_argument_command(ctx, analyzers, real, argv, src, label, cwd, _offset, _depth))
    return out


def _argument_command(ctx: AnalysisContext, analyzers: Sequence[Analyzer], script: str,
                      argv: list[str], src: str, label: str, cwd: str, offset: int,
                      depth: int) -> list[Edge | Unknown]:
    """When `script` runs its own arguments (`exec "$@"`), the command they form."""
    run = runs_arguments(ctx, script)
    if run is None:
        return []
    out: list[Edge | Unknown] = []
    rest = argv[run.index:]
    if rest and not rest[0].startswith("-"):
        log.debug("%s runs its arguments: %s", script, rest)
        return command_roots(ctx, analyzers, rest, src, label, cwd, offset + run.index, depth + 1)
    # options only (or nothing): the program `set -- PROG "$@"` puts in front runs them
    for prog in run.prepended:
        out.extend(command_roots(ctx, analyzers, [prog, *rest], src, f"{script}: set --", cwd,
                                 0, depth + 1))
    return out


def _retarget(items: list[Edge | Unknown], src: str) -> list[Edge | Unknown]:
    """Root edges re-sourced from `src` (a process manager's configuration file)."""
    if src == ROOT:
        return items
    return [Edge(src, i.dst, "exec" if i.kind == "entrypoint" else i.kind, i.evidence)
            if isinstance(i, Edge) and i.src == ROOT else i for i in items]


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


class CommandRoots:
    """Reads command lines for analyzers that find them in files (process managers): a service
    of the analysis context holding its own instances of the registered analyzers (their run
    state lives in the context's services, so it is shared)."""

    def __init__(self, ctx: AnalysisContext) -> None:
        from slim.analyzers import ANALYZERS  # the registry imports the analyzers that use this

        self.ctx = ctx
        self.analyzers = [cls(ctx) for cls in ANALYZERS]

    def roots(self, argv: Sequence[str], src: str, label: str,
              cwd: str | None = None) -> list[Edge | Unknown]:
        """`command_roots` of `argv` with edges from `src`."""
        if not argv:
            return []
        return command_roots(self.ctx, self.analyzers, argv, src, label, cwd)

    def language(self, argv: Sequence[str], src: str) -> list[Edge | Unknown]:
        """What the language analyzers find for `argv` (argv[0] resolved), from `src`."""
        return _retarget(language_roots(self.analyzers, list(argv)), src)


__all__ = ["CommandRoots", "command_roots", "entry_roots", "language_roots"]
