"""The Image abstraction every source produces (references are parsed in slim.refs).

An Image is a context manager owning whatever temp files its source made. Layers are read
lazily, base first, by `read_layers`; blob sources share one implementation (`BlobImage`).
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from functools import partial
from typing import Any, BinaryIO

from slim.errors import LayerError, SourceError
from slim.fs.layer import (
    DIGEST_ALGORITHMS,
    ContentStore,
    LayerReadResult,
    read_layer,
    stream_digest,
)
from slim.model import ImageConfig, LayerInfo
from slim.refs import ImageRef

ByteProgress = Callable[[int], None]


MAX_JSON_DEPTH = 64  # image metadata nests a few levels; deeper is hostile


def load_json(data: bytes, what: str) -> Any:
    """Parse JSON from an untrusted image; raise SourceError naming `what` (invalid JSON,
    nesting deeper than MAX_JSON_DEPTH, numbers too long to convert)."""
    if _depth_exceeds(data, MAX_JSON_DEPTH):
        raise SourceError(f"{what}: JSON nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise SourceError(f"{what}: invalid JSON: {exc}") from None


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(rb"[][{}]")


def _depth_exceeds(data: bytes, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than `limit` (json.loads recurses per
    level and gives up only near the interpreter's recursion limit, and whatever copies the
    result later recurses too). Linear; counts, does not validate."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub(b"", data)):
        if bracket in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def json_kind(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {dict: "an object", list: "an array", str: "a string", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


def json_object(value: Any, what: str, *, optional: bool = False) -> dict[str, Any]:
    """`value` when it is a JSON object ({} for null when `optional`). Raises SourceError."""
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise SourceError(f"{what}: expected an object, found {json_kind(value)}")
    return value


def json_array(value: Any, what: str, *, optional: bool = False) -> list[Any]:
    """`value` when it is a JSON array ([] for null when `optional`). Raises SourceError."""
    if value is None and optional:
        return []
    if not isinstance(value, list):
        raise SourceError(f"{what}: expected an array, found {json_kind(value)}")
    return value


def json_string(value: Any, what: str, *, optional: bool = False) -> str:
    """`value` when it is a JSON string ("" for null when `optional`). Raises SourceError."""
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise SourceError(f"{what}: expected a string, found {json_kind(value)}")
    return value


def json_strings(value: Any, what: str) -> tuple[str, ...]:
    """An array of strings (a lone string, as some writers store Cmd, is one item; null is
    none). Raises SourceError naming the first item that is not a string."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    items = json_array(value, what)
    for i, item in enumerate(items):
        json_string(item, f"{what}[{i}]")
    return tuple(items)


def json_size(value: Any, what: str) -> int:
    """A descriptor `size`: a non-negative integer. Raises SourceError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SourceError(f"{what}: expected a non-negative integer, found {json_kind(value)} "
                          f"{str(value)[:40]!r}")
    return value


# ExposedPorts keys: PORT[/PROTO] (Docker's nat.ParsePort; ASCII digits: '²' passes
# str.isdigit but is no port)
_PORT = re.compile(r"(?a)[0-9]{1,5}(?:/(?:tcp|udp|sctp))?")


def config_from_oci(doc: Any, what: str) -> tuple[ImageConfig, list[str], list[str]]:
    """ImageConfig, diff_ids and per-layer created_by (non-empty history) from an image config.

    Every field slim reads or carries over is type-checked (image-spec config.md); a wrong
    type is a SourceError naming the field, never a traceback later.
    """
    doc = json_object(doc, f"{what}: image config")
    cfg = json_object(doc.get("config"), f"{what}: config", optional=True)
    field_ = f"{what}: config"

    def keys(name: str) -> tuple[str, ...]:
        return tuple(sorted(json_object(cfg.get(name), f"{field_}.{name}", optional=True)))

    labels = json_object(cfg.get("Labels"), f"{field_}.Labels", optional=True)
    for key, value in labels.items():
        json_string(value, f"{field_}.Labels[{key!r}]")
    ports = keys("ExposedPorts")
    for port in ports:
        number = port.split("/", 1)[0]
        if not _PORT.fullmatch(port) or not 0 < int(number) < 65536:
            raise SourceError(f"{field_}.ExposedPorts {port!r}: not a port (PORT[/tcp|udp|sctp])")
    healthcheck = json_object(cfg.get("Healthcheck"), f"{field_}.Healthcheck", optional=True)
    for name in ("Shell", "OnBuild"):
        json_strings(cfg.get(name), f"{field_}.{name}")
    if not isinstance(cfg.get("ArgsEscaped", False), bool):
        raise SourceError(f"{field_}.ArgsEscaped: expected a boolean")
    config = ImageConfig(
        os=json_string(doc.get("os"), f"{what}: os", optional=True) or "linux",
        architecture=json_string(doc.get("architecture"), f"{what}: architecture", optional=True) or "amd64",
        variant=json_string(doc.get("variant"), f"{what}: variant", optional=True),
        entrypoint=json_strings(cfg.get("Entrypoint"), f"{field_}.Entrypoint"),
        cmd=json_strings(cfg.get("Cmd"), f"{field_}.Cmd"),
        env=json_strings(cfg.get("Env"), f"{field_}.Env"),
        workdir=json_string(cfg.get("WorkingDir"), f"{field_}.WorkingDir", optional=True),
        user=json_string(cfg.get("User"), f"{field_}.User", optional=True),
        exposed_ports=ports,
        volumes=keys("Volumes"),
        labels=tuple(sorted(labels.items())),
        stop_signal=json_string(cfg.get("StopSignal"), f"{field_}.StopSignal", optional=True),
        healthcheck=healthcheck if cfg.get("Healthcheck") is not None else None,
        created=json_string(doc.get("created"), f"{what}: created", optional=True),
    )
    rootfs = json_object(doc.get("rootfs"), f"{what}: rootfs", optional=True)
    diff_ids = list(json_strings(rootfs.get("diff_ids"), f"{what}: rootfs.diff_ids"))
    created_by = []
    for i, h in enumerate(json_array(doc.get("history"), f"{what}: history", optional=True)):
        h = json_object(h, f"{what}: history[{i}]")
        if not h.get("empty_layer"):
            created_by.append(json_string(h.get("created_by"), f"{what}: history[{i}].created_by",
                                          optional=True))
    return config, diff_ids, created_by


class Image(AbstractContextManager["Image"], ABC):
    """An opened image: config, layers (base first) and a way to read them."""

    ref: ImageRef
    config: ImageConfig
    layers: list[LayerInfo]
    digest: str = ""  # the image ID: sha256 of the config blob, whatever the source
    names: tuple[str, ...] = ()  # the NAME:TAG references the source knows it by (RepoTags …)
    diff_ids: list[str]
    raw_config: dict[str, Any]

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release temp files the source made."""

    @abstractmethod
    def read_layers(
        self, store: ContentStore | None, on_bytes: ByteProgress | None = None
    ) -> Iterator[LayerReadResult]:
        """Read every layer once, base first. Raises LayerError."""

    @abstractmethod
    def read_files(self, wanted: dict[int, set[str]]) -> Iterator[tuple[int, str, BinaryIO]]:
        """Stream the contents of chosen regular files: `wanted` maps a layer index to the
        normalized paths needed from it. Yields (layer, path, stream) in layer order; each
        stream is valid until the next item. Raises LayerError / SourceError."""


class BlobImage(Image):
    """An image whose layers are (possibly compressed) tar blobs."""

    def verify_blobs(self) -> None:
        """Hash every stored layer blob and compare it with its digest (or, for an
        uncompressed layer named only by path, the config's diff_id), without parsing a tar.
        Raises LayerError naming the first layer whose bytes are not what they claim."""
        for layer in self.layers:
            expected = layer.digest or (self.diff_ids[layer.index] if layer.index < len(self.diff_ids) else "")
            alg, _, want = expected.partition(":")
            if alg not in DIGEST_ALGORITHMS or not want:
                raise LayerError(f"{self.ref}: layer {layer.index} has no digest to verify")
            with self.open_blob(layer.index) as blob:
                actual = stream_digest(blob, alg)
            if actual != expected:
                raise LayerError(f"{self.ref}: layer {layer.index}: digest mismatch "
                                 f"(expected {expected}, blob is {actual})")

    def blob_files(self) -> list[str]:
        """The host files holding the layer blobs, when they are plain files slim can stat
        (an archive, a layout's blobs); [] when not known."""
        return []

    @abstractmethod
    def open_blob(self, index: int) -> BinaryIO:
        """Open the stored blob of layer `index`. Raises SourceError / LayerError."""

    def read_layers(
        self, store: ContentStore | None, on_bytes: ByteProgress | None = None
    ) -> Iterator[LayerReadResult]:
        from slim.layer_cache import LayerCache

        cache = LayerCache.for_store(store)
        for layer in self.layers:
            expected = self.diff_ids[layer.index] if layer.index < len(self.diff_ids) else ""
            if cache is not None:
                hit = cache.lookup(layer, expected, partial(self.open_blob, layer.index))
                if hit is not None:
                    if on_bytes is not None:
                        on_bytes(hit.blob_bytes)
                    yield hit
                    continue
            with self.open_blob(layer.index) as blob:
                result = read_layer(
                    blob, layer, store, expected_diff_id=expected, on_bytes=on_bytes,
                    name=f"{self.ref}: layer {layer.index} ({layer.digest or 'no digest'})",
                )
            if cache is not None:
                cache.save(layer.index, result)
            yield result


    def read_files(self, wanted: dict[int, set[str]]) -> Iterator[tuple[int, str, BinaryIO]]:
        """As Image.read_files; each layer is decompressed in a thread and hashed as it is
        read again, and checked against its digest and diff_id at its end (LayerError: the
        blob changed since it was analyzed)."""
        from slim.fs.layer import _member_path, corrupt_errors, open_tar_stream, verified_tar

        for index in sorted(wanted):
            paths = wanted[index]
            if not paths:
                continue
            layer = self.layers[index]
            diff_id = self.diff_ids[index] if index < len(self.diff_ids) else ""
            label = f"{self.ref}: layer {index}"
            with self.open_blob(index) as blob, verified_tar(blob, layer.digest, diff_id, label) as stream:
                try:
                    with open_tar_stream(stream) as tf:
                        for member in tf:
                            if not member.isreg():
                                continue
                            path, _problem = _member_path(member.name)
                            if path in paths:
                                fobj = tf.extractfile(member)
                                if fobj is not None:
                                    yield index, path, fobj
                except corrupt_errors() as exc:
                    raise LayerError(f"{label}: cannot re-read: {exc}") from None


class Source(ABC):
    """Opens one kind of image reference."""

    @abstractmethod
    def open(self, ref: ImageRef) -> Image:
        """Open `ref`. Raises SourceError naming the reference when it cannot."""
