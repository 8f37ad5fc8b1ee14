"""A capture as a Mermaid `sequenceDiagram`: who asked the daemon what, and what came back.

One solid arrow per request (its exchange number as `docktap show` prints it, operation, method
and path, long ids shortened) and one dashed arrow back with the status, placed in the order
things happened: a long poll's answer shows up after the calls made while it waited. Notes mark
hijacked connections (with what went through them) and streamed answers. With a handful of
connections each gets its own participant, so parallel connections read as parallel lifelines;
with many, a single `client` participant is clearer and each message names its connection
instead.

Mermaid reads `;` and `#` specially even inside message text, and treats a few other characters
as markup, so all free text is escaped with Mermaid's `#code;` entities (which GitHub's
renderer supports) and cut short.
"""

from __future__ import annotations

import re

from docktap.capture.reader import Capture, Exchange
from docktap.render.audit import unread_lines
from docktap.render.kind import exchange_kind
from docktap.render.text import fit, format_duration, format_size, is_text, shorten_ids

#: At most this many connections get a participant each.
MAX_PARTICIPANTS = 6
#: Longest request text on an arrow, in cells as `render.text.fit` counts them (a wide
#: character takes two), before escaping.
MAX_TARGET = 72
#: Longest sample of stream output in a note, counted the same way.
MAX_SAMPLE = 40

_ENTITIES = {
    "#": "#35;",
    ";": "#59;",
    "<": "#lt;",
    ">": "#gt;",
    '"': "#quot;",
}
_ESCAPE = re.compile("[" + re.escape("".join(_ENTITIES)) + "]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_NAMES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """Text safe inside a Mermaid message or note: one line, no statement breaks."""
    text = _ESCAPE.sub(lambda m: _ENTITIES[m.group()], text)
    return _CONTROL.sub(lambda m: _CONTROL_NAMES.get(m.group(), " "), text)


def request_text(ex: Exchange) -> str:
    return fit(f"{ex.method} {shorten_ids(ex.target)}", MAX_TARGET)


def _sample(data: bytes) -> str:
    if not is_text(data):
        return f"{format_size(len(data))} of binary"
    text = data.decode("utf-8", errors="replace")
    return '"' + fit(text, MAX_SAMPLE) + '"'


def _stream_note(ex: Exchange) -> str:
    parts = []
    for name in ("stdin", "stdout", "stderr"):
        data = ex.output(name)
        if data:
            parts.append(f"{name} {_sample(data)}")
    what = ", ".join(parts) or "no output"
    if ex.hijacked:
        return f"hijacked ({ex.hijacked}): {what}"
    return f"framed output: {what}"


def render(capture: Capture) -> str:
    """The Mermaid source of the diagram, ending with a newline."""
    conns = sorted({ex.conn for ex in capture.exchanges})
    split = len(conns) <= MAX_PARTICIPANTS
    lines = ["sequenceDiagram"]
    if split:
        lines += [f"    participant C{n} as conn {n}" for n in conns]
    else:
        lines.append("    participant C as client")
    lines.append("    participant D as dockerd")
    lines += [f"    Note over D: {escape(line)}" for line in unread_lines(capture)]
    # (time, order, line): requests sort before answers that happened at the same moment.
    events: list[tuple[float, int, int, str]] = []
    for index, ex in enumerate(capture.exchanges):
        who = f"C{ex.conn}" if split else "C"
        prefix = "" if split else f"conn {ex.conn}: "
        label = ex.operation or "unknown operation"
        events.append(
            (
                ex.started_mono,
                0,
                index,
                f"    {who}->>D: {escape(f'#{ex.number} {prefix}{label} {request_text(ex)}')}",
            )
        )
        kind = exchange_kind(ex)
        if ex.status is not None:
            status = f"{ex.status} {ex.reason or ''}".strip()
            answered = ex.response_started_mono
            if kind == "stream" and ex.ended_mono is not None:
                took = format_duration(ex.ended_mono - ex.started_mono)
                status += f", body streamed for {took} ({format_size(ex.response_body_size)})"
                answered = ex.ended_mono
            elif kind == "hijack":
                status += f", connection hijacked ({ex.hijacked})"
            at = answered if answered is not None else ex.started_mono
            events.append((at, 1, index, f"    D-->>{who}: {escape(prefix + status)}"))
        else:
            at = ex.ended_mono if ex.ended_mono is not None else ex.started_mono
            events.append((at, 1, index, f"    Note over {who},D: {escape('no answer recorded')}"))
        if ex.hijacked or ex.frames:
            at = ex.ended_mono if ex.ended_mono is not None else ex.started_mono
            note = escape(prefix + _stream_note(ex))
            events.append((at, 2, index, f"    Note over {who},D: {note}"))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    lines += [line for *_, line in events]
    return "\n".join(lines) + "\n"
