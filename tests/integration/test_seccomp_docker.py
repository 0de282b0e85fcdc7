"""The generated seccomp profile, for real: a static test program runs under it in Docker, and a
program making a syscall outside the allowed set gets EPERM.

The image is a `docker import` of a tiny tar (no registry); containers run with --network none.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from slim.emitters.seccomp import build_seccomp_profile, write_profile
from slim.pipeline import load_image
from slim.syscalls.extract import static_syscalls
from slim.syscalls.table import number_of
from tests.conftest import have_docker, require
from tests.unit.syscalls.helpers import build_rootfs

pytestmark = pytest.mark.docker

# Syscalls a test program can call with zero arguments harmlessly; one that is not allowed by
# the profile is picked at run time.
CANDIDATES = ("getcpu", "uname", "getuid", "times", "getpgrp", "getsid", "sched_yield", "sync")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory):
    require(have_docker(), "docker daemon not available")
    base = tmp_path_factory.mktemp("sdock")
    root = base / "root"
    root.mkdir()
    paths = build_rootfs(root)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("prog", "deny"):
            src = root / (paths["static"] if name == "prog" else paths["deny"]).lstrip("/")
            info = tarfile.TarInfo(name)
            data = src.read_bytes()
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    tag = f"slim-seccomp-test:{uuid.uuid4().hex[:12]}"
    subprocess.run(["docker", "import", "-", tag], input=buf.getvalue(), check=True,
                   capture_output=True)
    try:
        yield root, paths, tag, base
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def _run(tag: str, profile: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--security-opt",
         f"seccomp={profile}", tag, *argv],
        capture_output=True, text=True, timeout=120)


def test_profile_runs_program_and_denies_others(image, tmp_path: Path, monkeypatch) -> None:
    root, paths, tag, _ = image
    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path / "cache"))
    with load_image(f"rootfs:{root}") as li:
        res = static_syscalls(li.rootfs, [paths["static"]])
    profile = build_seccomp_profile(res.names)
    path = tmp_path / "profile.json"
    write_profile(profile, str(path))
    allowed = set(profile["syscalls"][0]["names"])

    ok = _run(tag, path, "/prog")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "hello\n"

    # The deny program has the same libc start-up; an allowed call works ...
    assert "getpid" in allowed
    r = _run(tag, path, "/deny", str(number_of("getpid")))
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr
    # ... and a call outside the set fails with EPERM (defaultErrnoRet 1).
    outside = next(n for n in CANDIDATES if n not in allowed)
    r = _run(tag, path, "/deny", str(number_of(outside)))
    assert (r.returncode, r.stdout) == (0, "errno=1\n"), (outside, r.stderr)
