"""Recording in a child process, so that parsing never slows the relay down.

Parsing an exchange with h11 and encoding its records costs far more CPU than forwarding it.
On the relay's event loop that cost lands between two reads of the same socket and adds to every
request's latency. So the relay process only copies what it forwards into a pipe, framed with a
small binary header, once per turn of its event loop; a child process reads the pipe, runs the
Recorder (observer, encoder, writer) and the live view, and owns the capture file.

If the child falls behind, the pipe's buffer fills and the relay pauses reading from its
sockets until the child catches up: memory stays bounded and nothing is dropped. If docktap is
killed, the child sees the pipe close, writes what it has and exits: the capture keeps
everything up to that point, without the end-of-capture record.

Messages: kind (1 byte), connection (4), time (8, monotonic seconds), payload length (4), then
the payload: forwarded bytes, peer credentials or a message as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from docktap.events import Direction
from docktap.relay import PeerCredentials

if TYPE_CHECKING:
    from docktap.recorder import Recorder

_HEADER = struct.Struct("<BIdI")
OPEN, DATA_CLIENT, DATA_DAEMON, EOF_CLIENT, EOF_DAEMON, CLOSE, FAILED, STOP = range(1, 9)
_DATA = {Direction.CLIENT: DATA_CLIENT, Direction.DAEMON: DATA_DAEMON}
_EOF = {Direction.CLIENT: EOF_CLIENT, Direction.DAEMON: EOF_DAEMON}
# Bytes waiting for the child before the relay stops reading from its sockets.
_PIPE_HIGH_WATER = 8 << 20
_PIPE_SIZE = 1 << 20  # Linux's default upper limit for an unprivileged pipe


@dataclass(frozen=True)
class RecordingConfig:
    """Everything the child needs to know, passed as JSON on its command line."""

    capture_fd: int | None  # an open capture file handed down, or None for stdout
    max_body: int
    upstream: str
    command: list[str] | None
    started_wall: float
    started_mono: float
    live: str  # "off", "rows", or "status" (rows plus a status line on a terminal)
    redact: bool = True  # mask secrets before they reach the capture (--no-redact: False)
    redact_env: list[str] = field(default_factory=list)  # more secret variable name patterns
    audit: str | None = None  # warn on stderr of findings at this level or above (--audit)


class _PipeProtocol(asyncio.BaseProtocol):
    """Pauses the relay while the child's pipe is full."""

    def __init__(self, on_pause: Callable[[], None], on_resume: Callable[[], None]) -> None:
        self._on_pause = on_pause
        self._on_resume = on_resume
        self.lost: Exception | None = None
        self.gone = False

    def pause_writing(self) -> None:
        self._on_pause()

    def resume_writing(self) -> None:
        self._on_resume()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        self.lost = exc
        self._on_resume()


class RecorderLink:
    """The relay's tap: frames each call and ships it to the recorder child, in batches."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self._pieces: list[bytes] = []
        self._scheduled = False
        self._transport: asyncio.WriteTransport | None = None
        self._protocol: _PipeProtocol | None = None
        self.on_pause: Callable[[], None] = lambda: None
        self.on_resume: Callable[[], None] = lambda: None
        self.failed = False

    async def connect(self) -> None:
        assert self.process.stdin is not None
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_write_pipe(
            lambda: _PipeProtocol(lambda: self.on_pause(), lambda: self.on_resume()),
            self.process.stdin,
        )
        transport.set_write_buffer_limits(high=_PIPE_HIGH_WATER)
        self._transport, self._protocol = transport, protocol

    def _push(self, kind: int, conn: int, t: float, payload: bytes = b"") -> None:
        self._pieces.append(_HEADER.pack(kind, conn, t, len(payload)))
        if payload:
            self._pieces.append(payload)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        pieces, self._pieces = self._pieces, []
        transport = self._transport
        if transport is None or self.failed:
            return
        if self._protocol is not None and self._protocol.gone:
            self.failed = True
            print("docktap: the recorder stopped; relaying goes on unrecorded", file=sys.stderr)
            return
        transport.write(b"".join(pieces))

    # -- the Tap protocol -----------------------------------------------------------------------

    def opened(self, conn: int, peer: PeerCredentials | None, t: float) -> None:
        payload = json.dumps(dataclasses.asdict(peer)).encode() if peer is not None else b""
        self._push(OPEN, conn, t, payload)

    def data(self, conn: int, direction: Direction, data: bytes, t: float) -> None:
        self._push(_DATA[direction], conn, t, data)

    def eof(self, conn: int, direction: Direction, t: float) -> None:
        self._push(_EOF[direction], conn, t)

    def closed(self, conn: int, t: float) -> None:
        self._push(CLOSE, conn, t)

    def upstream_failed(self, conn: int, message: str, t: float) -> None:
        self._push(FAILED, conn, t, message.encode())

    async def stop(self, t: float) -> int:
        """Tell the child the capture is over and wait until it has written everything."""
        self._push(STOP, 0, t)
        self.flush()
        if self._transport is not None:
            self._transport.close()
        return await asyncio.get_running_loop().run_in_executor(None, self.process.wait)


def spawn_recorder(config: RecordingConfig) -> subprocess.Popen[bytes]:
    """Start the child; the capture file descriptor, if any, is handed down to it."""
    fds = (config.capture_fd,) if config.capture_fd is not None else ()
    process = subprocess.Popen(
        [sys.executable, "-m", "docktap.recording", json.dumps(dataclasses.asdict(config))],
        stdin=subprocess.PIPE,
        pass_fds=fds,
        # Its own process group: Ctrl-C at the terminal is for the relay and the command.
        start_new_session=True,
    )
    assert process.stdin is not None
    # A pipe holds 64 KiB by default: bulk transfers would cost a write and a read per 64 KiB.
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(process.stdin.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    return process


# -- the child ----------------------------------------------------------------------------------


def _dispatch(recorder: Recorder, kind: int, conn: int, t: float, payload: bytes) -> bool:
    """Hand one message to the recorder; False when it says the capture is over."""
    if kind == DATA_CLIENT:
        recorder.data(conn, Direction.CLIENT, payload, t)
    elif kind == DATA_DAEMON:
        recorder.data(conn, Direction.DAEMON, payload, t)
    elif kind == EOF_CLIENT:
        recorder.eof(conn, Direction.CLIENT, t)
    elif kind == EOF_DAEMON:
        recorder.eof(conn, Direction.DAEMON, t)
    elif kind == CLOSE:
        recorder.closed(conn, t)
    elif kind == OPEN:
        recorder.opened(conn, json.loads(payload) if payload else None, t)
    elif kind == FAILED:
        recorder.upstream_failed(conn, payload.decode(), t)
    elif kind == STOP:
        recorder.close(t)
        return False
    return True


def serve(fd: int, recorder: Recorder) -> bool:
    """Feed the recorder from the pipe until STOP (True) or until the pipe closes (False)."""
    rest = b""  # the start of a message cut by the end of the last read
    size = _HEADER.size
    while True:
        chunk = os.read(fd, _PIPE_SIZE)
        if not chunk:
            return False
        data = rest + chunk if rest else chunk
        view = memoryview(data)
        pos = 0
        end = len(data)
        while end - pos >= size:
            kind, conn, t, length = _HEADER.unpack_from(data, pos)
            if end - pos - size < length:
                break
            payload = view[pos + size : pos + size + length].tobytes()
            pos += size + length
            if not _dispatch(recorder, kind, conn, t, payload):
                return True
        rest = data[pos:]
        recorder.flush()


def child_main(argv: list[str]) -> int:
    from docktap.capture.format import RecordEncoder
    from docktap.capture.writer import CaptureWriter
    from docktap.recorder import Recorder

    # The relay decides when recording ends (STOP, or the pipe closing); signals are its.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    config = RecordingConfig(**json.loads(argv[0]))

    def say(message: str) -> None:
        print(f"docktap: {message}", file=sys.stderr, flush=True)

    if config.capture_fd is None:
        writer = CaptureWriter(sys.stdout, on_error=say)
    else:
        writer = CaptureWriter.from_fd(config.capture_fd, on_error=say)
    from docktap.redact import Redactor

    encoder = RecordEncoder(
        config.started_wall,
        config.started_mono,
        config.max_body,
        redactor=Redactor(config.redact_env),
        redact=config.redact,
    )
    recorder = Recorder(writer, encoder)
    live = None
    if config.live != "off":
        from docktap.cli import live_view

        live = live_view(status=config.live == "status")
        recorder.listeners.append(live)
        live.start()
    if config.audit is not None:
        from docktap.cli import live_audit

        recorder.listeners.append(live_audit(config.audit))
    recorder.start(config.upstream, config.command)
    try:
        if not serve(sys.stdin.fileno(), recorder):
            recorder.close(0.0, clean=False)  # docktap died: keep what was written
    finally:
        if live is not None:
            live.stop()
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
