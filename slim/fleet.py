"""`slim fleet`: many services, one shared slim base, and what each layout costs.

The map (one Dask task per image, `prepare_service`): load the image, build and verify its
minimal image exactly as `slim build` does (slim.build.build_loaded), and describe that image
for layout planning: its entries with the sha256 of every regular file (read back from the
written minimal image) and the original layer each path lives in. Nothing in that flow knows it
runs in a fleet.

The reduce (slim.layout): share tables of (entry identity → services) are merged pairwise into
one, from which the shared base is chosen (an entry kept identically by `min_share` or more
services; bytes * services breaks ties for one path); each service gets a top over it. The
`preserve` layers of images sharing a ChainID are merged into one slimmed layer each. Layer
blobs are written by tasks that stream file bytes from the services' minimal images, so a
worker holds at most one image's bytes on disk and none whole in memory.

Then every service's image of the chosen layout (`--layers shared|preserve|squash`) is written
as an OCI layout `OUTPUT/<service>/` (equal blobs hard-linked, so a shared layer is stored
once) and verified with the same concrete probes as its original (slim.build.verify_image);
the other layouts are written in a scratch directory only to be measured (slim.footprint).
The output directory appears whole, and only when every service verified.

Workers: a local cluster sized to the machine by default; `scheduler` names an existing one
(`tcp://HOST:PORT`). Its workers need slim installed and must see the images (a path they
share, or a registry reference) and the output directory's parent (a shared filesystem).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from slim.build import BuildOptions, build_loaded, check_destination, verify_image
from slim.emitters.imagewriter import is_slim_layout, write_image
from slim.errors import ClusterError, SlimError, UsageError
from slim.fs.layer import Capture
from slim.image import LoadedImage, load
from slim.layout import (
    KeptEntry,
    LayerPart,
    LayerPlan,
    WrittenLayer,
    base_plan,
    chain_ids,
    hash_files,
    merge_parts,
    merge_tables,
    preserve_parts,
    promoted,
    share_table,
    top_plan,
    write_plan,
)
from slim.model import EntryKind
from slim.outputs import atomic_dir
from slim.pipeline import AnalyzeOptions, load_image
from slim.tracers.base import RunResult
from slim.tracers.probes import Probe

log = logging.getLogger(__name__)

Say = Callable[[str], None]
LAYOUTS = ("shared", "preserve", "squash")
FLEET_MARKER = "fleet.json"  # a previous fleet output holds it (and may be replaced)
RESERVED = {FLEET_MARKER, "report.md", "report.html"}  # never a service's directory name


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the fleet: a name (used for its output directory) and its image."""

    name: str
    reference: str
    probes: tuple[Probe, ...] = ()


@dataclass(frozen=True)
class FleetOptions:
    output: str
    layers: str = "shared"  # the layout written to `output` (all three are measured)
    scheduler: str = ""  # tcp://HOST:PORT of an existing Dask scheduler; "": a local cluster
    workers: int = 0  # local cluster size (0: one per core, at most one per image)
    min_share: int = 2  # services that must keep an entry identically for the base
    build: BuildOptions = field(default_factory=lambda: BuildOptions(dest=""))
    analyze: AnalyzeOptions = field(default_factory=AnalyzeOptions)


@dataclass(frozen=True)
class LayerFacts:
    """One layer of an image as stored: identity and sizes, and its whiteouts."""

    diff_id: str
    chain_id: str
    digest: str
    blob_bytes: int
    tar_bytes: int


@dataclass(frozen=True)
class ServicePrep:
    """What the map step learned about one service (plain data, sent between workers)."""

    spec: ServiceSpec
    image_digest: str = ""
    original_bytes: int = 0  # regular-file bytes of the squashed original
    minimal_bytes: int = 0
    squash: str = ""  # oci:DIR of its verified minimal image (one layer)
    layers: tuple[LayerFacts, ...] = ()  # the original's
    squash_layer: LayerFacts | None = None
    entries: tuple[KeptEntry, ...] = ()
    parts: tuple[LayerPart, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)  # the minimal image's config
    history: tuple[dict[str, Any], ...] = ()  # the original's history
    original: RunResult | None = None  # the original's run (what later images are compared with)
    verified: bool | None = None
    failures: tuple[str, ...] = ()
    fixes: int = 0
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class Published:
    """A service's image in the chosen layout, written and verified."""

    name: str
    digest: str
    layers: tuple[LayerFacts, ...]
    verified: bool | None
    compared: tuple[str, ...] = ()
    differences: tuple[str, ...] = ()


@dataclass(frozen=True)
class FleetOutcome:
    services: tuple[ServicePrep, ...]
    published: tuple[Published, ...]
    stacks: dict[str, dict[str, tuple[LayerFacts, ...]]]  # layout → service → its layers
    files: dict[str, dict[str, tuple[tuple[int, str, int], ...]]]  # layout → service → files
    base_files: int = 0
    base_bytes: int = 0
    base_unused: dict[str, int] = field(default_factory=dict)  # base bytes a service lacks
    layout: str = "shared"
    min_share: int = 2
    output: str = ""  # "" when nothing was written
    seconds: float = 0.0
    workers: int = 0

    @property
    def verified(self) -> bool:
        return all(p.verified is not False for p in self.services) and \
            all(p.verified is not False for p in self.published)


# -- naming and probes ---------------------------------------------------------------------
_GENERIC = {"oci", "image", "layout", "rootfs", "img"}


def service_name(reference: str) -> str:
    """A service name from an image reference: the last meaningful component of its path or
    name (`oci:/x/lighttpd/oci` → lighttpd), in [A-Za-z0-9._-]."""
    from slim.refs import INPUT_TRANSPORTS

    rest = reference.split("://", 1)[-1]
    for transport in INPUT_TRANSPORTS:
        if rest.startswith(transport + ":"):
            rest = rest[len(transport) + 1:]
            break
    name = ""
    for part in reversed([p for p in rest.split("/") if p]):
        stem = re.sub(r"(\.docker)?\.(tar|oci)$", "", part.split("@", 1)[0].split(":", 1)[0])
        if stem and stem.lower() not in _GENERIC:
            name = stem
            break
    name = re.sub(r"[^A-Za-z0-9._-]", "-", name).strip(".-")
    return name or "service"


def service_specs(references: Sequence[str], probes: dict[str, tuple[Probe, ...]]) -> list[ServiceSpec]:
    """Specs with unique names (a repeated name gets -2, -3 …); probes are looked up by the
    service's name or its reference. Raises UsageError for a probe entry naming no image."""
    specs: list[ServiceSpec] = []
    seen: set[str] = set()
    for ref in references:
        base = name = service_name(ref)
        if base in RESERVED:
            base = name = f"svc-{base}"
        n = 1
        while name in seen:
            n += 1
            name = f"{base}-{n}"
        seen.add(name)
        specs.append(ServiceSpec(name, ref, probes.get(name) or probes.get(ref) or ()))
    unknown = sorted(set(probes) - seen - set(references))
    if unknown:
        raise UsageError(f"--probe-file: {unknown[0]}: names no image of the fleet "
                         f"(services: {', '.join(sorted(seen))})")
    return specs


def read_probe_file(path: str) -> dict[str, tuple[Probe, ...]]:
    """A TOML file mapping a service name (or an image reference) to a list of probe specs.
    Raises UsageError naming the file and the entry."""
    import tomllib

    from slim.tracers.probes import parse_probe

    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the probe file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: invalid TOML: {exc}") from None
    out: dict[str, tuple[Probe, ...]] = {}
    for key, specs in doc.items():
        if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
            raise UsageError(f"{path}: {key}: expected a list of probe specs")
        try:
            out[key] = tuple(parse_probe(s) for s in specs)
        except SlimError as exc:
            raise UsageError(f"{path}: {key}: {exc}") from None
    return out


# -- the map: one image ----------------------------------------------------------------------
def prepare_service(spec: ServiceSpec, work: str, options: FleetOptions) -> ServicePrep:
    """Build and verify one service's minimal image into `work/squash/NAME`, and describe it
    for the layouts. Raises SlimError (a failed verification is a value, not an error)."""
    start = time.monotonic()
    dest = os.path.join(work, "squash", spec.name)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    build = replace(options.build, dest=f"oci:{dest}", probes=spec.probes, tag=spec.name,
                    load=False, layers="squash", keep_base=0)
    check_destination(build.dest, build)
    with load_image(spec.reference) as loaded:
        outcome = build_loaded(loaded, options.analyze, build, say=lambda m: log.info("%s: %s", spec.name, m))
        prep = ServicePrep(spec, loaded.image.digest, outcome.result.image.size_bytes,
                           outcome.built.size_bytes, f"oci:{dest}", _layer_facts(loaded),
                           original=outcome.original,
                           verified=outcome.verified, failures=tuple(outcome.failures),
                           fixes=len(outcome.fixes))
        if outcome.verified is False:
            return replace(prep, seconds=time.monotonic() - start)
        entries, squash_layer, config = describe_minimal(loaded, prep.squash, outcome.built.rewritten)
        reads = loaded.layers
        parts = preserve_parts(entries, [r.tree.entries for r in reads],
                               [f.chain_id for f in prep.layers], outcome.built.rewritten,
                               [r.tree.whiteouts for r in reads], [r.tree.opaque for r in reads])
        history = tuple(h for h in (loaded.image.raw_config or {}).get("history") or []
                        if isinstance(h, dict))
    return replace(prep, squash_layer=squash_layer, entries=tuple(entries), parts=parts,
                   config=config, history=history, seconds=time.monotonic() - start)


def _layer_facts(loaded: LoadedImage) -> tuple[LayerFacts, ...]:
    chains = chain_ids([r.diff_id for r in loaded.layers])
    return tuple(LayerFacts(r.diff_id, c, r.blob_digest, r.blob_bytes, r.tar_bytes)
                 for r, c in zip(loaded.layers, chains, strict=True))


def describe_minimal(loaded: LoadedImage, squash: str, rewritten: Sequence[str]
                     ) -> tuple[list[KeptEntry], LayerFacts, dict[str, Any]]:
    """The written minimal image's entries (each with its original layer and content sha256),
    its one layer's facts and its config."""
    fs = loaded.rootfs
    top = len(loaded.layers) - 1
    changed = set(rewritten)
    with load(squash, capture=Capture()) as slim:
        layer = slim.layers[0]
        tree = layer.tree.entries
        digests = hash_files(slim.image, [(0, p) for p, e in tree.items()
                                          if e.kind is EntryKind.FILE and e.size > 0])
        config = dict(slim.image.raw_config or {})
    empty = "sha256:" + hashlib.sha256(b"").hexdigest()
    entries = []
    for path in sorted(tree):
        e = tree[path]
        content = e.linkname if e.kind is EntryKind.HARDLINK else path
        digest = digests.get((0, content), empty) if e.kind in (EntryKind.FILE, EntryKind.HARDLINK) else ""
        orig = fs.get(path)
        home = top if path in changed or orig is None else orig.layer
        entries.append(KeptEntry(dataclasses.replace(e, layer=0), home, content, 0, digest))
    facts = LayerFacts(layer.diff_id, layer.diff_id, layer.blob_digest, layer.blob_bytes,
                       layer.tar_bytes)
    return entries, facts, config


# -- the reduce: the layouts -----------------------------------------------------------------
def table_of(prep: ServicePrep) -> dict[Any, tuple[int, frozenset[str]]]:
    """Map step of the base: this service's entry identities."""
    return share_table(prep.name, prep.entries)


def base_of(table: dict[Any, tuple[int, frozenset[str]]], preps: Sequence[ServicePrep],
            min_share: int) -> LayerPlan:
    return base_plan([(p.name, p.entries) for p in preps], promoted(table, min_share))


def top_of(prep: ServicePrep, base: LayerPlan) -> LayerPlan:
    return top_plan(prep.name, prep.entries, base)


def preserve_of(preps: Sequence[ServicePrep]) -> dict[str, LayerPlan]:
    return merge_parts([(p.name, p.parts) for p in preps])


def write_task(plans: LayerPlan | dict[str, LayerPlan], key: str, sources: dict[str, str],
               out_dir: str, compression: str) -> WrittenLayer:
    """Write one planned layer (`plans[key]` when given a dict), reading the services'
    minimal images (`sources`: service → oci:DIR)."""
    from slim.sources import open_image

    plan = plans[key] if isinstance(plans, dict) else plans
    return write_plan(plan, lambda name: open_image(sources[name]), out_dir, compression)


def _facts(written: Sequence[WrittenLayer]) -> tuple[LayerFacts, ...]:
    chains = chain_ids([w.blob.diff_id for w in written])
    return tuple(LayerFacts(w.blob.diff_id, c, w.blob.digest, w.blob.size, w.tar_bytes)
                 for w, c in zip(written, chains, strict=True))


@dataclass
class Layouts:
    """Every layout's layers and page-cache files per service (client-side bookkeeping)."""

    stacks: dict[str, dict[str, tuple[LayerFacts, ...]]] = field(default_factory=dict)
    blobs: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # LayerBlobs
    files: dict[str, dict[str, tuple[tuple[int, str, int], ...]]] = field(default_factory=dict)
    base: LayerPlan | None = None


def _pairs(items: list[Any], merge: Callable[[Any, Any], Any]) -> Any:
    """Reduce a list pairwise (a tree: log2(n) rounds) with `merge`."""
    while len(items) > 1:
        items = [merge(items[i], items[i + 1]) if i + 1 < len(items) else items[i]
                 for i in range(0, len(items), 2)]
    return items[0]


def write_layouts(client: Any, futures: list[Any], preps: Sequence[ServicePrep],
                  options: FleetOptions, work: str) -> Layouts:
    """Plan and write the shared and preserve layouts on the cluster; collect every layout."""
    sources = {p.name: p.squash for p in preps}
    out, comp = os.path.join(work, "blobs"), options.build.compression
    tables = [client.submit(table_of, f, pure=False) for f in futures]
    table = _pairs(tables, lambda a, b: client.submit(merge_tables, a, b, pure=False))
    base = client.submit(base_of, table, futures, options.min_share, pure=False)
    base_w = client.submit(write_task, base, "", sources, out, comp, pure=False)
    tops_w = [client.submit(write_task, client.submit(top_of, f, base, pure=False), "", sources,
                            out, comp, pure=False) for f in futures]
    merged = client.submit(preserve_of, futures, pure=False)
    keys = sorted({part.key for p in preps for part in p.parts})
    pres_w = dict(zip(keys, [client.submit(write_task, merged, k, sources, out, comp, pure=False)
                             for k in keys], strict=True))
    layouts = Layouts(base=result(base))
    written_base = result(base_w)
    written_pres = {k: result(f) for k, f in pres_w.items()}
    for p, top_f in zip(preps, tops_w, strict=True):
        shared = [written_base, result(top_f)]
        preserve = [written_pres[part.key] for part in p.parts]
        assert p.squash_layer is not None
        _record(layouts, "given", p.name, p.layers, [], _given_files(p))
        _record(layouts, "squash", p.name, (p.squash_layer,), [_squash_blob(p, comp)],
                tuple((0, k.path, k.entry.size) for k in p.entries if k.entry.kind is EntryKind.FILE))
        _record(layouts, "preserve", p.name, _facts(preserve), [w.blob for w in preserve],
                tuple((part.index, k.path, k.entry.size) for part in p.parts for k in part.entries
                      if k.entry.kind is EntryKind.FILE))
        _record(layouts, "shared", p.name, _facts(shared), [w.blob for w in shared],
                _shared_files(p, layouts.base))
    return layouts


def _record(layouts: Layouts, layout: str, name: str, stack: tuple[LayerFacts, ...],
            blobs: list[Any], files: tuple[tuple[int, str, int], ...]) -> None:
    layouts.stacks.setdefault(layout, {})[name] = stack
    layouts.blobs.setdefault(layout, {})[name] = blobs
    layouts.files.setdefault(layout, {})[name] = files


def _given_files(p: ServicePrep) -> tuple[tuple[int, str, int], ...]:
    return tuple((k.home, k.path, k.entry.size) for k in p.entries if k.entry.kind is EntryKind.FILE)


def _shared_files(p: ServicePrep, base: LayerPlan | None) -> tuple[tuple[int, str, int], ...]:
    at = {pl.kept.path: pl.kept.identity() for pl in base.entries} if base else {}
    return tuple((0 if at.get(k.path) == k.identity() else 1, k.path, k.entry.size)
                 for k in p.entries if k.entry.kind is EntryKind.FILE)


def _squash_blob(p: ServicePrep, compression: str) -> Any:
    from slim.emitters.imagewriter import MEDIA_LAYER, LayerBlob

    assert p.squash_layer is not None
    layout = p.squash.split(":", 1)[1]
    path = os.path.join(layout, "blobs", "sha256", p.squash_layer.digest.split(":", 1)[1])
    return LayerBlob(path, p.squash_layer.digest, p.squash_layer.diff_id,
                     p.squash_layer.blob_bytes, MEDIA_LAYER[compression])


def result(future: Any) -> Any:
    """A task's result; a lost worker or connection becomes a ClusterError (SlimErrors a task
    raised come back as they were)."""
    try:
        return future.result()
    except SlimError:
        raise
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"dask: task {getattr(future, 'key', '?')}: {exc}") from None
    except Exception as exc:
        if type(exc).__name__ in ("KilledWorker", "CancelledError", "FutureCancelledError",
                                  "CommClosedError"):
            raise ClusterError(f"dask: task {getattr(future, 'key', '?')}: "
                               f"{type(exc).__name__}: {exc}") from None
        raise


# -- publishing: one image per service, verified ---------------------------------------------
def layout_config(prep: ServicePrep, layout: str, layers: int) -> dict[str, Any]:
    """The minimal image's config with a history matching `layout`'s layers."""
    config = {k: v for k, v in prep.config.items() if k not in ("rootfs", "history")}
    labels = dict((config.get("config") or {}).get("Labels") or {})
    labels["org.slim.fleet.layout"] = layout
    config["config"] = {**(config.get("config") or {}), "Labels": dict(sorted(labels.items()))}
    if layout == "shared":
        config["history"] = [{"created_by": "slim fleet: the shared base"},
                             {"created_by": f"slim fleet: {prep.name}'s own files"}]
    elif layout == "preserve":
        history = [dict(h) for h in prep.history]
        if sum(1 for h in history if not h.get("empty_layer")) == layers:
            config["history"] = [*history, {"created_by": "slim fleet --layers preserve",
                                            "empty_layer": True}]
    else:
        config["history"] = list(prep.config.get("history") or [])
    return config


def publish_service(prep: ServicePrep, blobs: list[Any], stack: tuple[LayerFacts, ...],
                    layout: str, stage: str, options: FleetOptions) -> Published:
    """Write the service's image of `layout` to `stage/NAME` and verify it against the
    original's run. Raises SlimError."""
    dest = os.path.join(stage, prep.name)
    digest = write_image(f"oci:{dest}", blobs, layout_config(prep, layout, len(blobs)),
                         tag=prep.name, mark_slim=True)
    if prep.original is None or not options.build.verify:
        return Published(prep.name, digest, stack, None)
    _minimal, verification = verify_image(f"oci:{dest}", prep.original, options.build)
    return Published(prep.name, digest, stack, verification.verified,
                     tuple(verification.summary()), tuple(verification.differences))


@contextlib.contextmanager
def cluster(options: FleetOptions, images: int) -> Iterator[tuple[Any, int]]:
    """A Dask client: on `options.scheduler`, else on a local cluster of processes (one per
    core, at most one per image). Yields (client, workers). Raises ClusterError."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ClusterError("slim fleet needs Dask: pip install 'dask[distributed]'") from None
    if not log.isEnabledFor(logging.INFO):  # Dask's own INFO lines only with -v
        logging.getLogger("distributed").setLevel(logging.ERROR)
    if options.scheduler:
        try:
            client = Client(options.scheduler, timeout=30)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"{options.scheduler}: cannot reach the Dask scheduler: {exc}") from None
        with client:
            workers = len(client.scheduler_info().get("workers", {}))
            if not workers:
                raise ClusterError(f"{options.scheduler}: the Dask scheduler has no workers")
            _check_workers(client, options.scheduler)
            yield client, workers
        return
    n = options.workers or max(1, min(os.cpu_count() or 1, images))
    # everything on the loopback; the scheduler's HTTP endpoint on a free port, not 8787
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR) as local, \
            Client(local) as client:
        yield client, n


def worker_version() -> str:
    """slim's version on a worker (run there by `_check_workers`)."""
    from slim import __version__

    return __version__


def _check_workers(client: Any, address: str) -> None:
    """Every worker of an existing cluster can import slim. Raises ClusterError."""
    from slim import __version__

    try:
        versions = client.run(worker_version)
    except Exception as exc:  # a worker without slim fails to unpickle the call
        raise ClusterError(f"{address}: a Dask worker cannot run slim ({type(exc).__name__}: "
                           f"{exc}); install slim on every worker") from None
    other = sorted({v for v in versions.values() if v != __version__})
    if other:
        log.warning("%s: workers run slim %s, this is slim %s", address, ", ".join(other), __version__)


class _NotPublished(Exception):
    """A service failed verification: the staged output is dropped."""


def run_fleet(specs: Sequence[ServiceSpec], options: FleetOptions,
              say: Say | None = None) -> FleetOutcome:
    """Build, lay out, write and verify a fleet into options.output (an OCI layout per
    service, fleet.json, report.md, report.html). The output appears only when every service
    verified. Raises SlimError."""
    say = say or (lambda _m: None)
    if options.layers not in LAYOUTS:
        raise UsageError(f"--layers {options.layers}: choose {', '.join(LAYOUTS)}")
    if options.min_share < 2:
        raise UsageError(f"--min-share {options.min_share}: a base is shared by 2 or more services")
    if not specs:
        raise UsageError("slim fleet: no images given")
    start = time.monotonic()
    holder: dict[str, FleetOutcome] = {}
    try:
        with atomic_dir(options.output, what="fleet output", is_previous=is_fleet_output) as stage:
            outcome = _run(specs, options, stage, say)
            holder["outcome"] = outcome = replace(outcome, seconds=time.monotonic() - start)
            if not outcome.verified:
                raise _NotPublished
            write_reports(outcome, stage)
    except _NotPublished:
        return replace(holder["outcome"], output="")
    return replace(outcome, output=options.output)


def _run(specs: Sequence[ServiceSpec], options: FleetOptions, stage: str, say: Say) -> FleetOutcome:
    work = os.path.join(stage, ".work")
    with cluster(options, len(specs)) as (client, workers):
        say(f"{len(specs)} images on {workers} Dask worker{'s' if workers != 1 else ''}")
        futures = [client.submit(prepare_service, s, work, options, pure=False) for s in specs]
        from distributed import as_completed

        for done in as_completed(futures):
            p = result(done)
            state = {True: "verified", False: "NOT verified", None: "not verified"}[p.verified]
            say(f"{p.name}: minimal image {state} in {p.seconds:.0f} s")
        preps = tuple(result(f) for f in futures)
        if any(p.verified is False for p in preps):
            return FleetOutcome(preps, (), {}, {}, layout=options.layers, workers=workers)
        layouts = write_layouts(client, futures, preps, options, work)
        say(f"layouts written; publishing --layers {options.layers} and verifying each service")
        pubs = [client.submit(publish_service, f, layouts.blobs[options.layers][p.name],
                              layouts.stacks[options.layers][p.name], options.layers, stage,
                              options, pure=False) for f, p in zip(futures, preps, strict=True)]
        published = tuple(result(f) for f in pubs)
    shutil.rmtree(work, ignore_errors=True)
    base = [pl.kept for pl in (layouts.base.entries if layouts.base else ())
            if pl.kept.entry.kind is EntryKind.FILE]
    unused = {}
    for p in preps:
        mine = {e.identity() for e in p.entries}
        unused[p.name] = sum(k.entry.size for k in base if k.identity() not in mine)
    return FleetOutcome(preps, published, layouts.stacks, layouts.files, len(base),
                        sum(k.entry.size for k in base), unused, options.layers,
                        options.min_share, workers=workers)


def is_fleet_output(path: str) -> bool:
    """Whether `path` is a previous `slim fleet` output (the only directory it replaces)."""
    marker = os.path.join(path, FLEET_MARKER)
    if not os.path.isfile(marker):
        return False
    return all(name in RESERVED or is_slim_layout(os.path.join(path, name))
               for name in os.listdir(path))


def write_reports(outcome: FleetOutcome, stage: str) -> None:
    """fleet.json, report.md and report.html into the staged output."""
    from slim.emitters.report_fleet import (
        render_fleet_html,
        render_fleet_json,
        render_fleet_markdown,
    )

    feet = footprints(outcome)
    for name, text in (("report.md", render_fleet_markdown(outcome, feet)),
                       ("report.html", render_fleet_html(outcome, feet)),
                       (FLEET_MARKER, render_fleet_json(outcome, feet))):
        with open(os.path.join(stage, name), "w", encoding="utf-8") as f:
            f.write(text)


LAYOUT_TITLES = {
    "given": "as given",
    "squash": "slim, one layer per service",
    "preserve": "slim, --layers preserve",
    "shared": "slim, shared base + tops",
}
UNIKERNELS = ("ops", "osv", "unikraft")


def footprints(outcome: FleetOutcome) -> list[Any]:
    """Every layout of the fleet measured (slim.footprint), containers then unikernels."""
    from slim.emitters.unikernel import kernel_size, manifest_files
    from slim.footprint import ServiceLayout, StackLayer, image_footprint, unikernel_footprint

    out = []
    for key, title in LAYOUT_TITLES.items():
        stacks = outcome.stacks.get(key, {})
        services = [ServiceLayout(name, tuple(StackLayer(f.chain_id, f.digest, f.blob_bytes, f.tar_bytes)
                                              for f in stack), outcome.files[key][name])
                    for name, stack in sorted(stacks.items())]
        if services:
            out.append(image_footprint(key, title, services))
    for target in UNIKERNELS:
        kernel = kernel_size(target)
        files, packed = {}, {}
        for p in outcome.services:
            sizes = {k.path: k.entry.size for k in p.entries if k.entry.kind is EntryKind.FILE}
            files[p.name] = sum(sizes[path] for path in manifest_files(target, sizes))
            blob = p.squash_layer.blob_bytes if p.squash_layer else files[p.name]
            packed[p.name] = round(blob * files[p.name] / max(sum(sizes.values()), 1))
        out.append(unikernel_footprint(f"unikernel-{target}", f"unikernels ({target}: {kernel.target})",
                                       kernel.bytes, files, packed, note=kernel.source))
    return out


__all__ = ["LAYOUTS", "FleetOptions", "FleetOutcome", "Published", "ServicePrep", "ServiceSpec",
           "footprints", "is_fleet_output", "prepare_service", "read_probe_file", "run_fleet",
           "service_name", "service_specs"]
