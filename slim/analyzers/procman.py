"""Process managers: the programs supervisord, runit and s6 start are roots too.

* **supervisord** (supervisor/options.py): the configuration is `-c FILE`, else the first of
  `../etc/supervisord.conf`, `../supervisord.conf` (beside the executable), `supervisord.conf`,
  `etc/supervisord.conf` (in the working directory), `/etc/supervisord.conf`,
  `/etc/supervisor/supervisord.conf`. Every `[program:x]`, `[fcgi-program:x]` and
  `[eventlistener:x]` section's `command=` is a command line (slim.entrypoint.command_roots:
  its program, wrappers, `sh -c`, argument files and data directories, what the language
  analyzers find), run in the section's `directory=`. `[include] files=` globs (relative to the
  including file's directory) are followed. Only the files supervisord reads count: those a
  supervisord command line names, and what they include (a package's test fixtures start
  nothing). `%(here)s`, `%(program_name)s` and `%(ENV_X)s` are
  expanded from the image; other expansions make the command an Unknown.
* **runit and s6**: `runsvdir [-P] DIR`, `runsv DIR`, `s6-svscan [DIR]` and `s6-supervise DIR`
  run each service directory's `run` (and `finish`, `log/run`) scripts; the scripts are kept as
  programs. The distributions' default service trees (Debian runit's /etc/service, s6-overlay's
  /etc/s6-overlay, /etc/services.d, /etc/cont-init.d) are kept by rules (rules/programs.toml).
* tini, dumb-init, gosu, su-exec and setpriv are wrappers (slim.analyzers.commands).
"""

from __future__ import annotations

import configparser
import logging
import posixpath
import re
import shlex
from collections.abc import Sequence

from slim.analyzers.base import AnalysisContext, Analyzer, link_edges, tidy
from slim.errors import SlimError
from slim.fs.layer import Capture
from slim.model import ROOT, Edge, FileEntry, Unknown, normpath, under

log = logging.getLogger(__name__)

MAX_CONFIG_BYTES = 1 << 20
SUPERVISORD_DEFAULTS = ("../etc/supervisord.conf", "../supervisord.conf", "supervisord.conf",
                        "etc/supervisord.conf", "/etc/supervisord.conf",
                        "/etc/supervisor/supervisord.conf")
_SECTION = re.compile(r"^\[(program|fcgi-program|eventlistener|supervisord|include|group|"
                      r"unix_http_server|inet_http_server|supervisorctl|rpcinterface)[:\]]", re.M)
_COMMAND_SECTIONS = ("program:", "fcgi-program:", "eventlistener:")
_EXPANSION = re.compile(r"%\(([A-Za-z0-9_]+)\)[sd]")
SERVICE_FILES = ("run", "finish", "log/run", "log/finish", "check")
SCANNERS = {"runsvdir": "dir-of-services", "s6-svscan": "dir-of-services",
            "runsv": "service", "s6-supervise": "service"}


class SupervisorConfigs:
    """The configuration files supervisord reads in this image: those its command lines name
    (`-c FILE`, else the first of its search path) and what their `[include]` sections reach.
    Another file that looks like one (a package's test fixtures) starts nothing."""

    def __init__(self, ctx: AnalysisContext) -> None:
        self.ctx = ctx
        self.roots: set[str] = set()

    def add(self, path: str) -> None:
        self.roots.add(self.ctx.fs.realpath(path))

    def is_active(self, path: str) -> bool:
        """Whether `path` is a root or included, transitively, by one (computed on each call:
        roots arrive while the worklist runs; configurations are few and small)."""
        real = self.ctx.fs.realpath(path)
        seen: set[str] = set()
        todo = sorted(self.roots)
        while todo:
            cur = todo.pop()
            if cur in seen:
                continue
            seen.add(cur)
            if cur == real:
                return True
            todo.extend(self.ctx.fs.realpath(f) for f in _include_targets(self.ctx, cur))
        return False


def _include_targets(ctx: AnalysisContext, path: str) -> list[str]:
    """The files `[include] files=` of configuration `path` names (globs relative to it)."""
    try:
        parser = _parser()
        parser.read_string(ctx.fs.read(path, MAX_CONFIG_BYTES).decode("utf-8", "replace"), source=path)
    except (SlimError, configparser.Error):
        return []
    if not parser.has_option("include", "files"):
        return []
    here = posixpath.dirname(path)
    out: list[str] = []
    for raw in parser.get("include", "files").split():
        pattern = raw.replace("%(here)s", here)
        out.extend(ctx.fs.glob3(normpath(posixpath.join(here, pattern))))
    return out


def _parser() -> configparser.RawConfigParser:
    # supervisor's UnhosedConfigParser: ';' starts an inline comment after whitespace
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    return parser


class ProcessManagerAnalyzer(Analyzer):
    """supervisord configurations → the programs they start; runit/s6 scanners → services."""

    name = "procman"
    capture = Capture(globs=("**/supervisord.conf", "/etc/supervisor/**", "/etc/supervisord.d/**",
                             "/etc/supervisor.d/**", "**/*.conf", "**/*.ini"))

    def wants(self, entry: FileEntry) -> bool:
        if not entry.is_file or not entry.path.endswith((".conf", ".ini")):
            return False
        if not self.ctx.fs.has_content(entry.path):
            return False
        try:
            head = self.ctx.fs.read(entry.path, 64 << 10).decode("utf-8", "replace")
        except SlimError:
            return False
        return bool(_SECTION.search(head)) and ("[program:" in head or "[include]" in head
                                                or "[supervisord]" in head or "[eventlistener:" in head
                                                or "[fcgi-program:" in head)

    def analyze(self, entry: FileEntry) -> list[Edge | Unknown]:
        path = entry.path
        if not self.ctx.service(SupervisorConfigs).is_active(path):
            return []  # no supervisord command line reads it
        try:
            text = self.ctx.fs.read(path, MAX_CONFIG_BYTES).decode("utf-8", "replace")
        except SlimError as exc:
            return [Unknown(path, f"supervisord configuration not read: {exc}")]
        parser = _parser()
        try:
            parser.read_string(text, source=path)
        except configparser.Error as exc:
            return [Unknown(path, f"supervisord configuration not parseable: {exc}")]
        out: list[Edge | Unknown] = []
        here = posixpath.dirname(path)
        for section in parser.sections():
            if section == "include" and parser.has_option(section, "files"):
                out.extend(self._includes(path, here, parser.get(section, "files")))
            elif section.startswith(_COMMAND_SECTIONS) and parser.has_option(section, "command"):
                out.extend(self._program(path, here, section, dict(parser.items(section))))
            out.extend(self._paths(path, here, section, dict(parser.items(section))))
        return tidy(out)

    def _paths(self, path: str, here: str, section: str, options: dict[str, str]) -> list[Edge]:
        """Absolute paths in option values (`logfile=`, `pidfile=`, `childlogdir=`, a socket's
        `file=`): an existing one is kept; for one supervisord creates, its directory is (it
        refuses to start when a log file's directory is missing)."""
        out: list[Edge] = []
        for key, raw in options.items():
            if key in ("command", "files"):
                continue
            value = self._expand(raw, here, section.partition(":")[2]) or ""
            for word in value.split():
                if not word.startswith("/") or any(under(word, p) for p in ("/dev", "/proc", "/sys")):
                    continue
                target = normpath(word)
                if not self.ctx.fs.exists(target):
                    target = posixpath.dirname(target)
                if target != "/" and self.ctx.fs.exists(target):
                    out.extend(link_edges(self.ctx, path, target, "config", f"[{section}] {key} = {word}"))
        return out

    def _includes(self, path: str, here: str, files: str) -> list[Edge | Unknown]:
        out: list[Edge | Unknown] = []
        for raw in files.split():
            pattern = self._expand(raw, here, "")
            if pattern is None:
                out.append(Unknown(path, f"[include] files {files!r}: an expansion slim cannot make"))
                continue
            full = normpath(posixpath.join(here, pattern))
            for match in self.ctx.fs.glob3(full):
                if match != path:
                    out.extend(link_edges(self.ctx, path, match, "config", f"[include] files = {pattern}"))
        return out

    def _program(self, path: str, here: str, section: str, options: dict[str, str]) -> list[Edge | Unknown]:
        from slim.entrypoint import CommandRoots  # the entrypoint module imports the registry

        name = section.split(":", 1)[1]
        label = f"[{section}] command"
        command = self._expand(options["command"], here, name)
        if command is None:
            return [Unknown(path, f"{label} {options['command']!r}: an expansion slim cannot make")]
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            return [Unknown(path, f"{label} {command!r}: {exc}")]
        directory = self._expand(options.get("directory", ""), here, name) or None
        return self.ctx.service(CommandRoots).roots(argv, path, label, directory)

    def _expand(self, value: str, here: str, program: str) -> str | None:
        """supervisor's `%(name)s` expansions that the image decides; None for the others."""
        env = self.ctx.config.env_dict
        names = {"here": here, "program_name": program, "group_name": program,
                 "process_num": "0", "numprocs": "1"}
        names.update({f"ENV_{k}": v for k, v in env.items()})
        missing = [m for m in _EXPANSION.findall(value) if m not in names]
        if missing:
            return None
        return _EXPANSION.sub(lambda m: names[m.group(1)], value)

    def entry_roots(self, argv: Sequence[str]) -> list[Edge | Unknown]:
        if not argv:
            return []
        base = posixpath.basename(argv[0])
        if base == "supervisord":
            return self._supervisord_roots(argv)
        if base in SCANNERS:
            return self._service_roots(argv, SCANNERS[base])
        return []

    def _supervisord_roots(self, argv: Sequence[str]) -> list[Edge | Unknown]:
        """The configuration supervisord reads: `-c FILE`, else its search path (module doc)."""
        wd = self.ctx.config.workdir or "/"
        configs = self.ctx.service(SupervisorConfigs)
        for i, a in enumerate(argv[1:], start=1):
            value = ""
            if a in ("-c", "--configuration") and i + 1 < len(argv):
                value = argv[i + 1]
            elif a.startswith("--configuration="):
                value = a.partition("=")[2]
            elif a.startswith("-c") and len(a) > 2:
                value = a[2:]
            if value:
                full = normpath(posixpath.join(wd, value))
                configs.add(full)
                return []  # the file itself is kept with the command line's arguments
        here = posixpath.dirname(argv[0])
        for cand in SUPERVISORD_DEFAULTS:
            full = normpath(posixpath.join(here if cand.startswith("..") else wd, cand))
            if self.ctx.fs.is_file(full):
                configs.add(full)
                return list(link_edges(self.ctx, ROOT, full, "entrypoint", f"supervisord reads {cand}"))
        return [Unknown(argv[0], "supervisord: no configuration file found where supervisord looks")]

    def _service_roots(self, argv: Sequence[str], how: str) -> list[Edge | Unknown]:
        """The run scripts of a runit/s6 service (or directory of services)."""
        operands = [a for a in argv[1:] if not a.startswith("-")]
        if argv and posixpath.basename(argv[0]) == "s6-svscan":
            operands = [a for i, a in enumerate(argv[1:], 1)
                        if not a.startswith("-") and argv[i - 1] not in ("-c", "-C", "-t", "-d", "-X")]
        wd = self.ctx.config.workdir or "/"
        directory = normpath(posixpath.join(wd, operands[0] if operands else "."))
        if "$" in directory or not self.ctx.fs.is_dir(directory):
            return [Unknown(argv[0], f"service directory {directory}: not in the image")]
        services = [directory] if how == "service" else [
            posixpath.join(directory, n) for n in self.ctx.fs.listdir(directory)
            if not n.startswith(".") and self.ctx.fs.is_dir(posixpath.join(directory, n))]
        out: list[Edge | Unknown] = []
        for svc in sorted(services):
            for rel in SERVICE_FILES:
                f = posixpath.join(svc, rel)
                if self.ctx.fs.is_file(f):
                    out.extend(link_edges(self.ctx, ROOT, f, "entrypoint",
                                          f"{posixpath.basename(argv[0])} runs {rel} of {svc}"))
        return out


__all__ = ["ProcessManagerAnalyzer", "SupervisorConfigs"]
