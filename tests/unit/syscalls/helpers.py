"""Test programs for the syscall tests: C sources whose syscalls are known by construction.

Recipe: each program is compiled at test time with the host's gcc (Debian 12, glibc 2.36):
`gcc -O2 -static` (static) or `gcc -O2` (dynamic, glibc). The rootfs built around them holds the
host's own libc.so.6 and ld-linux-x86-64.so.2 for the dynamic case.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import require

# Must make: write (write), getpid (getpid), getrandom (raw syscall() wrapper call), exit_group.
PROG_C = r"""
#define _GNU_SOURCE
#include <unistd.h>
#include <string.h>
#include <sys/syscall.h>
int main(void) {
    char buf[16];
    const char msg[] = "hello\n";
    write(1, msg, strlen(msg));
    getpid();
    syscall(SYS_getrandom, buf, sizeof buf, 0);
    return 0;
}
"""
MUST_MAKE = {"write", "getpid", "getrandom", "exit_group"}

# `deny NR`: makes raw syscall NR(0, 0, 0) and prints "ok" or "errno=N". No stdio, so its libc
# start-up is the same as PROG_C's.
DENY_C = r"""
#define _GNU_SOURCE
#include <unistd.h>
#include <errno.h>
#include <sys/syscall.h>
static long num(const char *s) { long n = 0; while (*s >= '0' && *s <= '9') n = n * 10 + (*s++ - '0'); return n; }
int main(int argc, char **argv) {
    char out[32]; int i = 0; long r;
    if (argc < 2) return 2;
    r = syscall(num(argv[1]), 0, 0, 0);
    if (r == -1) {
        int e = errno; const char *p = "errno="; char d[12]; int k = 0;
        while (*p) out[i++] = *p++;
        do { d[k++] = '0' + e % 10; e /= 10; } while (e);
        while (k) out[i++] = d[--k];
    } else { out[i++] = 'o'; out[i++] = 'k'; }
    out[i++] = '\n';
    write(1, out, i);
    return 0;
}
"""

HOST_LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
HOST_LDSO = "/lib64/ld-linux-x86-64.so.2"


def compile_c(source: str, out: Path, *flags: str) -> Path:
    """Compile `source` with gcc into `out` (skips, or fails in CI, without gcc)."""
    require(shutil.which("gcc") is not None, "gcc not installed")
    src = out.with_suffix(".c")
    src.write_text(source)
    cp = subprocess.run(["gcc", "-O2", *flags, "-o", str(out), str(src)],
                        capture_output=True, text=True)
    if cp.returncode != 0:
        require(False, f"gcc cannot build the test program: {cp.stderr.strip()[-300:]}")
    return out


def build_rootfs(root: Path) -> dict[str, str]:
    """A rootfs with /bin/prog-static, /bin/prog-dyn, /bin/deny (static), host libc + ld.so."""
    work = root.parent / (root.name + "-build")
    work.mkdir(parents=True, exist_ok=True)
    (root / "bin").mkdir(parents=True, exist_ok=True)
    compile_c(PROG_C, work / "prog-static", "-static")
    compile_c(PROG_C, work / "prog-dyn")
    compile_c(DENY_C, work / "deny", "-static")
    for name in ("prog-static", "prog-dyn", "deny"):
        shutil.copy2(work / name, root / "bin" / name)
    require(os.path.exists(HOST_LIBC) and os.path.exists(HOST_LDSO), "host glibc not found")
    (root / "lib/x86_64-linux-gnu").mkdir(parents=True, exist_ok=True)
    (root / "lib64").mkdir(parents=True, exist_ok=True)
    shutil.copy2(HOST_LIBC, root / HOST_LIBC.lstrip("/"))
    shutil.copy2(HOST_LDSO, root / HOST_LDSO.lstrip("/"))
    return {"static": "/bin/prog-static", "dynamic": "/bin/prog-dyn", "deny": "/bin/deny",
            "libc": HOST_LIBC, "ldso": HOST_LDSO}


def strace_syscalls(argv: list[str], tmp: Path) -> set[str]:
    """Names `strace -f -c` reports for running argv (skips, or fails in CI, without strace)."""
    require(shutil.which("strace") is not None, "strace not installed")
    log = tmp / "strace.txt"
    cp = subprocess.run(["strace", "-f", "-c", "-o", str(log), *argv], capture_output=True)
    if cp.returncode != 0 or not log.exists():
        require(False, f"strace cannot trace here: {cp.stderr.decode(errors='replace')[-200:]}")
    names = set()
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            names.add(parts[-1])
    return names
