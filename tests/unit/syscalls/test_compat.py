from __future__ import annotations

import pytest

from slim.errors import RuleError
from slim.syscalls.compat import TARGETS, check_all, check_compat, load_table
from slim.syscalls.table import all_names


@pytest.mark.parametrize("target", TARGETS)
def test_tables_load_and_name_their_source(target: str) -> None:
    t = load_table(target)
    assert t.supported, target
    assert t.supported <= set(all_names())
    assert not (t.supported & t.faked)
    assert t.source.startswith(("google/gvisor", "nanovms/nanos", "cloudius-systems/osv",
                                "unikraft/unikraft"))


def test_unknown_target() -> None:
    with pytest.raises(RuleError, match="unknown target"):
        check_compat(["read"], "linux")


def test_minimal_set_likely_runs_on_gvisor() -> None:
    r = check_compat(["read", "write", "exit_group", "mmap"], "gvisor")
    assert r.verdict == "likely-runs"
    assert r.supported == ["exit_group", "mmap", "read", "write"]


def test_execve_blocks_single_process_targets() -> None:
    reports = check_all(["read", "write", "execve"])
    assert reports["nanos"].verdict == "blocked"
    assert any("single process" in x for x in reports["nanos"].reasons)
    assert reports["gvisor"].verdict == "likely-runs"


def test_loupe_categories_on_nanos() -> None:
    # rseq: not in Nanos, Loupe says stubbing is harmless; ptrace: not implemented, needed.
    r = check_compat(["read", "rseq", "ptrace", "chown"], "nanos")
    assert "rseq" in r.stubbable
    assert "ptrace" in r.needed
    assert "chown" in r.faked  # syscall_ignore
    assert r.verdict == "blocked"


def test_incomplete_table_reports_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    from slim.syscalls import compat

    partial = compat.SupportTable("unikraft", frozenset({"write"}), frozenset(), False, "x")
    monkeypatch.setattr(compat, "load_table", lambda target: partial)
    r = check_compat(["write", "getpid"], "unikraft")
    assert "write" in r.supported
    assert "getpid" in r.unknown
    assert r.verdict == "needs-work"
    assert [b.name for b in r.blockers] == ["getpid"]


def test_unikraft_table_is_the_whole_release() -> None:
    """unikraft eaf6fda1 + app-elfloader: 181 names (shared/reference §C), rt_sigreturn absent."""
    t = load_table("unikraft")
    assert t.complete and len(t.supported) == 181
    assert {"brk", "arch_prctl", "getpid", "execve", "openat"} <= t.supported
    assert check_compat(["rt_sigreturn"], "unikraft").needed == ["rt_sigreturn"]


def test_static_upper_bound_is_never_blocked_only_undecided() -> None:
    r = check_compat(["read", "ptrace", "execve"], "nanos", upper_bound=True,
                     users={"ptrace": ["/usr/lib/libc.so.6"]})
    assert r.verdict == "needs-trace"
    by_name = {b.name: b for b in r.blockers}
    assert by_name["ptrace"].files == ("/usr/lib/libc.so.6",)
    assert "may call" in by_name["execve"].why
    traced = check_compat(["read", "ptrace"], "nanos", users={"ptrace": ["/app/x"]})
    assert traced.verdict == "blocked"


def test_libc_fallbacks_are_stubbable_where_the_old_call_exists() -> None:
    """glibc tries clone3 and faccessat2 first and falls back on ENOSYS (clone-internal.c,
    faccessat.c): not a blocker where clone / faccessat are implemented."""
    r = check_compat(["clone3", "clone", "faccessat2", "faccessat"], "unikraft")
    assert {"clone3", "faccessat2"} <= set(r.stubbable)
    assert r.verdict == "likely-runs"
