"""A daemon at the end of ssh: one `ssh HOST -- docker system dial-stdio` per connection.

This is how the docker CLI reaches an `ssh://` host (its connhelper): every connection to the
daemon is an ssh process running `docker system dial-stdio` on the remote host, which joins its
stdin and stdout to the remote daemon's socket. docktap runs the `ssh` found on PATH, which reads
the user's own configuration, keys, agent and known hosts; it adds only what the CLI adds
(`-o ConnectTimeout=30 -T`, `-l USER`, `-p PORT`, and `--host=unix://PATH` for a URL's path).

ssh's stdin and stdout are one end of a socket pair, so that the relay's daemon side is an
ordinary asyncio socket transport: its write_eof shuts the socket's write side down, which ssh
reads as the end of its stdin and passes on, and dial-stdio half-closes the daemon socket in
turn (`docker run -i` ends stdin that way). dial-stdio exits once the daemon has sent all it
will, ssh with it, and the socket then ends for docktap too.

dial-stdio says nothing until asked, so a failed login, a host key ssh does not know or no
`docker` on the remote PATH would otherwise only show as a connection that ends. connect sends
a `/_ping` first and reads its answer before the connection is handed over: what fails there is
an UpstreamError naming ssh's exit status and the last line ssh printed on stderr, which the
relay answers with a 502. The probe is docktap's own: no tap sees it.

The process lives as long as the connection. When the connection is lost, ssh is terminated
(SIGTERM, then SIGKILL after a grace period, as the CLI does) and reaped; shutting the event
loop down kills and reaps the ones still running. ssh runs in a session of its own, as the CLI
runs it: Ctrl-C at docktap's terminal is for docktap, and ssh has no terminal to prompt on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Callable, Coroutine

from docktap.upstream import SSHTarget, UpstreamError

# What the docker CLI adds to every ssh command line (connhelper.go).
_SSH_FLAGS = ("-o", "ConnectTimeout=30", "-T")
_TERMINATE_GRACE = 3.0
# How long ssh has to exit once its end of the socket has closed, before its status is unknown.
_EXIT_WAIT = 5.0
_STDERR_KEPT = 4096
_PROBE = b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"
_PROBE_LIMIT = 64 << 10
_READ_SIZE = 256 << 10
# Reapers of the running ssh processes: the loop only holds weak references to tasks.
_reapers: set[asyncio.Task[None]] = set()


def command(target: SSHTarget) -> list[str]:
    """The ssh command line the docker CLI runs for `target`."""
    argv = ["ssh"]
    if target.user:
        argv += ["-l", target.user]
    if target.port is not None:
        argv += ["-p", str(target.port)]
    remote = "docker system dial-stdio"
    if target.socket is not None:
        # The remote shell reads the command: the path is quoted for it.
        remote = f"docker {_shell_quote('--host=unix://' + target.socket)} system dial-stdio"
    return [*argv, *_SSH_FLAGS, "--", target.host, remote]


def _shell_quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


class _Stderr:
    """The end of what ssh wrote on stderr: its last line says why it gave up."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.kept = b""
        self.task = asyncio.get_running_loop().create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(_STDERR_KEPT):
            self.kept = (self.kept + chunk)[-_STDERR_KEPT:]

    def last_line(self) -> str:
        lines = [line.strip() for line in self.kept.decode(errors="replace").splitlines()]
        return next((line for line in reversed(lines) if line), "")


class _Tied(asyncio.BufferedProtocol):
    """The application's protocol on the socket, which notes when the connection is gone."""

    def __init__(self, app: asyncio.BaseProtocol) -> None:
        self.app = app
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # A plain Protocol gets what is read as bytes, through a buffer of our own.
        self.buffer = (
            None if isinstance(app, asyncio.BufferedProtocol) else memoryview(bytearray(_READ_SIZE))
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.app.connection_made(transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.buffer is None:
            assert isinstance(self.app, asyncio.BufferedProtocol)
            return memoryview(self.app.get_buffer(sizehint))
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self.buffer is None:
            assert isinstance(self.app, asyncio.BufferedProtocol)
            self.app.buffer_updated(nbytes)
        else:
            assert isinstance(self.app, asyncio.Protocol)
            self.app.data_received(bytes(self.buffer[:nbytes]))

    def eof_received(self) -> bool | None:
        if isinstance(self.app, asyncio.Protocol | asyncio.BufferedProtocol):
            return self.app.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self.app.connection_lost(exc)
        finally:
            if not self.lost.done():
                self.lost.set_result(None)

    def pause_writing(self) -> None:
        self.app.pause_writing()

    def resume_writing(self) -> None:
        self.app.resume_writing()


class _Process:
    """One ssh process: signalled through a pidfd, so never a stranger that took its pid.

    asyncio's own terminate() polls the process first, and that poll can reap it under the
    child watcher's feet (which then reports status 255 and says so on stderr).
    """

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        assert process.stderr is not None
        self.stderr = _Stderr(process.stderr)
        self.pidfd: int | None = None
        with contextlib.suppress(AttributeError, OSError):  # gone already, or no pidfd here
            self.pidfd = os.pidfd_open(process.pid)

    def signal(self, number: signal.Signals) -> None:
        if self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, number)
            else:
                os.kill(self.process.pid, number)

    async def end(self) -> None:
        """Terminate ssh if it still runs, reap it, and stop reading its stderr."""
        try:
            if self.process.returncode is None:
                self.signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(self.process.wait(), _TERMINATE_GRACE)
                except TimeoutError:
                    self.signal(signal.SIGKILL)
                    await self.process.wait()
        except asyncio.CancelledError:
            # The loop is shutting down: ssh goes now, and is still reaped.
            self.signal(signal.SIGKILL)
            await self.process.wait()
            raise
        finally:
            self.stderr.task.cancel()
            if self.pidfd is not None:
                os.close(self.pidfd)
                self.pidfd = None

    async def reap_when(self, lost: asyncio.Future[None]) -> None:
        try:
            await lost
        finally:
            await self.end()

    async def failure(self, target: SSHTarget, what: str) -> UpstreamError:
        """Why the daemon could not be reached through ssh: its status and its last words."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), _EXIT_WAIT)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.stderr.task), _EXIT_WAIT)
        status = self.process.returncode
        said = self.stderr.last_line()
        if status is None:
            reason = f"ssh to {target.host} {what}"
        elif status == 255:  # ssh's own failure, not the remote command's
            reason = f"ssh to {target.host} failed"
        else:
            reason = (
                f"`docker system dial-stdio` on {target.host} exited with status {status} "
                "(is docker 18.09 or later on its PATH?)"
            )
        return UpstreamError(f"{reason}: {said}" if said else reason)


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value)
    return None


async def _probe(sock: socket.socket) -> str | None:
    """Ask the daemon for /_ping and read the whole answer; None when it came, else why not."""
    try:
        return await _ping(sock)
    except OSError:  # ssh is gone: a broken pipe, a reset
        return "ended the connection before the daemon answered"


async def _ping(sock: socket.socket) -> str | None:
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, _PROBE)
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = await loop.sock_recv(sock, _PROBE_LIMIT)
        if not chunk:
            return "ended the connection before the daemon answered"
        answer += chunk
        if len(answer) > _PROBE_LIMIT:
            return "sent something that is not the Docker API"
    head, _, body = answer.partition(b"\r\n\r\n")
    length = _content_length(head)
    if not head.startswith(b"HTTP/1.") or length is None:
        return "sent something that is not the Docker API"
    while len(body) < length:
        chunk = await loop.sock_recv(sock, length - len(body))
        if not chunk:
            return "ended the connection before the daemon answered"
        body += chunk
    # Anything past the answer would have to be the start of one the client did not ask for.
    return "sent something that is not the Docker API" if len(body) > length else None


async def connect(
    factory: Callable[[], asyncio.BaseProtocol], target: SSHTarget
) -> asyncio.BaseTransport:
    """Start ssh for one connection, check it reaches the daemon, and hand it to `factory()`."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        process = await asyncio.create_subprocess_exec(
            *command(target),
            stdin=theirs.fileno(),
            stdout=theirs.fileno(),
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        ours.close()
        raise UpstreamError(f"cannot run ssh: {exc.strerror or exc}") from exc
    finally:
        theirs.close()
    ssh = _Process(process)
    try:
        ours.setblocking(False)
        problem = await _probe(ours)
        if problem is not None:
            raise await ssh.failure(target, problem)
        tied = _Tied(factory())
        transport, _ = await asyncio.get_running_loop().create_unix_connection(
            lambda: tied, sock=ours
        )
    except BaseException:
        ours.close()
        _reap(ssh.end())
        raise
    _reap(ssh.reap_when(tied.lost))
    return transport


def _reap(ending: Coroutine[None, None, None]) -> None:
    reaper = asyncio.get_running_loop().create_task(ending)
    _reapers.add(reaper)
    reaper.add_done_callback(_reapers.discard)
