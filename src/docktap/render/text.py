"""How the renderers write sizes, durations, times and ids, and fit text to a width.

Every view of a capture (the timeline, the live view, stats, the Markdown report, the Mermaid
diagram, the audit) says "2.0K", "852.9ms", "0.017s" or "e2f981d5cba0" the same way, because
they all take it from here. One rule each:

- sizes are in powers of 1024, as `ls -h` writes them: `500B`, `2.0K`, `10K`, `1.5M`, never more
  than five characters, so they fit a narrow column;
- durations take at most seven characters: `7.5ms`, `1.500s`, `1m01s`, `1h01m`;
- offsets (when something happened) are seconds since the capture started, to the millisecond;
  wall-clock times are UTC;
- 64-hex ids are cut to the 12 characters docker shows;
- text is measured in terminal cells (a CJK character takes two): `fit` cuts with `…`, `pad`
  fits and fills, `fold` cuts into pieces without losing anything (after a space where it
  can), `wrap` breaks prose at spaces only (a word too long for a line of its own is
  cut with `…`, never split), and `clean` makes text a container wrote safe to print;
- bytes are shown as text when `is_text` says they are, else as a hex preview (`hex_preview`),
  never as mojibake: a body, stdin, a container's output alike.

Pure string functions: no terminal, no clock.
"""

from __future__ import annotations

import codecs
import datetime as dt
import re

from rich.cells import cell_len, chop_cells, set_cell_size

_SIZE_UNITS = "KMGT"
_LONG_ID_TAIL = re.compile(r"(?<=\b[0-9a-f]{12})[0-9a-f]{52}\b")
# Terminal control sequences in container output (CSI such as colours, OSC such as titles):
# dropped, since they would act on the reader's terminal. Other control characters are escaped.
_ESCAPES = re.compile(r"\x1b\[[0-9:;<=>?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?")
_CONTROLS = {
    code: f"\\x{code:02x}" for code in [*range(0x00, 0x20), *range(0x7F, 0xA0)] if code != 0x09
}


# -- numbers --------------------------------------------------------------------------------


def format_size(size: int) -> str:
    """Bytes in powers of 1024 (`500B`, `1.5K`, `10K`, `3.0M`), five characters at most."""
    if size < 1024:
        return f"{size}B"
    value = float(size)
    for unit in _SIZE_UNITS:
        value /= 1024
        if value < 9.95:
            return f"{value:.1f}{unit}"
        if value < 1023.5 or unit == _SIZE_UNITS[-1]:
            return f"{value:.0f}{unit}"
    raise AssertionError("unreachable")


def format_duration(seconds: float | None) -> str:
    """A duration in at most seven characters; `open` when the exchange never ended."""
    if seconds is None:
        return "open"
    if seconds < 0.99995:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 59.9995:
        return f"{seconds:.3f}s"
    if seconds < 3600:
        minutes, rest = divmod(int(seconds), 60)
        return f"{minutes}m{rest:02d}s"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m"


def format_offset(seconds: float) -> str:
    """When something happened, in seconds since the capture started: `0.017s`."""
    return f"{seconds:.3f}s"


def plural(n: int, word: str) -> str:
    """`1 exchange`, `2 exchanges`."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# -- times and ids ----------------------------------------------------------------------------


def iso_time(epoch: float) -> str:
    """ISO 8601 in UTC with milliseconds, e.g. `2026-11-27T22:12:08.362Z`, for files."""
    moment = dt.datetime.fromtimestamp(epoch, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def clock_time(epoch: float) -> str:
    """The time in UTC to the second, e.g. `2026-11-27 22:12:08 UTC`, for people."""
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def shorten_ids(text: str) -> str:
    """64-hex ids (containers, images, execs) cut to the 12 characters docker shows."""
    return _LONG_ID_TAIL.sub("", text) if len(text) >= 64 else text


# -- text in terminal cells -------------------------------------------------------------------


def clean(text: str) -> str:
    """Text safe to print: terminal escape sequences dropped, other controls made visible."""
    if text.isprintable():
        return text
    return _ESCAPES.sub("", text).translate(_CONTROLS).expandtabs(8)


def text_lines(data: bytes | bytearray) -> list[str]:
    """Bytes of output as display lines: `\\r\\n` or `\\n` ends a line, the rest cleaned."""
    text = data.decode("utf-8", errors="replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [clean(line.removesuffix("\r")) for line in lines]


def is_text(data: bytes | bytearray) -> bool:
    """Whether bytes are text to show as such: UTF-8 with no NUL (binary formats are full of
    them). A character cut at the very end counts as text: a capture's cap cuts anywhere."""
    if b"\x00" in data:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
    except UnicodeDecodeError:
        return False
    return True


#: Bytes of a hex preview: four lines of sixteen.
HEX_PREVIEW = 64


def hex_preview(data: bytes | bytearray, limit: int = HEX_PREVIEW) -> list[str]:
    """The first `limit` bytes as `hexdump -C` lines, then how much more there is."""
    preview = bytes(data[:limit])
    lines = []
    for offset in range(0, len(preview), 16):
        chunk = preview[offset : offset + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        shown = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}  {hexes:<47}  |{shown}|")
    if len(data) > len(preview):
        lines.append(f"… {format_size(len(data) - len(preview))} more")
    return lines


def width_of(text: str) -> int:
    """How many terminal cells `text` takes."""
    return len(text) if text.isascii() else cell_len(text)


def fit(text: str, width: int) -> str:
    """At most `width` cells, with `…` where it was cut."""
    if width <= 0:
        return ""
    if text.isascii():
        return text if len(text) <= width else text[: width - 1] + "…"
    if cell_len(text) <= width:
        return text
    return set_cell_size(text, width - 1) + "…"


def pad(text: str, width: int) -> str:
    """Fitted to exactly `width` cells."""
    if width <= 0:
        return ""
    if text.isascii():
        return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"
    return set_cell_size(fit(text, width), width)


def fold(text: str, width: int) -> list[str]:
    """Cut into pieces of at most `width` cells, nothing lost (for headers and bodies): after
    a space where there is one, so that only a word longer than a whole line is cut."""
    if width <= 0:
        return [text]
    pieces: list[str] = []
    rest = text
    while width_of(rest) > width:
        head = rest[:width] if rest.isascii() else chop_cells(rest, width)[0]
        cut = head.rfind(" ") + 1  # the space stays at the end of the piece it ends
        if not head[:cut].strip():
            cut = len(head)
        pieces.append(rest[:cut])
        rest = rest[cut:]
    pieces.append(rest)
    return pieces


def wrap(text: str, width: int, indent: str = "", hanging: str = "") -> list[str]:
    """Lines of at most `width` cells, broken at spaces: `indent` before the first, `hanging`
    before the others; a word too long for a line of its own is cut with `…` (see `fit`)."""
    import textwrap  # here: most rows and the live rows' recorder never wrap a line

    lines = textwrap.wrap(
        text,
        width=width,
        initial_indent=indent,
        subsequent_indent=hanging,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return [fit(line, width) for line in lines]
