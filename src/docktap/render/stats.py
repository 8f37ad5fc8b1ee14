"""Numbers about a capture: calls per operation, statuses, latency, bytes, connections.

`compute(capture)` gives a plain dict (what `docktap stats --json` prints) and
`render(stats, console)` lays that dict out as text tables. Both are pure: no files, no clock,
no terminal probing; the caller's console (docktap.console) decides the width and whether to
colour.

## The JSON shape (`stats_version` 1)

Keys are only ever added within a `stats_version`; anything that would change the meaning of
an existing key bumps it. Durations are in milliseconds (`_ms`) or seconds (`_s`); sizes in
bytes.

```text
{
  "stats_version": 1,
  "capture": {"started": float epoch s, "upstream": str, "command": [str] | null,
              "complete": bool, "writing": bool},
  "totals": {"exchanges", "connections", "errors", "hijacked", "streamed": int,
             "duration_s": float, "status": STATUS, "bytes_in", "bytes_out": int},
  "operations": [                       # most calls first, then by name
    {"operation": str | null, "count": int, "status": STATUS,
     "latency_ms": {"p50", "p95", "max": float} | null,     # null: none finished
     "bytes_in", "bytes_out": int, "hijacked", "streamed": int,
     "slowest": int | null}              # the exchange number of the max latency
  ],
  "connections": [                      # by connection number
    {"conn": int, "exchanges": int, "opened_s": float | null, "closed_s": float | null,
     "lifetime_s": float | null, "bytes_in", "bytes_out": int, "hijacked": str | null,
     "numbers": [int]}                  # its exchanges' numbers, in order
  ]
}
STATUS = {"101", "2xx", "3xx", "4xx", "5xx", "other", "none": int}   # "none": no answer
```

- `latency_ms` is the time from the request line to the end of the exchange (the response
  body's end, or the connection's close for a hijack), by the nearest-rank method. For
  `hijacked` exchanges (attach, exec) that is how long the session lasted, and for `streamed`
  ones (long polls such as ContainerWait, `logs -f`, build and pull progress: the body kept
  arriving at least 100 ms after the response headers, or never ended) how long the stream
  stayed open; neither is the daemon's response time (`docktap.render.kind` holds the rule).
  The counts say how many such exchanges an operation had.
- `bytes_in` is what the client sent (request bodies, plus stdin of hijacked streams);
  `bytes_out` what the daemon sent (response bodies, plus the raw hijacked stream), summed
  from `Exchange.bytes_sent` and `bytes_received`, as the timeline's columns are. Body sizes
  are the full sizes even past `--max-body`; hijacked streams count only the bytes the capture
  kept, since the capture stops counting them at the cap.
- `writing`: the capture's recorder still held it when it was read (it is not cut short, just
  not finished yet); `complete` is then false.
- Exchange numbers (`slowest`, `numbers`) are those `docktap show` prints as `#N`
  (`Exchange.number`), so `docktap show --exchange N` shows the exchange; the text view shows
  them as `#N` too.
- `opened_s`, `closed_s` are seconds since the capture started; `lifetime_s` runs to the end of
  the capture for a connection that was never closed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich import box
from rich.cells import cell_len
from rich.table import Table

from docktap.capture.reader import Capture
from docktap.render.kind import exchange_kind
from docktap.render.text import format_duration, format_offset, format_size, plural

if TYPE_CHECKING:
    from rich.console import Console

STATS_VERSION = 1
#: Rows of the connections table in the text view; `--json` always has them all.
MAX_CONNECTION_ROWS = 50

_STATUS_KEYS = ("101", "2xx", "3xx", "4xx", "5xx", "other", "none")


def status_class(status: int | None) -> str:
    if status is None:
        return "none"
    if status == 101:
        return "101"
    if 200 <= status < 600 and status // 100 != 1:
        return f"{status // 100}xx"
    return "other"


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty list."""
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _latency(durations: list[float]) -> dict[str, float] | None:
    if not durations:
        return None
    durations.sort()
    return {
        "p50": round(percentile(durations, 50) * 1000, 3),
        "p95": round(percentile(durations, 95) * 1000, 3),
        "max": round(durations[-1] * 1000, 3),
    }


def _statuses() -> dict[str, int]:
    return dict.fromkeys(_STATUS_KEYS, 0)


class _Op:
    __slots__ = (
        "bytes_in",
        "bytes_out",
        "count",
        "durations",
        "hijacked",
        "slowest",
        "status",
        "streamed",
    )

    def __init__(self) -> None:
        self.count = 0
        self.status = _statuses()
        self.durations: list[float] = []
        self.slowest: tuple[float, int] | None = None  # the longest duration, its exchange
        self.bytes_in = 0
        self.bytes_out = 0
        self.hijacked = 0
        self.streamed = 0


class _Conn:
    __slots__ = ("bytes_in", "bytes_out", "hijacked", "numbers")

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0
        self.hijacked: str | None = None
        self.numbers: list[int] = []


def capture_end(capture: Capture) -> float:
    """Seconds from the start of the capture to its last record."""
    end = 0.0
    for record in reversed(capture.records):
        mono = record.get("mono")
        if isinstance(mono, int | float):
            end = float(mono)
            break
    for ex in capture.exchanges[-1:]:
        end = max(end, ex.ended_mono or ex.started_mono)
    return round(end, 6)


def compute(capture: Capture) -> dict[str, Any]:
    """The statistics of a capture, in the documented `stats_version` 1 shape."""
    ops: dict[str | None, _Op] = {}
    conns: dict[int, _Conn] = {}
    totals = _statuses()
    total_in = total_out = hijacked = streamed = 0
    for ex in capture.exchanges:
        op = ops.get(ex.operation)
        if op is None:
            op = ops[ex.operation] = _Op()
        conn = conns.get(ex.conn)
        if conn is None:
            conn = conns[ex.conn] = _Conn()
        op.count += 1
        klass = status_class(ex.status)
        op.status[klass] += 1
        totals[klass] += 1
        conn.numbers.append(ex.number)
        if ex.ended_mono is not None:
            took = ex.ended_mono - ex.started_mono
            op.durations.append(took)
            if op.slowest is None or took > op.slowest[0]:
                op.slowest = (took, ex.number)
        sent, received = ex.bytes_sent, ex.bytes_received
        op.bytes_in += sent
        op.bytes_out += received
        conn.bytes_in += sent
        conn.bytes_out += received
        total_in += sent
        total_out += received
        kind = exchange_kind(ex)
        if kind == "hijack":
            op.hijacked += 1
            hijacked += 1
            conn.hijacked = ex.hijacked
        elif kind == "stream":
            op.streamed += 1
            streamed += 1
    end = capture_end(capture)
    operations = [
        {
            "operation": name,
            "count": op.count,
            "status": op.status,
            "latency_ms": _latency(op.durations),
            "bytes_in": op.bytes_in,
            "bytes_out": op.bytes_out,
            "hijacked": op.hijacked,
            "streamed": op.streamed,
            "slowest": op.slowest[1] if op.slowest is not None else None,
        }
        for name, op in sorted(ops.items(), key=lambda item: (-item[1].count, item[0] or "~"))
    ]
    connections = []
    for number in sorted(set(capture.connections) | set(conns)):
        info = capture.connections.get(number)
        traffic = conns.get(number) or _Conn()
        opened = info.opened_mono if info else None
        closed = info.closed_mono if info else None
        lifetime = None
        if opened is not None:
            lifetime = round((closed if closed is not None else end) - opened, 6)
        connections.append(
            {
                "conn": number,
                "exchanges": info.exchanges if info else 0,
                "opened_s": opened,
                "closed_s": closed,
                "lifetime_s": lifetime,
                "bytes_in": traffic.bytes_in,
                "bytes_out": traffic.bytes_out,
                "hijacked": traffic.hijacked,
                "numbers": traffic.numbers,
            }
        )
    return {
        "stats_version": STATS_VERSION,
        "capture": {
            "started": capture.header.get("started"),
            "upstream": capture.header.get("upstream"),
            "command": capture.header.get("command"),
            "complete": capture.complete,
            "writing": capture.writing,
        },
        "totals": {
            "exchanges": len(capture.exchanges),
            "connections": len(connections),
            "duration_s": end,
            "errors": len(capture.errors),
            "hijacked": hijacked,
            "streamed": streamed,
            "status": totals,
            "bytes_in": total_in,
            "bytes_out": total_out,
        },
        "operations": operations,
        "connections": connections,
    }


# --- text ---------------------------------------------------------------------------------


def _ms(ms: float | None) -> str:
    return "-" if ms is None else format_duration(ms / 1000)


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def _count(n: int) -> str:
    return str(n) if n else ""


def _kind(op: dict[str, Any]) -> str:
    parts = []
    for key, label in (("hijacked", "hijack"), ("streamed", "stream")):
        n = op[key]
        if n:
            parts.append(label if n == op["count"] else f"{label} {n}/{op['count']}")
    return ", ".join(parts)


# Columns of the operations table given up, in this order, when it is wider than the page:
# a number is never cut, and the p50 latency says most of what p95 and max add.
_DROPPED_FIRST = ("slowest", "p95", "max", "kind", "in", "out", "p50")
# Exchange numbers listed per connection, at most: the rest are in --json.
_LISTED_NUMBERS = 4


def _operations(stats: dict[str, Any], width: int) -> Table:
    """The operations table, without the columns it cannot fit into `width` (see
    _DROPPED_FIRST); only the operation names may still be shortened, with `…`."""
    status = stats["totals"]["status"]
    # Only the status classes that occur: empty columns would squeeze the numbers.
    seen = [k for k in _STATUS_KEYS if status[k]]
    columns: dict[str, list[str]] = {"operation": [], "count": []}
    columns.update({key: [] for key in seen})
    columns.update({key: [] for key in ("p50", "p95", "max", "slowest", "in", "out", "kind")})
    for op in stats["operations"]:
        latency = op["latency_ms"] or {}
        cells = [
            op["operation"] or "(unknown)",
            str(op["count"]),
            *(_count(op["status"][k]) for k in seen),
            *(_ms(latency.get(k)) for k in ("p50", "p95", "max")),
            _number(op["slowest"]),
            format_size(op["bytes_in"]),
            format_size(op["bytes_out"]),
            _kind(op),
        ]
        for column, cell in zip(columns.values(), cells, strict=True):
            column.append(cell)
    for name in _DROPPED_FIRST:
        if _natural_width(columns) <= width:
            break
        del columns[name]
    ops = Table(title="Operations", box=box.SIMPLE, title_justify="left", pad_edge=False)
    for name in columns:
        if name == "operation":
            ops.add_column(name, style="cyan", no_wrap=True, overflow="ellipsis")
        elif name == "kind":
            ops.add_column(name, style="yellow", no_wrap=True, min_width=_widest(name, columns))
        else:
            style = "red" if name in ("4xx", "5xx") else None
            ops.add_column(
                name, justify="right", style=style, no_wrap=True, min_width=_widest(name, columns)
            )
    for row in zip(*columns.values(), strict=True):
        ops.add_row(*row)
    return ops


def _number(number: int | None) -> str:
    """An exchange number as `docktap show` prints it."""
    return "-" if number is None else f"#{number}"


def _numbers(numbers: list[int]) -> str:
    shown = " ".join(_number(n) for n in numbers[:_LISTED_NUMBERS])
    more = len(numbers) - _LISTED_NUMBERS
    return f"{shown} +{more}" if more > 0 else shown


def _widest(name: str, columns: dict[str, list[str]]) -> int:
    return max(cell_len(cell) for cell in [name, *columns[name]])


def _natural_width(columns: dict[str, list[str]]) -> int:
    """Cells the table takes unshortened: a blank edge either side, and three cells between
    columns (the padding of each, and the blank rule of the SIMPLE box)."""
    return sum(_widest(name, columns) for name in columns) + 3 * (len(columns) - 1) + 2


def _unfinished(capture: dict[str, Any]) -> str:
    if capture["writing"]:
        return " (still being written)"
    return "" if capture["complete"] else " (capture cut short)"


def render(stats: dict[str, Any], console: Console) -> str:
    """The statistics as text tables, laid out for `console` (its width, and ANSI colours if
    it has any), as a string: nothing is written to the console's file."""
    with console.capture() as captured:
        _print(stats, console)
    # Tables are padded to their width; trailing blanks only get in the way of diffs.
    return "".join(line.rstrip() + "\n" for line in captured.get().splitlines())


def _print(stats: dict[str, Any], console: Console) -> None:
    # soft_wrap=False on each print: text is wrapped at the width, whatever the console's
    # default for the lines it is given.
    width = console.width
    totals = stats["totals"]
    status = totals["status"]
    answered = ", ".join(f"{status[k]} {k}" for k in _STATUS_KEYS if status[k])
    capture = stats["capture"]
    console.print(
        f"{plural(totals['exchanges'], 'exchange')} on "
        f"{plural(totals['connections'], 'connection')} in {_s(totals['duration_s'])}"
        + _unfinished(capture),
        style="bold",
        soft_wrap=False,
    )
    console.print(
        f"statuses: {answered or 'none'}   in: {format_size(totals['bytes_in'])}   "
        f"out: {format_size(totals['bytes_out'])}   errors recorded: {totals['errors']}",
        soft_wrap=False,
    )
    console.print()
    console.print(_operations(stats, width), soft_wrap=False)
    if totals["hijacked"] or totals["streamed"]:
        console.print(
            "kind: hijack and stream latencies are how long the session or stream stayed "
            "open, not how fast the daemon answered.",
            style="dim",
            soft_wrap=False,
        )
    rows = stats["connections"]
    names = ("conn", "exchanges", "numbers", "opened", "lifetime", "in", "out", "hijacked")
    columns: dict[str, list[str]] = {name: [] for name in names}
    for row in rows[:MAX_CONNECTION_ROWS]:
        lifetime = _s(row["lifetime_s"])
        if row["closed_s"] is None and row["lifetime_s"] is not None:
            lifetime += " (open)"
        cells = (
            str(row["conn"]),
            str(row["exchanges"]),
            _numbers(row["numbers"]),
            "-" if row["opened_s"] is None else format_offset(row["opened_s"]),
            lifetime,
            format_size(row["bytes_in"]),
            format_size(row["bytes_out"]),
            row["hijacked"] or "",
        )
        for column, cell in zip(columns.values(), cells, strict=True):
            column.append(cell)
    if _natural_width(columns) > width:
        del columns["numbers"]  # the exchange numbers are the one thing to give up
    conns = Table(title="Connections", box=box.SIMPLE, title_justify="left", pad_edge=False)
    for name in columns:
        left = name in ("hijacked", "numbers")
        conns.add_column(name, justify="left" if left else "right", no_wrap=True)
    for row in zip(*columns.values(), strict=True):
        conns.add_row(*row)
    console.print()
    console.print(conns, soft_wrap=False)
    if len(rows) > MAX_CONNECTION_ROWS:
        console.print(
            f"... and {len(rows) - MAX_CONNECTION_ROWS} more connections (all are in --json)",
            style="dim",
            soft_wrap=False,
        )
