"""One request through a policy: allowed, or denied with the rule it breaks.

Pure: a policy and a request in, a decision out. The gate (enforcing on a live socket) and
`docktap policy check` (replaying captures) both decide through `decide`, so a policy checked
against captures is the policy enforced.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

from docktap import routes
from docktap.policy import asks as asking
from docktap.policy.model import Limits, Policy


class Request(NamedTuple):
    """A request as the guard sees it: its head, its body when the operation needs it read
    (`body_complete` False when only part of it is known), and who sent it.

    Named tuples, this and the decision: one of each is built per request, in a fraction of
    the time of a frozen dataclass."""

    method: str
    target: str
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    body_complete: bool = True
    uid: int | None = None
    exe: str | None = None

    @property
    def who(self) -> str:
        if self.uid is None:
            return "a client of unknown uid"
        return f"uid {self.uid}" + (f" ({self.exe})" if self.exe else "")


class Decision(NamedTuple):
    allowed: bool
    operation: str | None
    reason: str  # why it is denied; for an allowed one, which client rule allowed it
    method: str
    path: str

    @property
    def message(self) -> str:
        """What a denied client is told, and what the capture and reports say."""
        verdict = "allowed" if self.allowed else "denied"
        if not self.method:  # bytes that are no request
            return f"docktap policy: {verdict}: {self.reason}"
        return f"docktap policy: {verdict} {self.method} {self.path}: {self.reason}"


def _deny(request: Request, operation: str | None, path: str, reason: str) -> Decision:
    return Decision(False, operation, reason, request.method, path)


@lru_cache(maxsize=1024)
def _route(method: str, target: str) -> tuple[str, str | None]:
    """The unversioned path of a request and its operation; clients repeat their targets."""
    return routes.split_version(target)[1], routes.operation_name(method, target)


def decide(policy: Policy, request: Request) -> Decision:
    """Whether `request` may reach the daemon under `policy`."""
    path, operation = _route(request.method, request.target)
    if operation is None:
        return _deny(request, None, path, "not an Engine API operation")
    matched = ruled = False
    first_failure: str | None = None
    asked: asking.Asks | None = None
    # One pass over the clients (a loop, not lists: one request, a client or two).
    for client in policy.clients:
        if not client.client.matches(request.uid, request.exe):
            continue
        matched = True
        rule = client.rules.get(operation)
        if rule is None:
            continue
        ruled = True
        if rule.limits is not None or operation in asking.LIMITED:
            if not request.body_complete:
                first_failure = first_failure or "the body was not read in full"
                continue
            if asked is None:
                asked = asking.read(
                    operation, request.method, request.target, request.headers, request.body
                )
            failure = _beyond(rule.limits or Limits(), asked)
            if failure is not None:
                first_failure = first_failure or failure
                continue
        return Decision(True, operation, client.allowed, request.method, path)
    if not matched:
        return _deny(request, operation, path, f"no rule for {request.who}")
    if not ruled:
        return _deny(request, operation, path, f"{operation} not allowed for {request.who}")
    return _deny(request, operation, path, f"{first_failure} for {request.who}")


#: What an Asks holds after its images when it asks for nothing else (its fields 1 to 7).
_IMAGE_ALONE = asking.Asks()[1:8]


def _covered(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def _beyond(limits: Limits, asked: asking.Asks) -> str | None:
    """The first thing `asked` wants that `limits` does not give, or None."""
    if asked.error is not None:
        return f"a body dockerd cannot decode ({asked.error})"
    if asked[1:8] != _IMAGE_ALONE:  # most ask for nothing but an image: one compare
        if asked.privileged and not limits.privileged:
            return f"{asked.privileged_field} not allowed"
        for name in asked.host_namespaces:
            if name not in limits.host_namespaces:
                return f"HostConfig.{name}=host not allowed"
        for path in asked.docker_sockets:
            if not limits.docker_socket:
                return f"the Docker socket mounted ({path}) not allowed"
        for path in asked.binds:
            if not _covered(path, limits.binds):
                return f"HostConfig.Binds source {path} not allowed"
        for cap in asked.capabilities:
            if cap not in limits.capabilities:
                return f"HostConfig.CapAdd {cap} not allowed"
        for device in asked.devices:
            if device not in limits.devices:
                return f"HostConfig.Devices {device} not allowed"
        for option in asked.security_options:
            if option not in limits.security_options:
                return f"HostConfig.SecurityOpt {option} not allowed"
    for image in asked.images:
        if image not in limits.images:
            return f"image {image} not allowed"
    return None
