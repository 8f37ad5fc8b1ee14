"""The live view: timeline rows printed while docktap relays, as each call completes.

`LiveView` is a Recorder listener: it is fed each batch of records as they are written,
assembles exchanges incrementally (`capture.reader.Assembler`) and prints the row of every
exchange that completes, with the lines under it, in one write, so the row is never cut by
other output on the same terminal. With `status=True` (docktap proxy on a terminal) a status
line under the rows counts open connections, requests, bytes each way and errors.

The caller owns the Console (stderr, for `docktap run`: the wrapped command's stdout is left
alone), and says through a `HeldOutput` when the terminal takes output: while `docktap run --
docker run -it` has it raw, rows wait, and come out once it is back to normal, or at the end.
Nothing here may break the relay: a failure to print turns the view off.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.text import Text

from docktap.capture.format import Record
from docktap.capture.reader import (
    Assembler,
    BodyChunk,
    BodyEnd,
    CaptureEnd,
    Close,
    Exchange,
    Failure,
    Incident,
    Opened,
    Part,
    RequestHead,
    ResponseHead,
    StreamChunk,
)
from docktap.console import print_lines
from docktap.events import Direction
from docktap.render.kind import stayed_open
from docktap.render.text import format_size
from docktap.render.timeline import (
    Layout,
    Line,
    Marks,
    Rows,
    Spanned,
    TimelineOptions,
    conn_colour,
    moment,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live

#: Column widths of live rows: what is to come is unknown, so they are fixed.
LIVE_LANES = 4
LIVE_CONN = 4
LIVE_OP = 22
LIVE_NUMBER = 5  # `#9999`: exchange numbers as `show` prints them


def _always() -> bool:
    return True


class HeldOutput:
    """What the live view and the live audit print, in order, held while `ready` says no.

    Each print is handed over as a function that does it. `ready` is asked only when
    something is about to be printed; the caller's answer is the terminal's state
    (console.cooked), which is I/O, so it comes from the I/O edge. What is held goes out, in
    the order it came, at the first print after `ready` says yes again, or when the capture
    ends (`release(force=True)`).
    """

    def __init__(self, ready: Callable[[], bool] = _always) -> None:
        self.ready = ready
        self._held: list[Callable[[], None]] = []

    def hold(self, write: Callable[[], None]) -> None:
        self._held.append(write)

    def release(self, force: bool = False) -> None:
        if not self._held or not (force or self.ready()):
            return
        held, self._held = self._held, []
        for write in held:
            write()


class LiveLanes:
    """Lanes handed out as connections open and taken back as they close."""

    def __init__(self, count: int = LIVE_LANES) -> None:
        self.count = count
        self.lane: dict[int, int] = {}
        self._in_flight = [0] * count
        self._owner: list[int | None] = [None] * count

    def open(self, conn: int) -> int:
        lane = self.lane.get(conn)
        if lane is None:
            taken = set(self.lane.values())
            lane = next((n for n in range(self.count) if n not in taken), self.count - 1)
            self.lane[conn] = lane
        self._owner[lane] = conn
        return lane

    def close(self, conn: int) -> None:
        self.lane.pop(conn, None)

    def started(self, conn: int) -> None:
        self._in_flight[self.open(conn)] += 1

    def completed(self, conn: int) -> None:
        lane = self.lane.get(conn)
        if lane is not None and self._in_flight[lane] > 0:
            self._in_flight[lane] -= 1

    def marks(self, ex: Spanned, spans: bool) -> Marks:
        """The lane column now: this exchange's `●`, `│` where another one is in flight."""
        own = self.open(ex.conn)
        row: list[str] = []
        detail: list[str] = []
        styles: list[str | None] = []
        for lane in range(self.count):
            busy = self._in_flight[lane] - (1 if lane == own else 0) > 0
            owner = self._owner[lane]
            if lane == own:
                row.append("●")
                detail.append("│" if spans else " ")
                styles.append(conn_colour(ex.conn))
            else:
                row.append("│" if busy else " ")
                detail.append("│" if busy else " ")
                styles.append(conn_colour(owner) if owner is not None and busy else None)
        return Marks("".join(row), "".join(detail), tuple(styles))


class LiveStats:
    """What the status line counts."""

    def __init__(self) -> None:
        self.open = 0
        self.connections = 0
        self.requests = 0
        self.failed = 0  # answers of 4xx and 5xx
        self.errors = 0  # error records: protocol, upstream, capture
        self.sent = 0  # bytes from clients
        self.received = 0  # bytes from the daemon
        self._inline: dict[tuple[int, int, Direction | None], int] = {}

    def count(self, part: Part) -> None:
        if isinstance(part, BodyChunk | StreamChunk):
            self._add(part.direction, part.size)
            if isinstance(part, BodyChunk):
                key = (part.conn, part.seq, part.direction)
                self._inline[key] = self._inline.get(key, 0) + part.size
        elif isinstance(part, BodyEnd):
            seen = self._inline.pop((part.conn, part.seq, part.direction), 0)
            self._add(part.direction, max(0, part.size - seen))
        elif isinstance(part, RequestHead):
            self.requests += 1
        elif isinstance(part, ResponseHead):
            if part.status >= 400:
                self.failed += 1
        elif isinstance(part, Opened):
            self.open += 1
            self.connections += 1
        elif isinstance(part, Close):
            self.open = max(0, self.open - 1)
        elif isinstance(part, Failure):
            self.errors += 1

    def _add(self, direction: Direction | None, size: int) -> None:
        if direction is Direction.CLIENT:
            self.sent += size
        else:
            self.received += size

    def line(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"{self.open} open", "bold")
        text.append(f" of {self.connections} connections · ")
        text.append(f"{self.requests} requests", "bold")
        if self.failed:
            text.append(f" ({self.failed} failed)", "yellow")
        text.append(f" · ↑ {format_size(self.sent)} ↓ {format_size(self.received)} · ")
        text.append(
            f"{self.errors} error{'s' if self.errors != 1 else ''}",
            "red" if self.errors else "dim",
        )
        return text


class LiveView:
    """A Recorder listener printing a timeline row for each exchange as it completes."""

    def __init__(
        self,
        console: Console,
        options: TimelineOptions | None = None,
        status: bool = False,
        held: HeldOutput | None = None,
        select: Callable[[Exchange], bool] | None = None,
    ) -> None:
        self.console = console
        self.held = held or HeldOutput()
        self.select = select  # only the exchanges it accepts get a row (show --follow's filters)
        self.options = options or TimelineOptions(width=console.width, header=False)
        width = self.options.width
        self.layout = Layout.fitted(width, 9, LIVE_LANES, LIVE_CONN, LIVE_OP, number=LIVE_NUMBER)
        self.rows = Rows(self.layout, self.options, horizon=None)
        self.assembler = Assembler(keep=False)
        self.lanes = LiveLanes(self.layout.lanes)
        self.stats = LiveStats()
        self.status = status
        self.failed: str | None = None
        self._live: Live | None = None
        self._finished = False

    # -- lifetime -------------------------------------------------------------------------

    def start(self) -> None:
        """Show the status line (only with `status`); rows print above it."""
        if not self.status or self._live is not None:
            return
        from rich.live import Live

        self._live = Live(
            console=self.console,
            get_renderable=self.stats.line,
            refresh_per_second=4,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()

    def stop(self) -> None:
        """Print the exchanges still open, and take the status line away."""
        self.finish()
        if self._live is not None:
            live, self._live = self._live, None
            with contextlib.suppress(Exception):  # the terminal is gone: nothing to tidy
                live.stop()

    def finish(self) -> None:
        """The capture has ended: rows for the exchanges that never completed."""
        if self._finished:
            return
        self._finished = True
        self._print(self.assembler.open_exchanges())
        self.held.release(force=True)

    # -- the listener ------------------------------------------------------------------------

    def __call__(self, records: list[Record]) -> None:
        if self.failed is not None:
            return
        try:
            self._feed(records)
        except (Exception, SystemExit) as exc:  # never let the view break the relay
            # SystemExit: rich's own answer to a broken pipe, on a Console that keeps it.
            self.failed = f"{type(exc).__name__}: {exc}"
            self._disable()

    def _disable(self) -> None:
        self._finished = True
        if self._live is not None:
            live, self._live = self._live, None
            with contextlib.suppress(Exception):
                live.stop()

    def _feed(self, records: list[Record]) -> None:
        done: list[Exchange] = []
        closed: list[int] = []
        for record in records:
            part = self.assembler.decode(record)
            if part is None:
                continue
            if self.status:  # the counts are the status line's
                self.stats.count(part)
            if isinstance(part, CaptureEnd):
                self._print(done)
                done = []
                self.finish()
                continue
            if isinstance(part, Opened):
                self.lanes.open(part.conn)
            elif isinstance(part, RequestHead):
                self.lanes.started(part.conn)
            done.extend(self.assembler.add(part))
            if isinstance(part, Failure) and part.kind != "upstream":
                # An error is shown as it happens, among the rows, as `show` places it; the
                # bytes that go by unparsed after it are still to come, so `show` counts them.
                # (A daemon out of reach is said once on stderr, and each client gets a 502.)
                self._print(done)
                done = []
                self._print_incident(Incident(part.mono, part.conn, part))
            if isinstance(part, Close):
                closed.append(part.conn)
        self._print(done)
        for conn in closed:
            self.lanes.close(conn)

    def _print_incident(self, incident: Incident) -> None:
        marks = self.lanes.marks(moment(incident), False)
        row = self.rows.incident(incident, marks, counted=False)
        self.console.print(row, soft_wrap=True)

    def _print(self, exchanges: list[Exchange]) -> None:
        blocks = []
        for ex in exchanges:
            if self.select is not None and not self.select(ex):
                self.lanes.completed(ex.conn)
                continue
            spans = stayed_open(ex)
            blocks.append(self.rows.block(ex, self.lanes.marks(ex, spans), spans))
            self.lanes.completed(ex.conn)
        if blocks:
            self.held.hold(lambda: self._write(blocks))
        self.held.release()

    def _write(self, blocks: list[Line]) -> None:
        if self._live is not None:
            # The status line is redrawn under what the console prints.
            for block in blocks:
                self.console.print(block, soft_wrap=True)
        else:
            # A batch's rows in one write: the Console's own printing costs more than the row.
            print_lines(self.console, blocks)


class LiveAudit:
    """A Recorder listener warning on stderr, as they complete, of calls the audit flags.

    It prints a finding at `level` or above the moment its exchange is recorded, with the
    process that made it: `docktap run --audit` shows risky calls while they happen. Through
    the live view's HeldOutput when there is one, so that warnings and rows keep their order.
    """

    def __init__(self, console: Console, level: str, held: HeldOutput | None = None) -> None:
        self.console = console
        self.held = held or HeldOutput()
        self.level = level
        self.assembler = Assembler(keep=False)
        self.peers: dict[int, dict[str, Any] | None] = {}

    def __call__(self, records: list[Record]) -> None:
        from docktap.audit import at_or_above, audit_exchange
        from docktap.render.audit import warning

        for record in records:
            part = self.assembler.decode(record)
            if part is None:
                continue
            if isinstance(part, Opened):
                self.peers[part.conn] = part.peer
            for ex in self.assembler.add(part):
                for finding in at_or_above(audit_exchange(ex, self.peers.get(ex.conn)), self.level):
                    self.held.hold(functools.partial(self._warn, warning(finding), finding.level))
            if isinstance(part, Close):
                self.peers.pop(part.conn, None)
        self.held.release()

    def _warn(self, text: str, level: str) -> None:
        self.console.print(
            text,
            style="bold red" if level in ("high", "critical") else "yellow",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
