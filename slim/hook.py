"""`slim hook install`: a git pre-push hook that runs `slim check` (the budget gates) statically.

git runs `.git/hooks/pre-push` from the top of the work tree before it talks to the remote and
refuses the push when the hook exits non-zero (githooks(5), "pre-push"). The hook finds slim as
a user would: `slim` on PATH, else the pre-commit framework's `slim-check` hook (this
repository's .pre-commit-hooks.yaml) when the project's .pre-commit-config.yaml uses it; no
interpreter or virtualenv path is written into it, so it keeps working after the venv it was
installed from is gone. When neither is found it says so and stops the push.

A hook needs a budget to check: without `.slim.toml` or `[tool.slim]` every push would fail, so
install refuses, or with `init=IMAGE` writes a starter `.slim.toml` naming the image and no
gate (every gate is listed, commented out). A hook that slim did not write is never
overwritten without `force`.
"""

from __future__ import annotations

import logging
import os
import shlex
import stat
import subprocess
from pathlib import Path

from slim.errors import UsageError

log = logging.getLogger(__name__)

MARKER = "# slim-pre-push-hook: written by `slim hook install`"


def hooks_path(repo: Path | str | None = None) -> Path:
    """The pre-push hook path git will run (honours core.hooksPath and worktrees).

    Raises UsageError outside a git repository or when git is missing.
    """
    cwd = Path(repo or os.getcwd())
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--git-path", "hooks/pre-push"],
            cwd=cwd, capture_output=True, text=True, timeout=30,
        )
    except FileNotFoundError:
        raise UsageError("git: not found; `slim hook install` needs git") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"{cwd}: cannot run git: {exc}") from None
    if proc.returncode != 0:
        raise UsageError(f"{cwd}: not a git repository")
    path = Path(proc.stdout.strip())
    return path if path.is_absolute() else cwd / path


STARTER = """# slim budget (keys: slim's docs/ci.md): `slim check` evaluates these gates, and the
# pre-push hook runs it before every push. Uncomment the gates you want; none is on yet.
image = {image}
# base = "docker-archive:build/app-main.tar"      # for max_growth
# max_size = "200MB"
# max_removable_percent = 30
# min_efficiency = 0.95
# max_growth = "10%"
# forbid_paths = ["/usr/bin/gcc*", "/root/.cache/**"]
# forbid_packages = ["@compilers", "@package-managers"]
"""


def hook_script(extra_args: list[str] | None = None) -> str:
    """The hook's text: a POSIX sh script running `slim check` from PATH, or the pre-commit
    framework's slim-check hook."""
    args = " ".join(shlex.quote(a) for a in ["check", *(extra_args or [])])
    return "\n".join([
        "#!/bin/sh",
        MARKER,
        "# Runs the budget gates of .slim.toml / [tool.slim] before every push; a failed gate",
        "# stops the push. Skip it once with `git push --no-verify`.",
        "# git passes the remote name and URL as $1 $2 and the refs on stdin (unused here).",
        "if command -v slim >/dev/null 2>&1; then",
        f"    exec slim {args} </dev/null",
        "fi",
        "if command -v pre-commit >/dev/null 2>&1 && grep -qs 'id: *slim-check' .pre-commit-config.yaml; then",
        "    exec pre-commit run slim-check --hook-stage pre-push --all-files </dev/null",
        "fi",
        "echo 'slim pre-push hook: `slim` is not on PATH and .pre-commit-config.yaml has no slim-check hook;' >&2",
        "echo 'install slim (pip install …) or activate its environment, or push with --no-verify.' >&2",
        "exit 1",
    ]) + "\n"


def write_starter_config(top: Path, image: str) -> Path:
    """Write `top`/.slim.toml naming `image` with every gate commented out. Raises UsageError
    when it exists."""
    import json

    path = top / ".slim.toml"
    if path.exists():
        raise UsageError(f"{path}: exists; not replaced")
    path.write_text(STARTER.format(image=json.dumps(image)), encoding="utf-8")
    return path


def _work_tree(cwd: Path) -> Path:
    proc = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True,
                          text=True, timeout=30)
    return Path(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else cwd


def install_hook(repo: Path | str | None = None, *, force: bool = False,
                 extra_args: list[str] | None = None, init: str = "") -> tuple[Path, Path | None]:
    """Write the pre-push hook of the repository at `repo` (default: the current directory);
    returns (hook path, starter config written or None).

    Raises UsageError outside a repository, without a budget configuration (unless `init`
    names the image for a starter .slim.toml), or when a hook slim did not write is present
    and `force` is off.
    """
    from slim.budget import find_config

    path = hooks_path(repo)
    cwd = Path(repo or os.getcwd())
    if path.exists() or path.is_symlink():
        try:
            current = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            current = ""
        if MARKER not in current and not force:
            raise UsageError(f"{path}: a pre-push hook slim did not write exists; use --force to replace it")
    top = _work_tree(cwd)
    starter = None
    if find_config(cwd) is None:
        if not init:
            raise UsageError(f"{top}: no .slim.toml or [tool.slim]; a hook without a budget would "
                             "stop every push. Write one (docs/ci.md), or run `slim hook install "
                             "--init IMAGE` for a starter .slim.toml")
        starter = write_starter_config(top, init)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(hook_script(extra_args), encoding="utf-8")
    mode = path.stat().st_mode
    path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRUSR)
    log.info("%s: pre-push hook written", path)
    return path, starter
