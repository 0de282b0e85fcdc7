"""PHP: the configuration and extensions an interpreter loads, and what PHP sources include.

* **The interpreter** (the CLI `php`, `php-fpm`, `php-cgi`, Apache's `libphp*.so`) reads
  `php.ini` from its configuration directory (`PHP_CONFIG_FILE_PATH`, or `PHPRC`) and every
  `*.ini` of its scan directory (`PHP_CONFIG_FILE_SCAN_DIR`, or `PHP_INI_SCAN_DIR`; a leading
  ':' appends to the built-in one) — main/php_ini.c. Both directories and the extension
  directory (`PHP_EXTENSION_DIR`) are compiled in: they are found among the binary's path
  literals (slim.analyzers.elfdata), whatever the distribution (Debian /etc/php/8.2/apache2 and
  /usr/lib/php/20220829, the official image /usr/local/etc/php and
  /usr/local/lib/php/extensions/no-debug-non-zts-…). `extension=` and `zend_extension=` (a
  name, `NAME.so` or a path; `extension_dir=` overrides the directory) keep the `.so`, whose
  libraries the ELF analyzer follows; `auto_prepend_file`/`auto_append_file` are kept too.
  php-fpm's configuration (`php-fpm.conf` beside php.ini, its `include=` globs) is kept.
* **PHP sources** (`*.php`, `*.phtml`, `*.inc`): `include`, `include_once`, `require` and
  `require_once` of a literal path, `__DIR__ . '/x.php'` or `dirname(__FILE__) . '/x.php'`;
  a relative path is searched as PHP does (main/fopen_wrappers.c): the include_path entries
  (default `.:/usr/share/php`), then the including file's directory. A computed path is an
  Unknown (the application's directory and the document root are kept whole anyway).
* `php [-c INI] [-d …] SCRIPT` and `php -S ADDR -t DOCROOT` on a command line are roots.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Sequence

from slim.analyzers.base import AnalysisContext, Analyzer, link_edges, tidy
from slim.analyzers.commands import tree_edges
from slim.analyzers.elfdata import literal_dirs
from slim.errors import SlimError
from slim.fs.layer import Capture
from slim.model import ROOT, Edge, FileEntry, Unknown, normpath

log = logging.getLogger(__name__)

MAX_SOURCE = 4 << 20
SOURCE_SUFFIXES = (".php", ".phtml", ".inc", ".php5", ".php7", ".php8")
DEFAULT_INCLUDE_PATH = (".", "/usr/share/php")
_BINARY = re.compile(r"^(libphp[\d.]*\.so|mod_php[\d.]*\.so|php(-fpm|-cgi)?[\d.]*)$")
_EXT_DIR = re.compile(r"/php\d*/(\d{8}|extensions/[^/]+)$")
_INI_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=\s*(.*?)\s*$")
_INCLUDE = re.compile(
    r"""\b(include_once|require_once|include|require)\s*\(?\s*"""
    r"""((?:__DIR__|dirname\s*\(\s*__FILE__\s*\))\s*\.\s*)?(['"])([^'"$\n]+)\3\s*\)?\s*;""")
_DYNAMIC_INCLUDE = re.compile(r"""\b(include_once|require_once|include|require)\b\s*\(?\s*\$""")
_COMMENT = re.compile(r"/\*.*?\*/|(?<![:\w])//[^\n]*|^\s*#[^\n]*", re.S | re.M)


class PhpAnalyzer(Analyzer):
    """PHP interpreters → php.ini, conf.d and extensions; PHP sources → what they include."""

    name = "php"
    capture = Capture(globs=("**/*.php", "**/*.phtml", "**/*.inc", "**/php.ini", "**/php/**/*.ini",
                             "**/php*/**/*.conf", "**/php-fpm.conf"))

    def wants(self, entry: FileEntry) -> bool:
        if not entry.is_file:
            return False
        base = posixpath.basename(entry.path)
        if entry.path.endswith(SOURCE_SUFFIXES):
            return self.ctx.fs.has_content(entry.path)
        return bool(_BINARY.match(base)) and self.ctx.fs.has_content(entry.path)

    def analyze(self, entry: FileEntry) -> list[Edge | Unknown]:
        if entry.path.endswith(SOURCE_SUFFIXES):
            return tidy(self._source(entry.path))
        return tidy(interpreter_edges(self.ctx, entry.path))

    def _source(self, path: str) -> list[Edge | Unknown]:
        try:
            text = self.ctx.fs.read(path, MAX_SOURCE).decode("utf-8", "replace")
        except SlimError as exc:
            return [Unknown(path, f"PHP source not read: {exc}")]
        if "<?" not in text:
            return []
        return include_edges(self.ctx, path, text)

    def entry_roots(self, argv: Sequence[str]) -> list[Edge | Unknown]:
        if not argv or not re.match(r"^php[\d.]*$", posixpath.basename(self.ctx.fs.realpath(argv[0]))):
            return []
        wd = self.ctx.config.workdir or "/"
        out: list[Edge | Unknown] = []
        i = 1
        while i < len(argv):
            a = argv[i]
            value = argv[i + 1] if i + 1 < len(argv) else ""
            if a in ("-t", "-c", "-d", "-S", "-z") and value:
                if a == "-t":
                    out.extend(tree_edges(self.ctx, ROOT, normpath(posixpath.join(wd, value)),
                                          "entrypoint", f"php -t {value} (document root)"))
                elif a == "-c":
                    target = normpath(posixpath.join(wd, value))
                    if self.ctx.fs.is_dir(target):
                        target = posixpath.join(target, "php.ini")
                    out.extend(ini_edges(self.ctx, ROOT, target, [], f"php -c {value}"))
                i += 2
                continue
            if a in ("-f",) and value:
                a, i = value, i + 1
            elif a.startswith("-"):
                i += 1
                continue
            script = normpath(posixpath.join(wd, a))
            if self.ctx.fs.is_file(script):
                out.extend(link_edges(self.ctx, ROOT, script, "entrypoint", f"php script {a}"))
            break
        return out


def include_edges(ctx: AnalysisContext, path: str, text: str) -> list[Edge | Unknown]:
    """Edges from PHP source `path` to the files it includes (module doc)."""
    code = _COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    here = posixpath.dirname(path)
    wd = ctx.config.workdir or "/"
    out: list[Edge | Unknown] = []
    for m in _INCLUDE.finditer(code):
        how, relative_to_dir, name = m.group(1), bool(m.group(2)), m.group(4)
        line = code.count("\n", 0, m.start()) + 1
        if relative_to_dir:
            cands = [normpath(here + "/" + name)]
        elif name.startswith("/"):
            cands = [normpath(name)]
        elif name.startswith(("./", "../")):
            cands = [normpath(posixpath.join(wd, name)), normpath(posixpath.join(here, name))]
        else:
            cands = [normpath(posixpath.join(wd if d == "." else d, name)) for d in DEFAULT_INCLUDE_PATH]
            cands.append(normpath(posixpath.join(here, name)))
        hit = next((c for c in cands if ctx.fs.is_file(c)), None)
        if hit is None:
            out.append(Unknown(path, f"line {line}: {how} {name!r}: not found"))
            continue
        out.extend(link_edges(ctx, path, hit, "import", f"line {line}: {how} {name}"))
    for m in _DYNAMIC_INCLUDE.finditer(code):
        line = code.count("\n", 0, m.start()) + 1
        out.append(Unknown(path, f"line {line}: {m.group(1)} of a computed path"))
    return out


def php_dirs(ctx: AnalysisContext, binary: str) -> tuple[list[str], list[str], str]:
    """(configuration directories, scan directories, extension directory) compiled into
    `binary`, overridden by PHPRC and PHP_INI_SCAN_DIR from the image Env (main/php_ini.c)."""
    dirs = literal_dirs(ctx, binary)
    conf = [d for d in dirs if ctx.fs.is_file(posixpath.join(d, "php.ini"))
            or (ctx.fs.is_dir(posixpath.join(d, "conf.d")) and "php" in d)]
    scan = [d for d in dirs if posixpath.basename(d) == "conf.d" and "php" in d]
    ext = next((d for d in dirs if _EXT_DIR.search(d)), "")
    env = ctx.config.env_dict
    if env.get("PHPRC"):
        conf.insert(0, normpath(env["PHPRC"]))
    if "PHP_INI_SCAN_DIR" in env:
        value = env["PHP_INI_SCAN_DIR"]
        extra = [normpath(d) for d in value.split(":") if d]
        scan = [*scan, *extra] if value.startswith(":") else extra
    return conf, scan, ext


def interpreter_edges(ctx: AnalysisContext, binary: str) -> list[Edge | Unknown]:
    """php.ini, the scan directory's *.ini files and the extensions they load."""
    conf, scan, ext = php_dirs(ctx, binary)
    if not conf and not scan:
        return []
    inis: list[str] = []
    for d in conf:
        if ctx.fs.is_file(posixpath.join(d, "php.ini")):
            inis.append(posixpath.join(d, "php.ini"))
            break
    for d in scan:
        inis.extend(sorted(posixpath.join(d, n) for n in ctx.fs.listdir(d) if n.endswith(".ini")))
    out: list[Edge | Unknown] = []
    ext_dir = [ext] if ext else []
    for ini in inis:
        out.extend(link_edges(ctx, binary, ini, "config", "PHP reads its configuration (main/php_ini.c)"))
        out.extend(ini_edges(ctx, ini, ini, ext_dir, "php.ini"))
    if posixpath.basename(binary).startswith("php-fpm"):
        for d in conf:
            fpm = posixpath.join(d, "php-fpm.conf")
            if ctx.fs.is_file(fpm):
                out.extend(link_edges(ctx, binary, fpm, "config", "php-fpm's configuration"))
                out.extend(_fpm_includes(ctx, fpm))
    return out


def ini_edges(ctx: AnalysisContext, src: str, ini: str, ext_dir: list[str],
              label: str) -> list[Edge | Unknown]:
    """What one ini file loads: extensions (from `ext_dir`, which `extension_dir=` updates for
    the files read after it) and the prepend/append files."""
    try:
        text = ctx.fs.read_text(ini, 1 << 20)
    except SlimError as exc:
        return [Unknown(ini, f"not read: {exc}")]
    out: list[Edge | Unknown] = []
    if src != ini:
        out.extend(link_edges(ctx, src, ini, "config", label))
    for n, line in enumerate(text.splitlines(), start=1):
        m = _INI_LINE.match(line)
        if not m or line.lstrip().startswith(";"):
            continue
        key, value = m.group(1).lower(), m.group(2).split(";")[0].strip().strip("\"'")
        if key == "extension_dir" and value.startswith("/"):
            ext_dir[:] = [normpath(value)]
        elif key in ("extension", "zend_extension") and value:
            out.extend(_extension(ctx, ini, value, ext_dir, f"line {n}: {key}={value}"))
        elif key in ("auto_prepend_file", "auto_append_file") and value.startswith("/") \
                and ctx.fs.is_file(normpath(value)):
            out.extend(link_edges(ctx, ini, normpath(value), "config", f"line {n}: {key}"))
    return out


def _extension(ctx: AnalysisContext, ini: str, value: str, ext_dir: list[str],
               evidence: str) -> list[Edge | Unknown]:
    """The `.so` of `extension=VALUE` (ext/standard/dl.c php_load_extension: a path is used as
    is; a name is looked up in extension_dir as NAME, then NAME.so, then php_NAME.so)."""
    if "/" in value:
        cands = [normpath(value)]
    else:
        cands = [normpath(posixpath.join(d, f)) for d in ext_dir
                 for f in (value, f"{value}.so", f"php_{value}.so")]
    hit = next((c for c in cands if ctx.fs.is_file(c)), None)
    if hit is None:
        return [Unknown(ini, f"{evidence}: extension not found (extension_dir {ext_dir[0] if ext_dir else 'unknown'})")]
    return list(link_edges(ctx, ini, hit, "config", evidence))


def _fpm_includes(ctx: AnalysisContext, conf: str) -> list[Edge | Unknown]:
    """php-fpm's `include=GLOB` (sapi/fpm/fpm/fpm_conf.c: relative to the prefix, /usr by
    default for relative paths the packages never use)."""
    out: list[Edge | Unknown] = []
    try:
        text = ctx.fs.read_text(conf, 1 << 20)
    except SlimError:
        return out
    for m in re.finditer(r"^\s*include\s*=\s*(\S+)", text, re.M):
        pattern = normpath(posixpath.join(posixpath.dirname(conf), m.group(1)))
        for hit in ctx.fs.glob3(pattern):
            out.extend(link_edges(ctx, conf, hit, "config", f"include={m.group(1)}"))
    return out


__all__ = ["PhpAnalyzer", "include_edges", "ini_edges", "interpreter_edges", "php_dirs"]
