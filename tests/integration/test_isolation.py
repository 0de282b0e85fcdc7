"""The isolation model holds against an image that tries to escape, under both runners.

Recipe: `escape.c` below, built with `gcc -static`, is the image's entrypoint. It tries the
three escapes the hostile-input review found and prints one line per attempt:

* `handle`: open_by_handle_at on a handle for the root inode of the filesystem under `/` (the
  "shocker" technique: with CAP_DAC_READ_SEARCH in the initial user namespace it opens the host's
  root directory through a bind mount);
* `sysctl`: write /proc/sys/kernel/domainname and /proc/sys/vm/drop_caches;
* `net`: connect to a TCP port the test listens on at the host's 127.0.0.1.

Every attempt must fail (`denied`), and the host listener must see no connection. The same
image then serves HTTP through a probe: isolation does not cost the probes.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from slim.image import load, prepare_root
from slim.model import ImageConfig
from slim.tracers import RUNNERS
from slim.tracers.probes import parse_probe
from tests.conftest import free_port, have_docker, is_root, require
from tests.imagekit import M, layer_tar, write_oci

ESCAPE_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void say(const char *what, int ok) { printf("%s %s %d\n", what, ok ? "ESCAPED" : "denied", errno); fflush(stdout); }

int main(int argc, char **argv) {
    /* 1. open_by_handle_at on the root inode (2) of the fs backing "/" */
    struct { struct file_handle h; unsigned char f[8]; } fh;
    int mount_fd = open("/", O_RDONLY | O_DIRECTORY);
    fh.h.handle_bytes = 8;
    fh.h.handle_type = 1;                   /* FILEID_INO32_GEN */
    unsigned int ino = 2, gen = 0;
    memcpy(fh.f, &ino, 4); memcpy(fh.f + 4, &gen, 4);
    errno = 0;
    int fd = open_by_handle_at(mount_fd, &fh.h, O_RDONLY | O_DIRECTORY);
    say("handle", fd >= 0);
    /* 2. sysctls */
    errno = 0;
    int s1 = open("/proc/sys/kernel/domainname", O_WRONLY);
    int w1 = s1 >= 0 && write(s1, "slim-escape", 11) == 11;
    say("sysctl-domainname", w1);
    errno = 0;
    int s2 = open("/proc/sys/vm/drop_caches", O_WRONLY);
    int w2 = s2 >= 0 && write(s2, "1", 1) == 1;
    say("sysctl-drop_caches", w2);
    /* 3. the host's loopback */
    errno = 0;
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    say("net", connect(c, (struct sockaddr *)&a, sizeof a) == 0);
    return 0;
}
"""


@pytest.fixture(scope="module")
def escape_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require(shutil.which("gcc") is not None, "gcc is needed to build the attacker binary")
    work = tmp_path_factory.mktemp("escape")
    (work / "escape.c").write_text(ESCAPE_C)
    subprocess.run(["gcc", "-static", "-O1", "-o", str(work / "escape"), str(work / "escape.c")],
                   check=True, capture_output=True)
    layout = work / "oci"
    tar = layer_tar([M("bin", "d"), M("bin/escape", data=(work / "escape").read_bytes(), mode=0o755),
                     M("proc", "d"), M("tmp", "d")])
    write_oci(str(layout), [tar], {"config": {"Entrypoint": ["/bin/escape"]}})
    return layout


class HostListener:
    """A TCP listener on the host's 127.0.0.1 that counts connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[HostListener]:
    lis = HostListener()
    yield lis
    lis.close()


@pytest.fixture
def work(slim_work: Path) -> str:
    return str(slim_work)


def _runner_available(name: str) -> None:
    require(is_root(), "the isolation model is what slim does as root")
    if name == "docker":
        require(have_docker(), "a Docker daemon")
    require(RUNNERS[name].available(), f"the {name} runner's tools")


@pytest.mark.parametrize("runner", ["sandbox", "docker"])
def test_an_image_cannot_escape(runner: str, escape_image: Path, listener: HostListener,
                                work: str) -> None:
    _runner_available(runner)
    with load(f"oci:{escape_image}") as loaded:
        root = prepare_root(loaded.image, work, private=True)
        config = ImageConfig(entrypoint=("/bin/escape", str(listener.port)))
        res = RUNNERS[runner]().run(root, config, [], timeout=60)
    lines = dict(line.split(" ", 1) for line in res.stdout_tail.splitlines())
    assert set(lines) == {"handle", "sysctl-domainname", "sysctl-drop_caches", "net"}, res.stdout_tail
    for attempt, outcome in lines.items():
        assert outcome.startswith("denied"), f"{runner}: {attempt}: {outcome}"
    assert listener.accepted == 0


@pytest.mark.parametrize("runner", ["sandbox", "docker"])
def test_probes_reach_an_isolated_app(runner: str, work: str) -> None:
    _runner_available(runner)
    sample = Path(__file__).resolve().parents[2] / "sample_images" / "busybox-static" / "busybox-static.oci"
    port = free_port()
    with load(f"oci:{sample}") as loaded:
        root = prepare_root(loaded.image, work, private=True)
        (Path(root) / "www").mkdir()
        (Path(root) / "www" / "index.html").write_text("isolated\n")
        config = ImageConfig(entrypoint=("/bin/busybox", "httpd", "-f", "-p", f"127.0.0.1:{port}",
                                         "-h", "/www"))
        res = RUNNERS[runner]().run(root, config, [parse_probe(f"http:{port}/index.html")], timeout=60)
    assert res.passed, res.probes
    assert res.observations[0].body == b"isolated\n"
    # the app listened in its own namespace: nothing on the host's port
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
