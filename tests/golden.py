"""Golden files: expected renderer output kept in tests/data/golden/.

A test compares what a renderer produced with the stored file. Run the tests with
DOCKTAP_UPDATE_GOLDEN=1 to write the files instead (then review the diff before committing).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "data" / "golden"
CAPTURES = ROOT / "captures"
#: The real captures the golden files are made from.
GOLDEN_CAPTURES = ("run", "run-stdin", "exec-it", "logs-follow", "events", "pull-error", "build")
#: Every shipped capture, for tests that must work on all of them.
ALL_CAPTURES = sorted(CAPTURES.glob("*.jsonl"))


def check_golden(name: str, actual: str) -> None:
    """Assert `actual` equals tests/data/golden/NAME, or write it when updating."""
    path = GOLDEN / name
    if os.environ.get("DOCKTAP_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8", newline="\n")
        return
    assert path.exists(), f"{path} is missing: run with DOCKTAP_UPDATE_GOLDEN=1 to create it"
    expected = path.read_bytes().decode("utf-8")  # as written: no newline translation
    assert actual == expected, f"{name} differs from its golden file (DOCKTAP_UPDATE_GOLDEN=1)"
