"""Tests for the capture encoder: observer events in, v1 records out."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from capture_schema import validate_capture
from hypothesis import given
from hypothesis import strategies as st

from docktap.capture.format import (
    DEFAULT_MAX_BODY,
    FORMAT,
    VERSION,
    Record,
    RecordEncoder,
    decode_bytes,
    dumps,
    encode_bytes,
)
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
from docktap.redact import Redactor

WALL = 1_700_000_000.0
MONO = 500.0
CLIENT = Direction.CLIENT
DAEMON = Direction.DAEMON
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def encoder(max_body: int = DEFAULT_MAX_BODY) -> RecordEncoder:
    return RecordEncoder(WALL, MONO, max_body)


def feed(enc: RecordEncoder, *events: Event) -> list[Record]:
    out: list[Record] = []
    for event in events:
        out.extend(enc.encode(event))
    return out


def as_capture(enc: RecordEncoder, records: list[Record]) -> list[Record]:
    """The records behind a header and, as docktap closes a capture, a footer."""
    body = [enc.header("unix:///var/run/docker.sock", ["docker", "ps"], "0.1.0"), *records]
    return [*body, enc.footer(MONO + 100, len(body) + 1)]


def request(
    conn: int = 1, seq: int = 1, method: str = "GET", target: str = "/v1.41/info", t: float = 1
) -> RequestHead:
    """A request head; `t` counts from the start of the capture."""
    t = MONO + t
    return RequestHead(conn, t, seq, method, target, "1.1", (("Host", "api.moby.localhost"),))


def of_type(records: list[Record], kind: str) -> list[Record]:
    return [r for r in records if r["type"] == kind]


# --- header, footer and timestamps ----------------------------------------------------------


def test_header_describes_the_capture() -> None:
    enc = encoder(max_body=4096)
    header = enc.header("unix:///run/docker.sock", ["docker", "run", "bb"], "9.9.9")
    assert header == {
        "type": "capture",
        "format": FORMAT,
        "version": VERSION,
        "docktap": "9.9.9",
        "started": WALL,
        "upstream": "unix:///run/docker.sock",
        "command": ["docker", "run", "bb"],
        "max_body": 4096,
        "redact": True,
        "redact_env": [],
        "t": WALL,
        "mono": 0.0,
    }
    assert FORMAT == "docktap-capture"
    assert VERSION == 2
    assert DEFAULT_MAX_BODY == 1024 * 1024
    validate_capture([header])


def test_header_carries_what_replay_needs_to_mask_requests_alike() -> None:
    masked = RecordEncoder(WALL, MONO, redactor=Redactor(["DB_", "^API$"])).header("u", None, "1")
    assert (masked["redact"], masked["redact_env"]) == (True, ["DB_", "^API$"])
    plain = RecordEncoder(WALL, MONO, redactor=Redactor(["DB_"]), redact=False).header(
        "u", None, "1"
    )
    assert (plain["redact"], plain["redact_env"]) == (False, [])
    validate_capture([masked])
    validate_capture([plain])


def test_proxy_header_has_no_command() -> None:
    enc = encoder()
    header = enc.header("tcp://127.0.0.1:2375", None, "0.1.0")
    assert header["command"] is None
    validate_capture([header])


def test_timestamps_are_anchored_wall_and_mono() -> None:
    enc = encoder()
    [record] = enc.encode(request(t=2.5))
    assert record["mono"] == 2.5
    assert record["t"] == WALL + 2.5
    # Rounded to the microsecond: a few hundred nanoseconds of float noise do not show.
    [record] = enc.encode(request(seq=2, t=0.1234564))
    assert record["mono"] == 0.123456
    assert record["t"] == round(WALL + 0.1234564, 6)
    opened = enc.opened(3, {"pid": 10, "uid": 0, "gid": 0}, MONO + 7)
    assert (opened["t"], opened["mono"]) == (WALL + 7, 7.0)
    footer = enc.footer(MONO + 9, 12)
    assert footer == {"type": "end-of-capture", "records": 12, "t": WALL + 9, "mono": 9.0}


def test_every_event_kind_gives_schema_valid_records() -> None:
    enc = encoder()
    records = [
        enc.opened(1, {"pid": 4242, "uid": 1000, "gid": 1000}, MONO + 0.5),
        enc.opened(2, None, MONO + 0.6),
        *feed(
            enc,
            request(method="POST", target="/v1.41/containers/abc/attach?stream=1&stdout=1"),
            MessageEnd(1, MONO + 1, 1, CLIENT),
            ResponseHead(1, MONO + 1.1, 1, 101, "UPGRADED", "1.1", (("Upgrade", "tcp"),), True),
            Hijacked(1, MONO + 1.1, 1, "tcp"),
            StreamData(1, MONO + 1.2, 1, DAEMON, b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"),
            Frame(1, MONO + 1.2, 1, DAEMON, Stream.STDOUT, b"hi\n"),
            Frame(1, MONO + 1.2, 1, DAEMON, Stream.SYSTEM_ERROR, b"\xff\xfe"),
            StreamData(1, MONO + 1.3, 1, CLIENT, b"input\n"),
            HalfClosed(1, MONO + 1.4, CLIENT),
            Closed(1, MONO + 1.5),
            request(conn=2, t=2),
            ProtocolError(2, MONO + 2.1, 1, DAEMON, "bad status line"),
            Unparsed(2, MONO + 2.1, DAEMON, b"HTTP/9 nonsense\r\n"),
            ProtocolError(2, MONO + 2.2, None, CLIENT, "garbage before any request"),
            Closed(2, MONO + 2.3),
        ),
        enc.failure(3, "upstream", "connection refused", MONO + 3),
        enc.failure(None, "capture", "could not record", MONO + 3),
    ]
    kinds = {r["type"] for r in records}
    assert kinds == {
        "open", "request", "end", "response", "hijack", "stream", "frame", "halfclose",
        "close", "error", "unparsed",
    }  # fmt: skip
    validate_capture(as_capture(enc, records))
    frames = of_type(records, "frame")
    assert [f["stream"] for f in frames] == ["stdout", "system-error"]
    errors = of_type(records, "error")
    assert [(e["kind"], e.get("seq")) for e in errors] == [
        ("protocol", 1),
        ("protocol", None),
        ("upstream", None),
        ("capture", None),
    ]
    assert "seq" not in of_type(records, "unparsed")[0]
    # One line each: dumps never emits a raw newline, whatever the bytes.
    assert all("\n" not in dumps(r) for r in records)


# --- request and response heads -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "operation", "api_version"),
    [
        ("POST", "/v1.41/containers/create?name=x", "ContainerCreate", "1.41"),
        ("HEAD", "/_ping", "SystemPingHead", None),
        ("GET", "/v1.24/containers/json?all=1", "ContainerList", "1.24"),
        ("GET", "/no/such/endpoint", None, None),
    ],
)
def test_request_record_names_the_operation(
    method: str, target: str, operation: str | None, api_version: str | None
) -> None:
    enc = encoder()
    head = RequestHead(7, MONO + 1, 3, method, target, "1.1", (("Host", "docker"), ("A", "b")))
    [record] = enc.encode(head)
    assert record == {
        "type": "request",
        "conn": 7,
        "seq": 3,
        "dir": "client",
        "method": method,
        "target": target,
        "http_version": "1.1",
        "headers": [["Host", "docker"], ["A", "b"]],
        "operation": operation,
        "api_version": api_version,
        "t": WALL + 1,
        "mono": 1.0,
    }
    validate_capture(as_capture(enc, [record]))


def test_response_records_keep_informational_heads() -> None:
    enc = encoder()
    records = feed(
        enc,
        ResponseHead(1, MONO + 1, 1, 100, "Continue", "1.1", (), True),
        ResponseHead(1, MONO + 2, 1, 404, "Not Found", "1.1", (("Content-Length", "0"),), False),
    )
    assert [(r["status"], r["informational"], r["dir"]) for r in records] == [
        (100, True, "daemon"),
        (404, False, "daemon"),
    ]
    assert records[1]["headers"] == [["Content-Length", "0"]]
    assert records[1]["reason"] == "Not Found"


def test_head_records_mask_credentials() -> None:
    enc = RecordEncoder(WALL, MONO, redactor=Redactor(key=b"k"))
    auth = base64.urlsafe_b64encode(json.dumps({"username": "u", "password": "pw"}).encode())
    head = RequestHead(
        1,
        MONO,
        1,
        "POST",
        "/v1.41/images/create?fromImage=x",
        "1.1",
        (("X-Registry-Auth", auth.decode()), ("Authorization", "Basic dTpwdw==")),
    )
    [record] = enc.encode(head)
    line = dumps(record)
    assert "dTpwdw" not in line
    assert auth.decode() not in line
    assert record["headers"][1] == ["Authorization", "Basic " + Redactor(key=b"k").mask("dTpwdw==")]


def test_no_redact_records_heads_as_sent() -> None:
    enc = RecordEncoder(WALL, MONO, redact=False)
    headers = (("Authorization", "Basic dTpwdw=="),)
    target = "/v1.41/build?buildargs=%7B%22A%22%3A%22s3cret%22%7D"
    [record] = enc.encode(RequestHead(1, MONO, 1, "POST", target, "1.1", headers))
    assert record["headers"] == [["Authorization", "Basic dTpwdw=="]]
    assert record["target"] == target


# --- bytes: text or base64 ------------------------------------------------------------------


def test_utf8_bytes_are_text_others_base64() -> None:
    assert encode_bytes(b"hello \xc3\xa9") == {"text": "hello \u00e9"}
    assert encode_bytes(b"") == {"text": ""}
    # Control bytes are valid UTF-8: frame headers stay readable text.
    assert encode_bytes(b"\x01\x00\x00\x00") == {"text": "\x01\x00\x00\x00"}
    assert encode_bytes(b"\xff\xd8\xff") == {"b64": "/9j/"}
    assert decode_bytes({"b64": "/9j/"}) == b"\xff\xd8\xff"
    assert decode_bytes({"text": "\u00e9"}) == b"\xc3\xa9"
    assert decode_bytes({}) == b""


@given(st.binary(max_size=300))
def test_bytes_round_trip_through_a_json_line(data: bytes) -> None:
    encoded = encode_bytes(data)
    line = dumps({"type": "body", **encoded})
    assert "\n" not in line
    assert decode_bytes(json.loads(line)) == data


@given(st.text(max_size=100))
def test_utf8_text_stays_text(text: str) -> None:
    data = text.encode("utf-8")
    encoded = encode_bytes(data)
    assert encoded == {"text": text}
    assert decode_bytes(json.loads(dumps(encoded))) == data


def test_body_records_choose_the_encoding_per_piece() -> None:
    enc = encoder()
    records = feed(
        enc,
        BodyData(1, MONO, 1, DAEMON, b'{"a":1}'),
        BodyData(1, MONO, 1, DAEMON, b"\x1f\x8b\x08\x00"),  # gzip magic: not UTF-8
    )
    assert records[0]["text"] == '{"a":1}'
    assert "b64" not in records[0]
    assert base64.b64decode(records[1]["b64"]) == b"\x1f\x8b\x08\x00"
    assert "text" not in records[1]
    assert [r["size"] for r in records] == [7, 4]


# --- the inline cap -------------------------------------------------------------------------


def test_body_past_the_cap_keeps_size_and_digest_in_end() -> None:
    enc = encoder(max_body=5)
    pieces = [b"abc", b"defg", b"hij"]
    records = feed(
        enc,
        *(BodyData(1, MONO + i, 1, DAEMON, piece) for i, piece in enumerate(pieces)),
        MessageEnd(1, MONO + 3, 1, DAEMON),
    )
    bodies = of_type(records, "body")
    assert [(b["size"], decode_bytes(b)) for b in bodies] == [(3, b"abc"), (2, b"de")]
    [end] = of_type(records, "end")
    assert end["size"] == 10
    assert end["inline"] == 5
    assert end["complete"] is True
    assert end["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()
    validate_capture(as_capture(enc, records))


def test_cap_applies_per_body_not_per_connection() -> None:
    enc = encoder(max_body=4)
    records = feed(
        enc,
        BodyData(1, MONO, 1, CLIENT, b"request!"),
        MessageEnd(1, MONO, 1, CLIENT),
        BodyData(1, MONO, 1, DAEMON, b"response"),
        MessageEnd(1, MONO, 1, DAEMON),
        BodyData(1, MONO, 2, DAEMON, b"second"),
        MessageEnd(1, MONO, 2, DAEMON),
    )
    assert [decode_bytes(b) for b in of_type(records, "body")] == [b"requ", b"resp", b"seco"]
    assert [(e["dir"], e["seq"], e["size"], e["inline"]) for e in of_type(records, "end")] == [
        ("client", 1, 8, 4),
        ("daemon", 1, 8, 4),
        ("daemon", 2, 6, 4),
    ]


def test_cut_inside_a_character_falls_back_to_base64() -> None:
    enc = encoder(max_body=3)
    [record] = enc.encode(BodyData(1, MONO, 1, DAEMON, "\u00e9\u00e9".encode()))
    assert "b64" in record
    assert decode_bytes(record) == b"\xc3\xa9\xc3"
    assert record["size"] == 3


def test_zero_max_body_keeps_everything() -> None:
    enc = encoder(max_body=0)
    big = bytes(range(256)) * 8192  # 2 MiB, past the default cap
    records = feed(
        enc,
        BodyData(1, MONO, 1, DAEMON, big[: 1 << 20]),
        BodyData(1, MONO, 1, DAEMON, big[1 << 20 :]),
        MessageEnd(1, MONO, 1, DAEMON),
    )
    assert b"".join(decode_bytes(b) for b in of_type(records, "body")) == big
    [end] = of_type(records, "end")
    assert end["size"] == end["inline"] == len(big)
    assert end["sha256"] == hashlib.sha256(big).hexdigest()


def test_default_cap_is_one_mebibyte() -> None:
    enc = encoder()
    records = feed(
        enc,
        BodyData(1, MONO, 1, DAEMON, b"x" * (DEFAULT_MAX_BODY + 10)),
        MessageEnd(1, MONO, 1, DAEMON),
    )
    assert of_type(records, "body")[0]["size"] == DEFAULT_MAX_BODY
    assert of_type(records, "end")[0]["size"] == DEFAULT_MAX_BODY + 10


def test_stream_records_stop_at_the_cap_per_direction() -> None:
    enc = encoder(max_body=6)
    records = feed(
        enc,
        StreamData(1, MONO, 1, DAEMON, b"0123"),
        StreamData(1, MONO, 1, CLIENT, b"abcd"),
        StreamData(1, MONO, 1, DAEMON, b"4567"),
        StreamData(1, MONO, 1, DAEMON, b"89"),
        StreamData(1, MONO, 1, CLIENT, b"efgh"),
    )
    assert [(r["dir"], decode_bytes(r)) for r in records] == [
        ("daemon", b"0123"),
        ("client", b"abcd"),
        ("daemon", b"45"),
        ("client", b"ef"),
    ]
    assert all(r["size"] == len(decode_bytes(r)) for r in records)


def test_frame_records_share_one_cap_per_exchange() -> None:
    enc = encoder(max_body=5)
    records = feed(
        enc,
        Frame(1, MONO, 1, DAEMON, Stream.STDOUT, b"out\n"),
        Frame(1, MONO, 1, DAEMON, Stream.STDERR, b"err\n"),
        Frame(1, MONO, 1, DAEMON, Stream.STDOUT, b"more\n"),
        # The raw stream has a budget of its own.
        StreamData(1, MONO, 1, DAEMON, b"raw bytes"),
    )
    assert [(r["type"], r.get("stream"), decode_bytes(r)) for r in records] == [
        ("frame", "stdout", b"out\n"),
        ("frame", "stderr", b"e"),
        ("stream", None, b"raw b"),
    ]


def test_unparsed_records_are_capped_too() -> None:
    enc = RecordEncoder(WALL, MONO, max_body=3, redact=False)  # the only mode that keeps bytes
    records = feed(
        enc,
        Unparsed(1, MONO, CLIENT, b"abcdef"),
        Unparsed(1, MONO, CLIENT, b"ghi"),
    )
    assert [decode_bytes(r) for r in records] == [b"abc"]


def test_a_cut_head_is_a_capture_error_saying_how_many_bytes() -> None:
    enc = encoder()
    header = enc.header("unix:///d.sock", None, "1")
    [record] = enc.encode(HeadCut(3, MONO + 2, None, CLIENT, 900_000, 64 << 20))
    assert {k: record[k] for k in ("type", "conn", "seq", "dir", "kind")} == {
        "type": "error",
        "conn": 3,
        "seq": None,
        "dir": "client",
        "kind": "capture",
    }
    assert "head cut after 900000 bytes" in record["message"]
    assert str(64 << 20) in record["message"]
    validate_capture([header, enc.opened(3, None, MONO), record])


def test_unparsed_bytes_are_only_a_size_and_a_digest_unless_redaction_is_off() -> None:
    garbage = b"POST /x HTTP/1.1\r\n\x00Env: DB_PASSWORD=hunter2\r\n"
    event = Unparsed(1, MONO + 1, CLIENT, garbage)
    [record] = encoder().encode(event)
    assert record == {
        "type": "unparsed",
        "conn": 1,
        "dir": "client",
        "size": len(garbage),
        "sha256": hashlib.sha256(garbage).hexdigest(),
        "t": WALL + 1,
        "mono": 1.0,
    }
    assert b"hunter2" not in dumps(record).encode()
    [raw] = RecordEncoder(WALL, MONO, redact=False).encode(event)
    assert decode_bytes(raw) == garbage and "sha256" not in raw


def test_empty_body_end_has_the_empty_digest() -> None:
    enc = encoder()
    [end] = enc.encode(MessageEnd(2, MONO + 1, 4, CLIENT, complete=False))
    assert end == {
        "type": "end",
        "conn": 2,
        "seq": 4,
        "dir": "client",
        "complete": False,
        "size": 0,
        "inline": 0,
        "sha256": EMPTY_SHA256,
        "t": WALL + 1,
        "mono": 1.0,
    }


def test_close_drops_the_connection_budgets() -> None:
    enc = encoder(max_body=3)
    feed(
        enc,
        request(conn=1),
        BodyData(1, MONO, 1, DAEMON, b"abcdef"),
        StreamData(1, MONO, 1, DAEMON, b"abcdef"),
        Frame(1, MONO, 1, DAEMON, Stream.STDOUT, b"abcdef"),
        request(conn=2),
        StreamData(2, MONO, 1, DAEMON, b"abcdef"),
    )
    assert enc.encode(StreamData(1, MONO, 1, DAEMON, b"x")) == []  # conn 1 is past its cap
    [close] = enc.encode(Closed(1, MONO + 5))
    assert close == {"type": "close", "conn": 1, "t": WALL + 5, "mono": 5.0}
    # Nothing of conn 1 is kept (an endless proxy must not grow), conn 2 is untouched.
    assert {key[0] for key in enc._budgets} == {2}
    assert {key[0] for key in enc._operations} == {2}
    assert enc.encode(StreamData(2, MONO, 1, DAEMON, b"x")) == []
    # A body that ended is forgotten at once, before the connection closes.
    enc.encode(BodyData(2, MONO, 2, DAEMON, b"ab"))
    enc.encode(MessageEnd(2, MONO, 2, DAEMON))
    assert (2, 2, "daemon", "body") not in enc._budgets


# --- what is not an event -------------------------------------------------------------------


class _Strange(Event):
    __slots__ = ("what",)

    def __init__(self, conn: int, t: float, what: str) -> None:
        super().__init__(conn, t)
        self.what = what


@pytest.mark.parametrize("event", [Event(1, MONO), _Strange(1, MONO, "x")])
def test_unknown_events_raise_type_error(event: Event) -> None:
    with pytest.raises(TypeError, match="unknown event"):
        encoder().encode(event)


def _continues(seq: int, count: int) -> list[Event]:
    return [ResponseHead(1, MONO + 1, seq, 100, "Continue", "1.1", (), True) for _ in range(count)]


def _exchange_with_continues(seq: int, count: int) -> list[Event]:
    request = RequestHead(1, MONO, seq, "POST", "/v1.41/build", "1.1", (("Expect", "100"),))
    final = ResponseHead(1, MONO + 2, seq, 200, "OK", "1.1", (("Content-Length", "0"),), False)
    return [request, *_continues(seq, count), final, MessageEnd(1, MONO + 2, seq, DAEMON, True)]


def test_informational_heads_count_against_max_body() -> None:
    """200,000 `100 Continue` heads once made a 34 MB capture of 5 MB of traffic."""
    enc = encoder(max_body=1000)
    records = feed(enc, *_exchange_with_continues(1, 200_000), *_exchange_with_continues(2, 3))
    first = [r for r in records if r.get("seq") == 1]
    continues = [r for r in first if r["type"] == "response" and r["status"] == 100]
    line = len(dumps(continues[0])) + 1
    assert len(continues) == 1000 // line  # as many lines as fit in 1000 bytes
    assert [r["message"] for r in first if r["type"] == "error"] == [
        "informational responses past --max-body (1000 bytes of their records) are not recorded"
    ]
    assert [r["status"] for r in first if r["type"] == "response"][-1] == 200
    assert len(dumps({"records": records})) < 100_000
    # The next exchange has a budget of its own.
    second = [r for r in records if r.get("seq") == 2 and r["type"] == "response"]
    assert [r["status"] for r in second] == [100, 100, 100, 200]


def test_a_101_is_kept_past_the_cap_and_no_cap_keeps_every_head() -> None:
    upgraded = ResponseHead(1, MONO + 1, 1, 101, "UPGRADED", "1.1", (("Upgrade", "tcp"),), True)
    capped = feed(encoder(max_body=10), *_continues(1, 5), upgraded)
    assert [r["status"] for r in capped if r["type"] == "response"] == [101]
    everything = feed(encoder(max_body=0), *_continues(1, 500))
    assert len(everything) == 500
