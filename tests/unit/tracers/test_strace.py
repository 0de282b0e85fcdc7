"""The strace parser on committed, real (trimmed) strace logs and hand-made edge cases."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from slim.tracers.strace import (
    FOLLOW_POLL,
    StraceFollower,
    decode_string,
    open_log,
    parse_strace,
    split_args,
    strace_argv,
)
from slim.tracers.trace import Trace

DATA = Path(__file__).parent / "data"


def test_command_line_follows_forks_and_prints_whole_paths() -> None:
    argv = strace_argv("/usr/bin/strace", "/tmp/log", ["bwrap", "--", "/app"])
    assert argv[:1] == ["/usr/bin/strace"]
    assert "-f" in argv and argv[argv.index("-s") + 1] == "4096"
    assert argv[argv.index("-o") + 1] == "/tmp/log"
    assert argv[-3:] == ["bwrap", "--", "/app"]
    assert not any(a.startswith("--seccomp-bpf") or a.startswith("-e") for a in argv)


def test_split_args_and_strings() -> None:
    assert split_args('AT_FDCWD, "a,b", O_RDONLY') == ["AT_FDCWD", '"a,b"', "O_RDONLY"]
    assert split_args('{st_mode=S_IFREG, st_size=3}, [1, 2], 0') == [
        "{st_mode=S_IFREG, st_size=3}", "[1, 2]", "0"]
    assert split_args("") == []
    assert decode_string(r'"a\"b\\c\n\303\251"') == 'a"b\\c\né'
    assert decode_string('"/usr/lib"...') is None
    assert decode_string("AT_FDCWD") is None


def test_bwrap_setup_does_not_count() -> None:
    parser = parse_strace((DATA / "bwrap_busybox_sh.strace").read_text(), skip_execs=1)
    trace = parser.trace
    assert parser.app_pid == 10173
    # host-side files bwrap opened before the app started are not in the trace
    assert not any(p.startswith("/lib/x86_64-linux-gnu") for p in trace.paths)
    assert "/etc/ld.so.cache" not in trace.paths and "/tmp/ROOT" not in trace.paths
    assert "pivot_root" not in trace.syscalls
    # cwd /www comes from bwrap's chdir before the fork; `cat index.html` is relative to it
    assert trace.paths["/www/index.html"].opened
    assert trace.paths["/nope"].errors == {"ENOENT"} and not trace.paths["/nope"].found
    assert trace.paths["/tmp/y"].opened  # written by the backgrounded child after `cd /`
    assert trace.executed == ["/bin/sh", "/proc/self/exe"]
    assert trace.execs == {10173: ["/bin/sh"], 10185: ["/proc/self/exe"]}
    assert trace.syscalls["execve"] == 2
    assert trace.syscalls["clone"] == 3  # two via <unfinished ...>/<... resumed>, counted once
    assert parser.exits[10173] == "0"
    assert "/nope" in trace.missing


def test_at_calls_dups_fchdir_threads_and_forks() -> None:
    parser = parse_strace((DATA / "at_dup_threads.strace").read_text(), skip_execs=0)
    trace = parser.trace
    assert parser.app_pid == 29451
    assert trace.paths["/etc"].opened
    assert trace.paths["/etc/hostname"].opened  # openat(3</etc>, "hostname")
    assert trace.paths["/etc/passwd"].stated  # newfstatat on the F_DUPFD copy
    assert trace.paths["/etc/nope.conf"].errors == {"ENOENT"}  # relative after fchdir
    assert trace.paths["/proc/self/cwd"].readlinked
    assert trace.paths["/etc/group"].stated  # the thread shares the cwd (CLONE_FS)
    assert trace.paths["/usr"].stated  # the forked child's chdir
    assert trace.paths["/bin/true"].executed
    assert trace.execs[30773] == ["/bin/true"]
    assert trace.paths["/etc/ld.so.preload"].errors == {"ENOENT"}
    assert parser.unresolved == 0
    assert trace.syscalls["clone3"] == 1 and trace.syscalls["access"] >= 2


def test_hand_made_edge_cases() -> None:
    log = "\n".join([
        '100 execve("/launcher", ["l"], 0x0 /* 1 var */) = 0',
        '100 openat(AT_FDCWD, "/host/only", O_RDONLY) = 3',
        '100 chdir("/app") = 0',
        '100 execve("/bin/app", ["app"], 0x0 /* 1 var */ <unfinished ...>',
        '101 getpid() = 1',  # a pid alive before the app started: never counted
        '100 <... execve resumed>) = 0',
        '100 openat(AT_FDCWD, "../etc/./conf", O_RDONLY) = 4',
        '100 dup3(4, 9, O_CLOEXEC) = 9',
        '100 close(4) = 0',
        '100 openat(9, "x", O_RDONLY) = -1 ENOTDIR (Not a directory)',
        '100 openat(77, "y", O_RDONLY) = -1 ENOENT (No such file or directory)',
        '100 vfork( <unfinished ...>',
        '102 execve("relative/tool", ["tool"], 0x0 /* 1 var */) = 0',
        '100 <... vfork resumed>) = 102',
        '102 statx(AT_FDCWD, "/a b\\"c", AT_STATX_SYNC_AS_STAT, STATX_ALL, 0x1) = 0',
        '102 faccessat2(AT_FDCWD, "data", R_OK, AT_EACCESS) = -1 EACCES (Permission denied)',
        '102 readlinkat(AT_FDCWD, "/lib64", "usr/lib64", 4095) = 9',
        '102 +++ killed by SIGKILL +++',
        '100 exit_group(0) = ?',
        '100 +++ exited with 0 +++',
    ])
    parser = parse_strace(log)
    trace = parser.trace
    assert parser.app_pid == 100
    assert "/host/only" not in trace.paths
    assert trace.paths["/etc/conf"].opened  # "../" from /app
    assert trace.paths["/etc/conf/x"].errors == {"ENOTDIR"}  # through dup3's copy
    assert parser.unresolved == 1  # fd 77 was never opened
    assert trace.paths["/app/relative/tool"].executed  # the vfork child inherited cwd
    assert trace.paths['/a b"c'].stated
    assert trace.paths["/app/data"].errors == {"EACCES"}
    assert trace.paths["/lib64"].readlinked
    assert "getpid" not in trace.syscalls
    assert parser.exits == {102: "SIGKILL", 100: "0"}
    assert trace.syscalls == {"close": 1, "dup3": 1, "execve": 2, "exit_group": 1,
                              "faccessat2": 1, "openat": 3, "readlinkat": 1, "statx": 1,
                              "vfork": 1}


def test_trace_json_round_trip(tmp_path: Path) -> None:
    parser = parse_strace((DATA / "bwrap_busybox_sh.strace").read_text())
    text = parser.trace.dumps()
    doc = json.loads(text)
    assert list(doc["paths"]) == sorted(doc["paths"])
    again = Trace.from_json(doc)
    assert again.dumps() == text
    saved = tmp_path / "t.json"
    saved.write_text(text)
    assert Trace.load(str(saved)).to_json() == parser.trace.to_json()
    merged = Trace()
    merged.merge(again)
    merged.merge(again)
    assert merged.syscalls["execve"] == 2 * again.syscalls["execve"]
    assert merged.used == again.used


def test_what_the_app_does_after_it_starts_is_per_program() -> None:
    """The execve that starts the app belongs to no program; later calls belong to the
    program their process runs, forks (not threads) and execs to the program that made them."""
    log = "\n".join([
        '100 execve("/launcher", ["l"], 0x0 /* 1 var */) = 0',
        '100 execve("/bin/sh", ["sh"], 0x0 /* 1 var */) = 0',
        '100 openat(AT_FDCWD, "/etc/profile", O_RDONLY) = 3',
        '100 clone(child_stack=NULL, flags=CLONE_CHILD_SETTID|SIGCHLD) = 101',
        '101 execve("/bin/cat", ["cat"], 0x0 /* 1 var */) = 0',
        '101 read(0, "", 4096) = 0',
        '100 clone(child_stack=0x7f, flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_THREAD) = 102',
        '102 futex(0x1, FUTEX_WAKE, 1) = 0',
        '100 wait4(-1, NULL, 0, NULL) = 101',
    ])
    trace = parse_strace(log).trace
    assert trace.syscalls["execve"] == 2  # the app's own start is still a syscall it needs
    assert trace.programs == {
        "/bin/sh": {"clone": 2, "execve": 1, "futex": 1, "openat": 1, "wait4": 1},
        "/bin/cat": {"read": 1},
    }
    assert trace.children == {"/bin/sh": 1}  # the thread is not a process
    assert trace.launches == {"/bin/sh": ["/bin/cat"]}
    assert trace.started_syscalls()["execve"] == ["/bin/sh"]
    again = Trace.from_json(json.loads(trace.dumps()))
    assert again.to_json() == trace.to_json()


def test_a_single_program_has_no_exec_after_it_starts() -> None:
    log = "\n".join([
        '7 execve("/launcher", ["l"], 0x0 /* 1 var */) = 0',
        '7 execve("/app/hello", ["hello"], 0x0 /* 1 var */) = 0',
        '7 write(1, "hi\\n", 3) = 3',
        '7 exit_group(0) = ?',
    ])
    trace = parse_strace(log).trace
    assert "execve" in trace.syscalls
    assert trace.started_syscalls() == {"exit_group": ["/app/hello"], "write": ["/app/hello"]}
    old = Trace(syscalls={"execve": 1, "write": 1})  # saved before per-program counts
    assert old.started_syscalls() == {"write": []}


def _same(a: Trace, b: Trace) -> None:
    assert a.dumps() == b.dumps()


def test_a_followed_log_parses_as_the_whole_log(tmp_path: Path) -> None:
    """The follower reads the log while strace writes it, in pieces cut anywhere (inside a
    line, inside a UTF-8 character); what it parses is what the whole log parses to."""
    whole = (DATA / "bwrap_busybox_sh.strace").read_bytes()
    whole = whole[:whole.index(b"10173 exit_group")]  # the app (10173, /bin/sh) before it ends
    whole += '10173 openat(AT_FDCWD, "/srv/café", O_RDONLY) = 3\n'.encode()
    log = tmp_path / "run.strace"
    follower = StraceFollower(str(log), skip_execs=1, app_cwd="/")
    time.sleep(2 * FOLLOW_POLL)  # the log appears after the follower started
    with open(log, "wb", buffering=0) as f:
        for i in range(0, len(whole), 97):
            f.write(whole[i:i + 97])
            if i % (97 * 20) == 0:
                time.sleep(FOLLOW_POLL / 5)
        f.write(b'10173 openat(AT_FDCWD, "/last", O_RDONLY) = 4')  # no newline: a killed strace
    follower.ended()
    got = follower.finish()
    expected = parse_strace((whole + b'10173 openat(AT_FDCWD, "/last", O_RDONLY) = 4').decode(),
                            skip_execs=1, app_cwd="/")
    _same(got.trace, expected.trace)
    assert {"/srv/café", "/last"} <= set(got.trace.paths)


def test_a_log_that_never_came_is_an_error(tmp_path: Path) -> None:
    follower = StraceFollower(str(tmp_path / "none.strace"))
    follower.ended()
    with pytest.raises(FileNotFoundError):
        follower.finish()


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_a_planted_log_is_refused_never_followed_or_waited_on(tmp_path: Path, kind: str) -> None:
    """The docker runner's log directory is shared with the container: the app could put a
    symlink to a host file or a FIFO (which would block the reader forever) in its place."""
    secret = tmp_path / "host-secret"
    secret.write_text("1 openat(AT_FDCWD, \"/etc/secret\", O_RDONLY) = 3\n")
    log = tmp_path / "run.strace"
    if kind == "symlink":
        os.symlink(secret, log)
    else:
        os.mkfifo(log)
    with pytest.raises(OSError):
        os.close(open_log(str(log)))
    follower = StraceFollower(str(log))
    follower.ended()
    with pytest.raises(OSError):
        follower.finish()


def test_a_line_longer_than_a_read_is_parsed_whole(tmp_path: Path) -> None:
    """An app can make strace print a line of many megabytes (execve of a long argv): it is
    one line, joined once, and the lines after it still count."""
    whole = (DATA / "bwrap_busybox_sh.strace").read_text()
    whole = whole[:whole.index("10173 exit_group")]
    huge = "10173 write(1, \"" + "x" * (3 << 20) + "\", 3145728) = 3145728\n"
    text = whole + huge + '10173 openat(AT_FDCWD, "/after", O_RDONLY) = 5\n'
    log = tmp_path / "run.strace"
    log.write_text(text)
    follower = StraceFollower(str(log), skip_execs=1, app_cwd="/")
    follower.ended()
    got = follower.finish()
    _same(got.trace, parse_strace(text, skip_execs=1, app_cwd="/").trace)
    assert "/after" in got.trace.paths and got.trace.syscalls["write"]
