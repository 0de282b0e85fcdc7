"""`slim build`: write the minimal image, prove it still works, repair it when it does not.

Flow: trace the original when probes are given (or verification is on) → keep set = static
closure plus traced paths → write the image to a temp sibling of the destination → run the same
probes against it and compare outcomes with the original's (exit code and output, HTTP status
and body, TCP reply) → on a difference, add the paths the original used that the minimal image
lacked (plus their static closure) as `verify-fix` edges, rebuild, retry (bounded) → move the
image into place only when verified (or with keep_unverified). Nothing half-written remains.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from slim.emitters.image import BuiltImage, build_image
from slim.errors import EmitError, TraceError, UsageError
from slim.fs.extract import prepare_root
from slim.pipeline import AnalyzeOptions, LoadedImage, analyze, load
from slim.result import AnalysisResult, ProbeOutcome
from slim.sources.directory import DirectoryImage
from slim.tracers import RunResult, choose_runner
from slim.tracers.probes import Probe, compare_observations, default_probes
from slim.tracers.trace import Trace

log = logging.getLogger(__name__)

Say = Callable[[str], None]
MODES = ("static", "traced", "both")


@dataclass
class BuildOptions:
    dest: str  # oci:DIR | oci-archive:FILE | docker-archive:FILE | docker://REF
    probes: list[Probe] = field(default_factory=list)
    mode: str = "static"  # static | traced | both: where the keep set's roots come from
    verify: bool = True
    runner: str = "auto"
    network: str = "host"
    timeout: float = 60.0
    keep_base: int = 0
    max_fixes: int = 3
    keep_unverified: bool = False
    load_tag: str = ""  # --load --tag NAME: load into the Docker daemon
    compression: str = "gzip"


@dataclass
class BuildOutcome:
    result: AnalysisResult
    built: BuiltImage | None
    verified: bool | None  # None: not verified (no runner / --no-verify)
    fixes: list[dict[str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    trace: Trace | None = None  # the original's traced run (verification or --trace), if any


def run_traced(loaded: LoadedImage, probes: list[Probe], *, runner: str = "auto",
               network: str = "host", timeout: float = 60.0) -> RunResult:
    """Run `loaded`'s image under the chosen runner with `probes`. Raises TraceError."""
    config = loaded.image.config
    with tempfile.TemporaryDirectory(prefix="slim-run-") as work:
        root = prepare_root(loaded.image, work)
        return choose_runner(runner).run(
            root, config, probes or default_probes(config), network=network, timeout=timeout,
            writable=not isinstance(loaded.image, DirectoryImage),
        )


def _fix_candidates(original: RunResult, minimal: RunResult, loaded: LoadedImage, keep: set[str]) -> list[str]:
    """Paths the original run found that the minimal run looked up and missed."""
    fs = loaded.rootfs

    def kept(path: str) -> bool:
        # a trace names paths as the app spelled them (/lib/x86_64-linux-gnu/libz.so.1 through
        # the /lib link); the keep set holds canonical paths and the links crossed to them
        if path in keep:
            return True
        res = fs.resolve(path)
        return res.exists and res.path in keep and all(link in keep for link in res.links)

    out = []
    for path, acc in sorted(minimal.trace.paths.items()):
        if acc.found or not acc.errors:
            continue
        orig = original.trace.paths.get(path)
        if orig is None or not orig.found:
            continue
        if kept(path) or not (fs.lexists(path) or fs.exists(path)):
            continue
        out.append(path)
    # and anything the original used that is not kept at all (a lookup the minimal run skipped)
    for path in original.trace.used:
        if (path != "/" and (fs.lexists(path) or fs.exists(path)) and path not in out
                and not path.startswith(("/proc", "/sys", "/dev")) and not kept(path)):
            out.append(path)
    return sorted(set(out))


def _split_dest(dest: str) -> tuple[str, str, str]:
    """(transport, host path, tag) of a file destination: oci:DIR[:TAG], *-archive:FILE[:NAME]."""
    transport, _, rest = dest.partition(":")
    if transport == "oci":
        path, sep, tag = rest.rpartition(":")
        if sep and "/" not in tag and not os.path.exists(rest):
            return transport, path, tag
    return transport, rest, ""


def _stage_dest(dest: str, work: str) -> str:
    """Where to write before the image is proven: a temp location of the same kind."""
    if dest.startswith("docker://"):
        return f"oci:{os.path.join(work, 'push')}:latest"
    transport, _, tag = _split_dest(dest)
    if transport == "oci":
        return f"oci:{os.path.join(work, 'image.oci')}" + (f":{tag}" if tag else "")
    if transport in ("oci-archive", "docker-archive"):
        return f"{transport}:{os.path.join(work, 'image.tar')}"
    raise EmitError(f"{dest}: output must be oci:DIR, oci-archive:FILE, docker-archive:FILE or docker://REF")


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _publish(staged: str, dest: str) -> None:
    """Move a staged image into place (or push it); replaces an existing destination whole."""
    if dest.startswith("docker://"):
        skopeo = shutil.which("skopeo")
        if skopeo is None:
            raise EmitError(f"{dest}: skopeo is needed to push (apt-get install skopeo)")
        tls = os.environ.get("SLIM_REGISTRY_TLS_VERIFY", "true").lower() not in ("0", "false", "no")
        cmd = [skopeo, "copy", "--quiet", *([] if tls else ["--dest-tls-verify=false"]), staged, dest]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            raise EmitError(f"{dest}: push failed: {lines[-1] if lines else proc.returncode}")
        return
    _, src, _ = _split_dest(staged)
    _, target, _ = _split_dest(dest)
    os.makedirs(os.path.dirname(os.path.abspath(target)) or ".", exist_ok=True)
    # the old destination moves aside first, so a failed move never leaves a mix of both
    old = target + ".slim-old"
    _remove(old)
    if os.path.lexists(target):
        os.replace(target, old)
    shutil.move(src, target)
    _remove(old)


def _load_into_daemon(built_archive: str, tag: str) -> None:
    from slim.sources.daemon import docker_client

    client = docker_client()
    with open(built_archive, "rb") as f:
        images = client.images.load(f.read() if os.path.getsize(built_archive) < (1 << 26) else f)
    if images and tag:
        repo, _, t = tag.rpartition(":") if ":" in tag.rsplit("/", 1)[-1] else (tag, "", "latest")
        images[0].tag(repo or tag, t or "latest")


def build(reference: str, analyze_options: AnalyzeOptions, options: BuildOptions,
          say: Say | None = None) -> BuildOutcome:
    """Analyze, write, verify and repair. Raises SlimError subclasses; returns the outcome.

    The output appears at options.dest only when verified, or when verification was off or
    impossible, or with keep_unverified.
    """
    say = say or (lambda _msg: None)
    start = time.monotonic()
    with load(reference) as loaded:
        original: RunResult | None = None
        runner_ok = True
        if options.mode not in MODES:
            raise UsageError(f"--mode {options.mode}: choose {', '.join(MODES)}")
        traced_mode = options.mode != "static"
        if options.verify or traced_mode:
            try:
                say("tracing the original image")
                original = run_traced(loaded, options.probes, runner=options.runner,
                                      network=options.network, timeout=options.timeout)
            except TraceError as exc:
                if traced_mode:
                    raise
                runner_ok = False
                say(f"verification skipped: {exc}")
            if original is not None and not original.passed:
                failed = [p for p in original.probes if not p.passed]
                detail = failed[0].detail if failed else f"exit code {original.exit_code}"
                raise TraceError(f"{reference}: the ORIGINAL image fails its probes ({detail}); nothing to compare against")
        if traced_mode and original is not None:
            analyze_options.trace = original.trace
            # traced: the run's files and their static closure; both: plus the entrypoint's
            analyze_options.static_roots = options.mode == "both"
        fixes: list[dict[str, str]] = []
        work = tempfile.mkdtemp(prefix="slim-build-", dir=_work_parent(options.dest))
        try:
            for attempt in range(options.max_fixes + 1):
                result, closure = analyze(loaded, analyze_options)
                assert closure is not None
                staged = _stage_dest(options.dest, os.path.join(work, f"try{attempt}"))
                os.makedirs(os.path.join(work, f"try{attempt}"), exist_ok=True)
                say(f"writing the minimal image ({len(closure.keep)} paths)")
                built = build_image(loaded, closure.keep, staged, keep_base=options.keep_base,
                                    compression=options.compression)
                if not (options.verify and runner_ok and original is not None):
                    _publish(staged, options.dest)
                    return _outcome(result, built, None, fixes, [], options, start, original)
                say("verifying: running the probes against the minimal image")
                with load(staged) as slim_loaded:
                    try:
                        minimal = run_traced(slim_loaded, options.probes, runner=options.runner,
                                             network=options.network, timeout=options.timeout)
                    except TraceError as exc:
                        minimal = None
                        failures = [f"minimal image did not start: {exc}"]
                if minimal is not None:
                    failures = [f"{p.spec}: {p.detail}" for p in minimal.probes if not p.passed]
                    if not minimal.probes and not minimal.passed:
                        failures.append(f"exit code {minimal.exit_code}: {minimal.stderr_tail[-300:]}")
                    failures += compare_observations(original.observations, minimal.observations)
                if not failures:
                    _publish(staged, options.dest)
                    return _outcome(result, built, True, fixes, [], options, start, original)
                candidates = _fix_candidates(original, minimal, loaded, closure.keep) if minimal else sorted(
                    p for p in original.trace.used if p not in closure.keep and loaded.rootfs.lexists(p))
                if not candidates or attempt == options.max_fixes:
                    if options.keep_unverified:
                        _publish(staged, options.dest)
                    return _outcome(result, built, False, fixes, failures, options, start, original)
                for path in candidates:
                    fixes.append({"path": path, "reason": failures[0][:200], "attempt": str(attempt + 1)})
                    analyze_options.fixes.append(path)
                say(f"verification failed ({failures[0]}); adding {len(candidates)} paths and retrying")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    raise AssertionError("unreachable")  # pragma: no cover


def _work_parent(dest: str) -> str | None:
    """Stage next to the destination so the final move is a rename on the same filesystem."""
    if dest.startswith("docker://"):
        return None
    target = dest.split(":", 1)[-1]
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    return parent


def _outcome(result: AnalysisResult, built: BuiltImage, verified: bool | None, fixes: list[dict[str, str]],
             failures: list[str], options: BuildOptions, start: float, original: RunResult | None) -> BuildOutcome:
    if original is not None:
        result.syscalls_traced = original.trace.syscall_names
        result.probes = sorted(original.probes, key=lambda p: p.spec) if original.probes else [
            ProbeOutcome("run", original.passed, f"exit code {original.exit_code}")]
    published = bool(verified) or verified is None or options.keep_unverified
    if options.load_tag and published and options.dest.startswith("docker-archive:"):
        _load_into_daemon(options.dest.split(":", 1)[1], options.load_tag)
    reduction = result.image.size_bytes / built.size_bytes if built.size_bytes else 0.0
    result.build = {
        "output": options.dest if published else "",
        "digest": built.digest,
        "size_bytes": built.size_bytes,
        "reduction": round(reduction, 2),
        "verified": verified,
        "fixes": fixes,
    }
    return BuildOutcome(result, built, verified, fixes, failures, time.monotonic() - start,
                        original.trace if original is not None else None)
