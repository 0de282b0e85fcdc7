"""The excess report: what the static closure keeps that a traced run never touched, and why.

A traced run touches files (opens, executes, maps, stats them); those are the *floor* — a deeper
probe may touch more, never less. Everything else in the keep set is kept on static evidence
alone. To say where those bytes come from, the keep graph is walked breadth-first from the
container start and every touched file at once: each untouched file is reached first from some
touched file (or the start) through one edge — the *entry* into the untouched part — and
everything reached only below that entry is charged to it. So the 4.7 MB of perl a CA
certificate rule pulls in appear as one chain, "CA.pl, kept by rule ca-certificates", not as
a `shebang` edge to perl and a hundred `needed` edges below it.

`by_reason` sums the untouched bytes per entry reason (the edge kind; `rule NAME` per rule);
`chains` lists the heaviest entries — grouped by the edge's source and reason, so one rule that
keeps 250 modules from one trigger is one chain — each with its largest files and the graph path
from the entry to the largest one. Nothing here changes what is kept: it is the instrument that tells a
user what `--drop` could save and a developer which rule or analyzer keeps too much.
"""

from __future__ import annotations

from collections import deque

from slim.fs.rootfs import RootFS
from slim.graph import DependencyGraph, best_reason
from slim.model import ROOT, EntryKind
from slim.result import Excess, ExcessChain, ExcessReason, PathBytes, Totals

TRACED_KINDS = frozenset({"traced-open", "traced-exec"})
TOP_CHAINS = 10
HEAVIEST = 3


def touched_paths(graph: DependencyGraph) -> set[str]:
    """The nodes a traced run touched: those the start links to with a traced edge, and what
    the kernel resolved or loaded for them without a system call of its own that strace
    shows: the targets of touched symlinks, and for an executed file its `#!` interpreter and
    its ELF interpreter (PT_INTERP), which execve loads (fs/binfmt_script.c, binfmt_elf.c)."""
    succ = graph.succ
    if ROOT not in succ:
        return set()

    def kinds(src: str, dst: str) -> set[str]:
        return {kind for kind, _ in succ[src][dst]}

    touched = {dst for dst in succ[ROOT] if kinds(ROOT, dst) & TRACED_KINDS}
    executed = {dst for dst in touched if "traced-exec" in kinds(ROOT, dst)}
    todo = [(node, node in executed) for node in touched]
    seen = {(node, ran) for node, ran in todo}
    while todo:
        node, ran = todo.pop()
        for nxt in succ[node]:
            via = kinds(node, nxt)
            if "symlink" in via:
                step = (nxt, ran)
            elif ran and via & {"shebang", "interpreter"}:
                step = (nxt, True)  # the kernel executes the interpreter in its place
            else:
                continue
            if step not in seen:
                seen.add(step)
                touched.add(nxt)
                todo.append(step)
    return touched


def _sizes(fs: RootFS, keep: set[str]) -> dict[str, int]:
    """Bytes of each kept non-directory (regular files count their size, links 0)."""
    out = {}
    for path in keep:
        entry = fs.get(path)
        if entry is not None and entry.kind is not EntryKind.DIR:
            out[path] = entry.size if entry.kind is EntryKind.FILE else 0
    return out


def _entries(graph: DependencyGraph, touched: set[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(node → the entry it is charged to, node → its BFS parent) for every untouched node
    reachable from the start. Sources: the start and every touched node, all at distance 0."""
    succ = graph.succ
    sources = [ROOT, *sorted(touched)]
    seen = set(sources)
    entry: dict[str, str] = {}
    parent: dict[str, str] = {}
    queue = deque(sources)
    while queue:
        node = queue.popleft()
        for nxt in sorted(succ[node]):
            if nxt in seen:
                continue
            seen.add(nxt)
            parent[nxt] = node
            entry[nxt] = entry.get(node, nxt)  # below an entry, or an entry itself
            queue.append(nxt)
    return entry, parent


def _chain_to(path: str, top: str, parent: dict[str, str]) -> tuple[str, ...]:
    out = [path]
    while out[-1] != top and out[-1] in parent:
        out.append(parent[out[-1]])
    return tuple(reversed(out))


def excess_report(graph: DependencyGraph, keep: set[str], fs: RootFS) -> Excess:
    """The excess of the keep set over what the traced run touched (module docstring)."""
    sizes = _sizes(fs, keep)
    touched = touched_paths(graph) & keep
    entry, parent = _entries(graph, touched)
    # the untouched files, grouped by the edge that enters their part of the graph: one rule
    # keeping 250 modules from one trigger is one chain
    groups: dict[tuple[str, str, str], list[str]] = {}
    for path in sizes:
        if path in touched or path not in entry:
            continue
        top = entry[path]
        kind, evidence = best_reason(graph, parent[top], top)
        groups.setdefault((parent[top], kind, evidence), []).append(path)
    reasons: dict[str, list[int]] = {}
    chains = []
    for (src, kind, evidence), files in groups.items():
        total = sum(sizes[f] for f in files)
        acc = reasons.setdefault(f"rule {evidence}" if kind == "rule" else kind, [0, 0])
        acc[0] += total
        acc[1] += len(files)
        heaviest = sorted(files, key=lambda f: (-sizes[f], f))[:HEAVIEST]
        chain = _chain_to(heaviest[0], entry[heaviest[0]], parent)
        chains.append(ExcessChain(chain[0], src, kind, evidence, total, len(files),
                                  tuple(PathBytes(f, sizes[f]) for f in heaviest), chain))
    chains.sort(key=lambda c: (-c.size_bytes, c.src, c.path))
    untouched = [p for p in sizes if p not in touched]
    return Excess(
        traced=Totals(sum(sizes[p] for p in touched if p in sizes), len(touched & sizes.keys())),
        untouched=Totals(sum(sizes[p] for p in untouched), len(untouched)),
        by_reason=tuple(sorted((ExcessReason(r, b, n) for r, (b, n) in reasons.items()),
                               key=lambda r: (-r.size_bytes, r.reason))),
        chains=tuple(chains[:TOP_CHAINS]))


__all__ = ["TRACED_KINDS", "excess_report", "touched_paths"]
