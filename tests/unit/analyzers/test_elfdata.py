"""ElfDataAnalyzer: path literals in a kept ELF's data, Go programs' standard library files.

The binaries are compiled with gcc (recipe: the C sources below); a "Go" program is a C program
carrying the buildinfo magic and the function names the Go runtime's table would hold.
"""

from __future__ import annotations

from pathlib import Path

from slim.analyzers.elfdata import ElfDataAnalyzer, ElfDataCache
from slim.model import Edge, Unknown
from tests.unit.analyzers.conftest import cc, need_gcc
from tests.unit.analyzers.test_python import context, write_tree

C_PROGRAM = r"""
#include <stdio.h>
const char *files[] = {"/usr/share/nodejs/acorn/dist/acorn.js", "/etc/app/app.conf",
                       "/usr/share/app", "/usr/share/zoneinfo/%s", "/usr/lib/%s",
                       "/proc/self/maps", "/etc/missing.conf", "/etc/link.conf"};
int main(void) { for (int i = 0; i < 8; i++) puts(files[i]); return 0; }
"""
GO_LIKE = r"""
#include <stdio.h>
/* what `go build` leaves: the buildinfo magic, function names of the runtime's table, and
   string data without NULs between literals */
const char buildinfo[] = "\xff Go buildinf:\x08\x02";
const char funcs[] = "mime.initMimeUnix\0time.LoadLocation\0crypto/x509.loadSystemRoots\0net.readHosts";
const char data[] = "/etc/mime.types/etc/apache2/mime.types";
int main(void) { puts(buildinfo); puts(funcs); puts(data); return 0; }
"""
DATA: dict[str, str | bytes] = {
    "/usr/share/nodejs/acorn/dist/acorn.js": "module.exports = 1\n",
    "/etc/app/app.conf": "x=1\n",
    "/usr/share/app/data.txt": "",
    "/usr/share/zoneinfo/Europe/Paris": "TZif",
    "/usr/share/zoneinfo/UTC": "TZif",
    "/usr/lib/big.so": "",
    "/etc/real.conf": "",
    "/etc/mime.types": "application/x-odt odt\n",
    "/etc/ssl/certs/ca-certificates.crt": "-----BEGIN CERTIFICATE-----\n",
    "/etc/ssl/certs/a.pem": "-----BEGIN CERTIFICATE-----\n",
    "/etc/hosts": "127.0.0.1 localhost\n",
    "/etc/resolv.conf": "",
}


def test_path_literals_of_a_c_program(tmp_path: Path) -> None:
    need_gcc()
    write_tree(tmp_path, DATA, {"/etc/link.conf": "real.conf"}, {"Env": ["PATH=/usr/bin"]})
    cc(tmp_path, "/usr/bin/prog", C_PROGRAM)
    with context(tmp_path) as ctx:
        entry = ctx.fs.stat("/usr/bin/prog")
        analyzer = ElfDataAnalyzer(ctx)
        assert entry is not None and analyzer.wants(entry)
        items = analyzer.analyze(entry)
        data = ctx.service(ElfDataCache).get("/usr/bin/prog")
        assert not data.is_go and "/etc/app/app.conf" in data.literals
    got = {e.dst for e in items if isinstance(e, Edge)}
    assert {"/usr/share/nodejs/acorn/dist/acorn.js", "/etc/app/app.conf",
            "/etc/link.conf", "/etc/real.conf"} <= got  # a link to a file: both
    # a printf conversion names files at run time: the directory is kept whole
    assert {"/usr/share/zoneinfo", "/usr/share/zoneinfo/Europe/Paris", "/usr/share/zoneinfo/UTC"} <= got
    # plain directories, shallow format directories, /proc and missing files are not
    for absent in ("/usr/share/app", "/usr/share/app/data.txt", "/usr/lib/big.so", "/proc/self/maps",
                   "/etc/missing.conf"):
        assert absent not in got, absent
    assert all(e.kind == "config" for e in items if isinstance(e, Edge))
    assert not [u for u in items if isinstance(u, Unknown)]


def test_go_program_keeps_what_its_stdlib_packages_open(tmp_path: Path) -> None:
    need_gcc()
    write_tree(tmp_path, DATA, None, {"Env": ["PATH=/usr/bin", "SSL_CERT_DIR=/etc/app"]})
    cc(tmp_path, "/usr/local/bin/server", GO_LIKE, "-static")
    with context(tmp_path) as ctx:
        entry = ctx.fs.stat("/usr/local/bin/server")
        assert entry is not None
        items = ElfDataAnalyzer(ctx).analyze(entry)
        data = ctx.service(ElfDataCache).get("/usr/local/bin/server")
        assert data.is_go
        assert {r.marker for r in data.go_rows} == {b"mime.initMime", b"time.LoadLocation",
                                                     b"crypto/x509.loadSystemRoots", b"net.readHosts"}
    got = {e.dst for e in items if isinstance(e, Edge)}
    assert {"/etc/mime.types", "/usr/share/zoneinfo/Europe/Paris", "/etc/ssl/certs/ca-certificates.crt",
            "/etc/ssl/certs/a.pem", "/etc/hosts", "/etc/app/app.conf"} <= got  # SSL_CERT_DIR too
    assert "/etc/resolv.conf" not in got  # net.dnsReadConfig is not in this program
    mime = [e for e in items if isinstance(e, Edge) and e.dst == "/etc/mime.types"]
    assert "mime/type_unix.go" in mime[0].evidence


def test_garbled_elf_is_left_to_the_elf_analyzer(tmp_path: Path) -> None:
    write_tree(tmp_path, {"/usr/bin/bad": b"\x7fELF\x02\x01\x01garbage"}, None, {})
    with context(tmp_path) as ctx:
        entry = ctx.fs.stat("/usr/bin/bad")
        assert entry is not None
        assert ElfDataAnalyzer(ctx).analyze(entry) == []
