"""RootFS: the squashed, read-only view of an image that every analyzer goes through.

Resolution has chroot semantics, as the kernel's path walk does inside a container: an absolute
symlink target restarts at the image root, `..` at the root stays at the root, and more than
MAX_SYMLINKS link traversals is a loop (Linux's ELOOP limit is 40). Nothing ever resolves to a
host path; contents come from the layer ContentStore (or, for rootfs: sources, from a host file
whose image path was resolved here first).
"""

from __future__ import annotations

import bisect
import fnmatch
import itertools
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from slim.errors import AnalysisError
from slim.fs.tree import SquashedTree
from slim.globs import compile_glob, has_magic, literal_prefix
from slim.model import EntryKind, FileEntry, Issue, normpath, parent

if TYPE_CHECKING:
    from slim.fs.layer import ContentStore

MAX_SYMLINKS = 40
MAX_GLOB3_MATCHES = 10_000  # per component: a bound on work for hostile configs


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where a path leads inside the image.

    `path` is the final path (symlinks resolved; the final component too when followed).
    `links` lists every symlink traversed on the way, in order: all must be kept with the file.
    `exists` is False when some component is missing; `error` names a loop or a non-directory.
    """

    path: str
    links: tuple[str, ...] = ()
    exists: bool = True
    error: str = ""


MAX_RESOLVED = 500_000  # memoized resolutions kept (a few hundred bytes each)
# The analyzers are asked about one file after another, and several read the same file (its
# first bytes for a magic number or a #! line, or all of it): the last reads are kept.
RECENT_READS = 8
RECENT_READ_BYTES = 1 << 20  # larger reads are not kept


class RootFS:
    """Read-only, chroot-style view of a squashed image filesystem."""

    def __init__(
        self,
        tree: SquashedTree,
        store: ContentStore | None = None,
        issues: list[Issue] | None = None,
    ) -> None:
        self.tree = tree
        self.store = store
        self.issues: list[Issue] = list(issues or [])
        self._paths: list[str] | None = None  # sorted paths, for glob
        self._resolved: dict[str, Resolved] = {}  # absolute path → resolve(path), links followed
        self._resolved_for = -1  # the entry count the memo was made for (a changed tree drops it)
        self._recent: dict[tuple[int, str], tuple[int | None, bytes]] = {}  # (layer, path) → limit, data

    # -- metadata -------------------------------------------------------------------------
    def get(self, path: str) -> FileEntry | None:
        """lstat: the entry at exactly this (normalized) path, links not followed."""
        return self.tree.get(path)

    def lexists(self, path: str) -> bool:
        return self.tree.get(path) is not None

    def exists(self, path: str) -> bool:
        return self.resolve(path).exists

    def stat(self, path: str) -> FileEntry | None:
        """stat: the entry a path leads to, links followed; None when missing or looping."""
        res = self.resolve(path)
        if not res.exists:
            return None
        entry = self.tree.get(res.path)
        if entry is not None and entry.kind is EntryKind.HARDLINK:
            target = self.tree.get(entry.linkname)
            if target is not None:
                return FileEntry(
                    path=entry.path, kind=EntryKind.FILE, mode=entry.mode, uid=entry.uid,
                    gid=entry.gid, size=target.size, layer=target.layer, mtime=entry.mtime,
                    xattrs=entry.xattrs,
                )
        return entry

    def is_dir(self, path: str) -> bool:
        e = self.stat(path)
        return e is not None and e.kind is EntryKind.DIR

    def is_file(self, path: str) -> bool:
        e = self.stat(path)
        return e is not None and e.is_file

    def readlink(self, path: str) -> str | None:
        e = self.tree.get(path)
        return e.linkname if e is not None and e.kind is EntryKind.SYMLINK else None

    def listdir(self, path: str) -> list[str]:
        res = self.resolve(path)
        return self.tree.listdir(res.path) if res.exists else []

    def walk(self) -> Iterator[FileEntry]:
        """Every entry, sorted by path (root excluded)."""
        return self.tree.walk()

    def glob(self, pattern: str) -> list[str]:
        """Image paths matching `pattern` in slim's glob dialect (slim.globs), sorted.

        Only the paths sharing the pattern's literal prefix are tested (a bisect into the
        sorted path list), so a rule like /usr/lib/locale/C.utf8/* costs little on a big image.
        """
        prefix = literal_prefix(pattern)
        paths = self._sorted_paths()
        lo = bisect.bisect_left(paths, prefix)
        if lo == len(paths) or not paths[lo].startswith(prefix):
            return []  # no candidate: the regex is not even compiled
        regex = compile_glob(pattern)
        out = []
        for p in itertools.islice(paths, lo, None):
            if not p.startswith(prefix):
                break
            if p != "/" and regex.match(p):
                out.append(p)
        return out

    def glob3(self, pattern: str, limit: int = MAX_GLOB3_MATCHES) -> list[str]:
        """glob(3) inside the image, for config files that mean it (ld.so.conf and nginx
        `include`): each '/'-separated component is matched on its own against the directory
        listing (`*` never crosses '/', links are followed), a name starting with '.' only by a
        pattern component starting with '.'. Sorted, as glob(3) sorts; at most `limit` paths."""
        current = ["/"]
        for part in [p for p in normpath(pattern).split("/") if p]:
            nxt: list[str] = []
            for base in current:
                if not has_magic(part):
                    cand = posixpath.join(base, part)
                    if self.lexists(cand) or self.exists(cand):
                        nxt.append(cand)
                    continue
                nxt.extend(posixpath.join(base, name) for name in self.listdir(base)
                           if fnmatch.fnmatchcase(name, part)
                           and (part.startswith(".") or not name.startswith(".")))
            current = nxt[:limit]
            if not current:
                break
        return sorted(p for p in current if p != "/")

    def _sorted_paths(self) -> list[str]:
        if self._paths is None or len(self._paths) != len(self.tree.entries):
            self._paths = sorted(self.tree.entries)
        return self._paths

    # -- resolution -----------------------------------------------------------------------
    def resolve(self, path: str, *, follow: bool = True, cwd: str = "/") -> Resolved:
        """Resolve `path` inside the image (see module doc). Never raises. Memoized: every
        analyzer asks about the same paths (a file's content, its directory, its links)."""
        if not path.startswith("/"):
            path = posixpath.join(cwd or "/", path)
        if not follow:
            return self._resolve(path, follow)
        if self._resolved_for != len(self.tree.entries) or len(self._resolved) > MAX_RESOLVED:
            self._resolved.clear()
            self._resolved_for = len(self.tree.entries)
        res = self._resolved.get(path)
        if res is None:
            res = self._resolved[path] = self._resolve(path, follow)
        return res

    def _resolve(self, path: str, follow: bool) -> Resolved:
        pending = [p for p in path.split("/") if p not in ("", ".")]
        pending.reverse()  # a stack: next component on top
        cur = "/"
        links: list[str] = []
        hops = 0
        get = self.tree.get
        while pending:
            part = pending.pop()
            if part == "..":
                cur = parent(cur)
                continue
            # posixpath.join(cur, part): a part never holds "/" (split above), cur is normalized
            nxt = "/" + part if cur == "/" else cur + "/" + part
            entry = get(nxt)
            if entry is None:
                rest = "/".join(reversed(pending))
                missing = posixpath.join(nxt, rest) if rest else nxt
                return Resolved(missing, tuple(links), exists=False)
            is_last = not pending
            if entry.kind is EntryKind.SYMLINK and (follow or not is_last):
                hops += 1
                if hops > MAX_SYMLINKS:
                    return Resolved(nxt, tuple(links), exists=False, error="symlink loop")
                links.append(nxt)
                target = entry.linkname
                parts = [p for p in target.split("/") if p not in ("", ".")]
                pending.extend(reversed(parts))
                if target.startswith("/"):
                    cur = "/"
                continue
            if not is_last and entry.kind is not EntryKind.DIR:
                rest = "/".join(reversed(pending))
                return Resolved(
                    posixpath.join(nxt, rest), tuple(links), exists=False, error="not a directory"
                )
            cur = nxt
        return Resolved(cur, tuple(links), exists=True)

    def realpath(self, path: str, cwd: str = "/") -> str:
        return self.resolve(path, cwd=cwd).path

    # -- contents -------------------------------------------------------------------------
    def _content_entry(self, path: str) -> FileEntry:
        res = self.resolve(path)
        if not res.exists:
            raise AnalysisError(f"{path}: {res.error or 'no such file in the image'}")
        entry = self.tree.get(res.path)
        if entry is not None and entry.kind is EntryKind.HARDLINK:
            entry = self.tree.get(entry.linkname)
        if entry is None or entry.kind is not EntryKind.FILE:
            raise AnalysisError(f"{path}: not a regular file")
        return entry

    def has_content(self, path: str) -> bool:
        """Whether the contents of `path` were captured for analysis."""
        try:
            entry = self._content_entry(path)
        except AnalysisError:
            return False
        return entry.size == 0 or (self.store is not None and self.store.has(entry.layer, entry.path))

    def open(self, path: str) -> BinaryIO:
        """Open a regular file's contents. Raises AnalysisError when not available."""
        entry = self._content_entry(path)
        if entry.size == 0:
            import io

            return io.BytesIO(b"")
        fobj = self.store.open(entry.layer, entry.path) if self.store else None
        if fobj is None:
            raise AnalysisError(f"{path}: contents were not captured for analysis")
        return fobj

    def read(self, path: str, limit: int | None = None) -> bytes:
        """Read (up to `limit` bytes of) a regular file, in one read of exactly that much.
        Raises AnalysisError."""
        entry = self._content_entry(path)
        if entry.size == 0 or limit == 0:
            return b""
        key = (entry.layer, entry.path)
        recent = self._recent.get(key)
        if recent is not None:
            got, kept = recent
            if got is None or len(kept) < got or (limit is not None and limit <= got):
                return kept if limit is None else kept[:limit]  # all of it, or enough of it
        want = limit if limit is None or limit >= 512 else 512  # a #! line or magic: one read for all
        data = self.store.read(entry.layer, entry.path, want) if self.store else None
        if data is None:
            raise AnalysisError(f"{path}: contents were not captured for analysis")
        if len(data) <= RECENT_READ_BYTES:
            recents = self._recent
            recents.pop(key, None)
            recents[key] = (want, data)
            while len(recents) > RECENT_READS:
                recents.pop(next(iter(recents)), None)
        return data if limit is None else data[:limit]

    def read_text(self, path: str, limit: int | None = 4 << 20) -> str:
        return self.read(path, limit).decode("utf-8", errors="replace")

    # -- sizes ----------------------------------------------------------------------------
    @property
    def size_bytes(self) -> int:
        """Regular-file bytes of the squashed filesystem; a hard-linked inode counts once."""
        return sum(e.size for e in self.tree.entries.values() if e.kind is EntryKind.FILE)

    @property
    def file_count(self) -> int:
        return sum(1 for p, e in self.tree.entries.items() if p != "/" and e.kind is not EntryKind.DIR)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
