"""The bench harness runs end to end on the tiny committed sample image (`--quick`).

A benchmark is not a timed test: only the harness's shape is checked here — one Markdown table
with a row for the sample, measured floor and analyze times, n/a for what did not run — plus the
mirror lookup that keeps host names out of the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import require

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = os.path.join(REPO, "sample_images", "hello-glibc", "hello-glibc.docker.tar")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_bench_quick_runs_end_to_end(tmp_path: os.PathLike[str]) -> None:
    require(os.path.exists(SAMPLE), f"{SAMPLE}: sample image not built")
    out = os.path.join(tmp_path, "latest.md")
    env = dict(os.environ, SLIM_BENCH_CACHE=os.path.join(tmp_path, "cache"))
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-dive", "--output", out],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("|")]
    assert len(lines) == 3, proc.stdout  # header, separator, one image
    header, row = _cells(lines[0]), _cells(lines[2])
    assert len(header) == len(row)
    cell = dict(zip(header, row, strict=True))
    assert cell["image"].startswith("hello-glibc")
    assert float(cell["floor s"]) > 0
    assert float(cell["analyze s"]) > 0
    # the cells are rounded to 0.01 s: the ratio must lie within what the rounding allows
    analyze_s, floor_s = float(cell["analyze s"]), float(cell["floor s"])
    low = (analyze_s - 0.005) / (floor_s + 0.005)
    high = (analyze_s + 0.005) / max(floor_s - 0.005, 1e-9)
    assert low * 0.99 <= float(cell["x floor"]) <= high * 1.01
    assert float(cell["fs MB"]) > 0
    assert cell["dive efficiency"] == "n/a"  # --no-dive
    assert cell["probe (orig)"] in ("PASS", "FAIL", "n/a")
    with open(out) as f:
        doc = f.read()
    assert "machine: nproc" in doc and "kernel" in doc and "date:" in doc
    assert lines[2] in doc


def test_bench_rejects_unknown_image() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--images", "no-such-image"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "no-such-image" in proc.stderr


def test_mirror_comes_from_the_host_apt_sources(tmp_path: os.PathLike[str]) -> None:
    sys.path.insert(0, REPO)
    from bench.mirror import MirrorError, find_mirror

    d = os.path.join(tmp_path, "sources.list.d")
    os.makedirs(d)
    with open(os.path.join(d, "debian.sources"), "w") as f:
        f.write(
            "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n\n"
            "# comment\nTypes: deb-src deb\nURIs: http://mirror.invalid/debian\n"
            "Suites: bookworm bookworm-updates\nComponents: main\n"
        )
    assert find_mirror("bookworm", d, "/nonexistent") == "http://mirror.invalid/debian"
    with pytest.raises(MirrorError):
        find_mirror("trixie", d, "/nonexistent")
    legacy = os.path.join(tmp_path, "sources.list")
    with open(legacy, "w") as f:
        f.write("deb [arch=amd64] http://old.invalid/debian trixie main\n")
    assert find_mirror("trixie", d, legacy) == "http://old.invalid/debian"
