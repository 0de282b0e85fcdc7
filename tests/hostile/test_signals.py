"""Signals: SIGTERM, SIGHUP and SIGINT in the middle of a run leave nothing behind (TMPDIR, the
staging dir next to the output, the output itself), exit 128+N after one line; a docker-daemon:
read killed even with SIGKILL leaves no saved image."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.conftest import have_docker, require
from tests.hostile import forge
from tests.hostile.forge import T
from tests.hostile.harness import Sandbox, baseline, check, run_slim


def _busy_image(box: Sandbox, files: int = 20_000) -> str:
    """An image whose analysis and build take seconds: many small Python files to capture."""
    members = [T("app", "d")]
    members += [T(f"app/m{i}.py", data=f"import os\nx = {i}\n".encode() + b"# pad\n" * 150)
                for i in range(files)]
    members.append(T("app/run.sh", data=b"#!/bin/sh\necho hi\n", mode=0o755))
    return str(forge.docker_archive(box.inputs / "busy.tar", [forge.tar(members)],
                                    {"Entrypoint": ["/app/run.sh"], "WorkingDir": "/app"}))


def _after(seconds: float):
    return lambda _box, elapsed: elapsed >= seconds


def _staging_appeared(out: Path):
    return lambda _box, _elapsed: any(p.name.startswith(".") for p in out.iterdir())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT],
                         ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_signal_during_analyze(box: Sandbox, signum: int) -> None:
    ref = _busy_image(box)
    report = box.out / "r.json"
    before = baseline(box)
    run = run_slim(box, "analyze", ref, "-f", "json", "-o", str(report),
                   signal_after=_after(1.5), send=signum)
    name = signal.Signals(signum).name
    check(box, run, rc=128 + signum, before=before)
    assert f"slim: interrupted by {name}" in run.stderr
    assert not report.exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_signal_during_build_removes_the_staging_dir(box: Sandbox, signum: int) -> None:
    ref = _busy_image(box)
    dest = box.out / "img"
    before = baseline(box)
    run = run_slim(box, "build", ref, "-o", f"oci:{dest}", "--no-verify",
                   signal_after=_staging_appeared(box.out), send=signum)
    check(box, run, rc=128 + signum, before=before)
    assert not dest.exists() and not list(box.out.iterdir())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_during_the_analysis_of_a_build(box: Sandbox, signum: int) -> None:
    """A signal while `slim build` analyzes (before anything is staged) leaves nothing behind.
    (With an original the runner stores, the analysis runs in a thread beside the run:
    tests/unit/test_static_start.py interrupts the wait for it.)"""
    ref = _busy_image(box)
    dest = box.out / "img"
    before = baseline(box)
    # this image is read in about 0.4 s and analyzed for about 1.4 s after that (2 cores)
    run = run_slim(box, "build", ref, "-o", f"oci:{dest}", "--no-verify", signal_after=_after(1.0),
                   send=signum)
    check(box, run, rc=128 + signum, before=before)
    assert f"slim: interrupted by {signal.Signals(signum).name}" in run.stderr
    assert not dest.exists() and not list(box.out.iterdir())


def test_two_signals_do_not_cut_the_cleanup_short(box: Sandbox) -> None:
    ref = _busy_image(box)
    dest = box.out / "img"
    sent: list[float] = []

    def twice(b: Sandbox, elapsed: float) -> bool:
        if _staging_appeared(box.out)(b, elapsed) and len(sent) < 2:
            sent.append(elapsed)
            return True
        return False

    before = baseline(box)
    run = run_slim(box, "build", ref, "-o", f"oci:{dest}", "--no-verify", signal_after=twice)
    if run.rc == 143:
        check(box, run, rc=143, before=before)
    assert not list(box.tmp.iterdir()) and not list(box.out.iterdir())


def test_sigterm_during_manifest_extraction(box: Sandbox) -> None:
    ref = _busy_image(box, 30_000)
    dest = box.out / "manifest"
    before = baseline(box)
    run = run_slim(box, "manifest", ref, "--target", "ops", "-o", str(dest),
                   signal_after=lambda b, _e: any(b.tmp.iterdir()))
    check(box, run, rc=143, before=before)
    assert not dest.exists()


@pytest.mark.docker
def test_killed_docker_daemon_read_leaves_no_save(box: Sandbox) -> None:
    require(have_docker(), "a Docker daemon")
    import subprocess

    images = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
                            capture_output=True, text=True, check=True).stdout.split()
    name = next((i for i in images if "<none>" not in i), None)
    borrowed = None
    if name is None:  # an empty daemon (a fresh CI machine): a sample image, removed after
        sample = Path(__file__).resolve().parents[2] / "sample_images" / "hello-glibc" / "hello-glibc.docker.tar"
        require(sample.exists(), f"{sample}: sample image not built")
        loaded = subprocess.run(["docker", "load", "-q", "-i", str(sample)], capture_output=True, text=True,
                                check=True).stdout.split()
        name = borrowed = loaded[-1]  # "Loaded image: NAME:TAG"
    try:
        for delay in (0.3, 0.8, 1.5):
            run = run_slim(box, "analyze", f"docker-daemon:{name}", "--no-static", "-f", "json",
                           "-o", str(box.out / "r.json"), signal_after=_after(delay), send=signal.SIGKILL)
            assert run.rc in (0, -9)
            assert not list(box.tmp.iterdir()), f"left in TMPDIR after SIGKILL at {delay} s"
    finally:
        if borrowed is not None:
            subprocess.run(["docker", "rmi", "-f", borrowed], capture_output=True)
