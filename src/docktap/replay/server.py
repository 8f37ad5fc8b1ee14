"""The replay daemon: serves recorded answers on a socket, to real Docker clients.

Each client connection gets an h11 server connection that parses its requests; the store says
which recording answers each one and when each piece of the answer may go. This module only
moves bytes: it reads requests, writes the recorded pieces (chunked bodies chunk by chunk,
hijacked streams as raw bytes, large ones read from the capture file as they go), half-closes
and closes as the recording did, and waits for the store's conditions. Nothing is ever
forwarded to a real daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

import h11
import orjson

from docktap.capture.format import HELD_BODY_LIMIT
from docktap.capture.reader import CaptureError, Left, read_left
from docktap.listening import Listener, bound_port, listen
from docktap.redact import Redactor
from docktap.replay.match import Request, comparable
from docktap.replay.script import Piece, PieceKind, Recording
from docktap.replay.store import Miss, Play, Store
from docktap.routes import operation_name
from docktap.upstream import Endpoint

_READ_SIZE = 1 << 16
#: Bytes of a client's pipelined requests read ahead of the answers, at most (roughly: one
#: read more). Past it, and while our answers wait in the write buffer, the client is not
#: read: its sends block, and a client that never reads its answers costs no more memory.
READ_AHEAD_LIMIT = 1 << 20
#: A miss is answered like a daemon error: the docker CLI prints the message, docker-py raises.
MISS_STATUS = 500
#: How long a piece waits for a related request (same container) that the client may never
#: make, with nothing else happening, before it goes anyway (seconds; the default).
STALL_TIMEOUT = 1.0
#: Longest pause between a hijack's head and its first stream bytes when not pacing (seconds).
HIJACK_HEAD_PAUSE = 0.05


@dataclass
class _Incoming:
    """A request being received: its head, and its body as a digest plus a bounded copy."""

    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    kept: bytearray | None = field(default_factory=bytearray)

    def add(self, data: bytes) -> None:
        self.digest.update(data)
        if self.kept is not None:
            if len(self.kept) + len(data) > HELD_BODY_LIMIT:
                self.kept = None  # too large to compare as JSON: the digest stands for it
            else:
                self.kept += data


@dataclass
class _Client:
    """One client connection's parsing state, shared by its reading and answering tasks."""

    conn: h11.Connection = field(default_factory=lambda: h11.Connection(h11.SERVER))
    receiving: _Incoming | None = None
    requests: deque[_Incoming] = field(default_factory=deque)
    stream: Play | None = None  # after a hijack, the client's bytes belong to this play
    forward: asyncio.StreamWriter | None = None  # after a miss passed on, bytes go there
    closed: bool = False  # the client is gone (or sent something unparseable)
    ahead: int = 0  # bytes given to h11 since it last held no whole request we had to answer
    error: str | None = None


class ReplayServer:
    """Answers clients from a store of recordings until closed."""

    def __init__(
        self,
        store: Store,
        speed: float = 0.0,
        redactor: Redactor | None = None,
        on_miss: Callable[[Miss], None] | None = None,
        fallback: Endpoint | None = None,
        stall_timeout: float = STALL_TIMEOUT,
    ) -> None:
        """`fallback`, when given, is a daemon (a recording relay) that misses are passed to;
        `stall_timeout` is how long a piece waits for related requests with nothing happening,
        before it waits only for those the client did make."""
        self.store = store
        self.stall_timeout = stall_timeout
        self.fallback = fallback
        self.passed_on: list[str] = []  # requests answered by the fallback
        self.speed = speed
        self.redactor = redactor
        self.on_miss = on_miss
        self.truncated: list[Recording] = []  # answered with only the part the capture kept
        self._changed = asyncio.Event()
        self._server: Listener | None = None
        self._socket_path: str | None = None  # ours to remove once closed
        self._tasks: set[asyncio.Task[None]] = set()
        self._files: dict[str, BinaryIO] = {}  # captures whose large payloads were left there

    async def listen(self, endpoint: Endpoint, socket_mode: int = 0o600) -> None:
        def factory() -> asyncio.StreamReaderProtocol:
            return asyncio.StreamReaderProtocol(asyncio.StreamReader(), self._accept)

        self._server = await listen(endpoint, factory, socket_mode)
        self._socket_path = endpoint.path

    @property
    def bound_port(self) -> int | None:
        return None if self._server is None else bound_port(self._server)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._socket_path is not None:
            # Left behind, it would look like a daemon to the next client, and block a restart.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._socket_path)
            self._socket_path = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for handle in self._files.values():
            handle.close()
        self._files.clear()

    @property
    def connections(self) -> int:
        """Client connections open now: accepted, and not yet let go."""
        return len(self._tasks)

    async def until_connections(self, at_most: int) -> None:
        """Until no more than `at_most` client connections are open."""
        await self._until(lambda: self.connections <= at_most)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._served)

    def _served(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._notify()

    # --- waiting on progress anywhere -------------------------------------------------

    def _notify(self) -> None:
        """Something happened that may unblock a piece on any connection."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _until(self, condition: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait for `condition`; False if nothing happened for `timeout` seconds while waiting."""
        while not condition():
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
            except TimeoutError:
                return False
        return True

    # --- reading ----------------------------------------------------------------------

    async def _read(
        self, client: _Client, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                await self._until(lambda: client.ahead <= READ_AHEAD_LIMIT or client.closed)
                try:
                    await writer.drain()  # our answers first: the client reads them, or waits
                    data = await reader.read(_READ_SIZE)
                except ConnectionError:
                    data = b""
                play = client.stream
                if client.forward is not None:
                    _pass_on(client.forward, data)
                elif play is not None:
                    if data:
                        play.client_sent += len(data)
                    else:
                        play.client_halfclosed = True
                else:
                    client.ahead += len(data)
                    client.conn.receive_data(data)
                    self._parse(client, writer)
                self._notify()
                if not data:
                    return
        finally:
            # On a hijacked stream this is only the client's half-close: it may still read.
            client.closed = True
            self._notify()

    def _parse(self, client: _Client, writer: asyncio.StreamWriter) -> None:
        """Turn what h11 has buffered into requests, until it needs more or must wait for us."""
        while not client.closed:
            try:
                event = client.conn.next_event()
            except h11.RemoteProtocolError as exc:
                client.error = f"unparseable request: {exc}"
                client.closed = True
                return
            if event is h11.NEED_DATA:
                # h11 holds at most part of an event now: what was read ahead is used up.
                if client.ahead:
                    client.ahead = 0
                    self._notify()
                return
            if event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                client.receiving = _Incoming(
                    event.method.decode(), event.target.decode(), list(event.headers.raw_items())
                )
                if client.conn.they_are_waiting_for_100_continue:
                    # dockerd (Go's net/http) says 100 Continue once it reads the body. The
                    # replay needs the body to find the recording, so it asks for it at once: a
                    # client that sent `Expect: 100-continue` (curl -T) would hold it back
                    # until its own timeout (a second for curl), or for good.
                    go_on = h11.InformationalResponse(status_code=100, headers=[])
                    writer.write(client.conn.send(go_on) or b"")
            elif isinstance(event, h11.Data) and client.receiving is not None:
                client.receiving.add(event.data)
            elif isinstance(event, h11.EndOfMessage) and client.receiving is not None:
                client.requests.append(client.receiving)
                client.receiving = None
            elif isinstance(event, h11.ConnectionClosed):
                client.closed = True

    # --- answering --------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client()
        reading = asyncio.get_running_loop().create_task(self._read(client, reader, writer))
        try:
            while True:
                await self._until(lambda: bool(client.requests) or client.closed)
                if not client.requests:
                    break
                incoming = client.requests.popleft()
                passing = self.fallback is not None and incoming.kept is not None
                result = self.store.match(self._request(incoming), count_miss=not passing)
                if isinstance(result, Miss) and passing:
                    await self._pass_on(client, writer, incoming)
                    break
                if isinstance(result, Miss):
                    self._answer_miss(client, writer, incoming, result)
                    await writer.drain()
                elif not await self._play(client, writer, incoming, result):
                    break
                if client.conn.our_state is not h11.DONE or client.conn.their_state is not h11.DONE:
                    break
                client.conn.start_next_cycle()
                self._parse(client, writer)
        except (ConnectionError, h11.LocalProtocolError):
            pass
        except (CaptureError, OSError) as exc:  # a payload left in the capture is gone
            client.error = str(exc)
        finally:
            if client.stream is not None:
                client.stream.client_gone = True
                self._notify()
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _pass_on(
        self, client: _Client, writer: asyncio.StreamWriter, incoming: _Incoming
    ) -> None:
        """Hand the connection to the fallback daemon for good, starting with this request."""
        assert self.fallback is not None and incoming.kept is not None
        self.passed_on.append(f"{incoming.method} {incoming.target}")
        if self.fallback.path is not None:
            reader, upstream = await asyncio.open_unix_connection(self.fallback.path)
        else:
            reader, upstream = await asyncio.open_connection(self.fallback.host, self.fallback.port)
        again = h11.Connection(h11.CLIENT)
        head = h11.Request(method=incoming.method, target=incoming.target, headers=incoming.headers)
        upstream.write(again.send(head) or b"")
        if incoming.kept:
            upstream.write(again.send(h11.Data(data=bytes(incoming.kept))) or b"")
        upstream.write(again.send(h11.EndOfMessage()) or b"")
        # What the client sent after this request is not ours to parse any more.
        buffered, ended = client.conn.trailing_data
        if buffered:  # (no bytes would say the client half-closed: dockerd cancels a wait)
            _pass_on(upstream, buffered)
        client.forward = upstream
        client.ahead = 0  # what it sends now goes to the fallback, not to h11
        self._notify()
        if ended or client.closed:
            _pass_on(upstream, b"")
        try:
            while data := await reader.read(_READ_SIZE):
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            await self._until(lambda: client.closed)
        finally:
            upstream.close()

    def _request(self, incoming: _Incoming) -> Request:
        """The request as recordings are keyed: with the same secrets masked as when recorded,
        and compared as recordings are (`comparable`)."""
        target, body = incoming.target, incoming.kept
        if self.redactor is not None:
            operation = operation_name(incoming.method, target)
            target = self.redactor.target(operation, target)
            if body is not None and self.redactor.holds(operation, "client"):
                masked = self.redactor.body(operation, bytes(body), "client")
                return comparable(Request.of(incoming.method, target, masked))
        kept = None if body is None else bytes(body)
        return comparable(Request(incoming.method, target, kept, incoming.digest.hexdigest()))

    def _answer_miss(
        self, client: _Client, writer: asyncio.StreamWriter, incoming: _Incoming, miss: Miss
    ) -> None:
        if self.on_miss is not None:
            self.on_miss(miss)
        body = orjson.dumps({"message": miss.message}) + b"\n"
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Docktap-Replay", "miss"),
        ]
        conn = client.conn
        writer.write(conn.send(h11.Response(status_code=MISS_STATUS, headers=headers)) or b"")
        if incoming.method != "HEAD":
            writer.write(conn.send(h11.Data(data=body)) or b"")
        writer.write(conn.send(h11.EndOfMessage()) or b"")

    async def _play(
        self, client: _Client, writer: asyncio.StreamWriter, incoming: _Incoming, play: Play
    ) -> bool:
        """Send a recording's pieces as the store allows; False when the connection is over."""
        recording = play.recording
        hijacked = recording.exchange.hijacked is not None
        if hijacked:
            # The client's bytes from here on are the stream's, those h11 already holds too.
            client.stream = play
            client.ahead = 0  # what it sends now is counted on the play, not held
            buffered, _ = client.conn.trailing_data
            play.client_sent += len(buffered)
            self._notify()
        if recording.truncated or recording.stream_cut:
            self.truncated.append(recording)
        loop = asyncio.get_running_loop()
        started = loop.time()
        head_only = incoming.method == "HEAD"

        # A hijacked client's EOF is a half-close: it still reads what the stream has to say.
        # So does a plain one's, when the daemon answered a client that had given up.
        def gone() -> bool:
            if not client.closed or hijacked:
                return False
            play.client_halfclosed = True
            return not recording.outlives_client

        while (piece := play.next_piece) is not None:
            if not await self._until(lambda: self.store.ready(play) or gone(), self.stall_timeout):
                await self._until(lambda: self.store.ready(play, lenient=True) or gone())
            if gone():
                play.client_gone = True
                return False
            if self.speed > 0:
                due = started + (piece.mono - recording.exchange.started_mono) / self.speed
                await asyncio.sleep(max(0.0, due - loop.time()))
            elif hijacked and piece.kind is PieceKind.STREAM and play.sent == 1:
                # A daemon never has output ready with its 101: a container takes time to
                # start. docker-py reads the head through a buffer and would lose bytes that
                # came in the same read, so let the head arrive on its own.
                await asyncio.sleep(min(HIJACK_HEAD_PAUSE, piece.mono - recording.pieces[0].mono))
            if not self._send(client, writer, play, piece, hijacked, head_only):
                play.sent += 1
                self._notify()
                return False
            play.sent += 1
            self._notify()
            await writer.drain()
        if hijacked or recording.ends_open:
            # Recorded until the client left: stay open until this one leaves too.
            await self._until(lambda: client.closed)
            return False
        writer.write(client.conn.send(h11.EndOfMessage()) or b"")
        return True

    def _send(
        self,
        client: _Client,
        writer: asyncio.StreamWriter,
        play: Play,
        piece: Piece,
        hijacked: bool,
        head_only: bool,
    ) -> bool:
        """Write one piece; False once the connection is closed by it."""
        recording = play.recording
        if piece.kind is PieceKind.HEAD:
            if hijacked:
                writer.write(_raw_head(recording))
            else:
                writer.write(client.conn.send(_response(recording, head_only)) or b"")
        elif piece.kind is PieceKind.BODY:
            if not head_only and piece.size:
                writer.write(client.conn.send(h11.Data(data=self._data(piece))) or b"")
        elif piece.kind is PieceKind.STREAM:
            writer.write(self._data(piece))
        elif piece.kind is PieceKind.HALFCLOSE:
            if writer.can_write_eof():
                writer.write_eof()
        elif piece.kind is PieceKind.CLOSE:
            writer.close()
            return False
        return True

    def _data(self, piece: Piece) -> bytes:
        """The piece's bytes, read from its capture when they were left there.

        One record at a time, read as the piece goes (and waited on by `drain` before the
        next): a large body costs the replay no more than a chunk of it.
        """
        if piece.left is None:
            return piece.data
        return read_left(piece.left, self._file(piece.left))

    def _file(self, left: Left) -> BinaryIO:
        handle = self._files.get(left.path)
        if handle is None:
            handle = self._files[left.path] = open(left.path, "rb")  # noqa: SIM115 (kept open)
        return handle


def _head_record(recording: Recording) -> tuple[int, str, list[tuple[str, str]], str]:
    head = recording.head
    if head is None:
        return 200, "", [], "1.1"
    headers = [(str(k), str(v)) for k, v in head.headers]
    return head.status, head.reason or "", headers, head.http_version


def _raw_head(recording: Recording) -> bytes:
    """A hijack's head exactly as recorded: h11 has no say once the connection is taken over."""
    status, reason, headers, version = _head_record(recording)
    lines = [f"HTTP/{version} {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _response(recording: Recording, head_only: bool) -> h11.Response:
    """The recorded head, its Content-Length made true to the body the capture kept."""
    status, reason, headers, _ = _head_record(recording)
    if not head_only:
        size = recording.body_kept
        headers = [(k, str(size) if k.lower() == "content-length" else v) for k, v in headers]
    return h11.Response(status_code=status, reason=reason.encode("latin-1"), headers=headers)


def _pass_on(upstream: asyncio.StreamWriter, data: bytes) -> None:
    """Bytes for the fallback daemon; no bytes is the client's half-close."""
    if data:
        upstream.write(data)
    elif upstream.can_write_eof() and not upstream.is_closing():
        upstream.write_eof()
