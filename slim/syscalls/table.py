"""The x86_64 Linux syscall table: number <-> name, loaded from the committed x86_64.tsv.

The data file is generated at development time from the kernel uapi header, so slim has no
runtime dependency on kernel headers. Recipe (Debian package `linux-libc-dev`, 6.1.187 here):

    python -m slim.syscalls.table /usr/include/x86_64-linux-gnu/asm/unistd_64.h \
        > slim/syscalls/x86_64.tsv

Each `#define __NR_<name> <nr>` line of the header becomes `<nr>\\t<name>` (sorted by number).
Linux 6.1 has 362 names, numbered 0-334 and 424-450.
"""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path

TABLE_FILE = Path(__file__).with_name("x86_64.tsv")
_NR_RE = re.compile(r"^#define\s+__NR_(\w+)\s+(\d+)\s*$")


def parse_unistd_header(text: str) -> dict[int, str]:
    """Parse `asm/unistd_64.h` text into {number: name}."""
    table: dict[int, str] = {}
    for line in text.splitlines():
        m = _NR_RE.match(line.strip())
        if m:
            table[int(m.group(2))] = m.group(1)
    return table


@functools.cache
def _load() -> tuple[dict[int, str], dict[str, int]]:
    by_nr: dict[int, str] = {}
    for line in TABLE_FILE.read_text(encoding="ascii").splitlines():
        if not line or line.startswith("#"):
            continue
        nr, name = line.split("\t")
        by_nr[int(nr)] = name
    return by_nr, {name: nr for nr, name in by_nr.items()}


def name_of(nr: int) -> str | None:
    """The syscall name for an x86_64 number, or None when the number is not a syscall."""
    return _load()[0].get(nr)


def number_of(name: str) -> int | None:
    """The x86_64 number of a syscall name, or None when unknown."""
    return _load()[1].get(name)


def all_names() -> list[str]:
    """Every x86_64 syscall name in the table, sorted."""
    return sorted(_load()[1])


def _main(argv: list[str]) -> int:
    header = Path(argv[1] if len(argv) > 1 else "/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
    table = parse_unistd_header(header.read_text(encoding="ascii"))
    out = [f"# generated from {header} by slim.syscalls.table; {len(table)} names"]
    out += [f"{nr}\t{name}" for nr, name in sorted(table.items())]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover - dev-time generator
    raise SystemExit(_main(sys.argv))
