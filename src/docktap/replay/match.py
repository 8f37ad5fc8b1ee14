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
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, unquote

import orjson

from docktap.redact import body_without_digests, without_digests
from docktap.replay.tarcontent import content_digest
from docktap.request.body import decode, typed, without_zeros
from docktap.request.query import Query, implied, parameters
from docktap.routes import operation_name, split_version

_PATH_STEP = re.compile(r"\.([A-Za-z0-9_\-*]+)|\[(\d+|\*)\]")
_MISSING = object()


class _Absent:
    """Where one side of a difference has no value."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class Difference:
    """One place where two JSON values differ, and what each holds there."""

    path: str
    recorded: Any
    incoming: Any


@dataclass(frozen=True)
class MatchOptions:
    """What a request key leaves out."""

    ignore_query: bool = False
    ignore_body: bool = False
    ignore_paths: tuple[str, ...] = ()  # JSON paths in the body, like $.Env or $.Labels.*
    exact_version: bool = False  # /v1.41/x and /v1.43/x differ
    exact_body: bool = False  # bodies and queries as sent: no defaults dropped, bytes compared
    # Fields a test makes up (a container's name, a label with a random value): a query
    # parameter by name, or a JSON path in the body. Left out of matching; the value sent
    # stands for the recorded one in the requests that follow (see free_values).
    free: tuple[str, ...] = ()

    @property
    def free_params(self) -> frozenset[str]:
        return frozenset(f for f in self.free if not f.startswith("$"))

    @property
    def free_paths(self) -> tuple[str, ...]:
        return tuple(f for f in self.free if f.startswith("$"))


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


def comparable(request: Request) -> Request:
    """The request with the digests of its masks left out of its target and body: each mask
    is keyed by the recording that made it (docktap.redact), so the same secret masked when
    recorded and masked again by the replay compares by its length class alone."""
    target = without_digests(request.target)
    body = None if request.body is None else body_without_digests(request.body)
    if body is request.body:
        return request if target == request.target else replace(request, target=target)
    assert body is not None
    return Request(request.method, target, body, hashlib.sha256(body).hexdigest())


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


_EMPTY_JSON: tuple[Any, ...] = ({}, [], None)


def _param_value(kind: str, default: str, name: str, values: list[str]) -> Any:
    """What dockerd reads from a parameter of the spec's: its first value, as its type; or
    _MISSING when that is what an absent parameter gives (its default, or nothing at all)."""
    read = Query({name: values})
    if kind == "bool":
        value = read.bool_value(name)
        return _MISSING if value == (default == "true") else value
    first = read.get(name)
    if kind in ("int64", "count"):
        try:
            number = read.int64_value_or_default(name, int(default) if default else 0)
        except ValueError:
            return first  # dockerd refuses it: compared as written
        if kind == "count" and number <= 0:
            return _MISSING
        return _MISSING if first == "" or str(number) == default else number
    if first in ("", default):
        return _MISSING
    decoded = _json_or_none(first)
    if decoded is _MISSING:
        return _MISSING if kind == "json" and first == "null" else first
    # An empty filter or label map filters nothing, as no map at all.
    return _MISSING if decoded in _EMPTY_JSON else decoded


def read_query(method: str, target: str, options: MatchOptions) -> dict[str, list[Any]]:
    """The query of a request as compared: parameters the spec gives the operation as dockerd
    reads them (a boolean as true or false, the first value only), those at their default
    left out, a boolean another parameter makes true as true (`implied`); other parameters as
    `parse_query` gives them. `exact_body` keeps them all."""
    path, query = split_target(target)
    params = parse_query(query)
    for name in options.free_params & params.keys():
        del params[name]
    if options.exact_body:
        return params
    operation = operation_name(method, path)
    known = parameters(operation)
    raw = Query.parse(query).values
    for name in known.keys() & params.keys():
        value = _param_value(*known[name], name, raw[name])
        if value is _MISSING:
            del params[name]
        else:
            params[name] = [value]
    for name, by in implied(operation).items():
        if name not in options.free_params and isinstance(params.get(by, [None])[0], int):
            params[name] = [True]
    return params


def _query_key(params: dict[str, list[Any]]) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted(
            (name, value if isinstance(value, str) else _canonical_json(value))
            for name, values in params.items()
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
# Operations whose body is a tar of local files: compared by what the files hold.
_TAR_BODIES = frozenset({"PutContainerArchive", "ImageBuild"})


def _body_value(request: Request, options: MatchOptions) -> Any:
    """The body as compared: decoded JSON with ignored paths removed, or an _Opaque."""
    if request.body is None:
        return _Opaque(request.sha256)
    if not request.body:
        return _EMPTY
    if options.exact_body:
        return _Opaque(request.sha256)
    operation = operation_name(request.method, request.target)
    if operation in _TAR_BODIES:
        digest = content_digest(request.body)
        return _Opaque(request.sha256 if digest is None else "tar:" + digest)
    read = decode(operation, request.body) if typed(operation) else None
    as_dockerd = read is not None and not read.rejected
    if read is not None and as_dockerd:
        decoded = read.value
    else:
        decoded = _json_or_none(request.body)
        if decoded is _MISSING:
            return _Opaque(request.sha256)
    for path in options.ignore_paths + options.free_paths:
        decoded = _without(decoded, parse_json_path(path))
    # Zeros go after the ignored paths: a map emptied by `$.Labels.*` is no map at all.
    return without_zeros(operation, decoded) if as_dockerd else decoded


def _at(value: Any, steps: list[str | int]) -> Any:
    """What `steps` (no wildcards) lead to in a decoded JSON value, or _MISSING."""
    for step in steps:
        in_list = isinstance(value, list) and isinstance(step, int) and step < len(value)
        if not in_list and not (isinstance(value, dict) and step in value):
            return _MISSING
        value = value[step]
    return value


def free_values(request: Request, options: MatchOptions) -> dict[str, str]:
    """The string values of the request's free fields, by field."""
    found: dict[str, str] = {}
    params = Query.of_target(request.target)
    for name in options.free_params:
        if params.has(name):
            found[name] = params.get(name)
    if options.free_paths and request.body:
        operation = operation_name(request.method, request.target)
        read = decode(operation, request.body)
        for path in options.free_paths:
            steps = parse_json_path(path)
            value = _MISSING if read.rejected or "*" in steps else _at(read.value, steps)
            if isinstance(value, str):
                found[path] = value
    return found


def with_aliases(request: Request, aliases: dict[str, str]) -> Request:
    """The request with each value the replay learnt to stand for a recorded one (a name
    the test made up) replaced by that one, where it makes a whole path segment or a whole
    query value: `/containers/test_b/json` is asked as `/containers/test_a/json`."""
    if not aliases:
        return request
    path, _, query = request.target.partition("?")
    segments = [aliases.get(unquote(segment), segment) for segment in path.split("/")]
    pairs = []
    for pair in query.split("&") if query else []:
        name, eq, value = pair.partition("=")
        if eq and unquote(value.replace("+", " ")) in aliases:
            value = quote(aliases[unquote(value.replace("+", " "))], safe="")
        pairs.append(f"{name}{eq}{value}")
    target = "/".join(segments) + ("?" + "&".join(pairs) if query else "")
    return (
        request
        if target == request.target
        else Request(request.method, target, request.body, request.sha256)
    )


def _body_key(value: Any) -> str:
    return value.key() if isinstance(value, _Opaque) else "json:" + _canonical_json(value)


def request_key(request: Request, options: MatchOptions) -> Key:
    """Equal keys mean the same request."""
    path = split_target(request.target)[0]
    params = {} if options.ignore_query else read_query(request.method, request.target, options)
    query_key = _query_key(params)
    body_key = "" if options.ignore_body else _body_key(_body_value(request, options))
    return (request.method, normalize_path(path, options.exact_version), query_key, body_key)


def json_differences(recorded: Any, incoming: Any, path: str = "$") -> Iterator[Difference]:
    """Every place two decoded JSON values differ: its JSON path and the two values there
    (`ABSENT` where one side has nothing). Objects are walked by key, arrays by index."""
    if isinstance(recorded, dict) and isinstance(incoming, dict):
        for name in list(recorded) + [n for n in incoming if n not in recorded]:
            yield from json_differences(
                recorded.get(name, ABSENT), incoming.get(name, ABSENT), f"{path}.{name}"
            )
        return
    if isinstance(recorded, list) and isinstance(incoming, list):
        for index in range(max(len(recorded), len(incoming))):
            was = recorded[index] if index < len(recorded) else ABSENT
            now = incoming[index] if index < len(incoming) else ABSENT
            yield from json_differences(was, now, f"{path}[{index}]")
        return
    if recorded is ABSENT and incoming is ABSENT:
        return
    # By their JSON text: Python's == holds true and 1 equal, JSON does not.
    one_absent = recorded is ABSENT or incoming is ABSENT
    if one_absent or _canonical_json(recorded) != _canonical_json(incoming):
        yield Difference(path, recorded, incoming)


def first_difference(recorded: Any, incoming: Any, path: str = "$") -> str | None:
    """The JSON path of the first place two decoded JSON values differ, or None."""
    found = next(json_differences(recorded, incoming, path), None)
    return None if found is None else found.path


def shown(value: Any, limit: int = 60) -> str:
    """A value in a miss message: as JSON, cut to `limit` characters; `absent` for none."""
    if value is ABSENT:
        return "absent"
    text = _canonical_json(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _query_differences(
    recorded: Request, incoming: Request, options: MatchOptions
) -> Iterator[str]:
    was = read_query(recorded.method, recorded.target, options)
    now = read_query(incoming.method, incoming.target, options)
    # Values are shown as sent: `all=0` reads as absent, but the client wrote `0`.
    sent_was = parse_query(split_target(recorded.target)[1])
    sent_now = parse_query(split_target(incoming.target)[1])
    for name in sorted(set(was) | set(now)):
        if _canonical_json(was.get(name)) == _canonical_json(now.get(name)):
            continue
        a, b = sent_was.get(name, [ABSENT]), sent_now.get(name, [ABSENT])
        if len(a) > 1 or len(b) > 1:
            yield f"query {name} differs ({len(a)} values recorded, {len(b)} sent)"
        elif not isinstance(a[0], str) and not isinstance(b[0], str):
            where = next(json_differences(a[0], b[0]), None)
            if where is None:  # equal as JSON, apart only as dockerd reads them
                yield f"query {name} differs: recorded {shown(a[0])}, got {shown(b[0])}"
            else:
                yield (
                    f"query {name} differs at {where.path}: "
                    f"recorded {shown(where.recorded)}, got {shown(where.incoming)}"
                )
        else:
            yield f"query {name} differs: recorded {shown(a[0])}, got {shown(b[0])}"


def _body_differences(recorded: Request, incoming: Request, options: MatchOptions) -> list[str]:
    was_body, now_body = _body_value(recorded, options), _body_value(incoming, options)
    if _body_key(was_body) == _body_key(now_body):
        return []
    if isinstance(was_body, _Opaque) or isinstance(now_body, _Opaque):
        return ["body differs"]
    found = [
        f"body differs at {d.path}: recorded {shown(d.recorded)}, got {shown(d.incoming)}"
        for d in json_differences(was_body, now_body)
    ]
    return found or ["body differs"]


def differences(recorded: Request, incoming: Request, options: MatchOptions) -> Iterator[str]:
    """What keeps `incoming` from matching `recorded`, most telling first, one line per field
    that differs, with the recorded and the received value."""
    if recorded.method != incoming.method:
        yield f"method differs ({recorded.method})"
    recorded_path = split_target(recorded.target)[0]
    path = split_target(incoming.target)[0]
    if normalize_path(recorded_path, options.exact_version) != normalize_path(
        path, options.exact_version
    ):
        yield f"path differs ({recorded_path})"
    if not options.ignore_query:
        yield from _query_differences(recorded, incoming, options)
    if not options.ignore_body:
        yield from _body_differences(recorded, incoming, options)


def closeness(recorded: Request, incoming: Request, options: MatchOptions) -> tuple[int, ...]:
    """A rank for choosing the closest recording to a miss: larger is closer. Past the method
    and the path, the fewer fields differ (each parameter, each JSON field), the closer."""
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
