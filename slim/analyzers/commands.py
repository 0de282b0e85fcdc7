"""Command lines: wrappers that run their operand, arguments that name files, directories of hooks.

Shared by the entrypoint (slim.entrypoint), shell scripts (slim.analyzers.script) and process
managers (slim.analyzers.procman): wherever slim sees a command line, it reads it the same way.

* A wrapper (`env`, `tini`, `dumb-init`, `gosu`, `su-exec`, `setpriv`, `chpst`, `s6-setuidgid`,
  `runuser`, `nice`, `timeout` …) runs its operand as a program; `unwrap` skips the wrapper's
  options and leading operands as the wrapper's own getopt does and returns the command it runs.
* An argument that names an image file is kept (`sort -r /etc/shells`, `--config=/etc/x.yml`);
  an argument naming a directory outside the distribution's trees keeps the directory whole: a
  program handed a directory reads it (`python3 -m http.server --directory /srv/data`).
* A directory of hooks is run file by file (`run-parts DIR`, `find DIR … -exec {} \\;`, a
  `find DIR … | while read f; do "$f"; done` or `for f in DIR/*; do . "$f"; done` loop, as the
  official images' `/docker-entrypoint.d/`): its files are kept as programs.

Which directories count as data: not "/" nor a top-level directory, and not under the
distribution's program trees (FHS 3.0: /usr, /lib*, /bin, /sbin) nor the kernel's and scratch
filesystems (/proc, /sys, /dev, /tmp, /run): those name the system, not the application's data.
A tree larger than MAX_TREE_FILES is reported, not kept whole.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Sequence

from slim.analyzers.base import AnalysisContext, link_edges
from slim.model import Edge, EntryKind, Unknown, normpath, under

MAX_TREE_FILES = 20_000

# Programs that run their remaining arguments as a command.
# value: (options taking a separate argument, number of leading operands before the command)
WRAPPERS: dict[str, tuple[frozenset[str], int]] = {
    "env": (frozenset({"-u", "--unset", "-C", "--chdir", "-S", "--split-string"}), 0),
    "nohup": (frozenset(), 0),
    "nice": (frozenset({"-n", "--adjustment"}), 0),
    "ionice": (frozenset({"-c", "--class", "-n", "--classdata", "-t"}), 0),
    "setsid": (frozenset(), 0),
    "stdbuf": (frozenset({"-i", "-o", "-e"}), 0),
    "timeout": (frozenset({"-s", "--signal", "-k", "--kill-after"}), 1),
    "chpst": (frozenset({"-u", "-U", "-e", "-/", "-n", "-l", "-L", "-m", "-d", "-o", "-p", "-f",
                         "-c", "-r", "-t"}), 0),
    "gosu": (frozenset(), 1),
    "su-exec": (frozenset(), 1),
    # util-linux setpriv(1): options with a value are written `--opt VALUE` or `--opt=VALUE`
    "setpriv": (frozenset({"--ruid", "--euid", "--reuid", "--rgid", "--egid", "--regid",
                           "--groups", "--inh-caps", "--ambient-caps", "--bounding-set",
                           "--securebits", "--pdeathsig", "--selinux-label",
                           "--apparmor-profile", "--landlock-access", "--landlock-rule",
                           "--seccomp-filter"}), 0),
    "tini": (frozenset({"-s", "-p", "-e", "-l", "-g", "-w"}), 0),
    "tini-static": (frozenset({"-s", "-p", "-e", "-l", "-g", "-w"}), 0),
    "dumb-init": (frozenset({"-r", "--rewrite"}), 0),
    "catatonit": (frozenset(), 0),
    "xargs": (frozenset({"-a", "-d", "-E", "-e", "-I", "-i", "-L", "-l", "-n", "-P", "-s"}), 0),
    "flock": (frozenset({"-w", "--timeout", "-E", "--conflict-exit-code"}), 1),
    "runuser": (frozenset({"-u", "-g", "-G"}), 0),
    "sudo": (frozenset({"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U"}), 0),
    # s6 (skarnet.org s6-setuidgid, s6-envuidgid, s6-applyuidgid) and daemontools
    "s6-setuidgid": (frozenset(), 1),
    "s6-envuidgid": (frozenset({"-u", "-g"}), 1),
    "s6-applyuidgid": (frozenset({"-u", "-g", "-G"}), 0),
    "setuidgid": (frozenset(), 1),
    "envuidgid": (frozenset(), 1),
    "envdir": (frozenset(), 1),
    "softlimit": (frozenset({"-m", "-a", "-d", "-s", "-l", "-f", "-c", "-r", "-t", "-o", "-p"}), 0),
}

# Programs that run every file of a directory (Debian debianutils run-parts(8)).
DIR_RUNNERS = frozenset({"run-parts"})
RUN_PARTS_OPTS_WITH_ARG = frozenset({"-u", "--umask", "-a", "--arg", "--regex"})

# Trees that hold the distribution's programs and the kernel's or scratch filesystems.
NOT_DATA = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/proc", "/sys",
            "/dev", "/tmp", "/run", "/var/run", "/var/lib/dpkg", "/var/lib/apt", "/var/cache")

# Top-level directories that hold many things at once: never kept whole for being named.
TOP_LEVEL_SYSTEM = frozenset({"/etc", "/var", "/opt", "/srv", "/home", "/root", "/mnt", "/media"})

_UNSAFE = re.compile(r"[\s;|&$`*?\[]")


def unwrap(name: str, args: Sequence[str]) -> list[str] | None:
    """The command wrapper `name` runs with `args` (maybe empty); None when `name` is no
    wrapper. Options are skipped as getopt_long does (`--` ends them; `--opt=VALUE` is one word),
    `env`'s `VAR=value` words too, and `env -S STRING` is split as coreutils splits it."""
    base = posixpath.basename(name)
    if base not in WRAPPERS:
        return None
    takes_arg, operands = WRAPPERS[base]
    rest = list(args)
    while rest and (rest[0].startswith("-") or (base == "env" and "=" in rest[0])):
        opt = rest.pop(0)
        if opt == "--":
            break
        if opt in takes_arg and rest:
            value = rest.pop(0)
            if base == "env" and opt in ("-S", "--split-string"):
                try:
                    rest = shlex.split(value) + rest
                except ValueError:
                    rest = value.split() + rest
    return rest[operands:]


def is_data_dir(path: str) -> bool:
    """Whether directory `path` may be an application's data or hooks (module doc): kept whole
    when a command line names it."""
    path = normpath(path)
    if path == "/" or path in TOP_LEVEL_SYSTEM:
        return False
    return not any(under(path, p) for p in NOT_DATA)


def tree_edges(ctx: AnalysisContext, src: str, directory: str, kind: str,
               evidence: str) -> list[Edge | Unknown]:
    """Edges from `src` to `directory` and every entry below it (symlinks on the way kept),
    capped at MAX_TREE_FILES."""
    res = ctx.fs.resolve(directory)
    if not res.exists or not ctx.fs.is_dir(res.path):
        return []
    out: list[Edge | Unknown] = list(link_edges(ctx, src, directory, kind, evidence))
    files = list(ctx.files_under(res.path))
    if len(files) > MAX_TREE_FILES:
        out.append(Unknown(src, f"{evidence}: more than {MAX_TREE_FILES} files under {directory}; "
                                "not kept whole"))
        return out
    out.extend(Edge(src, e.path, kind, evidence) for e in files)
    return out


def argument_paths(arg: str, relative: bool = True) -> list[str]:
    """Candidate paths in one argument word: the word itself, or the value of `--opt=VALUE`.
    Words with shell syntax or globs are none; with `relative=False` only absolute paths and
    words holding a '/' count (a script's bare words are too often plain text)."""
    if arg.startswith("-"):
        _, eq, value = arg.partition("=")
        cands = [value] if eq and value else []
    else:
        cands = [arg] if arg else []
    out = []
    for c in cands:
        if _UNSAFE.search(c) or c.startswith("~"):
            continue
        if relative or "/" in c:
            out.append(c)
    return out


def argument_edges(ctx: AnalysisContext, src: str, args: Sequence[str], cwd: str, kind: str,
                   evidence: str, relative: bool = True) -> list[Edge | Unknown]:
    """Edges from `src` to the image files `args` name (module doc): a regular file (through
    links) is kept; a data directory (`is_data_dir`) is kept whole; other directories alone."""
    out: list[Edge | Unknown] = []
    for arg in args:
        for cand in argument_paths(arg, relative):
            path = normpath(posixpath.join(cwd or "/", cand))
            if path == "/" or path == src or not ctx.fs.exists(path):
                continue
            why = f"{evidence}: argument {arg}"
            if ctx.fs.is_dir(path) and is_data_dir(ctx.fs.realpath(path)):
                out.extend(tree_edges(ctx, src, path, kind, why))
            else:
                out.extend(link_edges(ctx, src, path, kind, why))
    return out


def run_parts_dir(args: Sequence[str]) -> str | None:
    """The directory `run-parts [OPTIONS] DIR` runs (debianutils run-parts(8)), or None."""
    rest = list(args)
    operands: list[str] = []
    while rest:
        a = rest.pop(0)
        if a == "--":
            operands.extend(rest)
            break
        if a in RUN_PARTS_OPTS_WITH_ARG:
            if rest:
                rest.pop(0)
        elif not a.startswith("-"):
            operands.append(a)
    return operands[0] if operands else None


def find_roots(args: Sequence[str]) -> tuple[list[str], bool]:
    """(starting points, runs what it finds) of `find [-H|-L|-P] [-D …] [-Olevel] PATH… EXPR`
    (GNU findutils): paths come before the first expression word; `-exec {}`/`-execdir {}` or
    `-ok {}` with `{}` as the program runs each file found."""
    rest = list(args)
    while rest and (rest[0] in ("-H", "-L", "-P") or rest[0].startswith("-O")):
        rest.pop(0)
    if rest[:1] == ["-D"]:
        rest = rest[2:]
    paths: list[str] = []
    while rest and not rest[0].startswith(("-", "(", "!", ")")):
        paths.append(rest.pop(0))
    runs = any(rest[i] in ("-exec", "-execdir", "-ok", "-okdir") and rest[i + 1] == "{}"
               for i in range(len(rest) - 1))
    return paths, runs


def hook_edges(ctx: AnalysisContext, src: str, pattern: str, evidence: str) -> list[Edge | Unknown]:
    """Edges from `src` to the files a hook directory (or a glob of one, `DIR/*.sh`) holds, as
    programs (`exec`): each is run or sourced. Only data directories (`is_data_dir`) count."""
    pattern = pattern.rstrip("/") or "/"
    if any(ch in pattern for ch in "*?["):
        directory = posixpath.dirname(pattern)
        if any(ch in directory for ch in "*?[") or not is_data_dir(directory):
            return []
        matches = [m for m in ctx.fs.glob3(pattern) if not ctx.fs.is_dir(m)]
        out: list[Edge | Unknown] = []
        for m in matches[:MAX_TREE_FILES]:
            out.extend(link_edges(ctx, src, m, "exec", evidence))
        return out
    if not ctx.fs.is_dir(pattern) or not is_data_dir(ctx.fs.realpath(pattern)):
        return []
    res = ctx.fs.resolve(pattern)
    out = list(link_edges(ctx, src, pattern, "exec", evidence))
    for e in list(ctx.files_under(res.path))[:MAX_TREE_FILES]:
        if e.kind is not EntryKind.DIR:
            out.extend(link_edges(ctx, src, e.path, "exec", evidence))
    return out


__all__ = ["DIR_RUNNERS", "MAX_TREE_FILES", "WRAPPERS", "argument_edges", "argument_paths",
           "find_roots", "hook_edges", "is_data_dir", "run_parts_dir", "tree_edges", "unwrap"]
