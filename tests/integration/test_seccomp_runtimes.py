"""A traced seccomp profile starts the container, for real, on the runtimes in use (issue 20).

`slim seccomp --trace --from traced` on sample_images/hello-glibc (WorkingDir /app), then:

* Docker (runc, the daemon's runtime): `docker run --security-opt seccomp=FILE --network none`
  as root and as uid 65534. runc >= 1.1.12 (and the Debian 1.1.5 backport here) calls getcwd
  after the filter is applied; a profile without it fails with "failed to verify if current
  working directory is safe".
* crun, directly on an OCI bundle (Docker-like: Docker's default capabilities, no
  no-new-privileges), with a profile carrying only crun's baseline: crun switches ids with
  setresuid/setresgid, which runc never calls.
"""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

from slim.image import load, prepare_root
from tests.conftest import have_docker, is_root, require

pytestmark = [pytest.mark.docker, pytest.mark.trace]

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_images" / "hello-glibc" / "hello-glibc.docker.tar"
HELLO = "hello from slim (zlib 1.2.13, crc32 1158d9b7)\n"
DOCKER_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
               "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
               "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]


def _slim(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "slim", *args], capture_output=True, text=True,
                          env=env, timeout=600, cwd=REPO)


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("secrt")
    with load(str(SAMPLE)) as loaded:
        return Path(prepare_root(loaded.image, str(work)))


def _profile(tmp: Path, *extra: str) -> Path:
    out = tmp / f"profile{'-'.join(('', *extra))}.json"
    r = _slim("seccomp", str(SAMPLE), "--trace", "--runner", "sandbox", "--from", "traced",
              "-o", str(out), *extra)
    assert r.returncode == 0, r.stderr
    return out


def test_traced_profile_starts_under_docker(rootfs: Path, tmp_path: Path) -> None:
    require(have_docker(), "docker daemon not available")
    profile = _profile(tmp_path)
    names = set(json.loads(profile.read_text())["syscalls"][0]["names"])
    assert "getcwd" in names
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(rootfs, arcname=".")
    tag = f"slim-seccomp-rt:{uuid.uuid4().hex[:12]}"
    subprocess.run(["docker", "import", "--change", "WORKDIR /app", "-", tag],
                   input=buf.getvalue(), check=True, capture_output=True)
    try:
        for user in ("0", "65534"):
            r = subprocess.run(["docker", "run", "--rm", "--network", "none", "--user", user,
                                "--security-opt", f"seccomp={profile}", tag, "/app/hello"],
                               capture_output=True, text=True, timeout=120)
            assert (r.returncode, r.stdout) == (0, HELLO), (user, r.stderr)
        # without getcwd the same profile does not start (the failure issue 20 reported)
        doc = json.loads(profile.read_text())
        doc["syscalls"][0]["names"].remove("getcwd")
        broken = tmp_path / "no-getcwd.json"
        broken.write_text(json.dumps(doc))
        r = subprocess.run(["docker", "run", "--rm", "--network", "none", "--security-opt",
                            f"seccomp={broken}", tag, "/app/hello"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and "current working directory" in r.stderr
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def _oci_seccomp(moby: dict) -> dict:
    """The moby profile as an OCI runtime-spec LinuxSeccomp (what runtimes read)."""
    arches = [a for m in moby["archMap"] for a in [m["architecture"], *m.get("subArchitectures", [])]]
    return {"defaultAction": moby["defaultAction"], "defaultErrnoRet": moby["defaultErrnoRet"],
            "architectures": arches,
            "syscalls": [{"names": r["names"], "action": r["action"]} for r in moby["syscalls"]]}


def _crun_run(bundle: Path) -> subprocess.CompletedProcess[str]:
    cid = f"slim-test-{uuid.uuid4().hex[:10]}"
    cmd = ["crun", "--cgroup-manager=disabled", "run", "--bundle", str(bundle), cid]
    if os.path.ismount("/sys/fs/cgroup/unified"):
        # crun 1.8 refuses a hybrid cgroup v1+v2 host; hide cgroup2 in a private mount namespace
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               "umount /sys/fs/cgroup/unified && exec \"$@\"", "sh", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_traced_profile_starts_under_crun(rootfs: Path, tmp_path: Path) -> None:
    require(is_root(), "crun on an OCI bundle needs root")
    require(shutil.which("crun") is not None, "crun not installed (apt-get install crun)")
    profile = json.loads(_profile(tmp_path, "--runtime", "crun").read_text())
    assert {"setresuid", "setresgid"} <= set(profile["syscalls"][0]["names"])
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    subprocess.run(["crun", "spec"], cwd=bundle, check=True, capture_output=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["root"] = {"path": str(rootfs), "readonly": True}
    spec["linux"].pop("resources", None)
    spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/sys/fs/cgroup"]
    for uid in (0, 65534):
        doc = copy.deepcopy(spec)
        proc = doc["process"]
        proc.update(terminal=False, args=["/app/hello"], cwd="/app", noNewPrivileges=False,
                    user={"uid": uid, "gid": uid})
        proc["capabilities"] = {k: DOCKER_CAPS for k in ("bounding", "effective", "permitted")}
        doc["linux"]["seccomp"] = _oci_seccomp(profile)
        (bundle / "config.json").write_text(json.dumps(doc))
        r = _crun_run(bundle)
        assert (r.returncode, r.stdout) == (0, HELLO), (uid, r.stderr)
