"""hello-glibc: a dynamically linked C program on a Debian-shaped (merged-/usr) glibc base, with waste.

Layer 0 (base): the glibc loader, libc.so.6 and libz.so.1 copied from the host in Debian 12's
merged-/usr layout (/lib -> usr/lib, /lib64 -> usr/lib64, libraries in /usr/lib/x86_64-linux-gnu,
/usr/lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2), ld.so.conf(.d), a real
/etc/ld.so.cache made by `ldconfig -r`, a small dpkg database whose .list files use the paths dpkg
records on bookworm (/lib/x86_64-linux-gnu/…, not /usr/lib/…), and deliberate waste (docs, man
pages, apt lists and caches, locales, headers, a static library).
Layer 1 (app): /app/hello plus more waste (a /tmp file, an orphaned __pycache__ .pyc).
"""

from __future__ import annotations

import os
import shutil

from recipes._common import (
    DEFAULT_PATH,
    BuildContext,
    Layer,
    Recipe,
    RecipeError,
    compile_hello,
    tool,
)

NAME = "hello-glibc"
DESCRIPTION = "C program linked against glibc + zlib on a merged-/usr Debian-style base, with waste"
DOCKER_FORM = "oci"

MULTIARCH = "/usr/lib/x86_64-linux-gnu"
HOST_LIBS = {  # image name → host candidates (first that exists)
    "ld-linux-x86-64.so.2": ["/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "/lib64/ld-linux-x86-64.so.2"],
    "libc.so.6": ["/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6"],
    "libz.so.1.2.13": ["/usr/lib/x86_64-linux-gnu/libz.so.1.2.13", "/lib/x86_64-linux-gnu/libz.so.1.2.13"],
}
ZLIB_STATIC = "/usr/lib/x86_64-linux-gnu/libz.a"
ZLIB_HEADERS = ("/usr/include/zlib.h", "/usr/include/zconf.h")

LD_SO_CONF_D = "# Multiarch support\n/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n"

# dpkg database: (package, version, source, section, depends, description, files as dpkg records them)
PACKAGES = [
    (
        "docs-only", "1.0-1", "", "doc", "", "documentation nobody reads (unused on purpose)",
        ["/usr/share/doc/docs-only/README", "/usr/share/man/man1/docs-only.1.gz"],
    ),
    (
        "libc6", "2.36-9+deb12u14", "glibc", "libs", "libgcc-s1", "GNU C Library: Shared libraries",
        [
            "/etc/ld.so.conf.d/x86_64-linux-gnu.conf",
            "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib64/ld-linux-x86-64.so.2",
            "/usr/share/doc/libc6/copyright",
            "/usr/share/locale/de/LC_MESSAGES/libc.mo",
            "/usr/share/locale/fr/LC_MESSAGES/libc.mo",
        ],
    ),
    (
        "zlib1g", "1:1.2.13.dfsg-1", "zlib", "libs", "libc6 (>= 2.14)", "compression library - runtime",
        [
            "/lib/x86_64-linux-gnu/libz.so.1",
            "/lib/x86_64-linux-gnu/libz.so.1.2.13",
            "/usr/share/doc/zlib1g/copyright",
        ],
    ),
    (
        "zlib1g-dev", "1:1.2.13.dfsg-1", "zlib", "libdevel", "zlib1g (= 1:1.2.13.dfsg-1), libc6-dev | libc-dev",
        "compression library - development",
        [
            "/usr/include/zconf.h",
            "/usr/include/zlib.h",
            "/usr/lib/x86_64-linux-gnu/libz.a",
            "/usr/lib/x86_64-linux-gnu/libz.so",
            "/usr/share/doc/zlib1g-dev/copyright",
        ],
    ),
]


def _host(candidates: list[str]) -> str:
    for c in candidates:
        if os.path.isfile(c):
            return c
    raise RecipeError(f"none of {', '.join(candidates)} exists on this host")


def _dirs_of(paths: list[str]) -> list[str]:
    out = {"/."}
    for p in paths:
        d = os.path.dirname(p)
        while d != "/":
            out.add(d)
            d = os.path.dirname(d)
    return sorted(out)


def _dpkg(layer: Layer) -> None:
    stanzas = []
    for name, version, source, section, depends, desc, files in PACKAGES:
        fields = [
            f"Package: {name}",
            "Status: install ok installed",
            "Priority: optional",
            f"Section: {section}",
            "Installed-Size: 100",
            "Maintainer: slim sample images <slim@example.invalid>",
            "Architecture: amd64" if name != "docs-only" else "Architecture: all",
        ]
        if name in ("libc6", "zlib1g"):
            fields.append("Multi-Arch: same")
        if source:
            fields.append(f"Source: {source}")
        fields.append(f"Version: {version}")
        if depends:
            fields.append(f"Depends: {depends}")
        if name == "libc6":
            fields += ["Conffiles:", " /etc/ld.so.conf.d/x86_64-linux-gnu.conf d4e7a7b88a71b5ffd9e2644e71a0cfab"]
        fields.append(f"Description: {desc}")
        stanzas.append("\n".join(fields) + "\n")
        # dpkg's .list: every directory and file the package installed, as dpkg recorded them
        suffix = ":amd64" if name in ("libc6", "zlib1g") else ""
        layer.file(f"/var/lib/dpkg/info/{name}{suffix}.list", "\n".join(_dirs_of(files) + sorted(files)) + "\n")
    layer.file("/var/lib/dpkg/status", "\n".join(stanzas))


def _ldconfig(ctx: BuildContext, libs: dict[str, str]) -> bytes:
    """A real ld.so.cache for this root, made by `ldconfig -r` (glibc elf/ldconfig.c)."""
    root = ctx.scratch("glibc-ldconfig-root")
    shutil.rmtree(root)
    os.makedirs(os.path.join(root, "usr/lib/x86_64-linux-gnu"))
    os.makedirs(os.path.join(root, "usr/lib64"))
    os.makedirs(os.path.join(root, "etc/ld.so.conf.d"))
    os.symlink("usr/lib", os.path.join(root, "lib"))
    os.symlink("usr/lib64", os.path.join(root, "lib64"))
    for name, host in libs.items():
        shutil.copyfile(host, os.path.join(root, "usr/lib/x86_64-linux-gnu", name))
    os.symlink("libz.so.1.2.13", os.path.join(root, "usr/lib/x86_64-linux-gnu/libz.so.1"))
    with open(os.path.join(root, "etc/ld.so.conf"), "w") as f:
        f.write("include /etc/ld.so.conf.d/*.conf\n")
    with open(os.path.join(root, "etc/ld.so.conf.d/x86_64-linux-gnu.conf"), "w") as f:
        f.write(LD_SO_CONF_D)
    # -X: do not touch links (we made them); ldconfig -r chroots, so without root use a user namespace
    argv = ["ldconfig", "-X", "-r", root]
    if os.geteuid() != 0:
        argv = ["unshare", "-r", *argv]
    tool(argv)
    with open(os.path.join(root, "etc/ld.so.cache"), "rb") as f:
        return f.read()


def build(ctx: BuildContext) -> Recipe:
    libs = {name: _host(c) for name, c in HOST_LIBS.items()}
    for name, host in libs.items():
        ctx.record_file(name, host)
    for extra in (*ZLIB_HEADERS, ZLIB_STATIC):
        if not os.path.isfile(extra):
            raise RecipeError(f"{extra}: missing (install zlib1g-dev)")
        ctx.record_file(os.path.basename(extra), extra)
    hello = compile_hello(ctx, "gcc", "hello", ["-DWITH_ZLIB", "-lz"])
    ctx.record_file("hello (glibc)", hello)

    base = Layer(created_by="ADD glibc + zlib base (sample_images/recipes/hello_glibc.py)")
    base.symlink("/lib", "usr/lib")
    base.symlink("/lib64", "usr/lib64")
    base.symlink("/bin", "usr/bin")
    base.symlink("/sbin", "usr/sbin")
    for d in ("/usr/bin", "/usr/sbin", "/usr/lib64", MULTIARCH, "/etc/ld.so.conf.d", "/tmp"):
        base.dir(d, 0o1777 if d == "/tmp" else 0o755)
    for name, host in libs.items():
        base.host_file(f"{MULTIARCH}/{name}", host, mode=0o755 if name.startswith(("ld-", "libc.")) else 0o644)
    base.symlink("/usr/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    base.symlink(f"{MULTIARCH}/libz.so.1", "libz.so.1.2.13")
    base.symlink(f"{MULTIARCH}/libz.so", "libz.so.1.2.13")
    base.file("/etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf\n")
    base.file("/etc/ld.so.conf.d/x86_64-linux-gnu.conf", LD_SO_CONF_D)
    base.file("/etc/ld.so.cache", _ldconfig(ctx, libs))
    base.file("/etc/os-release", 'PRETTY_NAME="slim sample (Debian 12 shaped)"\nID=debian\nVERSION_ID="12"\n')
    _dpkg(base)
    # waste a minimal image should not carry
    for pkg in ("libc6", "zlib1g", "zlib1g-dev"):
        base.file(f"/usr/share/doc/{pkg}/copyright", f"{pkg}: copyright text\n" * 40)
    base.file("/usr/share/doc/docs-only/README", "This package only ships documentation.\n" * 100)
    base.file("/usr/share/man/man1/docs-only.1.gz", b"\x1f\x8b" + b"\0" * 1022)
    for lang in ("de", "fr"):
        base.file(f"/usr/share/locale/{lang}/LC_MESSAGES/libc.mo", f"{lang} messages\n".encode() * 200)
    for header in ZLIB_HEADERS:
        base.host_file(header, header, mode=0o644)
    base.host_file(f"{MULTIARCH}/libz.a", ZLIB_STATIC, mode=0o644)
    base.file(
        "/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4",
        b"\x04\x22\x4d\x18" + b"apt list\n" * 2000,
    )
    base.file("/var/cache/apt/pkgcache.bin", b"\0APT cache\n" * 1000)
    base.file("/var/cache/apt/srcpkgcache.bin", b"\0APT src cache\n" * 800)

    app = Layer(created_by="COPY hello /app/hello (gcc -O2 hello.c -DWITH_ZLIB -lz)")
    app.dir("/app")
    app.host_file("/app/hello", hello, mode=0o755)
    app.file("/app/__pycache__/x.cpython-311.pyc", b"\xa7\r\r\n" + b"\0" * 12 + b"orphaned bytecode" * 20)
    app.file("/tmp/build.log", "leftover build log\n" * 50)
    return Recipe(
        layers=[base, app],
        config={
            "Entrypoint": ["/app/hello"],
            "Env": [DEFAULT_PATH, "LANG=C.UTF-8"],
            "WorkingDir": "/app",
        },
        tag=f"slim-samples/{NAME}:latest",
    )
