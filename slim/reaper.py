"""What a slim process leaves in the Docker daemon goes away even when the process is killed.

A traced run's container runs the image's app; killed with `kill -9` (a CI job's timeout, the
out-of-memory killer) slim could not remove it, and the app ran on, with the imported copy of
the root and the loaded image (its `slim-lease:` tag) beside it. So every container slim
creates carries the label `org.slim.owner`, and every image name it makes (`slim-trace:` and
`slim-lease:` tags) begins with the same owner: the process that made it, as
BOOT.PIDNS.PID.START (the kernel's boot id, the PID namespace's inode, the PID, and the
process's start time in clock ticks, so a reused PID is another owner). Two things remove what
a dead owner left:

* a watchdog: the first time a process creates anything in the daemon, it starts
  `python -m slim.reaper OWNER` in a session of its own (a terminal's Ctrl-C or hang-up does
  not reach it), reading a pipe only that process writes to. At a normal exit the process
  writes `bye` (everything it made it has removed itself) and the watchdog ends; when the pipe
  closes without it, the watchdog removes the owner's containers (force: the app stops) and
  image names, and ends.
* a sweep: when a process first creates anything in the daemon, it also removes what dead
  owners of its own host and PID namespace left (their watchdog was killed with them, e.g.
  a whole process group or cgroup killed).

An owner of another host or PID namespace is never judged: its PIDs mean nothing here. Images
are removed by name and without force: one that another name (a user's tag, a live run's
lease) still holds stays.
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
import threading
from typing import Any

log = logging.getLogger(__name__)

OWNER_LABEL = "org.slim.owner"
REPOSITORIES = ("slim-trace", "slim-lease")  # the image names slim makes, tagged OWNER-RANDOM
BYE = b"bye"

_lock = threading.Lock()
_guarded: dict[int, bool] = {}  # pid → the watchdog of that process is started (fork-safe)
_bye_fd: list[int] = []


def _boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
        return f.read().strip().replace("-", "")[:12]


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (after the command name, which may hold spaces and parens)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rpartition(b")")[2].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


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


def _say_bye() -> None:
    while _bye_fd:
        fd = _bye_fd.pop()
        try:
            os.write(fd, BYE)
            os.close(fd)
        except OSError:
            pass


def guard(client: Any) -> None:
    """Before this process first creates anything in the daemon: sweep what dead owners left
    and start this process's watchdog (once per process)."""
    pid = os.getpid()
    with _lock:
        if _guarded.get(pid):
            return
        _guarded[pid] = True
        me = owner()
        if not me:
            return
        sweep(client)
        read_fd, write_fd = os.pipe()
        try:
            subprocess.Popen([sys.executable, "-m", "slim.reaper", me], stdin=read_fd,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True, close_fds=True)
        except OSError as exc:
            log.warning("no watchdog for this run's Docker containers: %s", exc)
            os.close(write_fd)
            return
        finally:
            os.close(read_fd)
        _bye_fd.append(write_fd)
        atexit.register(_say_bye)


def main(argv: list[str]) -> int:
    """The watchdog: wait for the owner's pipe to close; without a goodbye, sweep its things."""
    import signal

    if len(argv) != 1 or parse_owner(argv[0]) is None:
        return 2
    for name in ("SIGINT", "SIGHUP", "SIGTERM", "SIGPIPE"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    said = b""
    while True:
        try:
            chunk = os.read(0, 64)
        except InterruptedError:
            continue
        except OSError:
            break
        if not chunk:
            break
        said += chunk
    if BYE in said:
        return 0
    try:
        import docker

        sweep(docker.from_env(timeout=120), only=argv[0])
    except Exception:  # nobody listens: the next run's sweep is the fallback
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
