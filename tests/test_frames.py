"""FrameDecoder and looks_multiplexed: Docker's 8-byte-header stream frames, fed in any pieces."""

from __future__ import annotations

import copy
import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docktap.events import Stream
from docktap.frames import HEADER_SIZE, FrameDecoder, FrameError, looks_multiplexed


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxI", stream, len(payload)) + payload


def in_frame(decoder: FrameDecoder) -> bool:
    """Whether the decoder is inside a header or a payload, seen from outside: a decoder
    between frames reads a whole new frame as exactly that frame's payload."""
    probe = copy.copy(decoder)
    try:
        return probe.feed(frame(1, b"probe")) != [(Stream.STDOUT, b"probe")]
    except FrameError:
        return True


def joined(pieces: list[tuple[Stream, bytes]]) -> list[tuple[Stream, bytes]]:
    """Merge consecutive pieces of the same stream (piece boundaries carry no meaning)."""
    out: list[tuple[Stream, bytes]] = []
    for stream, data in pieces:
        if out and out[-1][0] is stream:
            out[-1] = (stream, out[-1][1] + data)
        else:
            out.append((stream, data))
    return out


def decode_in(chunks: list[bytes]) -> list[tuple[Stream, bytes]]:
    decoder = FrameDecoder()
    pieces: list[tuple[Stream, bytes]] = []
    for chunk in chunks:
        pieces += decoder.feed(chunk)
    assert not in_frame(decoder)
    return pieces


def test_one_frame_whole() -> None:
    assert FrameDecoder().feed(frame(1, b"out\n")) == [(Stream.STDOUT, b"out\n")]


def test_frames_of_every_stream() -> None:
    data = frame(0, b"in") + frame(1, b"out") + frame(2, b"err") + frame(3, b"oops")
    assert decode_in([data]) == [
        (Stream.STDIN, b"in"),
        (Stream.STDOUT, b"out"),
        (Stream.STDERR, b"err"),
        (Stream.SYSTEM_ERROR, b"oops"),
    ]


def test_frames_spanning_feeds_at_every_split() -> None:
    data = frame(1, b"out\n") + frame(2, b"err\n") + frame(1, b"more")
    expected = [(Stream.STDOUT, b"out\n"), (Stream.STDERR, b"err\n"), (Stream.STDOUT, b"more")]
    for cut in range(len(data) + 1):
        assert joined(decode_in([data[:cut], data[cut:]])) == expected, cut
    assert joined(decode_in([data[i : i + 1] for i in range(len(data))])) == expected


def test_header_split_keeps_state_between_feeds() -> None:
    decoder = FrameDecoder()
    data = frame(2, b"xyz")
    assert decoder.feed(data[:3]) == []
    assert in_frame(decoder)
    assert decoder.feed(data[3:HEADER_SIZE]) == []
    assert in_frame(decoder)  # header complete, payload pending
    assert decoder.feed(data[HEADER_SIZE:]) == [(Stream.STDERR, b"xyz")]
    assert not in_frame(decoder)


def test_zero_size_frames_produce_nothing_and_do_not_derail() -> None:
    data = frame(1, b"") + frame(2, b"e") + frame(1, b"") + frame(1, b"o")
    assert decode_in([data]) == [(Stream.STDERR, b"e"), (Stream.STDOUT, b"o")]
    assert joined(decode_in([data[i : i + 1] for i in range(len(data))])) == [
        (Stream.STDERR, b"e"),
        (Stream.STDOUT, b"o"),
    ]


def test_zero_size_frame_alone_leaves_decoder_between_frames() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(frame(1, b"")) == []
    assert not in_frame(decoder)


def test_empty_feed() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    assert not in_frame(decoder)


@pytest.mark.parametrize(
    "header",
    [
        b"\x04\x00\x00\x00\x00\x00\x00\x01",  # stream id 4 does not exist
        b"\x01\x00\x01\x00\x00\x00\x00\x01",  # padding bytes must be zero
        b"hi there",  # TTY text
    ],
)
def test_bad_header_raises(header: bytes) -> None:
    with pytest.raises(FrameError):
        FrameDecoder().feed(header + b"x")


def test_bad_header_after_good_frames_keeps_their_payload() -> None:
    good = frame(1, b"out\n")
    decoder = FrameDecoder()
    with pytest.raises(FrameError) as info:
        decoder.feed(good + b"\xff" * 8)
    assert info.value.pieces == [(Stream.STDOUT, b"out\n")]
    assert isinstance(info.value, ValueError)


def test_bad_header_split_over_feeds_raises_when_complete() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x01\x00\x00") == []
    with pytest.raises(FrameError):
        decoder.feed(b"\x07\x00\x00\x00\x01")


def test_large_frame_is_streamed_in_pieces() -> None:
    size = 5 << 20
    decoder = FrameDecoder()
    header = struct.pack(">BxxxI", 1, size)
    assert decoder.feed(header) == []
    piece = 64 << 10
    block = b"\xab" * piece
    total = 0
    pieces = 0
    while total < size:
        take = min(piece, size - total)
        out = decoder.feed(block[:take])
        # Each feed hands its payload on at once: nothing is buffered until the frame ends.
        assert out == [(Stream.STDOUT, block[:take])]
        total += take
        pieces += 1
    assert pieces == size // piece
    assert not in_frame(decoder)
    assert decoder.feed(frame(2, b"next")) == [(Stream.STDERR, b"next")]


def test_large_frame_payload_spanning_into_next_header() -> None:
    payload = bytes(range(256)) * 300
    data = frame(1, payload) + frame(2, b"tail")
    chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    assert joined(decode_in(chunks)) == [(Stream.STDOUT, payload), (Stream.STDERR, b"tail")]


frames_strategy = st.lists(
    st.tuples(st.integers(0, 3), st.binary(max_size=40)), min_size=0, max_size=12
)


@settings(max_examples=200, deadline=None)
@given(frames=frames_strategy, cuts=st.lists(st.integers(0, 600), max_size=12))
def test_any_split_decodes_the_same(frames: list[tuple[int, bytes]], cuts: list[int]) -> None:
    data = b"".join(frame(s, p) for s, p in frames)
    points = sorted({c for c in cuts if c <= len(data)} | {0, len(data)})
    chunks = [data[a:b] for a, b in itertools.pairwise(points)]
    expected = joined([(Stream(s), p) for s, p in frames if p])
    assert joined(decode_in(chunks)) == expected


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        (b"", None),
        (b"\x01", None),
        (b"\x01\x00\x00", None),
        (b"\x01\x00\x00\x00", True),
        (b"\x02\x00\x00\x00\x00\x00\x00\x04err\n", True),
        (b"\x00\x00\x00\x00", True),
        (b"\x03\x00\x00\x00", True),
        (b"\x04\x00\x00\x00", False),
        (b"h", False),
        (b"hi\r\n", False),
        (b"\x01\x00\x01", False),
        (b"\x01\x01", False),
        (b"PRI * HTTP/2.0", False),
    ],
)
def test_looks_multiplexed(prefix: bytes, expected: bool | None) -> None:
    assert looks_multiplexed(prefix) is expected


@given(st.binary(max_size=16))
def test_looks_multiplexed_agrees_with_the_decoder(prefix: bytes) -> None:
    verdict = looks_multiplexed(prefix)
    if verdict is False:
        # A prefix judged not framed can never start a valid header.
        if len(prefix) >= HEADER_SIZE:
            with pytest.raises(FrameError):
                FrameDecoder().feed(prefix[:HEADER_SIZE])
        else:
            with pytest.raises(FrameError):
                FrameDecoder().feed(prefix + b"\0" * (HEADER_SIZE - len(prefix)))
    elif len(prefix) >= HEADER_SIZE:
        FrameDecoder().feed(prefix[:HEADER_SIZE])  # does not raise
