"""The pre-push hook in a temporary git repository: a push to a local bare repository is refused
when a budget gate fails and goes through when every gate passes."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slim.cli import app
from slim.hook import MARKER, hook_script
from tests.conftest import require

SAMPLE = Path(__file__).resolve().parents[2] / "sample_images" / "hello-glibc" / "hello-glibc.docker.tar"
GIT_ID = ["-c", "user.name=slim test", "-c", "user.email=slim@example.invalid", "-c", "init.defaultBranch=main"]


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *GIT_ID, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    require(shutil.which("git") is not None, "git is not installed")
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    assert git(tmp_path, "init", "--bare", str(remote)).returncode == 0
    assert git(tmp_path, "init", str(work)).returncode == 0
    assert git(work, "remote", "add", "origin", str(remote)).returncode == 0
    monkeypatch.chdir(work)
    return work


def _push_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["SLIM_CACHE_DIR"] = str(tmp_path / "cache")
    env.pop("GIT_DIR", None)
    return env


def _commit(work: Path, toml: str, message: str) -> None:
    (work / ".slim.toml").write_text(toml)
    assert git(work, "add", ".slim.toml").returncode == 0
    res = git(work, "commit", "-m", message)
    assert res.returncode == 0, res.stderr


def test_push_refused_on_failure_and_allowed_on_pass(repo: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["hook", "install"])
    assert res.exit_code == 0, res.output
    hook = repo / ".git" / "hooks" / "pre-push"
    assert os.access(hook, os.X_OK) and MARKER in hook.read_text()
    env = _push_env(tmp_path)

    _commit(repo, f'image = "docker-archive:{SAMPLE}"\nmax_size = "1MB"\n', "too small a budget")
    res = git(repo, "push", "origin", "HEAD:refs/heads/main", env=env)
    assert res.returncode != 0, res.stdout + res.stderr
    assert "max_size" in res.stdout + res.stderr and "fail" in res.stdout + res.stderr
    assert git(repo, "ls-remote", "origin").stdout == ""  # nothing reached the remote

    _commit(repo, f'image = "docker-archive:{SAMPLE}"\nmax_size = "10MB"\nmin_efficiency = 0.5\n', "a budget it fits")
    res = git(repo, "push", "origin", "HEAD:refs/heads/main", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    head = git(repo, "rev-parse", "HEAD").stdout.strip()
    assert head in git(repo, "ls-remote", "origin").stdout


def test_install_refuses_a_foreign_hook(repo: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-push"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text("#!/bin/sh\necho mine\n")
    res = CliRunner().invoke(app, ["hook", "install"])
    assert res.exit_code == 2 and "--force" in res.output
    assert hook.read_text() == "#!/bin/sh\necho mine\n"
    # reinstalling over slim's own hook needs no --force; --force replaces a foreign one
    assert CliRunner().invoke(app, ["hook", "install", "--force"]).exit_code == 0
    assert MARKER in hook.read_text()
    assert CliRunner().invoke(app, ["hook", "install"]).exit_code == 0


def test_install_outside_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require(shutil.which("git") is not None, "git is not installed")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    res = CliRunner().invoke(app, ["hook", "install"])
    assert res.exit_code == 2 and "not a git repository" in res.output


def test_hook_script_quotes_the_interpreter() -> None:
    text = hook_script("/opt/my python/bin/python3", pythonpath="/src dir")
    assert text.startswith("#!/bin/sh\n")
    assert "exec '/opt/my python/bin/python3' -m slim check </dev/null" in text
    assert "PYTHONPATH='/src dir'" in text
