"""Dynamic-loader emulation: which file each DT_NEEDED name becomes inside the image.

Reproduces the search orders of glibc (elf/dl-load.c `_dl_map_object`, `open_path`,
`_dl_init_paths`; elf/dl-cache.c `_dl_load_cache_lookup`) and musl (ldso/dynlink.c
`load_library`, `fixup_rpath`, `path_open`) against a RootFS, never the host:

glibc, for a name without '/':
  1. DT_RPATH of the requester, then of its loader, … up to the executable — only when the
     requester has no DT_RUNPATH (an object's DT_RPATH is ignored when it has DT_RUNPATH);
  2. LD_LIBRARY_PATH from the image config Env (':' and ';' separate elements);
  3. the requester's own DT_RUNPATH (never inherited);
  4. /etc/ld.so.cache (or, when absent, the directories of /etc/ld.so.conf as an approximation);
  5. the trusted directories /lib, /usr/lib (/lib64, /usr/lib64 first for 64-bit objects);
  (6. not glibc: when a cache exists but misses the name, the ld.so.conf directories are tried
      last and labelled "stale ld.so.cache", so a library installed without running ldconfig is
      kept rather than silently dropped.)
  Steps 4-5 are skipped for a requester with DF_1_NODEFLIB. Every directory is searched first in
  its glibc-hwcaps subdirectories (x86-64-v4, -v3, -v2 on x86-64; glibc ≥ 2.33). The runtime CPU
  is unknown, so the search is evaluated for every ISA level: `path` is what a baseline CPU
  loads, `alternatives` what better CPUs load instead. The legacy hwcaps subdirectories
  (tls, x86_64, haswell; removed in glibc 2.37) are not searched.

musl, for a name without '/': lib{c,pthread,rt,m,dl,util,xnet}.* is the loader itself; then
LD_LIBRARY_PATH; then the rpath (DT_RUNPATH if present, else DT_RPATH) of the requester and each
object up its needed_by chain (musl does inherit RUNPATH); then /etc/ld-musl-$ARCH.path, else
/lib:/usr/local/lib:/usr/lib. musl expands only $ORIGIN/${ORIGIN}; an rpath holding another
'$' token is ignored entirely (fixup_rpath). Empty elements are skipped (path_open).

Preloads: LD_PRELOAD from the image Env (both loaders) and /etc/ld.so.preload (glibc) are
mapped right after the executable, before its DT_NEEDED (glibc elf/rtld.c do_preload).

Paths: a search directory holding '..' is walked as the kernel does (after a symlink, '..'
leaves the link's target), and the symlinks crossed are reported (`Resolution.links`); other
paths are only normalized, so `path` keeps directory symlinks such as /lib -> usr/lib.

Dynamic string tokens (glibc elf/dl-load.c `_dl_dst_substitute`): $ORIGIN / ${ORIGIN} is the
directory of the object inside the image (the executable's real path, a library's path as found);
$PLATFORM is the AT_PLATFORM string (x86_64, i686, aarch64 …); $LIB is the glibc build's
library directory name: "lib/<multiarch triplet>" when the image has that directory (Debian,
Ubuntu), else "lib64" for 64-bit x86-64/ppc64/s390x objects (Fedora, RHEL), else "lib" — the
real value is compiled into ld.so, so this is a documented guess. An empty element (or a
relative one) is relative to the process working directory: the image WorkingDir, "/" if unset.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import posixpath
import re
import struct
from collections import deque
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from slim.analyzers.base import AnalysisContext, Analyzer
from slim.analyzers.elf import ELF_MAGIC, ElfInfo, elf_info, read_elf
from slim.errors import AnalysisError
from slim.fs.rootfs import RootFS
from slim.model import Edge, EntryKind, FileEntry, ImageConfig, Unknown, normpath

log = logging.getLogger(__name__)

LD_SO_CACHE = "/etc/ld.so.cache"
LD_SO_CONF = "/etc/ld.so.conf"

# Caps against hostile images.
MAX_CLOSURE = 4096
MAX_CONF_FILES = 256
MAX_CACHE_ENTRIES = 1 << 20
UNKNOWN_TRIED_SHOWN = 12

# ---------------------------------------------------------------------------------------------
# /etc/ld.so.cache (glibc sysdeps/generic/dl-cache.h)
# ---------------------------------------------------------------------------------------------
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
_CACHE_FLAGS: dict[tuple[str, int], int] = {
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


# ---------------------------------------------------------------------------------------------
# /etc/ld.so.conf (glibc elf/ldconfig.c parse_conf / parse_conf_include)
# ---------------------------------------------------------------------------------------------
def _glob(fs: RootFS, pattern: str) -> list[str]:
    """glob(3) inside the image, component by component ('*' never crosses '/'), sorted."""
    matches = ["/"]
    for part in [p for p in pattern.split("/") if p]:
        nxt: list[str] = []
        for base in matches:
            if any(c in part for c in "*?["):
                nxt.extend(
                    posixpath.join(base, n)
                    for n in fs.listdir(base)
                    if fnmatch.fnmatchcase(n, part)
                    and not (n.startswith(".") and not part.startswith("."))
                )
            elif fs.lexists(posixpath.join(base, part)) or fs.exists(posixpath.join(base, part)):
                nxt.append(posixpath.join(base, part))
        matches = nxt
    return sorted(m for m in matches if m != "/")


def parse_ld_so_conf(fs: RootFS, path: str = LD_SO_CONF) -> list[str]:
    """Library directories named by /etc/ld.so.conf and its `include` globs, in order, deduplicated.

    As ldconfig: '#' starts a comment; `include PATTERN…` reads every file matching each glob
    (a relative pattern is relative to the including file's directory, /etc for ld.so.conf);
    `hwcap` lines are ignored; "DIR=TYPE" keeps DIR. Include cycles are read once. Unreadable or
    missing files are skipped (ldconfig warns and continues).
    """
    dirs: list[str] = []
    seen_files: set[str] = set()

    def read(conf: str) -> None:
        real = fs.realpath(conf)
        if real in seen_files or len(seen_files) >= MAX_CONF_FILES:
            return
        seen_files.add(real)
        try:
            text = fs.read_text(conf)
        except AnalysisError as exc:
            log.debug("%s: skipped: %s", conf, exc)
            return
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            words = line.split()
            if words[0] == "include" and len(words) > 1:
                for pattern in words[1:]:
                    if not pattern.startswith("/"):
                        pattern = posixpath.join(posixpath.dirname(conf), pattern)
                    for match in _glob(fs, pattern):
                        read(match)
            elif words[0] == "hwcap":
                continue
            else:
                for word in words:
                    d = normpath(word.split("=", 1)[0])
                    if d not in dirs:
                        dirs.append(d)

    read(path)
    return dirs


# ---------------------------------------------------------------------------------------------
# The resolver
# ---------------------------------------------------------------------------------------------
HWCAPS_X86_64 = (
    "x86-64-v4",
    "x86-64-v3",
    "x86-64-v2",
)  # glibc sysdeps/x86/dl-hwcaps: priority order
HWCAPS_BY_MACHINE: dict[str, tuple[str, ...]] = {
    "EM_X86_64": HWCAPS_X86_64,
    "EM_PPC64": ("power10", "power9"),
    "EM_S390": ("z16", "z15", "z14", "z13"),
}
PLATFORM_BY_MACHINE = {
    "EM_X86_64": "x86_64",
    "EM_386": "i686",
    "EM_AARCH64": "aarch64",
    "EM_ARM": "v7l",
    "EM_PPC64": "power8",
    "EM_S390": "z900",
    "EM_RISCV": "riscv64",
}
MULTIARCH_BY_MACHINE = {
    ("EM_X86_64", 64): "x86_64-linux-gnu",
    ("EM_386", 32): "i386-linux-gnu",
    ("EM_AARCH64", 64): "aarch64-linux-gnu",
    ("EM_ARM", 32): "arm-linux-gnueabihf",
    ("EM_PPC64", 64): "powerpc64le-linux-gnu",
    ("EM_S390", 64): "s390x-linux-gnu",
    ("EM_RISCV", 64): "riscv64-linux-gnu",
}
MUSL_DEFAULT_PATH = ("/lib", "/usr/local/lib", "/usr/lib")
_MUSL_RESERVED = re.compile(r"^lib(c|pthread|rt|m|dl|util|xnet)\.")
_DST = re.compile(r"\$(\{(ORIGIN|LIB|PLATFORM)\}|(ORIGIN|LIB|PLATFORM)(?![A-Za-z0-9_]))")


@dataclass(frozen=True)
class Resolution:
    """Where the loader finds `name` (`path` None when it does not) and every place it looked."""

    name: str
    path: str | None
    tried: tuple[str, ...]
    via: str
    alternatives: tuple[str, ...] = ()  # glibc-hwcaps variants other CPUs load instead
    # symlinks the search path crossed before a '..' (e.g. $ORIGIN/../lib from a linked dir):
    # the loader needs them, yet they are not on the lexical path of `path`
    links: tuple[str, ...] = ()


@dataclass
class _Search:
    """State of one glibc/musl directory search, evaluated for every hwcaps level at once."""

    name: str
    levels: int  # number of hwcaps subdirectory names (ISA levels above the baseline)
    tried: list[str] = field(default_factory=list)
    # found[level] = (path, via) for CPU levels 0 (baseline) … levels
    found: dict[int, tuple[str, str]] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return 0 in self.found

    def result(self) -> Resolution:
        if not self.found:
            return Resolution(self.name, None, tuple(self.tried), "not found")
        best = min(self.found)  # the most conservative CPU that finds something
        path, via = self.found[best]
        alts = sorted({p for lvl, (p, _) in self.found.items() if p != path})
        return Resolution(self.name, path, tuple(self.tried), via, tuple(alts))


class LibraryResolver:
    """Resolves DT_NEEDED names inside a RootFS in glibc or musl order (module docstring)."""

    def __init__(self, fs: RootFS, config: ImageConfig, elf_cache: dict | None = None) -> None:
        self.fs = fs
        self.config = config
        self.workdir = normpath(config.workdir or "/")
        self._elf_cache: dict[str, ElfInfo | AnalysisError] = (
            elf_cache if elf_cache is not None else {}
        )
        self._cache: list[CacheEntry] | bool | None = False  # False = not read yet
        self._conf: list[str] | None = None
        self._musl_path: dict[str, tuple[tuple[str, ...], str]] = {}
        self._default_flavor: str | None = None
        self._memo: dict[tuple, Resolution] = {}
        self._dir_links: dict[str, tuple[str, ...]] = {}
        self.cache_error = ""

    # -- image facts, read lazily ---------------------------------------------------------
    def elf(self, path: str) -> ElfInfo:
        """Parsed ELF at an image path (memoized). Raises AnalysisError."""
        hit = self._elf_cache.get(path)
        if hit is None:
            try:
                hit = read_elf(self.fs, path)
            except AnalysisError as exc:
                hit = exc
            self._elf_cache[path] = hit
        if isinstance(hit, AnalysisError):
            raise hit
        return hit

    def ld_so_cache(self) -> list[CacheEntry] | None:
        """Entries of the image's /etc/ld.so.cache; None when absent or unreadable."""
        if self._cache is False:
            self._cache = None
            if self.fs.is_file(LD_SO_CACHE):
                try:
                    self._cache = parse_ld_so_cache(self.fs.read(LD_SO_CACHE))
                except AnalysisError as exc:
                    self.cache_error = str(exc)
                    log.warning("%s", exc)
        return self._cache  # type: ignore[return-value]

    def ld_so_conf(self) -> list[str]:
        if self._conf is None:
            self._conf = parse_ld_so_conf(self.fs)
        return self._conf

    def env(self, key: str) -> str | None:
        return self.config.env_dict.get(key)

    # -- tokens -----------------------------------------------------------------------------
    def dst_lib(self, obj: ElfInfo) -> str:
        triplet = MULTIARCH_BY_MACHINE.get((obj.machine, obj.elfclass))
        if triplet and self.fs.is_dir(f"/lib/{triplet}"):
            return f"lib/{triplet}"
        if obj.elfclass == 64 and obj.machine in ("EM_X86_64", "EM_PPC64", "EM_S390"):
            return "lib64"
        return "lib"

    def origin(self, obj: ElfInfo, is_executable: bool) -> str:
        # glibc: the executable's origin comes from /proc/self/exe (links resolved); a library's
        # from the name it was opened under (elf/dl-object.c _dl_new_object). musl likewise.
        path = self.fs.realpath(obj.path) if is_executable else obj.path
        return posixpath.dirname(normpath(path))

    def substitute(self, element: str, obj: ElfInfo, is_executable: bool) -> str:
        """Replace $ORIGIN/${ORIGIN}, $LIB, $PLATFORM (unknown tokens stay, as in glibc)."""

        def sub(m: re.Match[str]) -> str:
            token = m.group(2) or m.group(3)
            if token == "ORIGIN":
                return self.origin(obj, is_executable)
            if token == "LIB":
                return self.dst_lib(obj)
            return PLATFORM_BY_MACHINE.get(obj.machine, "")

        return _DST.sub(sub, element)

    def expand(self, element: str, obj: ElfInfo, is_executable: bool) -> str:
        """One search-path element as an absolute image directory: tokens substituted, an empty
        or relative element taken relative to the working directory (glibc fillin_rpath)."""
        value = self.substitute(element, obj, is_executable) or "."
        return self.physical_dir(posixpath.join(self.workdir, value))

    def physical_dir(self, directory: str) -> str:
        """`directory` as the kernel walks it: '..' after a symlink goes up from the link's
        target, not lexically. Without '..' this is plain normalization; with it, the directory
        is resolved in the image and the links crossed are remembered for `Resolution.links`."""
        if ".." not in directory.split("/"):
            return normpath(directory)
        res = self.fs.resolve(directory)
        self._dir_links.setdefault(res.path, res.links)
        return res.path

    def physical(self, path: str) -> str:
        """A candidate file path with its directory made physical (see `physical_dir`)."""
        head, base = posixpath.split(path)
        return posixpath.join(self.physical_dir(head or "/"), base) if base else normpath(path)

    # -- candidates -------------------------------------------------------------------------
    def _check(self, candidate: str, requester: ElfInfo) -> str:
        """ "" when `candidate` exists and is loadable by `requester`; else why not ("" → use it)."""
        st = self.fs.stat(candidate)
        if st is None or st.kind not in (EntryKind.FILE, EntryKind.HARDLINK):
            return "missing"
        try:
            head = self.fs.read(candidate, 4)
        except AnalysisError:
            return "skipped: contents not available (not an ELF file)"
        if head != ELF_MAGIC:
            return "skipped: not an ELF file"
        try:
            info = self.elf(candidate)
        except AnalysisError as exc:
            return f"skipped: {str(exc).split(': ', 1)[-1]}"
        reason = requester.compatible_with(info)
        return f"skipped: {reason}" if reason else ""

    def _try_dir(
        self, search: _Search, directory: str, requester: ElfInfo, via: str, hwcaps: tuple[str, ...]
    ) -> None:
        """Try DIR/glibc-hwcaps/<level>/NAME (best level first), then DIR/NAME (dl-load.c open_path)."""
        # hwcaps[0] is the highest level: CPU level L (1..n) supports hwcaps[n-L:].
        n = len(hwcaps)
        for idx, sub in enumerate(hwcaps):
            level = n - idx
            cand = self.physical(f"{directory}/glibc-hwcaps/{sub}/{search.name}")
            if not self.fs.is_dir(posixpath.dirname(cand)):
                continue
            why = self._check(cand, requester)
            search.tried.append(cand if not why or why == "missing" else f"{cand} ({why})")
            if not why:
                for cpu in range(level, n + 1):
                    search.found.setdefault(cpu, (cand, f"{via} (glibc-hwcaps/{sub})"))
        cand = self.physical(f"{directory}/{search.name}")
        why = self._check(cand, requester)
        search.tried.append(cand if not why or why == "missing" else f"{cand} ({why})")
        if not why:
            for cpu in range(0, n + 1):
                search.found.setdefault(cpu, (cand, via))

    def _try_dirs(
        self,
        search: _Search,
        dirs: Iterable[str],
        requester: ElfInfo,
        via: str,
        hwcaps: tuple[str, ...],
    ) -> None:
        for d in dirs:
            if search.done:
                return
            self._try_dir(search, d, requester, via, hwcaps)

    # -- entry point ------------------------------------------------------------------------
    def flavor(self, requester: ElfInfo, chain: Sequence[ElfInfo]) -> str:
        root = chain[-1] if chain else requester
        for obj in (root, requester):
            if obj.libc:
                return obj.libc
        if any(_MUSL_RESERVED.match(n) and "musl" in n for n in requester.needed):
            return "musl"
        if self._default_flavor is None:
            musl = any(n.startswith("ld-musl-") for n in self.fs.listdir("/lib"))
            self._default_flavor = "musl" if musl and not self.fs.exists(LD_SO_CACHE) else "glibc"
        return self._default_flavor

    def resolve(self, name: str, requester: ElfInfo, chain: Sequence[ElfInfo] = ()) -> Resolution:
        """Find DT_NEEDED `name` of `requester`, loaded by `chain` (nearest loader first; the
        last one is the executable; empty when the requester is the executable). Never raises."""
        executable = chain[-1] if chain else requester
        # Memo key: everything the search depends on (the rpath-carrying part of the chain).
        llp = self.env("LD_LIBRARY_PATH") or ""
        key = (
            name,
            requester.path,
            bool(chain),
            executable.interp,
            executable.libc,
            tuple((o.path, o.rpath, o.runpath) for o in chain if o.rpath or o.runpath),
            executable.path if "$" in llp else "",
        )
        hit = self._memo.get(key)
        if hit is None:
            hit = self._resolve(name, requester, chain, executable)
            found = [p for p in (hit.path, *hit.alternatives) if p]
            links = sorted(
                {ln for p in found for ln in self._dir_links.get(posixpath.dirname(p), ())}
            )
            if links:
                hit = dataclasses.replace(hit, links=tuple(links))
            self._memo[key] = hit
            log.debug(
                "%s: %s -> %s via %s (%d tried)",
                requester.path,
                name,
                hit.path,
                hit.via,
                len(hit.tried),
            )
        return hit

    def _resolve(
        self, name: str, requester: ElfInfo, chain: Sequence[ElfInfo], executable: ElfInfo
    ) -> Resolution:
        if "$" in name:  # DT_NEEDED values are DST-expanded too (elf/dl-deps.c)
            name = self.substitute(name, requester, requester is executable)
        if "/" in name:
            path = self.physical(posixpath.join(self.workdir, name))
            why = self._check(path, requester)
            if why:
                return Resolution(name, None, (f"{path} ({why})",), "not found")
            return Resolution(name, path, (path,), "path")
        if self.flavor(requester, chain) == "musl":
            return self._resolve_musl(name, requester, chain, executable)
        return self._resolve_glibc(name, requester, chain, executable)

    def _resolve_glibc(
        self, name: str, requester: ElfInfo, chain: Sequence[ElfInfo], executable: ElfInfo
    ) -> Resolution:
        hwcaps = HWCAPS_BY_MACHINE.get(requester.machine, ())
        search = _Search(name, len(hwcaps))
        objs = [requester, *chain]
        # 1. DT_RPATH up the loader chain, only when the requester has no DT_RUNPATH.
        if not requester.runpath:
            for obj in objs:
                if search.done:
                    break
                dirs = [self.expand(e, obj, obj is executable) for e in obj.effective_rpath]
                self._try_dirs(search, dirs, requester, f"RPATH of {obj.path}", hwcaps)
        # 2. LD_LIBRARY_PATH from the image Env (elf/rtld.c: ':' or ';' separated).
        llp = self.env("LD_LIBRARY_PATH")
        if llp and not search.done:
            dirs = [self.expand(e, executable, True) for e in re.split("[:;]", llp)]
            self._try_dirs(search, dirs, requester, "LD_LIBRARY_PATH", hwcaps)
        # 3. The requester's own DT_RUNPATH.
        if requester.runpath and not search.done:
            dirs = [self.expand(e, requester, requester is executable) for e in requester.runpath]
            self._try_dirs(search, dirs, requester, f"RUNPATH of {requester.path}", hwcaps)
        if requester.nodeflib:
            return search.result()
        # 4. ld.so.cache, else ld.so.conf.
        cache = self.ld_so_cache()
        if cache is not None and not search.done:
            self._search_cache(search, cache, requester)
        elif cache is None and not search.done:
            self._try_dirs(
                search, self.ld_so_conf(), requester, "ld.so.conf (no ld.so.cache)", hwcaps
            )
        # 5. Trusted directories (elf/dl-load.c _dl_init_paths: SYSTEM_DIRS).
        if not search.done:
            trusted = ["/lib64", "/usr/lib64"] if requester.elfclass == 64 else []
            trusted += ["/lib", "/usr/lib"]
            self._try_dirs(search, trusted, requester, "trusted directory", hwcaps)
        # 6. Not glibc: a stale cache must not make us drop a library ldconfig never indexed.
        if cache is not None and not search.done:
            self._try_dirs(
                search,
                self.ld_so_conf(),
                requester,
                "ld.so.conf (not in ld.so.cache: stale cache)",
                hwcaps,
            )
        return search.result()

    def _search_cache(self, search: _Search, cache: list[CacheEntry], requester: ElfInfo) -> None:
        """elf/dl-cache.c `_dl_cache_libcmp` search: every entry with this key and the
        requester's flags is considered; a glibc-hwcaps entry beats the baseline (hwcap 0) entry
        on CPUs that support it, whatever their order in the file; the first baseline entry
        wins for the others. An entry whose file is missing or incompatible is skipped (the
        loader then falls through to the trusted directories, dl-load.c `_dl_map_object`)."""
        want = _CACHE_FLAGS.get((requester.machine, requester.elfclass))
        hwcaps = HWCAPS_BY_MACHINE.get(requester.machine, ())
        n = len(hwcaps)
        usable: list[tuple[int, str, str]] = []  # (level: n+1 legacy, 1..n hwcaps, 0 base)
        hits = 0
        for entry in cache:
            if entry.key != search.name:
                continue
            if want is not None and entry.flags != want:
                continue
            if want is None and entry.flags & FLAG_TYPE_MASK != FLAG_ELF_LIBC6:
                continue
            hits += 1
            cand = self.physical(entry.value)
            why = self._check(cand, requester)
            search.tried.append(f"ld.so.cache: {cand}" + (f" ({why})" if why else ""))
            if why:
                continue
            m = re.search(r"/glibc-hwcaps/([^/]+)/[^/]+$", cand)
            if m and m.group(1) in hwcaps:
                level = n - hwcaps.index(m.group(1))
                usable.append((level, cand, f"ld.so.cache (glibc-hwcaps/{m.group(1)})"))
            elif entry.hwcap and not entry.hwcap & DL_CACHE_HWCAP_EXTENSION:
                # legacy hwcaps subdirectory (tls, haswell …): some CPUs load it; keep it too
                usable.append((n + 1, cand, "ld.so.cache (legacy hwcaps)"))
            else:
                usable.append((0, cand, "ld.so.cache"))
        # best hwcaps level first (stable: file order among equals), the baseline last
        for level, cand, via in sorted(usable, key=lambda u: -u[0] if u[0] <= n else 0):
            if level > n:
                search.found.setdefault(level, (cand, via))
                continue
            for cpu in range(level, n + 1):
                search.found.setdefault(cpu, (cand, via))
        if not hits:
            search.tried.append(f"ld.so.cache: no entry for {search.name}")

    def musl_sys_path(self, executable: ElfInfo) -> tuple[tuple[str, ...], str]:
        """musl's system path: PREFIX/etc/ld-musl-$ARCH.path (PREFIX = the loader's grandparent
        directory, "" for /lib/ld-musl-*.so.1), else /lib:/usr/local/lib:/usr/lib (ldso/dynlink.c load_library)."""
        interp = executable.interp or ""
        key = interp
        if key not in self._musl_path:
            m = re.match(r"^ld-musl-([^/]+)\.so\.1$", posixpath.basename(interp))
            arch = m.group(1) if m else ""
            # dynlink.c: the prefix is the loader's name up to its second-to-last '/'
            prefix = posixpath.dirname(posixpath.dirname(interp)) if interp.startswith("/") else ""
            prefix = "" if prefix == "/" else prefix
            conf = normpath(f"{prefix}/etc/ld-musl-{arch}.path") if arch else ""
            result: tuple[tuple[str, ...], str] = (MUSL_DEFAULT_PATH, "musl default path")
            if conf and self.fs.is_file(conf):
                try:
                    text = self.fs.read_text(conf)
                    result = (tuple(p for p in re.split("[:\n]", text) if p), conf)
                except AnalysisError as exc:
                    log.debug("%s", exc)
            self._musl_path[key] = result
        return self._musl_path[key]

    def _resolve_musl(
        self, name: str, requester: ElfInfo, chain: Sequence[ElfInfo], executable: ElfInfo
    ) -> Resolution:
        if _MUSL_RESERVED.match(name) and executable.interp:
            # "Catch and block attempts to reload the implementation itself" (dynlink.c)
            interp = normpath(executable.interp)
            return Resolution(name, interp, (), "musl libc (the dynamic loader itself)")
        search = _Search(name, 0)
        llp = self.env("LD_LIBRARY_PATH")
        if llp:
            dirs = [self.expand(e, executable, True) for e in re.split("[:\n]", llp) if e]
            self._try_dirs(search, dirs, requester, "LD_LIBRARY_PATH", ())
        for obj in [requester, *chain]:
            if search.done:
                break
            raw = obj.runpath or obj.rpath
            joined = ":".join(raw)
            if re.sub(r"\$\{ORIGIN\}|\$ORIGIN", "", joined).find("$") >= 0:
                search.tried.append(f"rpath of {obj.path} ignored: unsupported $ token")
                continue
            dirs = [self.expand(e, obj, obj is executable) for e in raw if e]
            self._try_dirs(search, dirs, requester, f"rpath of {obj.path}", ())
        if not search.done:
            sys_dirs, origin = self.musl_sys_path(executable)
            dirs = [self.physical_dir(posixpath.join(self.workdir, d)) for d in sys_dirs]
            self._try_dirs(search, dirs, requester, origin, ())
        return search.result()


# ---------------------------------------------------------------------------------------------
# The analyzer
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedObject:
    """One object of an emulated process: how it was found and who loaded it."""

    info: ElfInfo
    loader: int  # index of the loading object, -1 for the executable


@dataclass
class _Process:
    """The emulated process of one executable: loaded objects and how to find them by name."""

    objects: list[LoadedObject]
    by_name: dict[str, int] = field(default_factory=dict)
    by_real: dict[str, int] = field(default_factory=dict)


def _names(obj: ElfInfo, as_name: str) -> set[str]:
    names = {as_name, obj.path}
    if obj.soname:
        names.add(obj.soname)
    return names


class ElfAnalyzer(Analyzer):
    """PT_INTERP and the DT_NEEDED closure of an ELF object, found as its loader would."""

    name = "elf"

    def __init__(self, ctx: AnalysisContext) -> None:
        super().__init__(ctx)
        self.resolver: LibraryResolver = ctx.cache.setdefault(
            "ldso.resolver",
            LibraryResolver(ctx.fs, ctx.config, ctx.cache.setdefault("elf.info", {})),
        )
        self.tried: dict[tuple[str, str], tuple[str, ...]] = ctx.cache.setdefault("ldso.tried", {})
        # Objects already analyzed as part of some executable's closure: their needs were
        # resolved with the right RPATH chain; analyzing them alone would lose that chain.
        self.covered: set[str] = ctx.cache.setdefault("ldso.covered", set())

    def wants(self, entry: FileEntry) -> bool:
        if entry.kind not in (EntryKind.FILE, EntryKind.HARDLINK):
            return False
        try:
            return self.ctx.fs.read(entry.path, 4) == ELF_MAGIC
        except AnalysisError:
            return False

    def analyze(self, entry: FileEntry) -> Iterator[Edge | Unknown]:
        path = entry.path
        if path in self.covered:
            return
        try:
            root = elf_info(self.ctx, path)
        except AnalysisError as exc:
            yield Unknown(path, str(exc))
            return
        if root.etype not in ("EXEC", "DYN"):
            return
        if root.interp is not None:
            interp = normpath(root.interp)
            if self.ctx.fs.exists(interp):
                yield Edge(path, interp, "interpreter", "PT_INTERP")
            else:
                yield Unknown(path, f"PT_INTERP {root.interp}: not in the image")
        if root.is_static or root.is_static_pie or not root.needed:
            return
        yield from self._closure(root)
        if self.resolver.cache_error and not self.ctx.cache.get("ldso.cache_error_reported"):
            self.ctx.cache["ldso.cache_error_reported"] = True
            yield Unknown(LD_SO_CACHE, f"{self.resolver.cache_error}; ld.so.conf used instead")

    def _preloads(self, root: ElfInfo) -> list[tuple[str, str]]:
        """(source, name) of objects preloaded into every process of this executable: the image
        Env's LD_PRELOAD (glibc elf/rtld.c and musl: separated by whitespace or ':'), then,
        for glibc only, /etc/ld.so.preload ('#' comments, whitespace or ':' separated)."""
        out: list[tuple[str, str]] = []
        env = self.ctx.config.env_dict.get("LD_PRELOAD", "")
        out += [("LD_PRELOAD", n) for n in re.split(r"[\s:]+", env) if n]
        if root.libc != "musl" and self.ctx.fs.is_file("/etc/ld.so.preload"):
            try:
                text = self.ctx.fs.read_text("/etc/ld.so.preload")
            except AnalysisError as exc:
                log.debug("%s", exc)
                text = ""
            for line in text.splitlines():
                line = line.split("#", 1)[0]
                out += [("/etc/ld.so.preload", n) for n in re.split(r"[\s:]+", line) if n]
        return out

    def _closure(self, root: ElfInfo) -> Iterator[Edge | Unknown]:
        """Breadth-first like glibc elf/dl-deps.c `_dl_map_object_deps` (musl's load_deps is
        breadth-first too): the executable, then its preloads, then their DT_NEEDED level by
        level. A name matching an already loaded object (its soname, the name it was loaded as,
        or its path) reuses it; so does a second path to the same real file (dev/ino check)."""
        fs = self.ctx.fs
        proc = _Process([LoadedObject(root, -1)])
        proc.by_name = {n: 0 for n in _names(root, root.path)}
        proc.by_real = {fs.realpath(root.path): 0}
        if root.interp is not None and fs.exists(root.interp):
            # rtld is loaded before any dependency: libc's DT_NEEDED ld-linux-x86-64.so.2 is it.
            interp = normpath(root.interp)
            try:
                iinfo: ElfInfo | None = self.resolver.elf(interp)
            except AnalysisError:
                iinfo = None
            if iinfo is not None:
                proc.objects.append(LoadedObject(iinfo, 0))
                for n in _names(iinfo, interp):
                    proc.by_name.setdefault(n, 1)
                proc.by_real.setdefault(fs.realpath(interp), 1)
        queue: deque[int] = deque([0])
        if root.interp is not None:
            for source, name in self._preloads(root):
                new = yield from self._load(proc, 0, name, source)
                if new is not None:
                    queue.append(new)
        while queue:
            idx = queue.popleft()
            for name in proc.objects[idx].info.needed:
                if len(proc.objects) >= MAX_CLOSURE:
                    yield Unknown(
                        root.path, f"library closure larger than {MAX_CLOSURE} objects; truncated"
                    )
                    return
                new = yield from self._load(proc, idx, name, "DT_NEEDED")
                if new is not None:
                    queue.append(new)

    def _load(
        self, proc: _Process, idx: int, name: str, label: str
    ) -> Generator[Edge | Unknown, None, int | None]:
        """Map `name` for object `idx` (glibc `_dl_map_object`); returns the index of a newly
        loaded object (to be scanned), None when it was already loaded or not found."""
        fs = self.ctx.fs
        obj = proc.objects[idx]
        src = obj.info.path
        if name in proc.by_name:
            dst = proc.objects[proc.by_name[name]].info.path
            yield Edge(src, dst, "needed", f"{label} {name} via already loaded")
            return None
        chain: list[ElfInfo] = []
        up = obj.loader
        while up >= 0:
            chain.append(proc.objects[up].info)
            up = proc.objects[up].loader
        res = self.resolver.resolve(name, obj.info, chain)
        self.tried[(src, name)] = res.tried
        if res.path is None:
            shown = ", ".join(res.tried[:UNKNOWN_TRIED_SHOWN])
            extra = len(res.tried) - UNKNOWN_TRIED_SHOWN
            more = f", … {extra} more" if extra > 0 else ""
            yield Unknown(src, f"{label} {name}: not found (tried {shown or 'nothing'}{more})")
            return None
        yield Edge(src, res.path, "needed", f"{label} {name} via {res.via}")
        for link in res.links:
            yield Edge(src, link, "symlink", f"{label} {name}: on the search path")
        for alt in res.alternatives:
            yield Edge(src, alt, "needed", f"{label} {name} via {res.via} (hwcaps alternative)")
        real = fs.realpath(res.path)
        if real in proc.by_real:
            proc.by_name[name] = proc.by_real[real]
            return None
        try:
            info = self.resolver.elf(res.path)
        except AnalysisError as exc:  # accepted by _check, so this is rare
            yield Unknown(res.path, str(exc))
            return None
        proc.objects.append(LoadedObject(info, idx))
        new = len(proc.objects) - 1
        for n in _names(info, name):
            proc.by_name.setdefault(n, new)
        proc.by_real[real] = new
        self.covered.add(res.path)
        self.covered.add(real)
        return new
