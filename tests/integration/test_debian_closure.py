"""Issue 2 acceptance: on a real Debian root (debootstrap minbase bookworm + lighttpd + curl), every
shared library a program really maps is in slim's static keep set.

Each program runs once under `strace -f -e trace=openat,execve,chroot` in `chroot DIR`; the
libraries are the successful openat(2) of `*.so*` paths after the chroot(2) call (before it, the
host's chroot binary loads the host's libc). The static keep set comes from `rootfs:DIR` with the
program as the Entrypoint (DIR/.slim-config.json, slim/sources/directory.py).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slim.closure import ClosureBuilder
from slim.model import ROOT, Edge, ImageConfig
from slim.pipeline import AnalyzeOptions, analyze, load_image
from slim.sources.directory import CONFIG_SIDECAR
from tests.conftest import require

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# strace(1) -f lines: "PID syscall(args) = RESULT"; a call interrupted by another process's
# output is split into "PID openat(… <unfinished ...>" and "PID <... openat resumed>…) = RESULT"
OPENAT = re.compile(r'^(\d+)\s+openat\(AT_FDCWD, "([^"]+)", [^)]*\) = (-?\d+)')
UNFINISHED = re.compile(r'^(\d+)\s+openat\(AT_FDCWD, "([^"]+)",.*<unfinished \.\.\.>$')
RESUMED = re.compile(r"^(\d+)\s+<\.\.\. openat resumed>.*\) = (-?\d+)")
CHROOT = re.compile(r'^(\d+)\s+chroot\("([^"]+)"\) = 0')
SHARED_OBJECT = re.compile(r"\.so(\.[0-9.]+)?$")


def mapped_libraries(strace_log: str) -> set[str]:
    """Shared objects opened successfully after the chroot(2) call (paths inside the root)."""
    opened: list[tuple[str, int]] = []
    pending: dict[str, str] = {}
    inside = False
    with open(strace_log, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if CHROOT.match(line):
                inside = True
            elif not inside:
                continue
            elif m := OPENAT.match(line):
                opened.append((m.group(2), int(m.group(3))))
            elif m := UNFINISHED.match(line):
                pending[m.group(1)] = m.group(2)
            elif (m := RESUMED.match(line)) and m.group(1) in pending:
                opened.append((pending.pop(m.group(1)), int(m.group(2))))
    return {path for path, fd in opened if fd >= 0 and SHARED_OBJECT.search(path)}


def traced_run(root: str, argv: list[str], out: Path) -> set[str]:
    """Run `argv` in `chroot root` under strace; the libraries it mapped."""
    require(shutil.which("strace") is not None, "strace is not installed")
    strace_log = out / "strace.log"
    proc = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=openat,execve,chroot", "-o", str(strace_log),
         "chroot", root, *argv],
        env={"PATH": PATH, "LANG": "C.UTF-8", "HOME": "/root"},
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, f"{argv}: exit {proc.returncode}: {proc.stderr[-2000:]}"
    libs = mapped_libraries(str(strace_log))
    assert any("/libc.so" in lib for lib in libs), f"{argv}: the trace saw no libc (log parsing broken?)"
    return libs


@contextlib.contextmanager
def entrypoint(root: str, argv: list[str]) -> Iterator[None]:
    """DIR/.slim-config.json naming `argv` as the Entrypoint; removed afterwards."""
    sidecar = os.path.join(root, CONFIG_SIDECAR)
    with open(sidecar, "w") as f:
        json.dump({"config": {"Entrypoint": argv, "Env": [f"PATH={PATH}"]}}, f)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(sidecar)


def assert_libraries_kept(root: str, argv: list[str], libs: set[str], what: str) -> None:
    """Every library in `libs` — the file the loader read and every symlink on the way there
    (/lib -> usr/lib on merged /usr) — is in the static keep set of `rootfs:root` run as `argv`."""
    with entrypoint(root, argv):
        t0 = time.monotonic()
        loaded = load_image(f"rootfs:{root}")
    with loaded:
        t1 = time.monotonic()
        analysis = analyze(loaded, AnalyzeOptions())
        result, closure = analysis.result, analysis.closure
        t2 = time.monotonic()
        assert closure is not None
        missing = []
        for lib in sorted(libs):
            resolved = loaded.rootfs.resolve(lib)
            assert resolved.exists, f"{lib}: opened in the chroot but absent from rootfs:{root}"
            absent = sorted({resolved.path, *resolved.links} - closure.keep)
            if absent:
                missing.append(f"{lib}: {', '.join(absent)}")
    kept = result.reachable.size_bytes if result.reachable else 0
    total = result.image.size_bytes
    # shown with -s (and in the report of the acceptance run): keep bytes vs image bytes
    print(f"\n{what}: keep {kept} of {total} bytes ({100.0 * kept / max(total, 1):.1f} %), "
          f"{len(libs)} libraries mapped; read {t1 - t0:.2f}s, analysis {t2 - t1:.2f}s")
    assert missing == [], f"{what}: mapped but not in the static keep set: {missing}"
    assert 0 < kept < total


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[int]:
    """A python http.server on 127.0.0.1 (an ephemeral port) serving one small file."""
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("hello from the host\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.root
@pytest.mark.slow
def test_curl_libraries_are_in_the_static_keep_set(debian_rootfs: str, http_server: int,
                                                   tmp_path: Path) -> None:
    argv = ["/usr/bin/curl", "-sS", "-o", "/dev/null", "--fail", f"http://127.0.0.1:{http_server}/"]
    libs = traced_run(debian_rootfs, argv, tmp_path)
    assert any("libcurl.so" in lib for lib in libs)
    assert_libraries_kept(debian_rootfs, ["/usr/bin/curl"], libs, "curl")


@pytest.mark.root
@pytest.mark.slow
def test_lighttpd_libraries_are_in_the_static_keep_set(debian_rootfs: str, tmp_path: Path) -> None:
    # -tt: test the configuration including the preflight (modules loaded, include_shell helpers run)
    libs = traced_run(debian_rootfs, ["/usr/sbin/lighttpd", "-tt", "-f", "/etc/lighttpd/lighttpd.conf"],
                      tmp_path)
    assert any("libpcre2" in lib for lib in libs)
    assert_libraries_kept(debian_rootfs, ["/usr/sbin/lighttpd", "-D", "-f", "/etc/lighttpd/lighttpd.conf"],
                          libs, "lighttpd")


@pytest.mark.root
@pytest.mark.slow
def test_no_mount_left_in_the_root(debian_rootfs: str) -> None:
    with open("/proc/self/mountinfo") as f:
        assert os.path.realpath(debian_rootfs) not in f.read()
    assert not os.path.exists(os.path.join(debian_rootfs, CONFIG_SIDECAR))


def test_edges_from_a_library_found_through_a_directory_link_are_followed(tmp_path: Path) -> None:
    """Regression (found by the curl test above): ld.so.cache names /lib/x86_64-linux-gnu/libcurl.so.4
    on a merged-/usr image, so the ldso analyzer emits libcurl's DT_NEEDED edges from that path,
    while the node reached from ROOT is /usr/lib/…; the edges must start at the canonical node."""
    (tmp_path / "usr/lib/x").mkdir(parents=True)
    for name in ("a.so", "b.so"):
        (tmp_path / "usr/lib/x" / name).write_bytes(b"not elf")
    (tmp_path / "lib").symlink_to("usr/lib")
    with load_image(f"rootfs:{tmp_path}") as loaded:
        builder = ClosureBuilder(loaded.rootfs, ImageConfig())
        builder.add(Edge(ROOT, "/lib/x/a.so", "needed", "test"))
        builder.add(Edge("/lib/x/a.so", "/lib/x/b.so", "needed", "test"))
        keep = builder.run().keep
    assert {"/usr/lib/x/a.so", "/usr/lib/x/b.so", "/lib"} <= keep


def test_strace_log_parsing(tmp_path: Path) -> None:
    """Only successful opens of shared objects after chroot(2), split lines joined per pid."""
    log_file = tmp_path / "strace.log"
    log_file.write_text(
        '1 openat(AT_FDCWD, "/lib/host.so.6", O_RDONLY) = 3\n'
        '1 chroot("/x") = 0\n'
        '1 openat(AT_FDCWD, "/lib/a.so.1", O_RDONLY|O_CLOEXEC) = 3\n'
        '2 openat(AT_FDCWD, "/lib/b.so", O_RDONLY|O_CLOEXEC <unfinished ...>\n'
        '1 openat(AT_FDCWD, "/lib/c.so.2", O_RDONLY|O_CLOEXEC) = -1 ENOENT (No such file or directory)\n'
        "2 <... openat resumed>) = 4\n"
        '1 openat(AT_FDCWD, "/etc/ld.so.cache", O_RDONLY|O_CLOEXEC) = 3\n'
    )
    assert mapped_libraries(str(log_file)) == {"/lib/a.so.1", "/lib/b.so"}
