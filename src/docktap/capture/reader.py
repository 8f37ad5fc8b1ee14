"""Reads a capture back into exchanges: the model every reader of a capture works from.

Records arrive interleaved across connections and split into pieces; readers of a capture want
whole exchanges: a request, its answer, its bodies and streams, and when each piece of it came.
This module turns each record into a typed part (`decode`), hands the parts to the exchange or
connection they belong to (`Assembler`), and keeps every part on its exchange with its time,
direction and size, beside the totals most readers want (status, bodies, duration). Renderers,
the replay scripts and the live view read these exchanges, never the records: record kinds are
known here and to the encoder only.

A capture cut short by a killed docktap ends with a partial line; that is expected and only
warned about. A damaged line anywhere else is an error: the file is not what docktap wrote.
Only `load` and `read_left`, at the end of this module, open a file: `load` may leave large
payloads in it (the replay does, so that its memory does not grow with the bodies it serves),
and `read_left` reads one back.
"""

from __future__ import annotations

import gc
import itertools
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

import orjson

from docktap import routes
from docktap.capture.errors import CaptureError as CaptureError
from docktap.capture.format import (
    FORMAT,
    HELD_BODY_LIMIT,
    READABLE,
    Kind,
    Record,
    decode_payload,
)
from docktap.events import Direction
from docktap.routes import Identity
from docktap.values import Value

# A path's type only: the live rows, which read records with this module, need no pathlib.
if TYPE_CHECKING:
    from pathlib import PurePath


class CaptureWarning(UserWarning):
    """The capture is readable but incomplete (its last line was cut off)."""


# --- the parts of a capture ---------------------------------------------------------------
#
# Parts are values (docktap.values), plain classes with slots, and `Left` a named tuple: not
# dataclasses, for `show` and the live view, which imports this module as the recorder starts
# (as dataclasses, these 18 cost 5 ms to define); nor frozen ones: a large capture has millions
# of them, and a frozen dataclass takes three times as long to build. For the same reason a
# part sets the two to four fields of Part and ExchangePart itself: a call of its parent's
# `__init__` for them costs 100 to 300 ns a part (a body chunk 250 -> 410 ns), which every
# load of a large capture would pay. FrameChunk, which would repeat all of _Payload's, calls it
# (230 -> 360 ns a frame).


class Part(Value):
    """One thing recorded, at its moment."""

    __slots__ = ("index", "mono")

    def __init__(self, index: int, mono: float) -> None:
        self.index = index  # the position of its record in the capture: the recorded order
        self.mono = mono  # seconds since the capture started


class Opened(Part):
    """A client connected."""

    __slots__ = ("conn", "peer")

    def __init__(self, index: int, mono: float, conn: int, peer: dict[str, int] | None) -> None:
        self.index = index
        self.mono = mono
        self.conn = conn
        self.peer = peer  # the client process's pid, uid and gid, when known


class HalfClose(Part):
    """One side of a connection finished sending."""

    __slots__ = ("conn", "direction")

    def __init__(self, index: int, mono: float, conn: int, direction: Direction | None) -> None:
        self.index = index
        self.mono = mono
        self.conn = conn
        self.direction = direction


class Close(Part):
    """A connection ended."""

    __slots__ = ("conn",)

    def __init__(self, index: int, mono: float, conn: int) -> None:
        self.index = index
        self.mono = mono
        self.conn = conn


class Failure(Part):
    """An error: a protocol error on an exchange, or one docktap ran into (`upstream`, ...)."""

    __slots__ = ("conn", "kind", "message", "seq")

    def __init__(
        self,
        index: int,
        mono: float,
        conn: int | None,
        seq: int | None,
        kind: str | None,
        message: str,
    ) -> None:
        self.index = index
        self.mono = mono
        self.conn = conn
        self.seq = seq
        self.kind = kind
        self.message = message


class UnparsedChunk(Part):
    """Bytes of a connection relayed but not parsed: after a protocol error, or a cut head."""

    __slots__ = ("conn", "direction", "size")

    def __init__(
        self, index: int, mono: float, conn: int, direction: Direction | None, size: int
    ) -> None:
        self.index = index
        self.mono = mono
        self.conn = conn
        self.direction = direction
        self.size = size


class CaptureEnd(Part):
    """The capture was closed cleanly."""

    __slots__ = ("records",)

    def __init__(self, index: int, mono: float, records: int | None) -> None:
        self.index = index
        self.mono = mono
        self.records = records


class ExchangePart(Part):
    """A part of one exchange: `seq` numbers the exchanges of connection `conn` from 1."""

    __slots__ = ("conn", "seq")

    def __init__(self, index: int, mono: float, conn: int, seq: int) -> None:
        self.index = index
        self.mono = mono
        self.conn = conn
        self.seq = seq


class RequestHead(ExchangePart):
    """The request line and headers, and what the request is (`identity`)."""

    __slots__ = (
        "_identity",
        "api_version",
        "headers",
        "http_version",
        "method",
        "operation",
        "t",
        "target",
    )

    def __init__(
        self,
        index: int,
        mono: float,
        conn: int,
        seq: int,
        t: float,
        method: str,
        target: str,
        http_version: str,
        headers: list[tuple[str, str]],
        operation: str | None,
        api_version: str | None,
    ) -> None:
        self.index = index
        self.mono = mono
        self.conn = conn
        self.seq = seq
        self.t = t  # wall clock, epoch seconds
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers
        self.operation = operation  # as recorded
        self.api_version = api_version
        self._identity: Identity | None = None

    @property
    def identity(self) -> Identity:
        """The recorded operation and API version, with the path parameters of the target.

        Worked out the first time it is asked for, then kept with the head: loading a capture
        need not route every request again, as its record says which operation it was.
        """
        if self._identity is None:
            found = routes.identify(self.method, self.target)
            if (found.operation, found.api_version) != (self.operation, self.api_version):
                # The capture says what it recorded; the table may have changed since.
                found = found._replace(operation=self.operation, api_version=self.api_version)
            self._identity = found
        return self._identity


class ResponseHead(ExchangePart):
    """A status line and headers: the answer, or an informational head before it."""

    __slots__ = ("headers", "http_version", "informational", "reason", "status")

    def __init__(
        self,
        index: int,
        mono: float,
        conn: int,
        seq: int,
        status: int,
        reason: str | None,
        http_version: str,
        headers: list[tuple[str, str]],
        informational: bool,
    ) -> None:
        self.index = index
        self.mono = mono
        self.conn = conn
        self.seq = seq
        self.status = status
        self.reason = reason
        self.http_version = http_version
        self.headers = headers
        self.informational = informational  # a 1xx head, 101 included

    @property
    def preliminary(self) -> bool:
        """An informational head that comes before the answer (100 Continue).

        A 101 is informational too, but it is the answer: the connection is the stream's now.
        """
        return self.informational and self.status != 101


class Left(NamedTuple):
    """Where the record of a payload left in its capture file is (see `load`)."""

    path: str
    offset: int  # of the record's line


class _Payload(ExchangePart):
    """Bytes as the capture holds them, `text` or `b64`; `data` decodes them.

    The part keeps the capture's own strings rather than a copy of the bytes: the exchange
    already holds them decoded, once, in its bodies, streams and frames. A payload `load` left
    in the file has neither: `left` says where it is, `data` is empty, and so is its share of
    the exchange's bodies, streams and frames.
    """

    __slots__ = ("b64", "direction", "left", "size", "text")

    def __init__(
        self,
        index: int,
        mono: float,
        conn: int,
        seq: int,
        direction: Direction | None,
        size: int,
        text: str | None,
        b64: str | None,
        *,
        left: Left | None = None,
    ) -> None:
        self.index = index
        self.mono = mono
        self.conn = conn
        self.seq = seq
        self.direction = direction
        self.size = size  # bytes in this part
        self.text = text
        self.b64 = b64
        self.left = left

    @property
    def data(self) -> bytes:
        return decode_payload(self.text, self.b64)


class BodyChunk(_Payload):
    """A piece of a request or response body (the inline part: the cap may cut it)."""

    __slots__ = ()


class StreamChunk(_Payload):
    """Raw bytes of a hijacked connection, as one side sent them."""

    __slots__ = ()


class FrameChunk(_Payload):
    """The payload of one frame of a multiplexed stream: `stream` is stdout, stderr, ..."""

    __slots__ = ("stream",)

    def __init__(
        self,
        index: int,
        mono: float,
        conn: int,
        seq: int,
        direction: Direction | None,
        size: int,
        text: str | None,
        b64: str | None,
        stream: str,
        *,
        left: Left | None = None,
    ) -> None:
        super().__init__(index, mono, conn, seq, direction, size, text, b64, left=left)
        self.stream = stream


class BodyEnd(ExchangePart):
    """A request or response finished (`complete` False: cut short by a close)."""

    __slots__ = ("complete", "direction", "sha256", "size")

    def __init__(
        self,
        index: int,
        mono: float,
        conn: int,
        seq: int,
        direction: Direction | None,
        complete: bool | None,
        size: int,
        sha256: str | None,
    ) -> None:
        self.index = index
        self.mono = mono
        self.conn = conn
        self.seq = seq
        self.direction = direction
        self.complete = complete
        self.size = size  # of the whole body, past the inline cap too
        self.sha256 = sha256


class Hijack(ExchangePart):
    """The connection stopped being HTTP: from here on it carries a raw stream."""

    __slots__ = ("protocol",)

    def __init__(self, index: int, mono: float, conn: int, seq: int, protocol: str) -> None:
        self.index = index
        self.mono = mono
        self.conn = conn
        self.seq = seq
        self.protocol = protocol


class Decision(ExchangePart):
    """The guard's decision on the request (`enforced` False: warn mode, forwarded anyway)."""

    __slots__ = ("allowed", "enforced", "message", "reason")

    def __init__(
        self,
        index: int,
        mono: float,
        conn: int,
        seq: int,
        allowed: bool,
        enforced: bool,
        reason: str,
        message: str,
    ) -> None:
        self.index = index
        self.mono = mono
        self.conn = conn
        self.seq = seq
        self.allowed = allowed
        self.enforced = enforced
        self.reason = reason  # the rule broken, or the client rule that allowed it
        self.message = message


_DIRECTIONS = {d.value: d for d in Direction}


def _opened(record: Record, index: int) -> Opened:
    return Opened(index, record.get("mono") or 0.0, record["conn"], record.get("peer"))


def _request(record: Record, index: int) -> RequestHead:
    return RequestHead(
        index,
        record.get("mono") or 0.0,
        record["conn"],
        record["seq"],
        record["t"],
        record["method"],
        record["target"],
        record.get("http_version", "1.1"),
        [(k, v) for k, v in record.get("headers", [])],
        record.get("operation"),
        record.get("api_version"),
    )


def _response(record: Record, index: int) -> ResponseHead:
    return ResponseHead(
        index,
        record.get("mono") or 0.0,
        record["conn"],
        record.get("seq", -1),
        record["status"],
        record.get("reason"),
        record.get("http_version", "1.1"),
        [(k, v) for k, v in record.get("headers", [])],
        bool(record.get("informational")),
    )


def _payload(
    record: Record, index: int
) -> tuple[int, float, int, int, Direction | None, int, str | None, str | None]:
    """The fields every payload part has, in their order."""
    return (
        index,
        record.get("mono") or 0.0,
        record["conn"],
        record.get("seq", -1),
        _DIRECTIONS.get(record.get("dir", "")),
        record.get("size", 0),
        record.get("text"),
        record.get("b64"),
    )


def _body(record: Record, index: int) -> BodyChunk:
    return BodyChunk(*_payload(record, index))


def _stream(record: Record, index: int) -> StreamChunk:
    return StreamChunk(*_payload(record, index))


def _frame(record: Record, index: int) -> FrameChunk:
    return FrameChunk(*_payload(record, index), record["stream"])


def _end(record: Record, index: int) -> BodyEnd:
    return BodyEnd(
        index,
        record.get("mono") or 0.0,
        record["conn"],
        record.get("seq", -1),
        _DIRECTIONS.get(record.get("dir", "")),
        record.get("complete"),
        record["size"],
        record.get("sha256"),
    )


def _hijack(record: Record, index: int) -> Hijack:
    mono = record.get("mono") or 0.0
    return Hijack(index, mono, record["conn"], record.get("seq", -1), record["protocol"])


def _halfclose(record: Record, index: int) -> HalfClose:
    direction = _DIRECTIONS.get(record.get("dir", ""))
    return HalfClose(index, record.get("mono") or 0.0, record["conn"], direction)


def _close(record: Record, index: int) -> Close:
    return Close(index, record.get("mono") or 0.0, record["conn"])


def _error(record: Record, index: int) -> Failure:
    mono = record.get("mono") or 0.0
    message = record.get("message", "")
    return Failure(index, mono, record.get("conn"), record.get("seq"), record.get("kind"), message)


def _decision(record: Record, index: int) -> Decision:
    return Decision(
        index,
        record.get("mono") or 0.0,
        record["conn"],
        record.get("seq") or 0,  # 0: bytes that were no request, on no exchange
        bool(record.get("allowed")),
        bool(record.get("enforced")),
        record.get("reason", ""),
        record.get("message", ""),
    )


def _unparsed(record: Record, index: int) -> UnparsedChunk:
    direction = _DIRECTIONS.get(record.get("dir", ""))
    mono = record.get("mono") or 0.0
    return UnparsedChunk(index, mono, record["conn"], direction, record.get("size", 0))


def _end_of_capture(record: Record, index: int) -> CaptureEnd:
    return CaptureEnd(index, record.get("mono") or 0.0, record.get("records"))


# Records of a connection, and those that may come without one.
_ON_CONNECTION: dict[str, Callable[[Record, int], Part]] = {
    Kind.END: _end,
    Kind.BODY: _body,
    Kind.REQUEST: _request,
    Kind.RESPONSE: _response,
    Kind.OPEN: _opened,
    Kind.CLOSE: _close,
    Kind.FRAME: _frame,
    Kind.STREAM: _stream,
    Kind.HIJACK: _hijack,
    Kind.HALFCLOSE: _halfclose,
    Kind.DECISION: _decision,
    Kind.UNPARSED: _unparsed,
}
_ANYWHERE: dict[str, Callable[[Record, int], Part]] = {
    Kind.ERROR: _error,
    Kind.END_OF_CAPTURE: _end_of_capture,
}


def decode(record: Record, index: int) -> Part | None:
    """The part a record stands for, `index` being the record's place in the capture.

    None for the header, for kinds this reader does not know (a later docktap may add some),
    and for a connection's record without its connection.
    """
    kind = record["type"]
    make = _ON_CONNECTION.get(kind)
    if make is not None:
        return make(record, index) if record.get("conn") is not None else None
    make = _ANYWHERE.get(kind)
    return None if make is None else make(record, index)


# --- exchanges ------------------------------------------------------------------------------


@dataclass
class Exchange:
    """One request and whatever came back, streams included.

    `parts` holds every part in recorded order: the heads (1xx ones too), body chunks and ends,
    the hijack, stream chunks and frames, errors, and the connection's half-closes and close
    while the exchange was in flight. The other fields sum them up.
    """

    request: RequestHead
    number: int = 0  # the exchange number: its request is the capture's `number`th (see below)
    parts: list[Part] = field(default_factory=list)
    request_body: bytearray = field(default_factory=bytearray)  # inline part only
    request_body_size: int = 0
    request_complete: bool | None = None
    request_sha256: str | None = None
    request_ended_mono: float | None = None
    response: ResponseHead | None = None  # the answer, not an informational head before it
    informational: list[int] = field(default_factory=list)  # statuses of those heads
    response_body: bytearray = field(default_factory=bytearray)
    response_body_size: int = 0
    response_complete: bool | None = None
    response_sha256: str | None = None
    ended_mono: float | None = None
    hijacked: str | None = None
    stream: dict[str, bytearray] = field(default_factory=dict)  # raw hijacked bytes per sender
    frames: list[tuple[str, bytes]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)  # the guard's, when it ran

    def __post_init__(self) -> None:
        if not self.parts:
            self.parts.append(self.request)

    @property
    def conn(self) -> int:
        return self.request.conn

    @property
    def seq(self) -> int:
        return self.request.seq

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def target(self) -> str:
        return self.request.target

    @property
    def identity(self) -> Identity:
        return self.request.identity

    @property
    def operation(self) -> str | None:
        return self.request.operation

    @property
    def api_version(self) -> str | None:
        return self.request.api_version

    @property
    def request_headers(self) -> list[tuple[str, str]]:
        return self.request.headers

    @property
    def started(self) -> float:
        """Wall clock, epoch seconds."""
        return self.request.t

    @property
    def started_mono(self) -> float:
        """Seconds since the capture started."""
        return self.request.mono

    @property
    def status(self) -> int | None:
        return None if self.response is None else self.response.status

    @property
    def reason(self) -> str | None:
        return None if self.response is None else self.response.reason

    @property
    def response_headers(self) -> list[tuple[str, str]]:
        return [] if self.response is None else self.response.headers

    @property
    def response_started_mono(self) -> float | None:
        return None if self.response is None else self.response.mono

    @property
    def duration_s(self) -> float | None:
        if self.ended_mono is None:
            return None
        return round(self.ended_mono - self.started_mono, 6)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def bytes_sent(self) -> int:
        """What the client sent: its request body (all of it, past the cap too) and, on a
        hijacked connection, the stream bytes the capture kept. The one definition every
        view's "sent" column and `show --json`'s `sent` use."""
        return self.request_body_size + len(self.stream.get("client", b""))

    @property
    def bytes_received(self) -> int:
        """What the daemon sent: the response body and the hijacked stream, as `bytes_sent`."""
        return self.response_body_size + len(self.stream.get("daemon", b""))

    def header(self, name: str, response: bool = True) -> str | None:
        lower = name.lower()
        headers = self.response_headers if response else self.request_headers
        return next((v for k, v in headers if k.lower() == lower), None)

    def output(self, stream: str) -> bytes:
        """What the container wrote to `stdout` or `stderr`, or what the client sent on `stdin`.

        Framed output is split by its frames; unframed (TTY) output all counts as stdout.
        """
        if stream == "stdin":
            return bytes(self.stream.get("client", b""))
        if self.frames:
            return b"".join(data for name, data in self.frames if name == stream)
        if stream == "stdout" and self.hijacked:
            return bytes(self.stream.get("daemon", b""))
        return b""

    def summary(self) -> dict[str, Any]:
        """The machine-readable view `docktap show --json` prints."""
        out: dict[str, Any] = {
            "exchange": self.number,
            "conn": self.conn,
            "seq": self.seq,
            "method": self.method,
            "target": self.target,
            "operation": self.operation,
            "api_version": self.api_version,
            "status": self.status,
            "started": self.started,
            "duration_s": self.duration_s,
            "request_body_size": self.request_body_size,
            "response_body_size": self.response_body_size,
            "sent": self.bytes_sent,
            "received": self.bytes_received,
            "hijacked": self.hijacked,
        }
        if self.hijacked or self.frames:
            for name in ("stdout", "stderr", "stdin"):
                out[name] = self.output(name).decode("utf-8", errors="replace")
        if self.errors:
            out["errors"] = list(self.errors)
        if self.decisions:
            out["decisions"] = [
                {"allowed": d.allowed, "enforced": d.enforced, "message": d.message}
                for d in self.decisions
            ]
        return out

    def add(self, part: Part) -> None:
        """Keep a part of this exchange, and sum it up.

        Only the response's end ends the exchange here; its connection's close ends it too,
        which the assembler sees to.
        """
        self.parts.append(part)
        summing = _SUMMING.get(type(part))
        if summing is not None:
            summing(self, part)

    def _ended(self, end: BodyEnd) -> None:
        if end.direction is Direction.CLIENT:
            self.request_body_size = end.size
            self.request_complete = end.complete
            self.request_sha256 = end.sha256
            self.request_ended_mono = end.mono
        else:
            self.response_body_size = end.size
            self.response_complete = end.complete
            self.response_sha256 = end.sha256
            self.ended_mono = end.mono

    def _answered(self, head: ResponseHead) -> None:
        if head.preliminary:
            self.informational.append(head.status)
        else:
            self.response = head

    def _body(self, chunk: BodyChunk) -> None:
        # Until its end record gives the whole size, a body is as long as what the capture
        # holds of it: one still being written, or cut short (docktap killed), has no end.
        if chunk.direction is Direction.CLIENT:
            self.request_body.extend(chunk.data)
            self.request_body_size += chunk.size
        else:
            self.response_body.extend(chunk.data)
            self.response_body_size += chunk.size

    def _framed(self, frame: FrameChunk) -> None:
        self.frames.append((frame.stream, frame.data))

    def _streamed(self, chunk: StreamChunk) -> None:
        sender = chunk.direction.value if chunk.direction is not None else "daemon"
        self.stream.setdefault(sender, bytearray()).extend(chunk.data)

    def _hijacked(self, hijack: Hijack) -> None:
        self.hijacked = hijack.protocol

    def _failed(self, failure: Failure) -> None:
        self.errors.append(failure.message)

    def _decided(self, decision: Decision) -> None:
        self.decisions.append(decision)


# How each kind of part changes an exchange's totals (heads and closes only join `parts`).
_SUMMING: dict[type[Part], Callable[[Exchange, Any], None]] = {
    BodyEnd: Exchange._ended,
    ResponseHead: Exchange._answered,
    BodyChunk: Exchange._body,
    FrameChunk: Exchange._framed,
    StreamChunk: Exchange._streamed,
    Hijack: Exchange._hijacked,
    Failure: Exchange._failed,
    Decision: Exchange._decided,
}


@dataclass
class Connection:
    conn: int
    opened_mono: float | None = None
    closed_mono: float | None = None
    peer: dict[str, int] | None = None
    exchanges: int = 0


@dataclass
class Capture:
    """A loaded capture: its header, raw records, and the exchanges assembled from them."""

    header: Record
    records: list[Record]
    exchanges: list[Exchange]
    connections: dict[int, Connection]
    complete: bool  # the capture was closed cleanly (it has its end-of-capture record)
    # Its writer still held it when it was read (capture/lock.py): not complete, not cut
    # short either. Only whoever opened the file can know; set by them.
    writing: bool = False
    incidents: list[Incident] = field(default_factory=list)  # in recorded order

    @property
    def errors(self) -> list[Record]:
        return [r for r in self.records if r.get("type") == Kind.ERROR]

    @property
    def last_mono(self) -> float:
        """When the last record was written, in seconds since the capture started."""
        return float(self.records[-1].get("mono") or 0.0) if self.records else 0.0

    def __iter__(self) -> Iterator[Exchange]:
        return iter(self.exchanges)

    def __len__(self) -> int:
        return len(self.exchanges)


@dataclass
class Incident:
    """An error record, with the bytes of its connection that went by unparsed after it.

    What docktap could not read is part of what happened on a connection, so the timeline
    shows each incident as a row of its own, at its time and on its connection, beside the
    exchanges. Unparsed bytes with no error before them on their connection (a connection cut
    in the middle of a chunk's framing line) make an incident of their own, with no failure.
    """

    mono: float  # when it happened, in seconds since the capture started
    conn: int | None  # None: an error of no connection
    failure: Failure | None
    unparsed: dict[Direction, int] = field(default_factory=dict)  # bytes per sender

    @property
    def kind(self) -> str:
        """`protocol`, `upstream`, `capture` (as the error record says), or `unparsed`."""
        if self.failure is None:
            return "unparsed"
        return self.failure.kind or "error"

    @property
    def message(self) -> str:
        if self.failure is None:
            return "bytes relayed that docktap could not parse"
        return self.failure.message

    @property
    def started_mono(self) -> float:
        return self.mono

    @property
    def ended_mono(self) -> float:
        return self.mono

    @property
    def bytes_sent(self) -> int:
        """Unparsed bytes from the client, as `Exchange.bytes_sent` counts an exchange's."""
        return self.unparsed.get(Direction.CLIENT, 0)

    @property
    def bytes_received(self) -> int:
        return self.unparsed.get(Direction.DAEMON, 0)

    def summary(self) -> dict[str, Any]:
        """The machine-readable view `docktap show --json` prints, among the exchanges'."""
        return {
            "incident": self.kind,
            "conn": self.conn,
            "seq": None if self.failure is None else self.failure.seq,
            "at_s": self.mono,
            "message": self.message,
            "sent": self.bytes_sent,
            "received": self.bytes_received,
        }


class Assembler:
    """Assembles exchanges from records fed one at a time, as they are written.

    `feed` returns the exchanges a record completed: a response body ended, or the connection
    closed (which ends a hijacked stream, or an exchange that never got its answer). A live
    view prints those as they come; it may also `decode` each record itself, look at the part,
    and `add` it. With `keep=False` completed exchanges and closed connections are forgotten,
    so a long-running reader holds only what is still in flight; parts arriving for an
    exchange after it completed are then ignored. `settled`, if given, is handed each incident
    once nothing more can be added to it: at once for one of no connection, else when its
    connection closes or a later incident on it takes the unparsed bytes that follow; those
    still open at the end are `open_incidents()`.
    """

    def __init__(
        self, keep: bool = True, settled: Callable[[Incident], None] | None = None
    ) -> None:
        self.keep = keep
        self.settled = settled
        self.exchanges: dict[tuple[int, int], Exchange] = {}
        self.connections: dict[int, Connection] = {}
        self.fed = 0  # records decoded so far: the index of the next one
        self.requests = 0  # request heads seen so far: the number of the last exchange
        self.incidents: list[Incident] = []  # kept only with `keep`
        self._troubled: dict[int, Incident] = {}  # per connection, its latest incident
        self._pending: dict[int, dict[int, Exchange]] = {}  # per connection, not ended yet
        # Decisions read before their request: older captures may hold the guard's decision
        # on a pipelined request ahead of the request's own record (the recorder now keeps it
        # for after).
        self._early: dict[tuple[int, int], list[Decision]] = {}

    def feed(self, record: Record) -> list[Exchange]:
        index = self.fed
        self.fed = index + 1
        part = decode(record, index)
        return [] if part is None else self.add(part)

    def decode(self, record: Record) -> Part | None:
        """The part of the next record (see `decode`); every record counts, known or not."""
        index = self.fed
        self.fed = index + 1
        return decode(record, index)

    def add(self, part: Part) -> list[Exchange]:
        """Hand a part to its exchange or connection; the exchanges it completed."""
        kind = type(part)
        if kind is BodyEnd:  # the commonest part, and the one that completes exchanges
            return self._end(part)  # type: ignore[arg-type]
        if kind is RequestHead:
            self._start(part)  # type: ignore[arg-type]
            return []
        if isinstance(part, ExchangePart):
            ex = self.exchanges.get((part.conn, part.seq))
            if ex is not None:
                ex.add(part)
            elif isinstance(part, Decision) and self._ahead(part):
                self._early.setdefault((part.conn, part.seq), []).append(part)
            return []
        if kind is Close:
            return self._close(part)  # type: ignore[arg-type]
        if isinstance(part, Opened):
            connection = self._connection(part.conn)
            connection.opened_mono = part.mono
            connection.peer = part.peer
        elif isinstance(part, HalfClose):
            for ex in self._pending.get(part.conn, {}).values():
                ex.add(part)
        elif isinstance(part, Failure):
            self._incident(Incident(part.mono, part.conn, part))
            if part.conn is not None:
                ex = self.exchanges.get((part.conn, part.seq))  # type: ignore[arg-type]
                if ex is not None:
                    ex.add(part)
        elif isinstance(part, UnparsedChunk):
            incident = self._troubled.get(part.conn)
            if incident is None:
                incident = self._incident(Incident(part.mono, part.conn, None))
            sender = part.direction or Direction.CLIENT
            incident.unparsed[sender] = incident.unparsed.get(sender, 0) + part.size
        return []

    def _incident(self, incident: Incident) -> Incident:
        if self.keep:
            self.incidents.append(incident)
        before = None
        if incident.conn is not None:
            before = self._troubled.get(incident.conn)
            self._troubled[incident.conn] = incident
        if self.settled is not None:
            if before is not None:
                self.settled(before)
            if incident.conn is None:
                self.settled(incident)
        return incident

    def _ahead(self, part: ExchangePart) -> bool:
        """Whether the part names an exchange its connection has not started yet."""
        connection = self.connections.get(part.conn)
        return isinstance(part.seq, int) and part.seq > (connection.exchanges if connection else 0)

    def _connection(self, conn: int) -> Connection:
        connection = self.connections.get(conn)
        if connection is None:
            connection = self.connections[conn] = Connection(conn)
        return connection

    def _start(self, head: RequestHead) -> None:
        self._connection(head.conn).exchanges += 1
        self.requests += 1
        ex = Exchange(head, self.requests)
        self.exchanges[(head.conn, head.seq)] = ex
        pending = self._pending.get(head.conn)
        if pending is None:
            pending = self._pending[head.conn] = {}
        pending[head.seq] = ex
        if self._early:
            for decision in self._early.pop((head.conn, head.seq), ()):
                ex.add(decision)

    def _end(self, end: BodyEnd) -> list[Exchange]:
        ex = self.exchanges.get((end.conn, end.seq))
        if ex is None:
            return []
        ended = ex.ended_mono
        ex.add(end)
        if ended is not None or ex.ended_mono is None:
            return []  # the request's end, or a second end
        pending = self._pending.get(end.conn)
        if pending is not None:
            pending.pop(ex.seq, None)
        if not self.keep:
            self.exchanges.pop((end.conn, ex.seq), None)
        return [ex]

    def _close(self, close: Close) -> list[Exchange]:
        conn = close.conn
        if self._early:  # decisions on requests the connection never recorded
            for key in [key for key in self._early if key[0] == conn]:
                del self._early[key]
        self._connection(conn).closed_mono = close.mono
        done: list[Exchange] = []
        for ex in self._pending.pop(conn, {}).values():
            ex.add(close)
            if ex.ended_mono is None:
                ex.ended_mono = close.mono
            done.append(ex)
        if not self.keep:
            for ex in done:
                self.exchanges.pop((ex.conn, ex.seq), None)
            del self.connections[conn]
        troubled = self._troubled.pop(conn, None)
        if troubled is not None and self.settled is not None:
            self.settled(troubled)
        return done

    def open_incidents(self) -> list[Incident]:
        """Incidents not settled yet (their connections still open), in recorded order."""
        return sorted(self._troubled.values(), key=lambda incident: incident.mono)

    def open_exchanges(self) -> list[Exchange]:
        """Exchanges not completed yet (a capture cut short leaves some), in start order."""
        still = [ex for pending in self._pending.values() for ex in pending.values()]
        return sorted(still, key=start_order)

    def ordered(self) -> list[Exchange]:
        """Every exchange kept, in the order requests started."""
        return sorted(self.exchanges.values(), key=start_order)


def start_order(ex: Exchange) -> tuple[float, int]:
    """Exchanges in the order their requests started; at the same moment, by number."""
    return (ex.started_mono, ex.number)


def in_time_order(
    exchanges: Sequence[Exchange], incidents: Iterable[Incident]
) -> list[Exchange | Incident]:
    """Exchanges, in start order, with incidents among them by time, each after an exchange
    that started at the same moment: how `show` lists a capture, as rows or JSON lines."""
    if not all(a.started_mono <= b.started_mono for a, b in itertools.pairwise(exchanges)):
        exchanges = sorted(exchanges, key=start_order)
    moments = sorted(incidents, key=lambda incident: incident.mono)
    if not moments:
        return list(exchanges)
    # Sorting is stable, and linear on items already in order.
    return sorted([*exchanges, *moments], key=_listed_at)


def _listed_at(item: Exchange | Incident) -> tuple[float, bool]:
    return (item.started_mono, isinstance(item, Incident))


# --- capture files ----------------------------------------------------------------------------


def _parse_line(line: bytes, index: int, offset: int) -> Any:
    return orjson.loads(line)


def _parse_lines(
    lines: Iterable[bytes],
    name: str,
    parse: Callable[[bytes, int, int], Any] = _parse_line,
) -> list[Record]:
    """Records one line at a time: the slow path, which can say which line is damaged.

    `parse` reads each line, told the record's place in the list and the line's offset in the
    file.
    """
    records: list[Record] = []
    offset = 0
    for number, line in enumerate(lines, 1):
        at = offset
        offset += len(line)
        if not line.strip():
            continue
        try:
            record = parse(line, len(records), at)
        except orjson.JSONDecodeError as exc:
            if not line.endswith(b"\n"):  # only the last line can end without one
                warn_cut_off(name, stacklevel=4)
                break
            raise _damaged(line, name, number, exc) from exc
        records.append(_checked(record, name, number))
    return records


def parse_record(line: bytes, name: str, number: int) -> Record:
    """Line `number` of the capture `name` as a record; CaptureError saying what is wrong if
    it is not one (a reader that follows a capture as it is written parses each line here)."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise _damaged(line, name, number, exc) from exc
    return _checked(record, name, number)


def _damaged(line: bytes, name: str, number: int, exc: Exception) -> CaptureError:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return CaptureError(f"{name}:{number}: not UTF-8 text")
    return CaptureError(f"{name}:{number}: not a JSON record ({exc})")


def _checked(record: Any, name: str, number: int) -> Record:
    if not isinstance(record, dict) or "type" not in record:
        raise CaptureError(f"{name}:{number}: not a capture record")
    return record


def warn_cut_off(name: str, stacklevel: int = 1) -> None:
    """The capture's last line is cut off: expected of a killed docktap, so only warned of
    (`stacklevel` as the caller's own warnings.warn would take it)."""
    warnings.warn(
        f"{name}: last line is cut off (docktap was stopped while writing); it was skipped",
        CaptureWarning,
        stacklevel=stacklevel + 1,
    )


def _parse(data: bytes, name: str) -> list[Record]:
    """All records of a capture file.

    A whole, healthy capture is parsed in one go as a JSON array (JSON strings never hold a
    raw newline, so newlines can become commas): several times faster than line by line.
    Anything unusual (a cut last line, a damaged record) falls back to the careful path.
    """
    body = data.rstrip(b"\n")
    try:
        records = orjson.loads(b"[" + body.replace(b"\n", b",") + b"]")
    except orjson.JSONDecodeError:
        records = None
    if records is not None and all(isinstance(r, dict) and "type" in r for r in records):
        return records  # type: ignore[no-any-return]
    return _parse_lines(_split_lines(data), name)


def _split_lines(data: bytes) -> list[bytes]:
    """Lines ended by `\\n` only, each keeping its end.

    Not splitlines: it also breaks at other line separators, which JSON leaves unescaped
    inside strings, so a body containing one would look like a damaged record.
    """
    lines = [line + b"\n" for line in data.split(b"\n")]
    lines[-1] = lines[-1][:-1]
    if not lines[-1]:
        lines.pop()
    return lines


def loads(data: bytes | str, name: str = "<capture>") -> Capture:
    """A capture from the contents of a capture file."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    # A capture is a great many small objects that never form cycles: collecting while
    # building them only costs time (half of it, on a large capture).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _build(_parse(data, name), name)
    finally:
        if collecting:
            gc.enable()


def check_header(header: Record, name: str) -> None:
    """CaptureError unless `header`, the first record, opens a capture this docktap reads."""
    if header.get("type") != Kind.CAPTURE or header.get("format") != FORMAT:
        raise CaptureError(f"{name}: no capture header on the first line")
    if header.get("version") not in READABLE:
        raise CaptureError(
            f"{name}: capture format version {header.get('version')} "
            f"(this docktap reads versions {', '.join(map(str, READABLE))})"
        )


def _build(records: list[Record], name: str, left: dict[int, Left] | None = None) -> Capture:
    if not records:
        raise CaptureError(f"{name}: empty, not a docktap capture")
    header = records[0]
    check_header(header, name)
    assembler = Assembler()
    if left:  # the parts of payloads left in the file say where
        for index, record in enumerate(records):
            part = assembler.decode(record)
            if isinstance(part, _Payload):
                part.left = left.get(index)
            if part is not None:
                assembler.add(part)
    else:
        feed = assembler.feed
        for record in records:
            feed(record)
    complete = records[-1].get("type") == Kind.END_OF_CAPTURE
    exchanges, connections = assembler.ordered(), assembler.connections
    return Capture(header, records, exchanges, connections, complete, incidents=assembler.incidents)


_READ_SIZE = 1 << 20
#: The payload kinds a loader may leave in the file.
_LEAVABLE = frozenset({Kind.BODY, Kind.STREAM, Kind.FRAME})


# The two functions here that touch a file.
def load(path: str | PurePath, leave_over: int | None = None) -> Capture:
    """Read a capture file and assemble its exchanges.

    With `leave_over`, the payloads of more than that many bytes that the daemon sent are left
    in the file (their parts say where, and `read_left` reads them), and the file is read a
    line at a time: what the capture costs in memory does not grow with its answers' bodies.
    What clients sent is kept to be compared with what clients send, up to HELD_BODY_LIMIT
    bytes of each request's body: past that a body is compared by its digest (as the replay
    reads a request's), so the rest of it is left in the file too.
    """
    name = str(path)
    if leave_over is None:
        with open(path, "rb") as handle:
            data = handle.read()
        return loads(data, name)
    left: dict[int, Left] = {}
    sent: dict[tuple[Any, Any], int] = {}  # bytes of each request's body so far

    def leaves(record: Any) -> bool:
        if not isinstance(record, dict) or record.get("type") not in _LEAVABLE:
            return False
        if record.get("dir") == Direction.DAEMON.value:
            return bool(record.get("size", 0) > leave_over)
        if record.get("type") != Kind.BODY or record.get("dir") != Direction.CLIENT.value:
            return False
        key = (record.get("conn"), record.get("seq"))
        sent[key] = sent.get(key, 0) + record.get("size", 0)
        return sent[key] > HELD_BODY_LIMIT

    def parse(line: bytes, index: int, offset: int) -> Any:
        # A line no longer than the limit holds no payload over it: most lines are read so.
        light = _without_payload(line) if len(line) > leave_over else None
        record = orjson.loads(line if light is None else light)
        if not leaves(record):
            return record if light is None else orjson.loads(line)
        # (A line not laid out as docktap writes it was read whole: its payload goes now.)
        record.pop("text", None)
        record.pop("b64", None)
        left[index] = Left(name, offset)
        return record

    collecting = gc.isenabled()
    gc.disable()  # as in `loads`
    try:
        # Large reads: the lines of a large body are long, and read with few copies so.
        with open(path, "rb", buffering=_READ_SIZE) as lines:
            records = _parse_lines(lines, name, parse)
        return _build(records, name, left)
    finally:
        if collecting:
            gc.enable()


#: How far into a payload record its payload's key is, at most: past the type, connection,
#: exchange, direction, stream and size.
_HEAD_ROOM = 200


def _without_payload(line: bytes) -> bytes | None:
    """A payload record's line with its `text` or `b64` cut out, unread; None when the line is
    not laid out as the encoder writes one: the short fields, the payload, then the stamp.

    Inside a JSON string every quote is escaped, so neither `,"b64":"` nor `","t":` can be
    part of one: found where they are, they are the payload's key and the end of its string.
    """
    for key in (b',"b64":"', b',"text":"'):
        start = line.find(key, 0, _HEAD_ROOM)
        if start >= 0:
            end = line.rfind(b'","t":')
            return line[:start] + line[end + 1 :] if end > start else None
    return None


def read_left(left: Left, handle: BinaryIO) -> bytes:
    """The bytes of a payload `load` left in the file `handle` has open (`left.path`)."""
    handle.seek(left.offset)
    line = handle.readline()
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        record = None
    if not isinstance(record, dict) or record.get("type") not in _LEAVABLE:
        raise CaptureError(f"{left.path} changed since it was loaded: no payload where one was")
    return decode_payload(record.get("text"), record.get("b64"))
