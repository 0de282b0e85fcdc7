"""Plain, frozen data shared by every layer of slim (sources, fs, analyzers, graph, emitters).

Paths inside an image are always absolute, normalized POSIX strings ("/usr/bin/env"); the root
is "/". Nothing here touches the host filesystem.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class EntryKind(StrEnum):
    """What a path in an image is (the tar member types that matter)."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"


def normpath(path: str) -> str:
    """Normalize an image path lexically: absolute, no '.', '..' clamped at the root.

    `normpath("a/../../etc")` is "/etc": a member can never name something above the root.
    Linear in the length of `path` (the common case, no '.' or '..' component and no '//',
    runs in C: deep paths are read once per member).
    """
    split = path.split("/")
    if "." not in split and ".." not in split:
        stripped = path.strip("/")
        if "//" not in stripped:
            return "/" + stripped
    parts: list[str] = []
    for part in split:
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def under(path: str, prefix: str) -> bool:
    """Whether image path `path` is `prefix` or below it."""
    prefix = prefix.rstrip("/") or "/"
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def parent(path: str) -> str:
    """posixpath.dirname of a normalized absolute image path ("/a/b" → "/a", "/a" → "/"),
    without its general handling of repeated and trailing slashes: the tree's paths are
    normalized, and this runs once or more for every member of every layer."""
    return path[:path.rfind("/")] or "/"


def parent_dirs(path: str) -> list[str]:
    """The strict ancestors of an absolute image path, root first, excluding "/"."""
    out: list[str] = []
    cur = posixpath.dirname(path)
    while cur not in ("/", ""):
        out.append(cur)
        cur = posixpath.dirname(cur)
    out.reverse()
    return out


def ancestors_of(paths: Iterable[str]) -> set[str]:
    """The strict ancestors of every path, "/" excluded: `{d for p in paths for d in
    parent_dirs(p)}`, walking up from each path only until a directory already seen."""
    out: set[str] = set()
    for path in paths:
        d = posixpath.dirname(path)
        while d not in ("/", "") and d not in out:
            out.add(d)
            d = posixpath.dirname(d)
    return out


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One path of one layer (or of the squashed filesystem)."""

    path: str
    kind: EntryKind
    mode: int = 0o644  # permission bits incl. setuid/setgid/sticky, without the file type
    uid: int = 0
    gid: int = 0
    size: int = 0  # bytes of content for FILE; 0 otherwise
    linkname: str = ""  # SYMLINK: raw target as stored; HARDLINK: normalized target path
    layer: int = 0  # index of the layer that provided this entry, base = 0
    mtime: int = 0
    xattrs: tuple[tuple[str, str], ...] = ()  # e.g. ("security.capability", base64)
    devmajor: int = 0
    devminor: int = 0

    @property
    def is_dir(self) -> bool:
        return self.kind is EntryKind.DIR

    @property
    def is_file(self) -> bool:
        return self.kind in (EntryKind.FILE, EntryKind.HARDLINK)


@dataclass(frozen=True)
class ImageConfig:
    """The runtime configuration of an image (OCI image config `config` + platform)."""

    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # "KEY=VALUE" in image order
    workdir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()  # "8080/tcp"
    volumes: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    stop_signal: str = ""
    healthcheck: Mapping[str, object] | None = None
    created: str = ""

    @property
    def env_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.env:
            key, _, value = item.partition("=")
            out[key] = value
        return out

    @property
    def path_dirs(self) -> list[str]:
        """PATH from the image Env, or Docker's default when unset."""
        path = self.env_dict.get(
            "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        )
        return path.split(":")  # an empty element means the working directory (execvp)

    @property
    def argv(self) -> tuple[str, ...]:
        """What the container runs: Entrypoint followed by Cmd (Docker semantics)."""
        return tuple(self.entrypoint) + tuple(self.cmd)


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """Metadata of one layer, base first."""

    index: int
    digest: str  # digest of the blob as stored (compressed)
    diff_id: str  # digest of the uncompressed tar
    size: int  # stored blob size
    media_type: str = ""
    created_by: str = ""
    empty: bool = False


@dataclass(frozen=True, slots=True, order=True)
class Edge:
    """A reason to keep `dst`: `src` needs it (kind says how, evidence says where we saw it)."""

    src: str
    dst: str
    kind: str
    evidence: str = ""


@dataclass(frozen=True, slots=True, order=True)
class Unknown:
    """Something the analysis could not decide; the file involved is kept."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class Issue:
    """A problem found while reading the image (unsafe member, corrupt file) that was contained."""

    path: str
    reason: str
    layer: int = -1


ROOT = "<root>"  # graph node all roots hang from
