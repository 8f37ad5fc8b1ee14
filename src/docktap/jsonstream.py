"""Split a stream of JSON messages into messages, whatever the chunks it arrives in.

Docker sends events, pull, push, build and load progress, and streamed stats as JSON values
one per line (`\\n`, or `\\r\\n` for the progress streams). Where one chunk or capture record
ends and the next begins means nothing: a message can be cut anywhere, and one chunk can carry
many messages. `JsonLines` keeps the unfinished tail of what it was fed and hands back only
whole lines, decoded. It is pure: bytes in, messages out, no I/O.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

#: A line longer than this without a newline is handed back as it is, so a stream that is not
#: line-delimited JSON after all cannot make the splitter hold an unbounded buffer.
MAX_LINE = 16 << 20


# A named tuple, not a frozen dataclass: `show` and the live rows import this module, and a
# dataclass costs 0.3-0.5 ms of CPU to define (docktap/values.py).
class Message(NamedTuple):
    """One line of the stream: its bytes and, when they are JSON, the value they hold."""

    raw: bytes  # the line without its line end
    value: Any = None  # the decoded JSON value; None when `valid` is False
    valid: bool = False  # the line is one JSON value
    partial: bool = False  # the stream ended (or the line grew past the limit) before its end


def decode(raw: bytes, partial: bool = False) -> Message:
    """A message from one line's bytes."""
    try:
        value = json.loads(raw)
    except ValueError:  # UnicodeDecodeError is a ValueError too
        return Message(raw, None, False, partial)
    return Message(raw, value, True, partial)


class JsonLines:
    """Incremental splitter: `feed` bytes as they come, get the messages they completed.

    Blank lines are skipped. A line that is not JSON is still a message, with `valid` False,
    so a reader can show what came instead of losing it.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._tail = b""

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the end of their line."""
        return len(self._tail)

    def feed(self, data: bytes) -> list[Message]:
        if not data:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            self._tail += data
            if len(self._tail) > self.max_line:
                return self.flush()
            return []
        block = self._tail + data[:end] if self._tail else data[:end]
        self._tail = data[end + 1 :]
        out = [decode(line.rstrip(b"\r")) for line in block.split(b"\n") if line.strip()]
        if len(self._tail) > self.max_line:
            out.extend(self.flush())
        return out

    def flush(self) -> list[Message]:
        """The unfinished last line, if any, as a partial message: the stream has ended."""
        tail, self._tail = self._tail, b""
        line = tail.rstrip(b"\r")
        return [decode(line, partial=True)] if line.strip() else []


def split(data: bytes) -> list[Message]:
    """All the messages of a finished stream, its unfinished last line included."""
    lines = JsonLines(max_line=len(data) + 1)
    return lines.feed(data) + lines.flush()
