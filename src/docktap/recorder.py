"""Glue between the relay and the capture: the tap that parses and records, off the hot path.

The relay calls the tap for every chunk it forwards. Parsing a chunk costs more than forwarding
it, so the recorder only queues the call and returns; the queue is drained in one go on the next
turn of the event loop, after the pending I/O callbacks. Each drain feeds the observer, encodes
the events and writes the whole batch with one write.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from docktap import __version__
from docktap.capture.format import Record, RecordEncoder
from docktap.capture.writer import CaptureWriter
from docktap.events import Direction, Event
from docktap.observer import Observer
from docktap.relay import PeerCredentials

Listener = Callable[[list[Record]], None]


class Recorder:
    """A relay tap that writes a capture. Use from inside the event loop."""

    def __init__(
        self,
        writer: CaptureWriter,
        encoder: RecordEncoder,
        listeners: list[Listener] | None = None,
    ) -> None:
        self.writer = writer
        self.encoder = encoder
        self.observer = Observer()
        self.listeners = list(listeners or [])
        self._queue: list[tuple[Any, ...]] = []
        self._scheduled = False
        self._closed = False

    def start(self, upstream: str, command: list[str] | None) -> None:
        self._write([self.encoder.header(upstream, command, __version__)])

    # -- the Tap protocol: queue and return ------------------------------------------------

    def opened(self, conn: int, peer: PeerCredentials | None, t: float) -> None:
        self._push(("open", conn, peer, t))

    def data(self, conn: int, direction: Direction, data: bytes, t: float) -> None:
        self._push(("data", conn, direction, data, t))

    def eof(self, conn: int, direction: Direction, t: float) -> None:
        self._push(("eof", conn, direction, t))

    def closed(self, conn: int, t: float) -> None:
        self._push(("close", conn, t))

    def upstream_failed(self, conn: int, message: str, t: float) -> None:
        self._push(("failed", conn, message, t))

    def _push(self, item: tuple[Any, ...]) -> None:
        if self._closed:
            return
        self._queue.append(item)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.drain)

    # -- the slow part ------------------------------------------------------------------------

    def drain(self) -> None:
        self._scheduled = False
        queue, self._queue = self._queue, []
        records: list[Record] = []
        observer, encoder = self.observer, self.encoder
        for item in queue:
            kind = item[0]
            events: list[Event]
            if kind == "data":
                events = observer.feed(item[1], item[2], item[3], item[4])
            elif kind == "eof":
                events = observer.feed_eof(item[1], item[2], item[3])
            elif kind == "close":
                events = observer.close(item[1], item[2])
            elif kind == "open":
                peer = dataclasses.asdict(item[2]) if item[2] is not None else None
                records.append(encoder.opened(item[1], peer, item[3]))
                continue
            else:
                records.append(encoder.failure(item[1], "upstream", item[2], item[3]))
                continue
            for event in events:
                records.extend(encoder.encode(event))
        self._write(records)

    def _write(self, records: list[Record]) -> None:
        if not records:
            return
        self.writer.write(records)
        for listener in self.listeners:
            listener(records)

    def close(self, t: float) -> None:
        """Flush what is queued, mark the capture complete, and close the file."""
        if self._closed:
            return
        self.drain()
        self._closed = True
        self._write([self.encoder.footer(t, self.writer.records + 1)])
        self.writer.close()
