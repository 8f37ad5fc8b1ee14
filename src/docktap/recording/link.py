"""The relay's side of recording: a tap that ships what the relay forwards to the child.

Parsing an exchange with h11 and encoding its records costs far more CPU than forwarding it.
On the relay's event loop that cost lands between two reads of the same socket and adds to every
request's latency. So the relay process only copies what it forwards, framed as wire messages,
once per turn of its event loop; a child process (see child.py) runs the engine and the live
view, and owns the capture file.

The child must not take CPU time from the traffic either: it runs at idle priority, in a
scheduling group at the lowest nice (child.py), and while the relay is busy it is not even
given the bytes. Where each batch goes is the `Policy`'s to say, from its state (see `State`):
into the pipe, or to the spool (spool.py), with the child told through the pipe, once the
relay has calmed down, how many bytes of the spool come next. Bytes also go to the spool
whenever the pipe is full: the relay never waits for the recorder, whose backlog is on disk
rather than in memory. Only when the spool cannot take more does the relay stop reading from
its sockets, until the spool takes the bytes again or the pipe has room for them: memory
stays bounded, nothing is dropped.

Stopping waits until the child has recorded everything, backlog included, or for a while only
(`linger`): then what still waits for the pipe is left to a process of its own that writes it
as the child reads, and the child finishes on its own while docktap exits (the capture stays
locked until then, see capture/lock.py). If docktap is killed, the child sees the pipe close,
records what the spool still holds, writes and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable

from docktap.direction import Direction
from docktap.recording import spool as spooling
from docktap.recording.launch import RecorderProcess
from docktap.recording.wire import (
    DATA,
    EOF,
    Batch,
    Kind,
    peer_payload,
    spooled,
)
from docktap.tap import PeerCredentials

#: The relay's CPU use, in cores, above which it counts as busy, measured over SAMPLE seconds.
BUSY = 0.05
SAMPLE = 0.1


class State(enum.Enum):
    """Where the link's backlog stands."""

    DIRECT = "direct"  # nothing waits: batches go straight into the pipe
    BEHIND = "behind"  # something waits for the pipe: batches go to the spool, behind it
    HOLDING = "holding"  # the spool refused: messages wait in memory, the relay is paused
    LOST = "lost"  # the child is gone: nothing is sent any more


class Policy:
    """The link's decisions, from its state, the relay's busyness and whether it is stopping.

    Even at idle priority, a child recording alongside the traffic slows it down (by a third,
    for 64 clients in bench/relay.py on a 2-core VM, measured while the child's priority
    counted only inside its session's scheduling group, before child.py lowered the group's).
    So while the relay is busy, batches go to the spool rather than the pipe and the child is
    not told about them: it gets the backlog once the relay calms down, or once the relay is
    paused for it, or stops.
    """

    def __init__(self) -> None:
        self.state = State.DIRECT
        self.busy = False  # the relay's CPU use was above BUSY when last measured
        self.stopping = False  # the capture is over: the backlog goes now, busy or not

    def to_pipe(self) -> bool:
        """Whether a new batch may go into the pipe at once."""
        return self.state is State.DIRECT and not self.busy

    def may_announce(self) -> bool:
        """Whether the child may be told of the spooled backlog now."""
        return not self.busy or self.stopping or self.state is State.HOLDING

    def measured(self, cpu: float, elapsed: float) -> None:
        """The relay used `cpu` seconds of CPU time in the last `elapsed` seconds."""
        self.busy = cpu > BUSY * elapsed

    def behind(self) -> None:
        if self.state is State.DIRECT:
            self.state = State.BEHIND

    def holding(self) -> None:
        if self.state is not State.LOST:
            self.state = State.HOLDING

    def released(self) -> None:
        """Nothing is held in memory any more."""
        if self.state is State.HOLDING:
            self.state = State.BEHIND

    def caught_up(self) -> None:
        if self.state is not State.LOST:
            self.state = State.DIRECT

    def lost(self) -> None:
        self.state = State.LOST


class RecorderLink:
    """The relay's tap: frames each call and ships it to the recorder child, in batches.

    Each batch goes into the pipe or to the spool, as the policy says. Bytes that must reach
    the pipe before anything else (the rest of a message the pipe took only part of, the count
    of spooled bytes, messages the spool refused) wait in memory for the pipe to have room.
    """

    def __init__(self, process: RecorderProcess) -> None:
        self.process = process
        self.policy = Policy()
        self._fd = process.pipe
        spool = process.spool
        self._spool = spooling.SpoolWriter(spool) if spool is not None else None
        self._spooled = 0  # bytes spooled since the child was last told
        self._tail = b""  # the end of a message the pipe took only the start of
        self._held: deque[bytes] = deque()  # whole messages the spool could not take
        self._batch = Batch()  # this loop turn's messages
        self._scheduled = False
        self._flushed: asyncio.Future[None] | None = None  # until_flushed waits on it
        self._writing = False  # a writer callback waits for room in the pipe
        self._cpu_mark = (0.0, 0.0)  # monotonic and CPU time when busyness was last measured
        self._sampler: asyncio.TimerHandle | None = None
        self._active = False  # batches were flushed since busyness was last measured
        self._drained: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warned = False
        self.on_pause: Callable[[], None] = lambda: None
        self.on_resume: Callable[[], None] = lambda: None

    @property
    def failed(self) -> bool:
        return self.policy.state is State.LOST

    async def connect(self) -> None:
        self._loop = asyncio.get_running_loop()
        os.set_blocking(self._fd, False)

    def _push(self, kind: int, conn: int, t: float, payload: bytes = b"") -> None:
        self._batch.add(kind, conn, t, payload)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    async def until_flushed(self) -> None:
        """Until the calls made so far have left this turn's batch, for the pipe, the spool or
        memory: what a turn of the relay's loop gives the link between two of its reads."""
        if not self._scheduled:
            return
        if self._flushed is None:
            self._flushed = asyncio.get_running_loop().create_future()
        await self._flushed

    def flush(self) -> None:
        self._scheduled = False
        if self._flushed is not None:
            # Its waiters run once this flush is over: setting a result only schedules them.
            self._flushed.set_result(None)
            self._flushed = None
        batch, self._batch = self._batch, Batch()
        if self.failed or self._loop is None or not batch:
            return
        self._active = True
        if self._sampler is None:  # traffic again after a quiet while: start measuring
            self._cpu_mark = (time.monotonic(), time.process_time())
            self._sampler = self._loop.call_later(SAMPLE, self._measure)
        if not self.policy.to_pipe():
            self.policy.behind()
            self._behind(batch)
            self._arm()
            return
        try:
            written = spooling.write_all(self._fd, batch.pieces)
        except OSError:
            self._lost()
            return
        if written == batch.size:
            return
        # The pipe took part of the batch: the rest of the message it cut must follow in the
        # pipe before anything else, the messages after that one go to the spool.
        self._tail, rest = batch.split(written)
        self.policy.behind()
        if rest:
            self._behind(rest)
        self._arm()

    def _behind(self, batch: Batch) -> None:
        """Messages that cannot go into the pipe now: to the spool, else held in memory."""
        if not self._held and self._spool is not None:
            refused = self._spool.append(batch.pieces, batch.size)
            if refused is None:
                self._spooled += batch.size
                return
            if not self._warned:
                self._warned = True
                print(
                    f"docktap: cannot spool the recording backlog ({refused}); "
                    "relaying waits for the recorder meanwhile",
                    file=sys.stderr,
                )
        self._held.extend(batch.messages())
        if self.policy.state is not State.HOLDING:
            self.policy.holding()
            self.on_pause()

    def _spool_held(self) -> None:
        """Move held messages to the spool if it takes them now, and let the relay read again.

        Held messages otherwise reach the child through the pipe, behind the whole backlog the
        child was told of: the relay would wait for all of it, not just for some room.
        """
        if not self._held or self._spool is None:
            return
        pieces = list(self._held)
        size = sum(map(len, pieces))
        if self._spool.append(pieces, size) is None:
            self._spooled += size
            self._held.clear()
            self._release()

    def _arm(self) -> None:
        """Wait for room in the pipe while something that waits for it may go."""
        assert self._loop is not None
        wanted = bool(self._tail or self._held or (self._spooled and self.policy.may_announce()))
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
                if not self.policy.may_announce():
                    self._arm()  # no more until _measure sees the relay calm down
                    return
                os.write(self._fd, spooled(self._spooled))
                self._spooled = 0
            while self._held:
                n = os.write(self._fd, self._held[0])
                head = self._held.popleft()
                if n < len(head):
                    self._tail = head[n:]
                    break
            if not self._held:
                self._release()
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

        Looks go on every SAMPLE seconds while there is traffic or a backlog.
        """
        assert self._loop is not None
        now, cpu = time.monotonic(), time.process_time()
        then, cpu_then = self._cpu_mark
        self._cpu_mark = (now, cpu)
        self.policy.measured(cpu - cpu_then, now - then)
        waiting = self.policy.state is not State.DIRECT
        again = self.policy.busy or self._active or waiting
        self._active = False
        self._sampler = self._loop.call_later(SAMPLE, self._measure) if again else None
        if waiting:
            self._spool_held()
            self._arm()

    def _release(self) -> None:
        if self.policy.state is State.HOLDING:
            self.policy.released()
            self.on_resume()

    def _caught_up(self) -> None:
        self.policy.caught_up()
        self._arm()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _lost(self) -> None:
        holding = self.policy.state is State.HOLDING
        self.policy.lost()
        self._tail, self._spooled = b"", 0
        self._held.clear()
        print("docktap: the recorder stopped; relaying goes on unrecorded", file=sys.stderr)
        self._caught_up()
        if holding:
            self.on_resume()

    # -- the Tap protocol -----------------------------------------------------------------------

    def opened(self, conn: int, peer: PeerCredentials | None, t: float) -> None:
        self._push(Kind.OPEN, conn, t, peer_payload(peer))

    def data(self, conn: int, direction: Direction, data: bytes, t: float) -> None:
        self._push(DATA[direction], conn, t, data)

    def eof(self, conn: int, direction: Direction, t: float) -> None:
        self._push(EOF[direction], conn, t)

    def closed(self, conn: int, t: float) -> None:
        self._push(Kind.CLOSE, conn, t)

    def upstream_failed(self, conn: int, message: str, t: float) -> None:
        self._push(Kind.FAILED, conn, t, message.encode())

    def decided(self, conn: int, decision: dict[str, object], t: float) -> None:
        """The guard's decision on a request (the fields of a `decision` record)."""
        self._push(Kind.DECISION, conn, t, json.dumps(decision).encode())

    async def stop(self, t: float, linger: float | None = None) -> int | None:
        """Tell the child the capture is over and wait until it has written everything.

        With `linger` and a backlog, wait that many seconds at most: the child then finishes on
        its own, with everything it is still owed, and the status is None. Without a backlog
        the child has at most a pipe's worth to record, and is waited for.
        """
        loop = asyncio.get_running_loop()
        deadline = None if linger is None else time.monotonic() + linger
        self._push(Kind.STOP, 0, t)
        self.flush()
        self.policy.stopping = True
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None
        _hurry(self.process.pid)
        behind = self.policy.state in (State.BEHIND, State.HOLDING)
        if behind:
            self._drained = loop.create_future()
            self._arm()
            try:
                await asyncio.wait_for(self._drained, _left(deadline))
            except TimeoutError:
                self._hand_off()
        self.process.close_pipe()
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        return await self.process.exited(_left(deadline) if behind else None)

    def _hand_off(self) -> None:
        """Leave what still waits for the pipe to a process that writes it as the child reads.

        A grandchild, so that no one has to wait for it: it is the parent's to reap once this
        process has left (init's, when docktap exits first).
        """
        if self._writing and self._loop is not None:
            self._loop.remove_writer(self._fd)
            self._writing = False
        owed = [self._tail, spooled(self._spooled) if self._spooled else b"", *self._held]
        self._tail, self._spooled = b"", 0
        self._held.clear()
        pieces = [piece for piece in owed if piece]
        if not pieces:
            return
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                if os.fork() == 0:
                    os.set_blocking(self._fd, True)
                    for piece in pieces:
                        view = memoryview(piece)
                        while view:
                            view = view[os.write(self._fd, view) :]
            except OSError:
                code = 1
            finally:
                os._exit(code)
        os.waitpid(pid, 0)


def _hurry(pid: int) -> None:
    """Give the child its share of the CPU again, in all its threads: the traffic it kept out
    of the way of is over, and what it still has to record now holds up the capture.

    Possible as root only (or where RLIMIT_NICE allows it); elsewhere it stays at idle. Its
    scheduling group, that of the session it leads (child.py), back to nice 0 too.
    """
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                os.sched_setscheduler(int(tid), os.SCHED_OTHER, os.sched_param(0))
    with contextlib.suppress(OSError), open(f"/proc/{pid}/autogroup", "w") as group:
        group.write("0")


def _left(deadline: float | None) -> float | None:
    """Seconds until `deadline` (none: no limit), never below zero."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())
