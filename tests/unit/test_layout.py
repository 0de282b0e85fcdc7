"""slim.layout: preserve parts merged across services, the shared base and tops, and the layers
they write read back as the same filesystem (no runner, no root)."""

from __future__ import annotations

import contextlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

from slim.fs.layer import read_layer
from slim.fs.tree import FileTree, squash
from slim.layout import (
    KeptEntry,
    base_plan,
    chain_ids,
    merge_parts,
    merge_tables,
    preserve_parts,
    promoted,
    share_table,
    top_plan,
    write_plan,
)
from slim.model import EntryKind, FileEntry, LayerInfo

F, D, H = EntryKind.FILE, EntryKind.DIR, EntryKind.HARDLINK


def kept(path: str, kind: EntryKind = F, home: int = 0, data: bytes = b"", link: str = "",
         mtime: int = 0) -> KeptEntry:
    e = FileEntry(path, kind, 0o755 if kind is D else 0o644, size=len(data), linkname=link, mtime=mtime)
    return KeptEntry(e, home, path if kind is F else link, 0, f"sha:{data!r}" if kind in (F, H) else "")


class FakeImage:
    """A provider whose files are bytes in a dict, keyed by (layer, path)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.ref = "fake"

    def read_files(self, wanted: dict[int, set[str]]) -> Iterator[tuple[int, str, io.BytesIO]]:
        for layer, paths in wanted.items():
            for p in sorted(paths):
                if p in self.files:
                    yield layer, p, io.BytesIO(self.files[p])


def provider(files: dict[str, bytes]):  # type: ignore[no-untyped-def]
    @contextlib.contextmanager
    def open_provider(_name: str) -> Iterator[FakeImage]:
        yield FakeImage(files)
    return open_provider


def read_back(path: str) -> FileTree:
    with open(path, "rb") as f:
        return read_layer(f, LayerInfo(0, "", "", 0), None).tree


def test_chain_ids_follow_the_image_spec() -> None:
    import hashlib

    a, b = "sha256:aa", "sha256:bb"
    assert chain_ids([a, b]) == [a, "sha256:" + hashlib.sha256(b"sha256:aa sha256:bb").hexdigest()]


def _trees() -> list[dict[str, FileEntry]]:
    l0 = {"/etc": FileEntry("/etc", D, 0o700), "/etc/a": FileEntry("/etc/a", F),
          "/etc/b": FileEntry("/etc/b", F), "/old": FileEntry("/old", F)}
    l1 = {"/srv/x": FileEntry("/srv/x", F)}  # /srv implied
    return [l0, l1]


def test_preserve_parts_keep_parents_and_only_needed_whiteouts() -> None:
    trees = _trees()
    ids = chain_ids(["sha256:0", "sha256:1"])
    one = preserve_parts([kept("/etc/a", home=0, data=b"a"), kept("/srv/x", home=1, data=b"x")],
                         trees, ids, whiteouts=[set(), {"/old", "/gone"}])
    other = preserve_parts([kept("/etc/b", home=0, data=b"b")], trees, ids)
    assert [p.key for p in one] == ids
    # the layer's own metadata for its parents, the nearest lower for an implied one
    base = {k.path: k.entry for k in one[0].entries}
    assert base["/etc"].mode == 0o700
    assert {k.path for k in one[1].entries} == {"/srv", "/srv/x"}
    plans = merge_parts([("one", one), ("other", other)])
    shared = plans[ids[0]]
    assert shared.paths == {"/etc", "/etc/a", "/etc/b"}  # the union of both services
    # /old is gone from the slimmed base, /gone never was: neither whiteout is needed
    assert plans[ids[1]].whiteouts == ()
    keep_old = preserve_parts([kept("/old", home=0, data=b"o"), kept("/srv/x", home=1, data=b"x")],
                              trees, ids, whiteouts=[set(), {"/old"}])
    plans = merge_parts([("one", one), ("three", keep_old)])
    assert plans[ids[1]].whiteouts == ("/old",)  # another service brought /old into the base


def test_rewritten_files_go_to_the_top_and_split_it() -> None:
    trees = _trees()
    ids = chain_ids(["sha256:0", "sha256:1"])
    a = preserve_parts([kept("/etc/a", data=b"a1")], trees, ids, rewritten={"/etc/a"})
    b = preserve_parts([kept("/etc/a", data=b"a2")], trees, ids, rewritten={"/etc/a"})
    assert a[0].key == b[0].key == ids[0] and a[0].entries == b[0].entries
    assert "/etc/a" in {k.path for k in a[1].entries}
    assert a[1].key != b[1].key  # different rewritten bytes: different top layers


def test_hardlink_to_another_layer_becomes_a_file() -> None:
    trees = [{"/t": FileEntry("/t", F)}, {"/l": FileEntry("/l", H, linkname="/t")}]
    ids = chain_ids(["sha256:0", "sha256:1"])
    parts = preserve_parts([kept("/t", data=b"T", home=0), kept("/l", H, home=1, link="/t")],
                           trees, ids)
    (link,) = parts[1].entries
    assert link.entry.kind is F and link.content == "/t" and link.entry.size == 1


def test_shared_base_and_tops_rebuild_each_service_exactly(tmp_path: Path) -> None:
    big = b"B" * 1000
    views = {
        "a": [kept("/bin", D), kept("/bin/big", data=big), kept("/etc", D), kept("/etc/conf", data=b"a"),
              kept("/only-a", data=b"x")],
        "b": [kept("/bin", D), kept("/bin/big", data=big), kept("/etc", D), kept("/etc/conf", data=b"b")],
        "c": [kept("/bin", D), kept("/bin/big", data=big, mtime=5), kept("/etc", D),
              kept("/etc/conf", data=b"b")],
    }
    table = merge_tables(merge_tables(share_table("a", views["a"]), share_table("b", views["b"])),
                         share_table("c", views["c"]))
    chosen = promoted(table)
    assert chosen["/bin/big"] == views["a"][1].identity()  # a and b agree (c's mtime differs)
    assert chosen["/etc/conf"] == views["b"][3].identity()  # b and c agree
    base = base_plan(list(views.items()), chosen)
    assert base.paths == {"/bin", "/bin/big", "/etc", "/etc/conf"}
    files = {"/bin/big": big, "/etc/conf": b"b", "/only-a": b"x"}
    base_blob = write_plan(base, provider(files), str(tmp_path))
    for name, entries in views.items():
        top = top_plan(name, entries, base)
        data = {**files, "/etc/conf": b"a" if name == "a" else b"b"}
        top_blob = write_plan(top, provider(data), str(tmp_path / name))
        fs = squash([read_back(base_blob.blob.path), read_back(top_blob.blob.path)])
        got = {e.path: (e.kind, e.size, e.mtime) for e in fs.walk()}
        assert got == {k.path: (k.entry.kind, k.entry.size, k.entry.mtime) for k in entries}, name


def test_write_plan_is_deterministic(tmp_path: Path) -> None:
    entries = [kept("/a", data=b"1"), kept("/d", D), kept("/d/b", data=b"22")]
    base = base_plan([("x", entries), ("y", entries)], promoted(
        merge_tables(share_table("x", entries), share_table("y", entries))))
    files = {"/a": b"1", "/d/b": b"22"}
    one = write_plan(base, provider(files), str(tmp_path / "1"))
    two = write_plan(base, provider(files), str(tmp_path / "2"))
    assert one.blob.digest == two.blob.digest and one.tar_bytes == two.tar_bytes
    with tarfile.open(one.blob.path) as tf:
        assert tf.getnames() == ["a", "d", "d/b"]
