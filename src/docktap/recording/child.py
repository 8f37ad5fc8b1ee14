"""The recording child's main: wire messages in, capture records out.

`run(config, fd)` reads messages from the pipe `fd` (and the runs of the spool they announce),
drives the engine with them, and prints live rows and audit warnings on stderr if asked. It
imports the engine, the live view and nothing of the command line. It runs in a fork of docktap
or in `python -m docktap.recording.child CONFIG`, the pipe its stdin (see launch.py).

The relay decides when recording ends: a STOP message, or the pipe closing when docktap is
killed. Then the child records what the spool still holds, writes and exits: the capture keeps
everything up to that point (but the message the kill cut in two), without the end-of-capture
record.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import sys
from typing import TYPE_CHECKING

from docktap.direction import Direction
from docktap.recording.spool import SpoolReader
from docktap.recording.wire import (
    Kind,
    Message,
    RecordingConfig,
    parse,
    peer_from_payload,
    spooled_count,
)

if TYPE_CHECKING:
    from docktap.recording.engine import Recorder
    from docktap.render.live import HeldOutput, LiveAudit, LiveView

_READ_SIZE = 1 << 20
_FLUSH_EVERY = 256  # messages the child dispatches between two writes of their records
_COLLECT_EVERY = 10_000  # allocations between two runs of the youngest generation's collection


# The commonest kinds and the directions, looked up once: an Enum member read from its class
# goes through a descriptor, and two messages of every exchange are data.
_DATA_CLIENT = int(Kind.DATA_CLIENT)
_DATA_DAEMON = int(Kind.DATA_DAEMON)
_SPOOLED = int(Kind.SPOOLED)
_CLIENT = Direction.CLIENT
_DAEMON = Direction.DAEMON


def dispatch(recorder: Recorder, kind: int, conn: int, t: float, payload: bytes) -> bool:
    """Hand one message to the recorder; False when it says the capture is over."""
    if kind == _DATA_CLIENT:
        recorder.data(conn, _CLIENT, payload, t)
    elif kind == _DATA_DAEMON:
        recorder.data(conn, _DAEMON, payload, t)
    elif kind == Kind.EOF_CLIENT:
        recorder.eof(conn, Direction.CLIENT, t)
    elif kind == Kind.EOF_DAEMON:
        recorder.eof(conn, Direction.DAEMON, t)
    elif kind == Kind.CLOSE:
        recorder.closed(conn, t)
    elif kind == Kind.OPEN:
        recorder.opened(conn, peer_from_payload(payload), t)
    elif kind == Kind.FAILED:
        recorder.upstream_failed(conn, payload.decode(), t)
    elif kind == Kind.DECISION:
        recorder.decided(conn, json.loads(payload), t)
    elif kind == Kind.STOP:
        recorder.close(t)
        return False
    return True


def serve(fd: int, spool_fd: int | None, recorder: Recorder) -> bool:
    """Feed the recorder from the pipe until STOP (True) or until the pipe closes (False).

    The runs of the spool that the pipe announces are read in between. When the pipe closes
    without STOP (docktap was killed), what was spooled but not yet announced is recorded too.
    """
    spool = SpoolReader(spool_fd) if spool_fd is not None else None
    rest = b""  # the start of a message cut by the end of the last read
    while chunk := os.read(fd, _READ_SIZE):
        messages, rest = parse(rest + chunk if rest else chunk)
        if not _feed(recorder, messages, spool):
            return True
    # Killed: the message cut in two by the kill is lost; what the spool holds after it is not.
    if spool is not None:
        for messages in spool.run(None):
            _feed(recorder, messages, None)
    return False


def _feed(recorder: Recorder, messages: list[Message], spool: SpoolReader | None) -> bool:
    """Dispatch messages, spooled runs included, writing their records as they come; False at
    STOP."""
    data = recorder.data
    for i, (kind, conn, t, payload) in enumerate(messages, 1):
        # Data first, without a call to dispatch: two messages of every exchange are data.
        if kind == _DATA_CLIENT:
            data(conn, _CLIENT, payload, t)
        elif kind == _DATA_DAEMON:
            data(conn, _DAEMON, payload, t)
        elif kind == _SPOOLED and spool is not None:
            recorder.flush()
            for run in spool.run(spooled_count(payload)):
                if not _feed(recorder, run, None):
                    return False
        elif not dispatch(recorder, kind, conn, t, payload):
            return False
        if i % _FLUSH_EVERY == 0:
            recorder.flush()  # a read of small messages makes thousands of records
    recorder.flush()
    return True


def _lower_priority() -> None:
    """Run only on CPU time nothing else wants: the relay, the daemon and the clients first.

    The recorder leads a session of its own (launch.py), and where Linux groups tasks by
    session (autogroup, sched(7), on by default) that session is a scheduling group of its
    own, which competes with the relay's group as an equal whatever the policy of the tasks in
    it: the group's nice is what counts there, so it goes to 19 too. The policy still counts
    where the scheduler does not group by session (autogroup off, or the tasks in a cgroup of
    the cpu controller). SCHED_IDLE rather than nice 19: a normal task that wakes up on its
    CPU always takes the CPU from it at once. Each step only lowers the priority, and one
    that is refused is passed over: the recording goes on at the priority it has.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError:
        with contextlib.suppress(OSError):
            os.nice(19)
    # Only the group of a session the recorder leads is its own (a new session's group starts
    # at nice 0, and 19 is the lowest): another would be the relay's and the command's.
    if os.getsid(0) == os.getpid():
        with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as group:
            group.write("19")


def collect_less() -> None:
    """Keep the cycle collector out of the way of the recording.

    The recording makes and drops thousands of events and records a second, none of them in a
    cycle (reference counting frees them): the collector is run less often than its default of
    every 700 allocations, and what the imports made is left out of its scans.
    """
    gc.freeze()
    gc.set_threshold(_COLLECT_EVERY)


def live_output() -> HeldOutput:
    """What live rows and audit warnings go through: held while stderr's terminal is raw.

    `docktap run -- docker run -it ... sh` shares its terminal with the shell, which has it
    raw: a row printed then lands in the shell's screen, without a carriage return.
    """
    from docktap.console import cooked
    from docktap.render.live import HeldOutput

    if not sys.stderr.isatty():
        # Nor will it ever be one (the descriptor is the child's, and no one replaces it):
        # asked before each batch of rows, a pipe or a file costs a failed tcgetattr each time.
        return HeldOutput()
    return HeldOutput(ready=lambda: cooked(sys.stderr))


def live_view(
    status: bool, held: HeldOutput, colour: str = "auto", width: int | None = None
) -> LiveView:
    """Rows of the calls on stderr as they complete; a status line too on a terminal."""
    from docktap.console import interactive, terminal
    from docktap.render.live import LiveView
    from docktap.render.timeline import TimelineOptions

    term = terminal(sys.stderr, colour, width)
    return LiveView(
        term.console(),
        TimelineOptions(width=term.width, styled=term.colour, header=False),
        status=status and interactive(term.stream),
        held=held,
    )


def live_audit(
    level: str, held: HeldOutput, colour: str = "auto", width: int | None = None
) -> LiveAudit:
    """Audit warnings on stderr as risky calls are recorded."""
    from docktap.console import terminal
    from docktap.render.live import LiveAudit

    return LiveAudit(terminal(sys.stderr, colour, width).console(), level, held)


def run(config: RecordingConfig, fd: int) -> int:
    """Record what comes through the pipe `fd` as `config` says; the exit status."""
    from docktap.capture.format import RecordEncoder
    from docktap.capture.writer import CaptureWriter
    from docktap.recording.engine import Recorder
    from docktap.redact import Redactor

    # The relay decides when recording ends (STOP, or the pipe closing); signals are its.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # After the imports: at idle priority on a busy machine they would wait for the end of
    # the command, and then hold up the capture and docktap's exit. First of the rest: the live
    # view's thread inherits it.
    _lower_priority()

    def say(message: str) -> None:
        print(f"docktap: {message}", file=sys.stderr, flush=True)

    if config.capture_fd is None:
        writer = CaptureWriter(sys.stdout, on_error=say)
    else:
        writer = CaptureWriter.from_fd(config.capture_fd, on_error=say)
    encoder = RecordEncoder(
        config.started_wall,
        config.started_mono,
        config.max_body,
        redactor=Redactor(config.redact_env),
        redact=config.redact,
    )
    recorder = Recorder(writer, encoder, head_budget=config.head_budget)
    live = None
    held = live_output() if config.live != "off" or config.audit is not None else None
    if config.live != "off" and held is not None:
        live = live_view(config.live == "status", held, config.colour, config.width)
        recorder.listeners.append(live)
        live.start()
    if config.audit is not None and held is not None:
        recorder.listeners.append(live_audit(config.audit, held, config.colour, config.width))
    collect_less()  # the imports are done: the live view's were the last
    recorder.start(config.upstream, config.command, config.upstream_tls, config.policy)
    try:
        if not serve(fd, config.spool_fd, recorder):
            recorder.close(0.0, clean=False)  # docktap died: keep what was written
    finally:
        if live is not None:
            live.stop()
        if held is not None:
            held.release(force=True)  # what the terminal never took back (docktap died)
    return 0


def main(argv: list[str]) -> int:
    """`python -m docktap.recording.child CONFIG`: the settings as JSON, the pipe on stdin."""
    return run(RecordingConfig.from_json(argv[0]), sys.stdin.fileno())


if __name__ == "__main__":
    from docktap.exiting import leave

    leave(main(sys.argv[1:]))  # the capture is written: the relay waits for this exit
