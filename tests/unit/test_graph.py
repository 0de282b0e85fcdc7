"""DependencyGraph: closure, why-chains and deterministic exports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from slim.graph import DependencyGraph
from slim.model import ROOT, Edge, ancestors_of, parent_dirs


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


def test_why_is_shortest_first_added_and_follows_new_edges():
    """A long chain added first loses to a shorter one; among chains of one length, the
    edge added first wins (the same answer every run); an edge added after a `why` that
    makes a chain shorter changes the next answer (the tree is made again)."""
    g = DependencyGraph()
    for src, dst in ((ROOT, "/a"), ("/a", "/b"), ("/b", "/c"), (ROOT, "/x"), ("/x", "/c"), (ROOT, "/y"),
                     ("/y", "/c")):
        g.add(Edge(src, dst, "needed", f"{src}>{dst}"))
    assert [s.src for s in g.why("/c")] == [ROOT, "/x"]
    assert g.why_tree()["/b"] == "/a" and set(g.why_tree()) == g.closure()
    g.add(Edge(ROOT, "/c", "rule", "direct"))
    assert [(s.src, s.kind) for s in g.why("/c")] == [(ROOT, "rule")]
    assert [s.dst for s in g.why("/b", root="/a")] == ["/b"] and g.why("/a", root="/b") is None


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


def test_focus_from_to_depth():
    import pytest

    g = sample()
    assert set(g.focus("/app/hello").g.nodes) == {"/app/hello", "/lib64/ld.so", "/lib/libc.so.6", "/lib"}
    assert set(g.focus("/app/hello", depth=1).g.nodes) == {"/app/hello", "/lib64/ld.so", "/lib/libc.so.6"}
    assert set(g.focus(target="/lib").g.nodes) == {ROOT, "/app/hello", "/lib/libc.so.6", "/lib"}
    assert set(g.focus(depth=1).g.nodes) == {ROOT, "/app/hello"}  # from the container start
    chains = g.focus("/app/hello", "/lib")
    assert set(chains.g.nodes) == {"/app/hello", "/lib/libc.so.6", "/lib"}
    assert set(g.focus("/app/hello", "/lib", depth=1).g.nodes) == set()  # the chain is 2 long
    assert g.focus(ROOT, "/lib").why("/lib") == g.why("/lib")  # the evidence stays on the edges
    assert "/orphan" not in g.focus(target="/lib").g
    with pytest.raises(KeyError):
        g.focus("/nope")


def test_dot_edges_carry_evidence():
    g = DependencyGraph()
    g.add(Edge(ROOT, "/bin/app", "entrypoint", 'Entrypoint ["/bin/app"]'))
    g.add(Edge("/bin/app", "/lib/libz.so.1", "needed", "DT_NEEDED libz.so.1 " + "x" * 80))
    dot = g.export("dot")
    assert '[label="entrypoint\\nEntrypoint [\\"/bin/app\\"]", tooltip="Entrypoint [\\"/bin/app\\"]"];' in dot
    line = next(x for x in dot.splitlines() if "libz" in x and "->" in x)
    assert 'label="needed\\nDT_NEEDED libz.so.1 xxx' in line and '..."' in line
    assert "x" * 80 in line  # whole in the tooltip


def test_ancestors_of_is_every_strict_ancestor() -> None:
    paths = ["/usr/lib/x/a.so", "/usr/lib/y", "/etc/passwd", "/top", "/usr/lib/x/b/c"]
    assert ancestors_of(paths) == {d for p in paths for d in parent_dirs(p)}
    assert ancestors_of(paths) == {"/usr", "/usr/lib", "/usr/lib/x", "/usr/lib/x/b", "/etc"}
    assert ancestors_of([]) == set() and ancestors_of(["/"]) == set()


def test_the_networkx_view_follows_the_graph():
    g = sample()
    view = g.g
    assert set(view.nodes) == set(g.closure()) | {"/orphan", "/lib/libz.so"}
    g.add(Edge("/lib", "/lib/x", "needed", "new"))  # a new edge: a new view
    assert g.g is not view and g.g.has_edge("/lib", "/lib/x")
    g.add(Edge(ROOT, "/app/hello", "rule", "again"))  # a new reason of an edge: the same view
    assert ("rule", "again") in g.g.edges[ROOT, "/app/hello"]["reasons"]
    assert g.reasons("/app/hello") == ("entrypoint", "rule")


def test_closure_and_why_chains_do_not_import_networkx():
    import subprocess
    import sys

    code = ("import sys\n"
            "from slim.graph import DependencyGraph\nfrom slim.model import ROOT, Edge\n"
            "g = DependencyGraph()\ng.add(Edge(ROOT, '/a', 'entrypoint', ''))\n"
            "assert g.closure() == {ROOT, '/a'} and g.edges_into('/a')\n"
            "assert 'networkx' not in sys.modules\n"
            "assert g.why('/a')[0].dst == '/a' and 'networkx' not in sys.modules\n"
            "assert g.g.has_edge(ROOT, '/a') and 'networkx' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_self_loop_on_a_new_node_is_kept_both_ways():
    g = DependencyGraph()
    assert g.add(Edge("/a", "/a", "needed", "itself")) is True
    assert g.closure(["/a"]) == {"/a"}
    assert g.edges_into("/a") == [Edge("/a", "/a", "needed", "itself")]
    assert g.g.has_edge("/a", "/a")


def test_a_graph_from_plain_is_the_graph_to_plain_was_made_from():
    g = sample()
    g.add(Edge("/app/hello", "/lib/libc.so.6", "rule", "second reason"))
    back = DependencyGraph.from_plain(json.loads(json.dumps(g.to_plain())))
    assert list(back.succ) == list(g.succ) and back.succ == g.succ and back.pred == g.pred
    for fmt in ("json", "dot", "graphml"):
        assert back.export(fmt) == g.export(fmt)
    assert back.why("/lib") == g.why("/lib")
    for bad in (None, [], {"nodes": ["/a"]}, {"nodes": "/a", "edges": []}, {"nodes": [1], "edges": []},
                {"nodes": ["/a"], "edges": [["/a", "/b", []]]}, {"nodes": ["/a"], "edges": [["/a", "/a"]]},
                {"nodes": ["/a"], "edges": [["/a", "/a", [["k"]]]]},
                {"nodes": ["/a"], "edges": [["/a", "/a", []], ["/a", "/a", []]]}):
        with pytest.raises(ValueError):
            DependencyGraph.from_plain(bad)
