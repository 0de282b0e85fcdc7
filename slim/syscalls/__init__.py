"""Syscalls: the x86_64 table, static extraction from ELF code, unikernel compatibility.

Public API: `static_syscalls(fs, kept_elf_paths) -> StaticSyscalls` (extract.py),
`check_compat(names, target) -> CompatReport` (compat.py), `name_of` / `number_of` (table.py).
"""
