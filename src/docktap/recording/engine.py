"""The recording engine: what the relay saw, turned into capture records and written.

It receives the relay's tap calls (connection opened, bytes each way, EOFs, closes, upstream
failures), feeds the observer, encodes the events and writes them. It does no I/O of its own
beyond the writer, and no batching: whoever drives it calls `flush()` after each batch of calls,
so that one batch becomes one write. docktap drives it in a child process (see child.py), away
from the relay's event loop; tests drive it directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from docktap import __version__
from docktap.capture.format import Record, RecordEncoder
from docktap.capture.writer import CaptureWriter
from docktap.events import Direction, Event, RequestHead
from docktap.observer import Observer

Listener = Callable[[list[Record]], None]


class Recorder:
    """Turns tap calls into capture records; `flush()` writes what has accumulated."""

    def __init__(
        self,
        writer: CaptureWriter,
        encoder: RecordEncoder,
        listeners: list[Listener] | None = None,
        head_budget: int | None = None,
    ) -> None:
        self.writer = writer
        self.encoder = encoder
        # `head_budget`: what all connections may hold of unfinished heads (observer.HeadBudget).
        self.observer = Observer() if head_budget is None else Observer(head_budget)
        self.listeners = list(listeners or [])
        self._records: list[Record] = []
        self._closed = False
        # Per connection, the guard's decisions on requests the observer has not read yet, each
        # with the seq it waits for (None: bytes that were no request, after those before it).
        self._waiting: dict[int, list[tuple[int | None, Record]]] = {}

    def start(
        self,
        upstream: str,
        command: list[str] | None,
        tls: dict[str, Any] | None = None,
        policy: str | None = None,
    ) -> None:
        self._records.append(self.encoder.header(upstream, command, __version__, tls, policy))
        self.flush()

    def opened(self, conn: int, peer: dict[str, Any] | None, t: float) -> None:
        self._records.append(self.encoder.opened(conn, peer, t))

    def data(self, conn: int, direction: Direction, data: bytes, t: float) -> None:
        events = self.observer.feed(conn, direction, data, t)
        if conn in self._waiting:
            self._encode_releasing(conn, events)
        else:
            self._encode(events)

    def eof(self, conn: int, direction: Direction, t: float) -> None:
        events = self.observer.feed_eof(conn, direction, t)
        if conn in self._waiting:
            self._encode_releasing(conn, events)
        else:
            self._encode(events)

    def closed(self, conn: int, t: float) -> None:
        events = self.observer.close(conn, t)
        waiting = self._waiting.pop(conn, None)
        if waiting is None or not events:
            self._encode(events)
            return
        # Decisions on requests never read (the connection closed while they waited their
        # turn) go last, but before the connection's close.
        self._encode(events[:-1])
        self._records += [record for _, record in waiting]
        self._encode(events[-1:])

    def _encode(self, events: list[Event]) -> None:
        encode = self.encoder.encode
        for event in events:
            self._records.extend(encode(event))

    def _encode_releasing(self, conn: int, events: list[Event]) -> None:
        """Encode, and write each waiting decision right after its request's record."""
        encode = self.encoder.encode
        waiting = self._waiting[conn]
        for event in events:
            self._records.extend(encode(event))
            if isinstance(event, RequestHead):
                self._release(waiting, event.seq)
        if not waiting:
            del self._waiting[conn]

    def _release(self, waiting: list[tuple[int | None, Record]], read: int) -> None:
        while waiting and (waiting[0][0] is None or waiting[0][0] <= read):
            self._records.append(waiting.pop(0)[1])

    def upstream_failed(self, conn: int, message: str, t: float) -> None:
        self._records.append(self.encoder.failure(conn, "upstream", message, t))

    def decided(self, conn: int, decision: dict[str, Any], t: float) -> None:
        """The guard's decision, written after its request's record.

        The guard decides a request as it arrives; the observer reads a connection's requests
        one exchange at a time, as dockerd serves them, so a request pipelined behind another
        is recorded only once the exchange before it is over. Its decision waits for it, and
        one on bytes that were no request waits behind those before it."""
        seq = decision.get("seq")
        record = self.encoder.decision(
            conn,
            seq,
            bool(decision.get("allowed")),
            bool(decision.get("enforced")),
            decision.get("operation"),
            str(decision.get("reason", "")),
            str(decision.get("message", "")),
            t,
        )
        waiting = self._waiting.get(conn)
        if waiting is None and (seq is None or seq <= self.observer.requests(conn)):
            self._records.append(record)
        elif waiting is None:
            self._waiting[conn] = [(seq, record)]
        else:
            waiting.append((seq, record))

    def flush(self) -> None:
        records, self._records = self._records, []
        if not records:
            return
        self.writer.write(records)
        for listener in self.listeners:
            listener(records)

    def close(self, t: float, clean: bool = True) -> None:
        """Write what is pending and close the file; `clean` marks the capture complete."""
        if self._closed:
            return
        self._closed = True
        if clean:
            self._records.append(
                self.encoder.footer(t, self.writer.records + len(self._records) + 1)
            )
        self.flush()
        self.writer.close()
