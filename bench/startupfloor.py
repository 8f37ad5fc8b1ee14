"""The least a Python relay in front of a command can add to it: start-up floors.

    python bench/startupfloor.py asyncio|selectors [--recorder] -- COMMAND...

Binds a socket in a private directory, starts COMMAND with DOCKER_HOST pointing at it, and
relays every connection, byte for byte, to the unix socket DOCKER_HOST names, until COMMAND
exits; then exits with its status. Nothing is recorded, parsed or checked. With `asyncio` the
relay is asyncio's streams, imported as docktap imports asyncio for a unix socket (ssl kept
out); with `selectors` it is a select loop on blocking sockets, no asyncio at all. With
`--recorder`, a fork made as the process begins imports docktap's recording engine, as
docktap's standby recorder does, and the relay waits for it at the end.

bench/startup.py --floors times these next to `docktap run -q`, in the same rounds: what is
left between docktap and the floor is docktap's own; the floor itself is the interpreter's,
asyncio's and the recorder's imports, and the hops of a relay.
"""

from __future__ import annotations

import os
import sys

_MODE, _RECORDER = sys.argv[1], sys.argv[2] == "--recorder"
_COMMAND = sys.argv[sys.argv.index("--") + 1 :]
if _RECORDER and (_importer := os.fork()) == 0:
    import docktap.recording.engine  # noqa: F401

    os._exit(0)

import contextlib  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402

_UPSTREAM = os.environ["DOCKER_HOST"].removeprefix("unix://")
_WORKDIR = f"/tmp/docktap-floor-{os.urandom(6).hex()}"
os.mkdir(_WORKDIR, 0o700)
_PATH = os.path.join(_WORKDIR, "docker.sock")
_LISTENER = socket.socket(socket.AF_UNIX)
_LISTENER.bind(_PATH)
_LISTENER.listen(64)
_PROCESS = subprocess.Popen(_COMMAND, env={**os.environ, "DOCKER_HOST": f"unix://{_PATH}"})
_EXITED = os.pidfd_open(_PROCESS.pid)


def _selectors() -> None:
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(_EXITED, selectors.EVENT_READ)
    selector.register(_LISTENER, selectors.EVENT_READ)
    peers: dict[socket.socket, socket.socket] = {}
    while True:
        for key, _ in selector.select():
            if key.fileobj == _EXITED:
                return
            if key.fileobj is _LISTENER:
                client, _ = _LISTENER.accept()
                daemon = socket.socket(socket.AF_UNIX)
                daemon.connect(_UPSTREAM)
                peers[client], peers[daemon] = daemon, client
                selector.register(client, selectors.EVENT_READ)
                selector.register(daemon, selectors.EVENT_READ)
                continue
            side = key.fileobj
            assert isinstance(side, socket.socket)
            try:
                data = side.recv(1 << 16)
            except OSError:
                data = b""
            if data:
                peers[side].sendall(data)
                continue
            selector.unregister(side)
            with contextlib.suppress(OSError):
                peers[side].shutdown(socket.SHUT_WR)


def _asyncio() -> None:
    sys.modules["ssl"] = None  # type: ignore[assignment]  # as docktap's relay to a unix socket
    import asyncio

    async def copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
            writer.write_eof()
        except OSError:
            pass

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from_daemon, to_daemon = await asyncio.open_unix_connection(_UPSTREAM)
        await asyncio.gather(copy(reader, to_daemon), copy(from_daemon, writer))

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()

        def exit_seen() -> None:
            loop.remove_reader(_EXITED)
            exited.set_result(None)

        loop.add_reader(_EXITED, exit_seen)
        await asyncio.start_unix_server(connected, sock=_LISTENER)
        await exited
        _finish()

    asyncio.run(serve())


def _finish() -> None:
    """Leave as docktap does once its command has exited: the connections left as they are,
    the socket's directory gone, the command's status."""
    code = _PROCESS.wait()
    if _RECORDER:
        os.waitpid(_importer, 0)
    os.unlink(_PATH)
    os.rmdir(_WORKDIR)
    os._exit(code)


if _MODE == "selectors":
    _selectors()
    _finish()
else:
    _asyncio()
