"""Scripts: the interpreter a `#!` line names, and what a shell script runs or sources.

Shebang lines are read as Linux's fs/binfmt_script.c does: after `#!`, optional blanks, the
interpreter path up to the next blank, then at most one argument (the rest of the line,
trimmed). `#!/usr/bin/env X` runs X found through PATH (coreutils env), so both env and X are
edges; `env -S "X args"` is split as coreutils does.

Shell scripts (sh, bash, dash, ash, ksh, busybox sh) are scanned line by line with a `shlex`
tokenizer extended with the shell's operators (POSIX XCU 2.3/2.9): the words in command position
— at the start of a line, after `;`, `&`, `&&`, `||`, `|`, `(`, `)`, after the reserved words
that start a command list (`if then else elif do while until ! {`), after variable assignments
and inside `$(…)` / backticks — are programs. Each is resolved through PATH as execvp does
(the image Env's PATH, updated by `PATH=…` assignments in the script). Shell builtins
(POSIX special and regular builtins plus bash's, BUILTINS below) and functions the script
defines are not programs. `.`/`source FILE` names a file the shell reads. A command word with
`$` in it is dynamic: reported as an Unknown; so is a name found nowhere in PATH (it may be a
function we missed, an alias, or a missing program: conservative either way).

What is deliberately not modelled: aliases, `eval` of variables, functions from sourced files
(their names still report as Unknown when not on PATH), arithmetic, and `case` patterns that
span lines oddly. Heredoc bodies are skipped (`<<` and `<<-`).
"""

from __future__ import annotations

import logging
import posixpath
import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from slim.analyzers.base import AnalysisContext, Analyzer
from slim.errors import AnalysisError
from slim.model import Edge, FileEntry, Unknown, normpath

log = logging.getLogger(__name__)

MAX_SCRIPT_BYTES = 4 << 20
SHEBANG_MAX = 256  # BINPRM_BUF_SIZE since Linux 5.1: the kernel reads no more of the #! line
MAX_JOINED_LINES = 200  # a quote or continuation spanning more lines is given up on
MAX_SH_C_DEPTH = 4
JOIN_BUDGET = 20_000  # total line joins per scanned text (open quotes re-tried line by line)

SHELLS = {"sh", "bash", "dash", "ash", "ksh", "mksh", "posh", "busybox"}

# POSIX special built-ins (XCU 2.14), POSIX regular built-ins that shells implement in-process
# (XCU 1.7 "intrinsic utilities" plus echo/printf/test/[ true/false that dash and bash build in),
# bash builtins (bash(1) SHELL BUILTIN COMMANDS), ksh's print/whence/…, and the reserved words.
_BUILTIN_TEXT = """
. : [ [[ ]] alias bg bind break builtin caller cd command compgen complete compopt continue
declare dirs disown echo enable eval exec exit export false fc fg getopts hash help history jobs
kill let local logout mapfile popd printf pushd pwd read readarray readonly return set shift
shopt source suspend test times trap true type typeset ulimit umask unalias unset wait
print whence autoload functions integer nameref
"""
BUILTINS = frozenset(_BUILTIN_TEXT.split())

# reserved words after which the next word is again in command position
RESERVED_CMD = {"if", "then", "else", "elif", "do", "while", "until", "!", "{", "time", "}",
                "fi", "done", "esac"}
# shell operators, longest first (XCU 2.10.1 control and redirection operators, bash's extras)
OPERATORS = ("&>>", ";;&", "<<-", "<<<", ";;", ";&", "&&", "||", "|&", "<<", ">>", "<&", ">&",
             "<>", ">|", "&>", ";", "&", "|", "(", ")", "<", ">")
SEPARATORS = {";", "&", "&&", "||", "|", "|&", "(", ")", ";;", ";&", ";;&", "\n"}
REDIRECTS = {"<", ">", ">>", "<&", ">&", "<>", ">|", "&>", "&>>", "<<<"}
HEREDOCS = {"<<", "<<-"}

ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^\]]*\])?\+?=")
FUNC_DEF = re.compile(r"^\s*(?:function\s+)?([A-Za-z_][A-Za-z0-9_.:+-]*)\s*\(\s*\)")
FUNC_KW = re.compile(r"^\s*function\s+([A-Za-z_][A-Za-z0-9_.:+-]*)")
HASH_IN_WORD = re.compile(r"(?<=[^\s;&|()<>])#")
HASH_MARK = "\x01"
BLANK_MARK = "\x02"
ESCAPE_MARKS = {ch: chr(0xE000 + n) for n, ch in enumerate(";&|()<>")}
UNESCAPE_MARKS = {v: k for k, v in ESCAPE_MARKS.items()}
ESCAPED_OP = re.compile(r"\\([;&|()<>])")
SIMPLE_TOKEN = re.compile(r"[;&|()<>]+|[^\s;&|()<>]+")
UNESCAPE = re.compile("[" + "".join(UNESCAPE_MARKS) + "]")

# Programs that run their remaining arguments as a command: how many option words they take.
# value: (options taking an argument, number of leading operands before the command)
WRAPPERS: dict[str, tuple[frozenset[str], int]] = {
    "env": (frozenset({"-u", "--unset", "-C", "--chdir", "-S", "--split-string"}), 0),
    "nohup": (frozenset(), 0),
    "nice": (frozenset({"-n", "--adjustment"}), 0),
    "setsid": (frozenset(), 0),
    "stdbuf": (frozenset({"-i", "-o", "-e"}), 0),
    "timeout": (frozenset({"-s", "--signal", "-k", "--kill-after"}), 1),
    "chpst": (frozenset({"-u", "-U", "-e", "-/", "-n", "-l", "-L", "-m", "-d", "-o", "-p", "-f", "-c", "-r", "-t"}), 0),
    "gosu": (frozenset(), 1),
    "su-exec": (frozenset(), 1),
    "tini": (frozenset({"-s", "-p", "-e", "-l", "-g", "-w"}), 0),
    "dumb-init": (frozenset({"-r", "--rewrite"}), 0),
    "xargs": (frozenset({"-a", "-d", "-E", "-e", "-I", "-i", "-L", "-l", "-n", "-P", "-s"}), 0),
    "flock": (frozenset({"-w", "--timeout", "-E", "--conflict-exit-code"}), 1),
    "runuser": (frozenset({"-u", "-g", "-G"}), 0),
}


def _which(ctx: AnalysisContext, name: str, path_dirs: list[str], cwd: str) -> str | None:
    """execvp(3): a name with '/' is a path (relative to `cwd`); else the first PATH
    directory holding a regular file of that name. Returns the path as found (links kept)."""
    fs = ctx.fs
    if "/" in name:
        path = normpath(name if name.startswith("/") else posixpath.join(cwd or "/", name))
        return path if fs.is_file(path) else None
    for d in path_dirs:
        cand = normpath(posixpath.join(d if d.startswith("/") else posixpath.join(cwd or "/", d), name))
        if fs.is_file(cand):
            return cand
    return None


def _is_shell(base: str, real_base: str, args: list[str]) -> bool:
    """Whether a program named `base` (a link to `real_base`) run with `args` is a shell.

    A busybox applet link runs the applet its NAME says (`sh` -> busybox is a shell, `ls` ->
    busybox is not); busybox itself is a shell only as `busybox sh ARGS`.
    """
    if base == "busybox":
        return bool(args) and args[0] in ("sh", "ash", "bash")
    return base in SHELLS or (real_base in SHELLS and real_base != "busybox")


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


def _split_operators(token: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(token):
        for op in OPERATORS:
            if token.startswith(op, i):
                out.append(op)
                i += len(op)
                break
        else:  # pragma: no cover - shlex only groups operator characters
            out.append(token[i])
            i += 1
    return out


def _matching(line: str, i: int, open_ch: str, close_ch: str) -> int:
    """Index just past the `close_ch` balancing the `open_ch` before `i`, skipping quoted
    text; -1 when the line ends first."""
    depth, j = 1, i
    quote = ""
    while j < len(line):
        ch = line[j]
        if quote:
            if ch == "\\" and quote == '"':
                j += 1
            elif ch == quote:
                quote = ""
        elif ch == "\\":
            j += 1
        elif ch in "'\"":
            quote = ch
        elif ch == open_ch:
            depth += 1
        elif ch == close_ch:
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return -1


def _extract_substitutions(line: str, strict: bool = True) -> tuple[str, list[str]]:
    """Replace `$(…)` and backquoted command substitutions outside single quotes with a
    dynamic placeholder word; return the line and the inner command texts (XCU 2.6.3).
    `$((…))` is arithmetic, not a command. Blanks inside `${…}` are protected from word
    splitting (`${GREP:-grep -E}` is one word). With `strict`, an unclosed construct raises
    ValueError so the caller can join the next line; otherwise it extends to the line's end."""
    if not any(marker in line for marker in ("$(", "`", "${", "#")):
        return line, []  # nothing to rewrite (the common case)
    out: list[str] = []
    inner: list[str] = []
    i = 0
    in_single = in_double = False
    while i < len(line):
        ch = line[i]
        if ch == "\\" and not in_single:
            out.append(line[i : i + 2])
            i += 2
            continue
        if ch == "#" and not in_single and not in_double and (i == 0 or line[i - 1] in " \t\n;&|()<>"):
            # a comment runs to the end of the (physical) line (XCU 2.3 rule 9)
            nl = line.find("\n", i)
            i = len(line) if nl < 0 else nl
            continue
        if ch == "'" and not in_double:
            in_single = not in_single
        elif ch == '"' and not in_single:
            in_double = not in_double
        elif not in_single and line.startswith("$((", i):
            end = line.find("))", i + 3)
            if end < 0 and strict:
                raise ValueError("open arithmetic expansion")
            out.append("$__ARITH__")
            i = len(line) if end < 0 else end + 2
            continue
        elif not in_single and line.startswith("$(", i):
            end = _matching(line, i + 2, "(", ")")
            if end < 0 and strict:
                raise ValueError("open command substitution")
            inner.append(line[i + 2 : end - 1] if end > 0 else line[i + 2 :])
            out.append("$__SUBST__")
            i = len(line) if end < 0 else end
            continue
        elif not in_single and line.startswith("${", i):
            end = _matching(line, i + 2, "{", "}")
            if end < 0 and strict:
                raise ValueError("open parameter expansion")
            end = len(line) if end < 0 else end
            out.append(line[i:end].replace(" ", BLANK_MARK).replace("\t", BLANK_MARK))
            i = end
            continue
        elif ch == "`" and not in_single:
            j = line.find("`", i + 1)
            while j > 0 and line[j - 1] == "\\":
                j = line.find("`", j + 1)
            if j < 0 and strict:
                raise ValueError("open backquote")
            end = j if j > 0 else len(line)
            inner.append(line[i + 1 : end])
            out.append("$__SUBST__")
            i = end + 1
            continue
        out.append(ch)
        i += 1
    return "".join(out), inner


def tokenize(line: str) -> list[str]:
    """Words and operators of one logical shell line. Raises ValueError on an open quote."""
    if not any(ch in line for ch in "'\"\\#"):
        # no quoting or comments: plain splitting gives what shlex would, faster
        out_plain: list[str] = []
        for tok in SIMPLE_TOKEN.findall(line):
            if tok[0] in ";&|()<>":
                out_plain.extend(_split_operators(tok))
            else:
                out_plain.append(tok.replace(BLANK_MARK, " "))
        return out_plain
    line = HASH_IN_WORD.sub(HASH_MARK, line)
    # an escaped operator character is a plain word character (`find . \( -name x \;`)
    line = ESCAPED_OP.sub(lambda m: ESCAPE_MARKS[m.group(1)], line)
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
    lex.whitespace_split = True
    lex.commenters = "#"
    out: list[str] = []
    for tok in lex:
        if tok and all(c in ";&|()<>" for c in tok):
            out.extend(_split_operators(tok))
        else:
            # a lone escaped operator keeps its mark, so it is never taken for the operator
            if len(tok) > 1:
                tok = UNESCAPE.sub(lambda m: UNESCAPE_MARKS[m.group(0)], tok)
            out.append(tok.replace(HASH_MARK, "#").replace(BLANK_MARK, " "))
    return out


@dataclass
class Command:
    """One program (or sourced file) a shell text names."""

    line: int
    word: str
    kind: str  # "exec" | "source" | "dynamic" | "sh-c"
    args: list[str] = field(default_factory=list)


@dataclass
class ShellScanner:
    """Finds the words in command position of a shell text (see the module doc)."""

    functions: set[str] = field(default_factory=set)
    path_updates: list[tuple[int, str]] = field(default_factory=list)  # (line, PATH value)
    state: str = "cmd"  # cmd | args | for | case_word | case_pat | dbl
    join_budget: int = JOIN_BUDGET  # line joins left: bounds the work on hostile scripts
    case_depth: int = 0

    def scan(self, text: str) -> Iterator[Command]:
        self.functions |= defined_functions(text)
        lines = text.splitlines()
        i = 0
        heredocs: list[tuple[str, bool]] = []
        while i < len(lines):
            lineno = i + 1
            logical = lines[i]
            i += 1
            # join backslash continuations and lines with an open quote
            tokens: list[str] | None = None
            joined = 0
            while True:
                stripped = logical.rstrip()
                if stripped.endswith("\\") and not stripped.endswith("\\\\") and i < len(lines):
                    logical = stripped[:-1] + " " + lines[i]
                    i += 1
                    joined += 1
                    continue
                try:
                    body, subs = _extract_substitutions(logical)
                    tokens = tokenize(body)
                    break
                except ValueError:
                    self.join_budget -= 1
                    if i >= len(lines) or joined >= MAX_JOINED_LINES or self.join_budget <= 0:
                        # give up joining: read the first line alone, leniently
                        i = lineno
                        try:
                            body, subs = _extract_substitutions(lines[lineno - 1], strict=False)
                            tokens = tokenize(body)
                        except ValueError:
                            tokens = None
                        break
                    logical = logical + "\n" + lines[i]
                    i += 1
                    joined += 1
            if tokens is None:
                log.debug("line %d: unbalanced quotes; skipped", lineno)
                continue
            for sub in subs:
                yield from ShellScanner(self.functions).scan_tokens_text(sub, lineno)
            yield from self._commands(tokens, lineno, heredocs)
            # skip heredoc bodies opened on this line
            while heredocs:
                delim, strip_tabs = heredocs.pop(0)
                while i < len(lines):
                    body_line = lines[i].lstrip("\t") if strip_tabs else lines[i]
                    i += 1
                    if body_line == delim:
                        break

    def scan_tokens_text(self, text: str, lineno: int) -> Iterator[Command]:
        """Commands of a substitution or `sh -c` text, all reported at `lineno`."""
        for cmd in self.scan(text):
            cmd.line = lineno
            yield cmd

    def _commands(self, tokens: list[str], lineno: int, heredocs: list[tuple[str, bool]]) -> Iterator[Command]:
        # a newline ends a simple command, `for NAME in …` and a `case WORD` line; case
        # patterns and words still expected continue on the next line
        if self.state in ("args", "for", "arith"):
            self.state = "cmd"
        k = 0
        current: Command | None = None
        while k < len(tokens):
            tok = tokens[k]
            k += 1
            nxt = tokens[k] if k < len(tokens) else ""
            if tok in HEREDOCS:
                if nxt:
                    strip_tabs = tok == "<<-" or nxt.startswith("-")
                    heredocs.append((nxt[1:] if tok == "<<" and nxt.startswith("-") else nxt, strip_tabs))
                    k += 1
                continue
            if tok in REDIRECTS:
                k += 1  # the redirection target is no command
                continue
            if tok.isdigit() and nxt in REDIRECTS | HEREDOCS:
                continue  # "2>file": the descriptor number
            if self.state == "dbl":  # [[ … ]] and (( … )): no commands inside
                if tok in ("]]", "))") or (tok == ")" and nxt == ")"):
                    k += 1 if tok == ")" else 0
                    self.state = "args"
                continue
            if tok in SEPARATORS:
                if current is not None:
                    yield current
                    current = None
                if self.state == "case_pat":
                    if tok == ")":
                        self.state = "cmd"
                    continue  # `a|b)` and `(a)` are pattern syntax
                if self.case_depth and tok in (";;", ";&", ";;&"):
                    self.state = "case_pat"
                elif self.state == "cmd" and tok == "(" and nxt == "(":
                    self.state = "dbl"  # (( arithmetic ))
                    k += 1
                else:
                    self.state = "cmd"
                continue
            if self.state == "case_word":
                if tok == "in":
                    self.state = "case_pat"
                continue
            if self.state == "case_pat":
                if tok == "esac":
                    self.case_depth = max(0, self.case_depth - 1)
                    self.state = "args"
                continue
            if self.state == "for":
                continue  # `for NAME in WORDS` up to the separator
            if self.state == "args":
                if current is not None:
                    current.args.append(tok)
                continue
            # command position
            if tok == "esac":
                self.case_depth = max(0, self.case_depth - 1)
                continue
            if tok in RESERVED_CMD:
                continue
            if tok in ("for", "select"):
                self.state = "for"
                continue
            if tok == "case":
                self.case_depth += 1
                self.state = "case_word"
                continue
            if tok == "[[":
                self.state = "dbl"
                continue
            if tok == "function":
                if nxt:
                    self.functions.add(nxt)
                k += 1
                if k + 1 < len(tokens) and tokens[k] == "(" and tokens[k + 1] == ")":
                    k += 2
                continue
            if ASSIGNMENT.match(tok):
                if tok.endswith("=") and nxt == "(":  # an array: name=(words …)
                    while k < len(tokens) and tokens[k] != ")":
                        k += 1
                    k += 1
                    continue
                name, _, value = tok.partition("=")
                if name == "PATH":
                    self.path_updates.append((lineno, value))
                continue
            if nxt == "(" and k + 1 < len(tokens) and tokens[k + 1] == ")":
                self.functions.add(tok)  # name() { …; }
                k += 2
                continue
            if tok in ("export", "readonly", "local", "declare", "typeset"):
                # `export PATH=…` changes the lookup of later commands
                while k < len(tokens) and tokens[k] not in SEPARATORS:
                    name, eq, value = tokens[k].partition("=")
                    if eq and name == "PATH":
                        self.path_updates.append((lineno, value))
                    k += 1
                continue
            current = Command(lineno, tok, "exec")
            self.state = "args"
        if current is not None:
            yield current


def defined_functions(text: str) -> set[str]:
    """Names of the shell functions a text defines (`name()` and `function name`)."""
    out: set[str] = set()
    for line in text.splitlines():
        m = FUNC_DEF.match(line) or FUNC_KW.match(line)
        if m:
            out.add(m.group(1))
    return out


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
        self._cache: dict[tuple[str, tuple[str, ...]], str | None] = {}

    def which(self, name: str) -> str | None:
        key = (name, tuple(self.path_dirs))
        if key not in self._cache:
            found = _which(self.ctx, name, self.path_dirs, self.cwd)
            if found is None and "/" in name and not name.startswith("/"):
                found = _which(self.ctx, name, [], self.script_dir)
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
        updates_seen = 0
        for cmd in self.scanner.scan(text):
            while updates_seen < len(self.scanner.path_updates):
                line, value = self.scanner.path_updates[updates_seen]
                if line <= cmd.line:
                    self._apply_path(value)
                    updates_seen += 1
                else:
                    break
            yield from self._command(cmd, depth)

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
            takes_arg, operands = WRAPPERS[wrapper]
            args = list(cmd.args)
            while args and (args[0].startswith("-") or (wrapper == "env" and "=" in args[0])):
                opt = args.pop(0)
                if opt == "--":
                    break
                if opt in takes_arg and args:
                    val = args.pop(0)
                    if wrapper == "env" and opt in ("-S", "--split-string"):
                        args = shlex.split(val) + args
            args = args[operands:]
            if args:
                yield from self._command(Command(n, args[0], "exec", args[1:]), depth)
            return
        # sh -c 'TEXT' runs TEXT; busybox sh -c too
        if _is_shell(base, real_base, cmd.args) and "-c" in cmd.args and depth < MAX_SH_C_DEPTH:
            idx = cmd.args.index("-c")
            if idx + 1 < len(cmd.args):
                for sub in ShellScanner(self.scanner.functions).scan_tokens_text(cmd.args[idx + 1], n):
                    yield from self._command(sub, depth + 1)

    def _program(self, cmd: Command) -> Iterator[tuple[Command, str | None, Edge | Unknown]]:
        word, n = cmd.word, cmd.line
        if "$" in word:
            shown = word.replace("$__SUBST__", "$(…)").replace("$__ARITH__", "$((…))")
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
        if "$" in target:
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


class ScriptAnalyzer(Analyzer):
    """`#!` scripts: interpreter edges; for shell scripts, the programs and files they use."""

    name = "script"

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
            found = _which(self.ctx, words[0], self.ctx.config.path_dirs, cwd)
            if found is None:
                out.append(Unknown(path, f"{evidence}: {words[0]!r} not found in PATH"))
                return out
            out.append(Edge(path, found, "shebang", evidence))
            program, words = found, words[1:]
        base = posixpath.basename(program)
        real_base = posixpath.basename(self.ctx.fs.realpath(program))
        if not _is_shell(base, real_base, words):
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
        out.extend(sorted(seen, key=lambda x: (type(x).__name__, x)))
        return out


__all__ = ["BUILTINS", "ScriptAnalyzer", "ShellScanner", "parse_sh_c", "parse_shebang", "tokenize"]
