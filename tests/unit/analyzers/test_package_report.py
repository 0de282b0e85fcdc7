"""The removal report, language packages, package URLs and the rewritten package databases
(slim.analyzers.packages) on crafted rootfs: trees."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from slim.analyzers.packages import (
    metadata_paths,
    package_summaries,
    read_distro,
    read_packages,
    rewrite_databases,
)
from slim.image import LoadedImage
from slim.model import parent_dirs
from slim.pipeline import load_image
from tests.unit.analyzers.test_packages import STATUS, put

STATUS_WITH_FIELDS = STATUS.replace(
    "Package: nginx\n", "Package: nginx\nSource: nginx-src (1.22.1-9)\n").replace(
    " /etc/nginx/mime.types 0123456789abcdef\n",
    " /etc/nginx/mime.types 0123456789abcdef\n /etc/nginx/nginx.conf fedcba9876543210\n")


def make_root(r: Path) -> Path:
    """A merged-/usr Debian-like root with dpkg, a venv-style dist-info, npm, a gem and jars."""
    put(r, "/usr/lib/x86_64-linux-gnu/libc.so.6", b"\x7fELF" + b"c" * 96)
    put(r, "/usr/lib/x86_64-linux-gnu/libm.so.6", b"\x7fELF" + b"m" * 46)
    put(r, "/usr/bin/true", b"\x7fELF" + b"t" * 6, 0o755)
    (r / "lib").symlink_to("usr/lib")
    (r / "bin").symlink_to("usr/bin")
    put(r, "/usr/sbin/nginx", b"\x7fELF" + b"n" * 196, 0o755)
    put(r, "/etc/nginx/nginx.conf", "events {}\n")
    put(r, "/etc/nginx/mime.types", "types {}\n")
    put(r, "/usr/share/doc/docs/README", "x" * 50)
    put(r, "/usr/share/doc/libc6/copyright", "GPL " * 5)
    put(r, "/usr/lib/os-release", 'ID=debian\nVERSION_ID="12"\n')
    (r / "etc/os-release").symlink_to("../usr/lib/os-release")
    put(r, "/var/lib/dpkg/status", STATUS_WITH_FIELDS)
    info = "/var/lib/dpkg/info"
    # libc6 lists the pre-merged spelling, and /lib itself (a link in this image)
    put(r, f"{info}/libc6:amd64.list", "/.\n/lib\n/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu/libc.so.6\n"
        "/lib/x86_64-linux-gnu/libm.so.6\n/bin\n/bin/true\n/usr/share/doc/libc6/copyright\n")
    put(r, f"{info}/libc6:amd64.md5sums", "aaaa  lib/x86_64-linux-gnu/libc.so.6\nbbbb  lib/x86_64-linux-gnu/libm.so.6\n"
        "cccc  bin/true\n")
    put(r, f"{info}/nginx.list", "/.\n/usr\n/usr/sbin\n/usr/sbin/nginx\n/etc\n/etc/nginx\n/etc/nginx/nginx.conf\n"
        "/etc/nginx/mime.types\n")
    put(r, f"{info}/nginx.conffiles", "/etc/nginx/nginx.conf\n/etc/nginx/mime.types\n")
    put(r, f"{info}/nginx.postinst", "#!/bin/sh\n", 0o755)
    put(r, f"{info}/format", "1\n")
    put(r, f"{info}/docs.list", "/usr/share/doc/docs/README\n")
    put(r, f"{info}/docs.md5sums", "dddd  usr/share/doc/docs/README\n")
    # a Python distribution (RECORD paths are relative to site-packages)
    site = "/app/venv/lib/python3.11/site-packages"
    put(r, f"{site}/flask/__init__.py", "x = 1\n")
    put(r, f"{site}/flask/cli.py", "y = 2\n")
    put(r, "/app/venv/bin/flask", "#!/app/venv/bin/python\n", 0o755)
    put(r, f"{site}/Flask-3.0.0.dist-info/METADATA", "Name: Flask\nVersion: 3.0.0\n")
    put(r, f"{site}/Flask-3.0.0.dist-info/RECORD",
        "flask/__init__.py,sha256=a,6\nflask/cli.py,sha256=b,6\n../../../bin/flask,sha256=c,23\n"
        "Flask-3.0.0.dist-info/METADATA,sha256=d,30\nFlask-3.0.0.dist-info/RECORD,,\n")
    # npm: a scoped package with a nested dependency, and an unscoped one
    nm = "/app/node_modules"
    put(r, f"{nm}/@acme/util/package.json", json.dumps({"name": "@acme/util", "version": "1.2.3"}))
    put(r, f"{nm}/@acme/util/index.js", "module.exports = 1\n")
    put(r, f"{nm}/@acme/util/node_modules/left-pad/package.json", json.dumps({"name": "left-pad", "version": "1.3.0"}))
    put(r, f"{nm}/@acme/util/node_modules/left-pad/index.js", "module.exports = 2\n")
    put(r, f"{nm}/.package-lock.json", json.dumps({"name": "app", "lockfileVersion": 3, "packages": {
        "node_modules/@acme/util": {"version": "1.2.3"},
        "node_modules/@acme/util/node_modules/left-pad": {"version": "1.3.0"}}}))
    # a gem with a native extension
    gems = "/var/lib/gems/3.1.0"
    put(r, f"{gems}/specifications/nio4r-2.5.9.gemspec", 's.name = "nio4r".freeze\ns.version = "2.5.9"\n')
    put(r, f"{gems}/gems/nio4r-2.5.9/lib/nio.rb", "module NIO; end\n")
    put(r, f"{gems}/extensions/x86_64-linux/3.1.0/nio4r-2.5.9/nio4r_ext.so", b"\x7fELF" + b"e" * 12)
    # jars: one with a pom.properties, one named by its file
    jar = r / "app/lib/guava-32.1.jar"
    jar.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(jar, "w") as z:
        z.writestr("META-INF/maven/com.google.guava/guava/pom.properties",
                   "groupId=com.google.guava\nartifactId=guava\nversion=32.1.3-jre\n")
    with zipfile.ZipFile(r / "app/lib/app-1.0.jar", "w") as z:
        z.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
    return r


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path / "root")


@pytest.fixture
def img(root: Path, opened: list[LoadedImage]) -> LoadedImage:
    loaded = load_image(f"rootfs:{root}")
    opened.append(loaded)
    return loaded


def test_language_packages(img: LoadedImage) -> None:
    db = read_packages(img.rootfs)
    langs = {(p.manager, p.name): p for p in db.language}
    assert sorted(langs) == [("gem", "nio4r"), ("jar", "app"), ("jar", "guava"), ("npm", "left-pad"),
                             ("npm", "util"), ("python", "Flask")]
    flask = langs[("python", "Flask")]
    site = "/app/venv/lib/python3.11/site-packages"
    assert flask.version == "3.0.0" and "/app/venv/bin/flask" in flask.files
    assert f"{site}/flask/cli.py" in flask.files
    util = langs[("npm", "util")]
    assert util.group == "@acme" and util.version == "1.2.3"
    # the nested dependency's files belong to it, not to its parent
    assert all("left-pad" not in f for f in util.files)
    nio = langs[("gem", "nio4r")]
    assert nio.version == "2.5.9" and any(f.endswith("nio4r_ext.so") for f in nio.files)
    guava = langs[("jar", "guava")]
    assert (guava.group, guava.version, guava.files) == ("com.google.guava", "32.1.3-jre", ("/app/lib/guava-32.1.jar",))
    assert langs[("jar", "app")].version == "1.0"


def test_report_statuses_and_purls(img: LoadedImage) -> None:
    db = read_packages(img.rootfs)
    kept = {"/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6", "/usr/bin/true",
            "/bin", "/lib", "/usr/sbin/nginx", "/app/venv/lib/python3.11/site-packages/flask/__init__.py",
            "/app/lib/guava-32.1.jar"}
    sums = {(s.manager, s.name): s for s in package_summaries(db, img.rootfs, kept)}
    libc = sums[("dpkg", "libc6")]
    # /bin and /lib are libc6's directories seen through merged-/usr links, not its files; its
    # copyright file comes along with a kept package (metadata_paths)
    assert (libc.status, libc.file_count, libc.kept_files) == ("kept", 4, 4)
    nginx = sums[("dpkg", "nginx")]
    assert (nginx.status, nginx.kept_files, nginx.file_count) == ("partly-kept", 1, 3)
    assert nginx.source == "nginx-src"
    assert nginx.purl == "pkg:deb/debian/nginx@1.22.1-9?arch=amd64&distro=debian-12&upstream=nginx-src"
    assert sums[("dpkg", "docs")].status == "removed" and sums[("dpkg", "docs")].unused
    flask = sums[("python", "Flask")]
    # METADATA and RECORD come along with a kept distribution (metadata_paths)
    assert (flask.status, flask.kept_files, flask.file_count) == ("partly-kept", 3, 5)
    assert flask.purl == "pkg:pypi/flask@3.0.0"
    assert sums[("jar", "guava")].status == "kept"
    assert sums[("jar", "guava")].purl == "pkg:maven/com.google.guava/guava@32.1.3-jre"
    assert sums[("jar", "app")].purl == ""
    assert sums[("npm", "util")].purl == "pkg:npm/%40acme/util@1.2.3"
    assert sums[("npm", "util")].status == "removed"
    assert sums[("gem", "nio4r")].purl == "pkg:gem/nio4r@2.5.9"
    # no keep set: no status, nothing kept
    plain = {(s.manager, s.name): s for s in package_summaries(db, img.rootfs, None)}
    assert plain[("dpkg", "nginx")].status == "" and plain[("dpkg", "nginx")].kept_files == 0
    assert read_distro(img.rootfs) == ("debian", "12")


def test_metadata_paths(img: LoadedImage) -> None:
    db = read_packages(img.rootfs)
    site = "/app/venv/lib/python3.11/site-packages"
    extra = metadata_paths(db, {f"{site}/flask/cli.py"})
    assert {"/etc/os-release", "/usr/lib/os-release", f"{site}/Flask-3.0.0.dist-info/METADATA",
            f"{site}/Flask-3.0.0.dist-info/RECORD"} <= extra
    assert not any("node_modules" in p or "gems" in p for p in extra)
    # a kept dpkg package brings its copyright file; one with nothing kept does not
    assert "/usr/share/doc/libc6/copyright" in metadata_paths(db, {"/usr/lib/x86_64-linux-gnu/libm.so.6"})
    assert not any(p.startswith("/usr/share/doc/") for p in extra)


def _present(paths: set[str]) -> set[str]:
    return paths | {d for p in paths for d in parent_dirs(p)}


def test_rewrite_dpkg(img: LoadedImage) -> None:
    db = read_packages(img.rootfs)
    present = _present({"/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib", "/bin", "/usr/sbin/nginx",
                        "/etc/nginx/nginx.conf"})
    rw = rewrite_databases(db, present)
    status = rw.written["/var/lib/dpkg/status"].decode()
    assert [ln for ln in status.splitlines() if ln.startswith("Package:")] == ["Package: libc6", "Package: nginx"]
    # the stanzas keep their fields; partly kept ones say so; dropped conffiles go
    assert "Description: GNU C Library\n long description line" in status
    assert "X-Slim-Trimmed: kept-files=1 removed-files=3 kept-bytes=100 removed-bytes=80" in status
    assert "X-Slim-Trimmed: kept-files=2 removed-files=1 kept-bytes=210 removed-bytes=9" in status
    assert " /etc/nginx/nginx.conf fedcba9876543210" in status and "mime.types" not in status
    assert status.endswith("\n\n")
    lst = rw.written["/var/lib/dpkg/info/libc6:amd64.list"].decode().splitlines()
    assert lst == ["/.", "/lib", "/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu/libc.so.6", "/bin"]
    assert rw.written["/var/lib/dpkg/info/libc6:amd64.md5sums"] == b"aaaa  lib/x86_64-linux-gnu/libc.so.6\n"
    assert rw.written["/var/lib/dpkg/info/nginx.conffiles"] == b"/etc/nginx/nginx.conf\n"
    # a removed package's records must not be in the minimal image
    assert rw.absent == {"/var/lib/dpkg/info/docs.list", "/var/lib/dpkg/info/docs.md5sums"}
    # the package's other info files (maintainer scripts) are not the database's business
    assert "/var/lib/dpkg/info/nginx.postinst" not in rw.files


def test_rewrite_leaves_whole_databases_as_they_are(img: LoadedImage) -> None:
    db = read_packages(img.rootfs)
    everything = {e.path for e in img.rootfs.walk()}
    rw = rewrite_databases(db, everything)
    assert {"/var/lib/dpkg/info/nginx.list", "/var/lib/dpkg/info/libc6:amd64.md5sums"} <= rw.unchanged
    assert not rw.absent
    # only the stanza of a package that is not on disk ("config-files") goes
    assert list(rw.written) == ["/var/lib/dpkg/status"]
    status = rw.written["/var/lib/dpkg/status"].decode()
    assert "Package: gone" not in status and "X-Slim-Trimmed" not in status


def test_rewrite_distroless_status_d(tmp_path: Path, opened: list[LoadedImage]) -> None:
    r = tmp_path / "root"
    put(r, "/usr/bin/tool", b"\x7fELF" + b"t" * 10, 0o755)
    put(r, "/usr/share/doc/tool/README", "doc\n")
    put(r, "/usr/bin/other", b"o")
    put(r, "/var/lib/dpkg/status.d/tool", "Package: tool\nVersion: 3\nArchitecture: amd64\n")
    put(r, "/var/lib/dpkg/status.d/tool.md5sums", "aa  usr/bin/tool\nbb  usr/share/doc/tool/README\n")
    put(r, "/var/lib/dpkg/status.d/other", "Package: other\nVersion: 1\nArchitecture: amd64\n")
    put(r, "/var/lib/dpkg/status.d/other.md5sums", "cc  usr/bin/other\n")
    loaded = load_image(f"rootfs:{r}")
    opened.append(loaded)
    rw = rewrite_databases(read_packages(loaded.rootfs), _present({"/usr/bin/tool"}))
    assert rw.written["/var/lib/dpkg/status.d/tool.md5sums"] == b"aa  usr/bin/tool\n"
    assert b"X-Slim-Trimmed: kept-files=1 removed-files=1" in rw.written["/var/lib/dpkg/status.d/tool"]
    assert rw.absent == {"/var/lib/dpkg/status.d/other", "/var/lib/dpkg/status.d/other.md5sums"}


def test_rewrite_record(img: LoadedImage) -> None:
    db = read_packages(img.rootfs)
    site = "/app/venv/lib/python3.11/site-packages"
    present = _present({f"{site}/flask/__init__.py", f"{site}/Flask-3.0.0.dist-info/METADATA",
                        f"{site}/Flask-3.0.0.dist-info/RECORD"})
    record = rewrite_databases(db, present).written[f"{site}/Flask-3.0.0.dist-info/RECORD"].decode()
    assert record == ("flask/__init__.py,sha256=a,6\nFlask-3.0.0.dist-info/METADATA,sha256=d,30\n"
                      "Flask-3.0.0.dist-info/RECORD,,\n")


def test_rewrite_npm_hidden_lockfile(img: LoadedImage) -> None:
    db = read_packages(img.rootfs)
    nm = "/app/node_modules"
    present = _present({f"{nm}/@acme/util/index.js", f"{nm}/.package-lock.json"})
    doc = json.loads(rewrite_databases(db, present).written[f"{nm}/.package-lock.json"])
    assert doc == {"name": "app", "lockfileVersion": 3, "packages": {"node_modules/@acme/util": {"version": "1.2.3"}}}
    # nothing gone: the file is left as it is
    both = _present({f"{nm}/@acme/util/index.js", f"{nm}/@acme/util/node_modules/left-pad/index.js",
                     f"{nm}/.package-lock.json"})
    assert f"{nm}/.package-lock.json" not in rewrite_databases(db, both).files


def test_rewrite_apk(tmp_path: Path, opened: list[LoadedImage]) -> None:
    r = tmp_path / "root"
    put(r, "/bin/busybox", b"\x7fELF" + b"b" * 20, 0o755)
    put(r, "/bin/extra", b"x")
    put(r, "/etc/securetty", "console\n")
    put(r, "/lib/ld-musl-x86_64.so.1", b"\x7fELF" + b"m" * 30, 0o755)
    installed = ("C:Q1abc=\nP:busybox\nV:1.36.1-r5\nA:x86_64\no:busybox\nI:1000\n"
                 "F:bin\nM:0:0:755\nR:busybox\na:0:0:755\nZ:Q1bb=\nR:extra\nZ:Q1ee=\n"
                 "F:etc\nR:securetty\nZ:Q1ss=\n\n"
                 "P:musl\nV:1.2.4-r2\nA:x86_64\nF:lib\nR:ld-musl-x86_64.so.1\nZ:Q1mm=\n\n")
    put(r, "/lib/apk/db/installed", installed)
    loaded = load_image(f"rootfs:{r}")
    opened.append(loaded)
    db = read_packages(loaded.rootfs)
    out = rewrite_databases(db, _present({"/bin/busybox"})).written["/lib/apk/db/installed"].decode()
    assert out == ("C:Q1abc=\nP:busybox\nV:1.36.1-r5\nA:x86_64\no:busybox\nI:1000\n"
                   "F:bin\nM:0:0:755\nR:busybox\na:0:0:755\nZ:Q1bb=\n\n")
    sums = {s.name: s for s in package_summaries(db, loaded.rootfs, {"/bin/busybox"})}
    assert sums["busybox"].status == "partly-kept" and sums["musl"].status == "removed"
    assert sums["busybox"].purl == "pkg:apk/alpine/busybox@1.36.1-r5?arch=x86_64"
