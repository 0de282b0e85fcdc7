"""glibc's /etc/ld.so.cache: the binary index ldconfig writes and ld.so searches
(sysdeps/generic/dl-cache.h, elf/dl-cache.c). Parsed from bytes; never trusted (every offset
and count is checked against the file).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from slim.errors import AnalysisError

LD_SO_CACHE = "/etc/ld.so.cache"
MAX_CACHE_ENTRIES = 1 << 20  # a cap against hostile images

OLD_MAGIC = b"ld.so-1.7.0"
NEW_MAGIC = b"glibc-ld.so.cache"
NEW_VERSION = b"1.1"
_OLD_HEADER = struct.Struct("<11sxI")  # magic[11] + pad, nlibs -> 16 bytes
_OLD_ENTRY = struct.Struct("<iII")  # flags, key, value
_NEW_HEADER = struct.Struct(
    "<17s3sIIB3sI12x"
)  # magic, version, nlibs, len_strings, flags, pad, ext
_NEW_ENTRY = struct.Struct("<iIIIQ")  # flags, key, value, osversion, hwcap

FLAG_TYPE_MASK = 0x00FF
FLAG_ELF_LIBC6 = 0x0003
FLAG_REQUIRED_MASK = 0xFF00
DL_CACHE_HWCAP_EXTENSION = 1 << 62

# _dl_cache_check_flags per architecture (sysdeps/*/dl-cache.h): the flags a cache entry must
# carry to be used by an object of that machine/class. Unlisted platforms accept libc6 entries.
CACHE_FLAGS: dict[tuple[str, int], int] = {
    ("EM_X86_64", 64): 0x0303,  # FLAG_ELF_LIBC6 | FLAG_X8664_LIB64
    ("EM_X86_64", 32): 0x0803,  # x32: FLAG_X8664_LIBX32
    ("EM_386", 32): 0x0003,
    ("EM_AARCH64", 64): 0x0A03,  # FLAG_AARCH64_LIB64
    ("EM_PPC64", 64): 0x0503,  # FLAG_POWERPC_LIB64
    ("EM_S390", 64): 0x0403,  # FLAG_S390_LIB64
    ("EM_IA_64", 64): 0x0203,
}


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One ld.so.cache record: soname `key` → library path `value`."""

    key: str
    value: str
    flags: int
    hwcap: int = 0


def _cstr(data: bytes, offset: int, what: str) -> str:
    if not 0 <= offset < len(data):
        raise AnalysisError(f"{LD_SO_CACHE}: {what} string offset {offset} outside the file")
    end = data.find(b"\x00", offset)
    if end < 0:
        raise AnalysisError(f"{LD_SO_CACHE}: {what} string at {offset} is not terminated")
    return data[offset:end].decode("utf-8", errors="surrogateescape")


def parse_ld_so_cache(data: bytes) -> list[CacheEntry]:
    """Entries of an ld.so.cache, in file order (the order glibc scans them).

    Accepts the new format ("glibc-ld.so.cache1.1", glibc ≥ 2.32 default) and the compat format
    (an old "ld.so-1.7.0" table followed by a new one; the new one wins as in dl-cache.c) and a
    lone old table. New-format string offsets are relative to the new header; old-format ones
    to the end of the old entry array. Raises AnalysisError naming /etc/ld.so.cache.
    """
    if data.startswith(NEW_MAGIC):
        return _parse_new(data, 0)
    if not data.startswith(OLD_MAGIC):
        raise AnalysisError(f"{LD_SO_CACHE}: unknown format (magic {data[:17]!r})")
    if len(data) < _OLD_HEADER.size:
        raise AnalysisError(f"{LD_SO_CACHE}: truncated header")
    _, nlibs = _OLD_HEADER.unpack_from(data, 0)
    end = _OLD_HEADER.size + nlibs * _OLD_ENTRY.size
    if nlibs > MAX_CACHE_ENTRIES or end > len(data):
        raise AnalysisError(f"{LD_SO_CACHE}: {nlibs} entries do not fit in {len(data)} bytes")
    new_at = (end + 7) & ~7  # ALIGN_CACHE: aligned to __alignof__(struct cache_file_new)
    if data[new_at : new_at + len(NEW_MAGIC)] == NEW_MAGIC:
        return _parse_new(data, new_at)
    strings = data[end:]
    out = []
    for i in range(nlibs):
        flags, key, value = _OLD_ENTRY.unpack_from(data, _OLD_HEADER.size + i * _OLD_ENTRY.size)
        out.append(CacheEntry(_cstr(strings, key, "key"), _cstr(strings, value, "value"), flags))
    return out


def _parse_new(data: bytes, base: int) -> list[CacheEntry]:
    if len(data) - base < _NEW_HEADER.size:
        raise AnalysisError(f"{LD_SO_CACHE}: truncated header")
    _, version, nlibs, _len_strings, _flags, _, _ext = _NEW_HEADER.unpack_from(data, base)
    if version != NEW_VERSION:
        raise AnalysisError(f"{LD_SO_CACHE}: unsupported version {version!r}")
    first = base + _NEW_HEADER.size
    if nlibs > MAX_CACHE_ENTRIES or first + nlibs * _NEW_ENTRY.size > len(data):
        raise AnalysisError(f"{LD_SO_CACHE}: {nlibs} entries do not fit in {len(data)} bytes")
    strings = data[base:]
    out = []
    for i in range(nlibs):
        flags, key, value, _osv, hwcap = _NEW_ENTRY.unpack_from(data, first + i * _NEW_ENTRY.size)
        out.append(
            CacheEntry(_cstr(strings, key, "key"), _cstr(strings, value, "value"), flags, hwcap)
        )
    return out
