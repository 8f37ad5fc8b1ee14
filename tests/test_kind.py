"""One rule for which exchanges stayed open, shared by every view of a capture."""

from __future__ import annotations

from typing import Any

from golden import ALL_CAPTURES, CAPTURES

from docktap import Capture, load
from docktap.capture.format import FORMAT, VERSION, dumps
from docktap.capture.reader import loads
from docktap.render import har, markdown, stats
from docktap.render.kind import STREAM_AFTER_S, exchange_kind, stayed_open


def _capture(answered: float | None, ended: float | None, complete: bool = True) -> Capture:
    """One ContainerWait asked at 1.0 s, its head at `answered`, its end at `ended` (None:
    never), in records as docktap writes them."""
    t0 = 1_800_000_000.0

    def at(mono: float) -> dict[str, float]:
        return {"t": t0 + mono, "mono": mono}

    key = {"conn": 1, "seq": 1}
    records: list[dict[str, Any]] = [
        {"type": "capture", "format": FORMAT, "version": VERSION, "started": t0, **at(0.0)},
        {"type": "open", "conn": 1, "peer": None, **at(0.5)},
        {
            "type": "request",
            **key,
            "dir": "client",
            "method": "POST",
            "target": "/v1.41/containers/x/wait",
            "http_version": "1.1",
            "headers": [],
            "operation": "ContainerWait",
            "api_version": "1.41",
            **at(1.0),
        },
        {"type": "end", **key, "dir": "client", "complete": True, "size": 0, **at(1.0)},
    ]
    if answered is not None:
        records.append(
            {
                "type": "response",
                **key,
                "dir": "daemon",
                "status": 200,
                "reason": "OK",
                "http_version": "1.1",
                "headers": [["Content-Type", "application/json"]],
                "informational": False,
                **at(answered),
            }
        )
    if ended is not None:
        body = '{"StatusCode":0}\n'
        records.append({"type": "body", **key, "dir": "daemon", "text": body, **at(ended)})
        end = {"complete": True, "size": len(body), "inline": len(body)}
        records.append({"type": "end", **key, "dir": "daemon", **end, **at(ended)})
        records.append({"type": "close", "conn": 1, **at(ended + 0.01)})
    if complete:
        records.append({"type": "end-of-capture", "records": len(records) + 1, **at(9.0)})
    return loads("".join(dumps(r) + "\n" for r in records))


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
    [quick] = _capture(answered=1.001, ended=1.001 + STREAM_AFTER_S / 2).exchanges
    [slow] = _capture(answered=1.001, ended=1.001 + STREAM_AFTER_S * 1.5).exchanges
    [late] = _capture(answered=5.0, ended=5.001).exchanges  # a slow answer, not a stream
    assert exchange_kind(quick) == "plain"
    assert exchange_kind(slow) == "stream"
    assert exchange_kind(late) == "plain"


def test_an_exchange_that_never_ended_stayed_open_everywhere() -> None:
    """The timeline and stats used to disagree here: one said long poll, the other plain."""
    for cut in (
        _capture(answered=1.001, ended=None),
        _capture(answered=None, ended=None),
        _capture(answered=1.001, ended=None, complete=False),
    ):
        [wait] = cut.exchanges
        assert wait.ended_mono is None
        assert exchange_kind(wait) == "stream"
        assert stayed_open(wait)
        [row] = stats.compute(cut)["operations"]
        assert row["streamed"] == 1
        assert row["latency_ms"] is None  # it never ended: no latency to count
        assert "| open (stream) |" in markdown.render(cut)
        [entry] = har.to_har(cut)["log"]["entries"]
        assert entry["_docktap"]["kind"] == "stream"


def test_every_shipped_capture_has_its_kinds() -> None:
    for path in ALL_CAPTURES:
        for ex in load(path).exchanges:
            kind = exchange_kind(ex)
            assert (kind == "hijack") == bool(ex.hijacked), (path.name, ex.operation)
