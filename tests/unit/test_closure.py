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


def test_a_need_found_after_its_link_was_visited_reaches_the_target(tmp_path: Path) -> None:
    """What needs a link needs its target for the same reason, whichever was found first: the
    reasons of a kept file do not depend on the order the worklist met them."""
    from slim.closure import ClosureBuilder
    from slim.model import ROOT, Edge

    members = [M("lib", "d"), M("lib/libx.so.1.0", data=b"x" * 10),
               M("lib/libx.so.1", "l", link="libx.so.1.0"), M("opt", "d")]
    write_oci(str(tmp_path / "img"), [layer_tar(members)], {"Entrypoint": ["/bin/true"]})
    first = Edge(ROOT, "/lib/libx.so.1", "rule", "a rule names the link")
    later = Edge(ROOT, "/lib/libx.so.1", "needed", "DT_NEEDED libx.so.1")
    reasons = []
    with load_image(f"oci:{tmp_path / 'img'}") as loaded:
        for drain_between in (False, True):
            builder = ClosureBuilder(loaded.rootfs, loaded.image.config)
            builder.add(first)
            if drain_between:
                builder.drain()  # the link is visited before the need is found
            builder.add(later)
            closure = builder.run()
            assert "/lib/libx.so.1.0" in closure.keep
            reasons.append(closure.graph.reasons("/lib/libx.so.1.0"))
    assert reasons[0] == reasons[1] == ("needed", "rule", "symlink")
