"""slim.programs.which against the real execvp(3), run in a chroot of a small image root.

Recipe: the busybox-static sample image is unpacked into a temp root; candidate programs are
`#!/bin/busybox sh` scripts that print their own name. A forked child chroots into the root,
changes to the working directory and calls glibc's execvp through ctypes with a given PATH;
what it prints is the program execvp chose, which `which` must name too.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pytest

from slim.image import prepare_root
from slim.pipeline import load_image
from slim.programs import SHELLS, is_executable, is_shell, which
from slim.tracers.hostroot import HostRoot
from tests.conftest import is_root, require

BUSYBOX = Path(__file__).resolve().parents[2] / "sample_images" / "busybox-static" / "busybox-static.oci"


def _script(root: Path, path: str, mode: int = 0o755) -> None:
    host = root / path.lstrip("/")
    host.parent.mkdir(parents=True, exist_ok=True)
    host.write_text(f"#!/bin/busybox sh\necho {path}\n")
    host.chmod(mode)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("execvp")
    with load_image(f"oci:{BUSYBOX}") as loaded:
        base = Path(prepare_root(loaded.image, str(work)))
    _script(base, "/a/prog", 0o644)  # not executable: execvp gets EACCES and goes on
    (base / "b/prog").mkdir(parents=True)  # a directory: EACCES too
    _script(base, "/c/prog")
    _script(base, "/w/rel/prog")  # reached through the relative PATH element "rel"
    _script(base, "/w/prog")  # reached through an empty PATH element (the cwd)
    _script(base, "/w/sub/prog")  # a name with '/' is taken relative to the cwd
    (base / "d").mkdir()
    (base / "d/prog").symlink_to("../c/prog")
    _script(base, "/e/other")
    return base


def real_execvp(root: Path, cwd: str, path_env: str, name: str) -> str | None:
    """What glibc's execvp runs for `name` in a chroot of `root` (None when it fails)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.dup2(write, 1)
            os.chroot(root)
            os.chdir(cwd)
            os.environ.clear()
            os.environ["PATH"] = path_env
            libc = ctypes.CDLL(None, use_errno=True)
            argv = (ctypes.c_char_p * 2)(name.encode(), None)
            libc.execvp(name.encode(), argv)
        finally:
            os._exit(127)
    os.close(write)
    with os.fdopen(read) as f:
        out = f.read().strip()
    os.waitpid(pid, 0)
    return out or None


CASES = [
    ("/", "/a:/b:/c", "prog"),
    ("/w", "/a:rel:/c", "prog"),
    ("/w", ":/c", "prog"),
    ("/w", "/c:", "prog"),
    ("/", "/d:/c", "prog"),
    ("/", "/a:/b", "prog"),
    ("/", "/nonexistent:/c", "prog"),
    ("/", "/c/prog:/c", "prog"),  # a file used as a directory: ENOTDIR, go on
    ("/w", "/a", "sub/prog"),
    ("/w", "/c", "./prog"),
    ("/", "/e:/c", "missing"),
]


@pytest.mark.parametrize(("cwd", "path_env", "name"), CASES)
def test_which_agrees_with_execvp(root: Path, cwd: str, path_env: str, name: str) -> None:
    require(is_root(), "chroot needs root")
    expected = real_execvp(root, cwd, path_env, name)
    found = which(HostRoot(str(root)), name, path_env.split(":"), cwd)
    if expected is None:
        assert found is None
    else:
        # the script prints the path it lives at; `which` names the path as found (a link
        # stays a link), whose target is that script
        assert found is not None
        assert os.path.realpath(root / found.lstrip("/")) == os.path.realpath(root / expected.lstrip("/"))


def test_which_on_an_image_rootfs(root: Path) -> None:
    with load_image(f"rootfs:{root}") as loaded:
        fs = loaded.rootfs
        assert which(fs, "prog", ["/a", "/b", "/c"]) == "/c/prog"
        assert which(fs, "prog", ["/d"]) == "/d/prog"  # as found, not resolved
        assert which(fs, "prog", ["rel"], "/w") == "/w/rel/prog"
        assert which(fs, "prog", [""], "/w") == "/w/prog"
        assert which(fs, "", ["/c"]) is None
        assert not is_executable(fs.stat("/a/prog")) and is_executable(fs.stat("/c/prog"))


def test_shells() -> None:
    assert {"sh", "bash", "dash", "ash"} <= SHELLS
    assert is_shell("/bin/sh", "/bin/busybox") and not is_shell("/bin/ls", "/bin/busybox")
    assert is_shell("busybox", args=["sh", "-c", "x"]) and not is_shell("busybox", args=["ls"])
    assert is_shell("/usr/bin/bash") and not is_shell("/usr/bin/python3")
