"""The wire between the relay and the recording child, as bytes."""

from __future__ import annotations

import select
import struct

import pytest

from docktap.events import Direction
from docktap.recording.wire import (
    DATA,
    EOF,
    HEADER,
    Batch,
    Kind,
    RecordingConfig,
    parse,
    peer_from_payload,
    peer_payload,
    spooled,
    spooled_count,
)
from docktap.tap import PeerCredentials


def _batch() -> Batch:
    batch = Batch()
    batch.add(Kind.OPEN, 1, 0.5, b'{"pid": 1}')
    batch.add(Kind.DATA_CLIENT, 1, 0.75, b"GET /_ping HTTP/1.1\r\n\r\n")
    batch.add(Kind.EOF_CLIENT, 1, 1.0)
    batch.add(Kind.DATA_DAEMON, 2, 1.25, b"x" * 300)
    return batch


def test_a_message_is_kind_conn_time_length_then_payload() -> None:
    batch = Batch()
    batch.add(Kind.DATA_DAEMON, 7, 1.5, b"hello")
    assert b"".join(batch.pieces) == (
        b"\x03" + b"\x07\x00\x00\x00" + struct.pack("<d", 1.5) + b"\x05\x00\x00\x00" + b"hello"
    )
    assert HEADER.size == 17
    assert batch.size == 22
    assert batch.pieces[1] == b"hello"  # the payload is not copied into the header


def test_kinds_by_direction() -> None:
    assert DATA[Direction.CLIENT] is Kind.DATA_CLIENT
    assert DATA[Direction.DAEMON] is Kind.DATA_DAEMON
    assert EOF[Direction.CLIENT] is Kind.EOF_CLIENT
    assert EOF[Direction.DAEMON] is Kind.EOF_DAEMON
    assert [int(k) for k in Kind] == list(range(1, 11))


def test_parse_gives_whole_messages_and_keeps_a_cut_one() -> None:
    data = b"".join(_batch().pieces)
    messages, rest = parse(data)
    assert rest == b""
    assert messages == [
        (Kind.OPEN, 1, 0.5, b'{"pid": 1}'),
        (Kind.DATA_CLIENT, 1, 0.75, b"GET /_ping HTTP/1.1\r\n\r\n"),
        (Kind.EOF_CLIENT, 1, 1.0, b""),
        (Kind.DATA_DAEMON, 2, 1.25, b"x" * 300),
    ]
    for cut in range(len(data) + 1):
        first, rest = parse(data[:cut])
        second, end = parse(rest + data[cut:])
        assert first + second == messages
        assert end == b""


def test_messages_are_the_batch_one_bytes_each() -> None:
    batch = _batch()
    assert b"".join(batch.messages()) == b"".join(batch.pieces)
    assert [parse(m)[0][0][0] for m in batch.messages()] == [
        Kind.OPEN,
        Kind.DATA_CLIENT,
        Kind.EOF_CLIENT,
        Kind.DATA_DAEMON,
    ]


def test_a_partial_write_splits_into_the_cut_messages_rest_and_whole_messages() -> None:
    """At every byte: what the pipe did not take is the tail then whole messages, in order."""
    batch = _batch()
    data = b"".join(batch.pieces)
    boundaries = [0]
    for message in batch.messages():
        boundaries.append(boundaries[-1] + len(message))
    for written in range(len(data) + 1):
        tail, rest = batch.split(written)
        assert tail + b"".join(rest.pieces) == data[written:]
        assert rest.size == len(data) - written - len(tail)
        # The tail ends exactly where a message does; the rest starts there.
        assert written + len(tail) in boundaries
        assert (tail == b"") == (written in boundaries)
        messages, left = parse(b"".join(rest.pieces))
        assert left == b""
        assert len(messages) == len(rest.starts)
        assert b"".join(rest.messages()) == b"".join(rest.pieces)


def test_the_spooled_announcement_fits_in_one_atomic_pipe_write() -> None:
    message = spooled(123_456_789_012)
    assert len(message) <= select.PIPE_BUF
    ((kind, conn, t, payload),), rest = parse(message)
    assert (kind, conn, t, rest) == (Kind.SPOOLED, 0, 0.0, b"")
    assert spooled_count(payload) == 123_456_789_012


def test_peer_credentials_travel_as_json() -> None:
    peer = PeerCredentials(42, 1000, 100, "/usr/bin/docker")
    assert peer_from_payload(peer_payload(peer)) == {
        "pid": 42,
        "uid": 1000,
        "gid": 100,
        "exe": "/usr/bin/docker",
    }
    assert peer_payload(None) == b""
    assert peer_from_payload(b"") is None


@pytest.mark.parametrize("capture_fd", [None, 5])
def test_the_config_round_trips_through_json(capture_fd: int | None) -> None:
    config = RecordingConfig(
        capture_fd, 100, "unix:///d.sock", ["docker", "ps"], 1.5, 2.5, "rows", False, ("DB_",)
    )
    assert RecordingConfig.from_json(config.to_json()) == config
