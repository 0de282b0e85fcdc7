"""The one ELF reader: ELF facts the dynamic-loader emulation needs, read with pyelftools, and
the one policy for garbled files.

`parse_elf` turns one ELF object into a frozen `ElfInfo`: class, machine, byte order, OS ABI,
type, PT_INTERP, the dynamic section's DT_NEEDED / DT_RPATH / DT_RUNPATH / DT_SONAME /
DT_FLAGS_1, and the GNU build-id note. Only program headers (segments) are used, as ld.so does
(glibc elf/dl-load.c `_dl_map_object_from_fd` never looks at section headers), so stripped
objects and objects whose section table was removed parse the same way.

The image is untrusted input: every use of pyelftools on image bytes (here, in the syscall
extractor, in the rules' symbol tests) runs inside `elf_errors(path)`, which turns any failure
on a garbled file into an `AnalysisError` naming the file — never another exception. The set of
exceptions pyelftools and construct raise on bad input is not documented (ELFError,
ELFParseError, construct's StreamError, struct.error, UnicodeDecodeError, ValueError,
IndexError, KeyError, TypeError, RecursionError were all seen), so the policy is: every
ordinary exception from the parser means "not a valid ELF".
"""

from __future__ import annotations

import logging
import posixpath
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment, NoteSegment

from slim.errors import AnalysisError

if TYPE_CHECKING:
    from slim.fs.rootfs import RootFS

log = logging.getLogger(__name__)

ELF_MAGIC = b"\x7fELF"

PF_X = 0x1  # segment flag: executable (glibc elf/elf.h)

# DT_FLAGS_1 bits (glibc elf/elf.h).
DF_1_NODEFLIB = 0x00000800
DF_1_PIE = 0x08000000

# Caps that keep a hostile file from making us spin (ld.so has none, but it does not need any).
MAX_DYNAMIC_TAGS = 1 << 16
MAX_SEGMENTS = 1 << 12


@dataclass(frozen=True)
class ElfInfo:
    """What one ELF object tells the dynamic loader (paths are image paths)."""

    path: str
    elfclass: int  # 32 | 64
    machine: str  # pyelftools e_machine name, e.g. "EM_X86_64"
    little_endian: bool
    osabi: str  # e.g. "ELFOSABI_SYSV"
    etype: str  # "EXEC" | "DYN" | "REL" | "CORE" | raw name
    interp: str | None = None  # PT_INTERP
    needed: tuple[str, ...] = ()  # DT_NEEDED, in order
    rpath: tuple[str, ...] = ()  # DT_RPATH, raw elements (split on ':')
    runpath: tuple[str, ...] = ()  # DT_RUNPATH, raw elements
    soname: str | None = None
    is_static: bool = False  # no PT_INTERP and no DT_NEEDED
    is_static_pie: bool = False  # ET_DYN, no PT_INTERP, DF_1_PIE (gcc -static-pie)
    is_pie: bool = False  # ET_DYN with DF_1_PIE, or with PT_INTERP and no soname
    build_id: str = ""  # hex of NT_GNU_BUILD_ID
    libc: str | None = None  # "glibc" | "musl" | None, guessed from the interpreter name
    nodeflib: bool = False  # DF_1_NODEFLIB: skip ld.so.cache and the trusted directories
    has_dynamic: bool = False  # PT_DYNAMIC present

    @property
    def effective_rpath(self) -> tuple[str, ...]:
        """DT_RPATH as glibc uses it: ignored when DT_RUNPATH is present
        (glibc elf/get-dynamic-info.h: "If both RUNPATH and RPATH are given, the latter is ignored")."""
        return () if self.runpath else self.rpath

    def compatible_with(self, other: ElfInfo) -> str:
        """ "" when `other` can be loaded into a process of this object, else the reason.

        Mirrors glibc elf/dl-load.c `open_verify` (EI_CLASS, EI_DATA, EI_OSABI, e_machine) and
        auditwheel's `Platform.is_compatible`; SYSV and GNU/Linux OS ABIs are interchangeable.
        """
        if other.elfclass != self.elfclass:
            return f"wrong ELF class: ELFCLASS{other.elfclass}"
        if other.little_endian != self.little_endian:
            return "wrong byte order: " + ("little-endian" if other.little_endian else "big-endian")
        if other.machine != self.machine:
            return f"wrong machine: {other.machine}"
        linuxish = {"ELFOSABI_SYSV", "ELFOSABI_LINUX", "ELFOSABI_GNU"}
        if other.osabi != self.osabi and not {other.osabi, self.osabi} <= linuxish:
            return f"wrong OS ABI: {other.osabi}"
        return ""


def libc_from_interp(interp: str | None) -> str | None:
    """Guess the C library from PT_INTERP: musl's loader is ld-musl-ARCH.so.1, glibc's ld-linux*/ld64/ld.so."""
    if not interp:
        return None
    base = posixpath.basename(interp)
    if base.startswith("ld-musl-"):
        return "musl"
    if base.startswith(("ld-linux", "ld64.so", "ld.so", "ld-2.")):
        return "glibc"
    return None


def _split_path_list(value: str) -> tuple[str, ...]:
    return tuple(value.split(":"))


@contextmanager
def elf_errors(path: str) -> Iterator[None]:
    """The garbled-file policy (module doc): any parser failure becomes AnalysisError."""
    try:
        yield
    except AnalysisError:
        raise
    except RecursionError as exc:
        raise AnalysisError(f"{path}: not a valid ELF: structure too deep") from exc
    except Exception as exc:  # the parser's exception set is undocumented (module doc)
        raise AnalysisError(f"{path}: not a valid ELF: {type(exc).__name__}: {exc}") from exc


def open_elf(stream: BinaryIO, path: str) -> ELFFile:
    """An ELFFile over a seekable stream after checking the magic. Raises AnalysisError.

    Lazily parsed parts (sections, symbols, segment data) must be read inside
    `elf_errors(path)` too.
    """
    try:
        head = stream.read(4)
        stream.seek(0)
    except (OSError, ValueError) as exc:
        raise AnalysisError(f"{path}: not a valid ELF: cannot read: {exc}") from exc
    if head != ELF_MAGIC:
        raise AnalysisError(f"{path}: not a valid ELF: bad magic {head!r}")
    with elf_errors(path):
        return ELFFile(stream)


def parse_elf(stream: BinaryIO, path: str) -> ElfInfo:
    """Parse the ELF object in `stream` (seekable). Raises AnalysisError when it is not valid ELF."""
    elf = open_elf(stream, path)
    with elf_errors(path):
        return _parse(elf, path)


def _parse(elf: ELFFile, path: str) -> ElfInfo:
    elfclass = elf.elfclass
    if elfclass not in (32, 64):
        raise AnalysisError(f"{path}: not a valid ELF: ELF class {elfclass}")
    etype_raw = str(elf["e_type"])
    etype = etype_raw[3:] if etype_raw.startswith("ET_") else etype_raw
    interp: str | None = None
    needed: list[str] = []
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()
    soname: str | None = None
    flags_1 = 0
    build_id = ""
    has_dynamic = False
    if elf.num_segments() > MAX_SEGMENTS:
        raise AnalysisError(f"{path}: not a valid ELF: {elf.num_segments()} program headers")
    for seg in elf.iter_segments():
        if isinstance(seg, InterpSegment) and interp is None:
            interp = seg.get_interp_name().rstrip("\x00")
        elif isinstance(seg, DynamicSegment) and not has_dynamic:
            has_dynamic = True
            for count, tag in enumerate(seg.iter_tags()):
                if count >= MAX_DYNAMIC_TAGS:
                    raise AnalysisError(f"{path}: not a valid ELF: too many dynamic tags")
                d_tag = tag.entry.d_tag
                if d_tag == "DT_NEEDED":
                    needed.append(tag.needed)  # type: ignore[attr-defined]
                elif d_tag == "DT_RPATH":
                    rpath = _split_path_list(tag.rpath)  # type: ignore[attr-defined]
                elif d_tag == "DT_RUNPATH":
                    runpath = _split_path_list(tag.runpath)  # type: ignore[attr-defined]
                elif d_tag == "DT_SONAME":
                    soname = tag.soname  # type: ignore[attr-defined]
                elif d_tag == "DT_FLAGS_1":
                    flags_1 = int(tag.entry.d_val)
                elif d_tag == "DT_NULL":
                    break
        elif isinstance(seg, NoteSegment) and not build_id:
            for note in seg.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID" and note["n_name"] == "GNU":
                    desc = note["n_desc"]
                    build_id = desc if isinstance(desc, str) else bytes(desc).hex()
                    break
    is_static = interp is None and not needed
    is_static_pie = etype == "DYN" and interp is None and bool(flags_1 & DF_1_PIE)
    # Old linkers do not set DF_1_PIE; an ET_DYN with an interpreter and no soname is a PIE
    # (libc.so.6 has PT_INTERP too, but also a soname).
    is_pie = etype == "DYN" and (
        bool(flags_1 & DF_1_PIE) or (interp is not None and soname is None)
    )
    info = ElfInfo(
        path=path,
        elfclass=elfclass,
        machine=str(elf["e_machine"]),
        little_endian=bool(elf.little_endian),
        osabi=str(elf["e_ident"]["EI_OSABI"]),
        etype=etype,
        interp=interp,
        needed=tuple(needed),
        rpath=rpath,
        runpath=runpath,
        soname=soname,
        is_static=is_static,
        is_static_pie=is_static_pie,
        is_pie=is_pie,
        build_id=build_id,
        libc=libc_from_interp(interp),
        nodeflib=bool(flags_1 & DF_1_NODEFLIB),
        has_dynamic=has_dynamic,
    )
    log.debug("%s: %s", path, info)
    return info


def is_elf(fs: RootFS, path: str) -> bool:
    """Whether `path` (links followed) is a regular file starting with the ELF magic."""
    if not fs.is_file(path):
        return False
    try:
        return fs.read(path, 4) == ELF_MAGIC
    except AnalysisError:
        return False


def read_elf(fs: RootFS, path: str) -> ElfInfo:
    """Parse the ELF object at image path `path` (links followed). Raises AnalysisError."""
    with fs.open(path) as stream:
        return parse_elf(stream, path)


def data_segments(fs: RootFS, path: str) -> list[tuple[int, int]]:
    """(file offset, size) of the loadable segments that are not executable (PT_LOAD without
    PF_X): read-only data and initialized data, where string literals live. Raises
    AnalysisError."""
    with fs.open(path) as stream:
        elf = open_elf(stream, path)
        with elf_errors(path):
            if elf.num_segments() > MAX_SEGMENTS:
                raise AnalysisError(f"{path}: not a valid ELF: {elf.num_segments()} program headers")
            return [(int(seg["p_offset"]), int(seg["p_filesz"])) for seg in elf.iter_segments()
                    if seg["p_type"] == "PT_LOAD" and not int(seg["p_flags"]) & PF_X
                    and int(seg["p_filesz"]) > 0]


def imported_symbols(fs: RootFS, path: str) -> set[str]:
    """The undefined symbols of an ELF file's dynamic symbol table (.dynsym): what it imports
    from its DT_NEEDED libraries (ELF gABI, "Symbol Table"). Raises AnalysisError.

    pyelftools finds the two sections; the symbol entries themselves are unpacked with
    `struct` in one pass (its per-symbol parsing costs ~15 µs a symbol, and libraries have
    thousands).
    """
    from elftools.elf.sections import SymbolTableSection

    with fs.open(path) as stream:  # seekable: pyelftools reads only what it needs
        elf = open_elf(stream, path)
        with elf_errors(path):
            dynsym = elf.get_section_by_name(".dynsym")
            if not isinstance(dynsym, SymbolTableSection):
                return set()
            strtab = elf.get_section(dynsym["sh_link"])
            return _undefined(dynsym.data(), strtab.data(), elf.elfclass, elf.little_endian)


def _undefined(symtab: bytes, strtab: bytes, elfclass: int, little: bool) -> set[str]:
    """Names of the SHN_UNDEF entries of a raw symbol table (Elf32_Sym / Elf64_Sym)."""
    order = "<" if little else ">"
    if elfclass == 64:  # st_name st_info st_other st_shndx st_value st_size
        fmt, name_at, shndx_at = order + "IBBHQQ", 0, 3
    else:  # st_name st_value st_size st_info st_other st_shndx
        fmt, name_at, shndx_at = order + "IIIBBH", 0, 5
    size = struct.calcsize(fmt)
    usable = len(symtab) - len(symtab) % size
    out = set()
    for entry in struct.iter_unpack(fmt, symtab[:usable]):
        offset = entry[name_at]
        if entry[shndx_at] != 0 or not offset or offset >= len(strtab):
            continue
        end = strtab.find(b"\0", offset)
        name = strtab[offset:end if end >= 0 else len(strtab)]
        if name:
            out.add(name.decode("utf-8", "replace"))
    return out
