"""When a request a client sends now counts as one recorded earlier, and if not, why not.

Replay answers a request with a recording of the same request. "The same" is looser than
byte-equal: a client may speak another API version, put query parameters in another order,
or serialize a JSON body with its keys in another order. A body of an operation whose API
types docktap knows is compared as dockerd decodes it (docktap.request.body): keys in any
case, duplicates, unknown fields and fields left at their zero value make no difference, as
they make none to the daemon (the docker CLI 20.10 sends `"KernelMemory": 0` where 28 sends
nothing, for the same container). This module turns a request into a
key that ignores those differences (and whatever else the user asks to ignore), and explains
the first difference between two requests for a miss report. Plain functions over plain
values: no sockets, no clock.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from docktap.request.body import decode, typed, without_zeros
from docktap.request.query import Query
from docktap.routes import operation_name, split_version

_PATH_STEP = re.compile(r"\.([A-Za-z0-9_\-*]+)|\[(\d+|\*)\]")
_MISSING = object()


@dataclass(frozen=True)
class MatchOptions:
    """What a request key leaves out."""

    ignore_query: bool = False
    ignore_body: bool = False
    ignore_paths: tuple[str, ...] = ()  # JSON paths in the body, like $.Env or $.Labels.*
    exact_version: bool = False  # /v1.41/x and /v1.43/x differ


@dataclass(frozen=True)
class Request:
    """A request as matching sees it.

    `body` is the whole body when it was kept (small enough), else None and `sha256` stands
    for it; `sha256` is always the digest of the whole body.
    """

    method: str
    target: str
    body: bytes | None
    sha256: str

    @classmethod
    def of(cls, method: str, target: str, body: bytes) -> Request:
        return cls(method, target, body, hashlib.sha256(body).hexdigest())


Key = tuple[str, str, tuple[tuple[str, str], ...], str]


def normalize_path(path: str, exact_version: bool = False) -> str:
    """The path without its `/vX.Y` prefix: clients negotiate versions, the call is the same."""
    return path if exact_version else split_version(path)[1]


def split_target(target: str) -> tuple[str, str]:
    path, _, query = target.partition("?")
    return path, query


def _canonical_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _json_or_none(text: str | bytes) -> Any:
    """The decoded value of a JSON object or array; anything else gives _MISSING."""
    stripped = text.lstrip()[:1]
    if stripped not in ("{", "[", b"{", b"["):
        return _MISSING
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _MISSING


def parse_query(query: str) -> dict[str, list[Any]]:
    """Query parameters by name, as dockerd reads them; JSON values (filters, labels,
    buildargs) decoded."""
    params: dict[str, list[Any]] = {}
    for name, values in Query.parse(query).values.items():
        for value in values:
            decoded = _json_or_none(value)
            params.setdefault(name, []).append(value if decoded is _MISSING else decoded)
    return params


def _query_key(query: str) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted(
            (name, value if isinstance(value, str) else _canonical_json(value))
            for name, values in parse_query(query).items()
            for value in values
        )
    )


def parse_json_path(path: str) -> list[str | int]:
    """`$.HostConfig.Binds[0]` as steps; `*` stands for any key or index."""
    if not path.startswith("$"):
        raise ValueError(f"a JSON path starts with $: {path!r}")
    steps: list[str | int] = []
    position = 1
    for match in _PATH_STEP.finditer(path, 1):
        if match.start() != position:
            break
        name, index = match.groups()
        steps.append(name if name is not None else ("*" if index == "*" else int(index)))
        position = match.end()
    if position != len(path):
        raise ValueError(f"not a JSON path docktap understands: {path!r}")
    if not steps:
        # Removing the root would leave nothing to compare (and no key to build).
        raise ValueError(f"{path!r} is the whole body: to leave it out, ignore the body")
    return steps


def _without(value: Any, steps: list[str | int]) -> Any:
    """`value` with whatever `steps` leads to removed (a copy; the input is left alone)."""
    if not steps:
        return _MISSING
    step, rest = steps[0], steps[1:]
    out: Any
    if isinstance(value, dict):
        out = dict(value)
        keys: list[Any] = list(value) if step == "*" else [step] if step in value else []
    elif isinstance(value, list):
        out = list(value)
        if step == "*":
            keys = list(range(len(value)))
        elif isinstance(step, int) and step < len(value):
            keys = [step]
        else:
            return value
        keys.reverse()  # deleting from the end keeps the indices still to visit valid
    else:
        return value
    for key in keys:
        kept = _without(out[key], rest)
        if kept is _MISSING:
            del out[key]
        else:
            out[key] = kept
    return out


@dataclass(frozen=True)
class _Opaque:
    """A body compared as bytes: by its digest, or empty. Never equal to a JSON value."""

    digest: str

    def key(self) -> str:
        return f"bytes:{self.digest}"


_EMPTY = _Opaque("")


def _body_value(request: Request, options: MatchOptions) -> Any:
    """The body as compared: decoded JSON with ignored paths removed, or an _Opaque."""
    if request.body is None:
        return _Opaque(request.sha256)
    if not request.body:
        return _EMPTY
    operation = operation_name(request.method, request.target)
    read = decode(operation, request.body) if typed(operation) else None
    as_dockerd = read is not None and not read.rejected
    if read is not None and as_dockerd:
        decoded = read.value
    else:
        decoded = _json_or_none(request.body)
        if decoded is _MISSING:
            return _Opaque(request.sha256)
    for path in options.ignore_paths:
        decoded = _without(decoded, parse_json_path(path))
    # Zeros go after the ignored paths: a map emptied by `$.Labels.*` is no map at all.
    return without_zeros(operation, decoded) if as_dockerd else decoded


def _body_key(value: Any) -> str:
    return value.key() if isinstance(value, _Opaque) else "json:" + _canonical_json(value)


def request_key(request: Request, options: MatchOptions) -> Key:
    """Equal keys mean the same request."""
    path, query = split_target(request.target)
    query_key = () if options.ignore_query else _query_key(query)
    body_key = "" if options.ignore_body else _body_key(_body_value(request, options))
    return (request.method, normalize_path(path, options.exact_version), query_key, body_key)


def first_difference(recorded: Any, incoming: Any, path: str = "$") -> str | None:
    """The JSON path of the first place two decoded JSON values differ, or None."""
    if isinstance(recorded, dict) and isinstance(incoming, dict):
        for name in list(recorded) + [n for n in incoming if n not in recorded]:
            where = f"{path}.{name}"
            if name not in recorded or name not in incoming:
                return where
            found = first_difference(recorded[name], incoming[name], where)
            if found is not None:
                return found
        return None
    if isinstance(recorded, list) and isinstance(incoming, list):
        for index, (a, b) in enumerate(zip(recorded, incoming, strict=False)):
            found = first_difference(a, b, f"{path}[{index}]")
            if found is not None:
                return found
        if len(recorded) != len(incoming):
            return f"{path}[{min(len(recorded), len(incoming))}]"
        return None
    # By their JSON text: Python's == holds true and 1 equal, JSON does not.
    return None if _canonical_json(recorded) == _canonical_json(incoming) else path


def _query_difference(name: str, was: list[Any], now: list[Any]) -> str:
    if len(was) == len(now) == 1:
        was_value, now_value = was[0], now[0]
        if isinstance(was_value, str) or isinstance(now_value, str):
            return f"query {name} differs ({was_value!r} recorded)"
        where = first_difference(was_value, now_value) or "$"
        return f"query {name} differs at {where}"
    return f"query {name} differs ({len(was)} values recorded, {len(now)} sent)"


def differences(recorded: Request, incoming: Request, options: MatchOptions) -> Iterator[str]:
    """What keeps `incoming` from matching `recorded`, most telling first, in a few words."""
    if recorded.method != incoming.method:
        yield f"method differs ({recorded.method})"
    recorded_path, recorded_query = split_target(recorded.target)
    path, query = split_target(incoming.target)
    if normalize_path(recorded_path, options.exact_version) != normalize_path(
        path, options.exact_version
    ):
        yield f"path differs ({recorded_path})"
    if not options.ignore_query:
        was, now = parse_query(recorded_query), parse_query(query)
        for name in sorted(set(was) | set(now)):
            if name not in now:
                yield f"query lacks {name}"
            elif name not in was:
                yield f"query has {name} too"
            elif _canonical_json(was[name]) != _canonical_json(now[name]):
                yield _query_difference(name, was[name], now[name])
    if not options.ignore_body:
        was_body, now_body = _body_value(recorded, options), _body_value(incoming, options)
        if _body_key(was_body) != _body_key(now_body):
            json_both = not isinstance(was_body, _Opaque) and not isinstance(now_body, _Opaque)
            where = first_difference(was_body, now_body) if json_both else None
            yield f"body differs at {where}" if where else "body differs"


def closeness(recorded: Request, incoming: Request, options: MatchOptions) -> tuple[int, ...]:
    """A rank for choosing the closest recording to a miss: larger is closer."""
    recorded_path = normalize_path(split_target(recorded.target)[0], options.exact_version)
    path = normalize_path(split_target(incoming.target)[0], options.exact_version)
    shared = 0
    for a, b in zip(recorded_path.split("/"), path.split("/"), strict=False):
        if a != b:
            break
        shared += 1
    same_method = recorded.method == incoming.method
    found = sum(1 for _ in differences(recorded, incoming, options))
    return (int(same_method and recorded_path == path), int(same_method), shared, -found)
