"""Following a capture while it is written, as `tail -f` follows a log (`docktap show --follow`).

A recorder writes whole lines, one batch at a time, and holds the capture's lock until it is
done (capture/lock.py). `follow` hands out the records of each complete line as they arrive,
parsed as the reader parses them; the caller assembles them (`reader.Assembler`) instead of
reading the file again. Following ends at the end-of-capture record, or once no recorder holds
the capture and all it wrote has been read: a recorder that died leaves no end record, but its
lock goes with it. An empty file is waited on, as tail does: a recorder creates the file a
moment before it locks it and writes the header.

Waiting for more: the standard library has no inotify, so at the end of what is written the
follower looks again every POLL seconds. A row then shows at most that late, and an idle
follower costs ten reads and ten lock checks a second, nothing a terminal user notices. A pipe
(`-`) needs no polling: a read blocks until data comes or the writer closes its end.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator

from docktap.capture import lock
from docktap.capture.errors import CaptureError
from docktap.capture.format import Kind, Record
from docktap.capture.reader import check_header, parse_record, warn_cut_off

#: Seconds between two looks at a capture that has nothing new (see the module's docstring).
POLL = 0.1
_READ = 1 << 20


def follow(path: str, poll: float = POLL) -> Iterator[list[Record]]:
    """The records of the capture at `path` (`-`: stdin), in batches as they are written."""
    if path == "-":
        yield from _records(os.dup(0), "<stdin>", None, poll)
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise CaptureError(f"cannot read {path}: {exc.strerror}") from exc
    yield from _records(fd, path, path, poll)


def _records(fd: int, name: str, path: str | None, poll: float) -> Iterator[list[Record]]:
    """Records from `fd` until the capture ends; `path` is None for a pipe, read to its end."""
    try:
        waits = path is not None and stat.S_ISREG(os.fstat(fd).st_mode)
        rest = b""
        number = 0  # lines read so far
        opened = False  # the header was read and checked
        while True:
            chunk = os.read(fd, _READ)
            if not chunk:
                if not waits or not _written_yet(path, number):
                    if os.read(fd, 1):  # written before the lock went: not the end
                        os.lseek(fd, -1, os.SEEK_CUR)
                        continue
                    break
                time.sleep(poll)
                continue
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            records = []
            for line in lines:
                number += 1
                if line.strip():
                    records.append(parse_record(line, name, number))
            if not records:
                continue
            if not opened:
                check_header(records[0], name)
                opened = True
            yield records
            if records[-1].get("type") == Kind.END_OF_CAPTURE:
                return
        if rest.strip():
            warn_cut_off(name)
        elif number == 0:
            raise CaptureError(f"{name}: empty, not a docktap capture")
    finally:
        os.close(fd)


def _written_yet(path: str | None, lines: int) -> bool:
    """Whether more may come: a recorder holds the capture, or none has written to it yet."""
    assert path is not None
    if lock.being_written(path):
        return True
    if lines:
        return False
    try:
        return os.stat(path).st_size == 0  # a recorder about to start; gone: it failed
    except FileNotFoundError:
        return False
