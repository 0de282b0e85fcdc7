"""Lookups the sandbox runner makes inside the image root (no bwrap needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slim.errors import TraceError
from slim.model import ImageConfig
from slim.tracers.sandbox import SandboxRunner, find_program, resolve_in_root, resolve_user


@pytest.fixture
def root(slim_work: Path) -> str:
    r = slim_work / "root"
    (r / "usr/bin").mkdir(parents=True)
    (r / "etc").mkdir()
    (r / "app").mkdir()
    os.symlink("usr/bin", r / "bin")
    (r / "usr/bin/tool").write_text("#!/bin/sh\n")
    (r / "usr/bin/tool").chmod(0o755)
    (r / "usr/bin/data").write_text("not executable")
    os.symlink("/usr/bin/tool", r / "app/run")
    os.symlink("../../../../../../etc/shadow", r / "app/escape")
    (r / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nweb:x:33:34:web:/var/www:/bin/sh\n")
    (r / "etc/group").write_text("root:x:0:\nstaff:x:50:\n")
    return str(r)


def test_resolve_in_root_stays_inside(root: str) -> None:
    assert resolve_in_root(root, "/bin/tool") == os.path.join(root, "usr/bin/tool")
    assert resolve_in_root(root, "/app/run") == os.path.join(root, "usr/bin/tool")
    # `..` stops at the image root: /etc/shadow of the image (absent), never the host's
    assert resolve_in_root(root, "/app/escape") is None
    assert resolve_in_root(root, "/app/escape", follow=False) == os.path.join(root, "app/escape")


def test_find_program_uses_the_image_path(root: str) -> None:
    config = ImageConfig(env=("PATH=/nope:/bin",), workdir="/app")
    assert find_program(root, "tool", config) == "/bin/tool"
    assert find_program(root, "data", config) is None  # not executable
    assert find_program(root, "./run", config) == "/app/run"
    assert find_program(root, "missing", config) is None


def test_resolve_user(root: str) -> None:
    assert resolve_user(root, "web") == resolve_user(root, "33")
    assert (resolve_user(root, "web").uid, resolve_user(root, "web").gid) == (33, 34)
    assert resolve_user(root, "web:staff").gid == 50
    assert resolve_user(root, "1000:1000").uid == 1000
    assert resolve_user(root, "web").home == "/var/www"
    with pytest.raises(TraceError, match="ghost: user not found"):
        resolve_user(root, "ghost")
    with pytest.raises(TraceError, match="group 'nogroup' not found"):
        resolve_user(root, "web:nogroup")


def test_bwrap_command_line(root: str) -> None:
    runner = SandboxRunner(bwrap="/usr/bin/bwrap", strace="/usr/bin/strace")
    config = ImageConfig(env=("A=1", "PATH=/bin"), workdir="/srv", user="web")
    with runner.session(root, config, network="none") as session:
        argv = runner.bwrap_argv(session, ["/bin/tool", "x"], status_fd=9)  # type: ignore[arg-type]
    joined = " ".join(argv)
    assert f"--bind {root} /" in joined
    assert "--unshare-pid" in argv and "--unshare-net" in argv and "--die-with-parent" in argv
    # a missing WorkingDir (and the mount points) are created in the private copy, as Docker does
    assert os.path.isdir(os.path.join(root, "srv")) and "--chdir /srv" in joined
    assert os.path.isdir(os.path.join(root, "proc")) and os.stat(os.path.join(root, "tmp")).st_mode & 0o1777 == 0o1777
    # a non-root User: unprivileged bubblewrap, no capability at all
    assert "--unshare-user --uid 33 --gid 34" in joined and "--cap-add" not in argv
    assert "--clearenv --setenv A 1 --setenv HOME /var/www" in joined
    assert "--ro-bind-try /proc/sys /proc/sys" in joined
    assert "--ro-bind /dev/null /proc/keys" in joined or not os.path.exists("/proc/keys")
    assert argv[-3:] == ["--", "/bin/tool", "x"]
    with runner.session(root, ImageConfig(), network="host") as session:
        host = runner.bwrap_argv(session, ["/bin/tool"], status_fd=9)  # type: ignore[arg-type]
        launcher = session.launcher()  # type: ignore[attr-defined]
    assert "--unshare-net" not in host and "--uid" not in host
    if os.geteuid() == 0:
        # a root app in slim's shifted user namespace, with Docker's default capabilities only
        caps = [host[i + 1] for i, a in enumerate(host) if a == "--cap-add"]
        assert "--cap-drop" in host and "CAP_SYS_ADMIN" not in caps and "CAP_CHOWN" in caps
        assert "CAP_DAC_READ_SEARCH" not in caps
        assert launcher[1:3] == ["-m", "slim.tracers.userns"] and launcher[-1] == "--"
        assert os.stat(os.path.join(root, "usr/bin/tool")).st_uid == 1 << 30  # owners shifted
    with pytest.raises(TraceError, match="bridge: unknown network"):
        runner.session(root, ImageConfig(), network="bridge")


def test_lookups_in_the_image_rootfs_match_the_unpacked_root(root: str) -> None:
    """A runner that runs the image from its own store finds USER and the entrypoint in the
    image's RootFS, with no unpacked copy: the same answers as in the copy."""
    from slim.pipeline import load_image
    from slim.tracers.hostroot import tables_readable

    Path(root, "etc/group").write_text("root:x:0:\r\nstaff:x:50:web\r\n")  # CRLF, as text mode reads it
    with load_image(f"rootfs:{root}") as loaded:
        fs = loaded.rootfs
        assert tables_readable(fs)
        config = ImageConfig(env=("PATH=/nope:/bin",), workdir="/app")
        for name in ("tool", "data", "./run", "missing", "/app/escape"):
            assert find_program(fs, name, config) == find_program(root, name, config), name
        for user in ("web", "33", "web:staff", "1000:1000", "root"):
            assert resolve_user(fs, user) == resolve_user(root, user), user
        assert resolve_user(fs, "web").groups == (50,)
        for bad in ("ghost", "web:nogroup"):
            with pytest.raises(TraceError):
                resolve_user(fs, bad)


def test_account_tables_not_read_by_the_layer_reader_are_not_guessed() -> None:
    from slim.fs.rootfs import RootFS
    from slim.fs.tree import FileTree, squash
    from slim.model import EntryKind, FileEntry
    from slim.tracers.hostroot import tables_readable

    tree = FileTree()
    tree.add(FileEntry("/etc", EntryKind.DIR, 0o755, 0, 0, 0))
    assert tables_readable(RootFS(squash([tree])))  # no account files: nothing to read
    tree.add(FileEntry("/etc/passwd", EntryKind.FILE, 0o644, 0, 0, 40))
    assert not tables_readable(RootFS(squash([tree])))  # listed, contents not kept
