"""Safe extraction of an image's layers into a host directory (the root a tracer runs).

Layers are applied base first, with OCI whiteouts (image-spec layer.md "Whiteouts"): a member
`.wh.NAME` removes NAME from the layers below, `.wh..wh..opq` empties its directory of
everything the layers below put there — the same result as go-containerregistry's
`mutate.Extract`.

The image is untrusted, so nothing is ever written outside `dest`:

* member names are normalised; a name that climbs above the root is skipped;
* every write goes through directory descriptors opened with O_NOFOLLOW, one component at a
  time; a symlink met on the way (e.g. `lib -> usr/lib`) is resolved by us *inside* dest with
  chroot semantics (absolute targets restart at dest, `..` stops at dest), the way Docker's
  `FollowSymlinkInScope` does — the kernel never follows one for us;
* the final component is never followed: an existing entry there is replaced, not written through;
* hard links must name a target inside dest, and are made with `linkat` without following;
* device nodes are never created (the sandbox provides its own /dev; a block device in a
  writable tree would hand the app the host disk): they are skipped and reported;
* modes are kept (directory modes applied last, so a 0555 directory can still be filled), and
  uid/gid when running as root. Symlinks are written as-is (absolute targets are resolved inside
  the sandbox, whose root is dest).

Costs are bounded for hostile layers: the tar is read with slim.fs.layer's checks
(`open_tar_stream`, `LayerGuard`: duplicate members and members written through a symlink of
the same layer are refused as the layer reader refuses them); file data goes through
slim.outputs.SparseWriter, so sparse members and zero runs become holes, not disk; the parent
directory of the previous member is kept open, so a layer in tar order costs O(1) directory
opens per member (5000 nested directories used to cost O(depth^2) opens each); and members more
than MAX_DEPTH directories deep are not extracted (skipped and reported: Python's recursive
`shutil.rmtree`, which cleans extracted roots up, fails beyond ~900 levels).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from slim.errors import LayerError
from slim.fs.layer import (
    LayerGuard,
    corrupt_errors,
    decompressed,
    open_tar_stream,
    whiteout_target,
)
from slim.fs.tarstream import TarMember, TarReader
from slim.fs.tree import OPAQUE_MARKER, WHITEOUT_PREFIX
from slim.outputs import SparseWriter

log = logging.getLogger(__name__)

MAX_SYMLINK_HOPS = 40  # Linux's MAXSYMLINKS (fs/namei.c)
MAX_DEPTH = 512  # directory levels below the root
CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Skipped:
    """A member that was not extracted, and why."""

    layer: int
    path: str
    reason: str


@dataclass
class ExtractReport:
    """What extraction did not reproduce exactly (sorted by the caller when shown)."""

    skipped: list[Skipped] = field(default_factory=list)
    files: int = 0


class _Unsafe(Exception):
    """A member that would escape dest or cannot be placed; skipped with the message."""


def member_parts(name: str) -> list[str] | None:
    """Components of a tar member name relative to the root; None when it climbs above it.
    Only '/' separates components (a backslash is a name character on Linux, as in the
    layer reader's model)."""
    if "\x00" in name:
        return None
    split = name.split("/")
    if "." not in split and ".." not in split:
        return [p for p in split if p]
    parts: list[str] = []
    for part in split:
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return parts


class _Root:
    """Directory-descriptor based writer confined to one root directory.

    `parent()` resolves a member's parent directory and returns an open descriptor for it.
    The last resolution is remembered (its descriptor stays open), so the next member in the
    same directory, or one level below it, costs one `openat`. `forget()` drops it; callers
    do so whenever an existing entry is removed or a symlink is made, which could change what
    a remembered name resolves to.
    """

    def __init__(self, dest: str) -> None:
        self.fd = os.open(dest, _DIR_FLAGS)
        self.as_root = os.geteuid() == 0
        self._last: tuple[tuple[str, ...], list[str], int] | None = None  # parts, real, fd

    def close(self) -> None:
        self.forget()
        os.close(self.fd)

    def forget(self) -> None:
        if self._last is not None:
            os.close(self._last[2])
            self._last = None

    def parent(self, parts: list[str], create: bool) -> tuple[list[str], int]:
        """(real components, open descriptor) of directory `parts`, symlinks resolved in
        scope; the caller closes the descriptor. Raises _Unsafe, OSError."""
        key = tuple(parts)
        last = self._last
        if last is not None and last[0] == key:
            return list(last[1]), os.dup(last[2])
        if last is not None and key[:-1] == last[0]:
            real, fd = self._walk(list(last[1]), os.dup(last[2]), [key[-1]], parts, create)
        else:
            real, fd = self._walk([], os.dup(self.fd), list(parts), parts, create)
        self.forget()
        self._last = (key, real, fd)
        return list(real), os.dup(fd)

    def resolve_dir(self, parts: list[str], create: bool) -> list[str]:
        """The real (symlink-free) component list of directory `parts`, resolved in scope."""
        real, fd = self.parent(parts, create)
        os.close(fd)
        return real

    def _walk(self, real: list[str], fd: int, todo: list[str], parts: list[str],
              create: bool) -> tuple[list[str], int]:
        """Resolve `todo` from directory `real` (open as `fd`, which this consumes), one
        `openat(O_NOFOLLOW)` per component."""
        hops = 0
        try:
            while todo:
                name = todo.pop(0)
                if name in ("", "."):
                    continue
                if name == "..":
                    if real:
                        real.pop()
                        os.close(fd)
                        fd = -1
                        fd = self.open_dir(real)
                        fd = fd if fd != self.fd else os.dup(fd)
                    continue
                try:
                    nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise _Unsafe(f"{'/'.join(parts)}: parent does not exist") from None
                    os.mkdir(name, 0o755, dir_fd=fd)
                    nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if not stat.S_ISLNK(st.st_mode):
                        raise _Unsafe(f"{'/'.join(parts)}: a parent is not a directory") from None
                    hops += 1
                    if hops > MAX_SYMLINK_HOPS:
                        raise _Unsafe(f"{'/'.join(parts)}: too many symlinks in parent path") from None
                    target = os.readlink(name, dir_fd=fd)
                    if target.startswith("/"):
                        real = []
                        os.close(fd)
                        fd = -1
                        fd = os.dup(self.fd)
                    todo = [p for p in target.split("/") if p] + todo
                    continue
                os.close(fd)
                fd = nfd
                real.append(name)
                if len(real) > MAX_DEPTH:
                    raise _Unsafe(f"{'/'.join(parts)}: more than {MAX_DEPTH} directories deep")
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        return real, fd

    def open_dir(self, real: list[str]) -> int:
        """Open an already resolved directory with O_NOFOLLOW at every step (caller closes)."""
        fd = self.fd
        for name in real:
            nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            if fd != self.fd:
                os.close(fd)
            fd = nfd
        return fd


def _remove(name: str, dir_fd: int) -> None:
    """Remove `name` in `dir_fd` whatever it is, never following a symlink."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)  # fd-based and symlink-safe on Linux (3.11+)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _empty_except(root: _Root, real: list[str], keep: set[str], prefix: str) -> None:
    """Opaque directory: remove every entry under `real` the current layer did not write."""
    fd = root.open_dir(real)
    try:
        for name in sorted(os.listdir(fd)):
            path = f"{prefix}/{name}" if prefix else name
            if path in keep:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    _empty_except(root, [*real, name], keep, path)
            else:
                _remove(name, fd)
    finally:
        if fd != root.fd:
            os.close(fd)


def extract_layers(
    openers: Sequence[Callable[[], BinaryIO]], dest: str, *, name: str = "image",
    on_bytes: Callable[[int], None] | None = None,
) -> ExtractReport:
    """Unpack layer blobs (each opened by one of `openers`, base first) into the empty
    directory `dest`. Raises LayerError when a layer is not a readable tar; unsafe members
    are skipped and listed in the report."""
    report = ExtractReport()
    for index, opener in enumerate(openers):
        what = f"{name}: layer {index}"
        try:
            with opener() as blob:
                stream, _ = decompressed(blob)
                extract_tar(stream, dest, index, report, on_bytes=on_bytes, what=what)
        except corrupt_errors() as exc:
            raise LayerError(f"{what}: cannot extract: {exc}") from None
    return report


def extract_tar(
    stream: BinaryIO,
    dest: str,
    layer: int = 0,
    report: ExtractReport | None = None,
    *,
    on_bytes: Callable[[int], None] | None = None,
    what: str = "layer",
) -> ExtractReport:
    """Apply one layer tar stream onto `dest` (see the module docstring for the rules)."""
    report = report if report is not None else ExtractReport()
    root = _Root(dest)
    written: set[str] = set()  # paths (and their parents) this layer wrote, for opaque dirs
    dir_modes: list[tuple[list[str], TarMember]] = []
    guard = LayerGuard(what)
    try:
        with open_tar_stream(stream) as tar:
            for member in tar:
                parts = member_parts(member.name)
                shown = "/" + "/".join(parts or [])
                if parts is None:
                    report.skipped.append(Skipped(layer, member.name, "name climbs above the root"))
                    continue
                if not parts:
                    continue  # the root itself ("./")
                guard.check(shown, "dir" if member.isdir() else "symlink" if member.issym() else "other")
                if len(parts) > MAX_DEPTH + 1:
                    report.skipped.append(Skipped(layer, shown[:200] + "…",
                                                  f"more than {MAX_DEPTH} directories deep"))
                    continue
                try:
                    _apply(root, tar, member, parts, written, dir_modes, report, layer, on_bytes)
                except _Unsafe as exc:
                    report.skipped.append(Skipped(layer, shown, str(exc)))
                except OSError as exc:
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise
                    report.skipped.append(Skipped(layer, shown, exc.strerror or str(exc)))
        root.forget()
        # directory modes last, deepest first, so read-only directories could still be filled
        for real, member in sorted(dir_modes, key=lambda item: -len(item[0])):
            try:
                fd = root.open_dir(real)
            except OSError:
                continue
            try:
                _set_owner_mode(root, fd, member)
            finally:
                if fd != root.fd:
                    os.close(fd)
    finally:
        root.close()
    log.debug("%s: extracted, %d skipped so far", what, len(report.skipped))
    return report


def _set_owner_mode(root: _Root, fd: int, member: TarMember) -> None:
    if root.as_root:
        os.fchown(fd, member.uid, member.gid)
    os.fchmod(fd, member.mode & 0o7777)


def _apply(
    root: _Root,
    tar: TarReader,
    member: TarMember,
    parts: list[str],
    written: set[str],
    dir_modes: list[tuple[list[str], TarMember]],
    report: ExtractReport,
    layer: int,
    on_bytes: Callable[[int], None] | None,
) -> None:
    name = parts[-1]
    parent_real, pfd = root.parent(parts[:-1], create=True)
    # opaque handling needs the paths this layer wrote, in real (resolved) terms
    try:
        if name == OPAQUE_MARKER:
            root.forget()
            _empty_except(root, parent_real, written, "/".join(parent_real))
            return
        if name.startswith(WHITEOUT_PREFIX):
            victim = whiteout_target(name)
            if victim is None:
                raise _Unsafe("not a valid whiteout name; ignored")
            root.forget()
            _remove(victim, pfd)
            return
        # the parents first, longest first, stopping at one already recorded: linear in the
        # length of the path, however deep
        for i in range(len(parent_real), 0, -1):
            prefix = "/".join(parent_real[:i])
            if prefix in written:
                break
            written.add(prefix)
        written.add("/".join([*parent_real, name]))
        try:
            existing = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if member.isdir():
            _apply_dir(root, name, pfd, existing, member, parent_real, dir_modes)
            return
        if existing is not None:
            root.forget()
            _remove(name, pfd)
        if member.isreg():
            _apply_regular(root, tar, member, name, pfd, on_bytes)
            report.files += 1
        elif member.issym():
            root.forget()
            _apply_symlink(root, member, name, pfd)
        elif member.islnk():
            _apply_hardlink(root, member, name, pfd)
        elif member.isfifo():
            os.mkfifo(name, member.mode & 0o7777, dir_fd=pfd)
        elif member.ischr() or member.isblk():
            kind = "character" if member.ischr() else "block"
            raise _Unsafe(f"{kind} device {member.devmajor}:{member.devminor} not created")
        else:
            raise _Unsafe(f"unsupported tar member type {member.type!r}")
    finally:
        os.close(pfd)


def _apply_dir(
    root: _Root, name: str, pfd: int, existing: os.stat_result | None,
    member: TarMember, parent_real: list[str],
    dir_modes: list[tuple[list[str], TarMember]],
) -> None:
    """A directory member: replace a non-directory, create it private; its mode comes last."""
    if existing is not None and not stat.S_ISDIR(existing.st_mode):
        root.forget()
        _remove(name, pfd)
        existing = None
    if existing is None:
        os.mkdir(name, 0o700, dir_fd=pfd)
    dir_modes.append(([*parent_real, name], member))


def _apply_regular(
    root: _Root, tar: TarReader, member: TarMember, name: str, pfd: int,
    on_bytes: Callable[[int], None] | None,
) -> None:
    """A regular file member: created exclusively (O_EXCL|O_NOFOLLOW), then owner, xattrs,
    mode and mtime. Zero runs (a sparse member's holes too) are left as holes."""
    src = tar.extractfile(member)
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=pfd)
    try:
        if src is not None:
            writer = SparseWriter(fd)
            while chunk := src.read(CHUNK):
                writer.write(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
            writer.close()
        if root.as_root:
            os.fchown(fd, member.uid, member.gid)
            _set_xattrs(fd, member)
        os.fchmod(fd, member.mode & 0o7777)
        os.utime(fd, (member.mtime, member.mtime))
    finally:
        os.close(fd)


def _apply_symlink(root: _Root, member: TarMember, name: str, pfd: int) -> None:
    """A symlink member: written as-is (never followed), owned like the member when root."""
    os.symlink(member.linkname, name, dir_fd=pfd)
    if root.as_root:
        os.chown(name, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)


def _apply_hardlink(root: _Root, member: TarMember, name: str, pfd: int) -> None:
    """A hard link member: its target must be a non-directory inside the root (`linkat`
    without following)."""
    target = member_parts(member.linkname)
    if not target:
        raise _Unsafe(f"hard link target {member.linkname!r} is outside the root")
    _, tfd = root.parent(target[:-1], create=False)
    try:
        tst = os.stat(target[-1], dir_fd=tfd, follow_symlinks=False)
        if stat.S_ISDIR(tst.st_mode):
            raise _Unsafe(f"hard link target {member.linkname!r} is a directory")
        os.link(target[-1], name, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        raise _Unsafe(f"hard link target {member.linkname!r} does not exist") from None
    finally:
        os.close(tfd)


def _set_xattrs(fd: int, member: TarMember) -> None:
    """Restore PAX `SCHILY.xattr.*` records (file capabilities such as ping's
    security.capability live there); set after chown, which clears capabilities."""
    for key, value in sorted((member.pax_headers or {}).items()):
        if not key.startswith("SCHILY.xattr."):
            continue
        name = key[len("SCHILY.xattr."):]
        if not name.startswith(("security.capability", "user.", "trusted.")):
            continue  # selinux labels and ACLs belong to the build host
        try:
            os.setxattr(fd, name, value.encode("utf-8", "surrogateescape"))
        except OSError as exc:
            log.debug("%s: xattr %s not restored: %s", member.name, name, exc)
