"""The Analyzer interface: one file in, edges (reasons to keep other files) and unknowns out.

An analyzer is the one plugin seam of the keep set. It declares

* `capture`: the files whose contents it reads (path globs in slim's glob dialect, and magic
  prefixes such as the ELF header). The layer reader copies exactly the union of what the
  registered analyzers (and the rules) declare; nothing else knows what analysis needs;
* `wants(entry)`: whether a kept regular file is its business;
* `analyze(entry)`: edges from that file (or from "<root>") to what it needs, and Unknowns for
  what it could not decide (the file stays kept);
* optionally `entry_roots(argv)`: roots for a command line the container runs (`python3 -m
  app`, `java -jar x.jar`), and `always_roots()`: roots every build mode keeps (the
  application's own files).

The worklist offers every newly kept file to every analyzer whose `wants` accepts it.
Analyzers read the image only through the RootFS of their context. State shared between
analyzers and their root functions lives in typed services (`AnalysisContext.service`), each a
class built once per analysis run — never in a dictionary of string keys.
"""

from __future__ import annotations

import bisect
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence, Set
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, cast

from slim.fs.layer import Capture
from slim.fs.rootfs import RootFS
from slim.model import Edge, EntryKind, FileEntry, ImageConfig, Unknown
from slim.programs import which

S = TypeVar("S")
T = TypeVar("T")


@dataclass(frozen=True)
class AnalysisOptions:
    """Switches analyzers read."""

    keep_app: bool = True  # keep the application's own unpackaged files (--keep-app)


@dataclass
class AnalysisContext:
    """What analyzers may look at: the image filesystem, its config, options and services."""

    fs: RootFS
    config: ImageConfig
    options: AnalysisOptions = field(default_factory=AnalysisOptions)
    _services: dict[object, Any] = field(default_factory=dict, repr=False)
    _files: list[FileEntry] | None = field(default=None, repr=False)
    _file_paths: list[str] = field(default_factory=list, repr=False)

    def service(self, cls: Callable[[AnalysisContext], S]) -> S:
        """The one instance of service class `cls` for this run (built on first use)."""
        try:
            return cast(S, self._services[cls])  # ~20,000 calls a run: one lookup
        except KeyError:
            instance = self._services[cls] = cls(self)
            return instance

    def which(self, name: str, cwd: str | None = None) -> str | None:
        """The program execvp would run for `name` with the image's PATH (slim.programs)."""
        return which(self.fs, name, self.config.path_dirs, cwd or self.config.workdir or "/")

    def provide(self, cls: Callable[[AnalysisContext], S], instance: S) -> None:
        """Use `instance` as the service `cls` for this run (tests, tools that already hold one)."""
        self._services[cls] = instance

    def files_under(self, directory: str) -> Iterable[FileEntry]:
        """Every non-directory entry strictly below `directory` (links not followed), sorted.
        The paths below a directory are one run of the sorted list: found by bisection."""
        if self._files is None:
            self._files = [e for e in self.fs.walk() if e.kind is not EntryKind.DIR]
            self._file_paths = [e.path for e in self._files]
        prefix = directory.rstrip("/") + "/"
        files = self._files
        for i in range(bisect.bisect_left(self._file_paths, prefix), len(files)):
            e = files[i]
            if not e.path.startswith(prefix):
                return
            yield e


class Declined:
    """Edges an analyzer found and chose not to follow, with the reason (a context service):
    `slim why` answers a path that is not kept with them. At most MAX_DECLINED reasons a path."""

    MAX_DECLINED = 8

    def __init__(self, ctx: AnalysisContext) -> None:
        self.reasons: dict[str, list[tuple[str, str]]] = {}

    def add(self, src: str, dst: str, why: str) -> None:
        """Record that `src` would have kept `dst` (the first reason per file is kept)."""
        got = self.reasons.setdefault(dst, [])
        if len(got) < self.MAX_DECLINED and all(s != src for s, _ in got):
            got.append((src, why))

    def of(self, path: str) -> list[tuple[str, str]]:
        """(the file that would have kept `path`, why it did not)."""
        return list(self.reasons.get(path, ()))


class Parses:
    """The parse cache of a run (slim.cache.ParseStore) as a context service: `memo` returns
    what `compute()` returns for these bytes, from the cache when the same bytes were parsed
    before (by this run or an earlier one). The closure flushes it when the run ends.

    `ahead` starts a parse in a worker process before the worklist reaches the file (the
    Python analyzer asks for every source an analyzed file keeps): parsing is pure CPU work on bytes,
    and the worklist's own work — path resolution, reading the image — runs meanwhile on the
    other core. Workers: one fewer than the machine's cores (none on one core), at most
    MAX_WORKERS, `SLIM_PARSE_WORKERS=N` to choose (0: parse in the process). A worker that
    fails (killed, broken pool) turns parsing ahead off; the file is parsed in the process.
    When the worklist needs a parse a worker is still on, the process takes parses still
    queued back from the workers (the last queued first) and does them while it waits; one
    still queued is done in the process, and the rest of its batch is queued again."""

    MAX_WORKERS = 4
    MAX_AHEAD_BYTES = 1 << 20  # larger sources are parsed when reached (and may be refused)
    BATCH = 16  # parses per worker task: few tasks, and little to requeue when one is cancelled

    def __init__(self, ctx: AnalysisContext) -> None:
        from slim.cache import ParseStore

        self.store = ParseStore()
        # (kind, digest) → (Future, fn, args): the call, to do it here when taken back
        self._ahead: dict[tuple[str, str], tuple[Any, Callable[..., Any], tuple[Any, ...]]] = {}
        self._done: set[tuple[str, str]] = set()  # parsed (or read from the cache) in this run
        self._found: dict[tuple[str, str], Any] = {}  # cache entries `ahead` read, for `memo`
        self.from_workers = 0  # results a worker computed
        self._pool: Any = None
        self._workers = _parse_workers()
        self._taken: dict[tuple[str, str], Any] = {}  # parses taken back from the queue, done here
        # (kind, size) → (bytes, digest) of the last `ahead`: memo compares bytes (memcmp)
        # instead of hashing them again, and a different source of that size is hashed
        self._digests: dict[tuple[str, int], tuple[bytes, str]] = {}

    def ahead(self, kind: str, data: bytes, fn: Callable[..., Any], *args: Any) -> None:
        """Start `fn(*args)` (a module-level function, the parse of `data`) in a worker, unless
        the cache already has it or it is on its way."""
        self.ahead_many([(kind, data, fn, args)])

    def ahead_many(self, calls: Iterable[tuple[str, bytes, Callable[..., Any], tuple[Any, ...]]]) -> None:
        """`ahead` for several parses, handed to the workers as one task: each task costs the
        pool's manager and feeder threads Python work in this process (0.18 s of CPU for
        Django's 1,100 parses sent one by one), time the worklist waits for the GIL."""
        if not self._workers:
            return
        import hashlib

        batch: list[tuple[tuple[str, str], Callable[..., Any], tuple[Any, ...]]] = []
        for kind, data, fn, args in calls:
            if len(data) > self.MAX_AHEAD_BYTES:
                continue
            key = (kind, hashlib.sha256(data).hexdigest())
            self._digests[kind, len(data)] = (data, key[1])  # memo of the same bytes skips the hash
            if key in self._ahead or key in self._done or key in self._found or key in self._taken \
                    or any(key == k for k, _f, _a in batch):
                continue
            cached = self.store.get(*key)
            if cached is not None:
                self._found[key] = cached  # memo reads it from here, not from the database again
                continue
            batch.append((key, fn, args))
        for i in range(0, len(batch), self.BATCH):
            self._submit(batch[i:i + self.BATCH])

    def _submit(self, batch: list[tuple[tuple[str, str], Callable[..., Any], tuple[Any, ...]]]) -> None:
        if not batch:
            return
        pool = self._start()
        if pool is None:
            return
        try:
            future = pool.submit(_run_batch, [(fn, args) for _key, fn, args in batch])
        except RuntimeError as exc:  # a broken or shut-down pool
            self._stop(exc)
            return
        for i, (key, fn, args) in enumerate(batch):
            self._ahead[key] = (_Slot(future, i), fn, args)

    def _requeue(self, slot: _Slot) -> None:
        """After `slot` was cancelled (its batch still queued): the batch's other parses go back
        to the workers as a batch of their own, at the end of the queue."""
        rest = [(key, fn, args) for key, (other, fn, args) in self._ahead.items()
                if other.future is slot.future]
        for key, _fn, _args in rest:
            del self._ahead[key]
        self._submit(rest)

    def _start(self) -> Any:
        if self._pool is None and self._workers:
            if _PRESTARTED:  # started while the layers were read (prestart)
                self._pool = _PRESTARTED.pop()
                return self._pool
            try:
                self._pool = worker_pool(self._workers)
            except (OSError, ValueError) as exc:
                self._stop(exc)
        return self._pool

    @staticmethod
    def prestart() -> None:
        """Start the parse workers now, for the next run's Parses to take: the layer reader
        calls this when it stores a Python standard library's os.py, so the workers have
        started (a spawned interpreter importing slim: 0.2-0.3 s) by the time the worklist
        hands them parses. Without it the worklist parsed alone until they were up."""
        workers = _parse_workers()
        if _PRESTARTED or not workers:
            return
        try:
            pool = worker_pool(workers)
            for _ in range(workers):
                pool.submit(_parse_workers)  # each worker starts and imports the analyzers
        except (OSError, ValueError, RuntimeError) as exc:
            logging.getLogger(__name__).debug("parse workers not started early: %s", exc)
            return
        _PRESTARTED.append(pool)

    def _stop(self, exc: BaseException | None = None) -> None:
        if exc is not None:
            logging.getLogger(__name__).debug("parsing ahead off: %s", exc)
        self._workers = 0
        self._ahead.clear()
        if self._pool is not None:
            # wait for the pool's manager thread: one still closing its wakeup pipe when the
            # process exits races concurrent.futures' exit hook, which then writes to the
            # closed pipe (CPython 3.11: EBADF, a traceback after the report). The exit hook
            # joins that thread anyway, so waiting here costs nothing more.
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def memo(self, kind: str, data: bytes, compute: Callable[[], T],
             encode: Callable[[T], Any], decode: Callable[[Any], T]) -> T:
        import hashlib

        known = self._digests.pop((kind, len(data)), None)
        digest = known[1] if known is not None and known[0] == data else hashlib.sha256(data).hexdigest()
        self._done.add((kind, digest))
        cached = self._found.pop((kind, digest), None)
        if cached is None:
            cached = self.store.get(kind, digest)
        if cached is not None:
            try:
                return decode(cached)
            except (TypeError, ValueError, KeyError):
                pass  # an entry of another shape: parse again and replace it
        value = self._from_ahead(kind, digest, decode)
        if value is None:
            value = compute()
        self.store.put(kind, digest, encode(value))
        return value

    def _from_ahead(self, kind: str, digest: str, decode: Callable[[Any], T]) -> T | None:
        key = (kind, digest)
        if key in self._taken:  # taken back from the queue: no longer in _ahead
            return decode(self._taken.pop(key))
        ahead = self._ahead.pop(key, None)
        if ahead is None:
            return None
        future = ahead[0]
        if future.cancel():
            self._requeue(future)
            return None  # still queued: parsing it here beats waiting behind the queue
        while not future.done() and self._take_back():
            pass  # the worker is on it: meanwhile do a parse still queued behind it
        try:
            value = decode(future.result())
            self.from_workers += 1
            return value
        except _ParseFailed as exc:  # this parse raised in the worker: parse it here
            logging.getLogger(__name__).debug("a parse failed in a worker: %s", exc)
            return None
        except Exception as exc:  # a dead worker: parse here instead
            self._stop(exc)
            return None

    def _take_back(self) -> bool:
        """Take the parse queued last back from the workers and do it here (its result waits
        in `_taken` for `memo`); False when none is still queued."""
        for key in reversed(self._ahead):
            future, fn, args = self._ahead[key]
            if future.cancel():
                del self._ahead[key]
                self._requeue(future)
                try:
                    self._taken[key] = fn(*args)
                except Exception:  # as in a worker: memo parses it again when it is reached
                    logging.getLogger(__name__).debug("a parse taken back failed", exc_info=True)
                return True
        return False

    def flush(self) -> None:
        """End of the run: write the cache, stop the workers."""
        self.store.flush()
        self._stop()


_PRESTARTED: list[Any] = []  # a pool Parses.prestart started, until a run's Parses takes it


class _ParseFailed(Exception):
    """One parse of a batch raised in the worker (the others stand)."""


def _run_batch(calls: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> list[tuple[bool, Any]]:
    """In a worker: every call of a batch, (True, result) or (False, what it raised)."""
    out: list[tuple[bool, Any]] = []
    for fn, args in calls:
        try:
            out.append((True, fn(*args)))
        except Exception as exc:  # as a lone task would: the caller parses it itself
            out.append((False, f"{type(exc).__name__}: {exc}"))
    return out


class _Slot:
    """One parse of a batch task, as the Future of a task of its own would answer for it.
    Cancelling a slot cancels the whole batch while it is still queued; Parses then hands the
    batch's other parses to the workers again (`_requeue`)."""

    __slots__ = ("future", "index")

    def __init__(self, future: Any, index: int) -> None:
        self.future = future
        self.index = index

    def cancel(self) -> bool:
        return bool(self.future.cancel())

    def done(self) -> bool:
        return bool(self.future.done())

    def running(self) -> bool:
        return bool(self.future.running())

    def result(self, timeout: float | None = None) -> Any:
        ok, value = self.future.result(timeout)[self.index]
        if not ok:
            raise _ParseFailed(value)
        return value


def worker_pool(workers: int, memory_cap: int | None = None, preload: tuple[str, ...] = ()) -> Any:
    """A process pool for pure CPU work on bytes (parses, disassembly): spawned interpreters
    that leave Ctrl-C to their parent and end with it (_quiet_worker). With `memory_cap`, each
    worker imports the `preload` modules and may then map at most `memory_cap` more bytes
    (RLIMIT_AS): past it an allocation fails with MemoryError in that worker, where the
    machine's memory running out would have the kernel kill a process, maybe another one."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_quiet_worker, initargs=(memory_cap, preload))


def _parse_workers() -> int:
    import os

    explicit = os.environ.get("SLIM_PARSE_WORKERS", "")
    if explicit.isdigit():
        return min(int(explicit), Parses.MAX_WORKERS)
    return max(0, min((os.cpu_count() or 1) - 1, Parses.MAX_WORKERS))


def _quiet_worker(memory_cap: int | None = None, preload: tuple[str, ...] = ()) -> None:
    """A parse worker leaves Ctrl-C and termination to its parent, which stops it, collects
    garbage as the CLI does (slim.tune_gc), and ends when its parent is gone: killed with
    SIGKILL, the parent cannot stop it, and the worker, which holds the write end of its own
    task queue (multiprocessing hands it both), would wait for work forever, with
    multiprocessing's resource tracker beside it."""
    import os
    import signal
    import threading

    from slim import tune_gc

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tune_gc()
    parent = os.getppid()
    threading.Thread(target=_end_with, args=(parent,), name="slim-parent-watch", daemon=True).start()
    if memory_cap is not None:
        _cap_memory(memory_cap, preload)


def _cap_memory(extra: int, preload: tuple[str, ...]) -> None:
    """Import `preload`, then let this process map at most `extra` more bytes (worker_pool)."""
    import contextlib
    import importlib
    import os
    import resource
    import sys

    for name in preload:
        importlib.import_module(name)
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            mapped = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return  # no /proc: the parent found no memory figures either (no cap is asked then)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = min([mapped + extra, *(x for x in (soft, hard) if x != resource.RLIM_INFINITY)])
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    # Should the machine's memory run out all the same, the kernel kills this process first.
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w", encoding="ascii") as f:
        f.write("1000")
    # What runs out of memory here is reported by the parent, one line for the ELF: the
    # tracebacks multiprocessing prints when a task's bytes do not fit go nowhere.
    sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - for the process's life


def _end_with(parent: int) -> None:
    """Exit this process once `parent` is no longer its parent (it was reparented: the parent
    died). Polls twice a second: a sleeping thread costs nothing."""
    import os
    import time

    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


class Analyzer(ABC):
    """Finds what one kind of file needs."""

    name: ClassVar[str] = ""
    capture: ClassVar[Capture] = Capture()

    def __init__(self, ctx: AnalysisContext) -> None:
        self.ctx = ctx

    @abstractmethod
    def wants(self, entry: FileEntry) -> bool:
        """Whether this analyzer has something to say about `entry` (a resolved regular file)."""

    @abstractmethod
    def analyze(self, entry: FileEntry) -> Iterable[Edge | Unknown]:
        """Edges from `entry.path` to what it needs, and Unknowns. Never raises for bad input."""

    def entry_roots(self, argv: Sequence[str]) -> Iterable[Edge | Unknown]:
        """Roots for a command line the container runs; `argv[0]` is the program's image path.
        Empty when the command line is not this analyzer's business."""
        return ()

    def always_roots(self) -> Iterable[Edge | Unknown]:
        """Roots kept in every build mode (static, traced and both)."""
        return ()

    def at_fixpoint(self, kept: Set[str]) -> Iterable[Edge | Unknown]:
        """Edges whose condition depends on the whole keep set (a lazy import taken only when
        kept code names it), asked each time the worklist runs dry with everything visited so
        far; the worklist stops when no analyzer adds anything. Conditions must only ever turn
        true as `kept` grows, so the result does not depend on the visiting order."""
        return ()


def link_edges(ctx: AnalysisContext, src: str, path: str, kind: str, evidence: str) -> list[Edge]:
    """An edge to `path`, plus edges to the symlinks crossed and the final target."""
    res = ctx.fs.resolve(path)
    out = [Edge(src, path, kind, evidence)]
    for link in res.links:
        if link != path:
            out.append(Edge(src, link, kind, evidence))
    if res.exists and res.path != path:
        out.append(Edge(src, res.path, kind, evidence))
    return out


def tidy(results: Iterable[Edge | Unknown]) -> list[Edge | Unknown]:
    """Distinct edges (self-edges dropped), sorted, then distinct unknowns, sorted."""
    items = list(results)
    edges = sorted({e for e in items if isinstance(e, Edge) and e.src != e.dst})
    unknowns = sorted({u for u in items if isinstance(u, Unknown)})
    return [*edges, *unknowns]
