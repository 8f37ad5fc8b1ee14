"""A capture as a Markdown report, to read on GitHub or paste into an issue.

The report has a title naming the recorded command, a summary (counts, duration, errors,
calls per operation), a timeline table with one row per exchange, the Mermaid sequence diagram
(GitHub draws ```mermaid blocks), and a list of the exchanges, each with a sentence from
`docktap.explain` saying what the operation does, the daemon's error message when it refused,
and a glimpse of any container output.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter

from docktap import explain, jsonstream
from docktap.capture.reader import Capture, Exchange
from docktap.render import mermaid, stats
from docktap.render.audit import unread_lines
from docktap.render.kind import exchange_kind
from docktap.render.refusal import refusal, stream_error
from docktap.render.text import (
    format_duration,
    format_offset,
    format_size,
    hex_preview,
    is_text,
    iso_time,
    text_lines,
)

#: Output shown per stream in the exchange list, in characters.
MAX_OUTPUT = 400
_BACKTICKS = re.compile(r"`+")


def code(text: str, in_table: bool = False) -> str:
    """`text` as an inline code span; `in_table` also escapes the cell separator."""
    text = re.sub(r"[\r\n\t]", " ", text)
    longest = max((len(m) for m in _BACKTICKS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    span = f"{fence}{pad}{text}{pad}{fence}"
    return span.replace("|", "\\|") if in_table else span


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _fenced(text: str, info: str = "") -> list[str]:
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=2)
    fence = "`" * (longest + 1)
    return [fence + info, *text.rstrip("\n").split("\n"), fence]


def _status(ex: Exchange) -> str:
    if ex.status is None:
        return "no answer"
    return f"{ex.status} {ex.reason or ''}".strip()


def daemon_message(ex: Exchange) -> str | None:
    """The `message` of a Docker error answer, or of the last error in a JSON progress stream."""
    refused = refusal(ex)
    if refused is not None:
        return refused[:MAX_OUTPUT]
    if ex.status is None or ex.status >= 400 or not ex.response_body:
        return None
    if "application/json" not in (ex.header("Content-Type") or ""):
        return None
    found = None
    for message in jsonstream.split(bytes(ex.response_body)):
        # pull and build report failures inside a 200 stream
        error = stream_error(message.value) if message.valid else None
        if error is not None:
            found = error
    return found


def _is_error(ex: Exchange) -> bool:
    return ex.status is None or ex.status >= 400 or bool(ex.errors)


def _title(capture: Capture) -> str:
    argv = capture.header.get("command")
    if argv:
        return f"# docktap capture of {code(shlex.join(argv))}"
    return "# docktap capture"


def _summary(capture: Capture) -> list[str]:
    numbers = stats.compute(capture)
    totals = numbers["totals"]
    failed = sum(1 for ex in capture.exchanges if _is_error(ex))
    header = capture.header
    lines = []
    started = header.get("started")
    when = f"at {iso_time(started)} " if isinstance(started, int | float) else ""
    upstream = header.get("upstream")
    lines.append(
        f"Recorded {when}from {code(str(upstream))} by docktap {header.get('docktap', '?')}; "
        + (
            "closed cleanly."
            if capture.complete
            else "still being written."
            if capture.writing
            else "**cut short** (no end-of-capture record)."
        )
    )
    lines += [
        "",
        "## Summary",
        "",
        "| | |",
        "| --- | --- |",
        f"| exchanges | {totals['exchanges']} |",
        f"| connections | {totals['connections']} |",
        f"| duration | {format_duration(totals['duration_s'])} |",
        f"| errors | {failed} exchanges failed or unanswered, {totals['errors']} error records |",
        f"| hijacked / streamed | {totals['hijacked']} / {totals['streamed']} |",
        f"| bytes in / out | {format_size(totals['bytes_in'])} / "
        f"{format_size(totals['bytes_out'])} |",
        "",
        "| operation | calls | statuses | what it does |",
        "| --- | ---: | --- | --- |",
    ]
    statuses: dict[str | None, Counter[str]] = {}
    for ex in capture.exchanges:
        statuses.setdefault(ex.operation, Counter())[str(ex.status or "none")] += 1
    for op in numbers["operations"]:
        name = op["operation"]
        seen = statuses.get(name, Counter())
        counted = ", ".join(
            status if n == 1 else f"{status} ({n})" for status, n in sorted(seen.items())
        )
        what = (explain.explain(name) if name else None) or ""
        lines.append(
            f"| {_cell(name or '(unknown)')} | {op['count']} | {counted} | {_cell(what)} |"
        )
    return lines


def _timeline(capture: Capture) -> list[str]:
    lines = [
        "## Timeline",
        "",
        "| # | time | conn | operation | request | status | duration |",
        "| ---: | ---: | ---: | --- | --- | --- | ---: |",
    ]
    for ex in capture.exchanges:
        kind = exchange_kind(ex)
        duration = format_duration(ex.duration_s) + ("" if kind == "plain" else f" ({kind})")
        lines.append(
            f"| #{ex.number} | {format_offset(ex.started_mono)} | {ex.conn} | "
            f"{_cell(ex.operation or '(unknown)')} | "
            f"{code(mermaid.request_text(ex), in_table=True)} | {_cell(_status(ex))} | "
            f"{duration} |"
        )
    return lines


def _exchange(ex: Exchange) -> list[str]:
    name = ex.operation or "unknown operation"
    what = explain.explain(ex.operation) if ex.operation else None
    line = (
        f"- **#{ex.number} {name}** {code(mermaid.request_text(ex))} → {_status(ex)}, "
        f"{format_duration(ex.duration_s)}"
    )
    lines = [line + (f": {what}" if what else "")]
    message = daemon_message(ex)
    if message:
        lines.append(f"  - the daemon said: {code(message)}")
    for error in ex.errors:
        lines.append(f"  - docktap noted: {code(error)}")
    if ex.hijacked or ex.frames:
        for stream in ("stdin", "stdout", "stderr"):
            data = ex.output(stream)
            if not data:
                continue
            if is_text(data):
                # The lines as `show` prints them: a TTY's CR LF ends a line, and terminal
                # escapes are dropped, since the report is printed to terminals too.
                text = "\n".join(text_lines(data))
                if len(text) > MAX_OUTPUT:
                    text = text[:MAX_OUTPUT] + f"\n… ({format_size(len(data))} in all)"
            else:
                text = "\n".join(hex_preview(data))
            lines += [f"  - {stream}:", ""]
            lines += ["    " + part for part in _fenced(text, "text")]
            lines.append("")
    return lines


def render(capture: Capture) -> str:
    """The Markdown report, ending with a newline."""
    lines = [_title(capture), ""]
    unread = unread_lines(capture)
    if unread:
        lines += ["## Unread traffic", "", *(f"- **{line}**" for line in unread), ""]
    lines += [*_summary(capture), "", *_timeline(capture), ""]
    lines += ["## Sequence diagram", "", *_fenced(mermaid.render(capture), "mermaid"), ""]
    lines += ["## Exchanges", ""]
    for ex in capture.exchanges:
        lines += _exchange(ex)
    return "\n".join(lines) + "\n"
