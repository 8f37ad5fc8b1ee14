"""Which exchanges stayed open: a hijack, a stream or long poll, or a plain call.

Every view says how long an exchange took, and for most that is how fast the daemon answered.
Not for a hijacked attach or exec (how long the session lasted), nor for a stream or long poll
(`ContainerWait`, `logs -f`, events, pull and build progress: how long the client waited).
The timeline draws those with a span bar, stats counts them apart from the latencies of plain
calls, the Markdown report and the Mermaid diagram label them, HAR tags them. They all ask
here, so they agree.
"""

from __future__ import annotations

from typing import Literal

from docktap.capture.reader import Exchange

#: A body still arriving this long after the response head makes the exchange a stream.
STREAM_AFTER_S = 0.1

Kind = Literal["hijack", "stream", "plain"]


def exchange_kind(ex: Exchange) -> Kind:
    """`hijack`; `stream` for a stream, a long poll, or an exchange that never ended; `plain`.

    An exchange that never ended was still open when the capture stopped: whatever it was
    waiting for, it is not a quick call.
    """
    if ex.hijacked:
        return "hijack"
    ended = ex.ended_mono
    if ended is None:
        return "stream"
    head = ex.response_started_mono
    return "stream" if head is not None and ended - head >= STREAM_AFTER_S else "plain"


def stayed_open(ex: Exchange) -> bool:
    """Not a plain call: a hijack, a stream, a long poll, or never ended."""
    return exchange_kind(ex) != "plain"
