"""The terminal policy every command shares: colour and width, from options, environment, tty."""

from __future__ import annotations

import io
import os
import subprocess
import termios
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from golden import ALL_CAPTURES, CAPTURES
from rich.cells import cell_len
from tapping import DOCKTAP, docktap

from docktap.cli import main
from docktap.console import DEFAULT_WIDTH, columns, cooked, interactive, terminal, wants_colour


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_COLOR", "FORCE_COLOR", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)


def test_colour_follows_the_option_then_no_color_then_force_color_then_the_tty(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain, tty = io.StringIO(), _Tty()
    assert wants_colour(plain, "always") and not wants_colour(tty, "never")
    assert wants_colour(tty) and not wants_colour(plain)
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert wants_colour(plain)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wants_colour(plain) and not wants_colour(tty)
    assert wants_colour(tty, "always")  # an explicit --color wins over both


def test_width_follows_the_option_then_columns_then_120(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = io.StringIO()
    assert columns(plain) == DEFAULT_WIDTH == 120
    assert columns(plain, 77) == 77
    monkeypatch.setenv("COLUMNS", "90")
    assert columns(plain) == 90
    monkeypatch.setenv("COLUMNS", "20")  # too narrow to lay anything out: ignored
    assert columns(plain) == 120
    monkeypatch.setenv("COLUMNS", "wide")
    assert columns(plain) == 120


def test_a_status_line_only_on_a_terminal() -> None:
    assert interactive(_Tty()) and not interactive(io.StringIO())


def test_the_console_writes_as_the_policy_says(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    term = terminal(out, "never", 60)
    assert (term.colour, term.width) == (False, 60)
    console = term.console()
    assert console.width == 60 and console.no_color
    console.print("[bold]x[/bold] :smile:")  # no markup, no emoji: text is printed as given
    assert out.getvalue() == "[bold]x[/bold] :smile:\n"
    coloured = terminal(io.StringIO(), "always", 80).console()
    assert coloured.color_system == "standard" and coloured.is_terminal


@pytest.fixture
def pty_stream() -> Iterator[io.TextIOWrapper]:
    """The terminal side of a real pseudo-terminal, as a text stream like stderr."""
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as stream:
        yield stream
    os.close(master)


def test_cooked_until_a_program_puts_the_terminal_raw(pty_stream: io.TextIOWrapper) -> None:
    fd = pty_stream.fileno()
    normal = termios.tcgetattr(fd)
    assert cooked(pty_stream)
    tty.setraw(fd)  # what the docker CLI does for `run -it`
    assert not cooked(pty_stream)
    termios.tcsetattr(fd, termios.TCSANOW, normal)
    assert cooked(pty_stream)
    tty.setcbreak(fd)  # keys one at a time, no echo: an editor, a pager
    assert not cooked(pty_stream)
    termios.tcsetattr(fd, termios.TCSANOW, normal)
    silent = termios.tcgetattr(fd)
    silent[3] &= ~termios.ECHO  # a password prompt, or a terminal that never echoes
    termios.tcsetattr(fd, termios.TCSANOW, silent)
    assert cooked(pty_stream)  # still a line at a time: a row lands as a line
    silent[3] &= ~termios.ICANON
    termios.tcsetattr(fd, termios.TCSANOW, silent)
    assert not cooked(pty_stream)


def test_what_is_no_terminal_is_always_cooked(tmp_path: Path) -> None:
    assert cooked(io.StringIO())  # no descriptor at all
    read, write = os.pipe()
    with os.fdopen(write, "w") as pipe, (tmp_path / "f").open("w") as file:
        assert cooked(pipe) and cooked(file)
    os.close(read)


def test_the_console_ignores_a_dumb_terminal_for_the_width_it_was_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TERM", "dumb")  # rich would take 80x25 for its size
    assert terminal(io.StringIO(), "always", 120).console().width == 120


# -- every command that prints for people, at 80 and 60 columns ------------------------------

ANSI = "\x1b["


def _policy(tmp_path: Path) -> str:
    """A policy learned from `docker version` only: most exchanges of the others are denied."""
    learned = CliRunner().invoke(main, ["policy", "learn", str(CAPTURES / "version.jsonl")])
    assert learned.exit_code == 0, learned.output
    policy = tmp_path / "version.yaml"
    policy.write_text(learned.output, encoding="utf-8")
    return str(policy)


#: The commands that render a capture for people (`docktap show` with every detail too), each
#: as the arguments before --width and --color.
COMMANDS: dict[str, Callable[[Path, Path], list[str]]] = {
    "show": lambda capture, _: ["show", str(capture)],
    "show-all": lambda capture, _: [
        "show",
        str(capture),
        "--bodies",
        "--headers",
        "--explain",
        "--lines",
        "0",
    ],
    "stats": lambda capture, _: ["stats", str(capture)],
    "audit": lambda capture, _: ["audit", str(capture)],
    "policy-check": lambda capture, tmp: ["policy", "check", _policy(tmp), str(capture)],
}


def _invoked(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code in (0, 1), result.output  # 1: audit or policy check found some
    return result.stdout


def assert_words_whole(narrow: str, wide: str, data: int | None = None) -> None:
    """Each word of `narrow` is a word of `wide`, or one shortened with … : none was split
    across lines. Marks with no letter nor digit (lanes, bars, rules) are not words.

    With `data`, headers and bodies are shown: nothing of them may be lost, so a word of
    theirs longer than `data` cells (more than a line can hold) is folded into pieces.
    """
    words = set(wide.split())
    long = [w for w in words if data is not None and len(w) > data]
    for word in narrow.split():
        if not any(c.isalnum() for c in word) or word in words:
            continue
        if word.endswith("…") and any(w.startswith(word[:-1]) for w in words):
            continue
        assert any(word in w for w in long), word


@pytest.mark.parametrize("width", [80, 60])
@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("capture", ALL_CAPTURES, ids=[p.stem for p in ALL_CAPTURES])
def test_every_command_fits_the_width_and_splits_no_word(
    capture: Path, command: str, width: int, tmp_path: Path
) -> None:
    args = COMMANDS[command](capture, tmp_path)
    narrow = _invoked([*args, "--width", str(width), "--color", "never"])
    assert narrow.strip()
    for line in narrow.splitlines():
        assert cell_len(line) <= width, line
    assert ANSI not in narrow
    wide = _invoked([*args, "--width", "1000", "--color", "never"])
    assert_words_whole(narrow, wide, width // 2 if command == "show-all" else None)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_color_always_colours_and_never_does_not(command: str, tmp_path: Path) -> None:
    args = COMMANDS[command](CAPTURES / "socket-mount.jsonl", tmp_path)
    coloured = _invoked([*args, "--color", "always", "--width", "80"])
    assert ANSI in coloured
    plain = _invoked([*args, "--color", "never", "--width", "80"])
    assert ANSI not in plain
    assert plain.strip()


def test_the_demo_fits_80_columns_in_colour_or_not() -> None:
    coloured = _invoked(["demo", "--no-docker", "--width", "80", "--color", "always"])
    plain = _invoked(["demo", "--no-docker", "--width", "80", "--color", "never"])
    assert ANSI in coloured and ANSI not in plain
    assert all(cell_len(line) <= 80 for line in plain.splitlines())
    assert_words_whole(plain, _invoked(["demo", "--no-docker", "--width", "1000"]))


def test_piped_output_follows_columns() -> None:
    capture = str(CAPTURES / "run.jsonl")
    narrow = docktap("stats", capture, env=dict(os.environ, COLUMNS="60")).stdout.decode()
    wide = docktap("stats", capture, env=dict(os.environ, COLUMNS="200")).stdout.decode()
    assert max(cell_len(line) for line in narrow.splitlines()) <= 60
    assert max(cell_len(line) for line in wide.splitlines()) > 60  # the columns it gave up
    assert_words_whole(narrow, wide)


def test_replay_misses_fit_the_width_in_colour_or_not() -> None:
    socket = 'curl -s --unix-socket "${DOCKER_HOST#unix://}" '
    # A wait the demo has, on a container it has not: its closest recording is named. An
    # inspection it has none of: no recording is close, and the miss says why.
    wait = socket + "-X POST 'http://docker/v1.41/containers/a-container-nobody-recorded/wait'"
    inspect = (
        socket + "'http://docker/v1.41/containers/a-container-nobody-recorded/json?all=1&size=true'"
    )
    demo = str(Path(__file__).parents[1] / "src/docktap/data/demo.jsonl")
    replay = [*DOCKTAP, "replay", demo, "--width", "60", "--color"]
    for colour in ("never", "always"):
        for ask, method in ((wait, "POST"), (inspect, "GET")):
            proc = subprocess.run(
                [*replay, colour, "--", "sh", "-c", ask],
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=60,
                check=False,
            )
            said = proc.stderr.decode()
            assert f"no recorded exchange for {method}" in said.replace("\n", " ")
            assert (ANSI in said) == (colour == "always")
            lines = said.splitlines()
            # The command that shows the closest recording is one to copy: it is kept whole.
            hint = [line for line in lines if line.startswith("  (`docktap show ")]
            if ask is wait:
                assert len(hint) == 1 and hint[0].endswith(" as recorded)")
            else:
                assert hint == []
                assert "holds no ContainerInspect at all" in " ".join(
                    line.strip() for line in lines
                )
            for line in lines:
                if line not in hint:
                    assert cell_len(line.replace("\x1b[33m", "").replace("\x1b[0m", "")) <= 60, line


def test_live_rows_of_proxy_take_the_width_and_colour(tmp_path: Path) -> None:
    import re
    import signal

    for colour in ("always", "never"):
        workdir = tmp_path / colour
        workdir.mkdir()
        argv = ["proxy", "--listen", "p.sock", "-o", "c.jsonl", "--upstream", "unix:///x"]
        proxy = subprocess.Popen(
            [*DOCKTAP, *argv, "--width", "60", "--color", colour],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert proxy.stderr is not None
        try:
            assert b"listening on" in proxy.stderr.readline()
            target = "http://docker/v1.41/containers/a-long-container-name-for-the-row/json"
            subprocess.run(
                ["curl", "-s", "--unix-socket", "p.sock", target],
                cwd=workdir,
                capture_output=True,
                timeout=30,
                check=True,
            )
            row = proxy.stderr.readline().decode()  # printed once the call is recorded
        finally:
            proxy.send_signal(signal.SIGTERM)
            proxy.communicate(timeout=30)
        assert (ANSI in row) == (colour == "always")
        plain = re.sub(r"\x1b\[[0-9;]*m", "", row.rstrip("\n"))
        assert " 502 " in plain and re.search(r" GET /v1\.\S*… ", plain)  # shortened, not wrapped
        assert cell_len(plain) <= 60, plain
