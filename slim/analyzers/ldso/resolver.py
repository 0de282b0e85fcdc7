"""The library resolver: which file each DT_NEEDED name becomes inside the image.

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
import logging
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from slim.analyzers.ldso.cache import (
    CACHE_FLAGS,
    DL_CACHE_HWCAP_EXTENSION,
    FLAG_ELF_LIBC6,
    FLAG_TYPE_MASK,
    LD_SO_CACHE,
    CacheEntry,
    parse_ld_so_cache,
)
from slim.analyzers.ldso.conf import parse_ld_so_conf
from slim.elf import ELF_MAGIC, ElfInfo, read_elf
from slim.errors import AnalysisError
from slim.fs.rootfs import RootFS
from slim.model import EntryKind, ImageConfig, normpath

log = logging.getLogger(__name__)

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

    def __init__(self, fs: RootFS, config: ImageConfig) -> None:
        self.fs = fs
        self.config = config
        self.workdir = normpath(config.workdir or "/")
        self._elf_cache: dict[str, ElfInfo | AnalysisError] = {}
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
        want = CACHE_FLAGS.get((requester.machine, requester.elfclass))
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
