"""The layer cache (slim.layer_cache): a layer met before is read back, tree and contents, only
when its blob hashes to the bytes the entry was written for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slim.errors import LayerError
from slim.image import load
from slim.layer_cache import LayerCache
from slim.pipeline import capture_policy
from tests.imagekit import M, layer_tar, write_docker_archive, write_oci

BASE = layer_tar([M("usr/bin/", "d"), M("usr/bin/tool", data=b"#!/bin/sh\necho base\n", mode=0o755),
                  M("etc/app.conf", data=b"root /srv;\n"), M("usr/lib/big.bin", data=b"\0" * 5000)])
APP = layer_tar([M("app/run.sh", data=b"#!/bin/sh\nexec /usr/bin/tool\n", mode=0o755),
                 M("etc/.wh.app.conf")])


def _view(ref: str) -> tuple[dict, dict, list]:
    with load(ref, capture=capture_policy()) as loaded:
        fs = loaded.rootfs
        entries = {e.path: e for e in fs.walk()}
        contents = {p: fs.read(p) for p, e in entries.items() if fs.has_content(p)}
        return entries, contents, [(r.blob_digest, r.diff_id, len(r.tree)) for r in loaded.layers]


def _layer_files(cache: Path) -> list[str]:
    d = cache / "layers"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_a_layer_met_before_reads_back_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SLIM_CACHE_DIR", str(cache))
    write_oci(str(tmp_path / "base"), [BASE])
    write_oci(str(tmp_path / "app"), [BASE, APP])
    first = _view(f"oci:{tmp_path / 'app'}")
    files = _layer_files(cache)
    assert len([f for f in files if f.endswith(".json")]) == 2 and any(f.endswith(".pack") for f in files)
    reads: list[int] = []
    real = LayerCache._restore

    def counting(self, doc, layer, meta_path):  # type: ignore[no-untyped-def]
        reads.append(layer)
        return real(self, doc, layer, meta_path)

    monkeypatch.setattr(LayerCache, "_restore", counting)
    assert _view(f"oci:{tmp_path / 'app'}") == first
    assert reads == [0, 1]
    # another image with the same base layer: the base is read back, at its own index
    reads.clear()
    base = _view(f"oci:{tmp_path / 'base'}")
    assert reads == [0] and base[1]["/usr/bin/tool"] == first[1]["/usr/bin/tool"]
    # a docker-archive (no blob digest; the config's diff_id is the claim): other blob bytes
    # (uncompressed), so entries of its own, read back the second time
    reads.clear()
    write_docker_archive(str(tmp_path / "img.tar"), [BASE, APP])
    assert _view(f"docker-archive:{tmp_path / 'img.tar'}")[1] == first[1] and reads == []
    assert _view(f"docker-archive:{tmp_path / 'img.tar'}")[1] == first[1] and reads == [0, 1]


def test_an_entry_is_used_only_for_the_bytes_it_was_written_for(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SLIM_CACHE_DIR", str(cache))
    write_oci(str(tmp_path / "img"), [BASE], compress=False)
    good = _view(f"oci:{tmp_path / 'img'}")
    # the blob changes under the same name: the digest no longer matches, as without a cache
    blob = next(p for p in (tmp_path / "img/blobs/sha256").iterdir() if p.stat().st_size == len(BASE))
    blob.write_bytes(BASE.replace(b"echo base", b"echo evil"))
    with pytest.raises(LayerError, match="digest mismatch"):
        _view(f"oci:{tmp_path / 'img'}")
    blob.write_bytes(BASE)
    # a truncated pack is not used: the layer is read again
    for pack in (cache / "layers").glob("*.pack"):
        os.truncate(pack, 10)
    assert _view(f"oci:{tmp_path / 'img'}") == good


def test_no_cache_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SLIM_CACHE_DIR", str(cache))
    monkeypatch.setenv("SLIM_NO_CACHE", "1")
    write_oci(str(tmp_path / "img"), [BASE, APP])
    _view(f"oci:{tmp_path / 'img'}")
    assert _layer_files(cache) == []
