"""Package databases: which installed package owns which image path (dpkg and apk).

dpkg (dpkg's lib/dpkg/parse.c, deb-control(5), dpkg-query(1)):
  /var/lib/dpkg/status holds one RFC-822 stanza per package (Package, Status, Version,
  Architecture, Installed-Size in KiB, Conffiles); the file list of a package is
  /var/lib/dpkg/info/<pkg>.list, or <pkg>:<arch>.list for a `Multi-Arch: same` package;
  <pkg>[:arch].conffiles lists its conffiles. Distroless images carry
  /var/lib/dpkg/status.d/<pkg> stanzas with <pkg>.md5sums instead ("md5  relative/path").
apk (apk-tools' src/database.c, the "installed" database format):
  /lib/apk/db/installed holds blank-line separated records; P: name, V: version, A: arch,
  I: installed size, F: a folder (relative), R: a file in the last F folder.

Package lists name paths as the package built them (/lib/x86_64-linux-gnu/libc.so.6), while a
merged-/usr image stores that file under /usr/lib/… behind the /lib -> usr/lib link. Every path
is normalized by resolving its DIRECTORY part in the RootFS (never the last component, so a
package's own symlinks stay themselves), so both spellings map to one key.

Package membership is attribution only: it never pulls a whole package into the keep set.
`package_edges` adds the one thing packages do imply: a kept daemon's conffiles.
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass, field

from slim.analyzers.base import AnalysisContext, Analyzer
from slim.errors import AnalysisError
from slim.fs.layer import Capture
from slim.fs.rootfs import RootFS
from slim.model import Edge, EntryKind, FileEntry, Unknown, normpath
from slim.result import PackageSummary

log = logging.getLogger(__name__)

DPKG_STATUS = "/var/lib/dpkg/status"
DPKG_STATUS_D = "/var/lib/dpkg/status.d"
DPKG_INFO = "/var/lib/dpkg/info"
APK_INSTALLED = "/lib/apk/db/installed"
MAX_DB_BYTES = 256 << 20

# dpkg states whose files are on disk (dpkg-query(1) "Status" third word); "config-files" and
# "not-installed" leave at most conffiles behind, so their lists are not attributed.
DPKG_ON_DISK = {"installed", "half-configured", "unpacked", "half-installed",
                "triggers-awaited", "triggers-pending"}


@dataclass(frozen=True)
class Package:
    """One installed package and the (normalized) image paths it owns."""

    name: str
    version: str
    manager: str  # dpkg | apk
    arch: str = ""
    installed_size: int = 0  # bytes, as the database records it
    files: tuple[str, ...] = ()
    conffiles: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.name}:{self.arch}" if self.arch else self.name


@dataclass
class PackageDB:
    """Packages of an image with a path → owners index (see the module doc on normalization)."""

    fs: RootFS
    packages: list[Package] = field(default_factory=list)
    _owners: dict[str, list[Package]] = field(default_factory=dict, repr=False)
    _dir_cache: dict[str, str] = field(default_factory=dict, repr=False)

    def normalize(self, path: str) -> str:
        """`path` with its directory part resolved through the image's symlinks."""
        path = normpath(path)
        if path == "/":
            return path
        parent, base = posixpath.split(path)
        real = self._dir_cache.get(parent)
        if real is None:
            real = self.fs.resolve(parent).path if parent != "/" else "/"
            self._dir_cache[parent] = real
        return posixpath.join(real, base)

    def add(self, pkg: Package) -> None:
        files = tuple(sorted({self.normalize(f) for f in pkg.files}))
        conffiles = tuple(sorted({self.normalize(f) for f in pkg.conffiles}))
        pkg = Package(pkg.name, pkg.version, pkg.manager, pkg.arch, pkg.installed_size, files, conffiles)
        self.packages.append(pkg)
        for f in files:
            self._owners.setdefault(f, []).append(pkg)

    def owner(self, path: str) -> list[Package]:
        """Packages that list `path` (in either spelling of its directory), sorted by name."""
        return sorted(self._owners.get(self.normalize(path), []), key=lambda p: p.key)

    def get(self, name: str) -> Package | None:
        return next((p for p in self.packages if p.name == name or p.key == name), None)

    def __len__(self) -> int:
        return len(self.packages)


# -- parsing ---------------------------------------------------------------------------------


def parse_stanzas(text: str) -> list[dict[str, str]]:
    """RFC-822 style control stanzas (deb-control(5)): `Field: value`, continuation lines
    start with a space or tab; a blank line ends a stanza. Field names are case-insensitive."""
    out: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
            cur, last = {}, ""
            continue
        if line[0] in " \t" and last:
            cur[last] += "\n" + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        last = name.strip().lower()
        cur[last] = value.strip()
    if cur:
        out.append(cur)
    return out


def _read(fs: RootFS, path: str) -> str | None:
    try:
        return fs.read(path, MAX_DB_BYTES).decode("utf-8", errors="replace")
    except AnalysisError as exc:
        log.debug("%s: %s", path, exc)
        return None


def _lines(text: str | None) -> list[str]:
    return [ln.strip() for ln in (text or "").splitlines() if ln.strip()]


def _conffiles_field(value: str) -> list[str]:
    # Conffiles: lines " /etc/x md5 [obsolete]"
    return [ln.split()[0] for ln in value.splitlines() if ln.strip().startswith("/")]


def _read_dpkg(fs: RootFS) -> list[Package]:
    stanzas: list[tuple[dict[str, str], str]] = []
    text = _read(fs, DPKG_STATUS) if fs.exists(DPKG_STATUS) else None
    if text is not None:
        stanzas.extend((s, "") for s in parse_stanzas(text))
    if fs.is_dir(DPKG_STATUS_D):  # distroless
        for name in sorted(fs.listdir(DPKG_STATUS_D)):
            if "." in name and name.rsplit(".", 1)[1] in ("md5sums", "list"):
                continue
            sub = _read(fs, f"{DPKG_STATUS_D}/{name}")
            if sub is not None:
                stanzas.extend((s, name) for s in parse_stanzas(sub))
    out: list[Package] = []
    for stanza, status_d_name in stanzas:
        name = stanza.get("package", "")
        if not name:
            continue
        status = stanza.get("status", "install ok installed").split()
        if status and status[-1] not in DPKG_ON_DISK:
            continue
        arch = stanza.get("architecture", "")
        version = stanza.get("version", "")
        try:
            size = int(stanza.get("installed-size", "0") or 0) * 1024
        except ValueError:
            size = 0
        files: list[str] = []
        conffiles = _conffiles_field(stanza.get("conffiles", ""))
        found = False
        for base in ([f"{name}:{arch}", name] if arch else [name]):
            listing = f"{DPKG_INFO}/{base}.list"
            if fs.exists(listing):
                files = [ln for ln in _lines(_read(fs, listing)) if ln.startswith("/")]
                conffiles += [ln for ln in _lines(_read(fs, f"{DPKG_INFO}/{base}.conffiles"))
                              if ln.startswith("/")]
                found = True
                break
        if not found and status_d_name:
            md5 = f"{DPKG_STATUS_D}/{status_d_name}.md5sums"
            for ln in _lines(_read(fs, md5) if fs.exists(md5) else None):
                parts = ln.split(None, 1)
                if len(parts) == 2:
                    files.append("/" + parts[1].lstrip("/"))
        files = [f for f in files if f not in ("/", "/.")]
        out.append(Package(name, version, "dpkg", arch, size, tuple(files), tuple(conffiles)))
    return out


def _read_apk(fs: RootFS) -> list[Package]:
    text = _read(fs, APK_INSTALLED) if fs.exists(APK_INSTALLED) else None
    if text is None:
        return []
    out: list[Package] = []
    for record in text.split("\n\n"):
        name = version = arch = ""
        size = 0
        folder = ""
        files: list[str] = []
        for line in record.splitlines():
            if len(line) < 2 or line[1] != ":":
                continue
            tag, value = line[0], line[2:]
            if tag == "P":
                name = value
            elif tag == "V":
                version = value
            elif tag == "A":
                arch = value
            elif tag == "I":
                size = int(value) if value.isdigit() else 0
            elif tag == "F":
                folder = value.strip("/")
            elif tag == "R":
                files.append("/" + posixpath.join(folder, value) if folder else "/" + value)
        if not name:
            continue
        # apk has no conffile list: it protects etc/ (apk-tools' default protected_paths)
        conffiles = [f for f in files if f.startswith("/etc/")]
        out.append(Package(name, version, "apk", arch, size, tuple(files), tuple(conffiles)))
    return out


def read_packages(fs: RootFS) -> PackageDB:
    """Every package of the image's dpkg and apk databases (either may be absent).

    Unreadable database files are skipped (logged at debug); never raises for bad input.
    """
    db = PackageDB(fs)
    for pkg in sorted(_read_dpkg(fs) + _read_apk(fs), key=lambda p: (p.name, p.arch, p.manager)):
        db.add(pkg)
    log.debug("package databases: %d packages", len(db))
    return db


# -- summaries and edges ---------------------------------------------------------------------


class Packages:
    """The image's package database, read once per analysis run (a service of the context)."""

    def __init__(self, ctx: AnalysisContext) -> None:
        self.db = read_packages(ctx.fs)

    @property
    def present(self) -> PackageDB | None:
        """The database, or None when the image has no package manager's records."""
        return self.db if self.db.packages else None


def package_db(ctx: AnalysisContext) -> PackageDB:
    """The image's package database, read once per analysis run."""
    return ctx.service(Packages).db


def _file_size(fs: RootFS, path: str) -> int:
    entry = fs.get(path)
    if entry is None:
        return 0
    if entry.kind is EntryKind.FILE:
        return entry.size
    if entry.kind is EntryKind.HARDLINK:
        target = fs.get(entry.linkname)
        return target.size if target is not None else 0
    return 0


def package_summaries(db: PackageDB, fs: RootFS, kept_paths: set[str]) -> list[PackageSummary]:
    """Per package: bytes of its regular files in the squashed fs, bytes kept, `unused` when
    none of its files is kept. Sorted by name (then manager)."""
    kept = {db.normalize(p) for p in kept_paths}
    out: list[PackageSummary] = []
    for pkg in db.packages:
        size = kept_bytes = count = 0
        any_kept = False
        for f in pkg.files:
            entry = fs.get(f)
            if entry is None or entry.kind is EntryKind.DIR:
                continue
            count += 1
            n = _file_size(fs, f)
            size += n
            if f in kept:
                any_kept = True
                kept_bytes += n
        out.append(PackageSummary(pkg.name, pkg.version, pkg.manager, size, kept_bytes,
                                  unused=not any_kept, file_count=count))
    return sorted(out, key=lambda s: (s.name, s.manager, s.version))


# Conffiles read by the host's service managers, never by the program itself: sysvinit scripts
# and runlevel links, cron jobs, logrotate and systemd/upstart units. A container's entrypoint is
# the program; these only pull in the tools they run (start-stop-daemon, find, tar …).
_SERVICE_MANAGER_DIRS = ("/etc/init.d/", "/etc/init/", "/etc/cron.d/", "/etc/cron.daily/",
                         "/etc/cron.hourly/", "/etc/cron.weekly/", "/etc/cron.monthly/",
                         "/etc/logrotate.d/", "/etc/systemd/", "/etc/rc0.d/", "/etc/rc1.d/",
                         "/etc/rc2.d/", "/etc/rc3.d/", "/etc/rc4.d/", "/etc/rc5.d/", "/etc/rc6.d/",
                         "/etc/rcS.d/")


_SERVICE_MANAGERS = frozenset({"cron", "crond", "anacron", "logrotate", "init", "systemd",
                               "runit", "start-stop-daemon", "service", "invoke-rc.d"})


def _service_manager_file(path: str) -> bool:
    return path.startswith(_SERVICE_MANAGER_DIRS)


def package_edges(db: PackageDB, path: str) -> list[Edge]:
    """For a kept executable (a daemon, a tool), edges to the conffiles of its package(s).

    Libraries and data files imply nothing: only regular files with an execute bit that are
    not shared objects. Evidence names the package.
    """
    entry = db.fs.stat(path)
    if entry is None or not entry.is_file or not entry.mode & 0o111:
        return []
    base = posixpath.basename(path)
    if ".so" in base:
        return []
    out: list[Edge] = []
    manager = base in _SERVICE_MANAGERS  # cron's own cron.d, logrotate's own logrotate.d
    for pkg in db.owner(path):
        for conf in pkg.conffiles:
            if conf != path and db.fs.lexists(conf) and (manager or not _service_manager_file(conf)):
                out.append(Edge(path, conf, "package", f"conffile of {pkg.manager} package {pkg.name}"))
    return sorted(set(out))


class PackageAnalyzer(Analyzer):
    """A kept executable → the conffiles of the package(s) that own it (`package_edges`)."""

    name = "packages"
    capture = Capture(globs=(DPKG_STATUS, f"{DPKG_INFO}/*.list", f"{DPKG_INFO}/*.conffiles",
                             f"{DPKG_STATUS_D}/*", APK_INSTALLED))

    def wants(self, entry: FileEntry) -> bool:
        return entry.is_file and bool(entry.mode & 0o111) and ".so" not in posixpath.basename(entry.path)

    def analyze(self, entry: FileEntry) -> list[Edge | Unknown]:
        db = self.ctx.service(Packages).present
        return list(package_edges(db, entry.path)) if db is not None else []


__all__ = [
    "Package",
    "PackageAnalyzer",
    "PackageDB",
    "Packages",
    "package_db",
    "package_edges",
    "package_summaries",
    "parse_stanzas",
    "read_packages",
]
