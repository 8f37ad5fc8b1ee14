"""What the replay daemon says for each recorded exchange, and what it waits for before each part.

A capture is a log of what both sides sent, in the order docktap saw it. To play the daemon's
side back, each exchange becomes a script: the daemon's pieces (response head, body chunks,
stream data, half-close, close) in recorded order, each with the conditions that held when the
daemon sent it. Those conditions keep causality when a client runs against the replay:

- the client's own bytes that preceded a piece on the same exchange (stdin-driven output: `cat`
  echoes only after it was sent something, and ends only after stdin did);
- the client's half-close, when the daemon answered only after it (a client that gave up on a
  ContainerWait gets dockerd's "context canceled" once it gives up again, not at once);
- for exchanges about the same container or exec instance, the requests that had arrived and
  the pieces the daemon had sent before it (`docker run` gets its attach output only after it
  asked to start the container, and its wait answer only after the attach stream ended).

Other exchanges are independent: the order two unrelated calls happened to interleave in is
not something a client can rely on. Pure: exchanges in, scripts out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from docktap.capture.reader import (
    BodyChunk,
    Capture,
    Close,
    Exchange,
    HalfClose,
    Hijack,
    Left,
    RequestHead,
    ResponseHead,
    StreamChunk,
)
from docktap.events import Direction
from docktap.routes import Identity

#: What a replay says it speaks when its captures do not tell: Docker 20.10's version.
DEFAULT_API_VERSION = "1.41"


class PieceKind(enum.StrEnum):
    """What a piece of the daemon's side is."""

    HEAD = "head"  # the response head
    BODY = "body"  # a chunk of the response body
    STREAM = "stream"  # bytes of a hijacked stream
    HALFCLOSE = "halfclose"
    CLOSE = "close"


@dataclass(frozen=True, slots=True)
class Piece:
    """One thing the daemon sent, and where it stood among everything recorded.

    Bytes the capture was loaded without (a large body, left in the file) are not in `data`:
    `left` says where the server reads them from when it sends the piece.
    """

    index: int  # position of its record in the capture: the recorded order
    mono: float
    kind: PieceKind
    data: bytes = b""
    left: Left | None = None
    left_size: int = 0  # of the bytes left in the file

    @property
    def size(self) -> int:
        return len(self.data) if self.left is None else self.left_size


@dataclass(frozen=True, slots=True)
class ClientMark:
    """Where the client stood: bytes sent so far on a hijacked stream, or its half-close."""

    index: int
    sent: int
    halfclosed: bool


@dataclass
class Recording:
    """One recorded exchange, ready to be played back."""

    source: str  # the capture file it came from
    exchange: Exchange
    request_index: int
    pieces: list[Piece] = field(default_factory=list)
    client_marks: list[ClientMark] = field(default_factory=list)
    subjects: frozenset[str] = frozenset()
    related: list[Recording] = field(default_factory=list)  # about the same subject
    head: ResponseHead | None = None  # the response head
    cap: int = 0  # the capture's inline cap (--max-body), 0 for none

    @property
    def number(self) -> int:
        """The exchange number, as `docktap show` prints it (`Exchange.number`)."""
        return self.exchange.number

    @property
    def label(self) -> str:
        return f"#{self.number}"

    @property
    def ends_open(self) -> bool:
        """The response never ended (the client left an endless stream): keep it open."""
        ex = self.exchange
        return not ex.hijacked and ex.response_complete is not True

    @property
    def outlives_client(self) -> bool:
        """The daemon still answered after the client's half-close on a plain HTTP exchange.

        A replay then goes on once its client half-closes too, rather than giving up on it.
        """
        if self.exchange.hijacked is not None:
            return False
        gave_up = next((m.index for m in self.client_marks if m.halfclosed), None)
        return gave_up is not None and any(p.index > gave_up for p in self.pieces)

    @property
    def body_kept(self) -> int:
        """Bytes of the response body the capture kept (in memory or left in its file)."""
        return sum(p.size for p in self.pieces if p.kind is PieceKind.BODY)

    @property
    def truncated(self) -> bool:
        """The capture kept only part of the response body (the inline cap)."""
        return self.body_kept < self.exchange.response_body_size

    @property
    def stream_kept(self) -> int:
        """Bytes of the daemon's side of a hijacked stream the capture kept."""
        return sum(p.size for p in self.pieces if p.kind is PieceKind.STREAM)

    @property
    def stream_cut(self) -> bool:
        """The daemon's side of the stream reached the inline cap, past which the capture keeps
        nothing (a stream has no end record to say how long it was)."""
        return 0 < self.cap <= self.stream_kept


def subjects(identity: Identity) -> frozenset[str]:
    """The container or exec instance a request is about, as `containers/ID` or `exec/ID`."""
    return frozenset() if identity.subject is None else frozenset({str(identity.subject)})


def scripts(capture: Capture, source: str) -> list[Recording]:
    """A script for every exchange of `capture`, in start order."""
    cap = capture.header.get("max_body")
    ordered = [_script(ex, source, cap if isinstance(cap, int) else 0) for ex in capture.exchanges]
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


def _script(ex: Exchange, source: str, cap: int) -> Recording:
    """The daemon's pieces of one exchange, and the client's marks on its stream."""
    recording = Recording(source, ex, ex.request.index, subjects=subjects(ex.identity), cap=cap)
    pieces, marks = recording.pieces, recording.client_marks
    hijacked = False  # the daemon's half-close is a piece only on a stream: h11 ends HTTP
    sent = 0
    for part in ex.parts:
        if isinstance(part, ResponseHead):
            if not part.preliminary:
                recording.head = part
                pieces.append(Piece(part.index, part.mono, PieceKind.HEAD))
        elif isinstance(part, BodyChunk):
            if part.direction is Direction.DAEMON:
                pieces.append(_payload(part, PieceKind.BODY))
        elif isinstance(part, StreamChunk):
            if part.direction is Direction.DAEMON:
                pieces.append(_payload(part, PieceKind.STREAM))
            else:
                sent += len(part.data)
                marks.append(ClientMark(part.index, sent, False))
        elif isinstance(part, Hijack):
            hijacked = True
        elif isinstance(part, Close) and hijacked:
            pieces.append(Piece(part.index, part.mono, PieceKind.CLOSE))
        elif isinstance(part, HalfClose):
            if part.direction is not Direction.DAEMON:
                # What the daemon sent after it, it sent to a client that had given up.
                marks.append(ClientMark(part.index, sent, True))
            elif hijacked:
                pieces.append(Piece(part.index, part.mono, PieceKind.HALFCLOSE))
    return recording


def _payload(part: BodyChunk | StreamChunk, kind: PieceKind) -> Piece:
    if part.left is not None:
        return Piece(part.index, part.mono, kind, left=part.left, left_size=part.size)
    return Piece(part.index, part.mono, kind, part.data)


def ping_recording(api_version: str, method: str) -> Recording:
    """An answer to `/_ping` for captures that hold none (docker-py asks /version instead).

    It says what a daemon of the capture's API version says, so that a client negotiates the
    version the capture speaks.
    """
    body = b"" if method == "HEAD" else b"OK"
    headers = [
        ("Api-Version", api_version),
        ("Cache-Control", "no-cache, no-store, must-revalidate"),
        ("Content-Length", str(len(body))),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Ostype", "linux"),
        ("Pragma", "no-cache"),
    ]
    request = RequestHead(-1, 0.0, 0, 0, 0.0, method, "/_ping", "1.1", [], "SystemPing", None)
    ex = Exchange(request, response_complete=True)
    ex.response = ResponseHead(0, 0.0, 0, 0, 200, "OK", "1.1", headers, False)
    ex.response_body.extend(body)
    ex.response_body_size = len(body)
    recording = Recording("docktap", ex, -1)
    recording.head = ex.response
    recording.pieces = [Piece(0, 0.0, PieceKind.HEAD), Piece(1, 0.0, PieceKind.BODY, body)]
    return recording


def api_version(recordings: list[Recording]) -> str:
    """The highest API version the recorded daemon answered with."""
    versions: set[str] = {
        str(value)
        for r in recordings
        if r.head is not None
        for name, value in r.head.headers
        if name.lower() == "api-version"
    }
    versions.update(r.exchange.api_version for r in recordings if r.exchange.api_version)
    if not versions:
        return DEFAULT_API_VERSION
    return max(versions, key=lambda v: tuple(int(p) for p in v.split(".") if p.isdigit()))
