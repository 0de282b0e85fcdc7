"""Scripts: the interpreter a `#!` line names, and what a shell script runs or sources.

Shebang lines are read as Linux's fs/binfmt_script.c does: after `#!`, optional blanks, the
interpreter path up to the next blank, then at most one argument (the rest of the line,
trimmed). `#!/usr/bin/env X` runs X found through PATH (coreutils env), so both env and X are
edges; `env -S "X args"` is split as coreutils does.

Shell scripts are scanned by slim.analyzers.shell, which finds the words in command position
(the module doc there tells how, and what is not modelled). Each is resolved through PATH as
execvp does (the image Env's PATH, updated by `PATH=…` assignments in the script). Shell
builtins (slim.analyzers.shell.BUILTINS) and functions the script defines are not programs.
`.`/`source FILE` names a file the shell reads. A command word with `$` in it is dynamic:
reported as an Unknown; so is a name found nowhere in PATH (it may be a function we missed, an
alias, or a missing program: conservative either way).
"""

from __future__ import annotations

import itertools
import posixpath
import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from slim.analyzers.base import AnalysisContext, Analyzer, tidy
from slim.analyzers.commands import (
    DIR_RUNNERS,
    WRAPPERS,
    argument_edges,
    find_roots,
    hook_edges,
    run_parts_dir,
    unwrap,
)
from slim.analyzers.shell import (
    ASSIGNMENT,
    BUILTINS,
    Command,
    ShellScanner,
    defined_functions,
    tokenize,
)
from slim.errors import AnalysisError
from slim.fs.layer import Capture
from slim.model import ROOT, Edge, FileEntry, Unknown, normpath
from slim.programs import is_shell, which

MAX_SCRIPT_BYTES = 4 << 20
SHEBANG_MAX = 256  # BINPRM_BUF_SIZE since Linux 5.1: the kernel reads no more of the #! line
MAX_SH_C_DEPTH = 4
_VARIABLE = re.compile(r"^\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})$")
_PARAMETER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-=])([^${}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_POSITIONAL = re.compile(r"^\$(?:([@*1-9])|\{([@*1-9])\})$")

def parse_shebang(head: bytes) -> tuple[str, str] | None:
    """(interpreter, argument) of a `#!` line, as Linux's binfmt_script reads it."""
    if not head.startswith(b"#!"):
        return None
    line = head[2:SHEBANG_MAX].split(b"\n", 1)[0].decode("utf-8", errors="replace")
    line = line.strip(" \t\r")
    if not line:
        return None
    interp, _, arg = line.replace("\t", " ").partition(" ")
    return interp, arg.strip()


class _Resolver:
    """Turns scanned commands into edges and unknowns for one script (or one sh -c string)."""

    def __init__(self, ctx: AnalysisContext, script: str, script_dir: str) -> None:
        self.ctx = ctx
        self.script = script
        self.script_dir = script_dir
        self.cwd = ctx.config.workdir or "/"
        self.path_dirs = list(ctx.config.path_dirs)
        self.scanner = ShellScanner()
        self.visited: set[str] = {script}
        self.found_dirs: list[tuple[int, str]] = []  # (line, DIR) of `find DIR …` without -exec
        self.variable_runs: list[int] = []  # lines running or sourcing a plain "$VAR"
        self.dynamic_words: list[tuple[int, str]] = []  # (line, word) of dynamic commands
        self.set_programs: list[str] = []  # PROG of `set -- PROG … "$@"`
        self.vars: dict[str, str] = dict(ctx.config.env_dict)  # known shell variables
        self.unknown_vars: set[str] = set()  # assigned something slim cannot compute
        self._cache: dict[tuple[str, tuple[str, ...]], str | None] = {}

    def which(self, name: str) -> str | None:
        key = (name, tuple(self.path_dirs))
        if key not in self._cache:
            found = which(self.ctx.fs, name, self.path_dirs, self.cwd)
            if found is None and "/" in name and not name.startswith("/"):
                found = which(self.ctx.fs, name, [], self.script_dir)
            self._cache[key] = found
        return self._cache[key]

    def _apply_path(self, value: str) -> None:
        parts: list[str] = []
        for part in value.split(":"):
            if part in ("$PATH", "${PATH}"):
                parts.extend(self.path_dirs)
            elif part and "$" not in part:
                parts.append(part)
        if parts:
            self.path_dirs = parts

    def run(self, text: str, depth: int = 0) -> Iterator[tuple[Command, str | None, Edge | Unknown]]:
        """(command, resolved path, edge-or-unknown) for every command of `text`."""
        updates_seen = assigned = 0
        for cmd in self.scanner.scan(text):
            while updates_seen < len(self.scanner.path_updates):
                line, value = self.scanner.path_updates[updates_seen]
                if line <= cmd.line:
                    self._apply_path(value)
                    updates_seen += 1
                else:
                    break
            while assigned < len(self.scanner.assignments) and self.scanner.assignments[assigned][0] <= cmd.line:
                _line, name, value = self.scanner.assignments[assigned]
                self._assign(name, value, only_unset="")
                assigned += 1
            # a loop variable takes values slim does not follow here (hooks() does)
            self.unknown_vars.update(words[0] for line, words in self.scanner.loops if words and line <= cmd.line)
            yield from self._command(cmd, depth)

    def _assign(self, name: str, value: str, only_unset: str) -> None:
        """Record `name=value` in text order; an unexpandable value makes the name unknown.
        `only_unset` is "=" or ":=" for `${NAME=value}` / `${NAME:=value}` (XCU 2.6.2)."""
        if only_unset and name in self.vars and (self.vars[name] or only_unset == "="):
            return
        expanded = self.expand(value)
        if expanded is None:
            self.vars.pop(name, None)
            self.unknown_vars.add(name)
        else:
            self.vars[name] = expanded
            self.unknown_vars.discard(name)

    def expand(self, word: str) -> str | None:
        """`word` with `$NAME`, `${NAME}`, `${NAME-x}`, `${NAME:-x}`, `${NAME=x}` and
        `${NAME:=x}` expanded from the image Env and the assignments read so far; None when a
        name is unknown or other expansions remain (XCU 2.6.2, simple cases only)."""
        def sub(m: re.Match[str]) -> str:
            name, op, default = m.group(1) or m.group(4), m.group(2) or "", m.group(3) or ""
            value = self.vars.get(name)
            if value is not None and name not in self.unknown_vars and (value or ":" not in op):
                return value
            if op and name not in self.unknown_vars:
                if "=" in op:
                    self.vars[name] = default
                return default
            raise KeyError(name)

        try:
            out = _PARAMETER.sub(sub, word)
        except KeyError:
            return None
        return None if "$" in out or "`" in out else out

    def hooks(self) -> list[Edge | Unknown]:
        """Hook directories this text runs file by file: a `find DIR` or `for VAR in DIR/*`
        whose results the text runs or sources as a plain variable (`"$f"`, `. "$f"`), as the
        official images' entrypoints run /docker-entrypoint.d/. Call after `run`."""
        if not self.variable_runs:
            return []
        out: list[Edge | Unknown] = []
        sources = [(n, d, "find") for n, d in self.found_dirs]
        for n, words in self.scanner.loops:
            if len(words) > 2 and words[1] == "in":
                sources += [(n, w, "for") for w in words[2:] if w.startswith("/") and "$" not in w]
        for n, pattern, how in sources:
            out.extend(hook_edges(self.ctx, self.script, pattern,
                                  f"line {n}: {how} {pattern}: each file is run (line "
                                  f"{self.variable_runs[0]})"))
        return out

    def _command(self, cmd: Command, depth: int) -> Iterator[tuple[Command, str | None, Edge | Unknown]]:
        word, n = cmd.word, cmd.line
        if word in (".", "source"):
            yield from self._source(cmd, depth)
            return
        if word in ("exec", "command", "builtin", "time", "nohup") and cmd.args:
            args = list(cmd.args)
            if word == "command" and args and args[0] in ("-v", "-V"):
                return  # a lookup, not a run
            if word == "builtin":
                return
            while args and args[0].startswith("-"):
                opt = args.pop(0)
                if word == "exec" and opt == "-a" and args:
                    args.pop(0)
            if word == "nohup":
                yield from self._program(cmd)
            if args:
                yield from self._command(Command(n, args[0], "exec", args[1:]), depth)
            return
        if word in BUILTINS:
            if word in ("read", "getopts", "mapfile", "readarray"):
                self.unknown_vars.update(a for a in cmd.args if re.match(r"^[A-Za-z_]\w*$", a))
            if word == ":":
                for arg in cmd.args:  # `: "${APACHE_ENVVARS:=$APACHE_CONFDIR/envvars}"`
                    for m in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?=)([^{}]*)\}", arg):
                        self._assign(m.group(1), m.group(3), only_unset=m.group(2))
            if word == "set" and cmd.args[:1] == ["--"] and len(cmd.args) > 2 and \
                    _POSITIONAL.match(cmd.args[-1]) and "$" not in cmd.args[1]:
                self.set_programs.append(cmd.args[1])  # `set -- PROG "$@"`: PROG runs the args
            if word == "eval" and cmd.args:
                joined = " ".join(cmd.args)
                if "$" in joined:
                    shown = joined.replace("$__SUBST__", "$(…)").replace("$__ARITH__", "$((…))")
                    yield cmd, None, Unknown(self.script, f"line {n}: eval of dynamic text {shown!r}")
                elif depth < MAX_SH_C_DEPTH:
                    for sub in ShellScanner(self.scanner.functions).scan_tokens_text(joined, n):
                        yield from self._command(sub, depth + 1)
            return
        if word in self.scanner.functions:
            return
        results = list(self._program(cmd))
        yield from results
        resolved = results[0][1] if results else None
        base = posixpath.basename(word)
        real_base = posixpath.basename(self.ctx.fs.realpath(resolved)) if resolved else base
        # a wrapper runs its operand as a program
        wrapper = base if base in WRAPPERS else (real_base if real_base in WRAPPERS else "")
        if wrapper and cmd.args:
            args = unwrap(wrapper, cmd.args) or []
            if args:
                yield from self._command(Command(n, args[0], "exec", args[1:]), depth)
            return
        # sh -c 'TEXT' runs TEXT; busybox sh -c too
        if is_shell(base, real_base, cmd.args) and "-c" in cmd.args and depth < MAX_SH_C_DEPTH:
            idx = cmd.args.index("-c")
            if idx + 1 < len(cmd.args):
                for sub in ShellScanner(self.scanner.functions).scan_tokens_text(cmd.args[idx + 1], n):
                    yield from self._command(sub, depth + 1)
            return
        if resolved is not None:
            yield from self._arguments(cmd, resolved, base, real_base)

    def _arguments(self, cmd: Command, resolved: str | None, base: str,
                   real_base: str) -> Iterator[tuple[Command, str | None, Edge | Unknown]]:
        """Words in argument position that name image files (`sort -r /etc/shells`), what the
        language analyzers find in the command line (`exec python3 -m app`), and the
        hook directories `run-parts DIR` / `find DIR … -exec {} \\;` run (slim.analyzers.commands)."""
        n = cmd.line
        evidence = f"line {n}: {cmd.word}"
        for item in argument_edges(self.ctx, self.script, cmd.args, self.cwd, "config", evidence,
                                   relative=False):
            yield cmd, None, item
        if resolved is not None:
            from slim.entrypoint import CommandRoots  # it imports this module

            # the words up to the first one the shell computes (`python3 app.py "$@"`)
            args = list(itertools.takewhile(lambda a: "$" not in a and "`" not in a, cmd.args))
            for item in self.ctx.service(CommandRoots).language([resolved, *args], self.script):
                if isinstance(item, Edge):
                    item = Edge(item.src, item.dst, item.kind, f"{evidence}: {item.evidence}")
                yield cmd, None, item
        if DIR_RUNNERS & {base, real_base}:
            directory = run_parts_dir(cmd.args)
            if directory and "$" not in directory:
                for item in hook_edges(self.ctx, self.script, directory, f"{evidence} {directory}"):
                    yield cmd, None, item
        elif "find" in (base, real_base):
            paths, runs = find_roots(cmd.args)
            for p in paths:
                if p.startswith("/") and "$" not in p:
                    if runs:
                        for item in hook_edges(self.ctx, self.script, p, f"{evidence} {p} -exec"):
                            yield cmd, None, item
                    else:
                        self.found_dirs.append((n, p))

    def _program(self, cmd: Command) -> Iterator[tuple[Command, str | None, Edge | Unknown]]:
        word, n = cmd.word, cmd.line
        if "$" in word and not _POSITIONAL.match(word) and self.expand(word):
            word = self.expand(word) or word
        if "$" in word:
            shown = word.replace("$__SUBST__", "$(…)").replace("$__ARITH__", "$((…))")
            if _VARIABLE.match(word):
                self.variable_runs.append(n)
            self.dynamic_words.append((n, word))
            yield cmd, None, Unknown(self.script, f"line {n}: dynamic command {shown!r}")
            return
        if word in BUILTINS or word in self.scanner.functions:
            return
        path = self.which(word)
        if path is None:
            where = "the image" if "/" in word else "PATH (" + ":".join(self.path_dirs) + ")"
            yield cmd, None, Unknown(self.script, f"line {n}: command {word!r} not found in {where}")
            return
        yield cmd, path, Edge(self.script, path, "exec", f"line {n}: {word}")

    def _source(self, cmd: Command, depth: int) -> Iterator[tuple[Command, str | None, Edge | Unknown]]:
        n = cmd.line
        if not cmd.args:
            return
        target = cmd.args[0]
        if "$" in target and self.expand(target):
            target = self.expand(target) or target
        if "$" in target:
            if _VARIABLE.match(target):
                self.variable_runs.append(n)
            yield cmd, None, Unknown(self.script, f"line {n}: dynamic source {target!r}")
            return
        cands: list[str] = []
        if target.startswith("/"):
            cands.append(normpath(target))
        else:
            if "/" not in target:  # XCU 2.14 dot: a name without '/' is searched in PATH
                cands.extend(normpath(posixpath.join(d, target)) for d in self.path_dirs)
            cands.append(normpath(posixpath.join(self.script_dir, target)))
            cands.append(normpath(posixpath.join(self.cwd, target)))
        found = [c for c in dict.fromkeys(cands) if self.ctx.fs.is_file(c)]
        if not found:
            yield cmd, None, Unknown(self.script, f"line {n}: sourced file {target!r} not found")
            return
        # the first is what the shell reads; others (script dir vs WorkingDir) kept too: we
        # cannot know the run-time cwd
        for path in found if not target.startswith("/") and "/" in target else found[:1]:
            yield cmd, path, Edge(self.script, path, "exec", f"line {n}: {cmd.word} {target}")
            if path in self.visited:
                continue
            self.visited.add(path)
            try:
                data = self.ctx.fs.read(path, MAX_SCRIPT_BYTES)
            except AnalysisError:
                yield cmd, None, Unknown(self.script, f"line {n}: sourced file {path} not analyzed "
                                         "(contents not captured)")
                continue
            text = data.decode("utf-8", errors="replace")
            # functions the sourced file defines are not programs in the rest of the script
            self.scanner.functions |= defined_functions(text)
            if data.startswith(b"#!") or path.endswith(".sh") or depth >= MAX_SH_C_DEPTH:
                continue  # the analyzer visits it on its own (it is kept)
            # a shell library without #!: what it runs is run by this shell; edges from it
            sub = _Resolver(self.ctx, path, posixpath.dirname(path))
            sub.path_dirs = list(self.path_dirs)
            sub.scanner.functions = self.scanner.functions
            sub.visited = self.visited
            for item in sub.run(text, depth + 1):
                if not (isinstance(item[2], Edge) and item[2].dst == path):
                    yield item


def parse_sh_c(cmdline: str, ctx: AnalysisContext) -> list[tuple[str, str]]:
    """Programs (and sourced files) a `sh -c CMDLINE` string runs: (word, image path) pairs,
    path "" when the word is dynamic or not found in the image's PATH. Sorted, unique."""
    resolver = _Resolver(ctx, "<sh -c>", ctx.config.workdir or "/")
    out: set[tuple[str, str]] = set()
    for cmd, path, _item in resolver.run(cmdline):
        word = cmd.args[0] if cmd.word in (".", "source") and cmd.args else cmd.word
        out.add((word, path or ""))
    return sorted(out)


def sh_c_edges(ctx: AnalysisContext, text: str, src: str, evidence: str) -> list[Edge | Unknown]:
    """Edges from `src` for what a `sh -c TEXT` string runs and the files its arguments name;
    Unknowns (on `src`, or "<entrypoint>" for the root) for dynamic or missing commands."""
    resolver = _Resolver(ctx, "<sh -c>", ctx.config.workdir or "/")
    items = [item for _cmd, _path, item in resolver.run(text)]
    hooks = resolver.hooks()
    explained = set(resolver.variable_runs) if hooks else set()
    out: list[Edge | Unknown] = []
    for item in [*items, *hooks]:
        if isinstance(item, Edge):
            out.append(Edge(src, item.dst, "entrypoint" if src == ROOT else item.kind,
                            f"{evidence}: {item.evidence}"))
        elif not _explained(item, explained):
            out.append(Unknown("<entrypoint>" if src == ROOT else src, f"{evidence}: {item.reason}"))
    return tidy(out)


class ScriptAnalyzer(Analyzer):
    """`#!` scripts: interpreter edges; for shell scripts, the programs and files they use."""

    name = "script"
    capture = Capture(globs=("**/*.sh",), magics=(b"#!",))

    def wants(self, entry: FileEntry) -> bool:
        if not entry.is_file or entry.size < 3:
            return False
        if entry.path.endswith(".sh"):
            return self.ctx.fs.has_content(entry.path)  # a shell library, #! or not
        try:
            return self.ctx.fs.read(entry.path, 2) == b"#!"
        except AnalysisError:
            return False

    def analyze(self, entry: FileEntry) -> Iterable[Edge | Unknown]:
        path = entry.path
        try:
            data = self.ctx.fs.read(path, MAX_SCRIPT_BYTES + 1)
        except AnalysisError as exc:
            return [Unknown(path, str(exc))]
        out: list[Edge | Unknown] = []
        shebang = parse_shebang(data[:SHEBANG_MAX + 2])
        if shebang is None and not data.startswith(b"#!"):
            # a *.sh without #!: sourced by a shell (or run by `sh FILE`); scan it as sh
            return self._scan_shell(path, data)
        if shebang is None:
            return [Unknown(path, "empty #! line")]
        interp, arg = shebang
        evidence = "#!" + (f"{interp} {arg}" if arg else interp)
        cwd = self.ctx.config.workdir or "/"
        interp_path = normpath(interp if interp.startswith("/") else posixpath.join(cwd, interp))
        if not self.ctx.fs.is_file(interp_path):
            return [Unknown(path, f"interpreter {interp} not found in the image ({evidence})")]
        out.append(Edge(path, interp_path, "shebang", evidence))
        program = interp_path
        words = arg.split() if arg else []
        if posixpath.basename(interp) == "env" and words:
            # coreutils env: options, VAR=value, then the program; -S splits its argument
            if words[0] in ("-S", "--split-string") or words[0].startswith("-S"):
                rest = arg.split(None, 1)[1] if words[0] in ("-S", "--split-string") else arg[2:]
                try:
                    words = shlex.split(rest)
                except ValueError:
                    words = rest.split()
            while words and (words[0].startswith("-") or ASSIGNMENT.match(words[0])):
                words.pop(0)
            if not words:
                return out
            found = self.ctx.which(words[0], cwd)
            if found is None:
                out.append(Unknown(path, f"{evidence}: {words[0]!r} not found in PATH"))
                return out
            out.append(Edge(path, found, "shebang", evidence))
            program, words = found, words[1:]
        base = posixpath.basename(program)
        real_base = posixpath.basename(self.ctx.fs.realpath(program))
        if not is_shell(base, real_base, words):
            return out
        out.extend(self._scan_shell(path, data))
        return out

    def _scan_shell(self, path: str, data: bytes) -> list[Edge | Unknown]:
        out: list[Edge | Unknown] = []
        if len(data) > MAX_SCRIPT_BYTES:
            out.append(Unknown(path, f"script larger than {MAX_SCRIPT_BYTES} bytes; only the start scanned"))
        text = data[:MAX_SCRIPT_BYTES].decode("utf-8", errors="replace")
        resolver = _Resolver(self.ctx, path, posixpath.dirname(path))
        seen: set[Edge | Unknown] = set()
        for _cmd, _path, item in resolver.run(text):
            if isinstance(item, Edge) and item.dst == path:
                continue
            seen.add(item)
        hooks = resolver.hooks()
        seen.update(h for h in hooks if not (isinstance(h, Edge) and h.dst == path))
        explained = set(resolver.variable_runs) if hooks else set()
        if path == self._entry_program():
            # the entrypoint's "$@": slim.entrypoint follows the Cmd it runs
            explained |= {n for n, _w in positional_runs(resolver)}
        out.extend(sorted((i for i in seen if not _explained(i, explained)),
                          key=lambda x: (type(x).__name__, x)))
        return out

    def _entry_program(self) -> str:
        """The image path of the container's first program (its Entrypoint), resolved."""
        argv = self.ctx.config.argv
        found = self.ctx.which(argv[0]) if argv else None
        return self.ctx.fs.realpath(found) if found else ""


def _explained(item: Edge | Unknown, lines: set[int]) -> bool:
    """A dynamic-command Unknown on one of `lines` (their runs are followed another way)."""
    if not isinstance(item, Unknown) or not lines:
        return False
    m = re.match(r"line (\d+): dynamic (?:command|source) ", item.reason)
    return m is not None and int(m.group(1)) in lines


def positional_runs(resolver: _Resolver) -> list[tuple[int, str]]:
    """(line, word) of the commands a scanned text runs from its own arguments (`"$@"`, `$1`)."""
    return [(n, w) for n, w in resolver.dynamic_words if _POSITIONAL.match(w)]


@dataclass(frozen=True)
class ArgumentRun:
    """How a script runs its own arguments as a command (`exec "$@"`)."""

    index: int  # the first argument that is the program: 1 for "$@", "$*" and "$1", 2 for "$2" …
    prepended: tuple[str, ...] = ()  # programs `set -- PROG "$@"` puts in front (docker-php-entrypoint)


def runs_arguments(ctx: AnalysisContext, path: str) -> ArgumentRun | None:
    """Whether shell script `path` runs its arguments as a command, as official images'
    entrypoints do (`exec "$@"`, `exec gosu user "$@"`, `"$1"`), so the container's Cmd is
    a program too; None when it does not (or is no shell script)."""
    try:
        data = ctx.fs.read(path, MAX_SCRIPT_BYTES)
    except AnalysisError:
        return None
    shebang = parse_shebang(data[:SHEBANG_MAX + 2])
    if shebang is None:
        return None
    interp, arg = shebang
    if posixpath.basename(interp) == "env":
        interp = arg.split()[0] if arg.split() else ""
    real = ctx.fs.realpath(interp) if interp.startswith("/") else interp
    if not is_shell(interp, real, arg.split()):
        return None
    resolver = _Resolver(ctx, path, posixpath.dirname(path))
    for _item in resolver.run(data.decode("utf-8", errors="replace")):
        pass
    runs = positional_runs(resolver)
    if not runs:
        return None
    return ArgumentRun(min(_position(w) for _n, w in runs), tuple(dict.fromkeys(resolver.set_programs)))


def _position(word: str) -> int:
    """The first argument a positional word names: `$@`/`$*` start at 1, `$2` is 2."""
    m = _POSITIONAL.match(word)
    ch = (m.group(1) or m.group(2)) if m else "1"
    return int(ch) if ch.isdigit() else 1


__all__ = ["BUILTINS", "ArgumentRun", "ScriptAnalyzer", "ShellScanner", "parse_sh_c", "parse_shebang",
           "runs_arguments", "sh_c_edges", "tokenize"]
