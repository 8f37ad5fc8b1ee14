"""`docktap export --format har`: HAR 1.2 that validates, with docktap's extras under `_`."""

from __future__ import annotations

import base64
import json
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
from click.testing import CliRunner
from golden import ALL_CAPTURES, CAPTURES

from docktap import __version__, load
from docktap.capture.format import RecordEncoder
from docktap.capture.reader import Capture, loads
from docktap.cli import main
from docktap.events import BodyData, Direction, MessageEnd, RequestHead, ResponseHead
from docktap.render.har import to_har
from docktap.render.text import iso_time

SCHEMA = Path(__file__).parent / "data" / "har-1.2.schema.json"


@cache
def _validator() -> Any:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate(har: dict[str, Any]) -> None:
    # Through JSON and back, as a HAR viewer gets it.
    document = json.loads(json.dumps(har))
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def _entry(capture: Capture, operation: str) -> dict[str, Any]:
    entries = to_har(capture)["log"]["entries"]
    return next(e for e in entries if e["_docktap"]["operation"] == operation)


@pytest.mark.parametrize("path", ALL_CAPTURES, ids=[p.stem for p in ALL_CAPTURES])
def test_every_capture_gives_valid_har(path: Path) -> None:
    capture = load(path)
    har = to_har(capture)
    validate(har)
    log = har["log"]
    assert log["creator"] == {"name": "docktap", "version": __version__}
    assert len(log["entries"]) == len(capture)
    for entry, ex in zip(log["entries"], capture, strict=True):
        assert entry["connection"] == str(ex.conn)
        assert entry["request"]["method"] == ex.method
        url = urlsplit(entry["request"]["url"])
        assert (url.scheme, url.netloc) == ("http", "docker")
        assert entry["request"]["url"] == "http://docker" + ex.target
        assert entry["response"]["status"] == ex.status
        timings = entry["timings"]
        assert entry["time"] == pytest.approx(
            timings["send"] + timings["wait"] + timings["receive"], abs=0.01
        )
        if ex.duration_s is not None:
            assert entry["time"] == pytest.approx(ex.duration_s * 1000, abs=0.01)


def test_the_schema_rejects_what_har_forbids() -> None:
    har = to_har(load(CAPTURES / "version.jsonl"))
    entry = har["log"]["entries"][0]
    for broken in (
        {**entry, "startedDateTime": "yesterday"},
        {**entry, "timings": {"send": 1}},
        {**entry, "extra": 1},  # custom fields need a leading underscore
        {key: value for key, value in entry.items() if key != "request"},
    ):
        with pytest.raises(AssertionError):
            validate({"log": {**har["log"], "entries": [broken]}})


def test_run_capture_entries() -> None:
    capture = load(CAPTURES / "run.jsonl")
    create = _entry(capture, "ContainerCreate")
    post = create["request"]["postData"]
    assert post["mimeType"] == "application/json"
    assert json.loads(post["text"])["Image"] == "bb"
    assert create["response"]["status"] == 201
    assert create["response"]["statusText"] == "Created"
    assert json.loads(create["response"]["content"]["text"])["Id"]
    assert create["request"]["httpVersion"] == "HTTP/1.1"
    attach = _entry(capture, "ContainerAttach")
    assert attach["response"]["status"] == 101
    extra = attach["_docktap"]
    assert extra["hijacked"] == "tcp"
    assert extra["kind"] == "hijack"
    assert extra["stdout"] == {"size": 4, "text": "out\n"}
    assert extra["stderr"] == {"size": 4, "text": "err\n"}
    assert [f["stream"] for f in extra["frames"]] == ["stdout", "stderr"]
    assert sum(c["size"] for c in extra["stream_chunks"]) == 24
    assert {"name": "stream", "value": "1"} in attach["request"]["queryString"]
    wait = _entry(capture, "ContainerWait")
    assert wait["_docktap"]["kind"] == "stream"
    assert wait["timings"]["receive"] > 100  # the long poll's body came at the end
    started = next(ex for ex in capture if ex.operation == "ContainerWait").started
    assert wait["startedDateTime"] == iso_time(started)
    assert wait["startedDateTime"].endswith("Z")


def test_chunked_stream_timings() -> None:
    logs = _entry(load(CAPTURES / "logs-follow.jsonl"), "ContainerLogs")
    chunks = logs["_docktap"]["body_chunks"]
    assert len(chunks) > 1
    assert [c["t_ms"] for c in chunks] == sorted(c["t_ms"] for c in chunks)
    assert logs["_docktap"]["stdout"]["text"]


def test_bodies_round_trip() -> None:
    cp = load(CAPTURES / "cp.jsonl")
    put = _entry(cp, "PutContainerArchive")
    post = put["request"]["postData"]
    ex = next(ex for ex in cp if ex.operation == "PutContainerArchive")
    # This tar archive happens to be valid UTF-8 (names, NULs, ASCII text): kept as text.
    assert "_encoding" not in post
    assert post["text"].encode("utf-8") == bytes(ex.request_body)
    get = _entry(cp, "ContainerArchive")
    content = get["response"]["content"]
    assert content["mimeType"] == "application/x-tar"
    assert len(content["text"].encode("utf-8")) == content["size"] == 2048


def test_cut_bodies_and_missing_answers_stay_valid() -> None:
    encoder = RecordEncoder(1_800_000_000.0, 0.0, max_body=4)
    records = [encoder.header("unix:///x.sock", None, __version__), encoder.opened(1, None, 0.0)]
    client, daemon = Direction.CLIENT, Direction.DAEMON
    events = [
        RequestHead(1, 0.0, 1, "POST", "/v1.41/images/load", "1.1", ()),
        BodyData(1, 0.1, 1, client, b"\xff\xfe binary beyond the cap"),
        MessageEnd(1, 0.2, 1, client),
        ResponseHead(1, 0.3, 1, 200, "OK", "1.1", (), False),
        BodyData(1, 0.4, 1, daemon, b"a long answer"),
        MessageEnd(1, 0.5, 1, daemon),
        RequestHead(1, 0.6, 2, "GET", "/v1.41/info", "1.1", ()),
        MessageEnd(1, 0.6, 2, client),
    ]
    for event in events:
        records += encoder.encode(event)
    capture = loads("".join(json.dumps(r) + "\n" for r in records))
    har = to_har(capture)
    validate(har)
    first, second = har["log"]["entries"]
    post = first["request"]["postData"]
    assert first["request"]["bodySize"] == 24
    assert "kept only the first 4 of 24 bytes" in post["comment"]
    assert post["_encoding"] == "base64"  # not UTF-8
    assert base64.b64decode(post["text"]) == b"\xff\xfe b"
    assert post["mimeType"] == "application/octet-stream"
    assert first["response"]["content"]["size"] == 13
    assert first["response"]["content"]["text"] == "a lo"
    assert first["timings"]["send"] == pytest.approx(200)
    assert first["timings"]["wait"] == pytest.approx(100)
    assert first["timings"]["receive"] == pytest.approx(200)
    assert second["response"]["status"] == 0
    assert second["response"]["bodySize"] == -1
    assert not har["log"]["_docktap"]["complete"]


def test_cli_writes_a_private_file(tmp_path: Path) -> None:
    out = tmp_path / "run.har"
    result = CliRunner().invoke(
        main, ["export", str(CAPTURES / "run.jsonl"), "--format", "har", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert result.output == ""
    assert out.stat().st_mode & 0o777 == 0o600
    har = json.loads(out.read_text())
    validate(har)
    assert har == json.loads(json.dumps(to_har(load(CAPTURES / "run.jsonl"))))
