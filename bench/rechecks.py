"""The second time: each slim command that reads an image, run twice on one unchanged image.

    python -m bench.rechecks [--images a,b] [--output FILE]

Issue 17 asks for re-checks "in a blink": after a first run has filled slim's caches (a
private cache directory per image, nothing else in it), the same command on the same image
should not analyze it again. For every cached bench image (docker-archive), in a fresh cache
directory, in this order:

- `analyze -f json`, then the same again;
- `why` of a kept path (the entrypoint's program), of a path that is not kept (/usr/share/doc)
  and of a path spelled through a directory link when the image has one (/lib/… for /usr/lib/…):
  the first `why` after `analyze` already reads what the analysis stored;
- `analyze -f html` twice; `graph --to PATH` twice (another focus the second time:
  `--from ENTRYPOINT --depth 2`); `seccomp -o FILE` twice; `check` twice.

Every second run must print what the first printed (the file it writes for `seccomp` and
`html`): the table says so in its last column, and a difference fails the bench. With
`--daemon` (root, Docker) the image is also loaded into the daemon and `analyze` and `check`
are run by its bare name (`slim-bench/NAME:latest`), the pre-push hook's case.
Whole-process wall times of one run each (the caches make the second run; a median of several
would measure the cache, not the first run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from bench import measure
from bench.build import cache_dir

NOT_KEPT = "/usr/share/doc"


def _run(cache: str, *args: str) -> measure.Run:
    env = {**os.environ, "SLIM_CACHE_DIR": cache}
    env.pop("SLIM_NO_CACHE", None)
    return measure.run_measured(measure.slim_argv(*args), env=env)


def _entry_program(report: dict) -> str:
    """The kept path the entrypoint names (a chain of one step)."""
    for k in report.get("keep", []):
        if "entrypoint" in k.get("reasons", []) and k.get("size_bytes", 0) > 0:
            return k["path"]
    return report["keep"][0]["path"]


def _twice(cache: str, label: str, first_args: tuple[str, ...], second_args: tuple[str, ...] | None = None,
           output: str | None = None, skip_lines: int = 0) -> dict:
    """Run a command twice; the second's output (stdout past its first `skip_lines` lines, or
    the file `output`) must equal the first's when it is the same command."""
    second_args = second_args or first_args
    runs, outs = [], []
    for args in (first_args, second_args):
        if output and os.path.exists(output):
            os.unlink(output)
        run = _run(cache, *args)
        if run.returncode not in (0, 1):
            raise SystemExit(f"bench.rechecks: slim {' '.join(args)}: exit {run.returncode}: "
                             f"{measure.last_line(run.stderr)}")
        runs.append(run)
        if output:
            with open(output, "rb") as f:
                outs.append(f.read())
        else:
            outs.append("".join(run.stdout.splitlines(keepends=True)[skip_lines:]).encode())
    same = "n/a (another focus)" if second_args != first_args else ("yes" if outs[0] == outs[1] else "NO")
    return {"command": label, "first": runs[0].seconds, "second": runs[1].seconds, "same": same}


def measure_image(archive: str, daemon: bool) -> list[dict]:
    ref = f"docker-archive:{archive}"
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-rechecks-") as tmp:
        cache = os.path.join(tmp, "cache")
        rows.append(_twice(cache, "analyze -f json", ("analyze", "-f", "json", ref)))
        report = json.loads(_run(cache, "analyze", "-f", "json", ref).stdout)
        program = _entry_program(report)
        rows.append(_twice(cache, f"why {program} (kept)", ("why", ref, program)))
        rows.append(_twice(cache, f"why {NOT_KEPT} (not kept)", ("why", ref, NOT_KEPT)))
        if program.startswith("/usr/lib/"):
            spelled = "/lib/" + program[len("/usr/lib/"):]
            rows.append(_twice(cache, f"why {spelled} (through /lib)", ("why", ref, spelled)))
        html = os.path.join(tmp, "report.html")
        rows.append(_twice(cache, "analyze -f html", ("analyze", "-f", "html", "-o", html, ref), output=html))
        rows.append(_twice(cache, "graph --to PROGRAM, then --from PROGRAM --depth 2",
                           ("graph", ref, "--to", program), ("graph", ref, "--from", program, "--depth", "2")))
        profile = os.path.join(tmp, "seccomp.json")
        rows.append(_twice(cache, "seccomp", ("seccomp", ref, "-o", profile), output=profile))
        budget = os.path.join(tmp, "slim.toml")
        with open(budget, "w") as f:
            f.write('max_size = "10GB"\nmax_removable_percent = 100\n')
        # its first line says how long the check took and whether it was cached
        rows.append(_twice(cache, "check", ("check", "--config", budget, ref), skip_lines=1))
        if daemon:
            with measure.loaded(archive) as name:
                rows.append(_twice(cache, f"analyze -f json {name}", ("analyze", "-f", "json", name)))
                rows.append(_twice(cache, f"check {name}", ("check", "--config", budget, name), skip_lines=1))
    return rows


def table(results: list[tuple[str, list[dict]]]) -> str:
    machine = f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"
    lines = [f"# The second time: slim commands on an unchanged image ({time.strftime('%Y-%m-%d')}, {machine})", "",
             "Command: `python -m bench.rechecks`; see bench/rechecks.py for the order and what is compared.", "",
             "| image | command | first s | second s | same output |", "|---|---|---|---|---|"]
    for name, rows in results:
        for r in rows:
            lines.append(f"| {name} | `{r['command']}` | {r['first']:.2f} | {r['second']:.2f} | {r['same']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.rechecks", description=__doc__.split("\n")[0])
    ap.add_argument("--images", default="django-venv,postgresql,ruby-sinatra",
                    help="comma-separated bench image names")
    ap.add_argument("--daemon", action="store_true", help="also by bare name from the Docker daemon")
    ap.add_argument("--output", default="bench/results/rechecks.md")
    args = ap.parse_args(argv)
    if args.daemon and not measure.have_docker():
        print("bench.rechecks: --daemon: no Docker daemon answers", file=sys.stderr)
        return 1
    results = []
    for name in args.images.split(","):
        tar = os.path.join(cache_dir(), "images", name, f"{name}.docker.tar")
        if not os.path.exists(tar):
            print(f"bench.rechecks: {name}: no {tar} (build it with python -m bench first)", file=sys.stderr)
            continue
        print(f"bench.rechecks: {name}", file=sys.stderr)
        results.append((name, measure_image(tar, args.daemon)))
    text = table(results)
    print(text)
    if args.output != "-":
        with open(args.output, "w") as f:
            f.write(text)
    return 1 if any(r["same"] == "NO" for _, rows in results for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
