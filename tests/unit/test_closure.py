"""The worklist: hard links are analyzed once per directory, and still keep what they need."""

from __future__ import annotations

from pathlib import Path

import pytest

from slim.analyzers.script import ScriptAnalyzer
from slim.pipeline import AnalyzeOptions, analyze, load_image
from tests.imagekit import M, layer_tar, write_oci


def test_hard_links_are_analyzed_once_per_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    members = [M("bin", "d"), M("bin/sh", data=b"\x7fELF" + b"\x00" * 60, mode=0o755),
               M("bin/cat", data=b"\x7fELF" + b"\x00" * 61, mode=0o755),
               M("app", "d"), M("app/run", data=b"#!/bin/sh\ncat /app/data.txt\n", mode=0o755),
               M("app/data.txt", data=b"x"), M("other", "d")]
    members += [M(f"app/l{i}", "h", link="app/run", mode=0o755) for i in range(50)]
    members += [M("other/run", "h", link="app/run", mode=0o755)]
    write_oci(str(tmp_path / "img"), [layer_tar(members)], {"Entrypoint": ["/app/l7"]})
    seen: list[str] = []
    real = ScriptAnalyzer.analyze

    def spy(self, entry):  # type: ignore[no-untyped-def]
        seen.append(entry.path)
        return real(self, entry)

    monkeypatch.setattr(ScriptAnalyzer, "analyze", spy)
    with load_image(f"oci:{tmp_path / 'img'}") as loaded:
        keep = analyze(loaded, AnalyzeOptions(keep=("/other/run", "/app/l3"))).closure.keep  # type: ignore[union-attr]
    assert {"/app/l7", "/app/l3", "/app/run", "/other/run", "/bin/sh", "/bin/cat"} <= keep
    # /app/run once (the names beside it add nothing) and /other/run once (another directory)
    assert sorted(p for p in seen if p.endswith(("run", "l7", "l3"))) == ["/app/run", "/other/run"]
