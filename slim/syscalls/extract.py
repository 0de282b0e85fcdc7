"""Static syscall extraction from x86_64 ELF code with capstone (an upper bound of what runs).

Method (the common recipe of Confine (RAID'20), sysfilter (RAID'20), Chestnut and Loupe's static
analyser (ASPLOS'24)):

1. Linear-sweep disassembly of every executable section (capstone `disasm_lite`; on an
   undecodable byte the sweep skips one byte and goes on).
2. Every `syscall` instruction (0f 05) is a site. `int 0x80` and `sysenter` (the 32-bit entry
   points, other numbering) are counted and reported as unresolved: never dropped.
3. The number is recovered by walking backwards from the site for the last write to eax/rax
   (`mov eax, imm`, `xor eax, eax`, register copies are chased). At a basic-block start the
   walk continues into every predecessor (fall-through and direct jumps) with a depth bound.
   A value that traces back to an argument register at a function entry makes that function a
   *syscall wrapper* (glibc `syscall(long nr, ...)` takes nr in edi; musl `__syscall_cp`);
   call sites of wrappers (direct, through the PLT, or to the imported `syscall`) are then
   resolved the same way for the argument register.
4. A dynamically linked program calls libc *functions*: its undefined dynamic symbols are
   mapped to syscalls through a map computed from the image's own libc (exported function ->
   direct call/jump graph inside libc -> syscall sites, full transitive closure; functions whose
   address is taken are reached from indirect calls, e.g. glibc's stdio vtables in
   `__libc_IO_vtables`).
   The map is cached per file content (sha256) in slim's cache (slim.cache, kind `syscalls`).
5. Unresolved sites and imports no kept library provides are counted and reported.

Which code counts: executables and non-libc libraries count every site (whole file); the libc
counts only what is reachable from the functions other kept ELFs import (plus its start-up
entry points); the dynamic loader counts whole-file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import posixpath
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from slim.cache import JsonStore, digest_key
from slim.errors import AnalysisError
from slim.fs.rootfs import RootFS
from slim.syscalls.code import OutOfMemory, parse_code
from slim.syscalls.dataflow import analyze_code, export_map
from slim.syscalls.table import name_of

log = logging.getLogger(__name__)

CACHE_VERSION = 10
MAX_ELF_BYTES = 512 * 1024 * 1024
MIN_POOL_BYTES = 4 << 20  # ELF bytes to disassemble below which worker processes do not pay

# Sonames whose code is counted only through what other ELFs import from them.
LIBC_SONAMES = ("libc.so.6", "libc.musl-x86_64.so.1", "ld-musl-x86_64.so.1")
# libc entry points that run without being imported by name: glibc csu/libc-start.c and
# elf/libc_early_init.c (called by ld.so), exit handlers; musl's loader stages, which
# ldso/dynlink.c reaches through computed calls (_dlstart -> __dls2 -> __dls2b -> __dls3), and
# e_entry itself (ENTRY_KEY).
LIBC_STARTUP = ("@entry", "__libc_start_main", "__libc_early_init", "exit", "_exit",
                "__libc_init_first", "__dls2", "__dls2b", "__dls3")

# Keyed by the sha256 of the ELF's bytes, computed here: an image can choose its build-id,
# never the digest of its content, so one image's entry can never stand for another's code.
CACHE = JsonStore("syscalls", CACHE_VERSION)


@dataclass(frozen=True)
class FileSyscalls:
    """What one ELF contributes: syscall names, unresolved sites, unprovided imports."""

    path: str
    kind: str  # "static" | "dynamic" | "libc" | "loader" | "library"
    syscalls: tuple[str, ...]
    sites: int
    unresolved_sites: int
    unresolved_imports: tuple[str, ...] = ()
    int80_sites: int = 0
    wrappers: tuple[str, ...] = ()
    build_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["syscalls"] = list(self.syscalls)
        d["unresolved_imports"] = list(self.unresolved_imports)
        d["wrappers"] = list(self.wrappers)
        return d


@dataclass(frozen=True)
class StaticSyscalls:
    """The static (upper-bound) syscall set of the kept ELF files."""

    names: list[str]
    unresolved_sites: int
    per_file: dict[str, FileSyscalls] = field(default_factory=dict)
    libc_cache_hit: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "unresolved_sites": self.unresolved_sites,
            "libc_cache_hit": self.libc_cache_hit,
            "per_file": {p: f.to_dict() for p, f in sorted(self.per_file.items())},
        }


def _names(nrs: Iterable[int]) -> list[str]:
    out = set()
    for n in nrs:
        nm = name_of(n)
        if nm is not None:
            out.add(nm)
    return sorted(out)


def analyze_elf(data: bytes, path: str) -> dict[str, Any]:
    """Analyze one ELF: {kind, build_id, soname, imports, direct nrs, unresolved, exports}.

    The result is cached per content digest (module doc, CACHE).
    Raises AnalysisError for a file that is not a parseable x86_64 ELF.
    """
    key = _key(data)
    cached = CACHE.get(key)
    if isinstance(cached, dict):
        cached["cache_hit"] = True
        return cached
    return _analyzed_anew(data, path, key)


def _analyzed_anew(data: bytes, path: str, key: str) -> dict[str, Any]:
    """analyze_elf of an ELF the cache lacks under `key` (_key of `data`): disassembled, and
    cached. Raises AnalysisError; OutOfMemory when the memory this process may take runs out
    anywhere on the way (a worker's cap, `ulimit -v`)."""
    try:
        return _disassembled(data, path, key)
    except (MemoryError, AnalysisError) as exc:  # the ELF parser's MemoryError is its cause
        if isinstance(exc, AnalysisError) and not isinstance(exc.__cause__, MemoryError):
            raise
        raise OutOfMemory.of(path, len(data)) from None


def _disassembled(data: bytes, path: str, key: str) -> dict[str, Any]:
    """_analyzed_anew's work."""
    code = parse_code(data, path)
    an = analyze_code(code, {})
    direct = set().union(*an.func_sys.values()) if an.func_sys else set()
    base = path.rsplit("/", 1)[-1]
    # musl's libc is its dynamic loader (ld-musl-<arch>.so.1, often without DT_SONAME).
    if code.soname in LIBC_SONAMES or base in LIBC_SONAMES or code.soname.startswith("libc.so"):
        kind = "libc"
    elif code.soname.startswith("ld-linux"):
        kind = "loader"
    elif code.interp:
        kind = "dynamic"
    elif code.etype == "ET_EXEC" or (code.etype == "ET_DYN" and not code.soname
                                     and not code.imports):
        kind = "static"
    else:
        kind = "library"
    doc: dict[str, Any] = {
        "version": CACHE_VERSION,
        "build_id": code.build_id,
        "kind": kind,
        "soname": code.soname,
        "imports": sorted(code.imports),
        "exports": sorted(code.exports),
        "direct": sorted(direct),
        "sites": an.sites,
        "unresolved_sites": sum(an.func_unres.values()),
        "int80_sites": an.int80,
        "wrappers": dict(sorted(an.wrappers.items())),
        "export_map": export_map(code, an) if kind == "libc" else {},
        "func_unres": {str(f): n for f, n in sorted(an.func_unres.items())} if kind == "libc"
        else {},
    }
    CACHE.put(key, doc)
    doc["cache_hit"] = False
    return doc


def _elf_bytes(fs: RootFS, path: str) -> bytes | None:
    """The file's bytes when it is an ELF slim analyzes (None: not an ELF). Raises
    AnalysisError for one too large."""
    data = fs.read(path)
    if len(data) > MAX_ELF_BYTES:
        raise AnalysisError(f"{path}: ELF larger than {MAX_ELF_BYTES} bytes")
    return data if data.startswith(b"\x7fELF") else None


def _workers() -> int:
    """Processes for the ELFs not in the cache: every core this process may use
    (SLIM_SYSCALL_WORKERS=N to choose; 0: in this process, one after the other, with no cap
    on their memory)."""
    explicit = os.environ.get("SLIM_SYSCALL_WORKERS", "")
    if explicit.isdigit():
        return int(explicit)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _analyzed_elves(fs: RootFS, paths: list[str], per_file: dict[str, FileSyscalls]) -> dict[str, dict[str, Any]]:
    """analyze_elf of every ELF among `paths`, in path order; a file that does not parse goes
    to `per_file` as unknown (one unresolved site). The ELFs the cache lacks are disassembled
    in worker processes when there is more than MIN_POOL_BYTES of them (pure CPU work on
    bytes: postgresql's kept ELFs took 83 s one after the other), largest first, at most two
    per worker in flight and, together, what the memory available can take (_in_flight_budget).
    Each worker may take its share of the memory available and no more (_worker_cap: a forged
    ELF can make the disassembly take ten times what real code does); an ELF that runs out of
    it, or whose worker dies, is disassembled again in a worker of its own with all of it, and
    is an unknown if that is not enough either (_alone). When no worker can start at all, the
    ELFs are disassembled here, as with SLIM_SYSCALL_WORKERS=0."""
    docs: dict[str, dict[str, Any]] = {}
    todo: list[tuple[int, str, str]] = []  # (size, path, cache key) of the ELFs to disassemble

    def failed(path: str, exc: AnalysisError) -> None:
        log.info("%s", exc)
        per_file[path] = FileSyscalls(path, "unknown", (), 0, 1)

    for path in paths:
        try:
            data = _elf_bytes(fs, path)
        except AnalysisError as exc:
            failed(path, exc)
            continue
        if data is None:
            continue
        key = _key(data)
        cached = CACHE.get(key)
        if isinstance(cached, dict):
            docs[path] = {**cached, "cache_hit": True}
        else:
            todo.append((len(data), path, key))
    workers = _pool_size(min(_workers(), len(todo)))
    if workers >= 1 and sum(size for size, _, _ in todo) >= MIN_POOL_BYTES:
        todo = sorted(todo, reverse=True)
        while todo:  # a pool again after one broke: the ELFs it had not started
            outcome = _in_workers(fs, todo, workers, docs, failed)
            if outcome is None:
                break
            again, left = outcome
            if not again and len(left) == len(todo):
                break  # nothing ran: do them here
            _alone(fs, again, docs, failed)
            todo = left
    for _size, path, key in todo:  # here: few or small ELFs, or no worker could start
        try:
            data = _elf_bytes(fs, path)  # read again: the bytes of every ELF are never held at once
            if data is not None:
                docs[path] = _analyzed_anew(data, path, key)
        except AnalysisError as exc:
            failed(path, exc)
    return dict(sorted(docs.items()))


def _in_workers(fs: RootFS, todo: list[tuple[int, str, str]], workers: int, docs: dict[str, dict[str, Any]],
                failed: Callable[[str, AnalysisError], None], *,
                alone: bool = False) -> tuple[list[tuple[int, str, str]], list[tuple[int, str, str]]] | None:
    """analyze_elf of `todo` in a pool of `workers` processes, each capped at its share of the
    memory available (_worker_cap). Returns the ELFs to try again alone (those that ran out of
    their share; when a worker dies, the kernel's OOM killer, every one in flight) and those
    not started when it died. `alone`: one ELF in flight, all the memory; running out of it is
    the ELF's answer (an unknown). None when the pool cannot start."""
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    from slim.analyzers.base import worker_pool

    cap = _worker_cap(workers)
    try:
        pool = worker_pool(workers, cap, PRELOAD)
    except (OSError, ValueError) as exc:
        log.debug("syscall workers not started: %s", exc)
        return None
    pending = list(todo)  # largest first
    budget = _in_flight_budget(pending[0][0] if pending else 0)
    running: dict[Any, tuple[int, str, str]] = {}
    again: list[tuple[int, str, str]] = []
    broken = started = False
    try:
        while (pending or running) and not broken:
            while pending and len(running) < (1 if alone else 2 * workers):
                flying = sum(item[0] for item in running.values())
                fits = next((i for i, item in enumerate(pending) if flying + item[0] <= budget), None)
                if fits is None and running:
                    break
                item = pending.pop(fits or 0)
                if not alone and cap is not None and RECEIVE_FACTOR * item[0] > cap:
                    again.append(item)  # its bytes alone would not fit a share: straight to _alone
                    continue
                data = _elf_bytes(fs, item[1])
                if data is None:
                    continue
                try:
                    running[pool.submit(_analyzed_anew, data, item[1], item[2])] = item
                except (BrokenProcessPool, OSError) as exc:  # a worker died, or none could start
                    log.debug("syscall workers stopped: %s", exc)
                    pending.insert(0, item)
                    if not (running or again or started):
                        return None  # (the processes start at the first submit)
                    broken = True
                    break
                started = True
            wait(running, return_when=FIRST_COMPLETED)
            for future in [f for f in running if f.done()]:  # every answer in, before a bail-out
                item = running.pop(future)
                try:
                    docs[item[1]] = future.result()
                except (OutOfMemory, MemoryError) as exc:  # (MemoryError: the worker's result)
                    if alone:
                        failed(item[1], exc if isinstance(exc, OutOfMemory) else OutOfMemory.of(item[1], item[0]))
                    else:
                        again.append(item)
                except AnalysisError as exc:
                    failed(item[1], exc)
                except BrokenProcessPool as exc:  # a worker died
                    log.debug("syscall workers stopped: %s", exc)
                    broken = True
                    again.append(item)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [*again, *running.values()], pending


def _alone(fs: RootFS, todo: list[tuple[int, str, str]], docs: dict[str, dict[str, Any]],
           failed: Callable[[str, AnalysisError], None]) -> None:
    """Each of `todo` in a worker of its own, with all the memory available: an ELF whose own
    worker runs out of it or dies, or for which no worker starts, is an unknown, never
    disassembled in this process, where nothing caps it."""
    for item in todo:
        outcome = _in_workers(fs, [item], 1, docs, failed, alone=True)
        lost = [item] if outcome is None else outcome[0]
        for size, path, _key in lost:
            failed(path, AnalysisError(f"{path}: no process could disassemble its {size} bytes alone"))


# Peak memory of one ELF's disassembly and analysis, per byte of the file: 8-11 measured
# (slim.syscalls.code keeps addresses in an array and shares equal strings): libLLVM-14,
# 110 MB, 12 M instructions: 0.9 GB; postgres 9 MB: 0.15 GB; python3.11, libcrypto.so.3: ~0.1 GB.
# An estimate for real code, not a bound: code forged of nothing but calls, each to its own
# target, takes ~100 (the branch-target map is per target): the workers' memory is capped
# (_worker_cap), and an ELF that runs out of it is an unknown.
MEMORY_PER_BYTE = 16
MEMINFO = "/proc/meminfo"
PROC_CGROUP = "/proc/self/cgroup"
CGROUP_ROOT = "/sys/fs/cgroup"


def _in_flight_budget(largest: int) -> int:
    """The ELF bytes the workers may hold at once: what the memory available now can take
    (MEMORY_PER_BYTE each), and never less than the largest ELF, which one process alone must
    take anyway. Without memory figures: the largest ELF (the peak of one process)."""
    return max(largest, (_memory_available() or 0) // MEMORY_PER_BYTE)


# What the syscall workers together may map beyond their start-up (RLIMIT_AS): this share of
# the memory available when they start; each worker its part.
MEMORY_SHARE = 0.9
MIN_SHARE = 256 << 20  # the least a worker is given while more than one run
RECEIVE_FACTOR = 3  # a worker holds an ELF's bytes about this many times over to receive them
PRELOAD = ("slim.syscalls.extract", "capstone", "elftools.elf.elffile")


def _worker_cap(workers: int) -> int | None:
    """The bytes one of `workers` syscall workers may map beyond its start-up (None: no memory
    figures, no cap)."""
    available = _memory_available()
    return None if available is None else int(available * MEMORY_SHARE) // workers


def _pool_size(workers: int) -> int:
    """`workers`, fewer when the memory available would give each less than MIN_SHARE (a
    worker receives an ELF's bytes two or three times over before it starts on them)."""
    available = _memory_available()
    if available is None:
        return workers
    return max(1, min(workers, int(available * MEMORY_SHARE) // MIN_SHARE))


def _memory_available() -> int | None:
    """Bytes this process can still take: MemAvailable, or less under a cgroup (v2) memory
    limit (a container's, a CI job's: its /proc/meminfo shows the host's memory), where the
    room is the limit less what the group uses but its inactive file cache (which the kernel
    reclaims first, as `docker stats` counts). None when /proc/meminfo cannot be read."""
    try:
        with open(MEMINFO, encoding="ascii") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    try:
        with open(PROC_CGROUP, "rb") as f:
            own = next(os.fsdecode(line[3:].strip()) for line in f if line.startswith(b"0::"))
    except (OSError, StopIteration):
        return available
    group = posixpath.normpath("/" + own).lstrip("/")  # never above CGROUP_ROOT
    while True:  # the cgroup and every ancestor: a limit anywhere above binds too
        room = _cgroup_room(os.path.join(CGROUP_ROOT, group))
        if room is not None:
            available = min(available, room)
        if not group:
            return available
        group = posixpath.dirname(group)


def _cgroup_room(directory: str) -> int | None:
    """What a cgroup v2 group's memory limit leaves (None: no limit, or no such group)."""
    try:
        with open(os.path.join(directory, "memory.max"), encoding="ascii") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open(os.path.join(directory, "memory.current"), encoding="ascii") as f:
            used = int(f.read().strip())
    except (OSError, ValueError):
        return None
    cache = 0
    with contextlib.suppress(OSError, ValueError, IndexError), \
            open(os.path.join(directory, "memory.stat"), encoding="ascii") as f:
        cache = next((int(line.split()[1]) for line in f if line.startswith("inactive_file ")), 0)
    try:
        return max(0, int(limit) - used + cache)
    except ValueError:
        return None


def _key(data: bytes) -> str:
    return digest_key("syscalls", str(CACHE_VERSION), hashlib.sha256(data).hexdigest())


def static_syscalls(fs: RootFS, kept_elf_paths: Iterable[str]) -> StaticSyscalls:
    """The static syscall upper bound over the kept ELF files of an image.

    Files whose contents were not captured or that do not parse are reported in `per_file`
    with one unresolved site each (conservative), never dropped silently.
    """
    t0 = time.monotonic()
    per_file: dict[str, FileSyscalls] = {}
    docs = _analyzed_elves(fs, sorted(set(kept_elf_paths)), per_file)

    libcs = {p: d for p, d in docs.items() if d["kind"] == "libc"}
    libc_hit = bool(libcs) and all(d.get("cache_hit") for d in libcs.values())
    provided: set[str] = set()
    for d in docs.values():
        provided.update(d["exports"])
    # (libc path, export) providers; unresolved libc sites are keyed (libc path, function).
    export_map: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for lp, d in libcs.items():
        for name, entry in d["export_map"].items():
            export_map.setdefault(name, []).append((lp, entry))

    def libc_unres(lp: str, funcs: Iterable[int]) -> set[tuple[str, int, int]]:
        fu = libcs[lp]["func_unres"]
        return {(lp, f, k) for f in funcs for k in range(fu.get(str(f), 0))}

    total: set[int] = set()
    all_unres: set[tuple[str, int, int]] = set()
    for path, d in sorted(docs.items()):
        nrs: set[int] = set()
        unres_keys: set[tuple[str, int, int]] = set()
        unres_imports: list[str] = []
        if d["kind"] == "libc":
            for name in LIBC_STARTUP:
                if name in d["export_map"]:
                    nrs.update(d["export_map"][name]["nrs"])
                    unres_keys |= libc_unres(path, d["export_map"][name]["unresolved_funcs"])
        else:
            nrs.update(d["direct"])
            unres_keys |= {(path, -1, k) for k in range(d["unresolved_sites"])}
            for name in d["imports"]:
                if name in export_map:
                    for lp, entry in export_map[name]:
                        nrs.update(entry["nrs"])
                        unres_keys |= libc_unres(lp, entry["unresolved_funcs"])
                elif name not in provided:
                    unres_keys.add((path, -2, len(unres_imports)))
                    unres_imports.append(name)
        total |= nrs
        all_unres |= unres_keys
        per_file[path] = FileSyscalls(
            path=path, kind=d["kind"], syscalls=tuple(_names(nrs)), sites=d["sites"],
            unresolved_sites=len(unres_keys), unresolved_imports=tuple(sorted(unres_imports)),
            int80_sites=d["int80_sites"], wrappers=tuple(sorted(d["wrappers"])),
            build_id=d["build_id"],
        )
    unresolved = len(all_unres)
    unresolved += sum(1 for f in per_file.values() if f.kind == "unknown")
    return StaticSyscalls(
        names=_names(total), unresolved_sites=unresolved, per_file=dict(sorted(per_file.items())),
        libc_cache_hit=libc_hit, seconds=round(time.monotonic() - t0, 3),
    )
