"""`slim manifest` end to end on every sample image and on the bench's lighttpd image (issue 20):
the layout (every kept regular file and link where the image has it, inside the output, the
program in place), the verdict, the blockers with the files that need them, the next command.

The samples run traced (the sandbox runner): the verdicts count only what the program does
after it starts, so hello-glibc and hello-musl "likely-run" on Nanos while the shell-script
image, which runs other programs, is "blocked" for that reason, with the script named.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from slim.manifest import write_manifest
from slim.pipeline import AnalyzeOptions, Tracing, analyzed
from slim.tracers.base import RunOptions
from tests.conftest import require

pytestmark = pytest.mark.trace

SAMPLES = Path(__file__).resolve().parents[2] / "sample_images"
TARGETS = ("ops", "osv", "unikraft")

# image → (verdict on ops, osv, unikraft) with a trace, (a blocker that must appear on each)
EXPECTED = {
    "hello-glibc": (("likely-runs", "likely-runs", "likely-runs"), (None, None, None)),
    "hello-musl": (("likely-runs", "likely-runs", "likely-runs"), (None, None, None)),
    # static busybox: Nanos lacks getppid; OSv and the Unikraft elfloader need a PIE
    "busybox-static": (("blocked", "blocked", "blocked"), ("getppid", "PIE", "PIE")),
    "shell-entrypoint": (("blocked", "blocked", "blocked"), ("runs other programs",) * 3),
}


def _check_layout(out: Path, target: str, program: str) -> dict:
    marker = json.loads((out / "slim-manifest.json").read_text())
    assert marker["target"] == target and marker["program"] == program
    rootfs = out / "rootfs"
    for path in rootfs.rglob("*"):  # nothing escapes the output through a link
        if path.is_symlink():
            continue
        assert os.path.realpath(path).startswith(str(out.resolve()))
    if target != "osv" or not program.rsplit("/", 1)[-1].startswith(("ld-", "libc")):
        assert os.path.lexists(rootfs / program.lstrip("/")), program
    assert (out / "run.sh").stat().st_mode & 0o111
    return marker


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_samples_traced(name: str, tmp_path: Path) -> None:
    require(os.path.exists("/usr/bin/strace"), "strace not installed")
    verdicts, blockers = EXPECTED[name]
    tracing = Tracing(run=RunOptions(runner="sandbox", timeout=60))
    with analyzed(f"docker-archive:{SAMPLES / name / f'{name}.docker.tar'}", AnalyzeOptions(),
                  tracing) as analysis:
        for target, verdict, blocker in zip(TARGETS, verdicts, blockers, strict=True):
            out = tmp_path / target
            result = write_manifest(analysis, target, str(out))
            program = json.loads((out / "slim-manifest.json").read_text())["program"]
            marker = _check_layout(out, target, program)
            assert result.assessment.verdict == verdict, (target, result.assessment.blockers)
            assert marker["assessment"]["verdict"] == verdict
            assert not result.assessment.compat or not result.assessment.compat.upper_bound
            if blocker:
                found = [b for b in result.assessment.blockers if b.name == blocker]
                assert found and all(b.files for b in found), (target, result.assessment.blockers)
            assert marker["next"] and marker["next"] == list(result.next_commands)


def test_layers_whiteouts_has_no_program(tmp_path: Path) -> None:
    ref = f"docker-archive:{SAMPLES / 'layers-whiteouts' / 'layers-whiteouts.docker.tar'}"
    with analyzed(ref, AnalyzeOptions()) as analysis:
        result = write_manifest(analysis, "ops", str(tmp_path / "o"))
    assert result.assessment.verdict == "blocked"
    assert result.assessment.blockers[0].name == "ELF program"


def test_bench_lighttpd_static_and_traced(lighttpd_archive: str, tmp_path: Path) -> None:
    """A real Debian image: static → needs-trace (an upper bound decides nothing); traced →
    lighttpd's own start is not counted, its rootfs has the program and its modules."""
    with analyzed(lighttpd_archive, AnalyzeOptions()) as analysis:
        static = write_manifest(analysis, "ops", str(tmp_path / "static"))
    assert static.assessment.verdict == "needs-trace"
    assert all(b.files for b in static.assessment.blockers)
    tracing = Tracing(run=RunOptions(runner="sandbox", timeout=60))
    with analyzed(lighttpd_archive, AnalyzeOptions(), tracing) as analysis:
        for target in TARGETS:
            out = tmp_path / target
            result = write_manifest(analysis, target, str(out))
            _check_layout(out, target, "/usr/sbin/lighttpd")
            assert not any(b.name in ("runs other programs", "starts other processes")
                           for b in result.assessment.blockers), result.assessment.blockers
            assert result.assessment.verdict in ("likely-runs", "needs-work", "blocked")
            assert any("lighttpd" in c for c in result.next_commands)
        assert (tmp_path / "ops/rootfs/usr/lib/lighttpd").is_dir()
