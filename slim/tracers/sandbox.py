"""SandboxRunner: run an image's root filesystem under bubblewrap, traced by strace from outside.

No daemon needed. The prepared root (a private extracted copy, see slim.image.prepare_root)
is bound at `/` in new mount, pid, ipc and uts namespaces (network shared with the host or none);
/proc, /dev and /tmp are provided by bwrap; the image's Env, WorkingDir and User are applied.
strace runs bwrap (`strace -f … -- bwrap … -- ARGV`), so the first traced execve is bwrap's and
the second the app's: the parser skips exactly one (`skip_execs=1`; two when root starts bwrap
through setpriv to run as the image's User). Paths in the trace are the
app's paths, i.e. image paths, because the root is bound at `/`.

Lifetime, as in Docker: the app is the sandbox's main process; when it exits, bwrap's pid-1
reaper exits and the kernel kills the rest of the pid namespace (pid_namespaces(7)) — so an app
that daemonizes and exits is stopped, and reported as such. Stopping kills the namespace's init
(its pid comes from `--json-status-fd`), then waits for strace to see every tracee die and flush
its log; `--die-with-parent` and the process group are the fallbacks. Mounts live only in the
sandbox's mount namespace. Afterwards we check that no process of the namespace remains.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field

from slim.errors import TraceError
from slim.model import ImageConfig
from slim.tracers.base import (
    TAIL_BYTES,
    ExecResult,
    Process,
    Runner,
    Session,
    read_tail,
)
from slim.tracers.hostroot import (
    ResolvedUser,
    find_program,
    mkdirs_in_root,
    resolve_in_root,
    resolve_user,
)
from slim.tracers.strace import parse_strace, strace_argv
from slim.tracers.trace import Trace

log = logging.getLogger(__name__)

STOP_GRACE = 10.0


def pidns_members(ns_inode: int) -> list[int]:
    """Live pids on the host whose pid namespace is `ns_inode` (to prove nothing is left).

    Zombies do not count: they run nothing and hold nothing but a pid until their new parent
    (the host's init) reaps them.
    """
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/pid").st_ino != ns_inode:
                continue
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            out.append(int(entry))
    return sorted(out)


@dataclass
class _Status:
    """What bwrap reported on --json-status-fd."""

    child_pid: int | None = None
    pid_ns: int | None = None
    exit_code: int | None = None
    done: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)


def _read_status(fd: int, status: _Status) -> None:
    buf = b""
    try:
        while chunk := os.read(fd, 4096):
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue
                if "child-pid" in doc:
                    status.child_pid = int(doc["child-pid"])
                    status.pid_ns = doc.get("pid-namespace")
                    status.started.set()
                if "exit-code" in doc:
                    status.exit_code = int(doc["exit-code"])
    finally:
        os.close(fd)
        status.started.set()
        status.done.set()


class _SandboxProcess(Process):
    """One sandboxed, traced process tree."""

    def __init__(self, proc: subprocess.Popen[bytes], status: _Status, files: dict[str, str],
                 session: _SandboxSession, skip_execs: int) -> None:
        self.proc = proc
        self.status = status
        self.files = files  # log, out, err
        self.session = session
        self.skip_execs = skip_execs  # launcher execs before the app's: bwrap, plus setpriv

    def alive(self) -> bool:
        return self.proc.poll() is None and self.status.exit_code is None

    def wait(self, timeout: float) -> None:
        try:
            self.proc.wait(timeout=timeout)
            self.status.done.wait(timeout=5)  # the exit-code line is read by a thread
        except subprocess.TimeoutExpired:
            pass

    def exit_code(self) -> int | None:
        status = self.status.exit_code
        if status is None and self.proc.poll() is not None:
            # bwrap reports no exit code when it could not start the app at all (execvp of
            # a missing program or loader): strace exits with bwrap's own status then
            # (strace(1): "the exit status of the traced command"), so a failed launch is
            # never mistaken for an app we stopped
            self.status.done.wait(timeout=5)
            status = self.status.exit_code
            if status is None:
                status = self.proc.returncode
        return status

    def stop(self) -> None:
        """Kill the sandbox's pid namespace, let strace flush, and prove nothing remains."""
        run, status = self.proc, self.status
        status.started.wait(timeout=5)
        if run.poll() is None and status.child_pid:
            with_suppress_kill(status.child_pid, pgroup=False)  # pid 1 of the namespace
        try:
            run.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(run.pid, signal.SIGTERM)  # strace detaches, flushes, exits
                run.wait(timeout=STOP_GRACE)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if run.poll() is None:
            with_suppress_kill(run.pid)
            run.wait(timeout=STOP_GRACE)
        status.done.wait(timeout=5)
        if status.pid_ns:
            deadline = time.monotonic() + STOP_GRACE
            while (left := pidns_members(int(status.pid_ns))) and time.monotonic() < deadline:
                for pid in left:
                    with_suppress_kill(pid, pgroup=False)
                time.sleep(0.1)
            if left:
                raise TraceError(f"sandbox: processes {left} survived the stop")

    def outputs(self) -> tuple[bytes, bytes]:
        return read_tail(self.files["out"]), read_tail(self.files["err"])

    def trace(self) -> Trace:
        try:
            with open(self.files["log"], encoding="utf-8", errors="surrogateescape") as f:
                parser = parse_strace(f, skip_execs=self.skip_execs,
                                      app_cwd=self.session.config.workdir or "/")
        except OSError as exc:
            raise TraceError(f"{self.files['log']}: strace wrote no log: {exc}") from None
        if parser.unresolved:
            log.info("strace: %d relative paths could not be resolved", parser.unresolved)
        return parser.trace

    def exec(self, command: tuple[str, ...], deadline: float, index: int) -> ExecResult:
        self.status.started.wait(timeout=max(0.1, deadline - time.monotonic()))
        pid = self.status.child_pid
        if pid is None:
            return ExecResult(None, stderr=b"the app is not running")
        log_file = os.path.join(self.session.tmp, f"exec{index}.strace")
        config = self.session.config
        env = dict(config.env_dict)
        env.setdefault("PATH", ":".join(config.path_dirs))
        nsenter = [shutil.which("nsenter") or "nsenter", "--target", str(pid), "--mount", "--pid",
                   "--uts", "--ipc", "--root", "--wd", "--", *command]
        try:
            done = subprocess.run(strace_argv(self.session.runner.strace, log_file, nsenter), env=env,
                                  stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return ExecResult(None, timed_out=True)
        # strace execs nsenter, nsenter execs the command: skip one launcher exec
        try:
            with open(log_file, encoding="utf-8", errors="surrogateescape") as f:
                trace = parse_strace(f, skip_execs=1).trace
        except OSError as exc:
            raise TraceError(f"{log_file}: strace wrote no log for exec probe: {exc}") from None
        return ExecResult(done.returncode, done.stdout[-TAIL_BYTES:], done.stderr[-TAIL_BYTES:], trace)


class _SandboxSession(Session):
    """A root bound by bwrap; per-run logs live in a private temp directory."""

    def __init__(self, runner: SandboxRunner, root: str, config: ImageConfig, network: str,
                 writable: bool) -> None:
        self.runner = runner
        self.root = root
        self.config = config
        self.network = network
        self.writable = writable
        self.tmp = tempfile.mkdtemp(prefix="slim-trace-")

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, argv: list[str], tag: str) -> Process:
        runner, config, root = self.runner, self.config, self.root
        rfd, wfd = os.pipe()
        status = _Status()
        files = {"log": os.path.join(self.tmp, f"{tag}.strace"),
                 "out": os.path.join(self.tmp, f"{tag}.out"),
                 "err": os.path.join(self.tmp, f"{tag}.err")}
        try:
            launcher = runner.bwrap_argv(root, config, argv, network=self.network,
                                         status_fd=wfd, writable=self.writable)
            cmd = strace_argv(runner.strace, files["log"], launcher)
            log.debug("sandbox: %s", cmd)
            with open(files["out"], "wb") as out, open(files["err"], "wb") as err:
                if launcher[0] != runner.bwrap and config.user:
                    # the app reopens them as /dev/stdout, /dev/stderr (lighttpd's errorlog) as
                    # its own uid, as it can reopen Docker's log pipes
                    user = resolve_user(root, config.user)
                    for f in (out, err):
                        os.fchown(f.fileno(), user.uid, user.gid)
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        pass_fds=(wfd,), start_new_session=True)
        except OSError as exc:
            os.close(rfd)
            raise TraceError(f"{runner.strace}: cannot start the sandbox: {exc}") from None
        finally:
            os.close(wfd)
        threading.Thread(target=_read_status, args=(rfd, status), daemon=True).start()
        return _SandboxProcess(proc, status, files, self,
                               skip_execs=1 if launcher[0] == runner.bwrap else 2)


class SandboxRunner(Runner):
    """Runs the image root under bubblewrap, traced by the host's strace."""

    name = "sandbox"

    def __init__(self, bwrap: str | None = None, strace: str | None = None) -> None:
        self.bwrap = bwrap or shutil.which("bwrap") or ""
        self.strace = strace or shutil.which("strace") or ""

    @classmethod
    def available(cls) -> bool:
        return bool(shutil.which("bwrap") and shutil.which("strace"))

    def session(self, image_root: str, config: ImageConfig, *, network: str,
                writable: bool) -> Session:
        if not self.bwrap or not self.strace:
            raise TraceError("sandbox runner: needs bwrap (bubblewrap) and strace on the host")
        if network not in ("host", "none"):
            raise TraceError(f"{network}: unknown network mode (host or none)")
        return _SandboxSession(self, os.path.realpath(image_root), config, network, writable)

    def find_program(self, session: Session, config: ImageConfig, name: str) -> str | None:
        assert isinstance(session, _SandboxSession)
        return find_program(session.root, name, config)

    # --- command lines ----------------------------------------------------------------------
    @staticmethod
    def _drop_privileges(root: str, user: ResolvedUser) -> list[str]:
        """The setpriv prefix that starts bwrap as the image's uid/gid, or [] to keep the old way.

        Run by root, `bwrap --unshare-user --uid U` maps U to host root: every file owned by
        another uid (postgres' 0700 data directory) looks foreign and root's files look like
        the app's own. Dropping to U before bwrap (util-linux setpriv(1)) makes the new user
        namespace map U to host U, so the image's owners and modes decide access, as in Docker.
        The extracted root's slim-* temp parents are made traversable for that uid.
        """
        setpriv = shutil.which("setpriv")
        if os.geteuid() != 0 or setpriv is None:
            return []
        parent = os.path.dirname(root)
        while parent not in ("/", ""):
            st = os.stat(parent)
            if not st.st_mode & 0o001:
                if not os.path.basename(parent).startswith("slim-") or st.st_uid != os.geteuid():
                    log.info("%s: not traversable by uid %d; the app runs as mapped root",
                             parent, user.uid)
                    return []
                os.chmod(parent, stat.S_IMODE(st.st_mode) | 0o011)
            parent = os.path.dirname(parent)
        return [setpriv, f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--"]

    def bwrap_argv(self, root: str, config: ImageConfig, argv: list[str], *, network: str,
                   status_fd: int, writable: bool = True) -> list[str]:
        user = resolve_user(root, config.user) if config.user else ResolvedUser(0, 0, "/root")
        workdir = config.workdir or "/"
        cmd = [self.bwrap, "--die-with-parent", "--new-session",
               "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", "slim"]
        if network == "none":
            cmd.append("--unshare-net")
        elif network != "host":
            raise TraceError(f"{network}: unknown network mode (host or none)")
        # the extracted root is a private temp copy, so the app may write it (Docker's rw layer)
        cmd += ["--bind" if writable else "--ro-bind", root, "/"]
        for mount, opt in (("/proc", "--proc"), ("/dev", "--dev"), ("/tmp", "--tmpfs")):
            if writable:
                # Docker makes its mount points in the rw layer; an unprivileged bwrap (see
                # _drop_privileges) cannot, so the private copy gets them first (a minimal
                # image often has no /proc)
                mkdirs_in_root(root, mount, 0o1777 if mount == "/tmp" else 0o755)
            if writable or resolve_in_root(root, mount) is not None:
                cmd += [opt, mount]
        if resolve_in_root(root, workdir) is None:
            if writable:
                mkdirs_in_root(root, workdir, 0o755)
            if resolve_in_root(root, workdir) is None:
                cmd += ["--dir", workdir]  # Docker creates a missing WorkingDir
        cmd += ["--chdir", workdir]
        if user.uid != 0 or user.gid != 0:
            cmd += ["--unshare-user", "--uid", str(user.uid), "--gid", str(user.gid)]
            drop = self._drop_privileges(root, user)
            if drop:
                # as Docker does, the app runs as that uid on the host too, so the image's
                # owners and modes decide access (a 0700 directory owned by postgres)
                cmd = [*drop, *cmd]
        env = dict(config.env_dict)
        env.setdefault("PATH", ":".join(config.path_dirs))
        env.setdefault("HOME", user.home)
        env.setdefault("HOSTNAME", "slim")
        cmd.append("--clearenv")
        for key in sorted(env):
            cmd += ["--setenv", key, env[key]]
        cmd += ["--json-status-fd", str(status_fd), "--", *argv]
        return cmd


def with_suppress_kill(pid: int, pgroup: bool = True) -> None:
    """SIGKILL a process group (or one process), ignoring ones already gone."""
    try:
        if pgroup:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
