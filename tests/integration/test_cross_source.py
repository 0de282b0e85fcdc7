"""One image, every source: docker-daemon:, docker-archive:, oci: and docker:// (a loopback
registry) give the same JSON report; only `image.reference` differs.

The daemon exception: a `docker load`ed image keeps no compressed blobs, so `docker save` hands
out uncompressed layers — their blob digest and blob size are the daemon's, not the archive's
(OCI image-spec: a layer descriptor's digest is that of the blob as transported). Everything
derived from the layer *contents* (diff_ids, sizes, files, keep set) must still be identical.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, require

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_images" / "hello-glibc"
ARCHIVE = SAMPLE / "hello-glibc.docker.tar"
OCI = SAMPLE / "hello-glibc.oci"
REGISTRY_BIN = "/usr/bin/docker-registry"


def slim_json(reference: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`slim analyze -f json REFERENCE`, parsed (the CLI, as a user runs it)."""
    proc = run_slim(reference, env)
    assert proc.returncode == 0, f"{reference}: exit {proc.returncode}: {proc.stderr}"
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def run_slim(reference: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slim", "analyze", "-f", "json", reference],
                          cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=300)


def without_reference(report: dict[str, Any], *, transport: bool = False) -> dict[str, Any]:
    """The report minus image.reference (and, with `transport`, each layer's blob digest/size)."""
    out = copy.deepcopy(report)
    out["image"].pop("reference")
    if transport:
        for layer in out["image"]["layers"]:
            layer.pop("digest", None)
            layer.pop("blob_bytes", None)
    return out


@pytest.fixture(scope="module")
def samples() -> None:
    require(ARCHIVE.exists() and OCI.is_dir(), f"{SAMPLE}: sample image not built")


@pytest.fixture(scope="module")
def archive_report(samples: None) -> dict[str, Any]:
    return slim_json(f"docker-archive:{ARCHIVE}")


@pytest.fixture(scope="module")
def daemon_image(docker_client, samples: None) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The sample loaded into the daemon under a private tag. Afterwards the daemon holds what
    it held before: the private tag is removed, and so are the archive's own tags when the load
    added them (an image other tags name stays)."""
    before = {t for i in docker_client.images.list() for t in i.tags}
    with open(ARCHIVE, "rb") as f:
        images = docker_client.images.load(f.read())
    assert len(images) == 1
    added = [t for t in images[0].tags if t not in before]
    tag = f"slim-test-cross-source:{uuid.uuid4().hex[:12]}"
    images[0].tag(tag)
    try:
        yield tag
    finally:
        for name in [tag, *added]:
            docker_client.images.remove(name, noprune=False)


@pytest.mark.docker
def test_archive_oci_and_daemon_give_the_same_report(archive_report: dict[str, Any],
                                                      daemon_image: str) -> None:
    oci = slim_json(f"oci:{OCI}")
    daemon = slim_json(f"docker-daemon:{daemon_image}")
    assert archive_report["image"]["reference"] != oci["image"]["reference"]
    assert without_reference(oci) == without_reference(archive_report)
    assert without_reference(daemon, transport=True) == without_reference(archive_report, transport=True)
    assert [la["diff_id"] for la in daemon["image"]["layers"]] == \
        [la["diff_id"] for la in archive_report["image"]["layers"]]
    assert archive_report["keep"], "the sample's keep set is empty: nothing was compared"


def _cold_then_warm(monkeypatch: pytest.MonkeyPatch, ref: str, *more: str) -> list[Any]:
    """check_image of `ref`, a miss; then of `ref` and each of `more` with saving refused: hits
    found by `docker inspect` alone."""
    from slim.budget import BudgetConfig
    from slim.check_cache import check_image
    from slim.sources import daemon as daemon_source

    cold = check_image(ref, BudgetConfig())
    assert not cold.cached and cold.result.keep

    def no_save(self, ref):  # type: ignore[no-untyped-def]
        raise AssertionError("a cache hit must not save the image")

    with monkeypatch.context() as m:
        m.setattr(daemon_source.DaemonSource, "open", no_save)
        return [cold, *(check_image(r, BudgetConfig()) for r in (ref, *more))]


@pytest.mark.docker
def test_an_unchanged_daemon_image_is_checked_from_the_cache_without_a_save(
        daemon_image: str, docker_client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The pre-push hook's case: `slim check` (and `slim analyze`) of an image built into the
    daemon. The second time, `docker inspect` alone finds the entry (the daemon's ID and
    diff_ids): nothing is saved or hashed. When the name then moves to another image, that one
    is saved and analyzed, never answered from the first one's entry."""
    from slim.budget import BudgetConfig
    from slim.check_cache import check_image

    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path / "cache"))
    ref = f"docker-daemon:{daemon_image}"
    cold, warm = _cold_then_warm(monkeypatch, ref)
    assert warm.cached and warm.result == cold.result
    # the CLI: a miss stores the report under the daemon's ID, the second run is that entry
    first = slim_json(ref, env={"SLIM_CACHE_DIR": str(tmp_path / "cache")})
    assert list((tmp_path / "cache" / "analyze").glob("*.json"))
    again = subprocess.run([sys.executable, "-m", "slim", "-v", "analyze", "-f", "json", ref], cwd=REPO,
                           env={**os.environ, "SLIM_CACHE_DIR": str(tmp_path / "cache")},
                           capture_output=True, text=True, timeout=300)
    assert json.loads(again.stdout) == first
    assert "cache hit" in again.stderr and "come from its store: not hashed" in again.stderr
    # the name now names another image: a miss, and the report is that image's
    other = REPO / "sample_images" / "hello-musl" / "hello-musl.docker.tar"
    require(other.exists(), f"{other}: sample image not built")
    before = {t for i in docker_client.images.list() for t in i.tags}
    with open(other, "rb") as f:
        (musl,) = docker_client.images.load(f.read())
    added = [t for t in musl.tags if t not in before]
    old_id = docker_client.images.get(daemon_image).id
    musl.tag(daemon_image)
    try:
        moved = check_image(ref, BudgetConfig())
        assert not moved.cached and moved.result.image.digest == musl.id != old_id
        assert slim_json(ref, env={"SLIM_CACHE_DIR": str(tmp_path / "cache")})["image"]["digest"] == musl.id
    finally:
        docker_client.images.get(old_id).tag(daemon_image)  # the fixture removes its tag
        for name in added:  # what the load added (the image goes with its last tag)
            docker_client.images.remove(name)


@pytest.mark.docker
def test_a_bare_name_of_a_daemon_image_is_checked_from_the_cache_too(
        daemon_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`image = "app:latest"` in .slim.toml, `slim analyze app:latest`: the name a user types
    is looked up in the daemon like `docker-daemon:app:latest`, so its re-check is `docker
    inspect` alone too (it saved and hashed the whole image on every push). The report names
    the image as the user did; a bare name the daemon lacks is the usual error, not a cache's."""
    from slim.budget import BudgetConfig
    from slim.check_cache import check_image
    from slim.errors import SourceError

    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path / "cache"))
    # the explicit transport finds the same entry: one image, one key
    cold, warm, explicit = _cold_then_warm(monkeypatch, daemon_image, f"docker-daemon:{daemon_image}")
    assert warm.cached and warm.result == cold.result
    assert explicit.cached and explicit.result.image.reference == f"docker-daemon:{daemon_image}"
    assert warm.result.image.reference == daemon_image
    env = {"SLIM_CACHE_DIR": str(tmp_path / "cache")}
    first = slim_json(daemon_image, env=env)
    again = subprocess.run([sys.executable, "-m", "slim", "-v", "analyze", "-f", "json", daemon_image], cwd=REPO,
                           env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert json.loads(again.stdout) == first and first["image"]["reference"] == daemon_image
    assert "cache hit" in again.stderr and "come from its store: not hashed" in again.stderr
    absent = f"slim-test-absent-{uuid.uuid4().hex[:12]}:latest"
    with pytest.raises(SourceError, match="no such image or file"):
        check_image(absent, BudgetConfig())


# -- docker:// against a loopback registry ---------------------------------------------------------




def wait_listening(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"docker-registry exited {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"docker-registry: not listening on 127.0.0.1:{port}")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A docker-registry (distribution) on 127.0.0.1:PORT with a temp storage dir; killed after."""
    require(os.access(REGISTRY_BIN, os.X_OK), f"{REGISTRY_BIN}: not installed (apt-get install docker-registry)")
    require(shutil.which("skopeo") is not None, "skopeo is not installed")
    work = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = work / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {work / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_listening(port, proc, time.monotonic() + 30)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        assert proc.poll() is not None


@pytest.fixture(scope="module")
def pushed(registry: str, samples: None) -> str:
    ref = f"{registry}/slim-test/hello-glibc:1"
    proc = subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{OCI}:latest",
                           f"docker://{ref}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return ref


@pytest.fixture
def registry_env(tmp_path: Path) -> dict[str, str]:
    """Plain-HTTP registry; a private slim cache so no earlier copy is reused."""
    return {"SLIM_REGISTRY_TLS_VERIFY": "false", "SLIM_CACHE_DIR": str(tmp_path / "cache")}


@pytest.mark.registry
def test_registry_gives_the_same_report(archive_report: dict[str, Any], pushed: str,
                                        registry_env: dict[str, str]) -> None:
    report = slim_json(f"docker://{pushed}", registry_env)
    assert report["image"]["reference"].endswith(pushed)
    assert without_reference(report) == without_reference(archive_report)


@pytest.mark.registry
def test_a_registry_image_analyzed_again_is_read_from_the_result_cache(
        pushed: str, registry: str, registry_env: dict[str, str]) -> None:
    """`slim analyze docker://…` a second time: skopeo finds the copy in slim's registry cache
    up to date, and the result cache answers for its digests (the blobs are the files read
    before, unchanged: not hashed again). When the tag then names another image, that image
    is analyzed: its report, never the first one's entry."""
    ref = f"{registry}/slim-test/moving:1"

    def push(layout: str) -> None:
        proc = subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", layout, f"docker://{ref}"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr

    def analyze() -> tuple[dict[str, Any], str]:
        proc = subprocess.run([sys.executable, "-m", "slim", "-v", "analyze", "-f", "json", f"docker://{ref}"],
                              cwd=REPO, env={**os.environ, **registry_env}, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout), proc.stderr

    push(f"oci:{OCI}:latest")
    first, log = analyze()
    assert "cache hit" not in log and first["keep"]
    again, log = analyze()
    assert again == first
    assert "analyze cache hit" in log and "not hashed again" in log, log
    other = REPO / "sample_images" / "hello-musl" / "hello-musl.docker.tar"
    require(other.exists(), f"{other}: sample image not built")
    push(f"docker-archive:{other}")
    moved, log = analyze()
    assert "cache hit" not in log
    assert moved["image"]["digest"] != first["image"]["digest"]
    assert moved["keep"] != first["keep"]


@pytest.mark.registry
def test_missing_registry_image_exits_3_with_one_line(registry: str, registry_env: dict[str, str]) -> None:
    proc = run_slim(f"docker://{registry}/slim-test/no-such-image:1", registry_env)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "no-such-image" in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.docker
def test_missing_daemon_image_exits_3_with_one_line(docker_client) -> None:  # type: ignore[no-untyped-def]
    proc = run_slim(f"docker-daemon:slim-test-no-such-image:{uuid.uuid4().hex[:8]}")
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "slim-test-no-such-image" in lines[0], proc.stderr
