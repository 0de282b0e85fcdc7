"""Static syscall extraction from x86_64 ELF code with capstone (an upper bound of what runs).

Method (the common recipe of Confine, sysfilter, Chestnut and Loupe's static analyser; see
shared/reference/syscalls-unikernels.md §A.9):

1. Linear-sweep disassembly of every executable section (capstone `disasm_lite`; on an
   undecodable byte the sweep skips one byte and goes on).
2. Every `syscall` instruction (0f 05) is a site. `int 0x80` and `sysenter` (the 32-bit entry
   points, other numbering) are counted and reported as unresolved: never dropped.
3. The number is recovered by walking backwards from the site for the last write to eax/rax
   (`mov eax, imm`, `xor eax, eax`, register copies are chased). At a basic-block start the
   walk continues into every predecessor (fall-through and direct jumps) with a depth bound.
   A value that traces back to an argument register at a function entry makes that function a
   *syscall wrapper* (glibc `syscall(long nr, ...)` takes nr in edi; musl `__syscall_cp`);
   call sites of wrappers (direct, through the PLT, or to the imported `syscall`) are then
   resolved the same way for the argument register.
4. A dynamically linked program calls libc *functions*: its undefined dynamic symbols are
   mapped to syscalls through a map computed from the image's own libc (exported function ->
   direct call/jump graph inside libc -> syscall sites, full transitive closure; functions whose
   address is taken are reached from indirect calls, e.g. glibc's stdio vtables in
   `__libc_IO_vtables`).
   The map is cached per build-id under $SLIM_CACHE_DIR or $XDG_CACHE_HOME/slim/syscalls/.
5. Unresolved sites and imports no kept library provides are counted and reported.

Which code counts: executables and non-libc libraries count every site (whole file); the libc
counts only what is reachable from the functions other kept ELFs import (plus its start-up
entry points); the dynamic loader counts whole-file.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import json
import logging
import os
import re
import struct
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slim.errors import AnalysisError
from slim.fs.rootfs import RootFS
from slim.syscalls.table import name_of

log = logging.getLogger(__name__)

CACHE_VERSION = 9
MAX_ELF_BYTES = 512 * 1024 * 1024
BACKTRACK_INSNS = 40  # per block walk (Loupe uses 20, Chestnut 200)
PRED_DEPTH = 3  # how many block boundaries a value is chased across
WRAPPER_ROUNDS = 4  # wrapper-of-wrapper fixpoint bound

# Sonames whose code is counted only through what other ELFs import from them.
LIBC_SONAMES = ("libc.so.6", "libc.musl-x86_64.so.1", "ld-musl-x86_64.so.1")
# libc entry points that run without being imported by name: glibc csu/libc-start.c and
# elf/libc_early_init.c (called by ld.so), exit handlers; musl's loader stages, which
# ldso/dynlink.c reaches through computed calls (_dlstart -> __dls2 -> __dls2b -> __dls3), and
# e_entry itself (ENTRY_KEY).
ENTRY_KEY = "@entry"
LIBC_STARTUP = (ENTRY_KEY, "__libc_start_main", "__libc_early_init", "exit", "_exit",
                "__libc_init_first", "__dls2", "__dls2b", "__dls3")
# Known wrappers when the libc itself is not analyzed: name -> register holding the number.
BUILTIN_WRAPPERS = {"syscall": "rdi"}

_ARG_REGS = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")
_CALLEE_SAVED = frozenset({"rbx", "rbp", "r12", "r13", "r14", "r15", "rsp"})
_REG_ALIASES: dict[str, str] = {}
for _full, _aliases in {
    "rax": "rax eax ax al ah", "rbx": "rbx ebx bx bl bh", "rcx": "rcx ecx cx cl ch",
    "rdx": "rdx edx dx dl dh", "rsi": "rsi esi si sil", "rdi": "rdi edi di dil",
    "rbp": "rbp ebp bp bpl", "rsp": "rsp esp sp spl",
}.items():
    for _n in _aliases.split():
        _REG_ALIASES[_n] = _full
for _i in range(8, 16):
    for _suffix in ("", "d", "w", "b"):
        _REG_ALIASES[f"r{_i}{_suffix}"] = f"r{_i}"
_FULL_WIDTH = {"rax", "eax", "rbx", "ebx", "rcx", "ecx", "rdx", "edx", "rsi", "esi", "rdi", "edi",
               "rbp", "ebp", *(f"r{i}" for i in range(8, 16)), *(f"r{i}d" for i in range(8, 16))}

_READ_ONLY = frozenset({"cmp", "test", "push", "bt", "ucomisd", "ucomiss", "comisd", "comiss",
                        "nop", "endbr64", "prefetcht0", "prefetchw", "cmpxchg8b"})
_TERMINATORS = frozenset({"jmp", "bnd jmp", "ret", "bnd ret", "hlt", "ud2", "notrack jmp",
                          "iretq", "sysret", "sysretq"})
# Implicit register writes beyond operand 0 (Intel SDM): x86 instructions that clobber registers.
_IMPLICIT = {
    "syscall": {"rax", "rcx", "r11"}, "cpuid": {"rax", "rbx", "rcx", "rdx"},
    "rdtsc": {"rax", "rdx"}, "rdtscp": {"rax", "rdx", "rcx"}, "cdq": {"rdx"}, "cqo": {"rdx"},
    "cdqe": {"rax"}, "cwde": {"rax"}, "mul": {"rax", "rdx"}, "div": {"rax", "rdx"},
    "idiv": {"rax", "rdx"}, "cmpxchg": {"rax"}, "xgetbv": {"rax", "rdx"}, "rdpid": set(),
    "lodsb": {"rax", "rsi"}, "lodsq": {"rax", "rsi"}, "lodsd": {"rax", "rsi"},
    "rep stosb": {"rcx", "rdi"}, "rep stosq": {"rcx", "rdi"}, "rep stosd": {"rcx", "rdi"},
    "rep movsb": {"rcx", "rdi", "rsi"}, "rep movsq": {"rcx", "rdi", "rsi"},
    "rep movsd": {"rcx", "rdi", "rsi"}, "stosb": {"rdi"}, "stosq": {"rdi"}, "movsb": {"rdi", "rsi"},
    "movsq": {"rdi", "rsi"}, "leave": {"rsp", "rbp"}, "rdrand": set(), "xchg": set(),
}
# pyelftools names STT_GNU_IFUNC (10) "STT_LOOS".
_FUNC_TYPES = ("STT_FUNC", "STT_GNU_IFUNC", "STT_LOOS")
_HEX_RE = re.compile(r"^(?:0x[0-9a-f]+|\d+)$")
_RIP_RE = re.compile(r"\[rip ([+-]) (0x[0-9a-f]+|\d+)\]")


class _Arg:
    """A value that is an argument register at a function entry."""

    __slots__ = ("reg",)

    def __init__(self, reg: str) -> None:
        self.reg = reg


_Value = frozenset[int] | _Arg | None


@dataclass(frozen=True)
class FileSyscalls:
    """What one ELF contributes: syscall names, unresolved sites, unprovided imports."""

    path: str
    kind: str  # "static" | "dynamic" | "libc" | "loader" | "library"
    syscalls: tuple[str, ...]
    sites: int
    unresolved_sites: int
    unresolved_imports: tuple[str, ...] = ()
    int80_sites: int = 0
    wrappers: tuple[str, ...] = ()
    build_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["syscalls"] = list(self.syscalls)
        d["unresolved_imports"] = list(self.unresolved_imports)
        d["wrappers"] = list(self.wrappers)
        return d


@dataclass(frozen=True)
class StaticSyscalls:
    """The static (upper-bound) syscall set of the kept ELF files."""

    names: list[str]
    unresolved_sites: int
    per_file: dict[str, FileSyscalls] = field(default_factory=dict)
    libc_cache_hit: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "unresolved_sites": self.unresolved_sites,
            "libc_cache_hit": self.libc_cache_hit,
            "per_file": {p: f.to_dict() for p, f in sorted(self.per_file.items())},
        }


# ------------------------------------------------------------------------------------------
# ELF code model


@dataclass
class _Code:
    """Disassembly and symbol facts of one ELF, enough for the analyses below."""

    addrs: list[int]
    mnems: list[str]
    ops: list[str]
    index: dict[int, int]  # address -> instruction index
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


def _build_id(elf: Any) -> str:
    for sec in elf.iter_sections():
        if sec["sh_type"] == "SHT_NOTE":
            for note in sec.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID":
                    return str(note["n_desc"])
    return ""


def _parse(data: bytes, path: str) -> _Code:
    import capstone
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection
    from elftools.elf.sections import SymbolTableSection

    try:
        elf = ELFFile(io.BytesIO(data))
        if elf["e_machine"] != "EM_X86_64":
            raise AnalysisError(f"{path}: not an x86_64 ELF ({elf['e_machine']})")
        build_id = _build_id(elf)
        soname = ""
        interp = any(seg["p_type"] == "PT_INTERP" for seg in elf.iter_segments())
        exports: dict[str, int] = {}
        imports: set[str] = set()
        func_names: dict[int, str] = {}
        got_names: dict[int, str] = {}
        exec_secs: list[tuple[str, int, bytes]] = []
        data_secs: list[bytes] = []
        for sec in elf.iter_sections():
            if isinstance(sec, DynamicSection):
                for tag in sec.iter_tags():
                    if tag.entry.d_tag == "DT_SONAME":
                        soname = str(getattr(tag, "soname", ""))
            if isinstance(sec, SymbolTableSection):
                dyn = sec.name == ".dynsym"
                for sym in sec.iter_symbols():
                    typ = sym["st_info"]["type"]
                    if not sym.name:
                        continue
                    if sym["st_shndx"] == "SHN_UNDEF":
                        if dyn and (typ in _FUNC_TYPES or typ == "STT_NOTYPE") \
                                and sym["st_info"]["bind"] != "STB_WEAK":
                            imports.add(sym.name.split("@")[0])
                        continue
                    if typ in _FUNC_TYPES and sym["st_value"]:
                        func_names.setdefault(sym["st_value"], sym.name)
                        if dyn and sym["st_info"]["bind"] in ("STB_GLOBAL", "STB_WEAK"):
                            exports[sym.name] = sym["st_value"]
            if isinstance(sec, RelocationSection):
                symtab = elf.get_section(sec["sh_link"]) if sec["sh_link"] else None
                if isinstance(symtab, SymbolTableSection):
                    for rel in sec.iter_relocations():
                        if rel["r_info_sym"]:
                            sym = symtab.get_symbol(rel["r_info_sym"])
                            if sym.name:
                                got_names[rel["r_offset"]] = sym.name
            flags = sec["sh_flags"]
            if sec["sh_type"] == "SHT_PROGBITS" and flags & 0x4:  # SHF_EXECINSTR
                exec_secs.append((sec.name, sec["sh_addr"], sec.data()))
            elif sec["sh_type"] in ("SHT_PROGBITS", "SHT_INIT_ARRAY", "SHT_FINI_ARRAY") \
                    and flags & 0x2:  # SHF_ALLOC data may hold function pointers
                data_secs.append(sec.data())
        if not exec_secs:  # section headers stripped: fall back to executable segments
            for seg in elf.iter_segments():
                if seg["p_type"] == "PT_LOAD" and seg["p_flags"] & 0x1:
                    exec_secs.append(("<segment>", seg["p_vaddr"], seg.data()))
        etype = elf["e_type"]
        entry = elf["e_entry"]
    except (ELFError, struct.error, ValueError, KeyError, IndexError) as exc:
        raise AnalysisError(f"{path}: cannot parse ELF: {exc}") from exc

    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    addrs: list[int] = []
    mnems: list[str] = []
    ops: list[str] = []
    plt_names: dict[int, str] = {}
    for name, base, code in exec_secs:
        off = 0
        while off < len(code):
            last = off
            for a, size, mnem, op in md.disasm_lite(code[off:], base + off):
                addrs.append(a)
                mnems.append(mnem)
                ops.append(op)
                last = a - base + size
                if name.startswith(".plt") and "jmp" in mnem and "rip" in op:
                    got = _rip_target(a + size, op)
                    if got is not None and got in got_names:
                        plt_names.setdefault(a & ~0xF, got_names[got])
            off = last + 1 if last == off else last
    index = {a: i for i, a in enumerate(addrs)}

    starts = set(func_names)
    if entry:
        starts.add(entry)
    targets: dict[int, list[int]] = {}
    address_taken: set[int] = set()
    for i, (m, op) in enumerate(zip(mnems, ops, strict=True)):
        if (m.startswith("j") or m in ("call", "bnd jmp", "bnd call")) and _HEX_RE.match(op):
            t = int(op, 0)
            targets.setdefault(t, []).append(i)
            if m.endswith("call"):
                starts.add(t)
        elif m == "lea" and "rip" in op:
            nxt = addrs[i + 1] if i + 1 < len(addrs) else addrs[i]
            t2 = _rip_target(nxt, op)
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
               and _func_of(known_starts, addrs[j]) != _func_of(known_starts, t) for j in srcs):
            starts.add(t)
    # Function pointers in data (vtables, init arrays): link-time addresses of known functions.
    known = set(func_names) | starts
    for blob in data_secs:
        for (val,) in struct.iter_unpack("<Q", blob[: len(blob) - len(blob) % 8]):
            if val in known:
                address_taken.add(val)
    address_taken &= starts | set(index)
    starts |= {a for a in address_taken if a in index}
    return _Code(addrs, mnems, ops, index, sorted(starts), func_names, exports, imports,
                 plt_names, got_names, targets, address_taken, soname, interp, etype, build_id,
                 entry)


def _rip_target(next_addr: int, op: str) -> int | None:
    m = _RIP_RE.search(op)
    if not m:
        return None
    disp = int(m.group(2), 0)
    return next_addr + disp if m.group(1) == "+" else next_addr - disp


# ------------------------------------------------------------------------------------------
# value recovery


def _dst(op: str) -> str:
    return op.split(",", 1)[0].strip()


def _writes(mnem: str, op: str, reg: str) -> bool:
    if reg in _IMPLICIT.get(mnem, ()):
        return True
    if mnem in _READ_ONLY or mnem.startswith("j") or not op:
        return False
    if mnem == "xchg":
        return any(_REG_ALIASES.get(p.strip()) == reg for p in op.split(","))
    if mnem == "pop":
        return _REG_ALIASES.get(op.strip()) == reg
    return _REG_ALIASES.get(_dst(op)) == reg


def _is_call(mnem: str) -> bool:
    return mnem in ("call", "bnd call", "notrack call")


class _Resolver:
    def __init__(self, code: _Code) -> None:
        self.c = code
        self.fstarts = set(code.func_starts)

    def value(self, i: int, reg: str, depth: int = PRED_DEPTH) -> _Value:
        """The possible values of full register `reg` just before instruction i."""
        c = self.c
        j = i
        for _ in range(BACKTRACK_INSNS):
            if c.addrs[j] in c.targets or c.addrs[j] in self.fstarts:
                return self._at_block_start(j, reg, depth)
            k = j - 1
            if k < 0:
                return None
            m, op = c.mnems[k], c.ops[k]
            if _is_call(m):
                if reg not in _CALLEE_SAVED:
                    return None
            elif m in _TERMINATORS:
                return None  # not a known branch target after a terminator: unknown entry
            elif _writes(m, op, reg):
                return self._def(k, m, op, reg, depth)
            j = k
        return None

    def _def(self, j: int, m: str, op: str, reg: str, depth: int) -> _Value:
        parts = [p.strip() for p in op.split(",")]
        if m == "mov" and len(parts) == 2 and parts[0] in _FULL_WIDTH:
            src = parts[1]
            if _HEX_RE.match(src):
                return frozenset({int(src, 0) & 0xFFFFFFFF})
            if src in _REG_ALIASES and src in _FULL_WIDTH:
                return self.value(j, _REG_ALIASES[src], depth)
            return None
        if m in ("xor", "sub") and len(parts) == 2 and parts[0] == parts[1]:
            return frozenset({0})
        return None

    def _at_block_start(self, j: int, reg: str, depth: int) -> _Value:
        """Instruction j starts a block: join the values of all its predecessors."""
        c = self.c
        if j >= len(c.addrs):
            return None
        addr = c.addrs[j]
        if addr in self.fstarts and addr not in c.targets:
            return _Arg(reg) if reg in _ARG_REGS else None
        if depth <= 0:
            return None
        preds = [k for k in c.targets.get(addr, []) if not _is_call(c.mnems[k])]
        results: list[_Value] = []
        # Functions are entered by call/jump, not by falling through (padding precedes them).
        if addr not in self.fstarts and j > 0 and c.mnems[j - 1] not in _TERMINATORS:
            results.append(self._value_through(j, j - 1, reg, depth - 1))
        for k in preds:
            results.append(self.value(k, reg, depth - 1))
        if addr in self.fstarts:  # also reached as a function entry
            results.append(_Arg(reg) if reg in _ARG_REGS else None)
        return _join(results)

    def _value_through(self, j: int, k: int, reg: str, depth: int) -> _Value:
        """Value before j coming from the fall-through predecessor k (= j - 1)."""
        m, op = self.c.mnems[k], self.c.ops[k]
        if _is_call(m):
            return self.value(k, reg, depth) if reg in _CALLEE_SAVED else None
        if _writes(m, op, reg):
            return self._def(k, m, op, reg, depth)
        return self.value(k, reg, depth)


def _join(results: list[_Value]) -> _Value:
    if not results or any(r is None for r in results):
        return None
    if all(isinstance(r, _Arg) for r in results):
        regs = {r.reg for r in results if isinstance(r, _Arg)}
        return _Arg(regs.pop()) if len(regs) == 1 else None
    if any(isinstance(r, _Arg) for r in results):
        return None
    out: set[int] = set()
    for r in results:
        assert isinstance(r, frozenset)
        out |= r
    return frozenset(out)


# ------------------------------------------------------------------------------------------
# per-ELF analysis


@dataclass
class _Analysis:
    """Per-function syscall facts of one ELF (the cacheable part)."""

    func_sys: dict[int, set[int]]  # function start -> syscall numbers made there
    func_unres: dict[int, int]  # function start -> unresolved sites
    edges: dict[int, set[int]]  # function start -> directly called/jumped-to functions
    indirect: set[int]  # functions with an indirect call/jmp
    imported_calls: dict[int, set[str]]  # function start -> imported names it calls
    wrappers: dict[str, str]  # wrapper function name -> number register
    sites: int
    int80: int


def _func_of(starts: list[int], addr: int) -> int:
    k = bisect.bisect_right(starts, addr) - 1
    return starts[k] if k >= 0 else -1


def _analyze_code(code: _Code, extra_wrappers: dict[str, str]) -> _Analysis:
    res = _Resolver(code)
    starts = code.func_starts
    func_sys: dict[int, set[int]] = {}
    func_unres: dict[int, int] = {}
    edges: dict[int, set[int]] = {}
    indirect: set[int] = set()
    imported_calls: dict[int, set[str]] = {}
    wrapper_addrs: dict[int, str] = {}  # start -> register
    sites = int80 = 0
    call_sites: list[tuple[int, int, str | None]] = []  # (insn index, target addr, import name)

    for i, (m, op) in enumerate(zip(code.mnems, code.ops, strict=True)):
        a = code.addrs[i]
        if m == "syscall" or (m == "int" and op in ("0x80", "128")) or m == "sysenter":
            f = _func_of(starts, a)
            sites += 1
            if m != "syscall":
                int80 += 1
                func_unres[f] = func_unres.get(f, 0) + 1
                continue
            v = res.value(i, "rax")
            if isinstance(v, frozenset):
                func_sys.setdefault(f, set()).update(v)
            elif isinstance(v, _Arg) and f >= 0:
                wrapper_addrs[f] = v.reg
            else:
                func_unres[f] = func_unres.get(f, 0) + 1
            continue
        is_call = _is_call(m)
        if not (is_call or m.startswith("j") or "jmp" in m):
            continue
        f = _func_of(starts, a)
        if _HEX_RE.match(op):
            t = int(op, 0)
            name = code.plt_names.get(t & ~0xF) if t not in code.func_names else None
            if name is not None:
                imported_calls.setdefault(f, set()).add(name.split("@")[0])
                if is_call or "jmp" in m:
                    call_sites.append((i, t, name.split("@")[0]))
                continue
            g = _func_of(starts, t)
            if g != f and g >= 0:
                edges.setdefault(f, set()).add(g)
            if is_call or (g != f and "jmp" in m):
                call_sites.append((i, g, None))
        elif "rip" in op and "[" in op:
            if (a & ~0xF) in code.plt_names:
                continue  # the PLT stub itself: its callers are handled by name
            got = _rip_target(code.addrs[i + 1] if i + 1 < len(code.addrs) else a, op)
            name = code.got_names.get(got) if got is not None else None
            if name is not None:
                imported_calls.setdefault(f, set()).add(name.split("@")[0])
                call_sites.append((i, -1, name.split("@")[0]))
            else:
                indirect.add(f)
        else:
            indirect.add(f)

    # Wrapper call sites: `mov edi, imm; call syscall` (and wrappers of wrappers), to a fixpoint.
    by_name = dict(BUILTIN_WRAPPERS)
    by_name.update(extra_wrappers)
    for start, wreg in wrapper_addrs.items():
        if start in code.func_names:
            by_name[code.func_names[start]] = wreg
    done: set[int] = set()
    for _ in range(WRAPPER_ROUNDS):
        grew = False
        for i, t, name in call_sites:
            if i in done:
                continue
            reg: str | None = wrapper_addrs.get(t) if name is None else by_name.get(name)
            if reg is None:
                continue
            done.add(i)
            f = _func_of(starts, code.addrs[i])
            v = res.value(i, reg)
            if isinstance(v, frozenset):
                func_sys.setdefault(f, set()).update(v)
            elif isinstance(v, _Arg) and f >= 0 and f not in wrapper_addrs:
                wrapper_addrs[f] = v.reg
                if f in code.func_names:
                    by_name[code.func_names[f]] = v.reg
                grew = True
            elif not isinstance(v, _Arg):
                func_unres[f] = func_unres.get(f, 0) + 1
        if not grew:
            break
    wrappers = {code.func_names.get(s, hex(s)): r for s, r in wrapper_addrs.items()}
    return _Analysis(func_sys, func_unres, edges, indirect, imported_calls, wrappers, sites, int80)


# ------------------------------------------------------------------------------------------
# libc export map


def _export_map(code: _Code, an: _Analysis) -> dict[str, dict[str, Any]]:
    """Exported function -> {"nrs": [...], "unresolved_funcs": [...]} over the call graph.

    `unresolved_funcs` are the reachable functions holding unresolved sites (counts in the
    analysis' `func_unres`), so that sites reached from several imports are counted once.

    The graph has an edge for every direct call/jump between functions; a function with an
    indirect call reaches every address-taken function (sysfilter's conservative treatment of
    function pointers) through one pseudo node. Reachability is the full transitive closure,
    computed once per strongly connected component (networkx condensation) with syscall sets
    as bitmasks, so every export costs O(1) after one O(V + E) pass.
    """
    import networkx as nx

    indirect_node = -1
    g: Any = nx.DiGraph()
    g.add_nodes_from(code.func_starts)
    g.add_node(indirect_node)
    for f, succs in an.edges.items():
        g.add_edges_from((f, t) for t in succs)
    for f in an.indirect:
        g.add_edge(f, indirect_node)
    for a in code.address_taken:
        g.add_edge(indirect_node, a)
    unres_funcs = sorted(f for f, n in an.func_unres.items() if n)
    unres_bit = {f: 1 << i for i, f in enumerate(unres_funcs)}

    dag = nx.condensation(g)
    member = dag.graph["mapping"]
    sys_mask: dict[int, int] = {}
    unres_mask: dict[int, int] = {}
    for c in reversed(list(nx.topological_sort(dag))):
        sm = um = 0
        for f in dag.nodes[c]["members"]:
            for nr in an.func_sys.get(f, ()):
                sm |= 1 << nr
            um |= unres_bit.get(f, 0)
        for d in dag.successors(c):
            sm |= sys_mask[d]
            um |= unres_mask[d]
        sys_mask[c] = sm
        unres_mask[c] = um

    def bits(mask: int, universe: list[int] | None = None) -> list[int]:
        idx = [i for i, b in enumerate(reversed(bin(mask)[2:])) if b == "1"]
        return [universe[i] for i in idx] if universe is not None else idx

    roots = dict(code.exports)
    if code.entry in code.index:  # e_entry: musl's loader start-up (_dlstart) runs from here
        roots[ENTRY_KEY] = code.entry
    result: dict[str, dict[str, Any]] = {}
    for name, addr in sorted(roots.items()):
        if addr not in member:
            result[name] = {"nrs": [], "unresolved_funcs": []}
            continue
        c = member[addr]
        result[name] = {"nrs": bits(sys_mask[c]),
                        "unresolved_funcs": bits(unres_mask[c], unres_funcs)}
    return result


# ------------------------------------------------------------------------------------------
# cache


def cache_dir() -> Path:
    """$SLIM_CACHE_DIR/syscalls, else $XDG_CACHE_HOME/slim/syscalls, else ~/.cache/slim/syscalls."""
    if os.environ.get("SLIM_CACHE_DIR"):
        return Path(os.environ["SLIM_CACHE_DIR"]) / "syscalls"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "slim" / "syscalls"


def _cache_key(code_id: str) -> str:
    return re.sub(r"[^0-9a-zA-Z_.-]", "_", code_id)[:128]


def _cache_load(key: str) -> dict[str, Any] | None:
    p = cache_dir() / f"{_cache_key(key)}.json"
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("version") != CACHE_VERSION:
        return None
    return doc


def _cache_store(key: str, doc: dict[str, Any]) -> None:
    d = cache_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{_cache_key(key)}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(doc, sort_keys=True), encoding="utf-8")
        tmp.replace(d / f"{_cache_key(key)}.json")
    except OSError as exc:  # a cache is an optimisation: never fail the analysis for it
        log.debug("syscall cache %s not written: %s", d, exc)


# ------------------------------------------------------------------------------------------
# public API


def _names(nrs: Iterable[int]) -> list[str]:
    out = set()
    for n in nrs:
        nm = name_of(n)
        if nm is not None:
            out.add(nm)
    return sorted(out)


def analyze_elf(data: bytes, path: str) -> dict[str, Any]:
    """Analyze one ELF: {kind, build_id, soname, imports, direct nrs, unresolved, exports}.

    The result is cached per build-id (or content hash when there is none).
    Raises AnalysisError for a file that is not a parseable x86_64 ELF.
    """
    key = _build_id_quick(data) or ("sha256-" + hashlib.sha256(data).hexdigest())
    cached = _cache_load(key)
    if cached is not None:
        cached["cache_hit"] = True
        return cached
    code = _parse(data, path)
    an = _analyze_code(code, {})
    direct = set().union(*an.func_sys.values()) if an.func_sys else set()
    base = path.rsplit("/", 1)[-1]
    # musl's libc is its dynamic loader (ld-musl-<arch>.so.1, often without DT_SONAME).
    if code.soname in LIBC_SONAMES or base in LIBC_SONAMES or code.soname.startswith("libc.so"):
        kind = "libc"
    elif code.soname.startswith("ld-linux"):
        kind = "loader"
    elif code.interp:
        kind = "dynamic"
    elif code.etype == "ET_EXEC" or (code.etype == "ET_DYN" and not code.soname
                                     and not code.imports):
        kind = "static"
    else:
        kind = "library"
    doc: dict[str, Any] = {
        "version": CACHE_VERSION,
        "build_id": code.build_id,
        "kind": kind,
        "soname": code.soname,
        "imports": sorted(code.imports),
        "exports": sorted(code.exports),
        "direct": sorted(direct),
        "sites": an.sites,
        "unresolved_sites": sum(an.func_unres.values()),
        "int80_sites": an.int80,
        "wrappers": dict(sorted(an.wrappers.items())),
        "export_map": _export_map(code, an) if kind == "libc" else {},
        "func_unres": {str(f): n for f, n in sorted(an.func_unres.items())} if kind == "libc"
        else {},
    }
    _cache_store(key, doc)
    doc["cache_hit"] = False
    return doc


def _build_id_quick(data: bytes) -> str:
    """The GNU build-id without a full parse (cache key), or "" when absent."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        return _build_id(ELFFile(io.BytesIO(data)))
    except (ELFError, struct.error, ValueError, KeyError, IndexError):
        return ""


def static_syscalls(fs: RootFS, kept_elf_paths: Iterable[str]) -> StaticSyscalls:
    """The static syscall upper bound over the kept ELF files of an image.

    Files whose contents were not captured or that do not parse are reported in `per_file`
    with one unresolved site each (conservative), never dropped silently.
    """
    t0 = time.monotonic()
    docs: dict[str, dict[str, Any]] = {}
    per_file: dict[str, FileSyscalls] = {}
    for path in sorted(set(kept_elf_paths)):
        try:
            data = fs.read(path)
            if len(data) > MAX_ELF_BYTES:
                raise AnalysisError(f"{path}: ELF larger than {MAX_ELF_BYTES} bytes")
            if not data.startswith(b"\x7fELF"):
                continue
            docs[path] = analyze_elf(data, path)
        except AnalysisError as exc:
            log.info("%s", exc)
            per_file[path] = FileSyscalls(path, "unknown", (), 0, 1)

    libcs = {p: d for p, d in docs.items() if d["kind"] == "libc"}
    libc_hit = bool(libcs) and all(d.get("cache_hit") for d in libcs.values())
    provided: set[str] = set()
    for d in docs.values():
        provided.update(d["exports"])
    # (libc path, export) providers; unresolved libc sites are keyed (libc path, function).
    export_map: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for lp, d in libcs.items():
        for name, entry in d["export_map"].items():
            export_map.setdefault(name, []).append((lp, entry))

    def libc_unres(lp: str, funcs: Iterable[int]) -> set[tuple[str, int, int]]:
        fu = libcs[lp]["func_unres"]
        return {(lp, f, k) for f in funcs for k in range(fu.get(str(f), 0))}

    total: set[int] = set()
    all_unres: set[tuple[str, int, int]] = set()
    for path, d in sorted(docs.items()):
        nrs: set[int] = set()
        unres_keys: set[tuple[str, int, int]] = set()
        unres_imports: list[str] = []
        if d["kind"] == "libc":
            for name in LIBC_STARTUP:
                if name in d["export_map"]:
                    nrs.update(d["export_map"][name]["nrs"])
                    unres_keys |= libc_unres(path, d["export_map"][name]["unresolved_funcs"])
        else:
            nrs.update(d["direct"])
            unres_keys |= {(path, -1, k) for k in range(d["unresolved_sites"])}
            for name in d["imports"]:
                if name in export_map:
                    for lp, entry in export_map[name]:
                        nrs.update(entry["nrs"])
                        unres_keys |= libc_unres(lp, entry["unresolved_funcs"])
                elif name not in provided:
                    unres_keys.add((path, -2, len(unres_imports)))
                    unres_imports.append(name)
        total |= nrs
        all_unres |= unres_keys
        per_file[path] = FileSyscalls(
            path=path, kind=d["kind"], syscalls=tuple(_names(nrs)), sites=d["sites"],
            unresolved_sites=len(unres_keys), unresolved_imports=tuple(sorted(unres_imports)),
            int80_sites=d["int80_sites"], wrappers=tuple(sorted(d["wrappers"])),
            build_id=d["build_id"],
        )
    unresolved = len(all_unres)
    unresolved += sum(1 for f in per_file.values() if f.kind == "unknown")
    return StaticSyscalls(
        names=_names(total), unresolved_sites=unresolved, per_file=dict(sorted(per_file.items())),
        libc_cache_hit=libc_hit, seconds=round(time.monotonic() - t0, 3),
    )
