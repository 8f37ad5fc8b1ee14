"""Reads a capture back and assembles its records into exchanges.

Records arrive interleaved across connections and split into pieces; readers of a capture want
whole exchanges: a request, its answer, its bodies and streams, and how long it all took. This
module does that assembly and nothing else, so renderers and the replay server share it.

A capture cut short by a killed docktap ends with a partial line; that is expected and only
warned about. A damaged line anywhere else is an error: the file is not what docktap wrote.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import orjson

from docktap.capture.format import FORMAT, VERSION, Record, decode_bytes


class CaptureError(ValueError):
    """The file is not a docktap capture docktap can read."""


class CaptureWarning(UserWarning):
    """The capture is readable but incomplete (its last line was cut off)."""


@dataclass
class Exchange:
    """One request and whatever came back, streams included."""

    conn: int
    seq: int
    method: str
    target: str
    operation: str | None
    api_version: str | None
    request_headers: list[tuple[str, str]]
    started: float  # wall clock, epoch seconds
    started_mono: float  # seconds since the capture started
    request_body: bytearray = field(default_factory=bytearray)  # inline part only
    request_body_size: int = 0
    request_complete: bool | None = None
    request_sha256: str | None = None
    status: int | None = None
    reason: str | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    informational: list[int] = field(default_factory=list)
    response_started_mono: float | None = None
    response_body: bytearray = field(default_factory=bytearray)
    response_body_size: int = 0
    response_complete: bool | None = None
    response_sha256: str | None = None
    ended_mono: float | None = None
    hijacked: str | None = None
    stream: dict[str, bytearray] = field(default_factory=dict)  # raw hijacked bytes per sender
    frames: list[tuple[str, bytes]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float | None:
        if self.ended_mono is None:
            return None
        return round(self.ended_mono - self.started_mono, 6)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def header(self, name: str, response: bool = True) -> str | None:
        lower = name.lower()
        headers = self.response_headers if response else self.request_headers
        return next((v for k, v in headers if k.lower() == lower), None)

    def output(self, stream: str) -> bytes:
        """What the container wrote to `stdout` or `stderr`, or what the client sent on `stdin`.

        Framed output is split by its frames; unframed (TTY) output all counts as stdout.
        """
        if stream == "stdin":
            return bytes(self.stream.get("client", b""))
        if self.frames:
            return b"".join(data for name, data in self.frames if name == stream)
        if stream == "stdout" and self.hijacked:
            return bytes(self.stream.get("daemon", b""))
        return b""

    def summary(self) -> dict[str, Any]:
        """The machine-readable view `docktap show --json` prints."""
        out: dict[str, Any] = {
            "conn": self.conn,
            "seq": self.seq,
            "method": self.method,
            "target": self.target,
            "operation": self.operation,
            "api_version": self.api_version,
            "status": self.status,
            "started": self.started,
            "duration_s": self.duration_s,
            "request_body_size": self.request_body_size,
            "response_body_size": self.response_body_size,
            "hijacked": self.hijacked,
        }
        if self.hijacked or self.frames:
            for name in ("stdout", "stderr", "stdin"):
                out[name] = self.output(name).decode("utf-8", errors="replace")
        if self.errors:
            out["errors"] = list(self.errors)
        return out


@dataclass
class Connection:
    conn: int
    opened_mono: float | None = None
    closed_mono: float | None = None
    peer: dict[str, int] | None = None
    exchanges: int = 0


@dataclass
class Capture:
    """A loaded capture: its header, raw records, and the exchanges assembled from them."""

    header: Record
    records: list[Record]
    exchanges: list[Exchange]
    connections: dict[int, Connection]
    complete: bool  # the capture was closed cleanly (it has its end-of-capture record)

    @property
    def errors(self) -> list[Record]:
        return [r for r in self.records if r.get("type") == "error"]

    def __iter__(self) -> Iterator[Exchange]:
        return iter(self.exchanges)

    def __len__(self) -> int:
        return len(self.exchanges)


def _parse_lines(lines: list[bytes], name: str) -> list[Record]:
    """Records one line at a time: the slow path, which can say which line is damaged."""
    records: list[Record] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            if number == len(lines) and not line.endswith(b"\n"):
                warnings.warn(
                    f"{name}: last line is cut off (docktap was stopped while writing); "
                    "it was skipped",
                    CaptureWarning,
                    stacklevel=4,
                )
                break
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                raise CaptureError(f"{name}:{number}: not UTF-8 text") from exc
            raise CaptureError(f"{name}:{number}: not a JSON record ({exc})") from exc
        if not isinstance(record, dict) or "type" not in record:
            raise CaptureError(f"{name}:{number}: not a capture record")
        records.append(record)
    return records


def _parse(data: bytes, name: str) -> list[Record]:
    """All records of a capture file.

    A whole, healthy capture is parsed in one go as a JSON array (JSON strings never hold a
    raw newline, so newlines can become commas): several times faster than line by line.
    Anything unusual (a cut last line, a damaged record) falls back to the careful path.
    """
    body = data.rstrip(b"\n")
    try:
        records = orjson.loads(b"[" + body.replace(b"\n", b",") + b"]")
    except orjson.JSONDecodeError:
        records = None
    if records is not None and all(isinstance(r, dict) and "type" in r for r in records):
        return records  # type: ignore[no-any-return]
    return _parse_lines(_split_lines(data), name)


def assemble(records: list[Record]) -> tuple[list[Exchange], dict[int, Connection]]:
    """Exchanges (in the order requests started) and connections from a list of records."""
    assembler = Assembler()
    feed = assembler.feed
    for record in records:
        feed(record)
    return assembler.ordered(), assembler.connections


class Assembler:
    """Assembles exchanges from records fed one at a time, as they are written.

    `feed` returns the exchanges a record completed: a response body ended, or the connection
    closed (which ends a hijacked stream, or an exchange that never got its answer). A live
    view prints those as they come. With `keep=False` completed exchanges and closed
    connections are forgotten, so a long-running reader holds only what is still in flight;
    records arriving for an exchange after it completed are then ignored.
    """

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.exchanges: dict[tuple[int, int], Exchange] = {}
        self.connections: dict[int, Connection] = {}
        self._pending: dict[int, dict[int, Exchange]] = {}  # per connection, not ended yet

    def feed(self, record: Record) -> list[Exchange]:
        conn_id = record.get("conn")
        if conn_id is None:
            return []
        connections = self.connections
        if conn_id not in connections:
            connections[conn_id] = Connection(conn_id)
        kind = record["type"]
        if kind == "end":  # the commonest record, and the one that completes exchanges
            ex = self.exchanges.get((conn_id, record.get("seq", -1)))
            if ex is None:
                return []
            ended = ex.ended_mono
            _apply(ex, record, kind, record.get("mono"))
            if ended is not None or ex.ended_mono is None:
                return []
            pending = self._pending.get(conn_id)
            if pending is not None:
                pending.pop(ex.seq, None)
            if not self.keep:
                self.exchanges.pop((conn_id, ex.seq), None)
            return [ex]
        if kind == "request":
            connections[conn_id].exchanges += 1
            seq = record["seq"]
            ex = Exchange(
                conn=conn_id,
                seq=seq,
                method=record["method"],
                target=record["target"],
                operation=record.get("operation"),
                api_version=record.get("api_version"),
                request_headers=[(k, v) for k, v in record.get("headers", [])],
                started=record["t"],
                started_mono=record.get("mono") or 0.0,
            )
            self.exchanges[(conn_id, seq)] = ex
            pending = self._pending.get(conn_id)
            if pending is None:
                pending = self._pending[conn_id] = {}
            pending[seq] = ex
            return []
        if kind == "open":
            connection = connections[conn_id]
            connection.opened_mono = record.get("mono")
            connection.peer = record.get("peer")
            return []
        if kind == "close":
            mono = record.get("mono")
            connections[conn_id].closed_mono = mono
            done: list[Exchange] = []
            for ex in self._pending.pop(conn_id, {}).values():
                if ex.ended_mono is None:
                    ex.ended_mono = mono
                done.append(ex)
            if not self.keep:
                for ex in done:
                    self.exchanges.pop((ex.conn, ex.seq), None)
                del connections[conn_id]
            return done
        ex = self.exchanges.get((conn_id, record.get("seq", -1)))
        if ex is not None:
            _apply(ex, record, kind, record.get("mono"))  # only an `end` ends an exchange
        return []

    def open_exchanges(self) -> list[Exchange]:
        """Exchanges not completed yet (a capture cut short leaves some), in start order."""
        still = [ex for pending in self._pending.values() for ex in pending.values()]
        return sorted(still, key=_start_order)

    def ordered(self) -> list[Exchange]:
        """Every exchange kept, in the order requests started."""
        return sorted(self.exchanges.values(), key=_start_order)


def _start_order(ex: Exchange) -> tuple[float, int, int]:
    return (ex.started_mono, ex.conn, ex.seq)


def _apply(ex: Exchange, record: Record, kind: str, mono: float | None) -> None:
    from_client = record.get("dir") == "client"
    if kind == "response":
        if record.get("informational") and record["status"] != 101:
            ex.informational.append(record["status"])
            return
        ex.status = record["status"]
        ex.reason = record.get("reason")
        ex.response_headers = [(k, v) for k, v in record.get("headers", [])]
        ex.response_started_mono = mono
    elif kind == "body":
        (ex.request_body if from_client else ex.response_body).extend(decode_bytes(record))
    elif kind == "end":
        if from_client:
            ex.request_body_size = record["size"]
            ex.request_complete = record.get("complete")
            ex.request_sha256 = record.get("sha256")
        else:
            ex.response_body_size = record["size"]
            ex.response_complete = record.get("complete")
            ex.response_sha256 = record.get("sha256")
            ex.ended_mono = mono
    elif kind == "hijack":
        ex.hijacked = record["protocol"]
    elif kind == "stream":
        ex.stream.setdefault(record["dir"], bytearray()).extend(decode_bytes(record))
    elif kind == "frame":
        ex.frames.append((record["stream"], decode_bytes(record)))
    elif kind == "error":
        ex.errors.append(record.get("message", ""))


def _split_lines(data: bytes) -> list[bytes]:
    """Lines ended by `\\n` only, each keeping its end.

    Not splitlines: it also breaks at other line separators, which JSON leaves unescaped
    inside strings, so a body containing one would look like a damaged record.
    """
    lines = [line + b"\n" for line in data.split(b"\n")]
    lines[-1] = lines[-1][:-1]
    if not lines[-1]:
        lines.pop()
    return lines


def loads(data: bytes | str, name: str = "<capture>") -> Capture:
    """A capture from the contents of a capture file."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    # A capture is a great many small objects that never form cycles: collecting while
    # building them only costs time (half of it, on a large capture).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _build(_parse(data, name), name)
    finally:
        if collecting:
            gc.enable()


def _build(records: list[Record], name: str) -> Capture:
    if not records:
        raise CaptureError(f"{name}: empty, not a docktap capture")
    header = records[0]
    if header.get("type") != "capture" or header.get("format") != FORMAT:
        raise CaptureError(f"{name}: no capture header on the first line")
    if header.get("version") != VERSION:
        raise CaptureError(
            f"{name}: capture format version {header.get('version')} "
            f"(this docktap reads version {VERSION})"
        )
    exchanges, connections = assemble(records)
    complete = records[-1].get("type") == "end-of-capture"
    return Capture(header, records, exchanges, connections, complete)


def load(path: str | PathLike[str]) -> Capture:
    """Read a capture file and assemble its exchanges."""
    with open(path, "rb") as handle:
        data = handle.read()
    return loads(data, str(path))
