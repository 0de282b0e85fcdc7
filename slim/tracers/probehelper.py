"""Network probes run from inside the app's network namespace.

A traced image gets its own network namespace (loopback only), never the host's. To reach it,
the runner starts this helper with `nsenter --target PID --net` (plus `--user` when slim is not
root), so its sockets live in the app's namespace and 127.0.0.1 is the app's loopback:

    nsenter --target PID --net -- python -m slim.tracers.probehelper < request.json

The request is `{"spec": "http:8080/", "seconds": 12.5}`; the answer on stdout is the probe's
outcome, its observations and the concrete probes it ran (an `auto:` probe resolves into
several) as JSON, bodies base64-encoded. The helper keeps trying until the
deadline; the runner kills it early when the app exits (`run_isolated`).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from slim.result import ProbeOutcome
from slim.tracers.probes import (
    HttpProbe,
    NetworkProbe,
    Observation,
    Probe,
    SniffProbe,
    TcpProbe,
    parse_probe,
    run_network,
)

POLL = 0.05


def _obs_json(obs: Observation) -> dict[str, object]:
    return {"spec": obs.spec, "status": obs.status, "body": base64.b64encode(obs.body).decode(),
            "exit_code": obs.exit_code, "headers": [list(h) for h in obs.headers]}


def _obs_from(doc: dict[str, Any]) -> Observation:
    headers = tuple((str(k), str(v)) for k, v in doc.get("headers", []))
    return Observation(str(doc["spec"]), status=doc["status"], body=base64.b64decode(str(doc["body"])),
                       exit_code=doc["exit_code"], headers=headers)


def main() -> int:
    request = json.loads(sys.stdin.read())
    probe = parse_probe(request["spec"])
    deadline = time.monotonic() + float(request["seconds"])
    if not isinstance(probe, (HttpProbe, TcpProbe, SniffProbe)):
        print(f"{probe.spec}: not a network probe", file=sys.stderr)
        return 2
    outcome, observations, probes = run_network(probe, deadline, lambda: True)
    sys.stdout.write(json.dumps({"passed": outcome.passed, "detail": outcome.detail,
                                 "observations": [_obs_json(o) for o in observations],
                                 "probes": [p.spec for p in probes]}))
    return 0


def run_isolated(nsenter_prefix: list[str], probe: NetworkProbe, deadline: float,
                 alive: Callable[[], bool]) -> tuple[ProbeOutcome, list[Observation], list[Probe]]:
    """Run `probe` through the helper inside the app's namespace (`nsenter_prefix` enters it).

    Stops early, with the same wording the in-process probes use, when the app dies.
    """
    seconds = max(0.5, deadline - time.monotonic())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    cmd = [*nsenter_prefix, sys.executable, "-m", "slim.tracers.probehelper"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    assert proc.stdin is not None
    try:
        proc.stdin.write(json.dumps({"spec": probe.spec, "seconds": seconds}).encode())
        proc.stdin.close()
    except BrokenPipeError:  # nsenter found no namespace to enter: the app is gone
        pass
    while proc.poll() is None:
        if not alive():
            time.sleep(0.2)  # a reply already on its way still counts
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                return ProbeOutcome(probe.spec, False, "the app exited before answering"), [], []
        if time.monotonic() > deadline + 5:
            proc.kill()
        time.sleep(POLL)
    out = proc.stdout.read() if proc.stdout else b""
    err = proc.stderr.read() if proc.stderr else b""
    if (proc.returncode != 0 or not out) and not alive():
        return ProbeOutcome(probe.spec, False, "the app exited before answering"), [], []
    if proc.returncode != 0 or not out:
        why = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return ProbeOutcome(probe.spec, False, f"probe helper failed: {why[0][:200]}"), [], []
    doc = json.loads(out)
    return (ProbeOutcome(probe.spec, bool(doc["passed"]), str(doc["detail"])),
            [_obs_from(o) for o in doc["observations"]], [parse_probe(p) for p in doc["probes"]])


if __name__ == "__main__":
    sys.exit(main())
