"""The application's own files, document roots named by configs, and absolute path literals.

Static analysis of binaries and imports cannot see an asset no code links to (a template read
by name, a static page). Three conservative rules cover them:

* `app_roots`: files no package owns under the image's WorkingDir and the directory of the
  entrypoint script are the application; they are kept whole in every build mode
  (`--no-keep-app` turns this off).
* `docroot_edges`: a directory named as a web server's document root in a kept config (nginx
  `root`/`alias`, Apache `DocumentRoot`/`Alias`, lighttpd `server.document-root`, a
  `--docroot`/`--document-root` argument) is kept whole: the server maps URLs onto it.
* `path_literal_edges`: an absolute path literal in a kept script or config that names an
  existing regular file in the image is kept as a `config` edge.

"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Iterable, Iterator

from slim.analyzers.base import AnalysisContext, Analyzer, link_edges
from slim.analyzers.packages import PackageDB, package_db
from slim.errors import SlimError
from slim.fs.layer import Capture
from slim.model import ROOT, Edge, EntryKind, FileEntry, Unknown, normpath, under

log = logging.getLogger(__name__)

# Directories that hold the distribution, not the application (FHS 3.0 §3, §4).
SYSTEM_PREFIXES = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc",
                   "/proc", "/sys", "/dev", "/var/lib/dpkg", "/var/lib/apt", "/var/cache")
# Pseudo filesystems and scratch space: never a reason to keep anything.
IGNORED_LITERAL_PREFIXES = ("/dev", "/proc", "/sys", "/tmp")
# files whose path literals describe the machine a program was built on, never what it opens:
# CPython's build variables (Lib/sysconfig.py reads them as a dict: INSTALL = /usr/bin/install …)
# and Ruby's (rbconfig.rb: CONFIG["GREP"] = "/bin/grep", read by mkmf when building extensions)
BUILD_RECORD_NAMES = re.compile(r"^_sysconfigdata_.*\.py$|^rbconfig\.rb$")
# The account databases name login shells and home directories: login(1), su(1) and sshd use
# those, an application looking up a user (getpwnam) does not execute them.
ACCOUNT_FILES = frozenset({"/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/shells"})
# Data tables that quote paths as data: file(1)'s magic patterns (`0 string #!/bin/perl`).
DATA_TABLES = frozenset({"magic", "mime.types"})
MAX_LITERALS = 4096  # per file; a huge generated file must not explode the graph
MAX_TEXT = 4 << 20


# -- application files ---------------------------------------------------------------------
def _is_system(path: str) -> bool:
    return path == "/" or any(under(path, p) for p in SYSTEM_PREFIXES)


def _owner_db(ctx: AnalysisContext) -> PackageDB | None:
    """The package database (dpkg/apk), or None when the image has none."""
    try:
        db = package_db(ctx)
    except (SlimError, OSError) as exc:
        log.debug("package database unreadable: %s", exc)
        return None
    return db if db.packages else None


def app_roots(ctx: AnalysisContext, entry_script: str | None) -> list[Edge]:
    """Edges from "<root>" to the application's own files.

    The application is the WorkingDir and the directory of the entrypoint script, when they are
    not "/" nor a system directory; files a package owns are excluded. Off with
    `AnalysisOptions(keep_app=False)`.
    """
    if not ctx.options.keep_app:
        return []
    dirs: list[tuple[str, str]] = []
    wd = normpath(ctx.config.workdir) if ctx.config.workdir else ""
    if wd and not _is_system(wd) and ctx.fs.is_dir(wd):
        dirs.append((ctx.fs.realpath(wd), f"under WorkingDir {wd}"))
    if entry_script:
        sd = posixpath.dirname(normpath(entry_script))
        # a virtual environment's bin/ holds the console scripts of what pip installed, not
        # the application (PEP 405: pyvenv.cfg one level up)
        venv_bin = ctx.fs.is_file(posixpath.join(posixpath.dirname(sd), "pyvenv.cfg"))
        if not _is_system(sd) and ctx.fs.is_dir(sd) and not venv_bin:
            dirs.append((ctx.fs.realpath(sd), f"beside entrypoint script {entry_script}"))
    db = _owner_db(ctx)
    out: dict[str, Edge] = {}
    for d, why in dirs:
        if _is_system(d):
            continue
        for e in ctx.files_under(d):
            if e.path in out or _orphaned_bytecode(ctx, e.path):
                continue
            if db is not None:
                try:
                    if db.owner(e.path):
                        continue
                except (SlimError, OSError):
                    pass
            elif _is_system(e.path):
                continue
            out[e.path] = Edge(ROOT, e.path, "app", why)
        # an empty directory of the app is state it expects to find (PostgreSQL's pg_notify,
        # pg_tblspc in its data directory); fuller directories are kept as parents anyway
        for e in empty_dirs_under(ctx, d):
            if e.path not in out:
                out[e.path] = Edge(ROOT, e.path, "app", why)
    return sorted(out.values())


def entry_script(ctx: AnalysisContext) -> str | None:
    """The script the container starts, when it runs one: the first word of Entrypoint + Cmd
    (found as execvp finds it) or argument naming an image file that starts with `#!`."""
    argv = ctx.config.argv
    candidates = [ctx.which(argv[0])] if argv else []
    wd = ctx.config.workdir or "/"
    candidates += [normpath(posixpath.join(wd, a)) for a in argv[1:] if a and not a.startswith("-")]
    for path in candidates:
        if path and ctx.fs.is_file(path) and ctx.fs.has_content(path):
            try:
                if ctx.fs.read(path, 2) == b"#!":
                    return path
            except SlimError:
                continue
    return None


def empty_dirs_under(ctx: AnalysisContext, directory: str) -> Iterator[FileEntry]:
    """Directories strictly below `directory` with no entries at all, sorted."""
    prefix = directory.rstrip("/") + "/"
    for e in ctx.fs.walk():
        if e.kind is EntryKind.DIR and e.path.startswith(prefix) and not ctx.fs.listdir(e.path):
            yield e


def _orphaned_bytecode(ctx: AnalysisContext, path: str) -> bool:
    """A `__pycache__/NAME.TAG.pyc` whose `NAME.py` is gone: Python never loads it (PEP 3147)."""
    parent, base = posixpath.split(path)
    if posixpath.basename(parent) != "__pycache__" or not base.endswith(".pyc"):
        return False
    source = posixpath.join(posixpath.dirname(parent), base.split(".", 1)[0] + ".py")
    return not ctx.fs.exists(source)


# -- document roots ------------------------------------------------------------------------
# (label, a word every match contains, lower-cased — a cheap test before the regex — , regex,
# whether a match must start an nginx directive: _starts_directive)
_DOCROOT_PATTERNS: tuple[tuple[str, str, re.Pattern[str], bool], ...] = (
    # nginx http_core_module: `root path;` and `alias path;` (https://nginx.org/en/docs/http/ngx_http_core_module.html#root)
    # (a directive starts a line or follows `{`, `}` or `;`; the regex starts at the directive's
    # name, so the engine searches for that literal, and _starts_directive checks the rest)
    ("nginx root", "root", re.compile(r"root\s+[\"']?([^;\"'\s]+)[\"']?\s*;"), True),
    ("nginx alias", "alias", re.compile(r"alias\s+[\"']?([^;\"'\s]+)[\"']?\s*;"), True),
    # Apache core DocumentRoot and mod_alias Alias URL-path directory-path
    ("Apache DocumentRoot", "documentroot", re.compile(r"^\s*DocumentRoot\s+[\"']?([^\"'\s]+)", re.M | re.I), False),
    ("Apache Alias", "alias", re.compile(r"^\s*Alias\s+\S+\s+[\"']?([^\"'\s]+)", re.M | re.I), False),
    # lighttpd mod core: server.document-root = "/var/www"
    ("lighttpd server.document-root", "document-root", re.compile(r"server\.document-root\s*=\s*\"([^\"]+)\""),
     False),
    ("--docroot", "--d", re.compile(r"--(?:docroot|document-root)(?:=|\s+)[\"']?([^\"'\s]+)"), False),
)


_IGNORES_CASE = tuple(bool(p.flags & re.IGNORECASE) for _, _, p, _ in _DOCROOT_PATTERNS)
_FOLDED = {w: re.compile(re.escape(w), re.IGNORECASE) for _, w, p, _ in _DOCROOT_PATTERNS
           if p.flags & re.IGNORECASE}
assert all(p.pattern.startswith("^\\s*") for _, _, p, _ in _DOCROOT_PATTERNS if p.flags & re.IGNORECASE)


def _line_directives(text: str, lowered: str | None, word: str,
                     pat: re.Pattern[str]) -> Iterator[re.Match[str]]:
    """The matches of `pat`, a case-insensitive `^\\s*WORD…` pattern (re.M), found from each
    occurrence of `word` with only blanks before it on its line: every match pat.finditer
    yields (and one it skips when an earlier match swallowed the line), without trying the
    pattern at every line of a large text (Apache's `^\\s*DocumentRoot` cost 70 ms over
    Django's 11 MB of kept Python sources). `lowered`: text.lower() of an ASCII text (the same
    offsets), where str.find finds the word; a case-insensitive regex scan is 10 times slower."""
    if lowered is not None:
        starts: Iterable[int] = _finds(lowered, word)
    else:
        starts = (w.start() for w in _FOLDED[word].finditer(text))
    line = -1
    for at in starts:
        start = text.rfind("\n", 0, at) + 1
        if start == line or text[start:at].strip():
            continue
        line = start
        m = pat.match(text, start)
        if m is not None:
            yield m


def _finds(text: str, word: str) -> Iterator[int]:
    at = text.find(word)
    while at >= 0:
        yield at
        at = text.find(word, at + 1)


def _starts_directive(text: str, at: int) -> bool:
    """Whether an nginx directive may start at `at`: only whitespace lies between it and the
    start of the text, of a line, or a `{`, `}` or `;`."""
    i = at
    while i > 0 and text[i - 1] in " \t\r\f\v":
        i -= 1
    return i == 0 or text[i - 1] in "\n{};"


def docroot_edges(ctx: AnalysisContext, path: str, text: str) -> list[Edge]:
    """Edges from config `path` to every file of each existing document root it names."""
    out: set[Edge] = set()
    lowered: str | None = None
    for (label, word, pat, directive), folded in zip(_DOCROOT_PATTERNS, _IGNORES_CASE, strict=True):
        if folded:
            if lowered is None and text.isascii():
                lowered = text.lower()
            matches = _line_directives(text, lowered, word, pat)
        elif word in text:  # every match of a case-sensitive pattern spells its word
            matches = pat.finditer(text)
        else:
            continue
        for m in matches:
            if directive and not _starts_directive(text, m.start()):
                continue
            d = m.group(1)
            if "$" in d or not d.startswith("/"):
                continue  # variables ($document_root) and relative roots: not statically known
            d = normpath(d)
            if any(under(d, p) for p in IGNORED_LITERAL_PREFIXES) or d == "/":
                continue
            res = ctx.fs.resolve(d)
            if not res.exists or not ctx.fs.is_dir(res.path):
                continue
            why = f"{label} {d} in {path}"
            for link in res.links:
                out.add(Edge(path, link, "config", why))
            for e in ctx.files_under(res.path):
                out.add(Edge(path, e.path, "config", why))
    return sorted(out)


# -- absolute path literals ----------------------------------------------------------------
# the lookbehind comes after the leading "/" so the regex engine can search for that literal
# instead of trying the lookbehind at every position (40x faster on Python sources)
_LITERAL_RE = re.compile(r"(/(?<![\w.$/~-]/)(?:[A-Za-z0-9_.+@-]+/)*[A-Za-z0-9_.+@-]+)")


_HASH_COMMENT = re.compile(r"^[ \t]*#(?!!).*$", re.M)
# A docstring (the string that opens a module, or the body after a `def …:`/`class …:` line) in
# an installed Python library is prose, never read as a path: doctests such as
# `getoutput('ls /bin/ls')` in Lib/subprocess.py. The application's own files keep theirs
# (docopt reads a script's docstring for defaults).
_DOCSTRING = re.compile(r"""(?:\A|:[ \t]*(?:#[^\n]*)?\n)(?:[ \t]*\n)*[ \t]*[rRuU]?(\"\"\"|\'\'\')[\s\S]*?\1""")
# Python's library directories: the standard library, site- and dist-packages
LIBRARY_DIRS = re.compile(r"/lib/python3[.\d]*/|/(?:site|dist)-packages/")
_INI_COMMENT = re.compile(r"^[ \t]*[#;](?!!).*$", re.M)


def _names_file(ctx: AnalysisContext, literal: str) -> bool:
    """Whether a path literal names an existing regular file that is not ignored."""
    p = normpath(literal)
    if p == "/" or any(under(p, x) for x in IGNORED_LITERAL_PREFIXES):
        return False
    if ctx.fs.get(p) is None and not ctx.fs.exists(p):
        return False
    return ctx.fs.is_file(p)


def path_literal_edges(ctx: AnalysisContext, path: str, text: str) -> list[Edge]:
    """Edges from `path` to the existing regular files its absolute path literals name.

    Directories, /dev, /proc, /sys and /tmp are ignored (directories are kept only as docroots).
    Comment lines are skipped: a line starting with `#` (shell, Python, Ruby, Perl, Apache,
    nginx, YAML, TOML) or, in INI-style files, `;` (php.ini, supervisord) names what the
    program does not read (Debian's apache2.conf mentions /etc/init.d/apache2).
    """
    out: set[Edge] = set()
    seen: set[str] = set()
    if BUILD_RECORD_NAMES.search(posixpath.basename(path)):
        return []
    # Blanking comments and docstrings only removes literals: when no literal of the raw text
    # names an existing file, neither does one of the blanked text (most files; the two
    # substitutions cost 20x the scan)
    if not any(_names_file(ctx, m.group(1)) for m in _LITERAL_RE.finditer(text)):
        return []
    comments = _INI_COMMENT if path.endswith((".ini", ".conf", ".cfg")) else _HASH_COMMENT
    if path.endswith(".py") and LIBRARY_DIRS.search(path):
        text = _DOCSTRING.sub(lambda m: ":\n" * m.group(0).startswith(":"), text)
    for m in _LITERAL_RE.finditer(comments.sub("", text)):
        lit = m.group(1)
        if lit in seen:
            continue
        seen.add(lit)
        if len(seen) > MAX_LITERALS:
            break
        p = normpath(lit)
        if p == path or not _names_file(ctx, p):
            continue
        out.update(link_edges(ctx, path, p, "config", f"path literal {lit} in {path}"))
    return sorted(out)


_TEXT_SUFFIXES = (".conf", ".cfg", ".ini", ".toml", ".sh", ".py", ".js", ".mjs", ".cjs", ".pl",
                  ".pm", ".json", ".yaml", ".yml", ".properties", ".xml", ".env", ".rb", ".php")


class AppConfigAnalyzer(Analyzer):
    """The application's own files (in every mode); kept configs and scripts → their document
    roots and existing absolute path literals."""

    name = "app-config"
    capture = Capture(globs=("/etc/**", "**/*.conf", "**/*.toml", "**/*.cfg", "**/*.ini",
                             "**/*.sh"))

    def always_roots(self) -> list[Edge]:
        return app_roots(self.ctx, entry_script(self.ctx))

    def wants(self, entry: FileEntry) -> bool:
        if not entry.is_file or entry.size > MAX_TEXT:
            return False
        p = entry.path
        if p in ACCOUNT_FILES or posixpath.basename(p) in DATA_TABLES:
            return False
        if under(p, "/etc") or p.endswith(_TEXT_SUFFIXES):
            return self.ctx.fs.has_content(p)
        if not self.ctx.fs.has_content(p):
            return False
        try:
            return self.ctx.fs.read(p, 2) == b"#!"
        except (SlimError, OSError):
            return False

    def analyze(self, entry: FileEntry) -> Iterable[Edge | Unknown]:
        try:
            data = self.ctx.fs.read(entry.path, MAX_TEXT)
        except (SlimError, OSError) as exc:
            return [Unknown(entry.path, f"cannot read for path literals: {exc}")]
        if b"\x00" in data[:4096]:
            return []
        text = data.decode("utf-8", errors="replace")
        return sorted(set(docroot_edges(self.ctx, entry.path, text))
                      | set(path_literal_edges(self.ctx, entry.path, text)))
