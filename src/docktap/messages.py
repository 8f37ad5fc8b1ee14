"""docktap's own lines on stderr: one prefix, written the same way from every command.

Kept apart from the command line so that `docktap run`, started without click (entry.py),
speaks as every other command does.
"""

from __future__ import annotations

import sys
from typing import TextIO


def say(message: str) -> None:
    """One line of docktap's own on stderr, flushed at once (it may be followed by the
    command's own output, or by an exit that skips the interpreter's teardown)."""
    sys.stderr.write(f"docktap: {message}\n")
    sys.stderr.flush()


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """What docktap warns of, as one line of its own rather than Python's warning with a
    path (for warnings.showwarning)."""
    say(f"warning: {message}")
