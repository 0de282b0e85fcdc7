"""The whole data flow, short: open → read layers once → squash → analyze → AnalysisResult."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from slim.fs.layer import ContentStore, LayerReadResult
from slim.fs.rootfs import RootFS
from slim.fs.tree import SquashedTree
from slim.model import ROOT, Edge, EntryKind, FileEntry, Issue, Unknown
from slim.result import AnalysisResult, KeptFile, Totals, UnknownItem
from slim.sources import Image, open_image

if TYPE_CHECKING:
    from slim.closure import Closure, ClosureBuilder
    from slim.syscalls.extract import StaticSyscalls
from slim.sources.base import parse_ref

log = logging.getLogger(__name__)

Progress = Callable[[int], None]

# Directories every Linux program may expect (postgres locks in /tmp; runc mounts over /proc,
# /dev, /sys but a missing mount point must then be created): kept empty when the image has them.
SCAFFOLD_DIRS = ("/tmp", "/var/tmp", "/run", "/var/run", "/proc", "/dev", "/sys")


@dataclass
class LoadedImage:
    """An opened image with its squashed RootFS and what each layer contributed."""

    image: Image
    rootfs: RootFS
    layers: list[LayerReadResult]
    deleted: list[list[FileEntry]] = field(default_factory=list)  # per layer: lower entries removed
    lower_sizes: list[dict[str, int]] = field(default_factory=list)

    @property
    def issues(self) -> list[Issue]:
        return self.rootfs.issues

    def close(self) -> None:
        self.rootfs.close()
        self.image.close()

    def __enter__(self) -> LoadedImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load(reference: str, on_bytes: Progress | None = None, image: Image | None = None) -> LoadedImage:
    """Open `reference` and read every layer once into a squashed RootFS.

    Raises SourceError / LayerError; on error nothing is left behind.
    """
    image = image or open_image(parse_ref(reference) if isinstance(reference, str) else reference)
    store = ContentStore()
    squashed = SquashedTree()
    results: list[LayerReadResult] = []
    deleted: list[list[FileEntry]] = []
    issues: list[Issue] = []
    try:
        for result in image.read_layers(store, on_bytes):
            deleted.append(squashed.apply(result.tree))
            issues.extend(result.issues)
            results.append(result)
    except BaseException:
        store.close()
        image.close()
        raise
    rootfs = RootFS(squashed, store, issues)
    return LoadedImage(image=image, rootfs=rootfs, layers=results, deleted=deleted)


@dataclass
class AnalyzeOptions:
    """What `slim analyze` / `build` were asked to do."""

    rules_dirs: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)  # --keep GLOB
    drop: list[str] = field(default_factory=list)  # --drop GLOB
    keep_app: bool = True
    static: bool = True  # run the static closure (False: report only where the bytes are)
    trace: object | None = None  # a slim.tracers.trace.Trace to merge
    fixes: list[str] = field(default_factory=list)  # paths verification found missing
    static_roots: bool = True  # False ("traced" mode): no entrypoint analysis; the trace, app
    # files, rules and --keep are the roots


def reachability(loaded: LoadedImage, options: AnalyzeOptions) -> Closure:
    """The keep set: static closure from the entrypoint, rules, user globs and a trace."""
    # imported here: the graph library is only needed when a keep set is computed
    from slim.closure import ClosureBuilder, entry_roots, glob_paths, trace_edges
    from slim.rules import load_rules

    fs, config = loaded.rootfs, loaded.image.config
    ruleset = load_rules([Path(d) for d in options.rules_dirs])
    builder = ClosureBuilder(fs, config, rules=ruleset, options={"keep_app": options.keep_app})
    builder.set_drops(options.drop)
    if options.static_roots:
        builder.add_all(entry_roots(builder.ctx))
    builder.add_all(ruleset.always(fs, config))
    for d in SCAFFOLD_DIRS:  # the directories themselves, never their contents
        if fs.get(d) is not None and fs.is_dir(d):  # a dir, or a link to one (/var/run -> /run)
            builder.add(Edge(ROOT, d, "rule", "runtime scaffolding: programs expect it to exist"))
    for path in glob_paths(fs, options.keep):
        builder.add(Edge(ROOT, path, "rule", "--keep"))
    for path in options.fixes:
        builder.add(Edge(ROOT, path, "verify-fix", "the original used it; the minimal image lacked it"))
    if options.keep_app:  # the application's own files count in every mode: they are its data
        builder.add_all(_app_roots(builder))
    if options.trace is not None:
        builder.add_all(trace_edges(options.trace, fs))
    return builder.run()


def _app_roots(builder: ClosureBuilder) -> list[Edge | Unknown]:
    try:
        from slim.analyzers.app import app_roots
    except ImportError:
        return []
    # the entrypoint script's directory holds app files too (a program under /usr does not)
    script = None
    for node in builder.graph.g.successors(ROOT):
        entry = builder.fs.stat(node)
        if (entry is not None and entry.is_file and builder.fs.has_content(node)
                and builder.fs.read(node, 2) == b"#!"):
            script = node
            break
    return list(app_roots(builder.ctx, script))


def analyze(loaded: LoadedImage, options: AnalyzeOptions | None = None) -> tuple[AnalysisResult, Closure | None]:
    """Summarize the image and, unless options.static is off, compute what the app needs."""
    from slim.summary import summarize

    options = options or AnalyzeOptions()
    result = summarize(loaded)
    if not options.static:
        return result, None
    closure = reachability(loaded, options)
    fill_keep(result, loaded, closure)
    return result, closure


def keep_source(reasons: tuple[str, ...]) -> str:
    """traced (a traced run used it), static (an analyzer found it) or rule (only rules keep it)."""
    if any(r.startswith("traced") for r in reasons):
        return "traced"
    if any(r not in ("rule", "parent-dir", "symlink") for r in reasons):
        return "static"
    return "rule" if "rule" in reasons else "static"


def fill_keep(result: AnalysisResult, loaded: LoadedImage, closure: Closure) -> None:
    """keep[], reachable/removable, packages and unknowns of `result` from a closure."""
    fs = loaded.rootfs
    keep: list[KeptFile] = []
    reachable = closure.graph.closure()
    kept_bytes = kept_files = 0
    for path in sorted(closure.keep):
        entry = fs.get(path)
        if entry is None:
            continue
        size = entry.size if entry.kind is EntryKind.FILE else 0
        if entry.kind is not EntryKind.DIR:
            kept_files += 1
            kept_bytes += size
        reasons = closure.graph.reasons(path, reachable)
        keep.append(KeptFile(path, size, reasons, keep_source(reasons)))
    result.keep = keep
    result.reachable = Totals(kept_bytes, kept_files)
    result.removable = Totals(
        max(result.image.size_bytes - kept_bytes, 0), max(result.image.file_count - kept_files, 0)
    )
    unknowns = {(u.path, u.reason) for u in result.unknowns}
    unknowns |= {(u.path, u.reason) for u in closure.unknowns}
    result.unknowns = [UnknownItem(p, r) for p, r in sorted(unknowns)]
    if closure.packages is not None:
        from slim.analyzers.packages import package_summaries

        result.packages = package_summaries(closure.packages, fs, closure.keep)


def kept_elf_paths(fs: RootFS, keep: set[str]) -> list[str]:
    """Kept regular files that are ELF objects (their contents are always captured)."""
    out = []
    for path in sorted(keep):
        entry = fs.get(path)
        if entry is None or entry.kind is not EntryKind.FILE or entry.size < 64:
            continue
        if fs.has_content(path) and fs.read(path, 4) == b"\x7fELF":
            out.append(path)
    return out


def static_syscalls(loaded: LoadedImage, closure: Closure) -> StaticSyscalls:
    """The static (upper-bound) syscall set of the kept ELF files; libc maps are cached."""
    from slim.syscalls.extract import static_syscalls as extract

    return extract(loaded.rootfs, kept_elf_paths(loaded.rootfs, closure.keep))
