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

Language packages (`read_language_packages`) are found by their own metadata: Python
`*.dist-info/RECORD` (PEP 376/627: CSV rows "path,hash,size" relative to the site directory),
npm `node_modules/[@scope/]NAME/package.json` (the package owns its directory minus nested
node_modules), RubyGems `specifications/NAME-VERSION.gemspec` (owning `gems/NAME-VERSION/` and
`extensions/*/*/NAME-VERSION/`) and Java `*.jar` files (one file each; name and version from
`META-INF/maven/*/*/pom.properties`, else the manifest, else the file name). A language package
whose metadata a dpkg/apk package owns is that OS package's business and is not listed twice.

The minimal image carries a rewritten database (`rewrite_databases`): only packages that keep at
least one file, their file lists, md5sums and conffiles trimmed to what is kept, a partly kept
dpkg package marked `X-Slim-Trimmed:`, kept Python distributions' RECORD trimmed likewise, and
npm's hidden lockfile (node_modules/.package-lock.json) without the packages that are gone. An
npm package.json or a gemspec describes its package, not its files: kept as it is.
`metadata_paths` names what the minimal image adds so scanners can read it (os-release, kept
dpkg packages' /usr/share/doc/NAME/copyright, the dist-info/package.json/gemspec of kept
language packages).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import logging
import posixpath
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field

from slim.analyzers.base import AnalysisContext, Analyzer
from slim.errors import AnalysisError, SlimError
from slim.fs.layer import Capture
from slim.fs.rootfs import RootFS
from slim.model import Edge, EntryKind, FileEntry, Unknown, ancestors_of, normpath
from slim.result import PackageSummary

log = logging.getLogger(__name__)

DPKG_STATUS = "/var/lib/dpkg/status"
DPKG_STATUS_D = "/var/lib/dpkg/status.d"
DPKG_INFO = "/var/lib/dpkg/info"
APK_INSTALLED = "/lib/apk/db/installed"
DPKG_LAYOUT = ("/var/lib/dpkg/info/format", "/var/lib/dpkg/arch")
OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")
# what scanners (syft, grype, trivy) read to name the distribution of an image's packages
DISTRO_FILES = (*OS_RELEASE, "/etc/debian_version", "/etc/alpine-release")
MAX_DB_BYTES = 256 << 20
TRIMMED_FIELD = "X-Slim-Trimmed"  # added to the dpkg stanza of a partly kept package
LANGUAGE_MANAGERS = ("python", "npm", "gem", "jar")
NPM_HIDDEN_LOCKFILE = "/node_modules/.package-lock.json"

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
    source: str = ""  # dpkg Source / apk origin: the source package's name
    db_path: str = ""  # the file holding its record (status, status.d/NAME, installed, RECORD …)
    info: str = ""  # dpkg: the basename of its /var/lib/dpkg/info files ("libc6:amd64")
    group: str = ""  # jar: the Maven groupId; npm: the @scope

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
    _language: list[Package] | None = field(default=None, repr=False)

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

    def link_spellings(self) -> list[tuple[str, str]]:
        """(directory as a database spells it, real directory) for every spelling that crosses
        a symlink (/lib/x86_64-linux-gnu → /usr/lib/x86_64-linux-gnu in a merged-/usr image)."""
        return sorted((raw, real) for raw, real in self._dir_cache.items() if raw != real)

    def add(self, pkg: Package) -> None:
        files = tuple(sorted({self.normalize(f) for f in pkg.files}))
        conffiles = tuple(sorted({self.normalize(f) for f in pkg.conffiles}))
        pkg = dataclasses.replace(pkg, files=files, conffiles=conffiles)
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

    @property
    def language(self) -> list[Package]:
        """The image's language packages (read once, on first use; see read_language_packages)."""
        if self._language is None:
            self._language = read_language_packages(self)
        return self._language

    def all_packages(self) -> list[Package]:
        """OS packages, then language packages."""
        return [*self.packages, *self.language]


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
    # surrogateescape: a rewritten database gives back the bytes it read (see _encode)
    try:
        return fs.read(path, MAX_DB_BYTES).decode("utf-8", errors="surrogateescape")
    except AnalysisError as exc:
        log.debug("%s: %s", path, exc)
        return None


def _lines(text: str | None) -> list[str]:
    return [ln.strip() for ln in (text or "").splitlines() if ln.strip()]


def _conffiles_field(value: str) -> list[str]:
    # Conffiles: lines " /etc/x md5 [obsolete]"
    return [ln.split()[0] for ln in value.splitlines() if ln.strip().startswith("/")]


def _encode(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")


def _source_name(value: str) -> str:
    # deb-control(5) "Source: glibc (2.36-9)": the name, without a differing version
    return value.split()[0] if value.strip() else ""


def _read_dpkg(fs: RootFS) -> list[Package]:
    stanzas: list[tuple[dict[str, str], str]] = []
    text = _read(fs, DPKG_STATUS) if fs.exists(DPKG_STATUS) else None
    if text is not None:
        stanzas.extend((s, DPKG_STATUS) for s in parse_stanzas(text))
    if fs.is_dir(DPKG_STATUS_D):  # distroless
        for name in sorted(fs.listdir(DPKG_STATUS_D)):
            if "." in name and name.rsplit(".", 1)[1] in ("md5sums", "list"):
                continue
            sub = _read(fs, f"{DPKG_STATUS_D}/{name}")
            if sub is not None:
                stanzas.extend((s, f"{DPKG_STATUS_D}/{name}") for s in parse_stanzas(sub))
    out: list[Package] = []
    for stanza, db_path in stanzas:
        status_d_name = "" if db_path == DPKG_STATUS else posixpath.basename(db_path)
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
        info = ""
        for base in ([f"{name}:{arch}", name] if arch else [name]):
            listing = f"{DPKG_INFO}/{base}.list"
            if fs.exists(listing):
                files = [ln for ln in _lines(_read(fs, listing)) if ln.startswith("/")]
                conffiles += [ln for ln in _lines(_read(fs, f"{DPKG_INFO}/{base}.conffiles"))
                              if ln.startswith("/")]
                found = True
                info = base
                break
        if not found and status_d_name:
            md5 = f"{DPKG_STATUS_D}/{status_d_name}.md5sums"
            for ln in _lines(_read(fs, md5) if fs.exists(md5) else None):
                parts = ln.split(None, 1)
                if len(parts) == 2:
                    files.append("/" + parts[1].lstrip("/"))
        files = [f for f in files if f not in ("/", "/.")]
        out.append(Package(name, version, "dpkg", arch, size, tuple(files), tuple(conffiles),
                           source=_source_name(stanza.get("source", "")), db_path=db_path,
                           info=info))
    return out


def _read_apk(fs: RootFS) -> list[Package]:
    text = _read(fs, APK_INSTALLED) if fs.exists(APK_INSTALLED) else None
    if text is None:
        return []
    out: list[Package] = []
    for record in text.split("\n\n"):
        name = version = arch = origin = ""
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
            elif tag == "o":
                origin = value
            elif tag == "I":
                size = int(value) if value.isascii() and value.isdigit() else 0
            elif tag == "F":
                folder = value.strip("/")
            elif tag == "R":
                files.append("/" + posixpath.join(folder, value) if folder else "/" + value)
        if not name:
            continue
        # apk has no conffile list: it protects etc/ (apk-tools' default protected_paths)
        conffiles = [f for f in files if f.startswith("/etc/")]
        out.append(Package(name, version, "apk", arch, size, tuple(files), tuple(conffiles),
                           source=origin, db_path=APK_INSTALLED))
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


# -- language packages -----------------------------------------------------------------------

_GEMSPEC_FIELD = re.compile(r"""\.(name|version)\s*=\s*(?:Gem::Version\.new\()?["']([^"']+)["']""")
_JAR_VERSION = re.compile(r"^(?P<name>.+?)-(?P<version>\d[\w.+-]*)$")


def _under_node_modules(path: str) -> str:
    """The npm package directory owning `path` (".../node_modules/[@scope/]NAME"), or ""."""
    i = path.rfind("/node_modules/")
    while i >= 0:
        rest = path[i + len("/node_modules/"):].split("/")
        depth = 2 if rest[0].startswith("@") else 1
        if len(rest) > depth:  # a file below the package directory
            return path[:i] + "/node_modules/" + "/".join(rest[:depth])
        i = path.rfind("/node_modules/", 0, i)
    return ""


def _python_package(db: PackageDB, dist_info: str) -> Package | None:
    record = f"{dist_info}/RECORD"
    text = _read(db.fs, record) if db.fs.is_file(record) else None
    if text is None:
        return None
    stem = posixpath.basename(dist_info)[: -len(".dist-info")]
    name, _, version = stem.rpartition("-")
    if not name:
        return None
    site = posixpath.dirname(dist_info)
    files = {record}
    for row in csv.reader(text.splitlines()):
        if row and row[0]:
            files.add(db.normalize(posixpath.join(site, row[0])))
    return Package(name, version, "python", files=tuple(sorted(files)), db_path=record)


def _npm_package(db: PackageDB, manifest: str, files: list[str]) -> Package | None:
    try:
        doc = json.loads(_read(db.fs, manifest) or "")
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        return None
    scope, _, name = doc["name"].rpartition("/")
    version = doc.get("version") if isinstance(doc.get("version"), str) else ""
    return Package(name, version or "", "npm", files=tuple(sorted(files)), db_path=manifest,
                   group=scope)


def _gem_package(db: PackageDB, spec: str, files: list[str]) -> Package:
    full = posixpath.basename(spec)[: -len(".gemspec")]
    fields: dict[str, str] = {m[1]: m[2] for m in _GEMSPEC_FIELD.finditer(_read(db.fs, spec) or "")}
    name, _, version = full.rpartition("-")
    name, version = fields.get("name", name or full), fields.get("version", version)
    return Package(name, version, "gem", files=tuple(sorted({spec, *files})), db_path=spec)


def _jar_package(db: PackageDB, jar: str) -> Package:
    stem = posixpath.basename(jar)[: -len(".jar")]
    m = _JAR_VERSION.match(stem)
    name, version, group = (m["name"], m["version"], "") if m else (stem, "", "")
    if db.fs.has_content(jar):
        try:
            with db.fs.open(jar) as f, zipfile.ZipFile(f) as z:  # seekable: the directory only
                poms = [n for n in z.namelist()
                        if n.startswith("META-INF/maven/") and n.endswith("/pom.properties")]
                if len(poms) == 1:  # a fat jar's many poms name its dependencies, not itself
                    props = dict(ln.split("=", 1) for ln in z.read(poms[0]).decode("utf-8", "replace").splitlines()
                                 if "=" in ln and not ln.startswith("#"))
                    name = props.get("artifactId", name).strip()
                    version = props.get("version", version).strip()
                    group = props.get("groupId", "").strip()
                else:
                    man = next((n for n in z.namelist() if n.upper() == "META-INF/MANIFEST.MF"), None)
                    attrs = dict(ln.split(": ", 1) for ln in (z.read(man).decode("utf-8", "replace").splitlines()
                                                              if man else []) if ": " in ln)
                    version = attrs.get("Implementation-Version", version).strip()
        except (SlimError, OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
            log.debug("%s: no readable jar metadata: %s", jar, exc)
    return Package(name, version, "jar", files=(jar,), db_path=jar, group=group)


def read_language_packages(db: PackageDB) -> list[Package]:
    """Python distributions, npm packages, gems and jars of the image (see the module doc),
    except those whose metadata an OS package owns. Sorted by (manager, name, version, path).
    Never raises for bad input: an unreadable manifest is skipped (logged at debug)."""
    fs = db.fs
    dist_infos: list[str] = []
    npm: dict[str, list[str]] = {}
    gem_specs: dict[tuple[str, str], str] = {}  # (gem dir, NAME-VERSION) -> gemspec
    jars: list[str] = []
    files: list[str] = []
    for entry in fs.walk():
        path = entry.path
        if entry.kind is EntryKind.DIR:
            if path.endswith(".dist-info"):
                dist_infos.append(path)
            continue
        files.append(path)
        if entry.kind is not EntryKind.FILE:
            continue
        if path.endswith(".gemspec") and posixpath.basename(posixpath.dirname(path)) == "specifications":
            gem_dir = posixpath.dirname(posixpath.dirname(path))
            gem_specs[(gem_dir, posixpath.basename(path)[: -len(".gemspec")])] = path
        elif path.endswith(".jar"):
            jars.append(path)
    gem_files: dict[str, list[str]] = {}
    for path in files:
        owner = _under_node_modules(path)
        if owner:
            npm.setdefault(owner, []).append(path)
        for marker, skip in (("/gems/", 0), ("/extensions/", 2)):
            i = path.find(marker)
            while i >= 0:
                rest = path[i + len(marker):].split("/")
                if len(rest) > skip + 1:
                    spec = gem_specs.get((path[:i], rest[skip]))
                    if spec is not None:
                        gem_files.setdefault(spec, []).append(path)
                i = path.find(marker, i + 1)
    out: list[Package] = []
    for d in dist_infos:
        pkg = _python_package(db, d)
        if pkg is not None:
            out.append(pkg)
    for pkg_dir, owned in npm.items():
        manifest = f"{pkg_dir}/package.json"
        if manifest in owned:
            npm_pkg = _npm_package(db, manifest, owned)
            if npm_pkg is not None:
                out.append(npm_pkg)
    out += [_gem_package(db, spec, gem_files.get(spec, [])) for spec in gem_specs.values()]
    out += [_jar_package(db, jar) for jar in jars]
    out = [p for p in out if not db.owner(p.db_path)]
    return sorted(out, key=lambda p: (p.manager, p.name, p.version, p.db_path))


# -- summaries and edges ---------------------------------------------------------------------


class Packages:
    """The image's package database, read once per analysis run (a service of the context)."""

    def __init__(self, ctx: AnalysisContext) -> None:
        self.db = read_packages(ctx.fs)

    @property
    def present(self) -> PackageDB | None:
        """The database, or None when the image has neither a package manager's records nor
        language packages."""
        return self.db if self.db.packages or self.db.language else None


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


def _files(fs: RootFS, pkg: Package) -> list[tuple[str, int]]:
    """(path, bytes) of the package's non-directory entries present in `fs`.

    A listed path that is a symlink to a directory holding the package's other files is the
    package's directory seen through a merged-/usr link (`/bin` of coreutils, `/lib` of apt:
    dpkg lists every parent directory), not a file of it."""
    out = []
    ancestors: set[str] | None = None
    for f in pkg.files:
        entry = fs.get(f)
        if entry is None or entry.kind is EntryKind.DIR:
            continue
        if entry.kind is EntryKind.SYMLINK:
            if ancestors is None:
                ancestors = ancestors_of(pkg.files)
            res = fs.resolve(f)
            if res.exists and res.path in ancestors and fs.is_dir(res.path):
                continue
        out.append((f, _file_size(fs, f)))
    return out


def read_distro(fs: RootFS) -> tuple[str, str]:
    """(ID, VERSION_ID) of the image's os-release(5) ("debian", "12"); ("", "") when unknown."""
    for path in OS_RELEASE:
        text = _read(fs, path) if fs.exists(path) else None
        if text is None:
            continue
        fields = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                fields[key.strip()] = value.strip().strip("\"'")
        return fields.get("ID", ""), fields.get("VERSION_ID", "")
    return "", ""


def package_url(pkg: Package, distro: tuple[str, str] = ("", "")) -> str:
    """The package URL (github.com/package-url/purl-spec) of a package, as syft spells it:
    pkg:deb/debian/libc6@2.36-9?arch=amd64&distro=debian-12&upstream=glibc. "" when the
    package type has no namespace to name (a jar without its Maven groupId)."""
    from packageurl import PackageURL

    distro_id, distro_version = distro
    qualifiers: dict[str, str] = {}
    if pkg.manager in ("dpkg", "apk"):
        ptype = "deb" if pkg.manager == "dpkg" else "apk"
        namespace = distro_id or ("debian" if ptype == "deb" else "alpine")
        if pkg.arch:
            qualifiers["arch"] = pkg.arch
        if distro_id:
            qualifiers["distro"] = f"{distro_id}-{distro_version}" if distro_version else distro_id
        if pkg.source and pkg.source != pkg.name:
            qualifiers["upstream"] = pkg.source
        return PackageURL(ptype, namespace, pkg.name, pkg.version or None, qualifiers).to_string()
    if pkg.manager == "python":
        name = re.sub(r"[-_.]+", "-", pkg.name).lower()  # PEP 503 normalization
        return PackageURL("pypi", None, name, pkg.version or None).to_string()
    if pkg.manager == "npm":
        return PackageURL("npm", pkg.group or None, pkg.name, pkg.version or None).to_string()
    if pkg.manager == "gem":
        return PackageURL("gem", None, pkg.name, pkg.version or None).to_string()
    if pkg.manager == "jar" and pkg.group:
        return PackageURL("maven", pkg.group, pkg.name, pkg.version or None).to_string()
    return ""


def package_status(kept_files: int, file_count: int, kept_bytes: int, size: int) -> str:
    """kept (every file the image had), partly-kept, or removed (no file kept)."""
    if kept_files == 0:
        return "removed"
    return "kept" if kept_files == file_count and kept_bytes == size else "partly-kept"


def package_summaries(db: PackageDB, fs: RootFS, kept_paths: set[str] | None) -> list[PackageSummary]:
    """Per package (OS and language): bytes and count of its non-directory entries in the
    squashed fs and, for a keep set, what of it the minimal image keeps (the keep set plus
    `metadata_paths`) with its status; `unused` when none of its files is kept. Without a keep
    set (None) status is "" and nothing counts as kept. Sorted by name (then manager)."""
    present: set[str] = set()
    listed: dict[int, list[tuple[str, int]]] = {}  # id(pkg) → _files, read once for both uses

    def files_of(pkg: Package) -> list[tuple[str, int]]:
        if (files := listed.get(id(pkg))) is None:
            files = listed[id(pkg)] = _files(fs, pkg)
        return files

    if kept_paths is not None:
        kept = {db.normalize(p) for p in kept_paths}
        present = kept | metadata_paths(db, kept, files_of if fs is db.fs else None)
    distro = read_distro(fs)
    out: list[PackageSummary] = []
    for pkg in db.all_packages():
        files = files_of(pkg)
        size = sum(n for _, n in files)
        kept_files = [(f, n) for f, n in files if f in present]
        kept_bytes = sum(n for _, n in kept_files)
        status = "" if kept_paths is None else package_status(len(kept_files), len(files), kept_bytes, size)
        out.append(PackageSummary(pkg.name, pkg.version, pkg.manager, size, kept_bytes,
                                  unused=not kept_files, file_count=len(files),
                                  kept_files=len(kept_files), status=status, arch=pkg.arch,
                                  source=pkg.source, purl=package_url(pkg, distro)))
    return sorted(out, key=lambda s: (s.name, s.manager, s.version))


# -- the minimal image's package metadata ----------------------------------------------------


def _language_metadata(fs: RootFS, pkg: Package) -> list[str]:
    """The files a scanner reads to find a language package (syft's catalogers)."""
    if pkg.manager == "python":  # METADATA, RECORD, WHEEL, top_level.txt … (not licenses/)
        dist_info = posixpath.dirname(pkg.db_path)
        return [f"{dist_info}/{n}" for n in fs.listdir(dist_info) if fs.is_file(f"{dist_info}/{n}")]
    if pkg.manager in ("npm", "gem"):
        return [pkg.db_path]
    return []


def metadata_paths(db: PackageDB, kept: set[str],
                   files_of: Callable[[Package], list[tuple[str, int]]] | None = None) -> set[str]:
    """What the minimal image holds beside the keep set so scanners can still read it: the
    distribution's os-release (and the files it links to) when the image has OS packages, the
    copyright file of every dpkg package that keeps a file, the metadata of every language
    package that keeps a file, and the directory links the databases' spellings of kept files
    cross. `kept` holds normalized paths; `files_of` is `_files` in `db.fs`, memoized by the
    caller that needs it again."""
    fs = db.fs
    if files_of is None:
        files_of = functools.partial(_files, fs)
    out: set[str] = set()
    if any(p.manager == "dpkg" and p.info for p in db.packages):
        # dpkg names info files "pkg:arch.*" only when info/format says "1" (the multiarch
        # layout, dpkg's src/main/infodb-format.c); arch lists foreign architectures
        out.update(p for p in DPKG_LAYOUT if fs.is_file(p))
    for pkg in db.packages:
        # a kept Debian package keeps its copyright file: the license its binaries ship under
        # (Debian Policy 12.5), and what syft reads for a deb package's licenses
        if pkg.manager == "dpkg" and any(f in kept for f, _ in files_of(pkg)):
            doc = f"/usr/share/doc/{pkg.name}/copyright"
            res = fs.resolve(doc)
            if res.exists and fs.is_file(res.path):
                out.update((db.normalize(doc), *res.links, res.path))
    if db.packages:
        for path in DISTRO_FILES:
            res = fs.resolve(path)
            if res.exists and fs.is_file(res.path):
                out.add(db.normalize(path))
                out.update(res.links)
                out.add(res.path)
    for pkg in db.language:
        if any(f in kept for f in pkg.files):
            out.update(db.normalize(p) for p in _language_metadata(fs, pkg))
    # a database spells paths as the package built them (/lib/…): the links that spelling
    # crosses stay, so every path a kept record lists resolves in the minimal image
    kept_dirs = ancestors_of(kept | out)
    for raw, real in db.link_spellings():
        if real in kept_dirs:
            out.update(fs.resolve(raw).links)
    return out


def _stanzas_raw(text: str) -> list[str]:
    """The stanzas of a control file as written (blank-line separated, continuation kept)."""
    out: list[str] = []
    cur: list[str] = []
    for line in text.splitlines():
        if line.strip():
            cur.append(line)
        elif cur:
            out.append("\n".join(cur))
            cur = []
    if cur:
        out.append("\n".join(cur))
    return out


def _trim_stanza(stanza: str, keep_conffile: Callable[[str], bool], note: str) -> str:
    """A status stanza without the Conffiles lines of dropped conffiles and any earlier
    X-Slim-Trimmed, plus `X-Slim-Trimmed: note` when `note` is given."""
    out: list[str] = []
    field_name = ""
    for line in stanza.splitlines():
        if line[:1] not in (" ", "\t"):
            field_name = line.partition(":")[0].strip().lower()
            if field_name == TRIMMED_FIELD.lower():
                continue
        elif field_name == "conffiles":
            path = line.split()[0] if line.split() else ""
            if path.startswith("/") and not keep_conffile(path):
                continue
        elif field_name == TRIMMED_FIELD.lower():
            continue
        out.append(line)
    # a Conffiles field left without lines goes too
    out = [ln for i, ln in enumerate(out)
           if not (ln.lower().startswith("conffiles:") and not ln.partition(":")[2].strip()
                   and (i + 1 == len(out) or out[i + 1][:1] not in (" ", "\t")))]
    if note:
        out.append(f"{TRIMMED_FIELD}: {note}")
    return "\n".join(out)


def _trim_note(kept_files: int, files: int, kept_bytes: int, size: int) -> str:
    return (f"kept-files={kept_files} removed-files={files - kept_files} "
            f"kept-bytes={kept_bytes} removed-bytes={size - kept_bytes}")


@dataclass(frozen=True)
class DatabaseRewrite:
    """The package metadata files of a minimal image: path -> new contents, or None for a
    database file that must not be there (the records of a removed package); `unchanged`
    names the database files the minimal image carries as they are (nothing was trimmed)."""

    files: dict[str, bytes | None]
    unchanged: frozenset[str] = frozenset()

    @property
    def written(self) -> dict[str, bytes]:
        return {p: d for p, d in sorted(self.files.items()) if d is not None}

    @property
    def absent(self) -> set[str]:
        return {p for p, d in self.files.items() if d is None}


def rewrite_databases(db: PackageDB, present: set[str]) -> DatabaseRewrite:
    """The dpkg, apk and Python RECORD files for a minimal image holding `present` (every
    path it has, directories included; normalized). A package stays when it keeps at least
    one non-directory entry. Only files the source image has are written."""
    fs = db.fs
    out: dict[str, bytes | None] = {}

    def here(path: str) -> bool:
        return db.normalize(path) in present

    kept: dict[int, tuple[int, int, int, int]] = {}  # id(pkg) -> kept files, files, kept bytes, bytes
    for pkg in db.all_packages():
        files = _files(fs, pkg)
        mine = [(f, n) for f, n in files if f in present]
        if mine:
            kept[id(pkg)] = (len(mine), len(files), sum(n for _, n in mine), sum(n for _, n in files))
    dpkg = [p for p in db.packages if p.manager == "dpkg"]
    by_record = {(p.db_path, p.name, p.arch): p for p in dpkg}
    for db_path in sorted({p.db_path for p in dpkg}):
        text = _read(fs, db_path)
        if text is None:
            continue
        stanzas = []
        for raw in _stanzas_raw(text):
            parsed = parse_stanzas(raw)
            fields = parsed[0] if parsed else {}
            owner = by_record.get((db_path, fields.get("package", ""), fields.get("architecture", "")))
            if owner is None or id(owner) not in kept:
                continue  # removed, or not on disk ("config-files", "not-installed")
            k, n, kb, b = kept[id(owner)]
            note = "" if (k, kb) == (n, b) else _trim_note(k, n, kb, b)
            stanzas.append(_trim_stanza(raw, here, note))
        if db_path != DPKG_STATUS and not stanzas:
            out[db_path] = None  # a distroless status.d file of a removed package
            out[db_path + ".md5sums"] = None
            continue
        whole = stanzas == _stanzas_raw(text)  # every package whole: left as it is (see below)
        out[db_path] = _encode(text) if whole else _encode("".join(st + "\n\n" for st in stanzas))
        if db_path != DPKG_STATUS:
            md5 = db_path + ".md5sums"
            if fs.exists(md5):
                out[md5] = _trim_md5sums(_read(fs, md5) or "", here)
    for pkg in dpkg:
        if not pkg.info:
            continue
        for ext in ("list", "md5sums", "conffiles"):
            path = f"{DPKG_INFO}/{pkg.info}.{ext}"
            if not fs.exists(path):
                continue
            if id(pkg) not in kept:
                out[path] = None
                continue
            text = _read(fs, path) or ""
            if ext == "md5sums":
                out[path] = _trim_md5sums(text, here)
            else:
                lines = [ln for ln in text.splitlines() if ln in ("/.", "/") or (ln.startswith("/") and here(ln))]
                out[path] = _encode("".join(ln + "\n" for ln in lines))
    if any(p.manager == "apk" for p in db.packages):
        text = _read(fs, APK_INSTALLED)
        if text is not None:
            apk_kept = {p.name for p in db.packages if p.manager == "apk" and id(p) in kept}
            out[APK_INSTALLED] = _encode(_trim_apk(text, apk_kept, here))
    for pkg in db.language:
        if pkg.manager == "python" and id(pkg) in kept and here(pkg.db_path):
            out[pkg.db_path] = _trim_record(_read(fs, pkg.db_path) or "",
                                            posixpath.dirname(posixpath.dirname(pkg.db_path)), here)
    for lock in sorted(p for p in present if p.endswith(NPM_HIDDEN_LOCKFILE)):
        trimmed = _trim_npm_lockfile(_read(fs, lock), posixpath.dirname(posixpath.dirname(lock)), here)
        if trimmed is not None:
            out[lock] = trimmed
    # a file the rewrite leaves byte for byte as it was is carried, not rewritten (under
    # --keep-base it then stays in its base layer)
    unchanged = frozenset(p for p, data in out.items() if data is not None and _same(fs, p, data))
    return DatabaseRewrite({p: d for p, d in out.items() if p not in unchanged}, unchanged)


def _same(fs: RootFS, path: str, data: bytes) -> bool:
    try:
        return fs.read(path, len(data) + 1) == data
    except AnalysisError:
        return False


def _trim_npm_lockfile(text: str | None, project: str, here: Callable[[str], bool]) -> bytes | None:
    """npm's hidden lockfile (node_modules/.package-lock.json, npm 7+) without the entries of
    packages whose directory the minimal image does not have; None when nothing changes (or
    the file is not JSON npm wrote)."""
    try:
        doc = json.loads(text or "")
    except ValueError:
        return None
    packages = doc.get("packages") if isinstance(doc, dict) else None
    if not isinstance(packages, dict):
        return None
    kept = {k: v for k, v in packages.items() if not k or here(posixpath.join(project, k))}
    if len(kept) == len(packages):
        return None
    doc["packages"] = kept
    return _encode(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")  # npm's own layout


def _trim_md5sums(text: str, here: Callable[[str], bool]) -> bytes:
    # "<md5>  <path relative to />" (dpkg-deb's DEBIAN/md5sums)
    lines = [ln for ln in text.splitlines()
             if len(ln.split(None, 1)) == 2 and here("/" + ln.split(None, 1)[1].lstrip("/"))]
    return _encode("".join(ln + "\n" for ln in lines))


def _trim_record(text: str, site: str, here: Callable[[str], bool]) -> bytes:
    # PEP 376 RECORD: CSV rows "path,hash,size" relative to the site directory; rows of
    # files the minimal image does not have go (the RECORD row itself stays: it is kept)
    lines = []
    for line in text.splitlines():
        row = next(csv.reader([line]), [])
        if row and row[0] and here(posixpath.join(site, row[0])):
            lines.append(line)
    return _encode("".join(ln + "\n" for ln in lines))


def _trim_apk(text: str, kept_names: set[str], here: Callable[[str], bool]) -> str:
    """apk-tools' installed database with only the kept packages, their F: folders and R:
    files (with the M:, a: and Z: lines that belong to them) limited to what is kept. apk
    rejects fields it does not know in this file, so no marker field is added (the image label
    org.slim.package-db says the database was trimmed)."""
    records = []
    for record in text.split("\n\n"):
        lines = [ln for ln in record.splitlines() if ln]
        name = next((ln[2:] for ln in lines if ln.startswith("P:")), "")
        if not name or name not in kept_names:
            continue
        out: list[str] = []
        folder, folder_here, file_here = "", True, True
        for line in lines:
            tag = line[:2]
            if tag == "F:":
                folder = line[2:].strip("/")
                folder_here = here("/" + folder) if folder else True
                file_here = folder_here
                if folder_here:
                    out.append(line)
            elif tag == "M:":
                if folder_here:
                    out.append(line)
            elif tag == "R:":
                file_here = folder_here and here("/" + posixpath.join(folder, line[2:]))
                if file_here:
                    out.append(line)
            elif tag in ("Z:", "a:"):
                if file_here:
                    out.append(line)
            else:
                out.append(line)
        records.append("\n".join(out))
    return "".join(r + "\n\n" for r in records)


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
                             f"{DPKG_INFO}/*.md5sums", f"{DPKG_STATUS_D}/*", APK_INSTALLED,
                             *DISTRO_FILES, "**/*.dist-info/RECORD", "**/node_modules/**/package.json",
                             f"**{NPM_HIDDEN_LOCKFILE}",
                             "**/specifications/*.gemspec", "**/*.jar"))

    def wants(self, entry: FileEntry) -> bool:
        return entry.is_file and bool(entry.mode & 0o111) and ".so" not in posixpath.basename(entry.path)

    def analyze(self, entry: FileEntry) -> list[Edge | Unknown]:
        db = self.ctx.service(Packages).present
        return list(package_edges(db, entry.path)) if db is not None else []


__all__ = [
    "DatabaseRewrite",
    "Package",
    "PackageAnalyzer",
    "PackageDB",
    "Packages",
    "metadata_paths",
    "package_db",
    "package_edges",
    "package_status",
    "package_summaries",
    "package_url",
    "parse_stanzas",
    "read_distro",
    "read_language_packages",
    "read_packages",
    "rewrite_databases",
]
