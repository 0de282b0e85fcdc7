"""Issue 3 acceptance on a real Debian image: the bench lighttpd image (debootstrap minbase +
lighttpd, written with slim.emitters.imagewriter) traced with an http probe in both runners —
bubblewrap (`sandbox`) and Docker (`docker`) — opens the same set of image files, and neither
leaves a container, image, mount, process or temp dir behind.

Paths each runtime provides itself are not the image's and are filtered out: /proc, /dev, /sys,
/tmp, /run, the resolver files a container engine bind-mounts (/etc/hosts, /etc/resolv.conf,
/etc/hostname) and the docker runner's strace bundle and log mounts.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slim.image import prepare_root
from slim.model import ImageConfig
from slim.pipeline import load_image
from slim.tracers import RUNNERS
from slim.tracers import docker as docker_runner
from slim.tracers.base import RunResult
from slim.tracers.probes import parse_probe
from tests.conftest import free_port, processes_mentioning, require

pytestmark = [pytest.mark.trace, pytest.mark.docker, pytest.mark.slow]

CONF = "/etc/lighttpd/bench.conf"
RUNTIME = ("/proc", "/dev", "/sys", "/tmp", "/run", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname",
           "/.slim-strace", "/.slim-trace-out")


def runtime_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in RUNTIME)






@pytest.fixture
def no_leftovers(tmp_path: Path, docker_client, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """A private work dir; afterwards no process, mount, temp dir, container or image of this
    test remains. Other slim runs may share the host, so only what this test made is checked:
    the runners' temp dirs go to a private TMPDIR (tempfile.tempdir), and the docker runner's
    client records the images it imports."""
    base = Path(tempfile.mkdtemp(prefix="slim-test-"))  # reachable by the sandbox's shifted ids
    private_tmp = base / "tmp"
    private_tmp.mkdir()
    work = base / "work"
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    imported: list[str] = []
    real_client = docker_runner._client

    def recording_client():  # type: ignore[no-untyped-def]
        client = real_client()
        real_import = client.api.import_image

        def import_image(*args, **kwargs):  # type: ignore[no-untyped-def]
            imported.append(f"{kwargs.get('repository')}:{kwargs.get('tag')}")
            return real_import(*args, **kwargs)

        client.api.import_image = import_image
        return client

    monkeypatch.setattr(docker_runner, "_client", recording_client)
    yield work
    marker = str(base)
    deadline = time.monotonic() + 10  # a stopped process may take a moment to be reaped
    while processes_mentioning(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_mentioning(marker) == []
    with open("/proc/self/mountinfo") as f:
        assert marker not in f.read()
    assert sorted(os.listdir(private_tmp)) == []
    docker_runner.wait_for_removals()
    assert imported, "the docker runner imported no image: was it used at all?"
    tags = {t for i in docker_client.images.list() for t in i.tags}
    assert [t for t in imported if t in tags] == []
    containers = [c.name for c in docker_client.containers.list(all=True)
                  if any(m.get("Source", "").startswith(marker) for m in c.attrs.get("Mounts", []))]
    assert containers == []
    shutil.rmtree(base, ignore_errors=True)


def runner(name: str):  # type: ignore[no-untyped-def]
    cls = RUNNERS.get(name)
    require(cls is not None and cls.available(), f"the {name} runner is unavailable on this host")
    return cls()


def traced(name: str, root: str, config: ImageConfig) -> RunResult:
    """Trace the prepared lighttpd root with runner `name`: its port moved to a free one (other
    runs may share the host), an http probe on the static page."""
    conf = Path(root) / CONF.lstrip("/")
    port = free_port()
    text, n = re.subn(r"server\.port\s*=\s*\d+", f"server.port = {port}", conf.read_text())
    assert n == 1, f"{CONF}: no server.port to move"
    conf.write_text(text)
    result = runner(name).run(root, config, [parse_probe(f"http:{port}/index.html")], timeout=90)
    assert [p.passed for p in result.probes] == [True], (name, result.probes, result.stderr_tail)
    assert b"hello from lighttpd" in result.observations[0].body
    return result


def test_lighttpd_opens_the_same_image_files_in_both_runners(lighttpd_archive: str,
                                                             no_leftovers: Path) -> None:
    runner("sandbox"), runner("docker")  # both must be available before spending time on a run
    runs: dict[str, RunResult] = {}
    files: dict[str, set[str]] = {}
    with load_image(f"docker-archive:{lighttpd_archive}") as loaded:
        fs = loaded.rootfs
        for name in ("sandbox", "docker"):
            work = no_leftovers / name
            work.mkdir()
            root = prepare_root(loaded.image, str(work))  # a private copy per run
            t0 = time.monotonic()
            runs[name] = traced(name, root, loaded.image.config)
            print(f"\nlighttpd traced with {name}: {time.monotonic() - t0:.1f}s")
            files[name] = {p for p in runs[name].trace.opened
                           if not runtime_path(p) and (fs.lexists(p) or fs.exists(p))}
    for name, run in runs.items():
        assert "/usr/sbin/lighttpd" in run.trace.executed, name
        assert CONF in files[name] and "/srv/www/index.html" in files[name], name
        assert any("/libpcre2-8.so" in p for p in files[name]), name
    only_sandbox = sorted(files["sandbox"] - files["docker"])
    only_docker = sorted(files["docker"] - files["sandbox"])
    assert (only_sandbox, only_docker) == ([], []), "opened image files differ between the runners"
