"""Byte scripts: what a relay saw on the wire, replayable into the observer without a daemon.

A byte script is the exact sequence of what a relay forwarded, connection by connection, in
the order it forwarded it. Each step is one of

* ``{"conn": n, "dir": "client"|"daemon", "b64": "..."}``: one chunk read from that side
  (base64, because hijacked streams and tar bodies are binary);
* ``{"conn": n, "dir": "client"|"daemon", "eof": true}``: that side finished sending
  (a half-close; the other side may go on);
* ``{"conn": n, "close": true}``: the connection is gone.

Connections are numbered 1, 2, ... in the order the relay accepted them. Scripts are stored
as JSON at ``tests/data/bytescripts/NAME.json`` together with a short ``"about"`` text and the
``"command"`` that produced them; ``scripts/record-bytescripts`` regenerates them all against
the private daemon of ``tests/dockerd.py``.

The chunk boundaries in a script are the ones the kernel happened to deliver. The observer
must not care: :func:`run_observer` re-feeds a script with any re-splitting of its chunks and
:func:`normalize` reduces the events to a form in which differently split runs compare equal.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from docktap.events import (
    BodyData,
    Direction,
    Event,
    Frame,
    StreamData,
    Unparsed,
)
from docktap.observer import Observer
from docktap.tap import PeerCredentials

EventT = TypeVar("EventT", bound=Event)

Step = dict[str, Any]
Split = Callable[[bytes], list[bytes]]

DATA_DIR = Path(__file__).resolve().parent / "data" / "bytescripts"

# Events that carry a piece of a byte sequence; the boundaries between pieces mean nothing.
DataEvent = BodyData | StreamData | Frame | Unparsed
DATA_EVENTS = (BodyData, StreamData, Frame, Unparsed)


def data_step(conn: int, direction: Direction, data: bytes) -> Step:
    return {"conn": conn, "dir": direction.value, "b64": base64.b64encode(data).decode("ascii")}


def eof_step(conn: int, direction: Direction) -> Step:
    return {"conn": conn, "dir": direction.value, "eof": True}


def close_step(conn: int) -> Step:
    return {"conn": conn, "close": True}


def step_data(step: Step) -> bytes | None:
    """The bytes of a data step, None for an eof or close step."""
    if "b64" not in step:
        return None
    return base64.b64decode(step["b64"])


class RawTap:
    """A relay tap that keeps every chunk, EOF and close as byte-script steps.

    The relay calls it from its event loop thread; :attr:`steps` and :meth:`wait_idle` may be
    used from another thread. Relay connection numbers are renumbered from 1 in the order this
    tap first hears of them, so a script does not depend on what the relay did before.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._steps: list[Step] = []
        self._numbers: dict[int, int] = {}
        self._open: set[int] = set()
        self.failures: list[str] = []

    def _number(self, conn: int) -> int:
        number = self._numbers.get(conn)
        if number is None:
            number = self._numbers[conn] = len(self._numbers) + 1
            self._open.add(number)
        return number

    @property
    def steps(self) -> list[Step]:
        with self._lock:
            return list(self._steps)

    def _add(self, step: Step) -> None:
        with self._lock:
            self._steps.append(step)
            self._lock.notify_all()

    # -- relay.Tap --------------------------------------------------------------------------

    def opened(self, conn: int, peer: PeerCredentials | None, t: float) -> None:
        with self._lock:
            self._number(conn)

    def data(self, conn: int, direction: Direction, data: bytes, t: float) -> None:
        with self._lock:
            self._steps.append(data_step(self._number(conn), direction, data))

    def eof(self, conn: int, direction: Direction, t: float) -> None:
        with self._lock:
            self._steps.append(eof_step(self._number(conn), direction))

    def closed(self, conn: int, t: float) -> None:
        with self._lock:
            number = self._number(conn)
            self._steps.append(close_step(number))
            self._open.discard(number)
            self._lock.notify_all()

    def upstream_failed(self, conn: int, message: str, t: float) -> None:
        with self._lock:
            self.failures.append(message)

    # -- for the recorder -------------------------------------------------------------------

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every connection seen so far has closed; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._open:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
            return True

    def connection_count(self) -> int:
        with self._lock:
            return len(self._numbers)


def path_of(name: str) -> Path:
    return DATA_DIR / f"{name}.json"


def names() -> list[str]:
    """Names of all stored scripts, sorted."""
    return sorted(p.stem for p in DATA_DIR.glob("*.json"))


def _check_step(step: Any, index: int) -> Step:
    if not isinstance(step, dict) or not isinstance(step.get("conn"), int):
        raise ValueError(f"step {index}: not a step: {step!r}")
    if step.get("close") is True:
        return step
    if step.get("dir") not in ("client", "daemon"):
        raise ValueError(f"step {index}: bad direction {step.get('dir')!r}")
    if step.get("eof") is not True and not isinstance(step.get("b64"), str):
        raise ValueError(f"step {index}: neither data, eof nor close")
    return step


def load_document(name: str) -> dict[str, Any]:
    """The whole stored JSON document: about, command, steps."""
    doc = json.loads(path_of(name).read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("steps"), list):
        raise ValueError(f"{name}: not a byte script")
    doc["steps"] = [_check_step(step, i) for i, step in enumerate(doc["steps"])]
    return doc


def load(name: str) -> list[Step]:
    steps: list[Step] = load_document(name)["steps"]
    return steps


def save(name: str, steps: Iterable[Step], about: str, command: str | None = None) -> Path:
    """Write a script with one step per line, so that diffs of re-recordings stay readable."""
    path = path_of(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "{",
        f'  "about": {json.dumps(about)},',
        f'  "command": {json.dumps(command or "")},',
        '  "steps": [',
    ]
    body = [f"    {json.dumps(step, separators=(', ', ': '))}" for step in steps]
    lines.append(",\n".join(body))
    lines += ["  ]", "}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def bytes_per_conn(steps: Iterable[Step]) -> dict[int, int]:
    """Total data bytes per connection, both directions."""
    sizes: dict[int, int] = {}
    for step in steps:
        data = step_data(step)
        sizes[step["conn"]] = sizes.get(step["conn"], 0) + (len(data) if data else 0)
    return sizes


def whole(data: bytes) -> list[bytes]:
    """The identity split: feed each chunk as recorded."""
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def run_observer(steps: Iterable[Step], split: Split = whole) -> list[Event]:
    """Feed a script to a fresh Observer, each data step cut into pieces by `split`.

    The timestamp of every event is the index of the step that produced it, so runs with
    different splits give comparable events.
    """
    observer = Observer()
    events: list[Event] = []
    for index, step in enumerate(steps):
        t = float(index)
        conn = step["conn"]
        if step.get("close"):
            events += observer.close(conn, t)
            continue
        direction = Direction(step["dir"])
        if step.get("eof"):
            events += observer.feed_eof(conn, direction, t)
            continue
        data = step_data(step)
        assert data is not None
        for piece in split(data):
            events += observer.feed(conn, direction, piece, t)
    return events


def record(steps: Iterable[Step], path: Path, command: list[str] | None = None) -> Path:
    """A capture of `path` recorded from a script by the real recording engine, as a relay
    would drive it: each connection opens at its first step, each step 0.1 s after the last."""
    from docktap.capture.format import RecordEncoder
    from docktap.capture.writer import CaptureWriter
    from docktap.recording.engine import Recorder

    recorder = Recorder(CaptureWriter.create(str(path)), RecordEncoder(1_800_000_000.0, 10.0), [])
    recorder.start("unix:///var/run/docker.sock", command)
    opened: set[int] = set()
    t = 10.0
    for step in steps:
        t = round(t + 0.1, 6)
        conn = step["conn"]
        if conn not in opened:
            opened.add(conn)
            recorder.opened(conn, {"pid": 7, "uid": 0, "gid": 0, "exe": None}, t)
        if step.get("close"):
            recorder.closed(conn, t)
        elif step.get("eof"):
            recorder.eof(conn, Direction(step["dir"]), t)
        else:
            data = step_data(step)
            assert data is not None
            recorder.data(conn, Direction(step["dir"]), data, t)
    recorder.close(t + 0.1)
    return path


# A client that pings on connection 1, sends a request line with a NUL on connection 2 (h11
# quotes such a line as `bytearray(b'...')`, which the daemon refuses with a 400), and asks for
# info on connection 1.
BROKEN_LINE = b"GET /v1.41/\x00info HTTP/1.1\r\nHost: docker\r\n\r\n"
REFUSED = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
UNREADABLE = [
    data_step(1, Direction.CLIENT, b"HEAD /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"),
    data_step(1, Direction.DAEMON, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    data_step(2, Direction.CLIENT, BROKEN_LINE),
    data_step(1, Direction.CLIENT, b"GET /v1.41/info HTTP/1.1\r\nHost: docker\r\n\r\n"),
    data_step(2, Direction.DAEMON, REFUSED),
    data_step(
        1,
        Direction.DAEMON,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    ),
    close_step(2),
    close_step(1),
]


def _merge_key(event: Event) -> tuple[Any, ...]:
    return (
        type(event),
        event.conn,
        getattr(event, "seq", None),
        getattr(event, "direction", None),
        getattr(event, "stream", None),
    )


def replace(event: EventT, **changes: Any) -> EventT:
    """A copy of `event` with the fields `changes` names changed."""
    unknown = changes.keys() - set(event.field_names)
    assert not unknown, f"{type(event).__name__} has no field {sorted(unknown)}"
    return type(event)(*(changes.get(name, getattr(event, name)) for name in event.field_names))


def normalize(events: Iterable[Event]) -> list[Event]:
    """Merge the pieces of each data run and drop timestamps (every `t` becomes 0).

    A data event (BodyData, StreamData, Frame, Unparsed) is appended to the previous data
    event of the same type on the same connection and direction when they agree on seq and
    stream and no other event of that connection came in between. Data events of different
    types derived from the same bytes (StreamData and the Frames cut from it, BodyData and
    Frames in a logs body) interleave differently depending on how the bytes were split, so
    "adjacent" here means adjacent within that type; the merged event keeps the place of its
    first piece.
    """
    out: list[Event] = []
    pieces: list[list[bytes]] = []  # data pieces per output slot (empty for non-data events)
    last: dict[tuple[Any, ...], int] = {}  # (type, conn, direction) -> slot of its last run
    for event in events:
        event = replace(event, t=0.0)
        if not isinstance(event, DATA_EVENTS):
            for layer in [layer for layer in last if layer[1] == event.conn]:
                del last[layer]
            out.append(event)
            pieces.append([])
            continue
        layer = (type(event), event.conn, event.direction)
        slot = last.get(layer)
        if slot is not None and _merge_key(out[slot]) == _merge_key(event):
            pieces[slot].append(event.data)
            continue
        last[layer] = len(out)
        out.append(event)
        pieces.append([event.data])
    merged: list[Event] = []
    for event, parts in zip(out, pieces, strict=True):
        if len(parts) > 1:
            assert isinstance(event, DATA_EVENTS)
            event = replace(event, data=b"".join(parts))
        merged.append(event)
    return merged
