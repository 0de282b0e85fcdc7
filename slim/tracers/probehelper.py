"""Network probes run from inside the app's network namespace.

A traced image gets its own network namespace (loopback only), never the host's. To reach it,
the runner starts this helper with `nsenter --target PID --net` (plus `--user` when slim is not
root), so its sockets live in the app's namespace and 127.0.0.1 is the app's loopback:

    nsenter --target PID --net -- python -m slim.tracers.probehelper < request.json

The request is `{"spec": "http:8080/", "seconds": 12.5}`; the answer on stdout is the probe's
outcome and observation as JSON (bodies base64-encoded). The helper keeps trying until the
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

from slim.result import ProbeOutcome
from slim.tracers.probes import HttpProbe, Observation, TcpProbe, parse_probe, run_http, run_tcp

POLL = 0.05


def _encode(outcome: ProbeOutcome, obs: Observation) -> str:
    return json.dumps({
        "passed": outcome.passed, "detail": outcome.detail, "status": obs.status,
        "body": base64.b64encode(obs.body).decode(), "exit_code": obs.exit_code,
        "headers": [list(h) for h in obs.headers],
    })


def _decode(spec: str, text: str) -> tuple[ProbeOutcome, Observation]:
    doc = json.loads(text)
    headers = tuple((str(k), str(v)) for k, v in doc.get("headers", []))
    return (ProbeOutcome(spec, bool(doc["passed"]), str(doc["detail"])),
            Observation(spec, status=doc["status"], body=base64.b64decode(doc["body"]),
                        exit_code=doc["exit_code"], headers=headers))


def main() -> int:
    request = json.loads(sys.stdin.read())
    probe = parse_probe(request["spec"])
    deadline = time.monotonic() + float(request["seconds"])
    if isinstance(probe, HttpProbe):
        outcome, obs = run_http(probe, deadline, lambda: True)
    elif isinstance(probe, TcpProbe):
        outcome, obs = run_tcp(probe, deadline, lambda: True)
    else:
        print(f"{probe.spec}: not a network probe", file=sys.stderr)
        return 2
    sys.stdout.write(_encode(outcome, obs))
    return 0


def run_isolated(nsenter_prefix: list[str], probe: HttpProbe | TcpProbe, deadline: float,
                 alive: Callable[[], bool]) -> tuple[ProbeOutcome, Observation]:
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
                return (ProbeOutcome(probe.spec, False, "the app exited before answering"),
                        Observation(probe.spec))
        if time.monotonic() > deadline + 5:
            proc.kill()
        time.sleep(POLL)
    out = proc.stdout.read() if proc.stdout else b""
    err = proc.stderr.read() if proc.stderr else b""
    if (proc.returncode != 0 or not out) and not alive():
        return ProbeOutcome(probe.spec, False, "the app exited before answering"), Observation(probe.spec)
    if proc.returncode != 0 or not out:
        why = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return ProbeOutcome(probe.spec, False, f"probe helper failed: {why[0][:200]}"), Observation(probe.spec)
    return _decode(probe.spec, out.decode())


if __name__ == "__main__":
    sys.exit(main())
