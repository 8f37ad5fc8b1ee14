"""The relay moves bytes untouched, keeps half-close per direction, and fails loudly but safely.

These tests need no Docker daemon: the upstream is a small real unix-socket server started in
the test, whose behaviour each test chooses (echo, talk after EOF, vanish).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tapping import ready_server

from docktap import connecting
from docktap import relay as relay_module
from docktap.binding import ListenError
from docktap.events import Direction
from docktap.policy.guard import Guard
from docktap.policy.model import Policy, loads
from docktap.relay import Relay, write_to_client
from docktap.tap import PeerCredentials
from docktap.upstream import Endpoint

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RecordingTap:
    """Keeps what the relay reports, to check the copy matches the wire."""

    opens: list[tuple[int, PeerCredentials | None]] = field(default_factory=list)
    chunks: dict[tuple[int, Direction], bytearray] = field(default_factory=dict)
    eofs: list[tuple[int, Direction]] = field(default_factory=list)
    closes: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    all_closed: asyncio.Event = field(default_factory=asyncio.Event)

    def opened(self, conn: int, peer: PeerCredentials | None, t: float) -> None:
        self.opens.append((conn, peer))

    def data(self, conn: int, direction: Direction, data: bytes, t: float) -> None:
        self.chunks.setdefault((conn, direction), bytearray()).extend(data)

    def eof(self, conn: int, direction: Direction, t: float) -> None:
        self.eofs.append((conn, direction))

    def closed(self, conn: int, t: float) -> None:
        self.closes.append(conn)
        if len(self.closes) == len(self.opens):
            self.all_closed.set()

    def upstream_failed(self, conn: int, message: str, t: float) -> None:
        self.failures.append(message)


async def _upstream(path: Path, handler: Handler) -> asyncio.Server:
    return await asyncio.start_unix_server(handler, str(path))


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _relay(
    tmp_path: Path,
    handler: Handler,
    guard: Guard | None = None,
    tap: RecordingTap | None = None,
) -> tuple[Relay, RecordingTap, Path]:
    """A relay listening on relay.sock in `tmp_path`, before a daemon served by `handler`."""
    up = tmp_path / "up.sock"
    await _upstream(up, handler)
    tap = RecordingTap() if tap is None else tap
    relay = Relay(Endpoint(path=str(up)), tap, guard=guard)
    sock = tmp_path / "relay.sock"
    await relay.listen(Endpoint(path=str(sock)))
    return relay, tap, sock


def test_bytes_pass_untouched_both_ways_and_the_tap_sees_them(tmp_path: Path) -> None:
    payload = os.urandom(8 << 20)

    async def main() -> None:
        relay, tap, sock = await _relay(tmp_path, _echo)
        reader, writer = await asyncio.open_unix_connection(str(sock))

        async def send() -> None:
            writer.write(payload)
            await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send())
        echoed = await reader.read(-1)
        await sender
        writer.close()
        await tap.all_closed.wait()
        await relay.close()
        assert echoed == payload
        assert tap.chunks[(1, Direction.CLIENT)] == payload
        assert tap.chunks[(1, Direction.DAEMON)] == payload
        assert tap.eofs == [(1, Direction.CLIENT), (1, Direction.DAEMON)]
        assert tap.closes == [1]
        me = PeerCredentials(
            os.getpid(), os.getuid(), os.getgid(), os.path.realpath(sys.executable)
        )
        assert tap.opens == [(1, me)]

    asyncio.run(main())


def test_half_close_keeps_the_other_direction_open(tmp_path: Path) -> None:
    async def late_talker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = await reader.read(-1)  # returns only at the client's EOF
        writer.write(b"after your EOF: " + got)
        await writer.drain()
        writer.close()

    async def main() -> None:
        relay, tap, sock = await _relay(tmp_path, late_talker)
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(b"hi\n")
        writer.write_eof()
        assert await reader.read(-1) == b"after your EOF: hi\n"
        writer.close()
        await tap.all_closed.wait()
        await relay.close()

    asyncio.run(main())


def test_an_abrupt_client_close_closes_the_upstream(tmp_path: Path) -> None:
    upstream_saw_end = asyncio.Event()

    async def waiter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read(-1)
        upstream_saw_end.set()
        writer.close()

    async def main() -> None:
        relay, tap, sock = await _relay(tmp_path, waiter)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(client, str(sock))
        await loop.sock_sendall(client, b"partial request")
        client.close()
        await asyncio.wait_for(upstream_saw_end.wait(), 5)
        await asyncio.wait_for(tap.all_closed.wait(), 5)
        await relay.close()

    asyncio.run(main())


def test_unreachable_upstream_answers_502_in_dockers_error_shape(tmp_path: Path) -> None:
    async def main() -> None:
        tap = RecordingTap()
        missing = tmp_path / "nobody-home.sock"
        relay = Relay(Endpoint(path=str(missing)), tap)
        sock = tmp_path / "relay.sock"
        await relay.listen(Endpoint(path=str(sock)))
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(b"GET /v1.41/version HTTP/1.1\r\nHost: api.moby.localhost\r\n\r\n")
        response = await reader.read(-1)
        writer.close()
        await tap.all_closed.wait()
        await relay.close()
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 502 ")
        message = json.loads(body)["message"]
        assert str(missing) in message
        assert "No such file or directory" in message
        assert tap.failures == [message]
        assert tap.chunks[(1, Direction.DAEMON)] == response

    asyncio.run(main())


async def _guarded(
    tmp_path: Path, upstream_done: asyncio.Event
) -> tuple[Relay, RecordingTap, Path]:
    """A relay whose policy allows nothing, before a daemon that must hear nothing."""

    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.read(-1) == b""
        writer.close()
        upstream_done.set()

    return await _relay(tmp_path, deaf, Guard(Policy(())))


def test_with_a_policy_an_allowed_request_reaches_the_daemon_before_the_tap_and_the_report(
    tmp_path: Path,
) -> None:
    # Forwarding comes first with a policy too: a request waits for the gate's decision, not
    # for its recording. Both the tap and the decision's report look at the daemon's socket
    # when they are called, and find the request there already.
    ping = b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n"
    pong = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"
    daemon: list[socket.socket] = []
    seen: list[tuple[str, bytes]] = []

    def peek(who: str) -> None:
        if daemon:
            try:
                there = daemon[0].recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                there = b""
            seen.append((who, there))

    class PeekingTap(RecordingTap):
        def data(self, conn: int, direction: Direction, data: bytes, t: float) -> None:
            if direction is Direction.CLIENT:
                peek("tap")
            super().data(conn, direction, data, t)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        up = tmp_path / "up.sock"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(up))
        server.listen()
        server.setblocking(False)
        policy = loads(
            "docktap-policy: 1\nclients:\n- client: any\n  allow:\n"
            '  - {operation: SystemPing, request: "GET /_ping"}\n'
        )
        guard = Guard(policy, report=lambda conn, decided: peek("report"))
        relay = Relay(Endpoint(path=str(up)), PeekingTap(), guard=guard)
        sock = tmp_path / "relay.sock"
        await relay.listen(Endpoint(path=str(sock)))
        reader, writer = await asyncio.open_unix_connection(str(sock))
        conn, _ = await loop.sock_accept(server)
        daemon.append(conn)
        for _ in range(2):
            writer.write(ping)
            got = b""
            while len(got) < len(ping):
                got += await loop.sock_recv(conn, 65536)
            assert got == ping
            await loop.sock_sendall(conn, pong)
            assert await reader.readexactly(len(pong)) == pong
        writer.close()
        conn.close()
        await relay.close()
        server.close()

    asyncio.run(main())
    # The first request may wait for the daemon's connection; the second may not wait at all.
    assert seen[-2:] == [("tap", ping), ("report", ping)]


_UPLOAD = (
    b"PUT /v1.41/containers/c/archive?path=/ HTTP/1.1\r\nHost: d\r\nContent-Length: %d\r\n\r\n"
)


def test_a_client_denied_on_its_head_may_still_send_its_body(tmp_path: Path) -> None:
    # The docker CLI writes an upload's head, then its body; denied on the head, the client
    # must be able to write the body and read the 403. Closed at once, its write failed with
    # EPIPE, and the CLI said "write: broken pipe" instead of the policy's message.
    body = os.urandom(4 << 20)

    async def main() -> None:
        upstream_done = asyncio.Event()
        relay, tap, sock = await _guarded(tmp_path, upstream_done)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(client, str(sock))
        await loop.sock_sendall(client, _UPLOAD % len(body))
        response = b""
        while chunk := await loop.sock_recv(client, 65536):  # the answer, then its end
            response += chunk
        head, _, message = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n") and b"Connection: close" in head
        assert json.loads(message)["message"].startswith(
            "docktap policy: denied PUT /containers/c/archive: no rule for uid"
        )
        await loop.sock_sendall(client, body)  # read and dropped by docktap
        client.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(tap.all_closed.wait(), 5)
        await asyncio.wait_for(upstream_done.wait(), 5)
        client.close()
        await relay.close()
        assert tap.chunks[(1, Direction.CLIENT)] == _UPLOAD % len(body) + body

    asyncio.run(main())


def test_a_client_denied_with_no_daemon_behind_gets_its_403_and_nothing_else(
    tmp_path: Path,
) -> None:
    # The daemon is out of reach, which a denial does not need: the 403 is the answer. The 502
    # came on top of it once docktap had ended its side, and failed (write after write_eof).
    body = os.urandom(4 << 20)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, object]] = []
        loop.set_exception_handler(lambda _, context: errors.append(context))
        tap = RecordingTap()
        relay = Relay(Endpoint(path=str(tmp_path / "nobody.sock")), tap, guard=Guard(Policy(())))
        sock = tmp_path / "relay.sock"
        await relay.listen(Endpoint(path=str(sock)))
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.setblocking(False)
        await loop.sock_connect(client, str(sock))
        await loop.sock_sendall(client, _UPLOAD % len(body))
        response = b""
        while chunk := await loop.sock_recv(client, 65536):
            response += chunk
        assert response.startswith(b"HTTP/1.1 403 Forbidden\r\n"), response
        assert response.count(b"HTTP/1.1 ") == 1
        await loop.sock_sendall(client, body)
        client.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(tap.all_closed.wait(), 5)
        client.close()
        await relay.close()
        assert errors == []

    asyncio.run(main())


def test_a_denied_client_that_never_stops_is_cut_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay_module, "_LINGER", 0.05)

    async def main() -> None:
        upstream_done = asyncio.Event()
        relay, tap, sock = await _guarded(tmp_path, upstream_done)
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(_UPLOAD % 100)
        assert (await reader.read(-1)).startswith(b"HTTP/1.1 403 ")
        await asyncio.wait_for(tap.all_closed.wait(), 5)  # the client sent neither body nor EOF
        await asyncio.wait_for(upstream_done.wait(), 5)
        writer.close()
        await relay.close()

    asyncio.run(main())


def test_socket_mode_defaults_to_owner_only_and_can_be_widened(tmp_path: Path) -> None:
    async def main() -> None:
        relay = Relay(Endpoint(path=str(tmp_path / "up.sock")))
        await relay.listen(Endpoint(path=str(tmp_path / "a.sock")))
        other = Relay(Endpoint(path=str(tmp_path / "up.sock")))
        await other.listen(Endpoint(path=str(tmp_path / "b.sock")), socket_mode=0o660)
        assert stat.S_IMODE(os.stat(tmp_path / "a.sock").st_mode) == 0o600
        assert stat.S_IMODE(os.stat(tmp_path / "b.sock").st_mode) == 0o660
        await relay.close()
        await other.close()
        assert not (tmp_path / "a.sock").exists()

    asyncio.run(main())


def test_listen_replaces_only_a_stale_socket(tmp_path: Path) -> None:
    upstream = Endpoint(path=str(tmp_path / "up.sock"))

    async def main() -> None:
        regular = tmp_path / "file"
        regular.write_text("not a socket")
        with pytest.raises(ListenError, match="not a socket"):
            await Relay(upstream).listen(Endpoint(path=str(regular)))
        assert regular.read_text() == "not a socket"

        stale = tmp_path / "stale.sock"
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(str(stale))
        dead.close()  # the path stays, nobody listens
        relay = Relay(upstream)
        await relay.listen(Endpoint(path=str(stale)))

        with pytest.raises(ListenError, match="in use"):
            await Relay(upstream).listen(Endpoint(path=str(stale)))
        await relay.close()

    asyncio.run(main())


def test_tcp_listening_is_loopback_only(tmp_path: Path) -> None:
    async def main() -> None:
        relay, tap, _ = await _relay(tmp_path, _echo)
        await relay.close()
        tcp = Relay(relay.upstream, tap)
        with pytest.raises(ListenError, match="loopback"):
            await tcp.listen(Endpoint(host="0.0.0.0", port=0))
        await tcp.listen(Endpoint(host="127.0.0.1", port=0))
        port = tcp.bound_port
        assert port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping")
        writer.write_eof()
        assert await reader.read(-1) == b"ping"
        writer.close()
        await tap.all_closed.wait()
        await tcp.close()
        assert tap.opens[-1][1] is None  # no peer credentials over TCP

    asyncio.run(main())


def test_other_connections_survive_one_that_fails(tmp_path: Path) -> None:
    async def main() -> None:
        relay, _, sock = await _relay(tmp_path, _echo)
        r1, w1 = await asyncio.open_unix_connection(str(sock))
        _, w2 = await asyncio.open_unix_connection(str(sock))
        w1.write(b"one")
        await w1.drain()
        assert await r1.readexactly(3) == b"one"
        w2.transport.abort()
        w1.write(b"still here")
        w1.write_eof()
        assert await r1.read(-1) == b"still here"
        w1.close()
        await relay.close()

    asyncio.run(main())


def _minor_faults(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


def test_small_reads_do_not_fault_in_memory(tmp_path: Path) -> None:
    """Relaying a small message must not touch fresh memory: one minor page fault per read
    (asyncio's 256 KiB buffer per read, mapped and unmapped by glibc) held 64 clients to a
    third of their rate."""
    up = tmp_path / "up.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(up))
    server.listen()

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    sock = tmp_path / "relay.sock"
    argv = ["proxy", "--listen", str(sock), "--upstream", f"unix://{up}", "-o", os.devnull, "-q"]
    # glibc maps blocks of 128 KiB and more with mmap until a free raises that threshold, which
    # depends on what the process did before; pinned here, the test does not.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 << 10)}
    proxy, _ = ready_server(argv, env=env, start_new_session=True)
    try:
        message = b"GET /v1.41/containers/x/json HTTP/1.1\r\nHost: docker\r\n\r\n"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(sock))

            def exchanges(count: int) -> None:
                for _ in range(count):
                    client.sendall(message)
                    got = b""
                    while len(got) < len(message):
                        got += client.recv(65536)
                    assert got == message

            exchanges(500)  # the relay's own start-up allocations
            before = _minor_faults(proxy.pid)
            exchanges(3000)
            faults = _minor_faults(proxy.pid) - before
        assert faults < 300, f"{faults} minor page faults for 6000 reads"
    finally:
        proxy.terminate()
        proxy.wait(30)
        server.close()


class WritesKept(asyncio.Transport):
    """A transport keeping each write apart, to see where the relay cuts what it read; it
    passes them on to `inner`, if given."""

    def __init__(self, inner: asyncio.Transport | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.writes: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        if self.inner is not None:
            self.inner.write(data)


UPGRADED = (
    b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
    b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
)
FRAME = b"\x01\x00\x00\x00\x00\x00\x00\x06hello\n"


@pytest.mark.parametrize(
    ("read", "written"),
    [
        (UPGRADED + FRAME, [UPGRADED, FRAME]),
        (UPGRADED, [UPGRADED]),  # nothing came with it
        (UPGRADED[:40], [UPGRADED[:40]]),  # the head's end is in a later read
        (b"HTTP/1.1 200 OK\r\n\r\nOK", [b"HTTP/1.1 200 OK\r\n\r\nOK"]),  # no hijack
        (FRAME + UPGRADED, [FRAME + UPGRADED]),  # stream bytes that look like a head
    ],
)
def test_a_hijack_head_goes_out_in_a_write_of_its_own(read: bytes, written: list[bytes]) -> None:
    transport = WritesKept()
    write_to_client(transport, read)
    assert transport.writes == written


def test_the_relay_cuts_only_after_a_101_head_and_stays_byte_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A keep-alive 200, then an attach answered `101` with its stream in the same write."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"
    cut: list[list[bytes]] = []

    def kept(transport: asyncio.Transport, data: bytes) -> None:
        writes = WritesKept(transport)
        write_to_client(writes, data)
        cut.append(writes.writes)

    monkeypatch.setattr(relay_module, "write_to_client", kept)

    async def daemon(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ok)  # one answer on the connection, then the hijack
        await reader.readuntil(b"\r\n\r\n")
        writer.write(UPGRADED + FRAME)
        await writer.drain()
        writer.close()

    async def main() -> None:
        relay, tap, sock = await _relay(tmp_path, daemon)
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
        assert await reader.readexactly(len(ok)) == ok
        writer.write(b"POST /containers/c/attach?logs=1 HTTP/1.1\r\nUpgrade: tcp\r\n\r\n")
        assert await reader.read(-1) == UPGRADED + FRAME
        writer.close()
        await tap.all_closed.wait()
        await relay.close()
        assert cut == [[ok], [UPGRADED, FRAME]]
        assert tap.chunks[(1, Direction.DAEMON)] == ok + UPGRADED + FRAME

    asyncio.run(main())


_EVENTS = b"GET /events HTTP/1.1\r\nHost: d\r\n\r\n"
_PING = b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n"
_PONG = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"
_STREAMING = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
_TICK = b"4\r\ntick\r\n"


async def _send_until_stalled(
    client: socket.socket, data: bytes, round_trip: Callable[[], Awaitable[None]]
) -> tuple[int, bool]:
    """Send `data` on the non-blocking `client` until it is all sent, or until a send fails
    right after `round_trip` (the relay's loop has run, and read the client if it could): how
    much was sent, and whether the relay stopped reading the client."""
    sent = 0
    while sent < len(data):
        try:
            sent += client.send(data[sent : sent + 65536])
        except BlockingIOError:
            await round_trip()
            try:
                sent += client.send(data[sent : sent + 65536])
            except BlockingIOError:
                return sent, True  # the relay ran, and read nothing of the client
    return sent, False


def test_what_waits_behind_a_denial_behind_a_long_poll_pauses_the_client(tmp_path: Path) -> None:
    # A client pipelines a long poll, a denied request, then more: the 403 waits for the poll's
    # answer, which never ends, and so does all after it. docktap read it all, and grew without
    # bound; now it stops reading the client past its bound, the client's socket buffer fills
    # and its writes block, and all flows again once the poll's answer ends.
    denied = b"DELETE /containers/c HTTP/1.1\r\nHost: d\r\n\r\n"
    filler = _PING * ((2 << 20) // len(_PING))
    pings = len(filler) // len(_PING)
    ticks: asyncio.Queue[bytes] = asyncio.Queue()
    heard = bytearray()

    async def daemon(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heard.extend(await reader.readexactly(len(_EVENTS)))
        writer.write(_STREAMING)
        while (tick := await ticks.get()) != b"0\r\n\r\n":
            writer.write(tick)
        writer.write(tick)  # the end of the poll's answer: only then is the next request read
        answered = 0
        while data := await reader.read(65536):
            heard.extend(data)
            pinged = (len(heard) - len(_EVENTS)) // len(_PING)
            writer.write(_PONG * (pinged - answered))
            answered = pinged
        writer.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        policy = loads(
            "docktap-policy: 1\nclients:\n- client: any\n  allow:\n"
            '  - {operation: SystemPing, request: "GET /_ping"}\n'
            '  - {operation: SystemEvents, request: "GET /events"}\n'
        )
        relay, tap, sock = await _relay(tmp_path, daemon, Guard(policy))
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.setblocking(False)
        await loop.sock_connect(client, str(sock))
        await loop.sock_sendall(client, _EVENTS + denied)
        response = bytearray()

        async def round_trip() -> None:
            """A tick of the poll, through the relay to the client: the relay's loop has run,
            and read the client if it could."""
            due = response.count(_TICK) + 1
            ticks.put_nowait(_TICK)
            while response.count(_TICK) < due:
                response.extend(await loop.sock_recv(client, 65536))

        sent, stalled = await _send_until_stalled(client, filler, round_trip)
        taken = len(tap.chunks[(1, Direction.CLIENT)]) - len(_EVENTS + denied)
        assert stalled, f"docktap read all {taken} bytes sent after the denial"
        assert taken <= relay_module._PENDING_LIMIT + relay_module._READ_SIZE
        assert heard == _EVENTS  # nothing after the poll reached the daemon

        async def send_rest() -> None:
            await loop.sock_sendall(client, filler[sent:])
            client.shutdown(socket.SHUT_WR)

        sender = asyncio.create_task(send_rest())
        ticks.put_nowait(b"0\r\n\r\n")
        while chunk := await loop.sock_recv(client, 1 << 20):
            response.extend(chunk)
        await sender
        client.close()
        await asyncio.wait_for(tap.all_closed.wait(), 30)
        await relay.close()
        poll, end, rest = bytes(response).partition(b"0\r\n\r\n")
        assert poll.startswith(_STREAMING) and end
        head, _, after = rest.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n"), rest[:200]
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        assert b"denied DELETE /containers/c" in after[:length]
        assert after[length:] == _PONG * pings  # the rest is decided as before, and answered
        assert heard == _EVENTS + filler

    asyncio.run(main())


def test_a_client_that_sends_denied_requests_and_reads_nothing_is_paused(tmp_path: Path) -> None:
    # Each denied request gets docktap's own 403, some six times its size here. A client that
    # pipelined them and read nothing grew docktap's write buffer to it without bound: reading
    # from a client paused only when the daemon's write buffer filled, which a denial never
    # touches. Now a client is not read while it does not read what it is sent, as Go's server
    # reads no request while its answer to the one before is unwritten.
    denied = b"DELETE /containers/c HTTP/1.1\r\nHost: d\r\n\r\n"
    requests = denied * ((4 << 20) // len(denied))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        upstream_done = asyncio.Event()
        relay, tap, sock = await _guarded(tmp_path, upstream_done)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.setblocking(False)
        await loop.sock_connect(client, str(sock))
        other, other_writer = await asyncio.open_unix_connection(str(sock))

        async def round_trip() -> None:
            """A request on another connection, answered: the relay's loop has run, and read
            the client if it could."""
            other_writer.write(denied)
            head = await other.readuntil(b"\r\n\r\n")
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            await other.readexactly(length)

        sent, stalled = await _send_until_stalled(client, requests, round_trip)
        assert stalled, f"docktap answered all {sent} bytes of requests into its memory"
        # Read: what it takes to fill the client's socket buffer and asyncio's high-water mark
        # (64 KiB) with answers, one read or two; the rest of the requests wait in the client's
        # own socket buffer.
        read = len(tap.chunks[(1, Direction.CLIENT)])
        assert read <= 2 * relay_module._READ_SIZE, read

        async def send_rest() -> None:
            await loop.sock_sendall(client, requests[sent:])
            client.shutdown(socket.SHUT_WR)

        sender = asyncio.create_task(send_rest())
        response = bytearray()
        while chunk := await loop.sock_recv(client, 1 << 20):
            response.extend(chunk)
        await sender
        client.close()
        other_writer.close()
        await asyncio.wait_for(tap.all_closed.wait(), 30)
        await asyncio.wait_for(upstream_done.wait(), 5)
        await relay.close()
        assert response.count(b"HTTP/1.1 403 Forbidden\r\n") == len(requests) // len(denied)

    asyncio.run(main())


_ALLOW_PING = (
    "docktap-policy: 1\nclients:\n- client: any\n  allow:\n"
    '  - {operation: SystemPing, request: "GET /_ping"}\n'
)
_PING_REQUEST = b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n"
_DENIED_DELETE = b"DELETE /containers/c HTTP/1.1\r\nHost: d\r\n\r\n"


async def _answered_then_closed(
    tmp_path: Path, answer: bytes, sends: list[bytes]
) -> tuple[list[bytes], list[dict[str, object]]]:
    """A daemon that reads one ping, answers `answer` and closes; a client that sends each of
    `sends` after it has read all it was sent before (its end, the first time), then
    half-closes. What the client read each time, and the loop's errors."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))

    async def daemon(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(len(_PING_REQUEST))
        writer.write(answer)
        await writer.drain()
        writer.close()

    relay, tap, sock = await _relay(tmp_path, daemon, Guard(loads(_ALLOW_PING)))
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.setblocking(False)
    await loop.sock_connect(client, str(sock))
    reads: list[bytes] = []
    for data in sends:
        await loop.sock_sendall(client, data)
        if not reads:
            got = b""
            while chunk := await loop.sock_recv(client, 65536):
                got += chunk
            reads.append(got)
    client.shutdown(socket.SHUT_WR)
    await asyncio.wait_for(tap.all_closed.wait(), 5)
    reads.append(await loop.sock_recv(client, 65536))
    client.close()
    await relay.close()
    return reads, errors


def test_after_the_daemon_has_closed_docktap_answers_nothing_more(tmp_path: Path) -> None:
    # The daemon answers with `Connection: close` and closes, and docktap ends the client's
    # side with it. A denied request the client sent after that was answered all the same:
    # a write after write_eof, which raised in the relay's callback and cut the connection.
    answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nOK"
    reads, errors = asyncio.run(
        _answered_then_closed(tmp_path, answer, [_PING_REQUEST, _DENIED_DELETE])
    )
    assert reads == [answer, b""] and errors == []


def test_a_denial_behind_an_answer_the_daemon_closes_on(tmp_path: Path) -> None:
    # Pipelined behind a ping, a denial waits for the daemon's answer. Framed by its length,
    # that answer ends before the close, and the 403 comes between them. Read to the close
    # (HTTP/1.0, no length), it ends only with the connection: nothing can come after it that
    # the client would not read as its body, and Go's server reads no request after it, so
    # docktap adds nothing to it.
    framed = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nOK"
    (tmp_path / "framed").mkdir()
    (got, after), errors = asyncio.run(
        _answered_then_closed(tmp_path / "framed", framed, [_PING_REQUEST + _DENIED_DELETE])
    )
    assert got.startswith(framed + b"HTTP/1.1 403 Forbidden\r\n") and after == b""
    assert b"denied DELETE /containers/c" in got and errors == []
    to_the_close = b"HTTP/1.0 200 OK\r\n\r\nOK, and on to the close"
    (got, after), errors = asyncio.run(
        _answered_then_closed(tmp_path, to_the_close, [_PING_REQUEST + _DENIED_DELETE])
    )
    assert got == to_the_close and after == b"" and errors == []


def test_denials_held_behind_a_long_poll_go_at_the_clients_end_within_the_bound(
    tmp_path: Path,
) -> None:
    # A client pipelines a long poll, then denials up to just under docktap's bound, then
    # half-closes; the daemon ends the poll when its input ends, as dockerd does. The bound
    # still holds (the client is read in full, nothing is held past it), the half-close goes on
    # at once, and every 403 comes after the poll's end, in order, then the close.
    denied = b"DELETE /containers/c HTTP/1.1\r\nHost: d\r\n\r\n"
    count = (relay_module._PENDING_LIMIT - 4096) // len(denied)
    heard = bytearray()

    async def daemon(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heard.extend(await reader.readexactly(len(_EVENTS)))
        writer.write(_STREAMING + _TICK)
        heard.extend(await reader.read())  # until the client's end of input
        writer.write(b"0\r\n\r\n")
        writer.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        policy = loads(
            "docktap-policy: 1\nclients:\n- client: any\n  allow:\n"
            '  - {operation: SystemEvents, request: "GET /events"}\n'
        )
        relay, tap, sock = await _relay(tmp_path, daemon, Guard(policy))
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.setblocking(False)
        await loop.sock_connect(client, str(sock))
        await loop.sock_sendall(client, _EVENTS)
        response = bytearray()
        while len(response) < len(_STREAMING + _TICK):  # the poll is on
            response.extend(await loop.sock_recv(client, 65536))
        await loop.sock_sendall(client, denied * count)
        client.shutdown(socket.SHUT_WR)
        # (The half-close waited for the 403s, which waited for the poll: nothing came.)
        while chunk := await asyncio.wait_for(loop.sock_recv(client, 1 << 20), 30):
            response.extend(chunk)
        client.close()
        await asyncio.wait_for(tap.all_closed.wait(), 30)
        await relay.close()
        assert heard == _EVENTS  # then only the end of input
        assert len(tap.chunks[(1, Direction.CLIENT)]) == len(_EVENTS + denied * count)
        poll, end, rest = bytes(response).partition(b"0\r\n\r\n")
        assert poll == _STREAMING + _TICK and end
        assert rest.count(b"HTTP/1.1 403 Forbidden\r\n") == count
        assert rest.startswith(b"HTTP/1.1 403 Forbidden\r\n")
        assert rest.count(b"denied DELETE /containers/c") == count

    asyncio.run(main())


def test_a_client_that_ends_before_the_daemon_is_reached_ends_its_input_in_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client pipelines a ping, a denial and another ping, and half-closes, all before
    # docktap has reached the daemon. Once it had, the end of input went at once, ahead of the
    # second ping, which the gate holds behind the denial: the ping was then written after
    # write_eof, which raised, and the daemon never had it.
    reached = asyncio.Event()
    ended = asyncio.Event()
    real_connect = connecting.connect

    async def late(
        factory: Callable[[], asyncio.BaseProtocol], upstream: Endpoint
    ) -> asyncio.BaseTransport:
        await reached.wait()
        return await real_connect(factory, upstream)

    monkeypatch.setattr(relay_module, "connect", late)
    heard = bytearray()

    async def daemon(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heard.extend(await reader.readexactly(len(_PING)))
        writer.write(_PONG)
        heard.extend(await reader.read())  # the second ping, then the end of input
        writer.write(_PONG)
        writer.close()

    class EndingTap(RecordingTap):
        def eof(self, conn: int, direction: Direction, t: float) -> None:
            super().eof(conn, direction, t)
            if direction is Direction.CLIENT:
                ended.set()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, object]] = []
        loop.set_exception_handler(lambda _, context: errors.append(context))
        relay, tap, sock = await _relay(tmp_path, daemon, Guard(loads(_ALLOW_PING)), EndingTap())
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.setblocking(False)
        await loop.sock_connect(client, str(sock))
        await loop.sock_sendall(client, _PING + _DENIED_DELETE + _PING)
        client.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(ended.wait(), 5)  # docktap has had the client's end
        reached.set()
        response = b""
        while chunk := await asyncio.wait_for(loop.sock_recv(client, 65536), 5):
            response += chunk
        client.close()
        await asyncio.wait_for(tap.all_closed.wait(), 5)
        await relay.close()
        assert heard == _PING + _PING and errors == []
        assert response.startswith(_PONG + b"HTTP/1.1 403 Forbidden\r\n")
        assert response.endswith(_PONG)

    asyncio.run(main())
