"""Tests for reading captures back: parsing lines and assembling exchanges."""

from __future__ import annotations

import hashlib
import json
import shutil
import tracemalloc
import warnings
from pathlib import Path

import orjson
import pytest
from capture_schema import validate_capture

import docktap
from docktap.capture import reader
from docktap.capture.format import HELD_BODY_LIMIT, Record, RecordEncoder, dumps
from docktap.capture.reader import Capture, CaptureError, CaptureWarning, decode, load, loads
from docktap.capture.writer import CaptureWriter
from docktap.events import (
    BodyData,
    Closed,
    Direction,
    Event,
    Frame,
    HalfClosed,
    Hijacked,
    MessageEnd,
    ProtocolError,
    RequestHead,
    ResponseHead,
    Stream,
    StreamData,
    Unparsed,
)
from docktap.replay.match import Request
from docktap.replay.script import scripts
from docktap.replay.store import Play, build_store, recorded_request
from docktap.routes import Identity, Subject

WALL = 1_800_000_000.0
MONO = 1000.0
CLIENT = Direction.CLIENT
DAEMON = Direction.DAEMON
GOLDEN = Path(__file__).parent / "data" / "captures" / "run-stdout-stderr.jsonl"
CAPTURES = Path(__file__).parent.parent / "captures"
CID = "2b1aa2fc5cbb" + "0" * 52


def write_capture(
    path: Path,
    events: list[Event | tuple[str, int, float]],
    max_body: int = 1 << 20,
    footer: bool = True,
) -> Path:
    """Encode events as docktap does and write them with the real writer.

    ("open", conn, t) stands for a new connection; times count from the capture start.
    """
    enc = RecordEncoder(WALL, MONO, max_body)
    writer = CaptureWriter.create(str(path))
    writer.write([enc.header("unix:///var/run/docker.sock", ["docker", "run", "bb"], "0.1.0")])
    for item in events:
        if isinstance(item, tuple):
            _, conn, t = item
            writer.write([enc.opened(conn, {"pid": 99, "uid": 0, "gid": 0}, MONO + t)])
        else:
            writer.write(enc.encode(item))
    if footer:
        writer.write([enc.footer(MONO + 10, writer.records + 1)])
    writer.close()
    assert writer.failed is None
    return path


def at(t: float) -> float:
    return MONO + t


def req(conn: int, seq: int, method: str, target: str, t: float) -> RequestHead:
    return RequestHead(conn, at(t), seq, method, target, "1.1", (("Host", "api.moby.localhost"),))


def resp(
    conn: int, seq: int, status: int, t: float, informational: bool = False, reason: str = "OK"
) -> ResponseHead:
    headers = (("Content-Type", "application/json"),)
    return ResponseHead(conn, at(t), seq, status, reason, "1.1", headers, informational)


def docker_run_events() -> list[Event | tuple[str, int, float]]:
    """A `docker run -i` over three connections, interleaved as dockerd answers."""
    create = b'{"Image":"bb","Tty":false}'
    return [
        ("open", 1, 0.01),
        req(1, 1, "HEAD", "/_ping", 0.02),
        MessageEnd(1, at(0.02), 1, CLIENT),
        resp(1, 1, 200, 0.03),
        MessageEnd(1, at(0.03), 1, DAEMON),
        req(1, 2, "POST", "/v1.41/containers/create", 0.04),
        BodyData(1, at(0.04), 2, CLIENT, create[:10]),
        BodyData(1, at(0.04), 2, CLIENT, create[10:]),
        MessageEnd(1, at(0.04), 2, CLIENT),
        resp(1, 2, 201, 0.05, reason="Created"),
        BodyData(1, at(0.05), 2, DAEMON, b'{"Id":"' + CID.encode() + b'","Warnings":[]}\n'),
        MessageEnd(1, at(0.05), 2, DAEMON),
        ("open", 2, 0.06),
        req(2, 1, "POST", f"/v1.41/containers/{CID}/attach?stream=1&stdin=1&stdout=1", 0.07),
        MessageEnd(2, at(0.07), 1, CLIENT),
        resp(2, 1, 101, 0.08, informational=True, reason="UPGRADED"),
        Hijacked(2, at(0.08), 1, "tcp"),
        req(1, 3, "POST", f"/v1.41/containers/{CID}/wait?condition=removed", 0.09),
        MessageEnd(1, at(0.09), 3, CLIENT),
        resp(1, 3, 200, 0.10),
        ("open", 3, 0.11),
        req(3, 1, "POST", f"/v1.41/containers/{CID}/start", 0.12),
        MessageEnd(3, at(0.12), 1, CLIENT),
        StreamData(2, at(0.13), 1, CLIENT, b"hello\n"),
        HalfClosed(2, at(0.14), CLIENT),
        StreamData(2, at(0.2), 1, DAEMON, b"\x01\x00\x00\x00\x00\x00\x00\x06hello\n"),
        Frame(2, at(0.2), 1, DAEMON, Stream.STDOUT, b"hello\n"),
        StreamData(2, at(0.21), 1, DAEMON, b"\x02\x00\x00\x00\x00\x00\x00\x04oops"),
        Frame(2, at(0.21), 1, DAEMON, Stream.STDERR, b"oops"),
        resp(3, 1, 204, 0.22, reason="No Content"),
        MessageEnd(3, at(0.22), 1, DAEMON),
        HalfClosed(2, at(0.3), DAEMON),
        Closed(2, at(0.31)),
        BodyData(1, at(0.4), 3, DAEMON, b'{"Error":null,"StatusCode":0}\n'),
        MessageEnd(1, at(0.4), 3, DAEMON),
        Closed(3, at(0.5)),
        Closed(1, at(0.5)),
    ]


@pytest.fixture
def run_capture(tmp_path: Path) -> Path:
    return write_capture(tmp_path / "run.jsonl", docker_run_events())


def test_exchanges_assemble_in_start_order(run_capture: Path) -> None:
    validate_capture(run_capture)
    capture = docktap.load(run_capture)
    assert isinstance(capture, Capture)
    assert capture.complete
    assert capture.header["command"] == ["docker", "run", "bb"]
    assert len(capture) == 5
    assert [(ex.conn, ex.seq, ex.operation, ex.status) for ex in capture] == [
        (1, 1, "SystemPingHead", 200),
        (1, 2, "ContainerCreate", 201),
        (2, 1, "ContainerAttach", 101),
        (1, 3, "ContainerWait", 200),
        (3, 1, "ContainerStart", 204),
    ]
    assert [ex.api_version for ex in capture] == [None, "1.41", "1.41", "1.41", "1.41"]
    assert capture.exchanges[0].started == pytest.approx(WALL + 0.02)
    assert capture.exchanges[0].started_mono == pytest.approx(0.02)


def test_exchanges_are_numbered_by_their_request_records(tmp_path: Path) -> None:
    # Two requests at the same moment: the one recorded first is the lower number, whatever
    # its connection, and the numbers are the order of the list.
    events: list[Event | tuple[str, int, float]] = [
        ("open", 2, 0.01),
        ("open", 1, 0.01),
        req(2, 1, "GET", "/v1.41/info", 0.02),
        req(1, 1, "GET", "/v1.41/version", 0.02),
        req(1, 2, "GET", "/v1.41/images/json", 0.03),
    ]
    capture = load(write_capture(tmp_path / "tie.jsonl", events))
    assert [(ex.number, ex.conn, ex.seq) for ex in capture] == [(1, 2, 1), (2, 1, 1), (3, 1, 2)]
    assert [ex.summary()["exchange"] for ex in capture] == [1, 2, 3]
    # A reader fed record by record, forgetting what is done (the live view), agrees.
    live = reader.Assembler(keep=False)
    started: list[int] = []
    for record in capture.records:
        part = live.decode(record)
        if part is not None:
            live.add(part)
            if isinstance(part, reader.RequestHead):
                started.append(live.requests)
    assert started == [1, 2, 3]
    assert [ex.number for ex in live.open_exchanges()] == [1, 2, 3]


def test_bodies_and_headers(run_capture: Path) -> None:
    ping, create, _, wait, start = load(run_capture).exchanges
    assert bytes(create.request_body) == b'{"Image":"bb","Tty":false}'
    assert create.request_body_size == 26
    assert create.request_complete is True
    assert json.loads(create.response_body)["Id"] == CID
    assert create.reason == "Created"
    assert create.header("content-type") == "application/json"
    assert create.header("HOST", response=False) == "api.moby.localhost"
    assert create.header("X-Missing") is None
    assert create.path == "/v1.41/containers/create"
    assert json.loads(wait.response_body) == {"Error": None, "StatusCode": 0}
    assert wait.response_complete is True
    assert wait.response_sha256 is not None and len(wait.response_sha256) == 64
    assert ping.response_body_size == 0
    assert start.response_body == b""


def test_hijacked_stream_and_frames(run_capture: Path) -> None:
    attach = load(run_capture).exchanges[2]
    assert attach.hijacked == "tcp"
    assert attach.status == 101
    assert attach.informational == []  # 101 is the answer, not a preliminary
    assert attach.output("stdout") == b"hello\n"
    assert attach.output("stderr") == b"oops"
    assert attach.output("stdin") == b"hello\n"
    assert attach.frames == [("stdout", b"hello\n"), ("stderr", b"oops")]
    assert bytes(attach.stream["daemon"]).startswith(b"\x01\x00\x00\x00")


def test_unframed_hijack_counts_as_stdout(tmp_path: Path) -> None:
    path = write_capture(
        tmp_path / "tty.jsonl",
        [
            ("open", 1, 0),
            req(1, 1, "POST", "/v1.41/exec/abc/start", 0.1),
            BodyData(1, at(0.1), 1, CLIENT, b'{"Detach":false,"Tty":true}'),
            MessageEnd(1, at(0.1), 1, CLIENT),
            resp(1, 1, 101, 0.2, informational=True),
            Hijacked(1, at(0.2), 1, "tcp"),
            StreamData(1, at(0.3), 1, DAEMON, b"\x1b[1mbold\x1b[0m\r\n"),
            StreamData(1, at(0.4), 1, DAEMON, b"\xff"),
            Closed(1, at(0.5)),
        ],
    )
    [ex] = load(path).exchanges
    assert ex.output("stdout") == b"\x1b[1mbold\x1b[0m\r\n\xff"
    assert ex.output("stderr") == b""
    assert ex.output("stdin") == b""
    assert ex.summary()["stdout"] == "\x1b[1mbold\x1b[0m\r\n\ufffd"


def test_duration_runs_to_the_response_end_or_the_close(run_capture: Path) -> None:
    capture = load(run_capture)
    ping, create, attach, wait, _ = capture.exchanges
    assert ping.duration_s == pytest.approx(0.01)
    assert wait.duration_s == pytest.approx(0.31)  # a long poll: answered at exit
    assert attach.duration_s == pytest.approx(0.24)  # hijacked: until the connection closed
    assert create.response_started_mono == pytest.approx(0.05)
    conn2 = capture.connections[2]
    assert conn2.opened_mono == pytest.approx(0.06)
    assert conn2.closed_mono == pytest.approx(0.31)
    assert conn2.peer == {"pid": 99, "uid": 0, "gid": 0}
    assert capture.connections[1].exchanges == 3


def test_an_unanswered_exchange_has_no_duration(tmp_path: Path) -> None:
    path = write_capture(
        tmp_path / "open.jsonl", [("open", 1, 0), req(1, 1, "GET", "/v1.41/events", 0.1)]
    )
    [ex] = load(path).exchanges
    assert ex.status is None
    assert ex.duration_s is None
    assert ex.summary()["duration_s"] is None


def test_summary_keys(run_capture: Path) -> None:
    ping, _, attach, _, _ = load(run_capture).exchanges
    common = {
        "conn", "seq", "method", "target", "operation", "api_version", "status", "started",
        "duration_s", "request_body_size", "response_body_size", "hijacked",
        "exchange", "sent", "received",
    }  # fmt: skip
    assert set(ping.summary()) == common
    summary = attach.summary()
    assert set(summary) == common | {"stdout", "stderr", "stdin"}
    assert summary["stdout"] == "hello\n"
    assert summary["stderr"] == "oops"
    assert summary["stdin"] == "hello\n"
    assert summary["hijacked"] == "tcp"
    assert summary["operation"] == "ContainerAttach"
    json.dumps(summary)  # what `docktap show --json` prints must be JSON


def test_informational_heads_precede_the_status(tmp_path: Path) -> None:
    path = write_capture(
        tmp_path / "continue.jsonl",
        [
            ("open", 1, 0),
            req(1, 1, "POST", "/v1.41/build", 0.1),
            resp(1, 1, 100, 0.2, informational=True, reason="Continue"),
            BodyData(1, at(0.3), 1, CLIENT, b"tar"),
            MessageEnd(1, at(0.3), 1, CLIENT),
            resp(1, 1, 200, 0.4),
            BodyData(1, at(0.5), 1, DAEMON, b'{"stream":"Step 1/1"}\r\n'),
            MessageEnd(1, at(0.5), 1, DAEMON),
        ],
    )
    [ex] = load(path).exchanges
    assert ex.informational == [100]
    assert ex.status == 200
    assert ex.response_started_mono == pytest.approx(0.4)


def test_capped_body_keeps_the_full_size(tmp_path: Path) -> None:
    path = write_capture(
        tmp_path / "big.jsonl",
        [
            ("open", 1, 0),
            req(1, 1, "GET", "/v1.41/images/get?names=bb", 0.1),
            MessageEnd(1, at(0.1), 1, CLIENT),
            resp(1, 1, 200, 0.2),
            BodyData(1, at(0.3), 1, DAEMON, b"a" * 100),
            BodyData(1, at(0.3), 1, DAEMON, b"b" * 100),
            MessageEnd(1, at(0.4), 1, DAEMON),
        ],
        max_body=64,
    )
    validate_capture(path)
    [ex] = load(path).exchanges
    assert bytes(ex.response_body) == b"a" * 64
    assert ex.response_body_size == 200


def test_a_body_without_its_end_is_as_long_as_what_the_capture_holds(tmp_path: Path) -> None:
    # docktap killed during `docker logs -f`: no end record for the body, and none for the
    # upload in flight; every view's sizes count what was kept.
    path = write_capture(
        tmp_path / "killed.jsonl",
        [
            ("open", 1, 0),
            req(1, 1, "GET", "/v1.41/containers/c/logs?follow=1&stdout=1", 0.1),
            MessageEnd(1, at(0.1), 1, CLIENT),
            resp(1, 1, 200, 0.2),
            BodyData(1, at(0.3), 1, DAEMON, b"tick 0\n"),
            BodyData(1, at(0.4), 1, DAEMON, b"tick 1\n"),
            ("open", 2, 0.5),
            req(2, 1, "PUT", "/v1.41/containers/c/archive?path=/", 0.5),
            BodyData(2, at(0.6), 1, CLIENT, b"x" * 300),
        ],
        footer=False,
    )
    logs, upload = load(path).exchanges
    assert (logs.response_body_size, logs.bytes_received) == (14, 14)
    assert logs.summary()["received"] == 14
    assert (upload.request_body_size, upload.bytes_sent) == (300, 300)
    assert logs.response_complete is None and upload.request_complete is None


def test_protocol_errors_attach_to_their_exchange(tmp_path: Path) -> None:
    path = write_capture(
        tmp_path / "broken.jsonl",
        [
            ("open", 1, 0),
            req(1, 1, "GET", "/v1.41/info", 0.1),
            MessageEnd(1, at(0.1), 1, CLIENT),
            ProtocolError(1, at(0.2), 1, DAEMON, "illegal status line"),
            Unparsed(1, at(0.2), DAEMON, b"HTTP/1.1 2000 What\r\n"),
            Closed(1, at(0.3)),
        ],
    )
    validate_capture(path)
    capture = load(path)
    [ex] = capture.exchanges
    assert ex.errors == ["illegal status line"]
    assert ex.summary()["errors"] == ["illegal status line"]
    assert [e["kind"] for e in capture.errors] == ["protocol"]


# --- damaged files --------------------------------------------------------------------------


def test_cut_last_line_warns_and_the_rest_loads(run_capture: Path) -> None:
    text = run_capture.read_text(encoding="utf-8")
    without_footer = text[: text.rindex('{"type":"end-of-capture"')]
    last_start = without_footer[:-1].rindex("\n") + 1
    cut = without_footer[: last_start + 20]  # the close of conn 1, cut mid-record
    run_capture.write_text(cut, encoding="utf-8")
    with pytest.warns(CaptureWarning, match="cut off"):
        capture = load(run_capture)
    assert not capture.complete
    assert len(capture) == 5
    assert capture.records[-1]["type"] == "close"
    assert capture.records[-1]["conn"] == 3
    validate_capture(run_capture, allow_cut=True)
    with pytest.raises(AssertionError, match="no newline at the end"):
        validate_capture(run_capture)


def test_cut_inside_a_utf8_character(tmp_path: Path) -> None:
    path = write_capture(
        tmp_path / "utf8.jsonl",
        [
            ("open", 1, 0),
            req(1, 1, "GET", "/v1.41/images/create?fromImage=bb", 0.1),
            resp(1, 1, 200, 0.2),
            BodyData(1, at(0.3), 1, DAEMON, "progress \u2501\u2501\u2501".encode()),
        ],
        footer=False,
    )
    data = path.read_bytes()
    path.write_bytes(data[: data.index("\u2501".encode()) + 1])
    with pytest.warns(CaptureWarning):
        capture = load(path)
    assert [r["type"] for r in capture.records] == ["capture", "open", "request", "response"]


def test_a_capture_killed_before_its_footer_loads_without_warning(tmp_path: Path) -> None:
    path = write_capture(tmp_path / "killed.jsonl", docker_run_events()[:10], footer=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        capture = load(path)
    assert not capture.complete
    assert [ex.operation for ex in capture] == ["SystemPingHead", "ContainerCreate"]


def test_line_separators_inside_strings_are_not_line_ends(tmp_path: Path) -> None:
    text = "a\u2028b\u2029c\x85d\x1ce"
    path = write_capture(
        tmp_path / "seps.jsonl",
        [
            ("open", 1, 0),
            # Not a create: its body would be held back and, not being JSON, masked whole.
            req(1, 1, "POST", "/v1.41/images/load", 0.1),
            BodyData(1, at(0.1), 1, CLIENT, text.encode()),
            MessageEnd(1, at(0.1), 1, CLIENT),
        ],
    )
    [ex] = load(path).exchanges
    assert ex.request_body.decode() == text


def test_damaged_middle_line_is_an_error(run_capture: Path) -> None:
    lines = run_capture.read_text(encoding="utf-8").split("\n")
    lines[6] = lines[6][:-5]
    run_capture.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(CaptureError, match=r":7: not a JSON record"):
        load(run_capture)


def test_invalid_utf8_in_the_middle_is_an_error(run_capture: Path) -> None:
    lines = run_capture.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b'"type"', b'"ty\xffpe"')
    run_capture.write_bytes(b"\n".join(lines))
    with pytest.raises(CaptureError, match=r":4: not UTF-8"):
        load(run_capture)


def test_a_line_that_is_no_record_is_an_error() -> None:
    header = RecordEncoder(WALL, MONO).header("unix:///x", None, "0.1.0")
    with pytest.raises(CaptureError, match=r":2: not a capture record"):
        loads(dumps(header) + "\n[1, 2]\n")
    with pytest.raises(CaptureError, match=r":2: not a capture record"):
        loads(dumps(header) + '\n{"conn": 1}\n')


def test_blank_lines_are_skipped() -> None:
    header = RecordEncoder(WALL, MONO).header("unix:///x", None, "0.1.0")
    capture = loads("\n" + dumps(header) + "\n\n")
    assert capture.header == header
    assert capture.exchanges == []


def _header(**changes: object) -> str:
    record: Record = RecordEncoder(WALL, MONO).header("unix:///x", None, "0.1.0")
    record.update(changes)
    return dumps(record) + "\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ('{"type":"open","conn":1,"peer":null,"t":1,"mono":0}\n', "no capture header"),
        (_header(format="other-tool"), "no capture header"),
        (_header(version=3), "version 3"),
        (_header(version="1"), "version 1"),
        ("hello\n", r":1: not a JSON record"),
    ],
)
def test_not_a_v1_capture(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CaptureError, match=message):
        load(path)


def test_a_version_1_capture_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    path.write_text(_header(version=1), encoding="utf-8")
    assert load(path).header["version"] == 1


def test_capture_error_is_a_value_error() -> None:
    assert issubclass(CaptureError, ValueError)
    assert docktap.CaptureError is CaptureError


def test_unknown_record_types_and_fields_are_ignored() -> None:
    header = RecordEncoder(WALL, MONO).header("unix:///x", None, "0.1.0")
    request = {
        "type": "request", "conn": 1, "seq": 1, "dir": "client", "method": "GET",
        "target": "/_ping", "http_version": "1.1", "headers": [], "operation": "SystemPing",
        "api_version": None, "t": WALL, "mono": 0.0, "future": True,
    }  # fmt: skip
    later = {"type": "annotation", "conn": 1, "seq": 1, "t": WALL, "mono": 0.1}
    capture = loads("".join(dumps(r) + "\n" for r in (header, request, later)))
    assert [ex.operation for ex in capture] == ["SystemPing"]


# --- a real capture kept as a golden file ---------------------------------------------------


def test_golden_docker_run_capture(tmp_path: Path) -> None:
    validate_capture(GOLDEN)
    copy = tmp_path / "golden.jsonl"
    shutil.copy(GOLDEN, copy)
    capture = docktap.load(copy)
    assert capture.complete
    assert capture.header["command"][:2] == ["docker", "run"]
    assert [ex.operation for ex in capture] == [
        "SystemPingHead",
        "ContainerCreate",
        "ContainerAttach",
        "ContainerWait",
        "ContainerStart",
    ]
    by_op = {ex.operation: ex for ex in capture}
    attach = by_op["ContainerAttach"]
    assert attach.status == 101
    assert attach.reason == "UPGRADED"
    assert attach.hijacked == "tcp"
    assert attach.output("stdout") == b"out\n"
    assert attach.output("stderr") == b"err\n"
    assert attach.output("stdin") == b""
    wait = by_op["ContainerWait"]
    assert wait.status == 200
    assert json.loads(wait.response_body) == {"Error": None, "StatusCode": 3}
    assert by_op["ContainerStart"].status == 204
    create = by_op["ContainerCreate"]
    assert create.status == 201
    assert json.loads(create.request_body)["Cmd"] == ["sh", "-c", "echo out; echo err >&2; exit 3"]
    assert create.request_body_size == len(create.request_body)
    assert sorted(capture.connections) == [1, 2, 3]
    assert all(c.peer is not None and "pid" in c.peer for c in capture.connections.values())
    assert capture.errors == []


def test_golden_records_round_trip_through_dumps() -> None:
    """The encoder's own serialization reproduces the file byte for byte."""
    text = GOLDEN.read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.splitlines()]
    assert "".join(dumps(r) + "\n" for r in records) == text


# --- the parts of an exchange ---------------------------------------------------------------


def test_every_piece_is_kept_with_its_time(run_capture: Path) -> None:
    capture = load(run_capture)
    attach = capture.exchanges[2]
    kinds = [(type(p).__name__, getattr(p, "direction", None)) for p in attach.parts]
    assert kinds == [
        ("RequestHead", None),
        ("BodyEnd", CLIENT),
        ("ResponseHead", None),
        ("Hijack", None),
        ("StreamChunk", CLIENT),
        ("HalfClose", CLIENT),
        ("StreamChunk", DAEMON),
        ("FrameChunk", DAEMON),
        ("StreamChunk", DAEMON),
        ("FrameChunk", DAEMON),
        ("HalfClose", DAEMON),
        ("Close", None),
    ]
    indices = [p.index for p in attach.parts]
    assert indices == sorted(set(indices))
    for part in attach.parts:
        record = capture.records[part.index]
        assert record["mono"] == part.mono
        assert record["conn"] == attach.conn
        assert record.get("seq", attach.seq) == attach.seq
    assert attach.parts[0] is attach.request
    assert attach.request.http_version == "1.1"
    response = attach.parts[2]
    assert isinstance(response, reader.ResponseHead)
    assert response is attach.response
    assert (response.status, response.http_version, response.preliminary) == (101, "1.1", False)
    frames = [p for p in attach.parts if isinstance(p, reader.FrameChunk)]
    assert [(f.stream, f.size, f.data) for f in frames] == [
        ("stdout", 6, b"hello\n"),
        ("stderr", 4, b"oops"),
    ]
    assert [p.mono for p in frames] == pytest.approx([0.2, 0.21])
    stdin = next(p for p in attach.parts if isinstance(p, reader.StreamChunk))
    assert (stdin.size, stdin.data) == (6, b"hello\n")
    assert stdin.mono == pytest.approx(0.13)


def test_a_connection_closing_reaches_only_the_exchanges_in_flight(run_capture: Path) -> None:
    ping, create, attach, wait, start = load(run_capture).exchanges
    assert isinstance(attach.parts[-1], reader.Close)
    for ex in (ping, create, wait, start):  # each ended before its connection did
        assert not any(isinstance(p, reader.Close | reader.HalfClose) for p in ex.parts), (
            ex.operation
        )
    assert wait.request_ended_mono == pytest.approx(0.09)
    assert wait.ended_mono == pytest.approx(0.4)


def test_informational_heads_are_parts_and_only_the_answer_is_the_response(
    tmp_path: Path,
) -> None:
    path = write_capture(
        tmp_path / "continue.jsonl",
        [
            ("open", 1, 0),
            req(1, 1, "POST", "/v1.41/build", 0.1),
            resp(1, 1, 100, 0.2, informational=True, reason="Continue"),
            resp(1, 1, 200, 0.4),
        ],
    )
    [ex] = load(path).exchanges
    heads = [p for p in ex.parts if isinstance(p, reader.ResponseHead)]
    assert [(h.status, h.informational, h.preliminary) for h in heads] == [
        (100, True, True),
        (200, False, False),
    ]
    assert ex.response is heads[1]
    assert ex.informational == [100]
    assert ex.response_started_mono == pytest.approx(0.4)


def test_every_record_of_an_exchange_is_one_of_its_parts() -> None:
    for path in sorted(CAPTURES.glob("*.jsonl")):
        capture = load(path)
        for ex in capture.exchanges:
            expected = {
                i
                for i, r in enumerate(capture.records)
                if (r.get("conn"), r.get("seq")) == (ex.conn, ex.seq) and r["type"] != "unparsed"
            }
            mine = {p.index for p in ex.parts if not isinstance(p, reader.Close | reader.HalfClose)}
            assert mine == expected, (path.name, ex.operation)
            for part in ex.parts:
                assert decode(capture.records[part.index], part.index) == part


def test_chunks_decode_what_the_capture_holds(tmp_path: Path) -> None:
    path = write_capture(
        tmp_path / "binary.jsonl",
        [
            ("open", 1, 0),
            req(1, 1, "GET", "/v1.41/containers/c1/export", 0.1),
            MessageEnd(1, at(0.1), 1, CLIENT),
            resp(1, 1, 200, 0.2),
            BodyData(1, at(0.3), 1, DAEMON, b"\xff\xfe tar"),
            BodyData(1, at(0.4), 1, DAEMON, b"text"),
            MessageEnd(1, at(0.5), 1, DAEMON),
        ],
    )
    [ex] = load(path).exchanges
    binary, text = (p for p in ex.parts if isinstance(p, reader.BodyChunk))
    assert (binary.text, binary.data, binary.size) == (None, b"\xff\xfe tar", 6)
    assert binary.b64 is not None
    assert (text.text, text.b64, text.data) == ("text", None, b"text")
    assert bytes(ex.response_body) == binary.data + text.data


def test_the_identity_of_a_request(run_capture: Path) -> None:
    ping, create, attach, _, _ = load(run_capture).exchanges
    assert ping.identity == Identity("SystemPingHead", None)
    assert create.identity == Identity("ContainerCreate", "1.41")
    assert attach.identity == Identity("ContainerAttach", "1.41", Subject("containers", CID))
    assert attach.identity is attach.request.identity  # worked out once, then kept


def test_the_recorded_operation_wins_over_the_table() -> None:
    header = RecordEncoder(WALL, MONO).header("unix:///x", None, "0.1.0")
    request = {
        "type": "request", "conn": 1, "seq": 1, "dir": "client", "method": "POST",
        "target": "/v1.99/containers/c1/frobnicate", "http_version": "1.1", "headers": [],
        "operation": "ContainerFrobnicate", "api_version": "1.99", "t": WALL, "mono": 0.0,
    }  # fmt: skip
    [ex] = loads("".join(dumps(r) + "\n" for r in (header, request)))
    assert ex.operation == "ContainerFrobnicate"
    assert ex.identity == Identity("ContainerFrobnicate", "1.99", Subject("containers", "c1"))


@pytest.mark.parametrize(
    "record",
    [
        {"type": "capture", "format": "docktap-capture", "version": 1},
        {"type": "annotation", "conn": 1, "seq": 1},
        {"type": "request", "conn": None, "seq": 1, "method": "GET", "target": "/"},
    ],
)
def test_records_that_are_no_part(record: Record) -> None:
    assert decode({"t": WALL, "mono": 0.0, **record}, 3) is None


def test_unparsed_bytes_are_a_part_of_their_connection_on_no_exchange() -> None:
    record = {"type": "unparsed", "conn": 1, "dir": "daemon", "size": 1, "text": "x"}
    part = decode({"t": WALL, "mono": 2.0, **record}, 3)
    assert part == reader.UnparsedChunk(3, 2.0, 1, DAEMON, 1)
    assembler = reader.Assembler()
    assert assembler.add(part) == []
    assert assembler.exchanges == {}
    [incident] = assembler.incidents  # no error came first: the bytes are the incident
    assert (incident.kind, incident.conn, incident.mono) == ("unparsed", 1, 2.0)
    assert (incident.bytes_sent, incident.bytes_received) == (0, 1)


def test_an_error_without_a_connection_is_a_part() -> None:
    error = {"type": "error", "conn": None, "kind": "upstream", "message": "refused", "mono": 1.0}
    part = decode(error, 7)
    assert part == reader.Failure(7, 1.0, None, None, "upstream", "refused")
    assert reader.Assembler().add(part) == []


def test_a_following_assembler_is_handed_each_incident_once_it_is_settled() -> None:
    """At once with no connection; else when a later incident on its connection takes the
    bytes that follow, or when the connection closes; the rest are still open at the end."""
    settled: list[tuple[str, int | None, int]] = []
    assembler = reader.Assembler(
        keep=False, settled=lambda i: settled.append((i.message, i.conn, i.bytes_received))
    )
    records: list[Record] = [
        {"type": "error", "conn": None, "kind": "upstream", "message": "nowhere"},
        {"type": "error", "conn": 1, "kind": "protocol", "message": "first"},
        {"type": "unparsed", "conn": 1, "dir": "daemon", "size": 3, "sha256": "0" * 64},
        {"type": "error", "conn": 1, "kind": "capture", "message": "second"},
        {"type": "unparsed", "conn": 1, "dir": "daemon", "size": 5, "sha256": "0" * 64},
        {"type": "unparsed", "conn": 2, "dir": "daemon", "size": 7, "sha256": "0" * 64},
        {"type": "close", "conn": 1},
    ]
    expected = [
        [("nowhere", None, 0)],
        [],
        [],
        [("first", 1, 3)],  # superseded: its bytes are all counted
        [],
        [],
        [("second", 1, 5)],  # its connection closed
    ]
    for mono, (record, then) in enumerate(zip(records, expected, strict=True)):
        assembler.feed({"t": WALL + mono, "mono": float(mono), **record})
        assert settled == then, record
        settled.clear()
    [still] = assembler.open_incidents()  # connection 2 never closed
    assert (still.kind, still.conn, still.bytes_received) == ("unparsed", 2, 7)


# --- payloads left in the file ----------------------------------------------------------------

CAPTURES = Path(__file__).resolve().parent.parent / "captures"


def _payloads(capture: Capture) -> list[reader.BodyChunk | reader.StreamChunk | reader.FrameChunk]:
    kinds = (reader.BodyChunk, reader.StreamChunk, reader.FrameChunk)
    return [p for ex in capture.exchanges for p in ex.parts if isinstance(p, kinds)]


@pytest.mark.parametrize("name", ["docker-py.jsonl", "cp.jsonl", "run-stdin.jsonl"])
def test_large_payloads_the_daemon_sent_can_be_left_in_the_file(name: str) -> None:
    path = CAPTURES / name
    whole, leaving = load(path), load(path, leave_over=1024)
    assert [ex.target for ex in leaving] == [ex.target for ex in whole]
    with open(path, "rb") as handle:
        for kept, part in zip(_payloads(whole), _payloads(leaving), strict=True):
            assert (part.index, part.size, part.direction) == (
                kept.index,
                kept.size,
                kept.direction,
            )
            leave = part.direction is Direction.DAEMON and part.size > 1024
            assert (part.left is not None) is leave
            if part.left is None:
                assert part.data == kept.data
            else:
                assert part.data == b"" and part.left.path == str(path)
                assert reader.read_left(part.left, handle) == kept.data
    # What clients sent is kept whole (these bodies are short): requests are compared with it.
    assert [ex.request_body for ex in leaving] == [ex.request_body for ex in whole]
    assert [r for r in leaving.records if "text" in r or "b64" in r] != []


def test_a_request_body_is_held_only_as_far_as_the_replay_compares_it(tmp_path: Path) -> None:
    """Past HELD_BODY_LIMIT a request's body is compared by its digest, so the loader leaves
    the rest in the file: a recorded upload (`docker load`) costs it that much, not its size.
    The replay then finds the recording by the digest of the same bytes sent again."""
    piece = bytes(range(256)) * 1024  # 256 KiB, binary: written as base64
    count = 64  # 16 MiB
    events: list[Event | tuple[str, int, float]] = [
        ("open", 1, 0),
        req(1, 1, "POST", "/v1.41/images/load?quiet=1", 0.1),
        *(BodyData(1, at(0.2), 1, CLIENT, piece) for _ in range(count)),
        MessageEnd(1, at(0.3), 1, CLIENT),
        resp(1, 1, 200, 0.4),
        MessageEnd(1, at(0.5), 1, DAEMON),
    ]
    path = write_capture(tmp_path / "load.jsonl", events, max_body=0)
    tracemalloc.start()
    try:
        loaded = load(path, leave_over=1024)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Held whole, loading it took about 38 MiB.
    assert peak < 8 * HELD_BODY_LIMIT, f"loading held {peak >> 20} MiB of a 16 MiB upload"
    [leaving], [whole] = loaded.exchanges, load(path).exchanges
    assert leaving.request_body_size == whole.request_body_size == count * len(piece)
    assert leaving.request_sha256 == whole.request_sha256
    assert bytes(leaving.request_body) == bytes(whole.request_body)[:HELD_BODY_LIMIT]
    sent = [p for p in leaving.parts if isinstance(p, reader.BodyChunk) and p.direction is CLIENT]
    assert [p.left is None for p in sent] == [True] * 4 + [False] * (count - 4)
    with open(path, "rb") as handle:
        again = b"".join(reader.read_left(p.left, handle) if p.left else p.data for p in sent)
    assert again == bytes(whole.request_body)
    recorded = recorded_request(leaving)
    assert recorded.body is None and recorded.sha256 == hashlib.sha256(again).hexdigest()
    store = build_store(scripts(loaded, "load"))
    incoming = Request("POST", "/v1.41/images/load?quiet=1", None, recorded.sha256)
    assert isinstance(store.match(incoming), Play)


def test_a_capture_left_in_the_file_warns_of_a_cut_last_line(run_capture: Path) -> None:
    text = run_capture.read_text(encoding="utf-8")
    run_capture.write_text(text[: text.rindex('{"type":"end-of-capture"') + 20], encoding="utf-8")
    with pytest.warns(CaptureWarning, match="cut off"):
        capture = load(run_capture, leave_over=0)
    assert len(capture) == 5 and not capture.complete


def test_a_payload_left_in_a_file_that_changed_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    shutil.copy(CAPTURES / "cp.jsonl", path)
    (left,) = [p.left for p in _payloads(load(path, leave_over=1024)) if p.left is not None]
    path.write_bytes(b"\n" * left.offset + b'{"type":"close","conn":1}\n')
    with open(path, "rb") as handle, pytest.raises(CaptureError, match="changed since"):
        reader.read_left(left, handle)


def test_a_payload_is_left_whatever_its_text_holds(tmp_path: Path) -> None:
    """Quotes, backslashes and what looks like the record's own keys, in text and in bytes."""
    tricky = b'a "quoted", \\ "t": 1, ",\\"t\\":" and ","t":"\n' * 100
    binary = b"\xff\x00" + tricky
    path = write_capture(
        tmp_path / "tricky.jsonl",
        [
            ("open", 1, 0),
            req(1, 1, "GET", "/v1.41/containers/x/logs?stdout=1", 0.1),
            resp(1, 1, 200, 0.2),
            BodyData(1, at(0.3), 1, DAEMON, tricky),
            BodyData(1, at(0.4), 1, DAEMON, binary),
            BodyData(1, at(0.5), 1, DAEMON, b"short"),
            MessageEnd(1, at(0.6), 1, DAEMON),
        ],
    )
    assert '\\",\\"t\\":' in path.read_text()  # the encoder escaped what looks like a key
    unstamped = tmp_path / "unstamped.jsonl"  # laid out otherwise: read whole, left all the same
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    unstamped.write_bytes(b"".join(orjson.dumps({"t": r.pop("t"), **r}) + b"\n" for r in lines))
    for written in (path, unstamped):
        _left_as_loaded(written, tricky + binary + b"short")


def _left_as_loaded(path: Path, body: bytes) -> None:
    [whole], [leaving] = load(path).exchanges, load(path, leave_over=64).exchanges
    chunks = [p for p in leaving.parts if isinstance(p, reader.BodyChunk)]
    assert [p.left is not None for p in chunks] == [True, True, False]
    with open(path, "rb") as handle:
        served = b"".join(reader.read_left(p.left, handle) if p.left else p.data for p in chunks)
    assert served == bytes(whole.response_body) == body
    assert (leaving.response_body_size, leaving.response_sha256) == (
        whole.response_body_size,
        whole.response_sha256,
    )


def test_a_decision_written_before_its_request_still_reaches_it() -> None:
    # Captures written before the recorder kept a pipelined request's decision for after its
    # record hold it first: the reader keeps it until its request comes, and only until the
    # connection closes.
    encoder = RecordEncoder(WALL, MONO)
    records = [encoder.header("unix:///x", None, "0.1.0"), encoder.opened(1, None, MONO)]

    def request(seq: int) -> Record:
        return {
            "type": "request", "conn": 1, "seq": seq, "dir": "client", "method": "POST",
            "target": "/containers/c/kill", "http_version": "1.1", "headers": [],
            "operation": "ContainerKill", "api_version": None, "t": WALL, "mono": 0.0,
        }  # fmt: skip

    def decision(seq: int, allowed: bool) -> Record:
        return encoder.decision(1, seq, allowed, True, "ContainerKill", "why", "msg", MONO)

    records += [request(1), decision(1, True), decision(2, False), decision(3, False)]
    records += [request(2), encoder.encode(Closed(1, MONO))[0]]
    capture = loads("".join(dumps(r) + "\n" for r in records))
    first, second = capture.exchanges
    assert [d.allowed for d in first.decisions] == [True]
    assert [d.allowed for d in second.decisions] == [False]
    assert second.parts[0] is second.request  # the request first, as the record order is now
