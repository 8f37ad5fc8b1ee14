"""What the daemon said went wrong, read one way for the timeline and the Markdown report."""

from __future__ import annotations

from typing import Any

from golden import CAPTURES

from docktap import load
from docktap.capture.format import FORMAT, VERSION, dumps
from docktap.capture.reader import Exchange, loads
from docktap.render import markdown
from docktap.render.refusal import refusal, stream_error


def _answer(status: int, body: str, content_type: str = "application/json") -> Exchange:
    key = {"conn": 1, "seq": 1}
    at = {"t": 1_800_000_001.0, "mono": 1.0}
    records: list[dict[str, Any]] = [
        {
            "type": "capture",
            "format": FORMAT,
            "version": VERSION,
            "t": 1_800_000_000.0,
            "mono": 0.0,
        },
        {"type": "open", "conn": 1, "peer": None, **at},
        {
            "type": "request",
            **key,
            "dir": "client",
            "method": "GET",
            "target": "/v1.41/containers/nope/json",
            "http_version": "1.1",
            "headers": [],
            "operation": "ContainerInspect",
            **at,
        },
        {"type": "end", **key, "dir": "client", "complete": True, "size": 0, **at},
        {
            "type": "response",
            **key,
            "dir": "daemon",
            "status": status,
            "reason": "",
            "http_version": "1.1",
            "headers": [["Content-Type", content_type]],
            **at,
        },
        {"type": "body", **key, "dir": "daemon", "text": body, **at},
        {"type": "end", **key, "dir": "daemon", "complete": True, "size": len(body), **at},
    ]
    [ex] = loads("".join(dumps(r) + "\n" for r in records)).exchanges
    return ex


def test_a_refusal_is_dockers_json_message_else_the_text() -> None:
    assert refusal(_answer(404, '{"message":"No such container: nope"}\n')) == (
        "No such container: nope"
    )
    assert refusal(_answer(500, "  plain failure\nsecond line\n", "text/plain")) == (
        "plain failure\nsecond line"
    )
    assert refusal(_answer(404, '{"other":1}')) is None
    assert refusal(_answer(404, "   ")) is None
    assert refusal(_answer(200, '{"message":"fine"}')) is None


def test_stream_errors() -> None:
    assert stream_error({"error": "pull access denied"}) == "pull access denied"
    assert stream_error({"error": "short", "errorDetail": {"message": "the detail"}}) == (
        "the detail"
    )
    assert stream_error({"status": "Pulling fs layer"}) is None
    assert stream_error(["not", "a", "message"]) is None


def test_the_report_and_the_timeline_say_the_same() -> None:
    loaded = load(CAPTURES / "pull-error.jsonl")
    said = [markdown.daemon_message(ex) for ex in loaded.exchanges]
    assert any(said)
    for ex, message in zip(loaded.exchanges, said, strict=True):
        if ex.status is not None and ex.status >= 400:
            assert message == refusal(ex)
    long = _answer(500, "x" * 1000, "text/plain")
    assert markdown.daemon_message(long) == "x" * markdown.MAX_OUTPUT
