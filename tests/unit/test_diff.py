"""`slim diff`: per-layer, package and directory bytes on the committed sample images, an image
against itself (no change), and the pure comparison on hand-made snapshots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slim.cli import app
from slim.diff import (
    ImageSnapshot,
    diff_dict,
    diff_snapshots,
    package_change,
    render_diff_json,
    render_diff_markdown,
    render_diff_text,
    snapshot,
)
from slim.result import AnalysisResult, Efficiency, ImageSummary, LayerSummary, PackageSummary

SAMPLES = Path(__file__).resolve().parents[2] / "sample_images"
GLIBC = f"docker-archive:{SAMPLES / 'hello-glibc' / 'hello-glibc.docker.tar'}"
GLIBC_OCI = f"oci:{SAMPLES / 'hello-glibc' / 'hello-glibc.oci'}"
MUSL = f"docker-archive:{SAMPLES / 'hello-musl' / 'hello-musl.docker.tar'}"


@pytest.fixture(scope="module")
def glibc() -> ImageSnapshot:
    return snapshot(GLIBC)


@pytest.fixture(scope="module")
def musl() -> ImageSnapshot:
    return snapshot(MUSL)


def test_glibc_to_musl(glibc: ImageSnapshot, musl: ImageSnapshot) -> None:
    d = diff_snapshots(glibc, musl)
    assert not d.unchanged
    assert d.size_delta == musl.result.image.size_bytes - glibc.result.image.size_bytes < 0
    # every byte of both images is accounted for: no file is shared between them
    assert d.removed_bytes == sum(s for s, _ in glibc.files.values())
    assert d.added_bytes == sum(s for s, _ in musl.files.values())
    assert d.added_bytes - d.removed_bytes == d.size_delta
    # the layers share nothing
    assert {la.status for la in d.layers} == {"added", "removed"}
    assert sum(la.size_bytes for la in d.layers if la.status == "added") == sum(la.size_bytes for la in musl.result.image.layers)
    # glibc's dpkg packages are gone; musl has no package database
    removed = {p.name for p in d.packages if p.status == "removed"}
    assert removed == {p.name for p in glibc.result.packages} and "libc6" in removed
    libdir = next(x for x in d.directories if x.path == "/usr/lib/x86_64-linux-gnu")
    assert libdir.added_bytes == 0 and libdir.removed_bytes > 2_000_000
    app_dir = next(x for x in d.directories if x.path == "/app")
    assert app_dir.added_files == 1 and app_dir.removed_files == 1  # /app/hello rebuilt (size differs)
    # sorted: largest change first, then path
    keys = [(-(x.added_bytes + x.removed_bytes), x.path) for x in d.directories]
    assert keys == sorted(keys)
    assert d.efficiency_delta == pytest.approx(musl.result.efficiency.score - glibc.result.efficiency.score)


def test_image_against_itself_is_no_change(glibc: ImageSnapshot) -> None:
    d = diff_snapshots(glibc, snapshot(GLIBC_OCI))  # same image ID, another transport
    assert d.unchanged
    assert d.added_bytes == d.removed_bytes == d.size_delta == 0
    assert not d.directories
    assert all(la.status == "shared" for la in d.layers)
    assert render_diff_text(d).startswith("no change:")
    assert diff_dict(d)["unchanged"] is True and diff_dict(d)["packages"] == []


def test_renderings_are_deterministic(glibc: ImageSnapshot, musl: ImageSnapshot) -> None:
    a, b = diff_snapshots(glibc, musl), diff_snapshots(snapshot(GLIBC), snapshot(MUSL))
    for render in (render_diff_text, render_diff_markdown, render_diff_json):
        assert render(a) == render(b)
    data = json.loads(render_diff_json(a))
    assert data["size_delta"] == a.size_delta and data["unchanged"] is False
    assert [p["name"] for p in data["packages"]] == sorted(p["name"] for p in data["packages"])
    md = render_diff_markdown(a)
    assert "| removed | libc6 | dpkg |" in md and "<details><summary>Layers</summary>" in md


def _snap(files: dict[str, tuple[int, str]], packages: list[tuple[str, str, int]], layers: list[str], score: float) -> ImageSnapshot:
    image = ImageSummary(
        reference="r", digest="", os="linux", architecture="amd64", entrypoint=(), cmd=(), env={},
        workdir="/", user="", size_bytes=sum(s for s, _ in files.values()), file_count=len(files),
        layers=tuple(LayerSummary(i, "", d, f"step {i}", 100 * (i + 1), 1) for i, d in enumerate(layers)),
    )
    result = AnalysisResult(image=image, efficiency=Efficiency(score, 0, 0.0, 0),
                            packages=[PackageSummary(n, v, "apk", s, 0, True) for n, v, s in packages])
    return ImageSnapshot(result, files)


def test_diff_snapshots_by_hand() -> None:
    base = _snap(
        {"/usr/bin/a": (100, "FILE:"), "/usr/bin/b": (50, "FILE:"), "/etc/x": (5, "FILE:"), "/lib/l": (0, "SYMLINK:x")},
        [("busybox", "1.0", 150), ("old", "1", 5)], ["sha256:1", "sha256:2"], 0.9,
    )
    head = _snap(
        {"/usr/bin/a": (100, "FILE:"), "/usr/bin/b": (70, "FILE:"), "/opt/new/deep/er/f": (30, "FILE:"), "/lib/l": (0, "SYMLINK:y")},
        [("busybox", "1.1", 170), ("new", "2", 30)], ["sha256:1", "sha256:3"], 0.8,
    )
    d = diff_snapshots(base, head)
    rows = {x.path: x for x in d.directories}
    assert set(rows) == {"/usr/bin", "/opt/new/deep", "/etc", "/lib"}  # truncated to 3 components
    assert (rows["/usr/bin"].added_bytes, rows["/usr/bin"].removed_bytes) == (70, 50)
    assert rows["/opt/new/deep"].added_files == 1 and rows["/etc"].removed_bytes == 5
    assert rows["/lib"].added_bytes == 0 and rows["/lib"].added_files == 1  # a retargeted link
    assert (d.added_bytes, d.removed_bytes) == (100, 55)
    status = {p.name: p.status for p in d.packages}
    assert status == {"busybox": "changed", "new": "added", "old": "removed"}
    assert [(la.status, la.diff_id) for la in d.layers] == [("shared", "sha256:1"), ("added", "sha256:3"), ("removed", "sha256:2")]
    assert d.efficiency_delta == pytest.approx(-0.1)
    assert "-10.0 pp" in render_diff_text(d)


def test_cli_diff(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["diff", GLIBC, MUSL, "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["base"]["reference"] == GLIBC
    res = CliRunner().invoke(app, ["diff", GLIBC, GLIBC])
    assert res.exit_code == 0 and res.output.startswith("no change:")
    res = CliRunner().invoke(app, ["diff", GLIBC, MUSL, "--format", "yaml"])
    assert res.exit_code == 2 and "--format yaml" in res.output
    res = CliRunner().invoke(app, ["diff", GLIBC, f"docker-archive:{tmp_path}/missing.tar"])
    assert res.exit_code == 3


def test_package_change_statuses() -> None:
    assert package_change(None, ("1", 10, 1)) == "added"
    assert package_change(("1", 10, 1), None) == "removed"
    assert package_change(("1", 10, 2), ("1", 0, 0)) == "removed"  # listed, but no file left
    assert package_change(("1", 10, 2), ("1", 4, 1)) == "partly-kept"
    assert package_change(("1", 10, 2), ("2", 4, 1)) == "changed"
    assert package_change(("1", 10, 2), ("1", 12, 2)) == "changed"
    assert package_change(("1", 10, 2), ("1", 10, 2)) == "unchanged"


def test_slim_build_diffs_as_partly_kept(tmp_path: Path) -> None:
    """Acceptance (issue 19): a package whose files a slim build keeps is never "removed"."""
    from slim.emitters.image import build_image
    from slim.pipeline import load_image
    from tests.unit.analyzers.test_package_report import make_root

    root = make_root(tmp_path / "root")
    site = "/app/venv/lib/python3.11/site-packages"
    with load_image(f"rootfs:{root}") as loaded:
        build_image(loaded, {"/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/sbin/nginx",
                             f"{site}/flask/__init__.py", "/app/lib/guava-32.1.jar"}, f"oci:{tmp_path / 'out'}")
    base, head = snapshot(f"rootfs:{root}"), snapshot(f"oci:{tmp_path / 'out'}")
    d = diff_snapshots(base, head)
    status = {(p.manager, p.name): p.status for p in d.packages}
    assert status == {
        ("dpkg", "libc6"): "partly-kept", ("dpkg", "nginx"): "partly-kept", ("dpkg", "docs"): "removed",
        ("python", "Flask"): "partly-kept", ("jar", "guava"): "unchanged", ("jar", "app"): "removed",
        ("gem", "nio4r"): "removed", ("npm", "util"): "removed", ("npm", "left-pad"): "removed",
    }
    for p in d.packages:
        if p.status == "removed":
            assert p.head_files == 0, p
    text = render_diff_text(d)
    assert "partly-kept  libc6" in text and "4 → 2" in text  # libc.so.6 and its copyright
