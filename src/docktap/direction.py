"""Who sent the bytes: the Docker client or the daemon.

Apart from the events (events.py) that carry it, because the relay's process names the
direction of every chunk it forwards but has no use for the events, which only the recorder
imports (when they were dataclasses, they cost 5 ms at every start-up of `docktap run`).
"""

from __future__ import annotations

import enum


class Direction(enum.Enum):
    """Who sent the bytes: the Docker client or the daemon."""

    CLIENT = "client"
    DAEMON = "daemon"

    @property
    def other(self) -> Direction:
        return Direction.DAEMON if self is Direction.CLIENT else Direction.CLIENT
