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
import uuid
from typing import Any

from slim.errors import TraceError
from slim.model import ImageConfig
from slim.tracers.base import TAIL_BYTES, ExecResult, Process, Runner, Session
from slim.tracers.hostroot import find_program
from slim.tracers.strace import STRACE_OPTIONS, parse_strace
from slim.tracers.trace import Trace

log = logging.getLogger(__name__)

BUNDLE = "/.slim-strace"
OUTPUT = "/.slim-trace-out"
_LDD_LINE = re.compile(r"^\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)")
POLL = 0.1


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


class _DockerProcess(Process):
    """One container running the app under the bundled strace."""

    def __init__(self, container: Any, session: _DockerSession, tag: str, argv: list[str]) -> None:
        self.container = container
        self.session = session
        self.tag = tag
        self.argv = argv
        self._exit: int | None = None
        self._logs: tuple[bytes, bytes] = (b"", b"")

    def alive(self) -> bool:
        if self._exit is not None:
            return False
        self.container.reload()
        if self.container.status == "running":
            return True
        self._exit = int(self.container.attrs["State"]["ExitCode"])
        return False

    def wait(self, timeout: float) -> None:
        try:
            self._exit = int(self.container.wait(timeout=timeout)["StatusCode"])
        except Exception:  # the SDK raises a requests timeout (ReadTimeout, ConnectionError)
            log.debug("%s: still running after %ss", self.argv[0], timeout)

    def exit_code(self) -> int | None:
        self.alive()
        return self._exit

    def stop(self) -> None:
        container = self.container
        with contextlib.suppress(Exception):  # already exited
            container.kill()
        try:
            container.wait(timeout=30)
            self._logs = (container.logs(stdout=True, stderr=False)[-TAIL_BYTES:],
                          container.logs(stdout=False, stderr=True)[-TAIL_BYTES:])
        finally:
            container.remove(force=True)

    def outputs(self) -> tuple[bytes, bytes]:
        return self._logs

    def trace(self) -> Trace:
        host_log = os.path.join(self.session.outdir, f"{self.tag}.strace")
        try:
            with open(host_log, encoding="utf-8", errors="surrogateescape") as f:
                return parse_strace(f, skip_execs=0, app_cwd=self.session.config.workdir or "/").trace
        except OSError as exc:
            err = self._logs[1].decode("utf-8", "replace")[-300:]
            raise TraceError(f"{self.argv[0]}: strace wrote no log in the container ({exc}); "
                             f"stderr: {err}") from None

    def exec(self, command: tuple[str, ...], deadline: float, index: int) -> ExecResult:
        name = f"exec{index}.strace"
        cmd = [*self.session.prefix, *STRACE_OPTIONS, "-o", f"{OUTPUT}/{name}", "--", *command]
        result = self.container.exec_run(cmd, demux=True)
        stdout, stderr = result.output if result.output else (b"", b"")
        try:
            with open(os.path.join(self.session.outdir, name), encoding="utf-8",
                      errors="surrogateescape") as f:
                trace = parse_strace(f, skip_execs=0).trace
        except OSError as exc:
            raise TraceError(f"{command[0]}: strace wrote no log for the exec probe: {exc}") from None
        code = int(result.exit_code) if result.exit_code is not None else None
        return ExecResult(code, (stdout or b"")[-TAIL_BYTES:], (stderr or b"")[-TAIL_BYTES:], trace)


class _DockerSession(Session):
    """The root imported as a throwaway image, with the strace bundle; removed on exit."""

    def __init__(self, runner: DockerRunner, root: str, config: ImageConfig, network: str) -> None:
        self.runner = runner
        self.root = root
        self.config = config
        self.network = network
        self.client = _client()
        self.tmp = tempfile.mkdtemp(prefix="slim-trace-")
        self.tag = f"slim-trace:{uuid.uuid4().hex[:12]}"
        self.image_id: str | None = None
        self.bundle = os.path.join(self.tmp, "bundle")
        self.outdir = os.path.join(self.tmp, "out")
        self.prefix: list[str] = []

    def __enter__(self) -> _DockerSession:
        try:
            os.mkdir(self.bundle)
            _, self.prefix = strace_bundle(self.bundle, self.runner.strace)
            os.mkdir(self.outdir)
            os.chmod(self.outdir, 0o777)  # the app's user writes the log
            tar_path = os.path.join(self.tmp, "root.tar")
            _tar_root(self.root, tar_path)
            repo, _, tagname = self.tag.partition(":")
            try:
                self.client.api.import_image(src=tar_path, repository=repo, tag=tagname)
                self.image_id = self.client.images.get(self.tag).id
            except Exception as exc:  # the SDK raises many kinds (APIError, requests errors)
                raise TraceError(f"{self.root}: docker import failed: {exc}") from None
            os.unlink(tar_path)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.image_id is not None:
            try:
                self.client.images.remove(self.image_id, force=True)
            except Exception as err:  # report, but do not hide the real error
                log.warning("%s: could not remove the temporary image: %s", self.tag, err)
            self.image_id = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, argv: list[str], tag: str) -> Process:
        config = self.config
        command = [*self.prefix, *STRACE_OPTIONS, "-o", f"{OUTPUT}/{tag}.strace", "--", *argv]
        env = list(config.env)
        if not any(e.startswith("PATH=") for e in env):
            env.append("PATH=" + ":".join(config.path_dirs))
        try:
            container = self.client.containers.create(
                self.tag, entrypoint=command, command=[], environment=env,
                working_dir=config.workdir or "/", user=config.user or "",
                network_mode=self.network, cap_add=["SYS_PTRACE"], detach=True,
                volumes={self.bundle: {"bind": BUNDLE, "mode": "ro"},
                         self.outdir: {"bind": OUTPUT, "mode": "rw"}},
            )
        except Exception as exc:
            raise TraceError(f"{self.tag}: cannot create the container: {exc}") from None
        try:
            container.start()
        except Exception as exc:
            container.remove(force=True)
            raise TraceError(f"{self.tag}: cannot start the container: {exc}") from None
        return _DockerProcess(container, self, tag, argv)


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

    def session(self, image_root: str, config: ImageConfig, *, network: str,
                writable: bool) -> Session:
        if network not in ("host", "none"):
            raise TraceError(f"{network}: unknown network mode (host or none)")
        if not self.strace:
            raise TraceError("docker runner: strace is not installed on the host")
        return _DockerSession(self, os.path.realpath(image_root), config, network)

    def find_program(self, session: Session, config: ImageConfig, name: str) -> str | None:
        assert isinstance(session, _DockerSession)
        return find_program(session.root, name, config)
