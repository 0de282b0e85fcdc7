"""Dynamic-loader emulation: ld.so.cache parsing, ld.so.conf reading and the library resolver
(glibc and musl search orders). The analyzer that uses them is slim.analyzers.elf."""

from slim.analyzers.ldso.cache import LD_SO_CACHE, CacheEntry, parse_ld_so_cache
from slim.analyzers.ldso.conf import LD_SO_CONF, parse_ld_so_conf
from slim.analyzers.ldso.resolver import LibraryResolver, Resolution

__all__ = ["LD_SO_CACHE", "LD_SO_CONF", "CacheEntry", "LibraryResolver", "Resolution",
           "parse_ld_so_cache", "parse_ld_so_conf"]
