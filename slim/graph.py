"""DependencyGraph: every kept file and the chain of reasons that keeps it.

Nodes are image paths, plus ROOT ("<root>", the container start) and package nodes
("pkg:NAME"). An edge src → dst means "src needs dst"; it carries every (kind, evidence) pair
that was found for that pair. The keep set is everything reachable from ROOT; `why(path)` is
the shortest such chain.

The worklist builds the graph in adjacency dicts and asks it only for what is reachable and
what points at a node; the networkx DiGraph (`g`) is made from them when a question needs
networkx (why-chains, focus, GraphML) — importing networkx took 0.13 s, a tenth of a cold
analysis of a small image, which needs none of it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slim.model import ROOT, Edge

if TYPE_CHECKING:
    import networkx as nx

Reasons = list[tuple[str, str]]

EXPORT_FORMATS = ("dot", "graphml", "json")

# When one pair has several reasons, `why` shows the most specific first.
KIND_PRIORITY = (
    "entrypoint", "traced-exec", "interpreter", "needed", "shebang", "exec", "import", "dlopen",
    "traced-open", "config", "package", "verify-fix", "app", "rule", "symlink", "parent-dir",
)


def _rank(reason: tuple[str, str]) -> tuple[int, str, str]:
    kind = reason[0]
    return (KIND_PRIORITY.index(kind) if kind in KIND_PRIORITY else len(KIND_PRIORITY), kind, reason[1])


def best_reason(graph: DependencyGraph, src: str, dst: str) -> tuple[str, str]:
    """The most specific (kind, evidence) of the edge src → dst (KIND_PRIORITY)."""
    return min(graph.succ[src][dst], key=_rank)


@dataclass(frozen=True)
class Step:
    """One link of a `why` chain."""

    src: str
    dst: str
    kind: str
    evidence: str


def plain_strings(value: Any, n: int | None = None) -> list[str]:
    """`value` when it is a list of strings (of `n` of them, when given), as cached plain data
    slim wrote holds (DependencyGraph.from_plain, pipeline.why_from_index). Raises ValueError."""
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value) and (n is None or len(value) == n)):
        raise ValueError("not plain data slim wrote")
    return value


class DependencyGraph:
    """A typed dependency graph of image paths."""

    def __init__(self) -> None:
        # node → {successor → reasons}, node → {predecessor → the same reasons list}
        self.succ: dict[str, dict[str, Reasons]] = {ROOT: {}}
        self.pred: dict[str, dict[str, Reasons]] = {ROOT: {}}
        self._nx: Any = None  # the networkx view, made on first use
        self._tree: dict[str, str] | None = None  # why_tree from ROOT, made on first use

    def __contains__(self, node: str) -> bool:
        return node in self.succ

    def __len__(self) -> int:
        return len(self.succ)

    def add(self, edge: Edge) -> bool:
        """Add an edge; returns True when `edge.dst` is a node not seen before."""
        src, dst, pair = edge.src, edge.dst, (edge.kind, edge.evidence)
        new = dst not in self.succ
        if new:
            self.succ[dst] = {}
            self.pred[dst] = {}
        out = self.succ.get(src)
        if out is None:
            out = self.succ[src] = {}
            self.pred[src] = {}
        reasons = out.get(dst)
        if reasons is None:
            out[dst] = self.pred[dst][src] = [pair]
            self._nx = self._tree = None
        elif pair not in reasons:
            reasons.append(pair)  # the networkx view shares the list
        return new

    def add_all(self, edges: Iterable[Edge]) -> None:
        for e in edges:
            self.add(e)

    @property
    def g(self) -> nx.DiGraph:
        """The graph as a networkx DiGraph (each edge's `reasons` attribute is the list this
        graph holds); made when first asked for, again after an edge was added."""
        if self._nx is None:
            import networkx as nx

            g = nx.DiGraph()
            g.add_nodes_from(self.succ)
            g.add_edges_from((src, dst, {"reasons": reasons})
                             for src, out in self.succ.items() for dst, reasons in out.items())
            self._nx = g
        return self._nx

    @classmethod
    def of(cls, g: nx.DiGraph) -> DependencyGraph:
        """A graph holding `g`'s nodes and edges (each edge with a `reasons` attribute)."""
        out = cls()
        out.succ, out.pred = {}, {}  # not even the container start unless `g` has it
        for node in g.nodes:
            out.succ.setdefault(node, {})
            out.pred.setdefault(node, {})
        for src, dst, reasons in g.edges(data="reasons"):
            out.succ[src][dst] = out.pred[dst][src] = list(reasons)
        return out

    def to_plain(self) -> dict[str, Any]:
        """The graph as plain data (slim graph's cache): its nodes and its edges, each with
        every reason, all in the order they were added, so from_plain gives the same graph."""
        return {"nodes": list(self.succ),
                "edges": [[src, dst, [list(r) for r in reasons]]
                          for src, out in self.succ.items() for dst, reasons in out.items()]}

    @classmethod
    def from_plain(cls, doc: Any) -> DependencyGraph:
        """The graph to_plain made `doc` from. Raises ValueError for data of another shape."""
        if not isinstance(doc, dict) or not isinstance(doc.get("edges"), list):
            raise ValueError("not a graph to_plain made")
        out = cls()
        out.succ = {n: {} for n in plain_strings(doc.get("nodes"))}
        out.pred = {n: {} for n in out.succ}
        for edge in doc["edges"]:
            if not (isinstance(edge, list) and len(edge) == 3 and isinstance(edge[2], list)):
                raise ValueError("not a graph to_plain made")
            src, dst = plain_strings(edge[:2], 2)
            if src not in out.succ or dst not in out.succ or dst in out.succ[src]:
                raise ValueError("not a graph to_plain made")
            reasons = [(k, e) for k, e in (plain_strings(r, 2) for r in edge[2])]
            out.succ[src][dst] = out.pred[dst][src] = reasons
        return out

    def closure(self, roots: Iterable[str] = (ROOT,)) -> set[str]:
        """Every node reachable from `roots` (roots included)."""
        out = {r for r in roots if r in self.succ}
        todo = list(out)
        succ = self.succ
        while todo:
            for nxt in succ[todo.pop()]:
                if nxt not in out:
                    out.add(nxt)
                    todo.append(nxt)
        return out

    def edges_into(self, node: str) -> list[Edge]:
        out = []
        for src, reasons in self.pred.get(node, {}).items():
            for kind, evidence in reasons:
                out.append(Edge(src, node, kind, evidence))
        return sorted(out)

    def reasons(self, node: str, among: set[str] | None = None) -> tuple[str, ...]:
        """Sorted edge kinds that keep `node` (only from sources in `among`, when given)."""
        kinds = {
            e.kind for e in self.edges_into(node) if among is None or e.src in among
        }
        return tuple(sorted(kinds))

    def why_tree(self, root: str = ROOT) -> dict[str, str]:
        """Every node reachable from `root` → its predecessor on a shortest chain from `root`
        (`root` → ""): breadth first, successors in the order their edges were added, so the
        chain `why` gives is the same every time, and the tree answers `why` for every node
        at once (slim why's cache)."""
        if root == ROOT and self._tree is not None:
            return self._tree
        tree = {root: ""} if root in self.succ else {}
        frontier = list(tree)
        succ = self.succ
        while frontier:
            ahead = []
            for node in frontier:
                for nxt in succ[node]:
                    if nxt not in tree:
                        tree[nxt] = node
                        ahead.append(nxt)
            frontier = ahead
        if root == ROOT:
            self._tree = tree
        return tree

    def why(self, node: str, root: str = ROOT) -> list[Step] | None:
        """The shortest chain of reasons from `root` to `node`, or None when unreachable."""
        tree = self.why_tree(root)
        if node not in tree:
            return None
        path = [node]
        while path[-1] != root:
            path.append(tree[path[-1]])
        steps = []
        for src, dst in itertools.pairwise(reversed(path)):
            steps.append(Step(src, dst, *best_reason(self, src, dst)))
        return steps

    def focus(self, source: str | None = None, target: str | None = None,
              depth: int | None = None) -> DependencyGraph:
        """The part of the graph a question is about, as a new graph: what `source` needs
        (forward), what needs `target` (backward), the chains from `source` to `target` when
        both are given, each at most `depth` edges long. Without `source` or `target` the
        forward walk starts at the container start (ROOT). Raises KeyError naming a path that
        is not a node."""
        import networkx as nx

        for node in (source, target):
            if node is not None and node not in self.succ:
                raise KeyError(node)
        if source is None and target is None:
            source = ROOT
        forward = _within(self.g, source, depth) if source is not None else None
        backward = _within(self.g.reverse(copy=False), target, depth) if target is not None else None
        if forward is not None and backward is not None:
            keep = forward & backward
            if depth is not None:  # a chain from source to target at most `depth` long
                dist_s = nx.single_source_shortest_path_length(self.g, source, cutoff=depth)
                dist_t = nx.single_source_shortest_path_length(self.g.reverse(copy=False), target, cutoff=depth)
                keep = {n for n in keep if dist_s[n] + dist_t[n] <= depth}
        else:
            keep = forward if forward is not None else backward or set()
        return DependencyGraph.of(self.g.subgraph(keep))

    # -- export ---------------------------------------------------------------------------
    def _edges(self) -> list[tuple[str, str]]:
        return sorted((src, dst) for src, out in self.succ.items() for dst in out)

    def _flat(self) -> nx.DiGraph:
        """A copy with string attributes only (GraphML and DOT cannot hold lists)."""
        import networkx as nx

        flat = nx.DiGraph()
        for n in sorted(self.succ):
            flat.add_node(n)
        for src, dst in self._edges():
            reasons = sorted(self.succ[src][dst])
            flat.add_edge(
                src, dst,
                kind=",".join(sorted({k for k, _ in reasons})),
                evidence="; ".join(e for _, e in reasons if e),
            )
        return flat

    def export(self, fmt: str) -> str:
        """Render as "dot", "graphml" or "json" (deterministic)."""
        if fmt == "json":
            doc = {
                "nodes": sorted(self.succ),
                "edges": [
                    {"src": s, "dst": d, "kind": k, "evidence": e}
                    for s, d in self._edges()
                    for k, e in sorted(self.succ[s][d])
                ],
            }
            return json.dumps(doc, indent=2, sort_keys=True) + "\n"
        if fmt == "graphml":
            import networkx as nx

            return "\n".join(nx.generate_graphml(self._flat())) + "\n"
        if fmt == "dot":
            lines = ["digraph slim {", "  rankdir=LR;", "  node [shape=box, fontsize=10];"]
            flat = self._flat()
            for n in flat.nodes:
                lines.append(f"  {_dot_id(n)};")
            for s, d, attrs in flat.edges(data=True):
                # the kind on the edge, its evidence under it (shortened) and whole as a tooltip
                evidence = attrs["evidence"]
                short = evidence if len(evidence) <= 60 else evidence[:57] + "..."
                label = attrs["kind"] + (f"\n{short}" if short else "")
                extra = f", tooltip={_dot_id(evidence)}" if evidence else ""
                lines.append(f"  {_dot_id(s)} -> {_dot_id(d)} [label={_dot_id(label)}{extra}];")
            lines.append("}")
            return "\n".join(lines) + "\n"
        raise ValueError(f"unknown graph format {fmt!r}; choose from {', '.join(EXPORT_FORMATS)}")


def _dot_id(text: str) -> str:
    """A DOT double-quoted string (graphviz lang: only '"' needs a backslash; a newline is
    written as the escape \\n, which labels render as a line break)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _within(g: nx.DiGraph, start: str, depth: int | None) -> set[str]:
    """`start` and the nodes reachable from it in at most `depth` edges (any, when None)."""
    import networkx as nx

    return set(nx.single_source_shortest_path_length(g, start, cutoff=depth))
