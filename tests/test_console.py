"""The terminal policy every command shares: colour and width, from options, environment, tty."""

from __future__ import annotations

import io
import os
import termios
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

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
