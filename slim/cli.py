"""The `slim` command line (typer). The only module that prints results or exits.

Exit codes: 0 ok · 1 a gate or verification failed · 2 usage error · 3 any other SlimError.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from slim import __version__
from slim.errors import AnalysisError, EmitError, SlimError, UsageError

if TYPE_CHECKING:
    from slim.build import BuildOutcome
    from slim.emitters.unikernel import ManifestResult
    from slim.pipeline import Analysis, AnalyzeOptions, Tracing
    from slim.progress import Phases
    from slim.result import AnalysisResult
    from slim.sources import Image
    from slim.tracers.probes import Probe

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Make container images small without breaking them; every kept file knows why.",
    pretty_exceptions_enable=False,
)

_state: dict[str, Any] = {"debug": False, "signal": 0}


def fail(exc: SlimError) -> NoReturn:
    """Print one line naming the object, exit 2 for usage errors, 3 otherwise."""
    if _state["debug"]:
        raise exc
    typer.echo(f"slim: error: {exc}", err=True)
    raise typer.Exit(2 if isinstance(exc, UsageError) else 3)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="Show decisions (-vv: debug)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        typer.echo(f"slim {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(2)
    _state["debug"] = debug
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


# -- shared helpers --------------------------------------------------------------------------
def _say(message: str) -> None:
    typer.echo(f"slim: {message}", err=True)


def _write_reports(result: AnalysisResult, formats: list[str], output: str | None, why=None) -> None:
    """Render `result` in each format: to stdout (one format), to the file `output` (one
    format), or as `output`/report.<ext> (several formats need a directory). Files are written
    whole (slim.outputs)."""
    import io
    import os

    from slim.emitters import EMITTERS
    from slim.outputs import check_output, is_stdout, write_file

    emitters = [EMITTERS[f] for f in formats]
    if len(emitters) == 1:
        targets = [(emitters[0], output)]
    else:
        assert output is not None
        if not os.path.isdir(output):
            check_output(output, what="report directory", directory=True)
            try:
                os.makedirs(output, exist_ok=True)
            except OSError as exc:
                raise EmitError(f"{output}: cannot create the report directory: {exc.strerror}") from None
        targets = [(e, os.path.join(output, f"report.{e.extension}")) for e in emitters]
    for emitter, path in targets:
        extra = {"why": why} if why and emitter.name == "html" else {}
        if path is None or is_stdout(path):
            emitter.emit(result, sys.stdout, color=emitter.name == "text" and sys.stdout.isatty(), **extra)
            continue
        buf = io.StringIO()
        emitter.emit(result, buf, color=False, **extra)
        write_file(path, buf.getvalue(), what=f"{emitter.name} report")


SbomOpt = Annotated[str | None, typer.Option("--sbom", help="Also make an SBOM: cyclonedx (CycloneDX 1.6 JSON) or spdx (SPDX 2.3 JSON).")]


def _check_sbom_format(fmt: str | None) -> None:
    from slim.emitters.sbom import SBOM_FORMATS

    if fmt is not None and fmt not in SBOM_FORMATS:
        raise UsageError(f"--sbom {fmt}: unknown SBOM format (choose from {', '.join(SBOM_FORMATS)})")


def _write_sbom(analysis: Analysis, fmt: str, path: str | None) -> None:
    """The analyzed image's SBOM to `path` (standard output for None or '-')."""
    from slim.emitters.sbom import SbomSubject, render_sbom
    from slim.outputs import is_stdout, write_file

    doc = render_sbom(fmt, analysis.result.packages, SbomSubject.of(analysis.loaded, minimal=False))
    if path is None or is_stdout(path):
        sys.stdout.write(doc.decode())
    else:
        write_file(path, doc, what="SBOM")


# Options shared by the commands that compute a keep set (analyze, build, why, graph, seccomp,
# manifest). Typer has no option groups across commands; these aliases keep them identical.
ImageArg = Annotated[str, typer.Argument(help="Image reference: docker-archive:FILE, oci:DIR[:TAG], oci-archive:FILE, rootfs:DIR, docker-daemon:NAME, docker://REF, NAME[:TAG].")]
TraceOpt = Annotated[bool, typer.Option("--trace", help="Also run the image traced (strace) with probes and keep what it used.")]
ProbeOpt = Annotated[list[str] | None, typer.Option("--probe", help="http:PORT\\[/PATH] · tcp:PORT\\[:SEND\\[:EXPECT]] · exec:CMD · cmd:ARGS · wait:SECONDS (repeatable).")]
RunnerOpt = Annotated[str, typer.Option("--runner", help="auto, sandbox (bubblewrap) or docker.")]
NetworkOpt = Annotated[str, typer.Option("--network", help="none (default): the app gets its own network namespace and the probes enter it; host: the app shares the host's network (use only for images you trust).")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds a traced run may take.")]
RulesOpt = Annotated[list[str] | None, typer.Option("--rules", help="Extra rule-pack directory (repeatable).")]
KeepOpt = Annotated[list[str] | None, typer.Option("--keep", help="Always keep paths matching GLOB (repeatable; `*` stays in one directory, `**` crosses them).")]
DropOpt = Annotated[list[str] | None, typer.Option("--drop", help="Never keep paths matching GLOB (repeatable).")]
KeepAppOpt = Annotated[bool, typer.Option("--keep-app/--no-keep-app", help="Keep unpackaged files under WorkingDir and the entrypoint script's directory.")]
TraceFileOpt = Annotated[str | None, typer.Option("--trace-file", help="Reuse a trace saved with --save-trace instead of running.")]
PullOpt = Annotated[bool, typer.Option("--pull", help="For a bare NAME[:TAG] not in the local daemon, ask its registry (Docker Hub for a name without one); without it only names that name a registry are pulled.")]
SaveTraceOpt = Annotated[str | None, typer.Option("--save-trace", help="Write the trace of this run as JSON.")]


def _options(rules: list[str] | None, keep: list[str] | None, drop: list[str] | None,
             keep_app: bool = True, **more: Any) -> AnalyzeOptions:
    from slim.pipeline import AnalyzeOptions

    return AnalyzeOptions(rules_dirs=tuple(rules or ()), keep=tuple(keep or ()),
                          drop=tuple(drop or ()), keep_app=keep_app, **more)


def _probes(specs: list[str] | None) -> tuple[Probe, ...]:
    from slim.tracers.probes import parse_probe

    try:
        return tuple(parse_probe(s) for s in specs or [])
    except SlimError as exc:
        raise UsageError(str(exc)) from None


def _tracing(trace: bool = False, probes: list[str] | None = None, runner: str = "auto",
             network: str = "none", timeout: float = 60.0, trace_file: str | None = None,
             save_trace: str | None = None) -> Tracing | None:
    """The tracing options of a command (None: no trace). Raises UsageError."""
    from slim.pipeline import Tracing

    if trace_file:
        return Tracing(trace_file=trace_file)
    if not trace:
        if probes:
            raise UsageError("--probe needs --trace (or use `slim build`, which verifies with probes)")
        return None
    from slim.tracers.base import RunOptions  # the runners' code only when the image is run

    return Tracing(run=RunOptions(_probes(probes), runner, network, timeout),
                   save_trace=save_trace or "")


@contextmanager
def _analyzed(image: str | Image, options: AnalyzeOptions, tracing: Tracing | None = None,
              pull: bool = False) -> Iterator[Analysis]:
    """pipeline.analyzed with its phases shown on stderr when it is a terminal."""
    from slim.pipeline import analyzed

    if tracing is not None and tracing.run is not None and not sys.stderr.isatty():
        _say("running the image traced")
    with _phases() as progress, analyzed(image, options, tracing, pull=pull, progress=progress) as analysis:
        progress.stop()  # the report goes to the terminal next: no live display over it
        yield analysis


MAX_CACHED_GRAPH = 50_000  # nodes (Django's graph: 3,400 nodes, 21,000 edges, 4.3 MB cached)


@dataclass
class _Lookup:
    """What _cached_analysis found: the cached result (None: a miss) and what its entry holds
    besides; the key to store a result under, the identity of the blob files before they were
    read (result_cache.blob_identity) and the image ID the key stands for; on a miss, the image
    when it was opened here, for the analysis to read."""

    kind: str = "analyze"
    result: AnalysisResult | None = None
    extra: Any = None
    key: str | None = None
    blobs: list[list[Any]] | None = None
    digest: str = ""
    opened: Image | None = None

    def store(self, result: AnalysisResult, extra: Callable[[], Any] | None = None) -> None:
        """Store an analysis this lookup missed, when the analyzed image is the one the key
        stands for (a daemon tag may have moved meanwhile), with what `extra()` gives besides;
        it is computed only then, and an empty one (too large to keep) stores nothing."""
        if self.key and result.image.digest == self.digest:
            from slim.result_cache import ResultCache

            data = extra() if extra is not None else None
            if extra is None or data:
                ResultCache(self.kind).put(self.key, result, data, blobs=self.blobs)


def _cached_analysis(image: str, options: AnalyzeOptions, pull: bool, kind: str = "analyze") -> _Lookup:
    """The entry of the result cache `kind` for this analysis of `image` (result_cache)."""
    from slim.cache import disabled
    from slim.refs import parse_ref
    from slim.result import to_plain
    from slim.result_cache import ResultCache, blob_identity, result_key, rules_digest
    from slim.sources import open_image

    ref = parse_ref(image)
    material = {"command": "analyze", "options": to_plain(options), "rules": rules_digest(options.rules_dirs)}
    if disabled():
        return _Lookup(kind)
    cache = ResultCache(kind)
    inspected = cache.get_daemon_first(ref, material)  # `docker inspect` alone, no save
    if inspected is not None:
        hit, key, digest = inspected
        result, extra = hit or (None, None)
        return _Lookup(kind, result, extra, key, None, digest)
    if ref.transport not in ("oci", "oci-archive", "docker-archive", "docker", "auto"):
        return _Lookup(kind)  # rootfs: no content address
    # manifest and config; a registry's image is copied into slim's registry cache (skopeo
    # copies only the blobs it lacks) and, on a miss, read from there by the analysis
    source = open_image(image, pull=pull)
    try:
        key = result_key(source, material)
        blobs = blob_identity(source)
        hit = cache.get(key, source)
    except BaseException:
        source.close()
        raise
    if hit:
        source.close()
        return _Lookup(kind, hit[0], hit[1], key, blobs, source.digest)
    return _Lookup(kind, None, None, key, blobs, source.digest, source)


@contextmanager
def _phases(lines: bool = False) -> Iterator[Phases]:
    """Progress on stderr (slim.progress): live phase lines on a terminal; otherwise one
    `slim: …` line per phase and note with `lines`, else nothing."""
    from slim.progress import SILENT, RichPhases, SayPhases

    if not sys.stderr.isatty():
        yield SayPhases(_say) if lines else SILENT
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(*RichPhases.columns(), console=Console(stderr=True), transient=True) as bar:
        phases = RichPhases(bar)
        try:
            yield phases
        finally:
            phases.stop()


# -- analyze ---------------------------------------------------------------------------------
@app.command()
def analyze(
    image: ImageArg,
    formats: Annotated[list[str] | None, typer.Option("--format", "-f", help="text, json, markdown or html (default text); several need --output DIR.")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write here (a directory when several formats; - for stdout).")] = None,
    static: Annotated[bool, typer.Option("--static/--no-static", help="Compute what the app needs (off: only where the bytes are).")] = True,
    syscalls: Annotated[bool, typer.Option("--syscalls", help="Also extract the kept ELF files' syscalls (static upper bound).")] = False,
    trace: TraceOpt = False,
    probe: ProbeOpt = None,
    runner: RunnerOpt = "auto",
    network: NetworkOpt = "none",
    timeout: TimeoutOpt = 60.0,
    trace_file: TraceFileOpt = None,
    save_trace: SaveTraceOpt = None,
    rules: RulesOpt = None,
    keep: KeepOpt = None,
    drop: DropOpt = None,
    keep_app: KeepAppOpt = True,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when the analysis left unknowns.")] = False,
    sbom: SbomOpt = None,
    sbom_output: Annotated[str | None, typer.Option("--sbom-output", help="Write the SBOM here (default: standard output, instead of the report unless --format or --output is given).")] = None,
    pull: PullOpt = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write slim's caches (results, parsed files).")] = False,
) -> None:
    """Where an image's bytes go, and what its app really needs (every kept file with its reasons)."""
    from slim.emitters import EMITTERS
    from slim.pipeline import why_chains, why_index

    if no_cache:
        os.environ["SLIM_NO_CACHE"] = "1"

    sbom_to_stdout = bool(sbom) and (sbom_output is None or sbom_output == "-")
    report_wanted = not sbom_to_stdout or bool(formats) or output is not None
    formats = list(dict.fromkeys(formats or ["text"]))
    try:
        _check_sbom_format(sbom)
        if sbom_to_stdout and report_wanted and (output is None or output == "-"):
            raise UsageError("--sbom: the SBOM and the report cannot both go to standard output "
                             "(give --sbom-output FILE or --output)")
        unknown = [f for f in formats if f not in EMITTERS]
        if unknown:
            raise UsageError(f"--format {unknown[0]}: unknown format (choose from {', '.join(sorted(EMITTERS))})")
        if len(formats) > 1 and (output is None or output == "-"):
            raise UsageError(f"--format {' '.join(formats)}: several formats need --output DIR")
        options = _options(rules, keep, drop, keep_app, static=static, syscalls=syscalls)
        tracing = _tracing(trace, probe, runner, network, timeout, trace_file, save_trace)
        if sbom and not sbom_to_stdout:
            from slim.outputs import check_output

            check_output(sbom_output or "", what="SBOM")
        # the SBOM needs the loaded image, the HTML report the graph's chains (kept with the
        # result by `slim why`'s cache: that entry serves it); a trace is new every time
        html = "html" in formats
        look = (_cached_analysis(image, options, pull, kind="why" if html else "analyze")
                if tracing is None and not sbom else _Lookup())
        why_fn = why_chains(look.extra) if html and look.result is not None else None
        result = look.result if why_fn is not None or not html else None
        if result is not None:
            _write_reports(result, formats, output, why=why_fn)
        else:
            with _analyzed(look.opened or image, options, tracing, pull=pull) as analysis:
                result = analysis.result
                why_fn = analysis.closure.graph.why if analysis.closure else None
                if report_wanted:
                    _write_reports(result, formats, output, why=why_fn)
                if sbom:
                    _write_sbom(analysis, sbom, sbom_output)
                # the result, and what `slim why` (or this report again) reads of it
                dataclasses.replace(look, kind="analyze").store(result)
                if html or options.static:  # 25 ms for Django's index, plus its write
                    dataclasses.replace(look, kind="why").store(result, lambda: why_index(analysis))
    except SlimError as exc:
        fail(exc)
    failed_probes = [p for p in result.probes if not p.passed]
    if failed_probes:
        _say(f"probe failed: {failed_probes[0].spec}: {failed_probes[0].detail}")
        raise typer.Exit(1)
    if strict and result.unknowns:
        _say(f"--strict: {len(result.unknowns)} unknowns (first: {result.unknowns[0].path}: {result.unknowns[0].reason})")
        raise typer.Exit(1)


@app.command()
def why(
    image: ImageArg,
    path: Annotated[str, typer.Argument(help="An image path.")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the directories the library resolver tried.")] = False,
    trace_file: TraceFileOpt = None,
    rules: RulesOpt = None,
    keep: KeepOpt = None,
    drop: DropOpt = None,
    keep_app: KeepAppOpt = True,
    pull: PullOpt = False,
) -> None:
    """Print the shortest chain of reasons from the container start to PATH; exit 1 when not kept."""
    from slim.model import ROOT
    from slim.pipeline import why as why_chain
    from slim.pipeline import why_from_index, why_index

    try:
        options = _options(rules, keep, drop, keep_app)
        tracing = _tracing(trace_file=trace_file)
        # what `why` reads of the analysis is cached with it (pipeline.why_index): any later
        # question about the unchanged image is answered from there
        look = _cached_analysis(image, options, pull, kind="why") if tracing is None else _Lookup()
        answer = why_from_index(look.extra, path) if look.result is not None else None
        if answer is None:  # a miss, or an entry of another format: analyze, and store anew
            with _analyzed(look.opened or image, options, tracing, pull=pull) as analysis:
                answer = why_chain(analysis, path)
                look.store(analysis.result, lambda: why_index(analysis))
    except SlimError as exc:
        fail(exc)
    if not answer.steps:
        typer.echo(f"{answer.path}: not kept" + ("" if answer.in_image else " (not in the image)"))
        for src, reason in answer.declined:
            typer.echo(f"  {src} would keep it, but: {reason}")
        raise typer.Exit(1)
    for i, item in enumerate(answer.steps):
        step = item.step
        src = "container start" if step.src == ROOT else step.src
        typer.echo(f"{'  ' * i}{src} -> {step.dst}  [{step.kind}]" + (f"  {step.evidence}" if step.evidence else ""))
    if verbose:
        for item in answer.steps:
            if item.tried:
                typer.echo(f"{item.step.src}: DT_NEEDED {item.needed}: the loader tried, in order:")
                for d in item.tried:
                    typer.echo(f"  {d}")


@app.command()
def graph(
    image: ImageArg,
    fmt: Annotated[str, typer.Option("--format", "-f", help="dot, graphml or json.")] = "dot",
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write to FILE instead of stdout.")] = None,
    source: Annotated[str | None, typer.Option("--from", help="Only what PATH needs (edges out of it, transitively).")] = None,
    target: Annotated[str | None, typer.Option("--to", help="Only what leads to PATH (with --from: the chains from one to the other).")] = None,
    depth: Annotated[int | None, typer.Option("--depth", min=0, help="At most N edges from --from / to --to (from the container start without them).")] = None,
    trace_file: TraceFileOpt = None,
    rules: RulesOpt = None,
    keep: KeepOpt = None,
    drop: DropOpt = None,
    keep_app: KeepAppOpt = True,
    pull: PullOpt = False,
) -> None:
    """Export the dependency graph (nodes: image paths; edges: kind and evidence), whole or focused."""
    from slim.graph import EXPORT_FORMATS, DependencyGraph
    from slim.model import normpath
    from slim.outputs import check_output, is_stdout, write_file

    try:
        if fmt not in EXPORT_FORMATS:
            raise UsageError(f"--format {fmt}: choose from {', '.join(EXPORT_FORMATS)}")
        if output:
            check_output(output, what="graph")
        options = _options(rules, keep, drop, keep_app)
        tracing = _tracing(trace_file=trace_file)
        # the graph is cached with the analysis (DependencyGraph.to_plain): exploring an
        # unchanged image with --from/--to does not analyze it again
        look = _cached_analysis(image, options, pull, kind="graph") if tracing is None else _Lookup()
        graph_: DependencyGraph | None = None
        if look.result is not None:
            try:
                graph_ = DependencyGraph.from_plain(look.extra)
            except ValueError:  # an entry of another format: analyze, and store anew
                graph_ = None
        if graph_ is None:
            with _analyzed(look.opened or image, options, tracing, pull=pull) as analysis:
                assert analysis.closure is not None
                whole = graph_ = analysis.closure.graph
                # beyond MAX_CACHED_GRAPH nodes, tens of MB of JSON: analyzed each time
                look.store(analysis.result, lambda: whole.to_plain() if len(whole) <= MAX_CACHED_GRAPH else {})
        if source is not None or target is not None or depth is not None:
            try:
                graph_ = graph_.focus(source and normpath(source), target and normpath(target), depth)
            except KeyError as exc:
                raise UsageError(f"{exc.args[0]}: not in the dependency graph of {image} "
                                 "(`slim why` says whether it is kept)") from None
        text = graph_.export(fmt)
        if output and not is_stdout(output):
            write_file(output, text, what="graph")
        else:
            sys.stdout.write(text)
    except SlimError as exc:
        fail(exc)


@app.command()
def build(
    image: ImageArg,
    output: Annotated[str, typer.Option("--output", "-o", help="oci:DIR, oci-archive:FILE, docker-archive:FILE or docker://REF.")],
    tag: Annotated[str, typer.Option("--tag", help="NAME:TAG of the output (default: the source's repository with tag `slim`; none when the source has no name).")] = "",
    load_image: Annotated[bool, typer.Option("--load", help="Load the verified image into the Docker daemon (docker-archive output).")] = False,
    trace: TraceOpt = False,
    probe: ProbeOpt = None,
    mode: Annotated[str, typer.Option("--mode", help="Keep-set roots: static (entrypoint analysis only), traced (what the run used) or both. Default: both whenever the original is run (verification, --trace), else static.")] = "",
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Run the probes against original and minimal image and compare them.")] = True,
    strict_probes: Annotated[bool, typer.Option("--strict-probes", help="Fail when a probe fails on the ORIGINAL image (default: report it and verify with the others).")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="Say how outputs are normalized before they are compared.")] = False,
    keep_unverified: Annotated[bool, typer.Option("--keep-unverified", help="Leave the output even when verification fails.")] = False,
    keep_base: Annotated[int, typer.Option("--keep-base", help="Keep the first N layers untouched and put one slimmed layer on top.")] = 0,
    layers: Annotated[str, typer.Option("--layers", help="squash (one layer) or preserve (every original layer slimmed in place: same layer count, images sharing a base layer slimmed together with `slim fleet --layers preserve` share its slimmed version).")] = "squash",
    max_fixes: Annotated[int, typer.Option("--max-fixes", help="Repair rounds after a failed verification.")] = 3,
    runner: RunnerOpt = "auto",
    network: NetworkOpt = "none",
    timeout: TimeoutOpt = 60.0,
    rules: RulesOpt = None,
    keep: KeepOpt = None,
    drop: DropOpt = None,
    keep_app: KeepAppOpt = True,
    report: Annotated[str | None, typer.Option("--report", help="Also write the JSON report (with build{}) here.")] = None,
    sbom: Annotated[str | None, typer.Option("--sbom", help="Also make an SBOM of the minimal image: cyclonedx or spdx. Attached as an OCI referrer to oci:/oci-archive: outputs; written beside a docker-archive (FILE.cdx.json, FILE.spdx.json).")] = None,
) -> None:
    """Write the minimal image, verify it behaves as the original, repair it when it does not."""
    from slim.build import BuildOptions
    from slim.build import build as run_build
    from slim.outputs import check_output, write_file

    try:
        _check_sbom_format(sbom)
        if sbom and output.startswith("docker://"):
            raise UsageError(f"--sbom: {output}: a pushed image gets no SBOM referrer yet; "
                             "write to oci:, oci-archive: or docker-archive: and push it yourself")
        if report:
            check_output(report, what="report")
        if trace and mode == "static":
            raise UsageError("--trace with --mode static: the trace would not be used")
        build_options = BuildOptions(
            dest=output, probes=_probes(probe), mode=mode, verify=verify, runner=runner,
            network=network, timeout=timeout, keep_base=keep_base, max_fixes=max_fixes,
            keep_unverified=keep_unverified, load=load_image, tag=tag,
            strict_probes=strict_probes, sbom=sbom or "", layers=layers)
        with _phases(lines=True) as progress:
            outcome = run_build(image, _options(rules, keep, drop, keep_app), build_options,
                                say=progress.note, progress=progress)
        if report:
            from slim.emitters.report_json import render_json

            write_file(report, render_json(outcome.result), what="report")
    except SlimError as exc:
        fail(exc)
    _print_build(image, output, outcome, explain, keep_unverified)


def _print_build(image: str, output: str, outcome: BuildOutcome, explain: bool,
                 keep_unverified: bool) -> None:
    """The build's result: sizes, what verification compared, the verdict."""
    from slim.units import format_bytes, ratio
    from slim.verify import NORMALIZATION

    res, built = outcome.result, outcome.built
    before = res.image.size_bytes
    # files: non-directory entries, as in `slim analyze`; the image adds package metadata
    needed = res.reachable.file_count if res.reachable is not None else built.file_count
    extra = (f": {needed} the app needs + {built.file_count - needed} package metadata"
             if built.file_count > needed else "")
    typer.echo(f"{image}: {format_bytes(before)} -> {format_bytes(built.size_bytes)} "
               f"({ratio(before, built.size_bytes)} smaller, {built.file_count} files{extra}) "
               f"in {outcome.seconds:.1f} s")
    for fix in outcome.fixes:
        typer.echo(f"  verify-fix: kept {fix['path']} ({fix['reason']})")
    for dropped in outcome.dropped:
        typer.echo(f"  not compared (fails on the original): {dropped.spec}: {dropped.detail}")
    if outcome.verification is not None:
        typer.echo("compared with the original:")
        for line in outcome.verification.summary():
            typer.echo(f"  {line}")
        if explain:
            typer.echo(NORMALIZATION)
    if outcome.verified is False:
        typer.echo(f"verification FAILED: {outcome.failures[0]}", err=True)
        if not keep_unverified:
            typer.echo("no image was written (use --keep-unverified to keep it anyway)", err=True)
        raise typer.Exit(1)
    if outcome.verified and outcome.verification is not None:
        n = len(outcome.verification.comparisons)
        state = (f"verified: {n} observation{'s' if n != 1 else ''} the same as the original's "
                 "and no missing-file events, as listed above")
    else:
        state = f"NOT verified: nothing was compared ({outcome.unverified_why or 'no run'})"
    typer.echo(f"{output}: {built.digest} ({state})")
    sbom_info = (res.build or {}).get("sbom")
    if isinstance(sbom_info, dict):
        where = sbom_info.get("path") or f"an OCI referrer of {output}"
        typer.echo(f"SBOM ({sbom_info['format']}): {where}")


@app.command()
def seccomp(
    image: ImageArg,
    output: Annotated[str, typer.Option("--output", "-o", help="Where to write the Docker/OCI seccomp profile (JSON).")],
    source: Annotated[str, typer.Option("--from", help="traced, static or both (default: both when traced, else static).")] = "",
    runtime: Annotated[list[str] | None, typer.Option("--runtime", help="Allow only this runtime's baseline: runc or crun (repeatable; default: all, so the profile starts under any).")] = None,
    trace: TraceOpt = False,
    probe: ProbeOpt = None,
    runner: RunnerOpt = "auto",
    network: NetworkOpt = "none",
    timeout: TimeoutOpt = 60.0,
    trace_file: TraceFileOpt = None,
    rules: RulesOpt = None,
    keep: KeepOpt = None,
    drop: DropOpt = None,
    pull: PullOpt = False,
) -> None:
    """Write a seccomp profile allowing the app's syscalls plus the runtime's baseline."""
    from slim.emitters.seccomp import baselines, build_seccomp_profile, dumps_profile
    from slim.outputs import check_output, write_file

    traced = trace or bool(trace_file)
    source = source or ("both" if traced else "static")
    try:
        if source not in ("traced", "static", "both"):
            raise UsageError(f"--from {source}: choose traced, static or both")
        if source in ("traced", "both") and not traced:
            raise UsageError(f"--from {source} needs --trace (or --trace-file)")
        known = [b.name for b in baselines()]
        for name in runtime or ():
            if name not in known:
                raise UsageError(f"--runtime {name}: no baseline for it (choose from {', '.join(known)})")
        check_output(output, what="seccomp profile")
        options = _options(rules, keep, drop, syscalls=source in ("static", "both"))
        tracing = _tracing(trace, probe, runner, network, timeout, trace_file)
        # without a trace the profile needs only the result: `slim analyze --syscalls`'s entry
        look = _cached_analysis(image, options, pull) if tracing is None else _Lookup()
        if look.result is not None:
            result = look.result
        else:
            with _analyzed(look.opened or image, options, tracing, pull=pull) as analysis:
                result = analysis.result
            look.store(result)
        names = set(result.syscalls_static if source != "traced" else ())
        names |= set(result.syscalls_traced if source != "static" else ())
        if not names:
            raise AnalysisError(f"{image}: no syscalls found ({source}): the image has no ELF "
                                "program slim could analyze; nothing to allow")
        profile = build_seccomp_profile(sorted(names), runtimes=runtime or None)
        write_file(output, dumps_profile(profile), what="seccomp profile")
    except SlimError as exc:
        fail(exc)
    allowed = len(profile["syscalls"][0]["names"]) if profile.get("syscalls") else 0
    typer.echo(f"{output}: {allowed} syscalls allowed ({len(names)} from the {source} set + runtime baseline: "
               f"{', '.join(f'{b.name} {b.versions}' for b in baselines(runtime or None))})")


@app.command()
def manifest(
    image: ImageArg,
    target: Annotated[str, typer.Option("--target", help="ops (Nanos), osv or unikraft.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Directory to write the manifest and files into.")],
    explain: Annotated[bool, typer.Option("--explain", help="List every blocking syscall or feature with the files that need it.")] = False,
    trace: TraceOpt = False,
    probe: ProbeOpt = None,
    runner: RunnerOpt = "auto",
    network: NetworkOpt = "none",
    timeout: TimeoutOpt = 60.0,
    trace_file: TraceFileOpt = None,
    rules: RulesOpt = None,
    keep: KeepOpt = None,
    drop: DropOpt = None,
    pull: PullOpt = False,
) -> None:
    """Emit a unikernel manifest with the kept files, judge whether the app runs there, and say the next command."""
    from slim.emitters.unikernel import COMPAT_TARGET, TARGETS, is_previous_manifest
    from slim.manifest import write_manifest
    from slim.outputs import check_output

    target = "ops" if target == "nanos" else target
    try:
        if target not in TARGETS:
            raise UsageError(f"--target {target}: choose ops, osv or unikraft")
        check_output(output, what="manifest directory", directory=True, is_previous=is_previous_manifest)
        tracing = _tracing(trace, probe, runner, network, timeout, trace_file)
        with _analyzed(image, _options(rules, keep, drop), tracing, pull=pull) as analysis:
            outcome = write_manifest(analysis, target, output)
    except SlimError as exc:
        fail(exc)
    _print_manifest(output, outcome, COMPAT_TARGET[target], explain)


def _print_manifest(output: str, outcome: ManifestResult, kernel: str, explain: bool) -> None:
    """The manifest's verdict, its blockers (all with --explain), warnings and the next command."""
    a = outcome.assessment
    source = ("static upper bound" if a.compat.upper_bound else "traced, after the app started") if a.compat else "none"
    typer.echo(f"{output}: {outcome.target} manifest with {outcome.paths} paths; "
               f"syscalls ({source}): {outcome.syscalls}")
    typer.echo(f"verdict on {kernel}: {a.verdict}"
               + (" (a static upper bound decides nothing: add --trace)" if a.verdict == "needs-trace" else ""))
    shown = a.blockers if explain else a.blockers[:5]
    for b in shown:
        typer.echo(f"  {b.verdict}: {b.name}: {b.why}" + (f" (needed by {', '.join(b.files)})" if b.files else ""))
    if len(shown) < len(a.blockers):
        typer.echo(f"  … {len(a.blockers) - len(shown)} more (--explain lists them all, with the files that need them)")
    if explain and a.compat:
        for reason in a.compat.reasons:
            typer.echo(f"  note: {reason}")
    for w in outcome.warnings:
        typer.echo(f"  warning: {w}")
    typer.echo("next:")
    for command in outcome.next_commands:
        typer.echo(f"  {command}")


# -- fleet -----------------------------------------------------------------------------------
@app.command()
def fleet(
    images: Annotated[list[str], typer.Argument(help="Image references, one per service.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Directory: one OCI layout per service (OUTPUT/NAME), report.md, report.html, fleet.json.")],
    probe_file: Annotated[str | None, typer.Option("--probe-file", help="TOML: service name (or image reference) = \\[\"http:8080/\", …] (probe specs).")] = None,
    scheduler: Annotated[str, typer.Option("--scheduler", help="tcp://HOST:PORT of a Dask scheduler (default: a local cluster sized to the machine).")] = "",
    workers: Annotated[int, typer.Option("--workers", help="Local cluster: worker processes (default: one per core, at most one per image).")] = 0,
    layers: Annotated[str, typer.Option("--layers", help="The layout written: shared (a shared base + a top per service), preserve (the original layers slimmed together) or squash (one layer each). All three are measured.")] = "shared",
    min_share: Annotated[int, typer.Option("--min-share", help="An entry joins the shared base when this many services keep it identically.")] = 2,
    mode: Annotated[str, typer.Option("--mode", help="Keep-set roots, as for `slim build`.")] = "",
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Run each service's probes against its original and its images and compare.")] = True,
    max_fixes: Annotated[int, typer.Option("--max-fixes", help="Repair rounds after a failed verification (per service).")] = 3,
    runner: RunnerOpt = "auto",
    network: NetworkOpt = "none",
    timeout: TimeoutOpt = 60.0,
    rules: RulesOpt = None,
    keep: KeepOpt = None,
    drop: DropOpt = None,
) -> None:
    """Slim many images together: a shared slim base + a thin top per service, verified; the
    footprint of every layout (as given, one layer, preserve, shared, unikernels)."""
    from slim.build import BuildOptions
    from slim.fleet import FleetOptions, read_probe_file, run_fleet, service_specs

    try:
        probes = read_probe_file(probe_file) if probe_file else {}
        specs = service_specs(images, probes)
        options = FleetOptions(
            output=output, layers=layers, scheduler=scheduler, workers=workers,
            min_share=min_share, analyze=_options(rules, keep, drop),
            build=BuildOptions(dest="", mode=mode, verify=verify, runner=runner,
                               network=network, timeout=timeout, max_fixes=max_fixes))
        outcome = run_fleet(specs, options, say=_say)
    except SlimError as exc:
        fail(exc)
    _print_fleet(outcome)


def _print_fleet(outcome: Any) -> None:
    """The fleet's table on stdout; exit 1 when a service failed verification."""
    from slim.emitters.report_fleet import render_fleet_markdown
    from slim.fleet import footprints

    try:
        feet = footprints(outcome) if outcome.stacks else []
    except SlimError as exc:
        fail(exc)
    if feet:
        typer.echo(render_fleet_markdown(outcome, feet))
    failed = [p for p in outcome.services if p.verified is False]
    failed += [p for p in outcome.published if p.verified is False]
    if failed:
        first = failed[0]
        why = (getattr(first, "failures", ()) or getattr(first, "differences", ()) or ("?",))[0]
        typer.echo(f"verification FAILED for {first.name}: {why}", err=True)
        typer.echo("nothing was written", err=True)
        raise typer.Exit(1)
    typer.echo(f"{outcome.output}: {len(outcome.published)} images written "
               f"({'verified' if all(p.verified for p in outcome.published) else 'NOT verified'})")


# -- diff, check, hook (the workflow commands) ------------------------------------------------
@app.command("diff")
def diff_cmd(
    base: Annotated[str, typer.Argument(help="The image before the change.")],
    head: Annotated[str, typer.Argument(help="The image after the change.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="text, markdown or json.")] = "text",
) -> None:
    """Bytes added and removed per layer, package and directory between two images."""
    from slim.diff import RENDERERS, diff_images

    try:
        if fmt not in RENDERERS:
            raise UsageError(f"--format {fmt}: unknown format (choose from {', '.join(sorted(RENDERERS))})")
        result = diff_images(base, head)
    except SlimError as exc:
        fail(exc)
    sys.stdout.write(RENDERERS[fmt](result))


def _check(image: str | None, config_file: str | None, use_cache: bool) -> int:
    """Evaluate the budget; print the verdicts; return the exit code (1 when a gate failed)."""
    import time
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from slim.budget import (
        BudgetConfig,
        evaluate,
        failed,
        find_config,
        read_config,
        resolve_reference,
    )
    from slim.check_cache import check_image

    started = time.monotonic()
    path = Path(config_file) if config_file else find_config()
    config = read_config(path) if path is not None else BudgetConfig()
    base_dir = path.resolve().parent if path is not None else Path.cwd()
    reference = image or (resolve_reference(config.image, base_dir) if config.image else None)
    if reference is None:
        where = f"{path}: image" if path is not None else "no .slim.toml or [tool.slim] found"
        raise UsageError(f"{where}: no image to check (give IMAGE or set `image` in the configuration)")
    checked = check_image(reference, config, use_cache=use_cache)
    base_result = None
    if config.base and (config.max_growth_bytes is not None or config.max_growth_percent is not None):
        base_result = check_image(resolve_reference(config.base, base_dir), config, use_cache=use_cache).result
    verdicts = evaluate(checked.result, config, base_result, forbidden_paths=checked.forbidden_paths)
    from slim.emitters import text_width

    console = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else text_width())
    elapsed = time.monotonic() - started
    console.print(Text(f"slim check: {reference} ({'cached' if checked.cached else 'analyzed'} in {elapsed:.2f} s; "
                       f"config {path or '-'})"), soft_wrap=True)
    if not verdicts:
        console.print("no gates configured (see docs/ci.md for the .slim.toml keys)")
        return 0
    table = Table(title="Budget", title_justify="left")
    for col in ("gate", "status", "measured", "threshold", "detail"):
        table.add_column(col, overflow="fold")
    for v in verdicts:
        style = {"pass": "green", "warn": "yellow", "fail": "bold red"}.get(v.status, "")
        table.add_row(Text(v.rule), Text(v.status, style=style), Text(v.measured), Text(v.threshold), Text(v.message))
    console.print(table)
    counts = {s: sum(1 for v in verdicts if v.status == s) for s in ("pass", "warn", "fail")}
    console.print(f"{counts['pass']} passed, {counts['warn']} warned, {counts['fail']} failed")
    return 1 if failed(verdicts) else 0


@app.command()
def check(
    image: Annotated[str | None, typer.Argument(help="Image reference (default: `image` of the configuration).")] = None,
    config: Annotated[str | None, typer.Option("--config", "-c", help="Budget file (default: nearest .slim.toml or pyproject.toml [tool.slim]).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Analyze again even when the image is unchanged.")] = False,
) -> None:
    """Evaluate the budget gates (size, removable %, efficiency, growth, forbidden paths and packages); exit 1 on a failure."""
    try:
        code = _check(image, config, use_cache=not no_cache)
    except SlimError as exc:
        fail(exc)
    raise typer.Exit(code)


hook_app = typer.Typer(help="Git hooks that run `slim check`.", no_args_is_help=True)
app.add_typer(hook_app, name="hook")


@hook_app.command("install")
def hook_install(
    force: Annotated[bool, typer.Option("--force", help="Replace a pre-push hook slim did not write.")] = False,
    init: Annotated[str, typer.Option("--init", metavar="IMAGE", help="No budget yet: write a starter .slim.toml checking IMAGE (gates commented out).")] = "",
) -> None:
    """Write .git/hooks/pre-push: `slim check` (slim on PATH, or the pre-commit hook) runs before every push and a failed gate stops it."""
    from slim.hook import install_hook

    try:
        path, starter = install_hook(force=force, init=init)
    except SlimError as exc:
        fail(exc)
    if starter is not None:
        typer.echo(f"slim: starter budget written to {starter} (uncomment the gates you want)")
    typer.echo(f"slim: pre-push hook written to {path}")


GLOBAL_FLAGS = ("--debug",)  # accepted anywhere on the command line, not only before the command


def hoist_global_flags(argv: list[str]) -> list[str]:
    """`argv` with GLOBAL_FLAGS moved in front of the command, so `slim analyze X --debug`
    means `slim --debug analyze X`. Arguments after `--` are left alone."""
    end = argv.index("--") if "--" in argv else len(argv)
    flags = [a for a in argv[:end] if a in GLOBAL_FLAGS]
    return flags + [a for a in argv[:end] if a not in GLOBAL_FLAGS] + argv[end:]


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, as SIGINT raises KeyboardInterrupt:
    every `finally` and context manager on the way out runs (temp dirs, staging dirs next to
    the output, the reader thread), so a terminated run cleans up as an interrupted one."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_CLEANUP_SIGNALS = ("SIGTERM", "SIGHUP")


def _on_signal(signum: int, _frame: object) -> None:
    import signal

    _state["signal"] = signum
    for name in _CLEANUP_SIGNALS:  # a second one must not cut the cleanup short
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    raise Terminated(signum)


def main() -> None:
    """Run the CLI. SIGTERM and SIGHUP unwind like SIGINT (KeyboardInterrupt) and exit with
    128 + the signal number after one line on stderr; SIGINT exits 130 the same way."""
    import signal

    from slim import tune_gc, tune_switching

    tune_gc()
    tune_switching()
    for name in _CLEANUP_SIGNALS:
        signal.signal(getattr(signal, name), _on_signal)
    try:
        app(args=hoist_global_flags(sys.argv[1:]), prog_name="slim")
    except SystemExit as exc:
        signum = _state.get("signal") or (signal.SIGINT if exc.code == 130 else 0)
        if signum:
            typer.echo(f"slim: interrupted by {signal.Signals(signum).name}; "
                       "temporary files removed", err=True)
            raise SystemExit(128 + signum) from None
        if isinstance(exc.code, int) or exc.code is None:
            _exit_now(exc.code or 0)
        raise


def _exit_now(code: int) -> NoReturn:
    """End the process without the interpreter's teardown, once the command is done.

    Freeing every module and object one by one took 0.25-0.3 s of each run (bench: a failing
    `slim analyze` 0.46 s -> 0.2 s), longer than most re-analyses. What the teardown does that
    matters still runs, in CPython's order: non-daemon threads are joined with the threading
    exit hooks (concurrent.futures shuts its pools and worker processes down there), then the
    atexit handlers run (logging, weakref finalizers, multiprocessing's children), then output
    is flushed. Falls back to a normal exit where those hooks are not there to call. An
    interrupt while waiting for them exits as one during the command does."""
    import atexit
    import signal
    import threading

    shutdown = getattr(threading, "_shutdown", None)
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if shutdown is None or run_exitfuncs is None:
        raise SystemExit(code)
    try:
        shutdown()
        run_exitfuncs()
    except KeyboardInterrupt:
        signum = _state.get("signal") or signal.SIGINT
        with suppress(OSError, ValueError):
            sys.stderr.write(f"slim: interrupted by {signal.Signals(signum).name}\n")
        code = 128 + signum
    try:
        sys.stdout.flush()
    except (OSError, ValueError):  # a closed pipe: the reader went away
        code = code or 1
    with suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
