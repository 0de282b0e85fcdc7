"""parse_elf / is_elf / elf_info on real gcc-built objects, plus a fuzz of garbled ELF bytes."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slim.analyzers.elf import Loader
from slim.elf import ElfInfo, is_elf, libc_from_interp, parse_elf
from slim.errors import AnalysisError
from tests.conftest import require
from tests.unit.analyzers.conftest import HOST_LD, cc, glibc_root, have, need_gcc, shlib

MAIN = "int main(void) { return 0; }\n"


def parse(path: Path, name: str = "/x") -> ElfInfo:
    with open(path, "rb") as f:
        return parse_elf(f, name)


def readelf_build_id(path: Path) -> str:
    out = subprocess.run(
        ["readelf", "-n", str(path)], capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines():
        if "Build ID:" in line:
            return line.split("Build ID:")[1].strip()
    return ""


def test_dynamic_pie_executable(tmp_path: Path) -> None:
    need_gcc()
    shlib(tmp_path, "/l/liba.so.2", "liba.so.2")
    shlib(tmp_path, "/l/libb.so", "libb.so")
    exe = cc(
        tmp_path,
        "/exe",
        MAIN,
        "-pie",
        "-fPIE",
        "-Wl,--build-id",
        f"-L{tmp_path}/l",
        "-l:libb.so",
        "-l:liba.so.2",
        "-Wl,--enable-new-dtags,-rpath,$ORIGIN/l::/opt/x",
    )
    info = parse(exe, "/exe")
    assert (info.path, info.elfclass, info.machine, info.little_endian) == (
        "/exe",
        64,
        "EM_X86_64",
        True,
    )
    assert info.etype == "DYN" and info.is_pie and not info.is_static and not info.is_static_pie
    assert info.interp == "/lib64/ld-linux-x86-64.so.2" and info.libc == "glibc"
    assert info.needed == ("libb.so", "liba.so.2", "libc.so.6")  # DT_NEEDED order = link order
    assert info.runpath == ("$ORIGIN/l", "", "/opt/x") and info.rpath == ()
    assert info.soname is None
    if have("readelf"):
        assert info.build_id == readelf_build_id(exe) != ""


def test_rpath_and_soname_of_library(tmp_path: Path) -> None:
    need_gcc()
    lib = shlib(
        tmp_path,
        "/libz.so.1",
        "libz.so.1",
        "-Wl,--disable-new-dtags,-rpath,/a:/b",
        "-Wl,-z,nodefaultlib",
    )
    info = parse(lib)
    assert info.soname == "libz.so.1" and info.etype == "DYN" and not info.is_pie
    assert (
        info.rpath == ("/a", "/b") and info.runpath == () and info.effective_rpath == ("/a", "/b")
    )
    assert info.interp is None and info.libc is None and info.nodeflib


def test_non_pie_executable(tmp_path: Path) -> None:
    need_gcc()
    info = parse(cc(tmp_path, "/exe", MAIN, "-no-pie"))
    assert info.etype == "EXEC" and not info.is_pie and not info.is_static


@pytest.mark.parametrize(
    ("flags", "etype", "static_pie"),
    [(("-static",), "EXEC", False), (("-static-pie",), "DYN", True)],
)
def test_static_binaries(
    tmp_path: Path, flags: tuple[str, ...], etype: str, static_pie: bool
) -> None:
    need_gcc()
    try:
        exe = cc(tmp_path, "/s", MAIN, *flags)
    except AssertionError as exc:
        require(False, f"gcc {flags[0]}: {exc}")
    info = parse(exe)
    assert info.is_static and info.interp is None and info.needed == ()
    assert info.etype == etype and info.is_static_pie is static_pie


def test_musl_executable(tmp_path: Path) -> None:
    require(have("musl-gcc"), "musl-gcc (musl-tools)")
    info = parse(cc(tmp_path, "/m", MAIN, compiler="musl-gcc"))
    assert info.libc == "musl" and info.interp == "/lib/ld-musl-x86_64.so.1"
    assert any(n.startswith("libc.") for n in info.needed)


def test_libc_from_interp() -> None:
    assert libc_from_interp("/lib/ld-musl-aarch64.so.1") == "musl"
    assert libc_from_interp("/lib64/ld-linux-x86-64.so.2") == "glibc"
    assert libc_from_interp("/lib/ld-linux-armhf.so.3") == "glibc"
    assert libc_from_interp("/lib64/ld64.so.2") == "glibc"
    assert libc_from_interp(None) is None and libc_from_interp("/opt/weird-loader") is None


def test_compatibility() -> None:
    base = ElfInfo("/a", 64, "EM_X86_64", True, "ELFOSABI_SYSV", "DYN")
    assert base.compatible_with(ElfInfo("/b", 64, "EM_X86_64", True, "ELFOSABI_LINUX", "DYN")) == ""
    assert "class" in base.compatible_with(
        ElfInfo("/b", 32, "EM_386", True, "ELFOSABI_SYSV", "DYN")
    )
    assert "machine" in base.compatible_with(
        ElfInfo("/b", 64, "EM_AARCH64", True, "ELFOSABI_SYSV", "DYN")
    )
    assert "byte order" in base.compatible_with(
        ElfInfo("/b", 64, "EM_X86_64", False, "ELFOSABI_SYSV", "DYN")
    )
    assert "OS ABI" in base.compatible_with(
        ElfInfo("/b", 64, "EM_X86_64", True, "ELFOSABI_FREEBSD", "DYN")
    )


@pytest.mark.parametrize(
    "data", [b"", b"\x7fEL", b"#!/bin/sh\n", b"\x7fELF", b"\x7fELF\x03\x01\x01" + b"\0" * 60]
)
def test_not_elf(data: bytes) -> None:
    with pytest.raises(AnalysisError, match=r"^/bad: not a valid ELF: "):
        parse_elf(io.BytesIO(data), "/bad")


def _host_elf() -> bytes:
    path = os.path.realpath(HOST_LD)
    require(os.path.exists(path), "host ld.so")
    with open(path, "rb") as f:
        return f.read()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_garbled_elf_only_raises_analysis_error(data: st.DataObject) -> None:
    raw = bytearray(_host_elf()[: 1 << 14])  # headers, program headers, dynamic section, notes
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)), label="truncate")
    del raw[cut:]
    for _ in range(data.draw(st.integers(min_value=0, max_value=8), label="flips")):
        if not raw:
            break
        pos = data.draw(st.integers(min_value=0, max_value=min(len(raw) - 1, 2048)), label="pos")
        raw[pos] = data.draw(st.integers(min_value=0, max_value=255), label="byte")
    try:
        info = parse_elf(io.BytesIO(bytes(raw)), "/fuzz")
    except AnalysisError as exc:
        assert str(exc).startswith("/fuzz: not a valid ELF: ")
    else:
        assert info.elfclass in (32, 64)


def _pyelftools(data: bytes) -> tuple[object, object, object]:
    """What pyelftools reads from `data` (parse_elf, data_segments, imported_symbols as they
    read before the struct reader), each an exception class name when it fails."""
    from elftools.elf.sections import SymbolTableSection

    from slim import elf as E

    def info() -> object:
        return E._parse(E.open_elf(io.BytesIO(data), "/f"), "/f")

    def segments() -> object:
        return [(int(s["p_offset"]), int(s["p_filesz"])) for s in E.open_elf(io.BytesIO(data), "/f").iter_segments()
                if s["p_type"] == "PT_LOAD" and not int(s["p_flags"]) & E.PF_X and int(s["p_filesz"]) > 0]

    def symbols() -> object:
        elf = E.open_elf(io.BytesIO(data), "/f")
        dynsym = elf.get_section_by_name(".dynsym")
        if not isinstance(dynsym, SymbolTableSection):
            return set()
        strtab = elf.get_section(dynsym["sh_link"])
        return E._undefined(dynsym.data(), strtab.data(), elf.elfclass, elf.little_endian)

    out: list[object] = []
    for read in (info, segments, symbols):
        try:
            out.append(read())
        except Exception as exc:  # the garbled-file policy: any failure
            out.append(type(exc).__name__)
    return out[0], out[1], out[2]


def _struct_reader(data: bytes) -> tuple[object, object, object]:
    from slim import elf as E

    out: list[object] = []
    for read in (lambda r: r.info("/f"),
                 lambda r: [(o, n) for k, f, o, _, n in r.segments if k == E.PT_LOAD and not f & E.PF_X and n > 0],
                 lambda r: r.undefined_symbols()):
        try:
            out.append(read(E._Raw(io.BytesIO(data))))
        except E._UNUSUAL:
            out.append(None)  # left to pyelftools
    return out[0], out[1], out[2]


def test_the_struct_reader_agrees_with_pyelftools_on_host_objects() -> None:
    """The loader, libc and a few libraries and programs of the host: the same answers."""
    paths = [os.path.realpath(HOST_LD), "/bin/ls", "/usr/bin/python3", "/bin/bash"]
    paths += sorted(str(p) for p in Path("/usr/lib/x86_64-linux-gnu").glob("lib*.so*"))[:40:4]
    checked = 0
    for path in paths:
        if not os.path.isfile(path):
            continue
        data = Path(path).read_bytes()
        if data[:4] != b"\x7fELF":
            continue
        assert _struct_reader(data) == _pyelftools(data), path
        checked += 1
    assert checked >= 5


def _without_sections(data: bytes) -> bytes:
    """`data` with no section table (e_shoff, e_shnum and e_shstrndx zero, ELF64 LE): pyelftools
    then finds the dynamic string table from DT_STRTAB and the program headers, as ld.so does."""
    out = bytearray(data)
    out[0x28:0x30] = bytes(8)
    out[0x3C:0x40] = bytes(4)
    return bytes(out)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_the_struct_reader_agrees_with_pyelftools(data: st.DataObject) -> None:
    """Garbled copies of the host's ld.so (program headers, notes and dynamic section, or the
    section table, flipped; the file cut): where both readers answer, they answer the same.
    pyelftools takes the dynamic string table from the section table when there is one; ld.so
    and the struct reader from DT_STRTAB: the ELF facts are compared with pyelftools reading
    the copy without its section table."""
    raw = bytearray(_host_elf())
    shoff = int.from_bytes(raw[0x28:0x30], "little")
    table_end = shoff + 64 * int.from_bytes(raw[0x3C:0x3E], "little")
    if data.draw(st.booleans(), label="cut"):
        del raw[max(data.draw(st.integers(min_value=0, max_value=len(raw)), label="at"), 0x40):]
    for _ in range(data.draw(st.integers(min_value=1, max_value=6), label="flips")):
        in_sections = data.draw(st.booleans(), label="sections")
        lo, hi = (shoff, table_end - 1) if in_sections else (0x40, 4096)  # the ELF header stays
        pos = data.draw(st.integers(min_value=lo, max_value=hi), label="pos")
        if pos < len(raw):
            raw[pos] = data.draw(st.integers(min_value=0, max_value=255), label="byte")
    fast, old = _struct_reader(bytes(raw)), _pyelftools(bytes(raw))
    old = (_pyelftools(_without_sections(bytes(raw)))[0], old[1], old[2])
    for mine, theirs in zip(fast, old, strict=True):
        if mine is not None and not isinstance(theirs, str):
            assert mine == theirs


def test_is_elf_and_cached_elf_info(tmp_path: Path, open_root) -> None:
    need_gcc()
    root = glibc_root(tmp_path)
    cc(root, "/app/exe", MAIN)
    (root / "app/script.sh").write_text("#!/bin/sh\n")
    (root / "app/broken").write_bytes(b"\x7fELF\x02\x01\x01garbage")
    (root / "app/link").symlink_to("exe")
    _, ctx = open_root(root)
    assert is_elf(ctx.fs, "/app/exe") and is_elf(ctx.fs, "/app/link")
    assert (
        not is_elf(ctx.fs, "/app/script.sh")
        and not is_elf(ctx.fs, "/app")
        and not is_elf(ctx.fs, "/nope")
    )
    resolver = ctx.service(Loader).resolver
    first = resolver.elf("/app/exe")
    assert resolver.elf("/app/exe") is first and ctx.service(Loader).resolver is resolver
    with pytest.raises(AnalysisError, match=r"^/app/broken: not a valid ELF"):
        resolver.elf("/app/broken")
    with pytest.raises(AnalysisError, match=r"^/app/broken: not a valid ELF"):
        resolver.elf("/app/broken")  # the failure is memoized too
