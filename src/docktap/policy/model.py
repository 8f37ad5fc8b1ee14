"""The policy file: which clients may ask the daemon for what, as people read and edit it.

A policy is YAML (a format people write by hand, with comments: `learn` says in them where each
rule came from). Its shape is fixed by `schema/policy-v1.json`, shipped with the package; this
module reads a parsed document into typed values and refuses, with the place and the reason,
whatever that schema refuses, so that docktap needs no schema library at run time.

A client is matched by its uid, by the path of its executable, by both, or is any client; for
each, the operations it may call (Engine API operation names, with the path template that names
them), and for the operations whose bodies carry privileges, the limits of what they may ask.
Absent limits are the narrowest: no privileged container, no host namespace, no Docker socket,
no bind mount, capability or device, and only the images listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import yaml

from docktap.routes_table import ROUTES

#: The format version a policy states in `docktap-policy`.
VERSION = 1
KEY = "docktap-policy"

#: Host namespaces a create body can share, by the HostConfig field that asks for it.
NAMESPACE_FIELDS = ("NetworkMode", "PidMode", "IpcMode", "UTSMode", "UsernsMode", "CgroupnsMode")

_TEMPLATES = {operation: (method, template) for method, template, operation, _ in ROUTES}


class PolicyError(ValueError):
    """The text is not a policy docktap can enforce; the message says where and why."""


@dataclass(frozen=True)
class Client:
    """Who a rule is for: a uid, an executable, both, or (neither) any client."""

    uid: int | None = None
    exe: str | None = None

    @property
    def any(self) -> bool:
        return self.uid is None and self.exe is None

    def matches(self, uid: int | None, exe: str | None) -> bool:
        return (self.uid is None or self.uid == uid) and (self.exe is None or self.exe == exe)

    def describe(self) -> str:
        if self.any:
            return "any client"
        if self.uid is None:
            return f"{self.exe}"
        return f"uid {self.uid}" + (f" ({self.exe})" if self.exe else "")


@dataclass(frozen=True)
class Limits:
    """What the body of a container create (or an exec, a pull) may ask for."""

    images: frozenset[str] = frozenset()
    binds: tuple[str, ...] = ()  # host path prefixes
    capabilities: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset()
    security_options: frozenset[str] = frozenset()
    host_namespaces: frozenset[str] = frozenset()  # NAMESPACE_FIELDS given "host"
    privileged: bool = False
    docker_socket: bool = False


@dataclass(frozen=True)
class Rule:
    operation: str
    method: str
    path: str
    limits: Limits | None = None  # None: the operation's body carries no limit we check


@dataclass(frozen=True)
class ClientRules:
    client: Client
    rules: dict[str, Rule] = field(default_factory=dict)  # by operation

    @cached_property
    def allowed(self) -> str:
        """Why a request this client may make is allowed: said once, for every request."""
        return f"allowed for {self.client.describe()}"


@dataclass(frozen=True)
class Policy:
    clients: tuple[ClientRules, ...]


def template(operation: str) -> tuple[str, str] | None:
    """The method and path template of an Engine API operation."""
    return _TEMPLATES.get(operation)


def loads(text: str) -> Policy:
    """A policy from the text of a policy file; PolicyError says what is wrong."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # One line: the reason is said on stderr at a reload, among docktap's other lines.
        raise PolicyError(f"not YAML: {' '.join(str(exc).split())}") from exc
    return from_document(document)


def _fail(where: str, why: str) -> PolicyError:
    return PolicyError(f"{where}: {why}")


def _mapping(value: Any, where: str, keys: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, "must be a mapping")
    unknown = sorted(str(k) for k in value if k not in keys)
    if unknown:
        raise _fail(where, f"unknown key {unknown[0]!r} (known: {', '.join(sorted(keys))})")
    missing = sorted(required - set(value))
    if missing:
        raise _fail(where, f"missing key {missing[0]!r}")
    return value


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(where, "must be a list of strings")
    return value


def _bool(value: Any, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _fail(where, "must be true or false")
    return value


def from_document(document: Any) -> Policy:
    """A policy from a parsed YAML document."""
    top = _mapping(document, "policy", {KEY, "clients"}, {KEY, "clients"})
    if top[KEY] != VERSION:
        raise _fail(KEY, f"format version {top[KEY]!r}; this docktap reads version {VERSION}")
    entries = top["clients"]
    if not isinstance(entries, list):
        raise _fail("clients", "must be a list")
    return Policy(tuple(_client_rules(entry, f"clients[{i}]") for i, entry in enumerate(entries)))


def _client(value: Any, where: str) -> Client:
    if value == "any":
        return Client()
    match = _mapping(value, where, {"uid", "exe"}, set())
    uid, exe = match.get("uid"), match.get("exe")
    if uid is not None and (not isinstance(uid, int) or isinstance(uid, bool) or uid < 0):
        raise _fail(f"{where}.uid", "must be a user id (a whole number)")
    if exe is not None and (not isinstance(exe, str) or not exe.startswith("/")):
        raise _fail(f"{where}.exe", "must be an absolute path")
    if uid is None and exe is None:
        raise _fail(where, "name a uid, an exe, or write `client: any`")
    return Client(uid, exe)


def _client_rules(value: Any, where: str) -> ClientRules:
    entry = _mapping(value, where, {"client", "allow"}, {"client", "allow"})
    client = _client(entry["client"], f"{where}.client")
    allow = entry["allow"]
    if not isinstance(allow, list):
        raise _fail(f"{where}.allow", "must be a list")
    rules: dict[str, Rule] = {}
    for index, item in enumerate(allow):
        rule = _rule(item, f"{where}.allow[{index}]")
        if rule.operation in rules:
            raise _fail(f"{where}.allow[{index}]", f"{rule.operation} is listed twice")
        rules[rule.operation] = rule
    return ClientRules(client, rules)


#: The body limits a rule may hold; a container create is held to all of them.
LIMIT_KEYS = (
    "images",
    "binds",
    "capabilities",
    "devices",
    "security_options",
    "host_namespaces",
    "privileged",
    "docker_socket",
)


def _rule(value: Any, where: str) -> Rule:
    item = _mapping(value, where, {"operation", "request", "body"}, {"operation", "request"})
    operation = item["operation"]
    known = template(operation) if isinstance(operation, str) else None
    if known is None:
        raise _fail(f"{where}.operation", f"{operation!r} is not an Engine API operation")
    request = f"{known[0]} {known[1]}"
    if item["request"] != request:
        raise _fail(f"{where}.request", f"{operation} is {request!r}, not {item['request']!r}")
    limits = None
    if "body" in item:
        body = _mapping(item["body"] or {}, f"{where}.body", set(LIMIT_KEYS), set())
        namespaces = _strings(body.get("host_namespaces"), f"{where}.body.host_namespaces")
        for name in namespaces:
            if name not in NAMESPACE_FIELDS:
                raise _fail(
                    f"{where}.body.host_namespaces",
                    f"{name!r} is none of {', '.join(NAMESPACE_FIELDS)}",
                )
        binds = _strings(body.get("binds"), f"{where}.body.binds")
        for bind in binds:
            if not bind.startswith("/"):
                raise _fail(f"{where}.body.binds", f"{bind!r} is not an absolute host path")
        limits = Limits(
            images=frozenset(_strings(body.get("images"), f"{where}.body.images")),
            binds=tuple(binds),
            capabilities=frozenset(
                _strings(body.get("capabilities"), f"{where}.body.capabilities")
            ),
            devices=frozenset(_strings(body.get("devices"), f"{where}.body.devices")),
            security_options=frozenset(
                _strings(body.get("security_options"), f"{where}.body.security_options")
            ),
            host_namespaces=frozenset(namespaces),
            privileged=_bool(body.get("privileged"), f"{where}.body.privileged"),
            docker_socket=_bool(body.get("docker_socket"), f"{where}.body.docker_socket"),
        )
    return Rule(operation, known[0], known[1], limits)
