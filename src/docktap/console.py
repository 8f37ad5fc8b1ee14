"""Where docktap writes for people: the terminal policy and the rich Console of every command.

Whether to colour (--color, NO_COLOR, FORCE_COLOR, a terminal), how wide to be (--width, the
terminal, COLUMNS, 120), whether a line may be redrawn in place (a terminal only) and whether
a line may be printed now (not while a program has the terminal raw) are decided here once,
for the commands that print timelines, tables and live rows alike, and for the recording child
that prints live rows while docktap relays. The `--color` and `--width` options every such
command takes are defined here too, and so is the one rich Console they all print through.
"""

from __future__ import annotations

import errno
import io
import os
import termios
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, NamedTuple, TypeVar

if TYPE_CHECKING:
    from collections.abc import Iterable

    from rich.console import Console

    from docktap.render.timeline import Line

F = TypeVar("F", bound=Callable[..., object])

#: The width when neither the option, the terminal nor COLUMNS says.
DEFAULT_WIDTH = 120
#: The narrowest width anything is laid out for.
MIN_WIDTH = 40
#: What --color takes.
COLOUR_MODES = ("auto", "always", "never")
# Nothing docktap prints depends on the height; giving one keeps rich from taking 80x25 for
# the size of a TERM=dumb terminal, whatever width was asked for.
_HEIGHT = 25


def terminal_options(command: F) -> F:
    """`--color` and `--width`, as every command that prints for people takes them: they
    become its `colour` and `width` arguments, for `terminal`."""
    import click  # here: the recording child uses this module without the command line

    command = click.option(
        "--width",
        type=click.IntRange(min=MIN_WIDTH),
        metavar="N",
        help="Columns to fit (default: the terminal's, else $COLUMNS, else 120).",
    )(command)
    return click.option(
        "--color",
        "colour",
        type=click.Choice(COLOUR_MODES),
        default="auto",
        show_default=True,
        help="auto: on a terminal, unless NO_COLOR is set (FORCE_COLOR forces it).",
    )(command)


def wants_colour(stream: IO[str], mode: str = "auto") -> bool:
    """--color always/never, else NO_COLOR (off), FORCE_COLOR (on), and whether it is a tty."""
    if mode != "auto":
        return mode == "always"
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return stream.isatty()


def columns(stream: IO[str], explicit: int | None = None) -> int:
    """--width, else the terminal's width, else COLUMNS, else 120."""
    if explicit:
        return explicit
    try:
        if stream.isatty():
            size = os.get_terminal_size(stream.fileno()).columns
            if size > 0:  # 0: a terminal whose size nobody set
                return max(MIN_WIDTH, size)
    except (OSError, ValueError):
        pass
    value = os.environ.get("COLUMNS", "")
    return int(value) if value.isdigit() and int(value) >= MIN_WIDTH else DEFAULT_WIDTH


def interactive(stream: IO[str]) -> bool:
    """Whether a status line may be redrawn in place: only on a terminal."""
    return stream.isatty()


def cooked(stream: IO[str]) -> bool:
    """Whether a line written to `stream` now lands as a line: not while its terminal is raw.

    A program that reads keys one at a time (the shell of `docker run -it`, an editor, a
    pager) clears ICANON, and then owns the screen: a line written into it lands at the
    program's cursor, and in raw mode its newline does not even return the carriage. ECHO
    alone says nothing of the kind: a password prompt clears it for a line, and some
    terminals (Emacs's shell buffers) keep it off for good, where rows would never come.
    One tcgetattr, so cheap enough to ask before each print; a stream that is no terminal is
    always fine.
    """
    try:
        flags = termios.tcgetattr(stream.fileno())[3]
    except (termios.error, OSError, ValueError):  # not a terminal, or no descriptor at all
        return True
    return bool(flags & termios.ICANON)


# A named tuple, not a frozen dataclass: every command that prints imports this module, the live
# rows too, and a dataclass costs 0.3-0.5 ms of CPU to define (docktap/values.py).
class Terminal(NamedTuple):
    """How to write to one stream: in colour or not, and how wide."""

    stream: IO[str]
    colour: bool
    width: int

    def console(self) -> Console:
        return make_console(self.stream, self.colour, self.width)


def terminal(stream: IO[str], colour: str = "auto", width: int | None = None) -> Terminal:
    """The policy for `stream`, given the --color and --width a command was given, if any."""
    return Terminal(stream, wants_colour(stream, colour), columns(stream, width))


def make_console(stream: IO[str], colour: bool, width: int) -> Console:
    """The Console docktap prints through: every setting given, none left to the environment
    (a table rendered into a string comes out the same in a terminal, a pipe or CI)."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich would put /dev/null over stdout and exit: that is where `proxy -o -`
            # writes the capture. Raise instead, for the caller to decide.
            self.quiet = True
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    encoding = (getattr(stream, "encoding", None) or "utf-8").lower().replace("-", "")
    if encoding != "utf8" and isinstance(stream, io.TextIOWrapper):
        stream.reconfigure(errors="replace")  # lane markers and … on a latin-1 terminal
    return _Console(
        file=stream,
        width=width,
        height=_HEIGHT,
        legacy_windows=False,
        force_jupyter=False,
        color_system="standard" if colour else None,
        force_terminal=colour,
        no_color=not colour,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=True,
    )


def print_lines(console: Console, lines: Iterable[Line]) -> None:
    """Print rendered lines, in batches, each already fitted to the width.

    Without colour the text goes straight to the file (as `Console.print` writes it: the
    lines are made to fit, so it neither wraps nor crops them). With colour each line is turned into
    styled segments and written as ANSI text: printing a large Text through the Console
    costs many times more, and these lines need none of its wrapping.
    """
    from rich.color import ColorSystem

    write = console.file.write
    systems = {
        "standard": ColorSystem.STANDARD,
        "256": ColorSystem.EIGHT_BIT,
        "truecolor": ColorSystem.TRUECOLOR,
        "windows": ColorSystem.WINDOWS,
    }
    system = None if console.no_color else systems.get(console.color_system or "")
    out: list[str] = []
    for line in lines:
        if system is None:
            out.append(line.plain)
        else:
            out.append(
                "".join(
                    piece.style.render(piece.text, color_system=system)
                    if piece.style
                    else piece.text
                    for piece in line.to_text().render(console)
                )
            )
        if len(out) >= 1000:
            write("\n".join(out) + "\n")
            out.clear()
    if out:
        write("\n".join(out) + "\n")
    console.file.flush()
