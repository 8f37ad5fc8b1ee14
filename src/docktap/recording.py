"""Recording in a child process, so that parsing never slows the relay down.

Parsing an exchange with h11 and encoding its records costs far more CPU than forwarding it.
On the relay's event loop that cost lands between two reads of the same socket and adds to every
request's latency. So the relay process only copies what it forwards, framed with a small binary
header, once per turn of its event loop; a child process runs the Recorder (observer, encoder,
writer) and the live view, and owns the capture file.

The child must not take CPU time from the traffic either: it runs at idle priority, and while
the relay is busy (see RecorderLink._measure) it is not even given the bytes. The relay appends
them to a spool instead, an unlinked file next to the capture (or in $TMPDIR), and tells the child
through the pipe, once the relay has calmed down, how many bytes of the spool come next. Bytes
also go to the spool whenever the pipe is full: the relay never waits for the recorder, whose
backlog is on disk rather than in memory. The child punches out of the spool what it has read,
so that a long session gives the disk back. Only when the spool cannot take more (a full disk,
or _SPOOL_LIMIT of backlog) does the relay stop reading from its sockets, until the spool takes
the bytes again or the pipe has room for them: memory stays bounded, nothing is dropped.

Stopping waits until the child has recorded everything, backlog included. If docktap is killed,
the child sees the pipe close, records what the spool still holds, writes and exits: the capture
keeps everything up to that point (but the message the kill cut in two), without the
end-of-capture record.

Messages: kind (1 byte), connection (4), time (8, monotonic seconds), payload length (4), then
the payload: forwarded bytes, peer credentials or a message as JSON, or for SPOOLED the number
of spool bytes that come next (8). The pipe only ever carries whole messages, and so does each
run of the spool that a SPOOLED message announces.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import errno
import fcntl
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from docktap.events import Direction
from docktap.relay import PeerCredentials

if TYPE_CHECKING:
    from docktap.recorder import Recorder

_HEADER = struct.Struct("<BIdI")
_COUNT = struct.Struct("<Q")
OPEN, DATA_CLIENT, DATA_DAEMON, EOF_CLIENT, EOF_DAEMON, CLOSE, FAILED, STOP, SPOOLED = range(1, 10)
_DATA = {Direction.CLIENT: DATA_CLIENT, Direction.DAEMON: DATA_DAEMON}
_EOF = {Direction.CLIENT: EOF_CLIENT, Direction.DAEMON: EOF_DAEMON}
_PIPE_SIZE = 1 << 20  # Linux's default upper limit for an unprivileged pipe
_READ_SIZE = 1 << 20
_FLUSH_EVERY = 256  # messages the child dispatches between two writes of their records
_IOV_MAX = 1024  # buffers per writev on Linux
# The child gives read spool space back to the disk in steps of this many bytes.
_PUNCH_STEP = 16 << 20
# Disk the spool may take before the relay waits for the recorder again, looked at every
# _SPOOL_CHECK bytes spooled.
_SPOOL_LIMIT = 2 << 30
_SPOOL_CHECK = 64 << 20
# The relay's CPU use, in cores, above which it counts as busy, measured over _SAMPLE seconds.
_BUSY = 0.05
_SAMPLE = 0.1


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
    spool_fd: int | None = None  # the spool handed down, when there is one


def _write(fd: int, pieces: list[bytes], offset: int | None = None) -> int:
    """Write buffers in order until they are all out or `fd` takes no more; bytes written.

    With `offset`, to a file at that offset; without, a full non-blocking pipe ends the write
    early rather than raising.
    """
    if len(pieces) > _IOV_MAX:
        done = 0
        for first in range(0, len(pieces), _IOV_MAX):
            group = pieces[first : first + _IOV_MAX]
            n = _write(fd, group, None if offset is None else offset + done)
            done += n
            if n < sum(map(len, group)):
                break
        return done
    try:
        return os.writev(fd, pieces) if offset is None else os.pwritev(fd, pieces, offset)
    except BlockingIOError:
        return 0


class RecorderLink:
    """The relay's tap: frames each call and ships it to the recorder child, in batches.

    Each batch goes into the pipe if it has room and the relay is not busy, else to the spool.
    Bytes that must reach the pipe before anything else (the rest of a message the pipe took
    only part of, the count of spooled bytes, messages the spool refused) wait in memory for the
    pipe to have room. While the relay is busy, the count of spooled bytes waits too: the child,
    idle, leaves the CPU to the traffic, and catches up once the relay calms down or stops.
    """

    def __init__(self, process: subprocess.Popen[bytes], spool: int | None = None) -> None:
        assert process.stdin is not None
        self.process = process
        self._fd = process.stdin.fileno()
        self._spool = spool
        self._spool_end = 0  # where the next spooled batch goes
        self._spool_checked = 0  # _spool_end when the spool's disk use was last looked at
        self._spool_full = False
        self._spooled = 0  # bytes spooled since the child was last told
        self._tail = b""  # the end of a message the pipe took only the start of
        self._held: deque[bytes] = deque()  # whole messages the spool could not take
        self._pieces: list[bytes] = []  # this loop turn's messages, header and payload apart
        self._starts: list[int] = []  # where each message starts in _pieces
        self._size = 0
        self._scheduled = False
        self._waiting = False  # something waits for the pipe: new batches go behind it
        self._writing = False  # a writer callback waits for room in the pipe
        self._paused = False  # the relay was asked to stop reading
        self._busy = False  # the relay is busy: the backlog waits, the child stays idle
        self._cpu_mark = (0.0, 0.0)  # monotonic and CPU time when busyness was last measured
        self._sampler: asyncio.TimerHandle | None = None
        self._active = False  # batches were flushed since busyness was last measured
        self._stopping = False
        self._drained: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warned = False
        self.on_pause: Callable[[], None] = lambda: None
        self.on_resume: Callable[[], None] = lambda: None
        self.failed = False

    async def connect(self) -> None:
        self._loop = asyncio.get_running_loop()
        os.set_blocking(self._fd, False)

    def _push(self, kind: int, conn: int, t: float, payload: bytes = b"") -> None:
        self._starts.append(len(self._pieces))
        self._pieces.append(_HEADER.pack(kind, conn, t, len(payload)))
        if payload:
            self._pieces.append(payload)
        self._size += _HEADER.size + len(payload)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        pieces, starts, size = self._pieces, self._starts, self._size
        self._pieces, self._starts, self._size = [], [], 0
        if self.failed or self._loop is None or not pieces:
            return
        self._active = True
        if self._sampler is None:  # traffic again after a quiet while: start measuring
            self._cpu_mark = (time.monotonic(), time.process_time())
            self._sampler = self._loop.call_later(_SAMPLE, self._measure)
        if self._waiting or self._busy:
            self._waiting = True
            self._behind(pieces, starts, size)
            self._arm()
            return
        try:
            written = _write(self._fd, pieces)
        except OSError:
            self._lost()
            return
        if written == size:
            return
        # The pipe took part of the batch: the rest of the message it cut must follow in the
        # pipe before anything else, the messages after that one go to the spool.
        offset = 0
        for i, start in enumerate(starts):
            message = pieces[start : starts[i + 1] if i + 1 < len(starts) else None]
            length = sum(map(len, message))
            if offset + length > written:
                break
            offset += length
        if written > offset:
            self._tail = b"".join(message)[written - offset :]
            i += 1
            offset += length
        self._waiting = True
        if i < len(starts):
            first = starts[i]
            self._behind(pieces[first:], [s - first for s in starts[i:]], size - offset)
        self._arm()

    def _behind(self, pieces: list[bytes], starts: list[int], size: int) -> None:
        """Messages that cannot go into the pipe now: to the spool, else held in memory."""
        if not self._held and self._spool is not None:
            refused = self._to_spool(pieces, size)
            if refused is None:
                return
            if not self._warned:
                self._warned = True
                print(
                    f"docktap: cannot spool the recording backlog ({refused}); "
                    "relaying waits for the recorder meanwhile",
                    file=sys.stderr,
                )
        for i, start in enumerate(starts):
            self._held.append(
                b"".join(pieces[start : starts[i + 1] if i + 1 < len(starts) else None])
            )
        if not self._paused:
            self._paused = True
            self.on_pause()

    def _spool_held(self) -> None:
        """Move held messages to the spool if it takes them now, and let the relay read again.

        Held messages otherwise reach the child through the pipe, behind the whole backlog the
        child was told of: the relay would wait for all of it, not just for some room.
        """
        if not self._held or self._spool is None:
            return
        pieces = list(self._held)
        if self._to_spool(pieces, sum(map(len, pieces))) is None:
            self._held.clear()
            self._resume()

    def _to_spool(self, pieces: list[bytes], size: int) -> str | None:
        """Append whole messages to the spool; None, or why it would not take them."""
        assert self._spool is not None
        if self._spool_full or self._spool_end - self._spool_checked >= _SPOOL_CHECK:
            # What the child has read is punched out of the file: its blocks are the backlog.
            self._spool_checked = self._spool_end
            self._spool_full = os.fstat(self._spool).st_blocks * 512 > _SPOOL_LIMIT
            if self._spool_full:
                return f"it holds its limit of {_SPOOL_LIMIT >> 20} MiB"
        try:
            if _write(self._spool, pieces, self._spool_end) == size:
                self._spool_end += size
                self._spooled += size
                return None
            refused = os.strerror(errno.ENOSPC)  # a short write: the disk filled up
        except OSError as exc:
            refused = exc.strerror or str(exc)
        # The child reads only whole messages: take back what the spool got of these.
        with contextlib.suppress(OSError):
            os.ftruncate(self._spool, self._spool_end)
        return refused

    def _may_announce(self) -> bool:
        """Whether the child may be told of the spooled backlog now.

        Not while the relay is busy, unless the relay is paused for it (messages are held) or
        stopping.
        """
        return not self._busy or self._stopping or bool(self._held)

    def _arm(self) -> None:
        """Wait for room in the pipe while something that waits for it may go."""
        assert self._loop is not None
        wanted = bool(self._tail or self._held or (self._spooled and self._may_announce()))
        if wanted and not self._writing:
            self._loop.add_writer(self._fd, self._room)
        elif self._writing and not wanted:
            self._loop.remove_writer(self._fd)
        self._writing = wanted

    def _room(self) -> None:
        """The pipe has room: send what waits for it, in order."""
        try:
            if self._tail:
                self._tail = self._tail[os.write(self._fd, self._tail) :]
                if self._tail:
                    return
            if self._spooled:
                if not self._may_announce():
                    self._arm()  # no more until _measure sees the relay calm down
                    return
                # Shorter than PIPE_BUF: the pipe takes all of it or none.
                os.write(self._fd, _HEADER.pack(SPOOLED, 0, 0.0, 8) + _COUNT.pack(self._spooled))
                self._spooled = 0
            while self._held:
                n = os.write(self._fd, self._held[0])
                head = self._held.popleft()
                if n < len(head):
                    self._tail = head[n:]
                    break
            if not self._held:
                self._resume()
            if self._tail:
                return
        except BlockingIOError:
            return
        except OSError:
            self._lost()
            return
        self._caught_up()

    def _measure(self) -> None:
        """Whether the relay is busy, from its CPU use since the last look; look again later.

        Even at idle priority, a child recording alongside the traffic slows it down (by a
        third, for 64 clients in bench/relay.py on a 2-core VM). So while the relay is busy,
        batches go to the spool rather than the pipe and the child is not told about them: it
        gets the backlog once the relay calms down. Looks go on every _SAMPLE seconds while
        there is traffic or a backlog.
        """
        assert self._loop is not None
        now, cpu = time.monotonic(), time.process_time()
        then, cpu_then = self._cpu_mark
        self._cpu_mark = (now, cpu)
        self._busy = cpu - cpu_then > _BUSY * (now - then)
        again = self._busy or self._active or self._waiting
        self._active = False
        self._sampler = self._loop.call_later(_SAMPLE, self._measure) if again else None
        if self._waiting:
            self._spool_held()
            self._arm()

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            self.on_resume()

    def _caught_up(self) -> None:
        self._waiting = False
        self._arm()
        self._resume()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _lost(self) -> None:
        self.failed = True
        self._tail, self._spooled = b"", 0
        self._held.clear()
        print("docktap: the recorder stopped; relaying goes on unrecorded", file=sys.stderr)
        self._caught_up()

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
        self._stopping = True  # the backlog goes now, busy or not
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None
        if self._waiting and not self.failed:
            self._drained = asyncio.get_running_loop().create_future()
            self._arm()
            await self._drained
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        if self._spool is not None:
            os.close(self._spool)
            self._spool = None
        return await asyncio.get_running_loop().run_in_executor(None, self.process.wait)


def _open_spool(directory: str | None) -> int | None:
    """A file for the backlog, readable by its owner only; None if none can be made.

    It holds traffic before redaction: it gets no name where O_TMPFILE works, and loses the
    one it has at once elsewhere.
    """
    for where in [directory, None] if directory is not None else [None]:
        with contextlib.suppress(OSError), tempfile.TemporaryFile(dir=where) as spool:
            return os.dup(spool.fileno())
    return None


def spawn_recorder(config: RecordingConfig, spool_dir: str | None = None) -> RecorderLink:
    """Start the child, with the capture file descriptor, if any, and the spool handed down.

    The spool goes in `spool_dir` (the capture's directory: the disk chosen for big files), or
    in $TMPDIR when that is not possible.
    """
    capture = config.capture_fd
    if capture is not None and not stat.S_ISREG(os.fstat(capture).st_mode):
        spool_dir = None  # not /dev for `-o /dev/null`
    spool = _open_spool(spool_dir)
    config = dataclasses.replace(config, spool_fd=spool)
    fds = tuple(fd for fd in (capture, spool) if fd is not None)
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
    return RecorderLink(process, spool)


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


Message = tuple[int, int, float, bytes]


def _messages(data: bytes) -> tuple[list[Message], bytes]:
    """The whole messages at the start of `data`, and the start of a cut one after them."""
    size = _HEADER.size
    view = memoryview(data)
    out: list[Message] = []
    pos = 0
    end = len(data)
    while end - pos >= size:
        kind, conn, t, length = _HEADER.unpack_from(data, pos)
        if end - pos - size < length:
            break
        out.append((kind, conn, t, view[pos + size : pos + size + length].tobytes()))
        pos += size + length
    return out, data[pos:]


_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02


class _Spool:
    """The child's side of the spool: reads runs in order, and frees what it has read."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pos = 0
        self._freed = 0
        fallocate = None
        with contextlib.suppress(OSError, AttributeError):
            fallocate = ctypes.CDLL(None, use_errno=True).fallocate64
            fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        self._fallocate = fallocate  # None where it cannot be had: the spool just grows

    def run(self, count: int | None) -> Iterator[list[Message]]:
        """The messages in the next `count` bytes (None: up to the end), a read at a time."""
        rest = b""
        while count is None or count > 0:
            chunk = os.pread(
                self.fd, _READ_SIZE if count is None else min(count, _READ_SIZE), self.pos
            )
            if not chunk:
                break
            self.pos += len(chunk)
            if count is not None:
                count -= len(chunk)
            messages, rest = _messages(rest + chunk if rest else chunk)
            yield messages
            self._free()

    def _free(self) -> None:
        """Punch what has been read out of the file, in big aligned steps."""
        end = self.pos & ~0xFFFF
        if self._fallocate is None or end - self._freed < _PUNCH_STEP:
            return
        mode = _FALLOC_FL_KEEP_SIZE | _FALLOC_FL_PUNCH_HOLE
        if self._fallocate(self.fd, mode, self._freed, end - self._freed) != 0:
            self._fallocate = None  # not on this file system
        self._freed = end


def serve(fd: int, spool_fd: int | None, recorder: Recorder) -> bool:
    """Feed the recorder from the pipe until STOP (True) or until the pipe closes (False).

    The runs of the spool that the pipe announces are read in between. When the pipe closes
    without STOP (docktap was killed), what was spooled but not yet announced is recorded too.
    """
    spool = _Spool(spool_fd) if spool_fd is not None else None
    rest = b""  # the start of a message cut by the end of the last read
    while chunk := os.read(fd, _READ_SIZE):
        messages, rest = _messages(rest + chunk if rest else chunk)
        if not _feed(recorder, messages, spool):
            return True
    # Killed: the message cut in two by the kill is lost; what the spool holds after it is not.
    if spool is not None:
        for messages in spool.run(None):
            _feed(recorder, messages, None)
    return False


def _feed(recorder: Recorder, messages: list[Message], spool: _Spool | None) -> bool:
    """Dispatch messages, spooled runs included, writing their records as they come; False at
    STOP."""
    for i, (kind, conn, t, payload) in enumerate(messages, 1):
        if kind == SPOOLED and spool is not None:
            recorder.flush()
            for run in spool.run(_COUNT.unpack(payload)[0]):
                if not _feed(recorder, run, None):
                    return False
        elif not _dispatch(recorder, kind, conn, t, payload):
            return False
        if i % _FLUSH_EVERY == 0:
            recorder.flush()  # a read of small messages makes thousands of records
    recorder.flush()
    return True


def _lower_priority() -> None:
    """Run only on CPU time nothing else wants: the relay, the daemon and the clients first.

    SCHED_IDLE rather than nice 19: a normal task that wakes up on its CPU always takes the
    CPU from it at once.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError:
        with contextlib.suppress(OSError):
            os.nice(19)


def child_main(argv: list[str]) -> int:
    from docktap.capture.format import RecordEncoder
    from docktap.capture.writer import CaptureWriter
    from docktap.recorder import Recorder

    # The relay decides when recording ends (STOP, or the pipe closing); signals are its.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _lower_priority()  # first: the live view's thread inherits it
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
        if not serve(sys.stdin.fileno(), config.spool_fd, recorder):
            recorder.close(0.0, clean=False)  # docktap died: keep what was written
    finally:
        if live is not None:
            live.stop()
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
