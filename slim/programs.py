"""Programs inside an image: finding one by name as execvp(3) does, and knowing the shells.

`which` follows glibc's posix/execvpe.c (and runc's exec.LookPath, which starts a container's
Entrypoint the same way):

* a name holding '/' is a path, taken relative to the working directory, and used as is;
* otherwise each element of PATH is tried in order as `DIR/NAME`; an empty element means the
  working directory, a relative one is relative to it;
* a candidate is taken when it is (after following symlinks inside the image) a regular file
  with an execute bit; a directory or a file without one fails with EACCES and the search goes
  on, as does a missing one (ENOENT, ENOTDIR).

Execute bits are read as root reads them (any of u/g/o x): slim does not know which uid a
script's children run as, and keeping a program root could run is the conservative answer.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Protocol

from slim.model import EntryKind, FileEntry, normpath

# Programs that read a command string with -c and run it as a shell script.
SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "posh", "busybox"})


class _StatFS(Protocol):
    def stat(self, path: str) -> FileEntry | None: ...


def is_executable(entry: FileEntry | None) -> bool:
    """A regular file with an execute bit (what execve accepts for root)."""
    return (entry is not None and entry.kind in (EntryKind.FILE, EntryKind.HARDLINK)
            and bool(entry.mode & 0o111))


def which(fs: _StatFS, name: str, path_dirs: Sequence[str], cwd: str = "/") -> str | None:
    """The image path execvp would run for `name`, as found (links not resolved), or None.

    `path_dirs` is PATH split on ':' with empty elements kept (they mean `cwd`).
    """
    if not name:
        return None
    cwd = cwd or "/"
    if "/" in name:
        path = normpath(posixpath.join(cwd, name))
        return path if is_executable(fs.stat(path)) else None
    for d in path_dirs:
        cand = normpath(posixpath.join(cwd, d or ".", name))
        if is_executable(fs.stat(cand)):
            return cand
    return None


def is_shell(name: str, real_name: str = "", args: Sequence[str] = ()) -> bool:
    """Whether a program called `name` (a link to `real_name`) run with `args` is a shell.

    A busybox applet link runs the applet its NAME says (`sh` → busybox is a shell, `ls` →
    busybox is not); busybox itself is a shell only as `busybox sh ARGS`.
    """
    base = posixpath.basename(name)
    real = posixpath.basename(real_name) if real_name else base
    if base == "busybox":
        return bool(args) and args[0] in ("sh", "ash", "bash")
    return base in SHELLS or (real in SHELLS and real != "busybox")


__all__ = ["SHELLS", "is_executable", "is_shell", "which"]
