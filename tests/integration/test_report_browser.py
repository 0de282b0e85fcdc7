"""The HTML report opened in headless Chromium (Debian's `chromium`): the page renders from the
file alone, with background networking disabled, and the DOM shows the headline numbers."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from slim.emitters.report_html import render_html
from slim.pipeline import AnalyzeOptions, analyze, load_image
from slim.units import format_bytes
from tests.conftest import require

pytestmark = pytest.mark.browser

SAMPLE = Path(__file__).resolve().parents[2] / "sample_images" / "hello-glibc" / "hello-glibc.docker.tar"


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def dump_dom(browser: str, page: Path) -> str:
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_html_report_in_chromium(tmp_path: Path) -> None:
    browser = chromium()
    require(browser is not None, "chromium is not installed (apt-get install chromium)")
    assert browser is not None
    with load_image(f"docker-archive:{SAMPLE}") as loaded:
        analysis = analyze(loaded, AnalyzeOptions())
        result, closure = analysis.result, analysis.closure
    assert closure is not None and result.removable is not None and result.efficiency is not None
    page = tmp_path / "report.html"
    page.write_text(render_html(result, why=closure.graph.why), encoding="utf-8")
    dom = dump_dom(browser, page)
    # the DOM after scripts ran (not the file we wrote): chromium parsed and rendered it
    assert "<html" in dom and "slim report" in dom
    size = result.image.size_bytes
    assert f">{format_bytes(size)}</div>" in dom
    assert f">{format_bytes(result.removable.size_bytes)}</div>" in dom
    assert f">{100 * result.removable.size_bytes / size:.1f} %</div>" in dom
    assert f">{100 * result.efficiency.score:.1f} %</div>" in dom
    assert dom.count("<rect") > 4  # the treemaps came through as SVG
