"""The audit's views: the plain listing, the terminal table and the live warning line."""

from __future__ import annotations

import io

from golden import CAPTURES
from rich.console import Console

from docktap.audit import Finding, audit
from docktap.capture.reader import load
from docktap.render import audit as views


def _findings(name: str) -> list[Finding]:
    return audit(load(CAPTURES / f"{name}.jsonl"))


def _shown(renderable: object, colour: bool = False) -> str:
    out = io.StringIO()
    console = Console(
        file=out,
        width=160,
        height=25,
        force_terminal=colour,
        color_system="standard" if colour else None,
        force_jupyter=False,
        legacy_windows=False,
    )
    console.print(renderable)
    return out.getvalue()


def test_no_findings() -> None:
    assert views.text([]) == "no findings\n"
    assert _shown(views.table([])) == "no findings\n"


def test_summary_counts_each_level_the_most_serious_first() -> None:
    findings = _findings("socket-mount")
    summary = views.summary(findings)
    assert summary.startswith(f"{len(findings)} findings: 1 critical")
    assert views.text(findings).endswith(
        f"{summary}\nsee the CIS Docker Benchmark for the numbered items\n"
    )
    [one] = _findings("run")
    assert views.summary([one]) == "1 finding: 1 low"


def test_the_listing_wraps_explanations_at_the_width() -> None:
    findings = _findings("socket-mount")
    for width in (40, 60, 100):
        listed = views.text(findings, width=width)
        assert all(len(line) <= width for line in listed.splitlines())
        blocks = listed.split("\n\n")[:-1]  # the summary last
        assert len(blocks) == len(findings)
        for block, finding in zip(blocks, findings, strict=True):
            # A title or exchange too long for its line goes on under it, indented further.
            logical = block.replace("\n" + " " * 12, " ").split("\n")
            head, where, by, *explained = logical
            assert head.startswith(f"{finding.level.upper():<8}  {finding.rule}")
            exchange = f"#{finding.number} on " if finding.number else ""
            assert where.startswith(f"{' ' * 10}{exchange}conn {finding.conn} at ")
            assert by == f"{' ' * 10}by {finding.process.describe()}"
            assert all(len(line) <= width and line.startswith(" " * 10) for line in explained)
            assert " ".join(line.strip() for line in explained) == finding.explanation


def test_the_table_shows_each_finding_with_its_level_style() -> None:
    findings = _findings("socket-mount")
    plain = _shown(views.table(findings))
    for f in findings:
        assert f.level.upper() in plain
        assert f.process.describe() in plain
    assert "docker-socket-mount" not in plain  # the table names findings by their title
    assert "(CIS 5.31)" in plain
    assert views.summary(findings) in plain
    assert plain.rstrip().endswith("see the CIS Docker Benchmark for the numbered items")
    coloured = _shown(views.table(findings), colour=True)
    assert "\x1b[1;31mCRITICAL" in coloured  # bold red, as STYLES says
    assert views.STYLES["critical"] == "bold red"


def test_the_warning_line_names_rule_item_and_caller() -> None:
    socket = next(f for f in _findings("socket-mount") if f.rule == "docker-socket-mount")
    assert views.warning(socket) == (
        f"docktap audit: CRITICAL docker-socket-mount (CIS 5.31): {socket.title} "
        f"[#2 ContainerCreate by {socket.process.describe()}]"
    )
    [undigested] = _findings("run")
    assert undigested.cis is None
    assert views.warning(undigested).startswith("docktap audit: LOW image-without-digest: ")


def test_the_table_at_80_columns_keeps_every_word_whole() -> None:
    findings = _findings("socket-mount")
    console = Console(file=io.StringIO(), width=80, color_system=None, legacy_windows=False)
    console.print(views.table(findings, width=80))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert all(len(line) <= 80 for line in out.splitlines())
    shown = set(out.replace("│", " ").replace("┃", " ").split())
    for f in findings:
        for word in f"{f.title} {f.explanation} {f.process.describe()}".split():
            # a word wider than a column is shortened with …, never split
            assert word in shown or any(s.endswith("…") and word.startswith(s[:-1]) for s in shown)
