"""What a fleet of services costs in each layout: bytes stored, bytes pulled, page cache.

Every layout is described as pieces (a layer, a blob, a cached file, a kernel), each with its
size and the services that use it; a piece counts once however many services use it:

* **stored** — what a node keeps on disk after pulling: the unpacked layers (their tar bytes),
  one per ChainID (containerd and Docker keep one snapshot per layer-with-its-parents);
* **pulled** — what a node downloads to run all services (and what a registry stores): the
  compressed layer blobs, one per digest (manifests and configs, a few kB, are left out);
* **page cache** — an estimate of the memory file pages take when every service runs on one
  host: each service's kept regular files (an upper bound of what it reads), counted once per
  copy the kernel can cache — a file is one inode per layer it lives in, so services share a
  cached file only when they share the layer holding it;
* unikernels share nothing: each service is its own VM image, kernel plus files, cached in
  its own guest memory; pulled counts the files compressed (the service's one-layer blob,
  scaled to the files the target ships) plus the kernel.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Piece:
    """One thing stored, pulled or cached, and the services that use it."""

    key: str
    size: int
    services: frozenset[str]


@dataclass(frozen=True)
class Measure:
    """Bytes of a set of pieces: in total (each piece once), shared by two or more services,
    unique to each service, and what each service needs alone (a node running only it)."""

    total: int = 0
    shared: int = 0
    unique: dict[str, int] = field(default_factory=dict)
    alone: dict[str, int] = field(default_factory=dict)


def measure(pieces: Iterable[Piece], services: Sequence[str]) -> Measure:
    """Sum pieces, each key once (the services of equal keys are joined)."""
    merged: dict[str, Piece] = {}
    for p in pieces:
        cur = merged.get(p.key)
        merged[p.key] = p if cur is None else Piece(p.key, max(cur.size, p.size),
                                                     cur.services | p.services)
    unique = dict.fromkeys(services, 0)
    alone = dict.fromkeys(services, 0)
    shared = 0
    for p in merged.values():
        for s in p.services:
            alone[s] = alone.get(s, 0) + p.size
        if len(p.services) > 1:
            shared += p.size
        else:
            for s in p.services:
                unique[s] = unique.get(s, 0) + p.size
    return Measure(sum(p.size for p in merged.values()), shared, unique, alone)


@dataclass(frozen=True)
class StackLayer:
    """One layer of a service's image in some layout."""

    chain_id: str
    digest: str  # the blob's digest
    blob_bytes: int
    tar_bytes: int


@dataclass(frozen=True)
class ServiceLayout:
    """A service in some layout: its layers, base first, and its kept regular files as
    (index of the layer holding it, path, bytes)."""

    name: str
    layers: tuple[StackLayer, ...]
    files: tuple[tuple[int, str, int], ...]


@dataclass(frozen=True)
class Footprint:
    """One layout of the whole fleet, measured three ways."""

    key: str
    title: str
    stored: Measure
    pulled: Measure
    page_cache: Measure
    layers: dict[str, int]  # layer count per service (0: not an image)
    note: str = ""


def image_footprint(key: str, title: str, services: Sequence[ServiceLayout],
                    note: str = "") -> Footprint:
    """The footprint of container images laid out as `services` describe."""
    names = [s.name for s in services]
    stored, pulled, cache = [], [], []
    for s in services:
        me = frozenset((s.name,))
        for layer in s.layers:
            stored.append(Piece(layer.chain_id, layer.tar_bytes, me))
            pulled.append(Piece(layer.digest, layer.blob_bytes, me))
        for index, path, size in s.files:
            cache.append(Piece(f"{s.layers[index].chain_id}:{path}", size, me))
    return Footprint(key, title, measure(stored, names), measure(pulled, names),
                     measure(cache, names), {s.name: len(s.layers) for s in services}, note)


def unikernel_footprint(key: str, title: str, kernel_bytes: int, files: dict[str, int],
                        compressed: dict[str, int], note: str = "") -> Footprint:
    """One VM image per service, nothing shared. `files` maps a service to the bytes of the
    files its image carries; stored and page cache are kernel + those files, pulled is kernel +
    `compressed` (the same files gzip-compressed, as a compressed disk image would travel)."""
    names = sorted(files)

    def pieces(sizes: dict[str, int]) -> list[Piece]:
        return [Piece(f"{key}:{name}", kernel_bytes + size, frozenset((name,)))
                for name, size in sizes.items()]

    m = measure(pieces(files), names)
    return Footprint(key, title, m, measure(pieces(compressed), names), m,
                     dict.fromkeys(names, 0), note)


__all__ = ["Footprint", "Measure", "Piece", "ServiceLayout", "StackLayer", "image_footprint",
           "measure", "unikernel_footprint"]
