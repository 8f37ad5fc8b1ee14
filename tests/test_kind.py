"""One rule for which exchanges stayed open, shared by every view of a capture."""

from __future__ import annotations

import dataclasses

from golden import ALL_CAPTURES, CAPTURES

from docktap import load
from docktap.render import har, markdown, stats
from docktap.render.kind import STREAM_AFTER_S, exchange_kind, stayed_open


def test_the_kinds_of_docker_run() -> None:
    loaded = load(CAPTURES / "run.jsonl")
    kinds = {ex.operation: exchange_kind(ex) for ex in loaded.exchanges}
    assert kinds == {
        "SystemPingHead": "plain",
        "ContainerCreate": "plain",
        "ContainerAttach": "hijack",
        "ContainerWait": "stream",
        "ContainerStart": "plain",
    }
    assert [stayed_open(ex) for ex in loaded.exchanges] == [
        kinds[ex.operation] != "plain" for ex in loaded.exchanges
    ]


def test_a_body_that_kept_coming_makes_a_stream() -> None:
    wait = next(
        ex for ex in load(CAPTURES / "run.jsonl").exchanges if ex.operation == "ContainerWait"
    )
    head = wait.response_started_mono
    assert head is not None
    quick = dataclasses.replace(wait, ended_mono=head + STREAM_AFTER_S / 2)
    slow = dataclasses.replace(wait, ended_mono=head + STREAM_AFTER_S * 1.5)
    assert exchange_kind(quick) == "plain"
    assert exchange_kind(slow) == "stream"


def test_an_exchange_that_never_ended_stayed_open_everywhere() -> None:
    """The timeline and stats used to disagree here: one said long poll, the other plain."""
    loaded = load(CAPTURES / "run.jsonl")
    create = next(ex for ex in loaded.exchanges if ex.operation == "ContainerCreate")
    cut = dataclasses.replace(create, ended_mono=None)
    unanswered = dataclasses.replace(create, ended_mono=None, response_started_mono=None)
    assert exchange_kind(cut) == "stream"
    assert exchange_kind(unanswered) == "stream"
    loaded.exchanges[loaded.exchanges.index(create)] = cut
    numbers = stats.compute(loaded)
    row = next(op for op in numbers["operations"] if op["operation"] == "ContainerCreate")
    assert row["streamed"] == 1
    assert row["latency_ms"] is None  # it never ended: no latency to count
    assert "| open (stream) |" in markdown.render(loaded)
    entries = har.to_har(loaded)["log"]["entries"]
    kinds = {e["_docktap"]["operation"]: e["_docktap"]["kind"] for e in entries}
    assert kinds["ContainerCreate"] == "stream"


def test_every_shipped_capture_has_its_kinds() -> None:
    for path in ALL_CAPTURES:
        for ex in load(path).exchanges:
            kind = exchange_kind(ex)
            assert (kind == "hijack") == bool(ex.hijacked), (path.name, ex.operation)
