"""Scripts for replay: each recorded exchange as the daemon's pieces and what preceded them."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from synthetic import CANCELED, given_up_wait

from docktap import load, routes
from docktap.capture import reader
from docktap.capture.format import Record
from docktap.capture.reader import Capture, loads
from docktap.replay.script import ClientMark, Recording, scripts, subjects
from docktap.routes import identify

CAPTURES = Path(__file__).parent.parent / "captures"


def _scripts(name: str) -> tuple[Capture, list[Recording]]:
    capture = load(CAPTURES / name)
    return capture, scripts(capture, name)


def _by_operation(recordings: list[Recording]) -> dict[str, Recording]:
    named = {r.exchange.operation or "": r for r in recordings}
    assert len(named) == len(recordings)
    return named


def _lines(name: str) -> list[bytes]:
    return (CAPTURES / name).read_bytes().splitlines(keepends=True)


def _index_of(capture: Capture, **fields: object) -> int:
    """The position of the only record with these fields."""
    found = [
        i
        for i, record in enumerate(capture.records)
        if all(record.get(name) == value for name, value in fields.items())
    ]
    assert len(found) == 1, found
    return found[0]


# --- one recording per exchange ---------------------------------------------------------


def test_one_recording_per_exchange_numbered_in_start_order() -> None:
    capture, recordings = _scripts("run.jsonl")
    assert len(recordings) == len(capture.exchanges) == 5
    assert [r.number for r in recordings] == [1, 2, 3, 4, 5]
    assert [r.label for r in recordings] == ["#1", "#2", "#3", "#4", "#5"]
    assert all(r.exchange is ex for r, ex in zip(recordings, capture.exchanges, strict=True))
    assert all(r.source == "run.jsonl" for r in recordings)
    assert [r.exchange.operation for r in recordings] == [
        "SystemPingHead",
        "ContainerCreate",
        "ContainerAttach",
        "ContainerWait",
        "ContainerStart",
    ]
    for r in recordings:
        request = capture.records[r.request_index]
        assert request["type"] == "request"
        assert (request["conn"], request["seq"]) == (r.exchange.conn, r.exchange.seq)
    # Start order is not capture order: the attach (conn 2) began before the wait (conn 1).
    assert [(r.exchange.conn, r.exchange.seq) for r in recordings] == [
        (1, 1),
        (1, 2),
        (2, 1),
        (1, 3),
        (3, 1),
    ]


def test_pieces_are_the_daemons_records_in_order() -> None:
    capture, recordings = _scripts("run.jsonl")
    for r in recordings:
        indices = [p.index for p in r.pieces]
        assert indices == sorted(set(indices))
        assert all(p.index > r.request_index for p in r.pieces)
        for piece in r.pieces:
            record = capture.records[piece.index]
            assert piece.mono == record["mono"]
            assert record["conn"] == r.exchange.conn
            if piece.kind in ("head", "body", "stream", "halfclose"):
                assert record["dir"] == "daemon"
            expected = "response" if piece.kind == "head" else piece.kind
            assert record["type"] == expected


def test_the_attach_is_hijacked_and_played_as_recorded() -> None:
    capture, recordings = _scripts("run.jsonl")
    attach = _by_operation(recordings)["ContainerAttach"]
    ex = attach.exchange
    assert ex.hijacked == "tcp"
    assert [p.kind for p in attach.pieces] == ["head", "stream", "stream", "halfclose", "close"]
    assert attach.head is not None
    assert attach.head.status == 101
    assert attach.head is ex.response
    head = capture.records[attach.pieces[0].index]
    assert attach.head.index == attach.pieces[0].index
    assert (head["type"], head["status"], head["conn"], head["seq"]) == ("response", 101, 2, 1)
    assert attach.head.headers == [(k, v) for k, v in head["headers"]]
    out, err = (p.data for p in attach.pieces if p.kind == "stream")
    assert out == b"\x01\x00\x00\x00\x00\x00\x00\x04out\n"
    assert err == b"\x02\x00\x00\x00\x00\x00\x00\x04err\n"
    assert out + err == bytes(ex.stream["daemon"])
    assert all(p.data == b"" for p in attach.pieces if p.kind != "stream")
    # `docker run` without -i half-closed its side at once, before any output.
    halfclose = _index_of(capture, type="halfclose", conn=ex.conn, dir="client")
    assert attach.client_marks == [ClientMark(halfclose, 0, True)]
    assert halfclose < attach.pieces[1].index
    assert not attach.ends_open  # its response never "ended", but a hijack is not left open
    assert not attach.truncated


def test_the_wait_is_a_head_then_the_exit_status() -> None:
    _, recordings = _scripts("run.jsonl")
    wait = _by_operation(recordings)["ContainerWait"]
    assert [p.kind for p in wait.pieces] == ["head", "body"]
    assert wait.head is not None
    assert wait.head.status == 200
    assert wait.pieces[1].data == b'{"Error":null,"StatusCode":3}\n'
    assert wait.pieces[1].mono > wait.pieces[0].mono + 0.2  # the long poll
    assert wait.client_marks == []
    assert not wait.ends_open
    assert not wait.truncated


def test_other_exchanges_of_docker_run() -> None:
    _, recordings = _scripts("run.jsonl")
    named = _by_operation(recordings)
    assert [p.kind for p in named["SystemPingHead"].pieces] == ["head"]
    assert [p.kind for p in named["ContainerStart"].pieces] == ["head"]
    create = named["ContainerCreate"]
    assert [p.kind for p in create.pieces] == ["head", "body"]
    assert create.pieces[1].data == bytes(create.exchange.response_body)
    assert create.head is not None
    assert create.head.status == 201
    for r in recordings:
        assert not r.ends_open
        assert not r.truncated
        if not r.exchange.hijacked:
            assert r.client_marks == []  # a client's half-close only counts on a hijack


def test_the_exec_of_an_exec_it() -> None:
    _, recordings = _scripts("exec-it.jsonl")
    named = _by_operation(recordings)
    start = named["ExecStart"]
    assert [p.kind for p in start.pieces] == ["head", "stream", "halfclose", "close"]
    assert start.pieces[1].data == b"in-exec\r\n"  # a TTY: not framed
    # Its request body (the exec options) is the client's: no piece.
    assert start.exchange.request_body_size > 0
    # The client half-closed only after the daemon did.
    assert [m.halfclosed for m in start.client_marks] == [True]
    assert start.client_marks[0].index > start.pieces[2].index


# --- subjects and related exchanges -----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/v1.41/containers/da20d04c/attach", {"containers/da20d04c"}),
        ("POST", "/containers/da20d04c/wait", {"containers/da20d04c"}),
        ("GET", "/v1.41/containers/sleeper/json", {"containers/sleeper"}),
        ("DELETE", "/v1.41/containers/sleeper", {"containers/sleeper"}),
        ("POST", "/v1.41/containers/sleeper/exec", {"containers/sleeper"}),
        ("POST", "/v1.41/exec/0cd8e1ba/start", {"exec/0cd8e1ba"}),
        ("GET", "/v1.41/exec/0cd8e1ba/json", {"exec/0cd8e1ba"}),
        ("GET", "/v1.41/containers/json", set()),
        ("POST", "/v1.41/containers/create", set()),
        ("POST", "/v1.41/containers/prune", set()),
        ("HEAD", "/_ping", set()),
        ("GET", "/v1.41/images/json", set()),
        ("GET", "/v1.41/images/bb/json", set()),
        ("GET", "/v1.41/version", set()),
    ],
)
def test_subjects(method: str, path: str, expected: set[str]) -> None:
    assert subjects(identify(method, path)) == frozenset(expected)


def test_every_recorded_exchange_is_about_what_its_path_names() -> None:
    """The subjects the request heads carry are those of the one rule for paths."""
    for name in sorted(p.name for p in CAPTURES.glob("*.jsonl")):
        for r in scripts(load(CAPTURES / name), name):
            found = routes.subject(r.exchange.target)
            assert r.subjects == (frozenset() if found is None else {str(found)})


def test_exchanges_about_the_same_container_are_related() -> None:
    _, recordings = _scripts("run.jsonl")
    named = _by_operation(recordings)
    attach, wait, start = named["ContainerAttach"], named["ContainerWait"], named["ContainerStart"]
    container = attach.exchange.path.split("/")[3]
    assert len(container) == 64
    for r in (attach, wait, start):
        assert r.subjects == frozenset({f"containers/{container}"})
    for r in (named["SystemPingHead"], named["ContainerCreate"]):
        assert r.subjects == frozenset()
        assert r.related == []
    assert {r.number for r in attach.related} == {wait.number, start.number}
    assert {r.number for r in wait.related} == {attach.number, start.number}
    assert {r.number for r in start.related} == {attach.number, wait.number}
    for r in recordings:
        assert all(other is not r for other in r.related)
        for other in r.related:  # both ways, with the very same objects
            assert any(back is r for back in other.related)
            assert any(o is other for o in recordings)


def test_two_containers_and_an_exec_are_kept_apart() -> None:
    _, recordings = _scripts("docker-py.jsonl")
    about: dict[str, set[int]] = {}
    for r in recordings:
        for subject in r.subjects:
            about.setdefault(subject, set()).add(r.number)
    assert len(about) == 3  # two containers and one exec instance
    for r in recordings:
        expected = {n for s in r.subjects for n in about[s]} - {r.number}
        assert {o.number for o in r.related} == expected
    (exec_subject,) = (s for s in about if s.startswith("exec/"))
    assert {recordings[n - 1].exchange.operation for n in about[exec_subject]} == {
        "ExecStart",
        "ExecInspect",
    }


# --- the client's side of a hijacked stream ---------------------------------------------


def test_stdin_sent_and_half_closed_are_marked() -> None:
    capture, recordings = _scripts("run-stdin.jsonl")
    attach = _by_operation(recordings)["ContainerAttach"]
    stdin = attach.exchange.output("stdin")
    assert stdin == b"hello from stdin\n"
    sent = _index_of(capture, type="stream", conn=attach.exchange.conn, dir="client")
    closed = _index_of(capture, type="halfclose", conn=attach.exchange.conn, dir="client")
    assert attach.client_marks == [
        ClientMark(sent, len(stdin), False),
        ClientMark(closed, len(stdin), True),
    ]
    assert [p.kind for p in attach.pieces] == ["head", "stream", "halfclose", "close"]
    echo = attach.pieces[1]
    assert echo.data == b"\x01\x00\x00\x00\x00\x00\x00\x11hello from stdin\n"
    assert attach.pieces[0].index < sent < closed < echo.index


def test_an_answer_written_after_the_client_gave_up_is_marked() -> None:
    """The client half-closed a ContainerWait after its head; dockerd answered after that."""
    capture = given_up_wait()
    (wait,) = scripts(capture, "wait.jsonl")
    closed = _index_of(capture, type="halfclose", dir="client")
    assert wait.client_marks == [ClientMark(closed, 0, True)]
    head, body = wait.pieces
    assert head.index < closed < body.index
    assert body.data == CANCELED
    assert wait.outlives_client


def test_an_answer_ended_before_the_client_left_does_not_outlive_it() -> None:
    _, recordings = _scripts("run.jsonl")
    assert not any(r.outlives_client for r in recordings)
    # A hijacked stream goes on after a half-close anyway: it is not what this is about.
    _, recordings = _scripts("run-stdin.jsonl")
    attach = _by_operation(recordings)["ContainerAttach"]
    assert any(m.halfclosed for m in attach.client_marks) and not attach.outlives_client


def test_client_bytes_add_up_over_several_records() -> None:
    """Each mark holds what the client had sent so far, not what one record carried."""
    lines = _lines("run-stdin.jsonl")
    (at,) = (
        i
        for i, line in enumerate(lines)
        if b'"type":"stream","conn":2' in line and b'"dir":"client"' in line
    )
    record = orjson.loads(lines[at])
    first, second = dict(record), dict(record)
    first["text"], first["size"] = "hello ", 6
    second["text"], second["size"] = "from stdin\n", 11
    capture = loads(
        b"".join(
            [
                *lines[:at],
                orjson.dumps(first) + b"\n",
                orjson.dumps(second) + b"\n",
                *lines[at + 1 :],
            ]
        )
    )
    attach = _by_operation(scripts(capture, "split.jsonl"))["ContainerAttach"]
    assert [(m.sent, m.halfclosed) for m in attach.client_marks] == [
        (6, False),
        (17, False),
        (17, True),
    ]


# --- answers that never ended, or were cut --------------------------------------------------


def test_an_answer_cut_off_with_the_capture_ends_open() -> None:
    lines = _lines("events.jsonl")
    bodies = [
        i for i, line in enumerate(lines) if line.startswith(b'{"type":"body","conn":1,"seq":2')
    ]
    assert len(bodies) > 5
    capture = loads(b"".join(lines[: bodies[2] + 1]))
    assert not capture.complete
    ping, events = scripts(capture, "events.jsonl")
    assert events.exchange.operation == "SystemEvents"
    assert events.exchange.response_complete is None
    assert events.ends_open
    assert not events.truncated
    assert [p.kind for p in events.pieces] == ["head", "body", "body", "body"]
    assert b"".join(p.data for p in events.pieces) == bytes(events.exchange.response_body)
    assert not ping.ends_open
    # The whole capture: the stream ended (--until), nothing is left open.
    assert not any(r.ends_open for r in scripts(load(CAPTURES / "events.jsonl"), "events.jsonl"))


def test_an_answer_the_client_left_ends_open() -> None:
    """docktap ends a body still open when the connection closes: complete false."""
    lines = _lines("events.jsonl")
    bodies = [
        i for i, line in enumerate(lines) if line.startswith(b'{"type":"body","conn":1,"seq":2')
    ]
    last = orjson.loads(lines[bodies[1]])
    end: Record = {
        "type": "end",
        "conn": 1,
        "seq": 2,
        "dir": "daemon",
        "complete": False,
        "size": 678,
        "inline": 678,
        "sha256": "0" * 64,
        "t": last["t"],
        "mono": last["mono"],
    }
    close: Record = {"type": "close", "conn": 1, "t": last["t"], "mono": last["mono"]}
    tail = [orjson.dumps(end) + b"\n", orjson.dumps(close) + b"\n"]
    capture = loads(b"".join(lines[: bodies[1] + 1] + tail))
    _, events = scripts(capture, "events.jsonl")
    assert events.exchange.response_complete is False
    assert events.ends_open
    assert [p.kind for p in events.pieces] == ["head", "body", "body"]  # no close: not a hijack


def test_a_request_never_answered_has_no_pieces() -> None:
    lines = _lines("run.jsonl")
    (wait,) = (i for i, line in enumerate(lines) if b'"operation":"ContainerWait"' in line)
    capture = loads(b"".join(lines[: wait + 1]))
    recordings = scripts(capture, "run.jsonl")
    assert [r.exchange.operation for r in recordings][-1] == "ContainerWait"
    assert recordings[-1].pieces == []
    assert recordings[-1].ends_open


def _capped(name: str, conn: int, seq: int, direction: str, keep: int) -> bytes:
    """The capture as if recorded with --max-body `keep`, cutting one body."""
    out = []
    for line in _lines(name):
        record = orjson.loads(line)
        if record["type"] == "capture":
            record["max_body"] = keep
        mine = (record.get("conn"), record.get("seq"), record.get("dir")) == (conn, seq, direction)
        if mine and record["type"] == "body":
            assert record["size"] > keep and "text" in record
            record["text"], record["size"] = record["text"][:keep], keep
        if mine and record["type"] == "end":
            assert record["size"] > keep
            record["inline"] = keep
        out.append(orjson.dumps(record) + b"\n")
    return b"".join(out)


def test_a_body_cut_by_the_cap_is_truncated() -> None:
    capture = loads(_capped("run.jsonl", 1, 2, "daemon", 40))
    named = _by_operation(scripts(capture, "run.jsonl"))
    create = named["ContainerCreate"]
    full = bytes(load(CAPTURES / "run.jsonl").exchanges[1].response_body)
    assert create.exchange.response_body_size == len(full) == 88
    assert create.truncated
    assert not create.ends_open
    assert [p.kind for p in create.pieces] == ["head", "body"]
    assert create.pieces[1].data == full[:40]
    assert not any(r.truncated for r in named.values() if r is not create)


@pytest.mark.parametrize(("cap", "cut"), [(24, True), (25, False), (0, False)])
def test_a_stream_that_reached_the_cap_is_cut(cap: int, cut: bool) -> None:
    # The attach of run.jsonl carried 24 bytes from the daemon: a cap of 24 may have cut it
    # (streams have no end record saying how long they were); one of 25, or none, did not.
    lines = [orjson.loads(line) for line in _lines("run.jsonl")]
    lines[0]["max_body"] = cap
    capture = loads(b"".join(orjson.dumps(r) + b"\n" for r in lines))
    named = _by_operation(scripts(capture, "run.jsonl"))
    attach = named["ContainerAttach"]
    assert attach.stream_kept == 24
    assert attach.stream_cut is cut
    assert not attach.truncated
    assert not any(r.stream_cut for r in named.values() if r is not attach)


def test_a_payload_left_in_the_capture_is_a_piece_that_says_where() -> None:
    path = CAPTURES / "docker-py.jsonl"
    whole = scripts(load(path), "docker-py.jsonl")
    leaving = scripts(reader.load(path, leave_over=1024), "docker-py.jsonl")
    with open(path, "rb") as handle:
        for kept, recording in zip(whole, leaving, strict=True):
            assert [(p.index, p.kind, p.size) for p in recording.pieces] == [
                (p.index, p.kind, len(p.data)) for p in kept.pieces
            ]
            assert recording.truncated is kept.truncated
            for was, piece in zip(kept.pieces, recording.pieces, strict=True):
                if piece.left is None:
                    assert piece.data == was.data
                else:
                    assert piece.data == b"" and reader.read_left(piece.left, handle) == was.data
    assert any(p.left is not None for r in leaving for p in r.pieces)


def test_a_body_cut_by_the_cap_and_left_in_the_capture_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "capped.jsonl"
    path.write_bytes(_capped("docker-py.jsonl", 3, 1, "daemon", 2000))
    recordings = scripts(reader.load(path, leave_over=1024), "capped.jsonl")
    (capped,) = (r for r in recordings if (r.exchange.conn, r.exchange.seq) == (3, 1))
    assert [p.left is not None for p in capped.pieces] == [False, True]
    assert (capped.body_kept, capped.exchange.response_body_size) == (2000, 3098)
    assert capped.truncated
    assert not any(r.truncated for r in recordings if r is not capped)
