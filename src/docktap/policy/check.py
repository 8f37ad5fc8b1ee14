"""A capture's requests put through a policy, as if the guard had stood in front of them.

Each request is decided as the gate decides it live: from its head, its body where the operation
needs one, and its connection's peer credentials. What a policy denies here it would deny in
enforce mode, so CI can check a policy against a workload's captures before a rollout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from docktap import routes
from docktap.capture.reader import Capture, Exchange
from docktap.policy.asks import body_needed
from docktap.policy.decide import Decision, Request, decide
from docktap.policy.gate import MAX_BODY, too_large
from docktap.policy.learn import Source, client_of
from docktap.policy.model import Policy


@dataclass(frozen=True)
class Denied:
    source: Source
    exchange: Exchange
    decision: Decision


def request_of(ex: Exchange, peer: Mapping[str, object] | None) -> Request:
    """The request of a recorded exchange, as the gate would have seen it."""
    client = client_of(peer)
    return Request(
        ex.method,
        ex.target,
        ex.request_headers,
        bytes(ex.request_body),
        ex.request_complete is not False,
        client.uid,
        client.exe,
    )


def check(policy: Policy, name: str, capture: Capture) -> list[Denied]:
    """Every exchange of the capture the policy would deny, in the order they started.

    A body the guard reads whole before it decides is denied past the guard's bound, as the
    guard denies it, whatever the policy says."""
    denied = []
    for ex in capture.exchanges:
        connection = capture.connections.get(ex.conn)
        if ex.request_body_size > MAX_BODY and body_needed(
            ex.operation, ex.method, ex.request_headers
        ):
            path = routes.split_version(ex.target)[1]
            decision = Decision(False, ex.operation, too_large(MAX_BODY), ex.method, path)
        else:
            decision = decide(policy, request_of(ex, connection.peer if connection else None))
        if not decision.allowed:
            denied.append(Denied(Source.of(name, ex), ex, decision))
    return denied
