"""Shared test helpers: skips that become failures in CI (CI=true runs everything)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from slim.image import LoadedImage

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(autouse=True, scope="session")
def _own_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests never read or write the user's slim cache (~/.cache/slim): one per session."""
    old = os.environ.get("SLIM_CACHE_DIR")
    os.environ["SLIM_CACHE_DIR"] = str(tmp_path_factory.mktemp("slim-cache"))
    yield
    if old is None:
        os.environ.pop("SLIM_CACHE_DIR", None)
    else:
        os.environ["SLIM_CACHE_DIR"] = old


def require(condition: bool, reason: str) -> None:
    """Skip the test when `condition` is false — except in CI, where it fails instead."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def have_docker() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def is_root() -> bool:
    return os.geteuid() == 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def processes_mentioning(marker: str) -> list[str]:
    """Live (non-zombie) processes whose command line contains `marker`, this one excluded."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in cmd and state != b"Z":
            out.append(f"{pid}: {cmd}")
    return out


@pytest.fixture
def slim_work() -> Iterator[Path]:
    """A work directory where slim itself would put an image it runs: a `slim-*` temp
    directory (the sandbox's shifted ids must be able to reach the root below it)."""
    work = Path(tempfile.mkdtemp(prefix="slim-test-"))
    yield work
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def opened() -> Iterator[list[LoadedImage]]:
    """Images a test loads; closed (temp files removed) when the test ends."""
    images: list[LoadedImage] = []
    yield images
    for img in images:
        img.close()
