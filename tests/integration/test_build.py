"""`slim build` end to end on the sample images with the sandbox runner (bubblewrap + strace):
static-only builds that verify, a wrong keep set caught and repaired by verification, a failed
verification that leaves nothing, reproducible digests, `--keep-base`, and `--load` into Docker."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import slim.build
import slim.errors
from slim.build import BuildOptions, build
from slim.cli import app
from slim.pipeline import AnalyzeOptions, load_image
from tests.conftest import have_docker, require

pytestmark = pytest.mark.trace

SAMPLES = Path(__file__).resolve().parents[2] / "sample_images"
LIBZ = "/usr/lib/x86_64-linux-gnu/libz.so.1"
HELLO_OUTPUT = "hello from slim (zlib"
cli = CliRunner()


def oci(name: str) -> str:
    return f"oci:{SAMPLES / name / f'{name}.oci'}"


@pytest.fixture(autouse=True)
def sandbox_tools() -> None:
    require(bool(shutil.which("bwrap") and shutil.which("strace")),
            "the sandbox runner needs bwrap and strace")


@pytest.fixture
def out(tmp_path: Path) -> Iterator[Path]:
    """An output directory; afterwards no staging directory may remain beside the outputs."""
    d = tmp_path / "out"
    d.mkdir()
    yield d
    assert [p for p in os.listdir(d) if p.startswith((".slim-", "slim-build-"))] == []


def files_of(ref: str) -> dict[str, int]:
    """Every non-directory path of an image with its size."""
    with load_image(ref) as loaded:
        return {e.path: e.size for e in loaded.rootfs.walk() if not e.is_dir}


def run_build(ref: str, dest: str, **kw: object) -> slim.build.BuildOutcome:
    opts = BuildOptions(dest=dest, runner="sandbox", network="none", timeout=30.0)
    return build(ref, AnalyzeOptions(), dataclasses.replace(opts, **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["hello-glibc", "hello-musl", "shell-entrypoint", "busybox-static"])
def test_static_only_build_verifies(name: str, out: Path) -> None:
    dest = f"oci:{out / name}"
    res = cli.invoke(app, ["build", oci(name), "--output", dest, "--runner", "sandbox",
                                      "--network", "none", "--report", str(out / "r.json")])
    assert res.exit_code == 0, res.output
    assert "(verified: " in res.output
    report = json.loads((out / "r.json").read_text())
    b = report["build"]
    assert b["verified"] is True and b["fixes"] == [] and b["output"] == dest
    before, after = files_of(oci(name)), files_of(dest)
    assert set(after) <= set(before)
    assert b["size_bytes"] == sum(after.values()) <= sum(before.values())
    with load_image(dest) as loaded:
        assert loaded.image.digest == b["digest"]
        config = loaded.image.config
        # the kept config names the source, and the entrypoint is in the minimal image
        assert dict(config.labels)["org.slim.source-digest"] == report["image"]["digest"]
        assert loaded.rootfs.resolve(config.argv[0] if config.argv[0].startswith("/")
                                     else f"/bin/{config.argv[0]}").exists
    if name == "hello-glibc":
        # the waste of the sample goes: headers, static archive, docs, foreign locales
        for gone in ("/usr/include/zlib.h", "/usr/lib/x86_64-linux-gnu/libz.a",
                     "/usr/share/doc/docs-only/README", "/usr/share/locale/de/LC_MESSAGES/libc.mo"):
            assert gone in before and gone not in after
        # a kept package keeps its copyright file (issue 19: the license it ships under)
        assert "/usr/share/doc/libc6/copyright" in after
        assert LIBZ in after and b["reduction"] > 1.0


def test_traced_build_of_a_script(out: Path) -> None:
    outcome = run_build(oci("shell-entrypoint"), f"oci:{out / 'img'}", mode="both")
    assert outcome.verified is True
    reasons = {k.path: k.source for k in outcome.result.keep}
    assert "traced" in reasons.values()


def test_trace_only_build_is_no_larger_and_still_verifies(out: Path) -> None:
    both = run_build(oci("shell-entrypoint"), f"oci:{out / 'both'}", mode="both")
    traced = run_build(oci("shell-entrypoint"), f"oci:{out / 'traced'}", mode="traced")
    assert both.verified is True and traced.verified is True
    assert traced.built is not None and both.built is not None
    assert traced.built.size_bytes <= both.built.size_bytes
    # the script's interpreter is never in a trace (the kernel opens it): static analysis of
    # the traced script adds it
    kept = {k.path for k in traced.result.keep}
    assert "/bin/busybox" in kept


def _without_libz(monkeypatch: pytest.MonkeyPatch) -> None:
    """A static analysis that misses libz (until verification names it as a fix)."""
    real = slim.build.analyze

    def analyze(loaded, options, **kw):  # type: ignore[no-untyped-def]
        analysis = real(loaded, options, **kw)
        if not any("libz" in p for p in options.fixes):
            closure = analysis.closure
            closure.keep = {p for p in closure.keep if "/libz.so" not in p}
        return analysis

    monkeypatch.setattr(slim.build, "analyze", analyze)


def test_wrong_keep_set_is_caught_and_repaired(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _without_libz(monkeypatch)
    dest = out / "img"
    outcome = run_build(oci("hello-glibc"), f"oci:{dest}")
    assert outcome.verified is True
    # the loader found libz through the /lib link in the original run and missed it in the
    # minimal run: that path (any spelling of it) is the fix, with the failure as its reason
    fixed = [f for f in outcome.fixes if f["path"].endswith("/libz.so.1")]
    assert fixed, outcome.fixes
    assert "libz.so.1: cannot open shared object file" in fixed[0]["reason"]
    assert fixed[0]["attempt"] == "1"
    assert outcome.result.build["fixes"] == outcome.fixes
    kept = {k.path: k.reasons for k in outcome.result.keep}
    assert "verify-fix" in kept[LIBZ]
    after = files_of(f"oci:{dest}")
    assert LIBZ in after and "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13" in after
    # the repair added what was missing, not everything the original had
    assert "/usr/include/zlib.h" not in after


def test_failed_verification_exits_1_and_leaves_nothing(out: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _without_libz(monkeypatch)
    dest = out / "img"
    res = cli.invoke(app, ["build", oci("hello-glibc"), "--output", f"oci:{dest}",
                                      "--runner", "sandbox", "--network", "none",
                                      "--max-fixes", "0"])
    assert res.exit_code == 1, res.output
    assert "verification FAILED" in res.output and "libz.so.1" in res.output
    assert not dest.exists()
    res = cli.invoke(app, ["build", oci("hello-glibc"), "--output", f"oci:{dest}",
                                      "--runner", "sandbox", "--network", "none",
                                      "--max-fixes", "0", "--keep-unverified"])
    assert res.exit_code == 1 and dest.is_dir()


def test_reproducible_and_same_config_in_every_form(out: Path) -> None:
    a = run_build(oci("hello-glibc"), f"oci:{out / 'a'}")
    b = run_build(oci("hello-glibc"), f"oci:{out / 'b'}")
    c = run_build(oci("hello-glibc"), f"docker-archive:{out / 'c.tar'}")
    assert a.built and b.built and c.built
    assert a.built.digest == b.built.digest == c.built.digest
    assert (out / "a" / "index.json").read_bytes() == (out / "b" / "index.json").read_bytes()
    with load_image(f"oci:{out / 'a'}") as x, load_image(f"docker-archive:{out / 'c.tar'}") as y:
        assert x.image.digest == y.image.digest == a.built.digest
        assert [r.diff_id for r in x.layers] == [r.diff_id for r in y.layers]


def test_the_probes_run_on_the_plain_form_of_the_image_published_compressed(
        out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Verification loads the minimal image with plain layers while the gzip form is written
    beside it; what is published is the image verified: the same ID, the same layer tars."""
    seen: list[tuple[str, list[str], list[str]]] = []
    real = slim.build.verify_image

    def spy(staged, original, options):  # type: ignore[no-untyped-def]
        with load_image(str(staged)) as loaded:
            seen.append((loaded.image.digest, [r.compression for r in loaded.layers],
                         [r.diff_id for r in loaded.layers]))
        return real(staged, original, options)

    monkeypatch.setattr(slim.build, "verify_image", spy)
    outcome = run_build(oci("hello-glibc"), f"oci:{out / 'img'}", keep_base=1)
    assert outcome.verified is True and outcome.built is not None
    ((digest, compressions, diff_ids),) = seen
    assert compressions[1] == "none"  # slim's layer; the kept base layer is the source's blob
    with load_image(f"oci:{out / 'img'}") as published:
        assert published.image.digest == digest == outcome.built.digest
        assert [r.compression for r in published.layers] == [compressions[0], "gzip"]
        assert [r.diff_id for r in published.layers] == diff_ids


def test_a_published_image_that_is_not_the_verified_one_is_refused(
        out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from slim.emitters.image import Writing

    real = Writing.result

    def other(self):  # type: ignore[no-untyped-def]
        return dataclasses.replace(real(self), digest="sha256:" + "0" * 64)

    monkeypatch.setattr(Writing, "result", other)
    with pytest.raises(slim.errors.EmitError, match=r"but the image verified is sha256:.*not published"):
        run_build(oci("hello-glibc"), f"oci:{out / 'img'}")
    assert not (out / "img").exists()


def _manifest(layout: Path) -> dict[str, object]:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":")[1]
    return json.loads((layout / "blobs" / "sha256" / digest).read_text())


def test_keep_base_keeps_the_base_blob(out: Path) -> None:
    src = SAMPLES / "hello-glibc" / "hello-glibc.oci"
    outcome = run_build(f"oci:{src}", f"oci:{out / 'img'}", keep_base=1)
    assert outcome.verified is True and outcome.built and outcome.built.layers == 2
    base = _manifest(src)["layers"][0]["digest"]  # type: ignore[index]
    mine = _manifest(out / "img")["layers"]  # type: ignore[index]
    assert mine[0]["digest"] == base
    blob = (out / "img" / "blobs" / "sha256" / base.split(":")[1]).read_bytes()
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == base
    assert blob == (src / "blobs" / "sha256" / base.split(":")[1]).read_bytes()
    # the base is shared as it was (its files stay, waste included); the slimmed layer on top
    # carries the upper layer's kept entries, and the reported size is the real one
    after = files_of(f"oci:{out / 'img'}")
    assert LIBZ in after and "/app/hello" in after and "/usr/include/zlib.h" in after
    assert outcome.built.size_bytes == sum(after.values())
    with load_image(f"oci:{src}") as source:
        upper = set(source.layers[1].tree.entries)
    with load_image(f"oci:{out / 'img'}") as loaded:
        slimmed = set(loaded.layers[1].tree.entries)
    # only entries of the source's upper layer, the app among them (its /tmp, kept empty as
    # runtime scaffolding, is there when that layer made it)
    assert {"/app", "/app/hello"} <= slimmed <= upper


@pytest.mark.docker
def test_load_and_tag_into_docker(out: Path) -> None:
    require(have_docker(), "needs a Docker daemon")
    tag = f"slim-test-build:{uuid.uuid4().hex[:8]}"
    res = cli.invoke(app, ["build", oci("hello-glibc"), "--output",
                                      f"docker-archive:{out / 'img.tar'}", "--load", "--tag", tag,
                                      "--runner", "sandbox", "--network", "none"])
    try:
        assert res.exit_code == 0, res.output
        inspect = subprocess.run(["docker", "image", "inspect", tag, "--format", "{{.Id}}"],
                                 capture_output=True, text=True, check=False)
        assert inspect.returncode == 0, inspect.stderr
        with load_image(f"docker-archive:{out / 'img.tar'}") as loaded:
            assert inspect.stdout.strip() == loaded.image.digest
        run = subprocess.run(["docker", "run", "--rm", "--network", "none", tag],
                             capture_output=True, text=True, check=False, timeout=120)
        assert run.returncode == 0, run.stderr
        assert HELLO_OUTPUT in run.stdout
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, check=False)
