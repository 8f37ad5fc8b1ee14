"""The audit's findings for people: a plain listing, a terminal table, a one-line warning.

`docktap.audit` decides what is risky; this module only says it. `text` is what `docktap audit`
prints to a file or a pipe (and what the golden files hold), `table` what it shows on a
terminal, and `warning` the line `docktap run --audit` prints the moment a risky call is made.
All three name the level, the rule and its CIS Docker Benchmark item the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from docktap.audit import Finding, counts, unread
from docktap.capture.reader import Capture
from docktap.render.text import format_offset, plural, wrap

if TYPE_CHECKING:
    from rich.console import RenderableType

#: Table row styles by level; the plain listing and the warnings have none.
STYLES = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": ""}
_INDENT = " " * 10
# Where a wrapped title or exchange line goes on: deeper than the lines of the block.
_HANGING = " " * 12
_FOOTNOTE = "see the CIS Docker Benchmark for the numbered items"


def _rule(finding: Finding) -> str:
    return f"{finding.rule} (CIS {finding.cis})" if finding.cis else finding.rule


def where(finding: Finding) -> str:
    """The exchange a finding is about, by the number `docktap show` prints: `#2 on conn 1`."""
    if not finding.number:
        return f"conn {finding.conn}"
    return f"#{finding.number} on conn {finding.conn}"


def summary(findings: list[Finding]) -> str:
    """`3 findings: 1 critical, 2 low`."""
    levels = ", ".join(f"{n} {level}" for level, n in counts(findings).items() if n)
    return f"{plural(len(findings), 'finding')}: {levels}"


def text(findings: list[Finding], width: int = 100) -> str:
    """Plain text: one block per finding, the most serious first, then a count per level.

    Every line fits `width` (40 at least): lines are wrapped at spaces, what continues the
    title or the exchange indented further; a word longer than its line is shortened with …,
    never split.
    """
    return "".join(block + "\n" for block, _ in listing(findings, width))


def listing(findings: list[Finding], width: int = 100) -> list[tuple[str, str]]:
    """The blocks of `text`, each with the style of its level (STYLES), for a console that
    colours them; blocks are separated by one blank line."""
    if not findings:
        return [("no findings", "")]
    width = max(40, width)
    blocks = []
    for f in findings:
        lines = wrap(f"{f.level.upper():<8}  {_rule(f)}: {f.title}", width, "", _HANGING)
        lines += wrap(
            f"{_INDENT}{where(f)} at {format_offset(f.started_mono)}  "
            f"{f.operation or '?'}  {f.method} {f.target}",
            width,
            "",
            _HANGING,
        )
        lines += wrap(f"{_INDENT}by {f.process.describe()}", width, "", _HANGING)
        lines += wrap(f.explanation, width, _INDENT, _INDENT)
        blocks.append(("\n".join(lines) + "\n", STYLES[f.level]))
    blocks.append(("\n".join(wrap(summary(findings), width) + wrap(_FOOTNOTE, width)), ""))
    return blocks


# Cells of the table's borders and padding: four columns, each padded by one cell either side.
_TABLE_FRAME = 13


def table(findings: list[Finding], width: int = 120) -> RenderableType:
    """The findings as a rich table `width` cells wide at most, for a terminal, with the count
    per level under it."""
    # rich is imported here: the plain listing, for files and pipes, does without it.
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    if not findings:
        return Text("no findings")
    grid = Table(show_lines=True)
    rows = [
        (
            f.level.upper(),
            f"{f.title}{f' (CIS {f.cis})' if f.cis else ''}\n{f.explanation}",
            f"{where(f)} {f.operation or '?'}\n{f.method} {f.target}",
            f.process.describe(),
        )
        for f in findings
    ]
    # A column is never narrower than its longest word, up to an equal share of the width,
    # so that words are wrapped whole; a word wider than its share is shortened with …,
    # never split.
    share = max(8, (width - _TABLE_FRAME - len("CRITICAL")) // 3)
    for index, name in enumerate(("level", "finding", "exchange", "process")):
        longest = max(len(word) for row in rows for word in row[index].split())
        grid.add_column(name, min_width=min(longest, share), overflow="ellipsis")
    for f, row in zip(findings, rows, strict=True):
        grid.add_row(*row, style=STYLES[f.level])
    return Group(grid, Text(summary(findings)), Text(_FOOTNOTE))


def warning(finding: Finding) -> str:
    """One line for stderr while the command runs, naming who made the risky call."""
    number = f"#{finding.number} " if finding.number else ""
    return (
        f"docktap audit: {finding.level.upper()} {_rule(finding)}: {finding.title} "
        f"[{number}{finding.operation} by {finding.process.describe()}]"
    )


def unread_lines(capture: Capture) -> list[str]:
    """A sentence per connection whose traffic reached the daemon unread (`audit.unread`).

    Every view of a capture (`show`, each export) says so, since what it shows of those
    connections is not all the daemon was asked.
    """
    return [f"{f.level.upper()} {_rule(f)}: {f.title}. {f.explanation}" for f in unread(capture)]
