"""What every sample recipe shares: a layer builder, the build context, host tool helpers.

A recipe module defines NAME, DESCRIPTION, DOCKER_FORM ("oci" | "legacy") and
`build(ctx) -> Recipe`. `sample_images/build.py` turns each Recipe into layer tars with
slim.emitters.imagewriter and writes `<name>.docker.tar` and `<name>.oci/`.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import io
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from slim.model import EntryKind, FileEntry, normpath, parent_dirs

log = logging.getLogger(__name__)

SRC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
CREATED = "2024-01-01T00:00:00Z"  # fixed: image configs must not depend on the build time
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class RecipeError(Exception):
    """A recipe cannot run on this host (a tool or a download is missing)."""


@dataclass
class Layer:
    """The members of one layer: entries with their content, whiteouts and opaque directories.

    Parent directories are added (0755, root) unless given explicitly, as `docker build` does.
    """

    created_by: str
    compression: str = "gzip"
    entries: dict[str, tuple[FileEntry, bytes | str | None]] = field(default_factory=dict)
    whiteouts: list[str] = field(default_factory=list)
    opaques: list[str] = field(default_factory=list)

    def _put(self, entry: FileEntry, data: bytes | str | None = None) -> None:
        for d in parent_dirs(entry.path):
            if d not in self.entries:
                self.entries[d] = (FileEntry(d, EntryKind.DIR, mode=0o755), None)
        self.entries[entry.path] = (entry, data)

    def dir(self, path: str, mode: int = 0o755) -> None:
        self._put(FileEntry(normpath(path), EntryKind.DIR, mode=mode))

    def file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        raw = data.encode() if isinstance(data, str) else data
        self._put(FileEntry(normpath(path), EntryKind.FILE, mode=mode, size=len(raw)), raw)

    def host_file(self, path: str, host_path: str, mode: int | None = None) -> None:
        """A file copied from the host (contents read when the layer is written)."""
        real = os.path.realpath(host_path)
        size = os.path.getsize(real)
        perm = mode if mode is not None else os.stat(real).st_mode & 0o7777
        self._put(FileEntry(normpath(path), EntryKind.FILE, mode=perm, size=size), "host:" + real)

    def symlink(self, path: str, target: str) -> None:
        self._put(FileEntry(normpath(path), EntryKind.SYMLINK, mode=0o777, linkname=target))

    def hardlink(self, path: str, target: str, mode: int = 0o755) -> None:
        self._put(FileEntry(normpath(path), EntryKind.HARDLINK, mode=mode, linkname=normpath(target)))

    def whiteout(self, path: str) -> None:
        self.whiteouts.append(normpath(path))

    def opaque(self, path: str) -> None:
        self.opaques.append(normpath(path))

    def open_data(self, data: bytes | str | None) -> BinaryIO | None:
        if data is None:
            return None
        if isinstance(data, str):
            return open(data[len("host:") :], "rb")
        return io.BytesIO(data)


@dataclass
class Recipe:
    """Layers (base first) and the `config` part of the OCI image config."""

    layers: list[Layer]
    config: dict[str, Any]
    tag: str

    def image_config(self) -> dict[str, Any]:
        return {
            "architecture": "amd64",
            "os": "linux",
            "created": CREATED,
            "config": self.config,
            "history": [{"created": CREATED, "created_by": layer.created_by} for layer in self.layers],
        }


@dataclass
class BuildContext:
    """A scratch directory shared by the recipes of one build, and what inputs they used."""

    work: str
    inputs: dict[str, str] = field(default_factory=dict)  # name → version or sha256, for the lock

    def scratch(self, name: str) -> str:
        path = os.path.join(self.work, name)
        os.makedirs(path, exist_ok=True)
        return path

    def record_file(self, label: str, path: str) -> None:
        with open(path, "rb") as f:
            self.inputs[label] = "sha256:" + hashlib.sha256(f.read()).hexdigest()

    @functools.cached_property
    def busybox(self) -> str:
        """Host path of the static busybox from Debian's busybox-static package (downloaded once)."""
        dl = self.scratch("busybox-deb")
        tool(["apt-get", "download", "busybox-static"], cwd=dl)
        debs = sorted(glob.glob(os.path.join(dl, "busybox-static_*.deb")))
        if not debs:
            raise RecipeError("apt-get download busybox-static produced no .deb")
        root = self.scratch("busybox-root")
        tool(["dpkg-deb", "-x", debs[-1], root])
        binary = os.path.join(root, "bin", "busybox")
        if not os.path.isfile(binary):
            raise RecipeError(f"{debs[-1]}: no bin/busybox inside")
        self.inputs["busybox-static.deb"] = os.path.basename(debs[-1]).replace("%3a", ":")
        self.record_file("busybox", binary)
        return binary


def tool(argv: list[str], cwd: str | None = None) -> str:
    """Run a host tool; raise RecipeError when it is missing or fails."""
    if shutil.which(argv[0]) is None:
        raise RecipeError(f"{argv[0]}: not installed")
    env = {**os.environ, "LC_ALL": "C", "SOURCE_DATE_EPOCH": "1704067200"}
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RecipeError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def compile_hello(ctx: BuildContext, compiler: str, out_name: str, extra: list[str]) -> str:
    """Compile src/hello.c with `compiler` in a scratch dir (same path → same bytes)."""
    work = ctx.scratch("cc-" + out_name)
    shutil.copyfile(os.path.join(SRC_DIR, "hello.c"), os.path.join(work, "hello.c"))
    argv = [compiler, "-O2", "-o", out_name, "hello.c", *extra]
    tool(argv, cwd=work)
    out = os.path.join(work, out_name)
    ctx.inputs[f"{out_name} build line"] = " ".join(argv)
    return out


def busybox_layer(ctx: BuildContext, applets: list[str], created_by: str) -> Layer:
    """/bin/busybox plus applet symlinks (bin/NAME -> busybox, usr/bin/NAME -> /bin/busybox)."""
    layer = Layer(created_by=created_by)
    layer.host_file("/bin/busybox", ctx.busybox, mode=0o755)
    for applet in applets:
        if applet.startswith("/usr/bin/"):
            layer.symlink(applet, "/bin/busybox")
        else:
            layer.symlink(f"/bin/{applet}", "busybox")
    return layer
