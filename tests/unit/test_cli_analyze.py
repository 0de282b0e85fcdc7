"""`slim analyze` end to end through typer's CliRunner on an image built in the test."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
from typer.testing import CliRunner

from slim.cli import app
from slim.emitters.report_json import load_schema
from tests.unit.test_summary import build_oci_layout, sample_image

runner = CliRunner()


def test_analyze_json_to_stdout(tmp_path: Path) -> None:
    ref = sample_image(tmp_path)
    res = runner.invoke(app, ["analyze", ref, "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    jsonschema.Draft202012Validator(load_schema()).validate(doc)
    assert doc["image"]["reference"] == ref
    assert len(doc["image"]["layers"]) == 3
    assert {w["name"] for w in doc["waste"]} == {"docs", "temp"}


def test_analyze_text_is_the_default(tmp_path: Path) -> None:
    res = runner.invoke(app, ["analyze", sample_image(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "3 layers" in res.stdout and "Likely waste" in res.stdout


def test_analyze_writes_one_file_or_a_directory(tmp_path: Path) -> None:
    ref = sample_image(tmp_path)
    out = tmp_path / "report.json"
    res = runner.invoke(app, ["analyze", ref, "-f", "json", "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert res.stdout == ""
    first = out.read_text()
    assert json.loads(first)["schema_version"] == 1

    both = tmp_path / "reports"
    res = runner.invoke(app, ["analyze", ref, "-f", "json", "-f", "text", "-o", str(both)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in both.iterdir()) == ["report.json", "report.txt"]
    assert (both / "report.json").read_text() == first  # same input, same bytes
    assert "Largest files" in (both / "report.txt").read_text()


def test_analyze_errors_are_one_line(tmp_path: Path) -> None:
    res = runner.invoke(app, ["analyze", f"rootfs:{tmp_path / 'missing'}"])
    assert res.exit_code == 3
    assert res.stderr.startswith("slim: error: rootfs:") and res.stderr.count("\n") == 1
    assert "Traceback" not in res.output

    res = runner.invoke(app, ["analyze", f"rootfs:{tmp_path}", "--format", "xml"])
    assert res.exit_code == 2
    assert "--format xml: unknown format" in res.stderr


def test_analyze_corrupt_layer_fails_cleanly(tmp_path: Path) -> None:
    ref = build_oci_layout(tmp_path / "img", [{"/a": b"x" * 100}])
    blobs = sorted((tmp_path / "img/blobs/sha256").iterdir(), key=lambda p: p.stat().st_size)
    layer = next(p for p in blobs if p.read_bytes()[:2] == b"\x1f\x8b")
    layer.write_bytes(layer.read_bytes()[:20])  # truncated gzip
    res = runner.invoke(app, ["analyze", ref, "-f", "json"])
    assert res.exit_code == 3
    assert res.stderr.startswith("slim: error: ")
    assert res.stdout == ""


def test_analyze_output_file_mode_and_unwritable_target(tmp_path: Path) -> None:
    ref = sample_image(tmp_path)
    out = tmp_path / "r.json"
    assert runner.invoke(app, ["analyze", ref, "-f", "json", "-o", str(out)]).exit_code == 0
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    assert not list(tmp_path.glob(".slim-report-*"))

    res = runner.invoke(app, ["analyze", ref, "-f", "json", "-o", str(tmp_path / "no" / "such" / "r.json")])
    assert res.exit_code == 3
    assert "cannot write the json report" in res.stderr


def test_debug_is_accepted_anywhere_on_the_command_line() -> None:
    """Issue 20: `--debug` after the subcommand means the same as before it."""
    import subprocess
    import sys

    from slim.cli import hoist_global_flags

    assert hoist_global_flags(["analyze", "x.tar", "--debug"]) == ["--debug", "analyze", "x.tar"]
    assert hoist_global_flags(["--debug", "why", "x", "/p"]) == ["--debug", "why", "x", "/p"]
    assert hoist_global_flags(["analyze", "--", "--debug"]) == ["analyze", "--", "--debug"]
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, "-m", "slim", "analyze", "/nonexistent/app.tar", "--debug"],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": repo})
    assert r.returncode != 0 and "Traceback" in r.stderr  # --debug took effect
    r = subprocess.run([sys.executable, "-m", "slim", "analyze", "/nonexistent/app.tar"],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": repo})
    assert r.returncode == 3 and r.stderr.strip() == "slim: error: /nonexistent/app.tar: no such file"
