"""Tracers: run an image under strace with probes, and record every file, program and syscall.

`RUNNERS` maps `--runner` names to Runner classes; `choose_runner("auto")` takes docker when a
daemon answers, else the sandbox (bubblewrap).
"""

from __future__ import annotations

from slim.errors import TraceError
from slim.tracers.base import Runner, RunResult
from slim.tracers.sandbox import SandboxRunner
from slim.tracers.trace import PathAccess, Trace

RUNNERS: dict[str, type[Runner]] = {"sandbox": SandboxRunner}

try:  # the docker runner is optional (needs the Docker SDK)
    from slim.tracers.docker import DockerRunner

    RUNNERS["docker"] = DockerRunner
except ImportError:  # pragma: no cover - depends on the host
    pass


def choose_runner(name: str = "auto") -> Runner:
    """The runner called `name`; "auto" = docker when a daemon answers, else sandbox.

    Raises TraceError when the named runner is unknown or cannot work on this host.
    """
    if name == "auto":
        order = [n for n in ("docker", "sandbox") if n in RUNNERS]
        for candidate in order:
            if RUNNERS[candidate].available():
                return RUNNERS[candidate]()
        raise TraceError("tracing: no runner available (install bubblewrap and strace, or Docker)")
    cls = RUNNERS.get(name)
    if cls is None:
        raise TraceError(f"{name}: unknown runner ({', '.join(sorted(RUNNERS))} or auto)")
    if not cls.available():
        raise TraceError(f"{name}: runner not available on this host")
    return cls()


__all__ = ["RUNNERS", "PathAccess", "RunResult", "Runner", "SandboxRunner", "Trace", "choose_runner"]
