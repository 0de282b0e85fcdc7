"""Byte sizes: the one formatter and the one parser.

slim prints sizes in SI units (kB, MB, GB: powers of 1000), the units `docker images`, dive,
SlimToolkit and registries show, so a user can compare our numbers with theirs directly.
Exact byte counts stay in the JSON report. The parser also accepts binary units (KiB, MiB …,
powers of 1024, as `du -h` prints them) so a budget can be written either way.
"""

from __future__ import annotations

import re

_STEPS = ("B", "kB", "MB", "GB", "TB", "PB")
_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4,
    "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3,
    "ti": 1024**4, "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")


def format_bytes(n: float) -> str:
    """1_536_000 → "1.5 MB"; below 1 kB exact ("512 B"); the sign is kept ("-2.0 kB")."""
    sign = "-" if n < 0 else ""
    value = float(abs(n))
    for unit in _STEPS:
        if value < 1000 or unit == _STEPS[-1]:
            return f"{sign}{int(value)} B" if unit == "B" else f"{sign}{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def parse_size(text: str) -> int:
    """Bytes of "200MB", "1.5GiB", "512" (ASCII digits only). Raises ValueError."""
    m = _SIZE_RE.match(text)
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _UNITS or not m.group(1).isascii():
        raise ValueError(f"{text!r} is not a size (use bytes or a unit: B, kB, MB, GB, TB, "
                         "KiB, MiB, GiB, TiB)")
    return int(float(m.group(1)) * _UNITS[unit])


def ratio(before: int, after: int) -> str:
    """How many times smaller `after` is than `before`, as "3.4x"; "n/a" when `after` is 0."""
    return f"{before / after:.1f}x" if after > 0 else "n/a"


__all__ = ["format_bytes", "parse_size", "ratio"]
