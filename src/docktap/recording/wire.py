"""The wire between the relay and the recording child: its settings and its messages.

The child gets its settings once, as JSON on its command line, and then a stream of messages
through a pipe (and runs of them through the spool). A message is a header, kind (1 byte),
connection (4), time (8, monotonic seconds) and payload length (4), then the payload:
forwarded bytes, peer credentials or a failure message as JSON, or for SPOOLED the number of
spool bytes that come next (8). The pipe only ever carries whole messages, and so does each
run of the spool that a SPOOLED message announces.

This module is pure: it packs and parses bytes, and does no I/O.
"""

from __future__ import annotations

import json
import struct
from enum import IntEnum
from typing import Any, NamedTuple

from docktap.direction import Direction
from docktap.tap import PeerCredentials

HEADER = struct.Struct("<BIdI")
_COUNT = struct.Struct("<Q")


class Kind(IntEnum):
    OPEN = 1
    DATA_CLIENT = 2
    DATA_DAEMON = 3
    EOF_CLIENT = 4
    EOF_DAEMON = 5
    CLOSE = 6
    FAILED = 7
    STOP = 8
    SPOOLED = 9
    DECISION = 10  # the guard's decision on a request, as JSON


DATA = {Direction.CLIENT: Kind.DATA_CLIENT, Direction.DAEMON: Kind.DATA_DAEMON}
EOF = {Direction.CLIENT: Kind.EOF_CLIENT, Direction.DAEMON: Kind.EOF_DAEMON}

#: kind, connection, time, payload
Message = tuple[int, int, float, bytes]


class RecordingConfig(NamedTuple):
    """Everything the child needs to know, passed as JSON on its command line."""

    capture_fd: int | None  # an open capture file handed down, or None for stdout
    max_body: int
    upstream: str
    command: list[str] | None
    started_wall: float
    started_mono: float
    live: str  # "off", "rows", or "status" (rows plus a status line on a terminal)
    redact: bool = True  # mask secrets before they reach the capture (--no-redact: False)
    redact_env: tuple[str, ...] = ()  # more secret variable name patterns
    audit: str | None = None  # warn on stderr of findings at this level or above (--audit)
    spool_fd: int | None = None  # the spool handed down, when there is one
    upstream_tls: dict[str, Any] | None = None  # the header's `tls`, for a daemon over TLS
    head_budget: int | None = None  # bytes of unfinished heads held in all; None: the default
    colour: str = "auto"  # --color of the live rows and warnings (docktap.console)
    width: int | None = None  # --width of them; None: as the terminal or COLUMNS says
    policy: str | None = None  # the header's `policy`: "enforce" or "warn", with a guard

    def to_json(self) -> str:
        return json.dumps(self._asdict())

    @classmethod
    def from_json(cls, text: str) -> RecordingConfig:
        fields = json.loads(text)
        fields["redact_env"] = tuple(fields.get("redact_env", ()))  # JSON has lists only
        return cls(**fields)


def peer_payload(peer: PeerCredentials | None) -> bytes:
    return json.dumps(peer._asdict()).encode() if peer is not None else b""


def peer_from_payload(payload: bytes) -> dict[str, object] | None:
    loaded: dict[str, object] | None = json.loads(payload) if payload else None
    return loaded


def spooled(count: int) -> bytes:
    """The message announcing that the next `count` bytes of the spool come now.

    Shorter than PIPE_BUF: a pipe takes all of it or none.
    """
    return HEADER.pack(Kind.SPOOLED, 0, 0.0, _COUNT.size) + _COUNT.pack(count)


def spooled_count(payload: bytes) -> int:
    count: int = _COUNT.unpack(payload)[0]
    return count


class Batch:
    """Messages packed for one write, each header and payload a buffer of its own (no copy)."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.starts: list[int] = []  # where each message starts in `pieces`
        self.size = 0

    def __bool__(self) -> bool:
        return bool(self.pieces)

    def add(self, kind: int, conn: int, t: float, payload: bytes = b"") -> None:
        self.starts.append(len(self.pieces))
        self.pieces.append(HEADER.pack(kind, conn, t, len(payload)))
        if payload:
            self.pieces.append(payload)
        self.size += HEADER.size + len(payload)

    def _spans(self) -> list[tuple[int, int]]:
        """Where each message is in `pieces`: from its first buffer to past its last."""
        ends = [*self.starts[1:], len(self.pieces)]
        return list(zip(self.starts, ends[: len(self.starts)], strict=True))

    def messages(self) -> list[bytes]:
        """Each message as one bytes object."""
        return [b"".join(self.pieces[start:end]) for start, end in self._spans()]

    def split(self, written: int) -> tuple[bytes, Batch]:
        """After a write took the first `written` bytes: the rest of the message it cut (b""
        when it cut none), and the whole messages after that one."""
        offset = 0
        tail = b""
        rest = Batch()
        for start, end in self._spans():
            length = sum(map(len, self.pieces[start:end]))
            if offset >= written:
                rest.starts.append(len(rest.pieces))
                rest.pieces.extend(self.pieces[start:end])
                rest.size += length
            elif offset + length > written:
                tail = b"".join(self.pieces[start:end])[written - offset :]
            offset += length
        return tail, rest


def parse(data: bytes) -> tuple[list[Message], bytes]:
    """The whole messages at the start of `data`, and the start of a cut one after them."""
    size = HEADER.size
    view = memoryview(data)
    out: list[Message] = []
    pos = 0
    end = len(data)
    while end - pos >= size:
        kind, conn, t, length = HEADER.unpack_from(data, pos)
        if end - pos - size < length:
            break
        out.append((kind, conn, t, view[pos + size : pos + size + length].tobytes()))
        pos += size + length
    return out, data[pos:]
