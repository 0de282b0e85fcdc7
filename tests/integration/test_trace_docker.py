"""The docker runner: host strace through the host loader, in a container of the image root.

Both runners must see the same opened image files; nothing (container, image, temp dir, process)
may remain afterwards.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from slim.errors import TraceError
from slim.image import prepare_root
from slim.pipeline import load_image
from slim.tracers import RUNNERS
from slim.tracers import docker as docker_runner
from slim.tracers.probes import parse_probe
from slim.tracers.sandbox import SandboxRunner
from tests.conftest import have_docker, require

pytestmark = [pytest.mark.trace, pytest.mark.docker]

SAMPLES = Path(__file__).resolve().parents[2] / "sample_images"
SYSTEM = ("/proc", "/dev", "/sys", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname")


@pytest.fixture(scope="module")
def client():  # type: ignore[no-untyped-def]
    require(have_docker(), "a Docker daemon is needed")
    import docker

    return docker.from_env()


@pytest.fixture
def runner(client):  # type: ignore[no-untyped-def]
    cls = RUNNERS.get("docker")
    require(cls is not None and cls.available(), "docker runner unavailable")
    before_dirs = {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("slim-trace-")}
    yield cls()
    docker_runner.wait_for_removals()
    assert [c.name for c in client.containers.list(all=True)
            if any(t.startswith("slim-trace") for t in (c.image.tags or []))] == []
    assert [t for i in client.images.list() for t in i.tags if t.startswith(("slim-trace", "slim-lease"))] == []
    after = {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("slim-trace-")}
    assert after <= before_dirs


@pytest.fixture
def work(slim_work: Path) -> Iterator[Path]:
    yield slim_work


def sample_root(name: str, work: Path):  # type: ignore[no-untyped-def]
    path = SAMPLES / name / f"{name}.docker.tar"
    require(path.exists(), f"{path}: sample image not built")
    with load_image(f"docker-archive:{path}") as loaded:
        return prepare_root(loaded.image, str(work)), loaded.image.config


def image_files(paths: list[str]) -> set[str]:
    return {p for p in paths if not p.startswith(SYSTEM)}


@pytest.mark.parametrize("name", ["hello-glibc", "hello-musl", "shell-entrypoint",
                                  "busybox-static"])
def test_same_opened_files_as_the_sandbox(name: str, runner, work: Path) -> None:  # type: ignore[no-untyped-def]
    require(SandboxRunner.available(), "bwrap and strace are needed for the comparison")
    root, config = sample_root(name, work)
    in_docker = runner.run(root, config, [], timeout=60)
    in_sandbox = SandboxRunner().run(root, config, [], timeout=60)
    assert in_docker.exit_code == 0 == in_sandbox.exit_code, in_docker.stderr_tail
    assert in_docker.stdout_tail == in_sandbox.stdout_tail
    assert image_files(in_docker.trace.opened) == image_files(in_sandbox.trace.opened)
    assert in_docker.trace.executed == in_sandbox.trace.executed
    assert in_docker.trace.executed  # the app was seen at all


def test_http_probe_in_docker(runner, work: Path) -> None:  # type: ignore[no-untyped-def]
    root, config = sample_root("busybox-static", work)
    (Path(root) / "www").mkdir()
    (Path(root) / "www/index.html").write_text("docker page\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = replace(config, entrypoint=("/bin/busybox", "httpd", "-f", "-p", f"127.0.0.1:{port}",
                                         "-h", "/www"), cmd=())
    res = runner.run(root, config, [parse_probe(f"http:{port}"),
                                    parse_probe("exec:/bin/busybox true")], timeout=60)
    assert [p.passed for p in res.probes] == [True, True], res.probes
    assert res.observations[0].body == b"docker page\n"
    assert res.trace.paths["/www/index.html"].opened


def test_failures_in_docker(runner, work: Path) -> None:  # type: ignore[no-untyped-def]
    root, config = sample_root("busybox-static", work)
    with pytest.raises(TraceError, match="entrypoint not found"):
        runner.run(root, replace(config, entrypoint=("/nothere",), cmd=()), [])
    res = runner.run(root, replace(config, entrypoint=("/bin/sh", "-c", "echo boom >&2; exit 7"),
                                   cmd=()), [parse_probe("http:1")], timeout=20)
    assert res.exit_code == 7 and not res.passed
    assert "boom" in res.probes[0].detail


def test_an_app_that_exits_after_it_started_is_seen_gone(runner, work: Path) -> None:  # type: ignore[no-untyped-def]
    """An app that exits while slim waits for its port is noticed at once, with its exit code
    and its last words, not at the start-up deadline."""
    root, config = sample_root("busybox-static", work)
    start = time.monotonic()
    res = runner.run(root, replace(config, entrypoint=("/bin/sh", "-c", "sleep 2; echo late >&2; exit 5"),
                                   cmd=()), [parse_probe("http:1")], timeout=60)
    assert res.exit_code == 5 and not res.passed
    assert "late" in res.probes[0].detail
    assert time.monotonic() - start < 30  # not the 60 s start-up deadline


def test_an_image_the_daemon_stores_is_run_as_it_is(runner, client, work: Path) -> None:  # type: ignore[no-untyped-def]
    """The image's ID names its config, so a stored image with that ID has the image's files:
    the runner runs it instead of importing the private copy, and leaves it in place."""
    path = SAMPLES / "hello-glibc" / "hello-glibc.docker.tar"
    require(path.exists(), f"{path}: sample image not built")
    with load_image(f"docker-archive:{path}") as loaded:
        image_id = loaded.image.digest
        root = prepare_root(loaded.image, str(work))
        config = loaded.image.config
    was_there = any(i.id == image_id for i in client.images.list(all=True))
    with open(path, "rb") as f:
        client.images.load(f.read())
    try:
        stored = runner.run(root, config, [], timeout=60, image_id=image_id)
        assert stored.exit_code == 0 and stored.trace.executed, stored.stderr_tail
        client.images.get(image_id)  # still there: it was not slim's to remove
        # an ID the daemon does not have: the private copy is imported (and removed after)
        imported = runner.run(root, config, [], timeout=60, image_id="sha256:" + "0" * 64)
        assert imported.exit_code == 0
        assert image_files(imported.trace.opened) == image_files(stored.trace.opened)
    finally:
        if not was_there:
            client.images.remove(image_id, force=True)


def test_run_image_runs_from_the_store_and_unpacks_nothing(runner, client, work: Path,  # type: ignore[no-untyped-def]
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A docker-archive is loaded into the daemon (without its names: no tag moves), run from
    there and removed after; an image the daemon already stores is run as it is and left in
    place. Neither is unpacked, and both trace the files a run of an unpacked copy traces."""
    import json
    import tarfile

    import slim.tracers as tracers
    from slim.tracers.base import RunOptions

    path = SAMPLES / "hello-glibc" / "hello-glibc.docker.tar"
    require(path.exists(), f"{path}: sample image not built")
    options = RunOptions(runner="docker", timeout=60)
    real_prepare = tracers.prepare_root
    unpacked: list[str] = []

    def counting(image, dest, **kw):  # type: ignore[no-untyped-def]
        unpacked.append(dest)
        return real_prepare(image, dest, **kw)

    monkeypatch.setattr(tracers, "prepare_root", counting)
    with tarfile.open(path) as tf:
        f = tf.extractfile("manifest.json")
        assert f is not None
        names = json.load(f)[0].get("RepoTags") or []
    assert names, "the sample archive names its image"
    with load_image(f"docker-archive:{path}") as loaded:
        image_id = loaded.image.digest
        was_there = any(i.id == image_id for i in client.images.list(all=True))
        if was_there:
            client.images.remove(image_id, force=True)
        # the archive's name points at another image: loading it must not move that name
        others = [i for i in client.images.list() if i.id != image_id]
        borrowed = not others
        if borrowed:  # an empty daemon: another sample image to point the name at
            musl = SAMPLES / "hello-musl" / "hello-musl.docker.tar"
            require(musl.exists(), f"{musl}: sample image not built")
            with open(musl, "rb") as f:
                others = client.images.load(f.read())
        other = others[0]
        repo, _, tag = names[0].rpartition(":")
        try:
            before: str | None = client.images.get(names[0]).id
        except Exception:
            before = None
        other.tag(repo, tag)
        try:
            with monkeypatch.context() as m:  # no store: an unpacked copy is imported
                m.setattr(docker_runner.DockerRunner, "store", lambda self, archive, iid: False)
                copied = tracers.run_image(loaded, options)
            assert len(unpacked) == 1 and copied.exit_code == 0
            loaded_run = tracers.run_image(loaded, options)
            assert len(unpacked) == 1, "a loadable archive was unpacked"
            assert loaded_run.exit_code == 0 and loaded_run.trace.executed, loaded_run.stderr_tail
            assert image_files(loaded_run.trace.opened) == image_files(copied.trace.opened)
            docker_runner.wait_for_removals()
            assert not any(i.id == image_id for i in client.images.list(all=True)), "the loaded image stayed"
            assert client.images.get(names[0]).id == other.id, "loading moved a name"
            with open(path, "rb") as f:
                client.images.load(f.read())  # now the daemon has it: run as it is, left in place
            stored = tracers.run_image(loaded, options)
            assert len(unpacked) == 1 and stored.exit_code == 0
            assert image_files(stored.trace.opened) == image_files(copied.trace.opened)
            docker_runner.wait_for_removals()
            client.images.get(image_id)
        finally:
            docker_runner.wait_for_removals()
            if was_there:
                with open(path, "rb") as f:
                    client.images.load(f.read())  # the image and its name, as they were
            else:
                with contextlib.suppress(Exception):
                    client.images.remove(image_id, force=True)
                if before is None:  # the name only (`other` keeps its own); gone already when the
                    with contextlib.suppress(Exception):  # image it moved to was removed above
                        client.api.remove_image(names[0], noprune=True)
                elif before != other.id:
                    client.api.tag(before, repo, tag)
            if borrowed:
                with contextlib.suppress(Exception):
                    client.images.remove(other.id, force=True)


def test_runs_of_one_loaded_image_share_it_and_the_last_release_removes_it(  # type: ignore[no-untyped-def]
        runner, client, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each run holds a lease (a `slim-lease:` tag) on an image slim loaded: a second run
    (another fleet worker) shares the loaded image instead of loading it again, and the first
    release does not remove it from under the second; the last one does."""
    path = SAMPLES / "hello-glibc" / "hello-glibc.docker.tar"
    require(path.exists(), f"{path}: sample image not built")
    with load_image(f"docker-archive:{path}") as loaded:
        image_id = loaded.image.digest
    was_there = any(i.id == image_id for i in client.images.list(all=True))
    if was_there:
        client.images.remove(image_id, force=True)

    def leases() -> list[str]:
        try:
            return sorted(t for t in client.images.get(image_id).tags if t.startswith("slim-lease:"))
        except Exception:  # ImageNotFound
            return []

    first, second = type(runner)(), type(runner)()
    try:
        assert not first.stores(image_id)
        assert first.store(str(path), image_id)
        assert len(leases()) == 1
        assert not second.stores(image_id)  # only slim's leases name it: no user's image
        loads: list[str] = []
        real = docker_runner.load_archive
        monkeypatch.setattr(docker_runner, "load_archive",
                            lambda c, archive, iid: loads.append(archive) or real(c, archive, iid))
        assert second.store(str(path), image_id)
        assert loads == [] and len(leases()) == 2  # shared, not loaded again
        first.release(image_id)
        docker_runner.wait_for_removals()
        assert len(leases()) == 1 and client.images.get(image_id).id == image_id
        second.release(image_id)
        docker_runner.wait_for_removals()
        assert not any(i.id == image_id for i in client.images.list(all=True)), "the last release left it"
    finally:
        docker_runner.wait_for_removals()
        with contextlib.suppress(Exception):
            client.images.remove(image_id, force=True)
        if was_there:
            with open(path, "rb") as f:
                client.images.load(f.read())


def _sleeper_archive(dest: Path) -> None:
    """The busybox-static sample with an entrypoint that runs long (`sleep 120`): its traced
    run is still going when the test kills slim."""
    import json
    import tarfile

    from tests.imagekit import write_docker_archive

    path = SAMPLES / "busybox-static" / "busybox-static.docker.tar"
    require(path.exists(), f"{path}: sample image not built")
    with tarfile.open(path) as tf:
        manifest = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
        layers = [tf.extractfile(name).read() for name in manifest[0]["Layers"]]  # type: ignore[union-attr]
    write_docker_archive(str(dest), layers, {"Entrypoint": ["/bin/busybox", "sleep", "120"]}, repo_tags=[])


def test_a_killed_run_leaves_nothing_running_in_the_daemon(client, work: Path) -> None:  # type: ignore[no-untyped-def]
    """`kill -9` of slim mid-trace: its watchdog (slim.reaper) removes the container, whose app
    would otherwise run on, the loaded image's lease and the run's temporary directory (the
    strace bundle and log); the watchdog then ends."""
    import signal
    import subprocess
    import sys
    import time

    from slim import reaper

    require(RUNNERS["docker"].available(), "docker runner unavailable")
    archive = work / "sleeper.tar"
    _sleeper_archive(archive)
    tmp = work / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "slim", "analyze", f"docker-archive:{archive}",
                             "--trace", "--runner", "docker", "--format", "json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "TMPDIR": str(tmp)})

    def mine() -> tuple[list[str], list[str]]:
        owned = [c.id for c in client.containers.list(all=True, filters={"label": reaper.OWNER_LABEL})
                 if reaper.parse_owner(c.labels[reaper.OWNER_LABEL]) is not None
                 and reaper.parse_owner(c.labels[reaper.OWNER_LABEL])[2] == proc.pid]  # type: ignore[index]
        names = [t for repo in reaper.REPOSITORIES for i in client.images.list(name=repo) for t in i.tags
                 if (reaper.parse_owner(reaper.tag_owner(t)) or ("", 0, 0, 0))[2] == proc.pid]
        return owned, names

    def watchdogs() -> list[str]:
        out = subprocess.run(["pgrep", "-f", f"slim.reaper .*\\.{proc.pid}\\."], capture_output=True, text=True)
        return out.stdout.split()

    try:
        deadline = time.monotonic() + 90
        while not mine()[0]:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the traced container never started"
            time.sleep(0.2)
        containers, names = mine()
        assert len(containers) == 1 and client.containers.get(containers[0]).status == "running"
        assert names and all(n.startswith("slim-lease:") for n in names)
        assert len(watchdogs()) == 1
        assert [p.name for p in tmp.iterdir() if p.name.startswith("slim-trace-")]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    try:
        deadline = time.monotonic() + 30
        while (mine() != ([], []) or watchdogs()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert mine() == ([], []), "the watchdog left the dead run's container or image names"
        assert watchdogs() == []
        assert list(tmp.iterdir()) == []
    finally:
        reaper.sweep(client)  # what a failed watchdog left: the owner is dead


def test_the_sweep_removes_what_dead_owners_left_in_the_daemon(client) -> None:  # type: ignore[no-untyped-def]
    """What a run whose watchdog died with it left (a killed process group) is removed by the
    next run's sweep: its containers and its image names; a live owner's stay."""
    from slim import reaper
    from tests.unit.test_reaper import finished_owner

    path = SAMPLES / "busybox-static" / "busybox-static.docker.tar"
    require(path.exists(), f"{path}: sample image not built")
    with load_image(f"docker-archive:{path}") as loaded:
        was_there = any(i.id == loaded.image.digest for i in client.images.list(all=True))
    with open(path, "rb") as f:
        image = client.images.load(f.read())[0]
    dead, live = finished_owner(), reaper.owner()
    containers = [client.containers.create(image.id, ["/bin/busybox", "true"], network_mode="none",
                                           labels={reaper.OWNER_LABEL: owner}) for owner in (dead, live)]
    try:
        for owner in (dead, live):
            client.api.tag(image.id, "slim-lease", f"{owner}-test")
        assert reaper.sweep(client) >= 2
        left = {c.id for c in client.containers.list(all=True, filters={"label": reaper.OWNER_LABEL})}
        assert containers[0].id not in left and containers[1].id in left
        assert sorted(client.images.get(image.id).tags) == sorted([*image.tags, f"slim-lease:{live}-test"])
    finally:
        containers[1].remove(force=True)
        client.images.remove(f"slim-lease:{live}-test")
        if not was_there:
            client.images.remove(image.id, force=True)
