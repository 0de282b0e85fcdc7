"""Build and cache the benchmark images: debootstrap minbase once, then one chroot per image.

Layout of the cache ($SLIM_BENCH_CACHE or ~/.cache/slim-bench; never inside the repository):

    base/rootfs/            debootstrap --variant=minbase, apt caches and lists removed
    base/layer/<sha256>     the base layer blob (gzip), shared by every image
    images/NAME/NAME.docker.tar, images/NAME/oci/, images/NAME/build.json (sizes, build time)

Each image has three layers like a typical Dockerfile: the base, the packages (the changes of
`apt-get install` against the base: new or changed paths, OCI whiteouts for deleted ones), and
the application files (plus what `post` steps such as `pip install` did, and the artifacts of a
throwaway `builder` stage such as a Go binary). Layers are written with slim.emitters.imagewriter.
Needs root (chroot).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.images import AppFile, Builder, ImageSpec
from bench.mirror import find_mirror

if TYPE_CHECKING:
    from slim.emitters.imagewriter import LayerBlob

log = logging.getLogger(__name__)

SUITE = "bookworm"
# Paths whose contents never go into a layer (the runtime provides them).
SKIP_CONTENT = ("dev", "proc", "sys", "run", "tmp")


class BuildError(RuntimeError):
    """An image could not be built; the message names the image and the failing step."""


@dataclass(frozen=True)
class BuiltImage:
    """A cached image: where its two forms are and what the build cost."""

    name: str
    docker_archive: str
    oci_dir: str
    size_bytes: int  # bytes of the docker-archive file
    build_seconds: float
    spec_sha: str = ""  # spec_digest() of what was built; a changed spec is rebuilt


def spec_digest(spec: ImageSpec) -> str:
    """A digest of everything the spec says (packages, files, steps, config), so a cached image
    whose spec changed is rebuilt."""
    return hashlib.sha256(repr(spec).encode()).hexdigest()[:16]


# Where the bench may find an existing debootstrap base to copy instead of running debootstrap
# again: the acceptance tests' cache (tests/integration/conftest.py), built by ensure_base too.
def _seed_bases() -> list[str]:
    out = []
    explicit = os.environ.get("SLIM_TEST_ROOTFS_CACHE")
    if explicit:
        out.append(os.path.join(explicit, "base"))
    out.append(os.path.expanduser("~/.cache/slim-test/base"))
    return out


def cache_dir() -> str:
    return os.path.abspath(os.environ.get("SLIM_BENCH_CACHE") or os.path.expanduser("~/.cache/slim-bench"))


def _run(argv: list[str], what: str, **kw: object) -> None:
    log.info("%s: %s", what, " ".join(argv))
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-15:]
        raise BuildError(f"{what}: {' '.join(argv[:4])}… exited {proc.returncode}\n" + "\n".join(tail))


@contextlib.contextmanager
def _chroot_env(root: str) -> Iterator[None]:
    """/proc mounted, the host's resolv.conf and a policy-rc.d that stops services from starting
    (invoke-rc.d(8) honours exit 101 of /usr/sbin/policy-rc.d); all undone afterwards."""
    proc = os.path.join(root, "proc")
    os.makedirs(proc, exist_ok=True)
    policy = os.path.join(root, "usr/sbin/policy-rc.d")
    resolv = os.path.join(root, "etc/resolv.conf")
    saved = os.path.join(root, "etc/.resolv.conf.bench")
    had_resolv = os.path.lexists(resolv)
    ca = os.path.join(root, CHROOT_CA.lstrip("/"))
    _run(["mount", "-t", "proc", "proc", proc], "mount /proc")
    try:
        with open(policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
        if had_resolv:
            os.replace(resolv, saved)  # restored as it was (same inode, same mtime)
        shutil.copyfile("/etc/resolv.conf", resolv)
        host_ca = _host_ca_bundle()
        if host_ca and os.path.isdir(os.path.dirname(ca)):
            shutil.copyfile(host_ca, ca)  # under /tmp: never in a layer (SKIP_CONTENT)
        yield
    finally:
        subprocess.run(["umount", "-l", proc], check=False)
        with contextlib.suppress(OSError):
            os.unlink(ca)
        with contextlib.suppress(OSError):
            os.unlink(policy)
        with contextlib.suppress(OSError):
            os.unlink(resolv)
        if had_resolv:
            with contextlib.suppress(OSError):
                os.replace(saved, resolv)


# The host's CA bundle, copied into the chroot for pip and npm: the host may reach the registries
# through a TLS-inspecting proxy whose CA only the host's bundle has.
CHROOT_CA = "/tmp/.bench-ca.pem"


def _host_ca_bundle() -> str:
    for path in (os.environ.get("PIP_CERT", ""), "/etc/ssl/certs/ca-certificates.crt"):
        if path and os.path.isfile(path):
            return path
    return ""


def _chroot(root: str, argv: list[str], what: str, extra_env: tuple[str, ...] = ()) -> None:
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LANG": "C.UTF-8",
        "HOME": "/root",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_CACHE_DIR": "1",
    }
    if os.path.isfile(os.path.join(root, CHROOT_CA.lstrip("/"))):
        env["PIP_CERT"] = env["NPM_CONFIG_CAFILE"] = CHROOT_CA
    for assignment in extra_env:
        name, _, value = assignment.partition("=")
        env[name] = value
    _run(["chroot", root, *argv], what, env=env)


def _clean_apt(root: str) -> None:
    """What a careful Dockerfile does after apt-get install: no .deb cache, no package lists."""
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        d = os.path.join(root, sub)
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            p = os.path.join(d, name)
            if name in ("partial", "lock"):
                continue
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)
    for name in ("pkgcache.bin", "srcpkgcache.bin"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(root, "var/cache/apt", name))


def ensure_base(cache: str) -> str:
    """The cached debootstrap minbase root (built on first use). Raises BuildError."""
    base = os.path.join(cache, "base")
    root = os.path.join(base, "rootfs")
    done = os.path.join(base, ".done")
    if os.path.exists(done) and os.path.isdir(root):
        if not os.path.exists(os.path.join(base, ".cleaned")):
            _clean_apt(root)
            open(os.path.join(base, ".cleaned"), "w").close()
        return root
    if os.geteuid() != 0:
        raise BuildError("base: debootstrap needs root")
    os.makedirs(base, exist_ok=True)
    tmp = root + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for seed in _seed_bases():
        seed_root = os.path.join(seed, "rootfs")
        if os.path.abspath(seed) == os.path.abspath(base) or not os.path.exists(os.path.join(seed, ".done")):
            continue
        if not os.path.isdir(seed_root):
            continue
        log.info("base: copying the debootstrap base of %s", seed)
        try:
            _run(["cp", "-a", seed_root, tmp], "base: copy an existing base")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _clean_apt(tmp)
        os.replace(tmp, root)
        open(done, "w").close()
        open(os.path.join(base, ".cleaned"), "w").close()
        return root
    mirror = find_mirror(SUITE)
    t0 = time.monotonic()
    try:
        _run(["debootstrap", "--variant=minbase", SUITE, tmp, mirror], "base: debootstrap")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _clean_apt(tmp)
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    open(done, "w").close()
    open(os.path.join(base, ".cleaned"), "w").close()
    log.info("base: debootstrap took %.0fs", time.monotonic() - t0)
    return root


# -- layers -----------------------------------------------------------------------------------

Sig = tuple[int, int, int, int, int, int, str]  # kind bits, mode, uid, gid, size, mtime, link


def _walk(root: str) -> Iterator[tuple[str, os.stat_result]]:
    """(image path, lstat) of every entry under `root`, parents first, sorted; never follows links."""
    stack = [""]
    while stack:
        rel = stack.pop()
        host = os.path.join(root, rel) if rel else root
        try:
            names = sorted(os.listdir(host), reverse=True)
        except OSError:
            continue
        for name in names:
            sub = f"{rel}/{name}" if rel else name
            st = os.lstat(os.path.join(root, sub))
            yield "/" + sub, st
            top = sub.split("/", 1)[0]
            if stat.S_ISDIR(st.st_mode) and top not in SKIP_CONTENT:
                stack.append(sub)


def _sig(root: str, path: str, st: os.stat_result) -> Sig:
    link = os.readlink(os.path.join(root, path.lstrip("/"))) if stat.S_ISLNK(st.st_mode) else ""
    mtime = 0 if stat.S_ISDIR(st.st_mode) else int(st.st_mtime)
    size = st.st_size if stat.S_ISREG(st.st_mode) else 0
    return (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, size, mtime, link)


def _entries(root: str) -> dict[str, tuple[os.stat_result, Sig]]:
    return {p: (st, _sig(root, p, st)) for p, st in _walk(root)}


def write_layer(
    root: str,
    out_dir: str,
    *,
    below: dict[str, tuple[os.stat_result, Sig]] | None = None,
) -> LayerBlob:
    """Write the layer of `root` (all of it, or what changed against `below`: new or changed
    paths with their parent directories, OCI whiteouts for deleted ones) with slim's
    LayerTarWriter and compress it to `out_dir`. Returns a LayerBlob."""
    from slim.emitters.imagewriter import LayerTarWriter, compress_layer
    from slim.model import EntryKind, FileEntry, parent_dirs

    now = _entries(root)
    if below is not None:
        changed = {p for p, (_, sig) in now.items() if p not in below or below[p][1] != sig}
        for p in list(changed):
            changed.update(d for d in parent_dirs(p) if d != "/")
        paths = sorted(changed)
    else:
        paths = sorted(now)
    deleted: list[str] = []
    if below is not None:
        for p in sorted(below):
            if p not in now and not any(p.startswith(d + "/") for d in deleted):
                deleted.append(p)

    fd, tar_path = tempfile.mkstemp(prefix="bench-layer-", suffix=".tar", dir=out_dir)
    first_link: dict[tuple[int, int], str] = {}
    try:
        with os.fdopen(fd, "wb") as out, LayerTarWriter(out, keep_mtime=True) as writer:
            for p in paths:
                st, sig = now[p]
                host = os.path.join(root, p.lstrip("/"))
                fmt = stat.S_IFMT(st.st_mode)
                mode, uid, gid, mtime = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)
                if fmt == stat.S_IFREG:
                    key = (st.st_dev, st.st_ino)
                    if st.st_nlink > 1 and key in first_link:
                        writer.add(FileEntry(p, EntryKind.HARDLINK, mode, uid, gid, linkname=first_link[key], mtime=mtime))
                        continue
                    first_link.setdefault(key, p)
                    with open(host, "rb") as data:
                        writer.add(FileEntry(p, EntryKind.FILE, mode, uid, gid, st.st_size, mtime=mtime), data)
                elif fmt == stat.S_IFDIR:
                    writer.add(FileEntry(p, EntryKind.DIR, mode, uid, gid, mtime=mtime))
                elif fmt == stat.S_IFLNK:
                    writer.add(FileEntry(p, EntryKind.SYMLINK, mode, uid, gid, linkname=sig[6], mtime=mtime))
                elif fmt == stat.S_IFIFO:
                    writer.add(FileEntry(p, EntryKind.FIFO, mode, uid, gid, mtime=mtime))
                # device nodes and sockets are left to the container runtime
            for p in deleted:
                writer.add_whiteout(p)
        return compress_layer(tar_path, out_dir, "gzip")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tar_path)


def save_image(name: str, layers: list[LayerBlob], config: dict[str, object], out_dir: str) -> tuple[str, str]:
    """Write the image as docker-archive and OCI layout (the one call into slim's imagewriter)."""
    from slim.emitters.imagewriter import write_image

    archive = os.path.join(out_dir, f"{name}.docker.tar")
    oci = os.path.join(out_dir, "oci")
    tag = f"slim-bench/{name}:latest"
    write_image(f"docker-archive:{archive}", layers, config, tag=tag)
    write_image(f"oci:{oci}", layers, config, tag=tag)
    return archive, oci


# -- images -----------------------------------------------------------------------------------


def _base_layer(cache: str, base_root: str) -> LayerBlob:
    """The base layer blob, compressed once and remembered in base/layer.json."""
    from slim.emitters.imagewriter import LayerBlob as Blob

    layer_dir = os.path.join(cache, "base", "layer")
    meta = os.path.join(layer_dir, "layer.json")
    if os.path.exists(meta):
        with open(meta) as f:
            cached = Blob(**json.load(f))
        if os.path.exists(cached.path):
            return cached
    os.makedirs(layer_dir, exist_ok=True)
    blob = write_layer(base_root, layer_dir)
    with open(meta, "w") as f:
        json.dump(blob.__dict__, f)
    return blob


def _install_files(root: str, files: tuple[AppFile, ...]) -> None:
    for f in files:
        host = os.path.join(root, f.path.lstrip("/"))
        os.makedirs(os.path.dirname(host), exist_ok=True)
        with open(host, "w") as out:
            out.write(f.content)
        os.chmod(host, f.mode)


def _remove_work(work: str, root: str) -> None:
    """Delete a build directory, but never while a /proc is still mounted inside it."""
    proc = os.path.join(root, "proc")
    if os.path.ismount(proc):
        subprocess.run(["umount", "-l", proc], check=False)
    if os.path.ismount(proc):
        log.error("%s: still mounted; left %s in place", proc, work)
        return
    shutil.rmtree(work, ignore_errors=True)


def _run_builder(name: str, builder: Builder, base_root: str, work: str, root: str) -> None:
    """A throwaway stage: a copy of the base, its packages, files and run steps; then its `copy`
    artifacts go into `root` (modes kept) and the stage is deleted. Raises BuildError."""
    stage_work = os.path.join(work, "builder")
    stage = os.path.join(stage_work, "rootfs")
    os.makedirs(stage_work)
    try:
        _run(["cp", "-a", base_root, stage], f"{name}: copy base for the build stage")
        with _chroot_env(stage):
            _chroot(stage, ["apt-get", "update", "-qq"], f"{name}: build stage apt-get update")
            _chroot(
                stage,
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *builder.packages],
                f"{name}: build stage apt-get install",
            )
            _install_files(stage, builder.files)
            for argv in builder.run:
                _chroot(stage, list(argv), f"{name}: build stage run", builder.env)
        for src, dest in builder.copy:
            host_src = os.path.join(stage, src.lstrip("/"))
            host_dest = os.path.join(root, dest.lstrip("/"))
            if not os.path.isfile(host_src):
                raise BuildError(f"{name}: the build stage made no {src}")
            os.makedirs(os.path.dirname(host_dest), exist_ok=True)
            shutil.copy2(host_src, host_dest)
    finally:
        _remove_work(stage_work, stage)


def build_image(spec: ImageSpec, *, force: bool = False, cache: str | None = None) -> BuiltImage:
    """Build `spec` into the cache (or return the cached build). Raises BuildError."""
    cache = cache or cache_dir()
    out_dir = os.path.join(cache, "images", spec.name)
    meta_path = os.path.join(out_dir, "build.json")
    if not force and os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        fresh = meta.get("spec_sha", "") in ("", spec_digest(spec))  # older caches have none
        if fresh and os.path.exists(meta["docker_archive"]) and os.path.isdir(meta["oci_dir"]):
            return BuiltImage(**meta)
        if not fresh:
            log.info("%s: the spec changed since the cached build; rebuilding", spec.name)
    if os.geteuid() != 0:
        raise BuildError(f"{spec.name}: building needs root (chroot)")
    t0 = time.monotonic()
    base_root = ensure_base(cache)
    base_blob = _base_layer(cache, base_root)
    work = os.path.join(cache, "work", spec.name)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    root = os.path.join(work, "rootfs")
    try:
        _run(["cp", "-a", base_root, root], f"{spec.name}: copy base")
        below = _entries(root)
        with _chroot_env(root):
            _chroot(root, ["apt-get", "update", "-qq"], f"{spec.name}: apt-get update")
            _chroot(
                root,
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *spec.packages],
                f"{spec.name}: apt-get install",
            )
            _clean_apt(root)
        pkg_state = _entries(root)
        pkg_blob = write_layer(root, work, below=below)
        _install_files(root, spec.files)
        if spec.builder is not None:
            _run_builder(spec.name, spec.builder, base_root, work, root)
        if spec.post:
            with _chroot_env(root):
                for argv in spec.post:
                    _chroot(root, list(argv), f"{spec.name}: post")
        # the app layer: what the files and post-steps added, changed or deleted (whiteouts)
        after = _entries(root)
        changed = after.keys() != pkg_state.keys() or any(pkg_state[p][1] != sig for p, (_, sig) in after.items())
        app_blob = write_layer(root, work, below=pkg_state) if changed else None
        layers = [base_blob, pkg_blob] + ([app_blob] if app_blob else [])
        config = json.loads(json.dumps(spec.config))
        config["history"] = [
            {"created_by": f"debootstrap --variant=minbase {SUITE}"},
            {"created_by": "apt-get install -y --no-install-recommends " + " ".join(spec.packages)},
        ] + ([{"created_by": "COPY app files" + (" and build-stage artifacts" if spec.builder else "")
               + "".join(f"; RUN {' '.join(a)}" for a in spec.post)}] if app_blob else [])
        os.makedirs(out_dir, exist_ok=True)
        archive, oci = save_image(spec.name, layers, config, out_dir)
    finally:
        _remove_work(work, root)
    built = BuiltImage(
        name=spec.name,
        docker_archive=archive,
        oci_dir=oci,
        size_bytes=os.path.getsize(archive),
        build_seconds=round(time.monotonic() - t0, 1),
        spec_sha=spec_digest(spec),
    )
    with open(meta_path, "w") as f:
        json.dump(built.__dict__, f, indent=1)
    log.info("%s: built in %.0fs (%d bytes)", spec.name, built.build_seconds, built.size_bytes)
    return built
