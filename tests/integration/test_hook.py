"""The pre-push hook in a temporary git repository: a push to a local bare repository is refused
when a budget gate fails and goes through when every gate passes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


REPO = Path(__file__).resolve().parents[2]


def _push_env(tmp_path: Path, *, with_slim: bool = True) -> dict[str, str]:
    """The environment of a push: `slim` on PATH (a shim running this checkout), as after
    `pip install`; the hook names no interpreter or venv of its own."""
    env = dict(os.environ)
    env["SLIM_CACHE_DIR"] = str(tmp_path / "cache")
    env.pop("GIT_DIR", None)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "slim"
    shim.write_text(f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m slim \"$@\"\n")
    shim.chmod(0o755)
    paths = [p for p in env.get("PATH", "").split(os.pathsep) if not (Path(p) / "slim").exists()]
    env["PATH"] = os.pathsep.join(([str(bin_dir)] if with_slim else []) + paths)
    return env


def _commit(work: Path, toml: str, message: str) -> None:
    (work / ".slim.toml").write_text(toml)
    assert git(work, "add", ".slim.toml").returncode == 0
    res = git(work, "commit", "-m", message)
    assert res.returncode == 0, res.stderr


def test_push_refused_on_failure_and_allowed_on_pass(repo: Path, tmp_path: Path) -> None:
    _commit(repo, f'image = "docker-archive:{SAMPLE}"\nmax_size = "1MB"\n', "too small a budget")
    res = CliRunner().invoke(app, ["hook", "install"])
    assert res.exit_code == 0, res.output
    hook = repo / ".git" / "hooks" / "pre-push"
    assert os.access(hook, os.X_OK) and MARKER in hook.read_text()
    assert sys.executable not in hook.read_text() and ".venv" not in hook.read_text()
    env = _push_env(tmp_path)

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
    (repo / ".slim.toml").write_text('image = "app.tar"\n')
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


def test_no_budget_refuses_or_writes_a_starter(repo: Path, tmp_path: Path) -> None:
    """Issue 20: without .slim.toml a hook would block every push."""
    res = CliRunner().invoke(app, ["hook", "install"])
    assert res.exit_code == 2 and "no .slim.toml" in res.output and "--init IMAGE" in res.output
    assert not (repo / ".git" / "hooks" / "pre-push").exists()
    res = CliRunner().invoke(app, ["hook", "install", "--init", f"docker-archive:{SAMPLE}"])
    assert res.exit_code == 0, res.output
    starter = (repo / ".slim.toml").read_text()
    assert f'image = "docker-archive:{SAMPLE}"' in starter and "\n# max_size" in starter
    assert git(repo, "add", ".slim.toml").returncode == 0
    assert git(repo, "commit", "-m", "starter").returncode == 0
    res = git(repo, "push", "origin", "HEAD:refs/heads/main", env=_push_env(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr  # a starter budget passes
    assert "no gates configured" in res.stdout + res.stderr


def test_hook_without_slim_on_path_says_so(repo: Path, tmp_path: Path) -> None:
    _commit(repo, f'image = "docker-archive:{SAMPLE}"\n', "budget")
    assert CliRunner().invoke(app, ["hook", "install"]).exit_code == 0
    res = git(repo, "push", "origin", "HEAD:refs/heads/main", env=_push_env(tmp_path, with_slim=False))
    assert res.returncode != 0
    assert "`slim` is not on PATH" in res.stderr


def test_hook_script_uses_path_then_pre_commit() -> None:
    text = hook_script(["--no-cache"])
    assert text.startswith("#!/bin/sh\n")
    assert "exec slim check --no-cache </dev/null" in text
    assert "pre-commit run slim-check --hook-stage pre-push" in text
    hooks = (REPO / ".pre-commit-hooks.yaml").read_text()
    assert "id: slim-check" in hooks and "entry: slim check" in hooks
