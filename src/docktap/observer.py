"""Reconstructs HTTP/1.x exchanges from the bytes a relay saw, without doing any I/O.

Each direction of a connection is read in turn: h11 parses every request and response head, and
the framing those heads call for (bodyframing) cuts the bodies out of the bytes that follow, as
Go's net/http, dockerd's server, reads them. Requests are read one exchange at a time, the way
dockerd serves them: bytes a client pipelines wait until the exchange before them is over.

Docker bends HTTP in ways h11 cannot know about: attach and exec hijack the connection after a
101 or after a 200 with a Docker stream content type and no framing, and their output may be
split into multiplexed frames. Whether it is framed is learned from the Content-Type, from the
container's Tty setting seen earlier in the same capture, or from the shape of the first bytes.

The observer must never raise on bad bytes: anything it cannot parse becomes a ProtocolError
event, and the rest of that connection is reported as Unparsed data. Only parse errors are
caught: any other exception is a bug in the observer, and propagates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, NamedTuple

import h11
import orjson

from docktap import routes
from docktap.bodyframing import (
    BodyReader,
    CloseDelimitedBody,
    Framing,
    FramingError,
    keeps_alive,
    request_framing,
    request_length,
    response_framing,
    response_length,
)
from docktap.events import (
    BodyData,
    Closed,
    Direction,
    Event,
    Frame,
    HalfClosed,
    HeadCut,
    Headers,
    Hijacked,
    MessageEnd,
    ProtocolError,
    RequestHead,
    ResponseHead,
    StreamData,
    Unparsed,
)
from docktap.frames import FrameDecoder, FrameError, looks_multiplexed

# The two directions, looked up once: an Enum member read from its class goes through a
# descriptor, and the observer reads them several times per message.
_CLIENT = Direction.CLIENT
_DAEMON = Direction.DAEMON

# Registry config headers on /build can exceed h11's 16 KiB default.
MAX_HEAD_SIZE = 4 << 20
# What all connections together may hold of heads still unfinished (HeadBudget).
HEAD_BUDGET = 64 << 20
# JSON bodies the observer reads to learn a container's Tty setting are small; stop collecting
# past this so a huge body cannot grow memory.
_LEARN_BODY_CAP = 256 << 10

_HEX = re.compile(r"[0-9a-f]+")
_FULL_ID = re.compile(r"[0-9a-f]{64}")

_MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
_RAW_STREAM = "application/vnd.docker.raw-stream"
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})
# Operations whose response body (not a hijack) may carry multiplexed frames.
_FRAMED_BODIES = frozenset({"ContainerLogs", "ServiceLogs", "TaskLogs"})
# Operations whose JSON bodies tell whether a container or exec has a TTY.
_LEARN_OPS = frozenset(
    {"ContainerCreate", "ContainerInspect", "ContainerExec", "ExecStart", "ExecInspect"}
)


class TtyBook:
    """What the capture has revealed so far about which containers and execs have a TTY.

    On API < 1.42 a non-TTY stream is labelled raw-stream although it is framed, so the
    observer needs this knowledge across connections: the create call and the attach call
    travel on different connections.
    """

    def __init__(self) -> None:
        self._tty: dict[str, bool] = {}

    def learn(self, key: str, tty: bool) -> None:
        self._tty[key.lstrip("/")] = tty

    def lookup(self, ref: str) -> bool | None:
        """By full id or name; else as a unique prefix of a full id (names match exactly)."""
        if ref in self._tty:
            return self._tty[ref]
        if len(ref) >= 4 and _HEX.fullmatch(ref):
            found = {
                tty
                for key, tty in self._tty.items()
                if _FULL_ID.fullmatch(key) and key.startswith(ref)
            }
            if len(found) == 1:
                return found.pop()
        return None


def _version_tuple(version: str | None) -> tuple[int, ...] | None:
    if version is None:
        return None
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return None


def _header(fields: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in fields:
        if key == name:
            return value.decode("latin-1")
    return None


def _json(body: bytes | bytearray) -> Any:
    # orjson reads what it takes as json does, in a fraction of the time; what it refuses
    # (NaN, integers past 64 bits, lone surrogates, UTF-16) json may still read. Nothing is
    # not JSON to either (the request of an inspect has no body).
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except ValueError:
        return None


class _Demux:
    """Per-exchange state for splitting daemon output into frames."""

    __slots__ = ("decoder", "multiplexed", "prefix")

    def __init__(self, multiplexed: bool | None) -> None:
        self.multiplexed = multiplexed
        self.prefix = b""
        self.decoder = FrameDecoder()

    def feed(self, data: bytes) -> list[tuple[Any, bytes]]:
        if self.multiplexed is None:
            self.prefix += data
            self.multiplexed = looks_multiplexed(self.prefix)
            if self.multiplexed is None:
                return []
            data, self.prefix = self.prefix, b""
        if not self.multiplexed:
            return []
        try:
            return list(self.decoder.feed(data))
        except FrameError as exc:
            # The guess was wrong or the stream is damaged: the raw bytes are still reported,
            # and so are the frames decoded before the bad header.
            self.multiplexed = False
            return list(exc.pieces)


class _Exchange:
    """What one exchange of a connection is in the middle of."""

    __slots__ = (
        "api_version",
        "content_type",
        "demux",
        "keep_alive",
        "method",
        "operation",
        "request_body",
        "request_done",
        "response_body",
        "response_done",
        "response_started",
        "seq",
        "subject",
        "target",
        "tty",
    )

    def __init__(
        self,
        seq: int,
        method: str,
        target: str,
        operation: str | None,
        api_version: str | None,
        subject: routes.Subject | None,
        keep_alive: bool,
    ) -> None:
        self.seq = seq
        self.method = method
        self.target = target
        self.operation = operation
        self.api_version = api_version
        self.subject = subject  # the container or exec the path names
        # The request lets the connection carry another exchange after this one.
        self.keep_alive = keep_alive
        self.request_done = False
        self.response_started = False
        self.response_done = False
        self.content_type: str | None = None
        self.demux: _Demux | None = None
        self.request_body: bytearray | None = None
        self.response_body: bytearray | None = None
        self.tty: bool | None = None


class _Side:
    """What one direction of a connection is in the middle of."""

    __slots__ = ("body", "done", "eof", "pending", "scan")

    def __init__(self) -> None:
        # Received and not consumed: an unfinished head, or bytes waiting for their exchange.
        self.pending = bytearray()
        self.scan = 0  # the blank line that ends a head is searched for from here on
        self.body: BodyReader | None = None  # the body being read, if any
        self.eof = False
        self.done = False  # nothing more will be parsed from this side


# The line h11 takes for the end of a head (h11's own rule: LF, an optional CR, LF).
_BLANK_LINE = re.compile(rb"\n\r?\n")

# What h11 makes of a whole response head.
_RESPONSE_HEADS = (h11.InformationalResponse, h11.Response)

# h11 reads a response only once it has sent a request. This is the one it is shown: HEAD, so
# that it takes no body to follow the response head (the observer reads bodies itself), and
# offering an upgrade, so that it takes a 101 for what it is. A parser reads one head and is
# dropped: a new one costs less than taking it through the end of the message and a new cycle.
# The heads after a 1xx are read by a fresh parser too: h11 reads them in the same state
# (the server still owing the response), by the same rules.
_STAND_IN_REQUEST = h11.Request(
    method=b"HEAD",
    target=b"/",
    headers=[(b"host", b"docktap"), (b"connection", b"upgrade"), (b"upgrade", b"docktap")],
)


# -- heads as Go's net/http reads them -------------------------------------------------------
#
# dockerd's server (Go 1.19 net/http: request.go readRequest, server.go readRequest, textproto
# ReadMIMEHeader, transfer.go) accepts a few request heads that h11 refuses. Each is shown to h11
# in a form it reads with the same meaning, and reported as it was sent; every case was tried
# against dockerd (tests/test_observer.py, "as dockerd reads it"):
#
# - a target with bytes outside ASCII: Go's url.ParseRequestURI refuses only control bytes, so
#   the byte reaches the router. h11 is shown it %-escaped; the event has it raw.
# - a header line with an empty name (`: x`): textproto skips it.
# - Transfer-Encoding on an HTTP/1.0 request, whatever the coding: Go drops it unread (its
#   issue 12785), and the body is framed by Content-Length alone (bodyframing).
# - an empty Content-Length: Go takes it for none.
# - up to 4 CR or LF bytes before the request that follows a POST ("RFC 7230 section 3
#   tolerance for old buggy clients"): discarded, as Go discards them.
#
# Fields kept from h11 are reported in the RequestHead in their place all the same.
# Where h11 is stricter than Go otherwise, or Go stricter than h11 (Go refuses control bytes
# in values, a Host with a space, `Content-Length: 2, 2`; h11 lets them pass and dockerd's
# answer is its 400), the bytes are reported as parsed or as a ProtocolError: nothing is lost.

_NON_ASCII = re.compile(rb"[\x80-\xff]")
_AFTER_POST_SKIP = 4  # server.go peeks this many bytes for CR/LF


def _escaped(match: re.Match[bytes]) -> bytes:
    return b"%%%02X" % match.group()[0]


class _GoHead:
    """A request head made readable to h11, and what was changed to make it so."""

    __slots__ = ("head", "hidden", "target")

    def __init__(self, head: bytes) -> None:
        self.head = head
        self.target: bytes | None = None  # the target as sent, when h11 was shown it escaped
        # Fields h11 is not shown, with their place among the head's fields.
        self.hidden: list[tuple[int, tuple[bytes, bytes]]] = []


# Cheap signs that a head needs any of that; most heads show none and go to h11 as they are.
_BLANK_LENGTH = re.compile(rb"\ncontent-length:[ \t]*\r?\n", re.IGNORECASE)
_TRANSFER_ENCODING = re.compile(rb"\ntransfer-encoding:", re.IGNORECASE)


def _for_h11(head: bytes) -> _GoHead:
    out = _GoHead(head)
    line_end = head.find(b"\n")
    if not (
        _NON_ASCII.search(head, 0, line_end)
        or b"\n:" in head
        or _BLANK_LENGTH.search(head)
        or (
            head[:line_end].rstrip(b"\r").endswith(b" HTTP/1.0") and _TRANSFER_ENCODING.search(head)
        )
    ):
        return out
    lines = head.split(b"\n")
    request_line = lines[0].rstrip(b"\r")
    parts = request_line.split(b" ", 2)
    version = parts[2] if len(parts) == 3 else b""
    if len(parts) == 3 and _NON_ASCII.search(parts[1]):
        out.target = parts[1]
        escaped = _NON_ASCII.sub(_escaped, parts[1])
        lines[0] = b" ".join((parts[0], escaped, parts[2])) + lines[0][len(request_line) :]
    fields: list[tuple[bytes, bytes, list[int]]] = []  # name, value, its line numbers
    for number, line in enumerate(lines[1:-2], start=1):
        if line[:1] in (b" ", b"\t") and fields:
            # An obsolete line folding: the line goes on the field's value, as Go joins it.
            name, value, numbers = fields[-1]
            folded = b" ".join(part for part in (value, line.strip(b" \t\r")) if part)
            fields[-1] = (name, folded, [*numbers, number])
            continue
        name, _, value = line.rstrip(b"\r").partition(b":")
        fields.append((name, value.strip(b" \t"), [number]))
    lengths = [value for name, value, _ in fields if name.lower() == b"content-length"]
    blank_lengths = bool(lengths) and not any(lengths)
    drop: set[int] = set()
    for index, (name, value, numbers) in enumerate(fields):
        lower = name.lower()
        if (
            not name
            or (lower == b"transfer-encoding" and version == b"HTTP/1.0")
            or (lower == b"content-length" and blank_lengths)
        ):
            out.hidden.append((index, (name, value)))
            drop.update(numbers)
    if drop or out.target is not None:
        out.head = b"\n".join(line for number, line in enumerate(lines) if number not in drop)
    return out


class HeadError(ValueError):
    """A head h11 refuses; the message says why, without quoting the bytes."""


class ParsedHead(NamedTuple):
    """A request head as dockerd reads it, and all that its bytes alone decide.

    The observer and the gate read every request head through `read_request_head`, and clients
    send the same heads again and again: what is kept here is frozen, so that a head read once
    stands for every copy of its bytes. A named tuple, as the head of a response: as frozen
    dataclasses, the two cost the recorder 1 ms to define as it starts.
    """

    method: str
    target: str  # as sent, bytes outside ASCII included (latin-1)
    http_version: bytes  # b"1.1", b"1.0"
    version: str  # the same, decoded
    headers: Headers  # every field as sent, in order
    fields: tuple[tuple[bytes, bytes], ...]  # as body framing takes them, names lower-cased
    identity: routes.Identity
    framing: Framing
    length: int | None  # the body's length (0: none), None when it is chunked
    keep_alive: bool  # the connection may carry another exchange after this one
    upgrade: bool  # the request offers to switch protocols


class ParsedResponseHead(NamedTuple):
    """What a response head's bytes, and the method of the request it answers, decide."""

    status: int
    reason: str
    version: str
    headers: Headers
    informational: bool  # a 1xx head, 101 included
    content_type: str | None
    hijack: str | None  # the protocol the connection switches to after this head, if it does
    framing: Framing | None  # how its body is framed; None for a 1xx head, or a hijack
    length: int | None  # the body's length (0: none), None when framing is not a length
    closes: bool  # the connection carries nothing after this response


def head_end(data: bytes | bytearray, start: int = 0) -> int | None:
    """Where the head that `data` begins with ends (past its blank line), or None: not yet."""
    match = _BLANK_LINE.search(data, start)
    return None if match is None else match.end()


# Clients repeat their heads byte for byte (pings, polls, the CLI's requests), and dockerd its
# answers' heads (but for the Date, once a second): a small head is read once, and the last
# distinct ones are kept. Bigger heads (registry credentials, build arguments) are read anew.
_CACHED_HEAD = 4096
_CACHED_HEADS = 256


def read_request_head(head: bytes) -> ParsedHead:
    """A whole request head, parsed as the observer parses it (as Go's net/http does);
    HeadError, without the bytes quoted, for one dockerd would not read either."""
    if len(head) <= _CACHED_HEAD:
        return _cached_request_head(head)
    return _request_head(head)


def _request_head(head: bytes) -> ParsedHead:
    go = _for_h11(head)
    parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)
    try:
        parser.receive_data(go.head)
        event = parser.next_event()
    except h11.RemoteProtocolError as exc:
        raise HeadError(_without_bytes(str(exc))) from exc
    if not isinstance(event, h11.Request):
        raise HeadError("not a whole request head")
    raw = event.headers.raw_items()
    fields = tuple(_lowered(raw))
    for index, hidden in go.hidden:
        raw.insert(index, hidden)  # after `fields`: h11 was not shown them
    method = event.method.decode("latin-1")
    target = (go.target if go.target is not None else event.target).decode("latin-1")
    version = event.http_version
    return ParsedHead(
        method,
        target,
        version,
        version.decode("latin-1"),
        _decode_headers(raw),
        fields,
        routes.identify(method, target),
        request_framing(version, fields),
        request_length(version, fields),
        keeps_alive(version, fields),
        any(name == b"upgrade" for name, _ in fields),
    )


_cached_request_head = lru_cache(maxsize=_CACHED_HEADS)(_request_head)


def read_response_head(method: str, head: bytes) -> ParsedResponseHead:
    """A whole response head, read as the answer to a `method` request; HeadError, without
    the bytes quoted, for one h11 refuses."""
    if len(head) <= _CACHED_HEAD:
        return _cached_response_head(method, head)
    return _response_head(method, head)


def _response_head(method: str, head: bytes) -> ParsedResponseHead:
    parser = _response_parser()
    try:
        parser.receive_data(head)
        event = parser.next_event()
    except h11.RemoteProtocolError as exc:
        raise HeadError(_without_bytes(str(exc))) from exc
    if not isinstance(event, _RESPONSE_HEADS):
        raise RuntimeError(f"h11 made {event!r} of a whole response head")
    raw = event.headers.raw_items()
    fields = _lowered(raw)
    status, version = event.status_code, event.http_version
    informational = isinstance(event, h11.InformationalResponse)
    content_type = _header(fields, b"content-type")
    hijack = None
    framing: Framing | None = None
    length = None
    closes = False
    if status == 101:
        hijack = (_header(fields, b"upgrade") or "tcp").lower()
    elif (
        200 <= status < 300
        and content_type in (_RAW_STREAM, _MULTIPLEXED)
        and not any(name in _FRAMING for name, _ in fields)
    ):
        # Docker's hijack without Upgrade: a 200 with no length, then raw bytes.
        hijack = "raw-stream"
    elif not informational:
        framing = response_framing(method.encode("latin-1"), status, version, fields)
        length = response_length(method.encode("latin-1"), status, version, fields)
        closes = framing is CloseDelimitedBody or not keeps_alive(version, fields)
    return ParsedResponseHead(
        status,
        event.reason.decode("latin-1"),
        version.decode("latin-1"),
        _decode_headers(raw),
        informational,
        content_type,
        hijack,
        framing,
        length,
        closes,
    )


_cached_response_head = lru_cache(maxsize=_CACHED_HEADS)(_response_head)


# h11 quotes the line it refuses ("illegal request line: bytearray(b'...')"). A ProtocolError
# message is written to the capture as it is, and bytes that did not parse may hold a secret
# (they are recorded as a digest only): the quote is left out.
_QUOTED_BYTES = re.compile(r":? (?:bytearray\()?b['\"].*", re.DOTALL)


def _without_bytes(message: str) -> str:
    return _QUOTED_BYTES.sub("", message)


def _response_parser() -> h11.Connection:
    parser = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_SIZE)
    parser.send(_STAND_IN_REQUEST)
    parser.send(h11.EndOfMessage())
    return parser


def _lowered(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A parsed head's fields with their names lower-cased, as h11's `Headers` yields them.

    From `raw_items()`, a list: iterating `Headers` itself goes through the generic Sequence
    iterator, an indexing call per field, and the observer reads the fields several times.
    """
    return [(name.lower(), value) for name, value in raw]


def _decode_headers(raw: Iterable[tuple[bytes, bytes]]) -> Headers:
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in raw)


class ConnectionObserver:
    """Parses one relayed connection; feed it bytes per direction, get events back."""

    def __init__(self, conn: int, book: TtyBook | None = None) -> None:
        self.conn = conn
        self._book = book if book is not None else TtyBook()
        # Each side by name too: Direction hashes through a Python-level __hash__, and the
        # sides are looked up several times per message.
        self._client = _Side()
        self._daemon = _Side()
        self._sides = {_CLIENT: self._client, _DAEMON: self._daemon}
        self._mode = "http"  # then "hijacked" or "broken"
        self._seq = 0
        self._ex: _Exchange | None = None
        self._last = False  # the last exchange the connection can carry is over
        self._after_post = False  # the exchange before the next one was a POST
        # EOFs not reported yet because bytes sent before them are still to be parsed
        # (pipelined requests wait for the exchange before them): HalfClosed(d) must come
        # after every event made from d's bytes.
        self._eof_pending: list[Direction] = []
        self._closed = False
        self._out: list[Event] = []
        self._t = 0.0

    # -- public surface -------------------------------------------------------------------

    def feed(self, direction: Direction, data: bytes, t: float) -> list[Event]:
        if not data or self._closed:
            return []
        self._t = t
        if self._mode == "http":
            side = self._client if direction is _CLIENT else self._daemon
            if side.body is not None and not side.pending:
                # The common case of a bulk body: its bytes are cut out of `data` directly.
                end = self._read_body(direction, data)
                if end < len(data) and self._mode == "http":
                    side.pending += memoryview(data)[end:]
            else:
                side.pending += data
            self._pump()
        elif self._mode == "hijacked":
            self._stream(direction, data)
        else:
            self._emit(Unparsed(self.conn, t, direction, data))
        return self._take()

    def feed_eof(self, direction: Direction, t: float) -> list[Event]:
        side = self._side(direction)
        if side.eof or self._closed:
            return []
        self._t = t
        self._eof_pending.append(direction)
        side.eof = True
        if self._mode == "http":
            self._pump()
        self._flush_eofs()
        return self._take()

    def close(self, t: float) -> list[Event]:
        """The connection is gone (both EOFs, or an abrupt close): end what is still open."""
        if self._closed:
            return []
        self._t = t
        ex = self._ex
        if ex is not None and self._mode == "http":
            if not ex.request_done:
                self._cut_short(ex, _CLIENT, complete=False)
            if ex.response_started and not ex.response_done:
                self._cut_short(ex, _DAEMON, complete=False)
        if self._mode == "http":
            # Whole messages never got to (pipelined requests left unanswered, a response to
            # no request) or a cut-off head: keep their bytes rather than drop them.
            for direction, side in self._sides.items():
                if side.pending:
                    left = len(side.pending)
                    self._break(direction, f"connection closed with {left} bytes not parsed")
                    break
        self._flush_eofs(force=True)
        self._closed = True
        self._emit(Closed(self.conn, t))
        return self._take()

    @property
    def requests(self) -> int:
        """How many requests it has read: the seq of the last one."""
        return self._seq

    @property
    def held(self) -> int:
        """Bytes received and not parsed yet: unfinished heads, or requests waiting their turn."""
        return len(self._client.pending) + len(self._daemon.pending)

    def cut(self, t: float, budget: int) -> list[Event]:
        """Let go of the bytes held (HeadBudget ran out): say so, and read no more of the
        connection. Its bytes, those held first, are reported as Unparsed from now on."""
        if self._mode != "http" or not self.held:
            return []
        self._t = t
        direction = max(self._sides, key=lambda d: len(self._sides[d].pending))
        size = len(self._side(direction).pending)
        seq = self._ex.seq if self._ex is not None else None
        self._give_up(HeadCut(self.conn, t, seq, direction, size, budget))
        return self._take()

    # -- plumbing -------------------------------------------------------------------------

    def _side(self, direction: Direction) -> _Side:
        return self._client if direction is _CLIENT else self._daemon

    def _emit(self, event: Event) -> None:
        self._out.append(event)

    def _take(self) -> list[Event]:
        out, self._out = self._out, []
        return out

    def _pump(self) -> None:
        """Parse what each side holds until neither can make progress."""
        progress = True
        while progress and self._mode == "http":
            progress = self._advance(_CLIENT)
            if self._mode == "http":
                progress = self._advance(_DAEMON) or progress

    def _head_due(self, direction: Direction) -> bool:
        ex = self._ex
        if direction is _CLIENT:
            return ex is None and not self._last
        return ex is not None and not ex.response_done

    def _advance(self, direction: Direction) -> bool:
        """One step of parsing on one side; False when it cannot go on for now."""
        side = self._client if direction is _CLIENT else self._daemon
        if not side.pending and side.body is None and not side.eof:
            return False  # the common idle side: nothing to read, no EOF of its own to report
        if side.body is not None:
            if side.pending:
                data = bytes(side.pending)
                side.pending.clear()
                end = self._read_body(direction, data)
                if end < len(data) and self._mode == "http":
                    side.pending += memoryview(data)[end:]
                return True
            if side.eof:
                self._cut_short(self._require_ex(), direction, side.body.eof())
                side.done = True
                return True
        elif side.pending and self._head_due(direction):
            if direction is _CLIENT and self._after_post:
                if len(side.pending) < _AFTER_POST_SKIP and not side.eof:
                    return False
                self._after_post = False
                start = side.pending[:_AFTER_POST_SKIP]
                del side.pending[: len(start) - len(start.lstrip(b"\r\n"))]
                return True
            match = _BLANK_LINE.search(side.pending, max(side.scan - 2, 0))
            if match is not None:
                self._head(direction, match.end())
                return True
            side.scan = len(side.pending)
            if len(side.pending) > MAX_HEAD_SIZE:
                self._break(direction, f"head longer than {MAX_HEAD_SIZE} bytes")
            elif side.eof:
                self._break(direction, "connection closed in the middle of a head")
        elif side.pending and self._last and self._ex is None:
            self._break(direction, "data after the last message the connection could carry")
        elif side.eof and not side.pending:
            side.done = True
        self._flush_eofs(only=direction)
        return False

    def _flush_eofs(self, force: bool = False, only: Direction | None = None) -> None:
        """Report the EOFs whose side has nothing left to parse.

        Called where a side has just run dry, so that where HalfClosed lands among the events
        does not depend on how the bytes were split.
        """
        if not self._eof_pending:
            return
        for direction in list(self._eof_pending):
            if only is not None and direction is not only:
                continue
            side = self._side(direction)
            if force or self._mode != "http" or side.done:
                self._eof_pending.remove(direction)
                self._emit(HalfClosed(self.conn, self._t, direction))

    def _break(self, direction: Direction, message: str) -> None:
        """Give up parsing: report the error and hand on all unparsed bytes as they are."""
        if self._mode == "broken":
            return
        seq = self._ex.seq if self._ex is not None else None
        self._give_up(ProtocolError(self.conn, self._t, seq, direction, message))

    def _give_up(self, why: ProtocolError | HeadCut) -> None:
        leftovers: list[tuple[Direction, bytes]] = []
        if self._mode == "http":
            for side, state in self._sides.items():
                pending = self._unexplained(state)
                if pending:
                    leftovers.append((side, pending))
        self._mode = "broken"
        self._emit(why)
        for side, data in leftovers:
            self._emit(Unparsed(self.conn, self._t, side, data))
        self._flush_eofs()

    @staticmethod
    def _unexplained(side: _Side) -> bytes:
        """Take the bytes a side received and no event explains yet."""
        held = side.body.held if side.body is not None else b""
        side.body = None
        data = held + side.pending
        side.pending.clear()
        side.scan = 0
        return bytes(data)

    # -- heads --------------------------------------------------------------------------

    def _head(self, direction: Direction, end: int) -> None:
        """Parse the head that ends at pending[end] with h11, then act on it."""
        side = self._side(direction)
        head = bytes(side.pending[:end])
        try:
            if direction is _CLIENT:
                request = read_request_head(head)
            else:
                response = read_response_head(self._require_ex().method, head)
        except HeadError as exc:
            self._break(direction, str(exc))
            return
        del side.pending[:end]
        side.scan = 0
        if direction is _CLIENT:
            self._request(request)
        else:
            self._response(response)

    # -- bodies -------------------------------------------------------------------------

    def _read_body(self, direction: Direction, data: bytes) -> int:
        """Hand `data` to the side's body reader; returns where the body ended in it."""
        side = self._side(direction)
        reader = side.body
        assert reader is not None
        try:
            pieces, end = reader.read(data, 0)
        except FramingError as exc:
            for piece in exc.pieces:
                self._body_data(direction, piece)
            side.body = None
            side.pending[:0] = exc.unread
            self._break(direction, str(exc))
            return len(data)
        for piece in pieces:
            self._body_data(direction, piece)
        if reader.done:
            side.body = None
            self._message_done(direction)
        return end

    def _start_body(self, direction: Direction, reader: BodyReader) -> None:
        if reader.done:
            self._message_done(direction)
        else:
            self._side(direction).body = reader

    def _body_data(self, direction: Direction, data: bytes) -> None:
        ex = self._require_ex()
        if direction is _CLIENT:
            if ex.request_body is not None and len(ex.request_body) < _LEARN_BODY_CAP:
                ex.request_body += data
            self._emit(BodyData(self.conn, self._t, ex.seq, direction, data))
        else:
            if ex.response_body is not None and len(ex.response_body) < _LEARN_BODY_CAP:
                ex.response_body += data
            self._emit(BodyData(self.conn, self._t, ex.seq, direction, data))
            self._frames(ex, data)

    def _message_done(self, direction: Direction) -> None:
        ex = self._require_ex()
        self._end(ex, direction)
        if direction is _CLIENT:
            self._learn_from_request(ex)
        else:
            self._learn_from_response(ex)
        if ex.request_done and ex.response_done:
            self._ex = None
            self._last = not ex.keep_alive
            self._after_post = ex.method == "POST"

    def _cut_short(self, ex: _Exchange, direction: Direction, complete: bool) -> None:
        """The connection ended mid-message: `complete` when that ends the message (a body
        read until close, at its EOF). A peer going away otherwise (a killed daemon, an
        interrupted upload) is no protocol error; a framing line cut off is reported, as bytes.
        """
        held = self._unexplained(self._side(direction))
        if held:
            self._emit(Unparsed(self.conn, self._t, direction, held))
        if complete:
            self._message_done(direction)
        else:
            self._end(ex, direction, complete=False)

    def _require_ex(self) -> _Exchange:
        if self._ex is None:
            raise RuntimeError("a message outside an exchange")
        return self._ex

    def _end(self, ex: _Exchange, direction: Direction, complete: bool = True) -> None:
        if direction is _CLIENT:
            ex.request_done = True
        else:
            ex.response_done = True
        self._emit(MessageEnd(self.conn, self._t, ex.seq, direction, complete))

    # -- the client's side ----------------------------------------------------------------

    def _request(self, head: ParsedHead) -> None:
        self._seq += 1
        identity = head.identity
        op = identity.operation
        ex = _Exchange(
            self._seq,
            head.method,
            head.target,
            op,
            identity.api_version,
            identity.subject,
            head.keep_alive,
        )
        if op in _LEARN_OPS:
            ex.request_body = bytearray()
        self._ex = ex
        self._emit(
            RequestHead(
                self.conn, self._t, ex.seq, head.method, head.target, head.version, head.headers
            )
        )
        self._start_body(_CLIENT, head.framing())

    # -- the daemon's side ----------------------------------------------------------------

    def _response(self, head: ParsedResponseHead) -> None:
        ex = self._require_ex()
        ex.response_started = True
        self._emit(
            ResponseHead(
                self.conn,
                self._t,
                ex.seq,
                head.status,
                head.reason,
                head.version,
                head.headers,
                head.informational,
            )
        )
        ex.content_type = head.content_type
        if head.hijack is not None:
            self._hijack(ex, head.hijack)
            return
        if head.framing is None:
            return  # a 1xx: the answer's head follows
        if ex.operation in _FRAMED_BODIES or ex.content_type == _MULTIPLEXED:
            ex.demux = _Demux(self._multiplexed(ex))
        if ex.operation in _LEARN_OPS:
            ex.response_body = bytearray()
        if head.closes:
            ex.keep_alive = False
        self._start_body(_DAEMON, head.framing())

    def _frames(self, ex: _Exchange, data: bytes) -> None:
        if ex.demux is None:
            return
        for stream, payload in ex.demux.feed(data):
            self._emit(Frame(self.conn, self._t, ex.seq, _DAEMON, stream, payload))

    def _multiplexed(self, ex: _Exchange) -> bool | None:
        """True/False when the exchange's daemon output is known to be framed or not."""
        if ex.content_type == _MULTIPLEXED:
            return True
        version = _version_tuple(ex.api_version)
        if ex.content_type == _RAW_STREAM and version is not None and version >= (1, 42):
            return False
        tty = ex.tty
        if tty is None and ex.subject is not None:
            tty = self._book.lookup(ex.subject.ref)
        return None if tty is None else not tty

    def _hijack(self, ex: _Exchange, protocol: str) -> None:
        self._mode = "hijacked"
        self._emit(Hijacked(self.conn, self._t, ex.seq, protocol))
        if protocol in ("tcp", "raw-stream"):
            ex.demux = _Demux(self._multiplexed(ex))
        for direction, side in self._sides.items():
            pending = self._unexplained(side)
            if pending:
                self._stream(direction, pending)
        self._flush_eofs()

    def _stream(self, direction: Direction, data: bytes) -> None:
        ex = self._require_ex()
        self._emit(StreamData(self.conn, self._t, ex.seq, direction, data))
        if direction is _DAEMON:
            self._frames(ex, data)

    # -- learning which containers have a TTY ---------------------------------------------

    def _learn_from_request(self, ex: _Exchange) -> None:
        if ex.request_body is None:
            return
        body = _json(ex.request_body)
        ex.request_body = None
        if isinstance(body, dict) and isinstance(body.get("Tty"), bool):
            ex.tty = body["Tty"]

    def _learn_from_response(self, ex: _Exchange) -> None:
        if ex.response_body is None or ex.operation is None:
            return
        body = bytes(ex.response_body)
        ex.response_body = None
        names, tty = (
            _told(ex.operation, body) if len(body) <= _KEPT_BODY else _tells(ex.operation, body)
        )
        if ex.operation in ("ContainerCreate", "ContainerExec"):
            if names and ex.tty is not None:
                self._book.learn(names[0], ex.tty)
                name = _query_param(ex.target, "name")
                if name:
                    self._book.learn(name, ex.tty)
        elif tty is not None:
            for key in names:
                self._book.learn(key, tty)


def _tells(operation: str, body: bytes) -> tuple[tuple[str, ...], bool | None]:
    """What the response body of an operation in _LEARN_OPS says: the ids and names of the
    containers or execs it is about, and whether they have a TTY (None: it does not say)."""
    value = _json(body)
    if not isinstance(value, dict):
        return (), None
    if operation in ("ContainerCreate", "ContainerExec"):
        ident = value.get("Id")
        return ((ident,) if isinstance(ident, str) else ()), None
    if operation == "ContainerInspect":
        config = value.get("Config")
        if isinstance(config, dict) and isinstance(config.get("Tty"), bool):
            keys = tuple(
                key for key in (value.get("Id"), value.get("Name")) if isinstance(key, str)
            )
            return keys, config["Tty"]
    elif operation == "ExecInspect":
        process = value.get("ProcessConfig")
        ident = value.get("ID")
        if isinstance(process, dict) and isinstance(ident, str):
            tty = process.get("tty")
            if isinstance(tty, bool):
                return (ident,), tty
    return (), None


# Clients poll (the same container inspected until it is up): the last few answers read are
# kept, by their bytes.
_KEPT_BODY = 64 << 10
_told = lru_cache(maxsize=16)(_tells)


def _query_param(target: str, name: str) -> str | None:
    from urllib.parse import parse_qs, urlsplit  # here: for a create's name only

    values = parse_qs(urlsplit(target).query).get(name)
    return values[0] if values else None


class HeadBudget:
    """What all connections together hold of heads not yet whole, against one limit.

    A connection can hold up to MAX_HEAD_SIZE of a head that never ends, and a few hundred
    connections doing that at once would grow the recorder by gigabytes. Past the limit, the
    connection that has been holding bytes the longest is the one to let go: its bytes already
    reached the daemon (the relay does not wait for the observer), only their reading is lost.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        # The connections holding bytes, in the order they started to (dicts keep it).
        self._held: dict[int, int] = {}

    def hold(self, conn: int, size: int) -> None:
        """`conn` now holds `size` bytes (0: none)."""
        before = self._held.get(conn, 0)
        if size:
            self._held[conn] = size
        elif before:
            del self._held[conn]
        self.total += size - before

    def oldest_past_limit(self) -> int | None:
        """The connection to cut while the total is past the limit, else None."""
        if self.total <= self.limit:
            return None
        return next(iter(self._held))


class Observer:
    """All connections of one relay session, sharing what they reveal about TTYs and one
    HeadBudget of `head_budget` bytes."""

    def __init__(self, head_budget: int = HEAD_BUDGET) -> None:
        self._book = TtyBook()
        self._budget = HeadBudget(head_budget)
        self._conns: dict[int, ConnectionObserver] = {}

    def _get(self, conn: int) -> ConnectionObserver:
        observer = self._conns.get(conn)
        if observer is None:
            observer = self._conns[conn] = ConnectionObserver(conn, self._book)
        return observer

    @property
    def held(self) -> int:
        """Bytes all connections hold unparsed; never more than the budget between calls."""
        return self._budget.total

    def requests(self, conn: int) -> int:
        """How many requests of connection `conn` it has read (0 once it is closed)."""
        observer = self._conns.get(conn)
        return 0 if observer is None else observer.requests

    def feed(self, conn: int, direction: Direction, data: bytes, t: float) -> list[Event]:
        observer = self._get(conn)
        events = observer.feed(direction, data, t)
        self._budget.hold(conn, observer.held)
        while (oldest := self._budget.oldest_past_limit()) is not None:
            events += self._conns[oldest].cut(t, self._budget.limit)
            self._budget.hold(oldest, 0)
        return events

    def feed_eof(self, conn: int, direction: Direction, t: float) -> list[Event]:
        observer = self._get(conn)
        events = observer.feed_eof(direction, t)
        self._budget.hold(conn, observer.held)
        return events

    def close(self, conn: int, t: float) -> list[Event]:
        observer = self._conns.pop(conn, None)
        self._budget.hold(conn, 0)
        return observer.close(t) if observer is not None else []
