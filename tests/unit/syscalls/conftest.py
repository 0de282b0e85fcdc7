"""Fixtures: one rootfs of compiled test programs per session, an isolated syscall cache."""

from __future__ import annotations

import pytest

from tests.unit.syscalls.helpers import build_rootfs


@pytest.fixture(scope="session")
def progs_root(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("sysroot") / "root"
    root.mkdir()
    paths = build_rootfs(root)
    return root, paths


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    # One cache per session (shared by tests, so the cache-hit test sees earlier runs' files).
    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "slim-cache"))
