"""What the observer reports about a connection, as plain immutable values.

The observer turns bytes into these events and everything downstream (recorder, live view,
tests) consumes them, so they are the contract between the parsing layer and the rest. They
carry no I/O handles and no clock: the timestamp is whatever the caller fed in with the bytes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from docktap.direction import Direction as Direction  # the events' field, named here too

Headers = tuple[tuple[str, str], ...]


class Stream(enum.IntEnum):
    """Stream ids of Docker's multiplexed frames (the first byte of the 8-byte header)."""

    STDIN = 0
    STDOUT = 1
    STDERR = 2
    SYSTEM_ERROR = 3


@dataclass(frozen=True, slots=True)
class Event:
    conn: int
    t: float


@dataclass(frozen=True, slots=True)
class RequestHead(Event):
    seq: int
    method: str
    target: str
    http_version: str
    headers: Headers


@dataclass(frozen=True, slots=True)
class ResponseHead(Event):
    """A status line and headers; `informational` for 1xx heads, 101 included."""

    seq: int
    status: int
    reason: str
    http_version: str
    headers: Headers
    informational: bool


@dataclass(frozen=True, slots=True)
class BodyData(Event):
    """A piece of a request (CLIENT) or response (DAEMON) body, de-chunked."""

    seq: int
    direction: Direction
    data: bytes


@dataclass(frozen=True, slots=True)
class MessageEnd(Event):
    """The end of a request or response body; `complete` is False when the peer closed early."""

    seq: int
    direction: Direction
    complete: bool = True


@dataclass(frozen=True, slots=True)
class Hijacked(Event):
    """From here on the connection carries raw bytes in both directions.

    `protocol` is the Upgrade token (`tcp`, `h2c`, ...) or `raw-stream` for Docker's 200 hijack
    without Upgrade. Whether the daemon's output is framed is not said here: `Frame` events
    follow when it is.
    """

    seq: int
    protocol: str


@dataclass(frozen=True, slots=True)
class StreamData(Event):
    """Raw bytes of a hijacked connection, exactly as they crossed."""

    seq: int
    direction: Direction
    data: bytes


@dataclass(frozen=True, slots=True)
class Frame(Event):
    """Payload bytes of one multiplexed frame (or a piece of it, when it spans reads)."""

    seq: int
    direction: Direction
    stream: Stream
    data: bytes


@dataclass(frozen=True, slots=True)
class HalfClosed(Event):
    """`direction` finished sending (EOF); the other direction may go on."""

    direction: Direction


@dataclass(frozen=True, slots=True)
class Closed(Event):
    pass


@dataclass(frozen=True, slots=True)
class ProtocolError(Event):
    """The bytes stopped making sense; the rest of the connection follows as Unparsed."""

    seq: int | None
    direction: Direction
    message: str


@dataclass(frozen=True, slots=True)
class HeadCut(Event):
    """The unfinished head of `size` bytes was let go: all connections together held more than
    `budget` bytes unparsed. The rest of the connection follows as Unparsed, this head first."""

    seq: int | None
    direction: Direction
    size: int
    budget: int


@dataclass(frozen=True, slots=True)
class Unparsed(Event):
    """Bytes after a protocol error, kept as they were."""

    direction: Direction
    data: bytes
