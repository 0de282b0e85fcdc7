"""Reachability: from the image's roots to every file the app can need, as a DependencyGraph.

Roots come from the entrypoint (slim.entrypoint), the analyzers' `always_roots` (the
application's own files), rules that always apply, user `--keep` globs and, when a trace is
given, every file the traced run opened or executed. A worklist then offers each newly kept path
to the registered analyzers until nothing new appears. Every symlink on the way to a kept path
and every parent directory is kept too, each as an edge saying so.
"""

from __future__ import annotations

import logging
import posixpath
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from slim.analyzers import ANALYZERS
from slim.analyzers.base import AnalysisContext, AnalysisOptions, Analyzer, Parses
from slim.analyzers.elf import Loader
from slim.analyzers.packages import PackageDB, Packages
from slim.entrypoint import entry_roots
from slim.fs.rootfs import RootFS
from slim.globs import GlobSet
from slim.graph import DependencyGraph
from slim.model import ROOT, Edge, EntryKind, ImageConfig, Unknown
from slim.rules import RuleSet

log = logging.getLogger(__name__)

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
    context: AnalysisContext | None = None  # the analyzers' services (the emulated loader …)

    def loader_tried(self, requester: str, name: str) -> tuple[str, ...]:
        """The places the emulated loader looked for DT_NEEDED `name` of `requester`."""
        if self.context is None:
            return ()
        return self.context.service(Loader).tried.get((requester, name), ())


class ClosureBuilder:
    """Runs the worklist over a RootFS."""

    def __init__(
        self,
        fs: RootFS,
        config: ImageConfig,
        *,
        rules: RuleSet | None = None,
        options: AnalysisOptions | None = None,
        drop: Iterable[str] = (),
    ) -> None:
        self.fs = fs
        self.config = config
        self.ctx = AnalysisContext(fs=fs, config=config, options=options or AnalysisOptions())
        self.rules = rules
        self.analyzers: list[Analyzer] = [cls(self.ctx) for cls in ANALYZERS]
        self.graph = DependencyGraph()
        self.unknowns: set[Unknown] = set()
        self.missing: set[str] = set()
        self.dropped: set[str] = set()
        self._queue: deque[str] = deque()
        self._done: set[str] = set()
        self._canon: dict[str, str] = {}  # path → the entry it names (see _canonical)
        # a visited link → where it leads: what needs the link needs that for the same reason,
        # also when the need is found after the link was visited (the order is no one's choice)
        self._leads: dict[str, str] = {}
        self._drops = GlobSet(drop)

    def _dropped(self, path: str) -> bool:
        return bool(self._drops) and self._drops.match(path)

    def entry_roots(self) -> list[Edge | Unknown]:
        """Roots from what the container runs (Entrypoint + Cmd)."""
        return entry_roots(self.ctx, self.analyzers)

    def always_roots(self) -> list[Edge | Unknown]:
        """Roots the analyzers keep in every mode (the application's own files)."""
        out: list[Edge | Unknown] = []
        for analyzer in self.analyzers:
            out.extend(analyzer.always_roots())
        return out

    def add(self, item: Edge | Unknown) -> None:
        if isinstance(item, Unknown):
            self.unknowns.add(item)
            return
        dst, src = item.dst, item.src
        if dst != ROOT and not dst.startswith("pkg:"):
            dst = self._canonical(dst)
        if src != ROOT and not src.startswith("pkg:"):
            # an analyzer may name the requester by a path crossing directory symlinks (ldso:
            # a library found as /lib/x86_64-linux-gnu/libcurl.so.4 requests libnghttp2); the
            # node reached from ROOT is the canonical one, so its edges must start there too
            src = self._canonical(src)
        if dst != item.dst or src != item.src:
            item = Edge(src, dst, item.kind, item.evidence or (f"as {item.dst}" if dst != item.dst else ""))
        if item.dst != ROOT and self._dropped(item.dst):
            self.dropped.add(item.dst)
            return
        self.graph.add(item)
        if item.dst not in self._done and not item.dst.startswith("pkg:"):
            self._done.add(item.dst)
            self._queue.append(item.dst)
        elif item.kind != "symlink" and item.dst in self._leads:
            self.add(Edge(item.src, self._leads[item.dst], item.kind, f"{item.evidence} (via {item.dst})"))

    def add_all(self, items: Iterable[Edge | Unknown]) -> None:
        for it in items:
            self.add(it)


    def _canonical(self, path: str) -> str:
        """The image entry itself when `path` crosses directory symlinks
        (/lib/x86_64-linux-gnu/libc.so.6 → /usr/lib/x86_64-linux-gnu/libc.so.6 when /lib is a
        link); the links crossed are kept with their own `symlink` edges, added the first time
        (memoized: a path is named by ~10 edges on average)."""
        canon = self._canon.get(path)
        if canon is not None:
            return canon
        canon = path
        if path != "/" and self.fs.get(path) is None:
            parent = self.fs.resolve(posixpath.dirname(path))
            if parent.exists and parent.links:
                joined = posixpath.join(parent.path, posixpath.basename(path))
                if self.fs.get(joined) is not None:
                    canon = joined
                    for link in parent.links:
                        self.graph.add(Edge(canon, link, "symlink", f"on the path {path}"))
                        if link not in self._done:
                            self._done.add(link)
                            self._queue.append(link)
        self._canon[path] = canon
        return canon

    def run(self, on_visit: Callable[[int], None] | None = None) -> Closure:
        """Visit until nothing new is reachable; `on_visit(1)` after each visited path."""
        self.drain(on_visit)
        return self.finish()

    def drain(self, on_visit: Callable[[int], None] | None = None, stop: threading.Event | None = None) -> None:
        """Visit until nothing new is reachable (more roots may be added after, and drained),
        or until `stop` is set (the worklist is then unfinished: only `abandon` is left)."""
        while self._queue:
            if stop is not None and stop.is_set():
                return
            if len(self._done) > MAX_NODES:
                self.unknowns.add(Unknown("<image>", f"more than {MAX_NODES} reachable paths; stopped"))
                break
            self._visit(self._queue.popleft())
            if on_visit is not None:
                on_visit(1)
            if not self._queue:
                # the worklist ran dry: conditions on the whole keep set may now hold
                for analyzer in self.analyzers:
                    self.add_all(analyzer.at_fixpoint(self._done))

    def abandon(self) -> None:
        """End an unfinished run: stop the parse workers (what they parsed is cached)."""
        self.ctx.service(Parses).flush()

    def finish(self) -> Closure:
        """The closure of everything drained (ends the run: the parse cache is written)."""
        self.ctx.service(Parses).flush()
        keep = {n for n in self.graph.closure() if n != ROOT and not n.startswith("pkg:") and self.fs.lexists(n)}
        return Closure(self.graph, keep, sorted(self.unknowns), self.missing, self.dropped,
                       self.ctx.service(Packages).present, self.ctx)

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
            # what needed the link needs its target for the same reason (and what needs it
            # later: add)
            self._leads[path] = res.path
            for into in self.graph.edges_into(path):
                if into.kind != "symlink":
                    self.add(Edge(into.src, res.path, into.kind, f"{into.evidence} (via {path})"))
        # the nearest existing ancestor; it is visited in turn, so every ancestor is kept
        # (one edge per path, not one per path and ancestor)
        d = posixpath.dirname(path)
        while d not in ("/", ""):
            if self.fs.lexists(d):
                self.add(Edge(path, d, "parent-dir", ""))
                break
            d = posixpath.dirname(d)
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
            self.add_all(self.rules.apply(path, self.fs, self.config))
        if not real.is_file:
            return
        if real.kind is EntryKind.HARDLINK and posixpath.dirname(real.linkname) == posixpath.dirname(path):
            # another name of a file in the same directory: the analyzers find for it what they
            # find for the file itself (kept through the edge above); each inode is analyzed
            # once per directory ($ORIGIN and relative names depend on the directory)
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
