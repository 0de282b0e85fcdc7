"""Measure `slim build` on the cached bench images (issue 6's note).

Per image and mode (static-only; traced = the trace and its static closure; both = static plus trace): original bytes, minimal bytes, the
reduction factor, build wall time, whether the minimal image passed its probe (verification:
the probe run against original and minimal and compared), the verify-fix count, and the bytes
the traced run really touched — the sizes of the distinct regular files of the image that the
original's traced run used (`Trace.used`, each resolved through symlinks in the image) — with
minimal/touched (issue 6 target: at most 1.3x).

Usage (root, bwrap and strace on the host; images from `python -m bench`):

    python -m bench.measure_build [--images python,perl] [--modes static,traced] [--json FILE]

Prints a Markdown table. The curl image's page is served on 127.0.0.1 as the bench does.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

from bench.build import cache_dir
from bench.images import CURL_SERVER_PORT, DEFAULT_IMAGES, IMAGES
from bench.measure import local_page
from slim.build import BuildOptions, build
from slim.errors import SlimError
from slim.fs.rootfs import RootFS
from slim.model import EntryKind
from slim.pipeline import AnalyzeOptions, load_image
from slim.tracers.probes import parse_probe
from slim.tracers.trace import Trace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildRow:
    image: str
    mode: str  # static | traced
    original_bytes: int
    minimal_bytes: int
    reduction: float
    seconds: float
    probe: str  # PASS | FAIL | ERROR
    fixes: int
    touched_bytes: int
    minimal_per_touched: float
    detail: str = ""


def touched_bytes(fs: RootFS, trace: Trace) -> int:
    """Bytes of the distinct regular files of the image that a traced run used."""
    seen: set[str] = set()
    total = 0
    for path in trace.used:
        res = fs.resolve(path)
        if not res.exists or res.path in seen:
            continue
        entry = fs.get(res.path)
        if entry is None or entry.kind is not EntryKind.FILE:
            continue
        seen.add(res.path)
        total += entry.size
    return total


def measure(name: str, mode: str, work: str, timeout: float = 120.0) -> BuildRow:
    spec = IMAGES[name]
    ref = f"oci:{os.path.join(cache_dir(), 'images', name, 'oci')}"
    dest = f"oci:{os.path.join(work, f'{name}-{mode}')}"
    options = BuildOptions(dest=dest, probes=(parse_probe(spec.probe),), mode=mode,
                           runner="sandbox", network="host", timeout=timeout)
    start = time.monotonic()
    try:
        outcome = build(ref, AnalyzeOptions(), options)
    except SlimError as exc:
        return BuildRow(name, mode, 0, 0, 0.0, time.monotonic() - start, "ERROR", 0, 0, 0.0,
                        str(exc)[:200])
    seconds = time.monotonic() - start
    assert outcome.built is not None
    touched = 0
    if outcome.trace is not None:
        with load_image(ref) as loaded:
            touched = touched_bytes(loaded.rootfs, outcome.trace)
    minimal = outcome.built.size_bytes
    original = outcome.result.image.size_bytes
    return BuildRow(
        name, mode, original, minimal, round(original / minimal, 2) if minimal else 0.0,
        round(seconds, 1), "PASS" if outcome.verified else "FAIL", len(outcome.fixes), touched,
        round(minimal / touched, 2) if touched else 0.0,
        outcome.failures[0][:200] if outcome.failures else "")


def table(rows: list[BuildRow]) -> str:
    mb = 1e6
    out = ["| image | mode | original MB | minimal MB | reduction | build s | probe | fixes "
           "| touched MB | minimal/touched |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r.image} | {r.mode} | {r.original_bytes / mb:.1f} | {r.minimal_bytes / mb:.1f} "
                   f"| {r.reduction:.1f}x | {r.seconds:.0f} | {r.probe} | {r.fixes} "
                   f"| {r.touched_bytes / mb:.1f} | {r.minimal_per_touched:.2f}x |")
    notes = [f"- {r.image} ({r.mode}): {r.detail}" for r in rows if r.detail]
    return "\n".join(out + (["", *notes] if notes else [])) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.measure_build", description=__doc__.split("\n")[0])
    ap.add_argument("--images", default=",".join(DEFAULT_IMAGES))
    ap.add_argument("--modes", default="static,both,traced", help="static, traced (trace only) and both")
    ap.add_argument("--json", default="", help="also write the rows as JSON here")
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args(argv)
    names = [n for n in args.images.split(",") if n]
    unknown = [n for n in names if n not in IMAGES]
    if unknown:
        ap.error(f"unknown images: {', '.join(unknown)}")
    rows: list[BuildRow] = []
    work = tempfile.mkdtemp(prefix="slim-measure-build-")
    try:
        with local_page(CURL_SERVER_PORT, b"<p>bench-curl-page</p>\n") as _:
            for name in names:
                for mode in [m for m in args.modes.split(",") if m]:
                    row = measure(name, mode, work, args.timeout)
                    print(f"{name} {mode}: {row.probe} {row.reduction}x in {row.seconds}s",
                          file=sys.stderr)
                    rows.append(row)
                    shutil.rmtree(os.path.join(work, f"{name}-{mode}"), ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.stdout.write(table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([asdict(r) for r in rows], f, indent=1)
    return 0 if all(r.probe == "PASS" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
