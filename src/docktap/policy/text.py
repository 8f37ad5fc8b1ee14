"""A learned policy as the YAML file people read and edit: every rule says where it came from.

Written by hand rather than by a YAML emitter, which cannot write comments. Every string is
written as a JSON string, which YAML reads as the same string (a double-quoted scalar), so no
name or path can turn into a number, a boolean or YAML syntax.
"""

from __future__ import annotations

import json

from docktap.policy.asks import LIMITS
from docktap.policy.learn import Learned, LearnedRule, Seen
from docktap.policy.model import KEY, VERSION, Client


def _q(text: str) -> str:
    return json.dumps(text)


def dump(learned: Learned) -> str:
    """The text of the policy file for what was learned."""
    lines = [
        "# docktap policy: the calls these captures made, and nothing wider.",
        "# Learned by `docktap policy learn` from:",
        *(f"#   {name} ({count} exchanges)" for name, count in learned.captures),
        "# Each rule says where it was first seen: the capture and the exchange number",
        "# (#N) that `docktap show`, `audit` and replay print. Format: docs/policy.md.",
        f"{KEY}: {VERSION}",
    ]
    if not learned.clients:
        lines.append("clients: []")
    else:
        lines.append("clients:")
    for entry in learned.clients.values():
        lines.append(f"- client: {_client(entry.client)}")
        lines.append("  allow:")
        for rule in entry.rules.values():
            lines.extend(_rule(rule))
    return "\n".join(lines) + "\n"


def _client(client: Client) -> str:
    if client.any:
        return "any"
    parts = []
    if client.uid is not None:
        parts.append(f"uid: {client.uid}")
    if client.exe is not None:
        parts.append(f"exe: {_q(client.exe)}")
    return "{" + ", ".join(parts) + "}"


def _rule(rule: LearnedRule) -> list[str]:
    more = f", and {rule.count - 1} more" if rule.count > 1 else ""
    lines = [
        f"  - operation: {rule.operation}  # {rule.source}{more}",
        f"    request: {_q(f'{rule.method} {rule.path}')}",
    ]
    if not rule.limited:
        return lines
    lines.append("    body:")
    shown = LIMITS[rule.operation]
    for name, seen in (
        ("images", rule.images),
        ("binds", rule.binds),
        ("capabilities", rule.capabilities),
        ("devices", rule.devices),
        ("security_options", rule.security_options),
        ("host_namespaces", rule.host_namespaces),
    ):
        if name in shown:
            lines.extend(_seen(name, seen))
    for name, source in (("privileged", rule.privileged), ("docker_socket", rule.docker_socket)):
        if name in shown:
            lines.append(
                f"      {name}: true  # {source}"
                if source is not None
                else f"      {name}: false  # never seen"
            )
    return lines


def _seen(name: str, seen: Seen) -> list[str]:
    if not seen.values:
        return [f"      {name}: []  # none seen"]
    return [f"      {name}:"] + [
        f"      - {_q(value)}  # {source}" for value, source in seen.values.items()
    ]
