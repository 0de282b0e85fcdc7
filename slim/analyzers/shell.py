"""The POSIX shell lexer and command scanner: the programs a shell text names.

Shell scripts (sh, bash, dash, ash, ksh, busybox sh) are scanned line by line with a `shlex`
tokenizer extended with the shell's operators (POSIX XCU 2.3/2.9): the words in command position
— at the start of a line, after `;`, `&`, `&&`, `||`, `|`, `(`, `)`, after the reserved words
that start a command list (`if then else elif do while until ! {`), after variable assignments
and inside `$(…)` / backticks — are programs. Shell builtins (POSIX special and regular
builtins plus bash's, BUILTINS below) and functions the script defines are not programs;
`PATH=…` assignments are recorded so later commands are looked up in the new PATH
(slim.analyzers.script resolves the words).

What is deliberately not modelled: aliases, `eval` of variables, functions from sourced files
(their names still report as Unknown when not on PATH), arithmetic, and `case` patterns that
span lines oddly. Heredoc bodies are skipped (`<<` and `<<-`).

The cost is bounded on hostile scripts: a logical line longer than MAX_LINE_CHARS is not
tokenized, lines joined to close a quote are re-read at most JOIN_CHARS characters in all,
and command substitutions nested deeper than MAX_SUBST_DEPTH are not scanned (a 1 MiB line
with an open quote took over 100 s, 250k nested `$(` ran out of stack after 31 s). What is not
scanned becomes a "dynamic" command, which the script resolver reports as an Unknown: the
script is kept, nothing is silently dropped.
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MAX_JOINED_LINES = 200  # a quote or continuation spanning more lines is given up on
JOIN_BUDGET = 20_000  # total line joins per scanned text (open quotes re-tried line by line)
JOIN_CHARS = 1 << 20  # total characters re-tokenized by those retries, per scanned text
MAX_LINE_CHARS = 64 << 10  # a longer logical line is not tokenized (shlex: ~6 us a character)
MAX_SUBST_DEPTH = 8  # $( $( … ) ) nesting scanned

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
    """One program (or sourced file) a shell text names. A "dynamic" command stands for text
    that was not read (a long line, deep nesting); its word holds a `$`, so resolvers treat it
    as a command they cannot name."""

    line: int
    word: str
    kind: str  # "exec" | "source" | "dynamic" | "sh-c"
    args: list[str] = field(default_factory=list)


@dataclass
class ShellScanner:
    """Finds the words in command position of a shell text (see the module doc)."""

    functions: set[str] = field(default_factory=set)
    path_updates: list[tuple[int, str]] = field(default_factory=list)  # (line, PATH value)
    assignments: list[tuple[int, str, str]] = field(default_factory=list)  # (line, NAME, value)
    state: str = "cmd"  # cmd | args | for | case_word | case_pat | dbl
    join_budget: int = JOIN_BUDGET  # line joins left: bounds the work on hostile scripts
    case_depth: int = 0
    depth: int = 0  # command substitutions around this text
    join_chars: int = JOIN_CHARS  # characters the join retries may still re-read
    loops: list[tuple[int, list[str]]] = field(default_factory=list)  # `for NAME in WORDS`

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
            too_long = False
            while True:
                stripped = logical.rstrip()
                if stripped.endswith("\\") and not stripped.endswith("\\\\") and i < len(lines):
                    logical = stripped[:-1] + " " + lines[i]
                    i += 1
                    joined += 1
                    if len(logical) > MAX_LINE_CHARS:
                        too_long = True
                        break
                    continue
                if len(logical) > MAX_LINE_CHARS:
                    too_long = True
                    break
                try:
                    body, subs = _extract_substitutions(logical)
                    tokens = tokenize(body)
                    break
                except ValueError:
                    self.join_budget -= 1
                    self.join_chars -= len(logical)
                    if (i >= len(lines) or joined >= MAX_JOINED_LINES or self.join_budget <= 0
                            or self.join_chars <= 0 or len(logical) + len(lines[i]) > MAX_LINE_CHARS):
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
            if too_long:
                log.debug("line %d: %d characters; not scanned", lineno, len(logical))
                yield Command(lineno, f"$(a line of {len(logical)} characters, not scanned)", "dynamic")
                continue
            if tokens is None:
                log.debug("line %d: unbalanced quotes; skipped", lineno)
                continue
            for sub in subs:
                if self.depth >= MAX_SUBST_DEPTH:
                    yield Command(lineno, "$__SUBST__", "dynamic")  # shown as $(…)
                    continue
                yield from ShellScanner(self.functions, depth=self.depth + 1).scan_tokens_text(sub, lineno)
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
            skip = self._redirection(tok, nxt, heredocs)
            if skip is not None:
                k += skip
                continue
            if self.state == "dbl":  # [[ … ]] and (( … )): no commands inside
                k += self._in_double(tok, nxt)
                continue
            if tok in SEPARATORS:
                if current is not None:
                    yield current
                    current = None
                k += self._separator(tok, nxt)
                continue
            if self.state in ("case_word", "case_pat", "for", "args"):
                self._in_words(tok, current)
                continue
            # command position
            if self._keyword(tok):
                if tok in ("for", "select"):
                    self.loops.append((lineno, []))
                continue
            after = self._definition(tokens, k, tok, nxt, lineno)
            if after is not None:
                k = after
                continue
            current = Command(lineno, tok, "exec")
            self.state = "args"
        if current is not None:
            yield current

    @staticmethod
    def _redirection(tok: str, nxt: str, heredocs: list[tuple[str, bool]]) -> int | None:
        """Redirections (XCU 2.7), in any state: how many more tokens they take (the target
        is no command; a heredoc's delimiter is queued so its body is skipped); None when
        `tok` is not one."""
        if tok in HEREDOCS:
            if nxt:
                strip_tabs = tok == "<<-" or nxt.startswith("-")
                heredocs.append((nxt[1:] if tok == "<<" and nxt.startswith("-") else nxt, strip_tabs))
                return 1
            return 0
        if tok in REDIRECTS:
            return 1  # the redirection target is no command
        if tok.isdigit() and nxt in REDIRECTS | HEREDOCS:
            return 0  # "2>file": the descriptor number
        return None

    def _in_double(self, tok: str, nxt: str) -> int:
        """State "dbl", inside `[[ … ]]` or `(( … ))`: no commands until the closing
        bracket. Returns how many more tokens were taken."""
        if tok in ("]]", "))") or (tok == ")" and nxt == ")"):
            self.state = "args"
            return 1 if tok == ")" else 0
        return 0

    def _separator(self, tok: str, nxt: str) -> int:
        """A control operator or newline (XCU 2.9.3): the next word is in command position,
        except inside case patterns. Returns how many more tokens were taken."""
        if self.state == "case_pat":
            if tok == ")":
                self.state = "cmd"
            return 0  # `a|b)` and `(a)` are pattern syntax
        if self.case_depth and tok in (";;", ";&", ";;&"):
            self.state = "case_pat"
        elif self.state == "cmd" and tok == "(" and nxt == "(":
            self.state = "dbl"  # (( arithmetic ))
            return 1
        else:
            self.state = "cmd"
        return 0

    def _in_words(self, tok: str, current: Command | None) -> None:
        """A word outside command position: `case WORD in`, case patterns (XCU 2.9.4.3),
        `for NAME in WORDS`, or an argument of the current command."""
        if self.state == "case_word":
            if tok == "in":
                self.state = "case_pat"
        elif self.state == "case_pat":
            if tok == "esac":
                self.case_depth = max(0, self.case_depth - 1)
                self.state = "args"
        elif self.state == "for":
            if self.loops:  # `for NAME in WORDS` up to the separator
                self.loops[-1][1].append(tok)
        elif current is not None:  # "args"
            current.args.append(tok)

    def _keyword(self, tok: str) -> bool:
        """A reserved word in command position (XCU 2.4): update the state; False when `tok`
        is none of those that matter here."""
        if tok == "esac":
            self.case_depth = max(0, self.case_depth - 1)
        elif tok in RESERVED_CMD:
            pass
        elif tok in ("for", "select"):
            self.state = "for"
        elif tok == "case":
            self.case_depth += 1
            self.state = "case_word"
        elif tok == "[[":
            self.state = "dbl"
        else:
            return False
        return True

    def _definition(self, tokens: list[str], k: int, tok: str, nxt: str, lineno: int) -> int | None:
        """Words in command position that run nothing: a function definition (`function f`,
        `f()`), assignments (XCU 2.9.1; `PATH=` is recorded) and declarations (`export
        PATH=…`). Returns the index of the next token to read; None for a command word."""
        if tok == "function":
            if nxt:
                self.functions.add(nxt)
            k += 1
            if k + 1 < len(tokens) and tokens[k] == "(" and tokens[k + 1] == ")":
                k += 2
            return k
        if ASSIGNMENT.match(tok):
            if tok.endswith("=") and nxt == "(":  # an array: name=(words …)
                while k < len(tokens) and tokens[k] != ")":
                    k += 1
                return k + 1
            name, _, value = tok.partition("=")
            if name == "PATH":
                self.path_updates.append((lineno, value))
            self.assignments.append((lineno, name.rstrip("+"), value))
            return k
        if nxt == "(" and k + 1 < len(tokens) and tokens[k + 1] == ")":
            self.functions.add(tok)  # name() { …; }
            return k + 2
        if tok in ("export", "readonly", "local", "declare", "typeset"):
            # `export PATH=…` changes the lookup of later commands
            while k < len(tokens) and tokens[k] not in SEPARATORS:
                name, eq, value = tokens[k].partition("=")
                if eq and name == "PATH":
                    self.path_updates.append((lineno, value))
                if eq and ASSIGNMENT.match(tokens[k]):
                    self.assignments.append((lineno, name.rstrip("+"), value))
                k += 1
            return k
        return None


def defined_functions(text: str) -> set[str]:
    """Names of the shell functions a text defines (`name()` and `function name`)."""
    out: set[str] = set()
    for line in text.splitlines():
        m = FUNC_DEF.match(line) or FUNC_KW.match(line)
        if m:
            out.add(m.group(1))
    return out


__all__ = ["BUILTINS", "Command", "ShellScanner", "defined_functions", "tokenize"]
