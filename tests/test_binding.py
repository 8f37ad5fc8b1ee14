"""Binding docktap's listening sockets without asyncio: modes, stale and live sockets, loopback.

The event loop's side (accepting, the descriptor reserve) is tested in test_listening.py.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from docktap.binding import ListenError, bind, clear_stale_socket, is_loopback, parse_socket_mode
from docktap.upstream import Endpoint


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


@pytest.mark.parametrize("text", ["4700", "2660", "1777", "7777", "10000"])
def test_special_bits_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not the setuid, setgid or sticky bit"):
        parse_socket_mode(text)


def test_modes_are_octal() -> None:
    assert parse_socket_mode("660") == 0o660
    assert parse_socket_mode("0600") == 0o600
    with pytest.raises(ValueError, match=r"'u\+rw' is not an octal mode such as 600"):
        parse_socket_mode("u+rw")


def test_a_bound_socket_listens_before_anything_accepts(tmp_path: Path) -> None:
    """`docktap run` starts its command on this: the command's first connection must wait in
    the backlog, not be refused, until the relay accepts it."""
    path = tmp_path / "early.sock"
    (server,) = bind(Endpoint(path=str(path)), 0o600)
    try:
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        assert sorted(p.name for p in tmp_path.iterdir()) == ["early.sock"]
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(path))  # blocking: refused if the socket were not listening yet
        client.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
        accepted, _ = server.accept()
        with accepted, client:
            assert accepted.recv(100).startswith(b"GET /_ping ")
    finally:
        server.close()
