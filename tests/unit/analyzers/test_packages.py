"""Package databases (dpkg, distroless status.d, apk) on crafted rootfs: trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from slim.analyzers.packages import package_edges, package_summaries, parse_stanzas, read_packages
from slim.image import LoadedImage
from slim.model import Edge
from slim.pipeline import load_image

STATUS = """\
Package: libc6
Status: install ok installed
Priority: optional
Installed-Size: 12000
Architecture: amd64
Multi-Arch: same
Version: 2.36-9
Description: GNU C Library
 long description line

Package: nginx
Status: install ok installed
Architecture: amd64
Version: 1.22.1-9
Installed-Size: 1000
Conffiles:
 /etc/nginx/mime.types 0123456789abcdef

Package: docs
Status: install ok installed
Architecture: all
Version: 1.0

Package: gone
Status: deinstall ok config-files
Architecture: all
Version: 0.1
"""


def put(root: Path, path: str, data: bytes | str, mode: int = 0o644) -> None:
    f = root / path.lstrip("/")
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(data.encode() if isinstance(data, str) else data)
    f.chmod(mode)


@pytest.fixture
def dpkg_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    put(root, "/usr/lib/x86_64-linux-gnu/libc.so.6", b"\x7fELF" + b"c" * 96)
    (root / "lib").symlink_to("usr/lib")
    put(root, "/usr/sbin/nginx", b"\x7fELF" + b"n" * 196, 0o755)
    put(root, "/etc/nginx/nginx.conf", "events {}\n")
    put(root, "/etc/nginx/mime.types", "types {}\n")
    put(root, "/usr/share/doc/docs/README", "x" * 50)
    put(root, "/var/lib/dpkg/status", STATUS)
    info = "/var/lib/dpkg/info"
    # dpkg lists the pre-merged-/usr spelling; the image stores it under /usr/lib
    put(root, f"{info}/libc6:amd64.list", "/.\n/lib\n/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu/libc.so.6\n")
    put(root, f"{info}/nginx.list", "/.\n/usr/sbin/nginx\n/etc/nginx/nginx.conf\n/etc/nginx/mime.types\n")
    put(root, f"{info}/nginx.conffiles", "/etc/nginx/nginx.conf\n")
    put(root, f"{info}/docs.list", "/usr/share/doc/docs/README\n")
    put(root, f"{info}/gone.list", "/usr/bin/gone\n")
    return root


def test_parse_stanzas_continuations() -> None:
    stanzas = parse_stanzas(STATUS)
    assert [s["package"] for s in stanzas] == ["libc6", "nginx", "docs", "gone"]
    assert stanzas[0]["description"] == "GNU C Library\nlong description line"
    assert "/etc/nginx/mime.types" in stanzas[1]["conffiles"]


def test_dpkg_owner_both_spellings(dpkg_root: Path, opened: list[LoadedImage]) -> None:
    img = load_image(f"rootfs:{dpkg_root}")
    opened.append(img)
    db = read_packages(img.rootfs)
    assert sorted(p.name for p in db.packages) == ["docs", "libc6", "nginx"]  # config-files skipped
    libc = db.get("libc6")
    assert libc is not None and libc.arch == "amd64" and libc.version == "2.36-9"
    assert libc.installed_size == 12000 * 1024
    for spelling in ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6"):
        assert [p.name for p in db.owner(spelling)] == ["libc6"], spelling
    assert db.owner("/usr/bin/unowned") == []
    nginx = db.get("nginx")
    assert nginx is not None
    assert set(nginx.conffiles) == {"/etc/nginx/nginx.conf", "/etc/nginx/mime.types"}


def test_package_summaries(dpkg_root: Path, opened: list[LoadedImage]) -> None:
    img = load_image(f"rootfs:{dpkg_root}")
    opened.append(img)
    db = read_packages(img.rootfs)
    kept = {"/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/sbin/nginx"}
    sums = {s.name: s for s in package_summaries(db, img.rootfs, kept)}
    assert list(sums) == ["docs", "libc6", "nginx"]
    assert (sums["libc6"].size_bytes, sums["libc6"].kept_bytes, sums["libc6"].unused) == (100, 100, False)
    conf_bytes = len("events {}\n") + len("types {}\n")
    assert sums["nginx"].size_bytes == 200 + conf_bytes
    assert sums["nginx"].kept_bytes == 200
    assert sums["docs"].unused and sums["docs"].kept_bytes == 0 and sums["docs"].size_bytes == 50
    assert all(s.manager == "dpkg" for s in sums.values())


def test_package_edges_conffiles_of_kept_binary(dpkg_root: Path, opened: list[LoadedImage]) -> None:
    img = load_image(f"rootfs:{dpkg_root}")
    opened.append(img)
    db = read_packages(img.rootfs)
    edges = package_edges(db, "/usr/sbin/nginx")
    assert edges == [
        Edge("/usr/sbin/nginx", "/etc/nginx/mime.types", "package", "conffile of dpkg package nginx"),
        Edge("/usr/sbin/nginx", "/etc/nginx/nginx.conf", "package", "conffile of dpkg package nginx"),
    ]
    # a library implies nothing, and neither does a non-executable file
    assert package_edges(db, "/usr/lib/x86_64-linux-gnu/libc.so.6") == []
    assert package_edges(db, "/etc/nginx/nginx.conf") == []


def test_distroless_status_d(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = tmp_path / "root"
    put(root, "/usr/bin/tool", b"\x7fELF" + b"t" * 10, 0o755)
    put(root, "/var/lib/dpkg/status.d/tool", "Package: tool\nVersion: 3\nArchitecture: amd64\n")
    put(root, "/var/lib/dpkg/status.d/tool.md5sums", "d41d8cd98f00b204e9800998ecf8427e  usr/bin/tool\n")
    img = load_image(f"rootfs:{root}")
    opened.append(img)
    db = read_packages(img.rootfs)
    assert [p.name for p in db.owner("/usr/bin/tool")] == ["tool"]


def test_apk_installed(tmp_path: Path, opened: list[LoadedImage]) -> None:
    root = tmp_path / "root"
    put(root, "/bin/busybox", b"\x7fELF" + b"b" * 20, 0o755)
    put(root, "/etc/securetty", "console\n")
    put(root, "/lib/ld-musl-x86_64.so.1", b"\x7fELF" + b"m" * 30, 0o755)
    put(root, "/lib/apk/db/installed", (
        "C:Q1abc=\nP:busybox\nV:1.36.1-r5\nA:x86_64\nI:1000\n"
        "F:bin\nR:busybox\na:0:0:755\nF:etc\nR:securetty\n\n"
        "P:musl\nV:1.2.4-r2\nA:x86_64\nF:lib\nR:ld-musl-x86_64.so.1\n\n"
        "P:unused-pkg\nV:1\nF:usr/share/x\nR:y\n"
    ))
    img = load_image(f"rootfs:{root}")
    opened.append(img)
    db = read_packages(img.rootfs)
    assert [p.name for p in db.owner("/bin/busybox")] == ["busybox"]
    busybox = db.get("busybox")
    assert busybox is not None and busybox.manager == "apk" and busybox.version == "1.36.1-r5"
    assert busybox.conffiles == ("/etc/securetty",)
    assert package_edges(db, "/bin/busybox") == [
        Edge("/bin/busybox", "/etc/securetty", "package", "conffile of apk package busybox")
    ]
    sums = {s.name: s for s in package_summaries(db, img.rootfs, {"/bin/busybox"})}
    assert sums["busybox"].kept_bytes == 24 and not sums["busybox"].unused
    assert sums["musl"].unused and sums["unused-pkg"].unused and sums["unused-pkg"].size_bytes == 0
