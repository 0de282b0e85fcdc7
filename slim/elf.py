"""The one ELF reader: ELF facts the dynamic-loader emulation needs, read with pyelftools, and
the one policy for garbled files.

`parse_elf` turns one ELF object into a frozen `ElfInfo`: class, machine, byte order, OS ABI,
type, PT_INTERP, the dynamic section's DT_NEEDED / DT_RPATH / DT_RUNPATH / DT_SONAME /
DT_FLAGS_1, and the GNU build-id note. Only program headers (segments) are used, as ld.so does
(glibc elf/dl-load.c `_dl_map_object_from_fd` never looks at section headers), so stripped
objects and objects whose section table was removed parse the same way.

The analyzers read tens to hundreds of ELF objects per image, and pyelftools takes about a
millisecond for each of the three reads here (its `construct` parser unpacks field by field). A
reader with `struct` (`_Raw`, ELF gABI "ELF Header", "Program Header", "Dynamic Section",
"Section Header") reads a well-formed object 25 times faster with the same answers (compared
with pyelftools on the 5,000 ELF objects of the host and the 11,700 of the bench images, and on
garbled copies). Anything it does not expect — a missing terminator, a table out of the file,
an undecodable string, a core file, extended numbering — is left to pyelftools, which reads it
or says why it cannot. Where a garbled section table disagrees with the program headers, it
follows the program headers as ld.so does (pyelftools takes the dynamic string table from the
section table when it has one).

The image is untrusted input: every use of pyelftools on image bytes (here, in the syscall
extractor, in the rules' symbol tests) runs inside `elf_errors(path)`, which turns any failure
on a garbled file into an `AnalysisError` naming the file — never another exception. The set of
exceptions pyelftools and construct raise on bad input is not documented (ELFError,
ELFParseError, construct's StreamError, struct.error, UnicodeDecodeError, ValueError,
IndexError, KeyError, TypeError, RecursionError were all seen), so the policy is: every
ordinary exception from the parser means "not a valid ELF".
"""

from __future__ import annotations

import functools
import io
import logging
import posixpath
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from slim.errors import AnalysisError

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile

    from slim.fs.rootfs import RootFS

# pyelftools is imported where it is used (20 ms): a cache hit (`slim check` in a pre-push hook)
# imports this module through slim.rules but reads no ELF.

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
        from elftools.elf.elffile import ELFFile

        return ELFFile(stream)


def parse_elf(stream: BinaryIO, path: str) -> ElfInfo:
    """Parse the ELF object in `stream` (seekable). Raises AnalysisError when it is not valid ELF."""
    try:
        return _Raw(stream).info(path)
    except _UNUSUAL:
        pass
    elf = open_elf(stream, path)
    with elf_errors(path):
        return _parse(elf, path)


def _parse(elf: ELFFile, path: str) -> ElfInfo:
    from elftools.elf.dynamic import DynamicSegment
    from elftools.elf.segments import InterpSegment, NoteSegment

    elfclass = elf.elfclass
    if elfclass not in (32, 64):
        raise AnalysisError(f"{path}: not a valid ELF: ELF class {elfclass}")
    etype_raw = str(elf["e_type"])
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
    return _elf_info(path, elfclass, str(elf["e_machine"]), bool(elf.little_endian),
                     str(elf["e_ident"]["EI_OSABI"]), etype_raw, interp, needed, rpath, runpath, soname,
                     flags_1, build_id, has_dynamic)


def _elf_info(path: str, elfclass: int, machine: str, little_endian: bool, osabi: str, etype_raw: str,
              interp: str | None, needed: list[str], rpath: tuple[str, ...], runpath: tuple[str, ...],
              soname: str | None, flags_1: int, build_id: str, has_dynamic: bool) -> ElfInfo:
    """The ElfInfo of what either reader (pyelftools' _parse, the struct reader) found:
    `etype_raw` as pyelftools names e_type ("ET_DYN", or the number), `flags_1` DT_FLAGS_1."""
    etype = etype_raw[3:] if etype_raw.startswith("ET_") else etype_raw
    # Old linkers do not set DF_1_PIE; an ET_DYN with an interpreter and no soname is a PIE
    # (libc.so.6 has PT_INTERP too, but also a soname).
    info = ElfInfo(
        path=path,
        elfclass=elfclass,
        machine=machine,
        little_endian=little_endian,
        osabi=osabi,
        etype=etype,
        interp=interp,
        needed=tuple(needed),
        rpath=rpath,
        runpath=runpath,
        soname=soname,
        is_static=interp is None and not needed,
        is_static_pie=etype == "DYN" and interp is None and bool(flags_1 & DF_1_PIE),
        is_pie=etype == "DYN" and (bool(flags_1 & DF_1_PIE) or (interp is not None and soname is None)),
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
        try:
            return [(offset, size) for kind, flags, offset, _, size in _Raw(stream).segments
                    if kind == PT_LOAD and not flags & PF_X and size > 0]
        except _UNUSUAL:
            pass
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

    The section named `.dynsym` and the string table it links to; the symbol entries are
    unpacked with `struct` in one pass (pyelftools' per-symbol parsing costs ~15 µs a symbol,
    and libraries have thousands).
    """
    from elftools.elf.sections import SymbolTableSection

    with fs.open(path) as stream:  # seekable: both readers read only what they need
        try:
            return _Raw(stream).undefined_symbols()
        except _UNUSUAL:
            pass
        elf = open_elf(stream, path)
        with elf_errors(path):
            dynsym = elf.get_section_by_name(".dynsym")
            if not isinstance(dynsym, SymbolTableSection):
                return set()
            strtab = elf.get_section(dynsym["sh_link"])
            return _undefined(dynsym.data(), strtab.data(), elf.elfclass, elf.little_endian)


# -- the struct reader (module doc) --------------------------------------------------------
class _Unusual(Exception):
    """What the struct reader leaves to pyelftools."""


# struct.error and ValueError: a short read or a bad offset; OSError: the stream failed (pyelftools
# reads again and says why)
_UNUSUAL = (_Unusual, struct.error, ValueError, OSError)

PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE = 1, 2, 3, 4
DT_NULL, DT_NEEDED, DT_STRTAB, DT_SONAME, DT_RPATH, DT_RUNPATH, DT_FLAGS_1 = 0, 1, 5, 14, 15, 29, 0x6FFFFFFB
ET_CORE = 4  # a core file's notes are another set of types
NT_GNU_BUILD_ID = 3
SHF_COMPRESSED = 0x800
SHT_NOBITS = 8
SYMBOL_TABLES = (2, 11, 0x6FFFFFF3)  # SHT_SYMTAB, SHT_DYNSYM, SHT_SUNW_LDYNSYM: pyelftools' SymbolTableSection
MAX_TABLE = 1 << 22  # larger tables and dynamic segments are left to pyelftools
MAX_STRING = 4096


def _names(enum: Mapping[str, Any]) -> dict[int, str]:
    """value → name as pyelftools decodes the field (construct's Enum: the last name wins)."""
    return {value: name for name, value in enum.items() if name != "_default_"}


@functools.cache
def _enum_names() -> tuple[dict[int, str], dict[int, str], dict[int, str]]:
    """pyelftools' names of e_type, e_machine and EI_OSABI values."""
    from elftools.elf.enums import ENUM_E_MACHINE, ENUM_E_TYPE, ENUM_EI_OSABI

    return _names(ENUM_E_TYPE), _names(ENUM_E_MACHINE), _names(ENUM_EI_OSABI)


def _roundup4(n: int) -> int:
    return (n + 3) & ~3


class _Raw:
    """The ELF header and program headers of one object, unpacked with struct."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.size = stream.seek(0, io.SEEK_END)
        head = self.read(0, min(64, self.size))
        if len(head) < 52 or head[:4] != ELF_MAGIC or head[4] not in (1, 2) or head[5] not in (1, 2):
            raise _Unusual
        self.bits = 32 if head[4] == 1 else 64
        self.order = "<" if head[5] == 1 else ">"
        self.osabi = head[7]
        if self.bits == 64:
            if len(head) < 64:
                raise _Unusual
            (self.etype, self.machine, _, _, phoff, self.shoff, _, _, phentsize, phnum, self.shentsize,
             self.shnum, self.shstrndx) = struct.unpack(self.order + "HHIQQQIHHHHHH", head[16:64])
        else:
            (self.etype, self.machine, _, _, phoff, self.shoff, _, _, phentsize, phnum, self.shentsize,
             self.shnum, self.shstrndx) = struct.unpack(self.order + "HHIIIIIHHHHHH", head[16:52])
        fmt = self.order + ("IIQQQQQQ" if self.bits == 64 else "IIIIIIII")
        size = struct.calcsize(fmt)
        if phnum >= 0xFFFF or phnum > MAX_SEGMENTS or (phnum and phentsize != size):
            raise _Unusual  # extended numbering, a hostile count, entries of another size
        self.segments: list[tuple[int, int, int, int, int]] = []  # type flags offset vaddr filesz
        for entry in struct.iter_unpack(fmt, self.read(phoff, phnum * size)):
            if self.bits == 64:
                kind, flags, offset, vaddr, _, filesz, _, _ = entry
            else:
                kind, offset, vaddr, _, filesz, _, flags, _ = entry
            self.segments.append((kind, flags, offset, vaddr, filesz))

    def read(self, offset: int, size: int) -> bytes:
        """Exactly `size` bytes at `offset`, all inside the file."""
        if offset < 0 or size < 0 or offset + size > self.size or size > MAX_TABLE:
            raise _Unusual
        self.stream.seek(offset)
        data = self.stream.read(size)
        if len(data) != size:
            raise _Unusual
        return data

    def cstring(self, offset: int) -> bytes:
        data = self.read(offset, min(MAX_STRING, self.size - offset))
        end = data.find(b"\0")
        if end < 0:
            raise _Unusual
        return data[:end]

    def text(self, offset: int) -> str:
        try:
            return self.cstring(offset).decode("utf-8")
        except UnicodeDecodeError:
            raise _Unusual from None

    def file_offset(self, addr: int) -> int:
        """The file offset of virtual address `addr`: the first PT_LOAD holding it."""
        for kind, _, offset, vaddr, filesz in self.segments:
            if kind == PT_LOAD and vaddr <= addr and addr + 1 <= vaddr + filesz:
                return addr - vaddr + offset
        raise _Unusual

    def info(self, path: str) -> ElfInfo:
        """What _parse reads with pyelftools; the dynamic string table found from DT_STRTAB
        and the program headers, as ld.so finds it (module doc)."""
        if self.etype == ET_CORE:
            raise _Unusual
        e_type, e_machine, ei_osabi = _enum_names()
        etype_raw = e_type.get(self.etype, str(self.etype))
        tags: list[tuple[int, int]] = []
        interp: str | None = None
        build_id = ""
        has_dynamic = False
        for kind, _, offset, _, filesz in self.segments:
            if kind == PT_INTERP and interp is None:
                interp = self.text(offset).rstrip("\x00")
            elif kind == PT_DYNAMIC and not has_dynamic:
                has_dynamic = True
                tags = self._dynamic(offset, filesz)
            elif kind == PT_NOTE and not build_id:
                build_id = self._build_id(offset, filesz)
        needed: list[str] = []
        rpath: tuple[str, ...] = ()
        runpath: tuple[str, ...] = ()
        soname: str | None = None
        flags_1 = 0
        strtab = 0
        if tags:  # pyelftools needs a string table for any tag
            address = next((value for tag, value in tags if tag == DT_STRTAB), None)
            if address is None:
                raise _Unusual
            strtab = self.file_offset(address)
        for tag, value in tags:
            if tag in (DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME):
                string = self.text(strtab + value)
                if tag == DT_NEEDED:
                    needed.append(string)
                elif tag == DT_RPATH:
                    rpath = _split_path_list(string)
                elif tag == DT_RUNPATH:
                    runpath = _split_path_list(string)
                else:
                    soname = string
            elif tag == DT_FLAGS_1:
                flags_1 = value
        return _elf_info(path, self.bits, e_machine.get(self.machine, str(self.machine)), self.order == "<",
                         ei_osabi.get(self.osabi, str(self.osabi)), etype_raw, interp, needed, rpath,
                         runpath, soname, flags_1, build_id, has_dynamic)

    def _dynamic(self, offset: int, filesz: int) -> list[tuple[int, int]]:
        """(d_tag, d_val) up to DT_NULL, which must lie inside the segment."""
        if filesz == 0:
            return []  # pyelftools reads no tags from an empty segment
        fmt = self.order + ("qQ" if self.bits == 64 else "iI")
        size = struct.calcsize(fmt)
        out: list[tuple[int, int]] = []
        for tag, value in struct.iter_unpack(fmt, self.read(offset, filesz - filesz % size)):
            if len(out) >= MAX_DYNAMIC_TAGS:
                raise _Unusual
            if tag == DT_NULL:
                return out
            out.append((tag, value))
        raise _Unusual  # no DT_NULL in the segment: pyelftools reads on

    def _build_id(self, offset: int, filesz: int) -> str:
        """The GNU build-id of a PT_NOTE segment, read as pyelftools' iter_notes reads it (4-byte
        alignment, the notes before it unpacked too); "" when it has none."""
        end = offset + filesz
        while offset + 12 < end:
            namesz, descsz, kind = struct.unpack(self.order + "III", self.read(offset, 12))
            offset += 12
            name = None
            if namesz:
                raw = self.read(offset, _roundup4(namesz))
                cut = raw.find(b"\0")
                if cut < 0:
                    raise _Unusual
                name = raw[:cut].decode("latin-1")
                offset += _roundup4(namesz)
            desc = self.read(offset, descsz)
            if name == "GNU" and kind == NT_GNU_BUILD_ID:
                return desc.hex()
            if name == "GNU" and kind in (1, 5):  # ABI tag, properties: pyelftools unpacks them
                self._gnu_note(kind, offset, descsz)
            offset += _roundup4(descsz)
        return ""

    def _gnu_note(self, kind: int, offset: int, descsz: int) -> None:
        """That pyelftools can unpack an NT_GNU_ABI_TAG (four words) or the entries of an
        NT_GNU_PROPERTY_TYPE_0 (two words and their data, aligned to the class's word)."""
        if kind == 1:
            self.read(offset, 16)
            return
        at, end = offset, offset + descsz
        align = 4 if self.bits == 32 else 8
        while at < end:
            _, datasz = struct.unpack(self.order + "II", self.read(at, 8))
            self.read(at + 8, (max(datasz, 4) + align - 1) & ~(align - 1))  # data, padding
            at += (datasz + 8 + align - 1) & ~(align - 1)

    def undefined_symbols(self) -> set[str]:
        """imported_symbols from the section headers: the last section named `.dynsym`, as
        pyelftools' name map finds it."""
        fmt = self.order + ("IIQQQQIIQQ" if self.bits == 64 else "IIIIIIIIII")
        size = struct.calcsize(fmt)
        if not self.shoff or self.shentsize != size or not 0 < self.shnum < 0xFF00 or self.shstrndx >= self.shnum:
            raise _Unusual  # no table, entries of another size, extended numbering
        # name type flags addr offset size link info addralign entsize
        table = list(struct.iter_unpack(fmt, self.read(self.shoff, self.shnum * size)))
        names = self._section(table[self.shstrndx])
        dynsym = None
        for header in table:
            cut = names.find(b"\0", header[0])
            if header[0] >= len(names) or cut < 0:
                raise _Unusual
            if names[header[0]:cut].decode("utf-8", "replace") == ".dynsym":
                dynsym = header
        if dynsym is None or dynsym[1] not in SYMBOL_TABLES:
            return set()
        if dynsym[6] >= self.shnum:
            raise _Unusual
        return _undefined(self._section(dynsym), self._section(table[dynsym[6]]), self.bits, self.order == "<")

    def _section(self, header: tuple[int, ...]) -> bytes:
        if header[1] == SHT_NOBITS or header[2] & SHF_COMPRESSED:
            raise _Unusual
        return self.read(header[4], header[5])


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
