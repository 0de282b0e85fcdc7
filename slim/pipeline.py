"""The whole data flow, short: load → summarize → (trace) → reach → keep → syscalls → result.

Every command goes through here: `analyzed()` opens and reads an image once (capturing exactly
what the registered analyzers and rules read), runs it traced when asked, computes the keep set
and returns a frozen `Analysis`. `slim build` (slim.build) adds writing and verification on
top; the CLI only parses options and renders what comes back.

The keep set is reached static roots first: the entrypoint, rules, --keep and the app's files
are followed until nothing new is reachable, and only then the trace's files (the closure is
the same either way; this order makes the reasons the same whether the trace came first or
not). So once the image is ready in the runner (run_image's `on_ready`: from Docker's store,
after a `docker load`, or unpacked for the sandbox), the static part runs in a thread
(`StaticStart`, started by `Meanwhile`) while the image runs traced: such a run mostly waits on
the runtime and the app, and the analysis needs no trace to start. It never runs beside the
load or the unpack themselves (Python streams in this process, which it slowed down as much as
it saved), nor beside Docker's import of an unpacked copy.
"""

from __future__ import annotations

import dataclasses
import logging
import posixpath
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slim.fs.layer import Capture
from slim.fs.rootfs import RootFS
from slim.image import LoadedImage, load
from slim.model import ROOT, Edge, EntryKind, FileEntry, normpath
from slim.progress import SILENT, Phases
from slim.result import AnalysisResult, KeptFile, ProbeOutcome, Totals, UnknownItem

if TYPE_CHECKING:
    from slim.closure import Closure, ClosureBuilder
    from slim.graph import Step
    from slim.refs import ImageRef
    from slim.sources import Image
    from slim.syscalls.extract import StaticSyscalls
    from slim.tracers.base import RunOptions, RunResult
    from slim.tracers.trace import Trace

log = logging.getLogger(__name__)

Progress = Callable[[int], None]

# Directories every Linux program may expect (postgres locks in /tmp; runc mounts over /proc,
# /dev, /sys but a missing mount point must then be created): kept empty when the image has them.
SCAFFOLD_DIRS = ("/tmp", "/var/tmp", "/run", "/var/run", "/proc", "/dev", "/sys")


@dataclass(frozen=True)
class AnalyzeOptions:
    """What the keep set is computed from (`slim analyze`, `build`, `why`, `graph` …)."""

    rules_dirs: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()  # --keep GLOB
    drop: tuple[str, ...] = ()  # --drop GLOB
    keep_app: bool = True
    static: bool = True  # compute a keep set (False: report only where the bytes are)
    static_roots: bool = True  # entrypoint analysis (False is `--mode traced`: the trace, the
    # app's files, rules and --keep are the roots)
    syscalls: bool = False  # also the static syscall set of the kept ELF files
    fixes: tuple[str, ...] = ()  # paths verification found missing


@dataclass(frozen=True)
class Tracing:
    """How a command gets a trace: run the image (`run`), or reuse a saved one."""

    run: RunOptions | None = None
    trace_file: str = ""
    save_trace: str = ""


@dataclass(frozen=True)
class Analysis:
    """What one analysis found, with the loaded image it was computed on (open until the
    `analyzed()` block ends)."""

    loaded: LoadedImage
    result: AnalysisResult
    closure: Closure | None = None
    run: RunResult | None = None  # the traced run, when the image was run
    trace: Trace | None = None  # its trace (or the one read from --trace-file)


def capture_policy() -> Capture:
    """What the layer reader copies: exactly what the registered analyzers and rules read."""
    # imported here: the analyzers are not needed by a command that reads a cached result
    from slim.analyzers import analyzer_capture
    from slim.rules import CAPTURE as RULES_CAPTURE

    return analyzer_capture() | RULES_CAPTURE


def load_image(reference: str | ImageRef | Image, *, on_bytes: Progress | None = None,
               pull: bool = False, contents: bool = True) -> LoadedImage:
    """Open and read `reference` once for analysis; without `contents` only the layers'
    headers are read (enough for the image summary, or to run the image). Raises
    SourceError / LayerError."""
    if not contents:
        return load(reference, capture=Capture(), on_bytes=on_bytes, pull=pull)
    from slim.analyzers.base import Parses

    # a Python standard library (its os.py) read: start the parse workers while the rest is
    # read (not at any .py: Debian's base layer has libstdc++'s gdb helpers)
    return load(reference, capture=capture_policy(), on_bytes=on_bytes, pull=pull,
                when_stored=[("/os.py", Parses.prestart)])


@contextmanager
def analyzed(reference: str | ImageRef | Image, options: AnalyzeOptions = AnalyzeOptions(),
             tracing: Tracing | None = None, *, on_bytes: Progress | None = None,
             pull: bool = False, progress: Phases = SILENT) -> Iterator[Analysis]:
    """Load `reference`, get a trace when asked, analyze; the image stays open in the block.
    Each step is a phase of `progress` (reading layers, running traced, analyzing).

    Raises SlimError subclasses (SourceError, LayerError, TraceError, RuleError …).
    """
    progress.phase("reading layers", unit="bytes")

    def read(n: int) -> None:
        progress.advance(n)
        if on_bytes is not None:
            on_bytes(n)

    with load_image(reference, on_bytes=read, pull=pull, contents=options.static) as loaded:
        meanwhile = Meanwhile(loaded, options if options.static else None, progress, "running the image traced")
        if tracing is not None and tracing.run is not None:
            progress.phase("preparing the image for its traced run")
        elif tracing is not None and tracing.trace_file:
            progress.phase("reading the trace")
        with cancelled_on_error(meanwhile):
            trace, run = obtain_trace(loaded, tracing, on_ready=meanwhile)
        yield analyze(loaded, options, trace=trace, run=run, progress=progress, start=meanwhile.start)


class Meanwhile:
    """run_image's `on_ready`: once the image is ready and its run is mostly waiting on the
    runtime and the app, the static analysis starts beside it (StaticStart, with `options`;
    None: no static analysis). Each call names the run's phase."""

    def __init__(self, loaded: LoadedImage, options: AnalyzeOptions | None, progress: Phases,
                 phase: str) -> None:
        self.loaded = loaded
        self.options = options
        self.progress = progress
        self.phase = phase
        self.start: StaticStart | None = None

    def __call__(self, quiet: bool) -> None:
        if quiet and self.options is not None and self.start is None:
            self.start = StaticStart(self.loaded, self.options)
        self.progress.phase(self.phase + (" (the static analysis runs meanwhile)" if self.start else ""))

    def cancel(self) -> None:
        if self.start is not None:
            self.start.cancel()
            self.start = None


def obtain_trace(loaded: LoadedImage, tracing: Tracing | None,
                 on_ready: Callable[[bool], None] | None = None) -> tuple[Trace | None, RunResult | None]:
    """(trace, run): a new traced run, a saved trace, or neither (`on_ready`: run_image's).
    Raises TraceError."""
    if tracing is None:
        return None, None  # the tracers' modules (probes import http.client, ssl …) not loaded
    from slim.tracers.trace import Trace

    if tracing.trace_file:
        return Trace.load(tracing.trace_file), None
    if tracing.run is None:
        return None, None
    from slim.outputs import check_output, write_file
    from slim.tracers import run_image

    if tracing.save_trace:
        check_output(tracing.save_trace, what="trace")
    run = run_image(loaded, tracing.run, on_ready=on_ready)
    if tracing.save_trace:
        write_file(tracing.save_trace, run.trace.dumps(), what="trace")
    return run.trace, run


class StaticStart:
    """What `analyze` computes before it needs the trace — the image summary and the static
    closure, drained — in a thread, started while the image runs traced (module doc).

    `analyze(start=…)` takes it over; `cancel()` stops it (the run failed or was interrupted:
    the thread stops at its next visited path). The thread only reads the loaded image, which
    the traced run reads too (RootFS lookups and the content store's preads are safe to share).
    """

    def __init__(self, loaded: LoadedImage, options: AnalyzeOptions) -> None:
        self.loaded = loaded
        self.options = options
        self.summary: AnalysisResult | None = None
        self.builder: ClosureBuilder | None = None
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="slim-static", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        from slim.summary import summarize

        builder = None
        try:
            self.summary = summarize(self.loaded)
            builder = static_builder(self.loaded, self.options)
            builder.drain(stop=self._stop)
            self.builder = builder
        except BaseException as exc:  # re-raised by `taken`, in the thread that asks
            self._error = exc
            if builder is not None:
                builder.abandon()

    def taken(self) -> tuple[AnalysisResult, ClosureBuilder]:
        """Wait for the thread; (summary, drained builder). Raises what the thread raised."""
        try:
            self._thread.join()
        except BaseException:  # a signal while waiting: the thread stops too
            self.cancel()
            raise
        if self._error is not None:
            raise self._error
        assert self.summary is not None and self.builder is not None
        return self.summary, self.builder

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join()
        if self.builder is not None:
            self.builder.abandon()


@contextmanager
def cancelled_on_error(meanwhile: Meanwhile) -> Iterator[None]:
    """Cancel what `meanwhile` started when the block raises (a failed run, Ctrl-C)."""
    try:
        yield
    except BaseException:
        meanwhile.cancel()
        raise


def analyze(loaded: LoadedImage, options: AnalyzeOptions = AnalyzeOptions(), *,
            trace: Trace | None = None, run: RunResult | None = None,
            progress: Phases = SILENT, start: StaticStart | None = None) -> Analysis:
    """Summarize the image and, unless options.static is off, compute what the app needs
    (from `start`'s summary and drained closure when given: it was begun with `options`)."""
    from slim.summary import summarize

    builder = None
    if start is not None:
        progress.phase("analyzing", unit="files")  # what the thread has left, then the trace's
        result, builder = start.taken()
    else:
        progress.phase("summarizing")
        result = summarize(loaded)
    if trace is not None:
        result = dataclasses.replace(result, syscalls_traced=trace.syscall_names)
    if run is not None:
        result = dataclasses.replace(result, probes=probe_outcomes(run))
    if not options.static:
        return Analysis(loaded, result, None, run, trace)
    if start is None:
        progress.phase("analyzing", unit="files")
    closure = reachability(loaded, options, trace, on_visit=progress.advance, builder=builder)
    result = with_keep(result, loaded, closure)
    if trace is not None:
        from slim.excess import excess_report

        result = dataclasses.replace(result, excess=excess_report(closure.graph, closure.keep, loaded.rootfs))
    if options.syscalls:
        progress.phase("extracting syscalls")
        result = dataclasses.replace(result, syscalls_static=static_syscalls(loaded, closure).names)
    return Analysis(loaded, result, closure, run, trace)


def probe_outcomes(run: RunResult) -> list[ProbeOutcome]:
    """A run's probe outcomes, sorted; a run without probes is one outcome, "run"."""
    if run.probes:
        return sorted(run.probes, key=lambda p: p.spec)
    return [ProbeOutcome("run", run.passed, f"exit code {run.exit_code}")]


def reachability(loaded: LoadedImage, options: AnalyzeOptions, trace: Trace | None = None,
                 on_visit: Callable[[int], None] | None = None,
                 builder: ClosureBuilder | None = None) -> Closure:
    """The keep set: static closure from the entrypoint, the app's files, rules, user globs and
    then a trace (module doc). `on_visit(1)` is called for every path the worklist visits;
    `builder` is static_builder's, drained already (StaticStart)."""
    from slim.closure import trace_edges

    if builder is None:
        builder = static_builder(loaded, options)
        builder.drain(on_visit)
    if trace is not None:
        builder.add_all(trace_edges(trace, loaded.rootfs))
    return builder.run(on_visit)


def static_builder(loaded: LoadedImage, options: AnalyzeOptions) -> ClosureBuilder:
    """A worklist holding every root but a trace's: the entrypoint's (unless options say
    not), the rules', runtime scaffolding, --keep, verification fixes and the app's files."""
    # imported here: the graph library is only needed when a keep set is computed
    from slim.analyzers.base import AnalysisOptions
    from slim.closure import ClosureBuilder
    from slim.rules import keep_glob_edges, load_rules

    fs, config = loaded.rootfs, loaded.image.config
    ruleset = load_rules([Path(d) for d in options.rules_dirs])
    builder = ClosureBuilder(fs, config, rules=ruleset, options=AnalysisOptions(keep_app=options.keep_app),
                             drop=options.drop)
    if options.static_roots:
        builder.add_all(builder.entry_roots())
    builder.add_all(ruleset.always(fs, config))
    for d in SCAFFOLD_DIRS:  # the directories themselves, never their contents
        if fs.get(d) is not None and fs.is_dir(d):  # a dir, or a link to one (/var/run -> /run)
            builder.add(Edge(ROOT, d, "rule", "runtime scaffolding: programs expect it to exist"))
    builder.add_all(keep_glob_edges(fs, options.keep))
    for path in options.fixes:
        builder.add(Edge(ROOT, path, "verify-fix", "the original used it; the minimal image lacked it"))
    builder.add_all(builder.always_roots())
    return builder


def keep_source(reasons: tuple[str, ...]) -> str:
    """traced (a traced run used it), static (an analyzer found it) or rule (only rules keep it)."""
    if any(r.startswith("traced") for r in reasons):
        return "traced"
    if any(r not in ("rule", "parent-dir", "symlink") for r in reasons):
        return "static"
    return "rule" if "rule" in reasons else "static"


def with_keep(result: AnalysisResult, loaded: LoadedImage, closure: Closure) -> AnalysisResult:
    """`result` with keep[], reachable/removable, packages and unknowns from a closure."""
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
    unknowns = {(u.path, u.reason) for u in result.unknowns}
    unknowns |= {(u.path, u.reason) for u in closure.unknowns}
    packages = result.packages
    if closure.packages is not None:
        from slim.analyzers.packages import package_summaries

        packages = package_summaries(closure.packages, fs, closure.keep)
    return dataclasses.replace(
        result, keep=keep, reachable=Totals(kept_bytes, kept_files),
        removable=Totals(max(result.image.size_bytes - kept_bytes, 0),
                         max(result.image.file_count - kept_files, 0)),
        unknowns=[UnknownItem(p, r) for p, r in sorted(unknowns)], packages=packages)


def kept_elf_paths(loaded: LoadedImage, keep: set[str]) -> list[str]:
    """Kept regular files that are ELF objects (their contents are always captured)."""
    from slim.elf import is_elf

    fs = loaded.rootfs
    out = []
    for path in sorted(keep):
        entry = fs.get(path)
        if entry is not None and entry.kind is EntryKind.FILE and entry.size >= 64 and is_elf(fs, path):
            out.append(path)
    return out


def static_syscalls(loaded: LoadedImage, closure: Closure) -> StaticSyscalls:
    """The static (upper-bound) syscall set of the kept ELF files; libc maps are cached."""
    from slim.syscalls.extract import static_syscalls as extract

    return extract(loaded.rootfs, kept_elf_paths(loaded, closure.keep))


@dataclass(frozen=True)
class WhyStep:
    """One link of a `slim why` chain, with the directories the loader tried for a library."""

    step: Step
    tried: tuple[str, ...] = ()
    needed: str = ""  # the DT_NEEDED name, for `needed` steps


@dataclass(frozen=True)
class WhyAnswer:
    path: str  # the path asked about, normalized
    steps: tuple[WhyStep, ...] = ()  # empty: not kept
    in_image: bool = True
    # not kept: (the file that would have kept it, why the analysis did not follow that edge)
    declined: tuple[tuple[str, str], ...] = ()


def why(analysis: Analysis, path: str) -> WhyAnswer:
    """The shortest chain of reasons from the container start to `path`.

    The path may be spelled through directory symlinks (/lib/… for /usr/lib/…) or be a link
    itself: the chain leads to the node the keep set holds.
    """
    closure = analysis.closure
    fs = analysis.loaded.rootfs
    if closure is None:
        return WhyAnswer(normpath(path), (), fs.lexists(normpath(path)))
    from slim.analyzers.base import Declined

    declined = closure.context.service(Declined).of if closure.context is not None else _nothing_declined
    return _why(fs, closure.graph.why, declined, closure.loader_tried, path)


def _nothing_declined(_path: str) -> list[tuple[str, str]]:
    return []


def _why(fs: RootFS, chain_of: Callable[[str], list[Step] | None],
         declined_of: Callable[[str], list[tuple[str, str]]],
         tried_of: Callable[[str, str], tuple[str, ...]], path: str) -> WhyAnswer:
    """`why` over its parts: the image's paths (`fs`), the chain of a graph node, the declined
    edges into a path, the directories the loader tried for a library (an analysis's, or a
    why_index's)."""
    target = normpath(path)
    parent = fs.resolve(posixpath.dirname(target))
    canonical = posixpath.join(parent.path, posixpath.basename(target)) if parent.exists else target
    steps = chain_of(target) or chain_of(canonical)
    final = fs.resolve(target)
    if steps is None and final.exists and final.path != target:
        steps = chain_of(final.path)
    if steps is None:
        declined: list[tuple[str, str]] = []
        for p in dict.fromkeys((target, canonical, final.path)):
            declined += [r for r in declined_of(p) if r not in declined]
        return WhyAnswer(target, (), fs.lexists(canonical) or final.exists, tuple(declined))
    out = []
    for step in steps:
        m = _LOADED.match(step.evidence)
        if step.kind == "needed" and m:
            out.append(WhyStep(step, tried_of(step.src, m.group(1)), m.group(1)))
        else:
            out.append(WhyStep(step))
    return WhyAnswer(target, tuple(out), True)


_LOADED = re.compile(r"(?:DT_NEEDED|LD_PRELOAD|/etc/ld.so.preload) (\S+)")  # a library the loader found
WHY_INDEX_FORMAT = 2
MAX_WHY_PATHS = 500_000  # an image with more paths gets no why index (~40 MB of JSON): analyzed each time


def why_index(analysis: Analysis) -> dict[str, Any]:
    """Everything `why` reads of an analysis, as plain data for slim why's cache: each node of
    the graph's why_tree → [its predecessor on the chain, kind, evidence]; the directories the
    loader tried for each library step (`slim why -v`); the declined edges into each path; and
    the image's paths (directories, symlinks with their targets, everything else), which
    resolve another spelling of a path and tell whether a path not kept is in the image.
    {} for an image of more than MAX_WHY_PATHS paths (nothing is cached)."""
    from slim.analyzers.base import Declined
    from slim.graph import best_reason

    if len(analysis.loaded.rootfs.tree.entries) > MAX_WHY_PATHS:
        return {}
    closure = analysis.closure
    steps: dict[str, list[str]] = {}
    tried: dict[str, list[str]] = {}
    declined: dict[str, list[tuple[str, str]]] = {}
    if closure is not None:  # else (--no-static) no chains, as graph.why gives none
        graph = closure.graph
        for node, parent in graph.why_tree().items():
            if not parent:
                continue
            kind, evidence = best_reason(graph, parent, node)
            steps[node] = [parent, kind, evidence]
            m = _LOADED.match(evidence)
            if kind == "needed" and m:
                tried[f"{parent}\0{m.group(1)}"] = list(closure.loader_tried(parent, m.group(1)))
        if closure.context is not None:
            declined = closure.context.service(Declined).reasons
    dirs: list[str] = []
    links: dict[str, str] = {}
    others: list[str] = []
    for entry in analysis.loaded.rootfs.walk():
        if entry.kind is EntryKind.DIR:
            dirs.append(entry.path)
        elif entry.kind is EntryKind.SYMLINK:
            links[entry.path] = entry.linkname
        else:
            others.append(entry.path)
    return {"format": WHY_INDEX_FORMAT, "steps": steps, "tried": tried,
            "declined": {p: [list(r) for r in rs] for p, rs in declined.items() if rs},
            "dirs": dirs, "links": links, "others": others}


class _NotAnIndex(ValueError):
    """A why index slim did not write (another format or shape: graph.plain_strings raises
    ValueError too)."""


def why_from_index(index: Any, path: str) -> WhyAnswer | None:
    """`why`'s answer for `path` from a why_index (what the analysis it was made from answers);
    None for an index of another format or shape (analyze again)."""
    from slim.fs.tree import SquashedTree
    from slim.graph import plain_strings

    steps = _index_steps(index)
    if steps is None:
        return None
    tried, declined, links = (index.get(k) for k in ("tried", "declined", "links"))
    if not (isinstance(tried, dict) and isinstance(declined, dict) and isinstance(links, dict)):
        return None
    try:
        tree = SquashedTree()
        for p in plain_strings(index.get("dirs")):
            tree.entries[p] = FileEntry(path=p, kind=EntryKind.DIR)
        for p in plain_strings(index.get("others")):
            tree.entries[p] = FileEntry(path=p, kind=EntryKind.FILE)
        for p, target in links.items():
            if not isinstance(target, str):
                raise _NotAnIndex
            tree.entries[p] = FileEntry(path=p, kind=EntryKind.SYMLINK, linkname=target)

        chain_of = _chains(steps)

        def declined_of(p: str) -> list[tuple[str, str]]:
            return [(r[0], r[1]) for r in (plain_strings(x, 2) for x in declined.get(p, []))]

        def tried_of(src: str, name: str) -> tuple[str, ...]:
            return tuple(plain_strings(tried.get(f"{src}\0{name}", [])))

        return _why(RootFS(tree), chain_of, declined_of, tried_of, path)
    except ValueError:  # _NotAnIndex, plain_strings
        return None


def _index_steps(index: Any) -> dict[str, Any] | None:
    """The `steps` of a why_index this code wrote (None: another format or shape)."""
    if not isinstance(index, dict) or index.get("format") != WHY_INDEX_FORMAT:
        return None
    steps = index.get("steps")
    return steps if isinstance(steps, dict) else None


def _chains(steps: dict[str, Any]) -> Callable[[str], list[Step] | None]:
    """graph.why over the `steps` of a why_index; raises ValueError on a malformed chain."""
    from slim.graph import Step, plain_strings

    def chain_of(node: str) -> list[Step] | None:
        if node not in steps:
            return None
        chain: list[Step] = []
        while node != ROOT:
            if len(chain) > len(steps):
                raise _NotAnIndex  # a cycle
            parent, kind, evidence = plain_strings(steps.get(node), 3)
            chain.append(Step(parent, node, kind, evidence))
            node = parent
        return chain[::-1]

    return chain_of


def why_chains(index: Any) -> Callable[[str], list[Step] | None] | None:
    """graph.why of the analysis a why_index was made from, for the HTML report's chains; None
    for an index of another format or shape."""
    steps = _index_steps(index)
    if steps is None:
        return None
    chain_of = _chains(steps)

    def why(node: str) -> list[Step] | None:
        try:
            return chain_of(node)
        except ValueError:  # not a chain this code wrote: the report goes without it
            return None

    return why


__all__ = ["SCAFFOLD_DIRS", "Analysis", "AnalyzeOptions", "Tracing", "WhyAnswer", "WhyStep",
           "analyze", "analyzed", "capture_policy", "keep_source", "load_image", "obtain_trace",
           "probe_outcomes", "reachability", "static_syscalls", "why", "why_chains", "why_from_index", "why_index",
           "with_keep"]

