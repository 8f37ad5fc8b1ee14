"""Leaving a process the moment its work is done: stdio flushed, no interpreter teardown.

Python's finalization tears down every module and object one by one: 10-20 ms of CPU for
docktap's, at the end of every `docktap run` and of every recorder, for nothing, since the
process holds nothing that must be closed by then (the capture is written, the sockets gone).
Whoever waits for the exit (a shell, the relay waiting for its recorder) waits for that too.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import NoReturn


def leave(code: int) -> NoReturn:
    """Exit with `code` now: what stdout and stderr buffer is written first, nothing else runs
    (no atexit handler, no finalizer): call it only once everything owed is done."""
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code)
