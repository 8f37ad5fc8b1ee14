"""Where docktap accepts clients: private sockets, live ones never replaced, loopback TCP.

The attacks happen in a world-writable directory without the sticky bit, where another user
(nobody, 65534: the suite runs as root) may rename anything over anything.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import stat
from pathlib import Path

import pytest
from tapping import docktap

from docktap.binding import ListenError
from docktap.listening import DescriptorShortage, bound_port, listen
from docktap.upstream import Endpoint, parse_endpoint

NOBODY = 65534
CAPTURE = Path(__file__).resolve().parent.parent / "captures" / "run.jsonl"


def _factory() -> asyncio.Protocol:
    return asyncio.Protocol()


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o777)
    return directory


@pytest.mark.parametrize("mode", [0o600, 0o660])
def test_a_unix_socket_gets_the_mode_asked_for(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "d.sock"

    async def main() -> None:
        server = await listen(Endpoint(path=str(path)), _factory, mode)
        try:
            assert stat.S_IMODE(os.lstat(path).st_mode) == mode
            assert bound_port(server) is None
            _, writer = await asyncio.open_unix_connection(str(path))  # it accepts
            writer.close()
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_tcp_binds_loopback_only_and_says_which_port(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(ListenError, match=r"refusing to listen on 0\.0\.0\.0"):
            await listen(Endpoint(host="0.0.0.0", port=0), _factory)
        server = await listen(Endpoint(host="127.0.0.1", port=0), _factory)
        try:
            port = bound_port(server)
            assert port is not None and port > 0
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_ssh_is_for_upstreams_only() -> None:
    async def main() -> None:
        with pytest.raises(ListenError, match=r"cannot listen on ssh://box: docktap listens on"):
            await listen(parse_endpoint("ssh://box"), _factory)

    asyncio.run(main())


def test_a_directory_that_is_not_there_is_a_listen_error(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(ListenError, match=r"cannot listen on .*: No such file or directory"):
            await listen(Endpoint(path=str(tmp_path / "no" / "d.sock")), _factory)

    asyncio.run(main())


def test_a_symlink_renamed_over_the_new_socket_does_not_get_its_mode(
    shared: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("root's own\n")
    victim.chmod(0o644)
    sock = shared / "docker.sock"
    seen: list[int] = []

    def attacker() -> None:
        """Swap a link in as soon as the socket shows up at its path."""
        seen.append(stat.S_IMODE(os.lstat(sock).st_mode))
        planted = shared / "planted"
        planted.symlink_to(victim)
        os.lchown(planted, NOBODY, NOBODY)
        os.rename(planted, sock)

    async def main() -> None:
        # Binding gives the loop no turn, so the first moment anything else runs while the
        # socket is at its path is when listen says it is ready, by returning: then it swaps.
        assert not os.path.lexists(sock)
        server = await listen(Endpoint(path=str(sock)), _factory, socket_mode=0o666)
        attacker()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert victim.read_text() == "root's own\n"
    assert seen == [0o666]  # the socket never shows at its path with another mode


def test_the_socket_accepts_with_its_mode_and_leaves_no_private_directory(shared: Path) -> None:
    sock = shared / "docker.sock"

    async def main() -> None:
        server = await listen(Endpoint(path=str(sock)), _factory, socket_mode=0o660)
        info = os.lstat(sock)
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o660
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.setblocking(False)
        await asyncio.get_running_loop().sock_connect(client, str(sock))
        client.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
    assert sorted(p.name for p in shared.iterdir()) == ["docker.sock"]


def test_a_failed_bind_leaves_nothing_behind(shared: Path) -> None:
    deep = shared / ("d" * 110)  # past the 107 bytes of a unix socket's path
    deep.mkdir()

    async def main() -> None:
        with pytest.raises(ListenError, match=r"cannot listen on .*: AF_UNIX path too long"):
            await listen(Endpoint(path=str(deep / "s.sock")), _factory)

    asyncio.run(main())
    assert list(deep.iterdir()) == []


@pytest.mark.parametrize("command", ["proxy", "replay"])
def test_the_cli_refuses_a_setuid_socket_before_listening(command: str, tmp_path: Path) -> None:
    sock = tmp_path / "p.sock"
    args = [str(CAPTURE)] if command == "replay" else ["-o", str(tmp_path / "c.jsonl")]
    result = docktap(command, *args, "--listen", str(sock), "--socket-mode", "4770", timeout=30)
    assert result.returncode == 2
    assert "Invalid value for '--socket-mode': 4770: a socket takes only permission bits" in (
        result.stderr.decode()
    )
    assert not sock.exists()
    assert not (tmp_path / "c.jsonl").exists()


class _Held(asyncio.Protocol):
    """A connection the server keeps open, as a relayed one would be; `grown` is set as each
    is made."""

    def __init__(self, made: list[_Held], grown: asyncio.Event) -> None:
        self.made = made
        self.grown = grown

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(self)
        self.grown.set()


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _limit_leaving(free: int) -> int:
    """The descriptor limit that leaves `free` descriptors to open (the lowest free are used)."""
    # The listing's own descriptor is in the list, and closed by now.
    used = {fd for fd in map(int, os.listdir("/proc/self/fd")) if _is_open(fd)}
    limit = 0
    while free:
        free -= limit not in used
        limit += 1
    return limit


async def _answer(client: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    received = b""
    try:
        while chunk := await loop.sock_recv(client, 65536):
            received += chunk
    except ConnectionResetError:  # closed with our request unread: after its answer
        pass
    return received


def test_out_of_descriptors_waiting_clients_get_503_and_it_is_said_once(tmp_path: Path) -> None:
    path = tmp_path / "d.sock"
    said: list[str] = []
    logged: list[dict[str, object]] = []
    held: list[_Held] = []
    heads = [b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n", b"HEAD /_ping HTTP/1.1\r\nHost: d\r\n\r\n"]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: logged.append(context))
        grown = asyncio.Event()
        server = await listen(
            Endpoint(path=str(path)),
            lambda: _Held(held, grown),
            shortage=DescriptorShortage(said.append),
        )
        clients = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(20)]
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        # Room for 5 more descriptors: 5 clients accepted, then none. Only for a moment: the
        # clients already have theirs, and nothing else in this process opens any meanwhile.
        resource.setrlimit(resource.RLIMIT_NOFILE, (_limit_leaving(5), hard))
        try:
            for i, client in enumerate(clients):
                client.connect(str(path))  # into the backlog, whether accepted or not
                client.sendall(heads[i % 2])
                client.setblocking(False)
            answers = await asyncio.gather(*(_answer(c) for c in clients[5:]))
            assert len(held) == 5
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for i, answer in enumerate(answers, start=5):
            assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer
            if i % 2:  # HEAD: no body
                assert answer.endswith(b"Connection: close\r\n\r\n")
            else:
                body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
                assert body["message"].startswith("docktap is out of file descriptors (Too many")
        # Descriptors are back: the next client is accepted as usual.
        grown.clear()
        late = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        late.connect(str(path))
        await asyncio.wait_for(grown.wait(), 30)  # the listener accepted it, made its protocol
        assert len(held) == 6
        for client in [*clients, late]:
            client.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
    assert logged == []  # asyncio was not left to log anything
    assert len(said) == 1
    assert said[0].startswith("out of file descriptors (Too many open files; the limit is ")


def test_a_shortage_is_said_at_once_then_at_most_every_ten_seconds() -> None:
    said: list[str] = []
    now = [100.0]
    shortage = DescriptorShortage(said.append, clock=lambda: now[0])
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    for t in (100.0, 101.0, 109.9, 110.5, 111.0, 130.0):
        now[0] = t
        shortage.refuse("Too many open files")
    assert said == [
        f"out of file descriptors (Too many open files; the limit is {limit}): new clients get "
        "503 until connections close; open connections go on",
        "still out of file descriptors: 3 more clients got 503 in the last 10 s",
        "still out of file descriptors: 2 more clients got 503 in the last 20 s",
    ]
    assert shortage.refused == 6
