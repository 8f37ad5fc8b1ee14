"""The observer against byte scripts recorded from the real daemon (see tests/bytescript.py).

Each script is what a relay saw between the docker CLI (or a hand-written client) and dockerd
20.10; `scripts/record-bytescripts` made them. The tests check that the observer reads them
the same however the bytes are split, that it finds in them what really happened (hijacks,
frames, half-closes, HEAD and 204/304 without bodies, pipelining, early responses), and that
damaged input never makes it raise.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import io
import itertools
import json
import os
import socket
import tarfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import bytescript
import h11
import pytest
from bytescript import Step, bytewise, normalize, run_observer
from dockerd import Daemon
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from docktap import bodyframing, routes
from docktap import observer as observer_module
from docktap.events import (
    BodyData,
    Closed,
    Direction,
    Event,
    Frame,
    HalfClosed,
    HeadCut,
    Hijacked,
    MessageEnd,
    ProtocolError,
    RequestHead,
    ResponseHead,
    Stream,
    StreamData,
    Unparsed,
)
from docktap.observer import (
    HEAD_BUDGET,
    MAX_HEAD_SIZE,
    ConnectionObserver,
    HeadBudget,
    Observer,
    TtyBook,
    read_request_head,
    read_response_head,
)
from docktap.relay import Relay
from docktap.upstream import Endpoint

CLIENT, DAEMON = Direction.CLIENT, Direction.DAEMON
E = TypeVar("E", bound=Event)

SCRIPTS = bytescript.names()
EXPECTED_SCRIPTS = {
    "big-header",
    "cp",
    "early-response",
    "events",
    "exec",
    "exec-tty",
    "h2c-upgrade",
    "head-204-304",
    "logs-follow",
    "pipelined",
    "raw-stream-hijack",
    "run-stdin",
    "run-stdout-stderr",
    "run-tty",
    "upgrade-error",
}
# Scripts whose subject is a protocol error (none so far: everything dockerd did parsed).
ERROR_SCRIPTS: frozenset[str] = frozenset()
# Connections up to this many bytes (both directions) are re-fed split at every point, and
# so are chunks up to SMALL_CHUNK bytes on larger connections.
SMALL_CONN = 3000
SMALL_CHUNK = 512


@cache
def steps_of(name: str) -> tuple[Step, ...]:
    return tuple(bytescript.load(name))


@cache
def recorded(name: str) -> tuple[Event, ...]:
    """The normalized events of a script fed chunk by chunk as recorded."""
    return tuple(normalize(run_observer(steps_of(name))))


# -- looking things up in events -----------------------------------------------------------


class View:
    """Questions about one script's normalized events."""

    def __init__(self, name: str) -> None:
        self.events = list(recorded(name))

    def of(self, kind: type[E], **attrs: Any) -> list[E]:
        return [
            e
            for e in self.events
            if isinstance(e, kind) and all(getattr(e, k) == v for k, v in attrs.items())
        ]

    def index(self, event: Event) -> int:
        return next(i for i, e in enumerate(self.events) if e is event)

    def requests(self, operation: str) -> list[RequestHead]:
        return [
            e
            for e in self.of(RequestHead)
            if routes.operation_name(e.method, e.target) == operation
        ]

    def request(self, operation: str) -> RequestHead:
        """The only request of this operation."""
        found = self.requests(operation)
        assert len(found) == 1, (operation, found)
        return found[0]

    def response(self, req: RequestHead) -> ResponseHead:
        """The last (final) response head of an exchange."""
        heads = self.of(ResponseHead, conn=req.conn, seq=req.seq)
        assert heads, req
        return heads[-1]

    def body(self, req: RequestHead, direction: Direction) -> bytes:
        return b"".join(
            e.data for e in self.of(BodyData, conn=req.conn, seq=req.seq, direction=direction)
        )

    def stream(self, conn: int, direction: Direction) -> bytes:
        return b"".join(e.data for e in self.of(StreamData, conn=conn, direction=direction))

    def frames(self, conn: int, seq: int | None = None) -> dict[Stream, bytes]:
        out: dict[Stream, bytes] = {}
        for e in self.of(Frame, conn=conn):
            if seq is None or e.seq == seq:
                out[e.stream] = out.get(e.stream, b"") + e.data
        return out


def header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name.lower()), None)


# -- every script: the catalogue and split invariance -------------------------------------


def test_the_catalogue_is_complete() -> None:
    assert set(SCRIPTS) == EXPECTED_SCRIPTS
    for name in SCRIPTS:
        doc = bytescript.load_document(name)
        assert doc["about"] and doc["command"], name


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_are_well_formed(name: str) -> None:
    steps = steps_of(name)
    conns = sorted({s["conn"] for s in steps})
    assert conns == list(range(1, len(conns) + 1))
    for conn in conns:
        mine = [s for s in steps if s["conn"] == conn]
        assert mine[-1] == bytescript.close_step(conn), "every connection ends closed"
        assert sum(1 for s in mine if s.get("close")) == 1


@pytest.mark.parametrize("name", SCRIPTS)
def test_byte_at_a_time_equals_as_recorded(name: str) -> None:
    assert normalize(run_observer(steps_of(name), bytewise)) == list(recorded(name))


class _LessonBook(TtyBook):
    """A TtyBook that notes each lesson with the step it was learned at."""

    def __init__(self) -> None:
        super().__init__()
        self.step = 0
        self.lessons: list[tuple[int, str, bool]] = []

    def learn(self, key: str, tty: bool) -> None:
        self.lessons.append((self.step, key, tty))
        super().learn(key, tty)


@cache
def lessons(name: str) -> tuple[tuple[int, int, str, bool], ...]:
    """(step, conn, key, tty) for everything the recorded run taught the shared TtyBook.

    The TtyBook is all that connections share, so with these one connection can be re-run
    alone and still see what the others had taught by then.
    """
    steps = steps_of(name)
    book = _LessonBook()
    observers: dict[int, ConnectionObserver] = {}
    events: list[Event] = []
    for index, step in enumerate(steps):
        book.step = index
        conn = step["conn"]
        observer = observers.setdefault(conn, ConnectionObserver(conn, book))
        events += feed_step(observer, step, float(index))
    assert normalize(events) == list(recorded(name)), "the lesson run reads like Observer"
    return tuple((i, steps[i]["conn"], key, tty) for i, key, tty in book.lessons)


def feed_step(
    observer: ConnectionObserver, step: Step, t: float, pieces: Iterable[bytes] | None = None
) -> list[Event]:
    """Feed one step; a data step's bytes as `pieces` when given."""
    if step.get("close"):
        return observer.close(t)
    direction = Direction(step["dir"])
    if step.get("eof"):
        return observer.feed_eof(direction, t)
    events: list[Event] = []
    for piece in pieces if pieces is not None else [bytescript.step_data(step) or b""]:
        events += observer.feed(direction, piece, t)
    return events


class _ConnectionRun:
    """One connection of a script alone; the other connections only teach the TtyBook what
    they taught it in the recorded run, at the same steps.

    The run with every chunk whole is made once, keeping the observer's state before each
    step, so that a run which cuts no chunk before some step can start there.
    """

    def __init__(self, name: str, conn: int) -> None:
        self.conn = conn
        self.steps = [
            (index, step, bytescript.step_data(step))
            for index, step in enumerate(steps_of(name))
            if step["conn"] == conn
        ]
        self.others = [lesson for lesson in lessons(name) if lesson[1] != conn]
        self.before: list[tuple[tuple[ConnectionObserver, TtyBook], int, list[Event]]] = []
        book = TtyBook()
        observer = ConnectionObserver(conn, book)
        taught = 0
        events: list[Event] = []
        for index, step, _ in self.steps:
            taught = self._teach(book, taught, index)
            self.before.append((copy.deepcopy((observer, book)), taught, list(events)))
            events += feed_step(observer, step, float(index))
        self.whole = events

    def _teach(self, book: TtyBook, taught: int, index: int) -> int:
        while taught < len(self.others) and self.others[taught][0] < index:
            _, _, key, tty = self.others[taught]
            book.learn(key, tty)
            taught += 1
        return taught

    def run(self, start: int, split: Callable[[Step, bytes], list[bytes]]) -> list[Event]:
        """The events of a run that feeds steps[:start] whole and cuts the rest by `split`."""
        state, taught, events = self.before[start]
        observer, book = copy.deepcopy(state)
        events = list(events)
        for index, step, data in self.steps[start:]:
            taught = self._teach(book, taught, index)
            pieces = None if data is None else split(step, data)
            events += feed_step(observer, step, float(index), pieces)
        return events


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_split_point_of_small_connections(name: str) -> None:
    steps = steps_of(name)
    small = {c for c, size in bytescript.bytes_per_conn(steps).items() if size <= SMALL_CONN}

    def chosen(step: Step, data: bytes | None) -> bool:
        return data is not None and (step["conn"] in small or len(data) <= SMALL_CHUNK)

    for conn in sorted({step["conn"] for step in steps}):
        run = _ConnectionRun(name, conn)
        expected = [e for e in recorded(name) if e.conn == conn]
        assert normalize(run.whole) == expected
        assert normalize(run.run(0, lambda step, data: [data])) == expected
        sizes = [
            len(data) for _, step, data in run.steps if data is not None and chosen(step, data)
        ]
        # All chosen chunks are cut at the same point in one run: each still meets every point.
        for point in range(1, max(sizes, default=0)):

            def cut(step: Step, data: bytes, point: int = point) -> list[bytes]:
                if chosen(step, data) and 0 < point < len(data):
                    return [data[:point], data[point:]]
                return [data]

            # Steps before the first one cut are fed whole: the run starts there.
            start = next(
                i
                for i, (_, step, data) in enumerate(run.steps)
                if data is not None and chosen(step, data) and point < len(data)
            )
            got = normalize(run.run(start, cut))
            assert got == expected, f"connection {conn} split at {point}"


def draw_resplit(data: st.DataObject, steps: Iterable[Step]) -> list[Step]:
    """The same script with each chunk cut at up to five drawn points."""
    out: list[Step] = []
    for index, step in enumerate(steps):
        chunk = bytescript.step_data(step)
        if chunk is None or len(chunk) < 2:
            out.append(step)
            continue
        points = st.lists(st.integers(1, len(chunk) - 1), max_size=5)
        cuts = sorted(set(data.draw(points, label=f"cuts of step {index}")))
        bounds = [0, *cuts, len(chunk)]
        direction = Direction(step["dir"])
        for a, b in itertools.pairwise(bounds):
            out.append(bytescript.data_step(step["conn"], direction, chunk[a:b]))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(SCRIPTS))
def test_any_random_split_gives_the_same_events(data: st.DataObject, name: str) -> None:
    resplit = draw_resplit(data, steps_of(name))
    assert normalize(run_observer(resplit)) == list(recorded(name))


@pytest.mark.parametrize("name", sorted(set(SCRIPTS) - ERROR_SCRIPTS))
def test_no_protocol_errors(name: str) -> None:
    view = View(name)
    assert view.of(ProtocolError) == []
    assert view.of(Unparsed) == []


# Events that come from the bytes of one direction; none may follow that direction's EOF.
def _sent_by(event: Event) -> Direction | None:
    if isinstance(event, RequestHead):
        return CLIENT
    if isinstance(event, ResponseHead | Hijacked):
        return DAEMON
    if isinstance(event, BodyData | StreamData | Frame):
        return event.direction
    if isinstance(event, MessageEnd) and event.complete:
        return event.direction
    return None


@pytest.mark.parametrize("name", SCRIPTS)
def test_connection_lifecycle(name: str) -> None:
    view = View(name)
    for conn in {e.conn for e in view.events}:
        mine = [e for e in view.events if e.conn == conn]
        assert isinstance(mine[-1], Closed) and len(view.of(Closed, conn=conn)) == 1
        ended: set[Direction] = set()
        requests: list[int] = []
        for event in mine:
            sender = _sent_by(event)
            assert sender not in ended, f"{event} after {sender} half-closed"
            if isinstance(event, HalfClosed):
                assert event.direction not in ended
                ended.add(event.direction)
            if isinstance(event, RequestHead):
                requests.append(event.seq)
            if isinstance(event, ResponseHead):
                assert event.seq in requests, "a response to a request not yet seen"
        assert requests == list(range(1, len(requests) + 1))
        for seq in requests:
            assert view.of(MessageEnd, conn=conn, seq=seq, direction=CLIENT), seq


# -- what each script is about -------------------------------------------------------------


def test_run_stdout_stderr() -> None:
    view = View("run-stdout-stderr")
    ops = [routes.operation_name(e.method, e.target) for e in view.of(RequestHead)]
    assert ops[:2] == ["SystemPingHead", "ContainerCreate"]
    assert {"ContainerAttach", "ContainerWait", "ContainerStart"} <= set(ops)
    attach = view.request("ContainerAttach")
    assert header(attach.headers, "upgrade") == "tcp"
    head = view.response(attach)
    assert (head.status, head.informational) == (101, True)
    assert header(head.headers, "content-type") == "application/vnd.docker.raw-stream"
    [hijack] = view.of(Hijacked)
    assert (hijack.conn, hijack.seq, hijack.protocol) == (attach.conn, attach.seq, "tcp")
    # API 1.41 says raw-stream, but the container has no TTY: the stream is framed.
    assert view.frames(attach.conn) == {Stream.STDOUT: b"out\n", Stream.STDERR: b"err\n"}
    wait = view.request("ContainerWait")
    assert wait.conn != attach.conn
    [body] = view.of(BodyData, conn=wait.conn, seq=wait.seq, direction=DAEMON)
    assert body.data == b'{"Error":null,"StatusCode":3}\n'
    assert json.loads(body.data) == {"Error": None, "StatusCode": 3}
    assert view.index(body) > view.index(hijack)
    assert view.of(MessageEnd, conn=wait.conn, seq=wait.seq, direction=DAEMON)
    assert view.response(view.request("ContainerStart")).status == 204


def test_run_stdin() -> None:
    view = View("run-stdin")
    attach = view.request("ContainerAttach")
    assert "stdin=1" in attach.target
    assert view.of(Hijacked, conn=attach.conn)[0].protocol == "tcp"
    assert view.stream(attach.conn, CLIENT) == b"hi\n"
    [half] = view.of(HalfClosed, conn=attach.conn, direction=CLIENT)
    output = view.of(StreamData, conn=attach.conn, direction=DAEMON)
    [daemon_eof] = view.of(HalfClosed, conn=attach.conn, direction=DAEMON)
    # The client ends stdin while the daemon still has output to send: a half-close.
    assert view.index(half) < view.index(output[-1]) < view.index(daemon_eof)
    assert view.frames(attach.conn) == {Stream.STDOUT: b"hi\n"}


def test_run_tty() -> None:
    view = View("run-tty")
    create = view.request("ContainerCreate")
    assert json.loads(view.body(create, CLIENT))["Tty"] is True
    attach = view.request("ContainerAttach")
    assert view.of(Hijacked, conn=attach.conn)[0].protocol == "tcp"
    assert view.of(Frame) == []
    assert b"hi" in view.stream(attach.conn, DAEMON)
    resizes = view.requests("ContainerResize")
    assert resizes and "h=24&w=80" in resizes[0].target


def test_exec() -> None:
    view = View("exec")
    create = view.request("ContainerExec")
    assert json.loads(view.body(create, CLIENT))["Tty"] is False
    exec_id = json.loads(view.body(create, DAEMON))["Id"]
    start = view.request("ExecStart")
    assert exec_id in start.target
    assert header(start.headers, "upgrade") == "tcp"
    assert view.response(start).status == 101
    assert view.of(Hijacked, conn=start.conn)[0].protocol == "tcp"
    assert view.frames(start.conn) == {Stream.STDOUT: b"a\n", Stream.STDERR: b"b\n"}
    inspect = view.request("ExecInspect")
    assert json.loads(view.body(inspect, DAEMON))["ExitCode"] == 0


def test_exec_tty() -> None:
    view = View("exec-tty")
    create = view.request("ContainerExec")
    assert json.loads(view.body(create, CLIENT))["Tty"] is True
    start = view.request("ExecStart")
    assert view.of(Hijacked, conn=start.conn)[0].protocol == "tcp"
    assert view.of(Frame) == []
    assert view.stream(start.conn, DAEMON).replace(b"\r\n", b"\n") == b"a\nb\n"


def test_logs_follow() -> None:
    view = View("logs-follow")
    logs = view.request("ContainerLogs")
    assert "follow=1" in logs.target
    head = view.response(logs)
    assert header(head.headers, "transfer-encoding") == "chunked"
    assert header(head.headers, "content-type") is None  # API 1.41: no stream type at all
    assert view.frames(logs.conn, logs.seq) == {
        Stream.STDOUT: b"line 1\nline 2\nline 3\n",
        Stream.STDERR: b"err 1\nerr 2\nerr 3\n",
    }
    # The frames are cut from the de-chunked body: body bytes = headers + payloads.
    assert len(view.body(logs, DAEMON)) == 6 * 8 + 21 + 18
    assert view.of(MessageEnd, conn=logs.conn, seq=logs.seq, direction=DAEMON)[0].complete


def test_events() -> None:
    view = View("events")
    events = view.request("SystemEvents")
    body = view.body(events, DAEMON)
    lines = body.split(b"\n")
    assert lines[-1] == b""
    messages = [json.loads(line) for line in lines[:-1]]
    assert [(m["Type"], m["Action"]) for m in messages] == [
        ("container", "create"),
        ("container", "destroy"),
    ]
    assert all(m["Actor"]["Attributes"]["name"] == "evt" for m in messages)
    assert view.of(MessageEnd, conn=events.conn, seq=events.seq, direction=DAEMON)


def tar_members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        out: dict[str, bytes] = {}
        for member in tar.getmembers():
            handle = tar.extractfile(member)
            out[member.name] = handle.read() if handle is not None else b""
        return out


def test_cp() -> None:
    view = View("cp")
    info = view.request("ContainerArchiveInfo")
    assert info.method == "HEAD"
    head = view.response(info)
    assert head.status == 200
    stat = header(head.headers, "x-docker-container-path-stat")
    assert stat is not None
    assert json.loads(base64.b64decode(stat))["name"] == "tmp"
    assert view.body(info, DAEMON) == b""
    put = view.request("PutContainerArchive")
    assert header(put.headers, "transfer-encoding") == "chunked"
    assert tar_members(view.body(put, CLIENT)) == {"hello.txt": b"hello from docktap\n"}
    get = view.request("ContainerArchive")
    got = view.response(get)
    assert header(got.headers, "content-type") == "application/x-tar"
    stat = header(got.headers, "x-docker-container-path-stat")
    assert stat is not None and json.loads(base64.b64decode(stat))["size"] == 19
    assert tar_members(view.body(get, DAEMON)) == {"hello.txt": b"hello from docktap\n"}


def test_raw_stream_hijack() -> None:
    view = View("raw-stream-hijack")
    attach = view.request("ContainerAttach")
    assert header(attach.headers, "upgrade") is None
    head = view.response(attach)
    assert (head.status, head.informational) == (200, False)
    assert header(head.headers, "content-type") == "application/vnd.docker.raw-stream"
    assert header(head.headers, "content-length") is None
    [hijack] = view.of(Hijacked)
    assert hijack.protocol == "raw-stream"
    # Nothing in this capture tells the TTY setting: the frames are recognised by shape.
    assert view.frames(attach.conn) == {Stream.STDOUT: b"out\n", Stream.STDERR: b"err\n"}
    assert view.of(BodyData) == []


def test_upgrade_error() -> None:
    view = View("upgrade-error")
    attach = view.request("ContainerAttach")
    assert header(attach.headers, "upgrade") == "tcp"
    head = view.response(attach)
    assert (head.status, head.informational) == (404, False)
    assert view.of(Hijacked) == []
    assert view.body(attach, DAEMON) == b"No such container: nosuch\r\n"
    [end] = view.of(MessageEnd, conn=attach.conn, seq=attach.seq, direction=DAEMON)
    assert end.complete  # no length: the body ends with the connection, as HTTP says


def test_head_204_304() -> None:
    view = View("head-204-304")
    heads = view.of(RequestHead)
    assert [(h.method, routes.operation_name(h.method, h.target)) for h in heads] == [
        ("HEAD", "SystemPingHead"),
        ("HEAD", "ContainerArchiveInfo"),
        ("POST", "ContainerStart"),
        ("POST", "ContainerStart"),
    ]
    assert [view.response(h).status for h in heads] == [200, 404, 204, 304]
    # A HEAD answer announces a length (124 here) but has no body, nor have 204 and 304.
    assert header(view.response(heads[1]).headers, "content-length") == "124"
    assert view.of(BodyData) == []
    for h in heads:
        assert view.of(MessageEnd, conn=h.conn, seq=h.seq, direction=DAEMON)


def test_pipelined() -> None:
    view = View("pipelined")
    requests = view.of(RequestHead)
    responses = view.of(ResponseHead)
    assert [r.target for r in requests] == ["/_ping", "/_ping", "/_ping", "/v1.41/version"]
    assert [r.seq for r in requests] == [1, 2, 3, 4]
    assert [r.seq for r in responses] == [1, 2, 3, 4]
    assert all(r.status == 200 for r in responses)
    for req, resp in zip(requests, responses, strict=True):
        assert view.index(req) < view.index(resp)
    assert [view.body(r, DAEMON) for r in requests[:3]] == [b"OK"] * 3
    version = json.loads(view.body(requests[3], DAEMON))
    assert version["ApiVersion"] == "1.41"
    # All four requests were sent before the client's EOF, so they are reported before it.
    [half] = view.of(HalfClosed, direction=CLIENT)
    assert view.index(requests[-1]) < view.index(half)


def test_big_header() -> None:
    view = View("big-header")
    [ping] = view.of(RequestHead)
    assert header(ping.headers, "x-padding") == "x" * (40 << 10)
    assert view.response(ping).status == 200
    assert view.body(ping, DAEMON) == b"OK"


def test_early_response() -> None:
    view = View("early-response")
    put = view.request("PutContainerArchive")
    head = view.response(put)
    assert head.status == 404
    assert header(head.headers, "connection") == "close"
    [client_end] = view.of(MessageEnd, conn=put.conn, seq=put.seq, direction=CLIENT)
    # The daemon answered while the request body was still coming.
    assert view.index(head) < view.index(client_end)
    assert client_end.complete
    assert len(view.body(put, CLIENT)) == 200_000
    assert json.loads(view.body(put, DAEMON)) == {"message": "No such container: nosuch"}


def test_h2c_upgrade() -> None:
    view = View("h2c-upgrade")
    session = view.request("Session")
    assert header(session.headers, "upgrade") == "h2c"
    head = view.response(session)
    assert (head.status, head.reason, head.informational) == (101, "Switching Protocols", True)
    [hijack] = view.of(Hijacked)
    assert hijack.protocol == "h2c"
    # After /session the daemon is the HTTP/2 client: it sends the connection preface.
    assert view.stream(session.conn, DAEMON).startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert view.of(Frame) == []


# -- TTY knowledge across connections (synthetic, small) ------------------------------------


def _http(*lines: str, body: bytes = b"") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _json_exchange(
    method: str, target: str, req: dict[str, Any], resp: dict[str, Any]
) -> tuple[bytes, bytes]:
    req_body = json.dumps(req).encode()
    resp_body = json.dumps(resp).encode()
    return (
        _http(
            f"{method} {target} HTTP/1.1",
            "Host: api.moby.localhost",
            "Content-Type: application/json",
            f"Content-Length: {len(req_body)}",
            body=req_body,
        ),
        _http(
            "HTTP/1.1 201 Created",
            "Content-Type: application/json",
            f"Content-Length: {len(resp_body)}",
            body=resp_body,
        ),
    )


def _hijacked_output(
    target: str,
    book_feed: Callable[[Observer], None],
    output: bytes,
    content_type: str = "application/vnd.docker.raw-stream",
) -> list[Event]:
    observer = Observer()
    book_feed(observer)
    request = _http(
        f"POST {target} HTTP/1.1",
        "Host: api.moby.localhost",
        "Connection: Upgrade",
        "Upgrade: tcp",
        "Content-Type: application/json",
        "Content-Length: 17",
        body=b'{"Detach":false}\n',
    )
    upgraded = _http(
        "HTTP/1.1 101 UPGRADED",
        f"Content-Type: {content_type}",
        "Connection: Upgrade",
        "Upgrade: tcp",
    )
    events = observer.feed(9, CLIENT, request, 0.0)
    events += observer.feed(9, DAEMON, upgraded + output, 1.0)
    return events


# TTY output that happens to look like a frame header: only knowledge can tell.
_TTY_LOOKALIKE = b"\x01\x00\x00\x00\x00\x00\x00\x02ab"


def test_exec_tty_is_learned_from_exec_create() -> None:
    exec_id = "e" * 64
    req, resp = _json_exchange(
        "POST", "/v1.41/containers/c1/exec", {"Tty": True, "Cmd": ["sh"]}, {"Id": exec_id}
    )

    def create(observer: Observer) -> None:
        observer.feed(1, CLIENT, req, 0.0)
        observer.feed(1, DAEMON, resp, 0.0)

    events = _hijacked_output(f"/v1.41/exec/{exec_id}/start", create, _TTY_LOOKALIKE)
    assert [e for e in events if isinstance(e, Frame)] == []
    # Without that knowledge the same bytes are taken for a frame.
    events = _hijacked_output(f"/v1.41/exec/{exec_id}/start", lambda o: None, _TTY_LOOKALIKE)
    assert [e.data for e in events if isinstance(e, Frame)] == [b"ab"]


def test_api_1_42_and_later_say_in_the_content_type_whether_output_is_framed() -> None:
    # Only API 1.41 daemons run here, so these two are built by hand from the spec's rules.
    target = "/v1.44/exec/" + "e" * 64 + "/start"
    raw = _hijacked_output(target, lambda o: None, _TTY_LOOKALIKE)
    assert [e for e in raw if isinstance(e, Frame)] == []  # raw-stream on 1.42+: a TTY
    framed = _hijacked_output(
        target,
        lambda o: None,
        b"\x02\x00\x00\x00\x00\x00\x00\x03err",
        content_type="application/vnd.docker.multiplexed-stream",
    )
    assert [(e.stream, e.data) for e in framed if isinstance(e, Frame)] == [(Stream.STDERR, b"err")]


def test_tty_book_prefix_lookup_is_for_ids_only() -> None:
    book = TtyBook()
    full_id = "0123456789abcdef" * 4
    book.learn(full_id, True)
    book.learn("/web10", False)
    assert book.lookup(full_id) is True
    assert book.lookup(full_id[:12]) is True  # docker accepts id prefixes
    assert book.lookup("web10") is False
    assert book.lookup("web1") is None  # a different container, not a prefix of a name
    assert book.lookup("012") is None  # too short to be an id prefix


# -- damaged input: the observer never raises ------------------------------------------------

# CI runs a bounded fuzz; DOCKTAP_FUZZ_SCALE=100 runs a hundred times as many cases, on demand.
# A failure hypothesis finds is printed with the bytes that caused it: save them with
# tests/bytescript.py as a script under tests/data/bytescripts/ so it stays a regression test.
FUZZ_SCALE = int(os.environ.get("DOCKTAP_FUZZ_SCALE", "1"))

# ("data", conn, direction, bytes), ("eof", conn, direction, b"") or ("close", conn, None, b"")
Operation = tuple[str, int, Direction | None, bytes]


def check_feeds(operations: Iterable[Operation]) -> list[Event]:
    """Feed operations one by one and check the error contract after each.

    Once a connection has reported a ProtocolError, each further chunk must come back as
    exactly one Unparsed event with the same bytes; the Unparsed bytes reported at the break
    must be a suffix of what that direction sent, and (when that direction had produced no
    event yet) all of it.
    """
    observer = Observer()
    fed: dict[tuple[int, Direction], bytes] = {}
    produced: set[tuple[int, Direction]] = set()
    broken: set[int] = set()
    unparsed: dict[tuple[int, Direction], bytes] = {}
    every: list[Event] = []
    for t, (op, conn, direction, data) in enumerate(operations):
        if op == "data":
            assert direction is not None
            fed[conn, direction] = fed.get((conn, direction), b"") + data
            events = observer.feed(conn, direction, data, float(t))
            if conn in broken and data:
                assert events == [Unparsed(conn, float(t), direction, data)]
        elif op == "eof":
            assert direction is not None
            events = observer.feed_eof(conn, direction, float(t))
            if conn in broken:
                assert all(isinstance(e, HalfClosed) for e in events)
        else:
            events = observer.close(conn, float(t))
            if conn in broken:
                assert events == [Closed(conn, float(t))]
        was_broken = conn in broken
        for event in events:
            assert event.conn == conn
            if isinstance(event, ProtocolError):
                assert conn not in broken, "a second ProtocolError"
                broken.add(conn)
                continue
            if conn in broken:
                assert isinstance(event, Unparsed | HalfClosed | Closed), event
                if isinstance(event, Unparsed):
                    key = (conn, event.direction)
                    unparsed[key] = unparsed.get(key, b"") + event.data
            else:
                sender = _sent_by(event)
                if sender is not None:
                    produced.add((conn, sender))
        if conn in broken and not was_broken:
            for (c, d), sent in fed.items():
                if c == conn:
                    got = unparsed.get((c, d), b"")
                    assert sent.endswith(got), (d, got, sent)
                    if (c, d) not in produced:
                        assert got == sent, (d, got, sent)
        every += events
    return every


directions = st.sampled_from([CLIENT, DAEMON])
operation = st.one_of(
    st.tuples(st.just("data"), st.just(1), directions, st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("eof"), st.just(1), directions, st.just(b"")),
)
http_ish = st.sampled_from(
    [
        b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK",
        b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
        b"POST /containers/x/attach HTTP/1.1\r\nHost: x\r\n"
        b"Upgrade: tcp\r\nConnection: Upgrade\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"5\r\nhello\r\n0\r\n\r\n",
        b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n",
        b"\r\n",
        # What Go's net/http reads and h11 alone would not, and Go's own answers.
        b"POST /x?\xe9 HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}",
        b"GET / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n: no name\r\nContent-Length:\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\nuntil close",
        b"0;ext\r\nX-Trailer: 1\r\n\r\n",
    ]
)
http_operation = st.tuples(st.just("data"), st.just(1), directions, http_ish)


@settings(max_examples=300 * FUZZ_SCALE, deadline=None)
@given(st.lists(st.one_of(operation, http_operation), max_size=20), st.booleans())
def test_fuzz_random_bytes_never_raise(operations: list[Operation], close: bool) -> None:
    if close:
        operations = [*operations, ("close", 1, None, b"")]
    check_feeds(operations)


def _as_operations(steps: Iterable[Step]) -> list[Operation]:
    out: list[Operation] = []
    for step in steps:
        conn = step["conn"]
        if step.get("close"):
            out.append(("close", conn, None, b""))
        elif step.get("eof"):
            out.append(("eof", conn, Direction(step["dir"]), b""))
        else:
            out.append(("data", conn, Direction(step["dir"]), bytescript.step_data(step) or b""))
    return out


def draw_damage(data: st.DataObject, steps: list[Step]) -> list[Step]:
    """The script with random bytes inserted into, or written over, one of its chunks."""
    chunks = [i for i, step in enumerate(steps) if "b64" in step]
    index = data.draw(st.sampled_from(chunks), label="damaged step")
    step = steps[index]
    chunk = bytescript.step_data(step) or b""
    at = data.draw(st.integers(0, len(chunk)), label="offset")
    garbage = data.draw(st.binary(min_size=1, max_size=24), label="garbage")
    if data.draw(st.booleans(), label="overwrite"):
        damaged = chunk[:at] + garbage + chunk[at + len(garbage) :]
    else:
        damaged = chunk[:at] + garbage + chunk[at:]
    out = list(steps)
    out[index] = bytescript.data_step(step["conn"], Direction(step["dir"]), damaged)
    return out


@settings(
    max_examples=150 * FUZZ_SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(name=st.sampled_from(SCRIPTS), data=st.data())
def test_fuzz_garbage_in_recorded_scripts(name: str, data: st.DataObject) -> None:
    check_feeds(_as_operations(draw_damage(data, list(steps_of(name)))))


def _up_to_the_error(events: list[Event]) -> tuple[list[Event], dict[tuple[int, Direction], bytes]]:
    """Events with ProtocolError messages blanked and Unparsed bytes joined per direction."""
    kept: list[Event] = []
    unparsed: dict[tuple[int, Direction], bytes] = {}
    for event in normalize(events):
        if isinstance(event, Unparsed):
            key = (event.conn, event.direction)
            unparsed[key] = unparsed.get(key, b"") + event.data
        elif isinstance(event, ProtocolError):
            kept.append(ProtocolError(event.conn, 0.0, event.seq, event.direction, ""))
        else:
            kept.append(event)
    return kept, unparsed


@settings(
    max_examples=100 * FUZZ_SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(name=st.sampled_from(SCRIPTS), data=st.data())
def test_damaged_scripts_read_the_same_however_split(name: str, data: st.DataObject) -> None:
    damaged = draw_damage(data, list(steps_of(name)))
    whole = _up_to_the_error(run_observer(damaged))
    assert _up_to_the_error(run_observer(draw_resplit(data, damaged))) == whole


@pytest.mark.parametrize("name", SCRIPTS)
def test_recorded_scripts_pass_the_error_contract_check(name: str) -> None:
    check_feeds(_as_operations(steps_of(name)))


class _BuggyBook(TtyBook):
    def lookup(self, ref: str) -> bool | None:
        raise AttributeError("a bug, not bad bytes")


def _buggy_reader(self: object, data: bytes, pos: int) -> tuple[list[bytes], int]:
    raise TypeError("a bug, not bad bytes")


def test_a_bug_in_the_observer_propagates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only parse errors become ProtocolError records: a bug must fail loudly, not turn into
    data (it once hid h11 0.14's different private state as protocol errors)."""
    request = _http("POST /v1.41/containers/c1/attach?stream=1 HTTP/1.1", "Host: x")
    upgraded = _http("HTTP/1.1 200 OK", "Content-Type: application/vnd.docker.raw-stream")
    observer = ConnectionObserver(1, _BuggyBook())
    observer.feed(CLIENT, request, 0.0)
    with pytest.raises(AttributeError, match="a bug"):
        observer.feed(DAEMON, upgraded + b"\x01\x00\x00\x00\x00\x00\x00\x01x", 1.0)
    monkeypatch.setattr(bodyframing.LengthBody, "read", _buggy_reader)
    observer = ConnectionObserver(2)
    with pytest.raises(TypeError, match="a bug"):
        observer.feed(
            CLIENT, _http("POST /x HTTP/1.1", "Host: x", "Content-Length: 2") + b"{}", 0.0
        )


def test_garbage_request_is_kept_whole_as_unparsed() -> None:
    observer = ConnectionObserver(1)
    events = observer.feed(CLIENT, b"NOT HTTP AT ALL\r\n\r\nmore", 0.0)
    assert [type(e) for e in events] == [ProtocolError, Unparsed]
    assert events[1] == Unparsed(1, 0.0, CLIENT, b"NOT HTTP AT ALL\r\n\r\nmore")
    assert observer.feed(DAEMON, b"HTTP/1.1 400 Bad Request\r\n\r\n", 1.0) == [
        Unparsed(1, 1.0, DAEMON, b"HTTP/1.1 400 Bad Request\r\n\r\n")
    ]


def test_heads_go_reads_and_h11_refuses_are_reported_as_sent() -> None:
    """The daemon-backed tests below check each case against dockerd; these, the details."""
    observer = ConnectionObserver(1)
    events = observer.feed(
        CLIENT,
        b"POST /x?q=\xe9\xff HTTP/1.1\r\nHost: x\r\n: skipped\r\nContent-Length:\r\n 2\r\n\r\nab",
        0.0,
    )
    [head] = [e for e in events if isinstance(e, RequestHead)]
    assert head.target == "/x?q=\xe9\xff"
    # A folded Content-Length is not an empty one: h11 reads it, and the body is 2 bytes.
    assert head.headers == (("Host", "x"), ("", "skipped"), ("Content-Length", "2"))
    assert [e.data for e in events if isinstance(e, BodyData)] == [b"ab"]
    # After a POST, Go skips up to 4 CR/LF; after a GET it does not.
    for method, errors in (("POST", 0), ("GET", 1)):
        observer = ConnectionObserver(1)
        observer.feed(CLIENT, _http(f"{method} /a HTTP/1.1", "Host: x", "Content-Length: 0"), 0.0)
        observer.feed(DAEMON, _http("HTTP/1.1 204 No Content"), 0.0)
        events = observer.feed(CLIENT, b"\r\n" + _http("GET /b HTTP/1.1", "Host: x"), 0.0)
        assert len([e for e in events if isinstance(e, ProtocolError)]) == errors, method


def test_unanswered_pipelined_request_is_kept_at_close() -> None:
    ping = b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n"
    version = b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n"
    info = b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n"
    observer = ConnectionObserver(1)
    events = observer.feed(CLIENT, ping + version + info, 0.0)
    assert [type(e) for e in events] == [RequestHead, MessageEnd]
    assert observer.feed_eof(CLIENT, 1.0) == []  # two requests are still to be read
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"
    events = observer.feed(DAEMON, answer, 2.0)
    # The next request is read once the first exchange is over; the third still waits.
    assert [type(e) for e in events] == [
        ResponseHead,
        BodyData,
        MessageEnd,
        RequestHead,
        MessageEnd,
    ]
    # The daemon goes away without answering: the third request's bytes are not dropped.
    assert observer.feed_eof(DAEMON, 3.0) == [HalfClosed(1, 3.0, DAEMON)]
    events = observer.close(4.0)
    assert events == [
        ProtocolError(1, 4.0, 2, CLIENT, f"connection closed with {len(info)} bytes not parsed"),
        Unparsed(1, 4.0, CLIENT, info),
        HalfClosed(1, 4.0, CLIENT),
        Closed(1, 4.0),
    ]


def test_raw_stream_content_type_on_an_error_is_no_hijack() -> None:
    observer = ConnectionObserver(1)
    observer.feed(CLIENT, b"POST /containers/x/attach?stream=1 HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)
    events = observer.feed(
        DAEMON,
        b"HTTP/1.1 409 Conflict\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\nno",
        1.0,
    )
    events += observer.feed_eof(DAEMON, 2.0)
    assert not any(isinstance(e, Hijacked) for e in events)
    assert [e.data for e in events if isinstance(e, BodyData)] == [b"no"]
    assert [e.complete for e in events if isinstance(e, MessageEnd) and e.direction is DAEMON] == [
        True
    ]


# -- body bytes past h11 -----------------------------------------------------------------------


Bodies = dict[tuple[int, int, Direction], bytes]


def _observed_bodies(events: Iterable[Event]) -> Bodies:
    """The body bytes of each message, by (conn, seq, direction), up to any hijack."""
    bodies: Bodies = {}
    for event in events:
        if isinstance(event, BodyData):
            key = (event.conn, event.seq, event.direction)
            bodies[key] = bodies.get(key, b"") + event.data
    return bodies


def _h11_bodies(name: str) -> Bodies:
    """The same bodies as h11's own body readers find them: the reference for bodyframing.

    Each connection's bytes go to a full h11 pair, server for the client's and client for the
    daemon's, told of each other's messages as they come (with stand-in responses). Reading
    stops at the request before which the observer saw a hijack.
    """
    steps = steps_of(name)
    hijacks = {(e.conn, e.seq) for e in recorded(name) if isinstance(e, Hijacked)}
    bodies: Bodies = {}
    for conn in sorted({step["conn"] for step in steps}):
        streams = {CLIENT: b"", DAEMON: b""}
        for step in steps:
            if step["conn"] == conn and (data := bytescript.step_data(step)) is not None:
                streams[Direction(step["dir"])] += data
        server = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)
        client = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_SIZE)
        server.receive_data(streams[CLIENT])
        client.receive_data(streams[DAEMON])
        for seq in itertools.count(1):
            request = server.next_event()
            if not isinstance(request, h11.Request):
                break
            client.send(
                h11.Request(method=request.method, target=request.target, headers=[(b"host", b"x")])
            )
            while isinstance(event := server.next_event(), h11.Data):
                key = (conn, seq, CLIENT)
                bodies[key] = bodies.get(key, b"") + event.data
            if (conn, seq) in hijacks:
                break
            client.send(h11.EndOfMessage())
            while isinstance(event := client.next_event(), h11.InformationalResponse):
                pass
            while isinstance(event := client.next_event(), h11.Data):
                key = (conn, seq, DAEMON)
                bodies[key] = bodies.get(key, b"") + event.data
            if not isinstance(event, h11.EndOfMessage):
                break
            server.send(h11.Response(status_code=204, headers=[]))
            server.send(h11.EndOfMessage())
            if h11.MUST_CLOSE in (server.their_state, client.their_state):
                break
            server.start_next_cycle()
            client.start_next_cycle()
    return bodies


@pytest.mark.parametrize("name", SCRIPTS)
def test_bodies_are_those_h11_reads(name: str) -> None:
    assert _observed_bodies(run_observer(steps_of(name))) == _h11_bodies(name)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(SCRIPTS))
def test_bodies_are_those_h11_reads_however_split(data: st.DataObject, name: str) -> None:
    resplit = draw_resplit(data, steps_of(name))
    assert _observed_bodies(run_observer(resplit)) == _h11_bodies(name)


class _CountingH11:
    """Counts the bytes an observer hands to its h11 parsers."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fed = 0
        receive = h11.Connection.receive_data

        def counting(conn: h11.Connection, data: bytes) -> None:
            self.fed += len(data)
            receive(conn, data)

        monkeypatch.setattr(h11.Connection, "receive_data", counting)


@pytest.mark.parametrize("chunked", [False, True])
def test_big_bodies_go_past_h11(chunked: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bulk body must not be copied through h11's buffers: only heads and chunk lines are."""
    counting = _CountingH11(monkeypatch)
    piece = bytes(range(256)) * 256  # 64 KiB
    pieces = 64
    request = _http(
        "POST /v1.41/images/load HTTP/1.1",
        "Host: api.moby.localhost",
        f"Content-Length: {len(piece) * pieces}",
    )
    if chunked:
        framing = "Transfer-Encoding: chunked"
        lines = [f"{len(piece):x}\r\n".encode() + piece + b"\r\n" for _ in range(pieces)]
        response_body = [*lines, b"0\r\n\r\n"]
    else:
        framing = f"Content-Length: {len(piece) * pieces}"
        response_body = [piece] * pieces
    observer = ConnectionObserver(1)
    events = observer.feed(CLIENT, request, 0.0)
    for _ in range(pieces):
        events += observer.feed(CLIENT, piece, 0.0)
    events += observer.feed(DAEMON, _http("HTTP/1.1 200 OK", framing), 0.0)
    for data in response_body:
        events += observer.feed(DAEMON, data, 0.0)
    bodies = {
        d: b"".join(e.data for e in events if isinstance(e, BodyData) and e.direction is d)
        for d in (CLIENT, DAEMON)
    }
    assert bodies == {CLIENT: piece * pieces, DAEMON: piece * pieces}
    ends = [(e.direction, e.complete) for e in events if isinstance(e, MessageEnd)]
    assert ends == [(CLIENT, True), (DAEMON, True)]
    assert counting.fed < 16 * 1024, f"{counting.fed} bytes went through h11"


# -- as dockerd reads it: raw requests through a relay to the real daemon --------------------


class _DaemonWire:
    """A docktap relay in front of the private daemon, for conversations in raw bytes."""

    def __init__(self, daemon: Daemon, workdir: Path) -> None:
        self.daemon = daemon
        self.path = str(workdir / "relay.sock")
        self.relay = Relay(Endpoint(path=str(daemon.socket)))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._call(self.relay.listen(Endpoint(path=self.path)))

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self) -> None:
        self._call(self.relay.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def talk(self, raw: bytes) -> tuple[bytes, list[Event]]:
        """Send `raw` on one connection, read until the daemon closes it; the daemon's bytes
        and what the observer made of the whole conversation."""
        tap = bytescript.RawTap()
        self.relay.tap = tap
        reply = b""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(self.path)
            sock.sendall(raw)
            while chunk := sock.recv(65536):
                reply += chunk
        assert tap.wait_idle(30), "the relayed connection did not close"
        self.relay.tap = None
        return reply, run_observer(tap.steps)

    def inspect(self, name: str, template: str) -> str:
        return self.daemon.docker("inspect", "-f", template, name).stdout.decode().strip()

    def remove(self, *names: str) -> None:
        self.daemon.docker("rm", "-f", *names, check=False)


@pytest.fixture(scope="module")
def wire(dockerd: Daemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_DaemonWire]:
    relayed = _DaemonWire(dockerd, tmp_path_factory.mktemp("wire"))
    try:
        yield relayed
    finally:
        relayed.close()


def _create_body(**host_config: Any) -> bytes:
    return json.dumps(
        {"Image": "bb", "Cmd": ["true"], "NetworkDisabled": True, "HostConfig": host_config}
    ).encode()


def _exchanges(events: list[Event]) -> list[tuple[RequestHead, ResponseHead | None, bytes]]:
    """Each request head with its final response head and its request body."""
    out = []
    for req in [e for e in events if isinstance(e, RequestHead)]:
        mine = [e for e in events if getattr(e, "seq", None) == req.seq]
        heads = [e for e in mine if isinstance(e, ResponseHead) and not e.informational]
        body = b"".join(e.data for e in mine if isinstance(e, BodyData) and e.direction is CLIENT)
        out.append((req, heads[-1] if heads else None, body))
    return out


def _clean(events: list[Event]) -> None:
    assert [e for e in events if isinstance(e, ProtocolError | Unparsed)] == []


def test_http_1_0_request_as_dockerd_reads_it(wire: _DaemonWire) -> None:
    body = _create_body(Privileged=True)
    raw = (
        b"POST /v1.41/containers/create?name=obs-http10 HTTP/1.0\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    ) + body
    try:
        reply, events = wire.talk(raw)
        assert reply.startswith(b"HTTP/1.0 201 Created\r\n")
        _clean(events)
        [(req, resp, sent)] = _exchanges(events)
        assert (req.method, req.http_version, sent) == ("POST", "1.0", body)
        assert req.target == "/v1.41/containers/create?name=obs-http10"
        assert resp is not None and (resp.status, resp.http_version) == (201, "1.0")
        assert wire.inspect("obs-http10", "{{.HostConfig.Privileged}}") == "true"
    finally:
        wire.remove("obs-http10")


def test_http_1_0_keep_alive_as_dockerd_reads_it(wire: _DaemonWire) -> None:
    body = _create_body(Privileged=True)
    raw = (
        b"POST /v1.41/containers/create?name=obs-ka HTTP/1.0\r\nConnection: keep-alive\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % len(body)
        + body
        + b"GET /v1.41/containers/obs-ka/json HTTP/1.0\r\n\r\n"
    )
    try:
        _reply, events = wire.talk(raw)
        _clean(events)
        [(create, created, sent), (inspect, inspected, _)] = _exchanges(events)
        assert (create.http_version, sent, inspect.target) == (
            "1.0",
            body,
            "/v1.41/containers/obs-ka/json",
        )
        assert created is not None and header(created.headers, "connection") == "keep-alive"
        assert inspected is not None and inspected.status == 200
        answer = b"".join(
            e.data
            for e in events
            if isinstance(e, BodyData) and e.direction is DAEMON and e.seq == inspect.seq
        )
        assert json.loads(answer)["HostConfig"]["Privileged"] is True
        assert wire.inspect("obs-ka", "{{.HostConfig.Privileged}}") == "true"
    finally:
        wire.remove("obs-ka")


def test_http_1_0_answers_without_a_length_end_with_the_connection(wire: _DaemonWire) -> None:
    raw = b"GET /v1.41/events?since=0&until=%d HTTP/1.0\r\n\r\n" % int(time.time())
    _reply, events = wire.talk(raw)
    _clean(events)
    [(_req, resp, _)] = _exchanges(events)
    assert resp is not None and (resp.status, resp.http_version) == (200, "1.0")
    assert header(resp.headers, "content-length") is None
    ends = [e for e in events if isinstance(e, MessageEnd) and e.direction is DAEMON]
    assert [e.complete for e in ends] == [True]  # close-delimited: whole at the daemon's EOF


def test_non_ascii_target_as_dockerd_reads_it(wire: _DaemonWire) -> None:
    body = _create_body(Privileged=True)
    raw = (
        b"POST /v1.41/containers/create?name=obs-latin&x=\xe9 HTTP/1.1\r\nHost: x\r\n"
        b"Connection: close\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body
    try:
        _reply, events = wire.talk(raw)
        _clean(events)
        [(req, resp, sent)] = _exchanges(events)
        assert req.target == "/v1.41/containers/create?name=obs-latin&x=\xe9"
        assert routes.operation_name(req.method, req.target) == "ContainerCreate"
        assert sent == body and resp is not None and resp.status == 201
        assert wire.inspect("obs-latin", "{{.HostConfig.Privileged}}") == "true"
    finally:
        wire.remove("obs-latin")


def test_lines_go_skips_or_ignores_as_dockerd_reads_them(wire: _DaemonWire) -> None:
    body = _create_body(Privileged=True)
    # Go ignores Transfer-Encoding on HTTP/1.0 (whatever the coding), so Content-Length
    # frames this body; it skips a field without a name, and an empty Content-Length is none.
    raw = (
        b"POST /v1.41/containers/create?name=obs-te10 HTTP/1.0\r\nConnection: keep-alive\r\n"
        b"Transfer-Encoding: gzip, chunked\r\n: no name\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n"
        % len(body)
        + body
        + b"GET /_ping HTTP/1.1\r\nHost: x\r\nContent-Length:\r\nConnection: close\r\n\r\n"
    )
    try:
        _reply, events = wire.talk(raw)
        _clean(events)
        [(create, created, sent), (_ping, pong, _)] = _exchanges(events)
        assert sent == body and created is not None and created.status == 201
        assert header(create.headers, "transfer-encoding") == "gzip, chunked"
        assert ("", "no name") in create.headers  # reported in its place all the same
        assert [k for k, _ in create.headers][:3] == ["Connection", "Transfer-Encoding", ""]
        assert pong is not None and pong.status == 200
        assert wire.inspect("obs-te10", "{{.HostConfig.Privileged}}") == "true"
    finally:
        wire.remove("obs-te10")


def test_cr_lf_after_a_post_as_dockerd_reads_it(wire: _DaemonWire) -> None:
    raw = (
        b"POST /v1.41/containers/nosuch/stop HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        b"\r\n"  # old clients end a POST with an extra CRLF; Go skips it
        b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    _reply, events = wire.talk(raw)
    _clean(events)
    assert [(r.target, p.status if p else None) for r, p, _ in _exchanges(events)] == [
        ("/v1.41/containers/nosuch/stop", 404),
        ("/_ping", 200),
    ]


def test_chunked_request_as_dockerd_reads_it(wire: _DaemonWire) -> None:
    body = _create_body(Privileged=True)
    half = len(body) // 2
    raw = (
        b"POST /v1.41/containers/create?name=obs-chunked HTTP/1.1\r\nHost: x\r\n"
        b"Connection: close\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b"%x;ext=1\r\n%s\r\n%x\r\n%s\r\n0\r\nX-Trailer: t\r\n\r\n"
        % (half, body[:half], len(body) - half, body[half:])
    )
    try:
        _reply, events = wire.talk(raw)
        _clean(events)
        [(_req, resp, sent)] = _exchanges(events)
        assert sent == body and resp is not None and resp.status == 201
        assert wire.inspect("obs-chunked", "{{.HostConfig.Privileged}}") == "true"
    finally:
        wire.remove("obs-chunked")


def test_what_dockerd_refuses_is_still_read(wire: _DaemonWire) -> None:
    # A space before the colon: Go and h11 both refuse it; the bytes are kept, not parsed.
    reply, events = wire.talk(b"GET /_ping HTTP/1.1\r\nHost: x\r\nX-A : 1\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 Bad Request: invalid header name\r\n")
    [error] = [e for e in events if isinstance(e, ProtocolError)]
    assert error.direction is CLIENT
    unparsed = b"".join(e.data for e in events if isinstance(e, Unparsed) and e.direction is CLIENT)
    assert unparsed == b"GET /_ping HTTP/1.1\r\nHost: x\r\nX-A : 1\r\n\r\n"
    # A control byte in a value: h11 lets it pass, Go answers 400, and that answer is read.
    reply, events = wire.talk(
        b"GET /_ping HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\nConnection: close\r\n\r\n"
    )
    _clean(events)
    [(_req, resp, _)] = _exchanges(events)
    assert resp is not None and (resp.status, resp.reason) == (
        400,
        "Bad Request: invalid header value",
    )


def test_100_continue_as_dockerd_writes_it(wire: _DaemonWire) -> None:
    body = _create_body()
    raw = (
        b"POST /v1.41/containers/create?name=obs-continue HTTP/1.1\r\nHost: x\r\n"
        b"Connection: close\r\nExpect: 100-continue\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body
    try:
        reply, events = wire.talk(raw)
        assert reply.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n")
        _clean(events)
        heads = [(e.status, e.informational) for e in events if isinstance(e, ResponseHead)]
        assert heads == [(100, True), (201, False)]
        [(_, _, sent)] = _exchanges(events)
        assert sent == body
    finally:
        wire.remove("obs-continue")


# -- one budget for the unfinished heads of all connections ------------------------------


def test_the_head_budget_cuts_the_connection_holding_bytes_longest() -> None:
    budget = HeadBudget(100)
    budget.hold(1, 40)
    budget.hold(2, 40)
    budget.hold(3, 10)
    assert budget.oldest_past_limit() is None
    budget.hold(1, 50)  # growing does not make it younger
    budget.hold(3, 20)
    assert (budget.total, budget.oldest_past_limit()) == (110, 1)
    budget.hold(1, 0)
    budget.hold(1, 60)  # held again after letting go: now the youngest
    assert (budget.total, budget.oldest_past_limit()) == (120, 2)


def test_partial_heads_of_many_connections_never_hold_more_than_the_budget() -> None:
    limit, piece, pieces = 64 << 10, 3000, 8
    observer = Observer(head_budget=limit)
    head = b"POST /build HTTP/1.1\r\nHost: d\r\nX-Registry-Config: " + b"a" * piece * pieces
    cuts: list[HeadCut] = []
    unparsed: dict[int, int] = {}
    fed = 0
    for part in range(pieces):  # 40 connections, each sending its head a piece at a time
        for conn in range(1, 41):
            chunk = head[part * piece : (part + 1) * piece]
            fed += len(chunk)
            for event in observer.feed(conn, CLIENT, chunk, float(fed)):
                if isinstance(event, HeadCut):
                    cuts.append(event)
                elif isinstance(event, Unparsed):
                    unparsed[event.conn] = unparsed.get(event.conn, 0) + len(event.data)
                else:
                    raise AssertionError(f"unexpected {event!r}")
            assert observer.held <= limit
    # The oldest holders went first, each once, with what it held; the rest still hold theirs.
    assert [cut.conn for cut in cuts] == list(range(1, len(cuts) + 1))
    assert len(cuts) == 40 - limit // (piece * pieces)
    first = cuts[0]
    assert (first.direction, first.seq, first.budget) == (CLIENT, None, limit)
    # A cut connection goes on as unparsed bytes, each counted once, head first.
    assert sum(unparsed.values()) + observer.held == fed
    assert observer.feed(1, CLIENT, b"more", 0.0) == [Unparsed(1, 0.0, CLIENT, b"more")]
    assert observer.held == (40 - len(cuts)) * len(head[: piece * pieces])


def test_a_cut_connection_is_closed_as_unparsed_and_the_others_still_parse() -> None:
    observer = Observer(head_budget=100)
    observer.feed(1, CLIENT, b"GET /_ping HTTP/1.1\r\nHost: d\r\nX: " + b"a" * 50, 1.0)
    events = observer.feed(2, CLIENT, b"GET /_ping HTTP/1.1\r\nHost: d\r\nX: " + b"b" * 50, 2.0)
    assert [type(e) for e in events] == [HeadCut, Unparsed]
    assert events[0] == HeadCut(1, 2.0, None, CLIENT, 83, 100)
    done = observer.feed(2, CLIENT, b"\r\n\r\n", 3.0)
    assert [type(e) for e in done] == [RequestHead, MessageEnd]
    assert observer.held == 0
    # Nothing of the cut head is held any more, so closing has nothing left to report.
    assert observer.close(1, 4.0) == [Closed(1, 4.0)]


def test_a_single_head_keeps_its_own_limit_under_the_default_budget() -> None:
    assert MAX_HEAD_SIZE < HEAD_BUDGET
    observer = Observer()
    big = b"GET /_ping HTTP/1.1\r\nHost: d\r\nX: " + b"a" * (MAX_HEAD_SIZE - 100) + b"\r\n\r\n"
    events = observer.feed(1, CLIENT, big, 1.0)
    assert [type(e) for e in events] == [RequestHead, MessageEnd]


# -- a head read once stands for every copy of its bytes ----------------------------------


@contextlib.contextmanager
def _heads_read_anew() -> Iterator[None]:
    """Every head parsed by h11, and every body that tells TTYs read, as if never seen."""
    module = observer_module
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "_cached_request_head", module._request_head)
        patch.setattr(module, "_cached_response_head", module._response_head)
        patch.setattr(module, "_told", module._tells)
        yield


def _head_hits() -> int:
    return (
        observer_module._cached_request_head.cache_info().hits
        + observer_module._cached_response_head.cache_info().hits
    )


@pytest.mark.parametrize("name", SCRIPTS)
def test_heads_read_from_the_cache_give_the_events_of_heads_read_anew(name: str) -> None:
    steps = steps_of(name)
    with _heads_read_anew():
        anew = run_observer(steps), run_observer(steps, bytewise)
    run_observer(steps)  # now every small head of the script has been read once
    hits = _head_hits()
    assert (run_observer(steps), run_observer(steps, bytewise)) == anew
    assert _head_hits() > hits


def _heads_of(name: str) -> list[bytes]:
    """The heads of a script, each as the bytes its events say were sent."""
    heads = []
    for event in recorded(name):
        if isinstance(event, RequestHead):
            line = f"{event.method} {event.target} HTTP/{event.http_version}"
        elif isinstance(event, ResponseHead):
            line = f"HTTP/{event.http_version} {event.status} {event.reason}"
        else:
            continue
        fields = [f"{key}: {value}" for key, value in event.headers]
        heads.append(_http(line, *fields))
    return heads


recorded_head = st.sampled_from(sorted({head for name in SCRIPTS for head in _heads_of(name)}))
head_operation = st.tuples(st.just("data"), st.just(1), directions, recorded_head)


@settings(max_examples=200 * FUZZ_SCALE, deadline=None)
@given(st.lists(st.one_of(operation, http_operation, head_operation), max_size=20))
def test_any_heads_read_from_the_cache_give_the_events_of_heads_read_anew(
    operations: list[Operation],
) -> None:
    def bytewise_operations() -> list[Operation]:
        return [
            (op, conn, direction, bytes([byte]))
            for op, conn, direction, data in operations
            for byte in data
        ]

    with _heads_read_anew():
        anew = check_feeds(operations)
    check_feeds(operations)
    assert check_feeds(operations) == anew
    with _heads_read_anew():
        anew = check_feeds(bytewise_operations())
    assert check_feeds(bytewise_operations()) == anew


def test_a_response_head_is_read_as_the_answer_to_its_request_s_method() -> None:
    """The same bytes frame no body after a HEAD, and the body they announce after a GET."""
    answer = _http("HTTP/1.1 200 OK", "Content-Length: 2")
    obs = ConnectionObserver(1)
    events = []
    for method in ("HEAD", "GET", "HEAD"):
        events += obs.feed(CLIENT, _http(f"{method} /_ping HTTP/1.1", "Host: x"), 0.0)
        events += obs.feed(DAEMON, answer + (b"OK" if method == "GET" else b""), 0.0)
    assert [e.data for e in events if isinstance(e, BodyData)] == [b"OK"]
    assert not [e for e in events if isinstance(e, ProtocolError | Unparsed)]
    assert sum(isinstance(e, MessageEnd) for e in events) == 6


def test_a_1xx_read_from_the_cache_is_followed_by_its_answer() -> None:
    request = _http("POST /x HTTP/1.1", "Host: x", "Expect: 100-continue", "Content-Length: 2")
    answer = _http("HTTP/1.1 100 Continue") + _http("HTTP/1.1 200 OK", "Content-Length: 2")
    obs = ConnectionObserver(1)
    events = []
    for _ in range(3):
        events += obs.feed(CLIENT, request + b"{}", 0.0)
        events += obs.feed(DAEMON, answer + b"OK", 0.0)
    heads = [(e.seq, e.status) for e in events if isinstance(e, ResponseHead)]
    assert heads == [(1, 100), (1, 200), (2, 100), (2, 200), (3, 100), (3, 200)]
    assert [e.data for e in events if isinstance(e, BodyData)] == [b"{}", b"OK"] * 3


def test_the_heads_kept_are_bounded() -> None:
    cache, kept = observer_module._cached_request_head, observer_module._CACHED_HEADS
    read = observer_module.read_request_head
    for n in range(kept + 50):
        read(_http(f"GET /v1.41/containers/{n}/json HTTP/1.1", "Host: x"))
    assert cache.cache_info().currsize == cache.cache_info().maxsize == kept
    big = _http("GET /_ping HTTP/1.1", "Host: x", "X-Big: " + "x" * observer_module._CACHED_HEAD)
    misses = cache.cache_info().misses
    for _ in range(2):
        assert read(big).target == "/_ping"
    assert cache.cache_info().misses == misses, "a big head is read anew, not kept"


def test_a_head_says_how_long_its_body_is_when_a_length_frames_it() -> None:
    def request(*fields: bytes, version: bytes = b"1.1") -> int | None:
        head = b"POST /x HTTP/" + version + b"\r\nHost: d\r\n" + b"".join(fields) + b"\r\n"
        return read_request_head(head).length

    assert request(b"Content-Length: 5\r\n") == 5
    assert request() == 0
    assert request(b"Transfer-Encoding: chunked\r\n") is None
    # Go ignores Transfer-Encoding on HTTP/1.0: the length frames the body.
    assert request(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", version=b"1.0") == 5

    def response(method: str, head: bytes) -> int | None:
        return read_response_head(method, head + b"\r\n").length

    assert response("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n") == 2
    assert response("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n") == 0
    assert response("GET", b"HTTP/1.1 204 No Content\r\n") == 0
    assert response("GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n") is None
    assert response("GET", b"HTTP/1.1 200 OK\r\n") is None  # until the daemon closes
    assert response("GET", b"HTTP/1.1 100 Continue\r\n") is None
    assert response("POST", b"HTTP/1.1 101 UPGRADED\r\nUpgrade: tcp\r\n") is None
