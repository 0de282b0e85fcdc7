"""The Image abstraction every source produces (references are parsed in slim.refs).

An Image is a context manager owning whatever temp files its source made. Layers are read
lazily, base first, by `read_layers`; blob sources share one implementation (`BlobImage`).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, BinaryIO

from slim.errors import LayerError, SourceError
from slim.fs.layer import ContentStore, LayerReadResult, read_layer
from slim.model import ImageConfig, LayerInfo
from slim.refs import ImageRef

ByteProgress = Callable[[int], None]


def load_json(data: bytes, what: str) -> Any:
    """Parse JSON from an untrusted image; raise SourceError naming `what`."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SourceError(f"{what}: invalid JSON: {exc}") from None


def config_from_oci(doc: dict[str, Any], what: str) -> tuple[ImageConfig, list[str], list[str]]:
    """ImageConfig, diff_ids and per-layer created_by (non-empty history) from an image config."""
    if not isinstance(doc, dict):
        raise SourceError(f"{what}: image config is not a JSON object")
    cfg = doc.get("config") or {}
    if not isinstance(cfg, dict):
        raise SourceError(f"{what}: 'config' is not an object")

    def strs(value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list):
            return tuple(str(v) for v in value)
        raise SourceError(f"{what}: expected a list of strings, got {type(value).__name__}")

    def keys(value: Any) -> tuple[str, ...]:
        return tuple(sorted(value)) if isinstance(value, dict) else ()

    labels = cfg.get("Labels") or {}
    config = ImageConfig(
        os=str(doc.get("os", "linux")),
        architecture=str(doc.get("architecture", "amd64")),
        variant=str(doc.get("variant", "") or ""),
        entrypoint=strs(cfg.get("Entrypoint")),
        cmd=strs(cfg.get("Cmd")),
        env=strs(cfg.get("Env")),
        workdir=str(cfg.get("WorkingDir") or ""),
        user=str(cfg.get("User") or ""),
        exposed_ports=keys(cfg.get("ExposedPorts")),
        volumes=keys(cfg.get("Volumes")),
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())) if isinstance(labels, dict) else (),
        stop_signal=str(cfg.get("StopSignal") or ""),
        healthcheck=cfg.get("Healthcheck") if isinstance(cfg.get("Healthcheck"), dict) else None,
        created=str(doc.get("created", "") or ""),
    )
    rootfs = doc.get("rootfs") or {}
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        diff_ids = []
    history = doc.get("history") or []
    created_by = [
        str(h.get("created_by", ""))
        for h in history
        if isinstance(h, dict) and not h.get("empty_layer")
    ]
    return config, [str(d) for d in diff_ids], created_by


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
            if alg not in ("sha256", "sha512") or not want:
                raise LayerError(f"{self.ref}: layer {layer.index} has no digest to verify")
            h = hashlib.new(alg)
            with self.open_blob(layer.index) as blob:
                while chunk := blob.read(1 << 20):
                    h.update(chunk)
            if h.hexdigest() != want:
                raise LayerError(f"{self.ref}: layer {layer.index}: digest mismatch "
                                 f"(expected {expected}, blob is {alg}:{h.hexdigest()})")

    @abstractmethod
    def open_blob(self, index: int) -> BinaryIO:
        """Open the stored blob of layer `index`. Raises SourceError / LayerError."""

    def read_layers(
        self, store: ContentStore | None, on_bytes: ByteProgress | None = None
    ) -> Iterator[LayerReadResult]:
        for layer in self.layers:
            with self.open_blob(layer.index) as blob:
                expected = self.diff_ids[layer.index] if layer.index < len(self.diff_ids) else ""
                yield read_layer(
                    blob, layer, store, expected_diff_id=expected, on_bytes=on_bytes,
                    name=f"{self.ref}: layer {layer.index} ({layer.digest or 'no digest'})",
                )


    def read_files(self, wanted: dict[int, set[str]]) -> Iterator[tuple[int, str, BinaryIO]]:
        import tarfile

        from slim.fs.layer import _member_path, decompressed

        for index in sorted(wanted):
            paths = wanted[index]
            if not paths:
                continue
            with self.open_blob(index) as blob:
                stream, _ = decompressed(blob)
                try:
                    with tarfile.open(fileobj=stream, mode="r|") as tf:
                        for member in tf:
                            if not member.isreg():
                                continue
                            path, _problem = _member_path(member.name)
                            if path in paths:
                                fobj = tf.extractfile(member)
                                if fobj is not None:
                                    yield index, path, fobj  # type: ignore[misc]
                except (EOFError, OSError, tarfile.TarError) as exc:
                    raise LayerError(f"{self.ref}: layer {index}: cannot re-read: {exc}") from None


class Source(ABC):
    """Opens one kind of image reference."""

    @abstractmethod
    def open(self, ref: ImageRef) -> Image:
        """Open `ref`. Raises SourceError naming the reference when it cannot."""
