"""The timeline: one row per exchange in time order, with what it carried beneath it.

A row gives the exchange number (`#N`, the capture's numbering of exchanges, see
`Exchange.number`), the time since the capture started, a lane column, the connection, the
operation, the request, its status, how long it took and how many bytes went each way. Each
connection gets its own colour and a lane: a narrow column of markers (`●` for the row's own
exchange, `│` for an exchange of another connection still in flight), so concurrent calls, such
as the ContainerWait long poll beside ContainerAttach, show side by side. Under a row come its
streams: container output demultiplexed (stdout plain, `stderr>` red, `stdin>` what the client
sent), JSON message streams one message a line, how long a long poll stayed open, and, on
request, bodies and a one-line explanation.

Everything here is pure: it takes exchanges and options and yields `Line`s, a text and its
rich `Span`s (printable as a `rich.text.Text`): one for each exchange (its row and the lines
under it, so a live view can print it in one write), plus a title, column heads and a summary;
every line is already fitted to the width, nothing is left for the console to wrap. The
caller owns the Console. Fixed columns drawn line by line instead of a `rich.table.Table`
(which measures every cell) keep a capture of a hundred thousand exchanges fast. Sizes,
durations and fitting follow the renderers' shared rules in `docktap.render.text`.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol

from rich.highlighter import JSONHighlighter
from rich.text import Span, Text

from docktap import jsonstream
from docktap.capture.reader import Capture, Exchange, Incident, in_time_order
from docktap.render.kind import stayed_open
from docktap.render.refusal import refusal, stream_error
from docktap.render.text import (
    clean,
    clock_time,
    fit,
    fold,
    format_duration,
    format_offset,
    format_size,
    hex_preview,
    is_text,
    pad,
    plural,
    shorten_ids,
    text_lines,
    width_of,
    wrap,
)
from docktap.routes import VERSION_PREFIX

Explainer = Callable[[str], str | None]

#: Operations whose successful responses are streams of JSON messages.
JSON_STREAM_OPERATIONS = frozenset(
    {
        "SystemEvents",
        "ImageCreate",
        "ImageBuild",
        "ImageLoad",
        "ImagePush",
        "ContainerStats",
        "PluginPull",
        "PluginUpgrade",
        "PluginPush",
    }
)

# Operations whose answers have something to show under the row even when quick.
_STREAMING = JSON_STREAM_OPERATIONS | {"ContainerWait", "ContainerLogs"}

CONN_COLOURS = (
    "cyan",
    "magenta",
    "green",
    "yellow",
    "blue",
    "bright_cyan",
    "bright_magenta",
    "bright_green",
    "bright_yellow",
    "bright_blue",
)

_JSON_HIGHLIGHTER = JSONHighlighter()

# What an incident's row says in the operation column, by the kind of its error record.
_INCIDENT_LABELS = {
    "protocol": "protocol error",
    "upstream": "upstream error",
    "capture": "capture error",
    "unparsed": "unparsed bytes",
}


# Named tuples, not frozen dataclasses: `show` and the live rows of `run` import this module,
# and a dataclass costs 0.3-0.5 ms of CPU to define (docktap/values.py).
class TimelineOptions(NamedTuple):
    width: int = 120
    styled: bool = True  # False: plain text without styles (faster; for files and NO_COLOR)
    bodies: bool = False  # JSON bodies pretty-printed, binary ones as size and hex preview
    headers: bool = False  # every request header (`>`) and response header (`<`), as recorded
    explain: Explainer | None = None  # one line about each operation, under its row
    max_lines: int = 10  # stream lines shown per exchange (first and last ones); 0: all
    max_lanes: int = 8  # lane columns at most; busier moments share the last one
    header: bool = True  # a title, column heads and a closing summary around the rows


# -- small formatting helpers -------------------------------------------------------------------


def status_style(status: int | None) -> str:
    if status is None:
        return "dim"
    if status == 101 or status < 200:
        return "magenta"
    if status < 300:
        return "green"
    if status < 400:
        return "cyan"
    if status < 500:
        return "yellow"
    return "red"


def conn_colour(conn: int) -> str:
    return CONN_COLOURS[(conn - 1) % len(CONN_COLOURS)]


def size_cell(size: int) -> str:
    """A size in a column, where `-` says nothing went that way."""
    return format_size(size) if size > 0 else "-"


# -- lines and their styles -----------------------------------------------------------------


class Line(NamedTuple):
    """One rendered line, or a row with the lines under it: its text and where its styles go.

    What a `rich.text.Text` would hold, without building one: `Text()` strips control codes
    from what it is given, which costs more than drawing the row, and a plain listing never
    needs it. Every string here went through `clean` (or is made of digits and names), so the
    Text rich builds from it, when the line is printed, has exactly this text and these spans.
    """

    plain: str
    spans: list[Span]

    def to_text(self) -> Text:
        return Text(self.plain, spans=list(self.spans), no_wrap=True, overflow="crop")

    def __rich__(self) -> Text:
        return self.to_text()


def _styled(text: str, style: str, styled: bool) -> Line:
    return Line(text, [Span(0, len(text), style)] if styled and text else [])


Segment = tuple[str, str | None]
Content = list[Segment] | Text  # one detail line, before indentation


# -- layout ---------------------------------------------------------------------------------


class Layout(NamedTuple):
    """Column widths of the timeline. `target` takes what the others leave.

    The row reads: exchange number, time, lanes, connection, operation, request, status, how
    long it took, and (when they fit) bytes sent and received.
    """

    width: int = 120
    time: int = 9
    lanes: int = 1
    conn: int = 3
    op: int = 20
    sizes: bool = True
    number: int = 3  # the exchange number, `#12`

    @classmethod
    def fitted(
        cls,
        width: int,
        time: int,
        lanes: int,
        conn: int,
        op: int,
        sizes: bool = True,
        number: int = 3,
    ) -> Layout:
        layout = cls(width, time, lanes, conn, op, sizes, number)
        if layout.target < 24 and sizes:
            layout = cls(width, time, lanes, conn, op, False, number)
        if layout.target < 16:
            op = max(12, op - (16 - layout.target))
            layout = cls(width, time, lanes, conn, op, False, number)
        return layout

    @property
    def lead(self) -> int:
        """Where the lane column starts: after the exchange number and the time."""
        return self.number + 1 + self.time + 1

    @property
    def indent(self) -> int:
        """Where the operation column, and the lines under a row, start."""
        return self.lead + self.lanes + 1 + self.conn + 1

    @property
    def right(self) -> int:
        return 1 + 3 + 1 + 7 + (14 if self.sizes else 0)

    @property
    def target(self) -> int:
        return self.width - self.indent - self.op - 1 - self.right

    @property
    def content(self) -> int:
        return max(8, self.width - self.indent - 2)


class Marks(NamedTuple):
    """The lane column of a row and of the lines under it, one character a lane."""

    row: str
    detail: str
    styles: tuple[str | None, ...]


class Spanned(Protocol):
    """What takes a lane: an exchange, or an incident (a moment on its connection)."""

    @property
    def conn(self) -> int: ...

    @property
    def started_mono(self) -> float: ...

    @property
    def ended_mono(self) -> float | None: ...


class _Moment(NamedTuple):
    """An incident as the lanes see it; one of no connection takes a lane of its own (0)."""

    conn: int
    started_mono: float
    ended_mono: float


def moment(incident: Incident) -> _Moment:
    conn = incident.conn if incident.conn is not None else 0
    return _Moment(conn, incident.mono, incident.mono)


class Lanes:
    """Lanes for exchanges (and incidents) seen in start order, as `show` draws them.

    Each connection keeps one lane from its first exchange's start to its last one's end;
    lanes are handed out lowest first and reused once free. `marks` must be called for the
    exchanges in start order: it sweeps through time to know what is in flight.
    """

    def __init__(self, exchanges: Sequence[Spanned], max_lanes: int = 8) -> None:
        first: dict[int, float] = {}
        last: dict[int, float] = {}
        for ex in exchanges:
            conn = ex.conn
            if conn not in first:
                first[conn] = ex.started_mono
            end = ex.ended_mono if ex.ended_mono is not None else math.inf
            if end > last.get(conn, -math.inf):
                last[conn] = end
        self.lane: dict[int, int] = {}
        busy: list[tuple[float, int]] = []
        free: list[int] = []
        used = 0
        for conn in sorted(first, key=lambda c: (first[c], c)):
            start = first[conn]
            while busy and busy[0][0] <= start:
                heapq.heappush(free, heapq.heappop(busy)[1])
            if free:
                lane = heapq.heappop(free)
            else:
                lane, used = used, used + 1
            self.lane[conn] = lane
            heapq.heappush(busy, (last[conn], lane))
        self.count = max(1, min(used, max(1, max_lanes)))
        self._in_flight = [0] * self.count
        self._owner: list[int | None] = [None] * self.count
        self._ends: list[tuple[float, int, int]] = []
        self._drawn: dict[tuple[int, int, bool], tuple[str, str]] = {}
        self._busy = 0  # bit n: lane n has an exchange in flight
        self._no_styles: tuple[str | None, ...] = (None,) * self.count

    def column(self, conn: int) -> int:
        return min(self.lane.get(conn, 0), self.count - 1)

    def marks(self, ex: Spanned, spans: bool, styled: bool = True) -> Marks:
        now = ex.started_mono
        ends, in_flight = self._ends, self._in_flight
        while ends and ends[0][0] <= now:
            _, column, _ = heapq.heappop(ends)
            in_flight[column] -= 1
            if not in_flight[column]:
                self._busy &= ~(1 << column)
        own = self.column(ex.conn)
        key = (self._busy, own, spans)
        drawn = self._drawn.get(key)
        if drawn is None:
            drawn = self._drawn[key] = _draw(in_flight, own, spans)
        end = ex.ended_mono if ex.ended_mono is not None else math.inf
        heapq.heappush(ends, (end, own, ex.conn))
        in_flight[own] += 1
        self._busy |= 1 << own
        owner = self._owner
        if not styled:
            owner[own] = ex.conn
            return Marks(drawn[0], drawn[1], self._no_styles)
        colour = conn_colour(ex.conn)
        styles = tuple(
            colour if column == own else (conn_colour(o) if o is not None else None)
            for column, o in enumerate(owner)
        )
        owner[own] = ex.conn
        return Marks(drawn[0], drawn[1], styles)


def _lane_spans(marks: str, styles: Sequence[str | None], at: int) -> list[Span]:
    return [
        Span(at + i, at + i + 1, style)
        for i, (char, style) in enumerate(zip(marks, styles, strict=True))
        if style and char != " "
    ]


def _draw(in_flight: Sequence[int], own: int, spans: bool) -> tuple[str, str]:
    cells = ["│" if n > 0 else " " for n in in_flight]
    row = cells.copy()
    row[own] = "●"
    cells[own] = "│" if spans else " "
    return "".join(row), "".join(cells)


# -- what goes under a row ----------------------------------------------------------------------


def is_json_stream(ex: Exchange) -> bool:
    if ex.hijacked or ex.frames or not ex.response_body:
        return False
    if ex.status is None or not 200 <= ex.status < 300:
        return False
    content_type = (ex.header("Content-Type") or "").lower()
    if "json" not in content_type:
        return False
    if ex.operation in JSON_STREAM_OPERATIONS or ex.operation == "ContainerWait":
        return True  # ContainerWait: its one message, the exit status, is what it waited for
    if (ex.header("Transfer-Encoding") or "").lower() != "chunked":
        return False
    end = ex.response_body.find(b"\n")
    return 0 <= end < len(ex.response_body.rstrip()) - 1  # more than one line


def message_lines(message: jsonstream.Message) -> list[Segment]:
    """A compact summary of one message of a JSON stream; nothing for a blank build line."""
    if not message.valid:
        return [(clean(message.raw.decode("utf-8", errors="replace")), "dim")]
    value = message.value
    if isinstance(value, dict):
        if "Type" in value and "Action" in value:  # an event
            actor = value.get("Actor")
            ident = actor.get("ID") if isinstance(actor, dict) else None
            ident = ident or value.get("id") or ""
            event = f"{value['Type']} {value['Action']} {ident}".rstrip()
            return [(clean(shorten_ids(event)), None)]
        if "StatusCode" in value and set(value) <= {"StatusCode", "Error"}:  # ContainerWait
            failure = value.get("Error")
            text = f"exit status {value['StatusCode']}"
            if isinstance(failure, dict) and failure.get("Message"):
                text += f", error: {failure['Message']}"
            return [(clean(text), "red" if failure else None)]
        error = stream_error(value)
        if error is not None:
            return [(clean(f"error: {error}"), "red")]
        stream = value.get("stream")
        if isinstance(stream, str):
            return [(clean(line), None) for line in stream.split("\n") if line.strip()]
        status = value.get("status")
        if isinstance(status, str):
            parts = [f"{value['id']}:" if value.get("id") else "", status]
            if isinstance(value.get("progress"), str):
                parts.append(value["progress"])
            return [(clean(shorten_ids(" ".join(p for p in parts if p))), None)]
        if "aux" in value:
            return [("aux " + clean(shorten_ids(_compact(value["aux"]))), "dim")]
    return [(clean(shorten_ids(_compact(value))), None)]


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def output_lines(ex: Exchange) -> list[Segment]:
    """What the client sent on stdin, then the container's output, one line each."""
    lines: list[Segment] = []
    if ex.hijacked == "h2c":
        sent = len(ex.stream.get("client", b""))
        received = len(ex.stream.get("daemon", b""))
        return [(f"h2c stream: {format_size(sent)} sent, {format_size(received)} received", "dim")]
    if ex.hijacked:
        stdin = payload_lines(ex.stream.get("client", b""))
        lines.extend(("stdin> " + line, "bold") for line in stdin)
    if ex.frames:
        group: list[bytes] = []
        name = ""
        for stream, data in [*ex.frames, ("", b"")]:
            if stream != name and group:
                lines.extend(_stream_lines(name, b"".join(group)))
                group = []
            name = stream
            group.append(data)
    elif ex.hijacked:
        lines.extend((line, None) for line in payload_lines(ex.stream.get("daemon", b"")))
    elif ex.operation == "ContainerLogs" and ex.response_body:  # a TTY container: not framed
        lines.extend((line, None) for line in payload_lines(ex.response_body))
    return lines


def payload_lines(data: bytes | bytearray) -> list[str]:
    """What went over a stream, as lines: text line by line, anything else as a hex preview."""
    return text_lines(data) if is_text(data) else hex_preview(data)


def _stream_lines(name: str, data: bytes) -> list[Segment]:
    if name == "stdout":
        return [(line, None) for line in payload_lines(data)]
    if name == "stdin":
        return [("stdin> " + line, "bold") for line in payload_lines(data)]
    return [(f"{name}> {line}", "red") for line in payload_lines(data)]


def _capped(lines: list[Segment], limit: int) -> list[Segment]:
    if limit <= 0 or len(lines) <= limit:
        return lines
    tail = limit // 2
    head = limit - tail
    hidden = len(lines) - limit
    more: Segment = (f"… {plural(hidden, 'more line')}", "dim")
    return [*lines[:head], more, *lines[len(lines) - tail :]]


def body_lines(
    label: str, data: bytes, size: int, content_type: str | None, width: int, styled: bool
) -> list[Content]:
    """A body under its row: JSON pretty-printed, text as it is, binary as a hex preview."""
    head = f"{label} {format_size(size)}"
    if content_type:
        head += f" {content_type}"
    if len(data) < size:
        head += f" (first {format_size(len(data))} kept in the capture)"
    out: list[Content] = [[(head, "dim")]]
    value: Any = None
    is_json = False
    if data[:1] in (b"{", b"[") or "json" in (content_type or ""):
        try:
            value = json.loads(data)
            is_json = True
        except ValueError:
            pass
    if is_json:
        pretty = json.dumps(value, indent=2, ensure_ascii=False)
        for line in pretty.split("\n"):
            for piece in fold(clean(line), width):
                text = Text(piece)
                if styled:
                    _JSON_HIGHLIGHTER.highlight(text)
                out.append(text)
        return out
    if is_text(data):
        for line in text_lines(data):
            out.extend([(piece, None)] for piece in fold(line, width))
        return out
    out.extend([(line, "dim")] for line in hex_preview(data))
    return out


# -- rows -----------------------------------------------------------------------------------


# The request columns a Rows keeps (see Rows._request), of targets up to this long.
_KEPT_TARGETS = 256
_KEPT_TARGET = 512


class Rows:
    """Formats one exchange as its row and the lines under it."""

    def __init__(
        self, layout: Layout, options: TimelineOptions, horizon: float | None = None
    ) -> None:
        self.layout = layout
        self.options = options
        self.horizon = horizon  # the end of the capture, for span bars; None: no bars
        self._explained: dict[str, list[str]] = {}
        self._ops: dict[str | None, str] = {}
        self._conns: dict[int, str] = {}
        self._requests: dict[tuple[str, str], tuple[str, int, int, int]] = {}

    def block(self, ex: Exchange, marks: Marks, spans: bool | None = None) -> Line:
        """The row, then the lines under it, as one Text of several lines."""
        if spans is None:
            spans = stayed_open(ex)
        plain, all_spans = self._row(ex, marks)
        details = self.details(ex, spans)
        if not details:
            return Line(plain, all_spans)
        styled = self.options.styled
        layout = self.layout
        prefix = " " * layout.lead + marks.detail + " " * (layout.conn + 4)
        prefix_spans = _lane_spans(marks.detail, marks.styles, layout.lead) if styled else []
        width = layout.content
        lines = [plain]
        at = len(plain) + 1  # where the next line starts
        for content in details:
            if styled:
                all_spans.extend(Span(at + s.start, at + s.end, s.style) for s in prefix_spans)
            position = at + len(prefix)
            if isinstance(content, Text):
                body = content.plain
                if styled:
                    all_spans.extend(
                        Span(position + s.start, position + s.end, s.style) for s in content.spans
                    )
            else:
                pieces: list[str] = []
                room = width
                for segment, style in content:
                    piece = fit(segment, room)
                    if not piece:
                        break
                    pieces.append(piece)
                    room -= width_of(piece)
                    if style and styled:
                        all_spans.append(Span(position, position + len(piece), style))
                    position += len(piece)
                body = "".join(pieces)
            line = prefix + body
            lines.append(line)
            at += len(line) + 1
        return Line("\n".join(lines), all_spans)

    def _request(self, method: str, target: str) -> tuple[str, int, int, int]:
        """The request column: its text, and where the method, version and query end/start."""
        # The same few targets come back again and again, ids in them too (a container polled
        # until it is up): the last ones are kept, short ones only, however many a capture has.
        if len(target) > _KEPT_TARGET:
            return self._request_column(method, target)
        key = (method, target)
        found = self._requests.get(key)
        if found is None:
            if len(self._requests) >= _KEPT_TARGETS:
                del self._requests[next(iter(self._requests))]  # the oldest
            found = self._requests[key] = self._request_column(method, target)
        return found

    def _request_column(self, method: str, target: str) -> tuple[str, int, int, int]:
        width = self.layout.target
        shown = clean(shorten_ids(target))
        request = f"{method} {shown}"
        version_end = query_at = -1
        if not request.isascii():
            request = pad(request, width)
        else:
            if self.options.styled:
                at = len(method) + 1
                version = VERSION_PREFIX.match(shown)
                if version is not None:
                    version_end = at + version.end()
                query = shown.find("?")
                if query >= 0:
                    query_at = at + query
            request = request.ljust(width) if len(request) <= width else fit(request, width)
        return request, min(len(method), width), min(version_end, width), min(query_at, width)

    def _row(self, ex: Exchange, marks: Marks) -> tuple[str, list[Span]]:
        layout = self.layout
        conn = self._conns.get(ex.conn)
        if conn is None:
            conn = self._conns[ex.conn] = pad(str(ex.conn), layout.conn)
        operation = self._ops.get(ex.operation)
        if operation is None:
            operation = self._ops[ex.operation] = pad(ex.operation or "?", layout.op)
        request, method_end, version_end, query_at = self._request(ex.method, ex.target)
        status = ex.status
        status_text = f"{status:>3}" if status is not None else "---"
        ended = ex.ended_mono
        duration = format_duration(None if ended is None else ended - ex.started_mono)
        number = f"#{ex.number}"
        offset = format_offset(ex.started_mono)
        head = f"{number:>{layout.number}} {offset:>{layout.time}} {marks.row} {conn} {operation} "
        plain = f"{head}{request} {status_text} {duration:>7}"
        if layout.sizes:
            plain += f" {size_cell(ex.bytes_sent):>6} {size_cell(ex.bytes_received):>6}"
        cut = len(plain) > layout.width  # only narrower than the columns need
        if cut:
            plain = plain[: layout.width - 1] + "…"
        if not self.options.styled:
            return plain, []
        at = layout.lead
        time_at = layout.number + 1
        spans = [
            Span(max(0, time_at - 1 - len(number)), time_at - 1, "bold"),
            Span(time_at, at - 1, "dim"),
            *_lane_spans(marks.row, marks.styles, at),
        ]
        at += len(marks.row) + 1
        spans.append(Span(at, at + len(conn.rstrip()), conn_colour(ex.conn)))
        at += len(conn) + 1
        spans.append(Span(at, at + len(operation.rstrip()), "bold"))
        at = len(head)
        spans.append(Span(at, at + method_end, "bold"))
        if version_end > 0:
            spans.append(Span(at + method_end + 1, at + version_end, "dim"))
        if query_at > 0:
            spans.append(Span(at + query_at, at + len(request.rstrip()), "dim"))
        at += len(request) + 1
        spans.append(Span(at, at + 3, status_style(status)))
        if ended is None:
            spans.append(Span(at + 4, at + 11, "yellow"))
        if layout.sizes:
            spans.append(Span(at + 11, len(plain), "dim"))
        if cut or layout.target < 24:  # squeezed columns: no span may run backwards or past
            end = len(plain)
            spans = [Span(a, min(b, end), style) for a, b, style in spans if a < min(b, end)]
        return plain, spans

    def incident(self, incident: Incident, marks: Marks, counted: bool = True) -> Line:
        """The row of an error record or of unparsed bytes: at its time, on its connection,
        with the unparsed bytes each way where the sizes go (left blank unless `counted`: the
        live view prints the row before those bytes come)."""
        layout = self.layout
        conn = pad("-" if incident.conn is None else str(incident.conn), layout.conn)
        label = pad(_incident_label(incident), layout.op)
        offset = format_offset(incident.mono)
        head = f"{'':>{layout.number}} {offset:>{layout.time}} {marks.row} {conn} {label} "
        sizes = ""
        if layout.sizes and counted:
            sent, received = size_cell(incident.bytes_sent), size_cell(incident.bytes_received)
            sizes = f" {sent:>6} {received:>6}"
        room = layout.width - width_of(head) - len(sizes)
        message = (pad if sizes else fit)(clean(incident.message), room)
        plain = head + message + sizes
        if not self.options.styled:
            return Line(plain, [])
        at = layout.lead
        spans = [Span(layout.number + 1, at - 1, "dim")]
        spans.extend(_lane_spans(marks.row, marks.styles, at))
        at += len(marks.row) + 1
        if incident.conn is not None:
            spans.append(Span(at, at + len(conn.rstrip()), conn_colour(incident.conn)))
        at += len(conn) + 1
        spans.append(Span(at, at + len(label.rstrip()), "bold red"))
        at += len(label) + 1
        spans.append(Span(at, at + len(message.rstrip()), "red"))
        if sizes:
            spans.append(Span(len(plain) - len(sizes), len(plain), "dim"))
        return Line(plain, spans)

    def details(self, ex: Exchange, spans: bool) -> list[Content]:
        options = self.options
        denied = next((d for d in ex.decisions if not d.allowed), None)
        if not (
            spans
            or ex.hijacked
            or ex.frames
            or options.explain
            or options.bodies
            or options.headers
            or denied
        ):
            body = ex.response_body
            if not body:
                return []
            status = ex.status or 0
            if status < 400 and not (
                ex.operation in _STREAMING or body.find(b"\n", 0, len(body) - 2) >= 0
            ):
                return []  # one JSON document, shown only with --bodies
        out: list[Content] = []
        if spans:
            out.append(self._span(ex))
        if options.explain is not None and ex.operation:
            out.extend([(line, "italic dim")] for line in self._explain(ex.operation))
        if options.headers:
            out.extend(self._headers(ex))
        error = refusal(ex)
        if denied is not None:
            said = "denied by policy" if denied.enforced else "policy would deny (warn mode)"
            out.append([(clean(f"{said}: {denied.reason}"), "red")])
        elif error is not None and not is_json_stream(ex):
            out.append([(clean("error: " + error.splitlines()[0]), "red")])
        lines: list[Segment] = output_lines(ex)
        if not lines and is_json_stream(ex):
            for message in jsonstream.split(bytes(ex.response_body)):
                lines.extend(message_lines(message))
            if ex.response_body_size > len(ex.response_body):
                lines.append(("… the rest was past the capture's --max-body", "dim"))
        out.extend([segment] for segment in _capped(lines, options.max_lines))
        if options.bodies:
            out.extend(self._bodies(ex))
        return out

    def _headers(self, ex: Exchange) -> list[Content]:
        """The heads as recorded, `>` sent and `<` received as curl -v shows them; a long
        value is folded onto further lines, not cut."""
        out: list[Content] = []
        width = self.layout.content
        heads = [(">", ex.request_headers), ("<", ex.response_headers)]
        for mark, headers in heads:
            for name, value in headers:
                for piece in fold(clean(f"{mark} {name}: {value}"), width):
                    out.append([(piece, "dim")])
        return out

    def _bodies(self, ex: Exchange) -> list[Content]:
        out: list[Content] = []
        width, styled = self.layout.content, self.options.styled
        if ex.request_body:
            content_type = ex.header("Content-Type", response=False)
            out.extend(
                body_lines(
                    "request body",
                    bytes(ex.request_body),
                    ex.request_body_size,
                    content_type,
                    width,
                    styled,
                )
            )
        # A stream's messages are shown already; ContainerWait's one answer is a body like any.
        streamed = is_json_stream(ex) and ex.operation != "ContainerWait"
        shown = ex.hijacked or ex.frames or streamed or ex.operation == "ContainerLogs"
        if ex.response_body and not shown:
            out.extend(
                body_lines(
                    "response body",
                    bytes(ex.response_body),
                    ex.response_body_size,
                    ex.header("Content-Type"),
                    width,
                    styled,
                )
            )
        return out

    def _explain(self, operation: str) -> list[str]:
        """The explanation of an operation, wrapped at words: prose is not cut off."""
        lines = self._explained.get(operation)
        if lines is None:
            assert self.options.explain is not None
            note = self.options.explain(operation)
            width = self.layout.content - 2
            lines = ["# " + line for line in wrap(clean(note), width)] if note else []
            self._explained[operation] = lines
        return lines

    def _span(self, ex: Exchange) -> list[Segment]:
        start = ex.started_mono
        end = ex.ended_mono
        label = f"open {format_offset(start)} … " + (
            format_offset(end) if end is not None else "still open"
        )
        out: list[Segment] = [(label, "dim")]
        horizon = self.horizon
        room = self.layout.content - len(label) - 2
        bar = min(48, room)
        if horizon is None or horizon <= 0 or bar < 12:
            return out
        scale = bar / horizon
        first = min(bar - 1, int(start * scale))
        last = bar if end is None else max(first + 1, min(bar, math.ceil(end * scale)))
        out.append(("  " + "·" * first, "dim"))
        out.append(("━" * (last - first), conn_colour(ex.conn)))
        out.append(("·" * (bar - last), "dim"))
        return out


# -- the whole timeline -----------------------------------------------------------------------


def layout_for(
    exchanges: Sequence[Exchange], lanes: int, width: int, incidents: Sequence[Incident] = ()
) -> Layout:
    last_start = max(
        max((ex.started_mono for ex in exchanges), default=0.0),
        max((incident.mono for incident in incidents), default=0.0),
    )
    time_width = max(7, len(format_offset(last_start)))
    conn_width = max(4, max((len(str(ex.conn)) for ex in exchanges), default=4))
    number_width = max(3, max((len(str(ex.number)) + 1 for ex in exchanges), default=3))
    op_width = max(
        max((len(ex.operation or "?") for ex in exchanges), default=9),
        max((len(_incident_label(incident)) for incident in incidents), default=0),
    )
    return Layout.fitted(
        width, time_width, lanes, conn_width, min(24, max(9, op_width)), number=number_width
    )


_DEFAULT_OPTIONS = TimelineOptions()


def render(
    capture: Capture,
    options: TimelineOptions = _DEFAULT_OPTIONS,
    select: Callable[[Exchange], bool] | None = None,
    select_incidents: Callable[[Incident], bool] | None = None,
) -> Iterator[Line]:
    """The timeline of a capture: a title, column heads, the rows, a closing summary.

    With `options.header` off, the rows alone, as the live view prints them.

    `select` picks the exchanges to show (a `docktap.filters.Filter.matches`, say) and
    `select_incidents` the incidents (`Filter.matches_incident`); with `select` alone, no
    incident is shown. Lanes and column widths are worked out for those shown only.
    """
    exchanges = capture.exchanges
    shown = [ex for ex in exchanges if select(ex)] if select is not None else exchanges
    incidents = capture.incidents
    if select is not None or select_incidents is not None:
        picked = select_incidents
        incidents = [i for i in incidents if picked is not None and picked(i)]
    header = capture if options.header else None
    yield from _render(shown, options, header, len(exchanges), incidents)


def _render(
    exchanges: Sequence[Exchange],
    options: TimelineOptions,
    capture: Capture | None,
    total: int = 0,
    incidents: Sequence[Incident] = (),
) -> Iterator[Line]:
    items = in_time_order(exchanges, incidents)
    lanes = Lanes(
        [moment(item) if isinstance(item, Incident) else item for item in items],
        options.max_lanes,
    )
    layout = layout_for(exchanges, lanes.count, options.width, incidents)
    horizon = _horizon(exchanges, capture)
    rows = Rows(layout, options, horizon)
    if capture is not None:
        yield _title(capture, layout, options)
        yield _heads(layout, options)
    for item in items:
        if isinstance(item, Incident):
            yield rows.incident(item, lanes.marks(moment(item), False, options.styled))
            continue
        spans = stayed_open(item)
        yield rows.block(item, lanes.marks(item, spans, options.styled), spans)
    if capture is not None:
        # Here: the audit's rules (and the request model they read) are for a whole capture
        # only, and the live rows, which render with this module, have no use for them.
        from docktap.render.audit import unread_lines

        yield _summary(capture, len(exchanges), total, horizon, options)
        for sentence in unread_lines(capture):
            for text in wrap(sentence, options.width, hanging="  "):
                yield _styled(text, "bold red", options.styled)


def _incident_label(incident: Incident) -> str:
    return _INCIDENT_LABELS.get(incident.kind, f"{incident.kind} error")


def _horizon(exchanges: Sequence[Exchange], capture: Capture | None) -> float:
    end = capture.last_mono if capture is not None else 0.0
    for ex in exchanges:
        last = ex.ended_mono if ex.ended_mono is not None else ex.started_mono
        if last > end:
            end = last
    return end


def _title(capture: Capture, layout: Layout, options: TimelineOptions) -> Line:
    header = capture.header
    command = header.get("command")
    # Quoted as a shell would need it, so that the title can be pasted back. shlex is imported
    # here: the live rows, which the recorder imports, have no title.
    import shlex

    what = shlex.join(str(part) for part in command) if command else "docktap proxy"
    started = header.get("started")
    when = clock_time(float(started)) if isinstance(started, int | float) else "?"
    title = fit(clean(f"{what} · {header.get('upstream', '?')} · {when}"), layout.width)
    return _styled(title, "bold", options.styled)


def _heads(layout: Layout, options: TimelineOptions) -> Line:
    heads = (
        "ex".rjust(layout.number)
        + " "
        + "time".rjust(layout.time)
        + " "
        + "".ljust(layout.lanes)
        + " "
        + pad("conn", layout.conn)
        + " "
        + pad("operation", layout.op)
        + " "
        + pad("request", layout.target - 1)
        + " code    took"
    )
    if layout.sizes:
        heads += "   sent   recv"
    return _styled(fit(heads, layout.width), "dim", options.styled)


def _summary(
    capture: Capture, shown: int, total: int, horizon: float, options: TimelineOptions
) -> Line:
    conns = len(capture.connections)
    words = [plural(total, "exchange"), f"on {plural(conns, 'connection')}"]
    words.append(f"over {format_duration(horizon)}")
    text = " ".join(words)
    if shown != total:
        text += f", {shown} shown"
    errors = len(capture.errors)
    if errors:
        text += f", {plural(errors, 'error record')}"
    if capture.writing:
        text += "; still being written"
    elif not capture.complete:
        text += "; incomplete capture (docktap did not close it)"
    return _styled(fit(text, options.width), "dim", options.styled)
