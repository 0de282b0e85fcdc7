from __future__ import annotations

from pathlib import Path

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
    return [paths["dynamic"], paths["libc"], paths["ldso"], paths["static"], "/bin/bad"]


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
    for workers in ("1", "2"):
        monkeypatch.setenv("SLIM_SYSCALL_WORKERS", workers)
        monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path / f"cache-{workers}"))
        with load_image(f"rootfs:{root}") as li:
            answers.append(static_syscalls(li.rootfs, _all_kept(paths)).to_dict())
        # every parsed ELF was analyzed (and cached) by whoever did it
        assert len(list((tmp_path / f"cache-{workers}" / "syscalls").glob("*.json"))) == 4
    assert answers[0] == answers[1]
    assert answers[1]["per_file"]["/bin/bad"]["kind"] == "unknown"


def test_a_dead_worker_pool_leaves_its_elves_to_this_process(progs_root, tmp_path: Path, monkeypatch) -> None:
    """A worker killed mid-run (the out-of-memory killer) breaks the pool: what it had not
    answered is analyzed here, and the answer is the same."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    import slim.analyzers.base
    import slim.syscalls.extract as extract

    root, paths = progs_root
    monkeypatch.setattr(extract, "MIN_POOL_BYTES", 0)
    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path / "reference"))
    with load_image(f"rootfs:{root}") as li:
        expected = static_syscalls(li.rootfs, _all_kept(paths)).to_dict()

    class DyingPool:
        """Answers the first task, then its worker dies."""

        def __init__(self, workers: int) -> None:
            self.calls = 0

        def submit(self, fn, *args):  # type: ignore[no-untyped-def]
            future: Future = Future()
            self.calls += 1
            if self.calls == 1:
                future.set_result(fn(*args))
            else:
                future.set_exception(BrokenProcessPool("a worker died"))
            return future

        def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
            pass

    monkeypatch.setattr(slim.analyzers.base, "worker_pool", DyingPool)
    monkeypatch.setenv("SLIM_SYSCALL_WORKERS", "2")
    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path / "dying"))
    with load_image(f"rootfs:{root}") as li:
        got = static_syscalls(li.rootfs, _all_kept(paths)).to_dict()
    assert got == expected


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
