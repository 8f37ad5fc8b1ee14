"""Writes capture records to disk as they happen, one JSON line each.

Each batch of records goes out in one write and is flushed at once, so a docktap killed at any
moment leaves at most its last line partial, and the reader tolerates exactly that. A write
that fails (a full disk, a closed pipe) must not stop the relay: the writer reports the error
once and drops what follows, while Docker traffic keeps flowing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import IO

from docktap.capture.format import Record, line
from docktap.outputs import open_output


class CaptureWriter:
    """Appends records to a text stream; `failed` holds the reason once writing stopped."""

    def __init__(self, stream: IO[str], on_error: Callable[[str], None] | None = None) -> None:
        self._stream = stream
        # Lines are written as the bytes orjson makes, past the text layer where there is one
        # underneath (a file, stdout): decoding them to have them encoded again costs more
        # than the JSON itself. The text layer holds nothing: each write is flushed.
        self._binary: IO[bytes] | None = getattr(stream, "buffer", None)
        self._on_error = on_error
        self.failed: str | None = None
        self.records = 0

    @classmethod
    def create(cls, path: str, on_error: Callable[[str], None] | None = None) -> CaptureWriter:
        """A capture file opened by `open_output` (OutputError if it cannot be), or stdout: `-`."""
        if path == "-":
            return cls(sys.stdout, on_error)
        return cls.from_fd(open_output(path, replace=True), on_error)

    @classmethod
    def from_fd(cls, fd: int, on_error: Callable[[str], None] | None = None) -> CaptureWriter:
        return cls(open(fd, "w", encoding="utf-8", newline="\n"), on_error)

    def write(self, records: Iterable[Record]) -> None:
        if self.failed is not None:
            return
        lines = [line(record) for record in records]
        if not lines:
            return
        try:
            if self._binary is not None:
                self._binary.write(b"".join(lines))
                self._binary.flush()
            else:
                self._stream.write(b"".join(lines).decode("utf-8"))
                self._stream.flush()
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.failed = f"capture stopped after {self.records} records: {reason}"
            if self._on_error is not None:
                self._on_error(self.failed)
            return
        self.records += len(lines)

    def close(self) -> None:
        if self._stream is sys.stdout:
            return
        try:
            self._stream.close()
        except OSError as exc:
            if self.failed is None and self._on_error is not None:
                self._on_error(f"closing the capture failed: {exc.strerror}")
