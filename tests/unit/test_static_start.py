"""StaticStart: the static part of an analysis, run in a thread while the image runs traced,
gives the analysis the sequential path gives; cancelled, it stops; failed, it raises in the
thread that asks."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from slim.errors import RuleError
from slim.pipeline import AnalyzeOptions, StaticStart, analyze, load_image
from slim.tracers.trace import Trace
from tests.imagekit import M, layer_tar, write_oci

ELF = b"\x7fELF" + b"\x00" * 60


def _image(tmp_path: Path) -> str:
    members = [M("bin", "d"), M("bin/sh", data=ELF, mode=0o755), M("bin/cat", data=ELF + b"c", mode=0o755),
               M("app", "d"), M("app/run", data=b"#!/bin/sh\ncat /app/data.txt\n", mode=0o755),
               M("app/data.txt", data=b"x"), M("data", "d"), M("data/x.txt", data=b"only the run reads it"),
               M("data/link", "l", link="x.txt"), M("data/unused", data=b"u")]
    write_oci(str(tmp_path / "img"), [layer_tar(members)], {"Entrypoint": ["/app/run"]})
    return f"oci:{tmp_path / 'img'}"


def _trace() -> Trace:
    trace = Trace()
    for path in ("/app/run", "/data/link", "/data/x.txt"):
        trace.access(path).opened = True
    trace.count("openat")
    return trace


def test_the_analysis_is_the_one_without_a_thread(tmp_path: Path) -> None:
    ref = _image(tmp_path)
    with load_image(ref) as loaded:
        sequential = analyze(loaded, AnalyzeOptions(), trace=_trace())
        started = StaticStart(loaded, AnalyzeOptions())
        overlapped = analyze(loaded, AnalyzeOptions(), trace=_trace(), start=started)
    assert sequential.closure is not None and overlapped.closure is not None
    assert {"/data/x.txt", "/data/link", "/app/run", "/bin/cat"} <= overlapped.closure.keep
    assert "/data/unused" not in overlapped.closure.keep
    assert overlapped.result == sequential.result  # keep, reasons, summary, packages, unknowns …
    assert not any(t.name == "slim-static" for t in threading.enumerate())


def test_cancel_stops_the_thread(tmp_path: Path) -> None:
    with load_image(_image(tmp_path)) as loaded:
        started = StaticStart(loaded, AnalyzeOptions())
        started.cancel()
        assert not any(t.name == "slim-static" for t in threading.enumerate())
        # an image the run could not start: the analysis is not asked for; a second cancel is harmless
        started.cancel()


def test_what_the_thread_raises_is_raised_where_the_analysis_is_asked_for(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "bad.toml").write_text("[rule.x]\nthis is not toml = = =\n")
    options = AnalyzeOptions(rules_dirs=(str(rules),))
    with load_image(_image(tmp_path)) as loaded:
        started = StaticStart(loaded, options)
        with pytest.raises(RuleError):
            analyze(loaded, options, trace=_trace(), start=started)


def test_an_interrupt_while_waiting_stops_the_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (or a signal the CLI turns into an exception) while the main thread waits for the
    static thread: the thread is stopped and joined before the interrupt goes on."""
    with load_image(_image(tmp_path)) as loaded:
        started = StaticStart(loaded, AnalyzeOptions())
        real_join = started._thread.join
        calls: list[int] = []

        def interrupted_once(timeout: float | None = None) -> None:
            calls.append(1)
            if len(calls) == 1:
                raise KeyboardInterrupt
            real_join(timeout)

        monkeypatch.setattr(started._thread, "join", interrupted_once)
        with pytest.raises(KeyboardInterrupt):
            analyze(loaded, AnalyzeOptions(), trace=_trace(), start=started)
        assert started._stop.is_set() and len(calls) == 2  # asked to stop, then joined
        assert not any(t.name == "slim-static" for t in threading.enumerate())
