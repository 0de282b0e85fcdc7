"""Recovering syscall numbers from a code model: backward value tracking and call graphs.

At every `syscall` instruction the number is recovered by walking backwards for the last write
to eax/rax (`mov eax, imm`, `xor eax, eax`, register copies are chased); at a basic-block start
the walk continues into every predecessor (fall-through and direct jumps) with a depth bound. A
value that traces back to an argument register at a function entry makes that function a
*syscall wrapper*, whose call sites are then resolved the same way (module doc of
slim.syscalls.extract for the whole method).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slim.syscalls.code import HEX_RE, Code, func_of, rip_target

BACKTRACK_INSNS = 40  # per block walk (Loupe uses 20, Chestnut 200)
PRED_DEPTH = 3  # how many block boundaries a value is chased across
WRAPPER_ROUNDS = 4  # wrapper-of-wrapper fixpoint bound
ENTRY_KEY = "@entry"
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


class _Arg:
    """A value that is an argument register at a function entry."""

    __slots__ = ("reg",)

    def __init__(self, reg: str) -> None:
        self.reg = reg


_Value = frozenset[int] | _Arg | None


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
    def __init__(self, code: Code) -> None:
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
            if HEX_RE.match(src):
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


@dataclass
class CodeAnalysis:
    """Per-function syscall facts of one ELF (the cacheable part)."""

    func_sys: dict[int, set[int]]  # function start -> syscall numbers made there
    func_unres: dict[int, int]  # function start -> unresolved sites
    edges: dict[int, set[int]]  # function start -> directly called/jumped-to functions
    indirect: set[int]  # functions with an indirect call/jmp
    imported_calls: dict[int, set[str]]  # function start -> imported names it calls
    wrappers: dict[str, str]  # wrapper function name -> number register
    sites: int
    int80: int


@dataclass
class _Scan:
    """What the linear pass over the instructions collects, before wrappers are resolved."""

    func_sys: dict[int, set[int]] = field(default_factory=dict)
    func_unres: dict[int, int] = field(default_factory=dict)
    edges: dict[int, set[int]] = field(default_factory=dict)
    indirect: set[int] = field(default_factory=set)
    imported_calls: dict[int, set[str]] = field(default_factory=dict)
    wrapper_addrs: dict[int, str] = field(default_factory=dict)  # start -> register
    sites: int = 0
    int80: int = 0
    # (insn index, target addr, import name)
    call_sites: list[tuple[int, int, str | None]] = field(default_factory=list)

    def unresolved(self, f: int) -> None:
        self.func_unres[f] = self.func_unres.get(f, 0) + 1


def analyze_code(code: Code, extra_wrappers: dict[str, str]) -> CodeAnalysis:
    res = _Resolver(code)
    scan = _Scan()
    for i, (m, op) in enumerate(zip(code.mnems, code.ops, strict=True)):
        if m == "syscall" or (m == "int" and op in ("0x80", "128")) or m == "sysenter":
            _syscall_site(code, res, scan, i, m)
        elif _is_call(m) or m.startswith("j") or "jmp" in m:
            _branch_site(code, scan, i, m, op)
    _resolve_wrapper_calls(code, res, scan, extra_wrappers)
    wrappers = {code.func_names.get(s, hex(s)): r for s, r in scan.wrapper_addrs.items()}
    return CodeAnalysis(scan.func_sys, scan.func_unres, scan.edges, scan.indirect,
                        scan.imported_calls, wrappers, scan.sites, scan.int80)


def _syscall_site(code: Code, res: _Resolver, scan: _Scan, i: int, m: str) -> None:
    """Phase 1, a `syscall` (or `int 0x80` / `sysenter`) at instruction i: its number in rax."""
    f = func_of(code.func_starts, code.addrs[i])
    scan.sites += 1
    if m != "syscall":
        scan.int80 += 1
        scan.unresolved(f)
        return
    v = res.value(i, "rax")
    if isinstance(v, frozenset):
        scan.func_sys.setdefault(f, set()).update(v)
    elif isinstance(v, _Arg) and f >= 0:
        scan.wrapper_addrs[f] = v.reg
    else:
        scan.unresolved(f)


def _branch_site(code: Code, scan: _Scan, i: int, m: str, op: str) -> None:
    """Phase 1, a call or jump at instruction i: call-graph edges, imported calls, indirection."""
    starts = code.func_starts
    a = code.addrs[i]
    is_call = _is_call(m)
    f = func_of(starts, a)
    if HEX_RE.match(op):
        t = int(op, 0)
        name = code.plt_names.get(t & ~0xF) if t not in code.func_names else None
        if name is not None:
            scan.imported_calls.setdefault(f, set()).add(name.split("@")[0])
            if is_call or "jmp" in m:
                scan.call_sites.append((i, t, name.split("@")[0]))
            return
        g = func_of(starts, t)
        if g != f and g >= 0:
            scan.edges.setdefault(f, set()).add(g)
        if is_call or (g != f and "jmp" in m):
            scan.call_sites.append((i, g, None))
    elif "rip" in op and "[" in op:
        if (a & ~0xF) in code.plt_names:
            return  # the PLT stub itself: its callers are handled by name
        got = rip_target(code.addrs[i + 1] if i + 1 < len(code.addrs) else a, op)
        name = code.got_names.get(got) if got is not None else None
        if name is not None:
            scan.imported_calls.setdefault(f, set()).add(name.split("@")[0])
            scan.call_sites.append((i, -1, name.split("@")[0]))
        else:
            scan.indirect.add(f)
    else:
        scan.indirect.add(f)


def _resolve_wrapper_calls(code: Code, res: _Resolver, scan: _Scan, extra_wrappers: dict[str, str]) -> None:
    """Phase 2, wrapper call sites: `mov edi, imm; call syscall` (and wrappers of wrappers),
    to a fixpoint."""
    wrapper_addrs = scan.wrapper_addrs
    by_name = dict(BUILTIN_WRAPPERS)
    by_name.update(extra_wrappers)
    for start, wreg in wrapper_addrs.items():
        if start in code.func_names:
            by_name[code.func_names[start]] = wreg
    done: set[int] = set()
    for _ in range(WRAPPER_ROUNDS):
        grew = False
        for i, t, name in scan.call_sites:
            if i in done:
                continue
            reg: str | None = wrapper_addrs.get(t) if name is None else by_name.get(name)
            if reg is None:
                continue
            done.add(i)
            f = func_of(code.func_starts, code.addrs[i])
            v = res.value(i, reg)
            if isinstance(v, frozenset):
                scan.func_sys.setdefault(f, set()).update(v)
            elif isinstance(v, _Arg) and f >= 0 and f not in wrapper_addrs:
                wrapper_addrs[f] = v.reg
                if f in code.func_names:
                    by_name[code.func_names[f]] = v.reg
                grew = True
            elif not isinstance(v, _Arg):
                scan.unresolved(f)
        if not grew:
            break


# ------------------------------------------------------------------------------------------
# libc export map


def export_map(code: Code, an: CodeAnalysis) -> dict[str, dict[str, Any]]:
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


