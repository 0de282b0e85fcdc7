"""The JSON report (schema v1, slim/schemas/report-v1.json): AnalysisResult as stable JSON.

Stable means the same result gives the same bytes: keys sorted, every list in a defined order
(ranked lists — largest paths, waste, inefficient paths — largest first then by name; all other
lists sorted), bytes as integers, ratios rounded to 6 decimals. Fields not computed yet are
present as null or empty, so consumers never test for a missing key.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from slim.result import AnalysisResult, PathBytes, to_plain

SCHEMA_VERSION = 1


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of this report, shipped in slim/schemas/."""
    text = resources.files("slim").joinpath("schemas/report-v1.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _plain(obj: Any) -> Any:
    """slim.result.to_plain with ratios rounded (same result, same bytes)."""
    plain = to_plain(obj)
    return _round(plain)


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def _ranked(items: list[PathBytes] | tuple[PathBytes, ...]) -> list[Any]:
    return _plain(sorted(items, key=lambda p: (-p.size_bytes, p.path)))


def report_dict(result: AnalysisResult) -> dict[str, Any]:
    """The report as plain JSON data (dicts, lists, str, int, float, bool, None)."""
    image = _plain(result.image)
    image["layers"] = sorted(image["layers"], key=lambda layer: layer["index"])
    efficiency = None
    if result.efficiency is not None:
        efficiency = _plain(result.efficiency)
        efficiency["inefficient"] = _ranked(result.efficiency.inefficient)
    return {
        "schema_version": SCHEMA_VERSION,
        "image": image,
        "efficiency": efficiency,
        "largest_dirs": _ranked(result.largest_dirs),
        "largest_files": _ranked(result.largest_files),
        "waste": _plain(sorted(result.waste, key=lambda w: (-w.size_bytes, w.name))),
        "reachable": _plain(result.reachable),
        "removable": _plain(result.removable),
        "keep": _plain(sorted(result.keep, key=lambda k: k.path)),
        "packages": _plain(sorted(result.packages, key=lambda p: (p.manager, p.name, p.version))),
        "syscalls": {
            "traced": sorted(set(result.syscalls_traced)),
            "static": sorted(set(result.syscalls_static)),
        },
        "probes": _plain(sorted(result.probes, key=lambda p: (p.spec, p.passed, p.detail))),
        "unknowns": _plain(sorted(set(result.unknowns), key=lambda u: (u.path, u.reason))),
        "verdicts": _plain(sorted(result.verdicts, key=lambda v: (v.rule, v.status))),
        "build": _plain(result.build),
        "excess": _plain(result.excess),
    }


def render_json(result: AnalysisResult) -> str:
    """The JSON report text (UTF-8, 2-space indent, sorted keys, trailing newline)."""
    return json.dumps(report_dict(result), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
