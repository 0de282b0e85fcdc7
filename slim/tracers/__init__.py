"""Tracers: run an image under strace with probes, and record every file, program and syscall.

`RUNNERS` maps `--runner` names to Runner classes; `choose_runner("auto")` takes docker when a
daemon answers, else the sandbox (bubblewrap). `run_image` runs a loaded image.
"""

from __future__ import annotations

import tempfile

from slim.errors import TraceError
from slim.image import LoadedImage, prepare_root
from slim.tracers.base import Runner, RunOptions, RunResult
from slim.tracers.docker import DockerRunner
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


def run_image(loaded: LoadedImage, options: RunOptions) -> RunResult:
    """Run `loaded`'s image traced with `options.probes` (or its default probes).

    Raises TraceError (and LayerError / SourceError when the image cannot be unpacked).
    """
    config = loaded.image.config
    with tempfile.TemporaryDirectory(prefix="slim-run-") as work:
        root = prepare_root(loaded.image, work, private=True)
        return choose_runner(options.runner).run(
            root, config, list(options.probes) or default_probes(config), network=options.network,
            timeout=options.timeout)


__all__ = ["RUNNERS", "PathAccess", "RunOptions", "RunResult", "Runner", "SandboxRunner", "Trace",
           "choose_runner", "run_image"]
