"""Run a command in a new user namespace whose ids are shifted away from the host's.

    python -m slim.tracers.userns BASE COUNT UID GID -- COMMAND…

The sandbox runner starts bubblewrap through this launcher when slim runs as root, so that
root inside the sandbox is not root on the host. A child process unshares a user namespace
(user_namespaces(7)); the parent — still host root — writes its uid_map and gid_map
(`0 BASE COUNT`: container uid N is host uid BASE+N, as Docker's userns-remap does); the child
then becomes UID/GID inside (supplementary groups cleared) and execs COMMAND. Capabilities the
child holds are capabilities in its namespace only: CAP_DAC_READ_SEARCH there does not allow
open_by_handle_at on the host, and no file of the host is owned by a uid it can become.

The parent waits for the child and exits with its status (128+N for a signal), so whoever
started the launcher sees the command's outcome. A user namespace needs a single-threaded
process: that is why this is a separate program, not code run in slim's own (threaded) process.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

CLONE_NEWUSER = 0x10000000


def main(argv: list[str]) -> int:
    if len(argv) < 6 or argv[4] != "--":
        print("usage: python -m slim.tracers.userns BASE COUNT UID GID -- COMMAND…", file=sys.stderr)
        return 2
    base, count, uid, gid = (int(a) for a in argv[:4])
    command = argv[5:]
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: becomes the namespace's process
        os.close(ready_r)
        os.close(go_w)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWUSER) != 0:
            print(f"slim userns: unshare: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
            os._exit(125)
        os.write(ready_w, b"1")
        if os.read(go_r, 1) != b"1":
            os._exit(125)
        try:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            os.execvp(command[0], command)
        except OSError as exc:
            print(f"slim userns: {command[0]}: {exc.strerror}", file=sys.stderr)
        os._exit(126)
    os.close(ready_w)
    os.close(go_r)
    if os.read(ready_r, 1) != b"1":
        os.waitpid(pid, 0)
        return 125
    try:
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(f"0 {base} {count}\n")
    except OSError as exc:
        print(f"slim userns: cannot map ids: {exc.strerror}", file=sys.stderr)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return 125
    os.write(go_w, b"1")
    os.close(go_w)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # pass stops on to the child
        signal.signal(sig, lambda n, _f: os.kill(pid, n))
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
