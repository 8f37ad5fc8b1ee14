"""`docktap export --format mermaid`: a sequenceDiagram GitHub can draw.

The structural tests always run. The real Mermaid parser runs too when DOCKTAP_MERMAID_DIR names
a folder with the npm packages `mermaid` and `jsdom` installed (`npm i --prefix DIR mermaid
jsdom`); it needs node but no browser.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from golden import ALL_CAPTURES, CAPTURES, GOLDEN_CAPTURES, check_golden
from synthetic import attach_of

from docktap import load
from docktap.cli import main
from docktap.render import mermaid

MERMAID_DIR = os.environ.get("DOCKTAP_MERMAID_DIR")

_PARTICIPANT = re.compile(r"    participant (C\d*|D) as [A-Za-z0-9 ]+")
_LINE = re.compile(r"    (?:(C\d*)->>D|D-->>(C\d*)|Note over (C\d*),D): (.+)")
_ENTITY = re.compile(r"#(?:\d+|[a-z]+);")


def check_structure(text: str) -> tuple[int, int, int]:
    """Every line is a statement this renderer writes, with text Mermaid reads as text.

    Returns the numbers of requests, answers and notes.
    """
    assert text.endswith("\n")
    lines = text.splitlines()
    assert lines[0] == "sequenceDiagram"
    declared: set[str] = set()
    counts = [0, 0, 0]
    for line in lines[1:]:
        declaration = _PARTICIPANT.fullmatch(line)
        if declaration:
            assert not any(counts), "participants come first"
            declared.add(declaration.group(1))
            continue
        statement = _LINE.fullmatch(line)
        assert statement, f"not a statement: {line!r}"
        request, answer, note, message = statement.groups()
        who = request or answer or note
        assert who in declared
        counts[0 if request else 1 if answer else 2] += 1
        plain = _ENTITY.sub("", message)
        assert not set(plain) & set(';#<>"'), f"unescaped text: {line!r}"
        assert "%%" not in plain[:2]
        assert message.strip() == message
    assert "D" in declared
    return counts[0], counts[1], counts[2]


@pytest.mark.parametrize("path", ALL_CAPTURES, ids=[p.stem for p in ALL_CAPTURES])
def test_every_capture_gives_a_well_formed_diagram(path: Path) -> None:
    capture = load(path)
    requests, answers, notes = check_structure(mermaid.render(capture))
    assert requests == len(capture)
    assert answers == sum(1 for ex in capture if ex.status is not None)
    assert notes == sum(1 for ex in capture if ex.hijacked or ex.frames)


def test_run_diagram() -> None:
    text = mermaid.render(load(CAPTURES / "run.jsonl"))
    assert "    participant C2 as conn 2\n" in text
    # Each request starts with its exchange number (`#3`, with # as Mermaid's entity).
    assert "C2->>D: #35;3 ContainerAttach POST /v1.41/containers/da20d04c6689/attach?" in text
    assert "D-->>C2: 101 UPGRADED, connection hijacked (tcp)" in text
    assert (
        "Note over C2,D: hijacked (tcp): stdout #quot;out\\n#quot;, stderr #quot;err\\n#quot;"
        in (text)
    )
    lines = text.splitlines()
    # The long poll answers last, after the calls made while it waited.
    assert lines[-1].startswith("    D-->>C1: 200 OK, body streamed for")
    assert re.search(r"[0-9a-f]{64}", text) is None  # long ids are shortened


def test_many_connections_share_one_participant() -> None:
    capture = load(CAPTURES / "docker-py.jsonl")
    assert len(capture.connections) > mermaid.MAX_PARTICIPANTS
    text = mermaid.render(capture)
    assert "    participant C as client\n" in text
    assert "C->>D: #35;13 conn 11: ExecStart POST /v1.41/exec/354ebc5622b5/start" in text
    check_structure(text)


def test_binary_stdin_is_named_by_its_size_not_shown() -> None:
    diagram = mermaid.render(attach_of(b"\x1f\x8b\x08\x00\xff", b"hi\n"))
    assert "hijacked (tcp): stdin 5B of binary, stdout #quot;hi" in diagram
    assert "\ufffd" not in diagram


def test_escape() -> None:
    assert mermaid.escape('a;b #1 <br> "q"') == "a#59;b #35;1 #lt;br#gt; #quot;q#quot;"
    assert mermaid.escape("line\r\nnext\tx\x00") == "line\\r\\nnext\\tx "


@pytest.mark.parametrize("name", GOLDEN_CAPTURES)
def test_golden(name: str) -> None:
    check_golden(f"mermaid-{name}.mmd", mermaid.render(load(CAPTURES / f"{name}.jsonl")))


def test_cli_prints_to_stdout() -> None:
    path = str(CAPTURES / "exec-it.jsonl")
    result = CliRunner().invoke(main, ["export", path, "-f", "mermaid"])
    assert result.exit_code == 0
    assert result.output == mermaid.render(load(path))


_PARSE = """
const { createRequire } = await import('node:module');
const { pathToFileURL } = await import('node:url');
const path = await import('node:path');
const dir = process.argv[2];
const require = createRequire(path.join(dir, 'package.json'));
const { JSDOM } = require('jsdom');
const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const entry = path.join(dir, 'node_modules', 'mermaid', 'dist', 'mermaid.core.mjs');
const mermaid = (await import(pathToFileURL(entry).href)).default;
mermaid.initialize({ startOnLoad: false });
const texts = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));
const out = [];
for (const text of texts) {
  try { out.push({ ok: true, type: (await mermaid.parse(text)).diagramType }); }
  catch (e) { out.push({ ok: false, error: String(e.message || e) }); }
}
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(
    not MERMAID_DIR or shutil.which("node") is None,
    reason="set DOCKTAP_MERMAID_DIR to a folder with npm's mermaid and jsdom (and have node)",
)
def test_mermaid_parses_every_diagram(tmp_path: Path) -> None:
    assert MERMAID_DIR is not None
    script = tmp_path / "parse.mjs"
    script.write_text(_PARSE)
    texts = [mermaid.render(load(path)) for path in ALL_CAPTURES]
    texts.append("sequenceDiagram\n    A->>B hello\n")  # the parser does reject bad syntax
    result = subprocess.run(
        ["node", str(script), MERMAID_DIR],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    verdicts = json.loads(result.stdout)
    *good, bad = verdicts
    assert not bad["ok"]
    for path, verdict in zip(ALL_CAPTURES, good, strict=True):
        assert verdict == {"ok": True, "type": "sequence"}, (path.name, verdict)
