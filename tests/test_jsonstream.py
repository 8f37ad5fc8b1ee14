"""The JSON message splitter: whole messages out, whatever the chunks fed in."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from docktap import load
from docktap.jsonstream import JsonLines, Message, decode, split

CAPTURES = Path(__file__).parent.parent / "captures"

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@given(
    st.lists(_json_values, min_size=1, max_size=12),
    st.sampled_from([b"\n", b"\r\n"]),
    st.lists(st.integers(min_value=0, max_value=400), max_size=30),
)
def test_chunk_boundaries_never_matter(values: list[object], end: bytes, cuts: list[int]) -> None:
    stream = b"".join(json.dumps(v, ensure_ascii=False).encode() + end for v in values)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    lines = JsonLines()
    got: list[Message] = []
    for start, stop in itertools.pairwise(points):
        got.extend(lines.feed(stream[start:stop]))
    got.extend(lines.flush())
    assert [m.value for m in got] == values
    assert all(m.valid and not m.partial for m in got)
    assert lines.pending == 0


def test_one_byte_at_a_time() -> None:
    stream = b'{"status":"Pulling"}\r\n{"status":"Done","id":"x"}\r\n'
    lines = JsonLines()
    got = [m for i in range(len(stream)) for m in lines.feed(stream[i : i + 1])]
    assert [m.value for m in got] == [{"status": "Pulling"}, {"status": "Done", "id": "x"}]
    assert got[0].raw == b'{"status":"Pulling"}'  # no line end kept


def test_a_message_is_held_until_its_newline() -> None:
    lines = JsonLines()
    assert lines.feed(b'{"a":') == []
    assert lines.pending == 5
    assert lines.feed(b"1}") == []
    assert [m.value for m in lines.feed(b"\n{")] == [{"a": 1}]
    assert lines.pending == 1


def test_blank_lines_are_skipped_and_garbage_is_kept() -> None:
    got = split(b'\n\r\n{"a":1}\n  \nnot json\n{"b":\n')
    assert [(m.valid, m.value, m.raw) for m in got] == [
        (True, {"a": 1}, b'{"a":1}'),
        (False, None, b"not json"),
        (False, None, b'{"b":'),
    ]


def test_flush_gives_the_unfinished_last_line_as_partial() -> None:
    lines = JsonLines()
    assert lines.feed(b'{"a":1}\n{"b":2}') == [decode(b'{"a":1}')]
    (last,) = lines.flush()
    assert last.partial and last.valid and last.value == {"b": 2}
    assert lines.flush() == []


def test_invalid_utf8_is_not_json_but_kept() -> None:
    (message,) = split(b"\xff\xfe\n")
    assert not message.valid and message.raw == b"\xff\xfe"


def test_an_overlong_line_is_handed_back_rather_than_held() -> None:
    lines = JsonLines(max_line=10)
    (message,) = lines.feed(b"x" * 11)
    assert message.partial and not message.valid and message.raw == b"x" * 11
    assert lines.pending == 0
    got = lines.feed(b'{"a":1}\n' + b"y" * 12)
    assert [m.raw for m in got] == [b'{"a":1}', b"y" * 12]


def test_null_is_a_valid_message() -> None:
    (message,) = split(b"null\n")
    assert message.valid and message.value is None


def test_real_event_and_build_streams() -> None:
    events = next(ex for ex in load(CAPTURES / "events.jsonl") if ex.operation == "SystemEvents")
    messages = split(bytes(events.response_body))
    assert len(messages) == 29
    assert all(m.valid and m.value["Type"] == "container" for m in messages)
    build = next(ex for ex in load(CAPTURES / "build.jsonl") if ex.operation == "ImageBuild")
    streamed = [m.value.get("stream") for m in split(bytes(build.response_body))]
    assert "Step 1/2 : FROM bb" in streamed
    assert streamed[-1] == "Successfully tagged built:latest\n"
