"""Where the `docktap` command begins: before its command line is imported.

`docktap run` records through a forked child that must import its engine (30 ms of CPU) before
the capture can be complete. Forked once click has parsed the arguments, 40 ms in, it imported
while the command ran and shared a core with it, and the capture waited for it after the
command exited. Forked here instead, as soon as sys.argv says a `run` begins and before click
and the command line are imported, it imports while the relay does, and is done about when the
command starts. The guess costs little when it is wrong (`run --help`, a usage error): a
standby never handed its settings exits, silent (recording/launch.py).

The run's arguments are then read here without click where they can be (runline.py), and the
run goes on without the command line (running.py): click, and the command line built on it,
are a sixth of what `docktap run -q` adds to its command. Any other command line, and every
other command, goes to the command line; so does a run that fails, to be told as click tells
it.
"""

from __future__ import annotations

import gc
import sys
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from docktap.run_options import RunArguments


def main() -> None:
    """The console script's and `python -m docktap`'s entry."""
    if sys.argv[1:2] == ["run"]:
        # From the very start, as `run` has it (see running.run): the collector's passes over
        # the modules being imported cost CPU, and would dirty pages the fork shares.
        gc.disable()
        from docktap.recording import launch

        launch.stand_by()
        from docktap.runline import read

        arguments = read(sys.argv[2:])
        if arguments is not None:
            _run(arguments)
    from docktap.cli import main as command_line

    command_line(prog_name="docktap")


def _run(arguments: RunArguments) -> NoReturn:
    """`docktap run` with arguments read without click: what the command line does for it,
    click left out until something goes wrong."""
    import warnings

    from docktap import running
    from docktap.messages import show_warning

    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        try:
            running.run(arguments)
        except running.RunError as error:
            from docktap.cli import run_failed

            run_failed(error)
