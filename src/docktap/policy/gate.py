"""The gate: a connection's requests held until the policy has decided them.

The relay forwards bytes before anything reads them; with a policy, the client's bytes pass
through a gate first. The gate buffers only until it has a whole request head (and, for the
operations whose bodies carry privileges, the whole body, chunked or not, up to a bound),
decides, and then forwards exactly the bytes it was given, or answers 403 in Docker's error
shape itself, so the request never reaches the daemon. Then it goes on with the next request:
keep-alive and pipelining work. It reads heads with the observer's reading (Go's net/http), and
bodies with the body framing the observer uses, so what the gate decided on is what dockerd
reads.

Its own answer must reach the client in its turn, after the daemon's answers to the requests
before it, so the gate also follows where the daemon's responses end (their heads read by the
observer's reading too; one it cannot read leaves denials answered at once, as nothing can be
followed after it), and holds a denial until those are out. A request that may hijack the
connection (attach, exec start, an Upgrade) is decided before it is forwarded, its body (if it
has one) streams on, and what follows waits for the daemon's answer; once that says the
connection is hijacked, bytes flow raw both ways.

Pure: bytes in, actions out (`docktap.policy.actions`). The relay does the writing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from docktap import routes
from docktap.answers import forbidden
from docktap.bodyframing import BodyReader, CloseDelimitedBody, FramingError
from docktap.observer import (
    MAX_HEAD_SIZE,
    HeadError,
    ParsedHead,
    head_end,
    read_request_head,
    read_response_head,
)
from docktap.policy.actions import Action as Action
from docktap.policy.actions import Answer as Answer
from docktap.policy.actions import Decided as Decided
from docktap.policy.actions import EndOfInput as EndOfInput
from docktap.policy.actions import Forward as Forward
from docktap.policy.asks import body_needed
from docktap.policy.decide import Decision, Request, decide
from docktap.policy.model import Policy

#: The largest body of a privilege-carrying operation the gate reads; past it, denied.
MAX_BODY = 1 << 20
#: Operations that hijack the connection once the daemon agrees.
HIJACKING = frozenset({"ContainerAttach", "ContainerAttachWebsocket", "ExecStart"})
_AFTER_POST_SKIP = 4  # Go's server discards up to this many CR/LF after a POST
_MEMO_SIZE = 256


def too_large(bound: int) -> str:
    """Why a body the gate must read whole is denied when it runs past `bound` bytes."""
    return f"a request body over {bound} bytes"


class Gate:
    """One client connection's requests, decided before they reach the daemon.

    A read is decided where it lies: a request whole in it is forwarded as those very bytes
    (the read itself, when it holds nothing else), and only what is still undecided at its end
    is copied aside, to wait for the next read.
    """

    def __init__(
        self,
        policy: Callable[[], Policy],
        uid: int | None,
        exe: str | None,
        enforce: bool = True,
        max_body: int = MAX_BODY,
    ) -> None:
        self._policy = policy
        self._uid, self._exe = uid, exe
        self._enforce = enforce
        self._max_body = max_body
        self._buf = bytearray()  # the client's bytes not yet decided, from earlier reads
        self._seq = 0
        self._after_post = False
        self._state = "head"  # head, body, stream, hijack, answer, raw, closed
        self._after_stream = "head"  # "hijack" after the body streaming on of one that may
        # A request waiting for its body: its head, read and as sent, its body reader, where
        # it starts in the read being decided (None: in an earlier one, its bytes so far in
        # `_raw`), how many body bytes were read, and the body decoded from earlier reads.
        self._pending: ParsedHead | None = None
        self._pending_head = b""
        self._reader: BodyReader | None = None
        self._start: int | None = None
        self._raw = bytearray()
        self._read = 0
        self._body = bytearray()
        self._queued: list[Answer] = []  # denials answered once the daemon's answers are out
        self._eof = False
        self._input_ended = False  # EndOfInput is given: nothing more goes to the daemon
        # The daemon's side: requests forwarded whose response has not ended, each (method,
        # whether it may hijack), the response head being read and the body reader.
        self._outstanding: deque[tuple[str, bool]] = deque()
        self._response_head = bytearray()
        self._response_body: BodyReader | None = None
        self._responses_lost = False
        # Decisions on heads alone, by method and target, for the policy they were made by.
        self._memo: dict[tuple[str, str], Decision] = {}
        self._memo_policy: Policy | None = None

    @property
    def raw(self) -> bool:
        """The connection is hijacked: nothing is decided any more."""
        return self._state == "raw"

    @property
    def held(self) -> int:
        """How many of the client's bytes the gate holds that only the daemon can let go.

        A denial waits for the daemon's answers to the requests before it, a request that may
        hijack for the daemon's word on it, and what the client sends meanwhile waits with
        them, however long the daemon takes (a `GET /events` never ends). The relay stops
        reading the client while this is past its bound, and reads on once an answer of the
        daemon has brought it back under. A head or body being read is not counted: the
        client's own next bytes let it go, and MAX_HEAD_SIZE and the body's bound refuse it
        past them."""
        return len(self._buf) if self._state in ("answer", "hijack") else 0

    # -- the client's side ---------------------------------------------------------------

    def from_client(self, data: bytes) -> list[Action]:
        state = self._state
        if state == "raw":
            return [Forward(data)]
        if state == "closed":
            return []
        if state == "answer" or state == "hijack":
            self._buf += data  # nothing is decided until the daemon has answered
            return []
        actions: list[Action] = []
        if state == "head" and not self._buf and not self._eof:
            # The common case: the read starts with a request, and often holds just that one.
            end = self._head(actions, data, 0)
            if end == len(data) and self._state != "body":  # else its head is set aside
                return actions
            self._advance(actions, data, end or 0)
        else:
            self._advance(actions, data)
        return actions

    def client_eof(self) -> list[Action]:
        """The client has sent all it will. Its half-close goes on to the daemon as soon as all
        it sent before that the daemon is owed has gone, not after the answers docktap owes the
        client: the daemon may be waiting for it (Go's server ends a long poll, `GET /events`,
        once its client's input ends), while a denial behind that poll waits for the poll."""
        self._eof = True
        actions: list[Action] = []
        self._advance(actions)
        if self._state == "answer":
            self._decide_ahead(actions)
        elif self._state == "hijack" and not self._buf:
            self._end_input(actions)
        return actions

    def _decide_ahead(self, actions: list[Action]) -> None:
        """At the client's end, decide what waits behind a denial now if it holds only denials
        (or the rest of a request never finished): their answers queue behind the first, and
        nothing more is owed to the daemon. A request the policy allows must reach the daemon
        before the end of input does, and waits for its turn as before."""
        if self._buf and not self._queued[-1].close:
            ahead = Gate(self._policy, self._uid, self._exe, self._enforce, self._max_body)
            ahead._seq, ahead._after_post = self._seq, self._after_post
            decided = ahead.from_client(bytes(self._buf)) + ahead.client_eof()
            if any(isinstance(a, Decided) and a.decision.allowed for a in decided):
                return
            self._seq = ahead._seq
            actions += [a for a in decided if isinstance(a, Decided)]
            self._queued += [a for a in decided if isinstance(a, Answer)]
        self._buf.clear()  # decided, or dropped with a denial that closes
        self._end_input(actions)

    def _end_input(self, actions: list[Action]) -> None:
        if not self._input_ended:
            self._input_ended = True
            actions.append(EndOfInput())

    def _advance(self, actions: list[Action], data: bytes = b"", pos: int = 0) -> None:
        """Decide what can be decided of the bytes held and data[pos:] after them."""
        if self._buf:
            self._buf += memoryview(data)[pos:]
            data, pos = bytes(self._buf), 0
            self._buf.clear()
        size = len(data)
        while pos < size:  # each step waits for more at the end of what it is given
            state = self._state
            if state == "head":
                end = self._head(actions, data, pos)
            elif state == "body":
                end = self._read_body(actions, data, pos)
            elif state == "stream":
                end = self._stream(actions, data, pos)
            else:
                break
            if end is None:
                break
            pos = end
        if self._state == "body" and self._start is not None:
            # A head that ended this read, its body still to come: the request's bytes so far
            # wait aside with it, since the next read is a new `data`.
            self._raw += memoryview(data)[self._start : pos]
            self._start = None
        if pos < size and self._state != "closed":
            self._buf += memoryview(data)[pos:]
        if self._eof and self._state in ("head", "stream", "body", "raw") and not self._held:
            self._state = "closed"
            self._end_input(actions)

    @property
    def _held(self) -> bool:
        return bool(self._buf) and self._state != "head"

    def _head(self, actions: list[Action], data: bytes, pos: int) -> int | None:
        """Read the request head at `pos`; where reading goes on, or None: not there yet."""
        size = len(data)
        if pos == size:
            return None
        if self._after_post and data[pos] not in b"\r\n":
            self._after_post = False  # the common case: nothing to skip
        elif self._after_post:
            start = data[pos : pos + _AFTER_POST_SKIP]
            skipped = len(start) - len(start.lstrip(b"\r\n"))
            if skipped == len(start) and len(start) < _AFTER_POST_SKIP and not self._eof:
                return None
            self._after_post = False
            if skipped:
                actions.append(Forward(start[:skipped]))
                return pos + skipped
        end = head_end(data, pos)
        if end is None:
            if size - pos > MAX_HEAD_SIZE:
                why = f"a request head longer than {MAX_HEAD_SIZE} bytes"
                self._refuse_unread(actions, why, data[pos:])
            elif not self._eof:
                return None
            return size  # what was refused, or a head the client never finished
        head = data[pos:end]
        try:
            parsed = read_request_head(head)
        except ValueError as exc:
            self._refuse_unread(actions, f"a request docktap cannot parse ({exc})", data[pos:])
            return size
        self._seq += 1
        self._after_post = parsed.method == "POST"
        self._start = pos
        length = parsed.length
        needs_body = body_needed(parsed.identity.operation, parsed.method, parsed.headers)
        if length is not None and end + length <= size:
            # The whole request is in this read, as most are: decided at once, with no reader.
            stop = end + length
            if not length or not needs_body:
                return self._settle(actions, data, stop, self._decide_head(parsed), parsed, True)
            if length <= self._max_body:
                decision = self._decide_body(parsed, data[end:stop])
                return self._settle(actions, data, stop, decision, parsed, True)
        self._reader = reader = parsed.framing()
        if needs_body and not reader.done:
            self._pending, self._pending_head = parsed, head
            self._read = 0
            self._state = "body"
            return end
        decision = self._decide_head(parsed)
        return self._settle(actions, data, end, decision, parsed, reader.done)

    def _decide_head(self, parsed: ParsedHead) -> Decision:
        """A request decided on its head alone: once per method and target while the same
        policy is in force, since nothing else of it enters the decision."""
        policy = self._policy()
        if policy is not self._memo_policy or len(self._memo) >= _MEMO_SIZE:
            self._memo_policy, self._memo = policy, {}
        key = (parsed.method, parsed.target)
        decision = self._memo.get(key)
        if decision is None:
            request = Request(
                parsed.method, parsed.target, parsed.headers, b"", True, self._uid, self._exe
            )
            decision = self._memo[key] = decide(policy, request)
        return decision

    def _taken(self, data: bytes, pos: int, end: int) -> bytes:
        """The bytes of the request being decided: those of earlier reads, then data[pos:end]."""
        start = self._start
        if start is not None:
            return data if start == 0 and end == len(data) else data[start:end]
        self._raw += memoryview(data)[pos:end]
        raw = bytes(self._raw)
        self._raw.clear()
        return raw

    def _read_body(self, actions: list[Action], data: bytes, pos: int) -> int | None:
        reader, held = self._reader, self._pending
        assert reader is not None and held is not None
        if pos < len(data):
            try:
                pieces, end = reader.read(data, pos)
            except FramingError as exc:
                why = f"a request body docktap cannot parse ({exc})"
                self._refuse_unread(actions, why, self._taken(data, pos, len(data)))
                return len(data)
            self._read += end - pos
            if self._read > self._max_body:
                why = too_large(self._max_body)
                self._refuse_unread(actions, why, self._taken(data, pos, len(data)))
                return len(data)
        else:
            pieces, end = [], pos
        if not reader.done:
            # The rest comes in a later read: what there is of the request waits aside.
            for piece in pieces:
                self._body += piece
            self._raw += memoryview(data)[pos if self._start is None else self._start : end]
            self._start = None
            return None if end == pos else end
        if self._body:
            for piece in pieces:
                self._body += piece
            body = bytes(self._body)
            self._body.clear()
        else:
            body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self._pending = None
        return self._settle(actions, data, end, self._decide_body(held, body), held, True, pos)

    def _decide_body(self, parsed: ParsedHead, body: bytes) -> Decision:
        """A request decided on its head and its whole body."""
        request = Request(
            parsed.method, parsed.target, parsed.headers, body, True, self._uid, self._exe
        )
        return decide(self._policy(), request)

    def _stream(self, actions: list[Action], data: bytes, pos: int) -> int | None:
        """The body of an allowed request that needs no reading: on to the daemon as it comes."""
        reader = self._reader
        assert reader is not None
        if pos == len(data):
            return None
        try:
            _, end = reader.read(data, pos)
        except FramingError as exc:
            # dockerd reads the same bytes and refuses them; nothing more can be decided.
            actions.append(Forward(data[pos:]))
            self._refuse_unread(actions, f"a request body docktap cannot parse ({exc})", b"")
            return len(data)
        actions.append(Forward(data if pos == 0 and end == len(data) else data[pos:end]))
        if reader.done:
            self._state = self._after_stream
        return end

    def _settle(
        self,
        actions: list[Action],
        data: bytes,
        end: int,
        decision: Decision,
        parsed: ParsedHead,
        whole: bool,
        pos: int | None = None,
    ) -> int:
        """Forward or answer the decided request, which ends at `end` of `data` (its bytes
        from `pos` on in this read, when it began in an earlier one); where reading goes on."""
        raw = self._taken(data, end if pos is None else pos, end)
        actions.append(Decided(self._seq, decision, self._enforce))
        if decision.allowed or not self._enforce:
            actions.append(Forward(raw))
            hijack = parsed.upgrade or parsed.identity.operation in HIJACKING
            self._outstanding.append((parsed.method, hijack))
            # A body streams on (the daemon may read it before it answers); then, if the
            # request may hijack, the gate waits until the daemon says whether it hijacked.
            self._after_stream = "hijack" if hijack else "head"
            self._state = self._after_stream if whole else "stream"
            return end
        close = not parsed.keep_alive or not whole
        answer = Answer(forbidden(decision.message, raw, close), close)
        if self._outstanding and not self._responses_lost:
            self._queued.append(answer)
            self._state = "answer"
        else:
            actions.append(answer)
            self._state = "closed" if close else "head"
        return len(data) if close else end

    def _refuse_unread(self, actions: list[Action], why: str, unread: bytes) -> None:
        """Deny what cannot be read, and close: where the next request starts is unknown.

        In warn mode it is forwarded (`unread`: the request held and all after it), and the
        rest of the connection with it, undecided."""
        held = self._pending
        self._pending = None
        self._start = None
        self._raw.clear()
        self._body.clear()
        if held is None:
            decision = Decision(False, None, why, "", "")
            actions.append(Decided(None, decision, self._enforce))
        else:
            path = routes.split_version(held.target)[1]
            decision = Decision(False, held.identity.operation, why, held.method, path)
            actions.append(Decided(self._seq, decision, self._enforce))
        if not self._enforce:
            self._state = "raw"
            self._outstanding.clear()
            actions.append(Forward(unread))
            return
        answer = Answer(
            forbidden(decision.message, self._pending_head if held else b"", True), True
        )
        if self._outstanding and not self._responses_lost:
            self._queued.append(answer)
            self._state = "answer"
        else:
            actions.append(answer)
            self._state = "closed"

    # -- the daemon's side ---------------------------------------------------------------

    def daemon_eof(self) -> None:
        """The daemon has sent all it will, and the relay ends the client's side with it: nothing
        more is decided or answered. What waits for the daemon's answers stays unanswered, as
        the daemon leaves it: behind an answer it never sent, or one it ended by closing (read
        to the close, a 403 after it would be read as the end of its body, and Go's server
        reads nothing after an answer it closes on)."""
        if self._state != "raw":
            self._state = "closed"
            self._buf.clear()
            self._queued.clear()

    def from_daemon(self, data: bytes) -> list[Action]:
        """Follow the daemon's answers; what the gate held back for them may go now."""
        if self._state == "raw" or self._responses_lost:
            return []
        pos, end = 0, len(data)
        actions: list[Action] = []
        while pos < end and self._outstanding:
            body = self._response_body
            if body is not None:
                try:
                    pos = body.skip(data, pos)
                except FramingError:
                    self._lose_responses(actions)
                    return actions
                if body.done:
                    self._response_done(actions)
                continue
            if self._response_head:  # a head cut between two reads
                self._response_head += data[pos:]
                data, pos = bytes(self._response_head), 0
                end = len(data)
                self._response_head.clear()
            split = head_end(data, pos)
            if split is None:
                self._response_head += data[pos:]
                if len(self._response_head) > MAX_HEAD_SIZE:
                    self._lose_responses(actions)  # no head: nothing after it can be followed
                break
            after = self._response(data, pos, split, actions)
            if after is None:
                return actions
            pos = after
        return actions

    def _response(self, data: bytes, pos: int, split: int, actions: list[Action]) -> int | None:
        """Act on the response head data[pos:split]; where reading goes on, or None once the
        connection is raw or lost."""
        method, hijack = self._outstanding[0]
        try:
            read = read_response_head(method, data[pos:split])
        except HeadError:
            self._lose_responses(actions)
            return None
        status, framing = read.status, read.framing
        # A request that may hijack is taken at its word on a 2xx without a length (Docker's
        # hijack without Upgrade, whatever its content type); a 101 switches any connection.
        if status == 101 or (
            hijack
            and 200 <= status < 300
            and (read.hijack is not None or framing is CloseDelimitedBody)
        ):
            self._go_raw(actions)
            return None
        length = read.length
        if length is not None and split + length <= len(data):
            # The whole answer is in this read, as most are: past it, with no reader.
            self._response_done(actions)
            return split + length
        if framing is None:
            if read.informational:
                return split  # another head follows
            framing = CloseDelimitedBody  # a raw stream to a request that cannot hijack
        reader = framing()
        self._response_body = reader
        if reader.done:
            self._response_done(actions)
        return split

    def _response_done(self, actions: list[Action]) -> None:
        self._response_body = None
        _, hijack = self._outstanding.popleft()
        if hijack and not self._outstanding and self._state in ("hijack", "stream"):
            self._after_stream = "head"  # not hijacked after all: go on deciding
            if self._state == "hijack":
                self._state = "head"
                self._advance(actions)
        elif self._state == "answer" and not self._outstanding:
            self._flush_answer(actions)

    def _flush_answer(self, actions: list[Action]) -> None:
        answers, self._queued = self._queued, []
        actions += answers
        if answers[-1].close:
            self._state = "closed"
            self._buf.clear()  # what the client sent after a denial that closes is never read
        else:
            self._state = "head"
            self._advance(actions)

    def _go_raw(self, actions: list[Action]) -> None:
        self._state = "raw"
        self._outstanding.clear()
        if self._buf:
            actions.append(Forward(bytes(self._buf)))
            self._buf.clear()
        if self._eof:
            self._end_input(actions)

    def _lose_responses(self, actions: list[Action]) -> None:
        """The daemon's answers cannot be followed: denials are answered at once from now."""
        self._responses_lost = True
        self._response_head.clear()
        if self._state == "answer":
            self._flush_answer(actions)
        elif self._state == "hijack":
            self._state = "head"
            self._advance(actions)
