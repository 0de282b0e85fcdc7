"""Configuration following: what a kept daemon's configuration file pulls in.

The config files themselves are kept by rules (rules/programs.toml keeps /etc/nginx/**,
/etc/lighttpd/**); this analyzer reads them and follows what they name:

* nginx (src/core/ngx_conf_file.c): `include FILE|GLOB;` — a relative path is relative to the
  configuration prefix (the directory of nginx.conf, /etc/nginx for the packaged builds); globs
  are glob(3) patterns (`*` does not cross '/'). `load_module PATH;` names a dynamic module
  (relative to the install prefix). File-valued directives (ssl_certificate, auth_basic_user_file,
  …) and `root`/`alias` document trees are kept too: the server opens them at run time.
* lighttpd (src/configfile.c): `include "FILE"` (globs allowed; relative to the including file's
  directory, then /etc/lighttpd), `include_shell "CMD"` — its output is configuration we cannot
  see statically: the command's program is kept and an Unknown is reported.
  `server.document-root = "DIR"` keeps the served tree.
* Apache httpd: slim.analyzers.apache (Include, LoadModule, DocumentRoot … from the main
  configuration file).

Every edge is `Edge(conf, path, "config", "<directive> …")`.
"""

from __future__ import annotations

import logging
import posixpath
import re
import shlex
from collections.abc import Iterable

from slim.analyzers.apache import apache_edges, is_apache_config
from slim.analyzers.base import Analyzer
from slim.errors import AnalysisError
from slim.fs.layer import Capture
from slim.fs.rootfs import RootFS
from slim.model import Edge, FileEntry, Unknown, normpath

log = logging.getLogger(__name__)

MAX_CONFIG_BYTES = 4 << 20
MAX_TREE_FILES = 20_000  # document roots larger than this are reported, not enumerated

NGINX_PREFIXES = ("/etc/nginx", "/usr/local/nginx/conf", "/usr/local/etc/nginx", "/opt/nginx/conf")
NGINX_MODULE_PREFIXES = ("/usr/share/nginx", "/usr/lib/nginx", "/etc/nginx", "/usr/local/nginx")
NGINX_FILE_DIRECTIVES = {
    "ssl_certificate", "ssl_certificate_key", "ssl_trusted_certificate", "ssl_client_certificate",
    "ssl_dhparam", "ssl_crl", "ssl_password_file", "auth_basic_user_file", "ssl_stapling_file",
    "proxy_ssl_certificate", "proxy_ssl_certificate_key", "proxy_ssl_trusted_certificate",
    "uwsgi_param_file", "include",
}
NGINX_TREE_DIRECTIVES = {"root", "alias"}

LIGHTTPD_PREFIX = "/etc/lighttpd"


def _tree_files(fs: RootFS, root: str) -> tuple[list[str], bool]:
    """Every entry under directory `root` (resolved), capped; (paths, truncated)."""
    real = fs.realpath(root)
    prefix = real.rstrip("/") + "/"
    out = [p for p in fs.tree.entries if p.startswith(prefix)]
    out.sort()
    return out[:MAX_TREE_FILES], len(out) > MAX_TREE_FILES


def _strip_nginx_comments(text: str) -> str:
    out: list[str] = []
    for line in text.splitlines():
        quote = ""
        for i, ch in enumerate(line):
            if quote:
                if ch == quote:
                    quote = ""
            elif ch in "'\"":
                quote = ch
            elif ch == "#":
                line = line[:i]
                break
        out.append(line)
    return "\n".join(out)


def nginx_directives(text: str) -> list[tuple[int, str, list[str]]]:
    """(line, name, args) of every simple directive (`name args…;`) of an nginx config."""
    text = _strip_nginx_comments(text)
    out: list[tuple[int, str, list[str]]] = []
    words: list[str] = []
    start_line = 1
    lex = shlex.shlex(text, posix=True, punctuation_chars=";{}")
    lex.whitespace_split = True
    lex.commenters = ""
    try:
        for tok in lex:
            if tok in (";", "{", "}") or (tok and set(tok) <= set(";{}")):
                if words and ";" in tok:
                    out.append((start_line, words[0], words[1:]))
                words = []
                continue
            if not words:
                start_line = lex.lineno
            words.append(tok)
    except ValueError:
        log.debug("nginx config: unbalanced quotes")
    return out


class ConfigAnalyzer(Analyzer):
    """Follows include lines (and file-valued directives) of nginx, lighttpd and Apache configs."""

    name = "config"
    capture = Capture(globs=("/etc/**", "/usr/local/nginx/conf/**", "/usr/local/etc/nginx/**",
                             "/usr/local/apache2/conf/**", "/usr/local/apache2/bin/envvars",
                             "**/*.conf"))

    def wants(self, entry: FileEntry) -> bool:
        return entry.is_file and self._flavor(entry.path) != ""

    @staticmethod
    def _flavor(path: str) -> str:
        base = posixpath.basename(path)
        if path.startswith("/etc/nginx/") or (base.endswith(".conf") and "nginx" in path) or \
                path.startswith(("/usr/local/nginx/conf/", "/usr/local/etc/nginx/")):
            return "nginx"
        if path.startswith(LIGHTTPD_PREFIX + "/") or (base.endswith(".conf") and "lighttpd" in path):
            return "lighttpd"
        if is_apache_config(path):
            return "apache"
        return ""

    def analyze(self, entry: FileEntry) -> Iterable[Edge | Unknown]:
        path = entry.path
        try:
            data = self.ctx.fs.read(path, MAX_CONFIG_BYTES)
        except AnalysisError as exc:
            return [Unknown(path, str(exc))]
        if b"\0" in data[:4096]:
            return []  # binary (a module or cache under /etc/nginx): nothing to follow
        text = data.decode("utf-8", errors="replace")
        flavor = self._flavor(path)
        if flavor == "apache":
            items = apache_edges(self.ctx, path, text)
        else:
            items = self._nginx(path, text) if flavor == "nginx" else self._lighttpd(path, text)
        return sorted(set(items), key=lambda x: (type(x).__name__, x))

    # -- nginx ------------------------------------------------------------------------------
    def _nginx_prefix(self, path: str) -> str:
        for prefix in NGINX_PREFIXES:
            if path.startswith(prefix + "/"):
                return prefix
        return posixpath.dirname(path)

    def _nginx(self, path: str, text: str) -> list[Edge | Unknown]:
        fs = self.ctx.fs
        out: list[Edge | Unknown] = []
        prefix = self._nginx_prefix(path)
        for line, name, args in nginx_directives(text):
            if not args:
                continue
            arg = args[0]
            evidence = f"line {line}: {name} {arg}"
            if "$" in arg and name in NGINX_FILE_DIRECTIVES | NGINX_TREE_DIRECTIVES:
                out.append(Unknown(path, f"{evidence}: path with a variable"))
                continue
            if name == "include":
                pattern = arg if arg.startswith("/") else posixpath.join(prefix, arg)
                matches = fs.glob3(pattern)
                if not matches and not any(ch in arg for ch in "*?["):
                    out.append(Unknown(path, f"{evidence}: included file not found"))
                out.extend(Edge(path, m, "config", evidence) for m in matches if m != path)
            elif name == "load_module":
                cands = [arg] if arg.startswith("/") else [posixpath.join(p, arg) for p in NGINX_MODULE_PREFIXES]
                found = [normpath(c) for c in cands if fs.exists(normpath(c))]
                if not found:
                    out.append(Unknown(path, f"{evidence}: module not found"))
                out.extend(Edge(path, f, "config", evidence) for f in found[:1])
            elif name in NGINX_FILE_DIRECTIVES:
                cand = normpath(arg if arg.startswith("/") else posixpath.join(prefix, arg))
                if fs.exists(cand):
                    out.append(Edge(path, cand, "config", evidence))
            elif name in NGINX_TREE_DIRECTIVES:
                out.extend(self._tree(path, arg, evidence))
        return out

    def _tree(self, conf: str, root: str, evidence: str) -> list[Edge | Unknown]:
        fs = self.ctx.fs
        root = normpath(root)
        if not fs.exists(root):
            return []
        out: list[Edge | Unknown] = [Edge(conf, root, "config", evidence)]
        if fs.is_dir(root):
            files, truncated = _tree_files(fs, root)
            out.extend(Edge(conf, f, "config", evidence) for f in files)
            if truncated:
                out.append(Unknown(conf, f"{evidence}: more than {MAX_TREE_FILES} files; not all kept"))
        return out

    # -- lighttpd ---------------------------------------------------------------------------
    def _lighttpd(self, path: str, text: str) -> list[Edge | Unknown]:
        fs = self.ctx.fs
        out: list[Edge | Unknown] = []
        here = posixpath.dirname(path)
        for n, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            m = re.match(r'^(include_shell|include)\s+"([^"]*)"', line)
            if m:
                directive, arg = m.groups()
                evidence = f"line {n}: {directive} \"{arg}\""
                if directive == "include_shell":
                    out.append(Unknown(path, f"{evidence}: output of a command is not analyzed"))
                    try:
                        words = shlex.split(arg)
                    except ValueError:
                        words = arg.split()
                    for w in words[:1]:
                        if w.startswith("/") and fs.exists(w):
                            out.append(Edge(path, normpath(w), "config", evidence))
                    continue
                if "$" in arg or "var." in arg:
                    out.append(Unknown(path, f"{evidence}: path with a variable"))
                    continue
                bases = [""] if arg.startswith("/") else [here, LIGHTTPD_PREFIX]
                matches: list[str] = []
                for base in bases:
                    matches = fs.glob3(posixpath.join(base, arg) if base else arg)
                    if matches:
                        break
                if not matches and not any(ch in arg for ch in "*?["):
                    out.append(Unknown(path, f"{evidence}: included file not found"))
                out.extend(Edge(path, m_, "config", evidence) for m_ in matches if m_ != path)
                continue
            m = re.match(r'^server\.document-root\s*=\s*"([^"]+)"', line)
            if m:
                out.extend(self._tree(path, m.group(1), f"line {n}: server.document-root"))
        return out


__all__ = ["ConfigAnalyzer", "nginx_directives"]
