"""Where docktap accepts clients: private sockets, live ones never replaced, loopback TCP."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path

import pytest

from docktap.listening import ListenError, bound_port, clear_stale_socket, is_loopback, listen
from docktap.upstream import Endpoint


def _factory() -> asyncio.Protocol:
    return asyncio.Protocol()


def test_loopback_hosts() -> None:
    assert all(is_loopback(h) for h in ("localhost", "127.0.0.1", "127.1.2.3", "::1"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.1", "example.com", "", None))


def test_a_dead_socket_is_removed_and_nothing_else_is_touched(tmp_path: Path) -> None:
    dead = tmp_path / "dead.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(dead))
    sock.close()  # bound, never listening: connecting is refused
    clear_stale_socket(str(dead))
    assert not dead.exists()
    clear_stale_socket(str(tmp_path / "absent.sock"))  # nothing there: nothing to do
    plain = tmp_path / "file"
    plain.write_text("keep me")
    with pytest.raises(ListenError, match="exists and is not a socket"):
        clear_stale_socket(str(plain))
    assert plain.read_text() == "keep me"


def test_a_socket_in_use_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "live.sock"
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(path))
    live.listen()
    try:
        with pytest.raises(ListenError, match="in use by another process"):
            clear_stale_socket(str(path))
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        live.close()


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


def test_a_directory_that_is_not_there_is_a_listen_error(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(ListenError, match=r"cannot listen on .*: No such file or directory"):
            await listen(Endpoint(path=str(tmp_path / "no" / "d.sock")), _factory)

    asyncio.run(main())
