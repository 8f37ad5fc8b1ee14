"""The live view: rows printed as calls complete, from records fed as they are written.

The first tests feed the real captures through the incremental Assembler and the LiveView;
the last ones run `docktap run` and `docktap proxy` against the private daemon, through a
real pseudo-terminal and with stderr captured apart.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable
from pathlib import Path

import bytescript
import pytest
from bytescript import UNREADABLE
from dockerd import Daemon
from rich.console import Console
from tapping import DOCKTAP, Proxy, Terminal, checked_capture, docktap, ops, run_in_pty

from docktap import load
from docktap.capture.format import Record
from docktap.capture.reader import Assembler, Exchange, Part, decode
from docktap.render.live import HeldOutput, LiveAudit, LiveStats, LiveView
from docktap.render.timeline import TimelineOptions

CAPTURES = Path(__file__).parent.parent / "captures"
NAMES = sorted(path.stem for path in CAPTURES.glob("*.jsonl"))
RUN = ["docker", "run", "--rm", "--network", "none", "bb"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# A live row: exchange number, time, four lane cells, the connection, operation, request,
# status, duration, bytes each way; nothing cut off.
ROW = re.compile(
    r"^ *#[0-9]+ +[0-9]+\.[0-9]{3}s [ │●]{4} [0-9]+ +\S+ +[A-Z]+ \S.* (?:[0-9]{3}|---) +\S+ +\S+"
    r" +\S+$"
)
DETAIL = re.compile(r"^ {16}[ │]{4} {8}\S")  # a line under a row


def op_of(row: str) -> str:
    found = re.search(r"[0-9]s [ │●]+ [0-9]+ +(\S+)", row)
    assert found, row
    return found.group(1)


def records(name: str) -> list[Record]:
    return load(CAPTURES / f"{name}.jsonl").records


def key(ex: Exchange) -> tuple[object, ...]:
    return (
        ex.conn,
        ex.seq,
        ex.operation,
        ex.status,
        ex.duration_s,
        ex.request_body_size,
        ex.response_body_size,
        bytes(ex.response_body),
        ex.frames,
        {k: bytes(v) for k, v in ex.stream.items()},
    )


# -- the incremental assembler ----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_fed_record_by_record_every_exchange_completes_once(name: str) -> None:
    capture = load(CAPTURES / f"{name}.jsonl")
    assembler = Assembler()
    completed = [ex for record in capture.records for ex in assembler.feed(record)]
    assert assembler.open_exchanges() == []
    assert len(completed) == len({(ex.conn, ex.seq) for ex in completed})
    assert sorted(map(key, completed)) == sorted(map(key, capture.exchanges))
    assert list(map(key, assembler.ordered())) == list(map(key, capture.exchanges))


def test_completion_order_follows_the_records() -> None:
    assembler = Assembler()
    completed = [ex.operation for r in records("run") for ex in assembler.feed(r)]
    # the start answers before the attach stream ends, and the long poll comes last
    assert completed == [
        "SystemPingHead",
        "ContainerCreate",
        "ContainerStart",
        "ContainerAttach",
        "ContainerWait",
    ]


def test_a_forgetful_assembler_keeps_only_what_is_in_flight() -> None:
    assembler = Assembler(keep=False)
    for record in records("run"):
        assembler.feed(record)
    assert assembler.exchanges == {}
    assert assembler.connections == {}


def test_exchanges_left_open_by_a_cut_capture() -> None:
    cut = [r for r in records("run") if r["mono"] < 0.5]
    assembler = Assembler()
    done = [ex.operation for r in cut for ex in assembler.feed(r)]
    assert done == ["SystemPingHead", "ContainerCreate"]
    still = assembler.open_exchanges()
    assert [ex.operation for ex in still] == ["ContainerAttach", "ContainerWait", "ContainerStart"]
    assert all(ex.ended_mono is None for ex in still)


# -- the view ---------------------------------------------------------------------------------


def view(width: int = 120, status: bool = False) -> tuple[LiveView, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, soft_wrap=True)
    options = TimelineOptions(width=width, styled=False, header=False)
    return LiveView(console, options, status=status), out


def test_rows_print_as_calls_complete() -> None:
    live, out = view()
    for record in records("run"):
        live([record])
    live.stop()
    text = out.getvalue()
    rows = [line for line in text.splitlines() if ROW.match(line)]
    assert [op_of(row) for row in rows] == [
        "SystemPingHead",
        "ContainerCreate",
        "ContainerStart",
        "ContainerAttach",
        "ContainerWait",
    ]
    assert all(ROW.match(line) or DETAIL.match(line) for line in text.splitlines()), text
    start = next(row for row in rows if "ContainerStart" in row)
    assert " ││●  3 " in start  # the attach and the wait are in flight beside it
    assert "   out\n" in text and "stderr> err" in text
    assert "open 0.375s … 0.589s" in text  # no capture end known: no bar


def test_batches_do_not_change_the_output() -> None:
    one, one_out = view()
    for record in records("logs-follow"):
        one([record])
    batch, batch_out = view()
    batch(records("logs-follow"))
    assert one_out.getvalue() == batch_out.getvalue()
    assert "stderr> warn3" in batch_out.getvalue()


def test_exchanges_never_completed_are_printed_at_the_end() -> None:
    live, out = view()
    live([r for r in records("run") if r["mono"] < 0.5])
    assert "ContainerAttach" not in out.getvalue()
    live.stop()
    rows = [line for line in out.getvalue().splitlines() if ROW.match(line)]
    assert [op_of(row) for row in rows[2:]] == [
        "ContainerAttach",
        "ContainerWait",
        "ContainerStart",
    ]
    assert all(" open " in row for row in rows[2:])
    live.stop()  # twice is harmless
    assert len([line for line in out.getvalue().splitlines() if ROW.match(line)]) == 5


def test_the_end_of_capture_record_finishes_the_view() -> None:
    live, out = view()
    cut = [r for r in records("run") if r["mono"] < 0.5]
    live([*cut, {"type": "end-of-capture", "records": len(cut) + 1, "t": 0.0, "mono": 0.5}])
    assert len([line for line in out.getvalue().splitlines() if ROW.match(line)]) == 5


def gated(ready: Callable[[], bool]) -> tuple[LiveView, LiveAudit, io.StringIO]:
    """A live view and a live audit printing through one HeldOutput, as in the recording
    child."""
    out = io.StringIO()
    console = Console(file=out, width=120, color_system=None, soft_wrap=True)
    held = HeldOutput(ready)
    live = LiveView(console, TimelineOptions(width=120, styled=False, header=False), held=held)
    return live, LiveAudit(console, "low", held), out


def test_rows_wait_while_the_terminal_is_raw_and_come_out_in_order() -> None:
    cooked = False
    asked = 0

    def ready() -> bool:
        nonlocal asked
        asked += 1
        return cooked

    live, audit, out = gated(ready)
    run = records("run")
    *rest, end = run
    live(run[:1])  # the header: no row is due, so the terminal is not even asked
    audit(run[:1])
    assert asked == 0
    before = [r for r in rest if r["mono"] < 0.5]  # the ping and the create complete
    after = rest[len(before) :]
    for record in before:
        live([record])
        audit([record])
    assert out.getvalue() == "" and asked > 0  # raw the whole time: all of it held
    cooked = True
    for record in after:  # the next row due finds the terminal cooked: all of it comes out
        live([record])
        audit([record])
    text = out.getvalue()
    assert [op_of(line) for line in text.splitlines() if ROW.match(line)] == [
        "SystemPingHead",
        "ContainerCreate",
        "ContainerStart",
        "ContainerAttach",
        "ContainerWait",
    ]
    # As printed without holding: the audit warning right after its call's row.
    unheld, unheld_audit, unheld_out = gated(lambda: True)
    for record in rest:
        unheld([record])
        unheld_audit([record])
    assert text == unheld_out.getvalue()
    lines = text.splitlines()
    warned = next(n for n, line in enumerate(lines) if line.startswith("docktap audit: LOW"))
    assert op_of(lines[warned - 1]) == "ContainerCreate"
    live([end])
    assert out.getvalue() == text


def test_rows_still_held_at_the_end_are_printed() -> None:
    live, audit, out = gated(lambda: False)  # docktap stopped with the terminal still raw
    *rest, end = records("run")
    live(rest)
    audit(rest)
    assert out.getvalue() == ""
    live([end])  # the end of the capture prints them all the same
    rows = [line for line in out.getvalue().splitlines() if ROW.match(line)]
    assert len(rows) == 5 and "docktap audit: LOW" in out.getvalue()
    cut, _, cut_out = gated(lambda: False)
    cut(rest)
    cut.stop()  # so does the view's end when the capture had none (docktap was killed)
    assert len([line for line in cut_out.getvalue().splitlines() if ROW.match(line)]) == 5


def test_a_failing_terminal_turns_the_view_off_quietly() -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(5, "Input/output error")  # the terminal went away

    console = Console(file=Broken(), width=100, color_system=None)
    live = LiveView(console, TimelineOptions(width=100, styled=False, header=False))
    live(records("run"))  # must not raise: the relay calls this
    assert live.failed is not None and "Input/output error" in live.failed
    live(records("run"))
    live.stop()


def parts(name: str) -> list[Part]:
    return [part for i, r in enumerate(records(name)) if (part := decode(r, i)) is not None]


def part(record: Record) -> Part:
    decoded = decode(record, 0)
    assert decoded is not None
    return decoded


def test_status_counts() -> None:
    stats = LiveStats()
    for piece in parts("run"):
        stats.count(piece)
    assert (stats.connections, stats.open, stats.requests, stats.failed, stats.errors) == (
        3,
        0,
        5,
        0,
        0,
    )
    assert stats.sent == 1508
    assert stats.received == 88 + 24 + 30
    pull = LiveStats()
    for piece in parts("pull-error"):
        pull.count(piece)
    assert pull.failed == 1
    assert "(1 failed)" in pull.line().plain


def test_capped_bodies_count_their_whole_size() -> None:
    stats = LiveStats()
    head = {"conn": 1, "seq": 1, "dir": "daemon", "t": 0.0, "mono": 0.0}
    stats.count(part({"type": "body", "size": 10, **head}))
    assert stats.received == 10
    stats.count(part({"type": "end", "size": 1000, "inline": 10, **head}))
    assert stats.received == 1000


def test_errors_count_with_or_without_a_connection() -> None:
    stats = LiveStats()
    error = {"type": "error", "t": 0.0, "mono": 0.0}
    stats.count(part({**error, "conn": None, "kind": "upstream", "message": "refused"}))
    stats.count(part({**error, "conn": 1, "seq": 1, "kind": "protocol", "message": "bad"}))
    assert stats.errors == 2
    assert "2 errors" in stats.line().plain


def test_status_line_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=True, color_system="standard")
    live = LiveView(console, TimelineOptions(width=100, header=False), status=True)
    live.start()
    live(records("run"))
    live.stop()
    text = ANSI.sub("", out.getvalue())
    assert "0 open of 3 connections · 5 requests · ↑ 1.5K ↓ 142B · 0 errors" in text
    assert "ContainerWait" in text


# -- the real command -------------------------------------------------------------------------


def test_run_prints_rows_on_stderr_and_leaves_stdout_alone(dockerd: Daemon, tmp_path: Path) -> None:
    capture = tmp_path / "c.jsonl"
    proc = docktap(
        *("run", "-o", str(capture), "--upstream", dockerd.host, "--"),
        *RUN,
        *("sh", "-c", "echo out; echo err >&2; exit 3"),
        env=dict(dockerd.env, COLUMNS="200"),
    )
    assert proc.returncode == 3
    assert proc.stdout == b"out\n"
    lines = proc.stderr.decode().splitlines()
    assert lines[-1] == f"docktap: capture written to {capture}"
    assert "err" in lines
    rows = [line for line in lines if ROW.match(line)]
    assert sorted(op_of(row) for row in rows) == sorted(
        str(op) for op in ops(checked_capture(capture))
    )
    assert "\x1b" not in proc.stderr.decode()  # stderr is no terminal: no colour
    for line in lines[:-1]:
        assert line == "err" or ROW.match(line) or DETAIL.match(line), line


def test_quiet_run_prints_nothing_of_its_own(dockerd: Daemon, tmp_path: Path) -> None:
    proc = docktap(
        *("run", "-q", "-o", str(tmp_path / "c.jsonl"), "--upstream", dockerd.host, "--"),
        *RUN,
        *("sh", "-c", "echo out; echo err >&2"),
        env=dockerd.env,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"out\n", b"err\n")


def test_run_in_a_terminal_never_cuts_a_line(dockerd: Daemon, tmp_path: Path) -> None:
    capture = tmp_path / "c.jsonl"
    script = "for i in 1 2 3 4 5; do echo line$i; echo warn$i >&2; sleep 0.1; done"
    argv = [*DOCKTAP, "run", "-o", str(capture), "--upstream", dockerd.host, "--"]
    code, output = run_in_pty([*argv, *RUN, "sh", "-c", script], dockerd.env)
    assert code == 0
    text = ANSI.sub("", output.decode())
    lines = text.replace("\r\n", "\n").split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    command_lines = {f"line{i}" for i in range(1, 6)} | {f"warn{i}" for i in range(1, 6)}
    assert command_lines <= set(lines)  # the command's own output, each line whole
    for line in lines:
        whole = (
            line in command_lines
            or ROW.match(line)
            or DETAIL.match(line)
            or line == f"docktap: capture written to {capture}"
        )
        assert whole, f"cut or mixed line {line!r} in:\n{text}"
    rows = [line for line in lines if ROW.match(line)]
    assert sorted(op_of(row) for row in rows) == sorted(
        str(op) for op in ops(checked_capture(capture))
    )
    assert lines[-1] == f"docktap: capture written to {capture}"
    assert "\x1b[" in output.decode()  # a terminal: coloured


def test_proxy_prints_rows_without_a_status_line_off_a_terminal(
    dockerd: Daemon, tmp_path: Path
) -> None:
    proxy = Proxy(dockerd, tmp_path)
    assert proxy.docker("version").returncode == 0
    proxy.stop()
    lines = proxy.stderr.splitlines()
    rows = [line for line in lines if ROW.match(line)]
    assert [op_of(row) for row in rows] == ["SystemPingHead", "SystemVersion"]
    assert not any("requests" in line for line in lines)
    assert lines[-1] == f"docktap: capture written to {proxy.capture_path}"


def test_quiet_proxy(dockerd: Daemon, tmp_path: Path) -> None:
    proxy = Proxy(dockerd, tmp_path, "-q")  # ready when --ready-fd says so: -q prints nothing
    assert proxy.docker("version").returncode == 0
    capture = proxy.stop()
    assert proxy.stderr == ""  # only errors, and there were none
    assert ops(capture) == ["SystemPingHead", "SystemVersion"]


def test_proxy_status_line_in_a_terminal(dockerd: Daemon, tmp_path: Path) -> None:
    """The proxy on a terminal: rows, a status line, and a clean stop on SIGTERM."""
    import signal
    import subprocess

    sock = tmp_path / "p.sock"
    argv = [*DOCKTAP, "proxy", "--listen", str(sock), "--upstream", dockerd.host]
    argv += ["-o", str(tmp_path / "p.jsonl")]
    env = dict(dockerd.env, DOCKER_HOST=f"unix://{sock}")
    term = Terminal(argv, dockerd.env)
    try:
        term.expect(b"listening on")  # said once clients can connect
        subprocess.run(["docker", "version"], env=env, capture_output=True, timeout=60)
        term.expect(b"SystemVersion")  # its row
        term.expect(b" of 1 connections")  # a refresh of the status line that counted it
        os.kill(term.pid, signal.SIGTERM)
        code = term.wait()
    except BaseException:
        term.kill()
        raise
    assert code == 0
    text = ANSI.sub("", term.output.decode())
    assert "1 open of 1 connections" in text or "0 open of 1 connections" in text
    assert "SystemVersion" in text
    assert text.rstrip().endswith(f"capture written to {tmp_path / 'p.jsonl'}")


def test_a_protocol_error_is_a_row_when_it_happens(tmp_path: Path) -> None:
    capture = bytescript.record(UNREADABLE, tmp_path / "broken.jsonl")
    live, out = view()
    for record in load(capture).records:
        live([record])
    live.stop()
    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["#1", "0.300s", "#2"]
    assert lines[1].split()[2:] == ["2", "protocol", "error", "illegal", "request", "line"]
