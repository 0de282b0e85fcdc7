"""LibraryResolver / ElfAnalyzer against real gcc-built binaries in temp roots, and ld.so.cache/conf parsing.

Recipes: every binary is built by the test itself (see conftest.cc / shlib); nothing is committed.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from slim.analyzers.base import AnalysisContext
from slim.analyzers.elf import ElfAnalyzer, Loader
from slim.analyzers.ldso import (
    LibraryResolver,
    parse_ld_so_cache,
    parse_ld_so_conf,
)
from slim.errors import AnalysisError
from slim.model import Edge, Unknown
from tests.conftest import require
from tests.unit.analyzers.conftest import (
    MULTIARCH,
    cc,
    glibc_root,
    have,
    need_gcc,
    run_ldconfig,
    set_config,
    shlib,
)

MAIN = "int main(void) { return 0; }\n"


def main_calling(*fns: str) -> str:
    decls = "".join(f"int {f}(void);\n" for f in fns)
    calls = " + ".join(f"{f}()" for f in fns) or "0"
    return f"{decls}int main(void) {{ return {calls}; }}\n"


def analyze(ctx: AnalysisContext, path: str) -> tuple[list[Edge], list[Unknown]]:
    analyzer = ElfAnalyzer(ctx)
    entry = ctx.fs.get(path)
    assert entry is not None and analyzer.wants(entry)
    out = list(analyzer.analyze(entry))
    return [e for e in out if isinstance(e, Edge)], [u for u in out if isinstance(u, Unknown)]


def needed_edge(edges: list[Edge], src: str, name: str) -> Edge:
    hits = [
        e
        for e in edges
        if e.src == src and e.kind == "needed" and e.evidence.startswith(f"DT_NEEDED {name} ")
    ]
    assert hits, f"no edge {src} -> {name} in {edges}"
    return hits[0]


# -- glibc search order -------------------------------------------------------------------------
def test_plain_glibc_executable_closure(tmp_path: Path, open_root) -> None:
    need_gcc()
    root = glibc_root(tmp_path)
    cc(root, "/app/hello", MAIN)
    _, ctx = open_root(root)
    edges, unknowns = analyze(ctx, "/app/hello")
    assert unknowns == []
    assert Edge("/app/hello", "/lib64/ld-linux-x86-64.so.2", "interpreter", "PT_INTERP") in edges
    libc = needed_edge(edges, "/app/hello", "libc.so.6")
    assert libc.dst == f"/{MULTIARCH}/libc.so.6"
    assert "ld.so.conf (no ld.so.cache)" in libc.evidence
    # libc's DT_NEEDED ld-linux-x86-64.so.2 is the already loaded interpreter (matched by soname)
    rtld = needed_edge(edges, libc.dst, "ld-linux-x86-64.so.2")
    assert rtld.dst == "/lib64/ld-linux-x86-64.so.2" and "already loaded" in rtld.evidence


def test_rpath_is_inherited_through_the_chain(tmp_path: Path, open_root) -> None:
    need_gcc()
    root = glibc_root(tmp_path)
    shlib(root, "/opt/b/libbar.so.1", "libbar.so.1")
    shlib(root, "/opt/a/libfoo.so.1", "libfoo.so.1", f"-L{root}/opt/b", "-l:libbar.so.1")
    cc(
        root,
        "/app/exe",
        main_calling("libfoo_fn"),
        f"-L{root}/opt/a",
        "-l:libfoo.so.1",
        "-Wl,--disable-new-dtags,-rpath,/opt/a:/opt/b",
    )
    _, ctx = open_root(root)
    edges, unknowns = analyze(ctx, "/app/exe")
    assert unknowns == []
    foo = needed_edge(edges, "/app/exe", "libfoo.so.1")
    assert foo.dst == "/opt/a/libfoo.so.1" and "RPATH of /app/exe" in foo.evidence
    # libfoo has no rpath: the executable's DT_RPATH is searched for libfoo's needs too
    bar = needed_edge(edges, "/opt/a/libfoo.so.1", "libbar.so.1")
    assert bar.dst == "/opt/b/libbar.so.1" and "RPATH of /app/exe" in bar.evidence
    assert ctx.service(Loader).tried[("/opt/a/libfoo.so.1", "libbar.so.1")][:2] == (
        "/opt/a/libbar.so.1",
        "/opt/b/libbar.so.1",
    )


def test_runpath_is_not_inherited(tmp_path: Path, open_root) -> None:
    need_gcc()
    root = glibc_root(tmp_path)
    shlib(root, "/opt/b/libbar.so.1", "libbar.so.1")
    shlib(root, "/opt/a/libfoo.so.1", "libfoo.so.1", f"-L{root}/opt/b", "-l:libbar.so.1")
    cc(
        root,
        "/app/exe",
        main_calling("libfoo_fn"),
        f"-L{root}/opt/a",
        "-l:libfoo.so.1",
        "-Wl,--enable-new-dtags,-rpath,/opt/a:/opt/b",
    )
    _, ctx = open_root(root)
    edges, unknowns = analyze(ctx, "/app/exe")
    foo = needed_edge(edges, "/app/exe", "libfoo.so.1")
    assert "RUNPATH of /app/exe" in foo.evidence
    assert [u.path for u in unknowns] == ["/opt/a/libfoo.so.1"]
    assert unknowns[0].reason.startswith("DT_NEEDED libbar.so.1: not found (tried ")
    tried = ctx.service(Loader).tried[("/opt/a/libfoo.so.1", "libbar.so.1")]
    assert not any(t.startswith("/opt/") for t in tried)  # RUNPATH dirs never searched for libfoo
    assert "ld.so.cache" not in " ".join(tried) and "/usr/lib/libbar.so.1" in tried


def test_origin_expansion(tmp_path: Path, open_root) -> None:
    need_gcc()
    root = glibc_root(tmp_path)
    shlib(root, "/app/lib/libo.so", "libo.so")
    cc(
        root,
        "/app/bin/exe",
        main_calling("libo_fn"),
        f"-L{root}/app/lib",
        "-l:libo.so",
        "-Wl,-rpath,$ORIGIN/../lib",
    )
    cc(
        root,
        "/app/bin/exe2",
        main_calling("libo_fn"),
        f"-L{root}/app/lib",
        "-l:libo.so",
        "-Wl,--disable-new-dtags,-rpath,${ORIGIN}/../lib",
    )
    _, ctx = open_root(root)
    for exe, via in (("/app/bin/exe", "RUNPATH"), ("/app/bin/exe2", "RPATH")):
        edges, unknowns = analyze(ctx, exe)
        assert unknowns == []
        edge = needed_edge(edges, exe, "libo.so")
        assert edge.dst == "/app/lib/libo.so" and f"{via} of {exe}" in edge.evidence


def test_library_found_only_via_ld_so_cache(tmp_path: Path, open_root) -> None:
    need_gcc()
    root = glibc_root(tmp_path)
    shlib(root, "/srv/odd/libcached.so.3", "libcached.so.3")
    shlib(root, "/srv/odd/glibc-hwcaps/x86-64-v2/libcached.so.3", "libcached.so.3")
    cc(root, "/app/exe", main_calling("libcached_fn"), f"-L{root}/srv/odd", "-l:libcached.so.3")
    (root / "etc/ld.so.conf.d/odd.conf").write_text("/srv/odd\n")
    run_ldconfig(root)
    (root / "etc/ld.so.conf.d/odd.conf").unlink()  # only the cache knows /srv/odd now
    _, ctx = open_root(root)
    edges, unknowns = analyze(ctx, "/app/exe")
    assert unknowns == []
    edge = needed_edge(edges, "/app/exe", "libcached.so.3")
    assert edge.dst == "/srv/odd/libcached.so.3" and edge.evidence.endswith("via ld.so.cache")
    alt = [e for e in edges if e.evidence.startswith("DT_NEEDED libcached.so.3 ") and e != edge]
    assert [e.dst for e in alt] == ["/srv/odd/glibc-hwcaps/x86-64-v2/libcached.so.3"]
    assert "hwcaps alternative" in alt[0].evidence
    assert needed_edge(edges, "/app/exe", "libc.so.6").evidence.endswith("via ld.so.cache")


def test_stale_cache_falls_back_to_ld_so_conf(tmp_path: Path, open_root) -> None:
    need_gcc()
    root = glibc_root(tmp_path)
    run_ldconfig(root)  # cache made before the library exists
    (root / "etc/ld.so.conf.d/late.conf").write_text("/srv/late\n")
    shlib(root, "/srv/late/liblate.so", "liblate.so")
    cc(root, "/app/exe", main_calling("liblate_fn"), f"-L{root}/srv/late", "-l:liblate.so")
    _, ctx = open_root(root)
    edges, unknowns = analyze(ctx, "/app/exe")
    assert unknowns == []
    edge = needed_edge(edges, "/app/exe", "liblate.so")
    assert edge.dst == "/srv/late/liblate.so" and "stale" in edge.evidence


def test_ld_library_path_from_image_env_and_workdir(tmp_path: Path, open_root) -> None:
    need_gcc()
    root = glibc_root(tmp_path)
    shlib(root, "/env/libenv.so", "libenv.so")
    shlib(root, "/work/libcwd.so", "libcwd.so")
    cc(
        root,
        "/app/exe",
        main_calling("libenv_fn", "libcwd_fn"),
        f"-L{root}/env",
        f"-L{root}/work",
        "-l:libenv.so",
        "-l:libcwd.so",
    )
    set_config(
        root, Env=["PATH=/usr/bin", "LD_LIBRARY_PATH=/nonexistent:/env:"], WorkingDir="/work"
    )
    img, ctx = open_root(root)
    assert img.image.config.workdir == "/work"
    edges, unknowns = analyze(ctx, "/app/exe")
    assert unknowns == []
    env = needed_edge(edges, "/app/exe", "libenv.so")
    assert env.dst == "/env/libenv.so" and env.evidence.endswith("via LD_LIBRARY_PATH")
    cwd = needed_edge(edges, "/app/exe", "libcwd.so")  # the empty element is the WorkingDir
    assert cwd.dst == "/work/libcwd.so" and cwd.evidence.endswith("via LD_LIBRARY_PATH")
    tried = ctx.service(Loader).tried[("/app/exe", "libenv.so")]
    assert tried[:2] == ("/nonexistent/libenv.so", "/env/libenv.so")


def test_hwcaps_variants_are_all_reported(tmp_path: Path, open_root) -> None:
    need_gcc()
    root = glibc_root(tmp_path)
    shlib(root, "/usr/lib/libhw.so.1", "libhw.so.1")
    shlib(root, "/usr/lib/glibc-hwcaps/x86-64-v3/libhw.so.1", "libhw.so.1")
    shlib(root, "/usr/lib/glibc-hwcaps/x86-64-v2/libhw.so.1", "libhw.so.1")
    cc(root, "/app/exe", main_calling("libhw_fn"), f"-L{root}/usr/lib", "-l:libhw.so.1")
    _, ctx = open_root(root)
    edges, unknowns = analyze(ctx, "/app/exe")
    assert unknowns == []
    hw = sorted(e.dst for e in edges if e.evidence.startswith("DT_NEEDED libhw.so.1 "))
    assert hw == [
        "/usr/lib/glibc-hwcaps/x86-64-v2/libhw.so.1",
        "/usr/lib/glibc-hwcaps/x86-64-v3/libhw.so.1",
        "/usr/lib/libhw.so.1",
    ]
    resolver = LibraryResolver(ctx.fs, ctx.config)
    exe = resolver.elf("/app/exe")
    res = resolver.resolve("libhw.so.1", exe, ())
    assert res.path == "/usr/lib/libhw.so.1" and res.via == "trusted directory"
    assert res.alternatives == (
        "/usr/lib/glibc-hwcaps/x86-64-v2/libhw.so.1",
        "/usr/lib/glibc-hwcaps/x86-64-v3/libhw.so.1",
    )
    i3, i2, i0 = (
        res.tried.index(p)
        for p in (
            "/usr/lib/glibc-hwcaps/x86-64-v3/libhw.so.1",
            "/usr/lib/glibc-hwcaps/x86-64-v2/libhw.so.1",
            "/usr/lib/libhw.so.1",
        )
    )
    assert i3 < i2 < i0  # glibc priority: best level first, then the plain directory


def test_hwcaps_only_variant_is_found(tmp_path: Path, open_root) -> None:
    need_gcc()
    root = glibc_root(tmp_path)
    shlib(root, "/usr/lib/glibc-hwcaps/x86-64-v3/libv3.so", "libv3.so")
    cc(
        root,
        "/app/exe",
        main_calling("libv3_fn"),
        f"-L{root}/usr/lib/glibc-hwcaps/x86-64-v3",
        "-l:libv3.so",
    )
    _, ctx = open_root(root)
    resolver = LibraryResolver(ctx.fs, ctx.config)
    res = resolver.resolve("libv3.so", resolver.elf("/app/exe"), ())
    assert (
        res.path == "/usr/lib/glibc-hwcaps/x86-64-v3/libv3.so"
        and "glibc-hwcaps/x86-64-v3" in res.via
    )


def _patch(path: Path, offset: int, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(data)] = data
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    ("offset", "data", "reason"),
    [
        (18, struct.pack("<H", 183), "wrong machine: EM_AARCH64"),  # e_machine
        (
            4,
            b"\x01",
            "skipped",
        ),  # EI_CLASS = ELFCLASS32 (the rest of the header then reads as garbage)
        (5, b"\x02", "skipped"),  # EI_DATA = big-endian
    ],
)
def test_incompatible_candidate_is_skipped(
    tmp_path: Path, open_root, offset: int, data: bytes, reason: str
) -> None:
    need_gcc()
    root = glibc_root(tmp_path)
    bad = shlib(root, "/opt/a/libw.so", "libw.so")
    shlib(root, "/opt/b/libw.so", "libw.so")
    _patch(bad, offset, data)
    cc(
        root,
        "/app/exe",
        main_calling("libw_fn"),
        f"-L{root}/opt/b",
        "-l:libw.so",
        "-Wl,-rpath,/opt/a:/opt/b",
    )
    _, ctx = open_root(root)
    edges, unknowns = analyze(ctx, "/app/exe")
    assert unknowns == []
    assert needed_edge(edges, "/app/exe", "libw.so").dst == "/opt/b/libw.so"
    tried = ctx.service(Loader).tried[("/app/exe", "libw.so")]
    assert tried[0].startswith("/opt/a/libw.so (skipped") and reason in tried[0]
    assert tried[1] == "/opt/b/libw.so"


def test_needed_with_slash_is_a_path_relative_to_workdir(tmp_path: Path, open_root) -> None:
    need_gcc()
    root = glibc_root(tmp_path)
    cc(root, "/srv/p/libp.so", "int libp_fn(void) { return 1; }\n", "-shared", "-fPIC")  # no soname
    # linked from the root by a relative path: DT_NEEDED "srv/p/libp.so", opened from the cwd
    cc(root, "/app/exe", main_calling("libp_fn"), "srv/p/libp.so", cwd=root)
    set_config(root, WorkingDir="/")
    _, ctx = open_root(root)
    info = LibraryResolver(ctx.fs, ctx.config).elf("/app/exe")
    assert "srv/p/libp.so" in info.needed
    edges, unknowns = analyze(ctx, "/app/exe")
    assert unknowns == []
    edge = needed_edge(edges, "/app/exe", "srv/p/libp.so")
    assert edge.dst == "/srv/p/libp.so" and edge.evidence.endswith("via path")


def test_loaded_soname_is_reused(tmp_path: Path, open_root) -> None:
    need_gcc()
    root = glibc_root(tmp_path)
    shlib(root, "/opt/p/libp.so.1", "libp.so.1")
    shlib(root, "/opt/p2/libp.so.1", "libp.so.1")
    shlib(
        root,
        "/opt/q/libq.so",
        "libq.so",
        f"-L{root}/opt/p2",
        "-l:libp.so.1",
        "-Wl,--enable-new-dtags,-rpath,/opt/p2",
    )
    cc(
        root,
        "/app/exe",
        main_calling("libq_fn", "libp_fn"),
        f"-L{root}/opt/q",
        "-l:libq.so",
        f"-L{root}/opt/p",
        "-l:libp.so.1",
        "-Wl,--disable-new-dtags,-rpath,/opt/q:/opt/p",
    )
    _, ctx = open_root(root)
    edges, unknowns = analyze(ctx, "/app/exe")
    assert unknowns == []
    assert needed_edge(edges, "/app/exe", "libp.so.1").dst == "/opt/p/libp.so.1"
    reused = needed_edge(edges, "/opt/q/libq.so", "libp.so.1")
    assert reused.dst == "/opt/p/libp.so.1" and reused.evidence.endswith("via already loaded")
    assert not any(e.dst.startswith("/opt/p2") for e in edges)


def test_nodeflib_skips_cache_and_trusted_dirs(tmp_path: Path, open_root) -> None:
    need_gcc()
    root = glibc_root(tmp_path)
    shlib(root, "/usr/lib/libd.so", "libd.so")
    cc(
        root,
        "/app/exe",
        main_calling("libd_fn"),
        f"-L{root}/usr/lib",
        "-l:libd.so",
        "-Wl,-z,nodefaultlib",
    )
    cc(root, "/app/exe2", main_calling("libd_fn"), f"-L{root}/usr/lib", "-l:libd.so")
    _, ctx = open_root(root)
    _, unknowns = analyze(ctx, "/app/exe")
    assert {u.reason.split(":")[0] for u in unknowns} == {
        "DT_NEEDED libd.so",
        "DT_NEEDED libc.so.6",
    }
    edges, unknowns = analyze(ctx, "/app/exe2")
    assert unknowns == [] and needed_edge(edges, "/app/exe2", "libd.so").evidence.endswith(
        "via trusted directory"
    )


def test_dynamic_string_tokens(tmp_path: Path, open_root) -> None:
    need_gcc()
    root = glibc_root(tmp_path)
    (root / "app/bin").mkdir(parents=True)
    (root / "app/link").symlink_to("bin")
    exe = cc(root, "/app/bin/exe", MAIN)
    set_config(root, WorkingDir="/srv")
    _, ctx = open_root(root)
    resolver = LibraryResolver(ctx.fs, ctx.config)
    info = resolver.elf("/app/link/exe")
    assert exe.exists()
    # the executable's $ORIGIN is its real directory; a library's is the directory it was found in
    assert resolver.expand("$ORIGIN/../lib", info, True) == "/app/lib"
    assert resolver.expand("${ORIGIN}", info, False) == "/app/link"
    assert (
        resolver.expand("/x/$LIB/$PLATFORM", info, True) == f"/x/{MULTIARCH}/x86_64"
    )  # Debian multiarch
    assert (
        resolver.expand("", info, True) == "/srv"
        and resolver.expand("rel", info, True) == "/srv/rel"
    )
    assert resolver.expand("/a/$UNKNOWN", info, True) == "/a/$UNKNOWN"


def test_preloads_from_env_and_etc(tmp_path: Path, open_root) -> None:
    need_gcc()
    root = glibc_root(tmp_path)
    shlib(root, "/usr/lib/libdep.so", "libdep.so")
    shlib(root, "/usr/lib/libpre.so", "libpre.so", f"-L{root}/usr/lib", "-l:libdep.so")
    shlib(root, "/opt/x/libpre2.so", "libpre2.so")
    cc(root, "/app/exe", MAIN)
    (root / "etc/ld.so.preload").write_text("# preload\n/opt/x/libpre2.so\n")
    set_config(root, Env=["LD_PRELOAD=libpre.so"])
    _, ctx = open_root(root)
    edges, unknowns = analyze(ctx, "/app/exe")
    assert unknowns == []
    pre = [e for e in edges if e.src == "/app/exe" and "PRELOAD" in e.evidence.upper()]
    assert [(e.dst, e.evidence) for e in pre] == [
        ("/usr/lib/libpre.so", "LD_PRELOAD libpre.so via trusted directory"),
        ("/opt/x/libpre2.so", "/etc/ld.so.preload /opt/x/libpre2.so via path"),
    ]
    assert needed_edge(edges, "/usr/lib/libpre.so", "libdep.so").dst == "/usr/lib/libdep.so"


def _real_ld_so_list(root: Path, exe: str, env: dict[str, str]) -> dict[str, str]:
    """What the real glibc loader maps, run chrooted into ROOT: {name: path}."""
    proc = subprocess.run(
        [
            shutil.which("chroot") or "chroot",
            str(root),
            "/lib64/ld-linux-x86-64.so.2",
            "--list",
            exe,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(re.findall(r"^\s+(\S+) => (\S+) \(0x", proc.stdout, re.M))


def test_differential_against_the_real_loader(tmp_path: Path, open_root) -> None:
    """Every library the real ld.so maps (chroot + --list) is what the resolver found (or one of
    its hwcaps alternatives: the real CPU picks one)."""
    need_gcc()
    require(os.geteuid() == 0 and have("chroot"), "chroot needs root")
    root = glibc_root(tmp_path)
    shlib(root, "/opt/b/libbar.so.1", "libbar.so.1")
    shlib(root, "/opt/a/libfoo.so.1", "libfoo.so.1", f"-L{root}/opt/b", "-l:libbar.so.1")
    shlib(root, "/env/libenv.so", "libenv.so")
    shlib(root, "/srv/odd/libcached.so.3", "libcached.so.3")
    shlib(root, "/usr/lib/libhw.so.1", "libhw.so.1")
    shlib(root, "/usr/lib/glibc-hwcaps/x86-64-v2/libhw.so.1", "libhw.so.1")
    shlib(root, "/app/lib/libo.so", "libo.so")
    # '..' after a symlinked directory: $ORIGIN/../dep from /opt/link (-> /real/sub) is /real/dep
    (root / "real/sub").mkdir(parents=True)
    (root / "opt/link").symlink_to("../real/sub")
    shlib(root, "/real/dep/libdep.so", "libdep.so")
    shlib(
        root,
        "/real/sub/libfoo2.so",
        "libfoo2.so",
        f"-L{root}/real/dep",
        "-l:libdep.so",
        "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../dep",
    )
    libs = {
        "libfoo2.so": "/real/sub",
        "libfoo.so.1": "/opt/a",
        "libenv.so": "/env",
        "libcached.so.3": "/srv/odd",
        "libhw.so.1": "/usr/lib",
        "libo.so": "/app/lib",
    }
    link = [f for name, d in libs.items() for f in (f"-L{root}{d}", f"-l:{name}")]
    cc(
        root,
        "/app/bin/exe",
        main_calling("libfoo_fn", "libfoo2_fn", "libenv_fn", "libcached_fn", "libhw_fn", "libo_fn"),
        *link,
        "-Wl,--disable-new-dtags,-rpath,/opt/a:/opt/b:$ORIGIN/../lib:/opt/link",
    )
    (root / "etc/ld.so.conf.d/odd.conf").write_text("/srv/odd\n")
    run_ldconfig(root)
    set_config(root, Env=["LD_LIBRARY_PATH=/env"])
    real = _real_ld_so_list(
        root, "/app/bin/exe", {"LD_LIBRARY_PATH": "/env", "PATH": "/usr/bin:/bin"}
    )
    _, ctx = open_root(root)
    edges, unknowns = analyze(ctx, "/app/bin/exe")
    assert unknowns == []
    ours: dict[str, set[str]] = {}
    for e in edges:
        if e.kind == "needed":
            ours.setdefault(e.evidence.split()[1], set()).add(e.dst)
    assert set(real) <= set(ours) | {"linux-vdso.so.1"}
    for name, path in real.items():
        if name == "linux-vdso.so.1":
            continue
        if ".." in path:  # ld.so prints the unnormalized path; we report the physical one
            assert ctx.fs.realpath(path) in {ctx.fs.realpath(p) for p in ours[name]}, (name, path)
        else:
            assert path in ours[name], (name, path, ours[name])
    assert real["libdep.so"] == "/opt/link/../dep/libdep.so"  # the scenario did happen
    assert ours["libdep.so"] == {"/real/dep/libdep.so"}
    assert (
        Edge(
            "/opt/link/libfoo2.so",
            "/opt/link",
            "symlink",
            "DT_NEEDED libdep.so: on the search path",
        )
        in edges
    )


def test_corrupt_image_cache_is_reported_and_conf_used(tmp_path: Path, open_root) -> None:
    need_gcc()
    root = glibc_root(tmp_path)
    cc(root, "/app/exe", MAIN)
    (root / "etc/ld.so.cache").write_bytes(b"glibc-ld.so.cache1.1" + b"\xff" * 40)
    _, ctx = open_root(root)
    edges, unknowns = analyze(ctx, "/app/exe")
    assert needed_edge(edges, "/app/exe", "libc.so.6").evidence.endswith("(no ld.so.cache)")
    assert [u.path for u in unknowns] == ["/etc/ld.so.cache"]
    assert unknowns[0].reason.startswith("/etc/ld.so.cache: ")


# -- musl ---------------------------------------------------------------------------------------
def musl_root(root: Path) -> Path:
    (root / "lib").mkdir(parents=True, exist_ok=True)
    # the host's musl loader is a symlink to libc.so; copy the real file
    (root / "lib/ld-musl-x86_64.so.1").write_bytes(
        Path("/lib/ld-musl-x86_64.so.1").resolve().read_bytes()
    )
    (root / "lib/ld-musl-x86_64.so.1").chmod(0o755)
    return root


def test_musl_binary(tmp_path: Path, open_root) -> None:
    require(
        have("musl-gcc") and os.path.exists("/lib/ld-musl-x86_64.so.1"), "musl-gcc (musl-tools)"
    )
    root = musl_root(tmp_path)
    shlib(root, "/usr/lib/libm1.so", "libm1.so", compiler="musl-gcc")
    shlib(root, "/opt/mp/libm2.so", "libm2.so", compiler="musl-gcc")
    (root / "etc").mkdir(exist_ok=True)
    cc(
        root,
        "/app/exe",
        main_calling("libm1_fn"),
        f"-L{root}/usr/lib",
        "-l:libm1.so",
        compiler="musl-gcc",
    )
    cc(
        root,
        "/app/exe2",
        main_calling("libm2_fn"),
        f"-L{root}/opt/mp",
        "-l:libm2.so",
        compiler="musl-gcc",
    )
    _, ctx = open_root(root)
    edges, unknowns = analyze(ctx, "/app/exe")
    assert unknowns == []
    assert Edge("/app/exe", "/lib/ld-musl-x86_64.so.1", "interpreter", "PT_INTERP") in edges
    m1 = needed_edge(edges, "/app/exe", "libm1.so")
    assert m1.dst == "/usr/lib/libm1.so" and m1.evidence.endswith("via musl default path")
    libc = [e for e in edges if e.evidence.startswith("DT_NEEDED libc.") and e.src == "/app/exe"]
    assert libc and libc[0].dst == "/lib/ld-musl-x86_64.so.1"
    # /opt/mp is not on the default path ...
    _, unknowns = analyze(ctx, "/app/exe2")
    assert [u.reason.split(":")[0] for u in unknowns] == ["DT_NEEDED libm2.so"]


def test_musl_path_file(tmp_path: Path, open_root) -> None:
    require(
        have("musl-gcc") and os.path.exists("/lib/ld-musl-x86_64.so.1"), "musl-gcc (musl-tools)"
    )
    root = musl_root(tmp_path)
    shlib(root, "/opt/mp/libm2.so", "libm2.so", compiler="musl-gcc")
    cc(
        root,
        "/app/exe2",
        main_calling("libm2_fn"),
        f"-L{root}/opt/mp",
        "-l:libm2.so",
        compiler="musl-gcc",
    )
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/ld-musl-x86_64.path").write_text("/lib\n/opt/mp:/usr/lib\n")
    _, ctx = open_root(root)
    edges, unknowns = analyze(ctx, "/app/exe2")
    assert unknowns == []
    m2 = needed_edge(edges, "/app/exe2", "libm2.so")
    assert m2.dst == "/opt/mp/libm2.so" and m2.evidence.endswith("via /etc/ld-musl-x86_64.path")


def test_musl_runpath_is_inherited(tmp_path: Path, open_root) -> None:
    require(
        have("musl-gcc") and os.path.exists("/lib/ld-musl-x86_64.so.1"), "musl-gcc (musl-tools)"
    )
    root = musl_root(tmp_path)
    shlib(root, "/opt/b/libbar.so", "libbar.so", compiler="musl-gcc")
    shlib(
        root,
        "/opt/a/libfoo.so",
        "libfoo.so",
        f"-L{root}/opt/b",
        "-l:libbar.so",
        compiler="musl-gcc",
    )
    cc(
        root,
        "/app/exe",
        main_calling("libfoo_fn"),
        f"-L{root}/opt/a",
        "-l:libfoo.so",
        "-Wl,--enable-new-dtags,-rpath,/opt/a:/opt/b",
        compiler="musl-gcc",
    )
    _, ctx = open_root(root)
    edges, unknowns = analyze(ctx, "/app/exe")
    assert unknowns == []  # unlike glibc, musl searches the loader's RUNPATH for libfoo's needs
    assert needed_edge(edges, "/opt/a/libfoo.so", "libbar.so").evidence.endswith(
        "via rpath of /app/exe"
    )


def test_musl_differential_against_the_real_loader(tmp_path: Path, open_root) -> None:
    require(
        have("musl-gcc") and os.path.exists("/lib/ld-musl-x86_64.so.1"), "musl-gcc (musl-tools)"
    )
    require(os.geteuid() == 0 and have("chroot"), "chroot needs root")
    root = musl_root(tmp_path)
    kw = {"compiler": "musl-gcc"}
    shlib(root, "/opt/b/libbar.so", "libbar.so", **kw)
    shlib(root, "/opt/a/libfoo.so", "libfoo.so", f"-L{root}/opt/b", "-l:libbar.so", **kw)
    shlib(root, "/opt/mp/libm2.so", "libm2.so", **kw)
    shlib(root, "/env/libenv.so", "libenv.so", **kw)
    shlib(root, "/usr/lib/libenv.so", "libenv.so", **kw)  # shadowed by LD_LIBRARY_PATH
    cc(
        root,
        "/app/exe",
        main_calling("libfoo_fn", "libm2_fn", "libenv_fn"),
        f"-L{root}/opt/a",
        "-l:libfoo.so",
        f"-L{root}/opt/mp",
        "-l:libm2.so",
        f"-L{root}/env",
        "-l:libenv.so",
        "-Wl,--enable-new-dtags,-rpath,/opt/a:/opt/b",
        **kw,
    )
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/ld-musl-x86_64.path").write_text("/lib:/opt/mp\n/usr/lib\n")
    set_config(root, Env=["LD_LIBRARY_PATH=/env"])
    proc = subprocess.run(
        [
            shutil.which("chroot") or "chroot",
            str(root),
            "/lib/ld-musl-x86_64.so.1",
            "--list",
            "/app/exe",
        ],
        capture_output=True,
        text=True,
        env={"LD_LIBRARY_PATH": "/env"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    real = dict(re.findall(r"^\s+(\S+) => (\S+) \(0x", proc.stdout, re.M))
    _, ctx = open_root(root)
    edges, unknowns = analyze(ctx, "/app/exe")
    assert unknowns == []
    ours = {e.evidence.split()[1]: e.dst for e in edges if e.kind == "needed"}
    assert real == {k: v for k, v in ours.items() if k in real} and set(real) == set(ours)
    assert real["libenv.so"] == "/env/libenv.so" and real["libbar.so"] == "/opt/b/libbar.so"


# -- objects without dependencies, broken objects ----------------------------------------------------
@pytest.mark.parametrize("flags", [("-static",), ("-static-pie",)])
def test_static_binaries_have_no_edges(tmp_path: Path, open_root, flags: tuple[str, ...]) -> None:
    need_gcc()
    root = glibc_root(tmp_path)
    try:
        cc(root, "/app/static", MAIN, *flags)
    except AssertionError as exc:
        require(False, f"gcc {flags[0]} unavailable: {exc}")
    _, ctx = open_root(root)
    edges, unknowns = analyze(ctx, "/app/static")
    assert edges == [] and unknowns == []


def test_broken_elf_is_unknown(tmp_path: Path, open_root) -> None:
    need_gcc()
    root = glibc_root(tmp_path)
    exe = cc(root, "/app/exe", MAIN)
    exe.write_bytes(exe.read_bytes()[:60])  # header cut inside the program header table
    _, ctx = open_root(root)
    edges, unknowns = analyze(ctx, "/app/exe")
    assert edges == []
    assert len(unknowns) == 1 and unknowns[0].path == "/app/exe"
    assert "not a valid ELF" in unknowns[0].reason


def test_covered_library_is_not_reanalyzed_alone(tmp_path: Path, open_root) -> None:
    need_gcc()
    root = glibc_root(tmp_path)
    shlib(root, "/opt/b/libbar.so.1", "libbar.so.1")
    shlib(root, "/opt/a/libfoo.so.1", "libfoo.so.1", f"-L{root}/opt/b", "-l:libbar.so.1")
    cc(
        root,
        "/app/exe",
        main_calling("libfoo_fn"),
        f"-L{root}/opt/a",
        "-l:libfoo.so.1",
        "-Wl,--disable-new-dtags,-rpath,/opt/a:/opt/b",
    )
    _, ctx = open_root(root)
    analyze(ctx, "/app/exe")
    edges, unknowns = analyze(ctx, "/opt/a/libfoo.so.1")  # alone it could not find libbar
    assert edges == [] and unknowns == []
    _, fresh = open_root(root)
    _, unknowns = analyze(fresh, "/opt/a/libfoo.so.1")
    assert [u.reason.split(":")[0] for u in unknowns] == ["DT_NEEDED libbar.so.1"]


# -- ld.so.conf ---------------------------------------------------------------------------------
def test_parse_ld_so_conf_includes_and_cycles(tmp_path: Path, open_root) -> None:
    etc = tmp_path / "etc"
    (etc / "ld.so.conf.d").mkdir(parents=True)
    (etc / "ld.so.conf").write_text(
        "# comment\n/usr/local/lib  # trailing comment\ninclude ld.so.conf.d/*.conf\nhwcap 1 x\n/opt/old=libc6\n"
    )
    (etc / "ld.so.conf.d/b.conf").write_text("/b1\n/b2\n")
    (etc / "ld.so.conf.d/a.conf").write_text(
        "/a1\ninclude /etc/ld.so.conf\n/usr/local/lib\n"
    )  # cycle
    (etc / "ld.so.conf.d/skip.txt").write_text("/never\n")
    _, ctx = open_root(tmp_path)
    assert parse_ld_so_conf(ctx.fs) == ["/usr/local/lib", "/a1", "/b1", "/b2", "/opt/old"]


def test_parse_ld_so_conf_missing(tmp_path: Path, open_root) -> None:
    _, ctx = open_root(tmp_path)
    assert parse_ld_so_conf(ctx.fs) == []


# -- ld.so.cache --------------------------------------------------------------------------------
def _ldconfig_p(cache: str | None = None) -> list[tuple[str, str]]:
    cmd = ["ldconfig", "-p"] + (["-C", cache] if cache else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^\s+(\S+) \(.*\) => (\S+)$", out, re.M)]


def test_host_ld_so_cache_matches_ldconfig_p() -> None:
    require(
        have("ldconfig") and os.path.isfile("/etc/ld.so.cache"),
        "host ldconfig and /etc/ld.so.cache",
    )
    with open("/etc/ld.so.cache", "rb") as f:
        entries = parse_ld_so_cache(f.read())
    assert [(e.key, e.value) for e in entries] == _ldconfig_p()
    assert all(e.flags & 0xFF == 0x03 for e in entries)


@pytest.mark.parametrize("fmt", ["new", "compat", "old"])
def test_generated_ld_so_cache(tmp_path: Path, fmt: str) -> None:
    need_gcc()
    root = glibc_root(tmp_path)
    shlib(root, "/srv/x/libx.so.7", "libx.so.7")
    shlib(root, "/srv/x/glibc-hwcaps/x86-64-v3/libx.so.7", "libx.so.7")
    (root / "etc/ld.so.conf.d/x.conf").write_text("/srv/x\n")
    run_ldconfig(root, "-c", fmt)
    data = (root / "etc/ld.so.cache").read_bytes()
    assert data.startswith(b"ld.so-1.7.0" if fmt != "new" else b"glibc-ld.so.cache1.1")
    entries = parse_ld_so_cache(data)
    pairs = {(e.key, e.value) for e in entries}
    assert ("libx.so.7", "/srv/x/libx.so.7") in pairs
    assert ("libc.so.6", f"/{MULTIARCH}/libc.so.6") in pairs
    if fmt != "old":
        assert ("libx.so.7", "/srv/x/glibc-hwcaps/x86-64-v3/libx.so.7") in pairs
        assert [(e.key, e.value) for e in entries] == _ldconfig_p(str(root / "etc/ld.so.cache"))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage" * 10,
        b"glibc-ld.so.cache1.1",  # truncated header
        b"glibc-ld.so.cache1.1" + struct.pack("<II", 1000, 0) + b"\0" * 24,  # entries past the end
        b"glibc-ld.so.cache9.9" + b"\0" * 40,
        b"ld.so-1.7.0\0" + struct.pack("<I", 5),
    ],
)
def test_malformed_ld_so_cache(data: bytes) -> None:
    with pytest.raises(AnalysisError, match=r"^/etc/ld\.so\.cache: "):
        parse_ld_so_cache(data)


def test_ld_so_cache_bad_string_offset() -> None:
    header = b"glibc-ld.so.cache1.1" + struct.pack("<IIB3sI12x", 1, 0, 0, b"", 0)
    entry = struct.pack("<iIIIQ", 0x303, 10_000, 0, 0, 0)
    with pytest.raises(AnalysisError, match="outside the file"):
        parse_ld_so_cache(header + entry)
