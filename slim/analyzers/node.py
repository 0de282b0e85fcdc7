"""Node.js: `require()` / `import` with literal specifiers, resolved by Node's own algorithm.

Resolution follows the "all together" pseudocode of https://nodejs.org/api/modules.html and the
ESM resolver's `exports` rules (https://nodejs.org/api/packages.html#package-entry-points):
builtins (`fs`, `node:fs`) need no file; `./`, `../` and `/` specifiers are tried as a file
(exact, then `.js`, `.json`, `.node`, `.mjs`, `.cjs`) and then as a directory (`package.json`
`main`, then `index.*`); bare specifiers walk `node_modules` up the tree (then NODE_PATH), and a
package's `exports` (a string, a `"."` map, subpath patterns with `*`, nested conditions) wins
over `main`. Since one file may be loaded by require and by import, every condition among
`require`, `import`, `node`, `module` and `default` is followed (conservative). `.node` addons
are ELF files the ELF analyzer takes over; the nearest `package.json` of every kept file is kept
(Node reads its `type` field).

Scanning is a small tokenizer, not a parser: it skips comments, string and template literals
and (heuristically) regular-expression literals, then matches token patterns: `require ( "x" )`,
`require.resolve ( "x" )`, `import ( "x" )`, `import "x"`, `from "x"` (import/export … from).
Limits: a `/` after `)` is taken as division (a regex literal right after `if (…)` is
misread); template literal specifiers are treated as non-literal; `#imports` specifiers are
reported as Unknown. A non-literal `require(expr)` is an Unknown. JSON read by a literal path
(`readFileSync("/abs.json")`, `path.join(__dirname, "x.json")`) becomes a `config` edge.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from slim.analyzers.base import AnalysisContext, Analyzer, link_edges, tidy
from slim.errors import SlimError
from slim.fs.layer import Capture
from slim.model import ROOT, Edge, FileEntry, Unknown, normpath, under

log = logging.getLogger(__name__)

MAX_SOURCE = 8 << 20
EXTENSIONS = ("", ".js", ".json", ".node", ".mjs", ".cjs")
INDEXES = ("index.js", "index.json", "index.node", "index.mjs", "index.cjs")
_MODULE_SUFFIXES = (".js", ".json", ".node", ".mjs", ".cjs")
CONDITIONS = ("require", "import", "node", "module", "default")
# require('module').builtinModules of Node 20 (node:-only ones like node:test need the prefix).
_BUILTIN_NAMES = """
assert assert/strict async_hooks buffer child_process cluster console constants crypto dgram
diagnostics_channel dns dns/promises domain events fs fs/promises http http2 https inspector
inspector/promises module net os path path/posix path/win32 perf_hooks process punycode
querystring readline readline/promises repl stream stream/consumers stream/promises stream/web
string_decoder sys timers timers/promises tls trace_events tty url util util/types v8 vm wasi
worker_threads zlib test sqlite sea
"""
BUILTINS = frozenset(_BUILTIN_NAMES.split())


@dataclass(frozen=True, slots=True)
class Token:
    """One significant token: kind is "id", "str", "tpl" (template literal) or "p" (punctuation)."""

    kind: str
    text: str
    line: int


_ID_START = re.compile(r"[A-Za-z_$]")
_ID = re.compile(r"[A-Za-z0-9_$]*")
_REGEX_AFTER_KEYWORDS = {"return", "typeof", "instanceof", "in", "of", "new", "delete", "void",
                         "throw", "case", "do", "else", "yield", "await"}


def _regex_allowed(out: list[Token]) -> bool:
    """Whether a `/` after the tokens so far starts a regular-expression literal (ECMA-262
    "Lexical Grammar": a regex can start where an expression can, not after a value)."""
    if not out:
        return True
    t = out[-1]
    if t.kind == "id":
        return t.text in _REGEX_AFTER_KEYWORDS
    if t.kind in ("str", "tpl"):
        return False
    return t.text not in (")", "]", "}")


def _template(src: str, start: int, line: int, depth: int, brace_stack: list[int]) -> tuple[int, int, int]:
    """Scan a template literal body from `start` (after the backtick). Returns (index after
    the closing backtick or after `${` (pushing onto brace_stack), line, brace depth)."""
    n = len(src)
    j = start
    while j < n:
        c = src[j]
        if c == "\\":
            j += 2
            continue
        if c == "\n":
            line += 1
        if c == "`":
            return j + 1, line, depth
        if c == "$" and j + 1 < n and src[j + 1] == "{":
            brace_stack.append(depth)
            depth += 1
            return j + 2, line, depth
        j += 1
    return n, line, depth


def _quoted(src: str, i: int) -> tuple[str, int]:
    """A '…' or "…" string literal starting at i: its text (escapes reduced to the escaped
    character) and the index after it; an unterminated one ends at the line's end."""
    n = len(src)
    c = src[i]
    j = i + 1
    buf: list[str] = []
    while j < n and src[j] != c and src[j] != "\n":
        if src[j] == "\\" and j + 1 < n:
            buf.append(src[j + 1])
            j += 2
            continue
        buf.append(src[j])
        j += 1
    return "".join(buf), j + 1


def _template_token(body: str, line: int) -> Token:
    """The token of a template literal whose scanned `body` runs up to its end or first `${`."""
    if body.endswith("`"):  # no substitution: as literal as a quoted string
        return Token("str", body[:-1], line)
    # keep the static head (text before the first `${`)
    return Token("tpl", body[:-2] if body.endswith("${") else "", line)


def _regex_end(src: str, i: int) -> int:
    """The index after a regular-expression literal starting with the `/` at i (a `/` inside
    a `[…]` class does not end it; the literal never spans lines)."""
    n = len(src)
    j = i + 1
    in_class = False
    while j < n and src[j] != "\n":
        ch = src[j]
        if ch == "\\":
            j += 2
            continue
        if ch == "[":
            in_class = True
        elif ch == "]":
            in_class = False
        elif ch == "/" and not in_class:
            break
        j += 1
    return j + 1


def _number_end(src: str, i: int) -> int:
    """The index after a numeric literal starting at i (digits, letters, `.` and `_`)."""
    n = len(src)
    j = i + 1
    while j < n and (src[j].isalnum() or src[j] in "._"):
        j += 1
    return j


def tokenize(src: str) -> list[Token]:
    """Identifiers, string literals and punctuation of JavaScript source; comments skipped."""
    out: list[Token] = []
    i, n, line = 0, len(src), 1
    brace_stack: list[int] = []  # depth markers for `${ … }` inside template literals
    depth = 0
    while i < n:
        c = src[i]
        if c == "\n":
            line += 1
            i += 1
        elif c in " \t\r\f\v\ufeff":
            i += 1
        elif src.startswith("//", i) or (i == 0 and src.startswith("#!")):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            line += src.count("\n", i, j)
            i = j
        elif c in "'\"":
            text, j = _quoted(src, i)
            out.append(Token("str", text, line))
            i = j
        elif c == "`":
            start_line = line
            j, line, depth = _template(src, i + 1, line, depth, brace_stack)
            out.append(_template_token(src[i + 1: j], start_line))
            i = j
        elif c == "}" and brace_stack and depth - 1 == brace_stack[-1]:
            brace_stack.pop()
            depth -= 1
            i, line, depth = _template(src, i + 1, line, depth, brace_stack)
        elif c == "/" and _regex_allowed(out):
            out.append(Token("str", "", line))  # a regex is a value, never a specifier
            i = _regex_end(src, i)
        elif _ID_START.match(c):
            m = _ID.match(src, i + 1)
            j = m.end() if m else i + 1
            out.append(Token("id", src[i:j], line))
            i = j
        elif c.isdigit():
            j = _number_end(src, i)
            out.append(Token("num", src[i:j], line))
            i = j
        else:
            if c == "{":
                depth += 1
            elif c == "}":
                depth = max(0, depth - 1)
            out.append(Token("p", c, line))
            i += 1
    return out


@dataclass(frozen=True, slots=True)
class Specifier:
    """A module reference found in source: the literal (or "" when dynamic) and how it was seen."""

    text: str
    line: int
    how: str  # "require" | "import" | "dynamic-import" | "require.resolve" | "json-read"
    dynamic: bool = False


def scan_specifiers(src: str) -> list[Specifier]:
    """Module specifiers and literal JSON paths of one JavaScript file."""
    toks = tokenize(src)
    out: list[Specifier] = []
    for k, t in enumerate(toks):
        nxt = toks[k + 1] if k + 1 < len(toks) else None
        prev = toks[k - 1] if k > 0 else None
        if t.kind == "id" and t.text == "require" and not (prev and prev.text == "."):
            if nxt and nxt.text == "(":
                arg = toks[k + 2] if k + 2 < len(toks) else None
                after = toks[k + 3] if k + 3 < len(toks) else None
                if arg and arg.kind == "str" and after and after.text == ")":
                    out.append(Specifier(arg.text, t.line, "require"))
                else:
                    head = arg.text if arg and arg.kind == "tpl" else ""
                    out.append(Specifier(head, t.line, "require", dynamic=True))
            elif nxt and nxt.text == "." and k + 4 < len(toks) and toks[k + 2].text == "resolve" \
                    and toks[k + 3].text == "(" and toks[k + 4].kind == "str":
                out.append(Specifier(toks[k + 4].text, t.line, "require.resolve"))
        elif t.kind == "id" and t.text == "import" and not (prev and prev.text == "."):
            if nxt and nxt.kind == "str":
                out.append(Specifier(nxt.text, t.line, "import"))
            elif nxt and nxt.text == "(":
                arg = toks[k + 2] if k + 2 < len(toks) else None
                if arg and arg.kind == "str":
                    out.append(Specifier(arg.text, t.line, "dynamic-import"))
                else:
                    head = arg.text if arg and arg.kind == "tpl" else ""
                    out.append(Specifier(head, t.line, "dynamic-import", dynamic=True))
        elif t.kind == "id" and t.text == "from" and nxt and nxt.kind == "str" and prev is not None \
                and (prev.text in ("}", "*") or prev.kind == "id"):
            out.append(Specifier(nxt.text, t.line, "import"))
        elif t.kind == "id" and t.text in ("readFileSync", "readFile", "createReadStream") \
                and nxt and nxt.text == "(" and k + 2 < len(toks) and toks[k + 2].kind == "str":
            out.append(Specifier(toks[k + 2].text, t.line, "json-read"))
        elif t.kind == "id" and t.text in ("__dirname", "__filename") and nxt and nxt.text == "," \
                and k + 2 < len(toks) and toks[k + 2].kind == "str":
            # path.join(__dirname, 'x.json') / path.resolve(__dirname, 'a', 'b.json')
            parts = [toks[k + 2].text]
            j = k + 3
            while j + 1 < len(toks) and toks[j].text == "," and toks[j + 1].kind == "str":
                parts.append(toks[j + 1].text)
                j += 2
            out.append(Specifier("./" + "/".join(parts), t.line, "dirname-read"))
    return out


# -- resolution ----------------------------------------------------------------------------
class NodeResolver:
    """Node's CommonJS/ESM resolution over an image RootFS (a service: one per analysis run,
    so every package.json is parsed once)."""

    def __init__(self, ctx: AnalysisContext) -> None:
        self.ctx = ctx
        self.fs = ctx.fs
        wd = ctx.config.workdir or "/"
        self.node_path = [normpath(posixpath.join(wd, p))
                          for p in ctx.config.env_dict.get("NODE_PATH", "").split(":") if p]
        self._package_json: dict[str, dict | None] = {}

    def package_json(self, directory: str) -> dict | None:
        path = posixpath.join(directory, "package.json")
        if path in self._package_json:
            return self._package_json[path]
        doc = None
        if self.fs.is_file(path):
            try:
                doc = json.loads(self.fs.read(path, 4 << 20).decode("utf-8", "replace"))
            except (SlimError, OSError, ValueError) as exc:
                log.debug("%s: unreadable package.json: %s", path, exc)
            if not isinstance(doc, dict):
                doc = {}
        self._package_json[path] = doc
        return doc

    def as_file(self, x: str) -> list[str]:
        for ext in EXTENSIONS:
            if self.fs.is_file(x + ext):
                return [x + ext]
        return []

    def as_directory(self, x: str) -> list[str]:
        if not self.fs.is_dir(x):
            return []
        pkg = self.package_json(x)
        found: list[str] = []
        if pkg is not None:
            found.append(posixpath.join(x, "package.json"))
            main = pkg.get("main")
            if isinstance(main, str) and main:
                m = normpath(posixpath.join(x, main))
                hit = self.as_file(m) or self.index(m)
                if hit:
                    return found + hit
        idx = self.index(x)
        return found + idx if idx else []

    def index(self, x: str) -> list[str]:
        for name in INDEXES:
            p = posixpath.join(x, name)
            if self.fs.is_file(p):
                return [p]
        return []

    def exports_targets(self, exports: object, subpath: str) -> list[str] | None:
        """Targets of `subpath` ("." or "./x") in a package.json `exports` value; None = not exported."""
        if isinstance(exports, (str, list)) or (
            isinstance(exports, dict) and exports and not any(str(k).startswith(".") for k in exports)
        ):
            exports = {".": exports}
        if not isinstance(exports, dict):
            return None
        return self._match_map(exports, subpath)

    def _match_map(self, exports: dict, subpath: str) -> list[str] | None:
        """Exact key, then `*` patterns (longest first), then legacy folder keys ending in "/"."""
        if subpath in exports:
            return self._conditions(exports[subpath], "")
        for key in sorted(exports, key=len, reverse=True):
            if "*" in key:
                pre, _, post = key.partition("*")
                if subpath.startswith(pre) and subpath.endswith(post) and len(subpath) >= len(pre) + len(post):
                    star = subpath[len(pre): len(subpath) - len(post)]
                    return self._conditions(exports[key], star)
            elif key.endswith("/") and subpath.startswith(key):  # deprecated folder mappings
                return [t + subpath[len(key):] for t in self._conditions(exports[key], "")]
        return None

    def _conditions(self, target: object, star: str) -> list[str]:
        if isinstance(target, str):
            return [target.replace("*", star)]
        if isinstance(target, list):
            return [t for item in target for t in self._conditions(item, star)]
        if isinstance(target, dict):
            out: list[str] = []
            for cond, value in target.items():
                if cond in CONDITIONS:
                    out.extend(self._conditions(value, star))
            return out
        return []

    def node_modules(self, name: str, start_dir: str) -> list[str] | None:
        parts = name.split("/")
        pkg_name = "/".join(parts[:2]) if name.startswith("@") else parts[0]
        rest = name[len(pkg_name):]
        dirs: list[str] = []
        d = start_dir
        while True:
            if posixpath.basename(d) != "node_modules":
                dirs.append(posixpath.join(d, "node_modules"))
            if d == "/":
                break
            d = posixpath.dirname(d)
        home = self.ctx.config.env_dict.get("HOME", "/root")
        dirs += [*self.node_path, posixpath.join(home, ".node_modules"), posixpath.join(home, ".node_libraries")]
        for nm in dirs:
            pkg_dir = posixpath.join(nm, pkg_name)
            if not self.fs.is_dir(pkg_dir):
                continue
            pkg = self.package_json(pkg_dir)
            found = [posixpath.join(pkg_dir, "package.json")] if pkg is not None else []
            if pkg and "exports" in pkg:
                targets = self.exports_targets(pkg["exports"], "." + rest)
                if targets is not None:
                    files = [normpath(posixpath.join(pkg_dir, t)) for t in targets]
                    files = [f for f in dict.fromkeys(files) if self.fs.is_file(f)]
                    if files:
                        return found + files
            x = posixpath.join(pkg_dir, rest.lstrip("/")) if rest else pkg_dir
            hit = self.as_file(x) if rest else []
            hit = hit or self.as_directory(x)
            if hit:
                return found + [h for h in hit if h not in found]
        return None

    def resolve(self, spec: str, from_dir: str) -> list[str] | None:
        """Files `spec` needs from a module in `from_dir`: [] for builtins, None when unresolved."""
        if spec.startswith("node:") or spec in BUILTINS:
            return []
        if spec.startswith(("./", "../", "/")) or spec in (".", ".."):
            x = normpath(posixpath.join(from_dir, spec))
            return self.as_file(x) or self.as_directory(x) or None
        if spec.startswith("#"):
            return self.package_imports(spec, from_dir)
        return self.node_modules(spec, from_dir)

    def package_imports(self, spec: str, from_dir: str) -> list[str] | None:
        """`#name` through the package scope's package.json "imports" (PACKAGE_IMPORTS_RESOLVE)."""
        scope = self.scope_package_json(posixpath.join(from_dir, "x"))
        if scope is None:
            return None
        pkg_dir = posixpath.dirname(scope)
        imports = (self.package_json(pkg_dir) or {}).get("imports")
        if not isinstance(imports, dict):
            return None
        targets = self._match_map(imports, spec)
        if targets is None:
            return None
        out = [scope]
        for t in targets:
            if t.startswith("./"):
                f = normpath(posixpath.join(pkg_dir, t))
                if self.fs.is_file(f):
                    out.append(f)
            else:  # a bare specifier: resolved as a package from the scope
                out += self.node_modules(t, pkg_dir) or []
        return out if len(out) > 1 else None

    def scope_package_json(self, path: str) -> str | None:
        """The nearest package.json above a file (its package scope)."""
        d = posixpath.dirname(path)
        while True:
            p = posixpath.join(d, "package.json")
            if self.fs.is_file(p):
                return p
            if d == "/":
                return None
            d = posixpath.dirname(d)


def _shebang_node(ctx: AnalysisContext, path: str) -> bool:
    try:
        head = ctx.fs.read(path, 128)
    except (SlimError, OSError):
        return False
    first = head.split(b"\n")[0]
    return head.startswith(b"#!") and b"node" in first


def node_edges(ctx: AnalysisContext, path: str, source: str) -> list[Edge | Unknown]:
    """Edges from one JavaScript file to the modules and JSON files it loads."""
    r = ctx.service(NodeResolver)
    d = posixpath.dirname(path)
    out: list[Edge | Unknown] = []
    scope = r.scope_package_json(path)
    if scope:
        out.append(Edge(path, scope, "package", "package scope (package.json \"type\")"))
    for spec in scan_specifiers(source):
        where = f"{path}:{spec.line}"
        if spec.dynamic:
            kept = ""
            if spec.text.startswith(("./", "../")) and "/" in spec.text:
                # require(`./commands/${name}.js`): every module in the directory of the static
                # prefix could be loaded; keep them all (conservative) and still report it.
                pdir = normpath(posixpath.join(d, posixpath.dirname(spec.text)))
                stem = posixpath.basename(spec.text)
                for name in sorted(ctx.fs.listdir(pdir)):
                    f = posixpath.join(pdir, name)
                    if name.startswith(stem) and name.endswith(_MODULE_SUFFIXES) and ctx.fs.is_file(f):
                        out.append(Edge(path, f, "import", f"{where}: {spec.how}(`{spec.text}${{…}}`)"))
                kept = f"; kept every module matching {spec.text}*"
            out.append(Unknown(path, f"line {spec.line}: {spec.how}() with a non-literal specifier{kept}"))
            continue
        if spec.how in ("json-read", "dirname-read"):
            # fs paths are relative to the process cwd (WorkingDir); __dirname ones to the file
            base = d if spec.how == "dirname-read" else (ctx.config.workdir or "/")
            p = normpath(posixpath.join(base, spec.text))
            if ctx.fs.is_file(p):
                out.extend(link_edges(ctx, path, p, "config", f"{where}: reads {spec.text}"))
            continue
        files = r.resolve(spec.text, d)
        if files is None:
            out.append(Unknown(path, f"line {spec.line}: {spec.how} {spec.text!r}: not resolved"))
            continue
        for f in files:
            out.extend(link_edges(ctx, path, f, "import", f"{where}: {spec.how} {spec.text!r}"))
    return out


# -- roots ---------------------------------------------------------------------------------
_NODE_OPTS_WITH_ARG = {"-r", "--require", "--import", "--loader", "--experimental-loader",
                       "-e", "--eval", "-p", "--print", "--env-file", "--title", "-C", "--conditions"}


def node_roots(ctx: AnalysisContext, argv: list[str]) -> list[Edge | Unknown]:
    """Edges from "<root>" for `node [options] file` (and `-r module` preloads)."""
    if not argv:
        return []
    prog = argv[0] if argv[0].startswith("/") else ctx.which(argv[0])
    if not prog or not {posixpath.basename(ctx.fs.realpath(prog)), posixpath.basename(prog)} & {"node", "nodejs"}:
        return []
    wd = ctx.config.workdir or "/"
    r = ctx.service(NodeResolver)
    out: list[Edge | Unknown] = []
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in ("-r", "--require", "--import") and i + 1 < len(argv):
            files = r.resolve(argv[i + 1], wd)
            if files is None:
                out.append(Unknown(prog, f"node {a} {argv[i + 1]}: not resolved"))
            for f in files or []:
                out.append(Edge(ROOT, f, "entrypoint", f"node {a} {argv[i + 1]}"))
            i += 2
            continue
        if a in ("-e", "--eval", "-p", "--print") and i + 1 < len(argv):
            for item in node_edges(ctx, posixpath.join(wd, "[eval]"), argv[i + 1]):
                out.append(Edge(ROOT, item.dst, item.kind, item.evidence) if isinstance(item, Edge)
                           else Unknown(prog, f"node {a}: {item.reason}"))
            break
        if a in _NODE_OPTS_WITH_ARG:
            i += 2
            continue
        if a.startswith("-"):
            i += 1
            continue
        # The main module is resolved like require() of an absolute path (Module._findPath).
        x = normpath(posixpath.join(wd, a))
        files = r.as_file(x) or r.as_directory(x)
        if not files:
            out.append(Unknown(prog, f"node script {a}: not found in the image"))
        for f in files:
            out.extend(link_edges(ctx, ROOT, f, "entrypoint", f"node {a}"))
        break
    return out


JS_RUNTIMES = ("node", "nodejs", "bun", "deno")


class NodeAnalyzer(Analyzer):
    """JavaScript sources (`.js`, `.mjs`, `.cjs`, `#!…node`) → required modules and JSON data."""

    name = "node"
    capture = Capture(globs=("**/*.js", "**/*.mjs", "**/*.cjs", "**/package.json"))

    def __init__(self, ctx: AnalysisContext) -> None:
        super().__init__(ctx)
        self._runtime: bool | None = None

    def entry_roots(self, argv: Sequence[str]) -> list[Edge | Unknown]:
        return node_roots(self.ctx, list(argv))

    def wants(self, entry: FileEntry) -> bool:
        if not entry.is_file:
            return False
        if entry.path.endswith((".js", ".mjs", ".cjs")):
            # without a JavaScript runtime in the image a .js file is a browser asset (Django
            # admin's static/ tree), which loads nothing from the image by require
            return self._has_runtime()
        return self.ctx.fs.has_content(entry.path) and not under(entry.path, "/etc") \
            and _shebang_node(self.ctx, entry.path)

    def _has_runtime(self) -> bool:
        if self._runtime is None:
            self._runtime = any(self.ctx.which(n) for n in JS_RUNTIMES) or any(
                self.ctx.fs.exists(f"{d}/{n}") for d in ("/usr/bin", "/usr/local/bin", "/opt/nodejs/bin")
                for n in JS_RUNTIMES)
        return self._runtime

    def analyze(self, entry: FileEntry) -> Iterable[Edge | Unknown]:
        try:
            data = self.ctx.fs.read(entry.path, MAX_SOURCE)
        except (SlimError, OSError) as exc:
            return [Unknown(entry.path, f"cannot read JavaScript source: {exc}")]
        results = node_edges(self.ctx, entry.path, data.decode("utf-8", errors="replace"))
        return tidy(results)


__all__ = ["NodeAnalyzer", "NodeResolver", "node_edges", "node_roots", "scan_specifiers", "tokenize"]
