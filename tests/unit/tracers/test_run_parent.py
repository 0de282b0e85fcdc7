"""Where a traced run unpacks its private copy of the image."""

from __future__ import annotations

import pytest

import slim.tracers as tracers


def test_run_parent_prefers_an_explicit_choice_then_ram_for_small_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLIM_RUN_DIR", raising=False)
    monkeypatch.delenv("TMPDIR", raising=False)
    monkeypatch.setattr(tracers, "_is_tmpfs", lambda path: True)
    monkeypatch.setattr(tracers.os, "access", lambda path, mode: True)

    class Vfs:
        f_bavail, f_frsize = 1000, 1 << 20  # 1000 MiB free

    monkeypatch.setattr(tracers.os, "statvfs", lambda path: Vfs())
    assert tracers.run_parent(100 << 20) == tracers.RAM_DIR
    assert tracers.run_parent(300 << 20) is None  # four times the root must fit
    assert tracers.run_parent(tracers.MAX_RAM_ROOT + 1) is None
    monkeypatch.setattr(tracers, "_is_tmpfs", lambda path: False)
    assert tracers.run_parent(1 << 20) is None  # /dev/shm that is not RAM: the temp dir
    monkeypatch.setattr(tracers, "_is_tmpfs", lambda path: True)
    monkeypatch.setenv("TMPDIR", "/somewhere")
    assert tracers.run_parent(1 << 20) is None  # an explicit TMPDIR is honoured
    monkeypatch.setenv("SLIM_RUN_DIR", "/fast/disk")
    assert tracers.run_parent(1 << 40) == "/fast/disk"
