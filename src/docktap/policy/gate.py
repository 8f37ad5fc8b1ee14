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
before it, so the gate also follows where the daemon's responses end (their heads are Go's,
written canonically), and holds a denial until those are out. A request that may hijack the
connection (attach, exec start, an Upgrade) is decided before it is forwarded; once the
daemon's answer says the connection is hijacked, bytes flow raw both ways.

Pure: bytes in, actions out (`docktap.policy.actions`). The relay does the writing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from docktap import routes
from docktap.answers import forbidden
from docktap.bodyframing import (
    BodyReader,
    CloseDelimitedBody,
    Framing,
    FramingError,
    response_framing,
)
from docktap.observer import MAX_HEAD_SIZE, ParsedHead, head_end, read_request_head
from docktap.policy.actions import Action as Action
from docktap.policy.actions import Answer as Answer
from docktap.policy.actions import Decided as Decided
from docktap.policy.actions import EndOfInput as EndOfInput
from docktap.policy.actions import Forward as Forward
from docktap.policy.asks import BODY_OPERATIONS
from docktap.policy.decide import Decision, Request, decide
from docktap.policy.model import Policy

#: The largest body of a privilege-carrying operation the gate reads; past it, denied.
MAX_BODY = 1 << 20
#: Operations that hijack the connection once the daemon agrees.
HIJACKING = frozenset({"ContainerAttach", "ContainerAttachWebsocket", "ExecStart"})
_AFTER_POST_SKIP = 4  # Go's server discards up to this many CR/LF after a POST
# The daemon answers with the same heads again and again (but for the Date, once a second): a
# small response head is read once (request heads are kept by the observer's reading). What is
# kept is a frozen value; the bound keeps the memory small.
_CACHED_HEAD = 4096
_MEMO_SIZE = 256


@dataclass(frozen=True)
class _Held:
    """A request whose body is being read before it is decided."""

    head: bytes
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    keep: bool  # the connection may carry another request after it
    hijack: bool


class Gate:
    """One client connection's requests, decided before they reach the daemon."""

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
        self._buf = bytearray()
        self._seq = 0
        self._after_post = False
        self._state = "head"  # head, body, stream, hijack, answer, raw, closed
        # A request waiting for its body: its head, its reader, the raw and decoded bytes.
        self._pending: _Held | None = None
        self._reader: BodyReader | None = None
        self._raw = bytearray()
        self._body = bytearray()
        self._queued: Answer | None = None
        self._eof = False
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

    # -- the client's side ---------------------------------------------------------------

    def from_client(self, data: bytes) -> list[Action]:
        if self._state == "raw":
            return [Forward(data)]
        if self._state == "closed":
            return []
        self._buf += data
        actions: list[Action] = []
        self._advance(actions)
        return actions

    def client_eof(self) -> list[Action]:
        self._eof = True
        actions: list[Action] = []
        self._advance(actions)
        return actions

    def _advance(self, actions: list[Action]) -> None:
        while True:
            state = self._state
            if state == "head":
                if not self._head(actions):
                    break
            elif state == "body":
                if not self._read_body(actions):
                    break
            elif state == "stream":
                if not self._stream(actions):
                    break
            else:
                break
        if self._eof and self._state in ("head", "stream", "body", "raw") and not self._held:
            self._state = "closed"
            actions.append(EndOfInput())

    @property
    def _held(self) -> bool:
        return bool(self._buf) and self._state != "head"

    def _head(self, actions: list[Action]) -> bool:
        buf = self._buf
        if not buf:
            return False
        if self._after_post:
            start = bytes(buf[:_AFTER_POST_SKIP])
            skipped = len(start) - len(start.lstrip(b"\r\n"))
            if skipped == len(start) and len(start) < _AFTER_POST_SKIP and not self._eof:
                return False
            self._after_post = False
            if skipped:
                actions.append(Forward(start[:skipped]))
                del buf[:skipped]
                return True
        end = head_end(buf)
        if end is None:
            if len(buf) > MAX_HEAD_SIZE:
                self._refuse_unread(actions, f"a request head longer than {MAX_HEAD_SIZE} bytes")
            elif self._eof:
                self._buf.clear()
            return False
        head = bytes(buf[:end])
        del buf[:end]
        try:
            parsed = read_request_head(head)
        except ValueError as exc:
            self._refuse_unread(actions, f"a request docktap cannot parse ({exc})")
            return False
        self._seq += 1
        self._after_post = parsed.method == "POST"
        operation = parsed.identity.operation
        keep, hijack = parsed.keep_alive, operation in HIJACKING or parsed.upgrade
        self._reader = reader = parsed.framing()
        if operation in BODY_OPERATIONS and not reader.done:
            self._pending = _Held(head, parsed.method, parsed.target, parsed.headers, keep, hijack)
            self._raw = bytearray(head)
            self._body = bytearray()
            self._state = "body"
            return True
        decision = self._decide_head(parsed)
        self._settle(actions, head, decision, parsed.method, keep, hijack, reader.done)
        return True

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

    def _read_body(self, actions: list[Action]) -> bool:
        reader, pending = self._reader, self._pending
        assert reader is not None and pending is not None
        if not self._buf:
            if self._eof:
                self._buf.clear()
            return False
        data = bytes(self._buf)
        try:
            pieces, end = reader.read(data, 0)
        except FramingError as exc:
            self._refuse_unread(actions, f"a request body docktap cannot parse ({exc})")
            return False
        self._raw += data[:end]
        del self._buf[:end]
        for piece in pieces:
            self._body += piece
        if len(self._raw) - len(pending.head) > self._max_body:
            self._refuse_unread(actions, f"a request body over {self._max_body} bytes")
            return False
        if not reader.done:
            return False
        self._pending = None
        request = Request(
            pending.method,
            pending.target,
            pending.headers,
            bytes(self._body),
            True,
            self._uid,
            self._exe,
        )
        decision = decide(self._policy(), request)
        raw = bytes(self._raw)
        self._settle(actions, raw, decision, pending.method, pending.keep, pending.hijack, True)
        return True

    def _stream(self, actions: list[Action]) -> bool:
        """The body of an allowed request that needs no reading: on to the daemon as it comes."""
        reader = self._reader
        assert reader is not None
        if not self._buf:
            return False
        data = bytes(self._buf)
        try:
            _, end = reader.read(data, 0)
        except FramingError as exc:
            # dockerd reads the same bytes and refuses them; nothing more can be decided.
            actions.append(Forward(data))
            self._buf.clear()
            self._refuse_unread(actions, f"a request body docktap cannot parse ({exc})")
            return False
        actions.append(Forward(data[:end]))
        del self._buf[:end]
        if reader.done:
            self._state = "head"
            return True
        return False

    def _settle(
        self,
        actions: list[Action],
        data: bytes,
        decision: Decision,
        method: str,
        keep: bool,
        hijack: bool,
        whole: bool,
    ) -> None:
        """Forward or answer a decided request."""
        actions.append(Decided(self._seq, decision, self._enforce))
        if decision.allowed or not self._enforce:
            actions.append(Forward(data))
            self._outstanding.append((method, hijack))
            if hijack:
                self._state = "hijack"  # until the daemon says whether it hijacked
            else:
                self._state = "head" if whole else "stream"
            return
        close = not keep or not whole
        answer = Answer(forbidden(decision.message, data, close), close)
        if close:
            self._buf.clear()
        if self._outstanding and not self._responses_lost:
            self._queued = answer
            self._state = "answer"
        else:
            actions.append(answer)
            self._state = "closed" if close else "head"

    def _refuse_unread(self, actions: list[Action], why: str) -> None:
        """Deny what cannot be read, and close: where the next request starts is unknown.

        In warn mode it is forwarded, and the rest of the connection with it, undecided."""
        held = self._pending
        self._pending = None
        if held is None:
            decision = Decision(False, None, why, "", "")
            actions.append(Decided(None, decision, self._enforce))
        else:
            path = routes.split_version(held.target)[1]
            operation = routes.operation_name(held.method, held.target)
            decision = Decision(False, operation, why, held.method, path)
            actions.append(Decided(self._seq, decision, self._enforce))
        if not self._enforce:
            data = (bytes(self._raw) if held is not None else b"") + bytes(self._buf)
            self._buf.clear()
            self._state = "raw"
            self._outstanding.clear()
            actions.append(Forward(data))
            return
        self._buf.clear()
        answer = Answer(forbidden(decision.message, held.head if held else b"", True), True)
        if self._outstanding and not self._responses_lost:
            self._queued = answer
            self._state = "answer"
        else:
            actions.append(answer)
            self._state = "closed"

    # -- the daemon's side ---------------------------------------------------------------

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
                    _, pos = body.read(data, pos)
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
                break
            if not self._response(data[pos:split], actions):
                return actions
            pos = split
        return actions

    def _response(self, head: bytes, actions: list[Action]) -> bool:
        """Act on a response head; False once the connection is raw or lost."""
        method, hijack = self._outstanding[0]
        try:
            status, framing = _read_response_head(method, head)
        except ValueError:
            self._lose_responses(actions)
            return False
        if framing is None:
            return True
        reader = framing()
        hijacked = status == 101 or (
            hijack and 200 <= status < 300 and isinstance(reader, CloseDelimitedBody)
        )
        if hijacked:
            self._go_raw(actions)
            return False
        self._response_body = reader
        if reader.done:
            self._response_done(actions)
        return True

    def _response_done(self, actions: list[Action]) -> None:
        self._response_body = None
        _, hijack = self._outstanding.popleft()
        if self._state == "hijack" and hijack and not self._outstanding:
            self._state = "head"  # not hijacked after all: go on deciding
            self._advance(actions)
        elif self._state == "answer" and not self._outstanding:
            self._flush_answer(actions)

    def _flush_answer(self, actions: list[Action]) -> None:
        answer = self._queued
        assert answer is not None
        self._queued = None
        actions.append(answer)
        self._state = "closed" if answer.close else "head"
        if not answer.close:
            self._advance(actions)

    def _go_raw(self, actions: list[Action]) -> None:
        self._state = "raw"
        self._outstanding.clear()
        if self._buf:
            actions.append(Forward(bytes(self._buf)))
            self._buf.clear()
        if self._eof:
            actions.append(EndOfInput())

    def _lose_responses(self, actions: list[Action]) -> None:
        """The daemon's answers cannot be followed: denials are answered at once from now."""
        self._responses_lost = True
        if self._state == "answer":
            self._flush_answer(actions)
        elif self._state == "hijack":
            self._state = "head"
            self._advance(actions)


def _response_head(method: str, head: bytes) -> tuple[int, Framing | None]:
    """The status of a response head from dockerd, and how its body is framed, as the answer
    to `method`; None for an interim (1xx) response, which another follows."""
    lines = head.split(b"\n")
    parts = lines[0].rstrip(b"\r").split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError("not a response head")
    fields = []
    for line in lines[1:]:
        line = line.rstrip(b"\r")
        if line:
            name, _, value = line.partition(b":")
            fields.append((name.strip().lower(), value.strip()))
    status = int(parts[1])
    if 100 <= status < 200 and status != 101:
        return status, None
    return status, response_framing(method.encode(), status, parts[0][5:], fields)


_cached_response_head = lru_cache(maxsize=256)(_response_head)


def _read_response_head(method: str, head: bytes) -> tuple[int, Framing | None]:
    if len(head) <= _CACHED_HEAD:
        return _cached_response_head(method, head)
    return _response_head(method, head)
