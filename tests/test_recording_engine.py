"""The recording engine: tap calls in, capture records out, one write per flush."""

from __future__ import annotations

import io
import json

from docktap import __version__
from docktap.capture.format import Record, RecordEncoder
from docktap.capture.reader import loads
from docktap.capture.writer import CaptureWriter
from docktap.events import Direction
from docktap.recording.engine import Recorder

REQUEST = b"GET /v1.41/containers/json HTTP/1.1\r\nHost: docker\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]"


class _Counting(io.StringIO):
    """A capture file that counts its writes and keeps what it got once closed."""

    writes = 0
    text = ""

    def write(self, text: str) -> int:
        self.writes += 1
        self.text += text
        return super().write(text)


def _engine() -> tuple[Recorder, _Counting, list[list[Record]]]:
    out = _Counting()
    batches: list[list[Record]] = []
    recorder = Recorder(CaptureWriter(out), RecordEncoder(1_700_000_000.0, 10.0), [batches.append])
    return recorder, out, batches


def _types(text: str) -> list[str]:
    return [json.loads(line)["type"] for line in text.splitlines()]


def test_tap_calls_become_a_complete_capture() -> None:
    recorder, out, _ = _engine()
    recorder.start("unix:///var/run/docker.sock", ["docker", "ps"])
    recorder.opened(1, {"pid": 7, "uid": 0, "gid": 0, "exe": None}, 10.5)
    recorder.data(1, Direction.CLIENT, REQUEST, 10.6)
    recorder.data(1, Direction.DAEMON, RESPONSE, 10.7)
    recorder.eof(1, Direction.CLIENT, 10.8)
    recorder.closed(1, 10.9)
    recorder.close(11.0)
    assert _types(out.text) == [
        "capture",
        "open",
        "request",
        "end",
        "response",
        "body",
        "end",
        "halfclose",
        "close",
        "end-of-capture",
    ]
    capture = loads(out.text)
    assert capture.complete
    assert capture.header["docktap"] == __version__
    assert capture.header["command"] == ["docker", "ps"]
    assert capture.records[-1]["records"] == len(capture.records)
    (ex,) = capture.exchanges
    assert (ex.operation, ex.status, bytes(ex.response_body)) == ("ContainerList", 200, b"[]")
    peer = capture.connections[1].peer
    assert peer is not None and peer["pid"] == 7
    assert capture.records[1]["mono"] == 0.5  # times relative to the start


def test_records_wait_for_flush_and_go_out_in_one_write_to_every_listener() -> None:
    recorder, out, batches = _engine()
    recorder.start("unix:///d", None)
    assert (out.writes, len(batches)) == (1, 1)  # the header is out at once
    recorder.opened(1, None, 10.1)
    recorder.data(1, Direction.CLIENT, REQUEST, 10.2)
    assert (out.writes, len(batches)) == (1, 1)
    recorder.flush()
    assert (out.writes, len(batches)) == (2, 2)
    assert [r["type"] for r in batches[1]] == ["open", "request", "end"]
    recorder.flush()  # nothing pending: no write
    assert out.writes == 2


def test_an_upstream_failure_is_an_error_record() -> None:
    recorder, out, _ = _engine()
    recorder.start("unix:///d", None)
    recorder.opened(1, None, 10.1)
    recorder.upstream_failed(1, "docktap: cannot reach the Docker daemon", 10.2)
    recorder.close(10.3)
    (error,) = loads(out.text).errors
    assert (error["kind"], error["conn"]) == ("upstream", 1)


def test_a_close_that_is_not_clean_leaves_no_footer_and_closing_twice_writes_nothing() -> None:
    recorder, out, _ = _engine()
    recorder.start("unix:///d", None)
    recorder.opened(1, None, 10.1)
    recorder.close(0.0, clean=False)
    recorder.close(12.0)
    assert _types(out.text) == ["capture", "open"]
    assert not loads(out.text).complete


PING = b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"
KILL = b"POST /v1.41/containers/c/kill HTTP/1.1\r\nHost: docker\r\n\r\n"
PONG = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"
FORBIDDEN = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\n{}"


def _decision(seq: int | None, allowed: bool) -> dict[str, object]:
    return {"seq": seq, "allowed": allowed, "enforced": True, "operation": None}


def _order(text: str) -> list[tuple[str, object]]:
    records = [json.loads(line) for line in text.splitlines()]
    return [(r["type"], r.get("seq")) for r in records if r["type"] not in ("capture", "open")]


def test_a_decision_is_written_after_its_requests_record() -> None:
    # Two requests pipelined, the second denied: the guard decides both as they arrive, the
    # observer reads the second only once the first exchange is over. The second's decision
    # came before its request's record, and readers dropped it.
    recorder, out, _ = _engine()
    recorder.start("unix:///d", None)
    recorder.opened(1, None, 10.0)
    recorder.data(1, Direction.CLIENT, PING + KILL, 10.1)
    recorder.decided(1, _decision(1, True), 10.1)
    recorder.decided(1, _decision(2, False), 10.1)
    recorder.decided(1, _decision(None, False), 10.1)  # bytes after them that were no request
    recorder.data(1, Direction.DAEMON, PONG, 10.2)
    recorder.data(1, Direction.DAEMON, FORBIDDEN, 10.3)
    recorder.closed(1, 10.4)
    recorder.close(10.5)
    assert _order(out.text) == [
        ("request", 1),
        ("end", 1),
        ("decision", 1),
        ("response", 1),
        ("body", 1),
        ("end", 1),
        ("request", 2),
        ("decision", 2),
        ("decision", None),
        ("end", 2),
        ("response", 2),
        ("body", 2),
        ("end", 2),
        ("close", None),
        ("end-of-capture", None),
    ]
    (_, killed) = loads(out.text).exchanges
    assert [d.allowed for d in killed.decisions] == [False]


def test_a_decision_on_a_request_never_read_is_written_before_the_close() -> None:
    recorder, out, _ = _engine()
    recorder.start("unix:///d", None)
    recorder.opened(1, None, 10.0)
    recorder.data(1, Direction.CLIENT, PING + KILL, 10.1)
    recorder.decided(1, _decision(1, True), 10.1)
    recorder.decided(1, _decision(2, False), 10.1)
    recorder.closed(1, 10.2)  # the client went before the daemon answered the first
    recorder.close(10.3)
    order = _order(out.text)
    assert order.index(("decision", 2)) == order.index(("close", None)) - 1
    assert order.count(("decision", 2)) == 1
