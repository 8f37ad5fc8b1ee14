"""The replay daemon over real unix sockets, driven by a raw client that sees every byte.

The clients here parse responses with h11 (or read raw stream bytes) so that the framing the
server chose is visible: chunk boundaries, Content-Length, half-closes and closes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import h11
import pytest
from synthetic import CANCELED, capture_of, given_up_wait, large_download
from tapping import DOCKTAP, one

from docktap.capture.reader import Capture, load, loads
from docktap.redact import Redactor
from docktap.replay.script import scripts
from docktap.replay.server import MISS_STATUS, STALL_TIMEOUT, ReplayServer
from docktap.replay.store import Play, build_store
from docktap.upstream import Endpoint

CAPTURES = Path(__file__).resolve().parent.parent / "captures"


def _serve(
    capture: Capture,
    sock: Path,
    body: Callable[[ReplayServer], Awaitable[None]],
    speed: float = 0.0,
    stall_timeout: float = STALL_TIMEOUT,
) -> ReplayServer:
    server = ReplayServer(
        build_store(scripts(capture, "c.jsonl")), speed, Redactor(), stall_timeout=stall_timeout
    )

    async def main() -> None:
        await server.listen(Endpoint(path=str(sock)))
        try:
            await asyncio.wait_for(body(server), 30)
        finally:
            await server.close()

    asyncio.run(main())
    return server


class _Client:
    """An HTTP/1.1 client over a unix socket that keeps each response's raw framing."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, sock: Path) -> _Client:
        return cls(*await asyncio.open_unix_connection(str(sock)))

    def send(self, method: str, target: str, body: bytes = b"") -> None:
        headers = [("Host", "docker"), ("Content-Length", str(len(body)))]
        self.writer.write(
            self.conn.send(h11.Request(method=method, target=target, headers=headers)) or b""
        )
        if body:
            self.writer.write(self.conn.send(h11.Data(data=body)) or b"")
        self.writer.write(self.conn.send(h11.EndOfMessage()) or b"")

    async def event(self) -> h11.Event:
        while True:
            event = self.conn.next_event()
            if isinstance(event, h11.Event):
                return event
            self.conn.receive_data(await self.reader.read(65536))

    async def response(self) -> tuple[h11.Response, list[bytes]]:
        head = await self.event()
        assert isinstance(head, h11.Response), head
        pieces: list[bytes] = []
        while not isinstance(event := await self.event(), h11.EndOfMessage):
            assert isinstance(event, h11.Data), event
            pieces.append(bytes(event.data))
        return head, pieces


def _recorded(capture: Capture, operation: str) -> tuple[str, str, bytes]:
    ex = one(capture, operation)
    return ex.method, ex.target, bytes(ex.request_body)


def test_a_chunked_stream_keeps_its_recorded_chunks(tmp_path: Path) -> None:
    capture = load(CAPTURES / "events.jsonl")
    method, target, _ = _recorded(capture, "SystemEvents")
    recorded = [bytes(r["text"], "utf-8") for r in capture.records if r["type"] == "body"]
    sock = tmp_path / "d.sock"
    chunks: list[bytes] = []

    async def client(server: ReplayServer) -> None:
        c = await _Client.open(sock)
        # h11 gives one Data per chunk when each chunk arrives whole; read the raw framing.
        c.send(method, target)
        raw = b""
        while not raw.endswith(b"0\r\n\r\n"):
            raw += await c.reader.read(65536)
        head, _, body = raw.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head
        while body != b"0\r\n\r\n":
            size, _, rest = body.partition(b"\r\n")
            length = int(size, 16)
            chunks.append(rest[:length])
            body = rest[length + 2 :]

    _serve(capture, sock, client)
    assert chunks == recorded
    assert len(chunks) > 20


def test_content_length_matches_the_body_sent(tmp_path: Path) -> None:
    capture = load(CAPTURES / "run.jsonl")
    sock = tmp_path / "d.sock"

    async def client(server: ReplayServer) -> None:
        c = await _Client.open(sock)
        c.send(*_recorded(capture, "ContainerCreate"))
        head, body = await c.response()
        assert head.status_code == 201
        created = json.loads(b"".join(body))
        assert len(created["Id"]) == 64
        # HEAD /_ping, answered with no body, and the connection carries on.
        c.conn.start_next_cycle()
        c.send("HEAD", "/_ping")
        head, body = await c.response()
        assert (head.status_code, body) == (200, [])

    _serve(capture, sock, client)


def test_a_client_that_expects_100_continue_is_asked_for_its_body(tmp_path: Path) -> None:
    # curl -T sends `Expect: 100-continue` and holds the body back until the server says 100
    # Continue, as dockerd does, or its timeout runs out. This client waits for good.
    capture = load(CAPTURES / "run.jsonl")
    method, target, body = _recorded(capture, "ContainerCreate")
    sock = tmp_path / "d.sock"

    async def client(server: ReplayServer) -> None:
        c = await _Client.open(sock)
        headers = [("Host", "docker"), ("Content-Length", str(len(body)))]
        headers.append(("Expect", "100-continue"))
        request = h11.Request(method=method, target=target, headers=headers)
        c.writer.write(c.conn.send(request) or b"")
        go_on = await c.event()
        assert isinstance(go_on, h11.InformationalResponse) and go_on.status_code == 100
        c.writer.write(c.conn.send(h11.Data(data=body)) or b"")
        c.writer.write(c.conn.send(h11.EndOfMessage()) or b"")
        head, answer = await c.response()
        assert head.status_code == 201
        assert len(json.loads(b"".join(answer))["Id"]) == 64
        # Once: a request without the header on the same connection gets no 100.
        c.conn.start_next_cycle()
        c.send("HEAD", "/_ping")
        head, answer = await c.response()
        assert (head.status_code, answer) == (200, [])

    _serve(capture, sock, client)


def test_a_miss_is_a_docker_error_and_the_connection_carries_on(tmp_path: Path) -> None:
    capture = load(CAPTURES / "run.jsonl")
    sock = tmp_path / "d.sock"

    async def client(server: ReplayServer) -> None:
        c = await _Client.open(sock)
        method, target, body = _recorded(capture, "ContainerCreate")
        c.send(method, target, body.replace(b"exit 3", b"exit 4"))
        head, pieces = await c.response()
        assert head.status_code == MISS_STATUS
        assert dict(head.headers)[b"docktap-replay"] == b"miss"
        message = json.loads(b"".join(pieces))["message"]
        assert message == (
            "docktap replay: no recorded exchange for POST /v1.41/containers/create; "
            'closest: #2, body differs at $.Cmd[2]: recorded "echo out; echo err >&2; exit 3", '
            'got "echo out; echo err >&2; exit 4"'
        )
        c.conn.start_next_cycle()
        c.send("GET", "/_ping")
        head, _ = await c.response()
        assert head.status_code == 200

    server = _serve(capture, sock, client)
    assert len(server.store.misses) == 1


def _old_mask(secret: bytes) -> str:
    """A secret as captures masked it before masks were keyed: its unsalted sha256."""
    return f"<redacted len~8 sha256:{hashlib.sha256(secret).hexdigest()[:8]}>"


@pytest.mark.parametrize(
    "recorded",
    [_old_mask(b"hunter2!"), Redactor(key=b"the recording's").mask("hunter2!")],
    ids=["unkeyed", "another key"],
)
def test_a_secret_masked_when_recorded_matches_the_one_sent_now(
    tmp_path: Path, recorded: str
) -> None:
    """The replay masks what comes in with a key of its own, not the recording's (never
    written) nor the unkeyed sha256 of older captures: masks compare by length class."""
    body = {"Image": "bb", "Env": [f"DB_PASSWORD={recorded}", "PLAIN=x"]}
    commit = "/v1.41/commit?container=box&changes=" + quote(f"ENV DB_PASSWORD={recorded}", safe="")
    capture = capture_of(
        ("ContainerCreate", "POST", "/v1.41/containers/create", body),
        ("ImageCommit", "POST", commit, b""),
        answer_headers=(("Content-Length", "0"),),
    )
    sock = tmp_path / "d.sock"

    async def answer(target: str, body: object = None) -> tuple[int, bytes]:
        c = await _Client.open(sock)  # one each: the capture has each on a connection of its own
        c.send("POST", target, b"" if body is None else json.dumps(body).encode())
        head, pieces = await c.response()
        c.writer.close()
        return head.status_code, b"".join(pieces)

    async def client(server: ReplayServer) -> None:
        create = "/v1.41/containers/create"
        sent = {"Image": "bb", "Env": ["DB_PASSWORD=hunter2!", "PLAIN=x"]}
        assert await answer(create, sent) == (201, b"")
        assert await answer("/v1.41/commit?container=box&changes=ENV+DB_PASSWORD%3Dhunter2%21") == (
            201,
            b"",
        )
        # Of another length class, the secret sent is not the one recorded.
        longer = {"Image": "bb", "Env": ["DB_PASSWORD=hunter2!hunter2!", "PLAIN=x"]}
        status, said = await answer(create, longer)
        assert status == MISS_STATUS
        message = json.loads(said)["message"]
        assert 'recorded "DB_PASSWORD=<redacted len~8>", got "DB_PASSWORD=<redacted len~16>"' in (
            message
        )
        assert "hunter2" not in message

    _serve(capture, sock, client)


def test_unparseable_bytes_close_the_connection_and_others_go_on(tmp_path: Path) -> None:
    capture = load(CAPTURES / "version.jsonl")
    sock = tmp_path / "d.sock"

    async def client(server: ReplayServer) -> None:
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(b"\x16\x03\x01 not http\r\n\r\n")
        assert await reader.read() == b""  # closed, not hung
        c = await _Client.open(sock)
        c.send("GET", "/_ping")
        head, _ = await c.response()
        assert head.status_code == 200

    _serve(capture, sock, client)


def test_hijacked_output_waits_for_the_clients_stdin(tmp_path: Path) -> None:
    """`docker run -i cat`: the attach stream echoes only what the client sent, then ends."""
    capture = load(CAPTURES / "run-stdin.jsonl")
    attach = one(capture, "ContainerAttach")
    start = one(capture, "ContainerStart")
    wait = one(capture, "ContainerWait")
    stdin = bytes(attach.stream["client"])
    sock = tmp_path / "d.sock"

    async def client(server: ReplayServer) -> None:
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(
            f"POST {attach.target} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n"
            "Upgrade: tcp\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
        waiter = await _Client.open(sock)
        waiter.send(wait.method, wait.target)
        starter = await _Client.open(sock)
        starter.send(start.method, start.target)
        writer.write(stdin)
        writer.write_eof()
        output = await reader.read()  # until the recorded half-close and close
        assert output == bytes(attach.stream["daemon"])
        # The start answer came after the output in the recording, and comes after it here.
        head_start, _ = await starter.response()
        assert head_start.status_code == 204

    _serve(capture, sock, client)


def test_output_is_held_until_the_client_sends_what_preceded_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture = load(CAPTURES / "run-stdin.jsonl")
    attach = one(capture, "ContainerAttach")
    start = one(capture, "ContainerStart")
    sock = tmp_path / "d.sock"

    async def client(server: ReplayServer) -> None:
        held_back = _refused_leniently(server, monkeypatch, "ContainerAttach")
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(f"POST {attach.target} HTTP/1.1\r\nHost: d\r\n\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")
        reading = asyncio.create_task(reader.read(1))
        starter = await _Client.open(sock)
        starter.send(start.method, start.target)
        # Nothing may come on the stream before stdin, not even once the server has given up
        # waiting for related requests; then a round trip on another connection shows it has
        # had every chance to send it.
        await held_back.wait()
        pinger = await _Client.open(sock)
        pinger.send("GET", "/_ping")
        await pinger.response()
        assert not reading.done()
        writer.write(bytes(attach.stream["client"]))
        writer.write_eof()
        assert await reading + await reader.read() == bytes(attach.stream["daemon"])

    # Short: the server gives up on the requests this client never makes (the wait) at once.
    _serve(capture, sock, client, stall_timeout=0.01)


def test_an_answer_to_a_client_that_gave_up_is_held_until_this_one_does(tmp_path: Path) -> None:
    """dockerd wrote the ContainerWait body only after the client half-closed (its timeout):
    the replay's client gets nothing past the head until it gives up too."""
    capture = given_up_wait()
    wait = capture.exchanges[0]
    sock = tmp_path / "d.sock"

    async def client(server: ReplayServer) -> None:
        c = await _Client.open(sock)
        c.send(wait.method, wait.target)
        head = await c.event()
        assert isinstance(head, h11.Response) and head.status_code == 200
        reading = asyncio.create_task(c.reader.read(1))
        pinger = await _Client.open(sock)  # a round trip: the server had every chance
        pinger.send("GET", "/_ping")
        await pinger.response()
        assert c.conn.next_event() is h11.NEED_DATA  # nothing came with the head either
        assert not reading.done()
        c.writer.write_eof()
        rest = await reading + await c.reader.read()  # to the end: the server closes
        c.conn.receive_data(rest)
        c.conn.receive_data(b"")
        body = await c.event()
        assert isinstance(body, h11.Data) and body.data == CANCELED
        assert isinstance(await c.event(), h11.EndOfMessage)

    _serve(capture, sock, client)


def _refused_leniently(
    server: ReplayServer, monkeypatch: pytest.MonkeyPatch, operation: str
) -> asyncio.Event:
    """Set once the server, done waiting for related requests, is still told to hold a piece
    of `operation`'s answer back."""
    refused = asyncio.Event()
    ready = server.store.ready

    def watched(play: Play, lenient: bool = False) -> bool:
        answer = ready(play, lenient)
        if lenient and not answer and play.recording.exchange.operation == operation:
            refused.set()
        return answer

    monkeypatch.setattr(server.store, "ready", watched)
    return refused


def _cut_before_the_end(path: Path) -> Capture:
    """The capture as if the client had left mid-stream: no end record for the response."""
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if '"type":"end"' not in line or '"seq":2' not in line]
    kept = [line for line in kept if '"type":"end-of-capture"' not in line]
    return loads("".join(kept))


def test_an_endless_stream_stays_open_until_the_client_leaves(tmp_path: Path) -> None:
    capture = _cut_before_the_end(CAPTURES / "events.jsonl")
    method, target, _ = _recorded(capture, "SystemEvents")
    expected = [bytes(r["text"], "utf-8") for r in capture.records if r["type"] == "body"]
    sock = tmp_path / "d.sock"

    async def client(server: ReplayServer) -> None:
        c = await _Client.open(sock)
        c.send(method, target)
        head = await c.event()
        assert isinstance(head, h11.Response)
        got = b""
        while len(got) < sum(map(len, expected)):
            event = await c.event()
            assert isinstance(event, h11.Data), event
            got += event.data
        assert got == b"".join(expected)
        reading = asyncio.create_task(c.reader.read(1))
        other = await _Client.open(sock)
        other.send("GET", "/_ping")
        await other.response()
        assert not reading.done()  # neither more bytes nor the end: the stream is open
        assert server.connections == 2
        c.writer.close()
        reading.cancel()
        await c.writer.wait_closed()
        # The server lets the connection go once the client has; the other's stays open.
        await server.until_connections(1)
        assert server.connections == 1

    _serve(capture, sock, client)


def test_speed_one_keeps_the_recorded_pace(tmp_path: Path) -> None:
    capture = load(CAPTURES / "run.jsonl")
    create = one(capture, "ContainerCreate")
    took = (create.ended_mono or 0) - create.started_mono
    assert took > 0.1
    sock = tmp_path / "d.sock"
    elapsed: list[float] = []

    async def client(server: ReplayServer) -> None:
        c = await _Client.open(sock)
        began = time.monotonic()
        c.send(*_recorded(capture, "ContainerCreate"))
        await c.response()
        elapsed.append(time.monotonic() - began)

    _serve(capture, sock, client, speed=1.0)
    assert elapsed[0] >= took * 0.95


def test_docker_run_gets_its_answers_in_the_recorded_order(tmp_path: Path) -> None:
    """Attach output only after start; the start answer after it; the exit code last."""
    capture = load(CAPTURES / "run.jsonl")
    attach, wait, start = (
        one(capture, op) for op in ("ContainerAttach", "ContainerWait", "ContainerStart")
    )
    sock = tmp_path / "d.sock"
    order: list[str] = []

    async def client(server: ReplayServer) -> None:
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(
            f"POST {attach.target} HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\n"
            "Upgrade: tcp\r\n\r\n".encode()
        )
        await reader.readuntil(b"\r\n\r\n")
        writer.write_eof()  # no stdin: the CLI half-closes at once, as recorded

        async def stream() -> None:
            assert await reader.read() == bytes(attach.stream["daemon"])
            order.append("attach ended")

        async def waiting() -> None:
            c = await _Client.open(sock)
            c.send(wait.method, wait.target)
            _, body = await c.response()
            order.append(f"wait {json.loads(b''.join(body))['StatusCode']}")

        async def starting() -> None:
            c = await _Client.open(sock)
            c.send(start.method, start.target)
            head, _ = await c.response()
            order.append(f"start {head.status_code}")

        tasks = [asyncio.create_task(stream()), asyncio.create_task(waiting())]
        # Nothing may happen before the start request: a round trip on another connection
        # gives the server every chance to get it wrong.
        pinger = await _Client.open(sock)
        pinger.send("GET", "/_ping")
        await pinger.response()
        assert order == []
        await asyncio.gather(*tasks, starting())

    _serve(capture, sock, client)
    assert order == ["start 204", "attach ended", "wait 3"]


def test_ping_is_answered_even_when_the_capture_has_none(tmp_path: Path) -> None:
    """docker-py asks /version, not /_ping: the docker CLI replaying its capture still pings."""
    capture = load(CAPTURES / "docker-py.jsonl")
    assert not any(ex.path.endswith("/_ping") for ex in capture)
    sock = tmp_path / "d.sock"

    async def client(server: ReplayServer) -> None:
        c = await _Client.open(sock)
        for method, body in (("HEAD", []), ("GET", [b"OK"])):
            c.send(method, "/_ping")
            head, pieces = await c.response()
            assert (head.status_code, pieces) == (200, body)
            assert dict(head.headers)[b"api-version"] == b"1.41"
            c.conn.start_next_cycle()

    server = _serve(capture, sock, client)
    assert server.store.misses == []


def _status_kib(pid: int, field: str) -> int:
    """A memory figure of a process from /proc/PID/status (VmRSS, VmHWM: its peak), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def test_a_client_that_pipelines_without_reading_is_not_read_either(tmp_path: Path) -> None:
    """Its requests wait in its own socket, not in the replay's memory."""
    sock = tmp_path / "replay.sock"
    process = subprocess.Popen(
        [*DOCKTAP, "replay", str(CAPTURES / "version.jsonl"), "--listen", str(sock)],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    offered = 48 << 20
    try:
        assert "replaying" in process.stderr.readline().decode()
        before = _status_kib(process.pid, "VmRSS")
        request = b"GET /v1.41/version HTTP/1.1\r\nHost: docker\r\n\r\n"
        chunk = request * ((64 << 10) // len(request))
        sent = 0
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(sock))
            client.settimeout(3)  # a send blocked this long: the replay stopped reading
            try:
                while sent < offered:
                    sent += client.send(chunk)
            except TimeoutError:
                pass
            grown = _status_kib(process.pid, "VmHWM") - before
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stderr.close()
    assert sent < offered // 4, f"the replay took {sent >> 20} MiB from a client that never read"
    assert grown < 16 << 10, f"the replay grew by {grown >> 10} MiB"


def test_a_large_recorded_body_is_read_from_the_capture_as_it_is_served(tmp_path: Path) -> None:
    """The replay's memory does not grow with the bodies it serves: a 128 MiB download costs
    it less than half that at its peak (held in memory, it took over three times the body)."""
    size = 128 << 20
    capture = tmp_path / "download.jsonl"
    digest = large_download(capture, size)
    sock = tmp_path / "replay.sock"
    process = subprocess.Popen(
        [*DOCKTAP, "replay", str(capture), "--listen", str(sock)],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    got = hashlib.sha256()
    received = 0
    try:
        assert "replaying" in process.stderr.readline().decode()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(sock))
            conn = h11.Connection(h11.CLIENT)
            target = "/v1.41/containers/box/archive?path=/big"
            head = conn.send(h11.Request(method="GET", target=target, headers=[("Host", "d")]))
            client.sendall((head or b"") + (conn.send(h11.EndOfMessage()) or b""))
            while not isinstance(event := conn.next_event(), h11.EndOfMessage):
                if event is h11.NEED_DATA:
                    conn.receive_data(client.recv(1 << 20))
                elif isinstance(event, h11.Data):
                    got.update(event.data)
                    received += len(event.data)
                else:
                    assert isinstance(event, h11.Response) and event.status_code == 200, event
        peak = _status_kib(process.pid, "VmHWM") << 10
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stderr.close()
    assert (received, got.digest()) == (size, digest)
    assert peak < size // 2, f"the replay peaked at {peak >> 20} MiB serving {size >> 20} MiB"
