"""Checks a capture against the v1 schema, for any test that makes or loads a capture.

`validate_capture(path_or_records)` raises AssertionError naming every bad record by line
number. Beyond the JSON Schema it checks what a schema cannot say: the header comes first, the
footer last with the right count, and each data record's `size` is the length of its bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from os import PathLike
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from docktap.capture.format import VERSION, Record, decode_bytes
from docktap.capture.schema import load_schema

_DATA_TYPES = frozenset({"body", "stream", "frame", "unparsed"})


@cache
def _validators() -> tuple[Any, dict[str, Any]]:
    """The whole-record validator, and one per record type for precise messages."""
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    branches = {
        name: Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": schema["$defs"]})
        for name in schema["properties"]["type"]["enum"]
    }
    return Draft202012Validator(schema), branches


def _read(path: Path, problems: list[str], allow_cut: bool) -> tuple[list[tuple[int, Any]], int]:
    """The parsed lines with their numbers, and how many lines the file has."""
    pieces = path.read_bytes().split(b"\n")
    if not pieces[-1]:
        pieces.pop()  # the file ends with a newline, as it should
    elif allow_cut:
        pieces.pop()
    else:
        problems.append(f"line {len(pieces)}: no newline at the end (a cut line?)")
    numbered: list[tuple[int, Any]] = []
    for number, piece in enumerate(pieces, 1):
        try:
            numbered.append((number, json.loads(piece.decode("utf-8"))))
        except ValueError as exc:  # UnicodeDecodeError included
            problems.append(f"line {number}: not a JSON value ({exc})")
    return numbered, len(pieces)


def _where(path: Iterable[Any]) -> str:
    parts = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    return f"at {parts.lstrip('.')}: " if parts else ""


def _check_record(number: int, record: Any, problems: list[str]) -> None:
    whole, branches = _validators()
    if whole.is_valid(record):
        return
    kind = record.get("type") if isinstance(record, dict) else None
    validator = branches.get(kind, whole) if isinstance(kind, str) else whole
    for error in sorted(validator.iter_errors(record), key=lambda e: list(e.absolute_path)):
        problems.append(f"line {number}: {_where(error.absolute_path)}{error.message}")


def _check_semantics(number: int, record: Record, problems: list[str]) -> None:
    kind = record.get("type")
    # An unparsed record written with redaction on holds a digest in place of its bytes.
    if kind in _DATA_TYPES and isinstance(record.get("size"), int) and "sha256" not in record:
        try:
            actual = len(decode_bytes(record))
        except ValueError as exc:
            problems.append(f"line {number}: undecodable bytes ({exc})")
            return
        if actual != record["size"]:
            problems.append(f"line {number}: size {record['size']} but {actual} bytes inline")
    elif kind == "end":
        inline, size = record.get("inline"), record.get("size")
        if isinstance(inline, int) and isinstance(size, int) and inline > size:
            problems.append(f"line {number}: inline {inline} exceeds size {size}")


def validate_capture(
    source: str | PathLike[str] | Iterable[Record], *, allow_cut: bool = False
) -> None:
    """Assert that a capture file (or a list of its records, in order) is valid v1.

    `allow_cut` accepts a file whose last line is cut off, as a killed docktap leaves it.
    """
    problems: list[str] = []
    if isinstance(source, str | PathLike):
        name = str(source)
        numbered, total = _read(Path(source), problems, allow_cut)
    else:
        name = "<records>"
        numbered = list(enumerate(source, 1))
        total = len(numbered)
    if not numbered:
        problems.append("no records at all")
    else:
        first = numbered[0][1]
        if not isinstance(first, dict) or first.get("type") != "capture":
            problems.append(f"line {numbered[0][0]}: the first record is not the capture header")
    for number, record in numbered:
        _check_record(number, record, problems)
        if not isinstance(record, dict):
            continue
        _check_semantics(number, record, problems)
        if record.get("type") == "capture" and number != 1:
            problems.append(f"line {number}: a second capture header")
        if record.get("type") == "end-of-capture":
            if number != total:
                problems.append(f"line {number}: end-of-capture before the last record")
            elif record.get("records") != total:
                problems.append(
                    f"line {number}: end-of-capture counts {record.get('records')} records, "
                    f"the capture has {total}"
                )
    if problems:
        raise AssertionError(
            f"{name}: {len(problems)} problem(s) against capture format v{VERSION}:\n  "
            + "\n  ".join(problems)
        )
