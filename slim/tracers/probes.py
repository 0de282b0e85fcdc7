"""Probes: how a traced run is exercised, parsed from `--probe SPEC` (ARCHITECTURE.md).

`http:PORT[/PATH]`  GET http://127.0.0.1:PORT/PATH, passes on 2xx/3xx
`tcp:PORT[:SEND[:EXPECT]]`  connect, optionally send SEND (Python escapes: `\\n`), expect EXPECT in the reply
`exec:COMMAND`  run COMMAND (shell words) inside the running app's sandbox; passes on exit 0
`cmd:ARGS`  run the image with ARGS in place of its Cmd, to completion; passes on exit 0
`wait:SECONDS`  let the app run that long

Network probes only ever talk to 127.0.0.1, wait for readiness (the port accepting) with a
deadline, and give up early when the app has died. `Observation` keeps what a probe saw (status
and body, reply, exit code and output) so a slimmed image can be checked against the original
(`compare_observations`).
"""

from __future__ import annotations

import codecs
import http.client
import logging
import re
import shlex
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from slim.errors import UsageError
from slim.model import ImageConfig
from slim.result import ProbeOutcome

log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"
MAX_BODY = 1 << 16
# the response headers a slimmed image must reproduce: what a client acts on
COMPARED_HEADERS = frozenset({"content-type", "content-length", "content-encoding", "location"})


@dataclass(frozen=True)
class HttpProbe:
    port: int
    path: str = "/"

    @property
    def spec(self) -> str:
        return f"http:{self.port}{self.path if self.path != '/' else ''}"


def _escape(text: str) -> str:
    """`text` with Python escapes for anything unprintable (the inverse of parse_probe's decoding)."""
    return text.encode("unicode_escape").decode("ascii")


@dataclass(frozen=True)
class TcpProbe:
    port: int
    send: str = ""
    expect: str = ""

    @property
    def spec(self) -> str:
        # re-escaped as parse_probe reads them (an SSLRequest is `\x00\x00\x00\x08…`)
        send, expect = (_escape(t) for t in (self.send, self.expect))
        tail = (":" + send if send or expect else "") + (":" + expect if expect else "")
        return f"tcp:{self.port}{tail}"


@dataclass(frozen=True)
class ExecProbe:
    command: tuple[str, ...]

    @property
    def spec(self) -> str:
        return "exec:" + shlex.join(self.command)


@dataclass(frozen=True)
class CmdProbe:
    args: tuple[str, ...]

    @property
    def spec(self) -> str:
        return "cmd:" + shlex.join(self.args)


@dataclass(frozen=True)
class WaitProbe:
    seconds: float

    @property
    def spec(self) -> str:
        return f"wait:{self.seconds:g}"


Probe = HttpProbe | TcpProbe | ExecProbe | CmdProbe | WaitProbe


def _port(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UsageError(f"{spec}: invalid port {text!r} (1-65535)")
    return int(text)


def parse_probe(spec: str) -> Probe:
    """Parse one probe SPEC. Raises UsageError naming the spec."""
    kind, sep, rest = spec.partition(":")
    if not sep:
        raise UsageError(f"{spec}: probe spec must be KIND:ARGS (http, tcp, exec, cmd, wait)")
    if kind == "http":
        port_text, slash, path = rest.partition("/")
        return HttpProbe(_port(port_text, spec), "/" + path if slash else "/")
    if kind == "tcp":
        port_text, _, more = rest.partition(":")
        send, _, expect = more.partition(":")
        try:
            send = codecs.decode(send, "unicode_escape") if send else ""
            expect = codecs.decode(expect, "unicode_escape") if expect else ""
        except UnicodeDecodeError as exc:
            raise UsageError(f"{spec}: bad escape: {exc}") from None
        return TcpProbe(_port(port_text, spec), send, expect)
    if kind in ("exec", "cmd"):
        try:
            words = tuple(shlex.split(rest))
        except ValueError as exc:
            raise UsageError(f"{spec}: {exc}") from None
        if kind == "exec" and not words:
            raise UsageError(f"{spec}: exec needs a command")
        return ExecProbe(words) if kind == "exec" else CmdProbe(words)
    if kind == "wait":
        try:
            seconds = float(rest)
        except ValueError:
            raise UsageError(f"{spec}: wait needs a number of seconds") from None
        if not 0 <= seconds <= 3600:
            raise UsageError(f"{spec}: wait must be between 0 and 3600 seconds")
        return WaitProbe(seconds)
    raise UsageError(f"{spec}: unknown probe kind {kind!r} (http, tcp, exec, cmd, wait)")


def default_probes(config: ImageConfig) -> list[Probe]:
    """An HTTP probe on each exposed TCP port; empty means "run the entrypoint to completion"."""
    out: list[Probe] = []
    for port in sorted(config.exposed_ports):
        number, _, proto = port.partition("/")
        if (proto or "tcp") == "tcp" and number.isdigit() and 0 < int(number) < 65536:
            out.append(HttpProbe(int(number)))
    return out


@dataclass(frozen=True)
class Observation:
    """What one probe saw, for comparing an original and a slimmed image."""

    spec: str
    status: int | None = None  # HTTP status
    body: bytes = b""  # HTTP body / TCP reply / process output (capped)
    exit_code: int | None = None
    headers: tuple[tuple[str, str], ...] = ()  # HTTP headers that matter (COMPARED_HEADERS)


_NUMBER = re.compile(rb"[0-9]+")


def _stable(body: bytes) -> bytes:
    """`body` with every digit run reduced to `0`: pids, clocks, uptimes, rusage and counters
    differ between two runs of the very same image (memcached `stats`), so outputs are compared
    by their text and shape, not by those numbers."""
    return _NUMBER.sub(b"0", body)


def compare_observations(before: list[Observation], after: list[Observation]) -> list[str]:
    """Differences between two runs' observations (empty = same behaviour), sorted."""
    diffs: list[str] = []
    old = {o.spec: o for o in before}
    new = {o.spec: o for o in after}
    for spec in sorted(set(old) | set(new)):
        a, b = old.get(spec), new.get(spec)
        if a is None or b is None:
            diffs.append(f"{spec}: only in the {'original' if b is None else 'slim'} run")
            continue
        if a.status != b.status:
            diffs.append(f"{spec}: HTTP status {a.status} became {b.status}")
        if a.exit_code != b.exit_code:
            diffs.append(f"{spec}: exit code {a.exit_code} became {b.exit_code}")
        if _stable(a.body) != _stable(b.body):
            diffs.append(f"{spec}: output differs ({len(a.body)} bytes became {len(b.body)})")
    return diffs


def _wire(text: str) -> bytes:
    """The bytes of a tcp probe's SEND/EXPECT. parse_probe decoded them with `unicode_escape`,
    which reads the spec as UTF-8 bytes and maps each byte (or `\\xNN` escape) to one code point
    below 256, so Latin-1 gives back exactly those bytes (`\\xd2` is the byte 0xd2, not the two
    UTF-8 bytes of U+00D2); only `\\uNNNN` escapes above that need UTF-8."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def wait_port(port: int, deadline: float, alive: Callable[[], bool]) -> str | None:
    """Wait until 127.0.0.1:port accepts; None when ready, else why not."""
    while True:
        try:
            with socket.create_connection((LOCALHOST, port), timeout=1.0):
                return None
        except OSError:
            pass
        if not alive():
            return f"the app exited before port {port} accepted connections"
        if time.monotonic() >= deadline:
            return f"port {port} never accepted connections (timeout)"
        time.sleep(0.1)


def run_http(probe: HttpProbe, deadline: float,
             alive: Callable[[], bool]) -> tuple[ProbeOutcome, Observation]:
    """GET the path once the port is ready. Passes on 2xx/3xx."""
    why = wait_port(probe.port, deadline, alive)
    if why is not None:
        return ProbeOutcome(probe.spec, False, why), Observation(probe.spec)
    last = ""
    while True:
        conn = http.client.HTTPConnection(LOCALHOST, probe.port,
                                          timeout=max(1.0, deadline - time.monotonic()))
        try:
            conn.request("GET", probe.path, headers={"Host": f"localhost:{probe.port}"})
            resp = conn.getresponse()
            body = resp.read(MAX_BODY)
            ok = 200 <= resp.status < 400
            detail = f"GET {probe.path} → {resp.status} {resp.reason}, {len(body)} bytes"
            headers = tuple(sorted((k.lower(), v) for k, v in resp.getheaders()
                                   if k.lower() in COMPARED_HEADERS))
            if resp.getheader("transfer-encoding"):  # a chunked length says nothing
                headers = tuple(h for h in headers if h[0] != "content-length")
            return (ProbeOutcome(probe.spec, ok, detail),
                    Observation(probe.spec, status=resp.status, body=body, headers=headers))
        except (OSError, http.client.HTTPException) as exc:
            last = str(exc) or type(exc).__name__
        finally:
            conn.close()
        if time.monotonic() >= deadline or not alive():
            return ProbeOutcome(probe.spec, False, f"GET {probe.path} failed: {last}"), Observation(
                probe.spec)
        time.sleep(0.2)


def run_tcp(probe: TcpProbe, deadline: float,
            alive: Callable[[], bool]) -> tuple[ProbeOutcome, Observation]:
    """Connect, send, read a reply until EXPECT appears, the peer closes or the deadline."""
    why = wait_port(probe.port, deadline, alive)
    if why is not None:
        return ProbeOutcome(probe.spec, False, why), Observation(probe.spec)
    reply = b""
    try:
        with socket.create_connection((LOCALHOST, probe.port), timeout=2.0) as sock:
            if probe.send:
                sock.sendall(_wire(probe.send))
            if probe.expect or probe.send:
                sock.settimeout(max(0.5, min(5.0, deadline - time.monotonic())))
                want = _wire(probe.expect)
                while len(reply) < MAX_BODY and (not want or want not in reply):
                    try:
                        chunk = sock.recv(4096)
                    except TimeoutError:
                        break
                    if not chunk:
                        break
                    reply += chunk
    except OSError as exc:
        return ProbeOutcome(probe.spec, False, f"connection failed: {exc}"), Observation(probe.spec)
    ok = not probe.expect or _wire(probe.expect) in reply
    detail = f"connected; {len(reply)} bytes replied" + ("" if ok else f", {probe.expect!r} not seen")
    return ProbeOutcome(probe.spec, ok, detail), Observation(probe.spec, body=reply)
