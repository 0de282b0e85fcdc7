"""Differential verification: does the minimal image behave as the original did?

For every probe of the original's run (the concrete probes an `auto:` probe resolved into, and
the run itself when the image runs to completion) the minimal image's observation is compared
with the original's on:

* the exit code (runs, `cmd:` and `exec:` probes);
* standard output and standard error, normalized (NORMALIZATION below);
* HTTP: the status, the headers a client acts on (content-type, content-length unless chunked,
  content-encoding, location) and the body, normalized;
* TCP: the reply, normalized;

and, over the whole run, **missing-file events**: a path the minimal image's run failed to
open, execute or stat with ENOENT or ENOTDIR that the original's run found. Such an event is a
difference even when every output matches: the app took another path than it did in the
original, and a deeper probe may see what this one did not.

What "verified" cannot promise: behaviour on paths no probe exercised. A route no probe requests,
a command-line option no `cmd:` probe passes, a file read only on some inputs — none of these
were compared. Probes are how a user widens what is compared (README, "Probes").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from slim.tracers.base import RunResult
from slim.tracers.probes import Observation

# kernel filesystems and the runner's own mounts: not image files
RUNTIME_PREFIXES = ("/proc/", "/sys/", "/dev/", "/.slim-")
MISSING_ERRNOS = frozenset({"ENOENT", "ENOTDIR"})

NORMALIZATION = """\
Outputs are compared after normalization, because two runs of the very same image differ in:
  * numbers (pids, clocks, uptimes, counters, ports, sizes in log lines): every run of digits
    becomes 0;
  * long hexadecimal ids (container ids, request ids, hashes of random data): every run of 12 or
    more hex digits becomes <hex>;
  * the container's host name (slim, or the docker container id): it becomes <hostname>.
HTTP bodies and TCP replies are normalized the same way; HTTP status codes, exit codes and the
compared headers (except content-length, compared as a number) are compared exactly."""

_NUMBER = re.compile(rb"[0-9]+")
_HEX = re.compile(rb"\b[0-9a-fA-F]{12,}\b")


def normalize(data: bytes, hostnames: Iterable[str] = ()) -> bytes:
    """`data` with what differs between two runs of one image replaced (NORMALIZATION)."""
    for name in sorted({h for h in hostnames if h}, key=len, reverse=True):
        data = data.replace(name.encode(), b"<hostname>")
    data = _HEX.sub(b"<hex>", data)
    return _NUMBER.sub(b"0", data)


@dataclass(frozen=True)
class Comparison:
    """What was compared for one probe, and the differences found (empty: the same)."""

    spec: str
    compared: str
    differences: tuple[str, ...] = ()

    @property
    def same(self) -> bool:
        return not self.differences


@dataclass(frozen=True)
class Verification:
    """The outcome of comparing the minimal image's run with the original's."""

    comparisons: tuple[Comparison, ...]
    missing_files: tuple[str, ...] = ()  # paths the original found and the minimal run did not
    failures: tuple[str, ...] = field(default=())  # probes that failed on the minimal image

    @property
    def differences(self) -> list[str]:
        out = list(self.failures)
        for c in self.comparisons:
            out += [f"{c.spec}: {d}" for d in c.differences]
        out += [f"missing file: {p} (the original found it)" for p in self.missing_files]
        return out

    @property
    def verified(self) -> bool:
        return not self.differences

    def summary(self) -> list[str]:
        """One line per probe saying what was compared, then the missing-file count."""
        lines = [f"{c.spec}: {c.compared}" + ("" if c.same else f" — DIFFERS: {'; '.join(c.differences)}")
                 for c in self.comparisons]
        lines.append(f"{len(self.missing_files)} missing-file events"
                     + (f" (first: {self.missing_files[0]})" if self.missing_files else ""))
        return lines


def _size(n: int) -> str:
    return f"{n} B"


def _compare_text(what: str, a: bytes, b: bytes, hosts: Iterable[str]) -> tuple[str, str]:
    """(what was compared, difference or "")."""
    na, nb = normalize(a, hosts), normalize(b, hosts)
    if na == nb:
        return f"{what} {_size(len(a))} identical", ""
    return f"{what} {_size(len(a))}", f"{what} differs ({len(a)} bytes became {len(b)}){_first_change(a, b, na, nb)}"


def _first_change(a: bytes, b: bytes, na: bytes, nb: bytes) -> str:
    """': the first line that differs' (as the minimal image printed it), or ''."""
    old, new, raw = na.splitlines(), nb.splitlines(), b.splitlines()
    for i, line in enumerate(new):
        if i >= len(old) or old[i] != line:
            text = raw[i].decode("utf-8", "replace").strip() if i < len(raw) else ""
            return f": now {text[:200]!r}" if text else ""
    return ": lines missing at the end" if len(old) > len(new) else ""


def compare_observation(a: Observation, b: Observation, hosts: Iterable[str] = ()) -> Comparison:
    """Compare the original's observation `a` with the minimal image's `b`."""
    parts: list[str] = []
    diffs: list[str] = []
    if a.status is not None or b.status is not None:
        parts.append(f"HTTP {a.status}")
        if a.status != b.status:
            diffs.append(f"HTTP status {a.status} became {b.status}")
        ha, hb = dict(a.headers), dict(b.headers)
        for name in sorted(set(ha) | set(hb)):
            va, vb = ha.get(name), hb.get(name)
            if name != "content-length" and va is not None and vb is not None:
                va, vb = normalize(va.encode(), hosts).decode(), normalize(vb.encode(), hosts).decode()
            if va != vb:
                diffs.append(f"header {name}: {ha.get(name)!r} became {hb.get(name)!r}")
        if ha:
            parts.append(", ".join(f"{k} {v}" for k, v in sorted(ha.items())))
        what = "body"
    else:
        what = "output" if a.exit_code is not None or a.stderr else "reply"
    if a.exit_code is not None or b.exit_code is not None:
        parts.append(f"exit code {a.exit_code}")
        if a.exit_code != b.exit_code:
            diffs.append(f"exit code {a.exit_code} became {b.exit_code}")
    text, diff = _compare_text(what, a.body, b.body, hosts)
    parts.append(text)
    diffs += [diff] if diff else []
    if a.stderr or b.stderr:
        text, diff = _compare_text("stderr", a.stderr, b.stderr, hosts)
        parts.append(text)
        diffs += [diff] if diff else []
    return Comparison(a.spec, ", ".join(parts), tuple(diffs))


def missing_files(original: RunResult, minimal: RunResult) -> list[str]:
    """Image paths the original's run found that the minimal run looked up and missed."""
    out = []
    for path, acc in minimal.trace.paths.items():
        if acc.found or not acc.errors & MISSING_ERRNOS or path.startswith(RUNTIME_PREFIXES):
            continue
        orig = original.trace.paths.get(path)
        if orig is not None and orig.found:
            out.append(path)
    return sorted(out)


def verify(original: RunResult, minimal: RunResult, hostnames: Iterable[str] = ("slim",)) -> Verification:
    """Compare two runs of the same probes (the minimal one ran `original.resolved`)."""
    hosts = tuple(hostnames)
    old = {o.spec: o for o in original.observations}
    new = {o.spec: o for o in minimal.observations}
    comparisons = []
    for spec in sorted(set(old) | set(new)):
        if spec not in new:
            comparisons.append(Comparison(spec, "observed in the original only", ("not observed in the minimal image's run",)))
        elif spec not in old:
            comparisons.append(Comparison(spec, "observed in the minimal image only", ("not observed in the original's run",)))
        else:
            comparisons.append(compare_observation(old[spec], new[spec], hosts))
    failures = tuple(f"{p.spec}: {p.detail}" for p in minimal.probes if not p.passed)
    return Verification(tuple(comparisons), tuple(missing_files(original, minimal)), failures)


__all__ = ["NORMALIZATION", "Comparison", "Verification", "compare_observation", "missing_files",
           "normalize", "verify"]
