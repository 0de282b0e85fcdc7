"""Parses: parsing ahead in a worker process, and what the process does while the worker is busy."""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

import pytest

from slim.analyzers.base import Parses


def _never() -> Any:
    raise AssertionError("parsed in the process although the worker or a take-back had it")


def _same(value: Any) -> Any:
    return value


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("SLIM_NO_CACHE", "1")
    monkeypatch.setenv("SLIM_PARSE_WORKERS", "1")
    p = Parses(None)  # type: ignore[arg-type]  # the context is not used
    yield p
    p.flush()


def test_waiting_for_a_busy_worker_the_process_takes_back_what_is_queued_behind(parses: Parses) -> None:
    # a slow parse in the worker, then four quick ones queued behind it
    parses.ahead("k", b"slow", subprocess.getoutput, "sleep 1; echo slow")
    for n in range(4):
        parses.ahead("k", f"q{n}".encode(), subprocess.getoutput, f"echo q{n}")
    deadline = time.monotonic() + 30
    while not parses._ahead[next(iter(parses._ahead))][0].running():  # the worker has started it
        assert time.monotonic() < deadline
        time.sleep(0.01)

    assert parses.memo("k", b"slow", _never, encode=_same, decode=_same) == "slow"
    assert parses.from_workers == 1
    # the last one queued was taken back and done in the process while the worker was busy
    assert parses._taken
    assert parses.memo("k", b"q3", _never, encode=_same, decode=_same) == "q3"
    assert parses.from_workers == 1
    for n in range(3):  # each of the others was done by one side or the other, never lost
        assert parses.memo("k", f"q{n}".encode(), lambda n=n: f"q{n}", encode=_same, decode=_same) == f"q{n}"


def test_a_parse_taken_back_and_asked_for_again_is_not_lost(parses: Parses) -> None:
    """The same bytes (every empty __init__.py) may be handed over again after their parse
    was taken back: the second request must neither crash a later take-back nor be lost."""
    parses.ahead("k", b"slow", subprocess.getoutput, "sleep 1; echo slow")
    parses.ahead("k", b"same", subprocess.getoutput, "echo same")
    deadline = time.monotonic() + 30
    while not parses._ahead[next(iter(parses._ahead))][0].running():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert parses.memo("k", b"slow", _never, encode=_same, decode=_same) == "slow"
    parses.ahead("k", b"same", subprocess.getoutput, "echo same")  # taken back already: skipped
    parses.ahead("k", b"slow2", subprocess.getoutput, "sleep 1; echo slow2")
    parses.ahead("k", b"other", subprocess.getoutput, "echo other")
    assert parses.memo("k", b"same", _never, encode=_same, decode=_same) == "same"
    assert parses.memo("k", b"slow2", lambda: "slow2", encode=_same, decode=_same) == "slow2"
    assert parses.memo("k", b"other", lambda: "other", encode=_same, decode=_same) == "other"


def test_a_batch_is_one_task_and_each_parse_of_it_answers_on_its_own(parses: Parses) -> None:
    """ahead_many hands the workers one task; a parse of it that raises is parsed in the
    process, the others come from the worker; a batch still queued behind a busy worker is
    taken back and every parse of it done, none lost."""
    parses.ahead_many([("k", b"a", subprocess.getoutput, ("echo a",)),
                       ("k", b"bad", int, ("not a number",)),
                       ("k", b"a", subprocess.getoutput, ("echo a",)),  # the same bytes: once
                       ("k", b"c", subprocess.getoutput, ("echo c",))])
    futures = {slot.future for slot, _fn, _args in parses._ahead.values()}
    assert len(parses._ahead) == 3 and len(futures) == 1
    deadline = time.monotonic() + 30
    while not next(iter(futures)).running():  # handed to the worker (else memo takes it back)
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert parses.memo("k", b"a", _never, encode=_same, decode=_same) == "a"
    assert parses.memo("k", b"bad", lambda: "parsed here", encode=_same, decode=_same) == "parsed here"
    assert parses.memo("k", b"c", _never, encode=_same, decode=_same) == "c"
    assert parses.from_workers == 2

    parses.ahead("k", b"slow", subprocess.getoutput, "sleep 1; echo slow")
    # three batches behind it: the pool moves up to two tasks into the worker's queue at once
    # (they run next, as lone tasks would), the third waits in the pool and can be taken back
    for first in (0, 3, 6):
        parses.ahead_many([("k", f"q{n}".encode(), subprocess.getoutput, (f"echo q{n}",))
                           for n in range(first, first + 3)])
    deadline = time.monotonic() + 30
    while not parses._ahead[(next(k for k in parses._ahead if k[1]))][0].running():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert parses.memo("k", b"slow", _never, encode=_same, decode=_same) == "slow"
    # the last batch (and any other still queued) was cancelled and done here meanwhile
    batches = [{("k", _sha(f"q{n}")) for n in range(first, first + 3)} for first in (0, 3, 6)]
    assert batches[2] <= set(parses._taken)
    for n in range(9):
        assert parses.memo("k", f"q{n}".encode(), lambda n=n: f"q{n}", encode=_same, decode=_same) == f"q{n}"


def test_a_parse_needed_while_its_batch_is_queued_leaves_the_rest_of_the_batch_to_the_workers(
        parses: Parses) -> None:
    """The worklist reaching one source of a batch still queued parses that one in the
    process; the batch's other parses go back to the workers (Django's 88 locale formats
    modules, one batch, were all parsed in the process when a cancel dropped the batch)."""
    parses.ahead("k", b"slow", subprocess.getoutput, "sleep 1; echo slow")
    for first in (0, 3):  # the pool moves up to two tasks into the worker's queue: not cancellable
        parses.ahead_many([("k", f"f{n}".encode(), _same, (f"f{n}",)) for n in range(first, first + 3)])
    parses.ahead_many([("k", f"x{n}".encode(), _same, (f"x{n}",)) for n in range(3)])
    assert parses.memo("k", b"x0", lambda: "x0 here", encode=_same, decode=_same) == "x0 here"
    rest = [("k", _sha(f"x{n}")) for n in (1, 2)]
    assert all(key in parses._ahead for key in rest)  # queued again, not dropped
    for key in rest:
        parses._ahead[key][0].result(timeout=60)  # the worker did them
    assert parses.memo("k", b"x1", _never, encode=_same, decode=_same) == "x1"
    assert parses.memo("k", b"x2", _never, encode=_same, decode=_same) == "x2"


def test_ahead_many_hands_large_batches_over_in_parts(parses: Parses) -> None:
    parses.ahead_many([("k", f"p{n}".encode(), _same, (f"p{n}",)) for n in range(Parses.BATCH * 2 + 1)])
    assert len({slot.future for slot, _fn, _args in parses._ahead.values()}) == 3


def test_workers_started_while_layers_are_read_are_the_ones_a_run_uses(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Reading a Python standard library (its os.py) starts the parse workers; the next run's
    Parses takes that pool instead of starting its own. An image without one starts none."""
    from slim.analyzers import base
    from slim.pipeline import load_image
    from tests.hostile import forge
    from tests.hostile.forge import APP_CONFIG, T, app_files

    monkeypatch.setenv("SLIM_NO_CACHE", "1")
    monkeypatch.setenv("SLIM_PARSE_WORKERS", "1")
    monkeypatch.setattr(base, "_PRESTARTED", [])
    plain = forge.docker_archive(tmp_path / "plain.tar", [forge.tar([*app_files(), T("usr/share/gdb/x.py", data=b"1")])],
                                 APP_CONFIG)
    with load_image(f"docker-archive:{plain}"):
        assert base._PRESTARTED == []  # a .py of gdb's is no Python install
    stdlib = [T("usr/lib/python3.11/os.py", data=b"import sys\n"), T("usr/lib/python3.11/abc/os.py", data=b"")]
    python = forge.docker_archive(tmp_path / "py.tar", [forge.tar([*app_files(), *stdlib])], APP_CONFIG)
    with load_image(f"docker-archive:{python}"):
        assert len(base._PRESTARTED) == 1  # once, however many os.py
    pool = base._PRESTARTED[0]
    p = Parses(None)  # type: ignore[arg-type]
    try:
        p.ahead("k", b"x", _same, "parsed in the prestarted pool")
        assert p._pool is pool and base._PRESTARTED == []
        next(iter(p._ahead.values()))[0].result(timeout=60)  # done there (else memo takes it back)
        assert p.memo("k", b"x", _never, encode=lambda v: v, decode=lambda v: v) == "parsed in the prestarted pool"
    finally:
        p.flush()


def test_flush_leaves_no_pool_thread_to_race_the_exit(parses: Parses) -> None:
    """A pool's manager thread still closing its wakeup pipe when the CLI exits races
    concurrent.futures' exit hook, which then writes to the closed pipe (a traceback after the
    report, seen once in CI). flush waits for the thread."""
    import threading

    parses.ahead("k", b"y", _same, "done")
    next(iter(parses._ahead.values()))[0].result(timeout=60)  # done in the worker
    assert parses.memo("k", b"y", _never, encode=lambda v: v, decode=lambda v: v) == "done"
    assert any(type(t).__name__ == "_ExecutorManagerThread" for t in threading.enumerate())
    parses.flush()
    assert not any(type(t).__name__ == "_ExecutorManagerThread" for t in threading.enumerate())


def test_a_parse_worker_ends_when_its_parent_is_killed() -> None:
    """SIGKILL of slim: the parse worker holds the write end of its own task queue, so it
    would wait for work forever (and multiprocessing's resource tracker with it)."""
    import signal
    import sys

    script = ("import os, sys, time\n"
              "from slim.analyzers.base import worker_pool\n"
              "pool = worker_pool(1)\n"
              "print(pool.submit(os.getpid).result(timeout=60), flush=True)\n"
              "time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        os.kill(worker, 0)  # alive while its parent is
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{worker}/stat", "rb") as f:
                if f.read().rpartition(b")")[2].split()[0] == b"Z":
                    break  # ended, not yet reaped by init
        except FileNotFoundError:
            break
        time.sleep(0.1)
    else:
        os.kill(worker, signal.SIGKILL)
        raise AssertionError("the parse worker outlived its killed parent")
