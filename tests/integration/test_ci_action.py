"""The GitHub composite action (action.yml) and .pre-commit-hooks.yaml: their shape, and the
action's check and report steps run locally with a `slim` shim (no GitHub needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_images" / "hello-glibc" / "hello-glibc.docker.tar"


def action() -> dict:  # type: ignore[type-arg]
    data = yaml.safe_load((ROOT / "action.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_pre_commit_hook_definition() -> None:
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "slim-check" and hook["entry"] == "slim check"
    assert hook["language"] == "python" and hook["stages"] == ["pre-push"]
    assert hook["pass_filenames"] is False and hook["always_run"] is True


def test_action_shape() -> None:
    data = action()
    assert data["runs"]["using"] == "composite"
    steps = data["runs"]["steps"]
    assert steps[0]["uses"].startswith("actions/setup-python@")
    comment = next(s for s in steps if s.get("name") == "Comment on the pull request")
    assert "pull_request.number" in comment["if"] and "gh api" in comment["run"]
    for step in steps:
        if "run" in step:
            assert "${{" not in step["run"], f"{step['name']}: inputs must reach scripts through env"
            assert subprocess.run(["bash", "-n"], input=step["run"], text=True).returncode == 0


def _run_step(name: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    step = next(s for s in action()["runs"]["steps"] if s.get("name") == name)
    full = {**os.environ, **env, **{k: str(v) for k, v in step.get("env", {}).items() if "${{" not in str(v)}}
    return subprocess.run(["bash", "-c", step["run"]], cwd=cwd, env=full, capture_output=True, text=True, timeout=300)


def test_check_and_report_steps(tmp_path: Path) -> None:
    require(shutil.which("bash") is not None, "bash is not installed")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "slim"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m slim "$@"\n')
    shim.chmod(0o755)
    # a shim, not a symlink: a symlinked venv python no longer finds its pyvenv.cfg
    python = bindir / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    (work / ".git").mkdir()
    (work / ".slim.toml").write_text(f'image = "docker-archive:{SAMPLE}"\nmax_size = "1MB"\n')
    out, summary = tmp_path / "out", tmp_path / "summary"
    env = {
        "PATH": f"{bindir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT), "GITHUB_OUTPUT": str(out),
        "GITHUB_STEP_SUMMARY": str(summary), "SLIM_CACHE_DIR": str(tmp_path / "cache"),
        "SLIM_IMAGE": "", "SLIM_CONFIG": "", "SLIM_REPORT": "slim-report.md",
    }
    res = _run_step("slim check", env, work)
    assert res.returncode == 0, res.stderr  # the step records the status, the last step fails
    assert "status=1" in out.read_text()
    assert "max_size" in (work / "slim-check.txt").read_text()
    res = _run_step("slim analyze (markdown report)", {**env, "SLIM_STATUS": "1"}, work)
    assert res.returncode == 0, res.stdout + res.stderr
    report = (work / "slim-report.md").read_text()
    assert report.startswith("## slim report:") and "<!-- slim-report -->" in report
    assert "slim check (exit 1)" in report and len(report) < 65_536
    assert summary.read_text() == report
    res = _run_step("Budget result", {**env, "SLIM_STATUS": "1"}, work)
    assert res.returncode == 1 and "slim check failed" in res.stdout
