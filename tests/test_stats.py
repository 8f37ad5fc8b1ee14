"""`docktap stats`: per-operation and per-connection numbers, as tables and as stable JSON."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from golden import ALL_CAPTURES, CAPTURES, GOLDEN_CAPTURES, check_golden
from rich.cells import cell_len

from docktap import __version__, load
from docktap.capture.format import RecordEncoder
from docktap.capture.reader import Capture, loads
from docktap.capture.writer import CaptureWriter
from docktap.cli import main
from docktap.console import make_console
from docktap.events import (
    BodyData,
    Closed,
    Direction,
    Hijacked,
    MessageEnd,
    RequestHead,
    ResponseHead,
    StreamData,
)
from docktap.render import stats

CLIENT, DAEMON = Direction.CLIENT, Direction.DAEMON
HEADERS = (("Host", "docker"), ("User-Agent", "docktap-tests"))
JSON = (("Content-Type", "application/json"),)

# The calls a generated capture cycles through: method, target, status, request and answer.
_CALLS = (
    ("HEAD", "/_ping", 200, b"", b""),
    ("GET", "/v1.41/containers/json?all=1", 200, b"", b"[]\n"),
    ("POST", "/v1.41/containers/create", 201, b'{"Image":"bb"}', b'{"Id":"0123abcd"}\n'),
    ("GET", "/v1.41/containers/nope/json", 404, b"", b'{"message":"No such container: nope"}\n'),
    ("POST", "/v1.41/containers/0123abcd/wait", 200, b"", b'{"StatusCode":0}\n'),
)


def _render(numbers: dict[str, Any], width: int = 120, color: bool = False) -> str:
    """The tables as `docktap stats` prints them: through docktap's one console."""
    return stats.render(numbers, make_console(io.StringIO(), color, width))


def generate_capture(path: Path | str, exchanges: int, per_connection: int = 50) -> None:
    """A capture of `exchanges` plain exchanges, written the way docktap writes them."""
    encoder = RecordEncoder(1_800_000_000.0, 0.0)
    writer = CaptureWriter.create(str(path))
    writer.write([encoder.header("unix:///generated.sock", ["generated"], __version__)])
    t, conn, seq = 0.0, 0, 0
    for i in range(exchanges):
        if seq == 0:
            conn += 1
            writer.write([encoder.opened(conn, None, t)])
        seq += 1
        method, target, status, sent, answer = _CALLS[i % len(_CALLS)]
        records = encoder.encode(RequestHead(conn, t, seq, method, target, "1.1", HEADERS))
        if sent:
            records += encoder.encode(BodyData(conn, t, seq, CLIENT, sent))
        records += encoder.encode(MessageEnd(conn, t, seq, CLIENT))
        t += 0.0005 + (i % 11) * 0.0001
        records += encoder.encode(ResponseHead(conn, t, seq, status, "OK", "1.1", JSON, False))
        if answer:
            records += encoder.encode(BodyData(conn, t, seq, DAEMON, answer))
        records += encoder.encode(MessageEnd(conn, t, seq, DAEMON))
        if seq == per_connection:
            records += encoder.encode(Closed(conn, t))
            seq = 0
        writer.write(records)
    writer.write([encoder.footer(t, 0)])
    writer.close()


def _capture(*events: object, close: bool = True) -> Capture:
    """A small capture made of observer events, through the real encoder."""
    encoder = RecordEncoder(1_800_000_000.0, 0.0, max_body=8)
    records = [encoder.header("unix:///x.sock", None, __version__), encoder.opened(1, None, 0.0)]
    for event in events:
        records += encoder.encode(event)  # type: ignore[arg-type]
    if close:
        records.append(encoder.footer(9.0, len(records) + 1))
    return loads("".join(json.dumps(r) + "\n" for r in records))


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert stats.percentile(values, 50) == 50
    assert stats.percentile(values, 95) == 95
    assert stats.percentile(values, 100) == 100
    assert stats.percentile([7.0], 95) == 7
    assert stats.percentile([1.0, 2.0], 50) == 1


def test_run_capture_numbers() -> None:
    capture = load(CAPTURES / "run.jsonl")
    numbers = stats.compute(capture)
    totals = numbers["totals"]
    assert totals["exchanges"] == 5
    assert totals["connections"] == 3
    assert totals["hijacked"] == 1
    assert totals["streamed"] == 1  # the ContainerWait long poll
    assert totals["status"] == {
        "101": 1,
        "2xx": 4,
        "3xx": 0,
        "4xx": 0,
        "5xx": 0,
        "other": 0,
        "none": 0,
    }
    ops = {op["operation"]: op for op in numbers["operations"]}
    attach = next(ex for ex in capture if ex.operation == "ContainerAttach")
    assert ops["ContainerAttach"]["hijacked"] == 1
    assert ops["ContainerAttach"]["bytes_out"] == 24  # the raw stream, frame headers included
    assert attach.duration_s is not None
    assert ops["ContainerAttach"]["latency_ms"]["max"] == pytest.approx(attach.duration_s * 1000)
    assert ops["ContainerWait"]["streamed"] == 1
    create = next(ex for ex in capture if ex.operation == "ContainerCreate")
    assert ops["ContainerCreate"]["bytes_in"] == create.request_body_size
    hijacked = [c for c in numbers["connections"] if c["hijacked"]]
    assert [c["conn"] for c in hijacked] == [attach.conn]


@pytest.mark.parametrize("path", ALL_CAPTURES, ids=[p.stem for p in ALL_CAPTURES])
def test_stats_add_up_on_every_capture(path: Path) -> None:
    capture = load(path)
    numbers = stats.compute(capture)
    json.dumps(numbers)  # plain JSON
    totals = numbers["totals"]
    ops = numbers["operations"]
    assert sum(op["count"] for op in ops) == totals["exchanges"] == len(capture)
    for key in totals["status"]:
        assert sum(op["status"][key] for op in ops) == totals["status"][key]
    assert sum(op["bytes_in"] for op in ops) == totals["bytes_in"]
    assert sum(op["bytes_out"] for op in ops) == totals["bytes_out"]
    assert sum(c["bytes_out"] for c in numbers["connections"]) == totals["bytes_out"]
    assert sum(c["exchanges"] for c in numbers["connections"]) == totals["exchanges"]
    for op in ops:
        latency = op["latency_ms"]
        assert latency["p50"] <= latency["p95"] <= latency["max"]
    for conn in numbers["connections"]:
        assert conn["lifetime_s"] >= 0
    text = _render(numbers, width=120)
    assert "\x1b[" not in text
    assert all(len(line) <= 120 for line in text.splitlines())


def test_json_shape_is_stable() -> None:
    numbers = stats.compute(load(CAPTURES / "run.jsonl"))
    assert numbers["stats_version"] == 1
    assert set(numbers) == {"stats_version", "capture", "totals", "operations", "connections"}
    assert set(numbers["capture"]) == {"started", "upstream", "command", "complete", "writing"}
    assert numbers["capture"]["writing"] is False
    assert set(numbers["totals"]) == {
        "exchanges",
        "connections",
        "duration_s",
        "errors",
        "hijacked",
        "streamed",
        "status",
        "bytes_in",
        "bytes_out",
    }
    assert set(numbers["operations"][0]) == {
        "operation",
        "count",
        "status",
        "latency_ms",
        "bytes_in",
        "bytes_out",
        "hijacked",
        "streamed",
        "slowest",
    }
    assert set(numbers["operations"][0]["latency_ms"]) == {"p50", "p95", "max"}
    assert set(numbers["connections"][0]) == {
        "conn",
        "exchanges",
        "opened_s",
        "closed_s",
        "lifetime_s",
        "bytes_in",
        "bytes_out",
        "hijacked",
        "numbers",
    }


def test_exchanges_are_named_by_the_number_show_prints() -> None:
    capture = load(CAPTURES / "run.jsonl")
    numbers = stats.compute(capture)
    by_conn = {c["conn"]: c["numbers"] for c in numbers["connections"]}
    assert by_conn == {
        conn: [ex.number for ex in capture if ex.conn == conn] for conn in capture.connections
    }
    assert by_conn[1] == [1, 2, 4]
    ops = {op["operation"]: op for op in numbers["operations"]}
    assert ops["ContainerCreate"]["slowest"] == 2
    assert ops["ContainerWait"]["slowest"] == 4
    text = _render(numbers, width=120)
    assert " #1 #2 #4 " in text
    assert [" #2 " in line for line in text.splitlines() if "ContainerCreate" in line] == [True]
    # At 80 columns the slowest column is the first to go; the numbers per connection fit.
    narrow = _render(numbers, width=80)
    assert "slowest" not in narrow and " #1 #2 #4 " in narrow


def test_unanswered_exchange_and_open_connection() -> None:
    capture = _capture(
        RequestHead(1, 0.1, 1, "GET", "/v1.41/info", "1.1", HEADERS),
        MessageEnd(1, 0.1, 1, CLIENT),
        close=False,
    )
    numbers = stats.compute(capture)
    op = numbers["operations"][0]
    assert op["operation"] == "SystemInfo"
    assert op["status"]["none"] == 1
    assert op["latency_ms"] is None  # it never finished
    conn = numbers["connections"][0]
    assert conn["closed_s"] is None
    assert not numbers["capture"]["complete"]
    text = _render(numbers)
    assert "none" in text
    assert "(capture cut short)" in text
    assert "(open)" in text


def test_hijacked_stream_bytes_and_capped_bodies() -> None:
    capture = _capture(
        RequestHead(1, 0.0, 1, "POST", "/v1.41/containers/c/attach?stream=1", "1.1", HEADERS),
        MessageEnd(1, 0.0, 1, CLIENT),
        ResponseHead(1, 0.01, 1, 101, "UPGRADED", "1.1", (("Upgrade", "tcp"),), True),
        Hijacked(1, 0.01, 1, "tcp"),
        StreamData(1, 0.02, 1, CLIENT, b"typed\n"),
        StreamData(1, 0.03, 1, DAEMON, b"output\n"),
        Closed(1, 2.0),
    )
    op = stats.compute(capture)["operations"][0]
    assert (op["bytes_in"], op["bytes_out"], op["hijacked"]) == (6, 7, 1)
    assert op["status"]["101"] == 1
    assert op["latency_ms"]["max"] == 2000.0
    capped = _capture(
        RequestHead(1, 0.0, 1, "POST", "/v1.41/build", "1.1", HEADERS),
        BodyData(1, 0.0, 1, CLIENT, b"x" * 100),  # the encoder keeps 8 bytes inline
        MessageEnd(1, 0.0, 1, CLIENT),
        ResponseHead(1, 0.5, 1, 200, "OK", "1.1", JSON, False),
        MessageEnd(1, 0.5, 1, DAEMON),
    )
    assert stats.compute(capped)["operations"][0]["bytes_in"] == 100  # the whole body


def test_colour_only_when_asked() -> None:
    numbers = stats.compute(load(CAPTURES / "pull-error.jsonl"))
    assert "\x1b[" in _render(numbers, color=True)
    assert "\x1b[" not in _render(numbers, color=False)


def test_many_connections_are_cut_in_the_text_view(tmp_path: Path) -> None:
    generate_capture(tmp_path / "c.jsonl", 300, per_connection=2)
    numbers = stats.compute(load(tmp_path / "c.jsonl"))
    assert len(numbers["connections"]) == 150
    text = _render(numbers)
    assert "... and 100 more connections (all are in --json)" in text


@pytest.mark.parametrize("name", GOLDEN_CAPTURES)
def test_golden(name: str) -> None:
    numbers = stats.compute(load(CAPTURES / f"{name}.jsonl"))
    check_golden(f"stats-{name}.txt", _render(numbers, 120, False))


def test_cli_text_json_and_width() -> None:
    runner = CliRunner()
    path = str(CAPTURES / "run.jsonl")
    result = runner.invoke(main, ["stats", path])
    assert result.exit_code == 0, result.output
    # Not a terminal: 120 columns, no colour, the same text as the golden file.
    assert result.output == (Path(__file__).parent / "data/golden/stats-run.txt").read_text()
    narrow = runner.invoke(main, ["stats", "--width", "80", path])
    assert narrow.exit_code == 0
    assert max(len(line) for line in narrow.output.splitlines()) <= 80
    as_json = runner.invoke(main, ["stats", "--json", path])
    assert json.loads(as_json.output) == {"version": 1, **stats.compute(load(path))}
    bad = runner.invoke(main, ["stats", "--width", "10", path])
    assert bad.exit_code == 2


def test_cli_rejects_a_file_that_is_no_capture(tmp_path: Path) -> None:
    junk = tmp_path / "junk.jsonl"
    junk.write_text('{"type":"nothing"}\n')
    result = CliRunner().invoke(main, ["stats", str(junk)])
    assert result.exit_code == 1
    assert "no capture header" in result.output


def test_the_text_depends_on_its_arguments_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No terminal setting of the caller's reaches the tables: the width and colour given rule."""
    numbers = stats.compute(load(CAPTURES / "run.jsonl"))
    plain = _render(numbers, 120, False)
    coloured = _render(numbers, 120, True)
    assert "\x1b[" in coloured and "\x1b[" not in plain
    settings = {
        "TERM": "dumb",  # would shrink a terminal console to 80 columns
        "COLUMNS": "50",
        "LINES": "5",
        "NO_COLOR": "1",
        "FORCE_COLOR": "1",
        "TTY_COMPATIBLE": "0",
        "TTY_INTERACTIVE": "1",
        "JUPYTER_COLUMNS": "60",
    }
    for name, value in settings.items():  # one at a time: one may hide another (LINES, TERM)
        with monkeypatch.context() as patch:
            patch.setenv(name, value)
            assert _render(numbers, 120, False) == plain, name
            assert _render(numbers, 120, True) == coloured, name


@pytest.mark.parametrize("width", [80, 100])
@pytest.mark.parametrize("path", ALL_CAPTURES, ids=[p.stem for p in ALL_CAPTURES])
def test_every_table_fits_the_width_and_no_number_is_cut(path: Path, width: int) -> None:
    text = _render(stats.compute(load(path)), width=width)
    for line in text.splitlines():
        assert cell_len(line) <= width, line
        # Only an operation name (the first cell) may be shortened.
        assert "…" not in line.split()[1:] and "…" not in " ".join(line.split()[1:]), line


def test_columns_are_given_up_in_order_at_80() -> None:
    run = stats.compute(load(CAPTURES / "run.jsonl"))
    heads = [line.split() for line in _render(run, width=80).splitlines()]
    assert ["operation", "count", "101", "2xx", "p50", "max", "in", "out", "kind"] in heads
    wide = [line.split() for line in _render(run, width=120).splitlines()]
    assert [
        "operation",
        "count",
        "101",
        "2xx",
        "p50",
        "p95",
        "max",
        "slowest",
        "in",
        "out",
        "kind",
    ] in wide
