"""`slim build`: write the minimal image, prove it still works, repair it when it does not.

Flow: check the destination → run the original traced with its probes (the given ones, or the
image's default probes: slim.tracers.probes) → keep set = static closure plus everything that
run used (slim.pipeline; only `--mode static` leaves the run out) → refuse a hollow image (no
entrypoint program) → write the image to a temp sibling of the destination → run the same
concrete probes against it and compare, differentially, with the original (slim.verify: exit
codes, normalized outputs, HTTP status, headers and bodies, TCP replies, missing-file events)
→ on a difference, add the paths the original used that the minimal image lacked (plus their
static closure) as `verify-fix` edges, rebuild, retry (bounded) → move the image into place
only when verified (or with keep_unverified). Nothing half-written remains.

A probe that fails on the ORIGINAL is reported and left out (the build goes on with the probes
that pass; none passing is an error, as is any failure with `strict_probes`).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from slim import reaper
from slim.emitters.image import LAYER_MODES, BuiltImage, Writing, lay_image
from slim.emitters.imagewriter import is_slim_layout
from slim.errors import EmitError, TraceError, UsageError
from slim.fs.layer import Capture
from slim.image import LoadedImage, load
from slim.outputs import check_output
from slim.pipeline import (
    Analysis,
    AnalyzeOptions,
    Meanwhile,
    StaticStart,
    analyze,
    cancelled_on_error,
    load_image,
    probe_outcomes,
)
from slim.programs import which
from slim.progress import SILENT, Phases
from slim.refs import OutputRef, image_name_problem, parse_output, split_name
from slim.result import AnalysisResult, ProbeOutcome
from slim.tracers import RunOptions, RunResult, choose_runner, run_image
from slim.tracers.hostroot import ACCOUNT_TABLES
from slim.tracers.probes import Probe
from slim.tracers.trace import Trace
from slim.verify import RUNTIME_PREFIXES, Verification, missing_files, verify

log = logging.getLogger(__name__)

Say = Callable[[str], None]
MODES = ("static", "traced", "both")


@dataclass(frozen=True)
class BuildOptions:
    dest: str  # oci:DIR | oci-archive:FILE | docker-archive:FILE | docker://REF
    probes: tuple[Probe, ...] = ()
    mode: str = ""  # static | traced | both; "": both when the original runs, else static
    verify: bool = True
    runner: str = "auto"
    network: str = "none"  # the app's own network namespace; "host" shares the host's
    timeout: float = 60.0
    keep_base: int = 0
    max_fixes: int = 3
    keep_unverified: bool = False
    load: bool = False  # load a docker-archive output into the Docker daemon
    tag: str = ""  # NAME:TAG of the output (default: the source's repository with tag "slim")
    strict_probes: bool = False  # a probe failing on the original is fatal
    compression: str = "gzip"
    sbom: str = ""  # --sbom cyclonedx|spdx: an SBOM of the minimal image (slim.emitters.sbom)
    layers: str = "squash"  # squash | preserve (slim.emitters.image.LAYER_MODES)

    @property
    def run(self) -> RunOptions:
        return RunOptions(self.probes, self.runner, self.network, self.timeout)


@dataclass(frozen=True)
class BuildOutcome:
    result: AnalysisResult
    built: BuiltImage
    verified: bool | None  # None: not verified (no runner / --no-verify)
    fixes: list[dict[str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    trace: Trace | None = None  # the original's traced run (verification or --trace), if any
    verification: Verification | None = None  # what was compared, when verified
    dropped: list[ProbeOutcome] = field(default_factory=list)  # probes failing on the original
    unverified_why: str = ""  # when verified is None: why nothing was compared
    original: RunResult | None = None  # the original's run (what the minimal one was compared with)


def check_destination(dest: str, options: BuildOptions) -> OutputRef:
    """Parse and check the output before any work. Raises UsageError / EmitError."""
    out = parse_output(dest)
    if options.mode and options.mode not in MODES:
        raise UsageError(f"--mode {options.mode}: choose {', '.join(MODES)}")
    # the output's directory must exist (as for `docker save -o`): slim writes nothing outside
    # the output it was given, parents included
    if out.transport == "oci":
        check_output(out.location, what="OCI layout", directory=True, is_previous=is_slim_layout)
    elif out.transport != "docker":
        check_output(out.location, what="image archive")
    if options.layers not in LAYER_MODES:
        raise UsageError(f"--layers {options.layers}: choose {', '.join(LAYER_MODES)}")
    if options.layers != "squash" and options.keep_base:
        raise UsageError("--layers preserve keeps every layer already; drop --keep-base")
    if options.load and out.transport != "docker-archive":
        raise UsageError("--load needs a docker-archive:FILE output")
    names = [("--tag", options.tag)] if options.tag else []
    if out.tag and out.transport in ("docker-archive", "docker"):
        names.append((str(out), out.tag))
    for what, name in names:
        if problem := image_name_problem(name):
            raise UsageError(f"{what} {name!r}: {problem}")
    try:  # the image is staged next to its destination: prove that works before any work
        os.rmdir(tempfile.mkdtemp(prefix=".slim-check-", dir=_work_parent(out)))
    except OSError as exc:
        raise EmitError(f"{out}: cannot stage the image next to it: {exc.strerror}") from None
    return out


def _fix_candidates(original: RunResult, minimal: RunResult | None, loaded: LoadedImage,
                    keep: set[str]) -> list[str]:
    """Paths the original run found that the minimal run looked up and missed, and anything the
    original used that is not kept at all (a lookup the minimal run skipped)."""
    fs = loaded.rootfs

    def kept(path: str) -> bool:
        # a trace names paths as the app spelled them (/lib/x86_64-linux-gnu/libz.so.1 through
        # the /lib link); the keep set holds canonical paths and the links crossed to them
        if path in keep:
            return True
        res = fs.resolve(path)
        return res.exists and res.path in keep and all(link in keep for link in res.links)

    def in_image(path: str) -> bool:
        return fs.lexists(path) or fs.exists(path)

    out = set(missing_files(original, minimal)) if minimal is not None else set()
    out = {p for p in out if in_image(p) and not kept(p)}
    for path in original.trace.used:
        if (path != "/" and in_image(path) and not path.startswith(RUNTIME_PREFIXES)
                and not kept(path)):
            out.add(path)
    return sorted(out)


def _fix_reason(path: str, failures: list[str]) -> str:
    """Why `path` is added back: the differences that name it, else all of them."""
    name = os.path.basename(path)
    naming = [f for f in failures if name and name in f]
    return "; ".join(naming or failures)[:400]


def _stage(out: OutputRef, work: str) -> OutputRef:
    """Where to write before the image is proven: a temp location of the same kind."""
    if out.transport == "docker":
        return OutputRef("oci", os.path.join(work, "push"), "latest")
    name = "image.oci" if out.transport == "oci" else "image.tar"
    return out.with_location(os.path.join(work, name))


def _publish(staged: OutputRef, out: OutputRef) -> None:
    """Move a staged image into place (or push it); replaces an existing destination whole."""
    if out.transport == "docker":
        skopeo = shutil.which("skopeo")
        if skopeo is None:
            raise EmitError(f"{out}: skopeo is needed to push (apt-get install skopeo)")
        tls = os.environ.get("SLIM_REGISTRY_TLS_VERIFY", "true").lower() not in ("0", "false", "no")
        cmd = [skopeo, "copy", "--quiet", *([] if tls else ["--dest-tls-verify=false"]),
               f"oci:{staged.location}:{staged.tag}", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            raise EmitError(f"{out}: push failed: {lines[-1] if lines else proc.returncode}")
        return
    target = os.path.realpath(out.location) if os.path.islink(out.location) else out.location
    old = ""
    try:
        if os.path.isdir(target):  # a previous slim layout (checked before any work)
            old = tempfile.mkdtemp(prefix=".slim-old-", dir=os.path.dirname(os.path.abspath(target)))
            os.rmdir(old)
            os.replace(target, old)
        os.replace(staged.location, target)
    except OSError as exc:
        if old and not os.path.exists(target):
            os.replace(old, target)
        raise EmitError(f"{out}: cannot publish the image: {exc.strerror}") from None
    if old:
        shutil.rmtree(old, ignore_errors=True)


def _load_into_daemon(archive: str, tag: str) -> None:
    from slim.sources.daemon import docker_client
    from slim.tracers.docker import wait_for_removals

    wait_for_removals()  # verification loaded this image and removes it in the background
    client = docker_client()
    with open(archive, "rb") as f:
        images = client.images.load(f.read() if os.path.getsize(archive) < (1 << 26) else f)
    if images and tag:
        repo, short = split_name(tag)
        images[0].tag(repo, short or "latest")


def _trace_original(loaded: LoadedImage, options: BuildOptions, say: Say,
                    progress: Phases, meanwhile: Meanwhile) -> tuple[RunResult | None, list[ProbeOutcome], str]:
    """(the original's traced run, the probes dropped because they fail on it, why there is
    no run); no run when verification is off or no runner works here (and the mode does not
    need one). Raises TraceError when the original cannot run at all, or fails every probe.
    `meanwhile` starts the static analysis once the image is ready and names the run's phase."""
    needs_run = options.mode in ("traced", "both")
    if not (options.verify or needs_run):
        return None, [], "--no-verify"
    try:
        choose_runner(options.runner)
    except TraceError as exc:
        if needs_run:
            raise
        say(f"verification skipped: {exc}")
        return None, [], f"no runner works on this host: {exc}"
    progress.phase("preparing the original image for its traced run")
    original = run_image(loaded, options.run, on_ready=meanwhile)
    if not original.trace.executed:
        why = original.stderr_tail.strip().splitlines()[-1:] or [f"exit code {original.exit_code}"]
        raise TraceError(f"{loaded.image.ref}: the ORIGINAL image does not start ({why[0][:300]}); "
                         "nothing to verify against")
    failed = [p for p in original.probes if not p.passed]
    if original.probes and len(failed) == len(original.probes):
        raise TraceError(f"{loaded.image.ref}: the ORIGINAL image fails every probe ({failed[0].spec}: "
                         f"{failed[0].detail}); nothing to verify against")
    if failed and options.strict_probes:
        raise TraceError(f"{loaded.image.ref}: the ORIGINAL image fails {failed[0].spec} "
                         f"({failed[0].detail}) and --strict-probes is set")
    for p in failed:
        say(f"probe left out: it fails on the ORIGINAL image: {p.spec}: {p.detail}")
    return original, failed, "" if options.verify else "--no-verify"


def verify_image(staged: OutputRef | str, original: RunResult,
                 options: BuildOptions) -> tuple[RunResult | None, Verification]:
    """Run the original's concrete probes against a written image and compare the runs
    (slim.verify). Raises SourceError / LayerError when the image cannot be read."""
    probes = tuple(original.resolved)
    # run, not analyzed: only the account files are read (USER is looked up in them)
    with load(str(staged), capture=Capture(globs=ACCOUNT_TABLES)) as slim_loaded:
        try:
            minimal = run_image(slim_loaded, replace(options.run, probes=probes))
        except TraceError as exc:
            return None, Verification((), failures=(f"the minimal image did not start: {exc}",))
    specs = {o.spec for o in minimal.observations} | {"run"}
    compared = replace(original, observations=[o for o in original.observations if o.spec in specs])
    return minimal, verify(compared, minimal)


def _check_not_hollow(loaded: LoadedImage, keep: set[str]) -> None:
    """Refuse an image that could not start: no entrypoint, or its program not kept."""
    config = loaded.image.config
    if not config.argv:
        raise EmitError(f"{loaded.image.ref}: the image has neither Entrypoint nor Cmd; "
                        "refusing to write an image that runs nothing")
    fs = loaded.rootfs
    program = which(fs, config.argv[0], config.path_dirs, config.workdir or "/")
    real = fs.realpath(program) if program else ""
    if not program or real not in keep:
        raise EmitError(f"{loaded.image.ref}: the minimal image would not hold the entrypoint program "
                        f"{config.argv[0]!r}; refusing to write a hollow image")


def output_tag(options: BuildOptions, loaded: LoadedImage, out: OutputRef) -> str | None:
    """The output's name: --tag, else the source's repository with tag `slim`, else none
    (never `latest:latest`, which `docker load` would take from another image)."""
    if options.tag:
        return options.tag
    if out.tag:
        return None  # the destination names it (oci:DIR:TAG, docker-archive:FILE:NAME)
    for name in loaded.image.names:
        repo, _ = split_name(name.split("@", 1)[0])
        if repo and repo != "<none>":
            return f"{repo}:slim"
    return None


def build(reference: str, analyze_options: AnalyzeOptions, options: BuildOptions,
          say: Say | None = None, progress: Phases = SILENT) -> BuildOutcome:
    """Analyze, write, verify and repair. Raises SlimError subclasses; returns the outcome.
    `say` gets one-line notes (a probe left out, a repair), `progress` the phases.

    The output appears at options.dest only when verified, or when verification was off or
    impossible, or with keep_unverified.
    """
    say = say or (lambda _msg: None)
    check_destination(options.dest, options)
    progress.phase("reading layers", unit="bytes")
    with load_image(reference, on_bytes=progress.advance) as loaded:
        return build_loaded(loaded, analyze_options, options, say, progress)


def build_loaded(loaded: LoadedImage, analyze_options: AnalyzeOptions, options: BuildOptions,
                 say: Say | None = None, progress: Phases = SILENT) -> BuildOutcome:
    """`build` on an image already loaded (its destination checked). Raises SlimError."""
    say = say or (lambda _msg: None)
    start = time.monotonic()
    out = parse_output(options.dest)
    # the static part of the analysis runs while the original runs traced, once the image is
    # ready in the runner (pipeline.Meanwhile); beside a load or an unpack (Python streams in
    # this process) it would only slow them down
    overlap = (options.mode in ("", "both") and analyze_options.static and analyze_options.static_roots
               and (options.verify or options.mode == "both"))
    meanwhile = Meanwhile(loaded, analyze_options if overlap else None, progress,
                          "running the original image traced")
    with cancelled_on_error(meanwhile):
        original, dropped, why_not = _trace_original(loaded, options, say, progress, meanwhile)
        static = meanwhile.start
        mode = options.mode or ("both" if original is not None else "static")
        options = replace(options, mode=mode)
        trace = original.trace if original is not None and mode != "static" else None
        if mode != "static" and original is not None:
            # traced: the run's files and their static closure; both: plus the entrypoint's
            analyze_options = replace(analyze_options, static_roots=mode == "both")
        if static is not None and static.options != analyze_options:
            meanwhile.cancel()  # begun for other options than the analysis ends up with
            static = None
        try:
            work = reaper.mkdtemp(prefix=".slim-build-", dir=_work_parent(out))
        except OSError as exc:
            raise EmitError(f"{out}: cannot stage the image next to it: {exc.strerror}") from None
    try:
        outcome = _build_loop(loaded, analyze_options, options, out, original, trace, work,
                              (say, progress), start, static)
    finally:
        reaper.remove_tree(work)
    return replace(outcome, dropped=dropped, unverified_why=why_not if outcome.verified is None else "")


def _build_loop(loaded: LoadedImage, analyze_options: AnalyzeOptions, options: BuildOptions,
                out: OutputRef, original: RunResult | None, trace: Trace | None, work: str,
                report: tuple[Say, Phases], start: float, static: StaticStart | None = None) -> BuildOutcome:
    """Write → verify → repair, at most options.max_fixes + 1 times. The first analysis is
    taken over from `static` (begun with `analyze_options`)."""
    say, progress = report
    fixes: list[dict[str, str]] = []
    tag = output_tag(options, loaded, out)
    for attempt in range(options.max_fixes + 1):
        analysis = analyze(loaded, analyze_options, trace=trace, progress=progress,
                           start=static if attempt == 0 else None)
        assert analysis.closure is not None
        keep = analysis.closure.keep
        _check_not_hollow(loaded, keep)
        trydir = os.path.join(work, f"try{attempt}")
        os.makedirs(trydir)
        staged = _stage(out, trydir)
        progress.phase(f"writing the minimal image ({len(keep)} paths)")
        with lay_image(loaded, keep, keep_base=options.keep_base, tag=tag, sbom=options.sbom,
                       layers=options.layers) as laid:
            if not (options.verify and original is not None):
                built = laid.write(str(staged), options.compression)
                _publish(staged, out)
                return _outcome(analysis, built, None, fixes, None, options, start, original)
            # the probes run against the plain form (no compressing before, nor decompressing
            # in the runner) while the compressed one is written on the other core: the same
            # config and diff_ids, so the same image ID (checked in _written)
            plain = laid.write(f"docker-archive:{os.path.join(trydir, 'verify.tar')}", "none")
            final = laid.writing(str(staged), options.compression)
            progress.phase("verifying: the same probes against the minimal image")
            minimal, verification = verify_image(plain.dest, original, options)
            if verification.verified:
                built = _written(final, plain)
                _publish(staged, out)
                return _outcome(analysis, built, True, fixes, verification, options, start, original)
            failures = verification.differences
            candidates = _fix_candidates(original, minimal, loaded, keep)
            if not candidates or attempt == options.max_fixes:
                if options.keep_unverified:
                    built = _written(final, plain)
                    _publish(staged, out)
                else:
                    final.cancel()
                    built = plain
                return _outcome(analysis, built, False, fixes, verification, options, start, original)
            final.cancel()
        fixes += [{"path": p, "reason": _fix_reason(p, failures), "attempt": str(attempt + 1)}
                  for p in candidates]
        analyze_options = replace(analyze_options, fixes=tuple(analyze_options.fixes) + tuple(candidates))
        say(f"verification found {len(failures)} differences ({failures[0]}); "
            f"adding {len(candidates)} paths and retrying")
    raise AssertionError("unreachable")  # pragma: no cover


def _written(final: Writing, plain: BuiltImage) -> BuiltImage:
    """The compressed image `final` wrote, once it is proven the image `plain` (verified) is:
    the same image ID, so the same config and layer diff_ids. Raises EmitError."""
    built = final.result()
    if built.digest != plain.digest:
        raise EmitError(f"{final.dest}: written as {built.digest}, but the image verified is "
                        f"{plain.digest}; not published")
    return built


def _publish_sbom(built: BuiltImage, options: BuildOptions) -> dict[str, str] | None:
    """Where the build's SBOM went: a referrer in an OCI layout (written with the image), or
    beside a docker-archive (FILE.cdx.json / FILE.spdx.json, written here). Raises EmitError."""
    if not built.sbom:
        return None
    from slim.emitters.sbom import SBOM_FORMATS, sbom_beside
    from slim.outputs import write_file

    out = parse_output(options.dest)
    fmt = SBOM_FORMATS[built.sbom_format]
    if out.transport == "docker-archive":
        path = sbom_beside(out.location, fmt.name)
        write_file(path, built.sbom, what="SBOM")
        return {"format": fmt.name, "media_type": fmt.media_type, "path": path}
    return {"format": fmt.name, "media_type": fmt.media_type, "attached_to": built.digest}


def _work_parent(out: OutputRef) -> str | None:
    """Stage next to the destination so the final move is a rename on the same filesystem."""
    if out.transport == "docker":
        return None
    target = os.path.realpath(out.location) if os.path.islink(out.location) else out.location
    return os.path.dirname(os.path.abspath(target))


def _outcome(analysis: Analysis, built: BuiltImage, verified: bool | None,
             fixes: list[dict[str, str]], verification: Verification | None, options: BuildOptions,
             start: float, original: RunResult | None) -> BuildOutcome:
    result = analysis.result
    if original is not None:
        result = replace(result, syscalls_traced=original.trace.syscall_names,
                         probes=probe_outcomes(original))
    published = bool(verified) or verified is None or options.keep_unverified
    if options.load and published:
        _load_into_daemon(parse_output(options.dest).location, options.tag)
    result = replace(result, packages=list(built.packages) or result.packages)
    sbom = _publish_sbom(built, options) if published else None
    reduction = result.image.size_bytes / built.size_bytes if built.size_bytes else 0.0
    result = replace(result, build={
        "output": options.dest if published else "",
        "digest": built.digest,
        "size_bytes": built.size_bytes,
        "reduction": round(reduction, 2),
        "verified": verified,
        "mode": options.mode,
        "fixes": fixes,
        "verification": [] if verification is None else [
            {"spec": c.spec, "compared": c.compared, "differences": list(c.differences)}
            for c in verification.comparisons],
        "missing_files": list(verification.missing_files) if verification else [],
        **({"sbom": sbom} if sbom else {}),
    })
    return BuildOutcome(result, built, verified, fixes,
                        verification.differences if verification else [],
                        time.monotonic() - start, original.trace if original is not None else None,
                        verification, original=original)


__all__ = ["MODES", "BuildOptions", "BuildOutcome", "build", "build_loaded", "check_destination",
           "verify_image"]
