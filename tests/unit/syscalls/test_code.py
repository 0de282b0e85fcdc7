"""The disassembly sweep of slim.syscalls.code: chunked and compact, and the same
instructions as one uninterrupted sweep."""

from __future__ import annotations

import signal
from array import array

import capstone
import pytest

from slim.syscalls import code as code_mod
from slim.syscalls.code import (
    AddrIndex,
    OutOfMemory,
    _disassemble,
    _elf_facts,
    _ElfFacts,
    parse_code,
)


def _reference_sweep(facts: _ElfFacts) -> list[tuple[int, str, str]]:
    """The sweep as written before chunking: one capstone call per run of decodable bytes,
    restarting one byte past each byte it cannot decode."""
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    out = []
    for _name, base, code in facts.exec_secs:
        off = 0
        while off < len(code):
            last = off
            for a, size, mnem, op in md.disasm_lite(code[off:], base + off):
                out.append((a, mnem, op))
                last = a - base + size
            off = last + 1 if last == off else last
    return out


def _swept(facts: _ElfFacts) -> list[tuple[int, str, str]]:
    addrs, mnems, ops, _plt = _disassemble(facts)
    assert isinstance(addrs, array) and addrs.typecode == "Q"
    return list(zip(addrs, mnems, ops, strict=True))


def test_sweep_of_a_real_elf_matches_one_uninterrupted_sweep(progs_root, monkeypatch) -> None:
    root, paths = progs_root
    facts = _elf_facts((root / paths["static"].lstrip("/")).read_bytes(), paths["static"])
    expected = _reference_sweep(facts)
    assert len(expected) > 10_000
    assert _swept(facts) == expected
    monkeypatch.setattr(code_mod, "DISASM_CHUNK", 7)  # chunk ends everywhere, mid-function
    assert _swept(facts) == expected


def test_undecodable_bytes_are_stepped_over_one_at_a_time() -> None:
    # 0x06 (push es) does not exist in 64-bit mode; 0x0f alone is a truncated opcode.
    facts = _ElfFacts(exec_secs=[(".text", 0x1000, b"\x90\x06\x06\x90\xc3\x0f"),
                                 (".fini", 0x2000, b"\x06" * 5 + b"\xc3")])
    assert _swept(facts) == _reference_sweep(facts) == [
        (0x1000, "nop", ""), (0x1003, "nop", ""), (0x1004, "ret", ""), (0x2005, "ret", "")]


def test_a_section_ending_past_the_top_of_the_address_space_is_swept_once() -> None:
    """capstone wraps the addresses past 2**64 to 0; the sweep once took them for offsets and
    went back to the start of the section, forever, its memory growing."""
    facts = _ElfFacts(exec_secs=[(".text", 2**64 - 0x10, b"\x90" * 0x100)])

    def endless(_signum: int, _frame: object) -> None:
        raise AssertionError("the sweep did not end")

    previous = signal.signal(signal.SIGALRM, endless)
    signal.alarm(20)
    try:
        got = _swept(facts)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert len(got) == 0x100
    assert [a for a, _m, _o in got[:0x11]] == [*range(2**64 - 0x10, 2**64), 0]


def test_capstone_never_decodes_more_than_a_chunk_per_call(progs_root, monkeypatch) -> None:
    """capstone allocates every instruction of one call at once (~250 bytes each): a whole
    100 MB section in one call held gigabytes."""
    root, paths = progs_root
    counts: list[int] = []
    real = capstone.Cs.disasm_lite

    def counting(self, code, offset, count=0):  # type: ignore[no-untyped-def]
        counts.append(count)
        return real(self, code, offset, count)

    monkeypatch.setattr(capstone.Cs, "disasm_lite", counting)
    monkeypatch.setattr(code_mod, "DISASM_CHUNK", 1000)
    facts = _elf_facts((root / paths["static"].lstrip("/")).read_bytes(), paths["static"])
    n = len(_disassemble(facts)[0])
    assert len(counts) >= n // 1000 and set(counts) == {1000}


def test_equal_texts_share_one_string(progs_root) -> None:
    root, paths = progs_root
    code = parse_code((root / paths["static"].lstrip("/")).read_bytes(), paths["static"])
    rets = [i for i, m in enumerate(code.mnems) if m == "ret"]
    assert len(rets) > 10 and len({id(code.mnems[i]) for i in rets}) == 1
    assert len({id(op) for op in code.ops}) == len(set(code.ops)) < len(code.ops)


@pytest.mark.parametrize("addrs, lookups", [
    ([0x10, 0x12, 0x20], {0x10: 0, 0x12: 1, 0x20: 2, 0x11: None, 0x0: None, 0x30: None}),
    # sections out of address order, and overlapping: the last instruction at an address wins
    ([0x20, 0x22, 0x10, 0x20], {0x20: 3, 0x22: 1, 0x10: 2, 0x21: None}),
    ([], {0x10: None}),
])
def test_addr_index(addrs: list[int], lookups: dict[int, int | None]) -> None:
    index = AddrIndex(array("Q", addrs))
    # growing addresses (every ELF whose sections are in address order): no dict of them
    assert (index._dict is None) == (addrs == sorted(set(addrs)))
    for addr, want in lookups.items():
        assert index.get(addr) == want
        assert (addr in index) == (want is not None)
    assert "0x10" not in index


def test_capstone_and_memory_failures_are_one_line_unknowns(progs_root, monkeypatch) -> None:
    """capstone's allocation failing (CS_ERR_MEM) or Python's (MemoryError, under `ulimit -v`)
    leaves the ELF an unknown with a message naming it, never a traceback."""
    from slim.pipeline import load_image
    from slim.syscalls import extract

    root, paths = progs_root
    data = (root / paths["static"].lstrip("/")).read_bytes()

    def no_memory(*_args, **_kw):  # type: ignore[no-untyped-def]
        raise capstone.CsError(capstone.CS_ERR_MEM)

    with monkeypatch.context() as patch, \
            pytest.raises(OutOfMemory, match=r"^/bin/prog-static: not enough memory to disassemble its \d+ bytes$"):
        patch.setattr(capstone.Cs, "disasm_lite", no_memory)
        parse_code(data, "/bin/prog-static")

    def out_of_memory(*_args, **_kw):  # type: ignore[no-untyped-def]
        raise MemoryError

    monkeypatch.setattr(extract, "analyze_code", out_of_memory)
    monkeypatch.setenv("SLIM_SYSCALL_WORKERS", "1")
    monkeypatch.setattr(extract.CACHE, "get", lambda _key: None)
    with pytest.raises(OutOfMemory, match=r"^/x: not enough memory to disassemble its \d+ bytes$"):
        extract._analyzed_anew(data, "/x", extract._key(data))
    with load_image(f"rootfs:{root}") as li:
        res = extract.static_syscalls(li.rootfs, [paths["static"]])
    assert res.per_file[paths["static"]].kind == "unknown" and res.unresolved_sites >= 1
