"""The relay: moves bytes between Docker clients and the daemon, and lets a tap watch them.

Forwarding comes first. Each chunk read from one side is written to the other before anything
else happens to it, then handed to the tap with a timestamp; the tap must return at once (the
recorder queues the chunk and parses it later). The relay knows nothing about HTTP except how to
say "502" when the daemon cannot be reached, or "503" when docktap itself is out of file
descriptors, so that the docker CLI prints a useful message.

Half-close is kept per direction, because Docker depends on it: `docker run -i` ends stdin with
a write-side shutdown and keeps reading output. An abrupt close on one side aborts the other.
Flow control is end to end: when one side's write buffer fills, reading from the other pauses;
reading from a client pauses too while docktap holds too much of what it sent (see hold_client).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import struct
import time
from typing import TYPE_CHECKING, cast

from docktap.answers import bad_gateway, out_of_descriptors
from docktap.connecting import connect
from docktap.direction import Direction
from docktap.listening import OUT_OF_DESCRIPTORS, DescriptorShortage, Listener, bound_port, listen
from docktap.tap import PeerCredentials
from docktap.upstream import Endpoint

# The gate, the actions it asks for and the request model it reads requests with, only with a
# policy: a relay without one is started by every `docktap run`, and must start fast.
if TYPE_CHECKING:
    from docktap.policy.actions import Action, Answer, Decided, Forward
    from docktap.policy.gate import Gate
    from docktap.policy.guard import Guard
    from docktap.tap import Tap

_CONNECT_TIMEOUT = 10.0
# The most of a client's bytes docktap holds for it, before reading from it pauses: those sent
# before the daemon connection is up, or held by the gate until the daemon has answered.
_PENDING_LIMIT = 256 << 10
# The most one read takes (asyncio's own limit for plain Protocols).
_READ_SIZE = 256 << 10
# How the daemon's answer to a hijack (attach, exec start) begins.
_UPGRADED = b"HTTP/1.1 101 "
# How long a client docktap has answered and closed on may go on sending (Go's server waits
# half a second, its rstAvoidanceDelay, for the same reason): see _Pipe.linger.
_LINGER = 1.0


@functools.cache
def _gate_actions() -> tuple[type[Forward], type[Answer], type[Decided]]:
    """The gate's actions, imported with the first gate's: once, not at each read (an import
    statement costs a lookup in sys.modules every time it runs, 0.7 us)."""
    from docktap.policy.actions import Answer, Decided, Forward

    return Forward, Answer, Decided


def write_to_client(transport: asyncio.Transport, data: bytes) -> None:
    """What the daemon sent, to the client; a hijack's `101` head in a write of its own.

    The daemon writes the head and the stream apart, but one read here may hold both. A client
    reading the head through a buffer, then the stream from the socket (docker-py does), loses
    what came with the head: written apart, it is as likely to get it as from the daemon.
    """
    end = data.find(b"\r\n\r\n") + 4 if data.startswith(_UPGRADED) else 0
    if 4 <= end < len(data):
        transport.write(data[:end])
        transport.write(data[end:])
    else:
        transport.write(data)


def _peer_credentials(sock: socket.socket | None) -> PeerCredentials | None:
    if sock is None or sock.family != socket.AF_UNIX or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid, uid, gid = struct.unpack("3i", raw)
    try:
        # Read now: the process may be gone by the time anyone looks at the capture.
        exe: str | None = os.readlink(f"/proc/{pid}/exe") if pid > 0 else None
    except OSError:
        exe = None
    return PeerCredentials(pid, uid, gid, exe)


class _Side(asyncio.BufferedProtocol):
    """One socket of a pipe; whatever it reads goes to the other side of the same pipe.

    Reads land in the relay's one receive buffer and leave it as bytes of their own size. With
    plain Protocols asyncio gives each read a fresh 256 KiB bytes object and shrinks it: while
    glibc still maps blocks that big with mmap (until it happens to free one), every read of a
    small request maps and unmaps memory, which held 64 clients to a third of their rate.
    """

    def __init__(self, pipe: _Pipe, direction: Direction) -> None:
        self.pipe = pipe
        self.direction = direction  # who sends the bytes this side reads
        self.transport: asyncio.Transport | None = None
        self.eof = False
        self.lost = False
        self.write_blocked = False  # our write buffer is full: the other side stops reading

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.direction is Direction.CLIENT:
            self.pipe.client_arrived()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.pipe.relay.receive_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.pipe.forward(self, bytes(self.pipe.relay.receive_buffer[:nbytes]))

    def eof_received(self) -> bool:
        self.eof = True
        self.pipe.forward_eof(self)
        return True  # keep our write side open: the peer may still have things to say

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pipe.side_lost(self, exc)

    def pause_writing(self) -> None:
        self.write_blocked = True
        self.pipe.other(self).pause_reading()
        if self.answers_itself:
            self.pause_reading()

    def resume_writing(self) -> None:
        self.write_blocked = False
        self.pipe.other(self).resume_reading()
        if self.pipe.gate is not None and self is self.pipe.client:
            self.resume_reading()  # paused while it answered itself, perhaps

    @property
    def answers_itself(self) -> bool:
        """Whether what this side sends may be answered by docktap itself: a client that a
        policy is deciding for. While such a client reads nothing of what it is sent, it is
        not read either, as Go's server reads no request while its answer to the one before is
        unwritten; else each denial it pipelined would add docktap's 403 to its write buffer,
        without bound. Once hijacked, only the daemon answers; once docktap has answered and
        is closing, nothing is answered any more."""
        pipe = self.pipe
        gate = pipe.gate
        return gate is not None and self is pipe.client and not gate.raw and pipe.lingering is None

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read again, unless something else still holds reading back.

        Three things pause a side: its peer's full write buffer, the relay's tap falling
        behind, and for the client, docktap holding too much of what it sent (see
        _Pipe.hold_client) or, with a policy, its own full write buffer (see answers_itself).
        One lifting must not undo another.
        """
        pipe = self.pipe
        if pipe.relay.paused or pipe.other(self).write_blocked:
            return
        if self is pipe.client and (pipe.held_back or (self.write_blocked and self.answers_itself)):
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()


class _Pipe:
    """A client connection and its daemon connection."""

    def __init__(self, relay: Relay, conn: int) -> None:
        self.relay = relay
        self.conn = conn
        self.tap = relay.tap
        self.client = _Side(self, Direction.CLIENT)
        self.daemon = _Side(self, Direction.DAEMON)
        # Client bytes wait here until the daemon connection is up and they have been sent.
        self.pending: list[bytes] = []
        self.upstream_ready = False
        self.pending_size = 0
        self.held_back = False  # docktap holds too much of the client's: see hold_client
        self.failure: str | None = None
        self.out_of_descriptors = False
        self.answered_failure = False
        self.done = asyncio.get_running_loop().create_future()
        # Held here: the loop keeps only a weak reference to a task, which could vanish mid-way.
        self.connecting: asyncio.Task[None] | None = None
        # With a policy, client bytes pass the gate before they reach the daemon.
        self.gate: Gate | None = None
        # Whether anything but forwarding follows a gated read: the tap, decisions reported.
        self.watched = self.tap is not None
        # Set once docktap has answered the client itself and is closing: see linger.
        self.lingering: asyncio.TimerHandle | None = None
        # With a policy: the gate has let the client's end of input go to the daemon.
        self.input_ended = False

    def other(self, side: _Side) -> _Side:
        return self.daemon if side is self.client else self.client

    def client_arrived(self) -> None:
        """The client is connected: tell the tap who it is, then connect to the daemon."""
        assert self.client.transport is not None
        if self.relay.paused:
            self.client.pause_reading()
        guard = self.relay.guard
        if self.tap is not None or guard is not None:
            peer = _peer_credentials(self.client.transport.get_extra_info("socket"))
            if self.tap is not None:
                self.tap.opened(self.conn, peer, time.monotonic())
            if guard is not None:
                self.gate = guard.gate(peer.uid if peer else None, peer.exe if peer else None)
                self.watched = self.watched or guard.report is not None
        self.connecting = asyncio.get_running_loop().create_task(self.connect())

    def flows_to(self, side: _Side) -> bool:
        """Whether bytes may be written to `side` now (the daemon only once pending is out)."""
        return side is self.client or self.upstream_ready

    def forward(self, side: _Side, data: bytes) -> None:
        if self.gate is not None:
            self.forward_gated(self.gate, side, data)
            return
        if self.lingering is not None:
            pass  # docktap has answered the client in the daemon's place: nothing goes on
        elif side is self.daemon:
            assert self.client.transport is not None
            write_to_client(self.client.transport, data)
        else:
            self.to_daemon(data)
        if self.tap is not None:
            self.tap.data(self.conn, side.direction, data, time.monotonic())
        if self.failure is not None:
            self.answer_failure()

    def forward_gated(self, gate: Gate, side: _Side, data: bytes) -> None:
        """Client bytes go to the daemon only as the gate lets them; daemon bytes go straight
        to the client, and the gate follows them to answer its denials in their turn.

        What the gate lets through is written before the tap has the chunk and before the
        decisions are reported, as a chunk is written before the tap has it without a policy:
        a request waits for the gate's decision, not for its recording. The tap still has the
        client's chunk before docktap's own answers to it, and the capture its records before
        the decisions on them."""
        if side is self.client:
            actions = gate.from_client(data)
            if self.watched:
                actions = self.forward_first(actions)
                if self.tap is not None:
                    self.tap.data(self.conn, Direction.CLIENT, data, time.monotonic())
            self.apply(actions)
            if gate.held > _PENDING_LIMIT:
                self.hold_client()
        else:
            assert self.client.transport is not None
            write_to_client(self.client.transport, data)
            if self.tap is not None:
                self.tap.data(self.conn, Direction.DAEMON, data, time.monotonic())
            self.apply(gate.from_daemon(data))
            if self.held_back:
                self.hold_client()  # the gate may have let go of what it held
        if self.failure is not None:
            self.answer_failure()

    def forward_first(self, actions: list[Action]) -> list[Action]:
        """Write what the gate forwards ahead of its first answer; the actions left, in order.

        Only decisions are passed over, which go to the report, not to a socket; from
        docktap's first own answer on, everything is applied in its order.
        """
        forward, _, decided = _gate_actions()
        rest: list[Action] = []
        for at, action in enumerate(actions):
            if isinstance(action, forward):
                self.to_daemon(action.data)
            elif isinstance(action, decided):
                rest.append(action)
            else:
                return rest + actions[at:]
        return rest

    def apply(self, actions: list[Action]) -> None:
        forward, answer, decided = _gate_actions()
        for action in actions:
            if isinstance(action, forward):
                self.to_daemon(action.data)
            elif isinstance(action, answer):
                self.answer(action.data, action.close)
            elif isinstance(action, decided):
                guard = self.relay.guard
                if guard is not None and guard.report is not None:
                    guard.report(self.conn, action)
            else:
                self.input_ended = True  # for connect(), if the daemon is not reached yet
                if self.flows_to(self.daemon) and self.daemon.open:
                    assert self.daemon.transport is not None
                    self.daemon.transport.write_eof()

    def to_daemon(self, data: bytes) -> None:
        if self.flows_to(self.daemon):
            assert self.daemon.transport is not None
            self.daemon.transport.write(data)
            return
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size > _PENDING_LIMIT:
            self.hold_client()

    def hold_client(self) -> None:
        """Stop reading the client while docktap holds more than _PENDING_LIMIT of its bytes,
        and read it again once it holds less.

        Before the daemon connection is up, what the client sent waits for it; with a policy,
        the gate holds what follows a denial or a hijack until the daemon has answered what
        came before (`Gate.held`), which a long poll may never do. Either way only the daemon
        lets it go, so reading on would only grow docktap's memory; the client's own socket
        buffer fills instead, and its writes block, as they would before a daemon that reads
        nothing more until it has answered."""
        held = 0 if self.upstream_ready else self.pending_size
        if self.gate is not None:
            held += self.gate.held
        if held > _PENDING_LIMIT:
            if not self.held_back:
                self.held_back = True
                self.client.pause_reading()
        elif self.held_back:
            self.held_back = False
            self.client.resume_reading()

    def answer(self, response: bytes, close: bool) -> None:
        """docktap's own answer to a request its policy denied, in the daemon's place."""
        if not self.client.open:
            return
        assert self.client.transport is not None
        self.client.transport.write(response)
        if self.tap is not None:
            self.tap.data(self.conn, Direction.DAEMON, response, time.monotonic())
        if close:
            self.linger()

    def linger(self) -> None:
        """Close, once the client has had docktap's own answer, without losing it.

        The client may still be sending its request's body when the answer comes (the docker
        CLI writes a body after its head, and a request may be refused on its head). Closed at
        once, the client's next write fails (EPIPE), and Go's client reports that ("write:
        broken pipe") rather than the answer it has not read yet. So docktap only shuts its own
        side down, reads and drops what the client still sends, and closes when the client has
        done, or after _LINGER."""
        if self.lingering is not None:
            return
        transport = self.client.transport
        assert transport is not None
        if not transport.can_write_eof():
            self.close()
            return
        transport.write_eof()
        self.lingering = asyncio.get_running_loop().call_later(_LINGER, self.close)
        self.held_back = False  # what the client sends from now on is dropped, not held
        self.client.resume_reading()
        if self.daemon.transport is not None:
            self.daemon.transport.close()
        if self.client.eof:
            self.close()

    def forward_eof(self, side: _Side) -> None:
        if self.tap is not None:
            self.tap.eof(self.conn, side.direction, time.monotonic())
        if self.lingering is not None:
            if side is self.client:
                self.close()
            return
        peer = self.other(side)
        gate = self.gate
        if side is self.client and gate is not None:
            self.apply(gate.client_eof())
        else:
            if gate is not None:
                # The client's side ends here: the gate answers nothing after it (a write
                # after write_eof raised, and took the relay's callback down with it).
                gate.daemon_eof()
                if self.held_back:
                    self.hold_client()
            if self.flows_to(peer) and peer.open and peer.transport is not None:
                peer.transport.write_eof()
        both_done = self.client.eof and self.daemon.eof
        # With no daemon behind us, a client that stops sending has nothing more to wait for.
        if both_done or (side is self.client and self.failure is not None):
            self.close()

    def side_lost(self, side: _Side, exc: Exception | None) -> None:
        peer = self.other(side)
        if side is self.daemon and self.lingering is not None:
            pass  # the client is told already, and closes in its time
        elif peer.transport is not None and not peer.lost:
            if exc is not None:
                peer.transport.abort()
            else:
                peer.transport.close()
        if self.client.lost and (self.daemon.lost or self.daemon.transport is None):
            self.finish()

    def close(self) -> None:
        for side in (self.client, self.daemon):
            if side.transport is not None:
                side.transport.close()

    def abort(self) -> None:
        for side in (self.client, self.daemon):
            if side.transport is not None:
                side.transport.abort()

    def finish(self) -> None:
        if self.done.done():
            return
        if self.lingering is not None:
            self.lingering.cancel()
        if self.tap is not None:
            self.tap.closed(self.conn, time.monotonic())
        self.done.set_result(None)

    async def connect(self) -> None:
        try:
            await asyncio.wait_for(
                connect(lambda: self.daemon, self.relay.upstream), _CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "timed out"
            self.failure = reason
            # Then it is docktap that failed, not the daemon.
            self.out_of_descriptors = isinstance(exc, OSError) and exc.errno in OUT_OF_DESCRIPTORS
            if self.out_of_descriptors:
                self.relay.shortage.refuse(reason)
            if self.pending:
                self.answer_failure()
            elif self.client.eof or self.client.lost:
                self.close()
            return
        if self.client.lost:
            self.close()
            return
        assert self.daemon.transport is not None
        if self.lingering is not None:  # denied before the daemon was reached: it never is
            self.daemon.transport.close()
            return
        self.daemon.transport.writelines(self.pending)
        self.pending.clear()
        self.upstream_ready = True
        if self.relay.paused:
            self.daemon.pause_reading()
        self.hold_client()  # what waited for the daemon has gone to it
        # With a policy, only once the gate lets it go: a request held behind a denial must
        # reach the daemon before the client's end does.
        if self.input_ended if self.gate is not None else self.client.eof:
            self.daemon.transport.write_eof()

    def answer_failure(self) -> None:
        """Tell the client, in Docker's error shape, why there is no daemon behind us."""
        if self.answered_failure or self.failure is None or not self.client.open:
            return
        if self.lingering is not None:
            return  # docktap has answered the client already, and is done with it
        self.answered_failure = True
        first = self.pending[0] if self.pending else b""
        if self.out_of_descriptors:
            message, response = out_of_descriptors(self.failure, first)
        else:
            message, response = bad_gateway(self.relay.upstream, self.failure, first)
        assert self.client.transport is not None
        self.client.transport.write(response)
        if self.tap is not None:
            now = time.monotonic()
            self.tap.upstream_failed(self.conn, message, now)
            self.tap.data(self.conn, Direction.DAEMON, response, now)
            self.tap.eof(self.conn, Direction.DAEMON, now)
        if self.out_of_descriptors:
            self.client.transport.close()  # its descriptor is wanted more than its answer
        else:
            self.linger()


class Relay:
    """Accepts clients on one endpoint and relays each to the upstream daemon."""

    def __init__(
        self,
        upstream: Endpoint,
        tap: Tap | None = None,
        shortage: DescriptorShortage | None = None,
        guard: Guard | None = None,
    ) -> None:
        self.upstream = upstream
        self.tap = tap
        self.guard = guard  # a policy decides each request before it is forwarded
        # Out of file descriptors, whether to accept or to reach the daemon, is said here.
        self.shortage = shortage or DescriptorShortage()
        self._server: Listener | None = None
        self._pipes: set[_Pipe] = set()
        self._next_conn = 0
        self._socket_path: str | None = None
        self.paused = False
        # Shared by every socket: each read is copied out of it before the next one.
        self.receive_buffer = memoryview(bytearray(_READ_SIZE))

    async def listen(
        self, endpoint: Endpoint, socket_mode: int = 0o600, bound: list[socket.socket] | None = None
    ) -> None:
        """Accept clients on `endpoint` (on `bound`, its sockets, if bound already: see
        binding.bind); ListenError says why not."""
        self._server = await listen(endpoint, self._accept, socket_mode, self.shortage, bound)
        self._socket_path = endpoint.path

    def pause_reading(self) -> None:
        """Stop reading from every socket (the tap cannot keep up); new clients wait too."""
        self.paused = True
        for pipe in self._pipes:
            pipe.client.pause_reading()
            pipe.daemon.pause_reading()

    def resume_reading(self) -> None:
        self.paused = False
        for pipe in self._pipes:
            pipe.client.resume_reading()
            pipe.daemon.resume_reading()

    @property
    def bound_port(self) -> int | None:
        """The TCP port actually bound (useful with port 0)."""
        return None if self._server is None else bound_port(self._server)

    @property
    def connections(self) -> int:
        """Connections taken so far, each relayed (or told the daemon is out of reach)."""
        return self._next_conn

    def _accept(self) -> _Side:
        self._next_conn += 1
        pipe = _Pipe(self, self._next_conn)
        self._pipes.add(pipe)
        pipe.done.add_done_callback(lambda _: self._pipes.discard(pipe))
        return pipe.client

    async def close(self, grace: float = 2.0) -> None:
        """Stop accepting; give open connections `grace` seconds to end, then cut them."""
        if self._server is not None:
            self._server.close()
        pending = [pipe.done for pipe in self._pipes]
        if pending:
            _, still_open = await asyncio.wait(pending, timeout=grace)
            for pipe in list(self._pipes):
                pipe.abort()
            if still_open:
                await asyncio.wait(still_open, timeout=1.0)
        if self._server is not None:
            await self._server.wait_closed()
        if self._socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._socket_path)
