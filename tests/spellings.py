"""Other ways to write the same request body, as dockerd reads them, for tests.

Go's encoding/json matches field names in any case (and the Kelvin sign and the long s as k
and s), keeps the last of duplicate keys, and reads a top-level HostConfig field of a create
body as the deprecated HostConfig. Each spelling here writes a JSON object so that dockerd
decodes it to the same thing; keys of maps (labels, port bindings, ...) are data and are kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

# Keys whose values are maps: their own keys are data, not field names.
DATA_MAPS = frozenset(
    {"Labels", "PortBindings", "ExposedPorts", "Volumes", "Sysctls", "Tmpfs", "StorageOpt"}
)

Rename = Callable[[str], str]


def _mixed(name: str) -> str:
    return "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(name))


def _exotic(name: str) -> str:
    """k and s as the Kelvin sign and the long s, which Go folds to them."""
    return "".join("\u212a" if c in "kK" else "\u017f" if c in "sS" else c.lower() for c in name)


RENAMES: dict[str, Rename] = {
    "as-is": lambda name: name,
    "lower": str.lower,
    "upper": str.upper,
    "mixed": _mixed,
    "kelvin-long-s": _exotic,
}


def _decoy(value: Any) -> Any:
    """A harmless value of the same JSON type, which the real one that follows replaces."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, str):
        return ""
    if isinstance(value, int | float):
        return 0
    if isinstance(value, list):
        return []
    if isinstance(value, dict):
        return {}
    return None


def write(value: Any, rename: Rename = RENAMES["as-is"], duplicate: bool = False) -> str:
    """`value` as JSON text with struct field names renamed, each key first given a decoy
    value when `duplicate` (dockerd keeps the last, or merges an object into the first)."""

    def text(item: Any, data_keys: bool = False) -> str:
        if isinstance(item, dict):
            parts = []
            for key, sub in item.items():
                name = key if data_keys else rename(key)
                inner = text(sub, key in DATA_MAPS and not data_keys)
                if duplicate and not data_keys:
                    parts.append(f"{json.dumps(name)}:{json.dumps(_decoy(sub))}")
                parts.append(f"{json.dumps(name)}:{inner}")
            return "{" + ",".join(parts) + "}"
        if isinstance(item, list):
            return "[" + ",".join(text(sub) for sub in item) + "]"
        return json.dumps(item)

    return text(value)


def hoisted(body: dict[str, Any]) -> dict[str, Any] | None:
    """The create body with its HostConfig fields at the top level (the deprecated form), or
    None when a field of HostConfig has a name the top level already uses."""
    host = body.get("HostConfig")
    if not isinstance(host, dict) or set(host) & set(body):
        return None
    out = {k: v for k, v in body.items() if k != "HostConfig"}
    out.update(host)
    return out


def variants(body: dict[str, Any]) -> dict[str, bytes]:
    """Every spelling of a create body, by name."""
    out = {}
    for name, rename in RENAMES.items():
        out[name] = write(body, rename).encode()
        out[name + "+dup"] = write(body, rename, duplicate=True).encode()
    top = hoisted(body)
    if top is not None:
        out["top-level"] = write(top, RENAMES["mixed"]).encode()
    return out
