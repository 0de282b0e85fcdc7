"""The HTML report: squarified layout geometry, self-containment, escaping, headline numbers."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slim.emitters import EMITTERS
from slim.emitters.report_html import Rect, directory_groups, package_blocks, render_html, squarify
from slim.pipeline import AnalyzeOptions, analyze, load_image
from slim.result import AnalysisResult, KeptFile, PathBytes
from slim.units import format_bytes

SAMPLE = Path(__file__).resolve().parents[3] / "sample_images" / "hello-glibc" / "hello-glibc.docker.tar"


@pytest.fixture(scope="module")
def analysed() -> tuple[AnalysisResult, object]:
    with load_image(f"docker-archive:{SAMPLE}") as loaded:
        analysis = analyze(loaded, AnalyzeOptions())
        return analysis.result, analysis.closure


@given(st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=40))
def test_squarify_tiles_the_rectangle(sizes: list[int]) -> None:
    sizes = sorted(sizes, reverse=True)
    canvas = Rect(10, 20, 300, 200)
    rects = squarify(sizes, canvas)
    assert len(rects) == len(sizes)
    total = sum(sizes)
    for size, r in zip(sizes, rects, strict=True):
        assert r.w * r.h == pytest.approx(size / total * canvas.w * canvas.h, rel=1e-6, abs=1e-6)
        assert r.x >= canvas.x - 1e-6 and r.y >= canvas.y - 1e-6
        assert r.x + r.w <= canvas.x + canvas.w + 1e-6 and r.y + r.h <= canvas.y + canvas.h + 1e-6
    assert sum(r.w * r.h for r in rects) == pytest.approx(canvas.w * canvas.h)


def test_squarify_is_square_ish() -> None:
    # the paper's example: 6 6 4 3 2 2 1 in a 6x4 rectangle gives aspect ratios near 1
    rects = squarify([6, 6, 4, 3, 2, 2, 1], Rect(0, 0, 6, 4))
    worst = max(max(r.w / r.h, r.h / r.w) for r in rects)
    assert worst < 3
    assert squarify([0, 0], Rect(0, 0, 5, 5)) == [Rect(0, 0, 0, 0), Rect(0, 0, 0, 0)]


def test_headline_numbers_and_sections(analysed: tuple[AnalysisResult, object]) -> None:
    result, closure = analysed
    page = render_html(result, why=closure.graph.why)  # type: ignore[attr-defined]
    assert result.removable is not None and result.efficiency is not None
    assert f'id="size" data-value="{result.image.size_bytes}">{format_bytes(result.image.size_bytes)}<' in page
    assert f">{format_bytes(result.removable.size_bytes)}<" in page
    assert f"{100 * result.efficiency.score:.1f} %" in page
    assert page.count("<svg") == 2 and 'class="removable"' in page
    assert "<h2>Layers</h2>" in page and "<h2>Top dependency chains</h2>" in page
    assert "argv[0] /app/hello" in page  # an evidence chain from the closure graph
    assert page == render_html(result, why=closure.graph.why)  # type: ignore[attr-defined]


def test_self_contained(analysed: tuple[AnalysisResult, object]) -> None:
    page = render_html(analysed[0])
    # nothing to fetch: no src/href attributes, no @import, no url(); the only URL is the SVG namespace
    assert not re.search(r"\b(src|href)\s*=", page)
    assert "@import" not in page and "url(" not in page
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) == {"http://www.w3.org/2000/svg"}
    assert "default-src 'none'" in page


def test_untrusted_strings_are_escaped(analysed: tuple[AnalysisResult, object]) -> None:
    import dataclasses

    result = analysed[0]
    evil = '"><script>alert(1)</script>'
    hostile = dataclasses.replace(
        result, image=dataclasses.replace(result.image, reference=evil),
        keep=[*result.keep, KeptFile("/x" + evil, 5, ("needed",))],
        largest_files=[PathBytes("/y" + evil, 3)],
    )
    page = render_html(hostile)
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_treemap_blocks_add_up(analysed: tuple[AnalysisResult, object]) -> None:
    result = analysed[0]
    groups = directory_groups(result)
    assert sum(g.size for g, _ in groups) == result.image.size_bytes
    for group, blocks in groups:
        assert sum(b.size for b in blocks) == group.size
        assert all(0 <= b.kept <= b.size for b in blocks)
    pkgs = package_blocks(result)
    assert sum(b.size for b in pkgs) == result.image.size_bytes


def test_emitter_writes_page(analysed: tuple[AnalysisResult, object]) -> None:
    buf = io.StringIO()
    EMITTERS["html"].emit(analysed[0], buf, color=False)
    assert buf.getvalue().startswith("<!DOCTYPE html>")
