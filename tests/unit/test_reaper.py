"""slim.reaper: owners of what slim leaves in the Docker daemon, and removing a dead owner's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from slim import reaper


def finished_owner() -> str:
    """The owner string of a process that has ended (same host and PID namespace)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        start = reaper._start_time(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    here = reaper._here()
    assert here is not None and start is not None
    return f"{here[0]}.{here[1]}.{proc.pid}.{start}"


def test_this_process_is_a_live_owner_and_an_ended_one_is_dead() -> None:
    me = reaper.owner()
    assert reaper.parse_owner(me) is not None and str(os.getpid()) in me.split(".")
    assert not reaper.dead(me)
    assert reaper.dead(finished_owner())


def test_a_reused_pid_is_another_owner() -> None:
    boot, ns, pid, start = reaper.parse_owner(reaper.owner()) or ("", 0, 0, 0)
    assert reaper.dead(f"{boot}.{ns}.{pid}.{start + 1}")


@pytest.mark.parametrize("text", [
    "", "garbage", "a.b.c.d", "1.2.3", "0123456789ab.1.2.3.4",
    "ffffffffffff.{ns}.1.1",  # another boot: its PIDs mean nothing here
    "{boot}.1.1.1",  # another PID namespace
])
def test_what_cannot_be_judged_is_never_dead(text: str) -> None:
    boot, ns, _pid, _start = reaper.parse_owner(reaper.owner()) or ("", 0, 0, 0)
    assert not reaper.dead(text.format(boot=boot, ns=ns))


def test_image_names_carry_their_owner() -> None:
    me = reaper.owner()
    name = reaper.owned_name("abc123")
    assert name == f"{me}-abc123"
    assert reaper.tag_owner(f"slim-lease:{name}") == me
    assert reaper.tag_owner(f"slim-trace:{name}") == me
    assert reaper.tag_owner(f"someone/else:{name}") == ""  # not slim's repository
    assert reaper.tag_owner("slim-lease:0123456789abcdef") == ""  # an owner-less (old) lease


@dataclass
class FakeContainer:
    id: str
    labels: dict[str, str]
    removed: list[str]

    def remove(self, force: bool = False, v: bool = False) -> None:
        assert force and v
        self.removed.append(self.id)


@dataclass
class FakeImage:
    tags: list[str]


@dataclass
class FakeClient:
    removed: list[str] = field(default_factory=list)
    containers: Any = None
    images: Any = None

    def __post_init__(self) -> None:
        outer = self
        dead, live = finished_owner(), reaper.owner()
        self.dead, self.live = dead, live

        class Containers:
            def list(self, all: bool = False, filters: dict[str, str] | None = None) -> list[FakeContainer]:
                assert all and filters == {"label": reaper.OWNER_LABEL}
                return [FakeContainer("dead-c", {reaper.OWNER_LABEL: dead}, outer.removed),
                        FakeContainer("live-c", {reaper.OWNER_LABEL: live}, outer.removed),
                        FakeContainer("odd-c", {reaper.OWNER_LABEL: "x"}, outer.removed)]

        class Images:
            def list(self, name: str = "") -> list[FakeImage]:
                return [FakeImage([f"{name}:{dead}-1", f"{name}:{live}-2", f"{name}:plain", "user/app:1"])]

            def remove(self, tag: str, force: bool = False) -> None:
                assert not force  # a name another holder keeps the image by
                outer.removed.append(tag)

        self.containers, self.images = Containers(), Images()


def test_sweep_removes_only_what_dead_owners_left() -> None:
    client = FakeClient()
    assert reaper.sweep(client) == 3
    assert client.removed == ["dead-c", f"slim-trace:{client.dead}-1", f"slim-lease:{client.dead}-1"]


def test_the_watchdog_sweeps_its_own_owner_even_while_it_is_still_dying() -> None:
    client = FakeClient()
    reaper.sweep(client, only=client.live)
    assert client.removed == ["live-c", f"slim-trace:{client.live}-2", f"slim-lease:{client.live}-2"]


def run_watchdog(said: bytes, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "slim.reaper", reaper.owner()], input=said,
                          capture_output=True, env=env, timeout=60)


def test_the_watchdog_ends_without_the_daemon_after_a_goodbye(tmp_path: Any) -> None:
    # a `docker` module that fails on import: a goodbye must not even load the SDK
    (tmp_path / "docker.py").write_text("raise SystemExit(7)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    docker_used = b'{"docker": true}\n'
    assert run_watchdog(docker_used + reaper.BYE, env).returncode == 0
    assert run_watchdog(b"", env).returncode == 0  # no goodbye, but the daemon was never used
    assert run_watchdog(docker_used, env).returncode == 7  # no goodbye: it went for the daemon


def test_the_watchdog_removes_the_paths_still_listed_without_following_links(tmp_path: Any) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("not slim's")
    outside.chmod(0o755)
    work = tmp_path / "slim-run-x"
    (work / "root" / "ro").mkdir(parents=True)
    (work / "root" / "ro" / "f").write_text("x")
    (work / "root" / "link").symlink_to(outside)
    (work / "root" / "ro").chmod(0o500)
    done = tmp_path / "slim-build-y"
    done.mkdir()
    half = tmp_path / ".out.tar.slim-z"
    half.write_bytes(b"half")
    said = b"".join(json.dumps(m).encode() + b"\n" for m in (
        {"add": str(work)}, {"add": str(done)}, {"add": str(half)}, {"drop": str(done)}))
    assert run_watchdog(said, dict(os.environ)).returncode == 0
    assert not work.exists() and not half.exists()
    assert done.exists()  # dropped: removed by its maker (here: still there, so never touched)
    assert (outside / "keep").read_text() == "not slim's"
    assert outside.stat().st_mode & 0o777 == 0o755  # the link into it was not followed


def test_a_watchdog_needs_one_owner() -> None:
    assert reaper.main([]) == 2
    assert reaper.main(["not-an-owner"]) == 2
