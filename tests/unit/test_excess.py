"""The excess report: untouched kept bytes charged to the edge that enters them."""

from __future__ import annotations

from pathlib import Path

from slim.excess import excess_report, touched_paths
from slim.graph import DependencyGraph
from slim.model import ROOT, Edge
from slim.pipeline import load_image
from tests.unit.analyzers.test_python import write_tree

FILES: dict[str, str | bytes] = {
    "/app/main.py": "x" * 100,
    "/usr/lib/libssl.so": "s" * 1000,
    "/usr/lib/ssl/misc/CA.pl": "c" * 50,
    "/usr/bin/perl": "p" * 4000,
    "/usr/lib/libperl.so": "l" * 6000,
    "/etc/ssl/certs/bundle.crt": "b" * 200,
    "/usr/lib/gconv/A.so": "a" * 30,
    "/usr/lib/gconv/B.so": "b" * 30,
}


def _graph() -> DependencyGraph:
    g = DependencyGraph()
    for e in [
        Edge(ROOT, "/app/main.py", "traced-open", "open"),
        Edge(ROOT, "/usr/lib/libssl.so", "traced-open", "open"),
        Edge(ROOT, "/app/main.py", "entrypoint", "argv"),
        Edge("/app/main.py", "/usr/lib/libssl.so", "import", "import ssl"),
        Edge("/usr/lib/libssl.so", "/usr/lib/ssl/misc/CA.pl", "rule", "ca-certificates"),
        Edge("/usr/lib/libssl.so", "/etc/ssl/certs/bundle.crt", "rule", "ca-certificates"),
        Edge("/usr/lib/ssl/misc/CA.pl", "/usr/bin/perl", "shebang", "#!/usr/bin/perl"),
        Edge("/usr/bin/perl", "/usr/lib/libperl.so", "needed", "DT_NEEDED libperl.so"),
        Edge("/usr/lib/libssl.so", "/usr/lib/gconv/A.so", "rule", "gconv"),
        Edge("/usr/lib/libssl.so", "/usr/lib/gconv/B.so", "rule", "gconv"),
        # perl is also reachable from the untouched bundle: its bytes are charged once
        Edge("/etc/ssl/certs/bundle.crt", "/usr/bin/perl", "config", "path literal"),
    ]:
        g.add(e)
    return g


def test_untouched_bytes_are_charged_to_the_entry_edge(tmp_path: Path) -> None:
    write_tree(tmp_path, FILES)
    graph = _graph()
    assert touched_paths(graph) == {"/app/main.py", "/usr/lib/libssl.so"}
    with load_image(f"rootfs:{tmp_path}") as loaded:
        ex = excess_report(graph, {p for p in FILES}, loaded.rootfs)
    assert (ex.traced.size_bytes, ex.traced.file_count) == (1100, 2)
    assert (ex.untouched.size_bytes, ex.untouched.file_count) == (50 + 4000 + 6000 + 200 + 60, 6)
    by = {r.reason: (r.size_bytes, r.file_count) for r in ex.by_reason}
    assert by == {"rule ca-certificates": (10250, 4), "rule gconv": (60, 2)}
    top = ex.chains[0]
    # CA.pl and the bundle enter from the same edge source and reason: one chain
    assert (top.src, top.kind, top.evidence, top.size_bytes, top.file_count) == (
        "/usr/lib/libssl.so", "rule", "ca-certificates", 10250, 4)
    assert top.heaviest[0].path == "/usr/lib/libperl.so"
    # the path from the entry to the largest file (the bundle's route is as short, and sorts first)
    assert top.chain == ("/etc/ssl/certs/bundle.crt", "/usr/bin/perl", "/usr/lib/libperl.so")
    assert ex.chains[1].file_count == 2 and ex.chains[1].evidence == "gconv"


def test_no_trace_means_everything_is_untouched(tmp_path: Path) -> None:
    write_tree(tmp_path, {"/a": "1" * 10})
    g = DependencyGraph()
    g.add(Edge(ROOT, "/a", "entrypoint", "argv"))
    with load_image(f"rootfs:{tmp_path}") as loaded:
        ex = excess_report(g, {"/a"}, loaded.rootfs)
    assert ex.traced.file_count == 0 and ex.untouched.size_bytes == 10
    assert ex.chains[0].src == ROOT and ex.by_reason[0].reason == "entrypoint"


def test_what_execve_loads_counts_as_touched() -> None:
    """strace shows execve("/usr/bin/puma") only: the kernel follows the `#!` line to the
    interpreter (through its symlink) and maps the ELF interpreter without a system call of
    their own. A script merely opened loads nothing."""
    g = DependencyGraph()
    for e in [
        Edge(ROOT, "/usr/bin/puma", "traced-exec", "execve"),
        Edge(ROOT, "/usr/bin/report.rb", "traced-open", "open"),
        Edge("/usr/bin/puma", "/usr/bin/ruby", "shebang", "#!/usr/bin/ruby"),
        Edge("/usr/bin/ruby", "/usr/bin/ruby3.1", "symlink", "-> /usr/bin/ruby3.1"),
        Edge("/usr/bin/ruby3.1", "/lib64/ld-linux-x86-64.so.2", "interpreter", "PT_INTERP"),
        Edge("/usr/bin/ruby3.1", "/usr/lib/libruby.so", "needed", "DT_NEEDED"),
        Edge("/usr/bin/report.rb", "/usr/bin/perl", "shebang", "#!/usr/bin/perl"),
    ]:
        g.add(e)
    assert touched_paths(g) == {"/usr/bin/puma", "/usr/bin/report.rb", "/usr/bin/ruby", "/usr/bin/ruby3.1",
                                "/lib64/ld-linux-x86-64.so.2"}
