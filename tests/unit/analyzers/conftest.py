"""Helpers for the ELF/ld.so tests: build real binaries with gcc / musl-gcc into temp roots.

Each test root is a plain directory loaded with `load_image("rootfs:DIR")`; the host's glibc loader
and libc are copied into it (as real files) so closures end where a real image's would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from slim.analyzers.base import AnalysisContext
from slim.image import LoadedImage
from slim.pipeline import load_image
from tests.conftest import require

HOST_LD = "/lib64/ld-linux-x86-64.so.2"
HOST_LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
MULTIARCH = "lib/x86_64-linux-gnu"


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def need_gcc() -> None:
    require(
        have("gcc") and os.path.exists(HOST_LD) and os.path.exists(HOST_LIBC),
        "gcc and host glibc (x86_64)",
    )


def cc(
    root: Path, out: str, source: str, *flags: str, compiler: str = "gcc", cwd: Path | None = None
) -> Path:
    """Compile C `source` into ROOT/out (an image path) with `flags`; returns the host path."""
    dest = root / out.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    src = dest.parent / (dest.name + ".c")
    src.write_text(source)
    cmd = [compiler, "-o", str(dest), str(src), "-Wl,--no-as-needed", *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd)
    src.unlink()
    assert proc.returncode == 0, f"{' '.join(cmd)}: {proc.stderr}"
    return dest


def shlib(
    root: Path, out: str, soname: str, *flags: str, body: str = "", compiler: str = "gcc"
) -> Path:
    """A shared library exporting `<soname stem>_fn` whose DT_SONAME is `soname`."""
    stem = soname.split(".so")[0].replace("-", "_")
    src = f"{body}\nint {stem}_fn(void) {{ return 42; }}\n"
    return cc(
        root, out, src, "-shared", "-fPIC", f"-Wl,-soname,{soname}", *flags, compiler=compiler
    )


def glibc_root(root: Path) -> Path:
    """Host ld.so at /lib64 and libc at /lib/x86_64-linux-gnu, plus the Debian ld.so.conf."""
    (root / "lib64").mkdir(parents=True, exist_ok=True)
    (root / MULTIARCH).mkdir(parents=True, exist_ok=True)
    shutil.copy(HOST_LD, root / "lib64/ld-linux-x86-64.so.2")
    shutil.copy(HOST_LIBC, root / MULTIARCH / "libc.so.6")
    conf_d = root / "etc/ld.so.conf.d"
    conf_d.mkdir(parents=True, exist_ok=True)
    (root / "etc/ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
    (conf_d / "x86_64-linux-gnu.conf").write_text(
        "/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n"
    )
    return root


def set_config(root: Path, **config: object) -> None:
    """Write the OCI image config sidecar (`Env`, `WorkingDir`, …) of a rootfs: directory."""
    (root / ".slim-config.json").write_text(
        json.dumps({"architecture": "amd64", "os": "linux", "config": config})
    )


def run_ldconfig(root: Path, *extra: str) -> None:
    """Generate ROOT/etc/ld.so.cache with the host's ldconfig (needs root for chroot)."""
    require(os.geteuid() == 0 and have("ldconfig"), "ldconfig -r needs root")
    proc = subprocess.run(
        ["ldconfig", "-r", str(root), *extra], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def open_root() -> Iterator:
    """`open_root(dir)` -> (LoadedImage, AnalysisContext); closed after the test."""
    opened: list[LoadedImage] = []

    def _open(root: Path) -> tuple[LoadedImage, AnalysisContext]:
        img = load_image(f"rootfs:{root}")
        opened.append(img)
        return img, AnalysisContext(fs=img.rootfs, config=img.image.config)

    yield _open
    for img in opened:
        img.close()
