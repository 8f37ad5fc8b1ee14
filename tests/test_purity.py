"""Sans-I/O, enforced: the pure modules cannot import asyncio, socket, select, subprocess, os
or time, and the I/O modules are the ones the project says they are.

The ban itself is ruff's banned-api rule (TID251), configured in pyproject.toml, so `ruff check`
fails on the import in an editor and in CI. These tests keep the configuration honest: each
pure module, by name (bodyframing.py too, whether it exists yet or not), is still under the ban,
a new module is under it until pyproject lists it as I/O, and what is exempt exists.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest
from ruff.__main__ import find_ruff_bin  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "docktap"
BANNED = ("asyncio", "os", "select", "socket", "subprocess", "time")

#: The modules that do no I/O: bytes and values in, values out.
PURE = (
    "observer.py",
    "frames.py",
    "bodyframing.py",
    "jsonstream.py",
    "events.py",
    "direction.py",
    "routes.py",
    "routes_table.py",
    "runline.py",
    "run_options.py",
    "messages.py",
    "filters.py",
    "redact.py",
    "explain.py",
    "audit.py",
    "tap.py",
    "capture/format.py",
    "capture/schema.py",
    "request/body.py",
    "request/gojson.py",
    "request/query.py",
    "request/schema_table.py",
    "recording/wire.py",
    "replay/match.py",
    "replay/store.py",
    "replay/script.py",
    "render/text.py",
    "render/kind.py",
    "render/refusal.py",
    "render/timeline.py",
    "render/stats.py",
    "render/markdown.py",
    "render/mermaid.py",
    "render/curl.py",
    "render/har.py",
    "render/audit.py",
    "render/html.py",
    "policy/model.py",
    "policy/schema.py",
    "policy/asks.py",
    "policy/decide.py",
    "policy/learn.py",
    "policy/text.py",
    "policy/check.py",
    "policy/gate.py",
    "policy/guard.py",
    "policy/export.py",
)


def _ruff(path: Path, source: str) -> subprocess.CompletedProcess[bytes]:
    """ruff's banned-api check of `source` as if it were the file at `path`."""
    command = ["check", "--no-cache", "--select", "TID251", "--output-format", "json"]
    return subprocess.run(
        [find_ruff_bin(), *command, "--stdin-filename", str(path), "-"],
        input=source.encode(),
        capture_output=True,
        cwd=ROOT,
        check=False,
    )


def _flagged(module: str, source: str) -> list[str]:
    """The banned imports ruff reports in `source` as if it were src/docktap/MODULE."""
    proc = _ruff(PACKAGE / module, source)
    assert proc.returncode in (0, 1), proc.stderr.decode()
    return sorted(str(item["message"]).split("`")[1] for item in json.loads(proc.stdout))


_SOURCE = "".join(f"import {name}\n" for name in BANNED) + "from os import PathLike\n"


@pytest.mark.parametrize("module", PURE)
def test_a_pure_module_may_not_import_io(module: str) -> None:
    assert _flagged(module, _SOURCE) == sorted([*BANNED, "os"])  # the from-import too


def test_a_new_module_is_pure_until_listed() -> None:
    assert _flagged("render/something_new.py", "import time\n") == ["time"]


def _exempt() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    ignores: dict[str, list[str]] = config["tool"]["ruff"]["lint"]["per-file-ignores"]
    return [path for path, rules in ignores.items() if "TID251" in rules]


def test_the_io_edge_is_exempt_and_exists() -> None:
    """Each module pyproject exempts is in the tree and may import what it needs."""
    edge = [path for path in _exempt() if not path.startswith("!")]
    assert "src/docktap/relay.py" in edge
    for path in edge:
        assert (ROOT / path).is_file(), f"pyproject exempts {path}, which is gone"
        assert _flagged(str(Path(path).relative_to("src/docktap")), _SOURCE) == []


def test_only_the_package_is_held_to_the_ban() -> None:
    for outside in ("tests/test_x.py", "bench/x.py", "scripts/x", "notebooks/x.py"):
        proc = _ruff(ROOT / outside, "import os\n")
        assert (proc.returncode, json.loads(proc.stdout)) == (0, []), outside
