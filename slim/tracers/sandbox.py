"""SandboxRunner: run an image's root filesystem under bubblewrap, traced by strace from outside.

No daemon needed. The prepared root (a private extracted copy, see slim.fs.extract.prepare_root)
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
from slim.tracers.strace import parse_strace, strace_argv
from slim.tracers.trace import Trace

log = logging.getLogger(__name__)

TAIL_LINES = 20
TAIL_BYTES = 8192
STOP_GRACE = 10.0


# --- looking things up inside the root, never following a link out of it -------------------

def resolve_in_root(root: str, path: str, follow: bool = True) -> str | None:
    """Host path of image `path` with chroot semantics (links resolved inside root), or None."""
    parts = [p for p in path.split("/") if p]
    real: list[str] = []
    hops = 0
    while parts:
        name = parts.pop(0)
        if name == ".":
            continue
        if name == "..":
            if real:
                real.pop()
            continue
        host = os.path.join(root, *real, name)
        try:
            st = os.lstat(host)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode) and (follow or parts):
            hops += 1
            if hops > 40:
                return None
            target = os.readlink(host)
            if target.startswith("/"):
                real = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        real.append(name)
    return os.path.join(root, *real)


def _mkdirs_in_root(root: str, path: str, mode: int) -> None:
    """Create the missing directories of image `path` in the private root copy, stopping (and
    leaving it to bwrap) at anything that is not a plain directory, so a symlink in the
    untrusted image never leads a mkdir outside `root`."""
    host = root
    for name in [p for p in path.split("/") if p and p != "."]:
        if name == "..":
            return
        host = os.path.join(host, name)
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            try:
                os.mkdir(host)
                os.chmod(host, mode)
            except OSError:
                return
            continue
        except OSError:
            return
        if not stat.S_ISDIR(st.st_mode):
            return


def find_program(root: str, name: str, config: ImageConfig) -> str | None:
    """The image path execvp would run for `name` (PATH from the image Env), or None."""
    workdir = config.workdir or "/"
    candidates = ([name if name.startswith("/") else os.path.join(workdir, name)]
                  if "/" in name else [os.path.join(d, name) for d in config.path_dirs])
    for candidate in candidates:
        host = resolve_in_root(root, candidate)
        if host is None:
            continue
        st = os.stat(host)
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return os.path.normpath(candidate)
    return None


@dataclass(frozen=True)
class ResolvedUser:
    uid: int
    gid: int
    home: str


def resolve_user(root: str, user: str) -> ResolvedUser:
    """Docker's USER semantics: name or uid, optional `:group`, looked up in the image.

    Raises TraceError naming the user when a name is not in the image's /etc/passwd or /etc/group.
    """
    def table(path: str) -> list[list[str]]:
        host = resolve_in_root(root, path)
        if host is None or not os.path.isfile(host):
            return []
        with open(host, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n").split(":") for line in f if line.count(":") >= 2]

    name, _, group = user.partition(":")
    passwd = table("/etc/passwd")
    uid, gid, home = 0, 0, "/"
    if name:
        row = next((r for r in passwd if r[0] == name), None)
        if row is None and name.isdigit():
            row = next((r for r in passwd if len(r) > 2 and r[2] == name), None)
            uid, gid = int(name), int(name) if row is None else 0
        if row is None and not name.isdigit():
            raise TraceError(f"{user}: user not found in the image's /etc/passwd")
        if row is not None:
            try:
                uid, gid = int(row[2]), int(row[3]) if len(row) > 3 else 0
            except ValueError:
                raise TraceError(f"{user}: malformed /etc/passwd entry in the image") from None
            home = row[5] if len(row) > 5 and row[5] else "/"
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            grow = next((r for r in table("/etc/group") if r[0] == group), None)
            if grow is None or not grow[2].isdigit():
                raise TraceError(f"{user}: group {group!r} not found in the image's /etc/group")
            gid = int(grow[2])
    return ResolvedUser(uid, gid, home)


def tail(path: str) -> str:
    """The last lines of a captured output file."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-TAIL_LINES:])


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


@dataclass
class _Run:
    """One sandboxed, traced process tree."""

    proc: subprocess.Popen[bytes]
    status: _Status
    log_file: str
    out_file: str
    err_file: str
    skip_execs: int = 1  # launcher execs before the app's: bwrap, plus setpriv when used

    def alive(self) -> bool:
        """The app's main process has not exited."""
        return self.proc.poll() is None and self.status.exit_code is None


class SandboxRunner(Runner):
    """Runs the image root under bubblewrap, traced by the host's strace."""

    name = "sandbox"

    def __init__(self, bwrap: str | None = None, strace: str | None = None) -> None:
        self.bwrap = bwrap or shutil.which("bwrap") or ""
        self.strace = strace or shutil.which("strace") or ""

    @classmethod
    def available(cls) -> bool:
        return bool(shutil.which("bwrap") and shutil.which("strace"))

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
                _mkdirs_in_root(root, mount, 0o1777 if mount == "/tmp" else 0o755)
            if writable or resolve_in_root(root, mount) is not None:
                cmd += [opt, mount]
        if resolve_in_root(root, workdir) is None:
            if writable:
                _mkdirs_in_root(root, workdir, 0o755)
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

    def _argv(self, root: str, config: ImageConfig, args: tuple[str, ...] | None) -> list[str]:
        argv = list(config.entrypoint) + list(config.cmd if args is None else args)
        if not argv:
            raise TraceError(f"{root}: the image has neither Entrypoint nor Cmd; nothing to run")
        program = find_program(root, argv[0], config)
        if program is None:
            where = argv[0] if "/" in argv[0] else f"{argv[0]} (PATH {':'.join(config.path_dirs)})"
            raise TraceError(f"{where}: entrypoint not found in the image")
        return [program, *argv[1:]]

    # --- running ----------------------------------------------------------------------------
    def _start(self, tmp: str, root: str, config: ImageConfig, argv: list[str], network: str,
               writable: bool, tag: str) -> _Run:
        if not self.bwrap or not self.strace:
            raise TraceError("sandbox runner: needs bwrap (bubblewrap) and strace on the host")
        rfd, wfd = os.pipe()
        status = _Status()
        log_file = os.path.join(tmp, f"{tag}.strace")
        out_file, err_file = os.path.join(tmp, f"{tag}.out"), os.path.join(tmp, f"{tag}.err")
        try:
            launcher = self.bwrap_argv(root, config, argv, network=network,
                                       status_fd=wfd, writable=writable)
            cmd = strace_argv(self.strace, log_file, launcher)
            log.debug("sandbox: %s", cmd)
            with open(out_file, "wb") as out, open(err_file, "wb") as err:
                if launcher[0] != self.bwrap and config.user:
                    # the app reopens them as /dev/stdout, /dev/stderr (lighttpd's errorlog) as
                    # its own uid, as it can reopen Docker's log pipes
                    user = resolve_user(root, config.user)
                    for f in (out, err):
                        os.fchown(f.fileno(), user.uid, user.gid)
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        pass_fds=(wfd,), start_new_session=True)
        except OSError as exc:
            os.close(rfd)
            raise TraceError(f"{self.strace}: cannot start the sandbox: {exc}") from None
        finally:
            os.close(wfd)
        threading.Thread(target=_read_status, args=(rfd, status), daemon=True).start()
        return _Run(proc, status, log_file, out_file, err_file,
                    skip_execs=1 if launcher[0] == self.bwrap else 2)

    def _stop(self, run: _Run) -> None:
        """Kill the sandbox's pid namespace, let strace flush, and prove nothing remains."""
        run.status.started.wait(timeout=5)
        if run.proc.poll() is None and run.status.child_pid:
            with_suppress_kill(run.status.child_pid, pgroup=False)  # pid 1 of the namespace
        try:
            run.proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(run.proc.pid, signal.SIGTERM)  # strace detaches, flushes, exits
                run.proc.wait(timeout=STOP_GRACE)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if run.proc.poll() is None:
            with_suppress_kill(run.proc.pid)
            run.proc.wait(timeout=STOP_GRACE)
        run.status.done.wait(timeout=5)
        if run.status.pid_ns:
            deadline = time.monotonic() + STOP_GRACE
            while (left := pidns_members(int(run.status.pid_ns))) and time.monotonic() < deadline:
                for pid in left:
                    with_suppress_kill(pid, pgroup=False)
                time.sleep(0.1)
            if left:
                raise TraceError(f"sandbox: processes {left} survived the stop")

    def _trace(self, run: _Run, config: ImageConfig) -> Trace:
        try:
            with open(run.log_file, encoding="utf-8", errors="surrogateescape") as f:
                parser = parse_strace(f, skip_execs=run.skip_execs, app_cwd=config.workdir or "/")
        except OSError as exc:
            raise TraceError(f"{run.log_file}: strace wrote no log: {exc}") from None
        if parser.unresolved:
            log.info("strace: %d relative paths could not be resolved", parser.unresolved)
        return parser.trace

    def _exec_probe(self, tmp: str, run: _Run, probe: ExecProbe, config: ImageConfig,
                    deadline: float, index: int) -> tuple[ProbeOutcome, Observation, Trace | None]:
        run.status.started.wait(timeout=max(0.1, deadline - time.monotonic()))
        pid = run.status.child_pid
        if pid is None or not run.alive():
            return (ProbeOutcome(probe.spec, False, "the app is not running"),
                    Observation(probe.spec), None)
        log_file = os.path.join(tmp, f"exec{index}.strace")
        env = dict(config.env_dict)
        env.setdefault("PATH", ":".join(config.path_dirs))
        nsenter = [shutil.which("nsenter") or "nsenter", "--target", str(pid), "--mount", "--pid",
                   "--uts", "--ipc", "--root", "--wd", "--", *probe.command]
        try:
            done = subprocess.run(strace_argv(self.strace, log_file, nsenter), env=env,
                                  stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return ProbeOutcome(probe.spec, False, "timed out"), Observation(probe.spec), None
        # strace execs nsenter, nsenter execs the command: skip one launcher exec
        with open(log_file, encoding="utf-8", errors="surrogateescape") as f:
            trace = parse_strace(f, skip_execs=1).trace
        output = (done.stdout + done.stderr)[-TAIL_BYTES:]
        detail = f"exit code {done.returncode}"
        if done.returncode:
            detail += ": " + output.decode("utf-8", "replace").strip()[-300:]
        return (ProbeOutcome(probe.spec, done.returncode == 0, detail),
                Observation(probe.spec, body=done.stdout[-TAIL_BYTES:], exit_code=done.returncode),
                trace)

    def run(self, image_root: str, config: ImageConfig, probes: list[Probe], *,
            network: str = "host", timeout: float = 60.0, writable: bool = True) -> RunResult:
        """Run the image's entrypoint traced, exercise it with `probes`, stop it, parse.

        Without probes the entrypoint runs to completion (stopped at `timeout`). `cmd:` probes
        each run the image again with their arguments. Raises TraceError when the run cannot
        start (no bwrap/strace, entrypoint missing, unknown user).
        """
        root = os.path.realpath(image_root)
        live: list[Probe] = [p for p in probes if not isinstance(p, CmdProbe)]
        cmds = [p for p in probes if isinstance(p, CmdProbe)]
        trace = Trace()
        outcomes: list[ProbeOutcome] = []
        observations: list[Observation] = []
        exit_code: int | None = None
        out_tail = err_tail = ""
        tmp = tempfile.mkdtemp(prefix="slim-trace-")
        try:
            if live or not cmds:
                argv = self._argv(root, config, None)
                res = self._run_one(tmp, root, config, argv, live, network, timeout, writable,
                                    "main")
                trace.merge(res.trace)
                outcomes += res.probes
                observations += res.observations
                exit_code, out_tail, err_tail = res.exit_code, res.stdout_tail, res.stderr_tail
            for i, probe in enumerate(cmds):
                argv = self._argv(root, config, probe.args)
                res = self._run_one(tmp, root, config, argv, [], network, timeout, writable,
                                    f"cmd{i}")
                trace.merge(res.trace)
                passed = res.exit_code == 0
                detail = f"exit code {res.exit_code}"
                if not passed and res.stderr_tail:
                    detail += ": " + res.stderr_tail.splitlines()[-1][:300]
                outcomes.append(ProbeOutcome(probe.spec, passed, detail))
                observations.append(Observation(probe.spec, body=res.stdout_tail.encode(),
                                                exit_code=res.exit_code))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return RunResult(trace=trace, probes=outcomes, exit_code=exit_code,
                         stdout_tail=out_tail, stderr_tail=err_tail,
                         observations=observations)

    def _run_one(self, tmp: str, root: str, config: ImageConfig, argv: list[str],
                 live: list[Probe], network: str, timeout: float, writable: bool,
                 tag: str) -> RunResult:
        run = self._start(tmp, root, config, argv, network, writable, tag)
        outcomes: list[ProbeOutcome] = []
        observations: list[Observation] = []
        extra: list[Trace] = []
        start = time.monotonic()
        deadline = start + timeout
        try:
            if not live:
                try:
                    run.proc.wait(timeout=timeout)
                    run.status.done.wait(timeout=5)  # the exit-code line is read by a thread
                except subprocess.TimeoutExpired:
                    log.info("%s: still running after %ss; stopped", argv[0], timeout)
            for i, probe in enumerate(live):
                if isinstance(probe, HttpProbe):
                    outcome, obs = run_http(probe, deadline, run.alive)
                elif isinstance(probe, TcpProbe):
                    outcome, obs = run_tcp(probe, deadline, run.alive)
                elif isinstance(probe, WaitProbe):
                    end = min(deadline, time.monotonic() + probe.seconds)
                    while run.alive() and time.monotonic() < end:
                        time.sleep(0.05)
                    ok = run.alive()
                    outcome = ProbeOutcome(probe.spec, ok, "still running" if ok else
                                           "the app exited during the wait")
                    obs = Observation(probe.spec)
                else:
                    assert isinstance(probe, ExecProbe)
                    outcome, obs, sub = self._exec_probe(tmp, run, probe, config, deadline, i)
                    if sub is not None:
                        extra.append(sub)
                outcomes.append(outcome)
                observations.append(obs)
        finally:
            # the app's own exit, not the SIGKILL we are about to send
            status = run.status.exit_code
            if status is None and run.proc.poll() is not None:
                # bwrap reports no exit code when it could not start the app at all (execvp of
                # a missing program or loader): strace exits with bwrap's own status then
                # (strace(1): "the exit status of the traced command"), so a failed launch is
                # never mistaken for an app we stopped
                run.status.done.wait(timeout=5)
                status = run.status.exit_code
                if status is None:
                    status = run.proc.returncode
            self._stop(run)
        stderr_tail, stdout_tail = tail(run.err_file), tail(run.out_file)
        if live and status is not None:
            # the app exited while it should have been serving: say so on every failed probe
            why = (f"the app exited with code {status}"
                   + (" (did it daemonize? run it in the foreground)" if status == 0 else "")
                   + (f"; stderr: {stderr_tail.splitlines()[-1][:300]}" if stderr_tail else ""))
            outcomes = [o if o.passed else ProbeOutcome(o.spec, False, f"{o.detail}; {why}")
                        for o in outcomes]
        trace = self._trace(run, config)
        for sub in extra:
            trace.merge(sub)
        log.debug("%s: traced %d paths, %d syscalls in %.1fs", argv[0], len(trace.paths),
                  len(trace.syscalls), time.monotonic() - start)
        return RunResult(trace=trace, probes=outcomes, exit_code=status,
                         stdout_tail=stdout_tail, stderr_tail=stderr_tail,
                         observations=observations)


def with_suppress_kill(pid: int, pgroup: bool = True) -> None:
    """SIGKILL a process group (or one process), ignoring ones already gone."""
    try:
        if pgroup:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
