from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from slim.emitters.seccomp import (
    PROFILE_SCHEMA,
    build_seccomp_profile,
    dumps_profile,
    load_baseline,
    load_runtimes,
    write_profile,
)
from slim.errors import RuleError
from slim.syscalls.table import all_names


def test_profile_shape_and_schema() -> None:
    p = build_seccomp_profile(["write", "read", "getpid"])
    jsonschema.validate(p, PROFILE_SCHEMA)
    assert p["defaultAction"] == "SCMP_ACT_ERRNO"
    assert p["defaultErrnoRet"] == 1
    assert p["archMap"] == [{"architecture": "SCMP_ARCH_X86_64",
                             "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}]
    (rule,) = p["syscalls"]
    assert rule["action"] == "SCMP_ACT_ALLOW"
    names = rule["names"]
    assert names == sorted(set(names))
    assert {"write", "read", "getpid"} <= set(names)
    assert set(load_baseline()) <= set(names)  # runtime baseline always allowed
    assert "execve" in names  # runc's final exec


def test_schema_rejects_a_broken_profile() -> None:
    p = build_seccomp_profile(["write"])
    p["syscalls"][0]["action"] = "ALLOW"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(p, PROFILE_SCHEMA)


def test_unknown_names_left_out_and_no_baseline_option() -> None:
    p = build_seccomp_profile(["write", "not_a_syscall", "mmap2"], baseline=False)
    assert p["syscalls"][0]["names"] == ["write"]


def test_deterministic_bytes(tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    write_profile(build_seccomp_profile(["write", "read"]), str(a))
    write_profile(build_seccomp_profile(["read", "write", "read"]), str(b))
    assert a.read_bytes() == b.read_bytes()
    assert json.loads(a.read_text()) == build_seccomp_profile(["write", "read"])
    assert dumps_profile({"b": 1, "a": 2}).startswith('{\n  "a"')


def test_baseline_entries_are_documented_syscalls() -> None:
    base = load_baseline()
    assert base and all(why.strip() for why in base.values())
    assert set(base) <= set(all_names())
    # smaller than Docker's default allow-list (~295 of 362 on x86_64)
    assert len(base) < 80


def test_bad_baseline_file(tmp_path: Path) -> None:
    bad = tmp_path / "b.toml"
    bad.write_text('[runtime.runc.syscalls]\nnot_a_call = "x"\n')
    with pytest.raises(RuleError, match=r"runtime.runc.syscalls.*unknown x86_64 syscalls"):
        load_baseline(bad)
    bad.write_text('[syscalls]\nread = "x"\n')
    with pytest.raises(RuleError, match=r"needs \[runtime.NAME\]"):
        load_baseline(bad)
    bad.write_text("[syscalls\n")
    with pytest.raises(RuleError, match="cannot read"):
        load_baseline(bad)


def test_baselines_per_runtime() -> None:
    """runc and crun each have a checked baseline; the default profile allows both."""
    runtimes = load_runtimes()
    assert set(runtimes) >= {"runc", "crun"}
    runc, crun = runtimes["runc"].syscalls, runtimes["crun"].syscalls
    # runc >= 1.1.12 (and Debian's 1.1.5 backport) calls getcwd after the filter is applied:
    # "failed to verify if current working directory is safe" (issue 20)
    assert "getcwd" in runc and "verified" in runc["getcwd"]
    assert {"setresuid", "setresgid"} <= set(crun)  # crun does not use setuid/setgid
    assert all(r.versions and r.checked for r in runtimes.values())
    both = set(build_seccomp_profile(["write"])["syscalls"][0]["names"])
    assert set(runc) | set(crun) <= both
    only_crun = set(build_seccomp_profile(["write"], runtimes=["crun"])["syscalls"][0]["names"])
    assert "getcwd" not in only_crun and "setresuid" in only_crun
    with pytest.raises(RuleError, match="no seccomp baseline"):
        load_baseline(runtimes=["youki"])
