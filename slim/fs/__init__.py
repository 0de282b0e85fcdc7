"""Layer reading, whiteouts, squashing, and the chroot-style RootFS."""

from __future__ import annotations

from slim.fs.layer import ContentStore, LayerReadResult, read_layer
from slim.fs.rootfs import Resolved, RootFS
from slim.fs.tree import FileTree, SquashedTree, squash

__all__ = [
    "ContentStore",
    "FileTree",
    "LayerReadResult",
    "Resolved",
    "RootFS",
    "SquashedTree",
    "read_layer",
    "squash",
]
