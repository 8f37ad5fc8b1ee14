"""Reconstructs HTTP/1.1 exchanges from the bytes a relay saw, without doing any I/O.

Each connection is watched by two h11 connections in mirror: a SERVER-role one parses what the
client sent and a CLIENT-role one parses what the daemon sent. Whatever one side parses is told
to the other (its output thrown away) so each knows what the other said: the CLIENT side must
know the request method (HEAD has no body) and whether an Upgrade is pending. Framing headers
are stripped from what is mirrored, so mirroring never needs the body bytes.

Docker bends HTTP in ways h11 cannot know about: attach and exec hijack the connection after a
101 or after a 200 with a Docker stream content type and no framing, and their output may be
split into multiplexed frames. Whether it is framed is learned from the Content-Type, from the
container's Tty setting seen earlier in the same capture, or from the shape of the first bytes.

The observer must never raise on bad bytes: anything it cannot parse becomes a ProtocolError
event, and the rest of that connection is reported as Unparsed data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11

from docktap import routes
from docktap.events import (
    BodyData,
    Closed,
    Direction,
    Event,
    Frame,
    HalfClosed,
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

# Registry config headers on /build can exceed h11's 16 KiB default.
MAX_HEAD_SIZE = 4 << 20
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


def _header(headers: Headers, name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _json(body: bytearray) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


@dataclass
class _Demux:
    """Per-exchange state for splitting daemon output into frames."""

    multiplexed: bool | None
    prefix: bytes = b""
    decoder: FrameDecoder = field(default_factory=FrameDecoder)

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


@dataclass
class _Exchange:
    seq: int
    method: str
    target: str
    operation: str | None
    api_version: str | None
    subject: routes.Subject | None  # the container or exec the path names
    request_done: bool = False
    response_started: bool = False
    response_done: bool = False
    content_type: str | None = None
    demux: _Demux | None = None
    request_body: bytearray | None = None
    response_body: bytearray | None = None
    tty: bool | None = None


def _piece(data: bytes, pos: int, size: int) -> bytes:
    """data[pos:pos + size], without a copy when that is all of it."""
    return data if pos == 0 and size == len(data) else data[pos : pos + size]


def _buffered(parser: h11.Connection) -> int:
    """How many received bytes the parser holds unprocessed.

    `trailing_data` would tell too, but it copies the buffer: calling it after every event
    makes a large feed of many small chunks quadratic. h11's receive buffer has a cheap len().
    """
    buffer = getattr(parser, "_receive_buffer", None)
    if buffer is not None:
        return len(buffer)
    return len(parser.trailing_data[0])


# What each mirror needs to know of the other side's head. Passing on only these headers,
# and never the framing ones, keeps mirroring cheap (h11 validates every header it is sent)
# and means no body bytes ever need to be mirrored.
_MIRRORED_REQUEST_HEADERS = frozenset({b"host", b"connection", b"upgrade", b"expect"})
_MIRRORED_RESPONSE_HEADERS = frozenset({b"connection"})


def _mirrored(
    headers: Iterable[tuple[bytes, bytes]], keep: frozenset[bytes]
) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in headers if k in keep]


def _decode_headers(raw: Iterable[tuple[bytes, bytes]]) -> Headers:
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in raw)


class ConnectionObserver:
    """Parses one relayed connection; feed it bytes per direction, get events back."""

    def __init__(self, conn: int, book: TtyBook | None = None) -> None:
        self.conn = conn
        self._book = book if book is not None else TtyBook()
        self._from_client = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)
        self._from_daemon = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_SIZE)
        self._mode = "http"  # then "hijacked" or "broken"
        self._seq = 0
        self._ex: _Exchange | None = None
        self._eof: set[Direction] = set()
        self._done: set[Direction] = set()  # sides whose parser has nothing more to say
        # EOFs not reported yet because bytes sent before them are still buffered in h11
        # (pipelined requests wait for the exchange before them): HalfClosed(d) must come
        # after every event made from d's bytes.
        self._eof_pending: list[Direction] = []
        # Per side, the bytes received since the end of the last event parsed from that side:
        # what a ProtocolError leaves unexplained (h11 drops the lines of a head it rejects).
        self._raw = {Direction.CLIENT: bytearray(), Direction.DAEMON: bytearray()}
        self._closed = False
        self._out: list[Event] = []
        self._t = 0.0

    # -- public surface -------------------------------------------------------------------

    def feed(self, direction: Direction, data: bytes, t: float) -> list[Event]:
        if not data or self._closed:
            return []
        self._t = t
        pos = 0  # data[:pos] has been handed to a parser or reported
        try:
            while pos < len(data) and self._mode == "http":
                if size := self._body_shortcut(direction, len(data) - pos):
                    piece, pos = _piece(data, pos, size), pos + size
                    self._raw[direction].clear()  # a chunk's size line, explained by its data
                    self._body(direction, piece)
                else:
                    size = self._parser_piece(direction, data, pos)
                    piece, pos = _piece(data, pos, size), pos + size
                    self._raw[direction] += piece  # from here on, an error reports them
                    self._parser(direction).receive_data(piece)
                self._pump()
            if pos < len(data):
                rest = _piece(data, pos, len(data) - pos)
                pos = len(data)
                if self._mode == "hijacked":
                    self._stream(direction, rest)
                else:
                    self._emit(Unparsed(self.conn, t, direction, rest))
        except Exception as exc:  # the observer must never take the relay down
            self._break(direction, f"{type(exc).__name__}: {exc}")
            if pos < len(data):
                self._emit(Unparsed(self.conn, t, direction, _piece(data, pos, len(data) - pos)))
        return self._take()

    def feed_eof(self, direction: Direction, t: float) -> list[Event]:
        if direction in self._eof or self._closed:
            return []
        self._t = t
        self._eof.add(direction)
        self._eof_pending.append(direction)
        try:
            if self._mode == "http":
                self._parser(direction).receive_data(b"")
                self._pump()
        except Exception as exc:
            self._break(direction, f"{type(exc).__name__}: {exc}")
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
                self._end(ex, Direction.CLIENT, complete=False)
            if ex.response_started and not ex.response_done:
                self._end(ex, Direction.DAEMON, complete=False)
        if self._mode == "http":
            # Whole messages h11 never got to (pipelined requests left unanswered, a response
            # to no request) or a cut-off head: keep their bytes rather than drop them.
            for side in (Direction.CLIENT, Direction.DAEMON):
                parser = self._parser(side)
                left = _buffered(parser)
                if left and parser.their_state is not h11.SEND_BODY:
                    self._break(side, f"connection closed with {left} bytes not parsed")
                    break
        self._flush_eofs(force=True)
        self._closed = True
        self._emit(Closed(self.conn, t))
        return self._take()

    # -- plumbing -------------------------------------------------------------------------

    def _parser(self, direction: Direction) -> h11.Connection:
        return self._from_client if direction is Direction.CLIENT else self._from_daemon

    def _emit(self, event: Event) -> None:
        self._out.append(event)

    def _take(self) -> list[Event]:
        out, self._out = self._out, []
        return out

    def _pump(self) -> None:
        """Pull events from both parsers until neither can make progress."""
        progress = True
        while progress and self._mode == "http":
            progress = self._drain(Direction.CLIENT)
            # Until a request is known, the daemon's parser cannot interpret anything.
            if self._mode == "http" and self._from_daemon.our_state is not h11.IDLE:
                progress = self._drain(Direction.DAEMON) or progress
            if self._mode == "http" and self._cycle_over():
                self._from_client.start_next_cycle()
                self._from_daemon.start_next_cycle()
                self._ex = None
                progress = True

    # h11 copies every body byte twice, into its receive buffer and out of it, which made
    # parsing a 300 MB `docker load` cost more CPU than relaying it. Inside a Content-Length
    # body or a chunk the length left is known, so those bytes are passed on as h11 would pass
    # them and h11's count is moved on to match; h11 still reads every head and chunk line.
    # The counts are h11's private reader state: where they are missing or not as expected,
    # everything goes through h11 as usual.

    def _body_shortcut(self, direction: Direction, available: int) -> int:
        """How many of the next `available` bytes are body bytes h11 need not see (it is told
        they were read)."""
        parser = self._parser(direction)
        if parser.their_state is not h11.SEND_BODY or _buffered(parser):
            return 0
        reader = getattr(parser, "_reader", None)
        remaining = getattr(reader, "_remaining", None)
        if type(remaining) is int and remaining > 0:
            size = min(remaining, available)
            reader._remaining = remaining - size  # type: ignore[union-attr]
            return size
        left = getattr(reader, "_bytes_in_chunk", None)
        if type(left) is not int or left <= 0 or getattr(reader, "_bytes_to_discard", None):
            return 0
        size = min(left, available)
        reader._bytes_in_chunk = left - size  # type: ignore[union-attr]
        if size == left:
            reader._bytes_to_discard = b"\r\n"  # type: ignore[union-attr]
        return size

    def _parser_piece(self, direction: Direction, data: bytes, pos: int) -> int:
        """How much of data[pos:] to give h11 now: between chunks, only up to the end of the
        next line (the chunk's size), so that the chunk's bytes can take the shortcut."""
        parser = self._parser(direction)
        reader = getattr(parser, "_reader", None)
        if (
            parser.their_state is h11.SEND_BODY
            and getattr(reader, "_bytes_in_chunk", None) == 0
            and getattr(reader, "_reading_trailer", True) is False
        ):
            end = data.find(b"\n", pos)
            if end >= 0:
                return end + 1 - pos
        return len(data) - pos

    def _body(self, direction: Direction, data: bytes) -> None:
        if direction is Direction.CLIENT:
            self._client_event(h11.Data(data=data))
        else:
            self._daemon_event(h11.Data(data=data))

    def _flush_eofs(self, force: bool = False, only: Direction | None = None) -> None:
        """Report the EOFs whose side has no buffered bytes left to parse.

        Called where a parser has just run dry, so that where HalfClosed lands among the
        events does not depend on how the bytes were split.
        """
        for direction in list(self._eof_pending):
            if only is not None and direction is not only:
                continue
            if (
                force
                or self._mode != "http"
                or direction in self._done
                or not _buffered(self._parser(direction))
            ):
                self._eof_pending.remove(direction)
                self._emit(HalfClosed(self.conn, self._t, direction))

    def _cycle_over(self) -> bool:
        c, d = self._from_client, self._from_daemon
        return all(s is h11.DONE for s in (c.our_state, c.their_state, d.our_state, d.their_state))

    def _drain(self, direction: Direction) -> bool:
        if direction in self._done:
            return False
        parser = self._parser(direction)
        progress = False
        while self._mode == "http":
            # h11 moves to ERROR before it raises: what it was reading must be taken first.
            state = parser.their_state
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError as exc:
                self._parser_failed(direction, state, exc)
                return progress
            if event is h11.NEED_DATA or event is h11.PAUSED:
                self._flush_eofs(only=direction)
                return progress
            raw = self._raw[direction]
            del raw[: len(raw) - _buffered(parser)]
            if isinstance(event, h11.ConnectionClosed):
                # h11 repeats this event forever; the side has nothing more to say.
                self._done.add(direction)
                self._flush_eofs(only=direction)
                return progress
            progress = True
            if direction is Direction.CLIENT:
                self._client_event(event)
            else:
                self._daemon_event(event)
        return progress

    def _parser_failed(self, direction: Direction, state: object, exc: Exception) -> None:
        """`state`: what the failed parser was reading when the error came."""
        if direction in self._eof:
            ex = self._ex
            pending = self._raw[direction]
            if state is h11.SEND_BODY and ex is not None:
                # The peer went away mid-body (a killed daemon, an interrupted upload): the
                # message is cut short, which is no protocol error. A partial chunk header
                # left over is still reported, as bytes.
                if pending:
                    self._emit(Unparsed(self.conn, self._t, direction, bytes(pending)))
                    pending.clear()
                self._end(ex, direction, complete=False)
                self._done.add(direction)
                return
            if not pending:
                # The peer closed between messages (a cancelled long poll, an idle close).
                self._done.add(direction)
                return
        self._break(direction, str(exc))

    def _break(self, direction: Direction, message: str) -> None:
        """Give up parsing: report the error and hand on all unparsed bytes as they are."""
        if self._mode == "broken":
            return
        leftovers: list[tuple[Direction, bytes]] = []
        if self._mode == "http":
            for side in (Direction.CLIENT, Direction.DAEMON):
                pending = self._raw[side]
                if pending:
                    leftovers.append((side, bytes(pending)))
                pending.clear()
        self._mode = "broken"
        seq = self._ex.seq if self._ex is not None else None
        self._emit(ProtocolError(self.conn, self._t, seq, direction, message))
        for side, data in leftovers:
            self._emit(Unparsed(self.conn, self._t, side, data))
        self._flush_eofs()

    # -- the client's side ----------------------------------------------------------------

    def _client_event(self, event: Any) -> None:
        if isinstance(event, h11.Request):
            self._seq += 1
            target = event.target.decode("latin-1")
            method = event.method.decode("latin-1")
            version, path = routes.split_version(target)
            route = routes.match(method, target)
            op = route.operation if route else None
            ex = _Exchange(self._seq, method, target, op, version, routes.subject(path))
            if op in _LEARN_OPS:
                ex.request_body = bytearray()
            self._ex = ex
            self._emit(
                RequestHead(
                    self.conn,
                    self._t,
                    ex.seq,
                    method,
                    target,
                    event.http_version.decode("latin-1"),
                    _decode_headers(event.headers.raw_items()),
                )
            )
            self._from_daemon.send(
                h11.Request(
                    method=event.method,
                    target=event.target,
                    headers=_mirrored(event.headers, _MIRRORED_REQUEST_HEADERS),
                    http_version=event.http_version,
                )
            )
        elif isinstance(event, h11.Data):
            ex = self._require_ex()
            data = bytes(event.data)
            if ex.request_body is not None and len(ex.request_body) < _LEARN_BODY_CAP:
                ex.request_body += data
            self._emit(BodyData(self.conn, self._t, ex.seq, Direction.CLIENT, data))
        elif isinstance(event, h11.EndOfMessage):
            ex = self._require_ex()
            self._end(ex, Direction.CLIENT)
            self._learn_from_request(ex)
            self._from_daemon.send(h11.EndOfMessage())

    def _require_ex(self) -> _Exchange:
        if self._ex is None:
            raise RuntimeError("body data outside an exchange")
        return self._ex

    def _end(self, ex: _Exchange, direction: Direction, complete: bool = True) -> None:
        if direction is Direction.CLIENT:
            ex.request_done = True
        else:
            ex.response_done = True
        self._emit(MessageEnd(self.conn, self._t, ex.seq, direction, complete))

    # -- the daemon's side ----------------------------------------------------------------

    def _daemon_event(self, event: Any) -> None:
        ex = self._require_ex()
        if isinstance(event, h11.InformationalResponse | h11.Response):
            headers = _decode_headers(event.headers.raw_items())
            informational = isinstance(event, h11.InformationalResponse)
            ex.response_started = True
            self._emit(
                ResponseHead(
                    self.conn,
                    self._t,
                    ex.seq,
                    event.status_code,
                    event.reason.decode("latin-1"),
                    event.http_version.decode("latin-1"),
                    headers,
                    informational,
                )
            )
            ex.content_type = _header(headers, "content-type")
            if event.status_code == 101:
                self._hijack(ex, (_header(headers, "upgrade") or "tcp").lower())
                return
            if informational:
                return
            framed = any(k.lower() in _FRAMING for k, _ in event.headers)
            if (
                200 <= event.status_code < 300
                and not framed
                and ex.content_type in (_RAW_STREAM, _MULTIPLEXED)
            ):
                # Docker's hijack without Upgrade: a 200 with no length, then raw bytes.
                self._hijack(ex, "raw-stream")
                return
            if ex.operation in _FRAMED_BODIES or ex.content_type == _MULTIPLEXED:
                ex.demux = _Demux(self._multiplexed(ex))
            if ex.operation in _LEARN_OPS:
                ex.response_body = bytearray()
            self._from_client.send(
                h11.Response(
                    status_code=event.status_code,
                    headers=_mirrored(event.headers, _MIRRORED_RESPONSE_HEADERS),
                    reason=event.reason,
                )
            )
        elif isinstance(event, h11.Data):
            data = bytes(event.data)
            if ex.response_body is not None and len(ex.response_body) < _LEARN_BODY_CAP:
                ex.response_body += data
            self._emit(BodyData(self.conn, self._t, ex.seq, Direction.DAEMON, data))
            self._frames(ex, data)
        elif isinstance(event, h11.EndOfMessage):
            self._end(ex, Direction.DAEMON)
            self._learn_from_response(ex)
            self._from_client.send(h11.EndOfMessage())

    def _frames(self, ex: _Exchange, data: bytes) -> None:
        if ex.demux is None:
            return
        for stream, payload in ex.demux.feed(data):
            self._emit(Frame(self.conn, self._t, ex.seq, Direction.DAEMON, stream, payload))

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
        for side in (Direction.CLIENT, Direction.DAEMON):
            pending = bytes(self._raw[side])
            self._raw[side].clear()
            if pending:
                self._stream(side, pending)
        self._flush_eofs()

    def _stream(self, direction: Direction, data: bytes) -> None:
        ex = self._require_ex()
        self._emit(StreamData(self.conn, self._t, ex.seq, direction, data))
        if direction is Direction.DAEMON:
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
        if ex.response_body is None:
            return
        body = _json(ex.response_body)
        ex.response_body = None
        if not isinstance(body, dict):
            return
        if ex.operation in ("ContainerCreate", "ContainerExec") and ex.tty is not None:
            ident = body.get("Id")
            if isinstance(ident, str):
                self._book.learn(ident, ex.tty)
                name = _query_param(ex.target, "name")
                if name:
                    self._book.learn(name, ex.tty)
        elif ex.operation == "ContainerInspect":
            config = body.get("Config")
            if isinstance(config, dict) and isinstance(config.get("Tty"), bool):
                for key in (body.get("Id"), body.get("Name")):
                    if isinstance(key, str):
                        self._book.learn(key, config["Tty"])
        elif ex.operation == "ExecInspect":
            process = body.get("ProcessConfig")
            ident = body.get("ID")
            if isinstance(process, dict) and isinstance(ident, str):
                tty = process.get("tty")
                if isinstance(tty, bool):
                    self._book.learn(ident, tty)


def _query_param(target: str, name: str) -> str | None:
    values = parse_qs(urlsplit(target).query).get(name)
    return values[0] if values else None


class Observer:
    """All connections of one relay session, sharing what they reveal about TTYs."""

    def __init__(self) -> None:
        self._book = TtyBook()
        self._conns: dict[int, ConnectionObserver] = {}

    def _get(self, conn: int) -> ConnectionObserver:
        observer = self._conns.get(conn)
        if observer is None:
            observer = self._conns[conn] = ConnectionObserver(conn, self._book)
        return observer

    def feed(self, conn: int, direction: Direction, data: bytes, t: float) -> list[Event]:
        return self._get(conn).feed(direction, data, t)

    def feed_eof(self, conn: int, direction: Direction, t: float) -> list[Event]:
        return self._get(conn).feed_eof(direction, t)

    def close(self, conn: int, t: float) -> list[Event]:
        observer = self._conns.pop(conn, None)
        return observer.close(t) if observer is not None else []
