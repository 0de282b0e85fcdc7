"""Apache httpd configuration: what the server loads and reads, followed from its main file.

The configuration is read as httpd's core does (server/config.c, server/core.c): one directive
per line (a trailing backslash continues it), `#` comments, arguments split like a shell's
words. The main file is `SERVER_CONFIG_FILE` under `HTTPD_ROOT` for the known builds (Debian
/etc/apache2/apache2.conf, RHEL /etc/httpd/conf/httpd.conf, the official httpd image
/usr/local/apache2/conf/httpd.conf, Alpine /etc/apache2/httpd.conf); relative paths are
relative to `ServerRoot`.

* `Include`/`IncludeOptional` FILE|GLOB|DIR (a directory includes every file below it) are
  followed; the files reached form the *active* configuration. Debian keeps disabled modules,
  sites and snippets in `*-available/` directories and enables them by symlinks in
  `*-enabled/`: a file under `*-available/` that no Include reaches says nothing.
* `LoadModule NAME PATH` and `LoadFile PATH` keep the module (the ELF analyzer follows its
  libraries; a PHP module brings PHP's configuration, slim.analyzers.php).
* `DocumentRoot`, `Alias`, `ScriptAlias` keep the directory tree they map URLs onto.
* File-valued directives (`TypesConfig`, `MIMEMagicFile`, `AuthUserFile`, `SSLCertificateFile`
  …) keep the file; for the files httpd writes (`PidFile`, `ErrorLog`, `CustomLog`, `Mutex`
  directories) the directory is kept, as httpd refuses to start without it; a piped log
  (`ErrorLog "|/usr/bin/rotatelogs …"`) is a command line run by /bin/sh.
* `${VAR}` is expanded from `Define`, the image Env and the defaults Debian's `envvars` sets
  (`export X=V`, `: ${X:=V}`); a path that stays unexpanded is an Unknown.
"""

from __future__ import annotations

import logging
import posixpath
import re
import shlex
from collections.abc import Iterable

from slim.analyzers.base import AnalysisContext, link_edges
from slim.analyzers.commands import tree_edges
from slim.errors import SlimError
from slim.model import Edge, Unknown, normpath, under

log = logging.getLogger(__name__)

MAX_CONFIG_BYTES = 4 << 20
MAX_FILES = 2000  # configuration files followed from one main file
MAIN_FILES = (("/etc/apache2", "apache2.conf"), ("/etc/httpd", "conf/httpd.conf"),
              ("/usr/local/apache2", "conf/httpd.conf"), ("/etc/apache2", "httpd.conf"))
PREFIXES = ("/etc/apache2/", "/etc/httpd/", "/usr/local/apache2/conf/")
ENVVARS = ("/etc/apache2/envvars", "/etc/sysconfig/httpd", "/usr/local/apache2/bin/envvars")

FILE_DIRECTIVES = {"typesconfig", "mimemagicfile", "authuserfile", "authgroupfile",
                   "authdbmuserfile", "sslcertificatefile", "sslcertificatekeyfile",
                   "sslcertificatechainfile", "sslcacertificatefile", "sslcarevocationfile",
                   "sslopensslconfcmd", "sslsessionticketkeyfile", "loadfile"}
TREE_DIRECTIVES = {"documentroot": 0, "alias": 1, "scriptalias": 1, "sslcacertificatepath": 0}
WRITTEN_DIRECTIVES = {"pidfile", "errorlog", "customlog", "transferlog", "scriptlog",
                      "defaultruntimedir", "mutex", "coredumpdirectory", "lockfile"}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def apache_directives(text: str) -> list[tuple[int, str, list[str]]]:
    """(line, lower-case name, args) of every directive and section opener (`<IfModule x>` is
    `<ifmodule` with args [x]) of an httpd configuration text."""
    out: list[tuple[int, str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start, line = i + 1, lines[i]
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1] + " " + lines[i]
        i += 1
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("</"):
            continue
        if line.startswith("<"):
            line = line.strip("<>")
        try:
            words = shlex.split(line, posix=True)
        except ValueError:
            words = line.split()
        if words:
            out.append((start, words[0].lower(), words[1:]))
    return out


class ApacheConfig:
    """The active configuration of the image's httpd (module doc): a service of the context."""

    def __init__(self, ctx: AnalysisContext) -> None:
        self.ctx = ctx
        self.vars = self._defaults()
        self.active: dict[str, str] = {}  # real path of an active file → its ServerRoot
        for root, rel in MAIN_FILES:
            main = posixpath.join(root, rel)
            if ctx.fs.is_file(main) and ctx.fs.realpath(main) not in self.active:
                self._follow(main, root)

    def _defaults(self) -> dict[str, str]:
        """Variables httpd sees: the defaults `envvars` sets, overridden by the image Env."""
        out: dict[str, str] = {}
        for path in ENVVARS:
            if not self.ctx.fs.is_file(path):
                continue
            try:
                text = self.ctx.fs.read_text(path, 1 << 20)
            except SlimError:
                continue
            for m in re.finditer(r"^\s*(?:export\s+|:\s*\$\{)([A-Za-z_][A-Za-z0-9_]*)(?:=|:=)([^}\n]*)\}?\s*$",
                                 text, re.M):
                value = m.group(2).strip().strip("\"'").replace("$SUFFIX", "")
                out.setdefault(m.group(1), self.expand(value, out) or value)
        out.update(self.ctx.config.env_dict)
        return out

    def expand(self, value: str, names: dict[str, str] | None = None) -> str | None:
        """`value` with `${VAR}` expanded; None when a variable is unknown."""
        names = self.vars if names is None else names
        if any(n not in names for n in _VAR.findall(value)):
            return None
        return _VAR.sub(lambda m: names[m.group(1)], value)

    def _follow(self, main: str, server_root: str) -> None:
        todo = [main]
        while todo and len(self.active) < MAX_FILES:
            path = todo.pop(0)
            real = self.ctx.fs.realpath(path)
            if real in self.active:
                continue
            self.active[real] = server_root
            for _n, name, args in self._directives(real):
                if name == "serverroot" and args:
                    server_root = normpath(self.expand(args[0]) or server_root)
                elif name == "define" and len(args) >= 2:
                    self.vars.setdefault(args[0], args[1])
                elif name in ("include", "includeoptional") and args:
                    todo.extend(self.included(args[0], server_root))

    def _directives(self, path: str) -> list[tuple[int, str, list[str]]]:
        try:
            return apache_directives(self.ctx.fs.read_text(path, MAX_CONFIG_BYTES))
        except SlimError as exc:
            log.debug("%s", exc)
            return []

    def included(self, arg: str, server_root: str) -> list[str]:
        """The files `Include ARG` reads, sorted (server/config.c: a directory's files below it)."""
        value = self.expand(arg)
        if value is None:
            return []
        pattern = normpath(posixpath.join(server_root, value))
        out: list[str] = []
        for hit in self.ctx.fs.glob3(pattern):
            if self.ctx.fs.is_dir(hit):
                out.extend(e.path for e in self.ctx.files_under(self.ctx.fs.realpath(hit)))
            else:
                out.append(hit)
        return sorted(out)

    def server_root(self, path: str) -> str:
        """The ServerRoot in effect for configuration file `path`."""
        if path in self.active:
            return self.active[path]
        return next((root for root, _rel in MAIN_FILES if under(path, root)), posixpath.dirname(path))


def is_apache_config(path: str) -> bool:
    """Whether `path` is an httpd configuration file (by where it lives and its name)."""
    if posixpath.basename(path) in ("apache2.conf", "httpd.conf"):
        return True
    return path.startswith(PREFIXES) and path.endswith((".conf", ".load"))


def apache_edges(ctx: AnalysisContext, path: str, text: str) -> list[Edge | Unknown]:
    """Edges from httpd configuration file `path` (module doc)."""
    conf = ctx.service(ApacheConfig)
    if "-available/" in path and path not in conf.active:
        return []  # disabled: no Include reaches it
    root = conf.server_root(path)
    out: list[Edge | Unknown] = []
    for line, name, args in apache_directives(text):
        if not args:
            continue
        evidence = f"line {line}: {name} {' '.join(args)}"
        if name in ("include", "includeoptional"):
            found = conf.included(args[0], root)
            if not found and name == "include" and conf.expand(args[0]) is not None \
                    and not any(ch in args[0] for ch in "*?["):
                out.append(Unknown(path, f"{evidence}: included file not found"))
            out.extend(e for f in found if f != path for e in link_edges(ctx, path, f, "config", evidence))
        elif name == "loadmodule" and len(args) >= 2:
            out.extend(_file(ctx, conf, path, root, args[1], evidence, required=True))
        elif name in FILE_DIRECTIVES:
            out.extend(_file(ctx, conf, path, root, args[0], evidence, required=False))
        elif name in TREE_DIRECTIVES and len(args) > TREE_DIRECTIVES[name]:
            out.extend(_tree(ctx, conf, path, root, args[TREE_DIRECTIVES[name]], evidence))
        elif name in WRITTEN_DIRECTIVES:
            out.extend(_written(ctx, conf, path, root, args, evidence))
    return out


def _resolve(conf: ApacheConfig, root: str, arg: str) -> str | None:
    value = conf.expand(arg)
    return None if value is None else normpath(posixpath.join(root, value))


def _file(ctx: AnalysisContext, conf: ApacheConfig, path: str, root: str, arg: str, evidence: str,
          required: bool) -> list[Edge | Unknown]:
    target = _resolve(conf, root, arg)
    if target is None:
        return [Unknown(path, f"{evidence}: a variable slim cannot expand")]
    if ctx.fs.exists(target):
        return list(link_edges(ctx, path, target, "config", evidence))
    return [Unknown(path, f"{evidence}: {target} not in the image")] if required else []


def _tree(ctx: AnalysisContext, conf: ApacheConfig, path: str, root: str, arg: str,
          evidence: str) -> list[Edge | Unknown]:
    target = _resolve(conf, root, arg)
    if target is None:
        return [Unknown(path, f"{evidence}: a variable slim cannot expand")]
    if ctx.fs.is_dir(target):
        return tree_edges(ctx, path, target, "config", evidence)
    return list(link_edges(ctx, path, target, "config", evidence)) if ctx.fs.exists(target) else []


def _written(ctx: AnalysisContext, conf: ApacheConfig, path: str, root: str, args: Iterable[str],
             evidence: str) -> list[Edge | Unknown]:
    """The directory of a file httpd writes, or the program of a piped log."""
    arg = next(iter(args))
    if arg.startswith("|"):
        # a piped log (server/log.c ap_open_piped_log): "|cmd" runs through /bin/sh -c,
        # "||cmd" and "|$cmd" directly; either way the command line's program is a root
        from slim.entrypoint import CommandRoots  # it imports the analyzers

        command = arg.lstrip("|$ ")
        try:
            argv = shlex.split(command)
        except ValueError:
            argv = command.split()
        out = ctx.service(CommandRoots).roots(argv, path, evidence)
        if not arg.startswith(("||", "|$")) and ctx.fs.exists("/bin/sh"):
            out.extend(link_edges(ctx, path, "/bin/sh", "exec", f"{evidence}: run by /bin/sh -c"))
        return out
    if arg.lower() in ("syslog", "default", "none") or arg.startswith(("syslog:", "file:", "fcntl", "flock",
                                                                     "sysvsem", "posixsem", "pthread")):
        arg = arg.split(":", 1)[1] if arg.startswith("file:") else ""
    if not arg:
        return []
    target = _resolve(conf, root, arg)
    if target is None or any(under(target, p) for p in ("/dev", "/proc")):
        return []
    directory = target if ctx.fs.is_dir(target) else posixpath.dirname(target)
    if directory != "/" and ctx.fs.exists(directory):
        return list(link_edges(ctx, path, directory, "config", f"{evidence}: httpd writes there"))
    return []


__all__ = ["ApacheConfig", "apache_directives", "apache_edges", "is_apache_config"]
