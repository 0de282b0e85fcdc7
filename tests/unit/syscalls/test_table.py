from __future__ import annotations

from pathlib import Path

from slim.syscalls import table

HEADER = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")


def test_known_numbers() -> None:
    assert table.name_of(0) == "read"
    assert table.name_of(1) == "write"
    assert table.name_of(39) == "getpid"
    assert table.name_of(318) == "getrandom"
    assert table.name_of(335) is None  # the gap between 334 and 424
    assert table.number_of("execve") == 59
    assert table.number_of("nope") is None


def test_all_names_sorted_unique() -> None:
    names = table.all_names()
    assert names == sorted(set(names))
    assert len(names) >= 362  # Linux 6.1 uapi


def test_parse_header_text() -> None:
    text = "#define __NR_read 0\n#define __NR_write 1\n#ifndef X\n#define __NR_foo_bar 77\n"
    assert table.parse_unistd_header(text) == {0: "read", 1: "write", 77: "foo_bar"}


def test_committed_table_matches_host_header() -> None:
    if not HEADER.exists():  # the data file is committed; the header is only a dev-time input
        return
    parsed = table.parse_unistd_header(HEADER.read_text())
    for nr, name in parsed.items():
        assert table.name_of(nr) == name
