"""The Markdown report: headline numbers, sections, escaping of untrusted image data, and the
pull-request size limit (tables truncated with a note)."""

from __future__ import annotations

from pathlib import Path

import pytest

from slim.emitters import EMITTERS
from slim.emitters.report_markdown import MAX_CHARS, md_text, render_markdown
from slim.pipeline import AnalyzeOptions, analyze, load_image
from slim.result import (
    AnalysisResult,
    Efficiency,
    ImageSummary,
    KeptFile,
    LayerSummary,
    PackageSummary,
    PathBytes,
    Totals,
    UnknownItem,
    Verdict,
    WasteCategory,
)
from slim.units import format_bytes

SAMPLE = Path(__file__).resolve().parents[3] / "sample_images" / "hello-glibc" / "hello-glibc.docker.tar"


@pytest.fixture(scope="module")
def sample() -> AnalysisResult:
    with load_image(f"docker-archive:{SAMPLE}") as loaded:
        result = analyze(loaded, AnalyzeOptions()).result
    return result


def big_result(n: int) -> AnalysisResult:
    image = ImageSummary(
        reference="evil|<script>@octocat", digest="sha256:" + "1" * 64, os="linux", architecture="amd64",
        entrypoint=("/app",), cmd=(), env={}, workdir="/", user="", size_bytes=10_000_000, file_count=n,
        layers=tuple(LayerSummary(i, f"sha256:{i}", "", f"RUN step {i} | <b>x</b>", 1000 + i, 1) for i in range(60)),
    )
    return AnalysisResult(
        image=image, efficiency=Efficiency(0.75, 100, 0.1, 50),
        reachable=Totals(6_000_000, 10), removable=Totals(4_000_000, n - 10),
        largest_dirs=[PathBytes(f"/d{i}", 100_000 - i, 3) for i in range(20)],
        largest_files=[PathBytes(f"/d{i}/f", 50_000 - i) for i in range(20)],
        keep=[KeptFile(f"/keep/{i:05d}/" + "x" * 80, i, ("needed",)) for i in range(n)],
        packages=[PackageSummary(f"pkg{i}", "1.0", "dpkg", 5000 + i, i % 3, i % 3 == 0) for i in range(n)],
        unknowns=[UnknownItem(f"/u/{i}", "reason " * 10) for i in range(n)],
        waste=[WasteCategory("docs", "Docs `x`", 1234, 2)],
        verdicts=[Verdict("max_size", "fail", "9.5 MiB", "5.0 MiB", "too big")],
    )


def test_headline_and_sections(sample: AnalysisResult) -> None:
    md = render_markdown(sample)
    img = sample.image
    assert sample.removable is not None and sample.efficiency is not None
    first = md.splitlines()[2]
    assert f"**{format_bytes(img.size_bytes)}**" in first
    pct = 100 * sample.removable.size_bytes / img.size_bytes
    assert f"removable **{format_bytes(sample.removable.size_bytes)} ({pct:.1f} %)**" in first
    assert f"efficiency **{100 * sample.efficiency.score:.1f} %**" in first
    for heading in ("### Top removable packages", "### Top removable directories", "### Likely waste", "### Layers"):
        assert heading in md
    assert md.count("<details>") == md.count("</details>") >= 2
    for layer in img.layers:
        assert f"| {layer.index} | {format_bytes(layer.size_bytes)} |" in md
    assert md == render_markdown(sample)  # deterministic


def test_untrusted_text_is_escaped() -> None:
    assert md_text("a|b") == "a&#124;b"
    assert md_text("<img src=x onerror=alert(1)>") == "&lt;img src=x onerror=alert(1)&gt;"
    assert md_text("@octocat") == "&#64;octocat"
    assert md_text("x\ny") == "x y"
    assert md_text("*bold* [link](u)") == "\\*bold\\* \\[link\\](u)"
    md = render_markdown(big_result(5))
    assert "<script>" not in md and "@octocat" not in md and "<b>x</b>" not in md


def test_size_limit_truncates_with_notes() -> None:
    result = big_result(3000)
    md = render_markdown(result)
    assert len(md) <= MAX_CHARS
    assert "more packages not shown" in md and "more kept files not shown" in md
    assert "| max\\_size | ❌ fail | 9.5 MiB | 5.0 MiB | too big |" in md
    tiny = render_markdown(result, max_chars=3000)
    assert len(tiny) <= 3000 and "Report truncated" in tiny
    assert tiny.count("<details>") <= tiny.count("</details>")


def test_without_static_analysis_shows_largest_dirs(sample: AnalysisResult) -> None:
    import dataclasses

    plain = dataclasses.replace(sample, removable=None, reachable=None, keep=[], packages=[])
    md = render_markdown(plain)
    assert "### Largest directories" in md and "removable **" not in md


def test_registered() -> None:
    assert EMITTERS["markdown"].extension == "md"
    assert EMITTERS["html"].extension == "html"
