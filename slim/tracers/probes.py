"""Probes: how a traced run is exercised, parsed from `--probe SPEC` (ARCHITECTURE.md).

`http:PORT[/PATH]`  GET http://127.0.0.1:PORT/PATH, passes on 2xx/3xx
`tcp:PORT[:SEND[:EXPECT]]`  connect, optionally send SEND (Python escapes: `\\n`), expect EXPECT in the reply
`exec:COMMAND`  run COMMAND (shell words) inside the running app's sandbox; passes on exit 0
`cmd:ARGS`  run the image with ARGS in place of its Cmd, to completion; passes on exit 0
`wait:SECONDS`  let the app run that long
`auto:PORT`  the default for an exposed port: wait until it accepts, then sniff — a server that
             answers HTTP gets `GET /` and the same-origin pages the first page links to (at
             most CRAWL_PAGES); any other gets a connect that reads what it sends first and its
             reply to an HTTP request line

Network probes only ever talk to 127.0.0.1, wait for readiness (the port accepting) with a
deadline, and give up early when the app has died. `Observation` keeps what a probe saw (status,
headers and body, reply, exit code and output) so a slimmed image can be checked against the
original (slim.verify). An `auto:` probe resolves into the concrete probes it ran, which are
what the slimmed image is then run with.
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


@dataclass(frozen=True)
class SniffProbe:
    port: int

    @property
    def spec(self) -> str:
        return f"auto:{self.port}"


Probe = HttpProbe | TcpProbe | ExecProbe | CmdProbe | WaitProbe | SniffProbe
NetworkProbe = HttpProbe | TcpProbe | SniffProbe


def _port(text: str, spec: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise UsageError(f"{spec}: invalid port {text!r} (1-65535)")
    return int(text)


def parse_probe(spec: str) -> Probe:
    """Parse one probe SPEC. Raises UsageError naming the spec."""
    kind, sep, rest = spec.partition(":")
    if not sep:
        raise UsageError(f"{spec}: probe spec must be KIND:ARGS (http, tcp, exec, cmd, wait, auto)")
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
    if kind == "auto":
        return SniffProbe(_port(rest, spec))
    raise UsageError(f"{spec}: unknown probe kind {kind!r} (http, tcp, exec, cmd, wait, auto)")


def default_probes(config: ImageConfig) -> list[Probe]:
    """An `auto:` probe on each exposed TCP port; empty means "run the entrypoint to
    completion"."""
    out: list[Probe] = []
    for port in sorted(config.exposed_ports):
        number, _, proto = port.partition("/")
        if (proto or "tcp") == "tcp" and number.isascii() and number.isdigit() \
                and 0 < int(number) < 65536:
            out.append(SniffProbe(int(number)))
    return out


@dataclass(frozen=True)
class Observation:
    """What one probe saw, for comparing an original and a slimmed image."""

    spec: str
    status: int | None = None  # HTTP status
    body: bytes = b""  # HTTP body / TCP reply / process output (capped)
    exit_code: int | None = None
    headers: tuple[tuple[str, str], ...] = ()  # HTTP headers that matter (COMPARED_HEADERS)
    stderr: bytes = b""  # process error output (runs and cmd:/exec: probes; capped)


def _wire(text: str) -> bytes:
    """The bytes of a tcp probe's SEND/EXPECT. parse_probe decoded them with `unicode_escape`,
    which reads the spec as UTF-8 bytes and maps each byte (or `\\xNN` escape) to one code point
    below 256, so Latin-1 gives back exactly those bytes (`\\xd2` is the byte 0xd2, not the two
    UTF-8 bytes of U+00D2); only `\\uNNNN` escapes above that need UTF-8."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column


def listening_ports(pid: int) -> set[int] | None:
    """The TCP ports listened on in the network namespace of process `pid` (its
    /proc/PID/net/tcp and tcp6); None when they cannot be read."""
    ports: set[int] = set()
    read_any = False
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}", encoding="ascii", errors="replace") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        read_any = True
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == _LISTEN and ":" in fields[1]:
                try:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
                except ValueError:
                    continue
    return ports if read_any else None


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


QUIET = 0.5  # seconds of silence that end a reply nothing was expected of, once it began
# how long to wait for the first byte: a server says its banner at once, but answers a request
# only after it has done the work (slowly, under a tracer on a busy machine)
FIRST_BYTE_BANNER = 2.0
FIRST_BYTE_REPLY = 5.0
CRAWL_PAGES = 10  # pages an auto: probe fetches from an HTTP server, the first included
HTTP_SNIFF = "GET / HTTP/1.0\r\n\r\n"  # no header: a tcp: spec holds no ":" in SEND
_LINK = re.compile(rb"""(?:href|src)\s*=\s*["']([^"'#?\s]+)""", re.I)


def _read_reply(sock: socket.socket, deadline: float, want: bytes, first: float) -> bytes:
    """Read until `want` appears (if given), the peer closes, the deadline, or — when nothing
    particular is expected — `first` seconds without a first byte or QUIET seconds of silence
    after it."""
    reply = b""
    while len(reply) < MAX_BODY and not (want and want in reply):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        wait = 5.0 if want else (QUIET if reply else first)
        sock.settimeout(min(remaining, wait))
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            if want:
                continue
            break
        if not chunk:
            break
        reply += chunk
    return reply


def run_tcp(probe: TcpProbe, deadline: float,
            alive: Callable[[], bool]) -> tuple[ProbeOutcome, Observation]:
    """Connect, send SEND, and read the reply: until EXPECT appears, else until the peer
    closes or goes quiet. Without SEND, what the server says first (a banner) is the reply."""
    why = wait_port(probe.port, deadline, alive)
    if why is not None:
        return ProbeOutcome(probe.spec, False, why), Observation(probe.spec)
    want = _wire(probe.expect)
    try:
        with socket.create_connection((LOCALHOST, probe.port), timeout=2.0) as sock:
            if probe.send:
                sock.sendall(_wire(probe.send))
            first = FIRST_BYTE_REPLY if probe.send else FIRST_BYTE_BANNER
            reply = _read_reply(sock, min(deadline, time.monotonic() + first + 5.0), want, first)
    except OSError as exc:
        return ProbeOutcome(probe.spec, False, f"connection failed: {exc}"), Observation(probe.spec)
    ok = not want or want in reply
    detail = f"connected; {len(reply)} bytes replied" + ("" if ok else f", {probe.expect!r} not seen")
    return ProbeOutcome(probe.spec, ok, detail), Observation(probe.spec, body=reply)


def same_origin_links(body: bytes, base_path: str) -> list[str]:
    """Paths of the same-origin pages and assets a page links to (`href`/`src`), sorted."""
    out: set[str] = set()
    base_dir = base_path.rsplit("/", 1)[0] + "/"
    for m in _LINK.finditer(body):
        link = m.group(1).decode("utf-8", "replace")
        if "://" in link or link.startswith(("//", "mailto:", "javascript:", "data:")):
            continue
        path = link if link.startswith("/") else base_dir + link
        parts: list[str] = []
        for part in path.split("/"):
            if part == "..":
                if parts:
                    parts.pop()
            elif part not in ("", "."):
                parts.append(part)
        out.add("/" + "/".join(parts) + ("/" if path.endswith("/") and parts else ""))
    return sorted(out)


def run_sniff(probe: SniffProbe, deadline: float, alive: Callable[[], bool]
              ) -> tuple[ProbeOutcome, list[Observation], list[Probe]]:
    """The `auto:PORT` probe: (outcome, what each concrete probe saw, the concrete probes)."""
    why = wait_port(probe.port, deadline, alive)
    if why is not None:
        return ProbeOutcome(probe.spec, False, why), [], []
    banner = TcpProbe(probe.port)
    banner_outcome, banner_obs = run_tcp(banner, deadline, alive)
    sniff = TcpProbe(probe.port, HTTP_SNIFF)
    sniff_outcome, sniff_obs = run_tcp(sniff, deadline, alive)
    if not sniff_obs.body.startswith(b"HTTP/") or banner_obs.body:
        ok = banner_outcome.passed and sniff_outcome.passed
        detail = (f"not HTTP: connected, {len(banner_obs.body)} bytes sent first, "
                  f"{len(sniff_obs.body)} bytes in reply to an HTTP request line")
        return ProbeOutcome(probe.spec, ok, detail), [banner_obs, sniff_obs], [banner, sniff]
    return _crawl(probe, deadline, alive)


def _crawl(probe: SniffProbe, deadline: float, alive: Callable[[], bool]
           ) -> tuple[ProbeOutcome, list[Observation], list[Probe]]:
    todo, seen = ["/"], set()
    probes: list[Probe] = []
    observations: list[Observation] = []
    first: ProbeOutcome | None = None
    while todo and len(probes) < CRAWL_PAGES:
        path = todo.pop(0)
        if path in seen:
            continue
        seen.add(path)
        page = HttpProbe(probe.port, path)
        outcome, obs = run_http(page, deadline, alive)
        first = first or outcome
        if not outcome.passed and path != "/":
            continue  # a broken link in the original is not something to verify
        probes.append(page)
        observations.append(obs)
        if obs.status is not None and 200 <= obs.status < 300:
            todo += [p for p in same_origin_links(obs.body, path) if p not in seen]
    assert first is not None
    detail = f"HTTP: {first.detail}; {len(probes)} page{'s' if len(probes) != 1 else ''} fetched"
    return ProbeOutcome(probe.spec, first.passed, detail), observations, probes


def run_network(probe: NetworkProbe, deadline: float, alive: Callable[[], bool]
                ) -> tuple[ProbeOutcome, list[Observation], list[Probe]]:
    """Run any network probe: (outcome, observations, the concrete probes it ran)."""
    if isinstance(probe, SniffProbe):
        return run_sniff(probe, deadline, alive)
    if isinstance(probe, HttpProbe):
        outcome, obs = run_http(probe, deadline, alive)
    else:
        outcome, obs = run_tcp(probe, deadline, alive)
    return outcome, [obs], [probe]
