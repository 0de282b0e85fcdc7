"""Probe specs, defaults, comparison, and the network probes against a local server."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from slim.errors import TraceError, UsageError
from slim.model import ImageConfig
from slim.tracers.probes import (
    CmdProbe,
    ExecProbe,
    HttpProbe,
    SniffProbe,
    TcpProbe,
    WaitProbe,
    default_probes,
    listening_ports,
    parse_probe,
    run_http,
    run_tcp,
)
from tests.conftest import free_port


def test_parse_specs_round_trip() -> None:
    assert parse_probe("http:8080") == HttpProbe(8080, "/")
    assert parse_probe("http:80/health/z") == HttpProbe(80, "/health/z")
    assert parse_probe("tcp:6379:PING\\r\\n:PONG") == TcpProbe(6379, "PING\r\n", "PONG")
    assert parse_probe("tcp:22") == TcpProbe(22)
    assert parse_probe("exec:sh -c 'echo hi'") == ExecProbe(("sh", "-c", "echo hi"))
    assert parse_probe("cmd:--version") == CmdProbe(("--version",))
    assert parse_probe("cmd:") == CmdProbe(())
    assert parse_probe("wait:2.5") == WaitProbe(2.5)
    for spec in ("http:8080/x", "tcp:1", "exec:ls -l", "cmd:--help", "wait:3"):
        assert parse_probe(spec).spec == spec


@pytest.mark.parametrize("spec", ["http", "http:0", "http:70000", "tcp:x", "exec:", "wait:x",
                                  "wait:-1", "ftp:21", "exec:'unclosed"])
def test_bad_specs_name_the_spec(spec: str) -> None:
    with pytest.raises(UsageError, match=spec.split(":")[0]):
        parse_probe(spec)
    assert not issubclass(UsageError, TraceError)


def test_default_probes() -> None:
    config = ImageConfig(exposed_ports=("53/udp", "80/tcp", "8080/tcp", "²/tcp"))
    assert default_probes(config) == [SniffProbe(80), SniffProbe(8080)]
    assert default_probes(ImageConfig()) == []
    assert parse_probe("auto:80") == SniffProbe(80) and SniffProbe(80).spec == "auto:80"
    with pytest.raises(UsageError):
        parse_probe("http:²")


@pytest.fixture
def server() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = 200 if self.path == "/ok" else 404
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"body:" + self.path.encode())

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_http_probe(server: int) -> None:
    deadline = time.monotonic() + 5
    ok, obs = run_http(HttpProbe(server, "/ok"), deadline, lambda: True)
    assert ok.passed and obs.status == 200 and obs.body == b"body:/ok"
    bad, obs = run_http(HttpProbe(server, "/missing"), deadline, lambda: True)
    assert not bad.passed and "404" in bad.detail and obs.status == 404




def test_probe_never_ready_times_out_and_dead_app_stops_early() -> None:
    port = free_port()
    start = time.monotonic()
    out, _ = run_http(HttpProbe(port), time.monotonic() + 0.5, lambda: True)
    assert not out.passed and "timeout" in out.detail
    assert time.monotonic() - start < 3
    out, _ = run_tcp(TcpProbe(port), time.monotonic() + 30, lambda: False)
    assert not out.passed and "exited" in out.detail


def test_tcp_probe_send_expect() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def echo() -> None:
        while True:  # the readiness check connects first, then the probe itself
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(100)
                if data:
                    conn.sendall(b"+" + data.upper())

    threading.Thread(target=echo, daemon=True).start()
    out, obs = run_tcp(TcpProbe(port, "ping\n", "PING"), time.monotonic() + 5, lambda: True)
    srv.close()
    assert out.passed and obs.body == b"+PING\n"


def test_listening_ports_reads_the_namespace_of_a_pid() -> None:
    import os

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert port not in (listening_ports(os.getpid()) or set())  # bound, not listening
        s.listen(1)
        assert port in (listening_ports(os.getpid()) or set())
    assert listening_ports(2**22 + 12345) is None  # no such process
