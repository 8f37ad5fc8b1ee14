"""What the replay daemon says for each recorded exchange, and what it waits for before each part.

A capture is a log of what both sides sent, in the order docktap saw it. To play the daemon's
side back, each exchange becomes a script: the daemon's pieces (response head, body chunks,
stream data, half-close, close) in recorded order, each with the conditions that held when the
daemon sent it. Those conditions keep causality when a client runs against the replay:

- the client's own bytes that preceded a piece on the same exchange (stdin-driven output: `cat`
  echoes only after it was sent something, and ends only after stdin did);
- for exchanges about the same container or exec instance, the requests that had arrived and
  the pieces the daemon had sent before it (`docker run` gets its attach output only after it
  asked to start the container, and its wait answer only after the attach stream ended).

Other exchanges are independent: the order two unrelated calls happened to interleave in is
not something a client can rely on. Pure: records in, scripts out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from docktap import routes
from docktap.capture.format import Record, decode_bytes
from docktap.capture.reader import Capture, Exchange

#: What a replay says it speaks when its captures do not tell: Docker 20.10's version.
DEFAULT_API_VERSION = "1.41"


@dataclass(frozen=True, slots=True)
class Piece:
    """One thing the daemon sent: `head`, `body` (a chunk), `stream`, `halfclose` or `close`."""

    index: int  # position of its record in the capture: the recorded order
    mono: float
    kind: str
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class ClientMark:
    """Where the client stood on a hijacked stream: bytes sent so far, or its half-close."""

    index: int
    sent: int
    halfclosed: bool


@dataclass
class Recording:
    """One recorded exchange, ready to be played back."""

    source: str  # the capture file it came from
    number: int  # its place in the capture, in start order, from 1
    exchange: Exchange
    request_index: int
    pieces: list[Piece] = field(default_factory=list)
    client_marks: list[ClientMark] = field(default_factory=list)
    subjects: frozenset[str] = frozenset()
    related: list[Recording] = field(default_factory=list)  # about the same subject
    head: Record | None = None  # the response head record

    @property
    def label(self) -> str:
        return f"#{self.number}"

    @property
    def ends_open(self) -> bool:
        """The response never ended (the client left an endless stream): keep it open."""
        ex = self.exchange
        return not ex.hijacked and ex.response_complete is not True

    @property
    def truncated(self) -> bool:
        """The capture kept only part of the response body (the inline cap)."""
        ex = self.exchange
        return len(ex.response_body) < ex.response_body_size


def subjects(path: str) -> frozenset[str]:
    """The containers and exec instances a path is about, as `containers/ID`, `exec/ID`."""
    found = routes.subject(path)
    return frozenset() if found is None else frozenset({str(found)})


def scripts(capture: Capture, source: str) -> list[Recording]:
    """A script for every exchange of `capture` whose request was recorded, in start order."""
    numbers = {(ex.conn, ex.seq): n for n, ex in enumerate(capture.exchanges, 1)}
    by_key: dict[tuple[int, int], Recording] = {}
    hijacked_on: dict[int, Recording] = {}  # connection -> the exchange that took it over
    client_sent: dict[int, int] = {}
    for index, record in enumerate(capture.records):
        kind = record["type"]
        conn = record.get("conn")
        if conn is None:
            continue
        if kind in ("halfclose", "close"):
            owner = hijacked_on.get(conn)
            if owner is None:
                continue
            if kind == "close" or record.get("dir") == "daemon":
                owner.pieces.append(Piece(index, record.get("mono") or 0.0, kind))
            else:
                owner.client_marks.append(ClientMark(index, client_sent.get(conn, 0), True))
            continue
        recording = by_key.get((conn, record.get("seq", -1)))
        if kind == "request":
            number = numbers.get((conn, record["seq"]))
            if number is None:
                continue
            ex = capture.exchanges[number - 1]
            recording = Recording(source, number, ex, index, subjects=subjects(ex.path))
            by_key[(conn, record["seq"])] = recording
            continue
        if recording is None:
            continue
        mono = record.get("mono") or 0.0
        from_daemon = record.get("dir") == "daemon"
        if kind == "response" and not (record.get("informational") and record["status"] != 101):
            recording.head = record
            recording.pieces.append(Piece(index, mono, "head"))
        elif kind == "hijack":
            hijacked_on[conn] = recording
        elif kind == "body" and from_daemon:
            recording.pieces.append(Piece(index, mono, "body", decode_bytes(record)))
        elif kind == "stream" and from_daemon:
            recording.pieces.append(Piece(index, mono, "stream", decode_bytes(record)))
        elif kind == "stream":
            client_sent[conn] = client_sent.get(conn, 0) + len(decode_bytes(record))
            recording.client_marks.append(ClientMark(index, client_sent[conn], False))
    ordered = sorted(by_key.values(), key=lambda r: r.number)
    by_subject: dict[str, list[Recording]] = {}
    for recording in ordered:
        related: dict[int, Recording] = {}
        for subject in recording.subjects:
            for earlier in by_subject.get(subject, []):
                related[earlier.number] = earlier
            by_subject.setdefault(subject, []).append(recording)
        recording.related = list(related.values())
    # Later exchanges about the same subject can precede a piece too (attach started first,
    # start came later but before the output): relate both ways.
    for recording in ordered:
        for earlier in recording.related:
            if recording not in earlier.related:
                earlier.related.append(recording)
    return ordered


def ping_recording(api_version: str, method: str) -> Recording:
    """An answer to `/_ping` for captures that hold none (docker-py asks /version instead).

    It says what a daemon of the capture's API version says, so that a client negotiates the
    version the capture speaks.
    """
    ex = Exchange(0, 0, method, "/_ping", "SystemPing", None, [], 0.0, 0.0)
    ex.status, ex.reason, ex.response_complete = 200, "OK", True
    body = b"" if method == "HEAD" else b"OK"
    ex.response_body.extend(body)
    ex.response_body_size = len(body)
    headers = [
        ["Api-Version", api_version],
        ["Cache-Control", "no-cache, no-store, must-revalidate"],
        ["Content-Length", str(len(body))],
        ["Content-Type", "text/plain; charset=utf-8"],
        ["Ostype", "linux"],
        ["Pragma", "no-cache"],
    ]
    recording = Recording("docktap", 0, ex, -1)
    recording.head = {"status": 200, "reason": "OK", "http_version": "1.1", "headers": headers}
    recording.pieces = [Piece(0, 0.0, "head"), Piece(1, 0.0, "body", body)]
    return recording


def api_version(recordings: list[Recording]) -> str:
    """The highest API version the recorded daemon answered with."""
    versions: set[str] = {
        str(value)
        for r in recordings
        for name, value in (r.head or {}).get("headers", [])
        if name.lower() == "api-version"
    }
    versions.update(r.exchange.api_version for r in recordings if r.exchange.api_version)
    if not versions:
        return DEFAULT_API_VERSION
    return max(versions, key=lambda v: tuple(int(p) for p in v.split(".") if p.isdigit()))
