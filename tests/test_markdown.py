"""`docktap export --format markdown`: a report with summary, timeline, diagram, explanations."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from golden import ALL_CAPTURES, CAPTURES, GOLDEN_CAPTURES, check_golden
from synthetic import attach_of

from docktap import load
from docktap.capture.reader import loads
from docktap.cli import main
from docktap.console import make_console
from docktap.explain import explain
from docktap.render import curl, har, markdown, mermaid, stats


def _section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(f"## {title}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def _table_rows(lines: list[str]) -> list[list[str]]:
    """Cells of the table rows (header and rule excluded), split on unescaped pipes."""
    rows = [line for line in lines if line.startswith("| ")]
    return [
        [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]
        for row in rows
        if not set(row) <= set("|-: ")
    ]


@pytest.mark.parametrize("path", ALL_CAPTURES, ids=[p.stem for p in ALL_CAPTURES])
def test_every_capture_gives_a_report(path: Path) -> None:
    capture = load(path)
    text = markdown.render(capture)
    assert text.startswith("# docktap capture")
    titles = [line for line in text.splitlines() if line.startswith("## ")]
    assert titles == ["## Summary", "## Timeline", "## Sequence diagram", "## Exchanges"]
    timeline = _table_rows(_section(text, "Timeline"))
    assert len(timeline) == 1 + len(capture)  # the header row, then one row per exchange
    assert all(len(row) == 7 for row in timeline)
    assert [row[0] for row in timeline[1:]] == [f"#{ex.number}" for ex in capture]
    assert f"```mermaid\n{mermaid.render(capture)}```\n" in text
    exchanges = [line for line in _section(text, "Exchanges") if line.startswith("- **")]
    assert len(exchanges) == len(capture)
    for line, ex in zip(exchanges, capture, strict=True):
        assert line.startswith(f"- **#{ex.number} {ex.operation}**")
        what = explain(ex.operation or "")
        if what:
            assert line.endswith(f": {what}")


def test_summary_counts_and_errors() -> None:
    text = markdown.render(load(CAPTURES / "pull-error.jsonl"))
    summary = dict((row[0], row[1]) for row in _table_rows(_section(text, "Summary")) if row[0])
    assert summary["exchanges"] == "2"
    assert summary["connections"] == "1"
    assert summary["errors"].startswith("1 exchanges failed")
    assert "| ImageCreate | 1 | 500 |" in text
    assert 'the daemon said: `Get "http://127.0.0.1:9/v2/"' in text


def test_streams_show_output() -> None:
    text = markdown.render(load(CAPTURES / "run-stdin.jsonl"))
    assert "  - stdin:\n\n    ```text\n" in text
    assert "| 101 UPGRADED | " in text
    assert "(hijack)" in text


def test_binary_stdin_is_a_hex_preview_text_output_is_text() -> None:
    text = markdown.render(attach_of(b"\x1f\x8b\x08\x00\xff", b"h\xc3\xa9\r\n"))
    stdin = text.index("  - stdin:")
    assert text[stdin:].startswith(
        "  - stdin:\n\n    ```text\n    00000000  " + "1f 8b 08 00 ff".ljust(47) + "  |.....|\n"
    )
    assert "    ```text\n    hé\n" in text[text.index("  - stdout:") :]
    assert "\ufffd" not in text


def test_terminal_escapes_in_output_do_not_reach_the_report() -> None:
    # A container's title (OSC) and colour (CSI) sequences would act on the terminal the
    # report is printed to; `docktap export` prints to stdout by default. Other controls are
    # shown as `show` shows them.
    output = b"a\x1b]0;evil\x07\x1b[31mred\x1b[0m\r\nx\bz\n"
    text = markdown.render(attach_of(b"", output))
    assert "    ```text\n    ared\n    x\\x08z\n    ```" in text[text.index("  - stdout:") :]
    assert not {chr(c) for c in range(32) if c != 10} & set(text)


def test_code_spans_survive_backticks_and_pipes() -> None:
    assert markdown.code("a`b") == "``a`b``"
    assert markdown.code("`x`") == "`` `x` ``"
    assert markdown.code("a|b", in_table=True) == "`a\\|b`"


@pytest.mark.parametrize("name", GOLDEN_CAPTURES)
def test_golden(name: str) -> None:
    check_golden(f"markdown-{name}.md", markdown.render(load(CAPTURES / f"{name}.jsonl")))


def test_cli_output_file(tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    path = str(CAPTURES / "build.jsonl")
    result = CliRunner().invoke(main, ["export", path, "--format", "markdown", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == markdown.render(load(path))
    assert out.stat().st_mode & 0o777 == 0o600
    missing = CliRunner().invoke(main, ["export", path, "--format", "pdf"])
    assert missing.exit_code == 2
    unwritable = CliRunner().invoke(
        main, ["export", path, "-f", "markdown", "-o", str(tmp_path / "no" / "such.md")]
    )
    assert unwritable.exit_code == 1
    assert "cannot write" in unwritable.output


def test_every_renderer_copes_with_an_empty_capture() -> None:
    capture = loads(
        '{"type":"capture","format":"docktap-capture","version":1,"docktap":"0.1.0",'
        '"started":1800000000.0,"upstream":"unix:///x.sock","command":null,"max_body":0,'
        '"t":1800000000.0,"mono":0.0}\n'
    )
    assert "0 exchanges on 0 connections" in stats.render(
        stats.compute(capture), make_console(io.StringIO(), False, 120)
    )
    assert har.to_har(capture)["log"]["entries"] == []
    assert mermaid.render(capture) == "sequenceDiagram\n    participant D as dockerd\n"
    assert curl.render(capture).startswith("#!/bin/sh\n# 0 Docker Engine API requests")
    report = markdown.render(capture)
    assert report.startswith("# docktap capture\n")
    assert "**cut short**" in report
