"""Laying a minimal image out in layers: the original layers slimmed in place (`preserve`), or a
shared base under thin per-service tops (`slim fleet`). One squashed layer is slim.emitters.image.

Every layout starts from the minimal image's entries (`KeptEntry`: what the squashed minimal image
holds, with the original layer each path lives in and where its bytes are read from), so every
layout shows a service exactly the files its verified minimal image has:

* **preserve**: each original layer keeps the kept entries that live in it, the parent
  directories they need (with that layer's metadata, else the nearest lower layer's) and only
  the whiteouts and opaque markers that still hide something in the slimmed layers below
  (OCI image-spec layer.md "Whiteouts"). Layers are identified by ChainID (image-spec config.md:
  the layer with everything below it), so images that share a base layer, slimmed together,
  share one slimmed version of it: the union of what each keeps there, byte-identical. Rewritten
  package databases go into the service's top layer (they differ per service).
* **shared base + tops**: an entry kept by `min_share` or more services with the same identity
  (path, type, mode, owner, mtime, xattrs, link target and content sha256) goes into one base
  layer; when two identities compete for one path the one with more bytes * services wins.
  Each service's top holds the rest of its entries and whiteouts for base paths it does not
  have, so base + top is exactly its minimal image.

A hard link whose target is not in the same layer becomes a regular file with the target's
bytes (a tar hard link names a member of the same archive).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import posixpath
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from slim.emitters.imagewriter import LayerBlob, LayerTarWriter, compress_layer, plain_blob
from slim.errors import EmitError
from slim.model import EntryKind, FileEntry, ancestors_of, parent_dirs
from slim.outputs import copy_sparse

log = logging.getLogger(__name__)

Identity = tuple[Any, ...]


@dataclass(frozen=True)
class KeptEntry:
    """One entry of a minimal image: as written, the original layer its path lives in (`home`),
    where its bytes are read (`content_layer`, `content`: a layer index and path of the image
    that provides them) and their sha256 (regular files, when known)."""

    entry: FileEntry
    home: int
    content: str = ""
    content_layer: int = 0
    digest: str = ""

    @property
    def path(self) -> str:
        return self.entry.path

    def identity(self) -> Identity:
        """What must be equal for two services to share this entry."""
        e = self.entry
        return (e.path, e.kind.value, e.mode, e.uid, e.gid, e.size, e.linkname, e.mtime,
                e.xattrs, e.devmajor, e.devminor, self.digest)


@dataclass(frozen=True)
class Placed:
    """An entry of a layer to write and the image (by provider name) its bytes come from."""

    kept: KeptEntry
    provider: str


@dataclass(frozen=True)
class LayerPart:
    """What one service contributes to one slimmed original layer (`preserve`)."""

    key: str  # the ChainID; the top layer's also names the service's rewritten files
    index: int
    entries: tuple[KeptEntry, ...]
    whiteouts: tuple[str, ...] = ()
    opaque: tuple[str, ...] = ()


@dataclass(frozen=True)
class LayerPlan:
    """One layer to write: entries, whiteouts, opaque directories, and bytes of rewritten
    files that no image holds (`data`)."""

    key: str
    entries: tuple[Placed, ...]
    whiteouts: tuple[str, ...] = ()
    opaque: tuple[str, ...] = ()
    data: dict[str, bytes] = field(default_factory=dict)

    @property
    def paths(self) -> set[str]:
        return {p.kept.path for p in self.entries}


@dataclass(frozen=True)
class WrittenLayer:
    """A written layer blob and the size of its uncompressed tar."""

    blob: LayerBlob
    tar_bytes: int


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """ChainIDs of a layer stack (image-spec config.md "Layer ChainID")."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


def materialize_links(entries: Iterable[KeptEntry], by_path: dict[str, KeptEntry]) -> list[KeptEntry]:
    """`entries` with every hard link whose target is not among them turned into a regular
    file carrying the target's bytes (`by_path`: the service's whole minimal image)."""
    entries = list(entries)
    here = {k.path for k in entries}
    out = []
    for k in entries:
        e = k.entry
        target = by_path.get(e.linkname) if e.kind is EntryKind.HARDLINK else None
        if target is not None and e.linkname not in here:
            e = dataclasses.replace(e, kind=EntryKind.FILE, size=target.entry.size, linkname="")
            k = dataclasses.replace(k, entry=e, content=target.content,
                                    content_layer=target.content_layer, digest=target.digest)
        out.append(k)
    return out


# -- preserve ------------------------------------------------------------------------------
def _dir_entry(path: str, trees: Sequence[dict[str, FileEntry]], index: int) -> FileEntry:
    """Directory `path` as layer `index` shows it: its own entry, else the nearest lower
    layer's, else an implied directory (0755, root)."""
    for i in range(index, -1, -1):
        e = trees[i].get(path)
        if e is not None and e.kind is EntryKind.DIR:
            return dataclasses.replace(e, layer=0)
    return FileEntry(path, EntryKind.DIR, 0o755)


def preserve_parts(entries: Sequence[KeptEntry], trees: Sequence[dict[str, FileEntry]],
                   layer_ids: Sequence[str], rewritten: Iterable[str] = (),
                   whiteouts: Sequence[Iterable[str]] = (),
                   opaque: Sequence[Iterable[str]] = ()) -> tuple[LayerPart, ...]:
    """One service's contribution to each of its original layers (`trees`: the layers'
    entries by path; `layer_ids`: their ChainIDs). Rewritten files go to the top layer."""
    top = len(trees) - 1
    rewritten = set(rewritten)
    by_path = {k.path: k for k in entries}
    placed: dict[int, list[KeptEntry]] = {i: [] for i in range(len(trees))}
    for k in entries:
        placed[top if k.path in rewritten else min(k.home, top)].append(k)
    tag = hashlib.sha256(repr(sorted((k.path, k.digest, k.entry.size) for k in entries
                                     if k.path in rewritten)).encode()).hexdigest()[:16]
    parts = []
    for i in range(len(trees)):
        mine = {k.path: k for k in placed[i]}
        for k in list(mine.values()):
            for d in parent_dirs(k.path):
                if d not in mine:
                    mine[d] = KeptEntry(_dir_entry(d, trees, i), i)
        key = layer_ids[i] + (f"+{tag}" if i == top and rewritten & set(by_path) else "")
        parts.append(LayerPart(key, i, tuple(sorted(materialize_links(mine.values(), by_path),
                                                    key=lambda k: k.path)),
                               tuple(sorted(whiteouts[i])) if i < len(whiteouts) else (),
                               tuple(sorted(opaque[i])) if i < len(opaque) else ()))
    return tuple(parts)


def merge_parts(services: Sequence[tuple[str, Sequence[LayerPart]]]) -> dict[str, LayerPlan]:
    """The slimmed layers of services laid out with `preserve`, slimmed together: per key, the
    union of the services' entries, and the whiteouts still needed over the layers below."""
    slots: dict[str, dict[str, Placed]] = {}
    lowers: dict[str, list[str]] = {}
    marks: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    for name, parts in sorted(services, key=lambda s: s[0]):
        keys = [p.key for p in parts]
        for i, part in enumerate(parts):
            lowers.setdefault(part.key, keys[:i])
            marks.setdefault(part.key, (part.whiteouts, part.opaque))
            slot = slots.setdefault(part.key, {})
            for k in part.entries:
                cur = slot.get(k.path)
                # a hard link wins over the regular file another service made of it: its
                # target is in this layer (materialize_links kept it a link only then)
                if cur is None or (k.entry.kind is EntryKind.HARDLINK
                                   and cur.kept.entry.kind is not EntryKind.HARDLINK):
                    slot[k.path] = Placed(k, name)
    plans = {}
    for key, slot in slots.items():
        below: set[str] = set()
        for lower in lowers[key]:
            below.update(slots[lower])
        ancestors = ancestors_of(below)
        whiteouts, opaque = marks[key]
        plans[key] = LayerPlan(key, tuple(slot[p] for p in sorted(slot)),
                               tuple(w for w in whiteouts if w in below or w in ancestors),
                               tuple(d for d in opaque if d in ancestors or (d == "/" and below)))
    return plans


# -- shared base + tops ----------------------------------------------------------------------
ShareTable = dict[Identity, tuple[int, frozenset[str]]]  # identity → (bytes, services)


def share_table(name: str, entries: Iterable[KeptEntry]) -> ShareTable:
    """The map step of the base: each entry's identity, its bytes, and this service."""
    return {k.identity(): (k.entry.size, frozenset((name,))) for k in entries}


def merge_tables(a: ShareTable, b: ShareTable) -> ShareTable:
    """The reduce step of the base: identities with the union of the services keeping them."""
    out = dict(a)
    for ident, (size, names) in b.items():
        cur = out.get(ident)
        out[ident] = (size, names if cur is None else cur[1] | names)
    return out


def promoted(table: ShareTable, min_share: int = 2) -> dict[str, Identity]:
    """The base's identity for each path: kept identically by `min_share` or more services;
    when several qualify for one path, the most bytes * services wins (then the identity)."""
    best: dict[str, tuple[tuple[int, int], Identity]] = {}
    for ident, (size, names) in table.items():
        if len(names) < min_share:
            continue
        score = (size * len(names), len(names))
        cur = best.get(ident[0])
        if cur is None or score > cur[0] or (score == cur[0] and repr(ident) < repr(cur[1])):
            best[ident[0]] = (score, ident)
    return {path: ident for path, (_, ident) in best.items()}


def base_plan(views: Sequence[tuple[str, Sequence[KeptEntry]]],
              chosen: dict[str, Identity]) -> LayerPlan:
    """The shared base layer: the promoted entries (bytes from the first service, by name, that
    has each) and the parent directories they need."""
    slot: dict[str, Placed] = {}
    for name, entries in sorted(views, key=lambda v: v[0]):
        for k in entries:
            if k.path not in slot and chosen.get(k.path) == k.identity():
                slot[k.path] = Placed(k, name)
    for name, entries in sorted(views, key=lambda v: v[0]):
        mine = {k.path: k for k in entries}
        for k in entries:
            if slot.get(k.path, Placed(k, "")).provider != name:
                continue
            for d in parent_dirs(k.path):
                if d not in slot and d in mine:
                    slot[d] = Placed(mine[d], name)
    by_provider = {name: {k.path: k for k in entries} for name, entries in views}
    out = []
    for path in sorted(slot):
        placed = slot[path]
        target = placed.kept.entry.linkname
        if placed.kept.entry.kind is EntryKind.HARDLINK and target not in slot:
            placed = Placed(materialize_links([placed.kept], by_provider[placed.provider])[0],
                            placed.provider)
        out.append(placed)
    return LayerPlan("base", tuple(out))


def top_plan(name: str, entries: Sequence[KeptEntry], base: LayerPlan) -> LayerPlan:
    """A service's top over the base: its entries the base lacks or has differently, and a
    whiteout for each base path it does not have (the topmost one of a missing subtree)."""
    base_at = {p.kept.path: p.kept for p in base.entries}
    mine = {k.path: k for k in entries}
    own = [k for k in entries
           if k.path not in base_at or base_at[k.path].identity() != k.identity()]
    whiteouts = []
    for path in sorted(base_at):
        if path in mine:
            continue
        parent = posixpath.dirname(path)
        if parent == "/" or (parent in mine and mine[parent].entry.kind is EntryKind.DIR):
            whiteouts.append(path)
    placed = tuple(Placed(k, name) for k in materialize_links(own, mine))
    return LayerPlan(f"top:{name}", tuple(sorted(placed, key=lambda p: p.kept.path)),
                     tuple(whiteouts))


# -- writing -----------------------------------------------------------------------------------
Opener = Callable[[str], contextlib.AbstractContextManager[Any]]  # provider → opened Image


def write_plan(plan: LayerPlan, open_provider: Opener, out_dir: str,
               compression: str = "gzip") -> WrittenLayer:
    """Write `plan` as one deterministic layer blob in `out_dir`, streaming file bytes from
    the providers' images (`open_provider(name)` opens one). Raises EmitError."""
    os.makedirs(out_dir, exist_ok=True)
    fd, tar_path = tempfile.mkstemp(prefix=".layer-", suffix=".tar", dir=out_dir)
    blob: LayerBlob | None = None
    try:
        with os.fdopen(fd, "wb") as out, LayerTarWriter(out, keep_mtime=True) as writer:
            wanted = _add_entries(writer, plan)
            for w in plan.whiteouts:
                writer.add_whiteout(w)
            for d in plan.opaque:
                writer.add_opaque(d)
            for provider in sorted(wanted):
                with open_provider(provider) as image:
                    stream_kept(writer, image, wanted[provider])
        tar_bytes = os.path.getsize(tar_path)
        level = 6 if compression == "gzip" else None  # gzip -6: zlib's default (see image.py)
        blob = (plain_blob(tar_path) if compression == "none"  # the tar is the blob: not copied
                else compress_layer(tar_path, out_dir, compression, level=level))
    except OSError as exc:
        raise EmitError(f"{out_dir}: cannot write layer {plan.key}: {exc.strerror or exc}") from None
    finally:
        if blob is None or blob.path != tar_path:
            with contextlib.suppress(OSError):
                os.unlink(tar_path)
    return WrittenLayer(blob, tar_bytes)


Wanted = dict[tuple[int, str], list[FileEntry]]


def _add_entries(writer: LayerTarWriter, plan: LayerPlan) -> dict[str, Wanted]:
    """Add every entry without bytes to read; return the rest by provider."""
    import io

    wanted: dict[str, Wanted] = {}
    for placed in plan.entries:
        e = placed.kept.entry
        data = plan.data.get(e.path)
        if data is not None:
            writer.add(dataclasses.replace(e, kind=EntryKind.FILE, size=len(data), linkname=""),
                       io.BytesIO(data))
        elif e.kind is EntryKind.FILE and e.size > 0:
            key = (placed.kept.content_layer, placed.kept.content or e.path)
            wanted.setdefault(placed.provider, {}).setdefault(key, []).append(e)
        else:
            writer.add(e)
    return wanted


def stream_kept(writer: LayerTarWriter, image: Any, wanted: Wanted, what: str = "files") -> None:
    """Add the entries whose bytes `image` holds (`wanted`: (layer, path) → entries), reading
    each needed layer once; bytes several entries share are spooled sparsely (holes stay
    holes). Raises EmitError naming what could not be re-read."""
    by_layer: dict[int, set[str]] = {}
    for layer, path in wanted:
        by_layer.setdefault(layer, set()).add(path)
    for layer, path, stream in image.read_files(by_layer):
        targets = wanted.pop((layer, path), [])
        if len(targets) == 1:
            writer.add(targets[0], stream)
        elif targets:
            with tempfile.TemporaryFile(prefix="slim-spool-") as spool:
                copy_sparse(stream, spool.fileno())
                for t in targets:
                    spool.seek(0)
                    writer.add(t, spool)
    if wanted:
        missing = sorted(p for _, p in wanted)
        raise EmitError(f"{image.ref}: could not re-read {len(missing)} {what}, e.g. {missing[0]}")


def hash_files(image: Any, paths: Iterable[tuple[int, str]]) -> dict[tuple[int, str], str]:
    """sha256 of regular files of `image` ((layer, path) pairs), streamed."""
    by_layer: dict[int, set[str]] = {}
    for layer, path in paths:
        by_layer.setdefault(layer, set()).add(path)
    out = {}
    for layer, path, stream in image.read_files(by_layer):
        sha = hashlib.sha256()
        while chunk := stream.read(1 << 20):
            sha.update(chunk)
        out[(layer, path)] = "sha256:" + sha.hexdigest()
    return out


@contextlib.contextmanager
def opened(image: Any) -> Iterator[Any]:
    """An already-open image as a provider (the caller closes it)."""
    yield image


__all__ = ["KeptEntry", "LayerPart", "LayerPlan", "Placed", "ShareTable", "WrittenLayer",
           "base_plan", "chain_ids", "hash_files", "materialize_links", "merge_parts",
           "merge_tables", "opened", "preserve_parts", "promoted", "share_table", "top_plan",
           "write_plan"]
