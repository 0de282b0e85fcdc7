"""Writing outputs safely: the one atomic writer, and what slim may replace.

Every file slim writes (reports, profiles, graphs, images, manifests, cache entries) goes
through here. The rules, so a typo in `--output` never destroys anything:

* `-` means standard output (the caller handles it; `is_stdout`).
* A regular file or an absent path is written whole into a temporary sibling and renamed into
  place: readers never see half a file, and a failure leaves the old file as it was.
* A symlink is followed deliberately: the file it points to is what gets written (as a shell
  redirection would), and the link stays.
* A character device or FIFO (`/dev/null`, `/dev/stdout`, a named pipe) is written through,
  never replaced. A socket or block device is refused.
* A directory is never replaced by a file. An output *directory* (OCI layout, manifest
  directory) replaces only an absent path, an empty directory, or a previous slim output of the
  same kind (`replaceable_dir`); anything else is refused with one line naming it.
* `check_output` runs before any work, so a bad destination fails in a second, not after a
  traced run.

`SparseWriter` is how slim writes what an image's files expand to (extracted roots, the content
store, layer spools): runs of zero bytes become holes, so a file of 20 GB of zeros (a sparse
tar member, a compression bomb) costs no disk, and reads back the same.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from typing import BinaryIO

from slim import reaper
from slim.errors import EmitError

STDOUT = "-"
HOLE_BLOCK = 64 << 10  # zero runs this long (aligned to it) become holes
_ZEROS = bytes(HOLE_BLOCK)


def is_stdout(path: str) -> bool:
    return path == STDOUT


def _target(path: str) -> str:
    """`path` with symlinks followed (the file that will really be written)."""
    return os.path.realpath(path) if os.path.islink(path) else path


def check_output(path: str, *, what: str = "output", directory: bool = False,
                 is_previous: Callable[[str], bool] | None = None) -> None:
    """Raise EmitError when `path` cannot receive an output of this kind, before any work.

    `directory`: the output is a directory (replaceable only when `is_previous` says it is
    a previous slim output of the same kind, or it is empty).
    """
    if is_stdout(path):
        if directory:
            raise EmitError(f"{what} '-': a directory output cannot go to standard output")
        return
    if not path or "\x00" in path:
        raise EmitError(f"{path!r}: not a usable path for the {what}")
    try:
        _check_output(path, what, directory, is_previous)
    except OSError as exc:  # a listing or lookup that fails on the way (EACCES, ELOOP, EIO)
        raise EmitError(f"{path}: cannot use as {what}: {exc.strerror or exc}") from None


def _check_output(path: str, what: str, directory: bool,
                  is_previous: Callable[[str], bool] | None) -> None:
    target = _target(path)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise EmitError(f"{path}: cannot use as {what}: {exc.strerror}") from None
    parent = os.path.dirname(os.path.abspath(target)) or "."
    if st is None:
        if not os.path.isdir(parent):
            raise EmitError(f"{path}: cannot write the {what}: directory {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise EmitError(f"{path}: cannot write the {what}: directory {parent} is not writable")
        return
    mode = st.st_mode
    if directory:
        if not stat.S_ISDIR(mode):
            raise EmitError(f"{path}: exists and is not a directory; refusing to replace it with the {what}")
        if os.listdir(target) and not (is_previous and is_previous(target)):
            raise EmitError(f"{path}: a non-empty directory that is not a previous slim {what}; "
                            "refusing to replace it (remove it or choose another path)")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise EmitError(f"{path}: cannot replace {what}: directory {parent} is not writable")
        return
    if stat.S_ISDIR(mode):
        raise EmitError(f"{path}: is a directory; the {what} is a file")
    if stat.S_ISSOCK(mode) or stat.S_ISBLK(mode):
        kind = "socket" if stat.S_ISSOCK(mode) else "block device"
        raise EmitError(f"{path}: is a {kind}; refusing to write the {what} there")
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        if not os.access(target, os.W_OK):
            raise EmitError(f"{path}: not writable")
        return
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EmitError(f"{path}: cannot replace: directory {parent} is not writable")


def _write_through(path: str) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


@contextlib.contextmanager
def atomic_file(path: str, *, what: str = "output", mode: int = 0o666) -> Iterator[str]:
    """Yield a host path to write the whole output into; on success it becomes `path`.

    The permission bits are `mode` minus the umask, as for a file `open()` creates. For a
    character device or FIFO the yielded path is a temp file copied through at the end.
    Raises EmitError naming `path`.
    """
    check_output(path, what=what)
    target = _target(path)
    through = _write_through(target)
    parent = tempfile.gettempdir() if through else (os.path.dirname(os.path.abspath(target)) or ".")
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{os.path.basename(target)}.slim-")
        os.close(fd)
    except OSError as exc:
        raise EmitError(f"{path}: cannot write the {what}: {exc.strerror}") from None
    try:
        reaper.track(tmp)  # a killed process leaves no half-written sibling either
        yield tmp
        if through:
            with open(tmp, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, mode & ~umask)
            os.replace(tmp, target)
    except OSError as exc:
        raise EmitError(f"{path}: cannot write the {what}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        reaper.untrack(tmp)


def write_file(path: str, data: str | bytes, *, what: str = "output") -> None:
    """Write `data` to `path` under the rules of this module. Raises EmitError."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_file(path, what=what) as tmp, open(tmp, "wb") as f:
        f.write(raw)


@contextlib.contextmanager
def atomic_dir(path: str, *, what: str = "output",
               is_previous: Callable[[str], bool] | None = None) -> Iterator[str]:
    """Yield a temporary sibling directory; on success it replaces `path` as a whole.

    `path` may be absent, an empty directory or (per `is_previous`) a previous slim output of
    the same kind; check_output refuses anything else. The old directory moves aside first and
    is removed only after the new one is in place. Raises EmitError.
    """
    check_output(path, what=what, directory=True, is_previous=is_previous)
    target = _target(path)
    parent = os.path.dirname(os.path.abspath(target)) or "."
    base = os.path.basename(os.path.abspath(target))
    try:
        tmp = reaper.mkdtemp(prefix=f".{base}.slim-", dir=parent)
    except OSError as exc:
        raise EmitError(f"{path}: cannot write the {what}: {exc.strerror}") from None
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        old = ""
        if os.path.isdir(target):
            old = tempfile.mkdtemp(prefix=f".{base}.old-", dir=parent)
            os.rmdir(old)
            os.replace(target, old)
        os.replace(tmp, target)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise EmitError(f"{path}: cannot write the {what}: {exc.strerror or exc}") from None
    finally:
        reaper.remove_tree(tmp)


class SparseWriter:
    """Writes a file sequentially through a descriptor with pwrite, leaving every all-zero
    block (blocks aligned to HOLE_BLOCK of the file offset) as a hole (lseek(2) semantics: a
    hole reads as zeros). Only for regions never written before (a new file, or appending);
    `close` sets the final size, so a file that ends in zeros still has its full length.
    Does not own `fd`."""

    def __init__(self, fd: int, offset: int = 0) -> None:
        self.fd = fd
        self.start = offset
        self.pos = offset
        self._end = offset  # the end of the last bytes written: what the file surely reaches

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if not isinstance(data, bytes):
            data = bytes(data)  # bytes compare with memcmp; a memoryview compares per item
        total = len(data)
        run_start = -1  # start of pending non-zero data
        i = 0
        while i < total:
            step = min(HOLE_BLOCK - (self.pos + i) % HOLE_BLOCK, total - i)
            if data[i : i + step] == _ZEROS[:step]:
                if run_start >= 0:
                    self._pwrite(memoryview(data)[run_start:i], self.pos + run_start)
                    run_start = -1
            elif run_start < 0:
                run_start = i
            i += step
        if run_start >= 0:
            self._pwrite(memoryview(data)[run_start:], self.pos + run_start)
        self.pos += total
        return total

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        """Nothing is buffered (file-object protocol, for tarfile)."""

    def _pwrite(self, view: memoryview, offset: int) -> None:
        while view:
            n = os.pwrite(self.fd, view, offset)
            view = view[n:]
            offset += n
        self._end = max(self._end, offset)

    @property
    def written(self) -> int:
        """Bytes written so far (holes included)."""
        return self.pos - self.start

    def close(self) -> None:
        """Extend the file to the last byte written when it ended in a hole."""
        if self._end < self.pos and os.fstat(self.fd).st_size < self.pos:
            os.ftruncate(self.fd, self.pos)


def copy_sparse(src: BinaryIO, fd: int) -> int:
    """Copy the rest of `src` to the new file `fd` through a SparseWriter; returns the
    bytes copied (holes included)."""
    writer = SparseWriter(fd, os.lseek(fd, 0, os.SEEK_CUR))
    while chunk := src.read(1 << 20):
        writer.write(chunk)
    writer.close()
    os.lseek(fd, writer.pos, os.SEEK_SET)
    return writer.written


__all__ = ["HOLE_BLOCK", "STDOUT", "SparseWriter", "atomic_dir", "atomic_file", "check_output", "copy_sparse", "is_stdout", "write_file"]
