"""Reachability: from the image's roots to every file the app can need, as a DependencyGraph.

Roots are the entrypoint (Entrypoint + Cmd resolved with the image's PATH and WorkingDir,
`sh -c` strings and `/usr/bin/env X` looked through), rules that always apply, user `--keep`
globs and, when a trace is given, every file the traced run opened or executed. A worklist then
offers each newly kept path to the analyzers until nothing new appears. Every symlink on the
way to a kept path and every parent directory is kept too, each as an edge saying so.
"""

from __future__ import annotations

import fnmatch
import logging
import posixpath
import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from slim.analyzers import analyzer_classes
from slim.analyzers.base import AnalysisContext, Analyzer
from slim.analyzers.lang import language_roots
from slim.analyzers.packages import PackageDB, package_db, package_edges
from slim.analyzers.script import parse_sh_c
from slim.fs.rootfs import RootFS
from slim.graph import DependencyGraph
from slim.model import ROOT, Edge, EntryKind, ImageConfig, Unknown, parent_dirs

log = logging.getLogger(__name__)

SHELLS = {"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "busybox"}
MAX_NODES = 2_000_000  # a bound on work for hostile images


@dataclass
class Closure:
    """What reachability found."""

    graph: DependencyGraph
    keep: set[str]  # image paths (files, links, dirs) reachable from ROOT
    unknowns: list[Unknown] = field(default_factory=list)
    missing: set[str] = field(default_factory=set)  # needed paths absent from the image
    dropped: set[str] = field(default_factory=set)  # removed by --drop
    packages: PackageDB | None = None  # the image's package database, when it has one
    context: AnalysisContext | None = None  # what analyzers recorded (ldso.tried …)


def which(fs: RootFS, config: ImageConfig, name: str) -> str | None:
    """Resolve a command name as execvp does: a name with '/' is a path (relative to the
    WorkingDir); otherwise each PATH directory of the image in order."""
    if "/" in name:
        path = name if name.startswith("/") else posixpath.join(config.workdir or "/", name)
        return posixpath.normpath(path) if fs.exists(path) else None
    for d in config.path_dirs:
        cand = posixpath.join(d if d.startswith("/") else "/" + d, name)
        entry = fs.stat(cand)
        if entry is not None and entry.is_file:
            return cand
    return None


def entry_roots(ctx: AnalysisContext, argv: Sequence[str] | None = None) -> list[Edge | Unknown]:
    """Edges from ROOT for the program the container runs and what its arguments name."""
    fs, config = ctx.fs, ctx.config
    argv = list(config.argv if argv is None else argv)
    out: list[Edge | Unknown] = []
    if not argv:
        out.append(Unknown("<entrypoint>", "image has neither Entrypoint nor Cmd"))
        return out
    prog_at: tuple[int, str] | None = None
    i = 0
    while i < len(argv):
        word = argv[i]
        prog = which(fs, config, word)
        if prog is None:
            out.append(Unknown(word, "entrypoint program not found in the image (PATH: "
                               + ":".join(config.path_dirs) + ")"))
            return out
        out.append(Edge(ROOT, prog, "entrypoint", f"argv[{i}] {word}"))
        prog_at = (i, prog)
        base = posixpath.basename(fs.realpath(prog))
        # /usr/bin/env [-i] [VAR=x …] PROG args: the real program is the next plain word
        if posixpath.basename(word) == "env" or base == "env":
            j = i + 1
            while j < len(argv) and (argv[j].startswith("-") or "=" in argv[j]):
                j += 1
            if j < len(argv):
                i = j
                continue
        if (base in SHELLS or posixpath.basename(word) in SHELLS) and "-c" in argv[i + 1 :]:
            k = argv.index("-c", i + 1)
            if k + 1 < len(argv):
                out.extend(_sh_c_roots(ctx, argv[k + 1], f"argv[{k + 1}] sh -c"))
        # arguments that name files in the image (configs, scripts, data)
        for j, arg in enumerate(argv[i + 1 :], start=i + 1):
            for cand in _arg_paths(arg):
                path = cand if cand.startswith("/") else posixpath.join(config.workdir or "/", cand)
                path = posixpath.normpath(path)
                if fs.exists(path) and path != "/":
                    out.append(Edge(ROOT, path, "entrypoint", f"argv[{j}] {arg}"))
        break
    if prog_at is not None:
        idx, prog = prog_at
        out.extend(_language_roots(ctx, [prog, *argv[idx + 1 :]]))
    return out


def _arg_paths(arg: str) -> list[str]:
    """Candidate paths in one argument: the argument itself, or the value of --opt=VALUE."""
    if arg.startswith("-"):
        _, eq, value = arg.partition("=")
        return [value] if eq and value else []
    return [arg] if arg and not re.search(r"[\s;|&$`]", arg) else []


def _sh_c_roots(ctx: AnalysisContext, script: str, evidence: str) -> list[Edge | Unknown]:
    out: list[Edge | Unknown] = []
    for item in parse_sh_c(script, ctx):
        if isinstance(item, (Edge, Unknown)):
            if isinstance(item, Edge):
                out.append(Edge(ROOT, item.dst, "entrypoint", f"{evidence}: {item.evidence}"))
            else:
                out.append(item)
        else:
            word, path = item
            if path:
                out.append(Edge(ROOT, path, "entrypoint", f"{evidence}: {word}"))
            else:
                out.append(Unknown("<entrypoint>", f"{evidence}: {word!r} not found in PATH"))
    return out


def _language_roots(ctx: AnalysisContext, resolved: list[str]) -> list[Edge | Unknown]:
    """Interpreters started with a script or module argument (python3 -m X, java -jar …).

    `resolved` is the argv with its program word replaced by the program's image path.
    """
    try:
        return language_roots(ctx, resolved)
    except Exception as exc:  # an analyzer bug must not lose files: keep and report
        log.debug("language roots failed", exc_info=True)
        return [Unknown(resolved[0], f"language roots: {exc.__class__.__name__}: {exc}")]


def glob_paths(fs: RootFS, patterns: Iterable[str]) -> list[str]:
    """Image paths matching user globs (`--keep`); a plain directory keeps its whole subtree."""
    out: set[str] = set()
    for pat in patterns:
        out.update(fs.glob(pat))
        if not any(ch in pat for ch in "*?[") and fs.is_dir(pat.rstrip("/") or "/"):
            out.update(fs.glob(fs.realpath(pat.rstrip("/") or "/").rstrip("/") + "/*"))
    return sorted(out)


class ClosureBuilder:
    """Runs the worklist over a RootFS."""

    def __init__(
        self,
        fs: RootFS,
        config: ImageConfig,
        *,
        rules: object | None = None,
        options: dict | None = None,
    ) -> None:
        self.fs = fs
        self.config = config
        self.ctx = AnalysisContext(fs=fs, config=config, options=dict(options or {}))
        self.rules = rules
        self.analyzers: list[Analyzer] = [cls(self.ctx) for cls in analyzer_classes()]
        self.graph = DependencyGraph()
        self.unknowns: set[Unknown] = set()
        self.missing: set[str] = set()
        self.dropped: set[str] = set()
        self._queue: deque[str] = deque()
        self._done: set[str] = set()
        self._drop_res: list[re.Pattern[str]] = []

    def set_drops(self, patterns: Iterable[str]) -> None:
        self._drop_res = [re.compile(fnmatch.translate(p.replace("**", "*"))) for p in patterns]

    def _dropped(self, path: str) -> bool:
        return any(r.match(path) for r in self._drop_res)

    def add(self, item: Edge | Unknown) -> None:
        if isinstance(item, Unknown):
            self.unknowns.add(item)
            return
        if item.dst != ROOT and not item.dst.startswith("pkg:"):
            item = self._canonical(item)
        if item.src != ROOT and not item.src.startswith("pkg:"):
            # an analyzer may name the requester by a path crossing directory symlinks (ldso:
            # a library found as /lib/x86_64-linux-gnu/libcurl.so.4 requests libnghttp2); the
            # node reached from ROOT is the canonical one, so its edges must start there too
            src = self._canonical(Edge(ROOT, item.src, "symlink", "")).dst
            if src != item.src:
                item = Edge(src, item.dst, item.kind, item.evidence)
        if item.dst != ROOT and self._dropped(item.dst):
            self.dropped.add(item.dst)
            return
        self.graph.add(item)
        if item.dst not in self._done and not item.dst.startswith("pkg:"):
            self._done.add(item.dst)
            self._queue.append(item.dst)

    def add_all(self, items: Iterable[Edge | Unknown]) -> None:
        for it in items:
            self.add(it)

    def _packages(self) -> PackageDB | None:
        """The image's package database, read once per run (None when there is none)."""
        db = package_db(self.ctx)
        return db if db.packages else None

    def _canonical(self, edge: Edge) -> Edge:
        """Point an edge at the image entry itself when its path crosses directory symlinks
        (/lib/x86_64-linux-gnu/libc.so.6 → /usr/lib/x86_64-linux-gnu/libc.so.6 when /lib is
        a link); the links crossed are kept with their own `symlink` edges."""
        dst = edge.dst
        if dst == "/" or self.fs.get(dst) is not None:
            return edge
        parent = self.fs.resolve(posixpath.dirname(dst))
        if not parent.exists or not parent.links:
            return edge
        canon = posixpath.join(parent.path, posixpath.basename(dst))
        if self.fs.get(canon) is None:
            return edge
        for link in parent.links:
            self.graph.add(Edge(canon, link, "symlink", f"on the path {dst}"))
            if link not in self._done:
                self._done.add(link)
                self._queue.append(link)
        return Edge(edge.src, canon, edge.kind, edge.evidence or f"as {dst}")

    def run(self) -> Closure:
        while self._queue:
            if len(self._done) > MAX_NODES:
                self.unknowns.add(Unknown("<image>", f"more than {MAX_NODES} reachable paths; stopped"))
                break
            self._visit(self._queue.popleft())
        keep = {n for n in self.graph.closure() if n != ROOT and not n.startswith("pkg:") and self.fs.lexists(n)}
        return Closure(self.graph, keep, sorted(self.unknowns), self.missing, self.dropped, self._packages(),
                       self.ctx)

    def _visit(self, path: str) -> None:
        entry = self.fs.get(path)
        res = self.fs.resolve(path)
        # every link traversed, and where it leads
        for link in res.links:
            if link != path:
                self.add(Edge(path, link, "symlink", "on the path"))
        if not res.exists:
            if entry is None and not res.links:
                self.missing.add(path)
            elif res.error:
                self.unknowns.add(Unknown(path, res.error))
            else:
                self.missing.add(res.path)
        elif res.path != path:
            self.add(Edge(path, res.path, "symlink", f"-> {res.path}"))
            # what needed the link needs its target for the same reason
            for into in self.graph.edges_into(path):
                if into.kind != "symlink":
                    self.add(Edge(into.src, res.path, into.kind, f"{into.evidence} (via {path})"))
        for d in parent_dirs(path):
            if self.fs.lexists(d):
                self.add(Edge(path, d, "parent-dir", ""))
        if entry is None or not res.exists:
            return
        real = self.fs.get(res.path)
        if real is None:
            return
        if real.kind is EntryKind.HARDLINK:
            self.add(Edge(res.path, real.linkname, "symlink", "hardlink"))
        if res.path != path:
            return  # the resolved path is visited on its own
        if self.rules is not None:
            apply = getattr(self.rules, "apply", None)
            if apply is not None:
                self.add_all(apply(path, self.fs, self.config))
        db = self._packages()
        if db is not None:
            self.add_all(package_edges(db, path))  # a kept daemon's conffiles
        if not real.is_file:
            return
        file_entry = self.fs.stat(path) or real
        for analyzer in self.analyzers:
            try:
                if not analyzer.wants(file_entry):
                    continue
                self.add_all(analyzer.analyze(file_entry))
            except Exception as exc:  # an analyzer bug must not lose files: keep, report
                log.debug("analyzer %s failed on %s", analyzer.name, path, exc_info=True)
                self.unknowns.add(Unknown(path, f"{analyzer.name} analyzer failed: {exc.__class__.__name__}: {exc}"))


VIRTUAL_PREFIXES = ("/proc/", "/sys/", "/dev/")


def trace_edges(trace: object, fs: RootFS) -> list[Edge]:
    """Edges from ROOT for every image path a traced run used.

    Opened, stat'ed and readlink'ed paths become `traced-open` edges (an app that checks a
    path's existence may behave differently without it), executed ones `traced-exec`. Paths
    the run created (absent from the image) and kernel filesystems are skipped; the static
    analyzers then run on what was traced (a traced binary's libraries, a script's interpreter).
    """
    out: list[Edge] = []
    for path, access in sorted(trace.paths.items()):  # type: ignore[attr-defined]
        if not access.found or path.startswith(VIRTUAL_PREFIXES) or path in ("/proc", "/sys", "/dev"):
            continue
        if not fs.lexists(path) and not fs.exists(path):
            continue
        if access.executed:
            out.append(Edge(ROOT, path, "traced-exec", "execve"))
        if access.opened:
            out.append(Edge(ROOT, path, "traced-open", "open"))
        elif not access.executed:
            how = "stat" if access.stated else "readlink"
            out.append(Edge(ROOT, path, "traced-open", how))
    return out
