"""What the gate asks of the relay: bytes to forward, an answer of its own, a decision to
report, the end of the client's input.

Apart from the gate, so that the relay can tell them apart on every chunk it relays without
importing the guard, which a relay without a policy (every `docktap run`) never loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from docktap.policy.decide import Decision


@dataclass(frozen=True)
class Forward:
    """Send these bytes on to the daemon."""

    data: bytes


@dataclass(frozen=True)
class Answer:
    """Send these bytes to the client in docktap's name; then close it if `close`."""

    data: bytes
    close: bool


@dataclass(frozen=True)
class Decided:
    """The policy's decision on the connection's request number `seq` (as the observer numbers
    them; None for bytes that are no request); `enforced` is False in warn mode, where a denied
    request is forwarded all the same."""

    seq: int | None
    decision: Decision
    enforced: bool


@dataclass(frozen=True)
class EndOfInput:
    """The client has sent all it will: half-close the daemon connection."""


Action = Forward | Answer | Decided | EndOfInput
