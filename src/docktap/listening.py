"""Where docktap accepts Docker clients: a unix socket or a loopback TCP port.

The sockets are bound, safely, by binding.py; this accepts on them, on an event loop.

It accepts connections itself rather than through asyncio's server, for the day file
descriptors run out. asyncio then logs a traceback for every accept() that fails, up to its
backlog (4096 here) for each wakeup, thousands a second, and leaves the clients waiting with no
answer. Here the shortage is said once in a while (see DescriptorShortage), a descriptor held
in reserve lets each waiting client be accepted and told, in Docker's error shape, that docktap
is out of descriptors, and the connections already open go on as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import socket
import time
from collections.abc import Callable
from typing import cast

from docktap.answers import out_of_descriptors
from docktap.binding import BACKLOG, bind
from docktap.upstream import Endpoint

# Connections taken per wakeup of the listening socket, so that a burst does not starve the rest.
_ACCEPTS_PER_WAKEUP = 128
# The errors of a process or a system out of descriptors.
OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})
# accept() errors of a system short of memory: wait and try again.
_SHORT_OF_MEMORY = frozenset({errno.ENOBUFS, errno.ENOMEM})
# Short of memory, or of descriptors with none in reserve: how long until accepting again.
_RETRY_DELAY = 0.5
# How long a client refused on the reserve descriptor may take to send its request.
_REFUSAL_WAIT = 5.0
# At most one report of a shortage this often.
_REPORT_EVERY = 10.0


class DescriptorShortage:
    """Counts clients refused for want of file descriptors and says so, at most every 10 s.

    With hundreds of clients a second refused, one line each would bury everything else.
    """

    def __init__(
        self,
        say: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._say = say
        self._clock = clock
        self.refused = 0
        self._unreported = 0
        self._last_report: float | None = None

    def refuse(self, reason: str) -> None:
        self.refused += 1
        self._unreported += 1
        now = self._clock()
        if self._last_report is not None and now - self._last_report < _REPORT_EVERY:
            return
        if self._say is not None:
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            if self._last_report is None:
                self._say(
                    f"out of file descriptors ({reason}; the limit is {limit}): new clients "
                    "get 503 until connections close; open connections go on"
                )
            else:
                self._say(
                    f"still out of file descriptors: {self._unreported} more clients got 503 "
                    f"in the last {now - self._last_report:.0f} s"
                )
        self._last_report = now
        self._unreported = 0


class Listener:
    """Accepts connections on listening sockets; each gets a protocol from `factory`."""

    def __init__(
        self,
        sockets: list[socket.socket],
        factory: Callable[[], asyncio.BaseProtocol],
        shortage: DescriptorShortage,
    ) -> None:
        self.sockets = sockets
        self._factory = factory
        self._shortage = shortage
        self._loop = asyncio.get_running_loop()
        self._starting: set[asyncio.Task[object]] = set()
        self._retry: asyncio.TimerHandle | None = None
        self._closed = False
        # Held only to be given up: out of descriptors, it lets one waiting client be told so.
        self._reserve: int | None = None
        self._restore_reserve()
        for sock in sockets:
            sock.setblocking(False)
            sock.listen(BACKLOG)
        self._resume()

    def close(self) -> None:
        """Stop accepting; connections already accepted go on."""
        self._closed = True
        self._pause()
        if self._retry is not None:
            self._retry.cancel()
        for sock in self.sockets:
            sock.close()
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None

    async def wait_closed(self) -> None:
        """Until the connections accepted before `close` have their protocol."""
        if self._starting:
            await asyncio.wait(list(self._starting))

    def _resume(self) -> None:
        self._retry = None
        if self._closed:
            return
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _pause(self) -> None:
        for sock in self.sockets:
            if sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(_ACCEPTS_PER_WAKEUP):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in OUT_OF_DESCRIPTORS:
                    self._out_of_descriptors(sock, exc.strerror or str(exc))
                elif exc.errno in _SHORT_OF_MEMORY:
                    self._retry_later()
                else:
                    raise
                return
            self._start(conn, self._factory)

    def _start(self, conn: socket.socket, factory: Callable[[], asyncio.BaseProtocol]) -> None:
        conn.setblocking(False)
        task: asyncio.Task[object] = self._loop.create_task(
            self._loop.connect_accepted_socket(factory, conn)
        )
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    def _out_of_descriptors(self, sock: socket.socket, reason: str) -> None:
        """Stop accepting; give the reserve descriptor to one waiting client to refuse it."""
        self._pause()
        conn = None
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None
            with contextlib.suppress(OSError):
                conn, _ = sock.accept()
        if conn is None:
            # Nobody waiting after all, or the descriptor went elsewhere: try again later.
            self._restore_reserve()
            self._retry_later()
            return
        self._shortage.refuse(reason)
        self._start(conn, lambda: _Refusal(reason, self._refused))

    def _retry_later(self) -> None:
        self._pause()
        if self._retry is None:
            self._retry = self._loop.call_later(_RETRY_DELAY, self._resume)

    def _refused(self) -> None:
        """A refused client is gone, and its descriptor with it: accept again."""
        self._restore_reserve()
        self._resume()

    def _restore_reserve(self) -> None:
        if self._reserve is None and not self._closed:
            with contextlib.suppress(OSError):
                self._reserve = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


class _Refusal(asyncio.Protocol):
    """A client accepted on the reserve descriptor: told that docktap has none to serve it.

    The answer waits for the request, so that an answer to HEAD has no body and the client is
    reading when it comes.
    """

    def __init__(self, reason: str, done: Callable[[], None]) -> None:
        self._reason = reason
        self._done = done
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._timer = asyncio.get_running_loop().call_later(_REFUSAL_WAIT, self._answer, b"")

    def data_received(self, data: bytes) -> None:
        self._answer(data)

    def eof_received(self) -> bool:
        self._answer(b"")
        return True

    def _answer(self, request: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        self._transport.write(out_of_descriptors(self._reason, request)[1])
        self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        # The socket is closed only once this returns: its descriptor is free on the next turn.
        asyncio.get_running_loop().call_soon(self._done)


def raise_descriptor_limit() -> None:
    """Raise the soft limit on open files to the hard one: every client costs two."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        # Refused where the hard limit is unlimited but the kernel caps it: keep what we have.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def listen(
    endpoint: Endpoint,
    factory: Callable[[], asyncio.BaseProtocol],
    socket_mode: int = 0o600,
    shortage: DescriptorShortage | None = None,
    bound: list[socket.socket] | None = None,
) -> Listener:
    """A listener accepting on `endpoint`, each connection handled by a protocol from `factory`.

    `shortage` is told of each client refused for want of file descriptors. `bound` are the
    endpoint's sockets if they were bound already (see binding.bind).
    """
    raise_descriptor_limit()
    if bound is None:
        bound = bind(endpoint, socket_mode)
    return Listener(bound, factory, shortage or DescriptorShortage())


def bound_port(server: Listener) -> int | None:
    """The TCP port a listener actually bound (useful with port 0); None for a unix socket."""
    name = server.sockets[0].getsockname()
    return name[1] if isinstance(name, tuple) else None
