"""Budgets: size and hygiene gates read from `.slim.toml` (or `[tool.slim]` in pyproject.toml).

Like dive's CI rules (wagoodman/dive cmd/dive/cli/internal/command/ci/rule.go), the gates live
outside the analysis: they read a finished AnalysisResult and each returns a Verdict with its
status (pass / warn / fail) and the measured value next to the threshold.

Keys (all optional)::

    image = "docker-archive:build/app.tar"   # what `slim check` analyzes when no IMAGE is given
    base = "docker-archive:build/base.tar"   # what `max_growth` compares against
    max_size = "200MB"                       # squashed regular-file bytes; int bytes or units
    max_removable_percent = 30               # removable bytes / size, 0..100 (or "30%")
    min_efficiency = 0.9                     # dive's score, 0..1 (or "90%")
    max_growth = "10MB"                      # size growth against `base`; bytes/units or "5%"
    forbid_paths = ["/usr/bin/gcc*", "/root/.ssh/**"]
    forbid_packages = ["gcc*", "@shells", "@package-managers", "@compilers"]

Sizes accept decimal units (kB, MB, GB, TB: powers of 1000) and binary units (KiB, MiB, GiB, TiB:
powers of 1024), as `docker images` and `du --si` / `du -h` respectively print them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from slim.errors import RuleError
from slim.globs import GlobSet
from slim.result import AnalysisResult, Verdict
from slim.units import format_bytes
from slim.units import parse_size as parse_bytes

log = logging.getLogger(__name__)

CONFIG_NAMES = (".slim.toml", "pyproject.toml")
KEYS = (
    "image", "base", "max_size", "max_removable_percent", "min_efficiency", "max_growth",
    "forbid_paths", "forbid_packages",
)

# Package groups usable in forbid_packages as "@name": what a production image rarely needs.
PACKAGE_GROUPS: dict[str, tuple[str, ...]] = {
    "compilers": (
        "gcc", "gcc-*", "g++", "g++-*", "cpp", "cpp-*", "clang", "clang-*", "llvm", "llvm-*",
        "binutils", "binutils-*", "build-essential", "build-base", "make", "musl-dev",
        "libc6-dev", "libc-dev", "golang", "golang-*", "go", "rustc", "cargo",
    ),
    "package-managers": (
        "apt", "dpkg", "apk-tools", "rpm", "dnf", "yum", "microdnf", "python3-pip", "py3-pip",
        "npm", "yarn",
    ),
    "shells": ("bash", "dash", "zsh", "ksh", "mksh", "tcsh", "csh", "fish", "busybox", "busybox-*"),
}

_PERCENT_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*$")


@dataclass(frozen=True)
class BudgetConfig:
    """Validated budget settings; None / () means the gate is off."""

    file: str = ""
    image: str | None = None
    base: str | None = None
    max_size: int | None = None
    max_removable_percent: float | None = None
    min_efficiency: float | None = None
    max_growth_bytes: int | None = None
    max_growth_percent: float | None = None
    forbid_paths: tuple[str, ...] = ()
    forbid_packages: tuple[str, ...] = ()

    def digest(self) -> str:
        """A stable hash of the settings that change an analysis or its verdicts."""
        data = asdict(self)
        data.pop("file")
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def gates(self) -> list[str]:
        """Names of the gates this configuration turns on, sorted."""
        on = [
            ("max_size", self.max_size is not None),
            ("max_removable_percent", self.max_removable_percent is not None),
            ("min_efficiency", self.min_efficiency is not None),
            ("max_growth", self.max_growth_bytes is not None or self.max_growth_percent is not None),
            ("forbid_paths", bool(self.forbid_paths)),
            ("forbid_packages", bool(self.forbid_packages)),
        ]
        return sorted(name for name, flag in on if flag)


def parse_size(value: Any, where: str, key: str) -> int:
    """Bytes from an int or a string with a unit ("200MB", "1.5GiB", "512"). Raises RuleError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RuleError(f"{where}: {key}: expected a size (bytes or a string like \"200MB\"), got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise RuleError(f"{where}: {key}: a size cannot be negative ({value!r})")
        return int(value)
    try:
        return parse_bytes(value)
    except ValueError as exc:
        raise RuleError(f"{where}: {key}: {exc}") from None


def _ratio(value: Any, where: str, key: str, *, scale: float) -> float:
    """A number or "N%" as a fraction of `scale` (100 for percents, 1 for ratios)."""
    if isinstance(value, str):
        m = _PERCENT_RE.match(value)
        if m is None:
            raise RuleError(f"{where}: {key}: {value!r} is not a number or a percentage like \"30%\"")
        number = float(m.group(1)) * scale / 100
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        raise RuleError(f"{where}: {key}: expected a number, got {value!r}")
    if not 0 <= number <= scale:
        raise RuleError(f"{where}: {key}: {value!r} is out of range (0..{scale:g})")
    return number


def _globs(value: Any, where: str, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RuleError(f"{where}: {key}: expected a list of non-empty strings, got {value!r}")
    return tuple(value)


def parse_config(data: dict[str, Any], where: str) -> BudgetConfig:
    """Validate the budget table `data` read from `where`. Raises RuleError naming file and key."""
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise RuleError(f"{where}: {unknown[0]}: unknown key (known: {', '.join(KEYS)})")
    kwargs: dict[str, Any] = {"file": where}
    for key in ("image", "base"):
        if key in data:
            if not isinstance(data[key], str) or not data[key]:
                raise RuleError(f"{where}: {key}: expected an image reference string, got {data[key]!r}")
            kwargs[key] = data[key]
    if "max_size" in data:
        kwargs["max_size"] = parse_size(data["max_size"], where, "max_size")
    if "max_removable_percent" in data:
        kwargs["max_removable_percent"] = _ratio(data["max_removable_percent"], where, "max_removable_percent", scale=100)
    if "min_efficiency" in data:
        kwargs["min_efficiency"] = _ratio(data["min_efficiency"], where, "min_efficiency", scale=1)
    if "max_growth" in data:
        value = data["max_growth"]
        if isinstance(value, str) and value.strip().endswith("%"):
            m = _PERCENT_RE.match(value)
            if m is None:
                raise RuleError(f"{where}: max_growth: {value!r} is not a percentage like \"5%\"")
            kwargs["max_growth_percent"] = float(m.group(1))
        else:
            kwargs["max_growth_bytes"] = parse_size(value, where, "max_growth")
    if "forbid_paths" in data:
        paths = _globs(data["forbid_paths"], where, "forbid_paths")
        for p in paths:
            if not p.startswith("/") and not p.startswith("*"):
                raise RuleError(f"{where}: forbid_paths: {p!r} must be an absolute image path glob")
        kwargs["forbid_paths"] = paths
    if "forbid_packages" in data:
        names = _globs(data["forbid_packages"], where, "forbid_packages")
        for n in names:
            if n.startswith("@") and n[1:] not in PACKAGE_GROUPS:
                raise RuleError(
                    f"{where}: forbid_packages: {n!r}: unknown group (known: "
                    f"{', '.join('@' + g for g in sorted(PACKAGE_GROUPS))})"
                )
        kwargs["forbid_packages"] = names
    return BudgetConfig(**kwargs)


def read_config(path: Path | str) -> BudgetConfig:
    """Read `.slim.toml` (top-level keys) or pyproject.toml (`[tool.slim]`). Raises RuleError."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RuleError(f"{path}: cannot read the budget configuration: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RuleError(f"{path}: invalid TOML: {exc}") from None
    if path.name == "pyproject.toml":
        tool = data.get("tool", {})
        data = tool.get("slim", {}) if isinstance(tool, dict) else {}
        if not isinstance(data, dict):
            raise RuleError(f"{path}: tool.slim: expected a table")
        where = f"{path} [tool.slim]"
    else:
        where = str(path)
    return parse_config(data, where)


def find_config(start: Path | str | None = None) -> Path | None:
    """The nearest `.slim.toml`, or pyproject.toml with a `[tool.slim]` table, from `start` up."""
    here = Path(start or os.getcwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / ".slim.toml"
        if candidate.is_file():
            return candidate
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file():
            try:
                data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
                continue
            if isinstance(data.get("tool"), dict) and "slim" in data["tool"]:
                return pyproject
        if (directory / ".git").exists():
            break  # a budget belongs to its repository
    return None


def expand_packages(patterns: Iterable[str]) -> list[str]:
    """forbid_packages with "@group" names replaced by the group's globs, sorted, unique."""
    out: set[str] = set()
    for p in patterns:
        out.update(PACKAGE_GROUPS[p[1:]] if p.startswith("@") else (p,))
    return sorted(out)


def match_paths(paths: Iterable[str], patterns: Iterable[str]) -> list[str]:
    """The image paths matching any of `patterns`, sorted."""
    return GlobSet(patterns).filter(paths)


def _pct(x: float) -> str:
    return f"{x:.1f} %"


def _list(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" … (+{len(items) - limit})" if len(items) > limit else "")


def _gate_max_size(
    result: AnalysisResult, config: BudgetConfig, base_result: AnalysisResult | None,
    forbidden_paths: list[str] | None,
) -> list[Verdict]:
    """max_size: the squashed image size against the limit."""
    if config.max_size is None:
        return []
    size = result.image.size_bytes
    ok = size <= config.max_size
    return [Verdict(
        "max_size", "pass" if ok else "fail", format_bytes(size), f"≤ {format_bytes(config.max_size)}",
        f"image size {format_bytes(size)} ({size} bytes) "
        + ("is within" if ok else "exceeds") + f" max_size {format_bytes(config.max_size)} ({config.max_size} bytes)",
    )]


def _gate_max_removable_percent(
    result: AnalysisResult, config: BudgetConfig, base_result: AnalysisResult | None,
    forbidden_paths: list[str] | None,
) -> list[Verdict]:
    """max_removable_percent: removable bytes (static analysis) as a share of the image."""
    if config.max_removable_percent is None:
        return []
    size = result.image.size_bytes
    limit = config.max_removable_percent
    if result.removable is None:
        return [Verdict("max_removable_percent", "warn", "not measured", f"≤ {_pct(limit)}",
                        "removable bytes need the static analysis")]
    pct = 100.0 * result.removable.size_bytes / size if size else 0.0
    ok = pct <= limit
    return [Verdict(
        "max_removable_percent", "pass" if ok else "fail", _pct(pct), f"≤ {_pct(limit)}",
        f"{format_bytes(result.removable.size_bytes)} removable = {_pct(pct)} of the image"
        + ("" if ok else f", above max_removable_percent {_pct(limit)}"),
    )]


def _gate_min_efficiency(
    result: AnalysisResult, config: BudgetConfig, base_result: AnalysisResult | None,
    forbidden_paths: list[str] | None,
) -> list[Verdict]:
    """min_efficiency: dive's layer efficiency score (dive's `lowestEfficiency` rule)."""
    if config.min_efficiency is None:
        return []
    limit = config.min_efficiency
    if result.efficiency is None:
        return [Verdict("min_efficiency", "warn", "not measured", f"≥ {_pct(100 * limit)}",
                        "layer efficiency was not computed")]
    score = result.efficiency.score
    ok = score >= limit
    return [Verdict(
        "min_efficiency", "pass" if ok else "fail", _pct(100 * score), f"≥ {_pct(100 * limit)}",
        f"layer efficiency {_pct(100 * score)}" + ("" if ok else f" is below min_efficiency {_pct(100 * limit)}"),
    )]


def _gate_max_growth(
    result: AnalysisResult, config: BudgetConfig, base_result: AnalysisResult | None,
    forbidden_paths: list[str] | None,
) -> list[Verdict]:
    """max_growth: size growth against the `base` image, in bytes or percent of the base."""
    if config.max_growth_bytes is None and config.max_growth_percent is None:
        return []
    size = result.image.size_bytes
    if config.max_growth_bytes is not None:
        threshold_bytes = config.max_growth_bytes
        threshold = f"≤ {format_bytes(threshold_bytes)}"
    if base_result is None:
        pct_limit = config.max_growth_percent
        threshold = threshold if config.max_growth_bytes is not None else f"≤ {pct_limit:g} %"
        return [Verdict("max_growth", "warn", "no base", threshold,
                        "max_growth needs `base` in the configuration")]
    base_size = base_result.image.size_bytes
    growth = size - base_size
    if config.max_growth_percent is not None:
        threshold_bytes = int(base_size * config.max_growth_percent / 100)
        threshold = f"≤ {config.max_growth_percent:g} % ({format_bytes(threshold_bytes)})"
    ok = growth <= threshold_bytes
    sign = "+" if growth >= 0 else ""
    return [Verdict(
        "max_growth", "pass" if ok else "fail", f"{sign}{format_bytes(growth)}", threshold,
        f"grew {sign}{format_bytes(growth)} against base {base_result.image.reference} "
        f"({format_bytes(base_size)} → {format_bytes(size)})"
        + ("" if ok else f", above max_growth {threshold.removeprefix('≤ ')}"),
    )]


def _gate_forbid_paths(
    result: AnalysisResult, config: BudgetConfig, base_result: AnalysisResult | None,
    forbidden_paths: list[str] | None,
) -> list[Verdict]:
    """forbid_paths: image paths matching the globs (matched by the caller, see match_paths)."""
    if not config.forbid_paths:
        return []
    if forbidden_paths is None:
        return [Verdict("forbid_paths", "warn", "not measured", _list(list(config.forbid_paths)),
                        "the image's paths were not listed")]
    found = sorted(forbidden_paths)
    return [Verdict(
        "forbid_paths", "fail" if found else "pass", f"{len(found)} path(s)",
        _list(list(config.forbid_paths)),
        f"forbidden paths present: {_list(found)}" if found else "no forbidden path present",
    )]


def _gate_forbid_packages(
    result: AnalysisResult, config: BudgetConfig, base_result: AnalysisResult | None,
    forbidden_paths: list[str] | None,
) -> list[Verdict]:
    """forbid_packages: installed packages matching the globs or "@group" names."""
    if not config.forbid_packages:
        return []
    globs = expand_packages(config.forbid_packages)
    found = sorted({
        f"{p.name} ({p.manager})" for p in result.packages
        if any(fnmatch.fnmatchcase(p.name, g) for g in globs)
    })
    status = "fail" if found else "pass"
    message = f"forbidden packages installed: {_list(found)}" if found else "no forbidden package installed"
    if not found and not result.packages:
        status, message = "warn", "no package database found (or not read): nothing to check"
    return [Verdict("forbid_packages", status, f"{len(found)} package(s)",
                    _list(list(config.forbid_packages)), message)]


# A gate: (result, config, base_result, forbidden_paths) -> its Verdict(s); [] when it is off.
Gate = Callable[[AnalysisResult, BudgetConfig, AnalysisResult | None, list[str] | None], list[Verdict]]

# Every gate, in the order they are evaluated (`evaluate` sorts the verdicts by rule name).
GATES: tuple[Gate, ...] = (
    _gate_max_size, _gate_max_removable_percent, _gate_min_efficiency, _gate_max_growth,
    _gate_forbid_paths, _gate_forbid_packages,
)


def evaluate(
    result: AnalysisResult,
    config: BudgetConfig,
    base_result: AnalysisResult | None = None,
    *,
    forbidden_paths: list[str] | None = None,
) -> list[Verdict]:
    """One Verdict per configured gate, sorted by rule name.

    `forbidden_paths` are the image paths matching config.forbid_paths (see `match_paths`; the
    AnalysisResult does not list every file). A gate whose input was not measured — removable
    bytes without the static analysis, growth without a base — is a `warn`, never a silent pass.
    """
    verdicts: list[Verdict] = []
    for gate in GATES:
        verdicts.extend(gate(result, config, base_result, forbidden_paths))
    return sorted(verdicts, key=lambda v: v.rule)


def failed(verdicts: Iterable[Verdict]) -> bool:
    """True when any verdict failed (`slim check` exits 1)."""
    return any(v.status == "fail" for v in verdicts)


_PATH_TRANSPORTS = ("docker-archive:", "oci-archive:", "oci:", "rootfs:")


def resolve_reference(reference: str, base_dir: Path) -> str:
    """A reference from a configuration file with its relative path made relative to the file's
    directory (`docker-archive:build/app.tar` next to .slim.toml), so the check works from any cwd."""
    for prefix in _PATH_TRANSPORTS:
        if reference.startswith(prefix):
            location = reference[len(prefix):]
            return reference if location.startswith("/") else prefix + str(base_dir / location)
    if ":" not in reference and reference.endswith(".tar") and not reference.startswith("/"):
        return str(base_dir / reference)
    return reference
