"""The narrowest policy that lets a set of captures happen again.

Per client (its uid and executable, from the connection's peer credentials; any client when the
capture has none), the operations it called, each with its path template (so ids and names are
generalized), and for the operations the policy limits, the union of what their bodies asked:
the images, the bind-mount sources (each allowed as a prefix), the capabilities, devices,
security options and host namespaces. Privileged containers and the Docker socket are allowed
only where a capture shows them. Every rule and every value keeps where it was first seen, in
the capture and the exchange number `docktap show`, `audit` and replay use (`run.jsonl #2`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from docktap.capture.reader import Capture, Exchange
from docktap.policy import asks as asking
from docktap.policy.model import Client, template


@dataclass(frozen=True)
class Source:
    """Where something was seen: a capture, and the exchange number `docktap show` prints."""

    capture: str
    number: int

    @classmethod
    def of(cls, capture: str, ex: Exchange) -> Source:
        return cls(capture, ex.number)

    def __str__(self) -> str:
        return f"{self.capture} #{self.number}"


@dataclass
class Seen:
    """Values of one limit, each with where it was first seen, in the order seen."""

    values: dict[str, Source] = field(default_factory=dict)

    def add(self, value: str, source: Source) -> None:
        self.values.setdefault(value, source)


@dataclass
class LearnedRule:
    operation: str
    method: str
    path: str
    source: Source
    count: int = 0
    limited: bool = False
    images: Seen = field(default_factory=Seen)
    binds: Seen = field(default_factory=Seen)
    capabilities: Seen = field(default_factory=Seen)
    devices: Seen = field(default_factory=Seen)
    security_options: Seen = field(default_factory=Seen)
    host_namespaces: Seen = field(default_factory=Seen)
    privileged: Source | None = None
    docker_socket: Source | None = None


@dataclass
class LearnedClient:
    client: Client
    rules: dict[str, LearnedRule] = field(default_factory=dict)


@dataclass
class Learned:
    captures: list[tuple[str, int]] = field(default_factory=list)  # name, exchanges
    clients: dict[Client, LearnedClient] = field(default_factory=dict)
    skipped: list[tuple[Source, str]] = field(default_factory=list)  # not learned, and why


def client_of(peer: Mapping[str, object] | None) -> Client:
    """The client a connection's peer record names (any client, without one)."""
    if not peer:
        return Client()
    uid, exe = peer.get("uid"), peer.get("exe")
    return Client(uid if isinstance(uid, int) else None, exe if isinstance(exe, str) else None)


def learn(captures: Iterable[tuple[str, Capture]]) -> Learned:
    """What the clients of these captures did, as the rules that allow exactly that."""
    learned = Learned()
    for name, capture in captures:
        learned.captures.append((name, len(capture.exchanges)))
        for ex in capture.exchanges:
            connection = capture.connections.get(ex.conn)
            client = client_of(connection.peer if connection else None)
            _learn_exchange(learned, client, ex, Source.of(name, ex))
    return learned


def _learn_exchange(learned: Learned, client: Client, ex: Exchange, source: Source) -> None:
    operation = ex.operation
    known = template(operation) if operation else None
    if operation is None or known is None:
        learned.skipped.append((source, f"{ex.method} {ex.path}: not an Engine API operation"))
        return
    limited = operation in asking.LIMITED
    if limited and ex.request_complete is False:
        learned.skipped.append((source, f"{operation}: its body is not in the capture in full"))
        return
    rules = learned.clients.setdefault(client, LearnedClient(client)).rules
    rule = rules.get(operation)
    if rule is None:
        rule = rules[operation] = LearnedRule(operation, known[0], known[1], source)
    rule.count += 1
    if not limited:
        return
    rule.limited = True
    asked = asking.read(operation, ex.method, ex.target, ex.request_headers, bytes(ex.request_body))
    for image in asked.images:
        rule.images.add(image, source)
    for path in asked.binds:
        rule.binds.add(path, source)
    for cap in asked.capabilities:
        rule.capabilities.add(cap, source)
    for device in asked.devices:
        rule.devices.add(device, source)
    for option in asked.security_options:
        rule.security_options.add(option, source)
    for name in asked.host_namespaces:
        rule.host_namespaces.add(name, source)
    if asked.privileged and rule.privileged is None:
        rule.privileged = source
    if asked.docker_sockets and rule.docker_socket is None:
        rule.docker_socket = source
