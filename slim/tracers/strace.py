"""strace: the command line we trace with, and a parser of its output into a Trace.

Command line (see `strace_argv`), chosen so the log is complete and parseable:

* `-f` follows fork/vfork/clone, so every process of the app is traced;
* `-q` drops "attached/detached" chatter but keeps `+++ exited with N +++` (we need exits);
* `-s 4096` prints whole paths (PATH_MAX) instead of 32-byte prefixes;
* `--pidns-translation` makes clone/fork results name the child by the pid strace prints on the
  child's lines (`= 2 /* 10173 in strace's PID NS */`), which is what links a child to its parent
  when the app runs in a new pid namespace (bubblewrap `--unshare-pid`);
* no `-y`: fd decorations are resolved by strace from *outside* the sandbox, so they show host
  paths; we track descriptors ourselves instead;
* no `-e trace=…` filter and no `--seccomp-bpf`: we want every syscall's name and count, and
  seccomp-bpf only helps when a subset is traced.

The parser follows strace's output format (strace(1), "-f" and "unfinished/resumed" sections):
a line is `PID NAME(ARGS) = RET [ERRNO (text)]`; a call interrupted by another process's output
is split into `PID NAME(ARGS <unfinished ...>` and `PID <... NAME resumed>ARGS) = RET`.

Only events after the app's first execve count: the first `skip_execs` successful execve calls
are the launcher's own (bwrap), and the pids alive before the app started (bwrap's monitor and
its pid-1 init) never count. Relative and `*at(dirfd, …)` paths are resolved against each
process's cwd and descriptor table, which are copied on fork and shared with CLONE_FS /
CLONE_FILES (clone(2)).
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import os
import posixpath
import re
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from slim.tracers.trace import Trace

log = logging.getLogger(__name__)

STRACE_OPTIONS = ("-f", "-q", "-s", "4096", "--pidns-translation")


def strace_argv(strace: str, log_file: str, argv: list[str]) -> list[str]:
    """The command that runs `argv` under strace, writing the log to `log_file`."""
    return [strace, *STRACE_OPTIONS, "-o", log_file, "--", *argv]


_LINE = re.compile(r"^(?:\[pid\s+)?(?P<pid>\d+)\]?\s+(?P<body>.*)$")
_CALL = re.compile(
    r"^(?P<name>\w+)\((?P<args>.*)\)\s+=\s+(?P<ret>-?\d+|\?|0x[0-9a-fA-F]+)"
    r"(?:\s+/\*\s*(?P<host>\d+) in strace's PID NS\s*\*/)?"
    r"(?:\s+(?P<err>E[A-Z0-9_]+|ERESTART\w*))?"
)
_UNFINISHED = re.compile(r"^(?P<head>.*?) ?<unfinished \.\.\.>$")
_RESUMED = re.compile(r"^<\.\.\. (?P<name>\w+) resumed>(?P<tail>.*)$")
_EXITED = re.compile(r"^\+\+\+ (?:exited with (?P<code>\d+)|killed by (?P<sig>\w+))")
_FLAGS = re.compile(r"flags=(?P<flags>[A-Z0-9_|]+)")
_ESCAPE = re.compile(rb'\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)')
_SIMPLE_ESCAPES = {b"n": b"\n", b"t": b"\t", b"r": b"\r", b"v": b"\v", b"f": b"\f",
                   b"a": b"\a", b"b": b"\b", b"e": b"\x1b"}

# syscall → (index of the dirfd argument or None, index of the path argument)
_OPEN = {"open": (None, 0), "creat": (None, 0), "openat": (0, 1), "openat2": (0, 1)}
_STAT = {
    "stat": (None, 0), "lstat": (None, 0), "stat64": (None, 0), "lstat64": (None, 0),
    "newfstatat": (0, 1), "fstatat64": (0, 1), "statx": (0, 1),
    "access": (None, 0), "faccessat": (0, 1), "faccessat2": (0, 1),
}
_READLINK = {"readlink": (None, 0), "readlinkat": (0, 1)}
_EXEC = {"execve": (None, 0), "execveat": (0, 1)}
_FORKS = {"clone", "clone3", "fork", "vfork"}


def split_args(text: str) -> list[str]:
    """Split strace's argument text at top-level commas (quotes, [], {} and () nest)."""
    out: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    while i < len(text):
        c = text[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c in "[{(":
            depth += 1
        elif c in "]})":
            depth -= 1
        elif c == "," and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
        i += 1
    tail = text[start:].strip()
    if tail or out:
        out.append(tail)
    return out


def decode_string(arg: str) -> str | None:
    """The C string strace printed as `"…"` (escapes undone); None if `arg` is not a string.

    A string strace truncated (`"…"...`) is returned as None: a partial path is no path.
    """
    if len(arg) < 2 or not arg.startswith('"') or not arg.endswith('"'):
        return None
    raw = arg[1:-1].encode("utf-8", "surrogateescape")

    def unescape(m: re.Match[bytes]) -> bytes:
        code = m.group(1)
        if code[:1] == b"x":
            return bytes([int(code[1:], 16)])
        if code[:1].isdigit():
            return bytes([int(code, 8) & 0xFF])
        return _SIMPLE_ESCAPES.get(code, code)

    return _ESCAPE.sub(unescape, raw).decode("utf-8", "surrogateescape")


@dataclass
class _Fs:
    cwd: str | None = "/"


@dataclass
class _Proc:
    fds: dict[int, str | None]
    fs: _Fs
    pending: str | None = None  # text of an <unfinished ...> call
    program: str | None = None  # the image path it runs, once the app has started


@dataclass
class StraceParser:
    """Feed strace lines; read `trace`, `app_pid` and `exits` when done."""

    skip_execs: int = 1
    app_cwd: str | None = None
    trace: Trace = field(default_factory=Trace)
    app_pid: int | None = None
    exits: dict[int, str] = field(default_factory=dict)  # pid → "0" / "SIGKILL"
    unresolved: int = 0  # *at() calls whose dirfd we could not map to a path
    _procs: dict[int, _Proc] = field(default_factory=dict)
    _app: set[int] = field(default_factory=set)
    _execs_seen: int = 0
    _forking: list[int] = field(default_factory=list)  # pids inside an unfinished clone

    @property
    def started(self) -> bool:
        return self.app_pid is not None

    def feed(self, lines: Iterable[str]) -> StraceParser:
        for line in lines:
            self.feed_line(line.rstrip("\n"))
        return self

    def feed_line(self, line: str) -> None:
        m = _LINE.match(line)
        if m is None:
            if line.strip():
                log.debug("strace: unparsed line %r", line[:200])
            return
        pid = int(m.group("pid"))
        body = m.group("body")
        proc = self._proc(pid)
        ex = _EXITED.match(body)
        if ex:
            self.exits[pid] = ex.group("code") if ex.group("code") is not None else ex.group("sig")
            self._forking = [p for p in self._forking if p != pid]
            return
        if body.startswith("---") or body.startswith("+++"):
            return  # signal delivery or "superseded by execve"
        un = _UNFINISHED.match(body)
        if un:
            proc.pending = un.group("head")
            name = proc.pending.split("(", 1)[0]
            if self._counts(pid):
                self.trace.count(name, proc.program)
            if name in _FORKS:
                self._forking.append(pid)
            return
        re_m = _RESUMED.match(body)
        if re_m:
            head = proc.pending
            proc.pending = None
            if head is None or head.split("(", 1)[0] != re_m.group("name"):
                log.debug("strace: resumed without its start: %r", line[:200])
                return
            if re_m.group("name") in _FORKS:
                self._forking = [p for p in self._forking if p != pid]
            self._call(pid, head + re_m.group("tail"), counted=True)
            return
        self._call(pid, body, counted=False)

    # --- process bookkeeping ----------------------------------------------------------------
    def _counts(self, pid: int) -> bool:
        return self.started and pid in self._app

    def _proc(self, pid: int) -> _Proc:
        proc = self._procs.get(pid)
        if proc is None:
            parent = self._procs.get(self._forking[-1]) if self._forking else None
            if parent is None:
                proc = _Proc(fds={}, fs=_Fs())
            else:
                # a child seen before its parent's clone returned: a fork copies the parent's
                # descriptor table and cwd (clone(2)); shared tables are refined on return
                proc = _Proc(fds=dict(parent.fds), fs=_Fs(parent.fs.cwd), program=parent.program)
                if self._forking[-1] in self._app:
                    self._app.add(pid)
            self._procs[pid] = proc
        return proc

    def _fork(self, parent_pid: int, child: int, flags: str) -> None:
        parent = self._procs[parent_pid]
        known = self._procs.get(child)
        fds = parent.fds if "CLONE_FILES" in flags else dict(parent.fds)
        fs = parent.fs if "CLONE_FS" in flags else _Fs(parent.fs.cwd)
        if known is None:
            self._procs[child] = _Proc(fds=fds, fs=fs, program=parent.program)
        else:
            known.fds, known.fs = fds, fs  # the child printed first; now we know the flags
            known.program = known.program or parent.program
        if parent_pid in self._app and self.started:
            self._app.add(child)
            if "CLONE_THREAD" not in flags and parent.program is not None:
                self.trace.children[parent.program] = self.trace.children.get(parent.program, 0) + 1

    def _resolve(self, proc: _Proc, dirfd: str | None, path: str) -> str | None:
        if path.startswith("/"):
            base: str | None = "/"
        elif dirfd is None or dirfd == "AT_FDCWD":
            base = proc.fs.cwd
        else:
            try:
                base = proc.fds.get(int(dirfd))
            except ValueError:
                base = None
        if base is None:
            self.unresolved += 1
            return None
        joined = posixpath.normpath(posixpath.join(base, path))
        if joined.startswith("//"):
            joined = "/" + joined.lstrip("/")
        # `..` at the root stays at the root (path_resolution(7)); normpath already does that
        return joined

    # --- one complete call ------------------------------------------------------------------
    def _call(self, pid: int, body: str, *, counted: bool) -> None:
        m = _CALL.match(body)
        if m is None:
            name = body.split("(", 1)[0]
            if re.fullmatch(r"\w+", name) and self._counts(pid) and not counted:
                self.trace.count(name, self._procs[pid].program)  # e.g. cut by the log's end
            return
        name = m.group("name")
        ret_text = m.group("ret")
        ok = ret_text != "?" and not ret_text.startswith("-")
        ret = _int(m.group("host") or ret_text) if ok else None
        err = m.group("err") or ("" if ok else "EUNKNOWN")
        args = split_args(m.group("args"))
        proc = self._procs[pid]

        if name in _EXEC and ok and ret_text == "0":
            self._execs_seen += 1
            if not self.started and self._execs_seen > self.skip_execs:
                self.app_pid = pid
                self._app = {pid}
                counted = False  # its <unfinished ...> half came before the app started
                if self.app_cwd:
                    proc.fs.cwd = self.app_cwd
        if self._counts(pid) and not counted:
            self.trace.count(name, proc.program)

        if name in _FORKS:
            if ok and ret:
                flags_m = _FLAGS.search(m.group("args"))
                self._fork(pid, ret, flags_m.group("flags") if flags_m else "")
            return
        if name in ("chdir", "fchdir"):
            if ok:
                if name == "chdir" and args:
                    text = decode_string(args[0])
                    proc.fs.cwd = self._resolve(proc, None, text) if text is not None else None
                elif args:
                    proc.fs.cwd = _fd_path(proc, args[0])
            if name == "chdir" and args and self._counts(pid):
                self._record(pid, proc, None, args[0], "stat", ok, err)
            return
        if name in ("dup", "dup2", "dup3") or (name == "fcntl" and len(args) > 1
                                                and args[1].startswith("F_DUPFD")):
            if ok and ret is not None and args:
                proc.fds[ret] = _fd_path(proc, args[0])
            return
        if name == "close":
            if args:
                with contextlib.suppress(ValueError):
                    proc.fds.pop(int(args[0]), None)
            return
        if name == "close_range" and len(args) >= 2 and ok:
            try:
                first, last = int(args[0]), _int(args[1])
            except ValueError:
                return
            if last is None:
                return
            for fd in [f for f in proc.fds if first <= f <= last]:
                del proc.fds[fd]
            return
        for table, kind in ((_OPEN, "open"), (_STAT, "stat"), (_READLINK, "readlink"),
                            (_EXEC, "exec")):
            spec = table.get(name)
            if spec is None:
                continue
            dir_i, path_i = spec
            if len(args) <= path_i:
                return
            dirfd = args[dir_i] if dir_i is not None else None
            path = self._record(pid, proc, dirfd, args[path_i], kind, ok, err)
            if kind == "open" and ok and ret is not None:
                proc.fds[ret] = path
            if kind == "exec" and ok and self._counts(pid) and path is not None:
                self._executed(pid, proc, path)
                # close-on-exec descriptors vanish; we cannot see the flag, so keep the table
            return
        if ok and ret is not None and name in ("socket", "pipe", "pipe2", "eventfd2",
                                               "epoll_create1", "memfd_create"):
            proc.fds[ret] = None  # a descriptor that names no path

    def _executed(self, pid: int, proc: _Proc, path: str) -> None:
        """`pid` now runs `path`: a launch by the program it ran before (none for the execve
        that started the app)."""
        self.trace.execs.setdefault(pid, []).append(path)
        if proc.program is not None:
            launched = self.trace.launches.setdefault(proc.program, [])
            if path not in launched:
                launched.append(path)
        proc.program = path

    def _record(self, pid: int, proc: _Proc, dirfd: str | None, arg: str, kind: str,
                ok: bool, err: str) -> str | None:
        text = decode_string(arg)
        if text is None:
            return None
        if text == "":
            return None  # AT_EMPTY_PATH on a descriptor: no new path
        path = self._resolve(proc, dirfd, text)
        if path is None or not self._counts(pid):
            return path
        access = self.trace.access(path)
        if not ok:
            access.errors.add(err)
        elif kind == "open":
            access.opened = True
        elif kind == "exec":
            access.executed = True
        elif kind == "stat":
            access.stated = True
        else:
            access.readlinked = True
        return path


def _int(text: str) -> int | None:
    """strace prints results in decimal, hex (0x…) or octal (umask: 022)."""
    try:
        if text.startswith("0x"):
            return int(text, 16)
        if len(text) > 1 and text.startswith("0"):
            return int(text, 8)
        return int(text)
    except ValueError:
        return None


def _fd_path(proc: _Proc, arg: str) -> str | None:
    try:
        return proc.fds.get(int(arg))
    except ValueError:
        return None


def parse_strace(
    lines: Iterable[str] | str, *, skip_execs: int = 1, app_cwd: str | None = None
) -> StraceParser:
    """Parse a whole strace log (text or lines). See the module docstring for the rules."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    return StraceParser(skip_execs=skip_execs, app_cwd=app_cwd).feed(lines)


FOLLOW_POLL = 0.05  # seconds between reads of a log that has no new bytes yet


def open_log(path: str) -> int:
    """A descriptor of the strace log at `path`, which must be a regular file: never followed
    through a symlink, never a FIFO (an app whose container shares the log's directory could
    plant either, to read a host file or to hang slim). Raises OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path}: not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


class StraceFollower:
    """Parses a strace log in a thread while strace writes it, so that little is left to parse
    when the run ends (`finish`). The log may appear after the follower starts; `ended` (or
    `finish`) must be called once strace is gone, or the thread keeps waiting for more."""

    def __init__(self, path: str, *, skip_execs: int = 1, app_cwd: str | None = None) -> None:
        self.path = path
        self.parser = StraceParser(skip_execs=skip_execs, app_cwd=app_cwd)
        self._ended = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="slim-strace-log", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            with contextlib.closing(os.fdopen(self._opened(), "rb", buffering=0)) as f:
                self._follow(f)
        except BaseException as exc:  # re-raised by `finish`
            self._error = exc

    def _opened(self) -> int:
        while True:
            ended = self._ended.is_set()  # read before trying: the log may come just before
            try:
                return open_log(self.path)
            except FileNotFoundError:
                if ended:
                    raise
            self._ended.wait(FOLLOW_POLL)

    def _follow(self, f: BinaryIO) -> None:
        # line by line, as a text file opened with errors="surrogateescape" reads it; a line
        # longer than a read is joined once, when its end comes (an app can make a huge one)
        decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        pending: list[str] = []  # the start of a line whose end is still to come
        while True:
            ended = self._ended.is_set()  # read before reading: what strace wrote is there
            chunk = f.read(1 << 20)
            if not chunk:
                if ended:
                    break
                self._ended.wait(FOLLOW_POLL)
                continue
            text = decoder.decode(chunk).replace("\r\n", "\n").replace("\r", "\n")
            if "\n" not in text:
                pending.append(text)
                continue
            first, *lines, last = text.split("\n")
            self.parser.feed_line("".join(pending) + first)
            for line in lines:
                self.parser.feed_line(line)
            pending = [last]
        rest = "".join(pending) + decoder.decode(b"", final=True)
        if rest:
            self.parser.feed_line(rest)

    def finish(self) -> StraceParser:
        """Once strace has exited: parse what is left; the parser. Raises OSError when there
        is no log (or it is not a regular file)."""
        self._ended.set()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.parser

    def ended(self) -> None:
        """strace has exited (or was stopped): the thread reads the log to its end, then ends."""
        self._ended.set()
