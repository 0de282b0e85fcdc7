"""Running the real CLI on a hostile input, and what every case asserts.

Each case gets a private sandbox: `tmp/` (TMPDIR), `cache/` (SLIM_CACHE_DIR), `home/`, `in/`
(the hostile inputs), `out/` (where outputs may go) and `outside/` (a victim directory
hostile images aim at). `python -m slim …` runs with the sandbox as its working directory.
After the run:

* the exit code is the expected one;
* stderr has no traceback, and an error is exactly one line `slim: error: OBJECT: …`
  matching the expected pattern;
* nothing in the sandbox changed except below the chosen output paths (and the cache);
* TMPDIR is empty.

The child's peak RSS (wait4's rusage), its wall time and, when asked, the sandbox's disk
high-water mark (allocated blocks, sampled) are returned for the measurements.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# SLIM_HOSTILE_REPO runs another checkout's slim on the same cases (before/after figures)
REPO = Path(os.environ.get("SLIM_HOSTILE_REPO") or Path(__file__).resolve().parents[2])
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\w+(Error|Exception): ", re.M)


@dataclass
class Run:
    """What one CLI run did."""

    args: list[str]
    rc: int
    stdout: str
    stderr: str
    seconds: float
    maxrss_kb: int
    disk_kb: int = 0  # allocated-blocks high-water of the sandbox, when sampled


@dataclass
class Sandbox:
    root: Path
    tmp: Path = field(init=False)
    cache: Path = field(init=False)
    inputs: Path = field(init=False)
    out: Path = field(init=False)
    outside: Path = field(init=False)

    def __post_init__(self) -> None:
        for name in ("tmp", "cache", "home", "in", "out", "outside"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self.tmp, self.cache = self.root / "tmp", self.root / "cache"
        self.inputs, self.out, self.outside = self.root / "in", self.root / "out", self.root / "outside"
        (self.outside / "victim").write_text("original\n")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLIM_", "XDG_"))}
        env.update(TMPDIR=str(self.tmp), SLIM_CACHE_DIR=str(self.cache), HOME=str(self.root / "home"),
                   PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1", COLUMNS="200")
        return env


def snapshot(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, tuple]:
    """Every path below `root` (not below `skip`) with its type, mode, size, mtime, link."""
    out: dict[str, tuple] = {}
    skipped = {str(p) for p in skip}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skipped]
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if path in skipped:
                continue
            st = os.lstat(path)
            link = os.readlink(path) if os.path.islink(path) else ""
            # a directory's size and mtime change when an entry is added: the entry shows
            out[os.path.relpath(path, root)] = (
                (st.st_mode, 0, 0, "") if stat.S_ISDIR(st.st_mode) else
                (st.st_mode, st.st_size, st.st_mtime_ns, link))
    return out


def _allocated_kb(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root, followlinks=False):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks // 2
            except OSError:
                continue
    return total


_WITH_DEFAULT_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                        "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")


def run_slim(box: Sandbox, *args: str, timeout: float = 120, measure_disk: bool = False,
             signal_after: Callable[[Sandbox, float], bool] | None = None,
             send: int = signal.SIGTERM) -> Run:
    """Run `python -m slim ARGS` in the sandbox. `signal_after(box, elapsed)` is polled every
    50 ms; when it returns True, `send` is delivered once."""
    cmd = [sys.executable, "-m", "slim", *args]
    started = time.monotonic()
    # A shell without job control starts background commands with SIGINT ignored, and an
    # ignored signal stays ignored across exec (POSIX): slim gets the disposition a user's
    # terminal gives it, whatever ran this test (reset, then exec: no preexec_fn in a
    # threaded test process).
    cmd = [sys.executable, "-c", _WITH_DEFAULT_SIGINT, *cmd[1:]]
    proc = subprocess.Popen(cmd, cwd=box.root, env=box.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace")
    disk = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            disk[0] = max(disk[0], _allocated_kb(box.root))

    sampler = threading.Thread(target=sample, daemon=True) if measure_disk else None
    if sampler is not None:
        sampler.start()
    out_parts: list[str] = []
    err_parts: list[str] = []
    readers = [threading.Thread(target=lambda s=s, p=p: p.append(s.read()), daemon=True)
               for s, p in ((proc.stdout, out_parts), (proc.stderr, err_parts))]
    for r in readers:
        r.start()
    sent = False
    rusage = None
    status = 0
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            proc.kill()
            os.wait4(proc.pid, 0)
            raise AssertionError(f"slim {' '.join(args)}: still running after {timeout} s")
        if signal_after is not None and not sent and signal_after(box, elapsed):
            proc.send_signal(send)
            sent = True
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    for r in readers:
        r.join()
    if sampler is not None:
        sampler.join()
        disk[0] = max(disk[0], _allocated_kb(box.root))
    return Run(list(args), proc.returncode, "".join(out_parts), "".join(err_parts),
               time.monotonic() - started, rusage.ru_maxrss if rusage else 0, disk[0])


def check(box: Sandbox, run: Run, *, rc: int, error: str | None = None,
          outputs: tuple[Path, ...] = (), before: dict[str, tuple] | None = None) -> None:
    """The assertions every case makes (see the module doc). `error`: a regex the one error
    line must match (after `slim: error: `); None when the run must print no error."""
    where = f"slim {' '.join(run.args)}\n--- stderr ---\n{run.stderr[-3000:]}"
    assert not TRACEBACK.search(run.stderr), f"traceback from {where}"
    assert run.rc == rc, f"exit {run.rc}, expected {rc}: {where}"
    errors = [line for line in run.stderr.splitlines() if line.startswith("slim: error:")]
    if error is None:
        assert not errors, f"unexpected error from {where}"
    else:
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert len(errors) == 1 and lines[-1] == errors[0], f"not one error line: {where}"
        assert re.search(error, errors[0][len("slim: error: "):]), f"error does not match {error!r}: {where}"
    left = sorted(os.listdir(box.tmp))
    assert not left, f"left in TMPDIR: {left}: {where}"
    if before is not None:
        after = snapshot(box.root, (box.tmp, box.cache, *outputs))
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        assert not changed, f"written outside the output: {changed[:10]}: {where}"


def baseline(box: Sandbox, outputs: tuple[Path, ...] = ()) -> dict[str, tuple]:
    """The sandbox as it is before a run (what `check(before=…)` compares with)."""
    return snapshot(box.root, (box.tmp, box.cache, *outputs))
