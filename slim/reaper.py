"""What a slim process leaves behind goes away even when the process is killed.

A traced run's container runs the image's app; killed with `kill -9` (a CI job's timeout, the
out-of-memory killer) slim could not remove it, and the app ran on, with the imported copy of
the root and the loaded image (its `slim-lease:` tag) beside it, and on disk the unpacked root,
the staged image and a half-written output's temporary sibling. So:

* every container slim creates carries the label `org.slim.owner`, and every image name it
  makes (`slim-trace:` and `slim-lease:` tags) begins with the same owner: the process that
  made it, as BOOT.PIDNS.PID.START (the kernel's boot id, the PID namespace's inode, the PID,
  and the process's start time in clock ticks, so a reused PID is another owner);
* every temporary file or directory of slim's work (`mkdtemp`, `temporary_directory`,
  `track`) is told to a watchdog: the first time a process makes one, or first uses the Docker
  daemon, it starts `python -m slim.reaper OWNER` in a session of its own (a terminal's Ctrl-C
  or hang-up does not reach it, and it ignores SIGTERM: a service manager's stop signal goes
  to every process, and the watchdog must outlive slim to clean up after it), and writes to it
  through a pipe, one JSON line per path made (`add`) and removed (`drop`), and whether the
  daemon was used, and the process group of each run it starts on the host (the sandbox
  runner's strace, under which bubblewrap runs with `--die-with-parent`: strace outlived a
  killed slim, and the app with it). At a normal exit the process writes `bye` (it removed
  everything itself) and the watchdog ends; when the pipe closes without it, the watchdog
  kills the process groups still listed, removes the owner's containers (force: the app stops)
  and image names, then the paths still listed, and ends;
* when a process first uses the daemon, it also removes what dead owners of its own host and
  PID namespace left there (their watchdog was killed with them: a whole process group, a
  cgroup).

An owner of another host or PID namespace is never judged: its PIDs mean nothing here. Images
are removed by name and without force: one that another name (a user's tag, a live run's
lease) still holds stays. Paths are removed without following a link, and only paths this
process made: never a previous output moved aside for a new one.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

OWNER_LABEL = "org.slim.owner"
REPOSITORIES = ("slim-trace", "slim-lease")  # the image names slim makes, tagged OWNER-RANDOM
BYE = b"bye\n"

_lock = threading.RLock()
_watchdogs: dict[int, int] = {}  # pid → the write end of its watchdog's pipe (-1: none)
_swept: set[int] = set()  # pids that swept the daemon once


def _boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
        return f.read().strip().replace("-", "")[:12]


def _stat(pid: int) -> tuple[bytes, int] | None:
    """(state, start time): fields 3 and 22 of /proc/PID/stat (read after the command name,
    which may hold spaces and parens)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw.rpartition(b")")[2].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _start_time(pid: int) -> int | None:
    found = _stat(pid)
    return found[1] if found else None


def _running(pid: int, start: int) -> bool:
    """Process `pid` is the one that started at `start` and has not ended (a zombie has)."""
    found = _stat(pid)
    return found is not None and found[1] == start and found[0] != b"Z"


def _here() -> tuple[str, int] | None:
    """(boot id, PID namespace inode) of this process, None when /proc cannot say."""
    try:
        return _boot_id(), os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


_owners: dict[int, str] = {}


def owner() -> str:
    """This process as an owner (BOOT.PIDNS.PID.START); "" where /proc does not say."""
    pid = os.getpid()
    found = _owners.get(pid)
    if found is None:
        here = _here()
        start = _start_time(pid)
        found = _owners[pid] = f"{here[0]}.{here[1]}.{pid}.{start}" if here and start is not None else ""
    return found


def owned_name(random: str) -> str:
    """An image tag for slim's repositories: OWNER-RANDOM (just RANDOM without an owner)."""
    me = owner()
    return f"{me}-{random}" if me else random


def parse_owner(text: str) -> tuple[str, int, int, int] | None:
    parts = text.split(".")
    if len(parts) != 4 or not parts[0].isalnum():
        return None
    try:
        return parts[0], int(parts[1]), int(parts[2]), int(parts[3])
    except ValueError:
        return None


def dead(text: str) -> bool:
    """Whether owner `text` is a process of this host and PID namespace that has ended (or
    whose PID now names another process). False for anything it cannot judge."""
    parsed = parse_owner(text)
    here = _here()
    if parsed is None or here is None or (parsed[0], parsed[1]) != here:
        return False
    pid, start = parsed[2], parsed[3]
    return _start_time(pid) != start


def tag_owner(tag: str) -> str:
    """The owner a slim image name (`slim-lease:OWNER-RANDOM`) carries; "" for other names."""
    repo, _, name = tag.rpartition(":")
    if repo not in REPOSITORIES:
        return ""
    found = name.rpartition("-")[0]
    return found if parse_owner(found) is not None else ""


def sweep(client: Any, *, only: str = "") -> int:
    """Remove the containers and slim image names of dead owners (of `only`, dead or dying,
    when given: the watchdog's owner closed its pipe). Returns how many were removed."""
    def gone(o: str) -> bool:
        return o == only if only else dead(o)

    removed = 0
    try:
        containers = client.containers.list(all=True, filters={"label": OWNER_LABEL})
    except Exception as exc:  # the SDK raises many kinds; a sweep is best effort
        log.debug("sweep: cannot list containers: %s", exc)
        containers = []
    for container in containers:
        if gone((container.labels or {}).get(OWNER_LABEL, "")):
            try:
                container.remove(force=True, v=True)
                removed += 1
            except Exception as exc:
                log.debug("sweep: %s: %s", container.id, exc)
    for repo in REPOSITORIES:
        try:
            images = client.images.list(name=repo)
        except Exception as exc:
            log.debug("sweep: cannot list %s images: %s", repo, exc)
            continue
        for image in images:
            for tag in image.tags or ():
                o = tag_owner(tag)
                if o and gone(o):
                    try:
                        client.images.remove(tag, force=False)
                        removed += 1
                    except Exception as exc:
                        log.debug("sweep: %s: %s", tag, exc)
    return removed


def _watchdog() -> int:
    """The write end of this process's watchdog pipe, the watchdog started on first use; -1
    when there is none (no owner, or it could not start). Call with _lock held."""
    pid = os.getpid()
    fd = _watchdogs.get(pid)
    if fd is not None:
        return fd
    _watchdogs[pid] = -1
    me = owner()
    if not me:
        return -1
    read_fd, write_fd = os.pipe()
    try:
        subprocess.Popen([sys.executable, "-m", "slim.reaper", me], stdin=read_fd,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, close_fds=True)
    except OSError as exc:
        log.warning("no watchdog to clean up after this process should it be killed: %s", exc)
        os.close(write_fd)
        return -1
    finally:
        os.close(read_fd)
    _watchdogs[pid] = write_fd
    atexit.register(_say_bye)
    return write_fd


def _tell(message: dict[str, Any]) -> None:
    line = json.dumps(message).encode() + b"\n"
    with _lock:
        fd = _watchdog()
        if fd < 0:
            return
        try:
            while line:
                line = line[os.write(fd, line):]
        except OSError:  # the watchdog is gone (killed on its own): nothing to tell any more
            os.close(fd)
            _watchdogs[os.getpid()] = -1


def _say_bye() -> None:
    with _lock:
        fd = _watchdogs.get(os.getpid(), -1)
        if fd < 0:
            return
        _watchdogs[os.getpid()] = -1
        with contextlib.suppress(OSError):
            os.write(fd, BYE)
        with contextlib.suppress(OSError):
            os.close(fd)


def guard(client: Any) -> None:
    """Before this process first creates anything in the daemon: sweep what dead owners left
    and tell the watchdog to sweep this owner's, should it die."""
    with _lock:
        if os.getpid() in _swept:
            return
        _swept.add(os.getpid())
        sweep(client)
        _tell({"docker": True})


def track(path: str) -> None:
    """`path` (a temporary file or directory this process just made) is removed by the
    watchdog should the process die before it does (and then `untrack`s it)."""
    _tell({"add": os.path.abspath(path)})


def untrack(path: str) -> None:
    _tell_if_watched({"drop": os.path.abspath(path)})


def _tell_if_watched(message: dict[str, Any]) -> None:
    """_tell, when this process has a watchdog already (a removal starts none)."""
    with _lock:
        if _watchdogs.get(os.getpid(), -1) >= 0:
            _tell(message)


def track_group(pid: int) -> None:
    """The process group `pid` leads (a run this process started) is killed by the watchdog
    should the process die before it ends the run (and then `untrack_group`s it)."""
    start = _start_time(pid)
    if start is not None:
        _tell({"group": [pid, start]})


def untrack_group(pid: int) -> None:
    _tell_if_watched({"ungroup": pid})


def mkdtemp(prefix: str, dir: str | None = None) -> str:
    """tempfile.mkdtemp, tracked (remove it with `remove_tree`). An exception while it is
    told to the watchdog (a signal during the watchdog's start) removes it again: the caller
    never got the path to remove."""
    path = tempfile.mkdtemp(prefix=prefix, dir=dir)
    try:
        track(path)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return path


def remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    untrack(path)


@contextlib.contextmanager
def temporary_directory(prefix: str, dir: str | None = None) -> Iterator[str]:
    """tempfile.TemporaryDirectory (which removes even read-only trees), tracked."""
    path = ""
    try:
        with tempfile.TemporaryDirectory(prefix=prefix, dir=dir) as path:
            track(path)
            yield path
    finally:
        if path:
            untrack(path)


def _remove_path(path: str) -> None:
    """Remove what is at `path`: a directory tree, else the entry itself (a link is never
    followed). A tree that resists (a root unpacked without root has read-only directories) is
    made writable first, each directory changed without following a link."""
    try:
        st = os.lstat(path)
    except OSError:
        return
    if not stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(OSError):
            os.unlink(path)
        return
    shutil.rmtree(path, ignore_errors=True)
    if not os.path.lexists(path):
        return
    for top, dirs, _files in os.walk(path):  # never follows links
        for d in (top, *(os.path.join(top, d) for d in dirs)):
            with contextlib.suppress(OSError, NotImplementedError):
                os.chmod(d, 0o700, follow_symlinks=False)
    shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str]) -> int:
    """The watchdog: follow what the owner tells on stdin until the pipe closes; without a
    goodbye, kill the process groups still listed, remove the owner's things in the daemon if
    it used it, then the paths still listed."""
    if len(argv) != 1 or parse_owner(argv[0]) is None:
        return 2
    for name in ("SIGINT", "SIGHUP", "SIGTERM", "SIGPIPE"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    paths: dict[str, None] = {}
    groups: dict[int, int] = {}  # leader pid → its start time
    docker_used = False
    with os.fdopen(0, "rb", closefd=False) as stream:
        for raw in stream:
            if raw == BYE:
                return 0
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            if isinstance(message.get("add"), str):
                paths[message["add"]] = None
            elif isinstance(message.get("drop"), str):
                paths.pop(message["drop"], None)
            elif message.get("docker") is True:
                docker_used = True
            elif isinstance(message.get("group"), list) and len(message["group"]) == 2 \
                    and all(isinstance(x, int) for x in message["group"]):
                groups[message["group"][0]] = message["group"][1]
            elif isinstance(message.get("ungroup"), int):
                groups.pop(message["ungroup"], None)
    killed = [pid for pid, start in groups.items()  # the same process still (a PID is reused)
              if pid > 1 and _start_time(pid) == start]
    for pid in killed:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5  # gone before their files are: bwrap's sandbox dies with them
    while any(_running(pid, groups[pid]) for pid in killed) and time.monotonic() < deadline:
        time.sleep(0.05)
    code = 0
    if docker_used:  # first: the containers' apps stop before their mounts' files go
        try:
            import docker

            sweep(docker.from_env(timeout=120), only=argv[0])
        except Exception:  # nobody listens: the next run's sweep is the fallback
            code = 1
    for path in reversed(paths):  # the newest first: one made inside an older one
        _remove_path(path)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
