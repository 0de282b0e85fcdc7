"""Docker/OCI seccomp profile (an allow-list) from a syscall set.

Emits the moby *source* format that `docker run --security-opt seccomp=FILE` accepts
(moby/profiles:seccomp/seccomp.go `Seccomp`; expansion in seccomp_linux.go `setupSeccomp`):

    {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
     "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                  "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
     "syscalls": [{"names": [...sorted...], "action": "SCMP_ACT_ALLOW"}]}

defaultErrnoRet 1 (EPERM) mirrors Docker's default profile. The allowed set is the app's
syscalls plus the runtime baseline in rules/seccomp-baseline.toml: what the container runtime
(runc, crun; one table each, with the versions it was checked on) itself calls after it has
installed the filter and before it execs the app. By default every runtime's baseline is
allowed, so one profile starts under any of them; `runtimes` narrows it.
"""

from __future__ import annotations

import json
import logging
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slim.errors import EmitError, RuleError
from slim.rules import rule_file
from slim.syscalls.table import all_names

log = logging.getLogger(__name__)

BASELINE_FILE = "seccomp-baseline.toml"

# JSON Schema of the profile we emit (the subset of moby's Seccomp type we use; field names
# from moby/profiles:seccomp/seccomp.go and the OCI runtime-spec enumerations).
PROFILE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["defaultAction", "syscalls"],
    "additionalProperties": False,
    "properties": {
        "defaultAction": {"enum": ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                                   "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE",
                                   "SCMP_ACT_ALLOW", "SCMP_ACT_LOG"]},
        "defaultErrnoRet": {"type": "integer", "minimum": 0},
        "archMap": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["architecture"],
                "additionalProperties": False,
                "properties": {
                    "architecture": {"type": "string", "pattern": "^SCMP_ARCH_[A-Z0-9_]+$"},
                    "subArchitectures": {
                        "type": "array",
                        "items": {"type": "string", "pattern": "^SCMP_ARCH_[A-Z0-9_]+$"},
                    },
                },
            },
        },
        "syscalls": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["names", "action"],
                "additionalProperties": False,
                "properties": {
                    "names": {"type": "array", "items": {"type": "string",
                                                         "pattern": "^[a-z0-9_]+$"},
                              "minItems": 1, "uniqueItems": True},
                    "action": {"enum": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_LOG"]},
                    "errnoRet": {"type": "integer"},
                    "comment": {"type": "string"},
                },
            },
        },
    },
}


@dataclass(frozen=True)
class RuntimeBaseline:
    """One runtime's baseline: the release series it was checked on and {syscall: why}."""

    name: str
    versions: str
    checked: str
    syscalls: dict[str, str]


def load_runtimes(path: Path | None = None) -> dict[str, RuntimeBaseline]:
    """Every runtime baseline of the file, by runtime name. Raises RuleError naming the file
    and the entry when it is invalid."""
    p = path or rule_file(BASELINE_FILE)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RuleError(f"{p}: cannot read seccomp baseline: {exc}") from exc
    runtimes = doc.get("runtime")
    if not isinstance(runtimes, dict) or not runtimes:
        raise RuleError(f"{p}: needs [runtime.NAME] tables (runc, crun …)")
    known = set(all_names())
    out: dict[str, RuntimeBaseline] = {}
    for name, table in sorted(runtimes.items()):
        calls = table.get("syscalls") if isinstance(table, dict) else None
        if not isinstance(calls, dict) or not all(isinstance(v, str) for v in calls.values()):
            raise RuleError(f"{p}: [runtime.{name}.syscalls] must map each syscall name to a reason string")
        unknown = sorted(set(calls) - known)
        if unknown:
            raise RuleError(f"{p}: [runtime.{name}.syscalls]: unknown x86_64 syscalls: {', '.join(unknown)}")
        out[name] = RuntimeBaseline(name, str(table.get("versions", "")),
                                    str(table.get("checked", "")), dict(sorted(calls.items())))
    return out


def load_baseline(path: Path | None = None, runtimes: Iterable[str] | None = None) -> dict[str, str]:
    """The runtime baseline: {syscall: why} over `runtimes` (default: all of them). Raises
    RuleError when the file is invalid or a runtime is unknown."""
    tables = load_runtimes(path)
    wanted = list(runtimes) if runtimes is not None else list(tables)
    missing = [r for r in wanted if r not in tables]
    if missing:
        raise RuleError(f"{missing[0]}: no seccomp baseline for this runtime "
                        f"(choose from {', '.join(tables)})")
    out: dict[str, str] = {}
    for name in wanted:
        for call, why in tables[name].syscalls.items():
            out[call] = f"{out[call]}; {name}: {why}" if call in out else f"{name}: {why}"
    return dict(sorted(out.items()))


def baselines(runtimes: Iterable[str] | None = None) -> list[RuntimeBaseline]:
    """The baselines of `runtimes` (default all), for saying which a profile allows."""
    tables = load_runtimes()
    return [tables[r] for r in (runtimes if runtimes is not None else tables) if r in tables]


def build_seccomp_profile(names: Iterable[str], *, baseline: bool = True,
                          runtimes: Iterable[str] | None = None) -> dict[str, Any]:
    """A seccomp profile allowing `names` (plus the baseline of `runtimes`, default all);
    everything else EPERM. Raises RuleError for an unknown runtime.

    Names that are not x86_64 syscalls are dropped with a log line (they cannot be allowed).
    """
    known = set(all_names())
    wanted = set(names)
    bad = sorted(wanted - known)
    if bad:
        log.warning("not x86_64 syscalls, left out of the profile: %s", ", ".join(bad))
    allowed = (wanted & known) | (set(load_baseline(runtimes=runtimes)) if baseline else set())
    if not allowed:
        raise EmitError("seccomp profile: empty syscall set")
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                     "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
        "syscalls": [{"names": sorted(allowed), "action": "SCMP_ACT_ALLOW",
                      "comment": "generated by slim: app syscalls + runtime baseline ("
                                 + ", ".join(sorted(runtimes) if runtimes is not None
                                             else load_runtimes()) + ")"}],
    }


def dumps_profile(profile: dict[str, Any]) -> str:
    """Deterministic JSON text of a profile (sorted keys, 2-space indent, final newline)."""
    return json.dumps(profile, indent=2, sort_keys=True) + "\n"


def write_profile(profile: dict[str, Any], path: str) -> None:
    """Write a profile to `path`. Raises EmitError when it cannot be written."""
    try:
        Path(path).write_text(dumps_profile(profile), encoding="utf-8")
    except OSError as exc:
        raise EmitError(f"{path}: cannot write seccomp profile: {exc}") from exc
