"""The Runner interface every tracer implements, and the result of one traced run."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from slim.model import ImageConfig
from slim.result import ProbeOutcome
from slim.tracers.probes import Observation, Probe
from slim.tracers.trace import Trace


@dataclass(frozen=True)
class RunResult:
    """A traced run: what it used, how its probes went, how it ended."""

    trace: Trace
    probes: list[ProbeOutcome]
    exit_code: int | None  # the main process's exit code; None when we stopped it
    stdout_tail: str = ""
    stderr_tail: str = ""
    observations: list[Observation] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every probe passed (a run without probes passes when it exited 0 or was stopped)."""
        if self.probes:
            return all(p.passed for p in self.probes)
        return self.exit_code in (0, None)


class Runner(ABC):
    """Runs an image's root filesystem traced, with probes."""

    name: str = ""

    @classmethod
    @abstractmethod
    def available(cls) -> bool:
        """Whether this runner can work on this host (tools, daemon)."""

    @abstractmethod
    def run(self, image_root: str, config: ImageConfig, probes: list[Probe], *,
            network: str = "host", timeout: float = 60.0, writable: bool = True) -> RunResult:
        """Run, probe, stop, parse. `image_root` is a host directory holding the image's root
        (slim.fs.extract.prepare_root). `writable=False` for a root that is not a private copy.
        Raises TraceError when the run cannot start."""
