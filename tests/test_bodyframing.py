"""Body framing: which reader a head calls for, and the readers fed whole, byte by byte and at
every split point, against h11's own body readers where Go's net/http and h11 agree.

The byte scripts of tests/data/bytescripts go through these readers in tests/test_observer.py
(whole, a byte at a time and split at every point); here the readers are held to the rules on
messages built for the purpose, the odd ones included.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docktap.bodyframing import (
    MAX_CHUNK_LINE,
    MAX_TRAILER,
    BodyReader,
    ChunkedBody,
    CloseDelimitedBody,
    FramingError,
    LengthBody,
    keeps_alive,
    request_framing,
    request_length,
    response_framing,
    response_length,
)


@dataclass
class Reading:
    body: bytes
    end: int | None  # offset in the whole input where the body ended; None: not yet
    error: str | None = None
    unread: bytes = b""


def read(reader: BodyReader, chunks: Iterable[bytes]) -> Reading:
    """Feed chunks until the body ends or fails; offsets count over all chunks, and after a
    failure the unread bytes run to the end of the input."""
    body = b""
    offset = 0
    chunks = list(chunks)
    for index, chunk in enumerate(chunks):
        try:
            pieces, end = reader.read(chunk, 0)
        except FramingError as exc:
            body += b"".join(exc.pieces)
            unread = exc.unread + b"".join(chunks[index + 1 :])
            return Reading(body, None, str(exc), unread)
        assert all(pieces), "no empty pieces"
        body += b"".join(pieces)
        if reader.done:
            return Reading(body, offset + end)
        assert end == len(chunk), "a reader that has not ended takes all it is given"
        offset += len(chunk)
    return Reading(body, None)


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def every_split(data: bytes) -> Iterable[list[bytes]]:
    for point in range(1, len(data)):
        yield [data[:point], data[point:]]


def splits(data: bytes) -> Iterable[list[bytes]]:
    yield whole(data)
    yield bytewise(data)
    yield from every_split(data)


def same_however_split(make: type[BodyReader] | None, data: bytes) -> Reading:
    reader = make or ChunkedBody
    first = read(reader(), whole(data))
    for chunks in splits(data):
        assert read(reader(), chunks) == first, chunks
    return first


# -- which reader --------------------------------------------------------------------------


def fields(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in pairs]


def test_request_framing() -> None:
    chunked = request_framing(b"1.1", fields(("Transfer-Encoding", "chunked")))()
    assert isinstance(chunked, ChunkedBody)
    both = fields(("Content-Length", "5"), ("Transfer-Encoding", "chunked"))
    assert isinstance(request_framing(b"1.1", both)(), ChunkedBody)  # chunked wins
    length = request_framing(b"1.1", fields(("Content-Length", "5")))()
    assert isinstance(length, LengthBody) and length.left == 5
    none = request_framing(b"1.1", [])()
    assert isinstance(none, LengthBody) and none.done  # no framing: no body, never "until close"
    # Go ignores Transfer-Encoding on HTTP/1.0 (its issue 12785): the length decides.
    old = request_framing(b"1.0", both)()
    assert isinstance(old, LengthBody) and old.left == 5
    assert request_framing(b"1.0", fields(("Transfer-Encoding", "chunked")))().done
    # The length alone says as much: None for chunked.
    assert request_length(b"1.1", both) is None
    assert request_length(b"1.1", fields(("Content-Length", "5"))) == 5
    assert request_length(b"1.1", []) == 0
    assert request_length(b"1.0", both) == 5


@pytest.mark.parametrize(
    ("method", "status", "version", "headers", "expected"),
    [
        (b"GET", 200, b"1.1", [("Content-Length", "3")], LengthBody),
        (b"GET", 200, b"1.1", [("Transfer-Encoding", "chunked")], ChunkedBody),
        (b"GET", 200, b"1.1", [], CloseDelimitedBody),
        (b"GET", 200, b"1.0", [], CloseDelimitedBody),
        (b"GET", 200, b"1.0", [("Transfer-Encoding", "chunked")], CloseDelimitedBody),
        (b"HEAD", 200, b"1.1", [("Content-Length", "124")], None),
        (b"HEAD", 200, b"1.1", [("Transfer-Encoding", "chunked")], None),
        (b"GET", 204, b"1.1", [("Content-Length", "3")], None),
        (b"POST", 304, b"1.1", [], None),
    ],
)
def test_response_framing(
    method: bytes,
    status: int,
    version: bytes,
    headers: list[tuple[str, str]],
    expected: type[BodyReader] | None,
) -> None:
    reader = response_framing(method, status, version, fields(*headers))()
    if expected is None:
        assert isinstance(reader, LengthBody) and reader.done
    else:
        assert type(reader) is expected and not reader.done
    length = response_length(method, status, version, fields(*headers))
    assert length == (reader.left if isinstance(reader, LengthBody) else None)


@pytest.mark.parametrize(
    ("version", "connection", "alive"),
    [
        (b"1.1", None, True),
        (b"1.1", "close", False),
        (b"1.1", "Keep-Alive, Close", False),
        (b"1.1", "upgrade", True),
        (b"1.0", None, False),
        (b"1.0", "keep-alive", True),
        (b"1.0", "Keep-Alive", True),
        (b"1.0", "keep-alive, close", False),
    ],
)
def test_keep_alive(version: bytes, connection: str | None, alive: bool) -> None:
    headers = fields(("Connection", connection)) if connection is not None else []
    assert keeps_alive(version, headers) is alive


# -- the readers -----------------------------------------------------------------------------


def test_length_body() -> None:
    for chunks in splits(b"hello" + b"GET / HTTP/1.1\r\n"):
        assert read(LengthBody(5), chunks) == Reading(b"hello", 5)
    assert read(LengthBody(5), [b"hel"]) == Reading(b"hel", None)
    reader = LengthBody(5)
    read(reader, [b"hel"])
    assert reader.eof() is False  # cut short


def test_a_whole_chunk_is_passed_on_without_a_copy() -> None:
    data = bytes(range(256)) * 64
    pieces, end = LengthBody(len(data)).read(data, 0)
    assert pieces[0] is data and end == len(data)
    pieces, _ = CloseDelimitedBody().read(data, 0)
    assert pieces[0] is data


def test_close_delimited_body_ends_at_eof() -> None:
    reader = CloseDelimitedBody()
    assert read(reader, [b"abc", b"def"]) == Reading(b"abcdef", None)
    assert reader.eof() is True and reader.done


@pytest.mark.parametrize(
    ("wire", "body"),
    [
        (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
        (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),  # upper-case hex
        (b"5;name=value\r\nhello\r\n0;last\r\n\r\n", b"hello"),  # extensions are ignored
        (b'5;q="a;b"\r\nhello\r\n0\r\n\r\n', b"hello"),
        (b"5 \t\r\nhello\r\n0\r\n\r\n", b"hello"),  # Go trims the line's trailing space
        (b"5\nhello\r\n0\n\r\n", b"hello"),  # a size line may end in a bare LF
        (b"0000000000000005\r\nhello\r\n0\r\n\r\n", b"hello"),  # 16 digits
        (b"5\r\nhello\r\n0\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\n", b"hello"),  # trailers
        (b"5\r\nhello\r\n0\r\nX-Long: a\r\n b\r\n\r\n", b"hello"),  # folded trailer
        (b"0\r\n\r\n", b""),
    ],
)
def test_chunked_body(wire: bytes, body: bytes) -> None:
    after = b"GET /next HTTP/1.1\r\n\r\n"
    assert same_however_split(ChunkedBody, wire + after) == Reading(body, len(wire))


@pytest.mark.parametrize(
    ("wire", "message", "unread"),
    [
        (b"5\r\nhelloXY0\r\n\r\n", "malformed chunked encoding", b"XY0\r\n\r\n"),
        (b"5\r\nhello\n0\r\n\r\n", "malformed chunked encoding", b"\n0\r\n\r\n"),
        (b"x\r\nhello\r\n", "bad chunk size line", b"x\r\nhello\r\n"),
        (b"-5\r\nhello\r\n", "bad chunk size line", b"-5\r\nhello\r\n"),
        (b"0x5\r\nhello\r\n", "bad chunk size line", b"0x5\r\nhello\r\n"),
        (b"5 ;a\r\nhello\r\n", "bad chunk size line", b"5 ;a\r\nhello\r\n"),
        (
            b"00000000000000005\r\nhello\r\n",
            "bad chunk size line",
            b"00000000000000005\r\nhello\r\n",
        ),
        (b"3\r\nabc\r\n1_0\r\n", "bad chunk size line", b"1_0\r\n"),
        (b"0\r\nno colon\r\n\r\n", "malformed trailer section", b"no colon\r\n\r\n"),
        (b"0\r\n folded: first\r\n\r\n", "malformed trailer section", b" folded: first\r\n\r\n"),
    ],
)
def test_chunked_errors(wire: bytes, message: str, unread: bytes) -> None:
    reading = same_however_split(ChunkedBody, wire)
    assert reading.error is not None and reading.error.startswith(message)
    assert reading.unread == unread
    assert wire.endswith(reading.unread)


def test_chunked_line_limits() -> None:
    # Go refuses a size line of 4096 bytes or more (its newline included).
    long_ext = b"5;" + b"x" * (MAX_CHUNK_LINE - 5) + b"\r\n"
    assert len(long_ext) == MAX_CHUNK_LINE - 1
    assert read(ChunkedBody(), [long_ext + b"hello\r\n0\r\n\r\n"]).body == b"hello"
    too_long = b"5;" + b"x" * (MAX_CHUNK_LINE - 4) + b"\r\n"
    reading = read(ChunkedBody(), [too_long + b"hello\r\n"])
    assert reading.error == "chunk size line too long"
    assert read(ChunkedBody(), bytewise(too_long)).error == "chunk size line too long"
    # Without its LF, a line too long for Go's buffer fails as soon as it is that long.
    assert read(ChunkedBody(), [b"5;" + b"x" * MAX_CHUNK_LINE]).error == "chunk size line too long"
    # The trailer section must end within Go's 4096-byte buffer.
    trailer = b"0\r\nX: " + b"y" * MAX_TRAILER + b"\r\n\r\n"
    reading = read(ChunkedBody(), bytewise(trailer))
    assert reading.error == "trailer section too long"
    assert reading.unread == trailer[3:]


def test_chunked_cut_short() -> None:
    reader = ChunkedBody()
    assert read(reader, [b"5\r\nhel"]) == Reading(b"hel", None)
    assert reader.eof() is False
    reader = ChunkedBody()
    read(reader, [b"5\r\nhello\r\n1"])
    assert reader.held == b"1"  # the start of a size line, not yet explained


# -- against h11, where Go and h11 agree -------------------------------------------------------


def h11_reading(wire: bytes) -> Reading:
    """How h11 reads a chunked request body, for comparison."""
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    server = h11.Connection(h11.SERVER)
    server.receive_data(head + wire)
    assert isinstance(server.next_event(), h11.Request)
    body = b""
    while isinstance(event := server.next_event(), h11.Data):
        body += event.data
    assert isinstance(event, h11.EndOfMessage), event
    return Reading(body, len(wire) - len(server.trailing_data[0]))


@st.composite
def chunked_messages(draw: st.DrawFn) -> bytes:
    chunks = draw(st.lists(st.binary(min_size=1, max_size=40), max_size=6))
    out = b""
    for chunk in chunks:
        size = f"{len(chunk):x}"
        size = draw(st.sampled_from([size, size.upper(), "0" * draw(st.integers(0, 3)) + size]))
        ext = draw(st.sampled_from(["", ";a", ";a=b", ';n="v"', ";x;y=1"]))
        out += f"{size}{ext}\r\n".encode() + chunk + b"\r\n"
    trailers = draw(st.lists(st.sampled_from([b"X-A: 1\r\n", b"Digest: abc\r\n"]), max_size=2))
    return out + b"0\r\n" + b"".join(trailers) + b"\r\n"


@settings(max_examples=200, deadline=None)
@given(wire=chunked_messages(), after=st.sampled_from([b"", b"GET / HTTP/1.1\r\n\r\n"]))
def test_chunked_reads_as_h11_reads(wire: bytes, after: bytes) -> None:
    expected = h11_reading(wire + after)
    assert expected.end == len(wire)
    assert read(ChunkedBody(), whole(wire + after)) == expected
    assert read(ChunkedBody(), bytewise(wire + after)) == expected


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200), cuts=st.lists(st.integers(0, 200), max_size=6))
def test_any_bytes_either_parse_or_fail_the_same_however_split(
    data: bytes, cuts: list[int]
) -> None:
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    assert read(ChunkedBody(), chunks) == read(ChunkedBody(), whole(data))
