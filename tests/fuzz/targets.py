"""Fuzz targets: one function per parser slim points at untrusted bytes. Each takes the
fuzzer's bytes and raises only what slim raises on purpose (a SlimError); anything else (a
traceback a user would see, a hang, an allocation out of proportion) is a finding.

* `layer`: a layer blob through read_layer (gzip/zstd/plain sniffing, the tar reader, the
  one-layer guard, the content store) and, when it reads, through extract_tar into a temp dir;
* `elf`: an ELF file through parse_elf (the dynamic section, PT_INTERP, symbols) and the
  syscall extractor (code model and data flow), with the cache off;
* `metadata`: an OCI layout or docker-archive whose index.json / manifest / config /
  manifest.json come from the fuzzer (the input is split on NUL bytes).

Seeds (`seeds()`) are small valid inputs of each kind, built with tests/hostile/forge.py.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import shutil
import tempfile
from collections.abc import Callable

from slim.errors import SlimError

MAX_INPUT = 1 << 20


def layer(data: bytes) -> None:
    from slim.fs.extract import extract_layers
    from slim.fs.layer import ContentStore, read_layer
    from slim.model import LayerInfo

    store = ContentStore()
    try:
        read_layer(io.BytesIO(data), LayerInfo(0, "", "", len(data)), store)
        for path in list(store.index)[:8]:
            store.read(*path, 64)
    except SlimError:
        return
    finally:
        store.close()
    dest = tempfile.mkdtemp(prefix="slim-fuzz-")
    try:
        extract_layers([lambda: io.BytesIO(data)], dest, name="fuzz")
    except SlimError:
        pass
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def elf(data: bytes) -> None:
    """(Callers set SLIM_NO_CACHE=1: the syscall extractor caches per content digest.)"""
    from slim.elf import parse_elf
    from slim.syscalls.extract import analyze_elf

    with contextlib.suppress(SlimError):
        parse_elf(io.BytesIO(data), "/fuzz")
    with contextlib.suppress(SlimError):
        analyze_elf(data, "/fuzz")


class _MemoryStore:
    """Store files from a dict (sources.archive.Store's interface)."""

    label = "fuzz"

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def exists(self, name: str) -> bool:
        return name in self.files

    def size(self, name: str) -> int:
        return len(self.files[name])

    def open(self, name: str) -> io.BytesIO:
        return io.BytesIO(self.files[name])

    def read(self, name: str, limit: int = 1 << 24) -> bytes:
        if name not in self.files:
            raise SlimError(f"fuzz: missing {name}")
        return self.files[name][:limit]

    def close(self) -> None:
        pass


def metadata(data: bytes) -> None:
    import hashlib

    from slim.refs import ImageRef
    from slim.sources.archive import open_docker_archive, open_oci

    parts = data.split(b"\x00")
    index, manifest, config = ([*parts, b"{}", b"{}", b"{}"])[:3]
    files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index}
    for doc in (manifest, config):
        files[f"blobs/sha256/{hashlib.sha256(doc).hexdigest()}"] = doc
    files["manifest.json"] = index
    files["config.json"] = config
    # the config on its own too: through a layout, digests must match first
    from slim.sources.base import config_from_oci, load_json

    with contextlib.suppress(SlimError):
        config_from_oci(load_json(config, "fuzz config"), "fuzz")
    for opener in (open_oci, open_docker_archive):
        with contextlib.suppress(SlimError):
            opener(ImageRef("oci", "fuzz", "latest" if len(data) % 2 else ""),
                   _MemoryStore(dict(files)))  # type: ignore[arg-type]


TARGETS: dict[str, Callable[[bytes], None]] = {"layer": layer, "elf": elf, "metadata": metadata}


def seeds(name: str) -> list[bytes]:
    """Small valid inputs for target `name`."""
    import zstandard

    from tests.hostile import forge
    from tests.hostile.forge import T

    if name == "layer":
        tar = forge.tar([T("bin", "d"), T("bin/app", data=bytes(forge.elf_header()), mode=0o755),
                         T("bin/sh", "l", link="app"), T("bin/h", "h", link="bin/app"),
                         T("etc/.wh.gone"), T("etc/app.py", data=b"import os\n"),
                         T("usr/.wh..wh..opq"), T("long/" + "n" * 120, data=b"x", pax={"uid": "5"})])
        return [tar, gzip.compress(tar, 1, mtime=0), zstandard.ZstdCompressor().compress(tar),
                forge.zstd_bomb(forge.zero_member_header("z", 1 << 20), 1 << 20, bytes(1024))]
    if name == "elf":
        real = forge.host_elf()
        return [real, bytes(forge.elf_header()), real[:4096]]
    doc = forge.config_doc([b"x"], {"Entrypoint": ["/bin/app"], "Env": ["A=1"],
                                    "ExposedPorts": {"80/tcp": {}}, "Labels": {"a": "b"}})
    config = json.dumps(doc).encode()
    manifest = json.dumps({"schemaVersion": 2, "config": {
        "digest": "sha256:" + __import__("hashlib").sha256(config).hexdigest(), "size": len(config)},
        "layers": []}).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "digest": "sha256:" + __import__("hashlib").sha256(manifest).hexdigest(), "size": len(manifest),
        "platform": {"os": "linux", "architecture": "amd64"},
        "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}).encode()
    archive = json.dumps([{"Config": "config.json", "RepoTags": ["a:b"], "Layers": []}]).encode()
    return [index + b"\x00" + manifest + b"\x00" + config, archive + b"\x00\x00" + config]
