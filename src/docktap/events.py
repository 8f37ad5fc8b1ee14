"""What the observer reports about a connection, as plain immutable values.

The observer turns bytes into these events and everything downstream (recorder, live view,
tests) consumes them, so they are the contract between the parsing layer and the rest. They
carry no I/O handles and no clock: the timestamp is whatever the caller fed in with the bytes.

They are values (values.py) rather than frozen dataclasses, for the recorder's start-up: it
imports this module after it is forked, and the thirteen dataclasses cost it 6 ms of CPU to
define (0.4 ms each), a sixth of its imports; their frozen `__init__` (`object.__setattr__`
for each field) cost the observer 0.6 µs per event too, a third of that now. Equal when of one
class with equal fields, shown by their fields, hashable, and never changed once made (nothing
assigns to an event's fields).
"""

from __future__ import annotations

import enum

from docktap.direction import Direction as Direction  # the events' field, named here too
from docktap.values import Value

Headers = tuple[tuple[str, str], ...]


class Stream(enum.IntEnum):
    """Stream ids of Docker's multiplexed frames (the first byte of the 8-byte header)."""

    STDIN = 0
    STDOUT = 1
    STDERR = 2
    SYSTEM_ERROR = 3


class Event(Value):
    """What every event has: its connection and the time of the bytes that made it (the first
    two parameters of every event's `__init__`)."""

    __slots__ = ("conn", "t")

    def __init__(self, conn: int, t: float) -> None:
        self.conn = conn
        self.t = t

    def __hash__(self) -> int:
        return hash(self._values())


class RequestHead(Event):
    __slots__ = ("headers", "http_version", "method", "seq", "target")

    def __init__(
        self,
        conn: int,
        t: float,
        seq: int,
        method: str,
        target: str,
        http_version: str,
        headers: Headers,
    ) -> None:
        self.conn = conn
        self.t = t
        self.seq = seq
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers


class ResponseHead(Event):
    """A status line and headers; `informational` for 1xx heads, 101 included."""

    __slots__ = ("headers", "http_version", "informational", "reason", "seq", "status")

    def __init__(
        self,
        conn: int,
        t: float,
        seq: int,
        status: int,
        reason: str,
        http_version: str,
        headers: Headers,
        informational: bool,
    ) -> None:
        self.conn = conn
        self.t = t
        self.seq = seq
        self.status = status
        self.reason = reason
        self.http_version = http_version
        self.headers = headers
        self.informational = informational


class BodyData(Event):
    """A piece of a request (CLIENT) or response (DAEMON) body, de-chunked."""

    __slots__ = ("data", "direction", "seq")

    def __init__(self, conn: int, t: float, seq: int, direction: Direction, data: bytes) -> None:
        self.conn = conn
        self.t = t
        self.seq = seq
        self.direction = direction
        self.data = data


class MessageEnd(Event):
    """The end of a request or response body; `complete` is False when the peer closed early."""

    __slots__ = ("complete", "direction", "seq")

    def __init__(
        self, conn: int, t: float, seq: int, direction: Direction, complete: bool = True
    ) -> None:
        self.conn = conn
        self.t = t
        self.seq = seq
        self.direction = direction
        self.complete = complete


class Hijacked(Event):
    """From here on the connection carries raw bytes in both directions.

    `protocol` is the Upgrade token (`tcp`, `h2c`, ...) or `raw-stream` for Docker's 200 hijack
    without Upgrade. Whether the daemon's output is framed is not said here: `Frame` events
    follow when it is.
    """

    __slots__ = ("protocol", "seq")

    def __init__(self, conn: int, t: float, seq: int, protocol: str) -> None:
        self.conn = conn
        self.t = t
        self.seq = seq
        self.protocol = protocol


class StreamData(Event):
    """Raw bytes of a hijacked connection, exactly as they crossed."""

    __slots__ = ("data", "direction", "seq")

    def __init__(self, conn: int, t: float, seq: int, direction: Direction, data: bytes) -> None:
        self.conn = conn
        self.t = t
        self.seq = seq
        self.direction = direction
        self.data = data


class Frame(Event):
    """Payload bytes of one multiplexed frame (or a piece of it, when it spans reads)."""

    __slots__ = ("data", "direction", "seq", "stream")

    def __init__(
        self, conn: int, t: float, seq: int, direction: Direction, stream: Stream, data: bytes
    ) -> None:
        self.conn = conn
        self.t = t
        self.seq = seq
        self.direction = direction
        self.stream = stream
        self.data = data


class HalfClosed(Event):
    """`direction` finished sending (EOF); the other direction may go on."""

    __slots__ = ("direction",)

    def __init__(self, conn: int, t: float, direction: Direction) -> None:
        self.conn = conn
        self.t = t
        self.direction = direction


class Closed(Event):
    __slots__ = ()


class ProtocolError(Event):
    """The bytes stopped making sense; the rest of the connection follows as Unparsed."""

    __slots__ = ("direction", "message", "seq")

    def __init__(
        self, conn: int, t: float, seq: int | None, direction: Direction, message: str
    ) -> None:
        self.conn = conn
        self.t = t
        self.seq = seq
        self.direction = direction
        self.message = message


class HeadCut(Event):
    """The unfinished head of `size` bytes was let go: all connections together held more than
    `budget` bytes unparsed. The rest of the connection follows as Unparsed, this head first."""

    __slots__ = ("budget", "direction", "seq", "size")

    def __init__(
        self, conn: int, t: float, seq: int | None, direction: Direction, size: int, budget: int
    ) -> None:
        self.conn = conn
        self.t = t
        self.seq = seq
        self.direction = direction
        self.size = size
        self.budget = budget


class Unparsed(Event):
    """Bytes after a protocol error, kept as they were."""

    __slots__ = ("data", "direction")

    def __init__(self, conn: int, t: float, direction: Direction, data: bytes) -> None:
        self.conn = conn
        self.t = t
        self.direction = direction
        self.data = data
