"""DockerRunner: run the image's root in a Docker container, traced by the host's strace.

The prepared root is imported as a throwaway image (`docker import` of a tar of the root; the
runtime config — Entrypoint, Env, WorkingDir, User — is given at container creation, so Docker
applies it exactly as it would for the real image). The host's strace, its shared libraries and
the host's dynamic loader are copied into a bundle directory bind-mounted read-only at
/.slim-strace, and strace is started through that loader
(`/.slim-strace/ld-linux-x86-64.so.2 --library-path /.slim-strace/lib /.slim-strace/strace …`),
so it runs whatever libc the image has (or none). The log goes to a writable bind mount.
`--cap-add SYS_PTRACE` lets strace trace (Docker's default seccomp profile allows ptrace then);
never `--privileged`. strace's own startup is not traced, so the first execve in the log is the
app's (`skip_execs=0`).

Everything made — image, container, bundle and log directory — is removed in `finally`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
from typing import Any

from slim.errors import TraceError
from slim.model import ImageConfig
from slim.result import ProbeOutcome
from slim.tracers.base import Runner, RunResult
from slim.tracers.probes import (
    CmdProbe,
    ExecProbe,
    HttpProbe,
    Observation,
    Probe,
    TcpProbe,
    WaitProbe,
    run_http,
    run_tcp,
)
from slim.tracers.sandbox import TAIL_BYTES, TAIL_LINES, find_program
from slim.tracers.strace import STRACE_OPTIONS, parse_strace
from slim.tracers.trace import Trace

log = logging.getLogger(__name__)

BUNDLE = "/.slim-strace"
OUTPUT = "/.slim-trace-out"
_LDD_LINE = re.compile(r"^\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)")


def _client() -> Any:
    try:
        import docker
    except ImportError:  # pragma: no cover - the SDK is a dependency
        raise TraceError("docker runner: the Docker SDK for Python is not installed") from None
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # the SDK raises many kinds (DockerException, requests errors)
        raise TraceError(f"docker runner: no Docker daemon answers: {exc}") from None
    return client


def strace_bundle(dest: str, strace: str) -> tuple[str, list[str]]:
    """Copy strace, its libraries (per ldd) and the loader into `dest`.

    Returns the loader's name and the in-container command prefix. Raises TraceError.
    """
    try:
        out = subprocess.run(["ldd", strace], capture_output=True, text=True, check=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise TraceError(f"{strace}: cannot list its libraries with ldd: {exc}") from None
    libdir = os.path.join(dest, "lib")
    os.makedirs(libdir)
    loader = ""
    for line in out.splitlines():
        m = _LDD_LINE.match(line)
        if not m:
            continue
        path = m.group(1)
        if "=>" not in line:  # the PT_INTERP line: /lib64/ld-linux-x86-64.so.2 (0x…)
            loader = os.path.basename(path)
            shutil.copy(path, os.path.join(dest, loader))
        else:
            shutil.copy(path, os.path.join(libdir, os.path.basename(path)))
    if not loader:
        raise TraceError(f"{strace}: no dynamic loader found (a static strace needs no bundle)")
    shutil.copy(strace, os.path.join(dest, "strace"))
    prefix = [f"{BUNDLE}/{loader}", "--library-path", f"{BUNDLE}/lib", f"{BUNDLE}/strace"]
    return loader, prefix


def _tar_root(root: str, path: str) -> None:
    """A tar of the root for `docker import` (symlinks kept, never followed)."""
    with tarfile.open(path, "w") as tar:
        for name in sorted(os.listdir(root)):
            tar.add(os.path.join(root, name), arcname=name, recursive=True)


class DockerRunner(Runner):
    """Runs the image root in a Docker container under the host's strace."""

    name = "docker"

    def __init__(self, strace: str | None = None) -> None:
        self.strace = strace or shutil.which("strace") or ""

    @classmethod
    def available(cls) -> bool:
        if not shutil.which("strace"):
            return False
        try:
            _client()
        except TraceError:
            return False
        return True

    def run(self, image_root: str, config: ImageConfig, probes: list[Probe], *,
            network: str = "host", timeout: float = 60.0, writable: bool = True) -> RunResult:
        """See Runner.run. Raises TraceError (no daemon, entrypoint missing, import failed)."""
        if network not in ("host", "none"):
            raise TraceError(f"{network}: unknown network mode (host or none)")
        if not self.strace:
            raise TraceError("docker runner: strace is not installed on the host")
        root = os.path.realpath(image_root)
        live: list[Probe] = [p for p in probes if not isinstance(p, CmdProbe)]
        cmds = [p for p in probes if isinstance(p, CmdProbe)]
        argvs: list[tuple[str, list[str], list[Probe]]] = []
        if live or not cmds:
            argvs.append(("main", self._argv(root, config, None), live))
        for i, probe in enumerate(cmds):
            argvs.append((f"cmd{i}", self._argv(root, config, probe.args), []))
        client = _client()
        tmp = tempfile.mkdtemp(prefix="slim-trace-")
        tag = f"slim-trace:{uuid.uuid4().hex[:12]}"
        image_id = None
        try:
            bundle = os.path.join(tmp, "bundle")
            os.mkdir(bundle)
            _, prefix = strace_bundle(bundle, self.strace)
            outdir = os.path.join(tmp, "out")
            os.mkdir(outdir)
            os.chmod(outdir, 0o777)  # the app's user writes the log
            tar_path = os.path.join(tmp, "root.tar")
            _tar_root(root, tar_path)
            repo, _, tagname = tag.partition(":")
            try:
                client.api.import_image(src=tar_path, repository=repo, tag=tagname)
                image_id = client.images.get(tag).id
            except Exception as exc:
                raise TraceError(f"{root}: docker import failed: {exc}") from None
            trace = Trace()
            outcomes: list[ProbeOutcome] = []
            observations: list[Observation] = []
            main: RunResult | None = None
            for name, argv, run_probes in argvs:
                res = self._run_one(client, tag, config, prefix, bundle, outdir, name, argv,
                                    run_probes, network, timeout)
                trace.merge(res.trace)
                if name == "main":
                    main = res
                    outcomes += res.probes
                    observations += res.observations
                else:
                    probe = cmds[int(name[3:])]
                    outcomes.append(ProbeOutcome(probe.spec, res.exit_code == 0,
                                                 f"exit code {res.exit_code}"))
                    observations.append(Observation(probe.spec, body=res.stdout_tail.encode(),
                                                    exit_code=res.exit_code))
            return RunResult(trace=trace, probes=outcomes,
                             exit_code=main.exit_code if main else None,
                             stdout_tail=main.stdout_tail if main else "",
                             stderr_tail=main.stderr_tail if main else "",
                             observations=observations)
        finally:
            if image_id is not None:
                try:
                    client.images.remove(image_id, force=True)
                except Exception as exc:  # report, but do not hide the real error
                    log.warning("%s: could not remove the temporary image: %s", tag, exc)
            shutil.rmtree(tmp, ignore_errors=True)

    def _argv(self, root: str, config: ImageConfig, args: tuple[str, ...] | None) -> list[str]:
        argv = list(config.entrypoint) + list(config.cmd if args is None else args)
        if not argv:
            raise TraceError(f"{root}: the image has neither Entrypoint nor Cmd; nothing to run")
        program = find_program(root, argv[0], config)
        if program is None:
            where = argv[0] if "/" in argv[0] else f"{argv[0]} (PATH {':'.join(config.path_dirs)})"
            raise TraceError(f"{where}: entrypoint not found in the image")
        return [program, *argv[1:]]

    def _run_one(self, client: Any, tag: str, config: ImageConfig, prefix: list[str],
                 bundle: str, outdir: str, name: str, argv: list[str], live: list[Probe],
                 network: str, timeout: float) -> RunResult:
        log_in = f"{OUTPUT}/{name}.strace"
        command = [*prefix, *STRACE_OPTIONS, "-o", log_in, "--", *argv]
        env = list(config.env)
        if not any(e.startswith("PATH=") for e in env):
            env.append("PATH=" + ":".join(config.path_dirs))
        try:
            container = client.containers.create(
                tag, entrypoint=command, command=[], environment=env,
                working_dir=config.workdir or "/", user=config.user or "",
                network_mode=network, cap_add=["SYS_PTRACE"], detach=True,
                volumes={bundle: {"bind": BUNDLE, "mode": "ro"},
                         outdir: {"bind": OUTPUT, "mode": "rw"}},
            )
        except Exception as exc:
            raise TraceError(f"{tag}: cannot create the container: {exc}") from None
        outcomes: list[ProbeOutcome] = []
        observations: list[Observation] = []
        extra: list[Trace] = []
        exit_code: int | None = None
        try:
            container.start()
            deadline = time.monotonic() + timeout

            def alive() -> bool:
                container.reload()
                return bool(container.status == "running")

            if not live:
                try:
                    exit_code = int(container.wait(timeout=timeout)["StatusCode"])
                except Exception:
                    log.info("%s: still running after %ss; stopped", argv[0], timeout)
            for i, probe in enumerate(live):
                if isinstance(probe, HttpProbe):
                    outcome, obs = run_http(probe, deadline, alive)
                elif isinstance(probe, TcpProbe):
                    outcome, obs = run_tcp(probe, deadline, alive)
                elif isinstance(probe, WaitProbe):
                    end = min(deadline, time.monotonic() + probe.seconds)
                    while alive() and time.monotonic() < end:
                        time.sleep(0.1)
                    ok = alive()
                    outcome = ProbeOutcome(probe.spec, ok, "still running" if ok else
                                           "the app exited during the wait")
                    obs = Observation(probe.spec)
                else:
                    assert isinstance(probe, ExecProbe)
                    outcome, obs, sub = self._exec(container, prefix, outdir, probe, i, alive)
                    if sub is not None:
                        extra.append(sub)
                outcomes.append(outcome)
                observations.append(obs)
            if live:
                container.reload()
                if container.status != "running":
                    exit_code = int(container.attrs["State"]["ExitCode"])
        finally:
            with contextlib.suppress(Exception):  # already exited
                container.kill()
            try:
                container.wait(timeout=30)
                stdout = container.logs(stdout=True, stderr=False)[-TAIL_BYTES:]
                stderr = container.logs(stdout=False, stderr=True)[-TAIL_BYTES:]
            finally:
                container.remove(force=True)
        out_tail = "\n".join(stdout.decode("utf-8", "replace").splitlines()[-TAIL_LINES:])
        err_tail = "\n".join(stderr.decode("utf-8", "replace").splitlines()[-TAIL_LINES:])
        if live and exit_code is not None:
            why = (f"the app exited with code {exit_code}"
                   + (f"; stderr: {err_tail.splitlines()[-1][:300]}" if err_tail else ""))
            outcomes = [o if o.passed else ProbeOutcome(o.spec, False, f"{o.detail}; {why}")
                        for o in outcomes]
        host_log = os.path.join(outdir, f"{name}.strace")
        try:
            with open(host_log, encoding="utf-8", errors="surrogateescape") as f:
                trace = parse_strace(f, skip_execs=0, app_cwd=config.workdir or "/").trace
        except OSError as exc:
            raise TraceError(f"{argv[0]}: strace wrote no log in the container ({exc}); "
                             f"stderr: {err_tail[-300:]}") from None
        for sub in extra:
            trace.merge(sub)
        return RunResult(trace=trace, probes=outcomes, exit_code=exit_code,
                         stdout_tail=out_tail, stderr_tail=err_tail, observations=observations)

    def _exec(self, container: Any, prefix: list[str], outdir: str, probe: ExecProbe, index: int,
              alive: Any) -> tuple[ProbeOutcome, Observation, Trace | None]:
        if not alive():
            return (ProbeOutcome(probe.spec, False, "the app is not running"),
                    Observation(probe.spec), None)
        name = f"exec{index}.strace"
        cmd = [*prefix, *STRACE_OPTIONS, "-o", f"{OUTPUT}/{name}", "--", *probe.command]
        result = container.exec_run(cmd, demux=True)
        stdout, stderr = result.output if result.output else (b"", b"")
        stdout, stderr = stdout or b"", stderr or b""
        trace = None
        try:
            with open(os.path.join(outdir, name), encoding="utf-8", errors="surrogateescape") as f:
                trace = parse_strace(f, skip_execs=0).trace
        except OSError:
            pass
        code = int(result.exit_code) if result.exit_code is not None else None
        detail = f"exit code {code}"
        if code:
            detail += ": " + (stdout + stderr).decode("utf-8", "replace").strip()[-300:]
        return (ProbeOutcome(probe.spec, code == 0, detail),
                Observation(probe.spec, body=stdout[-TAIL_BYTES:], exit_code=code), trace)
