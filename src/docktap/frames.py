"""Incremental decoder for Docker's multiplexed stream frames.

Non-TTY attach, exec and logs output interleaves stdout and stderr in frames: an 8-byte header
(stream id, three zero bytes, big-endian payload size) then the payload. Frames span reads and
HTTP chunks, so the decoder keeps only the unfinished header between feeds and hands payload
pieces on as soon as they arrive: memory stays flat however large a frame is.
"""

from __future__ import annotations

import struct

from docktap.events import Stream

HEADER_SIZE = 8
_HEADER = struct.Struct(">BxxxI")


def looks_multiplexed(prefix: bytes) -> bool | None:
    """Guess from the first bytes of a stream whether it is framed; None while too short.

    A frame header starts with a stream id 0-3 and three zero bytes, which TTY output (text)
    practically never does.
    """
    if not prefix:
        return None
    if prefix[0] > Stream.SYSTEM_ERROR or any(prefix[1:4]):
        return False
    return True if len(prefix) >= 4 else None


class FrameError(ValueError):
    """The bytes are not a frame header.

    `pieces` holds what the failing `feed` call decoded before the bad header, so that a
    caller loses no payload however the bytes were split.
    """

    def __init__(self, message: str, pieces: list[tuple[Stream, bytes]] | None = None) -> None:
        super().__init__(message)
        self.pieces: list[tuple[Stream, bytes]] = pieces if pieces is not None else []


class FrameDecoder:
    """Feed bytes, get `(stream, payload piece)` pairs."""

    __slots__ = ("_header", "_remaining", "_stream")

    def __init__(self) -> None:
        self._header = b""
        self._remaining = 0
        self._stream = Stream.STDOUT

    def feed(self, data: bytes) -> list[tuple[Stream, bytes]]:
        out: list[tuple[Stream, bytes]] = []
        view = memoryview(data)
        pos = 0
        end = len(data)
        while pos < end:
            if self._remaining:
                take = min(self._remaining, end - pos)
                out.append((self._stream, bytes(view[pos : pos + take])))
                self._remaining -= take
                pos += take
                continue
            need = HEADER_SIZE - len(self._header)
            self._header += bytes(view[pos : pos + need])
            pos += need
            if len(self._header) < HEADER_SIZE:
                break
            stream_id, size = _HEADER.unpack(self._header)
            if stream_id > Stream.SYSTEM_ERROR or self._header[1:4] != b"\0\0\0":
                raise FrameError(f"bad frame header {self._header.hex()}", out)
            self._header = b""
            self._stream = Stream(stream_id)
            self._remaining = size
        return out
