"""Where docktap accepts Docker clients: a unix socket or a loopback TCP port, opened safely.

The relay and the replay daemon both stand in for docker.sock, and whoever can connect to it
can ask for root on the host. So a socket is created with no access for others and widened
only on request, a path in use by a live process (or by anything that is not a socket) is
never replaced, and TCP is refused on anything but loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import stat
from collections.abc import Callable

from docktap.upstream import Endpoint

# asyncio's default backlog of 100 makes a burst of clients (parallel `docker run`s, each with
# several connections) fail to connect with EAGAIN while the loop is busy.
_BACKLOG = socket.SOMAXCONN


class ListenError(Exception):
    """The endpoint cannot be listened on; the message says why."""


def is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def clear_stale_socket(path: str) -> None:
    """Remove a dead socket left by an earlier run; refuse to touch anything else."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"{path} exists and is not a socket; not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
        return
    except OSError as exc:
        raise ListenError(f"cannot check existing socket {path}: {exc.strerror}") from exc
    finally:
        probe.close()
    raise ListenError(f"{path} is in use by another process; not replacing it")


async def listen(
    endpoint: Endpoint,
    factory: Callable[[], asyncio.BaseProtocol],
    socket_mode: int = 0o600,
) -> asyncio.Server:
    """A server accepting on `endpoint`, each connection handled by a protocol from `factory`."""
    loop = asyncio.get_running_loop()
    if endpoint.path is not None:
        clear_stale_socket(endpoint.path)
        # Create the socket with no access for others, then widen it if asked: never a
        # window in which another user could connect.
        old_umask = os.umask(0o177)
        try:
            server = await loop.create_unix_server(factory, endpoint.path, backlog=_BACKLOG)
        except OSError as exc:
            raise ListenError(f"cannot listen on {endpoint.path}: {exc.strerror}") from exc
        finally:
            os.umask(old_umask)
        os.chmod(endpoint.path, socket_mode)
        return server
    if not is_loopback(endpoint.host):
        raise ListenError(
            f"refusing to listen on {endpoint.host}: the Docker API is root access; "
            "use a loopback address"
        )
    try:
        return await loop.create_server(
            factory, endpoint.host, endpoint.port or 0, backlog=_BACKLOG
        )
    except OSError as exc:
        raise ListenError(f"cannot listen on {endpoint.url}: {exc.strerror}") from exc


def bound_port(server: asyncio.Server) -> int | None:
    """The TCP port a server actually bound (useful with port 0); None for a unix socket."""
    name = server.sockets[0].getsockname()
    return name[1] if isinstance(name, tuple) else None
