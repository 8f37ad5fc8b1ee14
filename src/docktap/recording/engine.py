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
from docktap.events import Direction, Event
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

    def start(
        self, upstream: str, command: list[str] | None, tls: dict[str, Any] | None = None
    ) -> None:
        self._records.append(self.encoder.header(upstream, command, __version__, tls))
        self.flush()

    def opened(self, conn: int, peer: dict[str, Any] | None, t: float) -> None:
        self._records.append(self.encoder.opened(conn, peer, t))

    def data(self, conn: int, direction: Direction, data: bytes, t: float) -> None:
        self._encode(self.observer.feed(conn, direction, data, t))

    def eof(self, conn: int, direction: Direction, t: float) -> None:
        self._encode(self.observer.feed_eof(conn, direction, t))

    def closed(self, conn: int, t: float) -> None:
        self._encode(self.observer.close(conn, t))

    def _encode(self, events: list[Event]) -> None:
        encode = self.encoder.encode
        for event in events:
            self._records.extend(encode(event))

    def upstream_failed(self, conn: int, message: str, t: float) -> None:
        self._records.append(self.encoder.failure(conn, "upstream", message, t))

    def decided(self, conn: int, decision: dict[str, Any], t: float) -> None:
        """The guard's decision; the observer's records of the request are written first."""
        self._records.append(
            self.encoder.decision(
                conn,
                decision.get("seq"),
                bool(decision.get("allowed")),
                bool(decision.get("enforced")),
                decision.get("operation"),
                str(decision.get("reason", "")),
                str(decision.get("message", "")),
                t,
            )
        )

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
