"""`docktap show`: the timeline of the real captures, its options, and the pure renderer.

The golden files in tests/data/golden/ are the plain timelines at 120 columns. When the
rendering changes on purpose, regenerate them with DOCKTAP_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import io
import json
import re
import sys
import types
from collections.abc import Iterable
from pathlib import Path

import bytescript
import pytest
from bytescript import BROKEN_LINE, REFUSED, UNREADABLE
from click.testing import CliRunner, Result
from dockerd import Daemon
from golden import CAPTURES, GOLDEN_CAPTURES, check_golden
from rich.cells import cell_len
from rich.console import Console
from rich.text import Text
from tapping import docktap_run, one

from docktap import Capture, load
from docktap.capture.format import RecordEncoder
from docktap.capture.writer import CaptureWriter
from docktap.cli import main
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
from docktap.filters import Filter
from docktap.jsonstream import split
from docktap.render import timeline
from docktap.render.kind import stayed_open
from docktap.render.timeline import Line, TimelineOptions, render

ANSI = re.compile(r"\x1b\[[0-9;]*m")
ROW = re.compile(r"^ *#[0-9]+ +[0-9]+\.[0-9]{3}s ")


def render_lines(lines: Iterable[Line]) -> str:
    """The plain text of rendered lines, one per line."""
    return "".join(line.plain + "\n" for line in lines)


def op_of(row: str) -> str:
    found = re.search(r"[0-9]s [ │●]+ [0-9]+ +(\S+)", row)
    assert found, row
    return found.group(1)


def show(*args: str, env: dict[str, str | None] | None = None) -> Result:
    """`docktap show ARGS` in process, with no colour settings inherited from the caller."""
    environment: dict[str, str | None] = {"NO_COLOR": None, "FORCE_COLOR": None, "COLUMNS": None}
    environment.update(env or {})
    result = CliRunner().invoke(main, ["show", *args], env=environment, catch_exceptions=False)
    return result


def capture_path(name: str) -> str:
    return str(CAPTURES / f"{name}.jsonl")


def rows(output: str) -> list[str]:
    return [line for line in output.splitlines() if ROW.match(line)]


def operations(output: str) -> list[str]:
    return [op_of(line) for line in rows(output)]


def under(output: str, operation: str, count: int) -> list[str]:
    """The `count` lines under the row of `operation`, without their lane column."""
    lines = output.splitlines()
    row = lines.index(next(line for line in rows(output) if f" {operation} " in line))
    return [line.lstrip(" │") for line in lines[row + 1 : row + 1 + count]]


# -- goldens ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOLDEN_CAPTURES)
def test_golden_timeline(name: str) -> None:
    result = show(capture_path(name), "--width", "120")
    assert result.exit_code == 0, result.output
    check_golden(f"timeline-{name}.txt", result.stdout)
    assert "\x1b" not in result.stdout  # not a terminal: no colour
    for line in result.stdout.splitlines():
        assert len(line) <= 120, line


def test_the_run_timeline_shows_what_happened() -> None:
    out = show(capture_path("run"), "--width", "120").stdout
    assert operations(out) == [
        "SystemPingHead",
        "ContainerCreate",
        "ContainerAttach",
        "ContainerWait",
        "ContainerStart",
    ]
    lines = out.splitlines()
    start = next(line for line in rows(out) if "ContainerStart" in line)
    # three connections at once: the wait and the attach are in flight beside the start
    assert " ││● 3 " in start
    assert start.lstrip().startswith("#5 ")  # the fifth exchange of the capture, as replay names it
    span, stdout, stderr = under(out, "ContainerAttach", 3)
    assert span.startswith("open 0.375s … 0.589s  ·")
    assert (stdout, stderr) == ("out", "stderr> err")
    assert under(out, "ContainerWait", 2)[1] == "exit status 3"  # what the long poll waited for
    # 64-hex ids are cut to 12, the version prefix is kept
    assert "POST /v1.41/containers/da20d04c6689/start " in start
    assert "da20d04c6689bd3d" not in out
    assert lines[-1] == "5 exchanges on 3 connections over 609.8ms"


def test_stdin_and_json_messages() -> None:
    out = show(capture_path("run-stdin"), "--width", "120").stdout
    assert "stdin> hello from stdin" in out
    events = show(capture_path("events"), "--width", "120", "--lines", "0").stdout
    assert sum(" container " in line for line in events.splitlines()) == 29
    assert "container create da20d04c6689" in events
    build = show(capture_path("build"), "--width", "120").stdout
    assert "Step 2/2 : RUN echo built > /built" in build
    pull = show(capture_path("pull-error"), "--width", "120").stdout
    assert 'error: Get "http://127.0.0.1:9/v2/": dial tcp 127.0.0.1:9' in pull


def test_long_message_streams_show_their_first_and_last_lines() -> None:
    out = show(capture_path("events"), "--width", "120", "--lines", "4").stdout
    lines = [line.strip() for line in out.splitlines()]
    assert "… 25 more lines" in lines
    assert lines.index("… 25 more lines") == lines.index("container attach da20d04c6689") + 1


# -- options ------------------------------------------------------------------------------------


def test_width_follows_the_option() -> None:
    for width in (40, 60, 80, 200):
        out = show(capture_path("run"), "--width", str(width)).stdout
        assert max(len(line) for line in out.splitlines()) <= width
        assert operations(out)[2] == ("ContainerAttach" if width >= 80 else "ContainerAt…")
    wide = show(capture_path("run"), "--width", "200").stdout
    assert "attach?stderr=1&stdout=1&stream=1 " in wide  # nothing cut at 200 columns


def test_width_falls_back_to_columns_then_120() -> None:
    out = show(capture_path("run"), env={"COLUMNS": "90"}).stdout
    assert max(len(line) for line in out.splitlines()) == 90
    out = show(capture_path("run")).stdout
    assert max(len(line) for line in out.splitlines()) <= 120


def test_filters_select_rows() -> None:
    run = capture_path("run")
    assert operations(show(run, "--conn", "2").stdout) == ["ContainerAttach"]
    assert operations(show(run, "--conn", "2", "--conn", "3").stdout) == [
        "ContainerAttach",
        "ContainerStart",
    ]
    assert operations(show(run, "--op", "*Wait").stdout) == ["ContainerWait"]
    assert operations(show(run, "--path", "/containers/*/start").stdout) == ["ContainerStart"]
    assert operations(show(run, "--status", "1xx,204").stdout) == [
        "ContainerAttach",
        "ContainerStart",
    ]
    assert operations(show(run, "--grep", "StatusCode").stdout) == ["ContainerWait"]
    assert operations(show(run, "--since", "0.3", "--until", "0.377").stdout) == [
        "ContainerAttach",
        "ContainerWait",
    ]
    out = show(run, "--op", "Container*", "--status", "2xx").stdout
    assert operations(out) == ["ContainerCreate", "ContainerWait", "ContainerStart"]
    assert out.splitlines()[-1] == "5 exchanges on 3 connections over 609.8ms, 3 shown"


def test_a_filter_that_matches_nothing() -> None:
    out = show(capture_path("run"), "--op", "Nothing").stdout
    assert rows(out) == []
    assert out.splitlines()[-1].endswith(", 0 shown")


def test_bad_filters_are_usage_errors() -> None:
    result = CliRunner().invoke(main, ["show", capture_path("run"), "--status", "6xx"])
    assert result.exit_code == 2
    assert "bad status '6xx'" in result.output
    result = CliRunner().invoke(main, ["show", capture_path("run"), "--since", "2", "--until", "1"])
    assert result.exit_code == 2


def test_json_is_one_summary_per_exchange_and_takes_filters() -> None:
    loaded = load(capture_path("run"))
    out = show(capture_path("run"), "--json").stdout
    assert [json.loads(line) for line in out.splitlines()] == [
        {"version": 1, **json.loads(json.dumps(ex.summary()))} for ex in loaded
    ]
    out = show(capture_path("run"), "--json", "--conn", "1", "--status", "2xx").stdout
    summaries = [json.loads(line) for line in out.splitlines()]
    assert [s["operation"] for s in summaries] == [
        "SystemPingHead",
        "ContainerCreate",
        "ContainerWait",
    ]
    out = show(capture_path("run"), "--json", "--grep", "err").stdout
    (attach,) = [json.loads(line) for line in out.splitlines() if "Attach" in line]
    assert attach["stderr"] == "err\n"


def test_bodies_pretty_print_json() -> None:
    out = show(capture_path("run"), "--width", "120", "--bodies").stdout
    lines = out.splitlines()
    heads = [line.strip() for line in lines if "body" in line and "application/json" in line]
    assert heads[:2] == ["request body 1.5K application/json", "response body 88B application/json"]
    assert any(line.endswith('  "Cmd": [') for line in lines)
    # bodies are shown whole: ids are not shortened there
    assert any(
        line.endswith(
            '"Id": "da20d04c6689' + 'bd3db740731ca27cb2c0c4963e36a070e3c54215ebd8ca54d275",'
        )
        for line in lines
    )
    # The wait's answer is shown as its message, and (as every JSON body) as a body, once each.
    assert out.count("exit status 3") == 1
    assert out.count('"StatusCode": 3') == 1


def test_bodies_show_binary_as_a_hex_preview() -> None:
    out = show(capture_path("cp"), "--width", "120", "--bodies").stdout
    assert "response body 2.0K application/x-tar" in out
    assert "00000000  64 6f 63 6b 74 61 70 2d 63 70 2e 74 78 74 00 00  |docktap-cp.txt..|" in out
    assert "… 1.9K more" in out


def test_binary_stdin_shows_as_hex_and_text_stdin_as_text(dockerd: Daemon, tmp_path: Path) -> None:
    """What a client sends on an attach stream is shown as the body rule says: as text when it
    is text, as hex when it is not (a gzip stream, an image, a tar: mojibake helps no one)."""
    sent = b"\x1f\x8b\x08\x00" + bytes(range(256))
    script = "cat >/dev/null; echo done"
    command = ["docker", "run", "-i", "--rm", "--network", "none", "bb", "sh", "-c", script]
    binary = docktap_run(dockerd, tmp_path / "b.jsonl", *command, input=sent)
    assert binary.proc.stdout == b"done\n"
    assert one(binary.capture, "ContainerAttach").output("stdin") == sent
    out = show(str(tmp_path / "b.jsonl"), "--width", "120").stdout
    stdin = [line.lstrip(" │") for line in out.splitlines() if "stdin> " in line]
    assert stdin == [
        "stdin> 00000000  1f 8b 08 00 00 01 02 03 04 05 06 07 08 09 0a 0b  |................|",
        "stdin> 00000010  0c 0d 0e 0f 10 11 12 13 14 15 16 17 18 19 1a 1b  |................|",
        "stdin> 00000020  1c 1d 1e 1f 20 21 22 23 24 25 26 27 28 29 2a 2b  |.... !\"#$%&'()*+|",
        "stdin> 00000030  2c 2d 2e 2f 30 31 32 33 34 35 36 37 38 39 3a 3b  |,-./0123456789:;|",
        "stdin> … 196B more",
    ]
    assert "\ufffd" not in out and "done" in out
    text = docktap_run(dockerd, tmp_path / "t.jsonl", *command, input="héllo\n".encode())
    assert text.proc.stdout == b"done\n"
    out = show(str(tmp_path / "t.jsonl"), "--width", "120").stdout
    assert [line.lstrip(" │") for line in out.splitlines() if "stdin> " in line] == ["stdin> héllo"]


def test_explain_puts_a_line_under_each_exchange(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("docktap.explain")
    notes = {"ContainerWait": "waits for the container", "ContainerStart": "starts it"}
    fake.explain = notes.get  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "docktap.explain", fake)
    out = show(capture_path("run"), "--width", "120", "--explain").stdout
    for operation, note in notes.items():
        assert f"# {note}" in under(out, operation, 2)
    assert sum(line.lstrip(" │").startswith("# ") for line in out.splitlines()) == 2
    plain = show(capture_path("run"), "--width", "120").stdout
    assert "# " not in plain


def test_explain_with_the_real_explanations() -> None:
    from docktap.explain import explain

    out = show(capture_path("run"), "--width", "120", "--explain").stdout
    note = explain("ContainerCreate")
    assert note
    words = " ".join(line.lstrip(" │").removeprefix("# ") for line in out.splitlines())
    assert note in words


def test_colour_only_when_asked_or_on_a_terminal() -> None:
    run = capture_path("run")
    assert "\x1b[" not in show(run).stdout
    forced = show(run, env={"FORCE_COLOR": "1"}).stdout
    assert "\x1b[32m200\x1b[0m" in forced  # 2xx green
    assert "\x1b[35m101\x1b[0m" in forced  # 101 magenta
    assert "\x1b[31mstderr> err\x1b[0m" in forced  # stderr red
    assert ANSI.sub("", forced) == show(run).stdout  # the same text, only coloured
    assert "\x1b[" not in show(run, env={"FORCE_COLOR": "1", "NO_COLOR": "1"}).stdout
    assert "\x1b[" in show(run, "--color", "always", env={"NO_COLOR": "1"}).stdout
    assert "\x1b[" not in show(run, "--color", "never", env={"FORCE_COLOR": "1"}).stdout


def test_status_colours_by_class() -> None:
    assert [timeline.status_style(s) for s in (101, 200, 304, 404, 500, None)] == [
        "magenta",
        "green",
        "cyan",
        "yellow",
        "red",
        "dim",
    ]


def test_show_refuses_a_file_that_is_no_capture(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type":"nope"}\n')
    result = CliRunner().invoke(main, ["show", str(bad)])
    assert result.exit_code == 1
    assert "no capture header" in result.output


# -- the renderer, pure -------------------------------------------------------------------------


def test_render_yields_one_text_per_exchange_and_is_pure() -> None:
    loaded = load(capture_path("run"))
    options = TimelineOptions(width=120, styled=True)
    first = list(render(loaded, options))
    assert all(isinstance(line.to_text(), Text) for line in first)
    assert len(first) == 2 + 5 + 1  # title, heads, the exchanges, summary
    again = list(render(loaded, options))
    assert [t.plain for t in first] == [t.plain for t in again]
    assert [t.spans for t in first] == [t.spans for t in again]
    plain = list(render(loaded, TimelineOptions(width=120, styled=False)))
    assert [t.plain for t in plain] == [t.plain for t in first]
    assert all(t.spans == [] for t in plain)


def test_render_rows_only_without_the_header() -> None:
    loaded = load(capture_path("run"))
    select = Filter.from_options(conns=[1]).matches
    options = TimelineOptions(width=100, styled=False, header=False)
    text = render_lines(render(loaded, options, select))
    assert [op_of(line) for line in text.splitlines() if ROW.match(line)] == [
        "SystemPingHead",
        "ContainerCreate",
        "ContainerWait",
    ]
    assert "capture" not in text  # no title, no summary


@pytest.mark.parametrize(("size", "text"), [(0, "-"), (1, "1B"), (1536, "1.5K")])
def test_size_cells_say_nothing_went_with_a_dash(size: int, text: str) -> None:
    assert timeline.size_cell(size) == text


def _capture_with(path: Path, *, footer: bool) -> Capture:
    enc = RecordEncoder(1_800_000_000.0, 0.0, 1 << 20)
    writer = CaptureWriter.create(str(path))
    writer.write([enc.header("unix:///var/run/docker.sock", None, "0.1.0")])
    writer.write([enc.opened(1, None, 0.1)])
    events = [
        RequestHead(1, 0.1, 1, "GET", "/v1.41/events", "1.1", ()),
        MessageEnd(1, 0.1, 1, Direction.CLIENT),
        ResponseHead(1, 0.2, 1, 200, "OK", "1.1", (("Content-Type", "application/json"),), False),
        BodyData(1, 0.3, 1, Direction.DAEMON, b'{"Type":"network","Action":"connect","Actor":'),
        BodyData(1, 0.4, 1, Direction.DAEMON, b'{"ID":"' + b"ab" * 32 + b'"}}\n'),
        RequestHead(2, 0.5, 1, "POST", "/v1.41/containers/x/attach", "1.1", ()),
        MessageEnd(2, 0.5, 1, Direction.CLIENT),
        ResponseHead(2, 0.5, 1, 101, "UPGRADED", "1.1", (("Upgrade", "tcp"),), True),
        Hijacked(2, 0.5, 1, "tcp"),
        StreamData(2, 0.6, 1, Direction.DAEMON, b"\x1b[1mbold\x1b[0m \xe6\x97\xa5\n"),
        Closed(2, 0.7),
    ]
    writer.write([enc.opened(2, None, 0.5)])
    for event in events:
        writer.write(enc.encode(event))
    if footer:
        writer.write([enc.footer(1.0, writer.records + 1)])
    writer.close()
    return load(path)


def test_an_exchange_still_open_at_the_end(tmp_path: Path) -> None:
    loaded = _capture_with(tmp_path / "cut.jsonl", footer=False)
    text = render_lines(render(loaded, TimelineOptions(width=100, styled=False)))
    lines = text.splitlines()
    events = next(line for line in lines if "SystemEvents" in line)
    # Still open, and what the capture holds of its body so far: not "-" (nothing came).
    assert events.rstrip().endswith("200    open      -   120B")
    assert "open 0.100s … still open" in text
    assert "network connect abababababab" in text  # one message across two body records
    assert "bold 日" in text  # escapes dropped, UTF-8 kept
    assert lines[-1].endswith("; incomplete capture (docktap did not close it)")


def test_lanes_are_reused_once_free() -> None:
    loaded = load(capture_path("socket-mount"))
    lanes = timeline.Lanes(loaded.exchanges)
    assert lanes.count < len(loaded.connections)
    assert set(lanes.lane.values()) == set(range(lanes.count))


def test_many_concurrent_connections_share_the_last_lane() -> None:
    loaded = load(capture_path("run"))
    lanes = timeline.Lanes(loaded.exchanges, max_lanes=2)
    assert lanes.count == 2
    marks = [lanes.marks(ex, stayed_open(ex)).row for ex in loaded.exchanges]
    assert marks == ["● ", "● ", " ●", "●│", "│●"]


def test_the_text_shortcut_gives_what_rich_would() -> None:
    """A Line holds what rich's own Text of it holds: nothing rich would strip is left in."""
    for path in sorted(CAPTURES.glob("*.jsonl")):
        options = TimelineOptions(width=120, styled=True, bodies=True)
        for line in render(load(path), options):
            text = Text(line.plain, spans=line.spans, no_wrap=True, overflow="crop")
            rich = line.to_text()
            assert (rich.plain, rich.spans, rich.no_wrap, rich.overflow) == (
                text.plain,
                text.spans,
                True,
                "crop",
            )
            assert text.plain == line.plain, path.name
            assert line.__rich__().plain == line.plain


def _big_capture(path: Path, exchanges: int) -> Path:
    enc = RecordEncoder(1_800_000_000.0, 0.0, 1 << 20)
    writer = CaptureWriter.create(str(path))
    writer.write([enc.header("unix:///var/run/docker.sock", ["docker", "ps"], "0.1.0")])
    writer.write([enc.opened(1, None, 0.0)])
    for seq in range(1, exchanges + 1):
        t = seq / 1000
        events = [
            RequestHead(1, t, seq, "GET", "/v1.41/containers/json", "1.1", ()),
            MessageEnd(1, t, seq, Direction.CLIENT),
            ResponseHead(1, t, seq, 200, "OK", "1.1", (), False),
            BodyData(1, t, seq, Direction.DAEMON, b"[]\n"),
            MessageEnd(1, t, seq, Direction.DAEMON),
        ]
        writer.write([record for event in events for record in enc.encode(event)])
    writer.write([enc.footer(exchanges, writer.records + 1)])
    writer.close()
    return path


def test_request_columns_are_each_their_own_request(tmp_path: Path) -> None:
    """More targets than a Rows keeps the column of, some of them again after they were let
    go, long ids in them or not: each row names its own request."""
    enc = RecordEncoder(1_800_000_000.0, 0.0, 1 << 20)
    path = tmp_path / "targets.jsonl"
    writer = CaptureWriter.create(str(path))
    writer.write([enc.header("unix:///var/run/docker.sock", None, "0.1.0")])
    writer.write([enc.opened(1, None, 0.0)])
    ids = [f"{n:064x}" for n in range(300)]
    targets = [f"/v1.41/containers/{ident}/json" for ident in ids]
    targets += [f"/v1.41/containers/c{n}/json" for n in range(300)]
    targets += targets[1:4] + targets[-4:-1]  # again, by the other method
    for seq, target in enumerate(targets, 1):
        events = [
            RequestHead(1, seq / 1000, seq, "POST" if seq % 2 else "GET", target, "1.1", ()),
            MessageEnd(1, seq / 1000, seq, Direction.CLIENT),
            ResponseHead(1, seq / 1000, seq, 200, "OK", "1.1", (), False),
            MessageEnd(1, seq / 1000, seq, Direction.DAEMON),
        ]
        writer.write([record for event in events for record in enc.encode(event)])
    writer.close()
    options = TimelineOptions(width=120, styled=False, header=False)
    shown = rows(render_lines(render(load(path), options)))
    assert len(shown) == len(targets)
    for seq, (row, target) in enumerate(zip(shown, targets, strict=True), 1):
        method = "POST" if seq % 2 else "GET"
        short = target.replace(target[18:82], target[18:30]) if len(target) > 64 else target
        assert f" {method} {short} " in row, (seq, row)


@pytest.mark.parametrize("colour", ["never", "always"])
def test_a_reader_that_goes_away_is_no_error(tmp_path: Path, colour: str) -> None:
    """`docktap show BIG | head`: the pipe breaks, docktap stops quietly."""
    import subprocess

    big = _big_capture(tmp_path / "big.jsonl", 3000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "docktap", "show", str(big), "--color", colour],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert b"docker ps" in proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0
    assert err == b""


def test_every_capture_at_every_width_renders_within_it() -> None:
    """Styled, with bodies and explanations, squeezed or wide: rich can draw every line."""
    console = Console(file=io.StringIO(), width=300, color_system="standard", force_terminal=True)
    for path in sorted(CAPTURES.glob("*.jsonl")):
        loaded = load(path)
        for width in range(40, 131, 7):
            options = TimelineOptions(
                width=width, styled=True, bodies=True, explain=lambda op: f"about {op} " * 9
            )
            for text in render(loaded, options):
                list(text.to_text().render(console))  # spans that run backwards would fail here
                for line in text.plain.split("\n"):
                    assert cell_len(line) <= width, (path.name, width, line)


def test_message_summaries() -> None:
    def summary(raw: bytes) -> list[tuple[str, str | None]]:
        (message,) = split(raw)
        return timeline.message_lines(message)

    assert summary(b'{"status":"Downloading","id":"abc","progress":"[=> ]"}') == [
        ("abc: Downloading [=> ]", None)
    ]
    assert summary(b'{"errorDetail":{"message":"denied"},"error":"denied"}') == [
        ("error: denied", "red")
    ]
    assert summary(b'{"stream":"one\\ntwo\\n"}') == [("one", None), ("two", None)]
    assert summary(b'{"stream":"\\n"}') == []
    assert summary(b'{"StatusCode":137,"Error":{"Message":"killed"}}') == [
        ("exit status 137, error: killed", "red")
    ]
    assert summary(b"[1, 2]") == [("[1,2]", None)]
    assert summary(b"garbage") == [("garbage", "dim")]


def test_the_title_quotes_the_command_as_a_shell_would() -> None:
    demo = Path(__file__).parents[1] / "src/docktap/data/demo.jsonl"
    title = show(str(demo), "--width", "200").stdout.splitlines()[0]
    quoted = "'\"'\"'"  # a single quote inside single quotes
    inner = f"sh -c {quoted}echo out; echo err >&2; exit 3{quoted}"
    assert title.startswith(f"sh -c 'docker run --rm --network none bb {inner}' · ")


def test_headers_shows_every_recorded_header() -> None:
    capture = load(capture_path("run"))
    out = show(capture_path("run"), "--headers", "--width", "200").stdout
    for ex in capture.exchanges:
        for name, value in ex.request_headers:
            assert f"> {name}: {value}" in out
        for name, value in ex.response_headers:
            assert f"< {name}: {value}" in out
    assert "> Host: " not in show(capture_path("run"), "--width", "200").stdout


def test_bodies_shows_the_container_wait_answer() -> None:
    out = show(capture_path("run"), "--bodies", "--op", "ContainerWait", "--width", "120").stdout
    assert "response body 30B application/json" in out
    assert '"StatusCode": 3' in out


# --- what could not be read ---------------------------------------------------------------


def test_json_lists_incidents_where_the_rows_are_and_takes_filters(tmp_path: Path) -> None:
    capture = str(bytescript.record(UNREADABLE, tmp_path / "broken.jsonl", ["docker", "info"]))
    lines = [json.loads(line) for line in show(capture, "--json").stdout.splitlines()]
    assert [line.get("exchange", line.get("incident")) for line in lines] == [1, "protocol", 2]
    assert lines[1] == {
        "version": 1,
        "incident": "protocol",
        "conn": 2,
        "seq": None,  # the line was no request: no exchange had begun on connection 2
        "at_s": 0.3,
        "message": "illegal request line",
        "sent": len(BROKEN_LINE),  # what went by unparsed each way, as in the size columns
        "received": len(REFUSED),
    }
    (incident,) = load(capture).incidents
    assert lines[1] == {"version": 1, **incident.summary()}
    # The text view's rows, in the same order.
    rows = show(capture, "--width", "100").stdout.splitlines()[2:5]
    assert [row.split()[0] if row.startswith(" #") else "incident" for row in rows] == [
        "#1",
        "incident",
        "#2",
    ]
    # Filtered as the rows are: by connection, time and --grep, not by exchange-only filters.
    assert show(capture, "--json", "--conn", "2").stdout.splitlines() == [json.dumps(lines[1])]
    assert show(capture, "--json", "--since", "0.25", "--until", "0.35").stdout.splitlines() == [
        json.dumps(lines[1])
    ]
    for exchanges_only in (["--op", "*"], ["--exchange", "1"], ["--status", "2xx"]):
        shown = show(capture, "--json", *exchanges_only).stdout.splitlines()
        assert all("incident" not in json.loads(line) for line in shown), exchanges_only
    assert "incident" in show(capture, "--json", "--grep", "illegal").stdout
    # Followed, the same lines as each is done: the incident once its connection has closed,
    # all its unparsed bytes counted (connection 1's exchanges completed before that).
    followed = show(capture, "--follow", "--json").stdout.splitlines()
    assert followed == [json.dumps(line) for line in (lines[0], lines[2], lines[1])]
    assert show(capture, "--follow", "--json", "--op", "*").stdout.splitlines() == [
        json.dumps(lines[0]),
        json.dumps(lines[2]),
    ]


def test_protocol_errors_and_unparsed_bytes_are_rows_at_their_place(tmp_path: Path) -> None:
    capture = str(bytescript.record(UNREADABLE, tmp_path / "broken.jsonl", ["docker", "info"]))
    lines = show(capture, "--width", "100").stdout.splitlines()
    rows = lines[2:5]
    assert [row.split()[:4] for row in rows] == [
        ["#1", "0.100s", "●", "1"],
        ["0.300s", "●", "2", "protocol"],
        ["#2", "0.400s", "●", "1"],
    ]
    error = rows[1]
    # The error says what was wrong, in words: no Python repr of the bytes, which stay a digest.
    assert " protocol error illegal request line " in error
    assert "bytearray" not in error and "b'" not in error and "info" not in error
    # What went by unread each way: the client's line, the daemon's 400.
    assert error.split()[-2:] == [f"{len(BROKEN_LINE)}B", f"{len(REFUSED)}B"]
    assert lines[5] == "2 exchanges on 2 connections over 900.0ms, 1 error record"
    # The error belongs to connection 2: --conn 2 shows it, --conn 1 does not.
    on_two = show(capture, "--width", "100", "--conn", "2").stdout.splitlines()
    assert [line.split()[2:4] for line in on_two[2:-1] if "protocol" in line] == [["2", "protocol"]]
    assert len(on_two) == 4 + 4  # title, heads, the error, the summary, the unread warning
    on_one = show(capture, "--width", "100", "--conn", "1").stdout
    assert "protocol error" not in on_one
    # A filter on exchanges alone (an operation, a number) leaves it out.
    assert "protocol error" not in show(capture, "--width", "100", "--op", "*").stdout
    assert "protocol error" not in show(capture, "--width", "100", "--exchange", "1").stdout
    assert "protocol error" in show(capture, "--width", "100", "--grep", "illegal").stdout
