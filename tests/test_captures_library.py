"""The shipped captures in captures/ stay valid: schema, no error records, closed cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
from tapping import checked_capture

CAPTURES = sorted((Path(__file__).resolve().parent.parent / "captures").glob("*.jsonl"))


def test_the_library_is_there() -> None:
    assert len(CAPTURES) >= 15


@pytest.mark.parametrize("path", CAPTURES, ids=[p.stem for p in CAPTURES])
def test_capture_is_valid(path: Path) -> None:
    capture = checked_capture(path)
    assert capture.exchanges
    assert all(ex.operation for ex in capture.exchanges), [ex.target for ex in capture]
