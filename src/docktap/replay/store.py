"""The recordings a replay serves, which of them were played, and what came in unmatched.

The store owns all the bookkeeping of a replay: recordings queued per request key (so identical
requests get their answers in recorded order, whichever connection they come on, and a miss
does not leave the answers of what it cut short to the requests after it), the plays
in progress with how far each has got, the misses, and which recordings were never used. It
also decides when the next piece of a play may go, from the conditions in its script. It does
no I/O and reads no clock: the server asks it questions and tells it what happened.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from docktap.capture.reader import Exchange
from docktap.replay.match import (
    MatchOptions,
    Request,
    closeness,
    comparable,
    differences,
    free_values,
    normalize_path,
    request_key,
    split_target,
    with_aliases,
)
from docktap.replay.script import Piece, Recording, api_version, ping_recording
from docktap.routes import operation_name

#: Methods whose last recorded answer is repeated once their recordings are used up.
DEFAULT_REPEAT = frozenset({"GET", "HEAD"})


def parse_repeat(value: str | Iterable[str]) -> frozenset[str] | None:
    """The methods that repeat, from `--repeat` or the plugin's `repeat=`: comma-separated
    methods (or a sequence of them), `all` (None: every method), `none`, or `default`.
    ValueError says what is not a method."""
    text = value if isinstance(value, str) else ",".join(value)
    lowered = text.strip().lower()
    if lowered == "all":
        return None
    if lowered in ("none", ""):
        return frozenset()
    if lowered == "default":
        return DEFAULT_REPEAT
    methods = frozenset(m.strip().upper() for m in text.split(",") if m.strip())
    unknown = sorted(methods - _METHODS)
    if unknown:
        raise ValueError(
            f"not an HTTP method: {', '.join(unknown)} (give methods such as GET,HEAD, "
            "or all, none, default)"
        )
    return methods


# What a Docker client can send; a typo (`--repeat bogus`) is refused rather than matching none.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


_PING = "/_ping"


@dataclass
class Play:
    """A recording being played on one connection."""

    recording: Recording
    first: bool  # the recording's first play: the one related exchanges wait on
    sent: int = 0  # pieces written so far
    client_sent: int = 0  # bytes the client wrote on the hijacked stream
    client_halfclosed: bool = False
    client_gone: bool = False

    @property
    def next_piece(self) -> Piece | None:
        pieces = self.recording.pieces
        return pieces[self.sent] if self.sent < len(pieces) else None

    @property
    def finished(self) -> bool:
        return self.sent >= len(self.recording.pieces)


@dataclass(frozen=True)
class Miss:
    """A request no recording answers, and the recording closest to it."""

    request: Request
    closest: Recording | None
    reasons: tuple[str, ...]
    label: str  # how the closest recording is named: #12, or run.jsonl#12 with several files

    @property
    def message(self) -> str:
        path = split_target(self.request.target)[0]
        text = f"docktap replay: no recorded exchange for {self.request.method} {path}"
        if self.closest is not None:
            why = ", ".join(self.reasons[:2]) or "identical"
            text += f"; closest: {self.label}, {why}"
        elif self.reasons:
            text += f": {self.reasons[0]}"
        return text


def recorded_request(ex: Exchange) -> Request:
    """The request of a recorded exchange, as compared; its body stands by digest when cut by
    the cap."""
    body = bytes(ex.request_body) if len(ex.request_body) >= ex.request_body_size else None
    return comparable(Request(ex.method, ex.target, body, ex.request_sha256 or ""))


@dataclass
class Store:
    recordings: list[Recording]
    options: MatchOptions = field(default_factory=MatchOptions)
    repeat: frozenset[str] | None = DEFAULT_REPEAT  # None: every method repeats
    several_sources: bool = False
    misses: list[Miss] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._queues: dict[object, list[Recording]] = {}
        self._played: dict[object, int] = {}  # how many at the head of each queue were played
        # Where each recording stands in recorded order (episodes oldest first), the furthest
        # one played so far, and whether a request missed: see `_next`.
        self._position = {id(r): n for n, r in enumerate(self.recordings)}
        self._reached = -1
        self._missed = False
        self._requests = {id(r): recorded_request(r.exchange) for r in self.recordings}
        self._first_plays: dict[int, Play] = {}
        self._pings: list[Recording] = []
        # A value a free field was sent with, for the recorded value it stands for.
        self._aliases: dict[str, str] = {}
        for recording in self.recordings:
            request = self._requests[id(recording)]
            if self._is_ping(request):
                self._pings.append(recording)
            key = request_key(request, self.options)
            self._queues.setdefault(key, []).append(recording)

    def _is_ping(self, request: Request) -> bool:
        path = normalize_path(split_target(request.target)[0])
        return request.method in ("GET", "HEAD") and path == _PING

    def label(self, recording: Recording) -> str:
        return f"{recording.source}{recording.label}" if self.several_sources else recording.label

    def match(self, request: Request, count_miss: bool = True) -> Play | Miss:
        """The play answering `request`, or the miss (listed in `misses` if `count_miss`)."""
        request = with_aliases(request, self._aliases)
        key = request_key(request, self.options)
        if request.body and key not in self._queues:
            # A recorded body the capture's cap cut stands by its digest (recorded_request):
            # the same bytes sent now must find it, so look for the request by digest too.
            by_digest = replace(request, body=None)
            digest_key = request_key(by_digest, self.options)
            if digest_key in self._queues:
                request, key = by_digest, digest_key
        queue = self._queues.get(key)
        if queue:
            play = self._next(key, queue)
            if play is not None:
                self._learn(request, play.recording)
                return play
            if self.repeat is None or request.method in self.repeat:
                return Play(queue[-1], first=False)
        if self._is_ping(request):
            # Negotiation must work whatever the client asks with: any recorded ping answers,
            # or one made up with the capture's API version.
            same = [r for r in self._pings if r.exchange.method == request.method]
            if same or self._pings:
                return Play((same or self._pings)[-1], first=False)
            return Play(ping_recording(api_version(self.recordings), request.method), first=False)
        miss = self._miss(request, used_up=queue is not None)
        self._missed = True
        if count_miss:
            self.misses.append(miss)
        return miss

    def _next(self, key: object, queue: list[Recording]) -> Play | None:
        """The first play of the recording that answers the next request of `key`: the first
        recording of its queue not played yet.

        Once a request has missed, what followed it in the recording (a test's later calls,
        after its set-up missed) may never be asked for: the first recording made after the
        furthest one played is taken then, when there is one, so that the answers of what the
        miss cut short do not go to the requests after it.
        """
        played = self._played.get(key, 0)
        waiting = (queue[n] for n in range(played, len(queue)))
        unplayed = (r for r in waiting if id(r) not in self._first_plays)
        chosen = next(unplayed, None)
        if chosen is None:
            return None
        if self._missed and self._position[id(chosen)] < self._reached:
            later = (r for r in unplayed if self._position[id(r)] > self._reached)
            chosen = next(later, chosen)
        self._reached = max(self._reached, self._position[id(chosen)])
        play = self._start(chosen)
        # The head of the queue moves past what is played; what was passed over stays.
        while played < len(queue) and id(queue[played]) in self._first_plays:
            played += 1
        self._played[key] = played
        return play

    def _learn(self, request: Request, recording: Recording) -> None:
        """Remember what the request's free fields stand for in the recording."""
        if not self.options.free:
            return
        recorded = free_values(self._requests[id(recording)], self.options)
        for field_name, value in free_values(request, self.options).items():
            was = recorded.get(field_name)
            if was is not None and was != value:
                self._aliases[value] = was

    def _start(self, recording: Recording) -> Play:
        play = Play(recording, first=True)
        self._first_plays[id(recording)] = play
        return play

    def _miss(self, request: Request, used_up: bool) -> Miss:
        if not self.recordings:
            return Miss(request, None, (), "")
        operation = operation_name(request.method, split_target(request.target)[0])
        if operation is not None and operation not in self._operations():
            # Any recording named as the closest would be another operation: none is close.
            # Clients differ in what they ask for the same command (the docker CLI 20.10's
            # `stats` asks for the daemon's version, 28's reads it from the ping), and dockerd
            # would answer it, but the replay has no answer of the daemon's to give.
            held = "captures hold" if self.several_sources else "capture holds"
            why = (
                f"the {held} no {operation} at all: the client recorded never asked for it "
                "(another client, or another version of it, asks for other things: record "
                "with the client that replays)"
            )
            return Miss(request, None, (why,), "")
        closest = max(
            self.recordings,
            key=lambda r: closeness(self._requests[id(r)], request, self.options),
        )
        reasons = tuple(differences(self._requests[id(closest)], request, self.options))
        if used_up and not reasons:
            times = len(self._queues[request_key(request, self.options)])
            reasons = (f"recorded {times} time{'s' if times > 1 else ''}, all played",)
        return Miss(request, closest, reasons, self.label(closest))

    def _operations(self) -> set[str | None]:
        """The operations of the recordings, as routing names them now."""
        return {
            operation_name(r.method, split_target(r.target)[0]) for r in self._requests.values()
        }

    def ready(self, play: Play, lenient: bool = False) -> bool:
        """Whether the play's next piece may be sent now: what preceded it has happened.

        `lenient` waits no longer for related requests that never came: a client need not
        make every call the recorded one made (a replay that waits for them would hang).
        """
        piece = play.next_piece
        if piece is None:
            return False
        if not play.first:
            return True
        if not (play.client_halfclosed or play.client_gone):
            for mark in play.recording.client_marks:
                if mark.index > piece.index:
                    break
                if mark.halfclosed or play.client_sent < mark.sent:
                    return False
        for other in play.recording.related:
            if other.request_index > piece.index:
                continue
            other_play = self._first_plays.get(id(other))
            if other_play is None:
                if lenient:
                    continue
                return False
            if other_play.client_gone:
                continue
            before = sum(1 for p in other.pieces if p.index < piece.index)
            if other_play.sent < before:
                return False
        return True

    def unused(self) -> list[Recording]:
        """Recordings no request was answered with, in capture order.

        Pings are left out: how often a client negotiates is its own business.
        """
        pings = {id(r) for r in self._pings}
        return [r for r in self.recordings if id(r) not in self._first_plays and id(r) not in pings]


def build_store(
    recordings: Iterable[Recording],
    options: MatchOptions | None = None,
    repeat: frozenset[str] | None = DEFAULT_REPEAT,
) -> Store:
    listed = list(recordings)
    sources = {r.source for r in listed}
    return Store(listed, options or MatchOptions(), repeat, several_sources=len(sources) > 1)
