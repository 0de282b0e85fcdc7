from __future__ import annotations

from pathlib import Path

import pytest

from slim.pipeline import load_image
from slim.syscalls.extract import analyze_elf, static_syscalls
from tests.unit.syscalls.helpers import MUST_MAKE, strace_syscalls


def test_static_program_superset_of_required(progs_root) -> None:
    root, paths = progs_root
    with load_image(f"rootfs:{root}") as li:
        res = static_syscalls(li.rootfs, [paths["static"]])
    assert set(res.names) >= MUST_MAKE
    f = res.per_file[paths["static"]]
    assert f.kind == "static"
    assert "syscall" in f.wrappers  # glibc's syscall() detected as a wrapper (number in edi)
    assert f.sites > 0
    assert res.names == sorted(res.names)
    assert res.unresolved_sites >= 0


def test_static_program_superset_of_strace(progs_root, tmp_path: Path) -> None:
    root, paths = progs_root
    traced = strace_syscalls([str(root / paths["static"].lstrip("/"))], tmp_path)
    assert MUST_MAKE - {"exit_group"} <= traced  # sanity: the trace saw the program's own calls
    with load_image(f"rootfs:{root}") as li:
        res = static_syscalls(li.rootfs, [paths["static"]])
    # execve is the exec that starts the program, made before any of its code runs.
    assert traced - {"execve"} <= set(res.names)


def test_dynamic_program_via_libc_map(progs_root, tmp_path: Path) -> None:
    root, paths = progs_root
    kept = [paths["dynamic"], paths["libc"], paths["ldso"]]
    with load_image(f"rootfs:{root}") as li:
        first = static_syscalls(li.rootfs, kept)
        second = static_syscalls(li.rootfs, kept)
    assert set(first.names) >= MUST_MAKE
    assert first.per_file[paths["dynamic"]].kind == "dynamic"
    assert first.per_file[paths["libc"]].kind == "libc"
    assert first.per_file[paths["ldso"]].kind == "loader"
    assert first.per_file[paths["dynamic"]].unresolved_imports == ()
    # getrandom comes from the call site `mov edi, 318; call syscall@plt` in the program itself
    assert "getrandom" in first.per_file[paths["dynamic"]].syscalls
    assert second.libc_cache_hit
    assert second.names == first.names
    traced = strace_syscalls([str(root / paths["dynamic"].lstrip("/"))], tmp_path)
    assert traced - {"execve"} <= set(first.names)
    # the static bound is far below "everything" (the point of the libc map)
    assert len(first.names) < 200


def test_imports_without_libc_are_unresolved(progs_root) -> None:
    root, paths = progs_root
    with load_image(f"rootfs:{root}") as li:
        res = static_syscalls(li.rootfs, [paths["dynamic"]])
    f = res.per_file[paths["dynamic"]]
    assert {"write", "getpid"} <= set(f.unresolved_imports)
    assert res.unresolved_sites >= len(f.unresolved_imports)


def test_bad_elf_is_reported_not_dropped(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "bad").write_bytes(b"\x7fELF" + b"\x02\x01\x01" + b"\x00" * 9 + b"garbage")
    with load_image(f"rootfs:{root}") as li:
        res = static_syscalls(li.rootfs, ["/bin/bad"])
    assert res.per_file["/bin/bad"].kind == "unknown"
    assert res.unresolved_sites == 1
    assert res.names == []


def test_cache_keyed_by_content_not_build_id(progs_root, tmp_path: Path, monkeypatch) -> None:
    root, paths = progs_root
    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path / "c"))
    data = (root / paths["libc"].lstrip("/")).read_bytes()
    cold = analyze_elf(data, paths["libc"])
    warm = analyze_elf(data, paths["libc"])
    assert not cold["cache_hit"] and warm["cache_hit"]
    files = list((tmp_path / "c" / "syscalls").glob("*.json"))
    assert len(files) == 1 and cold["build_id"] not in files[0].name
    assert warm["export_map"]["getpid"]["nrs"] == [39]
    # other code under the same build-id (an image chooses its build-id) is analyzed anew
    n = len(data) // 2
    forged = data[:n] + bytes([data[n] ^ 0xFF]) + data[n + 1 :]
    again = analyze_elf(forged, paths["libc"])
    assert again["build_id"] == cold["build_id"] and not again["cache_hit"]
    assert len(list((tmp_path / "c" / "syscalls").glob("*.json"))) == 2


def _all_kept(paths: dict[str, str]) -> list[str]:
    """The test programs' ELFs and /bin/bad (an ELF that does not parse: _with_bad writes it)."""
    return [paths["dynamic"], paths["libc"], paths["ldso"], paths["static"], "/bin/bad"]


def _all_answered(root: Path, paths: dict[str, str], monkeypatch, cache: Path, workers: str):  # type: ignore[no-untyped-def]
    """static_syscalls of _all_kept with SLIM_SYSCALL_WORKERS=`workers`, caching in `cache`."""
    monkeypatch.setenv("SLIM_SYSCALL_WORKERS", workers)
    monkeypatch.setenv("SLIM_CACHE_DIR", str(cache))
    with load_image(f"rootfs:{root}") as li:
        return static_syscalls(li.rootfs, _all_kept(paths))


def _with_bad(root: Path) -> None:
    (root / "bin").mkdir(exist_ok=True)
    (root / "bin" / "bad").write_bytes(b"\x7fELF" + b"\x02\x01\x01" + b"\x00" * 9 + b"garbage")


def test_worker_processes_give_what_one_process_gives(progs_root, tmp_path: Path, monkeypatch) -> None:
    """The ELFs the cache lacks are disassembled in worker processes (largest first); the
    answer is the one a single process gives, a file that does not parse included."""
    import slim.syscalls.extract as extract

    root, paths = progs_root
    _with_bad(root)
    monkeypatch.setattr(extract, "MIN_POOL_BYTES", 0)
    answers = []
    for workers in ("0", "2"):  # this process; a pool
        answers.append(_all_answered(root, paths, monkeypatch, tmp_path / f"cache-{workers}", workers).to_dict())
        # every parsed ELF was analyzed (and cached) by whoever did it
        assert len(list((tmp_path / f"cache-{workers}" / "syscalls").glob("*.json"))) == 4
    assert answers[0] == answers[1]
    assert answers[1]["per_file"]["/bin/bad"]["kind"] == "unknown"


class _DyingPool:
    """A pool whose worker dies at the task numbered `dies_at` (counted over every pool made),
    and at every task for the ELFs in `fatal`."""

    tasks = 0
    dies_at = 2
    fatal: tuple[str, ...] = ()
    caps: list[int | None] = []

    def __init__(self, workers: int, memory_cap: int | None = None, preload: tuple[str, ...] = ()) -> None:
        _DyingPool.caps.append(memory_cap)

    def submit(self, fn, *args):  # type: ignore[no-untyped-def]
        from concurrent.futures import Future
        from concurrent.futures.process import BrokenProcessPool

        future: Future = Future()
        _DyingPool.tasks += 1
        if _DyingPool.tasks == _DyingPool.dies_at or args[1] in _DyingPool.fatal:
            future.set_exception(BrokenProcessPool("a worker died"))
        else:
            try:
                future.set_result(fn(*args))
            except Exception as exc:  # the worker's exception goes to the future
                future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def test_what_a_dead_worker_did_not_answer_is_done_again_each_alone(progs_root, tmp_path: Path, monkeypatch) -> None:
    """A worker killed mid-run (the out-of-memory killer) breaks the pool: the ELF it was on is
    disassembled again in a worker of its own with all the memory, those not started in a new
    pool, and the answer is the same."""
    import slim.analyzers.base
    import slim.syscalls.extract as extract

    root, paths = progs_root
    _with_bad(root)
    monkeypatch.setattr(extract, "MIN_POOL_BYTES", 0)
    expected = _all_answered(root, paths, monkeypatch, tmp_path / "reference", "0").to_dict()

    monkeypatch.setattr(slim.analyzers.base, "worker_pool", _DyingPool)
    monkeypatch.setattr(_DyingPool, "caps", [])
    monkeypatch.setattr(_DyingPool, "tasks", 0)
    got = _all_answered(root, paths, monkeypatch, tmp_path / "dying", "2").to_dict()
    assert got == expected
    caps = _DyingPool.caps
    # the pool; the ELF its worker was on when it died, alone with all the memory (not half);
    # a pool again for the ELFs it had not started
    assert [cap is not None and cap > 1.5 * caps[0] for cap in caps] == [False, True, False]


def test_an_elf_whose_own_worker_dies_is_an_unknown_not_done_here(progs_root, tmp_path: Path, monkeypatch) -> None:
    """An ELF that kills its worker even alone is never disassembled in this process, where
    nothing caps its memory: it is an unknown, and the others are answered."""
    import slim.analyzers.base
    import slim.syscalls.extract as extract

    root, paths = progs_root
    _with_bad(root)
    monkeypatch.setattr(extract, "MIN_POOL_BYTES", 0)
    monkeypatch.setattr(slim.analyzers.base, "worker_pool", _DyingPool)
    monkeypatch.setattr(_DyingPool, "dies_at", 0)
    monkeypatch.setattr(_DyingPool, "tasks", 0)
    monkeypatch.setattr(_DyingPool, "fatal", (paths["static"],))
    monkeypatch.setattr(_DyingPool, "caps", [])
    monkeypatch.setattr(extract, "_analyzed_anew", _refuse_here(extract._analyzed_anew))
    got = _all_answered(root, paths, monkeypatch, tmp_path / "cache", "2")
    assert got.per_file[paths["static"]].kind == "unknown"
    assert got.per_file[paths["dynamic"]].kind == "dynamic"


def _refuse_here(real):  # type: ignore[no-untyped-def]
    """_analyzed_anew that fails the test when called for /bin/prog-static (the fake pool
    never calls it for that ELF: only a fallback here would)."""
    def analyzed(data, path, key):  # type: ignore[no-untyped-def]
        if path == "/bin/prog-static":
            raise AssertionError("disassembled in the parent")
        return real(data, path, key)
    return analyzed


def test_an_elf_past_its_workers_share_of_memory_is_done_alone_then_unknown(progs_root, tmp_path: Path,
                                                                            monkeypatch, capfd) -> None:
    """Real workers under RLIMIT_AS: an ELF that needs more than a worker's share of the memory
    is disassembled again alone with all of it; with too little even then, it is an unknown
    with a one-line reason, and this process is unharmed."""
    import slim.syscalls.extract as extract

    root, paths = progs_root
    _with_bad(root)
    monkeypatch.setattr(extract, "MIN_POOL_BYTES", 0)
    expected = _all_answered(root, paths, monkeypatch, tmp_path / "reference", "0").to_dict()

    # 4 MB per worker in a pool of two (libc's disassembly takes ~50 MB), all of it alone
    monkeypatch.setattr(extract, "_worker_cap", lambda workers: 4 << 20 if workers > 1 else 2 << 30)
    assert _all_answered(root, paths, monkeypatch, tmp_path / "shares", "2").to_dict() == expected

    monkeypatch.setattr(extract, "_worker_cap", lambda workers: 1 << 20)  # libc's bytes do not fit
    got = _all_answered(root, paths, monkeypatch, tmp_path / "starved", "2")
    assert got.per_file[paths["libc"]].kind == "unknown"
    # the workers that ran out said nothing: no traceback of theirs reaches the terminal
    assert "Traceback" not in capfd.readouterr().err


def test_the_elves_in_flight_fit_the_memory_available(tmp_path: Path, monkeypatch) -> None:
    """Disassembly takes ~10 bytes of memory per byte of ELF: the workers hold at once what
    the memory available takes, and always at least the largest ELF (one process needs that)."""
    import slim.syscalls.extract as extract

    meminfo = tmp_path / "meminfo"
    monkeypatch.setattr(extract, "MEMINFO", str(meminfo))
    meminfo.write_text("MemTotal:  8000000 kB\nMemAvailable:    7000 kB\n")
    assert extract._in_flight_budget(1 << 20) == 1 << 20  # 7 MB available: the largest alone
    meminfo.write_text("MemAvailable:  7000000 kB\n")
    assert extract._in_flight_budget(1 << 20) == 7_000_000 * 1024 // extract.MEMORY_PER_BYTE
    meminfo.unlink()
    assert extract._in_flight_budget(5) == 5


def test_the_memory_available_heeds_cgroup_v2_limits(tmp_path: Path, monkeypatch) -> None:
    """In a container or a CI job /proc/meminfo shows the host's memory: the room a cgroup v2
    memory limit leaves (the process's group or any above it; its inactive file cache counts
    as room, as the kernel reclaims it first) bounds what the workers take."""
    import slim.syscalls.extract as extract

    meminfo, own, root = tmp_path / "meminfo", tmp_path / "cgroup", tmp_path / "fs"
    monkeypatch.setattr(extract, "MEMINFO", str(meminfo))
    monkeypatch.setattr(extract, "PROC_CGROUP", str(own))
    monkeypatch.setattr(extract, "CGROUP_ROOT", str(root))
    gib = 1 << 30
    meminfo.write_text(f"MemTotal: {16 * gib // 1024} kB\nMemAvailable: {8 * gib // 1024} kB\n")
    assert extract._memory_available() == 8 * gib  # no /proc/self/cgroup
    own.write_bytes("12:memory:/v1/only\n0::/ci/jöb\n".encode())
    assert extract._memory_available() == 8 * gib  # no cgroup files: no limit known
    for group, limit, used in (("ci/jöb", 2 * gib, gib // 2), ("ci", "max", 5 * gib), ("", "max", 9 * gib)):
        (root / group).mkdir(parents=True, exist_ok=True)
        (root / group / "memory.max").write_text(f"{limit}\n")
        (root / group / "memory.current").write_text(f"{used}\n")
    assert extract._memory_available() == 2 * gib - gib // 2
    (root / "ci" / "memory.max").write_text(f"{gib}\n")  # a tighter limit above
    (root / "ci" / "memory.current").write_text(f"{gib - 1000}\n")
    assert extract._memory_available() == 1000
    (root / "ci" / "memory.stat").write_text(f"active_file 5\ninactive_file {gib // 4}\n")
    assert extract._memory_available() == 1000 + gib // 4  # cache the kernel takes back first
    (root / "ci" / "memory.stat").unlink()
    (root / "ci" / "memory.current").write_text(f"{2 * gib}\n")  # over its limit: no room
    assert extract._memory_available() == 0
    assert extract._worker_cap(2) == 0 and extract._in_flight_budget(5) == 5
    assert extract._pool_size(4) == 1  # not four workers with nothing each
    own.write_text("0::/\n")  # the namespace's own root (a container's): the root's files only
    assert extract._memory_available() == 8 * gib
    (root / "memory.max").write_text(f"{3 * gib}\n")
    (root / "memory.current").write_text(f"{gib}\n")
    assert extract._memory_available() == 2 * gib
    assert extract._pool_size(4) == 4 and extract._pool_size(16) == int(2 * gib * 0.9) // (256 << 20)
    own.write_text("0::/../../etc\n")  # never a path above the cgroup root
    assert extract._memory_available() == 2 * gib
    meminfo.unlink()
    assert extract._memory_available() is None and extract._worker_cap(2) is None
    assert extract._pool_size(4) == 4


def test_no_process_can_start_so_this_one_does_them(progs_root, tmp_path: Path, monkeypatch) -> None:
    """Python starts a pool's processes at its first submit: one that cannot (a container's
    pids.max, RLIMIT_NPROC: EAGAIN) leaves the ELFs to this process, as without workers."""
    import slim.analyzers.base
    import slim.syscalls.extract as extract

    root, paths = progs_root
    _with_bad(root)
    monkeypatch.setattr(extract, "MIN_POOL_BYTES", 0)
    expected = _all_answered(root, paths, monkeypatch, tmp_path / "here", "0").to_dict()

    class NoProcess(_DyingPool):
        def submit(self, fn, *args):  # type: ignore[no-untyped-def]
            raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(slim.analyzers.base, "worker_pool", NoProcess)
    assert _all_answered(root, paths, monkeypatch, tmp_path / "no-process", "2").to_dict() == expected


def test_memory_running_out_after_the_disassembly_is_out_of_memory_too(progs_root, monkeypatch) -> None:
    """The libc map, the cache entry's JSON, the result sent back: a MemoryError anywhere in
    an ELF's analysis is OutOfMemory (retried alone, then an unknown), never a traceback."""
    import slim.syscalls.extract as extract
    from slim.syscalls.code import OutOfMemory

    root, paths = progs_root
    data = (root / paths["libc"].lstrip("/")).read_bytes()

    def no_memory(*_args):  # type: ignore[no-untyped-def]
        raise MemoryError

    monkeypatch.setattr(extract, "export_map", no_memory)
    with pytest.raises(OutOfMemory, match=r"^/libc: not enough memory to disassemble its \d+ bytes$"):
        extract._analyzed_anew(data, "/libc", "k")


def test_a_worker_cap_keeps_a_lower_limit_it_inherits(tmp_path: Path) -> None:
    """`ulimit -v` set before slim stays the limit of its workers (never raised to a share)."""
    import subprocess
    import sys

    script = (
        "import resource\n"
        "from slim.analyzers.base import _cap_memory\n"
        "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, resource.RLIM_INFINITY))\n"
        "_cap_memory(64 << 30, ())\n"
        "print(resource.getrlimit(resource.RLIMIT_AS)[0])\n"
        "resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))\n"
        "_cap_memory(1 << 30, ())\n"
        "soft = resource.getrlimit(resource.RLIMIT_AS)[0]\n"
        "print(soft < 3 << 30 and soft > 1 << 30)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(3 << 30), "True"]


def test_an_elf_too_big_to_receive_within_a_share_goes_straight_to_a_worker_alone(
        progs_root, tmp_path: Path, monkeypatch) -> None:
    """Receiving an ELF takes a worker ~3 times its size: one that would not fit a share is
    never sent to the shared pool (where it would break it for the others) but alone."""
    import slim.analyzers.base
    import slim.syscalls.extract as extract

    root, paths = progs_root
    _with_bad(root)
    sent: list[tuple[int, str]] = []

    class Recording(_DyingPool):
        def __init__(self, workers: int, memory_cap: int | None = None, preload: tuple[str, ...] = ()) -> None:
            self.workers = workers

        def submit(self, fn, *args):  # type: ignore[no-untyped-def]
            sent.append((self.workers, args[1]))
            return super().submit(fn, *args)

    libc_size = (root / paths["libc"].lstrip("/")).stat().st_size
    monkeypatch.setattr(slim.analyzers.base, "worker_pool", Recording)
    monkeypatch.setattr(_DyingPool, "dies_at", 0)
    monkeypatch.setattr(extract, "MIN_POOL_BYTES", 0)
    monkeypatch.setattr(extract, "_worker_cap", lambda workers: 2 * libc_size if workers > 1 else None)
    monkeypatch.setattr(extract, "_pool_size", lambda workers: workers)
    got = _all_answered(root, paths, monkeypatch, tmp_path / "cache", "2")
    assert (1, paths["libc"]) in sent and (2, paths["libc"]) not in sent
    assert (2, paths["static"]) in sent
    assert got.per_file[paths["libc"]].kind == "libc"
