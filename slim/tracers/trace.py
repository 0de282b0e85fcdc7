"""Trace: what one traced run of an image did, as plain data with a JSON round-trip.

A Trace is what the strace parser produces and what the pipeline merges into the graph:
per path (as the app saw it inside the sandbox, which is the image path), whether it was
opened (ok or with which errno), executed, stat'ed or readlink'ed; every syscall name with
its count; and per process the programs it executed. Everything serialises sorted, so the
same run gives the same JSON bytes (`--save-trace FILE`, `--trace-file FILE`).

What the app does *after it starts* is kept apart, per program (the image path a process was
running): `programs` counts the syscalls each program made, `children` the processes (not
threads) each started, `launches` the programs each executed. The app's own first execve, the
one that starts it, belongs to no program, so it is in `syscalls` (a seccomp profile must allow
it) and in none of these. Traces saved before these fields existed read back with them empty.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from slim.errors import TraceError

TRACE_FORMAT = 1


@dataclass
class PathAccess:
    """How the traced app touched one path. `errors` holds errno names of failed attempts."""

    opened: bool = False  # at least one open succeeded
    executed: bool = False  # at least one execve succeeded
    stated: bool = False  # stat family / access succeeded at least once
    readlinked: bool = False  # readlink succeeded
    errors: set[str] = field(default_factory=set)  # e.g. {"ENOENT"}

    @property
    def found(self) -> bool:
        """The path existed for the app (some access succeeded)."""
        return self.opened or self.executed or self.stated or self.readlinked

    def to_json(self) -> dict[str, Any]:
        return {
            "opened": self.opened,
            "executed": self.executed,
            "stated": self.stated,
            "readlinked": self.readlinked,
            "errors": sorted(self.errors),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> PathAccess:
        return cls(
            opened=bool(doc.get("opened")),
            executed=bool(doc.get("executed")),
            stated=bool(doc.get("stated")),
            readlinked=bool(doc.get("readlinked")),
            errors={str(e) for e in doc.get("errors", [])},
        )


@dataclass
class Trace:
    """Files, programs and syscalls one traced run used (paths are image paths)."""

    paths: dict[str, PathAccess] = field(default_factory=dict)
    syscalls: dict[str, int] = field(default_factory=dict)
    execs: dict[int, list[str]] = field(default_factory=dict)  # pid → programs executed, in order
    programs: dict[str, dict[str, int]] = field(default_factory=dict)  # program → syscall counts
    children: dict[str, int] = field(default_factory=dict)  # program → processes it started
    launches: dict[str, list[str]] = field(default_factory=dict)  # program → programs it executed

    def access(self, path: str) -> PathAccess:
        entry = self.paths.get(path)
        if entry is None:
            entry = self.paths[path] = PathAccess()
        return entry

    def count(self, name: str, program: str | None = None) -> None:
        """Count one call of `name`; `program` is what the calling process runs (None before
        the app's first execve returned)."""
        self.syscalls[name] = self.syscalls.get(name, 0) + 1
        if program is not None:
            counts = self.programs.setdefault(program, {})
            counts[name] = counts.get(name, 0) + 1

    def merge(self, other: Trace) -> None:
        """Add another run's accesses, counts and execs (pids are kept apart by run order)."""
        for path, acc in other.paths.items():
            mine = self.access(path)
            mine.opened |= acc.opened
            mine.executed |= acc.executed
            mine.stated |= acc.stated
            mine.readlinked |= acc.readlinked
            mine.errors |= acc.errors
        for name, n in other.syscalls.items():
            self.syscalls[name] = self.syscalls.get(name, 0) + n
        for pid, progs in other.execs.items():
            self.execs.setdefault(pid, []).extend(progs)
        for prog, counts in other.programs.items():
            mine_counts = self.programs.setdefault(prog, {})
            for name, n in counts.items():
                mine_counts[name] = mine_counts.get(name, 0) + n
        for prog, n in other.children.items():
            self.children[prog] = self.children.get(prog, 0) + n
        for prog, launched in other.launches.items():
            known = self.launches.setdefault(prog, [])
            known.extend(p for p in launched if p not in known)

    # --- views the pipeline reads ---------------------------------------------------------
    @property
    def opened(self) -> list[str]:
        return sorted(p for p, a in self.paths.items() if a.opened)

    @property
    def executed(self) -> list[str]:
        return sorted(p for p, a in self.paths.items() if a.executed)

    @property
    def used(self) -> list[str]:
        """Every path some access found (opened, executed, stat'ed or readlink'ed)."""
        return sorted(p for p, a in self.paths.items() if a.found)

    @property
    def missing(self) -> list[str]:
        """Paths looked up and never found: a minimal image must keep them absent."""
        return sorted(p for p, a in self.paths.items() if not a.found and a.errors)

    @property
    def syscall_names(self) -> list[str]:
        return sorted(self.syscalls)

    def started_syscalls(self) -> dict[str, list[str]]:
        """{syscall: programs that made it} for what the app did after it started. A trace
        without per-program counts (saved by an older slim) gives every syscall with no
        program, less the one execve that started the app."""
        if self.programs:
            users: dict[str, list[str]] = {}
            for prog in sorted(self.programs):
                for name in self.programs[prog]:
                    users.setdefault(name, []).append(prog)
            return dict(sorted(users.items()))
        return {name: [] for name, n in sorted(self.syscalls.items())
                if not (name == "execve" and n <= 1)}

    # --- JSON -------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": TRACE_FORMAT,
            "paths": {p: self.paths[p].to_json() for p in sorted(self.paths)},
            "syscalls": {s: self.syscalls[s] for s in sorted(self.syscalls)},
            "execs": {str(pid): list(self.execs[pid]) for pid in sorted(self.execs)},
            "programs": {p: dict(sorted(c.items())) for p, c in sorted(self.programs.items())},
            "children": dict(sorted(self.children.items())),
            "launches": {p: sorted(v) for p, v in sorted(self.launches.items())},
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, doc: Any, what: str = "trace") -> Trace:
        """Rebuild a Trace from `to_json` output. Raises TraceError naming `what`."""
        if not isinstance(doc, dict) or doc.get("format") != TRACE_FORMAT:
            raise TraceError(f"{what}: not a slim trace (format {TRACE_FORMAT})")
        try:
            return cls(
                paths={str(p): PathAccess.from_json(a) for p, a in doc.get("paths", {}).items()},
                syscalls={str(s): int(n) for s, n in doc.get("syscalls", {}).items()},
                execs={int(pid): [str(x) for x in progs] for pid, progs in doc.get("execs", {}).items()},
                programs={str(p): {str(s): int(n) for s, n in c.items()}
                          for p, c in doc.get("programs", {}).items()},
                children={str(p): int(n) for p, n in doc.get("children", {}).items()},
                launches={str(p): [str(x) for x in v] for p, v in doc.get("launches", {}).items()},
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise TraceError(f"{what}: malformed trace: {exc}") from None

    @classmethod
    def load(cls, path: str) -> Trace:
        """Read a trace saved with `dumps`. Raises TraceError."""
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError) as exc:
            raise TraceError(f"{path}: cannot read trace: {exc}") from None
        return cls.from_json(doc, path)
