"""A short smoke run of each fuzz target under hypothesis (a few seconds each, in `make
test`): seeds mutated by byte flips, cuts, splices and insertions. The long runs use atheris
(`python -m tests.fuzz.layer|elf|metadata CORPUS`)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import targets

SEEDS = {name: targets.seeds(name) for name in targets.TARGETS}


@st.composite
def mutated(draw: st.DrawFn, name: str) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS[name])))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "splice", "zero"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at : at + draw(st.integers(1, 4096))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "splice":
            other = draw(st.sampled_from(SEEDS[name]))
            data[at:] = other[draw(st.integers(0, max(0, len(other) - 1))):]
        else:
            data[at : at + 8] = b"\xff" * 8 if draw(st.booleans()) else bytes(8)
    return bytes(data)


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_fuzz_smoke(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIM_NO_CACHE", "1")  # the fuzzer must not fill a cache

    @settings(max_examples=1000, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(mutated(name))
    def run(data: bytes) -> None:
        targets.TARGETS[name](data)

    run()
