"""Hostile layers: bombs, sparse files, deep trees, many links, lying headers, same-layer
tricks, whiteouts that name nothing, digests in other algorithms."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import require
from tests.hostile import forge
from tests.hostile.forge import APP_CONFIG, T, app_files
from tests.hostile.harness import Sandbox, baseline, check, run_slim


def _analyze(box: Sandbox, ref: str, *extra: str, **kw):
    report = box.out / "report.json"
    before = baseline(box, (report,))
    run = run_slim(box, "analyze", ref, "-f", "json", "-o", str(report), *extra, **kw)
    return run, before, report


def _doc(report: Path) -> dict:
    return json.loads(report.read_text())


def _one_layer(box: Sandbox, members: list[T | bytes], config: dict | None = None, **kw) -> str:
    path = forge.docker_archive(box.inputs / "img.tar", [forge.tar(members, **kw)], config or APP_CONFIG)
    return str(path)


# -- bombs: memory and disk stay bounded --------------------------------------------------
@pytest.mark.parametrize("kind", ["zstd", "gzip"])
def test_compression_bomb_is_read_in_bounded_memory(box: Sandbox, record, kind: str) -> None:
    size = 4 << 30 if kind == "zstd" else 1 << 30
    blob = forge.bomb_layer(kind, "app/zero.bin", size)
    tar_len = len(forge.zero_member_header("app/zero.bin", size)) + size + (-size % 512) + 1024
    ref = forge.oci(box.inputs / "oci", [b""], APP_CONFIG, blobs=[blob],
                    edit_config=lambda c: {**c, "rootfs": {"type": "layers", "diff_ids": []}})
    run, before, report = _analyze(box, f"oci:{ref}", "--no-static", measure_disk=True)
    record(run, blob_bytes=len(blob), tar_bytes=tar_len)
    check(box, run, rc=0, outputs=(report,), before=before)
    assert run.maxrss_kb < 300 << 10, f"{run.maxrss_kb // 1024} MB RSS for a {len(blob)} byte blob"
    assert run.disk_kb < 64 << 10
    assert _doc(report)["image"]["size_bytes"] == size


def test_zstd_frame_declaring_a_huge_content_size(box: Sandbox) -> None:
    head = forge.zero_member_header("a", 4)
    blob = forge.zstd_bomb(head + b"data" + bytes(508) + bytes(1024), 0, content_size=1 << 40)
    ref = forge.oci(box.inputs / "oci", [b""], APP_CONFIG, blobs=[blob],
                    edit_config=lambda c: {**c, "rootfs": {"type": "layers", "diff_ids": []}})
    run, before, _ = _analyze(box, f"oci:{ref}")
    check(box, run, rc=3, error=r"layer 0 .*(zstd|corrupt)", before=before)


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_sparse_member_is_analyzed_without_expanding_it(box: Sandbox, record, fmt: str) -> None:
    require(shutil.which("tar") is not None, "GNU tar")
    tree = box.inputs / "tree"
    forge.sparse_tree(tree, "app/huge.img", 8 << 30)
    (tree / "app/run.sh").write_text("#!/bin/sh\n")
    (tree / "app/run.sh").chmod(0o755)
    layer = forge.gnu_tar(tree, ["app"], fmt)
    assert len(layer) < 64 << 10
    ref = forge.docker_archive(box.inputs / "img.tar", [layer],
                               {"Entrypoint": ["/app/run.sh"], "WorkingDir": "/app"})
    run, before, report = _analyze(box, str(ref), measure_disk=True)
    record(run, apparent_bytes=8 << 30, layer_bytes=len(layer))
    check(box, run, rc=0, outputs=(report,), before=before)
    assert run.seconds < 20 and run.disk_kb < 64 << 10


def test_sparse_member_build_writes_holes_not_gigabytes(box: Sandbox, record) -> None:
    require(shutil.which("tar") is not None, "GNU tar")
    tree = box.inputs / "tree"
    forge.sparse_tree(tree, "app/huge.img", 1 << 30)
    (tree / "app/run.sh").write_text("#!/bin/sh\n")
    (tree / "app/run.sh").chmod(0o755)
    layer = forge.gnu_tar(tree, ["app"])
    ref = forge.docker_archive(box.inputs / "img.tar", [layer],
                               {"Entrypoint": ["/app/run.sh"], "WorkingDir": "/app"})
    dest = box.out / "img"
    before = baseline(box, (dest,))
    run = run_slim(box, "build", str(ref), "-o", f"oci:{dest}", "--no-verify", measure_disk=True)
    record(run, apparent_bytes=1 << 30, layer_bytes=len(layer))
    check(box, run, rc=0, outputs=(dest,), before=before)
    assert run.disk_kb < 32 << 10, f"disk high-water {run.disk_kb} KB"


# -- shapes that used to cost O(n^2) or worse ---------------------------------------------
def _deep(n: int) -> list[T]:
    members, name = [], ""
    for _ in range(n):
        name = f"{name}/d" if name else "d"
        members.append(T(name, "d"))
    members.append(T(name + "/f", data=b"hi"))
    return members


def _tar_t_seconds(path: Path) -> float:
    started = time.monotonic()
    subprocess.run(["tar", "-tf", str(path)], check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def test_5000_nested_directories(box: Sandbox, record) -> None:
    layer = forge.tar([*app_files(), *_deep(5000)])
    (box.inputs / "layer.tar").write_bytes(layer)
    ref = forge.docker_archive(box.inputs / "img.tar", [layer], APP_CONFIG)
    run, before, report = _analyze(box, str(ref))
    record(run, tar_t_seconds=round(_tar_t_seconds(box.inputs / "layer.tar"), 2))
    check(box, run, rc=0, outputs=(report,), before=before)
    assert run.seconds < 30


def test_5000_nested_directories_extracted_for_a_manifest(box: Sandbox, record) -> None:
    layer = forge.tar([*app_files(), *_deep(5000)])
    ref = forge.docker_archive(box.inputs / "img.tar", [layer], APP_CONFIG)
    dest = box.out / "manifest"
    before = baseline(box, (dest,))
    run = run_slim(box, "manifest", str(ref), "--target", "ops", "-o", str(dest))
    record(run)
    check(box, run, rc=0, outputs=(dest,), before=before)
    assert run.seconds < 60


def test_50k_hard_links_to_one_big_file(box: Sandbox, record) -> None:
    # an executable that is neither ELF nor a script: every name gets the analyzers' 2- and
    # 4-byte magic checks (each was a 1 MiB pread)
    big = b"\x00\x01" + bytes(range(256)) * (5 << 12)
    members = [*app_files(), T("app", "d"), T("app/big", data=big, mode=0o755)]
    members += [T(f"app/l{i}", "h", link="app/big", mode=0o755) for i in range(50_000)]
    layer = forge.tar(members)
    (box.inputs / "layer.tar").write_bytes(layer)
    ref = forge.docker_archive(box.inputs / "img.tar", [layer],
                               {"Entrypoint": ["/bin/app"], "WorkingDir": "/app"})
    run, before, report = _analyze(box, str(ref), timeout=300)
    record(run, tar_t_seconds=round(_tar_t_seconds(box.inputs / "layer.tar"), 2))
    check(box, run, rc=0, outputs=(report,), before=before)
    assert run.seconds < 120 and run.maxrss_kb < 1 << 20


# -- headers that lie ---------------------------------------------------------------------
@pytest.mark.parametrize("members, error", [
    ([T("bin/neg", data=b"", size=-1)], r"layer 0 .*negative size"),
    ([T("bin/big-pax", pax={"path": "x" * (9 << 20)})], r"layer 0 .*extended header"),
    ([T("bin/inf", data=b"x", pax={"mtime": "inf"})], r"layer 0 .*mtime"),
    ([T("bin/uid", data=b"x", pax={"uid": str(1 << 40)})], r"layer 0 .*uid"),
    ([T("bin/nul", "l", link="x", pax={"linkpath": "a\x00b"})], r"layer 0 .*NUL"),
    ([T("bin/a", data=b"1"), T("bin/a", data=b"2")], r"layer 0 .*/bin/a: appears twice"),
    ([T("lib", "l", link="/tmp"), T("lib/x", data=b"1")], r"/lib/x: written through the symlink /lib"),
    ([T("etc", data=b""), T("etc/passwd", data=b"1")], r"/etc/passwd: below /etc"),
], ids=["negative-size", "huge-pax", "mtime-inf", "uid-2^40", "nul-linkpath", "duplicate",
        "through-symlink", "below-a-file"])
def test_refused_members(box: Sandbox, members: list[T], error: str) -> None:
    ref = _one_layer(box, [*app_files(), *members])
    run, before, _ = _analyze(box, ref)
    check(box, run, rc=3, error=error, before=before)


def test_corrupt_header_after_the_first_member_is_not_the_end(box: Sandbox) -> None:
    good = forge.member(T("bin/later", data=b"x"))
    bad = bytearray(good)
    bad[148:156] = b"0000000\x00"  # wrong checksum
    ref = _one_layer(box, [*app_files(), bytes(bad)])
    run, before, _ = _analyze(box, ref)
    check(box, run, rc=3, error=r"layer 0 .*corrupt member header", before=before)


@pytest.mark.parametrize("cut", [0.5, 0.9])
@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_truncated_compressed_layer(box: Sandbox, kind: str, cut: float) -> None:
    import zstandard

    layer = forge.tar([*app_files({"app/data": bytes(range(256)) * 400})])
    blob = forge.gzip.compress(layer) if kind == "gzip" else zstandard.ZstdCompressor().compress(layer)
    blob = blob[: int(len(blob) * cut)]
    ref = forge.oci(box.inputs / "oci", [layer], APP_CONFIG, blobs=[blob],
                    edit_manifest=lambda m: m)
    run, before, _ = _analyze(box, f"oci:{ref}")
    check(box, run, rc=3, error=r"(layer 0|digest mismatch|truncated|corrupt)", before=before)


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_garbage_after_the_compressed_stream(box: Sandbox, kind: str) -> None:
    import zstandard

    layer = forge.tar(app_files())
    blob = forge.gzip.compress(layer) if kind == "gzip" else zstandard.ZstdCompressor().compress(layer)
    ref = forge.oci(box.inputs / "oci", [layer], APP_CONFIG, blobs=[blob + b"GARBAGE!" * 8])
    run, before, _ = _analyze(box, f"oci:{ref}")
    check(box, run, rc=3, error=r"layer 0 .*(corrupt|truncated|Not a gzipped|zstd)", before=before)


# -- whiteouts that name nothing ---------------------------------------------------------
@pytest.mark.parametrize("name", [".wh..", ".wh.", ".wh..wh.x", ".wh..wh..", ".wh..."])
def test_invalid_whiteout_does_not_wipe_the_lower_tree(box: Sandbox, name: str) -> None:
    lower = forge.tar([*app_files(), T("etc", "d"), T("etc/app.conf", data=b"x=1\n")])
    upper = forge.tar([T("etc", "d"), T(f"etc/{name}")])
    ref = forge.docker_archive(box.inputs / "img.tar", [lower, upper], APP_CONFIG)
    run, before, report = _analyze(box, str(ref))
    check(box, run, rc=0, outputs=(report,), before=before)
    doc = _doc(report)
    assert doc["image"]["file_count"] >= 2, doc["image"]
    assert any(k["path"] == "/bin/app" for k in doc["keep"])


# -- names and links that climb out --------------------------------------------------------
@pytest.mark.parametrize("members", [
    [T("../../outside/victim", data=b"pwned")],
    [T("/abs/file", data=b"x")],
    [T("bin/h", "h", link="../../outside/victim")],
    [T("esc", "l", link="../../../outside")],
], ids=["dotdot", "absolute", "hardlink-out", "symlink-out"])
def test_names_that_climb_stay_inside(box: Sandbox, members: list[T]) -> None:
    ref = _one_layer(box, [*app_files(), *members])
    run, before, report = _analyze(box, ref)
    check(box, run, rc=0, outputs=(report,), before=before)


def test_lower_symlink_out_then_write_through_it_for_a_manifest(box: Sandbox) -> None:
    lower = forge.tar([*app_files(), T("esc", "l", link=str(box.outside)),
                       T("rel", "l", link="../../../../../outside")])
    upper = forge.tar([T("esc/victim", data=b"pwned\n"), T("rel/new", data=b"pwned\n")])
    ref = forge.docker_archive(box.inputs / "img.tar", [lower, upper],
                               {"Entrypoint": ["/bin/app"], "WorkingDir": "/esc"})
    dest = box.out / "manifest"
    before = baseline(box, (dest,))
    run = run_slim(box, "manifest", str(ref), "--target", "osv", "-o", str(dest))
    check(box, run, rc=0, outputs=(dest,), before=before)
    assert (box.outside / "victim").read_text() == "original\n"


# -- digests ----------------------------------------------------------------------------------
@pytest.mark.parametrize("alg", ["sha512", "sha384"])
def test_layer_digest_in_another_algorithm_is_verified(box: Sandbox, alg: str) -> None:
    layer = forge.tar(app_files())
    ref = forge.oci(box.inputs / "good", [layer], APP_CONFIG, alg=alg)
    run, before, report = _analyze(box, f"oci:{ref}")
    check(box, run, rc=0, outputs=(report,), before=before)
    report.unlink()
    blob = forge.gzip.compress(layer, 1, mtime=0)
    lie = forge.oci(box.inputs / "bad", [layer], APP_CONFIG, alg=alg, blobs=[blob])
    for path in (lie / "blobs" / alg).iterdir():
        if path.read_bytes() == blob:
            path.write_bytes(forge.gzip.compress(forge.tar(app_files({"app/x": b"evil"})), 1, mtime=0))
    run, before, _ = _analyze(box, f"oci:{lie}")
    check(box, run, rc=3, error=rf"digest mismatch.*{alg}:", before=before)


def test_empty_layer_blob(box: Sandbox) -> None:
    ref = forge.oci(box.inputs / "oci", [b""], APP_CONFIG, blobs=[b""],
                    edit_config=lambda c: {**c, "rootfs": {"type": "layers", "diff_ids": []}})
    run, before, _ = _analyze(box, f"oci:{ref}")
    check(box, run, rc=3, error=r"layer 0 .*(empty|corrupt)", before=before)
