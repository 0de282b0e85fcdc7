"""SandboxRunner: run an image's root filesystem under bubblewrap, traced by strace from outside.

No daemon needed. The isolation model — what the traced app may touch — is Docker's defaults,
never more:

* **Its own user namespace** (when slim runs as root): the root is a private copy whose owners
  are shifted by ID_BASE, and the app runs in a user namespace mapping container ids 0..65535 to
  host ids ID_BASE.. (slim.tracers.userns), as Docker's userns-remap does. Root in the sandbox
  is not root on the host: capabilities hold only inside the namespace, so open_by_handle_at
  (CAP_DAC_READ_SEARCH in the initial namespace) and host-owned files are out of reach.
* **Docker's default capabilities at most**: a root app gets the bounding set Docker gives
  (`--cap-drop ALL` plus DEFAULT_CAPS); an app whose image User is not root gets none.
* **Its own network namespace** (`--network none`, the default): loopback only. Probes reach
  the app from inside that namespace (slim.tracers.probehelper through `nsenter --net`).
  `--network host` shares the host's network and must be asked for.
* **Docker's masked and read-only paths**: /proc/sys, /proc/sysrq-trigger, /proc/irq, /proc/bus,
  /proc/fs and /proc/asound read-only; /proc/kcore, /proc/keys, /proc/timer_list,
  /proc/sched_debug and friends masked; a minimal /dev; a private /tmp; new pid, ipc and uts
  namespaces. No host path but the private root copy is mounted.

When slim is not root, bubblewrap runs unprivileged (`--unshare-user`): the app has no
capabilities at all, and the same network, /proc and /dev rules apply.

strace runs the launcher (`strace -f … -- python -m slim.tracers.userns … -- bwrap … -- ARGV`):
the execs before the app's (the launcher's, bwrap's) are skipped by the parser (`skip_execs`).
Paths in the trace are the app's paths, i.e. image paths, because the root is bound at `/`.

Lifetime, as in Docker: the app is the sandbox's main process; when it exits, bwrap's pid-1
reaper exits and the kernel kills the rest of the pid namespace (pid_namespaces(7)) — so an app
that daemonizes and exits is stopped, and reported as such. Stopping kills the namespace's init
(its pid comes from `--json-status-fd`), then waits for strace to see every tracee die and flush
its log; `--die-with-parent` and the process group are the fallbacks. Afterwards we check that
no process of the namespace remains. strace runs in a session of its own and would outlive a
slim killed with SIGKILL (and the app under it): its process group is told to the watchdog
(slim.reaper), which kills it then, and bwrap's `--die-with-parent` ends the sandbox.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from slim import reaper
from slim.errors import TraceError
from slim.fs.rootfs import RootFS
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
    shift_ownership,
)
from slim.tracers.strace import StraceFollower, parse_strace, strace_argv
from slim.tracers.trace import Trace

log = logging.getLogger(__name__)

STOP_GRACE = 10.0
ID_BASE = 1 << 30  # container uid N is host uid ID_BASE + N (far from any real account)
ID_COUNT = 65536
# Docker's default capability set (moby oci/caps/defaults.go), the most a root app gets
DEFAULT_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")
# Docker's read-only and masked /proc paths (moby oci/defaults.go)
READONLY_PROC = ("/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                 "/proc/sysrq-trigger")
MASKED_PROC_FILES = ("/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                     "/proc/timer_stats", "/proc/sched_debug")
MASKED_PROC_DIRS = ("/proc/acpi", "/proc/scsi")


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
        # parsed while the app runs: little is left to parse once it is stopped
        self._follower = StraceFollower(files["log"], skip_execs=skip_execs,
                                        app_cwd=session.config.workdir or "/")

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
        try:
            self._stop()
        finally:
            self._follower.ended()

    def _stop(self) -> None:
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
        if run.poll() is not None:
            reaper.untrack_group(run.pid)
        status.done.wait(timeout=5)
        if status.pid_ns:
            deadline = time.monotonic() + STOP_GRACE
            while (left := pidns_members(int(status.pid_ns))) and time.monotonic() < deadline:
                for pid in left:
                    with_suppress_kill(pid, pgroup=False)
                time.sleep(0.1)
            if left:
                raise TraceError(f"sandbox: processes {left} survived the stop")

    def network_pid(self) -> int | None:
        if self.session.network == "host":
            return os.getpid()
        self.status.started.wait(timeout=5)
        return self.status.child_pid

    def network_prefix(self) -> list[str] | None:
        pid = self.network_pid() if self.session.network != "host" else None
        if pid is None:
            return None
        prefix = [shutil.which("nsenter") or "nsenter", "--target", str(pid)]
        if os.geteuid() != 0:  # enter the (unprivileged) user namespace first
            prefix += ["--user", "--preserve-credentials"]
        return [*prefix, "--net", "--"]

    def outputs(self) -> tuple[bytes, bytes]:
        return read_tail(self.files["out"]), read_tail(self.files["err"])

    def trace(self) -> Trace:
        try:
            parser = self._follower.finish()
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
        user = self.session.user
        # the app's namespaces, its user namespace included: the command is the sandbox's root
        # (or the image's User), never the host's
        nsenter = [shutil.which("nsenter") or "nsenter", "--target", str(pid), "--user",
                   "--mount", "--pid", "--uts", "--ipc", "--net", "--root", "--wd",
                   f"--setuid={user.uid}", f"--setgid={user.gid}", "--", *command]
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
    """A private root bound by bwrap; per-run logs live in a private temp directory."""

    def __init__(self, runner: SandboxRunner, root: str, config: ImageConfig, network: str) -> None:
        self.runner = runner
        self.root = root
        self.config = config
        self.network = network
        self.as_root = os.geteuid() == 0
        self.user = resolve_user(root, config.user) if config.user else ResolvedUser(0, 0, "/root")
        self.tmp = reaper.mkdtemp(prefix="slim-trace-")

    def __enter__(self) -> _SandboxSession:
        try:
            for mount, mode in (("/proc", 0o755), ("/dev", 0o755), ("/tmp", 0o1777)):
                # Docker makes its mount points in the rw layer; bwrap in a user namespace
                # cannot, so the private copy gets them first (a minimal image often has none)
                mkdirs_in_root(self.root, mount, mode)
            workdir = self.config.workdir or "/"
            if resolve_in_root(self.root, workdir) is None:
                mkdirs_in_root(self.root, workdir, 0o755)  # Docker creates a missing WorkingDir
            if self.as_root:
                shift_ownership(self.root, ID_BASE, ID_COUNT)
                _traversable(self.root)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        reaper.remove_tree(self.tmp)

    def host_id(self, uid: int) -> int:
        """The host id of container id `uid` (shifted when slim runs as root)."""
        return uid + ID_BASE if self.as_root and uid < ID_COUNT else uid

    def launcher(self) -> list[str]:
        """What starts bwrap: the user-namespace launcher when root (module doc), else nothing."""
        if not self.as_root:
            return []
        uid, gid = (0, 0) if self.user.uid == 0 else (self.user.uid, self.user.gid)
        return [sys.executable, "-m", "slim.tracers.userns", str(ID_BASE), str(ID_COUNT),
                str(uid), str(gid), "--"]

    def start(self, argv: list[str], tag: str) -> Process:
        runner = self.runner
        rfd, wfd = os.pipe()
        status = _Status()
        files = {"log": os.path.join(self.tmp, f"{tag}.strace"),
                 "out": os.path.join(self.tmp, f"{tag}.out"),
                 "err": os.path.join(self.tmp, f"{tag}.err")}
        launcher = self.launcher()
        try:
            bwrap = runner.bwrap_argv(self, argv, status_fd=wfd)
            cmd = strace_argv(runner.strace, files["log"], [*launcher, *bwrap])
            log.debug("sandbox: %s", cmd)
            with open(files["out"], "wb") as out, open(files["err"], "wb") as err:
                if self.as_root:
                    # the app reopens them as /dev/stdout, /dev/stderr (lighttpd's errorlog) as
                    # its own uid, as it can reopen Docker's log pipes
                    for f in (out, err):
                        os.fchown(f.fileno(), self.host_id(self.user.uid), self.host_id(self.user.gid))
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        pass_fds=(wfd,), start_new_session=True,
                                        extra_groups=[] if self.as_root else None)
        except OSError as exc:
            os.close(rfd)
            raise TraceError(f"{runner.strace}: cannot start the sandbox: {exc}") from None
        finally:
            os.close(wfd)
        reaper.track_group(proc.pid)  # strace outlives a killed slim: the watchdog kills it
        threading.Thread(target=_read_status, args=(rfd, status), daemon=True).start()
        # launcher execs before the app's: the python launcher and bwrap, or bwrap alone
        return _SandboxProcess(proc, status, files, self, skip_execs=2 if launcher else 1)


def _traversable(root: str) -> None:
    """The shifted ids must reach the private copy (bwrap mounts it by path from inside the
    user namespace): slim's own `slim-*` temp parents get o+x; any other closed parent is an
    error naming it. Nothing below them is exposed: the copy is the image's own files."""
    parent = os.path.dirname(root)
    while parent not in ("/", ""):
        st = os.stat(parent)
        if not st.st_mode & 0o001:
            if not os.path.basename(parent).startswith("slim-") or st.st_uid != os.geteuid():
                raise TraceError(f"{parent}: the sandbox's ids cannot reach the image root "
                                 "below it; run the image from slim's own temp directory "
                                 "(slim.image.prepare_root under a slim-* directory)")
            os.chmod(parent, stat.S_IMODE(st.st_mode) | 0o011)
        parent = os.path.dirname(parent)


class SandboxRunner(Runner):
    """Runs the image root under bubblewrap, traced by the host's strace."""

    name = "sandbox"

    def __init__(self, bwrap: str | None = None, strace: str | None = None) -> None:
        self.bwrap = bwrap or shutil.which("bwrap") or ""
        self.strace = strace or shutil.which("strace") or ""

    @classmethod
    def available(cls) -> bool:
        return bool(shutil.which("bwrap") and shutil.which("strace") and shutil.which("nsenter"))

    def session(self, image_root: str | RootFS, config: ImageConfig, *, network: str,
                image_id: str = "") -> Session:
        if not isinstance(image_root, str):
            raise TraceError("sandbox runner: the image must be unpacked to run")
        if not self.bwrap or not self.strace:
            raise TraceError("sandbox runner: needs bwrap (bubblewrap) and strace on the host")
        if network not in ("host", "none"):
            raise TraceError(f"{network}: unknown network mode (none or host)")
        return _SandboxSession(self, os.path.realpath(image_root), config, network)

    def find_program(self, session: Session, config: ImageConfig, name: str) -> str | None:
        assert isinstance(session, _SandboxSession)
        return find_program(session.root, name, config)

    def bwrap_argv(self, session: _SandboxSession, argv: list[str], *, status_fd: int) -> list[str]:
        """The bwrap command line for one run (module doc: the isolation model)."""
        config, user = session.config, session.user
        workdir = config.workdir or "/"
        cmd = [self.bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc",
               "--unshare-uts", "--hostname", "slim"]
        if session.network != "host":
            cmd.append("--unshare-net")
        if user.uid != 0 or not session.as_root:
            # unprivileged bwrap in (another) user namespace: the app has no capabilities
            cmd += ["--unshare-user", "--uid", str(user.uid), "--gid", str(user.gid)]
        else:
            cmd += ["--cap-drop", "ALL"]
            for cap in DEFAULT_CAPS:
                cmd += ["--cap-add", cap]
        cmd += ["--bind", session.root, "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        for path in READONLY_PROC:
            cmd += ["--ro-bind-try", path, path]
        for path in MASKED_PROC_FILES:
            if os.path.exists(path):
                cmd += ["--ro-bind", "/dev/null", path]
        for path in MASKED_PROC_DIRS:
            if os.path.isdir(path):
                cmd += ["--tmpfs", path, "--remount-ro", path]
        if resolve_in_root(session.root, workdir) is None:
            cmd += ["--dir", workdir]
        cmd += ["--chdir", workdir]
        env = dict(config.env_dict)
        env.setdefault("PATH", ":".join(config.path_dirs))
        env.setdefault("HOME", user.home)
        env.setdefault("HOSTNAME", "slim")
        cmd.append("--clearenv")
        for key in sorted(env):
            cmd += ["--setenv", key, env[key]]
        return [*cmd, "--json-status-fd", str(status_fd), "--", *argv]


def with_suppress_kill(pid: int, pgroup: bool = True) -> None:
    """SIGKILL a process group (or one process), ignoring ones already gone."""
    try:
        if pgroup:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
