"""Capture format v1: how observer events become JSON records, one per line.

A capture is a log of events rather than a list of finished exchanges, so that an endless
stream (events, logs -f) is on disk while it runs and a killed docktap leaves a readable file.
This module is pure: it turns events into dicts and keeps the little state that needs (the
inline body budget, running sha256 digests, bodies held back for redaction). It never touches
a file; the writer does. docs/capture-format.md describes the records for people.
"""

from __future__ import annotations

from typing import Any, Final, cast

import orjson

from docktap import routes
from docktap.capture.limits import DEFAULT_MAX_BODY as DEFAULT_MAX_BODY
from docktap.events import (
    BodyData,
    Closed,
    Direction,
    Event,
    Frame,
    HalfClosed,
    HeadCut,
    Hijacked,
    MessageEnd,
    ProtocolError,
    RequestHead,
    ResponseHead,
    StreamData,
    Unparsed,
)
from docktap.redact import Redactor

FORMAT = "docktap-capture"
VERSION = 2
#: The versions the reader takes: 2 added `decision` records, and nothing else changed.
READABLE = (1, 2)
# Bodies that may carry secrets are held back whole, masked, then written (see redact.py);
# past this size only their size and sha256 are kept.
HELD_BODY_LIMIT = 1 << 20

Record = dict[str, Any]


class Kind:
    """The `type` of each record.

    Only the encoder here and the reader name record kinds: everything else reads a capture
    through the reader's model (`capture.reader.Exchange` and its parts).
    """

    CAPTURE: Final = "capture"
    OPEN: Final = "open"
    REQUEST: Final = "request"
    RESPONSE: Final = "response"
    BODY: Final = "body"
    END: Final = "end"
    HIJACK: Final = "hijack"
    STREAM: Final = "stream"
    FRAME: Final = "frame"
    HALFCLOSE: Final = "halfclose"
    CLOSE: Final = "close"
    ERROR: Final = "error"
    UNPARSED: Final = "unparsed"
    DECISION: Final = "decision"
    END_OF_CAPTURE: Final = "end-of-capture"


def encode_bytes(data: bytes) -> Record:
    """`text` when the bytes are UTF-8, else `b64`; the reader accepts either."""
    try:
        return {"text": data.decode("utf-8")}
    except UnicodeDecodeError:
        # Imported here: most recordings hold nothing but text, and the recorder imports this
        # module as it starts.
        import base64

        return {"b64": base64.b64encode(data).decode("ascii")}


def decode_bytes(record: Record) -> bytes:
    return decode_payload(record.get("text"), record.get("b64"))


def decode_payload(text: str | None, b64: str | None) -> bytes:
    """The bytes of a record's `text` or `b64` (None when the record has no such field)."""
    if text is not None:
        return str(text).encode("utf-8")
    if b64 is not None:
        import base64  # see encode_bytes

        return base64.b64decode(b64)
    return b""


def dumps(record: Record) -> str:
    return orjson.dumps(record).decode("utf-8")


def line(record: Record) -> bytes:
    """A record as its line of the capture, UTF-8 and newline included: `dumps` + LF."""
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


# The sha256 of no bytes. hashlib is imported where a body is first hashed: a recording that
# sees none (and masks no secret) does without its 3 ms of CPU.
_EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
# Enum members and their values are read through descriptors, each a Python call: the two
# directions and their values are looked up once.
_CLIENT_SIDE = Direction.CLIENT
_CLIENT: Final = Direction.CLIENT.value
_DAEMON: Final = Direction.DAEMON.value


def _value(direction: Direction) -> str:
    """`direction.value`, for less."""
    return _CLIENT if direction is _CLIENT_SIDE else _DAEMON


class _Budget:
    """How much of one body or stream has been seen, and how much of it went inline."""

    __slots__ = ("digest", "held", "inline", "overflow", "sha256", "total")

    def __init__(self) -> None:
        self.inline = 0
        self.total = 0
        # The sha256 of the bytes seen, begun with the first of them: most messages have no body.
        self.digest: Any = None
        self.sha256: str | None = None  # the digest already made, of a masked body
        self.held: bytearray | None = None  # bodies kept back for redaction
        # A held body grew past the limit: only size and sha256 are kept.
        self.overflow = False

    def hash(self, data: bytes | bytearray) -> None:
        if self.digest is None:
            import hashlib

            self.digest = hashlib.sha256(data)
        else:
            self.digest.update(data)

    def hexdigest(self) -> str:
        if self.sha256 is not None:
            return self.sha256
        return _EMPTY_SHA256 if self.digest is None else str(self.digest.hexdigest())


class RecordEncoder:
    """Turns observer events into capture records.

    `started_wall` and `started_mono` anchor the monotonic timestamps the relay feeds in to wall
    clock time, so every record carries both without this module reading a clock.
    `max_body` is the number of bytes of each body or stream kept inline (0 keeps everything);
    past it, records carry only sizes, and the end record the full size and sha256.
    `redactor` masks secrets in heads, targets and the bodies it holds back; None stands for
    the default `Redactor()`. Only `redact=False` records everything as it was sent.
    `held_limit` bounds a held-back body.
    """

    def __init__(
        self,
        started_wall: float,
        started_mono: float,
        max_body: int = DEFAULT_MAX_BODY,
        redactor: Redactor | None = None,
        redact: bool = True,
        held_limit: int = HELD_BODY_LIMIT,
    ):
        self.started_wall = started_wall
        self.started_mono = started_mono
        self.max_body = max_body
        self.redactor = (redactor or Redactor()) if redact else None
        self.held_limit = held_limit
        self._budgets: dict[tuple[int, int, str, str], _Budget] = {}
        self._operations: dict[tuple[int, int], str | None] = {}
        self._stamped = float("nan")  # the last time stamped (NaN equals no time), and its stamps
        self._stamps = (0.0, 0.0)
        self._last_masked: tuple[bytes, str] | None = None  # a masked body and its sha256

    def _stamp(self, record: Record, t: float) -> Record:
        # The records of one read share its time: each time is rounded once.
        if t != self._stamped:
            self._stamped = t
            self._stamps = (
                round(self.started_wall + (t - self.started_mono), 6),
                round(t - self.started_mono, 6),
            )
        record["t"], record["mono"] = self._stamps
        return record

    def header(
        self,
        upstream: str,
        command: list[str] | None,
        docktap_version: str,
        tls: dict[str, Any] | None = None,
        policy: str | None = None,
    ) -> Record:
        """The first record; `tls` (verify, subject, sha256) only for a daemon spoken to in TLS,
        `policy` (its mode, enforce or warn) only when a policy decided the requests."""
        record: Record = {
            "type": Kind.CAPTURE,
            "format": FORMAT,
            "version": VERSION,
            "docktap": docktap_version,
            "started": self.started_wall,
            "upstream": upstream,
        }
        if tls is not None:
            record["tls"] = tls
        record["command"] = self.redactor.command(command) if self.redactor else command
        record["max_body"] = self.max_body
        # What a reader needs to mask requests the way these were masked (replay).
        record["redact"] = self.redactor is not None
        record["redact_env"] = list(self.redactor.extra_names) if self.redactor else []
        if policy is not None:
            # What the daemon got of the client's bytes: with an enforced policy, only what
            # the guard allowed (the audit's unread-traffic rule reads it).
            record["policy"] = policy
        return self._stamp(record, self.started_mono)

    def opened(self, conn: int, peer: dict[str, int] | None, t: float) -> Record:
        return self._stamp({"type": Kind.OPEN, "conn": conn, "peer": peer}, t)

    def failure(self, conn: int | None, kind: str, message: str, t: float) -> Record:
        """An error docktap itself ran into: `upstream` unreachable, `capture` writing."""
        return self._stamp({"type": Kind.ERROR, "conn": conn, "kind": kind, "message": message}, t)

    def decision(
        self,
        conn: int,
        seq: int | None,
        allowed: bool,
        enforced: bool,
        operation: str | None,
        reason: str,
        message: str,
        t: float,
    ) -> Record:
        """The guard's decision on request `seq` of connection `conn` (see docktap.policy)."""
        record: Record = {
            "type": Kind.DECISION,
            "conn": conn,
            "seq": seq,
            "allowed": allowed,
            "enforced": enforced,
            "operation": operation,
            "reason": reason,
            "message": message,
        }
        return self._stamp(record, t)

    def footer(self, t: float, records: int) -> Record:
        return self._stamp({"type": Kind.END_OF_CAPTURE, "records": records}, t)

    def encode(self, event: Event) -> list[Record]:
        """The records for one event (none while a body is held back or past the cap)."""
        # The commonest events first, by their exact type: a chain of isinstance costs more.
        kind = type(event)
        if kind is MessageEnd:
            return self._end(cast(MessageEnd, event))
        if kind is BodyData:
            body = cast(BodyData, event)
            return self._data(Kind.BODY, body.conn, body.seq, body.direction, body.data, body.t)
        t = event.t
        conn = event.conn
        if isinstance(event, RequestHead):
            identity = routes.identify(event.method, event.target)
            operation = identity.operation
            self._operations[(conn, event.seq)] = operation
            # A connection's exchanges follow one another: keep-alive must not grow this.
            self._operations.pop((conn, event.seq - 2), None)
            target, headers = event.target, event.headers
            if self.redactor is not None:
                target = self.redactor.target(operation, target)
                headers = self.redactor.headers(headers)
            record: Record = {
                "type": Kind.REQUEST,
                "conn": conn,
                "seq": event.seq,
                "dir": _CLIENT,
                "method": event.method,
                "target": target,
                "http_version": event.http_version,
                "headers": [list(h) for h in headers],
                "operation": operation,
                "api_version": identity.api_version,
            }
            return [self._stamp(record, t)]
        if isinstance(event, ResponseHead):
            headers = event.headers
            if self.redactor is not None:
                headers = self.redactor.headers(headers)
            record = {
                "type": Kind.RESPONSE,
                "conn": conn,
                "seq": event.seq,
                "dir": _DAEMON,
                "status": event.status,
                "reason": event.reason,
                "http_version": event.http_version,
                "headers": [list(h) for h in headers],
                "informational": event.informational,
            }
            return self._informational_cap(event, self._stamp(record, t))
        if isinstance(event, BodyData):
            return self._data(Kind.BODY, conn, event.seq, event.direction, event.data, t)
        if isinstance(event, StreamData):
            return self._data(Kind.STREAM, conn, event.seq, event.direction, event.data, t)
        if isinstance(event, Frame):
            return self._data(
                Kind.FRAME, conn, event.seq, event.direction, event.data, t, stream=event.stream
            )
        if isinstance(event, MessageEnd):
            return self._end(event)
        if isinstance(event, Hijacked):
            record = {
                "type": Kind.HIJACK,
                "conn": conn,
                "seq": event.seq,
                "protocol": event.protocol,
            }
            return [self._stamp(record, t)]
        if isinstance(event, HalfClosed):
            record = {"type": Kind.HALFCLOSE, "conn": conn, "dir": _value(event.direction)}
            return [self._stamp(record, t)]
        if isinstance(event, Closed):
            self._forget(conn)
            return [self._stamp({"type": Kind.CLOSE, "conn": conn}, t)]
        if isinstance(event, ProtocolError):
            record = {
                "type": Kind.ERROR,
                "conn": conn,
                "seq": event.seq,
                "dir": _value(event.direction),
                "kind": "protocol",
                "message": event.message,
            }
            return [self._stamp(record, t)]
        if isinstance(event, HeadCut):
            # docktap's own limit, not the peer's fault: a `capture` error, as for --max-body.
            record = {
                "type": Kind.ERROR,
                "conn": conn,
                "seq": event.seq,
                "dir": _value(event.direction),
                "kind": "capture",
                "message": f"head cut after {event.size} bytes: all connections together held "
                f"more than {event.budget} bytes of unfinished heads; the rest of the "
                "connection is recorded unparsed",
            }
            return [self._stamp(record, t)]
        if isinstance(event, Unparsed):
            if self.redactor is None:
                return self._data(Kind.UNPARSED, conn, None, event.direction, event.data, t)
            # No redaction rule can find a secret in bytes nothing could parse: unless
            # redaction is off, only their size and digest are written.
            import hashlib

            record = {
                "type": Kind.UNPARSED,
                "conn": conn,
                "dir": _value(event.direction),
                "size": len(event.data),
                "sha256": hashlib.sha256(event.data).hexdigest(),
            }
            return [self._stamp(record, t)]
        raise TypeError(f"unknown event {event!r}")

    def _informational_cap(self, event: ResponseHead, record: Record) -> list[Record]:
        """The records for a response head: `record`, or what stands for it past the cap.

        The 1xx heads before a final answer count against `max_body`, by the room their records
        take in the capture: a peer sending `100 Continue` forever must not grow it forever.
        Past the cap they are left out, and one error record says so. A 101 is always kept:
        the hijack that follows is read from it.
        """
        key = (event.conn, event.seq, _DAEMON, "informational")
        if not event.informational:
            self._budgets.pop(key, None)
            return [record]
        if not self.max_body or event.status == 101:
            return [record]
        budget = self._budget("informational", event.conn, event.seq, Direction.DAEMON)
        size = len(dumps(record)) + 1
        budget.total += size
        if budget.inline + size <= self.max_body:
            budget.inline += size
            return [record]
        if budget.overflow:
            return []
        budget.overflow = True
        note: Record = {
            "type": "error",
            "conn": event.conn,
            "seq": event.seq,
            "dir": _DAEMON,
            "kind": "capture",
            "message": f"informational responses past --max-body ({self.max_body} bytes of "
            "their records) are not recorded",
        }
        return [self._stamp(note, event.t)]

    def _forget(self, conn: int) -> None:
        for key in [k for k in self._budgets if k[0] == conn]:
            del self._budgets[key]
        for op_key in [k for k in self._operations if k[0] == conn]:
            del self._operations[op_key]

    def _budget(self, kind: str, conn: int, seq: int | None, direction: Direction) -> _Budget:
        seq = seq or 0
        side = _value(direction)
        key = (conn, seq, side, kind)
        budget = self._budgets.get(key)
        if budget is None:
            budget = self._budgets[key] = _Budget()
            if (
                kind == Kind.BODY
                and self.redactor is not None
                and self.redactor.holds(self._operations.get((conn, seq)), side)
            ):
                budget.held = bytearray()
        return budget

    def _data(
        self,
        kind: str,
        conn: int,
        seq: int | None,
        direction: Direction,
        data: bytes,
        t: float,
        stream: Any = None,
    ) -> list[Record]:
        budget = self._budget(kind, conn, seq, direction)
        budget.total += len(data)
        if budget.held is not None:
            # The original is hashed only once it is too large to mask (its size and digest
            # are all that is kept of it then): a body masked is described as masked.
            if budget.overflow:
                budget.hash(data)
            elif len(budget.held) + len(data) > self.held_limit:
                budget.overflow = True
                budget.hash(budget.held)
                budget.hash(data)
                budget.held.clear()
            else:
                budget.held += data
            return []
        if kind == Kind.BODY:
            budget.hash(data)
        return self._inline(budget, kind, conn, seq, direction, data, t, stream)

    def _inline(
        self,
        budget: _Budget,
        kind: str,
        conn: int,
        seq: int | None,
        direction: Direction,
        data: bytes,
        t: float,
        stream: Any = None,
    ) -> list[Record]:
        """The record of `data`, or of what the body cap leaves of it (none past the cap)."""
        if self.max_body:
            room = self.max_body - budget.inline
            if room <= 0:
                return []
            data = data[:room]
        budget.inline += len(data)
        record: Record = {"type": kind, "conn": conn}
        if seq is not None:
            record["seq"] = seq
        record["dir"] = _value(direction)
        if stream is not None:
            record["stream"] = stream.name.lower().replace("_", "-")
        record["size"] = len(data)
        record.update(encode_bytes(data))
        return [self._stamp(record, t)]

    def _masked_digest(self, body: bytes) -> str:
        """The sha256 of a masked body; the redactor hands back the very object it made for
        a body it saw last (polls repeat their answers), whose digest is made once."""
        last = self._last_masked
        if last is not None and last[0] is body:
            return last[1]
        import hashlib  # see _EMPTY_SHA256

        digest = hashlib.sha256(body).hexdigest()
        self._last_masked = (body, digest)
        return digest

    def _end(self, event: MessageEnd) -> list[Record]:
        side = _value(event.direction)
        key = (event.conn, event.seq, side, Kind.BODY)
        budget = self._budgets.get(key)
        out: list[Record] = []
        if budget is None:  # no body: nothing was held, counted or hashed
            size, inline, digest = 0, 0, _EMPTY_SHA256
        else:
            if budget.held is not None and not budget.overflow:
                # The digest and size describe the masked body: a digest of a short secret
                # would let anyone holding the capture guess it offline.
                held = bytes(budget.held)
                budget.held = None
                budget.total = 0
                if held and self.redactor is not None:
                    operation = self._operations.get((event.conn, event.seq))
                    masked = self.redactor.body(operation, held, side)
                    budget.total = len(masked)
                    budget.sha256 = self._masked_digest(masked)
                    out.extend(
                        self._inline(
                            budget,
                            Kind.BODY,
                            event.conn,
                            event.seq,
                            event.direction,
                            masked,
                            event.t,
                        )
                    )
            del self._budgets[key]
            size, inline, digest = budget.total, budget.inline, budget.hexdigest()
        record: Record = {
            "type": Kind.END,
            "conn": event.conn,
            "seq": event.seq,
            "dir": side,
            "complete": event.complete,
            "size": size,
            "inline": inline,
            "sha256": digest,
        }
        out.append(self._stamp(record, event.t))
        return out
