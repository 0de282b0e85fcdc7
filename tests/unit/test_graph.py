"""DependencyGraph: closure, why-chains and deterministic exports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from slim.graph import DependencyGraph
from slim.model import ROOT, Edge


def sample() -> DependencyGraph:
    g = DependencyGraph()
    g.add(Edge(ROOT, "/app/hello", "entrypoint", "argv[0]"))
    g.add(Edge("/app/hello", "/lib64/ld.so", "interpreter", "PT_INTERP"))
    g.add(Edge("/app/hello", "/lib/libc.so.6", "needed", "DT_NEEDED libc.so.6"))
    g.add(Edge("/lib/libc.so.6", "/lib", "symlink", "on the path"))
    g.add(Edge("/lib/libc.so.6", "/lib/libc.so.6", "needed", "self"))  # loops are harmless
    g.add(Edge("/orphan", "/lib/libz.so", "needed", ""))
    return g


def test_closure_is_what_root_reaches():
    g = sample()
    assert g.closure() == {ROOT, "/app/hello", "/lib64/ld.so", "/lib/libc.so.6", "/lib"}
    assert "/lib/libz.so" not in g.closure()


def test_why_gives_shortest_chain_and_none_when_unreachable():
    g = sample()
    steps = g.why("/lib")
    assert [(s.src, s.dst, s.kind) for s in steps] == [
        (ROOT, "/app/hello", "entrypoint"),
        ("/app/hello", "/lib/libc.so.6", "needed"),
        ("/lib/libc.so.6", "/lib", "symlink"),
    ]
    assert g.why("/lib/libz.so") is None
    assert g.why("/not/there") is None


def test_duplicate_reasons_merge():
    g = DependencyGraph()
    assert g.add(Edge(ROOT, "/a", "rule", "x")) is True
    assert g.add(Edge(ROOT, "/a", "rule", "x")) is False
    g.add(Edge(ROOT, "/a", "entrypoint", "argv[0]"))
    assert g.reasons("/a") == ("entrypoint", "rule")
    assert len(g.edges_into("/a")) == 2


def test_exports_are_valid_and_deterministic():
    a, b = sample(), sample()
    for fmt in ("dot", "graphml", "json"):
        assert a.export(fmt) == b.export(fmt)
    doc = json.loads(a.export("json"))
    assert ROOT in doc["nodes"] and any(e["kind"] == "interpreter" for e in doc["edges"])
    ET.fromstring(a.export("graphml"))  # well-formed XML
    dot = a.export("dot")
    assert dot.startswith("digraph slim {") and '"/app/hello" -> "/lib64/ld.so"' in dot
