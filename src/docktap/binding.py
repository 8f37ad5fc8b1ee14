"""Binding the sockets docktap listens on, safely, and without asyncio.

The relay and the replay daemon both stand in for docker.sock, and whoever can connect to it
can ask for root on the host. So a socket appears at its path with the mode asked for (no
access for others unless widened on request), a path in use by a live process (or by anything
that is not a socket) is never replaced, and TCP is refused on anything but loopback.

It is kept apart from listening.py, which accepts on these sockets on an event loop, so that
`docktap run` can bind its socket and start the command before it imports asyncio and the
relay: the command's own start-up then overlaps docktap's, its first connections waiting in
the backlog.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat

from docktap.scratch import private_directory
from docktap.upstream import Endpoint

# asyncio's default backlog of 100 makes a burst of clients (parallel `docker run`s, each with
# several connections) fail to connect with EAGAIN while the loop is busy.
BACKLOG = socket.SOMAXCONN


# What a socket's mode may hold: setuid, setgid and sticky mean nothing good on a socket.
_PERMISSIONS = 0o777
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class ListenError(Exception):
    """The endpoint cannot be listened on; the message says why."""


def parse_socket_mode(text: str) -> int:
    """The permissions `--socket-mode` gives in octal; ValueError says why they are refused."""
    try:
        mode = int(text, 8)
    except ValueError:
        raise ValueError(f"{text!r} is not an octal mode such as 600 or 660") from None
    _check_socket_mode(mode)
    return mode


def _check_socket_mode(mode: int) -> None:
    if mode < 0 or mode & ~_PERMISSIONS:
        raise ValueError(
            f"{mode:o}: a socket takes only permission bits (at most 777), "
            "not the setuid, setgid or sticky bit"
        )


def is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    import ipaddress  # here: a unix socket, what `run` listens on, has no use for it

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


def bind(endpoint: Endpoint, socket_mode: int = 0o600) -> list[socket.socket]:
    """The sockets to accept `endpoint`'s clients on, listening already (clients wait in the
    backlog until they are accepted); ListenError says why there are none."""
    if endpoint.ssh is not None:
        raise ListenError(
            f"cannot listen on {endpoint.url}: docktap listens on a unix socket or a TCP port"
        )
    if endpoint.path is not None:
        clear_stale_socket(endpoint.path)
        try:
            sockets = [_bound_unix_socket(endpoint.path, socket_mode)]
        except OSError as exc:
            # Some errors have no strerror: "AF_UNIX path too long".
            reason = exc.strerror or str(exc)
            raise ListenError(f"cannot listen on {endpoint.path}: {reason}") from exc
    elif not is_loopback(endpoint.host):
        raise ListenError(
            f"refusing to listen on {endpoint.host}: the Docker API is root access; "
            "use a loopback address"
        )
    else:
        try:
            sockets = _bound_tcp_sockets(endpoint.host or "localhost", endpoint.port or 0)
        except OSError as exc:
            raise ListenError(f"cannot listen on {endpoint.url}: {exc.strerror}") from exc
    for sock in sockets:
        sock.listen(BACKLOG)
    return sockets


def _bound_tcp_sockets(host: str, port: int) -> list[socket.socket]:
    """A socket bound to each address of `host` (localhost may be ::1 and 127.0.0.1)."""
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        ):
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except BaseException:
        for sock in bound:
            sock.close()
        raise
    return bound


def _bound_unix_socket(path: str, mode: int) -> socket.socket:
    """A unix socket bound at `path`, where it appears with permissions `mode` already.

    Binding at `path` and then changing its mode by path would look the path up a second time:
    in a directory others can write to, a symlink renamed over the socket meanwhile would make
    the chmod (root's, often) change the link's target instead. So the socket is bound in a
    private directory made next to `path`, given its mode there through that directory's
    descriptor, and renamed into place. No umask either: it is the whole process's, threads
    included.
    """
    _check_socket_mode(mode)
    directory, name = os.path.split(os.path.abspath(path))
    parent = os.open(directory, _DIRECTORY)
    try:
        # Short, because a unix socket's path has at most 107 bytes.
        private = private_directory(".dt", directory)
        try:
            return _bind_in(parent, private, name, mode)
        finally:
            os.rmdir(os.path.basename(private), dir_fd=parent)
    finally:
        os.close(parent)


def _bind_in(parent: int, private: str, name: str, mode: int) -> socket.socket:
    inside = os.open(os.path.basename(private), _DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        made = os.fstat(inside)
        # It was made 0700; anything else means the name was taken over since.
        if made.st_uid != os.geteuid() or stat.S_IMODE(made.st_mode) != 0o700:
            raise PermissionError(errno.EPERM, f"{private} was replaced while binding")
        sock.bind(os.path.join(private, "s"))
        # Through the descriptor: if the directory was swapped after the check, the socket is
        # not in it, and this fails instead of reaching someone else's file.
        os.chmod("s", mode, dir_fd=inside)
        os.rename("s", name, src_dir_fd=inside, dst_dir_fd=parent)
    except BaseException:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink("s", dir_fd=inside)
        raise
    finally:
        os.close(inside)
    return sock
