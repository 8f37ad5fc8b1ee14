"""The recording spool: whole messages appended by the relay, read back in order by the child."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from docktap.recording import spool
from docktap.recording.spool import SpoolReader, SpoolWriter, open_spool, write_all
from docktap.recording.wire import Batch, Kind


def _batch(n: int, size: int = 1000) -> Batch:
    batch = Batch()
    for i in range(n):
        batch.add(Kind.DATA_CLIENT, i, float(i), bytes([i % 256]) * size)
    return batch


def test_the_spool_is_private_and_nameless(tmp_path: Path) -> None:
    fd = open_spool(str(tmp_path))
    assert fd is not None
    try:
        assert os.fstat(fd).st_mode & 0o077 == 0
        assert os.fstat(fd).st_dev == os.stat(tmp_path).st_dev
        assert list(tmp_path.iterdir()) == []
    finally:
        os.close(fd)


def test_what_is_appended_is_read_back_in_runs(tmp_path: Path) -> None:
    fd = open_spool(str(tmp_path))
    assert fd is not None
    writer, reader = SpoolWriter(fd), SpoolReader(os.dup(fd))
    first, second = _batch(3), _batch(2000)
    assert writer.append(first.pieces, first.size) is None
    assert writer.append(second.pieces, second.size) is None
    assert writer.end == first.size + second.size
    (run,) = list(reader.run(first.size))
    assert [m[1] for m in run] == [0, 1, 2]
    got = [m for messages in reader.run(second.size) for m in messages]
    assert len(got) == 2000  # across reads of 1 MiB, no message lost at their edges
    assert [m[3] for m in got] == [bytes([i % 256]) * 1000 for i in range(2000)]
    assert list(reader.run(None)) == []
    writer.close()
    os.close(reader.fd)


def test_a_full_spool_refuses_whole_messages_and_keeps_none_of_them(tmp_path: Path) -> None:
    fd = open_spool(str(tmp_path))
    assert fd is not None
    writer = SpoolWriter(fd, limit=1 << 20, check=0)
    big = _batch(2, 1 << 20)
    assert writer.append(big.pieces, big.size) is None
    small = _batch(1)
    assert writer.append(small.pieces, small.size) == "it holds its limit of 1 MiB"
    assert writer.end == big.size
    assert os.fstat(fd).st_size == big.size
    writer.close()


def test_a_disk_that_fills_up_takes_back_the_partial_write() -> None:
    writer = SpoolWriter(os.open("/dev/full", os.O_RDWR))
    batch = _batch(1)
    assert writer.append(batch.pieces, batch.size) == "No space left on device"
    assert writer.end == 0
    writer.close()


def test_write_all_goes_past_the_iovec_limit(tmp_path: Path) -> None:
    pieces = [bytes([i % 256]) for i in range(3000)]
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        assert write_all(fd, pieces, 0) == 3000
        assert os.pread(fd, 4000, 0) == b"".join(pieces)
    finally:
        os.close(fd)


def test_the_limit_is_read_when_a_writer_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool, "SPOOL_LIMIT", 3 << 20)
    fd = open_spool(str(tmp_path))
    assert fd is not None
    assert SpoolWriter(fd).limit == 3 << 20
    os.close(fd)
