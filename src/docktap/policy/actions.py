"""What the gate asks of the relay: bytes to forward, an answer of its own, a decision to
report, the end of the client's input.

Apart from the gate, so that the relay can tell them apart on every chunk it relays without
importing the guard, which a relay without a policy (every `docktap run`) never loads. A request
makes a few of them: they are named tuples, which are built in a fraction of the time of a
frozen dataclass (whose every field is set through `object.__setattr__`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from docktap.policy.decide import Decision


class Forward(NamedTuple):
    """Send these bytes on to the daemon."""

    data: bytes


class Answer(NamedTuple):
    """Send these bytes to the client in docktap's name; then close it if `close`."""

    data: bytes
    close: bool


class Decided(NamedTuple):
    """The policy's decision on the connection's request number `seq` (as the observer numbers
    them; None for bytes that are no request); `enforced` is False in warn mode, where a denied
    request is forwarded all the same."""

    seq: int | None
    decision: Decision
    enforced: bool


class EndOfInput(NamedTuple):
    """The client has sent all it will: half-close the daemon connection."""


Action = Forward | Answer | Decided | EndOfInput
