"""The code model of one x86_64 ELF for syscall extraction: symbols, relocations, the PLT and
a linear-sweep disassembly of every executable section (capstone `disasm_lite`; on an
undecodable byte the sweep skips one byte and goes on), held compactly (an address array,
shared strings, a binary-search index): about 10 bytes of memory per byte of code. Parsing
runs under slim.elf's one garbled-file policy: any pyelftools failure is an AnalysisError
naming the file.
"""

from __future__ import annotations

import bisect
import io
import itertools
import operator
import re
import struct
from array import array
from dataclasses import dataclass, field
from typing import Any

from slim.elf import elf_errors, open_elf
from slim.errors import AnalysisError

# pyelftools names STT_GNU_IFUNC (10) "STT_LOOS".
_FUNC_TYPES = ("STT_FUNC", "STT_GNU_IFUNC", "STT_LOOS")
HEX_RE = re.compile(r"^(?:0x[0-9a-f]+|\d+)$")
_RIP_RE = re.compile(r"\[rip ([+-]) (0x[0-9a-f]+|\d+)\]")


class OutOfMemory(AnalysisError):
    """An ELF's disassembly ran out of the memory its process may take."""

    @classmethod
    def of(cls, path: str, size: int) -> OutOfMemory:
        return cls(f"{path}: not enough memory to disassemble its {size} bytes")


@dataclass
class Code:
    """Disassembly and symbol facts of one ELF, enough for the analyses below."""

    addrs: array[int]  # array('Q'): 8 bytes an instruction
    mnems: list[str]
    ops: list[str]
    index: AddrIndex  # address -> instruction index
    func_starts: list[int]  # sorted
    func_names: dict[int, str]  # start -> a symbol name
    exports: dict[str, int]  # defined dynamic FUNC symbol -> address
    imports: set[str]  # undefined dynamic FUNC symbols
    plt_names: dict[int, str]  # PLT entry address -> imported name
    got_names: dict[int, str]  # GOT slot -> symbol name
    targets: dict[int, list[int]]  # branch target -> indices of jumps to it
    address_taken: set[int]
    soname: str
    interp: bool
    etype: str
    build_id: str
    entry: int = 0


class AddrIndex:
    """Address → index of the instruction there. A binary search of the address array when the
    sweep's addresses only grow (sections in address order, the usual ELF: 8 bytes an
    instruction, where a dict took ~85); a dict otherwise (overlapping or unordered sections,
    where the last instruction at an address wins, as in the sweep)."""

    def __init__(self, addrs: array[int]) -> None:
        self._addrs = addrs
        self._dict: dict[int, int] | None = None
        if not all(map(operator.lt, addrs, itertools.islice(addrs, 1, None))):
            self._dict = {a: i for i, a in enumerate(addrs)}

    def get(self, addr: int) -> int | None:
        if self._dict is not None:
            return self._dict.get(addr)
        k = bisect.bisect_left(self._addrs, addr)
        return k if k < len(self._addrs) and self._addrs[k] == addr else None

    def __contains__(self, addr: object) -> bool:
        return isinstance(addr, int) and self.get(addr) is not None


def build_id_of(elf: Any) -> str:
    for sec in elf.iter_sections():
        if sec["sh_type"] == "SHT_NOTE":
            for note in sec.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID":
                    return str(note["n_desc"])
    return ""


@dataclass
class _ElfFacts:
    """What the sections and symbol tables say, before disassembly."""

    soname: str = ""
    interp: bool = False
    exports: dict[str, int] = field(default_factory=dict)
    imports: set[str] = field(default_factory=set)
    func_names: dict[int, str] = field(default_factory=dict)
    got_names: dict[int, str] = field(default_factory=dict)
    exec_secs: list[tuple[str, int, bytes]] = field(default_factory=list)
    data_secs: list[bytes] = field(default_factory=list)
    etype: str = ""
    entry: int = 0
    build_id: str = ""


def _symbols(facts: _ElfFacts, sec: Any) -> None:
    dyn = sec.name == ".dynsym"
    for sym in sec.iter_symbols():
        typ = sym["st_info"]["type"]
        if not sym.name:
            continue
        if sym["st_shndx"] == "SHN_UNDEF":
            if dyn and (typ in _FUNC_TYPES or typ == "STT_NOTYPE") \
                    and sym["st_info"]["bind"] != "STB_WEAK":
                facts.imports.add(sym.name.split("@")[0])
            continue
        if typ in _FUNC_TYPES and sym["st_value"]:
            facts.func_names.setdefault(sym["st_value"], sym.name)
            if dyn and sym["st_info"]["bind"] in ("STB_GLOBAL", "STB_WEAK"):
                facts.exports[sym.name] = sym["st_value"]


def _elf_facts(data: bytes, path: str) -> _ElfFacts:
    """Symbols, relocations and code/data sections. Raises AnalysisError (slim.elf policy)."""
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.relocation import RelocationSection
    from elftools.elf.sections import SymbolTableSection

    elf = open_elf(io.BytesIO(data), path)
    with elf_errors(path):
        if elf["e_machine"] != "EM_X86_64":
            raise AnalysisError(f"{path}: not an x86_64 ELF ({elf['e_machine']})")
        facts = _ElfFacts(build_id=build_id_of(elf), etype=elf["e_type"], entry=elf["e_entry"],
                          interp=any(seg["p_type"] == "PT_INTERP" for seg in elf.iter_segments()))
        for sec in elf.iter_sections():
            if isinstance(sec, DynamicSection):
                for tag in sec.iter_tags():
                    if tag.entry.d_tag == "DT_SONAME":
                        facts.soname = str(getattr(tag, "soname", ""))
            if isinstance(sec, SymbolTableSection):
                _symbols(facts, sec)
            if isinstance(sec, RelocationSection):
                symtab = elf.get_section(sec["sh_link"]) if sec["sh_link"] else None
                if isinstance(symtab, SymbolTableSection):
                    for rel in sec.iter_relocations():
                        if rel["r_info_sym"]:
                            sym = symtab.get_symbol(rel["r_info_sym"])
                            if sym.name:
                                facts.got_names[rel["r_offset"]] = sym.name
            flags = sec["sh_flags"]
            if sec["sh_type"] == "SHT_PROGBITS" and flags & 0x4:  # SHF_EXECINSTR
                facts.exec_secs.append((sec.name, sec["sh_addr"], sec.data()))
            elif sec["sh_type"] in ("SHT_PROGBITS", "SHT_INIT_ARRAY", "SHT_FINI_ARRAY") \
                    and flags & 0x2:  # SHF_ALLOC data may hold function pointers
                facts.data_secs.append(sec.data())
        if not facts.exec_secs:  # section headers stripped: fall back to executable segments
            for seg in elf.iter_segments():
                if seg["p_type"] == "PT_LOAD" and seg["p_flags"] & 0x1:
                    facts.exec_secs.append(("<segment>", seg["p_vaddr"], seg.data()))
    return facts


# Instructions capstone decodes per call: it fills a C array of cs_insn (~250 bytes each) for
# every instruction of a call before yielding the first, so one call over a 100 MB section held
# gigabytes. Chunks keep that array at a few MB whatever the ELF's size.
DISASM_CHUNK = 1 << 14
_SKIPPED = ".byte"  # capstone's mnemonic for an undecodable byte it stepped over (SKIPDATA)


def _disassemble(facts: _ElfFacts) -> tuple[array[int], list[str], list[str], dict[int, str]]:
    """(addresses, mnemonics, operands, PLT entry → imported name) of the code sections.

    A linear sweep of each section in chunks of DISASM_CHUNK instructions, over a zero-copy
    window; capstone steps over an undecodable byte itself (SKIPDATA: one byte on x86) and
    the sweep drops it. (Restarting the sweep past each one from a slice of `bytes` copied the
    rest of the section every time: quadratic on an ELF full of them.) Equal mnemonics and
    operand texts share one string (a few hundred mnemonics; a fifth of the operands are
    distinct)."""
    import capstone

    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.skipdata = True
    addrs: array[int] = array("Q")
    mnems: list[str] = []
    ops: list[str] = []
    plt_names: dict[int, str] = {}
    names: dict[str, str] = {}  # one string per distinct mnemonic and operand text
    for name, base, code in facts.exec_secs:
        # capstone reads a writable buffer in place; a read-only one it copies whole.
        window = memoryview(bytearray(code))
        plt = name.startswith(".plt")
        off = 0
        while off < len(code):
            last = off  # SKIPDATA leaves no gap: each instruction starts where the last ended
            for a, size, mnem, op in md.disasm_lite(window[off:], base + off, DISASM_CHUNK):
                last += size  # (not `a - base + size`: capstone wraps an address past 2**64 to 0)
                if mnem == _SKIPPED:
                    continue
                addrs.append(a)
                mnems.append(names.setdefault(mnem, mnem))
                ops.append(names.setdefault(op, op))
                if plt and "jmp" in mnem and "rip" in op:
                    got = rip_target(a + size, op)
                    if got is not None and got in facts.got_names:
                        plt_names.setdefault(a & ~0xF, facts.got_names[got])
            off = last + 1 if last == off else last
    return addrs, mnems, ops, plt_names


def parse_code(data: bytes, path: str) -> Code:
    """The code model of one x86_64 ELF. Raises AnalysisError."""
    import capstone

    facts = _elf_facts(data, path)
    try:
        addrs, mnems, ops, plt_names = _disassemble(facts)
    except capstone.CsError as exc:
        if exc.errno == capstone.CS_ERR_MEM:
            raise OutOfMemory.of(path, len(data)) from None
        raise AnalysisError(f"{path}: capstone: {exc}") from None
    index = AddrIndex(addrs)
    starts = set(facts.func_names)
    if facts.entry:
        starts.add(facts.entry)
    targets: dict[int, list[int]] = {}
    address_taken: set[int] = set()
    for i, (m, op) in enumerate(zip(mnems, ops, strict=True)):
        if (m.startswith("j") or m in ("call", "bnd jmp", "bnd call")) and HEX_RE.match(op):
            t = int(op, 0)
            targets.setdefault(t, []).append(i)
            if m.endswith("call"):
                starts.add(t)
        elif m == "lea" and "rip" in op:
            nxt = addrs[i + 1] if i + 1 < len(addrs) else addrs[i]
            t2 = rip_target(nxt, op)
            if t2 is not None and t2 in index:
                address_taken.add(t2)
    starts = {s for s in starts if s in index}
    # Tail-call targets are functions too (musl's __syscall_cp -> __syscall_cp_c is a `jmp`):
    # a direct jmp into another function's range that lands right after padding or a
    # terminator starts a function (stripped libraries have no symbol for it).
    known_starts = sorted(starts)
    for t, srcs in targets.items():
        k = index.get(t)
        if k is None or t in starts or k == 0:
            continue
        prev = mnems[k - 1]
        if not (prev.startswith("nop") or prev in ("int3", "ret", "jmp", "ud2", "hlt")
                or "nop" in prev):
            continue
        if any(mnems[j] in ("jmp", "bnd jmp")
               and func_of(known_starts, addrs[j]) != func_of(known_starts, t) for j in srcs):
            starts.add(t)
    # Function pointers in data (vtables, init arrays): link-time addresses of known functions.
    known = set(facts.func_names) | starts
    for blob in facts.data_secs:
        for (val,) in struct.iter_unpack("<Q", blob[: len(blob) - len(blob) % 8]):
            if val in known:
                address_taken.add(val)
    address_taken = {a for a in address_taken if a in starts or a in index}
    starts |= {a for a in address_taken if a in index}
    return Code(addrs, mnems, ops, index, sorted(starts), facts.func_names, facts.exports,
                facts.imports, plt_names, facts.got_names, targets, address_taken, facts.soname,
                facts.interp, facts.etype, facts.build_id, facts.entry)


def func_of(starts: list[int], addr: int) -> int:
    """The start of the function holding `addr` (-1 before the first)."""
    k = bisect.bisect_right(starts, addr) - 1
    return starts[k] if k >= 0 else -1


def rip_target(next_addr: int, op: str) -> int | None:
    m = _RIP_RE.search(op)
    if not m:
        return None
    disp = int(m.group(2), 0)
    return next_addr + disp if m.group(1) == "+" else next_addr - disp


