"""Differential verification (`slim build`) on images built here, with the sandbox runner.

Recipes: each image is the busybox-static sample's root plus what the test adds — files, a
config, and for the services a small C program (source below, built with `gcc -static`).

* a `sh -c` pipeline that reads /etc/shells: the build must keep it or fail verification;
* a TCP-only service and a two-port service (HTTP and a raw TCP banner): both build without
  `--probe`, from the default probes;
* a program that opens a file by a computed name and prints the same either way: the
  missing-file rule catches its deletion although the output matches;
* hollow images (no Entrypoint, or its program missing) are refused;
* a docker-archive output is named after the source with tag `slim`, never `latest:latest`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slim.build import BuildOptions, build
from slim.cli import app
from slim.errors import EmitError, TraceError
from slim.pipeline import AnalyzeOptions, load_image
from tests.conftest import free_port, is_root, require
from tests.imagekit import M, layer_tar, write_docker_archive, write_oci

pytestmark = pytest.mark.trace
cli = CliRunner()
BUSYBOX = Path(__file__).resolve().parents[2] / "sample_images" / "busybox-static" / "busybox-static.oci"

SERVICE_C = r"""
/* svc HTTP_PORT BANNER_PORT: HTTP on one port (a page and the page it links to), and on the
   other a raw TCP service that sends the contents of /srv/banner.txt first, then echoes. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

static int listen_on(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 16)) { perror("listen"); exit(1); }
    return s;
}

static void send_file(int c, const char *path) {
    char buf[4096]; FILE *f = fopen(path, "r"); size_t n;
    if (!f) { dprintf(c, "missing %s\n", path); return; }
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) write(c, buf, n);
    fclose(f);
}

static void http(int c) {
    char req[2048] = {0}, path[256] = "/";
    read(c, req, sizeof req - 1);
    sscanf(req, "GET %255s", path);
    const char *file = strcmp(path, "/about.html") == 0 ? "/srv/about.html" : "/srv/index.html";
    dprintf(c, "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n");
    send_file(c, file);
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);  /* a client that hung up must not kill the server */
    int h = argc > 1 && atoi(argv[1]) ? listen_on(atoi(argv[1])) : -1;
    int t = argc > 2 && atoi(argv[2]) ? listen_on(atoi(argv[2])) : -1;
    for (;;) {
        fd_set r; FD_ZERO(&r);
        if (h >= 0) FD_SET(h, &r);
        if (t >= 0) FD_SET(t, &r);
        select(64, &r, 0, 0, 0);
        if (h >= 0 && FD_ISSET(h, &r)) { int c = accept(h, 0, 0); http(c); close(c); }
        if (t >= 0 && FD_ISSET(t, &r)) {
            int c = accept(t, 0, 0); char buf[512]; ssize_t n;
            send_file(c, "/srv/banner.txt");
            struct timeval tv = { 1, 0 }; setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            if ((n = read(c, buf, sizeof buf)) > 0) write(c, buf, n);
            close(c);
        }
    }
}
"""

QUIET_C = r"""
/* prints "ok" whether or not a file it opens by a computed name exists */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    char path[64];
    strcpy(path, "/etc/"); strcat(path, "opt"); strcat(path, "ional.conf");
    int fd = open(path, O_RDONLY);
    if (fd >= 0) close(fd);
    puts("ok");
    return 0;
}
"""


@pytest.fixture(autouse=True)
def sandbox_tools() -> None:
    require(bool(shutil.which("bwrap") and shutil.which("strace")), "bwrap and strace")
    require(is_root(), "the sandbox's user namespace (slim runs images as root in CI)")


def _busybox_members() -> list[M]:
    with load_image(f"oci:{BUSYBOX}") as loaded:
        data = loaded.rootfs.read("/bin/busybox")
    return [M("bin", "d"), M("bin/busybox", data=data, mode=0o755), M("bin/sh", "l", link="busybox"),
            M("bin/sort", "l", link="busybox"), M("bin/head", "l", link="busybox"),
            M("bin/echo", "l", link="busybox"), M("etc", "d"), M("tmp", "d")]


def _static(tmp: Path, name: str, source: str) -> bytes:
    require(shutil.which("gcc") is not None, "gcc builds the test program")
    (tmp / f"{name}.c").write_text(source)
    subprocess.run(["gcc", "-static", "-O1", "-o", str(tmp / name), str(tmp / f"{name}.c")],
                   check=True, capture_output=True)
    return (tmp / name).read_bytes()


def _image(tmp: Path, members: list[M], config: dict, name: str = "img") -> str:
    layout = tmp / name
    write_oci(str(layout), [layer_tar(members)], config)
    return f"oci:{layout}"


def _files(ref: str) -> set[str]:
    with load_image(ref) as loaded:
        return {e.path for e in loaded.rootfs.walk()}


def _build(ref: str, dest: str, **kw: object):  # type: ignore[no-untyped-def]
    options = BuildOptions(dest=dest, runner="sandbox", timeout=30.0, **kw)  # type: ignore[arg-type]
    return build(ref, AnalyzeOptions(), options)


def test_sh_c_pipeline_keeps_what_it_reads_or_fails(tmp_path: Path) -> None:
    members = [*_busybox_members(), M("etc/shells", data=b"/bin/sh\n/bin/ash\n/bin/bash\n")]
    ref = _image(tmp_path, members, {"Cmd": ["/bin/sh", "-c",
                                             "echo start; sort -r /etc/shells | head -n 2; echo end"]})
    outcome = _build(ref, f"oci:{tmp_path / 'out'}")  # default: the run feeds the keep set
    assert outcome.verified is True and outcome.result.build["mode"] == "both"
    assert "/etc/shells" in _files(f"oci:{tmp_path / 'out'}")
    # without the run's files and without repair, verification must see the difference
    res = cli.invoke(app, ["build", ref, "-o", f"oci:{tmp_path / 'static'}", "--mode", "static",
                           "--max-fixes", "0", "--runner", "sandbox"])
    if res.exit_code == 0:  # the static analysis found /etc/shells on its own
        assert "/etc/shells" in _files(f"oci:{tmp_path / 'static'}")
    else:
        assert res.exit_code == 1 and "verification FAILED" in res.output
        assert "missing file: /etc/shells" in res.output or "missing-file events" in res.output
        assert not (tmp_path / "static").exists()


def test_services_build_without_probes(tmp_path: Path) -> None:
    svc = _static(tmp_path, "svc", SERVICE_C)
    http_port, tcp_port = free_port(), free_port()
    members = [*_busybox_members(), M("srv", "d"), M("bin/svc", data=svc, mode=0o755),
               M("srv/index.html", data=b'<a href="about.html">about</a>\n'),
               M("srv/about.html", data=b"about this service\n"),
               M("srv/banner.txt", data=b"220 slim test service ready\n")]
    tcp_only = _image(tmp_path, members, {"Entrypoint": ["/bin/svc", "0", str(tcp_port)],
                                           "ExposedPorts": {f"{tcp_port}/tcp": {}}}, "tcp")
    outcome = _build(tcp_only, f"oci:{tmp_path / 'tcp-out'}")
    assert outcome.verified is True, outcome.failures
    specs = [c.spec for c in outcome.verification.comparisons]
    assert f"tcp:{tcp_port}" in specs  # the banner was read and compared
    assert "/srv/banner.txt" in _files(f"oci:{tmp_path / 'tcp-out'}")
    two = _image(tmp_path, members, {"Entrypoint": ["/bin/svc", str(http_port), str(tcp_port)],
                                      "ExposedPorts": {f"{http_port}/tcp": {}, f"{tcp_port}/tcp": {}}},
                 "two")
    outcome = _build(two, f"oci:{tmp_path / 'two-out'}")
    assert outcome.verified is True, outcome.failures
    specs = {c.spec for c in outcome.verification.comparisons}
    # the HTTP port was crawled (the linked page too), the other read as raw TCP
    assert {f"http:{http_port}", f"http:{http_port}/about.html", f"tcp:{tcp_port}"} <= specs
    assert {"/srv/about.html", "/srv/banner.txt"} <= _files(f"oci:{tmp_path / 'two-out'}")


def test_a_port_that_never_opens_is_reported_not_fatal(tmp_path: Path) -> None:
    svc = _static(tmp_path, "svc", SERVICE_C)
    http_port, dead_port = free_port(), free_port()
    members = [*_busybox_members(), M("srv", "d"), M("bin/svc", data=svc, mode=0o755),
               M("srv/index.html", data=b"home\n")]
    ref = _image(tmp_path, members, {"Entrypoint": ["/bin/svc", str(http_port), "0"],
                                     "ExposedPorts": {f"{http_port}/tcp": {}, f"{dead_port}/tcp": {}}})
    outcome = _build(ref, f"oci:{tmp_path / 'out'}")
    assert outcome.verified is True
    assert [d.spec for d in outcome.dropped] == [f"auto:{dead_port}"]
    with pytest.raises(TraceError, match="strict-probes"):
        _build(ref, f"oci:{tmp_path / 'strict'}", strict_probes=True)


def test_missing_file_is_caught_although_the_output_matches(tmp_path: Path) -> None:
    quiet = _static(tmp_path, "quiet", QUIET_C)
    members = [*_busybox_members(), M("bin/quiet", data=quiet, mode=0o755),
               M("etc/optional.conf", data=b"setting=1\n")]
    ref = _image(tmp_path, members, {"Entrypoint": ["/bin/quiet"]})
    outcome = _build(ref, f"oci:{tmp_path / 'out'}", mode="static")
    assert outcome.verified is True
    assert [f["path"] for f in outcome.fixes] == ["/etc/optional.conf"]
    assert "missing file: /etc/optional.conf" in outcome.fixes[0]["reason"]
    res = cli.invoke(app, ["build", ref, "-o", f"oci:{tmp_path / 'nofix'}", "--mode", "static",
                           "--max-fixes", "0", "--runner", "sandbox"])
    assert res.exit_code == 1, res.output
    assert "1 missing-file events (first: /etc/optional.conf)" in res.output
    assert "run: exit code 0, output 3 B identical" in res.output  # the output alone matched


def test_hollow_images_are_refused(tmp_path: Path) -> None:
    members = _busybox_members()
    no_cmd = _image(tmp_path, members, {}, "nocmd")
    with pytest.raises((TraceError, EmitError), match="neither Entrypoint nor Cmd"):
        _build(no_cmd, f"oci:{tmp_path / 'a'}")
    with pytest.raises(EmitError, match="neither Entrypoint nor Cmd"):
        _build(no_cmd, f"oci:{tmp_path / 'b'}", verify=False)
    missing = _image(tmp_path, members, {"Entrypoint": ["/bin/not-there"]}, "missing")
    with pytest.raises(EmitError, match="hollow"):
        _build(missing, f"oci:{tmp_path / 'c'}", verify=False)
    assert not any((tmp_path / n).exists() for n in "abc")


def test_docker_archive_names(tmp_path: Path) -> None:
    members = [*_busybox_members()]
    source = tmp_path / "src.tar"
    write_docker_archive(str(source), [layer_tar(members)], {"Cmd": ["/bin/echo", "hi"]},
                         repo_tags=["example.org/team/app:1.2"])
    _build(f"docker-archive:{source}", f"docker-archive:{tmp_path / 'out.tar'}")
    assert _repo_tags(tmp_path / "out.tar") == ["example.org/team/app:slim"]
    _build(f"docker-archive:{source}", f"docker-archive:{tmp_path / 'tagged.tar'}", tag="mine:v2")
    assert _repo_tags(tmp_path / "tagged.tar") == ["mine:v2"]
    anonymous = _image(tmp_path, members, {"Cmd": ["/bin/echo", "hi"]}, "anon")
    _build(anonymous, f"docker-archive:{tmp_path / 'anon.tar'}")
    assert _repo_tags(tmp_path / "anon.tar") == []


def _repo_tags(archive: Path) -> list[str]:
    with tarfile.open(archive) as tf:
        manifest = tf.extractfile("manifest.json")
        assert manifest is not None
        return list(json.load(manifest)[0]["RepoTags"])
