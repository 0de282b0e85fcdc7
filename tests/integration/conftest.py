"""Shared fixtures of the acceptance tests on real images: a Docker client and one real Debian
root filesystem (debootstrap minbase bookworm + lighttpd + curl), built at most once per machine.

The Debian root is cached outside the repository and reused by later runs:

- `$SLIM_TEST_ROOTFS_CACHE` when set; else the bench harness's cache (`$SLIM_BENCH_CACHE` or
  ~/.cache/slim-bench) when it already holds a debootstrap base; else ~/.cache/slim-test.
- `<cache>/base/rootfs` is the debootstrap minbase (bench.build.ensure_base: the mirror comes from
  the host's apt sources at run time, never a hard-coded host), shared with the bench images so
  CI runs debootstrap once.
- `<cache>/acceptance/rootfs` is a copy of the base with `apt-get install lighttpd curl` done in
  a chroot (/proc mounted for the install and unmounted afterwards).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import have_docker, is_root, require

PACKAGES = ("lighttpd", "curl")
CHROOT_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "DEBIAN_FRONTEND": "noninteractive",
    "LANG": "C.UTF-8",
    "HOME": "/root",
}


def rootfs_cache() -> str:
    """The cache directory holding base/ and acceptance/ (see the module docstring)."""
    explicit = os.environ.get("SLIM_TEST_ROOTFS_CACHE")
    if explicit:
        return os.path.abspath(explicit)
    from bench.build import cache_dir

    bench = cache_dir()
    if os.path.exists(os.path.join(bench, "base", ".done")):
        return bench
    return os.path.abspath(os.path.expanduser("~/.cache/slim-test"))


@contextlib.contextmanager
def chroot_mounts(root: str) -> Iterator[None]:
    """/proc mounted in `root` and the host's resolv.conf copied in; both undone afterwards.
    A policy-rc.d exiting 101 keeps maintainer scripts from starting services (invoke-rc.d(8))."""
    proc = os.path.join(root, "proc")
    os.makedirs(proc, exist_ok=True)
    policy = os.path.join(root, "usr/sbin/policy-rc.d")
    resolv = os.path.join(root, "etc/resolv.conf")
    saved = resolv + ".slim-test"
    had_resolv = os.path.lexists(resolv)
    subprocess.run(["mount", "-t", "proc", "proc", proc], check=True, capture_output=True)
    try:
        with open(policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
        if had_resolv:
            os.replace(resolv, saved)
        shutil.copyfile("/etc/resolv.conf", resolv)
        yield
    finally:
        subprocess.run(["umount", proc], check=False, capture_output=True)
        for path in (policy, resolv):
            with contextlib.suppress(OSError):
                os.unlink(path)
        if had_resolv:
            with contextlib.suppress(OSError):
                os.replace(saved, resolv)


def _chroot(root: str, *argv: str) -> None:
    proc = subprocess.run(["chroot", root, *argv], env=CHROOT_ENV, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"chroot {root} {' '.join(argv)}: exit {proc.returncode}\n{tail}")


def build_debian_rootfs(cache: str) -> str:
    """`<cache>/acceptance/rootfs` (built on first use): minbase + lighttpd + curl."""
    from bench.build import ensure_base

    out = os.path.join(cache, "acceptance")
    root = os.path.join(out, "rootfs")
    done = os.path.join(out, ".done")
    if os.path.exists(done) and os.path.isdir(root):
        return root
    base = ensure_base(cache)
    tmp = root + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(out, exist_ok=True)
    try:
        subprocess.run(["cp", "-a", base, tmp], check=True, capture_output=True)
        with chroot_mounts(tmp):
            _chroot(tmp, "apt-get", "update", "-qq")
            _chroot(tmp, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES)
            _chroot(tmp, "apt-get", "clean")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    open(done, "w").close()
    return root


@pytest.fixture(scope="session")
def debian_rootfs() -> str:
    """A real Debian bookworm root with lighttpd and curl installed (needs root, debootstrap)."""
    require(is_root(), "root is needed (debootstrap, chroot)")
    for tool in ("debootstrap", "chroot", "mount"):
        require(shutil.which(tool) is not None, f"{tool} is not installed")
    return build_debian_rootfs(rootfs_cache())


@pytest.fixture(scope="session")
def docker_client():  # type: ignore[no-untyped-def]
    """A Docker SDK client (CI: starts no daemon itself; .ci/run does)."""
    require(have_docker(), "a Docker daemon is needed")
    import docker

    return docker.from_env()


@pytest.fixture(scope="session")
def lighttpd_archive() -> str:
    """The bench harness's lighttpd image (bench/images.py: minbase + lighttpd + a static page),
    as a docker-archive built with slim.emitters.imagewriter; cached, built on first use
    (needs root) on the same debootstrap base as `debian_rootfs`."""
    from bench.build import build_image
    from bench.images import IMAGES

    cache = rootfs_cache()
    meta = os.path.join(cache, "images", "lighttpd", "build.json")
    if not os.path.exists(meta):
        require(is_root(), "root is needed to build the lighttpd image (debootstrap, chroot)")
        for tool in ("debootstrap", "chroot", "mount"):
            require(shutil.which(tool) is not None, f"{tool} is not installed")
    return build_image(IMAGES["lighttpd"], cache=cache).docker_archive
