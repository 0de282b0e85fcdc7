"""slim.cache: one store, keys that are digests, pruning; and caches that never trust names."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from slim.budget import BudgetConfig
from slim.cache import JsonStore, cache_dir, digest_key
from slim.check_cache import check_image
from slim.errors import LayerError
from slim.pipeline import load_image

SAMPLES = Path(__file__).resolve().parents[2] / "sample_images"


def test_cache_location_and_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path))
    assert cache_dir("syscalls") == tmp_path / "syscalls"
    monkeypatch.delenv("SLIM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("check") == tmp_path / "xdg" / "slim" / "check"
    assert digest_key("a", "b") != digest_key("ab") and len(digest_key("x")) == 64
    store = JsonStore("t", 1)
    with pytest.raises(ValueError, match="hex digest"):
        store.put("../escape", {})


def test_store_round_trip_format_and_prune(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path))
    store = JsonStore("t", 1, max_entries=2)
    keys = [digest_key(str(i)) for i in range(4)]
    for i, key in enumerate(keys[:3]):
        store.put(key, {"n": i})
        os.utime(tmp_path / "t" / f"{key}.json", (1000 + i, 1000 + i))
    store.put(keys[3], {"n": 3})  # the newest; the oldest beyond two go
    assert sorted(p.stem for p in (tmp_path / "t").glob("*.json")) == sorted(keys[2:])
    assert store.get(keys[3]) == {"n": 3} and store.get(keys[0]) is None
    assert JsonStore("t", 2).get(keys[3]) is None  # another format is a miss
    (tmp_path / "t" / f"{keys[2]}.json").write_text("{broken")
    assert store.get(keys[2]) is None
    monkeypatch.setenv("SLIM_NO_CACHE", "1")
    assert store.get(keys[3]) is None


def _tamper_layer(src: Path, dest: Path) -> None:
    """A copy of an OCI layout whose only layer blob holds other content under the same name."""
    shutil.copytree(src, dest)
    index = json.loads((dest / "index.json").read_text())
    manifest_hex = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((dest / "blobs/sha256" / manifest_hex).read_text())
    layer_hex = manifest["layers"][-1]["digest"].split(":")[1]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        data = b"id_rsa: a private key the real layer never had\n"
        info = tarfile.TarInfo("root/.ssh/id_rsa")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    (dest / "blobs/sha256" / layer_hex).write_bytes(gzip.compress(raw.getvalue()))


def test_check_cache_hit_needs_the_blobs_to_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path / "cache"))
    real = SAMPLES / "hello-musl" / "hello-musl.oci"
    config = BudgetConfig(forbid_paths=("/root/.ssh/**",))
    first = check_image(f"oci:{real}", config)
    assert not first.cached and first.forbidden_paths == []
    assert check_image(f"oci:{real}", config).cached
    _tamper_layer(real, tmp_path / "evil")
    # same manifest, same names, other bytes: never the cached verdict, and reading says why
    with pytest.raises(LayerError, match="digest mismatch"):
        check_image(f"oci:{tmp_path / 'evil'}", config)
    with pytest.raises(LayerError, match="digest mismatch"), load_image(f"oci:{tmp_path / 'evil'}"):
        pass


def test_unchanged_blob_files_are_not_hashed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from slim.sources import BlobImage

    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path / "cache"))
    mine = tmp_path / "mine.oci"
    shutil.copytree(SAMPLES / "hello-musl" / "hello-musl.oci", mine)
    config = BudgetConfig(forbid_paths=("/root/.ssh/**",))
    hashed: list[int] = []
    real_verify = BlobImage.verify_blobs
    monkeypatch.setattr(BlobImage, "verify_blobs", lambda self: hashed.append(1) or real_verify(self))
    assert not check_image(f"oci:{mine}", config).cached
    assert check_image(f"oci:{mine}", config).cached and hashed == []  # same files, same stat
    for blob in (mine / "blobs/sha256").iterdir():
        os.utime(blob)  # touched: hashed again, still a hit
    assert check_image(f"oci:{mine}", config).cached and hashed == [1]
    # rewritten in place under the same name: new ctime, so hashed, and the mismatch is caught
    shutil.rmtree(tmp_path / "evil", ignore_errors=True)
    _tamper_layer(mine, tmp_path / "evil")
    for blob in (tmp_path / "evil/blobs/sha256").iterdir():
        (mine / "blobs/sha256" / blob.name).write_bytes(blob.read_bytes())
    with pytest.raises(LayerError, match="digest mismatch"):
        check_image(f"oci:{mine}", config)


def test_parse_store_round_trip_prune_and_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from slim.cache import ParseStore

    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path))
    store = ParseStore(max_rows=3)
    assert store.get("k", "a" * 64) is None
    for i in range(5):
        store.put("k", f"{i:064x}", {"n": i})
    store.flush()
    again = ParseStore(max_rows=3)
    kept = [i for i in range(5) if again.get("k", f"{i:064x}") is not None]
    assert kept == [2, 3, 4] and again.get("k", f"{4:064x}") == {"n": 4}  # the oldest went
    again.close()
    # a database that is not one turns the store off for the run; the work is done again
    (tmp_path / "parse" / "parse.sqlite3").write_bytes(b"not a database" * 100)
    broken = ParseStore()
    assert broken.get("k", f"{4:064x}") is None
    broken.put("k", "b" * 64, 1)
    broken.flush()
    monkeypatch.setenv("SLIM_NO_CACHE", "1")
    off = ParseStore()
    off.put("k", "c" * 64, 1)
    off.flush()
    assert off.get("k", "c" * 64) is None


def test_parse_store_opened_in_one_thread_is_written_from_another(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The static part of an analysis reads the parse cache in a thread while the image runs
    traced; the analysis writes it from the main thread when it ends."""
    import threading

    from slim.cache import ParseStore

    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path))
    store = ParseStore()
    opened = threading.Thread(target=lambda: store.get("k", "a" * 64))
    opened.start()
    opened.join()
    store.put("k", "b" * 64, {"n": 1})
    store.flush()
    assert ParseStore().get("k", "b" * 64) == {"n": 1}


def test_analyze_reads_a_cached_result_only_for_the_same_image_options_and_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import slim.pipeline
    from slim.cli import app

    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path / "cache"))
    real = SAMPLES / "hello-musl" / "hello-musl.oci"
    runner = CliRunner()

    def report(*extra: str) -> str:
        out = tmp_path / "r.json"
        res = runner.invoke(app, ["analyze", f"oci:{real}", "-f", "json", "-o", str(out), *extra])
        assert res.exit_code == 0, res.output
        return out.read_text()

    first = report()
    calls: list[int] = []
    real_analyze = slim.pipeline.analyze
    monkeypatch.setattr(slim.pipeline, "analyze", lambda *a, **k: calls.append(1) or real_analyze(*a, **k))
    assert report() == first and calls == []  # read back, byte for byte
    report("--keep", "/etc/**")  # other options: analyzed again
    assert calls == [1]
    monkeypatch.setattr("slim.result_cache.code_digest", lambda: "other code")
    report()  # other code: analyzed again
    assert calls == [1, 1]


def test_the_code_digest_is_read_back_while_slims_sources_are_unchanged(tmp_path, monkeypatch):
    """Hashing slim's sources cost 28 ms of every cache hit: the digest is kept under the
    files' identities (path, inode, size, ctime) and hashed again only when they change."""
    from slim.result_cache import code_digest

    monkeypatch.setenv("SLIM_CACHE_DIR", str(tmp_path))
    code_digest.cache_clear()
    first = code_digest()
    assert list((tmp_path / "code").glob("*.json"))

    def no_read(self: Path) -> bytes:
        raise AssertionError("unchanged sources must not be read again")

    try:
        with monkeypatch.context() as m:
            m.setattr(Path, "read_bytes", no_read)
            code_digest.cache_clear()
            assert code_digest() == first
            for entry in (tmp_path / "code").glob("*.json"):  # another identity: hashed again
                entry.unlink()
            code_digest.cache_clear()
            with pytest.raises(AssertionError, match="must not be read"):
                code_digest()
    finally:
        code_digest.cache_clear()
