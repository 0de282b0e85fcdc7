"""Running an image traced: the one probe driver, and the interface a runner implements.

A runner (sandbox, docker) supplies only how to prepare a root for running (`session`), how to
start one traced process tree in it (`Session.start`), and how to watch, stop and read that
process (`Process`). Everything else — which command lines run, probes against a live app,
`cmd:` probes as separate runs, deadlines, what a failed probe says, merging the traces — is
here, once, so both runners behave the same.
"""

from __future__ import annotations

import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace

from slim.errors import TraceError
from slim.fs.rootfs import RootFS
from slim.model import ImageConfig
from slim.result import ProbeOutcome
from slim.tracers.probehelper import run_isolated
from slim.tracers.probes import (
    CmdProbe,
    ExecProbe,
    HttpProbe,
    NetworkProbe,
    Observation,
    Probe,
    SniffProbe,
    TcpProbe,
    WaitProbe,
    listening_ports,
    run_network,
)
from slim.tracers.trace import Trace

log = logging.getLogger(__name__)

TAIL_LINES = 20
TAIL_BYTES = 8192
POLL = 0.05  # seconds between liveness checks while waiting
PORT_GRACE = 10.0  # seconds a further port gets once the app listens on another
PROBE_TIME = 30.0  # seconds each probe gets for its own work, however long start-up took
NETWORK = (HttpProbe, TcpProbe, SniffProbe)


@dataclass(frozen=True)
class RunOptions:
    """How to run an image traced."""

    probes: tuple[Probe, ...] = ()  # empty: the image's default probes (slim.tracers.probes)
    runner: str = "auto"
    network: str = "none"  # none: its own network namespace (probes enter it); host: shared
    timeout: float = 60.0


@dataclass(frozen=True)
class RunResult:
    """A traced run: what it used, how its probes went, how it ended."""

    trace: Trace
    probes: list[ProbeOutcome]
    exit_code: int | None  # the main process's exit code; None when we stopped it
    stdout_tail: str = ""
    stderr_tail: str = ""
    observations: list[Observation] = field(default_factory=list)
    # the concrete probes of the probes that passed (an auto: probe resolves into several):
    # what a second image must be run with to be compared with this run
    resolved: list[Probe] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every probe passed (a run without probes passes when it exited 0 or was stopped)."""
        if self.probes:
            return all(p.passed for p in self.probes)
        return self.exit_code in (0, None)


@dataclass(frozen=True)
class ExecResult:
    """An `exec:` probe's command, run inside the live app's namespaces."""

    exit_code: int | None
    stdout: bytes = b""
    stderr: bytes = b""
    trace: Trace | None = None
    timed_out: bool = False


class Process(ABC):
    """One started, traced process tree of the image."""

    @abstractmethod
    def alive(self) -> bool:
        """The app's main process has not exited."""

    @abstractmethod
    def wait(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the app to exit by itself."""

    @abstractmethod
    def exit_code(self) -> int | None:
        """The app's own exit code when it has exited (None while running or never started);
        asked before `stop`, so a kill is never mistaken for the app's exit."""

    @abstractmethod
    def stop(self) -> None:
        """Kill whatever still runs, let the tracer flush, prove nothing is left.
        Raises TraceError when a process survives."""

    @abstractmethod
    def outputs(self) -> tuple[bytes, bytes]:
        """The tails of the app's stdout and stderr (after `stop`)."""

    @abstractmethod
    def trace(self) -> Trace:
        """The parsed trace (after `stop`). Raises TraceError when the tracer wrote no log."""

    @abstractmethod
    def exec(self, command: tuple[str, ...], deadline: float, index: int) -> ExecResult:
        """Run `command` traced inside the live app's namespaces, as `docker exec` would."""

    def network_pid(self) -> int | None:
        """A host pid in the app's network namespace (this process's own under host
        networking); None when there is none yet."""
        return None

    def listening_ports(self) -> set[int] | None:
        """The TCP ports the app's network namespace listens on; None when unknown."""
        pid = self.network_pid()
        return listening_ports(pid) if pid is not None else None

    def network_prefix(self) -> list[str] | None:
        """The command prefix that enters the app's network namespace (`nsenter …`), or None
        when the app shares the host's network and probes can connect from here."""
        return None

    def network_probe(self, probe: NetworkProbe, deadline: float
                      ) -> tuple[ProbeOutcome, list[Observation], list[Probe]]:
        """Run a network probe against the app's 127.0.0.1, from inside its network."""
        prefix = self.network_prefix()
        if prefix is not None:
            return run_isolated(prefix, probe, deadline, self.alive)
        return run_network(probe, deadline, self.alive)


class ImageNotStored(TraceError):
    """The image a runner was to run from its own store is not there (any more)."""


class Session(AbstractContextManager["Session"], ABC):
    """A root prepared for running (a private copy bound by bwrap, an imported Docker image);
    released on exit."""

    @abstractmethod
    def start(self, argv: list[str], tag: str) -> Process:
        """Start `argv` (argv[0] is an image path) traced. Raises TraceError."""


def tail_text(data: bytes) -> str:
    """The last TAIL_LINES lines of captured output, decoded."""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-TAIL_LINES:])


class Runner(ABC):
    """Runs an image's root filesystem traced, with probes."""

    name: str = ""
    # whether a run of an unpacked root first copies it into a store of the runner's own
    # (Docker: `docker import`, a stream in this process), rather than running it in place
    copies_root: bool = False

    @classmethod
    @abstractmethod
    def available(cls) -> bool:
        """Whether this runner can work on this host (tools, daemon)."""

    @abstractmethod
    def session(self, image_root: str | RootFS, config: ImageConfig, *, network: str,
                image_id: str = "") -> Session:
        """Prepare `image_root`, a private copy of the image's root (slim.image.prepare_root
        with `private`), for runs; the runner may change it. `image_id` is the image's ID (its
        config digest): a runner that finds that very image already stored (Docker's image
        store) may run it instead of importing the copy. When `stores(image_id)` said so,
        `image_root` may instead be the image's RootFS, only looked up (USER, PATH); the session
        then raises ImageNotStored if the image has left the store. Raises TraceError."""

    def stores(self, image_id: str) -> bool:
        """Whether the image `image_id` (its config digest) can run from a store of this
        runner's own, with no unpacked copy of its root."""
        return False

    def store(self, archive: str, image_id: str) -> bool:
        """Put the image `image_id`, the docker-archive `archive`, into this runner's store;
        False when the runner has no store or the archive did not go in (nothing is left)."""
        return False

    def release(self, image_id: str) -> None:  # noqa: B027 - a runner without a store has nothing to remove
        """Remove from the store an image `store` put there."""

    def program(self, session: Session, config: ImageConfig, args: tuple[str, ...] | None) -> list[str]:
        """Entrypoint + Cmd (or Entrypoint + `args`) with the program found as execvp finds it.
        Raises TraceError when there is nothing to run or the program is missing."""
        argv = list(config.entrypoint) + list(config.cmd if args is None else args)
        if not argv:
            raise TraceError("the image has neither Entrypoint nor Cmd; nothing to run")
        program = self.find_program(session, config, argv[0])
        if program is None:
            where = argv[0] if "/" in argv[0] else f"{argv[0]} (PATH {':'.join(config.path_dirs)})"
            raise TraceError(f"{where}: entrypoint not found in the image")
        return [program, *argv[1:]]

    @abstractmethod
    def find_program(self, session: Session, config: ImageConfig, name: str) -> str | None:
        """The image path execvp would run for `name` in this session's root."""

    def run(self, image_root: str | RootFS, config: ImageConfig, probes: list[Probe], *,
            network: str = "none", timeout: float = 60.0, image_id: str = "") -> RunResult:
        """Run the entrypoint traced, exercise it with `probes`, stop it, parse.

        Without probes the entrypoint runs to completion (stopped at `timeout`). `cmd:` probes
        each run the image again with their arguments. `network` is "none" (the app's own
        network namespace; probes enter it) or "host". Raises TraceError when a run cannot
        start.
        """
        live = [p for p in probes if not isinstance(p, CmdProbe)]
        cmds = [p for p in probes if isinstance(p, CmdProbe)]
        trace = Trace()
        outcomes: list[ProbeOutcome] = []
        observations: list[Observation] = []
        resolved: list[Probe] = []
        main: RunResult | None = None
        with self.session(image_root, config, network=network, image_id=image_id) as session:
            if live or not cmds:
                main = self._run_one(session, self.program(session, config, None), live, timeout, "main")
                trace.merge(main.trace)
                outcomes += main.probes
                observations += main.observations
                resolved += main.resolved
            for i, probe in enumerate(cmds):
                res = self._run_one(session, self.program(session, config, probe.args), [], timeout, f"cmd{i}")
                trace.merge(res.trace)
                detail = f"exit code {res.exit_code}"
                if res.exit_code != 0 and res.stderr_tail:
                    detail += ": " + res.stderr_tail.splitlines()[-1][:300]
                outcomes.append(ProbeOutcome(probe.spec, res.exit_code == 0, detail))
                run_obs = res.observations[0]  # the "run" observation of that process
                observations.append(replace(run_obs, spec=probe.spec))
                if res.exit_code == 0:
                    resolved.append(probe)
        return RunResult(trace=trace, probes=outcomes,
                         exit_code=main.exit_code if main else None,
                         stdout_tail=main.stdout_tail if main else "",
                         stderr_tail=main.stderr_tail if main else "",
                         observations=observations, resolved=resolved)

    def _run_one(self, session: Session, argv: list[str], live: Sequence[Probe], timeout: float,
                 tag: str) -> RunResult:
        """One process tree: start, probe (or wait for it to finish), stop, parse."""
        start = time.monotonic()
        deadline = start + timeout
        proc = session.start(argv, tag)
        outcomes: list[ProbeOutcome] = []
        observations: list[Observation] = []
        resolved: list[Probe] = []
        extra: list[Trace] = []
        try:
            if not live:
                proc.wait(timeout)
                if proc.alive():
                    log.info("%s: still running after %ss; stopped", argv[0], timeout)
            ready: set[int] | None = None
            for i, probe in enumerate(live):
                if ready is None and isinstance(probe, NETWORK):
                    ready = _await_ports(proc, live, deadline)
                outcome, obs, ran, sub = _drive(proc, probe, _probe_deadline(probe, ready, deadline), i)
                outcomes.append(outcome)
                observations += obs
                if outcome.passed:
                    resolved += ran
                if sub is not None:
                    extra.append(sub)
        finally:
            status = proc.exit_code()  # the app's own exit, not the kill we are about to send
            proc.stop()
        stdout, stderr = proc.outputs()
        out_tail, err_tail = tail_text(stdout), tail_text(stderr)
        if not live:  # a run to completion is observed by what it printed and its exit code
            observations.append(Observation("run", body=stdout, stderr=stderr, exit_code=status))
        if live and status is not None:
            why = (f"the app exited with code {status}"
                   + (" (did it daemonize? run it in the foreground)" if status == 0 else "")
                   + (f"; stderr: {err_tail.splitlines()[-1][:300]}" if err_tail else ""))
            outcomes = [o if o.passed else ProbeOutcome(o.spec, False, f"{o.detail}; {why}")
                        for o in outcomes]
        trace = proc.trace()
        for sub in extra:
            trace.merge(sub)
        log.debug("%s: traced %d paths, %d syscalls in %.1fs", argv[0], len(trace.paths),
                  len(trace.syscalls), time.monotonic() - start)
        return RunResult(trace=trace, probes=outcomes, exit_code=status, stdout_tail=out_tail,
                         stderr_tail=err_tail, observations=observations, resolved=resolved)


def _await_ports(proc: Process, probes: Sequence[Probe], deadline: float) -> set[int]:
    """Wait until the app listens on any port a probe wants (or exits, or the start-up
    deadline passes); the probed ports it listens on (empty when that is unknown)."""
    wanted = {p.port for p in probes if isinstance(p, NETWORK)}
    while True:
        ports = proc.listening_ports()
        if ports is None:
            return set()
        if ports & wanted or not proc.alive() or time.monotonic() >= deadline:
            return ports & wanted
        time.sleep(POLL)


def _probe_deadline(probe: Probe, ready: set[int] | None, deadline: float) -> float:
    """When `probe` must be done. Start-up (the app opening its first port) may take until
    `deadline`; after it every probe has PROBE_TIME for its own work, and a port still closed
    once the app listens on another gets PORT_GRACE — it is reported, not waited for."""
    now = time.monotonic()
    if not ready:  # nothing known to listen: the start-up deadline holds
        return deadline if isinstance(probe, NETWORK) else max(deadline, now + PROBE_TIME)
    if isinstance(probe, NETWORK) and probe.port not in ready:
        return now + PORT_GRACE
    return max(deadline, now + PROBE_TIME)


def _drive(proc: Process, probe: Probe, deadline: float, index: int
           ) -> tuple[ProbeOutcome, list[Observation], list[Probe], Trace | None]:
    """Run one live probe against a running process: (outcome, observations, the concrete
    probes it ran, the trace of an exec: probe)."""
    if isinstance(probe, NETWORK):
        return (*proc.network_probe(probe, deadline), None)
    if isinstance(probe, WaitProbe):
        end = min(deadline, time.monotonic() + probe.seconds)
        while proc.alive() and time.monotonic() < end:
            time.sleep(POLL)
        ok = proc.alive()
        detail = "still running" if ok else "the app exited during the wait"
        return ProbeOutcome(probe.spec, ok, detail), [], [probe], None
    assert isinstance(probe, ExecProbe)
    if not proc.alive():
        return ProbeOutcome(probe.spec, False, "the app is not running"), [], [], None
    res = proc.exec(probe.command, deadline, index)
    if res.timed_out:
        return ProbeOutcome(probe.spec, False, "timed out"), [], [], res.trace
    detail = f"exit code {res.exit_code}"
    if res.exit_code:
        detail += ": " + (res.stdout + res.stderr).decode("utf-8", "replace").strip()[-300:]
    obs = Observation(probe.spec, body=res.stdout[-TAIL_BYTES:], stderr=res.stderr[-TAIL_BYTES:],
                      exit_code=res.exit_code)
    return ProbeOutcome(probe.spec, res.exit_code == 0, detail), [obs], [probe], res.trace


def read_tail(path: str) -> bytes:
    """The last TAIL_BYTES of a captured output file (b"" when there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            return f.read()
    except OSError:
        return b""

