"""run_image: when a runner's own image store serves the run, and when slim unpacks a copy.

A fake runner records what it was asked; the archives are made by tests/hostile/forge.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import slim.tracers as tracers
from slim.fs.rootfs import RootFS
from slim.model import ImageConfig
from slim.pipeline import load_image
from slim.tracers.base import Probe, Runner, RunOptions, RunResult, Session
from slim.tracers.trace import Trace
from tests.hostile import forge
from tests.hostile.forge import APP_CONFIG, T, app_files


class FakeRunner(Runner):
    name = "fake"
    stored: set[str] = set()
    calls: list[tuple[str, str]] = []

    @classmethod
    def available(cls) -> bool:
        return True

    def session(self, image_root: str | RootFS, config: ImageConfig, *, network: str,
                image_id: str = "") -> Session:
        raise AssertionError("run is faked whole")

    def find_program(self, session: Session, config: ImageConfig, name: str) -> str | None:
        return None

    def stores(self, image_id: str) -> bool:
        return image_id in self.stored

    def store(self, archive: str, image_id: str) -> bool:
        self.calls.append(("store", archive))
        self.stored.add(image_id)
        return True

    def release(self, image_id: str) -> None:
        self.calls.append(("release", image_id))
        self.stored.discard(image_id)

    def run(self, image_root: str | RootFS, config: ImageConfig, probes: list[Probe], *,
            network: str = "none", timeout: float = 60.0, image_id: str = "") -> RunResult:
        self.calls.append(("run", "copy" if isinstance(image_root, str) else "store"))
        return RunResult(Trace(), [], 0)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeRunner]:
    FakeRunner.stored, FakeRunner.calls = set(), []
    monkeypatch.setitem(tracers.RUNNERS, "fake", FakeRunner)
    real = tracers.prepare_root

    def prepare(image: Any, dest: str, **kw: Any) -> str:
        FakeRunner.calls.append(("unpack", ""))
        return real(image, dest, **kw)

    monkeypatch.setattr(tracers, "prepare_root", prepare)
    return FakeRunner


def _run(archive: Path) -> list[tuple[str, str]]:
    with load_image(f"docker-archive:{archive}") as loaded:
        tracers.run_image(loaded, RunOptions(runner="fake", probes=(), timeout=5))
        return [c for c in FakeRunner.calls if c[0] != "release"] + [
            ("release", "") for c in FakeRunner.calls if c[0] == "release" and c[1] == loaded.image.digest]


def test_a_clean_archive_is_loaded_run_from_the_store_and_released(fake: type[FakeRunner], tmp_path: Path) -> None:
    archive = forge.docker_archive(tmp_path / "img.tar", [forge.tar(app_files())], APP_CONFIG)
    assert _run(archive) == [("store", str(archive)), ("run", "store"), ("release", "")]


def test_a_stored_image_runs_as_it_is_and_stays(fake: type[FakeRunner], tmp_path: Path) -> None:
    archive = forge.docker_archive(tmp_path / "img.tar", [forge.tar(app_files())], APP_CONFIG)
    with load_image(f"docker-archive:{archive}") as loaded:
        fake.stored.add(loaded.image.digest)
    assert _run(archive) == [("run", "store")]


def test_an_archive_the_reader_refused_parts_of_is_never_handed_to_the_store(
        fake: type[FakeRunner], tmp_path: Path) -> None:
    """A member climbing out of the root is skipped by slim's reader: such an archive runs from
    slim's own extraction, never raw through the runner's loader."""
    layer = forge.tar([*app_files(), T("../../escape", data=b"x"), T("app/out", "l", link="/../../etc")])
    archive = forge.docker_archive(tmp_path / "img.tar", [layer], APP_CONFIG)
    with load_image(f"docker-archive:{archive}") as loaded:
        assert loaded.issues
    assert _run(archive) == [("unpack", ""), ("run", "copy")]


def test_other_sources_are_unpacked(fake: type[FakeRunner], tmp_path: Path) -> None:
    oci = forge.oci(tmp_path / "oci", [forge.tar(app_files())], APP_CONFIG)
    with load_image(f"oci:{oci}") as loaded:
        tracers.run_image(loaded, RunOptions(runner="fake", timeout=5))
    assert fake.calls == [("unpack", ""), ("run", "copy")]


def test_the_archive_handed_to_docker_load_is_the_image_without_names(tmp_path: Path) -> None:
    """Only the manifest (RepoTags emptied), the config and the layers go to the daemon, under
    names slim chose; read back, it is the same image (same ID, same layer digests)."""
    import io
    import json
    import tarfile

    from slim.tracers.docker import _unnamed_archive

    archive = forge.docker_archive(tmp_path / "img.tar", [forge.tar(app_files()), forge.tar([T("x", data=b"1")])],
                                   APP_CONFIG)
    with tarfile.open(archive, "a") as tf:  # members docker load would also have extracted
        for name in ("repositories", "../outside"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tf.addfile(info, io.BytesIO(b"{}"))
    with tarfile.open(archive) as tf:
        f = tf.extractfile("manifest.json")
        assert f is not None
        entry = json.load(f)[0]
    out = tmp_path / "unnamed.tar"
    with open(out, "wb") as f:
        _unnamed_archive(str(archive), entry, f)
    with tarfile.open(out) as tf:
        assert tf.getnames() == ["manifest.json", "config.json", "layer0.tar", "layer1.tar"]
        f2 = tf.extractfile("manifest.json")
        assert f2 is not None
        assert json.load(f2) == [{"Config": "config.json", "RepoTags": None,
                                  "Layers": ["layer0.tar", "layer1.tar"]}]
    with load_image(f"docker-archive:{archive}") as a, load_image(f"docker-archive:{out}") as b:
        assert a.image.digest == b.image.digest
        assert [r.diff_id for r in a.layers] == [r.diff_id for r in b.layers]


def test_on_ready_comes_when_the_image_is_ready_and_says_whether_the_run_is_quiet(
        fake: type[FakeRunner], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The static analysis may run beside a run once loading or unpacking is over (pipeline.
    Meanwhile): on_ready comes after those, before the run, once; `quiet` is False only when
    the runner still copies an unpacked root into a store of its own (Docker's import)."""
    options = RunOptions(runner="fake", probes=(), timeout=5)

    def on_ready(quiet: bool) -> None:
        FakeRunner.calls.append(("ready", str(quiet)))

    archive = forge.docker_archive(tmp_path / "img.tar", [forge.tar(app_files())], APP_CONFIG)
    with load_image(f"docker-archive:{archive}") as loaded:
        tracers.run_image(loaded, options, on_ready=on_ready)
        assert fake.calls == [("store", str(archive)), ("ready", "True"), ("run", "store"),
                              ("release", loaded.image.digest)]
        fake.calls.clear()
        fake.stored.add(loaded.image.digest)  # the user's: run as it is
        tracers.run_image(loaded, options, on_ready=on_ready)
        assert fake.calls == [("ready", "True"), ("run", "store")]
    fake.stored.clear()
    oci = forge.oci(tmp_path / "oci", [forge.tar(app_files())], APP_CONFIG)  # unpacked, never loaded
    for copies, quiet in ((False, "True"), (True, "False")):
        monkeypatch.setattr(FakeRunner, "copies_root", copies)
        fake.calls.clear()
        with load_image(f"oci:{oci}") as loaded:
            tracers.run_image(loaded, options, on_ready=on_ready)
        assert fake.calls == [("unpack", ""), ("ready", quiet), ("run", "copy")]


def test_the_static_analysis_runs_beside_a_run_that_followed_a_load(
        fake: type[FakeRunner], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`analyzed` with a traced run: the image is loaded into the runner's store first (no
    thread beside the load), then the static analysis runs in its thread while the image runs,
    and the analysis comes out as without a thread."""
    from slim import pipeline
    from slim.pipeline import AnalyzeOptions, Tracing, analyzed

    seen: list[str] = []
    real_store, real_run, real_start = FakeRunner.store, FakeRunner.run, pipeline.StaticStart.__init__

    def store(self: FakeRunner, archive: str, image_id: str) -> bool:
        seen.append("store")
        return real_store(self, archive, image_id)

    def run(self: FakeRunner, *args: Any, **kw: Any) -> RunResult:
        seen.append("run")
        return real_run(self, *args, **kw)

    def start(self: Any, *args: Any, **kw: Any) -> None:
        seen.append("static thread")
        real_start(self, *args, **kw)

    monkeypatch.setattr(FakeRunner, "store", store)
    monkeypatch.setattr(FakeRunner, "run", run)
    monkeypatch.setattr(pipeline.StaticStart, "__init__", start)
    archive = forge.docker_archive(tmp_path / "img.tar", [forge.tar(app_files())], APP_CONFIG)
    tracing = Tracing(run=RunOptions(runner="fake", probes=(), timeout=5))
    with analyzed(f"docker-archive:{archive}", AnalyzeOptions(), tracing) as overlapped:
        keep = overlapped.closure.keep if overlapped.closure is not None else set()
    assert seen == ["store", "static thread", "run"]
    with analyzed(f"docker-archive:{archive}", AnalyzeOptions()) as alone:
        assert alone.closure is not None and keep == alone.closure.keep
