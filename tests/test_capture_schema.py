"""Tests for the shipped JSON Schema of capture records and the test-side validator."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from capture_schema import validate_capture
from jsonschema import Draft202012Validator

from docktap.capture.format import Record
from docktap.capture.schema import load_schema

GOLDEN = Path(__file__).parent / "data" / "captures" / "run-stdout-stderr.jsonl"
DOC = Path(__file__).resolve().parent.parent / "docs" / "capture-format.md"
TYPES = [
    "capture", "open", "request", "response", "body", "end", "hijack", "stream", "frame",
    "halfclose", "close", "error", "unparsed", "decision", "end-of-capture",
]  # fmt: skip


def golden() -> list[Record]:
    return [json.loads(line) for line in GOLDEN.read_text(encoding="utf-8").splitlines()]


def test_schema_is_valid_draft_2020_12() -> None:
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert schema["properties"]["type"]["enum"] == TYPES
    assert len(schema["oneOf"]) == len(TYPES)


def test_every_record_type_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    for kind in TYPES:
        assert f"`{kind}`" in text, kind


def test_golden_capture_is_valid() -> None:
    validate_capture(GOLDEN)
    validate_capture(golden())


def _first(records: list[Record], kind: str, **match: Any) -> Record:
    return next(
        r for r in records if r["type"] == kind and all(r.get(k) == v for k, v in match.items())
    )


def _broken(change: str) -> list[Record]:
    records = copy.deepcopy(golden())
    if change == "missing-field":
        del _first(records, "request")["headers"]
    elif change == "bad-dir":
        _first(records, "halfclose")["dir"] = "upstream"
    elif change == "extra-field":
        _first(records, "close")["reason"] = "eof"
    elif change == "text-and-b64":
        _first(records, "body")["b64"] = "AA=="
    elif change == "no-bytes":
        del _first(records, "frame")["text"]
    elif change == "bad-stream":
        _first(records, "frame")["stream"] = "out"
    elif change == "bad-sha":
        _first(records, "end")["sha256"] = "E3B0"
    elif change == "header-pair":
        _first(records, "request")["headers"][0].append("extra")
    elif change == "string-status":
        _first(records, "response")["status"] = "200"
    elif change == "bool-informational":
        _first(records, "response")["informational"] = 0
    elif change == "unknown-type":
        records.insert(3, {"type": "note", "t": 1.0, "mono": 0.0})
    elif change == "error-kind":
        records.insert(3, {"type": "error", "conn": 1, "kind": "oops", "message": "", "t": 1.0,
                           "mono": 0.0})  # fmt: skip
    elif change == "protocol-error-without-dir":
        records.insert(3, {"type": "error", "conn": 1, "kind": "protocol", "message": "m",
                           "seq": None, "t": 1.0, "mono": 0.0})  # fmt: skip
    elif change == "size-mismatch":
        _first(records, "frame")["size"] = 5
    elif change == "inline-over-size":
        _first(records, "end", size=88)["inline"] = 89
    elif change == "no-header":
        records.pop(0)
    elif change == "footer-count":
        records[-1]["records"] = 7
    elif change == "footer-early":
        records.append(copy.deepcopy(records[1]))
    elif change == "peer-fields":
        _first(records, "open")["peer"] = {"pid": 1}
    elif change == "version":
        records[0]["version"] = 3
    else:
        raise AssertionError(change)
    return records


@pytest.mark.parametrize(
    "change",
    [
        "missing-field",
        "bad-dir",
        "extra-field",
        "text-and-b64",
        "no-bytes",
        "bad-stream",
        "bad-sha",
        "header-pair",
        "string-status",
        "bool-informational",
        "unknown-type",
        "error-kind",
        "protocol-error-without-dir",
        "size-mismatch",
        "inline-over-size",
        "no-header",
        "footer-count",
        "footer-early",
        "peer-fields",
        "version",
    ],
)
def test_mistakes_are_caught_with_their_line(change: str) -> None:
    with pytest.raises(AssertionError, match=r"line \d+: ") as caught:
        validate_capture(_broken(change))
    assert "problem(s) against capture format v2" in str(caught.value)


def test_every_bad_line_is_listed(tmp_path: Path) -> None:
    lines = GOLDEN.read_text(encoding="utf-8").splitlines()
    lines[4] = "{not json"
    lines[9] = lines[9].replace('"dir":"daemon"', '"dir":"sideways"')
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(AssertionError) as caught:
        validate_capture(path)
    message = str(caught.value)
    assert "line 5: not a JSON value" in message
    assert "line 10: at dir: 'daemon' was expected" in message  # a response comes from dockerd
    assert message.count("\n  line ") == 2
