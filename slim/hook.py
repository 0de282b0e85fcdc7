"""`slim hook install`: a git pre-push hook that runs `slim check` (the budget gates) statically.

git runs `.git/hooks/pre-push` from the top of the work tree before it talks to the remote and
refuses the push when the hook exits non-zero (githooks(5), "pre-push"). The hook calls the
Python that installed it (`sys.executable -m slim`), resolved now, so a virtualenv need not be
active when pushing. A hook that slim did not write is never overwritten without `force`.
"""

from __future__ import annotations

import logging
import os
import shlex
import site
import stat
import subprocess
import sys
from pathlib import Path

import slim
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


def _pythonpath_for_slim() -> str | None:
    """The directory holding the `slim` package when it is not installed in site-packages
    (a source checkout), so the hook finds the same slim; None when installed."""
    pkg_parent = Path(slim.__file__).resolve().parent.parent
    installed = {Path(p).resolve() for p in [*site.getsitepackages(), site.getusersitepackages()]}
    return None if pkg_parent in installed else str(pkg_parent)


def hook_script(python: str | None = None, extra_args: list[str] | None = None, pythonpath: str | None = None) -> str:
    """The hook's text: a POSIX sh script running `PYTHON -m slim check`."""
    python = python or sys.executable
    command = " ".join(shlex.quote(a) for a in [python, "-m", "slim", "check", *(extra_args or [])])
    lines = [
        "#!/bin/sh",
        MARKER,
        "# Runs the budget gates of .slim.toml / [tool.slim] before every push; a failed gate",
        "# stops the push. Skip it once with `git push --no-verify`.",
        "# git passes the remote name and URL as $1 $2 and the refs on stdin (unused here).",
    ]
    if pythonpath:
        lines.append(f"PYTHONPATH={shlex.quote(pythonpath)}${{PYTHONPATH:+:$PYTHONPATH}}")
        lines.append("export PYTHONPATH")
    lines.append(f"exec {command} </dev/null")
    return "\n".join(lines) + "\n"


def install_hook(repo: Path | str | None = None, *, force: bool = False, extra_args: list[str] | None = None) -> Path:
    """Write the pre-push hook of the repository at `repo` (default: the current directory).

    Raises UsageError outside a repository or when a hook slim did not write is present and
    `force` is off.
    """
    path = hooks_path(repo)
    if path.exists() or path.is_symlink():
        try:
            current = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            current = ""
        if MARKER not in current and not force:
            raise UsageError(f"{path}: a pre-push hook slim did not write exists; use --force to replace it")
    text = hook_script(extra_args=extra_args, pythonpath=_pythonpath_for_slim())
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text, encoding="utf-8")
    mode = path.stat().st_mode
    path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRUSR)
    log.info("%s: pre-push hook written", path)
    return path
