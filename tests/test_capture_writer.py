"""Tests for the capture writer: lines on disk as they happen, failures that never raise."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import pytest
from capture_schema import validate_capture

from docktap.capture.format import RecordEncoder
from docktap.capture.writer import CaptureWriter
from docktap.outputs import OutputError


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_each_write_is_on_disk_before_close(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    enc = RecordEncoder(1000.0, 5.0)
    writer = CaptureWriter.create(str(path))
    writer.write([enc.header("unix:///x", None, "0.1.0")])
    assert [r["type"] for r in _lines(path)] == ["capture"]
    writer.write([enc.opened(1, None, 6.0), enc.opened(2, None, 6.5)])
    assert [r["type"] for r in _lines(path)] == ["capture", "open", "open"]
    assert path.read_bytes().endswith(b"\n")
    assert writer.records == 3
    writer.write([])  # nothing to write: no empty line either
    assert writer.records == 3
    writer.write([enc.footer(7.0, writer.records + 1)])
    writer.close()
    validate_capture(path)


def test_non_ascii_is_written_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    writer = CaptureWriter.create(str(path))
    writer.write([{"type": "x", "text": "\u00e9\u2028"}])
    writer.close()
    assert path.read_bytes() == '{"type":"x","text":"\u00e9\u2028"}\n'.encode()


def test_new_capture_is_private(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    old_umask = os.umask(0)
    try:
        writer = CaptureWriter.create(str(path))
    finally:
        os.umask(old_umask)
    writer.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_overwritten_capture_becomes_private(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text("old contents\n" * 10)
    path.chmod(0o644)
    writer = CaptureWriter.create(str(path))
    writer.write([{"type": "capture"}])
    writer.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == '{"type":"capture"}\n'


def test_create_fails_loudly_when_the_file_cannot_be_opened(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="No such file or directory"):
        CaptureWriter.create(str(tmp_path / "no-such-dir" / "c.jsonl"))


def test_dash_writes_to_stdout_and_close_leaves_it_open(
    capsys: pytest.CaptureFixture[str],
) -> None:
    writer = CaptureWriter.create("-")
    writer.write([{"type": "capture", "version": 1}])
    writer.close()
    assert capsys.readouterr().out == '{"type":"capture","version":1}\n'
    print("still open")
    assert capsys.readouterr().out == "still open\n"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_device_stops_the_capture_without_raising() -> None:
    errors: list[str] = []
    stream = open("/dev/full", "w", encoding="utf-8")  # noqa: SIM115 - the writer owns it
    writer = CaptureWriter(stream, on_error=errors.append)
    writer.write([{"type": "capture"}])
    assert writer.failed is not None
    assert "No space left on device" in writer.failed
    assert "after 0 records" in writer.failed
    assert errors == [writer.failed]
    writer.write([{"type": "open", "conn": 1}])
    writer.write([{"type": "open", "conn": 2}])
    assert errors == [writer.failed]  # reported once
    assert writer.records == 0
    writer.close()  # the close flushes into the full device again: still quiet
    assert errors == [writer.failed]
    assert stream.closed


def test_failure_after_some_records_counts_them() -> None:
    errors: list[str] = []
    stream = io.StringIO()
    writer = CaptureWriter(stream, on_error=errors.append)
    writer.write([{"type": "capture"}, {"type": "open"}])
    stream.close()  # writing to a closed stream raises ValueError
    writer.write([{"type": "close"}])
    assert writer.failed is not None
    assert writer.failed.startswith("capture stopped after 2 records:")
    assert errors == [writer.failed]


def test_failure_without_a_callback_is_silent() -> None:
    stream = io.StringIO()
    stream.close()
    writer = CaptureWriter(stream)
    writer.write([{"type": "capture"}])
    assert writer.failed is not None
    writer.close()
