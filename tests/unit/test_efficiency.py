"""Efficiency: dive's unit-test case (dive/filetree/efficiency_test.go) under dive's and our rules."""

from __future__ import annotations

import pytest

from slim.efficiency import efficiency_of_layers
from slim.fs.tree import FileTree, SquashedTree
from slim.model import EntryKind, FileEntry


def _tree(layer: int, files: dict[str, int], dirs: tuple[str, ...] = (), whiteouts: tuple[str, ...] = (), opaque: tuple[str, ...] = ()) -> FileTree:
    tree = FileTree()
    for d in dirs:
        tree.add(FileEntry(d, EntryKind.DIR, layer=layer))
    for path, size in files.items():
        tree.add(FileEntry(path, EntryKind.FILE, size=size, layer=layer))
    tree.whiteouts.update(whiteouts)
    tree.opaque.update(opaque)
    return tree


def _run(trees: list[FileTree], quirks: str = "slim"):
    squashed = SquashedTree()
    deleted = [squashed.apply(t) for t in trees]
    live = {p: e.size for p, e in squashed.entries.items() if e.kind is EntryKind.FILE}
    return efficiency_of_layers(trees, deleted, live, quirks=quirks)


def dive_case(explicit_dirs: bool = False) -> list[FileTree]:
    """dive's TestEfficency: nginx.conf 2000 → 5000, public 3000, athing 10000, then rm /etc/nginx."""
    dirs = ("/etc", "/etc/nginx") if explicit_dirs else ()
    return [
        _tree(0, {"/etc/nginx/nginx.conf": 2000, "/etc/nginx/public": 3000}, dirs),
        _tree(1, {"/etc/nginx/nginx.conf": 5000, "/etc/athing": 10000}),
        _tree(2, {}, whiteouts=("/etc/nginx",)),
    ]


def test_dive_mode_reproduces_dives_own_test() -> None:
    eff = _run(dive_case(), quirks="dive")
    assert eff.score == 0.75
    assert [(p.path, p.cumulative, p.layers) for p in eff.inefficient] == [("/etc/nginx/nginx.conf", 7000, (0, 1))]
    assert eff.wasted_bytes == 7000  # quirk (b): the surviving 5000 B copy is in it


def test_dive_mode_with_real_directory_entries_hides_the_deletion() -> None:
    # In a real image /etc/nginx has a tar entry, so dive sizes the whiteout as the whole deleted
    # subtree (8000) at one path seen once: min == cumulative, the removal looks efficient.
    eff = _run(dive_case(explicit_dirs=True), quirks="dive")
    assert eff.score == pytest.approx((2000 + 3000 + 10000 + 8000) / (7000 + 3000 + 10000 + 8000))
    assert [p.path for p in eff.inefficient] == ["/etc/nginx/nginx.conf"]


@pytest.mark.parametrize("explicit_dirs", [False, True])
def test_our_quirk_handling(explicit_dirs: bool) -> None:
    # quirk (a): each deleted file gets a 0-size occurrence at its own path, so the deleted
    # directory counts: nginx.conf = 2000+5000+0 (min 0), public = 3000+0 (min 0), athing 10000.
    eff = _run(dive_case(explicit_dirs), quirks="slim")
    assert eff.score == pytest.approx(10000 / 20000)
    assert [(p.path, p.cumulative, p.layers) for p in eff.inefficient] == [
        ("/etc/nginx/nginx.conf", 7000, (0, 1, 2)),
        ("/etc/nginx/public", 3000, (0, 2)),
    ]
    # dive-compatible wasted_bytes over our occurrences (includes every copy) …
    assert eff.wasted_bytes == 10000
    # … and quirk (b): what squashing saves = cumulative - live; athing survives, nginx is gone
    assert eff.removable_by_squash_bytes == 7000 + 3000
    assert eff.user_wasted_percent == pytest.approx(10000 / 15000)  # layers 1..2 add 15000


def test_replaced_file_removable_is_only_the_dead_copy() -> None:
    trees = [_tree(0, {"/a": 2000}), _tree(1, {"/a": 5000})]
    eff = _run(trees)
    assert eff.wasted_bytes == 7000  # dive's number
    assert eff.removable_by_squash_bytes == 2000  # the 2 kB copy squashing would drop
    assert eff.score == pytest.approx(2000 / 7000)


def test_opaque_directory_counts_like_a_deletion() -> None:
    trees = [
        _tree(0, {"/d/x": 100, "/d/y": 50}, ("/d",)),
        _tree(1, {"/d/y": 10}, ("/d",), opaque=("/d",)),
    ]
    eff = _run(trees)
    occ = {p.path: p for p in eff.inefficient}
    # /d/x deleted (0-size occurrence); /d/y re-added in the same layer: one occurrence of 10
    assert occ["/d/x"].cumulative == 100 and occ["/d/x"].layers == (0, 1)
    assert occ["/d/y"].cumulative == 60 and occ["/d/y"].layers == (0, 1)
    assert eff.removable_by_squash_bytes == 100 + 50


def test_empty_and_single_layer_images() -> None:
    assert _run([]).score == 1.0
    one = _run([_tree(0, {"/nothing": 0})])
    assert one.score == 1.0 and one.inefficient == () and one.user_wasted_percent == 0.0
    with pytest.raises(ValueError, match="unknown quirks"):
        _run([], quirks="bogus")


def test_limit_cuts_the_list_not_the_totals() -> None:
    trees = [_tree(0, {f"/f{i}": i + 1 for i in range(10)}), _tree(1, {f"/f{i}": 1 for i in range(10)})]
    full = _run(trees)
    squashed = SquashedTree()
    deleted = [squashed.apply(t) for t in trees]
    cut = efficiency_of_layers(trees, deleted, {}, limit=3)
    assert [p.path for p in cut.inefficient] == ["/f9", "/f8", "/f7"]
    assert cut.wasted_bytes == full.wasted_bytes == sum(range(1, 11)) + 10
    assert cut.score == full.score
