"""Where the `docktap` command begins: before its command line is imported.

`docktap run` records through a forked child that must import its engine (30 ms of CPU) before
the capture can be complete. Forked once click has parsed the arguments, 40 ms in, it imported
while the command ran and shared a core with it, and the capture waited for it after the
command exited. Forked here instead, as soon as sys.argv says a `run` begins and before click
and the command line are imported, it imports while the relay does, and is done about when the
command starts. The guess costs little when it is wrong (`run --help`, a usage error): a
standby never handed its settings exits, silent (recording/launch.py). Every other command
goes straight to the command line.
"""

from __future__ import annotations

import gc
import sys


def main() -> None:
    """The console script's and `python -m docktap`'s entry."""
    if sys.argv[1:2] == ["run"]:
        # From the very start, as `run` has it (see cli.run): the collector's passes over the
        # modules being imported cost CPU, and would dirty pages the fork shares.
        gc.disable()
        from docktap.recording import launch

        launch.stand_by()
    from docktap.cli import main as command_line

    command_line(prog_name="docktap")
