"""slim.outputs: the sparse writer (and, below, what an output may replace)."""

from __future__ import annotations

import os
from pathlib import Path

from slim.outputs import HOLE_BLOCK, SparseWriter


def test_sparse_writer_reads_back_the_same_and_keeps_zero_runs_as_holes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    pieces = [b"abc", bytes(10 << 20), b"xyz" * 5000, bytes(3), bytes(1 << 20)]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        writer = SparseWriter(fd)
        for piece in pieces:
            assert writer.write(memoryview(piece)) == len(piece)
        writer.close()
        assert writer.written == sum(map(len, pieces))
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(pieces)
    assert path.stat().st_blocks * 512 <= 4 * HOLE_BLOCK  # the data, not the 11 MB of zeros


def test_sparse_writer_appends_at_an_offset(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"head")
    fd = os.open(path, os.O_WRONLY)
    try:
        writer = SparseWriter(fd, 4)
        writer.write(bytes(100))
        writer.write(b"tail")
        writer.close()
    finally:
        os.close(fd)
    assert path.read_bytes() == b"head" + bytes(100) + b"tail"


def test_check_output_turns_every_failure_into_one_emit_error(tmp_path: Path) -> None:
    import pytest

    from slim.errors import EmitError
    from slim.outputs import check_output

    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    for bad in ("", "a\x00b", str(tmp_path / ("n" * 300)), str(loop / "x"),
                str(tmp_path / "nofile" / "x")):
        with pytest.raises(EmitError):
            check_output(bad, what="report")
    with pytest.raises(EmitError, match="not a previous slim"):
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "f").write_text("x")
        check_output(str(tmp_path / "d"), what="layout", directory=True)
