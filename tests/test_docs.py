"""docs/how-docker-sock-works.md quotes real traffic; these tests keep every quote true.

The page teaches from excerpts of the shipped captures. A capture re-recorded, renamed or
removed, or a change to what `docktap show` prints, would leave the page quoting traffic that no
longer exists. So each fenced block is checked against its source:

* ```json blocks: each line is a record that must appear, verbatim, as a line of the capture
  file named last before the block (`captures/NAME.jsonl`);
* ```text blocks that start with `$ docktap ...`: the command is run, and the lines quoted must
  be lines it prints, in order; a line `…` stands for lines left out, and the lines between two
  `…` must be consecutive in the output;
* ```http blocks: raw HTTP (with `\\n` for CRLF) that must appear in the byte script named last
  before the block (`tests/data/bytescripts/NAME.json`).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from docktap import load
from docktap.render.web import page

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "how-docker-sock-works.md"

# A file the page names as a source: a capture, or a byte script.
_SOURCE = re.compile(r"(?<![\w/.-])((?:captures|tests/data/bytescripts)/[\w.-]+\.jsonl?)\b")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
_ELIDED = "…"


@dataclass(frozen=True)
class Block:
    kind: str  # the fence's language: json, text, http, sh...
    body: str
    source: str | None  # the last source file named before the block
    line: int  # where the block starts in the page, for messages

    @property
    def where(self) -> str:
        return f"{DOC.name}:{self.line}"


def blocks() -> list[Block]:
    text = DOC.read_text(encoding="utf-8")
    found: list[Block] = []
    for fence in _FENCE.finditer(text):
        before = _SOURCE.findall(text, 0, fence.start())
        found.append(
            Block(
                kind=fence.group(1),
                body=fence.group(2),
                source=before[-1] if before else None,
                line=text.count("\n", 0, fence.start()) + 1,
            )
        )
    return found


BLOCKS = blocks()
JSON_BLOCKS = [b for b in BLOCKS if b.kind == "json"]
COMMAND_BLOCKS = [b for b in BLOCKS if b.kind == "text" and b.body.startswith("$ docktap ")]
HTTP_BLOCKS = [b for b in BLOCKS if b.kind == "http"]


def test_the_page_quotes_each_kind() -> None:
    # Guards against a parsing slip that would silently check nothing.
    assert len(JSON_BLOCKS) >= 15
    assert len(COMMAND_BLOCKS) >= 5
    assert len(HTTP_BLOCKS) >= 2


def test_every_named_file_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    named = set(_SOURCE.findall(text))
    assert named, "the page names no capture"
    missing = sorted(name for name in named if not (ROOT / name).is_file())
    assert not missing, f"{DOC.name} names files that do not exist: {missing}"


def test_every_relative_link_resolves() -> None:
    text = DOC.read_text(encoding="utf-8")
    targets = [t for t in _LINK.findall(text) if "://" not in t]
    assert targets
    broken = sorted(t for t in targets if not (DOC.parent / t).exists())
    assert not broken, f"{DOC.name} links to missing files: {broken}"


@pytest.mark.parametrize("block", JSON_BLOCKS, ids=[b.where for b in JSON_BLOCKS])
def test_quoted_records_are_in_the_named_capture(block: Block) -> None:
    assert block.source and block.source.startswith("captures/"), (
        f"{block.where}: no capture named before this block"
    )
    lines = set((ROOT / block.source).read_text(encoding="utf-8").split("\n"))
    for quoted in block.body.splitlines():
        assert quoted in lines, f"{block.where}: not a line of {block.source}: {quoted[:120]}"


def run_docktap(command: str) -> list[str]:
    args = shlex.split(command.removeprefix("$ docktap "))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}
    env["NO_COLOR"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "docktap", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
        timeout=60,
    )
    # `docktap audit` exits 1 only with --fail-on; anything else non-zero is a broken command.
    assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stderr}"
    return [line.rstrip() for line in done.stdout.splitlines()]


def chunks(quoted: list[str]) -> list[list[str]]:
    """The quoted output cut at `…` lines: each piece must appear in one run of lines."""
    pieces: list[list[str]] = [[]]
    for line in quoted:
        if line.strip() == _ELIDED:
            pieces.append([])
        else:
            pieces[-1].append(line.rstrip())
    return [piece for piece in pieces if piece]


def find_run(lines: list[str], piece: list[str], start: int) -> int:
    """Where `piece` starts as consecutive lines of `lines` at or after `start`; -1 if nowhere."""
    for at in range(start, len(lines) - len(piece) + 1):
        if lines[at : at + len(piece)] == piece:
            return at
    return -1


@pytest.mark.parametrize("block", COMMAND_BLOCKS, ids=[b.where for b in COMMAND_BLOCKS])
def test_quoted_command_output_is_what_docktap_prints(block: Block) -> None:
    command, *quoted = block.body.splitlines()
    printed = run_docktap(command)
    pieces = chunks(quoted)
    assert pieces, f"{block.where}: a command with no output quoted"
    position = 0
    for piece in pieces:
        at = find_run(printed, piece, position)
        assert at >= 0, (
            f"{block.where}: `{command}` does not print, in this order:\n"
            + "\n".join(piece)
            + "\n--- it prints ---\n"
            + "\n".join(printed)
        )
        position = at + len(piece)


def script_bytes(path: Path) -> bytes:
    """Everything one byte script carried, each direction's chunks in order."""
    steps = json.loads(path.read_text(encoding="utf-8"))["steps"]
    sides: dict[str, bytes] = {}
    for step in steps:
        if "b64" in step:
            sides[step["dir"]] = sides.get(step["dir"], b"") + base64.b64decode(step["b64"])
    return b"\0".join(sides.values())  # a NUL never occurs in an HTTP head: no false joins


@pytest.mark.parametrize("block", HTTP_BLOCKS, ids=[b.where for b in HTTP_BLOCKS])
def test_quoted_http_is_in_the_named_byte_script(block: Block) -> None:
    assert block.source and block.source.startswith("tests/data/bytescripts/"), (
        f"{block.where}: no byte script named before this block"
    )
    wire = block.body.replace("\n", "\r\n").encode("utf-8")
    assert wire in script_bytes(ROOT / block.source), (
        f"{block.where}: these bytes are not in {block.source}:\n{block.body}"
    )


PAGES = ROOT / "docs" / "pages"
CAPTURES = sorted((ROOT / "captures").glob("*.jsonl"))


@pytest.mark.parametrize("capture", CAPTURES, ids=[c.stem for c in CAPTURES])
def test_the_web_page_of_each_capture_matches_it(capture: Path) -> None:
    committed = PAGES / f"{capture.stem}.html"
    assert committed.is_file(), f"{committed} is missing: run scripts/gen-pages"
    wanted = page(load(capture), capture.name)
    assert committed.read_text(encoding="utf-8") == wanted, (
        f"{committed} is stale: run scripts/gen-pages"
    )


def test_every_web_page_has_its_capture() -> None:
    pages = sorted(p.stem for p in PAGES.glob("*.html"))
    assert pages == sorted(c.stem for c in CAPTURES)


def test_the_page_links_the_web_page_of_each_capture_it_quotes() -> None:
    text = DOC.read_text(encoding="utf-8")
    quoted = {Path(name).stem for name in _SOURCE.findall(text) if name.startswith("captures/")}
    linked = {Path(t).stem for t in _LINK.findall(text) if t.startswith("pages/")}
    assert quoted and quoted <= linked, f"no link to the pages of {sorted(quoted - linked)}"
