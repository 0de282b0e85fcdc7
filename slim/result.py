"""AnalysisResult: the one object every emitter reads (the JSON report is its image).

Kept separate from the internal model (as syft separates its output model): fields here are
what users see, sorted and in integers of bytes, so a report is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    name: str
    version: str
    manager: str
    size_bytes: int
    kept_bytes: int
    unused: bool
    file_count: int = 0


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


@dataclass
class AnalysisResult:
    """Everything one analysis found. Lists are sorted before emitters see them."""

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
