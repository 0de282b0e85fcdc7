"""docker-archive:, oci:, oci-archive: — images stored as files.

Both archive forms are read in place: the outer tar is uncompressed, so each blob is a byte range
of it (tarfile's `offset_data`), opened without extracting anything. Docker's `docker save` writes
either the legacy form (`<id>/layer.tar`, `<id>.json`) or, since Docker 25, an OCI layout inside
the tar whose `manifest.json` points at `blobs/sha256/…`; both go through manifest.json.

OCI: image-spec image-layout.md (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`); an index entry
may itself be an index (multi-arch), from which the manifest matching the wanted platform is
chosen (image-index.md `platform`).
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import posixpath
import tarfile
from abc import ABC, abstractmethod
from typing import Any, BinaryIO

from slim.errors import SourceError
from slim.fs.layer import checked_tarinfo
from slim.model import LayerInfo
from slim.refs import ImageRef
from slim.sources.base import (
    BlobImage,
    Source,
    config_from_oci,
    json_array,
    json_object,
    json_size,
    json_string,
    json_strings,
    load_json,
)

MAX_METADATA = 16 << 20  # manifests and configs larger than this are refused
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


def host_platform() -> tuple[str, str]:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)
    return "linux", arch


class RangeReader(io.RawIOBase):
    """A read-only window [start, start+size) of a seekable file."""

    def __init__(self, f: BinaryIO, start: int, size: int) -> None:
        self.f = f
        self.pos = start
        self.end = start + size

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self.end - self.pos)
        if n <= 0:
            return 0
        self.f.seek(self.pos)
        data = self.f.read(n)
        b[: len(data)] = data
        self.pos += len(data)
        return len(data)

    def close(self) -> None:
        self.f.close()
        super().close()


class Store(ABC):
    """Named files of an image container: a directory or an uncompressed tar."""

    label: str

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def size(self, name: str) -> int: ...

    @abstractmethod
    def open(self, name: str) -> BinaryIO: ...

    def host_file(self, name: str) -> str | None:
        """The host file that holds member `name` (the result cache stats it), if any."""
        return None

    def read(self, name: str, limit: int = MAX_METADATA) -> bytes:
        if not self.exists(name):
            raise SourceError(f"{self.label}: missing {name}")
        if self.size(name) > limit:
            raise SourceError(f"{self.label}: {name} is larger than {limit} bytes")
        with self.open(name) as f:
            return f.read()

    def close(self) -> None:  # noqa: B027
        pass


class DirStore(Store):
    """Files of a directory; names may not climb out of it."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        self.label = root

    def _host(self, name: str) -> str:
        clean = posixpath.normpath("/" + name).lstrip("/")
        host = os.path.realpath(os.path.join(self.root, clean))
        if host != self.root and not host.startswith(self.root + os.sep):
            raise SourceError(f"{self.label}: {name} points outside the layout")
        return host

    def exists(self, name: str) -> bool:
        return os.path.isfile(self._host(name))

    def host_file(self, name: str) -> str | None:
        return self._host(name)

    def size(self, name: str) -> int:
        return os.path.getsize(self._host(name))

    def open(self, name: str) -> BinaryIO:
        try:
            return open(self._host(name), "rb")
        except OSError as exc:
            raise SourceError(f"{self.label}: cannot open {name}: {exc.strerror}") from None


class TarStore(Store):
    """Members of an uncompressed tar, read in place by offset."""

    def __init__(self, path: str, label: str = "") -> None:
        self.path = path
        self.label = label or path
        path_shown = self.label
        self.members: dict[str, tarfile.TarInfo] = {}
        try:
            with tarfile.open(path, "r:", tarinfo=checked_tarinfo()) as tf:
                for m in tf:
                    name = posixpath.normpath(m.name).lstrip("/")
                    if m.islnk():
                        target = self.members.get(posixpath.normpath(m.linkname).lstrip("/"))
                        if target is not None:
                            self.members[name] = target
                    elif m.isreg():
                        self.members[name] = m
        except FileNotFoundError:
            raise SourceError(f"{path_shown}: no such file") from None
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise SourceError(f"{path_shown}: not a readable uncompressed tar archive: {exc}") from None
        except ValueError as exc:  # a NUL in the path
            raise SourceError(f"{path_shown!r}: {exc}") from None

    def exists(self, name: str) -> bool:
        return posixpath.normpath(name).lstrip("/") in self.members

    def host_file(self, name: str) -> str | None:
        return self.path

    def size(self, name: str) -> int:
        return self.members[posixpath.normpath(name).lstrip("/")].size

    def open(self, name: str) -> BinaryIO:
        m = self.members.get(posixpath.normpath(name).lstrip("/"))
        if m is None:
            raise SourceError(f"{self.label}: missing {name}")
        f = open(self.path, "rb")  # noqa: SIM115 - owned by the returned reader
        return io.BufferedReader(RangeReader(f, m.offset_data, m.size), 1 << 20)


def blob_name(digest: Any, what: str = "descriptor") -> str:
    """`blobs/ALG/HEX` of a descriptor digest (image-spec descriptor.md). Raises SourceError
    for anything else: another type, another algorithm, a malformed encoded part."""
    digest = json_string(digest, f"{what} digest")
    alg, sep, hexpart = digest.partition(":")
    lengths = {"sha256": 64, "sha384": 96, "sha512": 128}
    if (not sep or alg not in lengths or len(hexpart) != lengths[alg]
            or hexpart.strip("0123456789abcdef")):
        raise SourceError(f"{what}: invalid digest {digest[:200]!r}")
    return f"blobs/{alg}/{hexpart}"


def read_verified(store: Store, digest: Any, what: str) -> bytes:
    """Read a small blob and check it against its digest (sha256, sha384 or sha512)."""
    data = store.read(blob_name(digest, f"{store.label}: {what}"))
    alg, _, hexpart = digest.partition(":")
    actual = hashlib.new(alg, data).hexdigest()
    if actual != hexpart:
        raise SourceError(f"{store.label}: {what} {digest}: digest mismatch (blob is {alg}:{actual})")
    return data


class StoreImage(BlobImage):
    """An image whose blobs live in a Store."""

    def __init__(self, ref: ImageRef, store: Store) -> None:
        self.ref = ref
        self.store = store
        self.blob_names: list[str] = []
        self.manifest_digest = ""

    def open_blob(self, index: int) -> BinaryIO:
        return self.store.open(self.blob_names[index])

    def blob_files(self) -> list[str]:
        files = [self.store.host_file(n) for n in self.blob_names]
        return [f for f in files if f] if all(files) else []

    def close(self) -> None:
        self.store.close()

    def _set_config(self, raw: dict[str, Any], what: str) -> list[str]:
        self.raw_config = raw
        self.config, self.diff_ids, created_by = config_from_oci(raw, what)
        return created_by


def _layer_infos(names_digests: list[tuple[str, str, int, str]], created_by: list[str]) -> list[LayerInfo]:
    out = []
    for i, (_, digest, size, media) in enumerate(names_digests):
        out.append(
            LayerInfo(
                index=i, digest=digest, diff_id="", size=size, media_type=media,
                created_by=created_by[i] if i < len(created_by) else "",
            )
        )
    return out


def open_oci(ref: ImageRef, store: Store) -> StoreImage:
    """Open an OCI layout held in `store`; pick the manifest by tag or host platform.

    Every field read from index.json and the manifest is type-checked; a wrong type is a
    SourceError naming the document and the field."""
    label = str(ref)
    if not store.exists("oci-layout"):
        raise SourceError(f"{label}: not an OCI image layout (no oci-layout file)")
    index = load_json(store.read("index.json"), f"{label}: index.json")
    desc = _choose(store, index, ref.tag, label)
    digest = json_string(desc.get("digest"), f"{label}: manifest descriptor digest")
    manifest_bytes = read_verified(store, digest, "manifest")
    what = f"{label}: manifest {digest}"
    manifest = json_object(load_json(manifest_bytes, what), what)
    image = StoreImage(ref, store)
    image.manifest_digest = digest
    annotations = json_object(desc.get("annotations"), f"{label}: manifest descriptor annotations",
                              optional=True)
    full = annotations.get("io.containerd.image.name") or annotations.get("org.opencontainers.image.ref.name")
    if isinstance(full, str) and ("/" in full or ":" in full):  # a ref.name may be only a tag
        image.names = (full,)
    cfg_desc = json_object(manifest.get("config"), f"{what}: config", optional=True)
    if "digest" not in cfg_desc:
        raise SourceError(f"{what}: has no config")
    cfg_digest = json_string(cfg_desc["digest"], f"{what}: config.digest")
    raw = load_json(read_verified(store, cfg_digest, "config"), f"{label}: config")
    image.digest = cfg_digest  # the image ID, the same whatever the source
    created_by = image._set_config(raw, label)
    rows = []
    for i, layer in enumerate(json_array(manifest.get("layers"), f"{what}: layers", optional=True)):
        where = f"{what}: layers[{i}]"
        layer = json_object(layer, where)
        if "digest" not in layer:
            raise SourceError(f"{where}: no digest")
        name = blob_name(layer["digest"], where)
        if not store.exists(name):
            raise SourceError(f"{label}: missing layer blob {layer['digest']}")
        size = json_size(layer["size"], f"{where}.size") if "size" in layer else store.size(name)
        media = json_string(layer.get("mediaType"), f"{where}.mediaType", optional=True)
        rows.append((name, layer["digest"], size, media))
    image.blob_names = [r[0] for r in rows]
    image.layers = _layer_infos(rows, created_by)
    return image


def _platform(m: dict[str, Any], where: str) -> tuple[str, str] | None:
    """(os, architecture) of an index entry, None when it names no platform."""
    plat = json_object(m.get("platform"), f"{where}.platform", optional=True)
    if not plat:
        return None
    return (json_string(plat.get("os"), f"{where}.platform.os", optional=True),
            json_string(plat.get("architecture"), f"{where}.platform.architecture", optional=True))


def _choose(store: Store, index: Any, tag: str, label: str, depth: int = 0) -> dict[str, Any]:
    if depth > 4:
        raise SourceError(f"{label}: image index nesting too deep")
    what = f"{label}: {'index.json' if depth == 0 else 'nested index'}"
    index = json_object(index, what)
    manifests: list[dict[str, Any]] = []
    for i, m in enumerate(json_array(index.get("manifests"), f"{what}: manifests", optional=True)):
        m = json_object(m, f"{what}: manifests[{i}]")
        if "digest" in m:
            json_string(m["digest"], f"{what}: manifests[{i}].digest")
            _platform(m, f"{what}: manifests[{i}]")
            manifests.append(m)
    if not manifests:
        raise SourceError(f"{label}: index lists no manifests")
    if tag and depth == 0:
        tagged = [
            m for i, m in enumerate(manifests)
            if json_object(m.get("annotations"), f"{what}: manifests[{i}].annotations",
                           optional=True).get("org.opencontainers.image.ref.name") == tag
        ]
        if not tagged:
            raise SourceError(f"{label}: no manifest tagged {tag!r}")
        manifests = tagged
    want = host_platform()
    matching = [m for m in manifests if _platform(m, what) in (None, want)]
    if not matching:
        plats = sorted({"/".join(p) for m in manifests if (p := _platform(m, what)) is not None})
        raise SourceError(f"{label}: no manifest for {want[0]}/{want[1]} (has {', '.join(plats)})")
    chosen = matching[0]
    if chosen.get("mediaType") in INDEX_TYPES:
        nested = load_json(read_verified(store, chosen["digest"], "index"), f"{label}: index")
        return _choose(store, nested, "", label, depth + 1)
    return chosen


def open_docker_archive(ref: ImageRef, store: Store) -> StoreImage:
    """Open a `docker save` tarball through its manifest.json (legacy or OCI-in-archive)."""
    label = str(ref)
    if not store.exists("manifest.json"):
        if store.exists("oci-layout"):
            return open_oci(ref, store)
        raise SourceError(f"{label}: missing manifest.json (not a docker-archive)")
    what = f"{label}: manifest.json"
    entries = json_array(load_json(store.read("manifest.json"), what), what)
    if not entries:
        raise SourceError(f"{label}: manifest.json lists no images")
    for i, e in enumerate(entries):
        e = json_object(e, f"{what}[{i}]")
        json_strings(e.get("RepoTags"), f"{what}[{i}].RepoTags")
    entry = entries[0]
    if ref.tag:
        want = ref.tag if ":" in ref.tag.rsplit("/", 1)[-1] else ref.tag + ":latest"
        found = [e for e in entries if want in json_strings(e.get("RepoTags"), what)]
        if not found:
            raise SourceError(f"{label}: no image tagged {ref.tag!r} in the archive")
        entry = found[0]
    if "Config" not in entry:
        raise SourceError(f"{label}: manifest.json entry has no Config")
    cfg_name = json_string(entry["Config"], f"{what}: Config")
    cfg_bytes = store.read(cfg_name)
    image = StoreImage(ref, store)
    image.names = json_strings(entry.get("RepoTags"), f"{what}: RepoTags")
    image.digest = "sha256:" + hashlib.sha256(cfg_bytes).hexdigest()
    if cfg_name.startswith("blobs/sha256/") and image.digest.split(":")[1] != cfg_name.rsplit("/", 1)[1]:
        raise SourceError(f"{label}: config {cfg_name}: digest mismatch")
    created_by = image._set_config(load_json(cfg_bytes, f"{label}: {cfg_name}"), label)
    rows = []
    for name in json_strings(entry.get("Layers"), f"{what}: Layers"):
        if not store.exists(name):
            raise SourceError(f"{label}: missing layer {name}")
        digest = ""
        alg_dir = name.rsplit("/", 2)
        if len(alg_dir) == 3 and alg_dir[0].endswith("blobs") and alg_dir[1] in ("sha256", "sha384", "sha512"):
            digest = f"{alg_dir[1]}:{alg_dir[2]}"  # verified when the layer is read
        rows.append((name, digest, store.size(name), ""))
    image.blob_names = [r[0] for r in rows]
    image.layers = _layer_infos(rows, created_by)
    return image


class DockerArchiveSource(Source):
    def open(self, ref: ImageRef) -> StoreImage:
        return open_docker_archive(ref, TarStore(ref.location))


class OciSource(Source):
    def open(self, ref: ImageRef) -> StoreImage:
        if not os.path.isdir(ref.location):
            raise SourceError(f"{ref}: no such directory")
        return open_oci(ref, DirStore(ref.location))


class OciArchiveSource(Source):
    def open(self, ref: ImageRef) -> StoreImage:
        return open_oci(ref, TarStore(ref.location))
