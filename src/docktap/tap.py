"""What a tap on the relay is told, with no event loop in sight.

The relay calls a tap for every connection it opens and every chunk it forwards; the recording
link is the tap docktap uses, tests use their own. Both sides share these definitions, and
neither the recording child nor a test tap should have to import asyncio to get them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol

from docktap.direction import Direction


class PeerCredentials(NamedTuple):
    """The process on the other end of a unix socket, from SO_PEERCRED."""

    pid: int
    uid: int
    gid: int
    exe: str | None = None  # the program, when /proc lets us see it


# For the type checker only: the relay takes any object with these methods, and a Protocol
# class costs a millisecond to make, at the start of every `docktap run`, for nothing at run time.
if TYPE_CHECKING:

    class Tap(Protocol):
        """Receives a copy of everything the relay does; every method must return quickly."""

        def opened(self, conn: int, peer: PeerCredentials | None, t: float) -> None: ...

        def data(self, conn: int, direction: Direction, data: bytes, t: float) -> None: ...

        def eof(self, conn: int, direction: Direction, t: float) -> None: ...

        def closed(self, conn: int, t: float) -> None: ...

        def upstream_failed(self, conn: int, message: str, t: float) -> None: ...
