"""The recording backlog on disk: the relay appends messages, the child reads them in order.

The relay never waits for the recorder: what the pipe cannot take now goes here, an unlinked
file next to the capture (or in $TMPDIR), readable by its owner only, since it holds traffic
before redaction. The child punches out of it what it has read, so that a long session gives
the disk back. The spool refuses more once it holds SPOOL_LIMIT of backlog or the disk is
full; the link then holds messages in memory and pauses the relay.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

from docktap.recording.wire import Message, parse
from docktap.scratch import unnamed_file

_IOV_MAX = 1024  # buffers per writev on Linux
_READ_SIZE = 1 << 20
# The child gives read spool space back to the disk in steps of this many bytes.
_PUNCH_STEP = 16 << 20
#: Disk the spool may take before the relay waits for the recorder again, looked at every
#: SPOOL_CHECK bytes spooled.
SPOOL_LIMIT = 2 << 30
SPOOL_CHECK = 64 << 20
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02


def write_all(fd: int, pieces: list[bytes], offset: int | None = None) -> int:
    """Write buffers in order until they are all out or `fd` takes no more; bytes written.

    With `offset`, to a file at that offset; without, a full non-blocking pipe ends the write
    early rather than raising.
    """
    if len(pieces) > _IOV_MAX:
        done = 0
        for first in range(0, len(pieces), _IOV_MAX):
            group = pieces[first : first + _IOV_MAX]
            n = write_all(fd, group, None if offset is None else offset + done)
            done += n
            if n < sum(map(len, group)):
                break
        return done
    try:
        return os.writev(fd, pieces) if offset is None else os.pwritev(fd, pieces, offset)
    except BlockingIOError:
        return 0


def open_spool(directory: str | None) -> int | None:
    """A file for the backlog, readable by its owner only; None if none can be made.

    It holds traffic before redaction: it gets no name where O_TMPFILE works, and loses the
    one it has at once elsewhere (scratch.unnamed_file).
    """
    for where in [directory, None] if directory is not None else [None]:
        with contextlib.suppress(OSError):
            return unnamed_file(where)
    return None


class SpoolWriter:
    """The relay's side: appends whole messages, or says why it will not."""

    def __init__(self, fd: int, limit: int | None = None, check: int | None = None) -> None:
        self.fd = fd
        self.limit = SPOOL_LIMIT if limit is None else limit
        self.check = SPOOL_CHECK if check is None else check
        self.end = 0  # where the next message goes
        self._checked = 0  # `end` when the disk use was last looked at
        self._full = False

    def append(self, pieces: list[bytes], size: int) -> str | None:
        """Append whole messages; None, or why the spool would not take them."""
        if self._full or self.end - self._checked >= self.check:
            # What the child has read is punched out of the file: its blocks are the backlog.
            self._checked = self.end
            self._full = os.fstat(self.fd).st_blocks * 512 > self.limit
            if self._full:
                return f"it holds its limit of {self.limit >> 20} MiB"
        try:
            if write_all(self.fd, pieces, self.end) == size:
                self.end += size
                return None
            refused = os.strerror(errno.ENOSPC)  # a short write: the disk filled up
        except OSError as exc:
            refused = exc.strerror or str(exc)
        # The child reads only whole messages: take back what the spool got of these.
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, self.end)
        return refused

    def close(self) -> None:
        os.close(self.fd)


class SpoolReader:
    """The child's side: reads runs in order, and frees what it has read."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pos = 0
        self._freed = 0
        import ctypes  # here: the relay's process, which writes the spool, has no use for it

        fallocate = None
        with contextlib.suppress(OSError, AttributeError):
            fallocate = ctypes.CDLL(None, use_errno=True).fallocate64
            fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        self._fallocate = fallocate  # None where it cannot be had: the spool just grows

    def run(self, count: int | None) -> Iterator[list[Message]]:
        """The messages in the next `count` bytes (None: up to the end), a read at a time."""
        rest = b""
        while count is None or count > 0:
            chunk = os.pread(
                self.fd, _READ_SIZE if count is None else min(count, _READ_SIZE), self.pos
            )
            if not chunk:
                break
            self.pos += len(chunk)
            if count is not None:
                count -= len(chunk)
            messages, rest = parse(rest + chunk if rest else chunk)
            yield messages
            self._free()

    def _free(self) -> None:
        """Punch what has been read out of the file, in big aligned steps."""
        end = self.pos & ~0xFFFF
        if self._fallocate is None or end - self._freed < _PUNCH_STEP:
            return
        mode = _FALLOC_FL_KEEP_SIZE | _FALLOC_FL_PUNCH_HOLE
        if self._fallocate(self.fd, mode, self._freed, end - self._freed) != 0:
            self._fallocate = None  # not on this file system
        self._freed = end
