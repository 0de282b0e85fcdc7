"""The layer reader's bounds on hostile blobs: bounded decompression, strict tar headers, the
one-layer guard, whiteout names, digests other than sha256, exact reads of stored files."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile

import pytest
import zstandard

from slim.errors import LayerError
from slim.fs.layer import (
    CHUNK,
    INFLATE_STEP,
    ZSTD_BLOCKS_PER_STEP,
    ContentStore,
    _Decoder,
    _ZstdFrames,
    read_layer,
)
from slim.fs.tree import squash
from slim.model import LayerInfo
from tests.imagekit import M, layer_tar


def _read(blob: bytes, digest: str = "", diff_id: str = "", store: ContentStore | None = None):
    return read_layer(io.BytesIO(blob), LayerInfo(0, digest, "", len(blob)), store,
                      expected_diff_id=diff_id, name="img: layer 0")


def _zero_member_tar(size: int) -> bytes:
    info = tarfile.TarInfo("zero.bin")
    info.size = size
    return info.tobuf(tarfile.PAX_FORMAT) + bytes(size) + bytes(-size % 512) + bytes(1024)


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_decoder_pieces_are_bounded(kind: str) -> None:
    data = bytes(64 << 20)
    blob = gzip.compress(data, 9) if kind == "gzip" else zstandard.ZstdCompressor(level=19).compress(data)
    assert len(blob) < 200_000
    decoder = _Decoder(kind)
    sizes = [len(p) for i in range(0, len(blob), 65536) for p in decoder.feed(blob[i : i + 65536])]
    assert sum(sizes) == len(data) and max(sizes) <= INFLATE_STEP and not decoder.truncated


def test_zstd_frames_cut_every_few_blocks_and_at_frame_ends() -> None:
    # random data: every block of 128 KiB is stored, so a frame holds 3 steps' worth of blocks
    frame = zstandard.ZstdCompressor(level=1, write_checksum=True).compress(
        os.urandom(3 * ZSTD_BLOCKS_PER_STEP << 17))
    walker = _ZstdFrames()
    cuts = list(walker.cuts(frame + frame))
    assert cuts.count((len(frame), True)) == 1 and cuts[-1] == (2 * len(frame), True)
    assert len(cuts) >= 2 * 3  # a cut every ZSTD_BLOCKS_PER_STEP blocks, and at each frame end
    assert walker.complete
    with pytest.raises(ValueError):
        list(_ZstdFrames().cuts(b"nope"))


def test_zstd_truncated_and_garbage_are_layer_errors() -> None:
    blob = zstandard.ZstdCompressor().compress(layer_tar([M("a", data=b"x" * 5000)]))
    with pytest.raises(LayerError, match="truncated"):
        _read(blob[:-8])
    with pytest.raises(LayerError, match="img: layer 0"):
        _read(blob + b"garbage!")


def test_corrupt_header_in_the_middle_is_not_the_end() -> None:
    tar = bytearray(layer_tar([M("a", data=b"1"), M("b", data=b"2")]))
    second = tar.index(b"b\x00")  # the second member's ustar header (after a's PAX header)
    tar[second + 148 : second + 156] = b"9999999\x00"  # wrong checksum
    with pytest.raises(LayerError, match="corrupt member header"):
        _read(bytes(tar))


def test_negative_size_is_refused() -> None:
    info = tarfile.TarInfo("neg")
    info.size = 0
    raw = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    raw[124:136] = b"\xff" * 12  # base-256: -1
    raw[148:156] = b" " * 8
    raw[148:156] = b"%06o\x00 " % sum(raw[:512])
    with pytest.raises(LayerError, match="negative size"):
        _read(bytes(raw) + bytes(1024))


def test_huge_extended_header_is_refused() -> None:
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = 64 << 20
    with pytest.raises(LayerError, match="extended header"):
        _read(info.tobuf(tarfile.USTAR_FORMAT) + bytes(2048))


@pytest.mark.parametrize("members, message", [
    ([M("a", data=b"1"), M("a", data=b"2")], "/a: appears twice"),
    ([M("lib", "l", link="/tmp"), M("lib/x", data=b"1")], "/lib/x: written through the symlink /lib"),
    ([M("f", data=b""), M("f/x", data=b"1")], "/f/x: below /f"),
    ([M("d/x", data=b""), M("d", data=b"1")], "/d: replaces a directory"),
])
def test_one_layer_guard(members: list[M], message: str) -> None:
    with pytest.raises(LayerError, match=f"img: layer 0: {message}"):
        _read(layer_tar(members))


def test_a_directory_repeated_is_not_a_duplicate() -> None:
    result = _read(layer_tar([M("d", "d"), M("d/x", data=b"1"), M("d", "d")]))
    assert "/d/x" in result.tree.entries


@pytest.mark.parametrize("name", [".wh.", ".wh..", ".wh...", ".wh..wh.x", ".wh..wh."])
def test_invalid_whiteouts_do_not_wipe_the_tree(name: str) -> None:
    lower = _read(layer_tar([M("d", "d"), M("d/keep", data=b"k"), M("top", data=b"t")]))
    upper = _read(layer_tar([M("d", "d"), M(f"d/{name}")]))
    assert any("not a valid whiteout" in i.reason for i in upper.issues)
    view = squash([lower.tree, upper.tree])
    assert view.get("/d/keep") is not None and view.get("/top") is not None


@pytest.mark.parametrize("alg", ["sha512", "sha384"])
def test_other_digest_algorithms_are_verified(alg: str) -> None:
    tar = layer_tar([M("a", data=b"1")])
    good = f"{alg}:{hashlib.new(alg, tar).hexdigest()}"
    assert _read(tar, digest=good, diff_id=good).diff_id.startswith("sha256:")
    bad = f"{alg}:{hashlib.new(alg, tar + b'x').hexdigest()}"
    with pytest.raises(LayerError, match="digest mismatch"):
        _read(tar, digest=bad)
    with pytest.raises(LayerError, match="diff_id mismatch"):
        _read(tar, diff_id=bad)
    with pytest.raises(LayerError, match="unsupported digest algorithm"):
        _read(tar, digest="md5:" + hashlib.md5(tar).hexdigest())


def test_digests_of_a_many_chunk_layer_and_no_thread_left_behind() -> None:
    """The blob and the tar are hashed in a thread of their own: every chunk, in order, and
    both threads end whether the layer reads whole or is refused."""
    import threading

    tar = layer_tar([M(f"f{i}", data=os.urandom(300_000)) for i in range(20)])  # ~6 MB
    blob = gzip.compress(tar, 1)
    assert len(tar) > 4 * CHUNK
    digest = f"sha512:{hashlib.sha512(blob).hexdigest()}"
    result = _read(blob, digest=digest, diff_id=f"sha384:{hashlib.sha384(tar).hexdigest()}")
    assert result.blob_digest == f"sha256:{hashlib.sha256(blob).hexdigest()}"
    assert result.diff_id == f"sha256:{hashlib.sha256(tar).hexdigest()}"
    assert (result.blob_bytes, result.tar_bytes) == (len(blob), len(tar))
    with pytest.raises(LayerError, match="corrupt or truncated"):
        _read(blob[: len(blob) // 2])
    with pytest.raises(LayerError, match="diff_id mismatch"):
        _read(blob, diff_id=f"sha256:{hashlib.sha256(tar + b'x').hexdigest()}")
    assert not [t.name for t in threading.enumerate() if t.name.startswith("slim-layer-")]


@pytest.mark.parametrize(("blob_alg", "tar_alg"), [("sha256", "sha256"), ("sha512", "sha384"),
                                                 ("sha384", "sha384"), ("sha256", "sha512")])
def test_an_uncompressed_layer_is_hashed_once_for_both_digests(blob_alg: str, tar_alg: str) -> None:
    """An uncompressed blob is its tar: one pass of hashing gives both digests, each checked
    with the algorithm its own document names."""
    tar = layer_tar([M(f"f{i}", data=os.urandom(300_000)) for i in range(12)])
    assert len(tar) > 3 * CHUNK
    digest = f"{blob_alg}:{hashlib.new(blob_alg, tar).hexdigest()}"
    diff_id = f"{tar_alg}:{hashlib.new(tar_alg, tar).hexdigest()}"
    result = _read(tar, digest=digest, diff_id=diff_id)
    assert result.blob_digest == result.diff_id == f"sha256:{hashlib.sha256(tar).hexdigest()}"
    assert (result.blob_bytes, result.tar_bytes) == (len(tar), len(tar))
    with pytest.raises(LayerError, match="diff_id mismatch"):
        _read(tar, digest=digest, diff_id=f"{tar_alg}:{hashlib.new(tar_alg, tar + b'x').hexdigest()}")
    with pytest.raises(LayerError, match="digest mismatch"):
        _read(tar, digest=f"{blob_alg}:{hashlib.new(blob_alg, tar[:-1]).hexdigest()}", diff_id=diff_id)


def test_stored_zero_runs_are_holes_and_small_reads_are_exact() -> None:
    store = ContentStore()
    try:
        _read(_zero_member_tar(32 << 20), store=store)
        fd = store.pack_fd(0)
        assert fd is not None
        st = os.fstat(fd)
        assert st.st_size == 32 << 20 and st.st_blocks * 512 < 1 << 20
        assert store.read(0, "/zero.bin", 2) == b"\0\0"
        with store.open(0, "/zero.bin") as f:
            assert f.read(3) == b"\0\0\0" and len(f.read()) == (32 << 20) - 3
    finally:
        store.close()


def test_small_files_are_gathered_and_read_back_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small files are written GATHER_BYTES at a time; large ones between them, reads between
    puts, two layers sharing the overflow pack and all-zero small files all read back exact,
    and gathered zero blocks still become holes."""
    import random

    import slim.fs.layer as layer_mod

    monkeypatch.setattr(layer_mod, "MAX_PACKS", 1)
    monkeypatch.setattr(layer_mod, "GATHER_BYTES", 200_000)
    rng = random.Random(7)
    store = ContentStore()
    want: dict[tuple[int, str], bytes] = {}
    try:
        for i in range(400):
            layer = i % 3
            kind = rng.choice(["small", "small", "small", "zeros", "large"])
            size = {"small": rng.randint(1, 60_000), "zeros": 8192 * 4,
                    "large": rng.randint(70_000, 3 * CHUNK)}[kind]
            data = bytes(size) if kind == "zeros" else rng.randbytes(size)
            path = f"/f{i}"
            store.put_stream(layer, path, data[:4], io.BytesIO(data[4:]))
            want[layer, path] = data
            if i % 97 == 0:  # a read in the middle writes what was gathered
                k = rng.choice(list(want))
                assert store.read(*k) == want[k]
        for (layer, path), data in want.items():
            assert store.read(layer, path) == data, path
            with store.open(layer, path) as f:
                assert f.read() == data
    finally:
        store.close()
    # 64 all-zero small files in a row: 2 MB of zeros gathered, written as holes
    store = ContentStore()
    try:
        for i in range(64):
            store.put_stream(0, f"/z{i}", b"\0" * 4, io.BytesIO(bytes((32 << 10) - 4)))
        assert store.read(0, "/z63") == bytes(32 << 10)
        fd = store.pack_fd(0)
        assert fd is not None and os.fstat(fd).st_size == 64 * (32 << 10)
        assert os.fstat(fd).st_blocks * 512 < 1 << 20
    finally:
        store.close()


def test_layers_beyond_max_packs_share_one_pack(monkeypatch: pytest.MonkeyPatch) -> None:
    import slim.fs.layer as layer_mod

    monkeypatch.setattr(layer_mod, "MAX_PACKS", 2)
    store = ContentStore()
    try:
        for layer in range(5):
            store.put_stream(layer, f"/f{layer}", b"#!", io.BytesIO(f"/bin/sh {layer}\n".encode()))
        assert len({store.pack_fd(layer) for layer in range(5)}) == 3  # two own packs, one shared
        for layer in range(5):
            assert store.read(layer, f"/f{layer}") == f"#!/bin/sh {layer}\n".encode()
    finally:
        store.close()
