"""The ELF analyzer: PT_INTERP and the DT_NEEDED closure of an executable, computed by emulating
the process its dynamic loader builds (glibc elf/dl-deps.c `_dl_map_object_deps`, musl
ldso/dynlink.c `load_deps`): objects load breadth-first, a name already loaded is reused, and
every DT_NEEDED is resolved with the requester's loader chain (slim.analyzers.ldso.resolver).
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field

from slim.analyzers.base import AnalysisContext, Analyzer
from slim.analyzers.ldso.cache import LD_SO_CACHE
from slim.analyzers.ldso.resolver import LibraryResolver
from slim.elf import ELF_MAGIC, ElfInfo
from slim.errors import AnalysisError
from slim.fs.layer import Capture
from slim.model import Edge, EntryKind, FileEntry, Unknown, normpath

log = logging.getLogger(__name__)

# Caps against hostile images.
MAX_CLOSURE = 4096
UNKNOWN_TRIED_SHOWN = 12


@dataclass(frozen=True)
class LoadedObject:
    """One object of an emulated process: how it was found and who loaded it."""

    info: ElfInfo
    loader: int  # index of the loading object, -1 for the executable


@dataclass
class _Process:
    """The emulated process of one executable: loaded objects and how to find them by name."""

    objects: list[LoadedObject]
    by_name: dict[str, int] = field(default_factory=dict)
    by_real: dict[str, int] = field(default_factory=dict)


def _names(obj: ElfInfo, as_name: str) -> set[str]:
    names = {as_name, obj.path}
    if obj.soname:
        names.add(obj.soname)
    return names


class Loader:
    """The emulated dynamic loader of one analysis run, shared by everything that asks where a
    library is (the analyzer, `slim why -v`): the resolver with its ELF memo, every directory
    list it tried per (requester, DT_NEEDED), and the objects already placed in some process."""

    def __init__(self, ctx: AnalysisContext) -> None:
        self.resolver = LibraryResolver(ctx.fs, ctx.config)
        self.tried: dict[tuple[str, str], tuple[str, ...]] = {}
        # Objects already analyzed as part of some executable's closure: their needs were
        # resolved with the right RPATH chain; analyzing them alone would lose that chain.
        self.covered: set[str] = set()
        self.cache_error_reported = False


class ElfAnalyzer(Analyzer):
    """PT_INTERP and the DT_NEEDED closure of an ELF object, found as its loader would."""

    name = "elf"
    capture = Capture(magics=(ELF_MAGIC,))

    def __init__(self, ctx: AnalysisContext) -> None:
        super().__init__(ctx)
        loader = ctx.service(Loader)
        self.loader = loader
        self.resolver = loader.resolver
        self.tried = loader.tried
        self.covered = loader.covered

    def wants(self, entry: FileEntry) -> bool:
        if entry.kind not in (EntryKind.FILE, EntryKind.HARDLINK):
            return False
        try:
            return self.ctx.fs.read(entry.path, 4) == ELF_MAGIC
        except AnalysisError:
            return False

    def analyze(self, entry: FileEntry) -> Iterator[Edge | Unknown]:
        path = entry.path
        if path in self.covered:
            return
        try:
            root = self.resolver.elf(path)
        except AnalysisError as exc:
            yield Unknown(path, str(exc))
            return
        if root.etype not in ("EXEC", "DYN"):
            return
        if root.interp is not None:
            interp = normpath(root.interp)
            if self.ctx.fs.exists(interp):
                yield Edge(path, interp, "interpreter", "PT_INTERP")
            else:
                yield Unknown(path, f"PT_INTERP {root.interp}: not in the image")
        if root.is_static or root.is_static_pie or not root.needed:
            return
        yield from self._closure(root)
        if self.resolver.cache_error and not self.loader.cache_error_reported:
            self.loader.cache_error_reported = True
            yield Unknown(LD_SO_CACHE, f"{self.resolver.cache_error}; ld.so.conf used instead")

    def _preloads(self, root: ElfInfo) -> list[tuple[str, str]]:
        """(source, name) of objects preloaded into every process of this executable: the image
        Env's LD_PRELOAD (glibc elf/rtld.c and musl: separated by whitespace or ':'), then,
        for glibc only, /etc/ld.so.preload ('#' comments, whitespace or ':' separated)."""
        out: list[tuple[str, str]] = []
        env = self.ctx.config.env_dict.get("LD_PRELOAD", "")
        out += [("LD_PRELOAD", n) for n in re.split(r"[\s:]+", env) if n]
        if root.libc != "musl" and self.ctx.fs.is_file("/etc/ld.so.preload"):
            try:
                text = self.ctx.fs.read_text("/etc/ld.so.preload")
            except AnalysisError as exc:
                log.debug("%s", exc)
                text = ""
            for line in text.splitlines():
                line = line.split("#", 1)[0]
                out += [("/etc/ld.so.preload", n) for n in re.split(r"[\s:]+", line) if n]
        return out

    def _closure(self, root: ElfInfo) -> Iterator[Edge | Unknown]:
        """Breadth-first like glibc elf/dl-deps.c `_dl_map_object_deps` (musl's load_deps is
        breadth-first too): the executable, then its preloads, then their DT_NEEDED level by
        level. A name matching an already loaded object (its soname, the name it was loaded as,
        or its path) reuses it; so does a second path to the same real file (dev/ino check)."""
        fs = self.ctx.fs
        proc = _Process([LoadedObject(root, -1)])
        proc.by_name = {n: 0 for n in _names(root, root.path)}
        proc.by_real = {fs.realpath(root.path): 0}
        if root.interp is not None and fs.exists(root.interp):
            # rtld is loaded before any dependency: libc's DT_NEEDED ld-linux-x86-64.so.2 is it.
            interp = normpath(root.interp)
            try:
                iinfo: ElfInfo | None = self.resolver.elf(interp)
            except AnalysisError:
                iinfo = None
            if iinfo is not None:
                proc.objects.append(LoadedObject(iinfo, 0))
                for n in _names(iinfo, interp):
                    proc.by_name.setdefault(n, 1)
                proc.by_real.setdefault(fs.realpath(interp), 1)
        queue: deque[int] = deque([0])
        if root.interp is not None:
            for source, name in self._preloads(root):
                new = yield from self._load(proc, 0, name, source)
                if new is not None:
                    queue.append(new)
        while queue:
            idx = queue.popleft()
            for name in proc.objects[idx].info.needed:
                if len(proc.objects) >= MAX_CLOSURE:
                    yield Unknown(
                        root.path, f"library closure larger than {MAX_CLOSURE} objects; truncated"
                    )
                    return
                new = yield from self._load(proc, idx, name, "DT_NEEDED")
                if new is not None:
                    queue.append(new)

    def _load(
        self, proc: _Process, idx: int, name: str, label: str
    ) -> Generator[Edge | Unknown, None, int | None]:
        """Map `name` for object `idx` (glibc `_dl_map_object`); returns the index of a newly
        loaded object (to be scanned), None when it was already loaded or not found."""
        fs = self.ctx.fs
        obj = proc.objects[idx]
        src = obj.info.path
        if name in proc.by_name:
            dst = proc.objects[proc.by_name[name]].info.path
            yield Edge(src, dst, "needed", f"{label} {name} via already loaded")
            return None
        chain: list[ElfInfo] = []
        up = obj.loader
        while up >= 0:
            chain.append(proc.objects[up].info)
            up = proc.objects[up].loader
        res = self.resolver.resolve(name, obj.info, chain)
        self.tried[(src, name)] = res.tried
        if res.path is None:
            shown = ", ".join(res.tried[:UNKNOWN_TRIED_SHOWN])
            extra = len(res.tried) - UNKNOWN_TRIED_SHOWN
            more = f", … {extra} more" if extra > 0 else ""
            yield Unknown(src, f"{label} {name}: not found (tried {shown or 'nothing'}{more})")
            return None
        yield Edge(src, res.path, "needed", f"{label} {name} via {res.via}")
        for link in res.links:
            yield Edge(src, link, "symlink", f"{label} {name}: on the search path")
        for alt in res.alternatives:
            yield Edge(src, alt, "needed", f"{label} {name} via {res.via} (hwcaps alternative)")
        real = fs.realpath(res.path)
        if real in proc.by_real:
            proc.by_name[name] = proc.by_real[real]
            return None
        try:
            info = self.resolver.elf(res.path)
        except AnalysisError as exc:  # accepted by _check, so this is rare
            yield Unknown(res.path, str(exc))
            return None
        proc.objects.append(LoadedObject(info, idx))
        new = len(proc.objects) - 1
        for n in _names(info, name):
            proc.by_name.setdefault(n, new)
        proc.by_real[real] = new
        self.covered.add(res.path)
        self.covered.add(real)
        return new
