"""Measure `slim fleet` on the bench images (issue 18): the footprint table of all of them as
one fleet, and the wall time with 1 and 2 local Dask workers.

Usage (root, bwrap and strace on the host; images built by `python -m bench` if missing):

    python -m bench.fleet [--images lighttpd,python] [--workers 1,2] [--output bench/results/fleet.md]

Each image's probe is its bench probe (bench/images.py); the runs share the host's network
(`--network host`, as bench.measure_build) so the curl image reaches the page the bench serves
on 127.0.0.1. The fleet's output goes to a temporary directory and is removed afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time

from bench.build import build_image, cache_dir
from bench.cli import machine
from bench.images import CURL_SERVER_PORT, DEFAULT_IMAGES, IMAGES
from bench.measure import local_page
from slim.build import BuildOptions
from slim.emitters.report_fleet import render_fleet_markdown
from slim.fleet import FleetOptions, FleetOutcome, footprints, run_fleet, service_specs
from slim.tracers.probes import parse_probe

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_once(names: list[str], workers: int, out: str) -> FleetOutcome:
    refs = [f"oci:{os.path.join(cache_dir(), 'images', n, 'oci')}" for n in names]
    for n in names:
        build_image(IMAGES[n])  # cached after the first build
    probes = {n: (parse_probe(IMAGES[n].probe),) for n in names}
    specs = service_specs(refs, {})
    specs = [s.__class__(n, s.reference, probes[n]) for s, n in zip(specs, names, strict=True)]
    options = FleetOptions(output=out, workers=workers,
                           build=BuildOptions(dest="", runner="sandbox", network="host", timeout=120.0))
    return run_fleet(specs, options, say=lambda m: print(f"  {m}", file=sys.stderr))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.split("\n")[0])
    ap.add_argument("--images", default=",".join(DEFAULT_IMAGES))
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--output", default=os.path.join(REPO, "bench", "results", "fleet.md"))
    args = ap.parse_args(argv)
    names = [n for n in args.images.split(",") if n]
    times: list[tuple[int, float, bool]] = []
    outcome = None
    with local_page(CURL_SERVER_PORT, b"<p>bench-curl-page</p>\n"):
        for workers in [int(w) for w in args.workers.split(",") if w]:
            work = tempfile.mkdtemp(prefix="slim-bench-fleet-")
            try:
                start = time.monotonic()
                outcome = run_once(names, workers, os.path.join(work, "fleet"))
                times.append((workers, time.monotonic() - start, outcome.verified))
                print(f"{workers} workers: {times[-1][1]:.0f} s, verified {outcome.verified}",
                      file=sys.stderr)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    assert outcome is not None
    lines = ["# slim fleet on the bench images", "",
             f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC  ",
             f"machine: {machine()}", "",
             f"command: `flock /tmp/slim-heavy.lock python -m bench.fleet --images {','.join(names)} "
             f"--workers {args.workers}` (as root; probes from bench/images.py, `--network host`)", "",
             "## Wall time (build + verify every image, write every layout, publish and verify "
             "the shared layout)", "", "| local workers | wall time | verified |", "|---|---|---|"]
    lines += [f"| {w} | {s:.0f} s | {'yes' if ok else 'NO'} |" for w, s, ok in times]
    lines += ["", render_fleet_markdown(outcome, footprints(outcome)).replace("# slim fleet", "## slim fleet", 1)]
    text = "\n".join(lines) + "\n"
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    sys.stdout.write(text)
    return 0 if all(ok for _, _, ok in times) else 1


if __name__ == "__main__":
    sys.exit(main())
