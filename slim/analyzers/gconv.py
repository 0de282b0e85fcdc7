"""glibc's iconv modules: the configuration always, a module only for a charset the app can name.

glibc converts between charsets with loadable modules (`gconv`): `iconv_open(to, from)` looks
both names up — upper-cased, with any `//SUFFIX` removed, through the aliases — in
`gconv-modules.cache` (or the `gconv-modules` files when there is no cache) and loads the module
of each side that is not built in (UTF-8, the UCS/UTF-16/UTF-32 forms and ASCII are:
iconv/gconv_builtin.h). The module directory is `GCONV_PATH` (from the image Env) and the
directories next to libc (iconv/gconv_conf.c). setlocale() to a locale whose charset is not
built in loads that charset's module too (wcsmbs/wcsmbsload.c).

So, once a kept ELF object imports `iconv_open` (or `iconv` runs), the analyzer keeps:

* the configuration (`gconv-modules`, `gconv-modules.d/*.conf`, `gconv-modules.cache`);
* the modules of the charsets the app can name: the charset of `LANG`/`LC_ALL`/`LC_CTYPE` in
  the image Env; charset names written in kept text files — scripts, PHP, configuration — that
  are not the sources of a language with its own codecs (Python, Perl, Ruby, JavaScript and
  Java never call iconv to encode strings); and those NUL-terminated in the read-only data of
  the ELF objects that import `iconv_open`.

Any other module is kept only on evidence — a traced run that loaded it. A module's libraries
(libJIS.so, libGB.so …) follow through its DT_NEEDED entries. Edges are `charset` edges from the
file that names the charset (or the importer, for the configuration and the locale's charset).
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

from slim.analyzers.base import AnalysisContext, Analyzer, link_edges, tidy
from slim.elf import ELF_MAGIC, imported_symbols
from slim.errors import SlimError
from slim.fs.layer import Capture
from slim.model import Edge, FileEntry, Unknown

log = logging.getLogger(__name__)

GCONV_DIRS = ("/usr/lib/x86_64-linux-gnu/gconv", "/usr/lib/aarch64-linux-gnu/gconv",
              "/usr/lib/i386-linux-gnu/gconv", "/usr/lib64/gconv", "/usr/lib/gconv",
              "/lib/x86_64-linux-gnu/gconv", "/lib/aarch64-linux-gnu/gconv", "/lib64/gconv")
CONFIG_NAMES = ("gconv-modules", "gconv-modules.cache")
MAX_CONFIG = 4 << 20
MAX_TEXT = 4 << 20
# sources of languages whose strings never go through iconv
OWN_CODECS = (".py", ".pyc", ".pyi", ".pm", ".pl", ".pod", ".rb", ".js", ".mjs", ".cjs", ".ts",
              ".java", ".class", ".jar", ".json")
BUILTIN = frozenset({"INTERNAL", "UTF-8", "UTF8", "ISO-10646/UTF8", "ISO-10646/UCS4",
                     "ISO-10646/UCS2", "UCS-4", "UCS-4LE", "UCS-2", "UCS-2LE", "UTF-16",
                     "UTF-16LE", "UTF-16BE", "UTF-32", "UTF-32LE", "UTF-32BE", "UTF-7",
                     "ANSI_X3.4-1968", "WCHAR_T", "UNICODELITTLE", "UNICODEBIG"})
_TOKEN = re.compile(rb"[A-Za-z0-9][A-Za-z0-9_.:+/-]{0,40}")


@dataclass
class GconvTable:
    """One gconv directory's configuration: charset name → the module files it needs."""

    directory: str
    configs: tuple[str, ...]
    modules: dict[str, set[str]]  # upper-case charset or alias name → module paths

    def lookup(self, name: str) -> set[str]:
        key = name.upper().split("//", 1)[0].rstrip("/")
        return set() if not key or key in BUILTIN else self.modules.get(key, set())


def parse_gconv_modules(text: str, directory: str, into: dict[str, set[str]],
                        aliases: dict[str, str]) -> None:
    """Read one gconv-modules file (iconv/gconv_conf.c: `alias FROM TO`, `module FROM TO FILE
    [COST]`, `#` comments) into `into` (charset → module files) and `aliases`."""
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) == 3 and words[0] == "alias":
            aliases[words[1].upper().rstrip("/")] = words[2].upper().rstrip("/")
        elif len(words) in (4, 5) and words[0] == "module":
            name = words[3]
            path = name if name.startswith("/") else posixpath.join(directory, name)
            if not path.endswith(".so"):
                path += ".so"
            for charset in (words[1], words[2]):
                key = charset.upper().rstrip("/")
                if key != "INTERNAL":
                    into.setdefault(key, set()).add(path)


class Gconv:
    """The image's gconv tables and what the analysis learned so far (a context service)."""

    def __init__(self, ctx: AnalysisContext) -> None:
        self.ctx = ctx
        self.tables = self._tables()
        self.importers: list[str] = []  # kept files that call iconv_open
        self.pending: list[str] = []  # text files seen before anything used iconv: read then

    def _tables(self) -> list[GconvTable]:
        fs = self.ctx.fs
        gconv_path = self.ctx.config.env_dict.get("GCONV_PATH", "")
        dirs = [d for d in gconv_path.split(":") if d.startswith("/")]
        out: list[GconvTable] = []
        for directory in dict.fromkeys([*dirs, *GCONV_DIRS]):
            real = fs.realpath(directory)
            if not fs.is_dir(real) or any(t.directory == real for t in out):
                continue
            configs = [posixpath.join(real, n) for n in CONFIG_NAMES if fs.is_file(posixpath.join(real, n))]
            configs += sorted(e.path for e in self.ctx.files_under(posixpath.join(real, "gconv-modules.d"))
                              if e.path.endswith(".conf"))
            modules: dict[str, set[str]] = {}
            aliases: dict[str, str] = {}
            for conf in configs:
                if conf.endswith(".cache"):
                    continue
                try:
                    text = fs.read(conf, MAX_CONFIG).decode("utf-8", "replace")
                except (SlimError, OSError) as exc:
                    log.debug("gconv: cannot read %s: %s", conf, exc)
                    continue
                parse_gconv_modules(text, real, modules, aliases)
            for alias, target in aliases.items():
                if target in modules:
                    modules.setdefault(alias, set()).update(modules[target])
            out.append(GconvTable(real, tuple(configs), modules))
        return out

    def modules_for(self, names: Iterable[str]) -> dict[str, set[str]]:
        """charset name → module files, for the names some table knows."""
        out: dict[str, set[str]] = {}
        for name in names:
            for table in self.tables:
                found = table.lookup(name)
                if found:
                    out.setdefault(name, set()).update(found)
        return out

    def locale_charsets(self) -> set[str]:
        """The charset part of LC_ALL / LC_CTYPE / LANG in the image Env (`de_DE.ISO-8859-1`)."""
        env = self.ctx.config.env_dict
        return {env[k].split(".", 1)[1].split("@", 1)[0]
                for k in ("LC_ALL", "LC_CTYPE", "LANG") if "." in env.get(k, "")}


def charset_names(data: bytes, pattern: re.Pattern[bytes] = _TOKEN) -> set[str]:
    """Words of `data` that could be charset names (checked against the tables later)."""
    return {m.group(0).decode("ascii") for m in pattern.finditer(data)}


class GconvAnalyzer(Analyzer):
    """iconv's configuration and the modules of the charsets the app names (module docstring)."""

    name = "gconv"
    capture = Capture(globs=("**/gconv/gconv-modules", "**/gconv/gconv-modules.d/*.conf"))

    def wants(self, entry: FileEntry) -> bool:
        state = self.ctx.service(Gconv)
        if not state.tables or not entry.is_file or not self.ctx.fs.has_content(entry.path):
            return False
        return not entry.path.endswith(OWN_CODECS) and "/gconv/" not in entry.path

    def analyze(self, entry: FileEntry) -> Iterable[Edge | Unknown]:
        state = self.ctx.service(Gconv)
        try:
            if self.ctx.fs.read(entry.path, 4) == ELF_MAGIC:
                return self._elf(state, entry)
        except (SlimError, OSError) as exc:
            return [Unknown(entry.path, f"gconv: cannot read: {exc}")]
        if not state.importers:  # nothing uses iconv (yet): read the text only if something does
            state.pending.append(entry.path)
            return []
        return self._text(state, entry.path)

    def _text(self, state: Gconv, path: str) -> list[Edge | Unknown]:
        """Modules of the charsets a text file names."""
        try:
            data = self.ctx.fs.read(path, MAX_TEXT)
        except (SlimError, OSError) as exc:
            return [Unknown(path, f"gconv: cannot read: {exc}")]
        if b"\x00" in data[:4096]:
            return []
        names = {n for n in charset_names(data) if state.modules_for([n])}
        return self._charset_edges(state, path, names) if names else []

    def _elf(self, state: Gconv, entry: FileEntry) -> list[Edge | Unknown]:
        try:
            if "iconv_open" not in imported_symbols(self.ctx.fs, entry.path):
                return []
        except SlimError as exc:  # it may call iconv: keep every module, and say so
            every = {m for t in state.tables for ms in t.modules.values() for m in ms}
            return tidy([Unknown(entry.path, f"gconv: cannot read its symbols ({exc}); every iconv module kept"),
                         *(e for m in sorted(every) if self.ctx.fs.lexists(m)
                           for e in link_edges(self.ctx, entry.path, m, "charset", "unreadable symbols"))])
        first = not state.importers
        state.importers.append(entry.path)
        out: list[Edge | Unknown] = []
        if first:
            for table in state.tables:
                for conf in table.configs:
                    out += link_edges(self.ctx, entry.path, conf, "charset",
                                      "iconv_open reads the gconv configuration")
            out += self._charset_edges(state, entry.path, state.locale_charsets(), "the locale's charset")
            for path in state.pending:
                out += self._text(state, path)
            state.pending.clear()
        return tidy(out)

    def _charset_edges(self, state: Gconv, src: str, names: Iterable[str],
                       why: str = "") -> list[Edge | Unknown]:
        out: list[Edge | Unknown] = []
        for name, modules in sorted(state.modules_for(names).items()):
            for module in sorted(modules):
                if self.ctx.fs.lexists(module):
                    out += link_edges(self.ctx, src, module, "charset",
                                      f"{why or 'names'} {name} (iconv module)")
        return tidy(out)


__all__ = ["Gconv", "GconvAnalyzer", "GconvTable", "charset_names", "parse_gconv_modules"]
