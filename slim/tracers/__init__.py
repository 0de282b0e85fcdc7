"""Tracers: run an image under strace with probes, and record every file, program and syscall.

`RUNNERS` maps `--runner` names to Runner classes; `choose_runner("auto")` takes docker when a
daemon answers, else the sandbox (bubblewrap). `run_image` runs a loaded image.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable

from slim import reaper
from slim.errors import TraceError
from slim.image import LoadedImage, prepare_root
from slim.tracers.base import ImageNotStored, Runner, RunOptions, RunResult
from slim.tracers.docker import DockerRunner
from slim.tracers.hostroot import tables_readable
from slim.tracers.probes import default_probes
from slim.tracers.sandbox import SandboxRunner
from slim.tracers.trace import PathAccess, Trace

RUNNERS: dict[str, type[Runner]] = {"docker": DockerRunner, "sandbox": SandboxRunner}


def choose_runner(name: str = "auto") -> Runner:
    """The runner called `name`; "auto" = docker when a daemon answers, else sandbox.

    Raises TraceError when the named runner is unknown or cannot work on this host.
    """
    if name == "auto":
        for candidate in ("docker", "sandbox"):
            if RUNNERS[candidate].available():
                return RUNNERS[candidate]()
        raise TraceError("tracing: no runner available (install bubblewrap and strace, or Docker)")
    cls = RUNNERS.get(name)
    if cls is None:
        raise TraceError(f"{name}: unknown runner ({', '.join(sorted(RUNNERS))} or auto)")
    if not cls.available():
        raise TraceError(f"{name}: runner not available on this host")
    return cls()


log = logging.getLogger(__name__)

RAM_DIR = "/dev/shm"
MAX_RAM_ROOT = 1 << 30  # bytes of files: larger roots go to disk


def run_parent(size: int) -> str | None:
    """Where a run's private copy of the image goes: `$SLIM_RUN_DIR` when set; `$TMPDIR` when
    set (None: tempfile's choice); else the RAM-backed /dev/shm for a root of at most MAX_RAM_ROOT bytes that fits four times in its
    free space and in the memory available (unpacking thousands of small files to a disk costs
    seconds of journal writes: 167 MB took 7 to 8 s on ext4 here, 1.2 s on tmpfs); else None,
    the temp directory ($TMPDIR)."""
    explicit = os.environ.get("SLIM_RUN_DIR")
    if explicit:
        return explicit
    if os.environ.get("TMPDIR") or size > MAX_RAM_ROOT or not _is_tmpfs(RAM_DIR) or not os.access(RAM_DIR, os.W_OK | os.X_OK):
        return None
    try:
        st = os.statvfs(RAM_DIR)
        with open("/proc/meminfo", encoding="ascii") as f:
            avail = next((int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")), 0)
    except (OSError, ValueError):
        return None
    if 4 * size > min(st.f_bavail * st.f_frsize, avail):
        return None
    return RAM_DIR


def _is_tmpfs(path: str) -> bool:
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            return any(fields[1] == path and fields[2] == "tmpfs" for fields in (ln.split() for ln in f)
                       if len(fields) > 2)
    except OSError:
        return False


def _storable_id(loaded: LoadedImage) -> str:
    """The image ID under which a runner's store may run `loaded` ("" when it may not): the
    run then looks USER up in the image's RootFS, so its account files must have been read."""
    image_id = loaded.image.digest or ""
    if loaded.image.config.user and not tables_readable(loaded.rootfs):
        return ""
    return image_id


def run_image(loaded: LoadedImage, options: RunOptions,
              on_ready: Callable[[bool], None] | None = None) -> RunResult:
    """Run `loaded`'s image traced with `options.probes` (or its default probes).

    The runner runs the image from its own store when it has it (Docker: an image with the same
    ID), or can load it there (a docker-archive the layer reader took whole, loaded without its
    names, held by a lease of this run's and released after it); otherwise from a private copy
    of its root, unpacked by
    slim (slim.image.prepare_root). Raises TraceError (and LayerError / SourceError when the
    image cannot be unpacked).

    `on_ready(quiet)` is called once, when the image is ready and its run begins: loading and
    unpacking (Python-heavy streams in this process) are over, and `quiet` says whether the run
    is mostly waiting on the runtime and the app — False only when the runner still copies an
    unpacked root into a store of its own (Docker's import). The static analysis can then run
    beside it (pipeline.StaticStart).
    """
    fired = False

    def ready(quiet: bool) -> None:
        nonlocal fired
        if on_ready is not None and not fired:
            fired = True
            on_ready(quiet)

    config = loaded.image.config
    runner = choose_runner(options.runner)
    probes = list(options.probes) or default_probes(config)
    image_id = loaded.image.digest or ""
    if _storable_id(loaded):
        # the runner has this very image (its ID is the digest of its config), or loads a
        # docker-archive into its store: run it from there, finding USER and the entrypoint
        # in the image's RootFS, with no copy of it
        ref = loaded.image.ref
        stored = runner.stores(image_id)
        # an archive whose reading refused or skipped anything (unsafe names, links out of the
        # root) goes through slim's own extraction instead, never raw to the daemon
        mine = (not stored and ref.transport == "docker-archive" and not loaded.issues
                and runner.store(ref.location, image_id))
        if stored or mine:
            log.debug("%s: in the %s runner's image store%s: run without unpacking", ref, runner.name,
                      " (loaded)" if mine else "")
            ready(True)
            try:
                return runner.run(loaded.rootfs, config, probes, network=options.network,
                                  timeout=options.timeout, image_id=image_id)
            except ImageNotStored as exc:  # removed meanwhile: unpack it after all
                log.debug("%s", exc)
            finally:
                if mine:
                    runner.release(image_id)
    parent = run_parent(loaded.rootfs.size_bytes)
    log.debug("%s: unpacking the image for the run under %s", loaded.image.ref, parent or tempfile.gettempdir())
    with reaper.temporary_directory(prefix="slim-run-", dir=parent) as work:
        root = prepare_root(loaded.image, work, private=True)
        ready(not runner.copies_root)
        return runner.run(root, config, probes, network=options.network, timeout=options.timeout,
                          image_id=image_id)


__all__ = ["RUNNERS", "PathAccess", "RunOptions", "RunResult", "Runner", "SandboxRunner", "Trace",
           "choose_runner", "run_image"]
