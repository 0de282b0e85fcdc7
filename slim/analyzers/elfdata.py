"""Data files a kept program opens by a name compiled into it.

Headers and imports say which libraries a program loads; the files it opens by name are in its
data. For every kept ELF object this analyzer reads the loadable segments that are not
executable (read-only and initialized data, where C string literals live), streamed in chunks:

* **Absolute path literals** (NUL-terminated strings starting with '/') that name an existing
  regular file of the image (through symlinks) become `config` edges: `/etc/mime.types`,
  libnode's `/usr/share/nodejs/acorn/dist/acorn.js`, PHP's `/usr/share/zoneinfo/zone.tab`.
  A literal naming a directory is not followed — programs name many directories they never
  read; the analyzers that know a program's configuration decide those — with one exception:
  a literal whose trailing components are printf conversions (`/usr/share/zoneinfo/%s`) names
  files chosen at run time inside that directory, which is then kept whole when it is at
  least three levels deep and holds at most MAX_FORMAT_DIR_FILES entries. The kernel's and
  scratch filesystems (/proc, /sys, /dev, /tmp, /run) are never kept for a literal. At most
  MAX_LITERALS literals and MAX_SCAN_BYTES bytes are looked at per file (an Unknown says when
  a file had more).
* **Go programs** (the buildinfo magic `\\xff Go buildinf:` of `debug/buildinfo`) keep Go
  string data unterminated, so their literals cannot be read this way; the standard library
  packages they contain are found by their function names (the runtime's function table
  survives `-ldflags=-s -w`), and the files those packages open by name are kept (GO_STDLIB
  below, each row citing the Go source that opens them), plus `SSL_CERT_FILE`,
  `SSL_CERT_DIR` and `ZONEINFO` from the image Env.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

from slim.analyzers.base import AnalysisContext, Analyzer, link_edges, tidy
from slim.elf import ELF_MAGIC, data_segments
from slim.errors import AnalysisError, SlimError
from slim.fs.layer import Capture
from slim.model import Edge, EntryKind, FileEntry, Unknown, normpath, under

log = logging.getLogger(__name__)

CHUNK = 1 << 20
OVERLAP = 4096  # a literal split across chunks is seen whole in the next one
MAX_LITERALS = 4096
MAX_SCAN_BYTES = 512 << 20  # data read per file; the rest of a larger one is reported
MAX_FORMAT_DIR_FILES = 5000
IGNORED = ("/proc", "/sys", "/dev", "/tmp", "/run", "/var/run")
GO_BUILDINFO_MAGIC = b"\xff Go buildinf:"

# the leading NUL is matched (not looked behind for): the engine searches for the literal
_LITERAL = re.compile(rb"\x00(/[A-Za-z0-9_.+@%,=~-][A-Za-z0-9_.+@%,=~/-]{0,254})(?=\x00)")
_CONVERSION = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?[a-z]")


@dataclass(frozen=True)
class GoFiles:
    """Files a Go standard library package opens by name, and the function that shows the
    package is in the program."""

    marker: bytes  # a function name from the runtime's function table
    why: str
    keep: tuple[str, ...]  # globs (slim.globs dialect)


GO_STDLIB = (
    GoFiles(b"mime.initMime", "mime.TypeByExtension loads the system MIME tables (mime/type_unix.go)",
            ("/usr/local/share/mime/globs2", "/usr/share/mime/globs2", "/etc/mime.types",
             "/etc/apache2/mime.types", "/etc/apache/mime.types", "/etc/httpd/conf/mime.types")),
    GoFiles(b"time.LoadLocation", "time.LoadLocation reads zone files by name (time/zoneinfo_unix.go)",
            ("/usr/share/zoneinfo/**", "/usr/share/lib/zoneinfo/**", "/usr/lib/locale/TZ/**",
             "/etc/zoneinfo/**")),
    GoFiles(b"time.initLocal", "the local time zone (time/zoneinfo_unix.go initLocal)",
            ("/etc/localtime",)),
    GoFiles(b"crypto/x509.loadSystemRoots", "x509.SystemCertPool reads the system CA bundles "
            "and directories (crypto/x509/root_linux.go)",
            ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
             "/etc/ssl/ca-bundle.pem", "/etc/pki/tls/cacert.pem",
             "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", "/etc/ssl/cert.pem",
             "/etc/ssl/certs/**", "/etc/pki/tls/certs/**")),
    GoFiles(b"net.parseNSSConfFile", "the resolver reads nsswitch.conf (net/nss.go)",
            ("/etc/nsswitch.conf",)),
    GoFiles(b"net.dnsReadConfig", "the DNS resolver reads resolv.conf (net/dnsconfig_unix.go)",
            ("/etc/resolv.conf",)),
    GoFiles(b"net.readHosts", "host lookups read /etc/hosts (net/hosts.go)", ("/etc/hosts",)),
    GoFiles(b"net.readServices", "port lookups read /etc/services (net/port_unix.go)",
            ("/etc/services",)),
    GoFiles(b"net.readProtocols", "protocol lookups read /etc/protocols (net/lookup_unix.go)",
            ("/etc/protocols",)),
    GoFiles(b"os/user.lookup", "os/user reads the account databases (os/user/lookup_unix.go)",
            ("/etc/passwd", "/etc/group")),
)
GO_ENV_FILES = (("SSL_CERT_FILE", "crypto/x509"), ("SSL_CERT_DIR", "crypto/x509"),
                ("ZONEINFO", "time"))


@dataclass(frozen=True)
class ElfData:
    """What one ELF file's data says: its absolute path literals and, for a Go program, the
    standard library rows whose marker it contains."""

    literals: tuple[str, ...]
    is_go: bool
    go_rows: tuple[GoFiles, ...]
    truncated: bool


class ElfDataCache:
    """ElfData per file for one run (the PHP analyzer asks too)."""

    def __init__(self, ctx: AnalysisContext) -> None:
        self.ctx = ctx
        self.memo: dict[str, ElfData] = {}

    def get(self, path: str) -> ElfData:
        """Raises AnalysisError when the file is no readable ELF."""
        if path not in self.memo:
            self.memo[path] = read_elf_data(self.ctx, path)
        return self.memo[path]


def _chunks(ctx: AnalysisContext, path: str, segments: list[tuple[int, int]]) -> Iterator[bytes]:
    """`segments` of `path` (offset, size), chunk by chunk up to MAX_SCAN_BYTES, each chunk
    starting with the last OVERLAP bytes of the one before (and a NUL before the first)."""
    budget = MAX_SCAN_BYTES
    with ctx.fs.open(path) as f:
        for offset, size in segments:
            f.seek(offset)
            left, tail = min(size, budget), b"\x00"
            budget -= left
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield tail + chunk
                tail = chunk[-OVERLAP:]


def read_elf_data(ctx: AnalysisContext, path: str) -> ElfData:
    """Scan the non-executable loadable segments of `path` (module doc). Raises AnalysisError."""
    literals: dict[str, None] = {}
    markers: set[bytes] = set()
    is_go = truncated = False
    segments = data_segments(ctx.fs, path)
    try:
        for data in _chunks(ctx, path, segments):
            is_go = is_go or GO_BUILDINFO_MAGIC in data
            if truncated:
                if is_go:
                    break  # nothing more to learn from this pass
                continue
            for m in _LITERAL.finditer(data):
                literals.setdefault(m.group(1).decode("ascii"), None)
                if len(literals) >= MAX_LITERALS:
                    truncated = True
                    break
        if is_go:  # a second pass, for Go programs only, for the standard library's markers
            wanted = [row.marker for row in GO_STDLIB]
            for data in _chunks(ctx, path, segments):
                markers.update(m for m in wanted if m not in markers and m in data)
    except (OSError, ValueError) as exc:
        raise AnalysisError(f"{path}: data not read: {exc}") from exc
    rows = tuple(row for row in GO_STDLIB if row.marker in markers)
    scanned = sum(size for _o, size in segments)
    return ElfData(tuple(literals), is_go, rows, truncated or scanned > MAX_SCAN_BYTES)


def literal_edges(ctx: AnalysisContext, path: str, literal: str) -> list[Edge]:
    """Edges for one path literal of ELF file `path` (module doc)."""
    if any(under(literal, p) for p in IGNORED):
        return []
    parts = literal.split("/")
    fmt = next((i for i, part in enumerate(parts) if "%" in part), None)
    if fmt is None:
        lit = normpath(literal)
        if lit == path or not ctx.fs.is_file(lit):
            return []
        return list(link_edges(ctx, path, lit, "config", f"path literal {literal} in its data"))
    if not all(_CONVERSION.search(p) for p in parts[fmt:]):
        return []
    directory = normpath("/".join(parts[:fmt]))
    if directory.count("/") < 3 or not ctx.fs.is_dir(directory):
        return []
    real = ctx.fs.realpath(directory)
    files = list(ctx.files_under(real))
    if len(files) > MAX_FORMAT_DIR_FILES:
        return []
    ev = f"files named at run time by {literal} in its data"
    out = list(link_edges(ctx, path, directory, "config", ev))
    out.extend(Edge(path, e.path, "config", ev) for e in files if e.kind is not EntryKind.DIR)
    return out


def go_edges(ctx: AnalysisContext, path: str, data: ElfData) -> list[Edge | Unknown]:
    """The files the Go standard library packages of program `path` open by name."""
    out: list[Edge | Unknown] = []
    for row in data.go_rows:
        for pattern in row.keep:
            for hit in ctx.fs.glob(pattern) if "*" in pattern else [pattern]:
                if ctx.fs.exists(hit) and not ctx.fs.is_dir(hit):
                    out.extend(link_edges(ctx, path, hit, "config", f"Go: {row.why}"))
    env = ctx.config.env_dict
    present = {row.marker.split(b".")[0].decode() for row in data.go_rows}
    for var, package in GO_ENV_FILES:
        value = env.get(var, "")
        if not value or package not in present:
            continue
        for item in value.split(":"):
            p = normpath(item)
            if ctx.fs.is_dir(p):
                out.extend(link_edges(ctx, path, p, "config", f"Go: {var}={value}"))
                out.extend(Edge(path, e.path, "config", f"Go: {var}={value}") for e in ctx.files_under(p))
            elif ctx.fs.exists(p):
                out.extend(link_edges(ctx, path, p, "config", f"Go: {var}={value}"))
    return out


class ElfDataAnalyzer(Analyzer):
    """Kept ELF objects → the data files their path literals name; Go programs → the files
    their standard library packages open."""

    name = "elf-data"
    capture = Capture(magics=(ELF_MAGIC,))

    def wants(self, entry: FileEntry) -> bool:
        if entry.kind not in (EntryKind.FILE, EntryKind.HARDLINK) or not self.ctx.fs.has_content(entry.path):
            return False
        try:
            return self.ctx.fs.read(entry.path, 4) == ELF_MAGIC
        except SlimError:
            return False

    def analyze(self, entry: FileEntry) -> list[Edge | Unknown]:
        path = entry.path
        try:
            data = self.ctx.service(ElfDataCache).get(path)
        except AnalysisError as exc:
            log.debug("%s", exc)
            return []  # the ELF analyzer reports a garbled file
        out: list[Edge | Unknown] = []
        for literal in data.literals:
            out.extend(literal_edges(self.ctx, path, literal))
        if data.truncated:
            out.append(Unknown(path, f"more than {MAX_LITERALS} path literals or {MAX_SCAN_BYTES} bytes of "
                                     "data; the rest not read"))
        if data.is_go:
            out.extend(go_edges(self.ctx, path, data))
        return tidy(out)


def literal_dirs(ctx: AnalysisContext, path: str, under_prefix: str = "/") -> list[str]:
    """The existing directories among ELF file `path`'s path literals (for analyzers that know
    what a program reads from them: PHP's configuration and extension directories)."""
    try:
        data = ctx.service(ElfDataCache).get(path)
    except AnalysisError:
        return []
    return [normpath(lit) for lit in data.literals
            if under(lit, under_prefix) and "%" not in lit and ctx.fs.is_dir(normpath(lit))]


__all__ = ["GO_STDLIB", "ElfData", "ElfDataAnalyzer", "ElfDataCache", "GoFiles", "literal_dirs",
           "read_elf_data"]
