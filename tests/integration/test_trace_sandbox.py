"""The sandbox runner (bubblewrap + strace) on the committed sample images.

Each test asserts that nothing is left behind: no process, no mount, no temp dir.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from slim.errors import TraceError
from slim.image import prepare_root
from slim.model import ImageConfig
from slim.pipeline import load_image
from slim.tracers import RUNNERS, SandboxRunner, choose_runner
from slim.tracers.probes import parse_probe
from tests.conftest import free_port, processes_mentioning, require

pytestmark = pytest.mark.trace

SAMPLES = Path(__file__).resolve().parents[2] / "sample_images"


def sample(name: str) -> str:
    path = SAMPLES / name / f"{name}.docker.tar"
    require(path.exists(), f"{path}: sample image not built")
    return f"docker-archive:{path}"


@pytest.fixture(autouse=True)
def sandbox_tools() -> None:
    require(SandboxRunner.available(), "bwrap and strace are needed for the sandbox runner")


def slim_temp_dirs() -> set[str]:
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("slim-trace-")}




@pytest.fixture
def no_leftovers() -> Iterator[Path]:
    """A private work dir under a slim-* temp directory (where slim runs images from: the
    sandbox's shifted ids must reach it); afterwards no process, mount or temp dir of the run
    may remain."""
    before = slim_temp_dirs()
    work = Path(tempfile.mkdtemp(prefix="slim-test-"))
    yield work
    shutil.rmtree(work, ignore_errors=True)
    marker = str(work)
    assert processes_mentioning(marker) == []
    with open("/proc/self/mountinfo") as f:
        assert marker not in f.read()
    assert slim_temp_dirs() <= before




def busybox_root(work: Path) -> tuple[str, ImageConfig]:
    """The busybox-static sample extracted, plus a web page and an /etc/passwd."""
    with load_image(sample("busybox-static")) as loaded:
        root = prepare_root(loaded.image, str(work))
        config = loaded.image.config
    (Path(root) / "www").mkdir()
    (Path(root) / "www/index.html").write_text("hello from the sandbox\n")
    (Path(root) / "etc").mkdir(exist_ok=True)
    (Path(root) / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
    return root, config


def test_registry_and_auto() -> None:
    assert RUNNERS["sandbox"] is SandboxRunner
    assert choose_runner("sandbox").name == "sandbox"
    with pytest.raises(TraceError, match="nope"):
        choose_runner("nope")


def test_run_to_completion_glibc(no_leftovers: Path) -> None:
    with load_image(sample("hello-glibc")) as loaded:
        root = prepare_root(loaded.image, str(no_leftovers))
        res = SandboxRunner().run(root, loaded.image.config, [], timeout=30)
    assert res.exit_code == 0 and res.passed
    assert "hello from slim" in res.stdout_tail
    trace = res.trace
    assert trace.executed == ["/app/hello"]
    opened = set(trace.opened)
    assert {"/etc/ld.so.cache", "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib/x86_64-linux-gnu/libz.so.1"} <= opened
    # nothing of bwrap's own setup (host libraries, pivot_root) leaks into the trace
    assert not any(p.startswith(str(no_leftovers)) for p in trace.paths)
    assert "pivot_root" not in trace.syscalls and "execve" in trace.syscalls
    assert trace.missing == ["/etc/ld.so.preload"]


def test_http_server_probe_and_exec_probe(no_leftovers: Path) -> None:
    root, config = busybox_root(no_leftovers)
    port = free_port()
    config = replace(config, entrypoint=("/bin/busybox",),
                     cmd=("httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"), workdir="/www")
    probes = [parse_probe(f"http:{port}/index.html"),
              parse_probe(f"tcp:{port}:GET / HTTP/1.0\\r\\n\\r\\n:200"),
              parse_probe("exec:/bin/busybox cat /www/index.html"),
              parse_probe("cmd:/bin/busybox echo once")]
    res = SandboxRunner().run(root, config, probes, timeout=30)
    assert [p.passed for p in res.probes] == [True, True, True, True], res.probes
    assert res.exit_code is None  # it was serving until we stopped it
    assert res.observations[0].body == b"hello from the sandbox\n"
    assert res.trace.paths["/www/index.html"].opened
    assert "/bin/busybox" in res.trace.executed
    assert {"accept", "bind", "listen", "socket"} <= set(res.trace.syscalls)
    assert "/etc/httpd.conf" in res.trace.missing


def test_entrypoint_missing(no_leftovers: Path) -> None:
    root, config = busybox_root(no_leftovers)
    with pytest.raises(TraceError, match=r"nothere.*entrypoint not found"):
        SandboxRunner().run(root, replace(config, entrypoint=("nothere",), cmd=()), [])


def test_probe_never_ready(no_leftovers: Path) -> None:
    root, config = busybox_root(no_leftovers)
    config = replace(config, entrypoint=("/bin/busybox", "sleep", "600"), cmd=())
    start = time.monotonic()
    res = SandboxRunner().run(root, config, [parse_probe(f"http:{free_port()}")], timeout=2)
    assert time.monotonic() - start < 20
    assert not res.passed and "timeout" in res.probes[0].detail
    assert res.exit_code is None


def test_app_exits_at_once(no_leftovers: Path) -> None:
    root, config = busybox_root(no_leftovers)
    config = replace(config, entrypoint=("/bin/sh", "-c", "echo boom >&2; exit 7"), cmd=())
    res = SandboxRunner().run(root, config, [parse_probe(f"http:{free_port()}")], timeout=20)
    assert res.exit_code == 7 and not res.passed
    assert "code 7" in res.probes[0].detail and "boom" in res.probes[0].detail
    assert res.stderr_tail.strip() == "boom"


def test_app_daemonizes_and_exits(no_leftovers: Path) -> None:
    root, config = busybox_root(no_leftovers)
    port = free_port()
    # httpd without -f forks into the background and the main process exits 0: as in Docker,
    # the sandbox ends with its main process, and the report says why the probe failed
    config = replace(config, entrypoint=("/bin/busybox", "httpd", "-p", f"127.0.0.1:{port}",
                                         "-h", "/www"), cmd=())
    res = SandboxRunner().run(root, config, [parse_probe(f"http:{port}")], timeout=10)
    assert res.exit_code == 0 and not res.passed
    assert "daemonize" in res.probes[0].detail
    assert processes_mentioning(f"127.0.0.1:{port}") == []


def test_user_env_workdir_and_no_network(no_leftovers: Path) -> None:
    root, config = busybox_root(no_leftovers)
    config = replace(config, entrypoint=("/bin/sh", "-c", "id -u; id -g; pwd; echo $GREETING"),
                     cmd=(), user="nobody", workdir="/www", env=("GREETING=hi", "PATH=/bin"))
    res = SandboxRunner().run(root, config, [], network="none", timeout=20)
    assert res.exit_code == 0, res.stderr_tail
    assert res.stdout_tail.split() == ["65534", "65534", "/www", "hi"]
    port = free_port()
    server = replace(config, entrypoint=("/bin/busybox", "httpd", "-f", "-p", f"127.0.0.1:{port}"),
                     user="")
    res = SandboxRunner().run(root, server, [parse_probe(f"http:{port}")], network="none",
                              timeout=10)
    # the port is only inside the sandbox's own network namespace, and the probe enters it
    assert res.passed, res.probes


def test_unknown_user(no_leftovers: Path) -> None:
    root, config = busybox_root(no_leftovers)
    with pytest.raises(TraceError, match="ghost: user not found"):
        SandboxRunner().run(root, replace(config, user="ghost"), [])


def test_a_killed_build_leaves_no_files_and_no_process(no_leftovers: Path) -> None:
    """`kill -9` of `slim build` while the sandbox runs the original: bubblewrap dies with its
    parent, and the watchdog (slim.reaper) removes the unpacked root (by default in /dev/shm,
    RAM until the next boot), the run's strace directory and the build's staging directory
    beside the output."""
    import signal
    import subprocess
    import sys

    import tests.integration.test_trace_docker as docker_tests

    work = no_leftovers
    archive = work / "sleeper.tar"
    docker_tests._sleeper_archive(archive)
    run_dir, tmp, out = work / "run", work / "tmp", work / "out"
    for d in (run_dir, tmp, out):
        d.mkdir(mode=0o755)
        d.chmod(0o755)
    proc = subprocess.Popen([sys.executable, "-m", "slim", "build", f"docker-archive:{archive}",
                             "--runner", "sandbox", "--output", f"docker-archive:{out / 'app.tar'}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "TMPDIR": str(tmp), "SLIM_RUN_DIR": str(run_dir)})
    try:
        deadline = time.monotonic() + 90
        while not (list(run_dir.iterdir()) and processes_mentioning("sleep 120")):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the traced run never started"
            time.sleep(0.2)
        assert [p.name for p in tmp.iterdir() if p.name.startswith("slim-trace-")]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 30
    while (list(run_dir.iterdir()) or list(tmp.iterdir()) or list(out.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(run_dir.iterdir()) == [] and list(tmp.iterdir()) == [] and list(out.iterdir()) == []
    assert processes_mentioning("sleep 120") == []
