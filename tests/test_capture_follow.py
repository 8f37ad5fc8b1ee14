"""Following a capture as it is written: records as their lines complete, the end at the
end-of-capture record or once the writer's lock is gone, never by reading the file again.

The writer here is the test itself, holding the capture's lock as the recorder does and
writing the lines of a real capture; the follower runs on a thread, and the test waits on
what it hands out.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from docktap.capture import lock
from docktap.capture.errors import CaptureError
from docktap.capture.follow import follow
from docktap.capture.format import Record
from docktap.capture.reader import load

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
LINES = (CAPTURES / "run.jsonl").read_bytes().splitlines(keepends=True)


class Follower:
    """`follow(path)` on a thread of its own; `next()` waits for the next batch it yields."""

    def __init__(self, path: Path) -> None:
        self.batches: queue.Queue[list[Record] | None] = queue.Queue()  # None: it ended
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(str(path),), daemon=True)
        self.thread.start()

    def _run(self, path: str) -> None:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for batch in follow(path, poll=0.01):
                    self.batches.put(batch)
            self.warnings = [str(w.message) for w in caught]
        except BaseException as exc:  # handed to the test
            self.error = exc
        self.batches.put(None)

    def next(self) -> list[Record] | None:
        return self.batches.get(timeout=30)

    def types(self) -> list[str]:
        """The record types of the next batch."""
        batch = self.next()
        assert batch is not None, "following ended"
        return [record["type"] for record in batch]

    def records(self) -> Iterator[Record]:
        """Every record still to come, until following ends."""
        while (batch := self.next()) is not None:
            yield from batch


@pytest.fixture
def writing(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A capture file locked as a recorder locks it; the descriptor to write it through."""
    path = tmp_path / "live.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    lock.hold(fd)
    try:
        yield path, fd
    finally:
        with contextlib.suppress(OSError):  # a test may have closed it: the writer went
            os.close(fd)


def test_records_come_as_their_lines_complete_and_the_end_record_ends_it(
    writing: tuple[Path, int],
) -> None:
    path, fd = writing
    follower = Follower(path)
    os.write(fd, LINES[0] + LINES[1])
    assert follower.types() == ["capture", "open"]
    line = LINES[2]
    os.write(fd, line[:10])  # half a line is not a record yet
    os.write(fd, line[10:])
    assert follower.next() == [load(CAPTURES / "run.jsonl").records[2]]
    os.write(fd, b"".join(LINES[3:]))
    rest = list(follower.records())
    assert rest[-1]["type"] == "end-of-capture"  # following ended there, the lock still held
    assert lock.being_written(path)
    assert follower.error is None and follower.warnings == []


def test_following_ends_when_the_writer_goes_without_an_end_record(
    writing: tuple[Path, int],
) -> None:
    path, fd = writing
    follower = Follower(path)
    os.write(fd, b"".join(LINES[:5]) + LINES[5][:20])  # killed in the middle of a line
    assert len(follower.types()) == 5
    os.close(fd)  # the writer is gone, and its lock with it
    assert follower.next() is None
    assert follower.error is None
    assert follower.warnings == [
        f"{path}: last line is cut off (docktap was stopped while writing); it was skipped"
    ]


def test_an_empty_file_is_waited_on_until_its_recorder_writes(writing: tuple[Path, int]) -> None:
    path, fd = writing
    os.close(fd)  # created, not locked yet: a recorder about to start
    follower = Follower(path)
    with open(path, "ab") as out:
        lock.hold(out.fileno())
        out.write(LINES[0])
        out.flush()
        assert follower.types() == ["capture"]
    assert follower.next() is None


def test_a_capture_already_written_is_read_once_to_its_end(tmp_path: Path) -> None:
    follower = Follower(CAPTURES / "run.jsonl")
    assert list(follower.records()) == load(CAPTURES / "run.jsonl").records


def test_what_is_not_a_capture_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.jsonl"
    other.write_text('{"type": "open"}\n')
    follower = Follower(other)
    assert follower.next() is None
    assert isinstance(follower.error, CaptureError)
    assert "no capture header on the first line" in str(follower.error)
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_bytes(LINES[0] + b"{not json\n")
    follower = Follower(damaged)
    assert follower.next() is None
    assert isinstance(follower.error, CaptureError)
    assert f"{damaged}:2: not a JSON record" in str(follower.error)
