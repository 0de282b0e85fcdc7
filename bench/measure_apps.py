"""Measure slim on the application images against a hidden judge (issues 14, 15 item 7, 16).

    python -m bench.measure_apps [--images a,b] [--slim DIR] [--lock FILE] [--output FILE]

Each application image (bench/images.py APP_IMAGES) has a shallow probe (`probe`: what a user
would give slim, one `GET /` or a TCP connect) and a deep probe (`deep_probe`: routes nothing at
start-up touches). Per image:

1. build it (cached, bench/build.py) and check that the ORIGINAL passes the shallow and every deep
   check (Docker, `--network host`);
2. the floor: `slim analyze IMAGE --trace --probe SHALLOW --probe DEEP… --save-trace F`, then the
   bytes of the image's distinct regular files that the traced run opened, executed, mapped or
   stat'ed (trace paths resolved through the image's own symlinks; sizes from the squashed layers
   of the docker-archive, read here with tarfile);
3. `slim build IMAGE --probe SHALLOW --keep-unverified --output docker-archive:OUT`: minimal
   bytes, wall time, whether slim said it verified; then the DEEP checks against OUT in Docker;
4. `slim build IMAGE --mode static --no-verify --output docker-archive:OUT` and its deep checks;
5. with `--informed`: `slim build IMAGE --probe SHALLOW --probe DEEP…`, i.e. slim is shown the deep
   paths too, and its deep checks.

slim is only ever run as a command (`PYTHON -m slim`, PYTHONPATH = the checkout to measure:
`--slim DIR` or $SLIM_BENCH_SLIM, default the checkout this bench lives in), so the measurement
survives refactors of slim's Python API. All sizes are regular-file bytes of the squashed image,
counted the same way for the original, the floor and the outputs. The table goes to
bench/results/apps.md (or --output); a JSON copy with the details goes next to it.

`--lock FILE` (or $SLIM_BENCH_LOCK) takes an exclusive flock(2) on FILE around each heavy step
(image build, traced run, slim build, Docker runs), so another user of the machine can interleave.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import platform
import posixpath
import socket
import struct
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.build import BuildError, build_image, cache_dir
from bench.images import APP_IMAGES, IMAGES, DeepCheck, ImageSpec
from bench.measure import _unescape, have_docker, last_line, loaded
from bench.mirror import MirrorError

log = logging.getLogger("bench.apps")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUTPUT = os.path.join(REPO, "bench", "results", "apps.md")
NA = "n/a"


# -- the squashed file index of a docker-archive ------------------------------------------------


@dataclass(frozen=True)
class Node:
    kind: str  # f (regular file), h (hardlink to `target`), d, l (symlink to `target`), o (other)
    size: int = 0
    target: str = ""


def _norm(name: str) -> str:
    """A tar member name as an absolute image path (`./etc/x`, `etc/x` and `/etc/x` alike)."""
    return posixpath.normpath("/" + name.lstrip("/"))


def squash(archive: str) -> dict[str, Node]:
    """path → Node of the image's merged filesystem (OCI whiteouts applied; a hardlink is an `h`
    node naming the path of its regular file)."""
    nodes: dict[str, Node] = {}
    layer_of: dict[str, int] = {}
    with tarfile.open(archive) as outer:
        f = outer.extractfile("manifest.json")
        assert f is not None
        manifest = json.load(f)
        for index, layer in enumerate(manifest[0]["Layers"]):
            blob = outer.extractfile(layer)
            assert blob is not None
            with tarfile.open(fileobj=blob, mode="r|*") as tf:
                for m in tf:
                    path = _norm(m.name)
                    parent, base = posixpath.split(path)
                    if base == ".wh..wh..opq":
                        prefix = parent.rstrip("/") + "/"
                        for p in [p for p in nodes if p.startswith(prefix) and layer_of[p] < index]:
                            del nodes[p]
                        continue
                    if base.startswith(".wh."):
                        gone = posixpath.join(parent, base[4:])
                        for p in [p for p in nodes if p == gone or p.startswith(gone + "/")]:
                            del nodes[p]
                        continue
                    if m.isreg():
                        node = Node("f", m.size)
                    elif m.islnk():
                        target = _norm(m.linkname)
                        first = nodes.get(target)
                        # one inode counts once (as slim counts it); the link knows its first path
                        node = Node("h", first.size, target) if first and first.kind == "f" else Node("f", m.size)
                    elif m.issym():
                        node = Node("l", target=m.linkname)
                    elif m.isdir():
                        node = Node("d")
                    else:
                        node = Node("o")
                    if not m.isdir() and path in nodes and nodes[path].kind == "d":
                        prefix = path + "/"
                        for p in [p for p in nodes if p.startswith(prefix)]:
                            del nodes[p]
                    nodes[path] = node
                    layer_of[path] = index
    return nodes


def file_bytes(nodes: dict[str, Node]) -> int:
    return sum(n.size for n in nodes.values() if n.kind == "f")


def resolve(nodes: dict[str, Node], path: str, hops: int = 40) -> str | None:
    """`path` with every symlink (in any component) followed inside the image; None if absent."""
    parts = [p for p in path.split("/") if p and p != "."]
    done = "/"
    while parts:
        part = parts.pop(0)
        if part == "..":
            done = posixpath.dirname(done) or "/"
            continue
        cur = posixpath.join(done, part)
        node = nodes.get(cur)
        if node is None:
            if parts:  # a layer may omit a parent directory's own entry
                done = cur
                continue
            return None
        if node.kind == "l":
            hops -= 1
            if hops < 0:
                return None
            target = node.target
            base = "/" if target.startswith("/") else done
            parts = [p for p in target.split("/") if p and p != "."] + parts
            done = base
            continue
        done = cur
    return done


def touched(nodes: dict[str, Node], trace: Mapping[str, Any]) -> dict[str, int]:
    """path → size of the distinct regular files a saved slim trace found (opened, executed,
    stat'ed or readlink'ed: the trace format's `found`), resolved through the image's symlinks."""
    paths = trace.get("paths", {})
    assert isinstance(paths, dict)
    seen: dict[str, int] = {}
    for path, acc in paths.items():
        if not any(acc.get(k) for k in ("opened", "executed", "stated", "readlinked")):
            continue
        real = resolve(nodes, path)
        if real is None or real in seen:
            continue
        node = nodes.get(real)
        if node is not None and node.kind == "h":
            real, node = node.target, nodes.get(node.target) or Node("f", node.size)
            if real in seen:
                continue
        if node is None or node.kind != "f":
            continue
        seen[real] = node.size
    return seen


def heads(archive: str, paths: set[str], size: int = 4096) -> dict[str, bytes]:
    """The first `size` bytes of each of `paths` (regular files of the merged image: the
    topmost layer's copy wins)."""
    out: dict[str, bytes] = {}
    with tarfile.open(archive) as outer:
        f = outer.extractfile("manifest.json")
        assert f is not None
        for layer in json.load(f)[0]["Layers"]:
            blob = outer.extractfile(layer)
            assert blob is not None
            with tarfile.open(fileobj=blob, mode="r|*") as tf:
                for m in tf:
                    path = _norm(m.name)
                    if path in paths and m.isreg():
                        data = tf.extractfile(m)
                        out[path] = data.read(size) if data is not None else b""
    return out


def _interpreter(head: bytes) -> str | None:
    """What execve loads besides the file itself, with no syscall strace shows: a script's `#!`
    interpreter, an ELF program's PT_INTERP (the dynamic loader)."""
    if head.startswith(b"#!"):
        words = head[2:].split(b"\n", 1)[0].split()
        return words[0].decode(errors="replace") if words else None
    if head[:4] != b"\x7fELF" or head[4] != 2:  # ELF64 only (the bench images are amd64)
        return None
    phoff, = struct.unpack_from("<Q", head, 32)
    phentsize, phnum = struct.unpack_from("<HH", head, 54)
    for i in range(phnum):
        at = phoff + i * phentsize
        if at + 56 > len(head):
            return None
        p_type, _flags, offset = struct.unpack_from("<IIQ", head, at)
        filesz, = struct.unpack_from("<Q", head, at + 32)
        if p_type == 3 and offset + filesz <= len(head):  # PT_INTERP
            return head[offset:offset + filesz].rstrip(b"\0").decode(errors="replace")
    return None


def with_interpreters(archive: str, nodes: dict[str, Node], trace: Mapping[str, Any],
                      floor: dict[str, int]) -> dict[str, int]:
    """`floor` plus what the kernel loaded for each executed file without a syscall strace
    shows (its `#!` interpreter, its ELF loader; transitively)."""
    out = dict(floor)

    def regular(path: str | None) -> str | None:  # the path of the regular file (a hardlink's first)
        real = resolve(nodes, path) if path else None
        node = nodes.get(real) if real else None
        if node is not None and node.kind == "h":
            real, node = node.target, nodes.get(node.target)
        return real if node is not None and node.kind == "f" else None

    todo = {regular(p) for p, acc in trace.get("paths", {}).items() if acc.get("executed")}
    seen: set[str] = set()
    while todo:
        batch = {p for p in todo if p and p not in seen}
        seen |= batch
        if not batch:
            break
        todo = set()
        for head in heads(archive, batch).values():
            real = regular(_interpreter(head))
            if real is not None:
                out.setdefault(real, nodes[real].size)
                todo.add(real)
    return out


def touched_bytes(nodes: dict[str, Node], trace: Mapping[str, Any]) -> tuple[int, int]:
    """(bytes, count) of `touched`."""
    used = touched(nodes, trace)
    return sum(used.values()), len(used)


def missing(out: dict[str, Node], floor: Mapping[str, int]) -> dict[str, int]:
    """The floor's files that `out` (a slimmed image) has no regular file for."""
    gone = {}
    for path, size in floor.items():
        real = resolve(out, path)
        if real is None or out[real].kind not in ("f", "h"):
            gone[path] = size
    return gone


def self_test() -> None:
    """squash, resolve, touched_bytes and with_interpreters on a synthetic two-layer
    docker-archive (whiteout, opaque directory, symlinked directory, hardlink, a script).
    Raises AssertionError."""
    import io
    import tempfile

    def layer(entries: list[tuple[str, str, object]]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for name, kind, arg in entries:
                info = tarfile.TarInfo(name)
                data = b""
                if kind == "f":
                    data = b"x" * int(arg)  # type: ignore[call-overload]
                    info.size = len(data)
                elif kind == "t":
                    data = str(arg).encode()
                    info.size = len(data)
                elif kind == "d":
                    info.type = tarfile.DIRTYPE
                elif kind == "l":
                    info.type, info.linkname = tarfile.SYMTYPE, str(arg)
                elif kind == "h":
                    info.type, info.linkname = tarfile.LNKTYPE, str(arg)
                tf.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    lower = layer([("usr", "d", 0), ("usr/lib", "d", 0), ("usr/lib/libx.so.1", "f", 100), ("lib", "l", "usr/lib"),
                   ("etc", "d", 0), ("etc/a", "f", 10), ("opt/d/old", "f", 50), ("usr/bin/perl", "f", 30),
                   ("usr/bin/perl5", "h", "usr/bin/perl"), ("app/run.sh", "t", "#!/usr/bin/perl5 -w\n")])
    upper = layer([("etc/.wh.a", "f", 0), ("opt/d/.wh..wh..opq", "f", 0), ("opt/d/new", "f", 7),
                   ("usr/lib/libx.so", "l", "libx.so.1")])
    with tempfile.TemporaryDirectory() as tmp:
        archive = os.path.join(tmp, "t.docker.tar")
        with tarfile.open(archive, "w") as out:
            for name, data in (("manifest.json", json.dumps([{"Layers": ["l1.tar", "l2.tar"]}]).encode()),
                               ("l1.tar", lower), ("l2.tar", upper)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
        nodes = squash(archive)
        # an executed script's interpreter is loaded by the kernel, with no syscall strace shows
        ran = {"paths": {"/app/run.sh": {"executed": True}}}
        assert with_interpreters(archive, nodes, ran, touched(nodes, ran)) == {"/app/run.sh": 20, "/usr/bin/perl": 30}
    assert file_bytes(nodes) == 157, file_bytes(nodes)
    assert "/etc/a" not in nodes and "/opt/d/old" not in nodes and "/opt/d/new" in nodes
    assert resolve(nodes, "/lib/libx.so") == "/usr/lib/libx.so.1"
    assert resolve(nodes, "/lib/../lib/missing") is None
    trace = {"paths": {"/lib/libx.so": {"opened": True}, "/usr/bin/perl5": {"executed": True},
                       "/usr/bin/perl": {"stated": True}, "/etc/a": {"opened": True},
                       "/opt/d/new": {"errors": ["EACCES"]}}}
    assert touched_bytes(nodes, trace) == (130, 2), touched_bytes(nodes, trace)


# -- heavy steps and slim as a command ----------------------------------------------------------


@contextlib.contextmanager
def heavy(lock: str) -> Iterator[None]:
    """An exclusive flock(2) on `lock` (when set) for one heavy step."""
    if not lock:
        yield
        return
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Slim:
    """How to run the slim being measured."""

    python: str
    checkout: str

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = self.checkout + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    def run(self, *args: str, timeout: float = 1800) -> tuple[subprocess.CompletedProcess[str], float]:
        argv = [self.python, "-m", "slim", *args]
        log.info("slim %s", " ".join(args))
        t0 = time.monotonic()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=self.env(), timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            proc = subprocess.CompletedProcess(argv, -9, _text(exc.stdout), _text(exc.stderr) + "\ntimed out")
        return proc, time.monotonic() - t0

    def describe(self) -> str:
        rev = subprocess.run(["git", "-C", self.checkout, "log", "-1", "--format=%h", "--", "slim"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", self.checkout, "status", "--porcelain", "--", "slim"],
                               capture_output=True, text=True).stdout.strip()
        where = subprocess.run([self.python, "-c", "import slim, os; print(os.path.dirname(slim.__file__))"],
                               capture_output=True, text=True, env=self.env()).stdout.strip()
        return f"{where or '?'}, last slim/ commit {rev or '?'}{' (slim/ modified)' if dirty else ''}"


def _text(data: object) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data if isinstance(data, str) else ""


# -- probes against a container ------------------------------------------------------------------


class NotReady(Exception):
    """Nothing listens yet (connection refused or reset): worth another try."""


def check(c: DeepCheck, timeout: float = 10) -> tuple[bool, str]:
    """One check against 127.0.0.1: True when the status is 2xx/3xx (HTTP) and `expect` is in the
    body or reply (`expect` may hold several texts joined by NUL, all needed). Raises NotReady while
    the port does not accept."""
    kind, _, rest = c.probe.partition(":")
    wanted = [e for e in c.expect.split("\0") if e]
    if kind == "http":
        port, slash, path = rest.partition("/")
        url = f"http://127.0.0.1:{port}/{path if slash else ''}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                body = resp.read(1 << 20).decode("utf-8", "replace")
                status = resp.status
        except urllib.error.HTTPError as exc:
            return False, f"{c.probe}: HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            if isinstance(exc, ConnectionRefusedError) or isinstance(getattr(exc, "reason", None),
                                                                     ConnectionRefusedError):
                raise NotReady(f"{c.probe}: {exc}") from None
            return False, f"{c.probe}: {exc}"
        if not 200 <= status < 400:
            return False, f"{c.probe}: HTTP {status}"
        missing = [e for e in wanted if e not in body]
        if missing:
            return False, (f"{c.probe}: HTTP {status} without {', '.join(map(repr, missing))}: "
                           f"{body.strip()[:160]!r}")
        return True, f"{c.probe}: HTTP {status}"
    if kind == "tcp":
        parts = rest.split(":", 2)
        send = _unescape(parts[1]) if len(parts) > 1 else b""
        expects = [x for x in [_unescape(parts[2]) if len(parts) > 2 else b"", *(w.encode() for w in wanted)] if x]
        try:
            s = socket.create_connection(("127.0.0.1", int(parts[0])), timeout=timeout)
        except ConnectionRefusedError as exc:
            raise NotReady(f"{c.probe}: {exc}") from None
        except OSError as exc:
            return False, f"{c.probe}: {exc}"
        with s:
            try:
                if send:
                    s.sendall(send)
                got = b""
                while any(x not in got for x in expects) and len(got) < 65536:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
            except OSError as exc:
                return False, f"{c.probe}: {exc}"
        ok = all(x in got for x in expects)
        return ok, f"{c.probe}: received {got[:60]!r}"
    return False, f"{c.probe}: unknown probe kind {kind!r}"


def grouped(checks: tuple[DeepCheck, ...]) -> list[DeepCheck]:
    """One request per distinct probe spec: the expected texts of checks sharing a spec together."""
    texts: dict[str, list[str]] = {}
    for c in checks:
        texts.setdefault(c.probe, []).append(c.expect)
    return [DeepCheck(p, "\0".join(t)) for p, t in texts.items()]


@dataclass
class ProbeRun:
    shallow: bool | None = None
    deep: bool | None = None
    details: list[str] = field(default_factory=list)

    @property
    def cell_deep(self) -> str:
        return NA if self.deep is None else ("PASS" if self.deep else "FAIL")


ERROR_WORDS = ("error", "exception", "cannot", "can't", "not found", "no such", "failed", "fatal",
               "undefined", "missing", "denied")


def log_summary(text: str, limit: int = 400) -> str:
    """The lines of a container log that name an error (first three), else its last three."""
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    picked = [x for x in lines if any(w in x.lower() for w in ERROR_WORDS)]
    picked = list(dict.fromkeys(picked))[:3] or lines[-3:]
    return " / ".join(picked)[:limit]



def port_free(probe: str) -> bool:
    """Nothing accepts connections on the probe's port (a TIME_WAIT left by an earlier run is fine)."""
    rest = probe.partition(":")[2]
    port = int(rest.split(":", 1)[0].split("/", 1)[0])
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def run_probes(archive: str, spec: ImageSpec, startup: float = 60, settle: float = 20) -> ProbeRun:
    """Load `archive`, run it detached with --network host, wait for the shallow probe, then run
    every deep check (retrying while its port does not accept yet). The image is removed after,
    unless the daemon had it before (measure.loaded)."""
    out = ProbeRun()
    busy = [c.probe for c in (DeepCheck(spec.probe), *spec.deep_probe) if not port_free(c.probe)]
    if busy:
        out.details.append(f"port already taken on 127.0.0.1 before the run: {busy[0]}")
        return out
    try:
        with loaded(archive) as image:
            name = f"slim-bench-apps-{os.getpid()}"
            proc = subprocess.run(["docker", "run", "-d", "--name", name, "--network", "host", image],
                                  capture_output=True, text=True)
            try:
                if proc.returncode != 0:
                    out.details.append(f"docker run: {proc.stderr.strip()[-200:]}")
                    out.shallow = out.deep = False
                    return out

                def attempt(c: DeepCheck, deadline: float) -> tuple[bool, str]:
                    detail = "not tried"
                    while True:
                        try:
                            return check(c)
                        except NotReady as exc:
                            detail = str(exc)
                        state = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", name],
                                               capture_output=True, text=True).stdout.strip()
                        if state != "true":
                            return False, f"{detail} (container exited)"
                        if time.monotonic() > deadline:
                            return False, f"{detail} (gave up)"
                        time.sleep(0.5)

                ok, detail = attempt(DeepCheck(spec.probe), time.monotonic() + startup)
                out.shallow = ok
                if not ok:
                    out.details.append(f"shallow {detail}")
                results = []
                for c in grouped(spec.deep_probe):
                    ok, detail = attempt(c, time.monotonic() + settle)
                    results.append(ok)
                    if not ok:
                        out.details.append(f"deep {detail}")
                out.deep = all(results) if results else None
                if not (out.shallow and out.deep):
                    logs = subprocess.run(["docker", "logs", "--tail", "60", name], capture_output=True, text=True)
                    summary = log_summary(logs.stdout + "\n" + logs.stderr)
                    if summary:
                        out.details.append(f"container log: {summary}")
                return out
            finally:
                subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    except (RuntimeError, OSError) as exc:
        out.details.append(str(exc))
        return out


# -- one image -----------------------------------------------------------------------------------


@dataclass
class Output:
    """One `slim build` of the image and what the hidden judge said of it."""

    bytes: int | None = None
    verified: str = NA  # yes | FAILED | no (slim said not verified) | n/a
    deep: str = NA  # PASS | FAIL | FAIL (no start) | n/a
    seconds: float | None = None
    missing: dict[str, int] | None = None  # floor files the output has no regular file for


@dataclass
class AppRow:
    image: str
    fs_bytes: int | None = None
    floor_bytes: int | None = None
    floor_files: int | None = None
    floor_probes_ok: bool | None = None
    orig_shallow: bool | None = None
    orig_deep: bool | None = None
    slim: Output = field(default_factory=Output)  # --probe SHALLOW (what a user would run)
    static: Output = field(default_factory=Output)  # --mode static --no-verify
    noprobe: Output = field(default_factory=Output)  # no --probe: slim's own auto: probes
    sandbox: Output = field(default_factory=Output)  # --probe SHALLOW --runner sandbox
    informed: Output | None = None  # --probe SHALLOW --probe DEEP… (--informed only)
    notes: list[str] = field(default_factory=list)


def _mb(n: int | None) -> str:
    return NA if n is None else f"{n / 1e6:.1f}"


def _pf(v: bool | None) -> str:
    return NA if v is None else ("PASS" if v else "FAIL")


def probe_specs(spec: ImageSpec) -> list[str]:
    """The shallow probe and every distinct deep probe spec, for slim's --probe."""
    out = [spec.probe]
    for c in spec.deep_probe:
        if c.probe not in out:
            out.append(c.probe)
    return out


def measure_app(spec: ImageSpec, slim: Slim, work: str, *, lock: str, rebuild: bool, timeout: float,
                docker: bool, informed: bool = False) -> AppRow:
    row = AppRow(spec.name)
    try:
        with heavy(lock):
            built = build_image(spec, force=rebuild)
    except (BuildError, MirrorError, OSError) as exc:
        row.notes.append(f"build failed: {str(exc).splitlines()[0]}")
        log.error("%s: build failed: %s", spec.name, exc)
        return row
    archive = built.docker_archive
    row.notes.append(f"image built in {built.build_seconds:.0f}s")
    nodes = squash(archive)
    row.fs_bytes = file_bytes(nodes)

    if docker:
        with heavy(lock):
            orig = run_probes(archive, spec)
        row.orig_shallow, row.orig_deep = orig.shallow, orig.deep
        row.notes += [f"original: {d}" for d in orig.details]

    # the floor: what the deep run used, traced by slim itself
    trace_file = os.path.join(work, f"{spec.name}.trace.json")
    floor: dict[str, int] | None = None
    args = ["analyze", f"docker-archive:{archive}", "--trace", "--format", "json", "--save-trace", trace_file,
            "--timeout", str(timeout)]
    for p in probe_specs(spec):
        args += ["--probe", p]
    with heavy(lock):
        proc, _ = slim.run(*args)
    if proc.returncode == 0 and os.path.exists(trace_file):
        with open(trace_file, encoding="utf-8") as f:
            trace = json.load(f)
        floor = with_interpreters(archive, nodes, trace, touched(nodes, trace))
        row.floor_bytes, row.floor_files = sum(floor.values()), len(floor)
        with contextlib.suppress(ValueError):
            probes = json.loads(proc.stdout).get("probes") or []
            row.floor_probes_ok = bool(probes) and all(p.get("passed") for p in probes)
            bad = [f"{p.get('spec')}: {p.get('detail')}" for p in probes if not p.get("passed")]
            if bad:
                row.notes.append("floor: the traced run's probes failed: " + "; ".join(bad)[:300])
    else:
        row.notes.append(f"floor: slim analyze --trace exit {proc.returncode}: {last_line(proc.stderr)[:200]}")

    # slim build with the shallow probe (what a user would run), judged by the deep probe
    out = os.path.join(work, f"{spec.name}.slim.docker.tar")
    base = ["build", f"docker-archive:{archive}", "--output", f"docker-archive:{out}", "--probe", spec.probe]
    # the extras first; a slim that no longer knows one of them (usage error, exit 2) gets the bare
    # command (without --keep-unverified an unverified image is not written: then it is n/a)
    row.slim = build_and_judge(slim, spec, "slim build", [[*base, "--keep-unverified", "--timeout", str(timeout)], base],
                               out, floor, row.notes, lock=lock, docker=docker)
    # no --probe at all: slim's default probes (auto: sniff of every exposed port)
    out = os.path.join(work, f"{spec.name}.noprobe.docker.tar")
    row.noprobe = build_and_judge(
        slim, spec, "no-probe build", [["build", f"docker-archive:{archive}", "--output", f"docker-archive:{out}",
                                        "--keep-unverified", "--timeout", str(timeout)]],
        out, floor, row.notes, lock=lock, docker=docker)
    # the same build traced and verified in the bubblewrap sandbox instead of Docker: no import of
    # the image into the daemon's store (the output is judged in Docker like every other)
    out = os.path.join(work, f"{spec.name}.sandbox.docker.tar")
    row.sandbox = build_and_judge(
        slim, spec, "sandbox build", [["build", f"docker-archive:{archive}", "--output", f"docker-archive:{out}",
                                       "--probe", spec.probe, "--runner", "sandbox", "--keep-unverified",
                                       "--timeout", str(timeout)]],
        out, floor, row.notes, lock=lock, docker=docker)
    # static only, unverified
    out = os.path.join(work, f"{spec.name}.static.docker.tar")
    row.static = build_and_judge(
        slim, spec, "static", [["build", f"docker-archive:{archive}", "--mode", "static", "--no-verify",
                                "--output", f"docker-archive:{out}"]],
        out, floor, row.notes, lock=lock, docker=docker)
    if informed:
        # slim told everything: the deep probes too (can it pass when it is shown the paths?)
        out = os.path.join(work, f"{spec.name}.informed.docker.tar")
        args = ["build", f"docker-archive:{archive}", "--output", f"docker-archive:{out}", "--keep-unverified",
                "--timeout", str(timeout)]
        for p in probe_specs(spec):
            args += ["--probe", p]
        row.informed = build_and_judge(slim, spec, "informed", [args], out, floor, row.notes, lock=lock,
                                       docker=docker)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(trace_file)
    return row


def build_and_judge(slim: Slim, spec: ImageSpec, label: str, variants: list[list[str]], out: str,
                    floor: dict[str, int] | None, notes: list[str], *, lock: str, docker: bool) -> Output:
    """Run `slim ARGS` (the next variant only after a usage error, exit 2), then size the output,
    list the floor files it lost and run the deep checks against it. The output is deleted."""
    res = Output()
    proc: subprocess.CompletedProcess[str] | None = None
    for args in variants:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(out)
        with heavy(lock):
            proc, res.seconds = slim.run(*args)
        if proc.returncode != 2:
            break
    assert proc is not None
    no_verify = "--no-verify" in variants[0]
    if proc.returncode == 0:
        said_not = "not verified" in proc.stdout.lower()
        res.verified = "n/a" if no_verify else ("no" if said_not else "yes")
    elif proc.returncode == 1 and os.path.exists(out):
        res.verified = "FAILED"
        notes.append(f"{label}: {last_line(proc.stderr)[:250]}")
    else:
        notes.append(f"{label}: slim exit {proc.returncode}: {last_line(proc.stderr)[:250]}")
    fixes = [ln.strip() for ln in proc.stdout.splitlines() if "verify-fix" in ln]
    if fixes:
        notes.append(f"{label}: {len(fixes)} verify-fix(es), e.g. {fixes[0][:150]}")
    if os.path.exists(out):
        out_nodes = squash(out)
        res.bytes = file_bytes(out_nodes)
        if floor is not None:
            res.missing = missing(out_nodes, floor)
        if docker:
            with heavy(lock):
                run = run_probes(out, spec)
            res.deep = _deep_cell(run)
            notes += [f"{label}: {d}" for d in run.details]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(out)
    return res


def _deep_cell(res: ProbeRun) -> str:
    """PASS/FAIL of the deep probe; `FAIL (no start)` when even the shallow one failed."""
    if res.deep is None and res.shallow is None:
        return NA
    if not res.shallow:
        return "FAIL (no start)"
    return "PASS" if res.deep else "FAIL"


# -- the table -----------------------------------------------------------------------------------

COLUMNS = ("image", "fs MB", "floor MB", "slim MB", "slim/floor", "slim verified", "deep (slim)",
           "floor files lost (slim)", "static MB", "deep (static)", "floor files lost (static)", "build s",
           "no-probe MB", "no-probe verified", "deep (no-probe)", "sandbox MB", "deep (sandbox)",
           "build s (sandbox)", "orig shallow/deep")
INFORMED_COLUMNS = ("informed MB", "informed verified", "deep (informed)")


def lost_summary(gone: dict[str, int], limit: int = 10) -> str:
    """Lost files by directory, most bytes first: `/etc/mime.types (74 kB)`, `/usr/x/ (3 files, 9 kB)`."""
    dirs: dict[str, list[str]] = {}
    for path in sorted(gone):
        dirs.setdefault(posixpath.dirname(path), []).append(path)
    parts = []
    for d, paths in sorted(dirs.items(), key=lambda kv: -sum(gone[p] for p in kv[1])):
        size = sum(gone[p] for p in paths) / 1e3
        parts.append(f"{paths[0]} ({size:.0f} kB)" if len(paths) == 1 else f"{d}/ ({len(paths)} files, {size:.0f} kB)")
    more = f", … {len(parts) - limit} more directories (every file is in the .json)" if len(parts) > limit else ""
    return ", ".join(parts[:limit]) + more


def _lost(gone: dict[str, int] | None) -> str:
    if gone is None:
        return NA
    return f"{len(gone)} ({sum(gone.values()) / 1e6:.1f} MB)" if gone else "0"


def render(rows: list[AppRow]) -> str:
    informed = any(r.informed is not None for r in rows)
    cols = COLUMNS + (INFORMED_COLUMNS if informed else ())
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        ratio = (f"{r.slim.bytes / r.floor_bytes:.2f}x" if r.slim.bytes is not None and r.floor_bytes
                 else NA)
        floor = _mb(r.floor_bytes) + ("" if r.floor_probes_ok in (True, None) else " (probes failed)")
        cells = [
            r.image, _mb(r.fs_bytes), floor, _mb(r.slim.bytes), ratio, r.slim.verified, r.slim.deep,
            _lost(r.slim.missing), _mb(r.static.bytes), r.static.deep, _lost(r.static.missing),
            NA if r.slim.seconds is None else f"{r.slim.seconds:.0f}",
            _mb(r.noprobe.bytes), r.noprobe.verified, r.noprobe.deep,
            _mb(r.sandbox.bytes), r.sandbox.deep, NA if r.sandbox.seconds is None else f"{r.sandbox.seconds:.0f}",
            f"{_pf(r.orig_shallow)}/{_pf(r.orig_deep)}",
        ]
        if informed:
            i = r.informed or Output()
            cells += [_mb(i.bytes), i.verified, i.deep]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine(slim: Slim) -> str:
    mem = ""
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return (f"nproc {os.cpu_count()}, mem {mem or '?'}, kernel {platform.release()}, "
            f"python {platform.python_version()}; slim measured: {slim.describe()}")


def write_doc(out: str, rows: list[AppRow], slim: Slim, command: str, partial: bool) -> str:
    table = render(rows)
    notes = [f"- {r.image}: " + "; ".join(n.replace("|", "\\|") for n in r.notes) for r in rows if r.notes]
    lost = []
    for r in rows:
        outputs = [("slim build", r.slim), ("static build", r.static), ("no-probe build", r.noprobe),
                   ("sandbox build", r.sandbox)]
        if r.informed is not None:
            outputs.append(("informed build", r.informed))
        for what, o in outputs:
            gone = o.missing
            if gone:
                lost.append(f"- {r.image}, {what}: {lost_summary(gone)}")
    specs = [f"- {name}: shallow `{IMAGES[name].probe}`; deep "
             + ", ".join(f"`{c.probe}` ∋ `{c.expect}`" for c in IMAGES[name].deep_probe)
             for name in (r.image for r in rows)]
    doc = "\n".join([
        "# slim on application images: shallow-probe builds judged by a deep probe"
        + (" (partial: still running)" if partial else ""),
        "",
        f"date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}  ",
        f"machine: {machine(slim)}  ",
        f"command: `{command}`",
        "",
        "MB = 10^6 bytes of regular files in the squashed image (same count for every column).",
        "floor = the distinct regular files the original's traced run used (opened, executed, mapped",
        "or stat'ed) with the shallow and deep probes (`slim analyze --trace --save-trace`), plus what",
        "execve loaded for an executed file with no syscall strace shows (its `#!` interpreter, its",
        "ELF loader).",
        "slim = `slim build --probe SHALLOW --keep-unverified`; slim verified = what slim said",
        "(yes: its own verification with the shallow probe passed). deep = the hidden deep checks run",
        "against the output in Docker (`--network host`); `FAIL (no start)` = not even the shallow",
        "probe answered. static = `slim build --mode static --no-verify`. build s = the slim build's",
        "wall time. no-probe = `slim build --keep-unverified` with no `--probe` (slim's default",
        "`auto:` probes, judged by the same deep checks). sandbox = the slim build with",
        "`--runner sandbox` (traced and verified under bubblewrap, no import into Docker's store;",
        "judged in Docker). orig shallow/deep = the original image's own probes (must be PASS/PASS).",
        "floor files lost = floor files the output has no regular file for (count, MB); slim/floor < 1",
        "or any lost file means the output cannot do what the deep run did.",
        *(["informed = `slim build --probe SHALLOW --probe DEEP… --keep-unverified`: slim is shown the",
           "deep paths too (an upper bound of what tracing alone can do)."]
          if any(r.informed is not None for r in rows) else []),
        "",
        table,
        "",
        "Probes:",
        "",
        *specs,
        "",
        *(["Floor files (used by the original's deep run) missing from the output:", "", *lost, ""]
          if lost else []),
        *(["Notes:", "", *notes, ""] if notes else []),
    ])
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write(doc)
    with open(os.path.splitext(out)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump([asdict(r) for r in rows], f, indent=1)
    return table



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.measure_apps", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", default=",".join(APP_IMAGES), help=f"comma-separated subset of {', '.join(APP_IMAGES)}")
    ap.add_argument("--slim", default=os.environ.get("SLIM_BENCH_SLIM", REPO),
                    help="the slim checkout to measure ($SLIM_BENCH_SLIM; default: this bench's checkout)")
    ap.add_argument("--python", default=os.environ.get("SLIM_BENCH_PYTHON", sys.executable),
                    help="the interpreter that runs `-m slim` ($SLIM_BENCH_PYTHON; default: this one)")
    ap.add_argument("--lock", default=os.environ.get("SLIM_BENCH_LOCK", ""),
                    help="flock this file around each heavy step ($SLIM_BENCH_LOCK)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached images")
    ap.add_argument("--build-only", action="store_true", help="only build (and cache) the images")
    ap.add_argument("--informed", action="store_true",
                    help="also build with the deep probes given to slim (--probe SHALLOW --probe DEEP…)")
    ap.add_argument("--timeout", type=float, default=120.0, help="slim's --timeout for a traced run")
    ap.add_argument("--output", default=DEFAULT_OUTPUT, help="Markdown table (a .json with details beside it)")
    ap.add_argument("--self-test", action="store_true", help="check the file-index code (no root, no Docker)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.self_test:
        self_test()
        print("measure_apps self-test: 1 passed, 0 failed")
        return 0
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    names = [n.strip() for n in args.images.split(",") if n.strip()]
    unknown = [n for n in names if n not in IMAGES or not IMAGES[n].deep_probe]
    if unknown:
        ap.error(f"unknown application image(s) {', '.join(unknown)}; known: {', '.join(APP_IMAGES)}")
    if args.build_only:
        rc = 0
        for n in names:
            try:
                with heavy(args.lock):
                    b = build_image(IMAGES[n], force=args.rebuild)
                print(f"{n}: {b.docker_archive} ({b.size_bytes / 1e6:.1f} MB archive)")
            except (BuildError, MirrorError, OSError) as exc:
                print(f"{n}: build failed: {exc}", file=sys.stderr)
                rc = 1
        return rc
    slim = Slim(args.python, os.path.abspath(args.slim))
    docker = have_docker()
    if not docker:
        log.warning("no Docker daemon: the probe columns will be n/a")
    command = "python -m bench.measure_apps " + " ".join(argv if argv is not None else sys.argv[1:])
    work = os.path.join(cache_dir(), "scratch", "apps")
    os.makedirs(work, exist_ok=True)
    rows: list[AppRow] = []
    for n in names:
        log.info("measuring %s", n)
        t0 = time.monotonic()
        rows.append(measure_app(IMAGES[n], slim, work, lock=args.lock, rebuild=args.rebuild,
                                timeout=args.timeout, docker=docker, informed=args.informed))
        print(f"{n}: measured in {time.monotonic() - t0:.0f}s", file=sys.stderr)
        write_doc(args.output, rows, slim, command.strip(), partial=n != names[-1])
    table = write_doc(args.output, rows, slim, command.strip(), partial=False)
    print(table)
    print(f"\nwritten: {args.output}", file=sys.stderr)
    return 1 if any(r.orig_deep is False or r.orig_shallow is False or r.fs_bytes is None for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
