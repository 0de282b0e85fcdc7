"""`slim fleet` and `slim build --layers preserve` end to end, with the sandbox runner.

Recipe of the fleet images (built here with tests/imagekit): three layers — a base with the
busybox-static sample's busybox and a few links, a middle layer every image shares (two data
files, each used by one service), and a top of each service's own files — and a command that
reads some of them, so each service keeps a different part of the shared layers.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import slim
from slim.build import BuildOptions
from slim.cli import app
from slim.fleet import FleetOptions, run_fleet, service_specs
from slim.pipeline import load_image
from tests.conftest import free_port, is_root, require
from tests.imagekit import M, layer_tar, write_oci

pytestmark = pytest.mark.trace
cli = CliRunner()
SAMPLES = Path(__file__).resolve().parents[2] / "sample_images"
REPO = Path(slim.__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def sandbox_tools() -> None:
    require(bool(shutil.which("bwrap") and shutil.which("strace")), "bwrap and strace")
    require(is_root(), "the sandbox's user namespace (slim runs images as root in CI)")


def _images(tmp: Path) -> dict[str, str]:
    with load_image(f"oci:{SAMPLES / 'busybox-static' / 'busybox-static.oci'}") as loaded:
        busybox = loaded.rootfs.read("/bin/busybox")
    base = layer_tar([M("bin", "d"), M("bin/busybox", data=busybox, mode=0o755),
                      M("bin/sh", "l", link="busybox"), M("bin/cat", "l", link="busybox"),
                      M("bin/echo", "l", link="busybox"), M("etc", "d"),
                      M("etc/motd", data=b"welcome\n"),
                      M("etc/unused.conf", data=random.Random(7).randbytes(200_000)),
                      M("tmp", "d")])
    shared = layer_tar([M("usr", "d"), M("usr/share", "d"), M("usr/share/a.txt", data=b"for alpha\n"),
                        M("usr/share/b.txt", data=b"for beta\n"), M("usr/share/junk", data=b"j" * 3000)])
    commands = {"alpha": "cat /etc/motd /usr/share/a.txt /srv/own.txt",
                "beta": "cat /etc/motd /usr/share/b.txt /srv/own.txt",
                "gamma": "echo gamma; cat /srv/own.txt"}
    refs = {}
    for name, command in commands.items():
        top = layer_tar([M("srv", "d"), M("srv/own.txt", data=f"{name}'s own\n".encode())])
        write_oci(str(tmp / "src" / name), [base, shared, top], {"Cmd": ["/bin/sh", "-c", command]})
        refs[name] = f"oci:{tmp / 'src' / name}"
    return refs


def _layers(layout: Path) -> list[str]:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    return [layer["digest"] for layer in manifest["layers"]]


def _files(ref: str) -> set[str]:
    with load_image(ref) as loaded:
        return {e.path for e in loaded.rootfs.walk()}


def test_three_images_share_one_slim_base(tmp_path: Path) -> None:
    refs = _images(tmp_path)
    out = tmp_path / "fleet"
    options = FleetOptions(output=str(out), workers=2,
                           build=BuildOptions(dest="", runner="sandbox", timeout=30.0))
    outcome = run_fleet(service_specs(list(refs.values()), {}), options)
    assert outcome.output == str(out) and outcome.verified
    # every published image ran under its probes and behaved as its original
    assert [p.verified for p in outcome.published] == [True, True, True]
    assert all(p.compared for p in outcome.published)
    layers = {name: _layers(out / name) for name in refs}
    assert len({ls[0] for ls in layers.values()}) == 1  # one base, byte-identical, same digest
    assert len({ls[1] for ls in layers.values()}) == 3
    base = out / "alpha" / "blobs" / "sha256" / layers["alpha"][0].split(":")[1]
    assert os.stat(base).st_nlink == 3  # stored once on disk
    for name in refs:
        got = _files(f"oci:{out / name}")
        assert "/etc/unused.conf" not in got and "/usr/share/junk" not in got
        assert ("/usr/share/a.txt" in got) == (name == "alpha")  # base + top = its own image
    assert sorted(os.listdir(out)) == ["alpha", "beta", "fleet.json", "gamma", "report.html", "report.md"]
    report = json.loads((out / "fleet.json").read_text())
    given, shared = (next(f for f in report["footprints"] if f["layout"] == k) for k in ("given", "shared"))
    assert shared["pulled"]["total"] < given["pulled"]["total"]
    assert "<svg" in (out / "report.html").read_text()


def test_a_failing_service_leaves_nothing(tmp_path: Path) -> None:
    refs = _images(tmp_path)
    broken = tmp_path / "src" / "broken"
    write_oci(str(broken), [layer_tar([M("bin", "d"), M("etc", "d")])], {"Cmd": ["/bin/not-there"]})
    out = tmp_path / "fleet"
    res = cli.invoke(app, ["fleet", refs["gamma"], f"oci:{broken}", "-o", str(out),
                           "--runner", "sandbox", "--workers", "1"])
    assert res.exit_code == 3, res.output
    assert res.output.count("\n") <= 3 and "Traceback" not in res.output
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as f:
        return subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def _wait_for_workers(address: str, count: int, deadline: float) -> None:
    from distributed import Client

    while time.monotonic() < deadline:
        try:
            with Client(address, timeout=5) as client:
                if len(client.scheduler_info().get("workers", {})) >= count:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{address}: {count} workers did not register in time")


def test_fleet_on_a_dask_cluster_preserves_and_shares_layers(tmp_path: Path) -> None:
    refs = _images(tmp_path)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    dask = [sys.executable, "-m", "dask"]
    procs = [_start([*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                     "--no-dashboard"], env, tmp_path / "scheduler.log")]
    try:
        for i in range(2):
            procs.append(_start([*dask, "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                                 "--no-dashboard", "--name", f"w{i}",
                                 "--local-directory", str(tmp_path / f"w{i}")],
                                env, tmp_path / f"worker{i}.log"))
        _wait_for_workers(address, 2, time.monotonic() + 60)
        out = tmp_path / "fleet"
        res = cli.invoke(app, ["fleet", refs["alpha"], refs["beta"], "-o", str(out),
                               "--scheduler", address, "--layers", "preserve", "--runner", "sandbox"])
        assert res.exit_code == 0, res.output + "".join(
            p.read_text(errors="replace")[-2000:] for p in tmp_path.glob("*.log"))
        assert "2 images on 2 Dask workers" in res.output
    finally:
        for proc in reversed(procs):
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    alpha, beta = _layers(out / "alpha"), _layers(out / "beta")
    assert len(alpha) == len(beta) == 3  # the original layer count
    assert alpha[:2] == beta[:2]  # both shared layers slimmed together: one version each
    assert alpha[2] != beta[2]
    got = _files(f"oci:{out / 'alpha'}")
    # the shared middle layer holds what either service keeps (a.txt and b.txt), not the junk
    assert {"/usr/share/a.txt", "/usr/share/b.txt"} <= got and "/usr/share/junk" not in got


def test_build_layers_preserve_keeps_the_layer_count(tmp_path: Path) -> None:
    src = SAMPLES / "hello-glibc" / "hello-glibc.oci"
    dest = tmp_path / "img"
    res = cli.invoke(app, ["build", f"oci:{src}", "-o", f"oci:{dest}", "--layers", "preserve",
                           "--runner", "sandbox"])
    assert res.exit_code == 0, res.output
    assert "(verified: " in res.output
    with load_image(f"oci:{src}") as original, load_image(f"oci:{dest}") as slimmed:
        assert len(slimmed.layers) == len(original.layers) == 2
        before = {e.path for e in original.rootfs.walk()}
        after = {e.path for e in slimmed.rootfs.walk()}
    assert after < before and "/usr/include/zlib.h" not in after and "/app/hello" in after
    res = cli.invoke(app, ["build", f"oci:{src}", "-o", f"oci:{tmp_path / 'x'}", "--layers",
                           "preserve", "--keep-base", "1", "--no-verify"])
    assert res.exit_code == 2 and "--keep-base" in res.output
