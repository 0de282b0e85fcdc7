"""Can this syscall set run on a unikernel / gVisor? A name-level compatibility check.

The support tables are data (rules/unikernels/<target>.toml, each extracted from the target's
own sources and naming repo, path and commit). Every syscall of the app is put in one class:

* supported    - the target implements it (fully or partially);
* faked        - the target registers it but returns 0 without doing anything (Nanos
                 `syscall_ignore`, gVisor "Stub implementation");
* stubbable    - not implemented (the target returns ENOSYS) but Loupe found apps keep working
                 when it returns ENOSYS ("stub" or "both" in loupedb dyn.csv), or glibc falls
                 back to an older syscall the target implements (LIBC_FALLBACKS);
* fakeable     - not implemented, and Loupe found apps work only when it returns 0 ("fake"):
                 the target needs a one-line stub;
* needed       - not implemented and no evidence it can be skipped;
* unknown      - the target's table is incomplete (`complete = false`) and does not list it.

Loupe evidence (Lefeuvre et al., ASPLOS'24; the unikraft/loupedb data set): counts are of the 122 app/workload runs in which
the syscall was used and the app still worked when it was stubbed/faked. We use the syscalls it
found most often safe; a name-level check ignores flags and partial semantics, so the verdict is
a prediction, not a guarantee.

Verdict: `blocked` when a needed syscall is missing (or a single-process target sees
fork/vfork/execve); `needs-work` when only fakeable/unknown ones are missing; else `likely-runs`.
The names must be what the app does *after it starts*: a trace's `started_syscalls()`, where
the execve that starts the app is not counted (Loupe, too, leaves out its harness's exec).

A static syscall set is an upper bound (`upper_bound=True`): a missing syscall there only *may*
be called, so where a trace would say `blocked` the verdict is `needs-trace`: run the app
traced to learn whether it calls it. Each blocking or risky syscall is also a `Blocker` naming
the files that need it (`users`: syscall → the programs a trace saw call it, or the ELF files
whose code can).
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slim.errors import RuleError
from slim.rules import rules_dir
from slim.syscalls.table import all_names

log = logging.getLogger(__name__)

TARGETS = ("gvisor", "nanos", "osv", "unikraft")

# Loupe (loupedb, §A.8): syscalls most often harmless when stubbed (-ENOSYS) and/or faked (0).
LOUPE_BOTH = frozenset({
    "set_robust_list", "brk", "set_tid_address", "munmap", "rseq", "access", "getrandom",
    "exit_group", "getpid", "rt_sigprocmask", "prlimit64", "madvise", "sysinfo",
    "sched_getaffinity",
})
LOUPE_FAKE_ONLY = frozenset({
    "close", "futex", "mprotect", "getcwd", "rt_sigaction", "fcntl", "setsockopt",
})
LOUPE_STUB_ONLY = frozenset({"prlimit64", "set_tid_address", "brk"})

# Newer syscalls glibc tries first and, on ENOSYS, replaces by an older one (so an unimplemented
# one is harmless where the older one is implemented): glibc sysdeps/unix/sysv/linux/
# clone-internal.c (`__clone_internal`: clone3, then clone) and faccessat.c (faccessat2, then
# faccessat). Docker's default profile relies on the first: it returns ENOSYS for clone3.
LIBC_FALLBACKS = {"clone3": "clone", "faccessat2": "faccessat"}

# Targets that run a single process: a program that forks or execs others cannot run there
# (Nanos registers no fork/vfork/execve handler; OSv and Unikraft elfloader are single-process).
SINGLE_PROCESS = {"nanos": True, "osv": True, "unikraft": True, "gvisor": False}
PROCESS_SYSCALLS = ("execve", "execveat", "fork", "vfork")


@dataclass(frozen=True)
class SupportTable:
    """One target's parsed support table."""

    target: str
    supported: frozenset[str]
    faked: frozenset[str]
    complete: bool
    source: str


VERDICTS = ("likely-runs", "needs-work", "needs-trace", "blocked")  # from best to worst


def worst(*verdicts: str) -> str:
    """The worst of `verdicts` in VERDICTS order."""
    return max(verdicts, key=VERDICTS.index)


@dataclass(frozen=True)
class Blocker:
    """One syscall or feature that keeps the app from running unchanged on a target.

    `verdict` is what it costs (blocked, needs-trace or needs-work), `files` the image files
    that need it (empty when unknown)."""

    name: str  # a syscall name, or a feature ("runs other programs", "PIE")
    verdict: str
    why: str
    files: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "verdict": self.verdict, "why": self.why,
                "files": list(self.files)}


@dataclass(frozen=True)
class CompatReport:
    """Per-target classification of a syscall set and the resulting verdict."""

    target: str
    verdict: str  # likely-runs | needs-work | blocked
    supported: list[str] = field(default_factory=list)
    faked: list[str] = field(default_factory=list)
    stubbable: list[str] = field(default_factory=list)
    fakeable: list[str] = field(default_factory=list)
    needed: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    source: str = ""
    blockers: list[Blocker] = field(default_factory=list)
    upper_bound: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "verdict": self.verdict, "supported": self.supported,
            "faked": self.faked, "stubbable": self.stubbable, "fakeable": self.fakeable,
            "needed": self.needed, "unknown": self.unknown, "reasons": self.reasons,
            "source": self.source, "upper_bound": self.upper_bound,
            "blockers": [b.to_dict() for b in self.blockers],
        }


def _names(doc: dict[str, Any], section: str, path: Path) -> set[str]:
    sec = doc.get(section, {})
    names = sec.get("names", []) if isinstance(sec, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RuleError(f"{path}: [{section}] names must be a list of strings")
    return set(names)


def load_table(target: str, directory: Path | None = None) -> SupportTable:
    """Parse rules/unikernels/<target>.toml. Raises RuleError for unknown targets or bad files."""
    if target not in TARGETS:
        raise RuleError(f"{target}: unknown target (choose from {', '.join(TARGETS)})")
    path = (directory or rules_dir() / "unikernels") / f"{target}.toml"
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RuleError(f"{path}: cannot read support table: {exc}") from exc
    supported = _names(doc, "supported", path) | _names(doc, "partial", path)
    faked = _names(doc, "stubbed", path)
    unknown = sorted((supported | faked) - set(all_names()))
    if unknown:
        raise RuleError(f"{path}: not x86_64 syscall names: {', '.join(unknown)}")
    source = f"{doc.get('source_repo', '?')}:{doc.get('source_path', '?')}"
    if doc.get("source_commit"):
        source += f"@{doc['source_commit']}"
    return SupportTable(target, frozenset(supported - faked), frozenset(faked),
                        bool(doc.get("complete", True)), source)


def _classify(names: Iterable[str], table: SupportTable) -> dict[str, list[str]]:
    classes: dict[str, list[str]] = {k: [] for k in
                                     ("supported", "faked", "stubbable", "fakeable", "needed",
                                      "unknown")}
    for name in sorted(set(names)):
        if name in table.supported:
            classes["supported"].append(name)
        elif name in table.faked:
            classes["faked"].append(name)
        elif not table.complete:
            classes["unknown"].append(name)
        elif name in LOUPE_BOTH or name in LOUPE_STUB_ONLY or (
                LIBC_FALLBACKS.get(name) in table.supported | table.faked):
            classes["stubbable"].append(name)
        elif name in LOUPE_FAKE_ONLY:
            classes["fakeable"].append(name)
        else:
            classes["needed"].append(name)
    return classes


def _blockers(classes: dict[str, list[str]], target: str, spawn: list[str],
              users: Mapping[str, Sequence[str]], upper_bound: bool) -> list[Blocker]:
    """One Blocker per syscall that stops the app (or may, for an upper bound) or needs work."""
    hard = "needs-trace" if upper_bound else "blocked"
    may = "may call" if upper_bound else "calls"
    out: list[Blocker] = []
    for name in spawn:
        out.append(Blocker(name, hard, f"{target} runs a single process; the app {may} {name}",
                           tuple(users.get(name, ()))))
    for name in classes["needed"]:
        if name not in spawn:
            out.append(Blocker(name, hard, f"not implemented on {target}, and not known to be "
                               "skippable", tuple(users.get(name, ()))))
    for name in classes["fakeable"]:
        out.append(Blocker(name, "needs-work", f"not implemented on {target}; apps work only "
                           "when it returns 0 (Loupe: fake-only), so it needs a stub",
                           tuple(users.get(name, ()))))
    for name in classes["unknown"]:
        out.append(Blocker(name, "needs-work", f"not in {target}'s incomplete table",
                           tuple(users.get(name, ()))))
    for name in classes["faked"]:
        if name not in LOUPE_BOTH | LOUPE_FAKE_ONLY:
            out.append(Blocker(name, "needs-work", f"{target} returns 0 without doing anything; "
                               "check the app does not depend on its effect",
                               tuple(users.get(name, ()))))
    return out


def check_compat(names: Iterable[str], target: str, *,
                 users: Mapping[str, Sequence[str]] | None = None,
                 upper_bound: bool = False) -> CompatReport:
    """Classify `names` (what the app does after it starts) against `target`'s support table
    and give a verdict with reasons and blockers. `users` maps a syscall to the files that
    need it; `upper_bound`: the names are a static upper bound, not a trace."""
    table = load_table(target)
    wanted = sorted(set(names))
    classes = _classify(wanted, table)
    spawn = [n for n in PROCESS_SYSCALLS if n in wanted] if SINGLE_PROCESS.get(target) else []
    blockers = _blockers(classes, target, spawn, users or {}, upper_bound)

    reasons: list[str] = []
    if spawn:
        reasons.append(f"{target} runs a single process; the app "
                       f"{'may call' if upper_bound else 'calls'} {', '.join(spawn)}")
    if classes["needed"]:
        reasons.append(f"{len(classes['needed'])} syscalls not implemented and not known to be "
                       f"skippable: {', '.join(classes['needed'])}")
    if classes["fakeable"]:
        reasons.append(f"{len(classes['fakeable'])} syscalls would need a stub returning 0 "
                       f"(Loupe: fake-only): {', '.join(classes['fakeable'])}")
    if classes["unknown"]:
        reasons.append(f"{len(classes['unknown'])} syscalls not in {target}'s incomplete table "
                       f"(unknown support): {', '.join(classes['unknown'])}")
    risky_fakes = [n for n in classes["faked"] if n not in LOUPE_BOTH | LOUPE_FAKE_ONLY]
    if risky_fakes:
        reasons.append(f"{target} fakes (returns 0 for) {', '.join(risky_fakes)}; check the app "
                       "does not depend on their effect")
    if classes["stubbable"]:
        reasons.append(f"{len(classes['stubbable'])} unimplemented syscalls return ENOSYS, which "
                       f"Loupe found harmless or libc falls back from: {', '.join(classes['stubbable'])}")
    if upper_bound and any(b.verdict == "needs-trace" for b in blockers):
        reasons.append("these come from a static upper bound (code the app may never run); "
                       "trace the app (--trace) to learn which it really calls")
    verdict = worst("likely-runs", *(b.verdict for b in blockers))
    return CompatReport(target=target, verdict=verdict, reasons=reasons, source=table.source,
                        blockers=blockers, upper_bound=upper_bound, **classes)


def check_all(names: Iterable[str]) -> dict[str, CompatReport]:
    """check_compat for every known target."""
    wanted = sorted(set(names))
    return {t: check_compat(wanted, t) for t in TARGETS}
