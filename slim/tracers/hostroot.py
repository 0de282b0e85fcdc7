"""An image root unpacked on the host, looked at with chroot semantics: every symlink is
resolved inside the root (absolute targets restart at it, `..` stops at it), never on the host.

Runners use it to find the program execvp would start (slim.programs.which over `HostRoot`),
to apply the image's USER, and to create mount points in a private copy of the root.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from slim.errors import SlimError, TraceError
from slim.fs.rootfs import RootFS
from slim.model import EntryKind, FileEntry, ImageConfig
from slim.programs import which

MAX_SYMLINK_HOPS = 40  # Linux's MAXSYMLINKS (fs/namei.c)


def resolve_in_root(root: str, path: str, follow: bool = True) -> str | None:
    """Host path of image `path` with chroot semantics (links resolved inside root), or None."""
    parts = [p for p in path.split("/") if p]
    real: list[str] = []
    hops = 0
    while parts:
        name = parts.pop(0)
        if name == ".":
            continue
        if name == "..":
            if real:
                real.pop()
            continue
        host = os.path.join(root, *real, name)
        try:
            st = os.lstat(host)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode) and (follow or parts):
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                return None
            target = os.readlink(host)
            if target.startswith("/"):
                real = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        real.append(name)
    return os.path.join(root, *real)


class HostRoot:
    """`stat` over an unpacked root, enough for slim.programs.which."""

    def __init__(self, root: str) -> None:
        self.root = root

    def stat(self, path: str) -> FileEntry | None:
        host = resolve_in_root(self.root, path)
        if host is None:
            return None
        try:
            st = os.stat(host, follow_symlinks=False)
        except OSError:
            return None
        kind = (EntryKind.FILE if stat.S_ISREG(st.st_mode) else
                EntryKind.DIR if stat.S_ISDIR(st.st_mode) else EntryKind.FIFO)
        return FileEntry(path, kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size)


def find_program(root: str | RootFS, name: str, config: ImageConfig) -> str | None:
    """The image path execvp would run for `name` (PATH and WorkingDir from the image), in an
    unpacked root or the image's RootFS."""
    return which(HostRoot(root) if isinstance(root, str) else root, name, config.path_dirs,
                 config.workdir or "/")


def tables_readable(fs: RootFS) -> bool:
    """Whether `resolve_user` can read the account files of the image `fs` (the layer reader
    kept their contents): each of /etc/passwd and /etc/group is absent, not a file, or read."""
    for path in ACCOUNT_TABLES:
        res = fs.resolve(path)
        if res.exists and fs.is_file(res.path) and not fs.has_content(res.path):
            return False
    return True


ACCOUNT_TABLES = ("/etc/passwd", "/etc/group")


def shift_ownership(root: str, base: int, count: int) -> None:
    """Add `base` to the owner and group of every entry of the private root copy `root` (links
    not followed), so container uid N is host uid base+N as the user namespace maps it. Ids at
    or beyond `count` are left unmapped (they show as the overflow id inside, as under Docker's
    userns-remap)."""
    def shift(path: str) -> None:
        st = os.lstat(path)
        uid = st.st_uid + base if st.st_uid < count else st.st_uid
        gid = st.st_gid + base if st.st_gid < count else st.st_gid
        if (uid, gid) != (st.st_uid, st.st_gid):
            mode = stat.S_IMODE(st.st_mode)
            os.chown(path, uid, gid, follow_symlinks=False)
            if not stat.S_ISLNK(st.st_mode) and mode & 0o6000:
                os.chmod(path, mode)  # chown clears setuid/setgid bits; the image asked for them

    shift(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            shift(os.path.join(dirpath, name))


def mkdirs_in_root(root: str, path: str, mode: int) -> None:
    """Create the missing directories of image `path` in a private root copy, stopping (and
    leaving it to the runner) at anything that is not a plain directory, so a symlink in the
    untrusted image never leads a mkdir outside `root`."""
    host = root
    for name in [p for p in path.split("/") if p and p != "."]:
        if name == "..":
            return
        host = os.path.join(host, name)
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            try:
                os.mkdir(host)
                os.chmod(host, mode)
            except OSError:
                return
            continue
        except OSError:
            return
        if not stat.S_ISDIR(st.st_mode):
            return


@dataclass(frozen=True)
class ResolvedUser:
    """The ids an image's USER runs with."""

    uid: int
    gid: int
    home: str
    groups: tuple[int, ...] = ()  # supplementary groups: /etc/group entries naming the user


def _table(root: str | RootFS, path: str) -> list[list[str]]:
    if not isinstance(root, str):
        res = root.resolve(path)
        if not res.exists or not root.is_file(res.path):
            return []
        # as a file opened in text mode reads it: \r\n and \r end lines too
        try:
            text = root.read_text(res.path)
        except (SlimError, OSError) as exc:
            raise TraceError(f"{path}: cannot read the image's account file: {exc}") from None
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        return [line.split(":") for line in text.split("\n") if line.count(":") >= 2]
    host = resolve_in_root(root, path)
    if host is None or not os.path.isfile(host):
        return []
    with open(host, encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\n").split(":") for line in f if line.count(":") >= 2]


def _number(text: str) -> int | None:
    """A decimal id (ASCII digits only: '²' passes str.isdigit but is no uid)."""
    return int(text) if text.isascii() and text.isdigit() else None


def resolve_user(root: str | RootFS, user: str) -> ResolvedUser:
    """Docker's USER semantics: name or uid, optional `:group`, looked up in the image; the
    supplementary groups are the /etc/group entries that list the user by name.

    Raises TraceError naming the user when a name is not in the image's /etc/passwd or
    /etc/group, or an entry is malformed.
    """
    name, _, group = user.partition(":")
    uid, gid, home = 0, 0, "/"
    if name:
        passwd = _table(root, "/etc/passwd")
        row = next((r for r in passwd if r[0] == name), None)
        number = _number(name)
        if row is None and number is not None:
            row = next((r for r in passwd if len(r) > 2 and r[2] == name), None)
            uid, gid = number, number if row is None else 0
        if row is None and number is None:
            raise TraceError(f"{user}: user not found in the image's /etc/passwd")
        if row is not None:
            ruid = _number(row[2])
            rgid = _number(row[3]) if len(row) > 3 else 0
            if ruid is None or rgid is None:
                raise TraceError(f"{user}: malformed /etc/passwd entry in the image")
            uid, gid = ruid, rgid
            home = row[5] if len(row) > 5 and row[5] else "/"
    if group:
        gid_number = _number(group)
        if gid_number is None:
            grow = next((r for r in _table(root, "/etc/group") if r[0] == group), None)
            gid_number = _number(grow[2]) if grow is not None else None
            if gid_number is None:
                raise TraceError(f"{user}: group {group!r} not found in the image's /etc/group")
        gid = gid_number
    groups: set[int] = set()
    if name and _number(name) is None:
        for row in _table(root, "/etc/group"):
            members = row[3].split(",") if len(row) > 3 else []
            number = _number(row[2])
            if name in members and number is not None and number != gid:
                groups.add(number)
    return ResolvedUser(uid, gid, home, tuple(sorted(groups)))


__all__ = ["HostRoot", "ResolvedUser", "find_program", "mkdirs_in_root", "resolve_in_root",
           "resolve_user", "shift_ownership"]
