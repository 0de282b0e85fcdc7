"""AnalysisResult: the one object every emitter reads (the JSON report is its image).

Kept separate from the internal model (as syft separates its output model): fields here are
what users see, sorted and in integers of bytes, so a report is deterministic.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LayerSummary:
    index: int
    digest: str
    diff_id: str
    created_by: str
    size_bytes: int  # regular-file bytes the layer adds
    file_count: int  # non-directory entries the layer adds
    blob_bytes: int = 0  # stored (compressed) size


@dataclass(frozen=True)
class ImageSummary:
    reference: str
    digest: str
    os: str
    architecture: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: dict[str, str]
    workdir: str
    user: str
    size_bytes: int
    file_count: int
    layers: tuple[LayerSummary, ...]
    exposed_ports: tuple[str, ...] = ()


@dataclass(frozen=True)
class PathBytes:
    path: str
    size_bytes: int
    count: int = 1


@dataclass(frozen=True)
class Efficiency:
    """dive's metrics, with our documented corrections (see slim/efficiency.py)."""

    score: float
    wasted_bytes: int
    user_wasted_percent: float
    removable_by_squash_bytes: int  # bytes that exist in layers but not in the squashed fs
    inefficient: tuple[PathBytes, ...] = ()  # paths in ≥2 layers (count = layers), largest first


@dataclass(frozen=True)
class WasteCategory:
    name: str
    description: str
    size_bytes: int
    file_count: int
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class KeptFile:
    path: str
    size_bytes: int
    reasons: tuple[str, ...]  # edge kinds, sorted
    source: str = "static"  # static | traced | rule | traced+static …


@dataclass(frozen=True)
class PackageSummary:
    """One package (dpkg, apk, or a language package: python, npm, gem, jar) and what of it a
    minimal image keeps. size_bytes/file_count: its non-directory entries in the image;
    kept_bytes/kept_files: those the minimal image keeps; status: kept, partly-kept or removed
    ("" when no keep set was computed)."""

    name: str
    version: str
    manager: str
    size_bytes: int
    kept_bytes: int
    unused: bool
    file_count: int = 0
    kept_files: int = 0
    status: str = ""
    arch: str = ""
    source: str = ""  # the source package (dpkg Source, apk origin)
    purl: str = ""  # package URL, "" when it cannot be named


@dataclass(frozen=True)
class ProbeOutcome:
    spec: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Verdict:
    rule: str
    status: str  # pass | warn | fail
    measured: str
    threshold: str
    message: str = ""


@dataclass(frozen=True)
class UnknownItem:
    path: str
    reason: str


@dataclass(frozen=True)
class Totals:
    size_bytes: int = 0
    file_count: int = 0


@dataclass(frozen=True)
class ExcessReason:
    """Kept bytes no traced run touched, entered through one kind of reason."""

    reason: str  # an edge kind ("import", "needed" …), "rule NAME" for a rule
    size_bytes: int
    file_count: int


@dataclass(frozen=True)
class ExcessChain:
    """Entries into the untouched part of the keep set through one source and reason, and
    everything kept only through them."""

    path: str  # the entry (first untouched node: a file, or pkg:NAME) above the largest file
    src: str  # the touched file (or <root>) whose edges enter
    kind: str
    evidence: str
    size_bytes: int
    file_count: int
    heaviest: tuple[PathBytes, ...] = ()  # its largest files
    chain: tuple[str, ...] = ()  # path → … → the largest file, as the graph links them


@dataclass(frozen=True)
class Excess:
    """The static closure against a traced run: what the run touched (the floor) and what is kept
    besides, attributed to where the untouched part of the graph is entered (slim.excess)."""

    traced: Totals
    untouched: Totals
    by_reason: tuple[ExcessReason, ...] = ()
    chains: tuple[ExcessChain, ...] = ()


@dataclass(frozen=True)
class AnalysisResult:
    """Everything one analysis found. Lists are sorted before emitters see them. Frozen: a
    step that adds to a result (a build, budget verdicts) makes a new one with `replace`."""

    image: ImageSummary
    efficiency: Efficiency | None = None
    largest_dirs: list[PathBytes] = field(default_factory=list)
    largest_files: list[PathBytes] = field(default_factory=list)
    waste: list[WasteCategory] = field(default_factory=list)
    reachable: Totals | None = None
    removable: Totals | None = None
    keep: list[KeptFile] = field(default_factory=list)
    packages: list[PackageSummary] = field(default_factory=list)
    syscalls_traced: list[str] = field(default_factory=list)
    syscalls_static: list[str] = field(default_factory=list)
    probes: list[ProbeOutcome] = field(default_factory=list)
    unknowns: list[UnknownItem] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    build: dict[str, object] | None = None
    excess: Excess | None = None  # with a trace: what the static analysis keeps beyond it


# -- the one serializer: AnalysisResult <-> plain JSON data ------------------------------------
def to_plain(obj: Any) -> Any:
    """Dataclasses as dicts, tuples as lists, recursively (JSON-ready, field order kept)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


@functools.cache
def _field_types(cls: type) -> tuple[tuple[str, Any], ...]:
    """(name, resolved annotation) of a dataclass's fields; resolving is slow, so once per class."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls))


def _from_plain(tp: Any, data: Any) -> Any:
    """Rebuild a value of annotated type `tp` (dataclasses, tuple[X, ...], list[X], X | None …)."""
    if data is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _from_plain(inner[0], data) if len(inner) == 1 else data
    if origin in (list, tuple):
        (item, *_rest) = typing.get_args(tp) or (Any,)
        values = [_from_plain(item, v) for v in data]
        return tuple(values) if origin is tuple else values
    if origin is dict:
        return dict(data)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp(**{name: _from_plain(ftype, data[name]) for name, ftype in _field_types(tp)
                     if name in data})
    if tp is float and isinstance(data, int):
        return float(data)
    return data


def result_from_plain(data: dict[str, Any]) -> AnalysisResult:
    """The inverse of `to_plain` for an AnalysisResult. Raises KeyError / TypeError / ValueError
    on malformed data."""
    result = _from_plain(AnalysisResult, data)
    if not isinstance(result, AnalysisResult):
        raise TypeError("not an AnalysisResult")
    return result
