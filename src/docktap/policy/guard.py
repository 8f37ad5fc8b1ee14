"""The guard a relay runs with: the policy in force, its mode, and where decisions go.

The relay makes one gate per client connection from it, and hands every decision back to it.
The policy is read through `current` at each decision, so a reload (SIGHUP, in the CLI) takes
effect at the next request, on every connection; a policy that does not parse never replaces
the one in force.
"""

from __future__ import annotations

from collections.abc import Callable

from docktap.policy.actions import Decided
from docktap.policy.gate import MAX_BODY, Gate
from docktap.policy.model import Policy

#: Called with the connection and each decision on it: the capture and stderr get them.
Reporter = Callable[[int, Decided], None]


class Guard:
    def __init__(
        self,
        policy: Policy,
        enforce: bool = True,
        report: Reporter | None = None,
        max_body: int = MAX_BODY,
        source: str | None = None,
    ) -> None:
        self.current = policy
        self.source = source  # the file it was read from, to read again on a reload
        self.enforce = enforce
        self.report = report
        self.max_body = max_body

    def replace(self, policy: Policy) -> None:
        self.current = policy

    def gate(self, uid: int | None, exe: str | None) -> Gate:
        return Gate(lambda: self.current, uid, exe, self.enforce, self.max_body)
