"""Map an HTTP request line to the Engine API operation it invokes.

Why this exists: docktap labels every exchange it relays, records or replays
with its Engine API operation (``ContainerCreate``, ``ExecStart``, ...).  The
operations come from the generated table in :mod:`docktap.routes_table`; this
module turns a request target such as ``/v1.41/containers/3f2a/attach?stream=1``
into the matching :class:`Route`.

Matching rules, in order of preference:

1. an exact literal template (``/containers/create`` is ``ContainerCreate``,
   never ``{id}`` = ``create``);
2. a parameterised template whose parameters each match one path segment;
3. a parameterised template whose parameters may span slashes, because image,
   plugin and distribution references can contain them
   (``/images/registry:5000/library/busybox:latest/json``).

Within 2 and 3, templates with more literal segments win, then templates whose
literals come earlier.  Lookups are indexed by method and first path segment,
so a match costs a dict probe and, at worst, a handful of regex tests.

The rules about paths that everything else shares live here too: what a `/vX.Y` version prefix
is (:data:`VERSION_PREFIX`, :func:`split_version`) and which container or exec instance a path
is about (:func:`subject`), and all of it at once for a request head (:func:`identify`).
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

from docktap.routes_table import ROUTES

__all__ = [
    "VERSION_PREFIX",
    "Identity",
    "Route",
    "Subject",
    "identify",
    "match",
    "operation_name",
    "split_version",
    "subject",
]

#: The API version prefix of a path, as the daemon's router takes it: `/v1.41/...`, `/v1/...`.
#: Only a leading prefix followed by more path counts (`/v1.41` alone names no version).
VERSION_PREFIX = re.compile(r"/v([0-9]+(?:\.[0-9]+)?)(?=/)")
# What a first path segment names when it is followed by an id or a name.
_SUBJECT_KINDS = frozenset({"containers", "exec"})
# /containers/json, /containers/create, /containers/prune: collections, not a container.
_COLLECTIONS = frozenset({"json", "create", "prune"})
_PARAM = re.compile(r"\{[^/{}]+\}")
# What a parameter may match: one segment, or (fallback) several non-empty ones.
_SEGMENT = "[^/]+"
_SPANNING = "[^/]+(?:/[^/]+)*"


# Named tuples, not frozen dataclasses: the recorder imports this module as it starts, and
# each dataclass cost it 0.4 ms to define.
class Route(NamedTuple):
    """One Engine API operation: ``POST /containers/{id}/attach`` is ``ContainerAttach``."""

    method: str
    template: str
    operation: str
    tag: str


def split_version(target: str) -> tuple[str | None, str]:
    """Split a request target into its API version and its unversioned path.

    ``/v1.41/containers/abc/json?all=1`` gives ``("1.41", "/containers/abc/json")``;
    ``/_ping`` gives ``(None, "/_ping")``.  The query string is dropped.
    """
    path = target.partition("?")[0]
    m = VERSION_PREFIX.match(path)
    if m is None:
        return None, path
    return m.group(1), path[m.end() :]


class Subject(NamedTuple):
    """The object a request is about: `kind` is ``containers`` or ``exec``, `ref` its id or name."""

    kind: str
    ref: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.ref}"


def subject(target: str) -> Subject | None:
    """The container or exec instance a request target names, or None.

    ``/v1.41/containers/da20d04c/attach`` is about ``containers/da20d04c`` and
    ``/exec/0cd8e1ba/start`` about ``exec/0cd8e1ba``; ``/containers/json`` (a collection) and
    ``/images/bb/json`` are about neither.  The version prefix and the query are ignored.
    """
    return _subject(split_version(target)[1])


def _subject(path: str) -> Subject | None:
    parts = path.split("/", 3)
    if len(parts) < 3 or parts[1] not in _SUBJECT_KINDS or not parts[2]:
        return None
    if len(parts) == 3 and parts[2] in _COLLECTIONS:
        return None
    return Subject(parts[1], parts[2])


class Identity(NamedTuple):
    """What a request is, worked out once from its method and target where its head is seen.

    `subject` is the container or exec instance its path names (see :func:`subject`);
    `image` the image reference of an ``/images/{name}/...`` route, which only the route can
    tell, since a reference may hold slashes (``registry:5000/library/busybox:latest``).
    """

    operation: str | None
    api_version: str | None
    subject: Subject | None = None
    image: str | None = None


# A request is identified where its head is parsed and again where it is encoded, and clients
# repeat the same few targets: the last ones are kept, short ones only, so that the cache stays
# small whatever the targets are.
_CACHED_TARGET = 512


def identify(method: str, target: str) -> Identity:
    """The operation, API version, subject and image of a request (see `Identity`)."""
    if len(target) > _CACHED_TARGET:
        return _identify(method, target)
    return _identify_cached(method, target)


def _identify(method: str, target: str) -> Identity:
    version, path = split_version(target)
    found = _get_index().lookup(method, path)
    if found is None:
        return Identity(None, version, _subject(path))
    route, values = found
    image = values[0] if values and _first_segment(route.template) == "images" else None
    return Identity(route.operation, version, _subject(path), image)


_identify_cached = functools.lru_cache(maxsize=256)(_identify)


# A compiled parameterised template: the regex, and the route it stands for.
_Candidate = tuple[re.Pattern[str], Route]


def _first_segment(path: str) -> str:
    return path[1:].partition("/")[0]


def _compile(template: str, param: str) -> re.Pattern[str]:
    parts = _PARAM.split(template)
    return re.compile(f"({param})".join(re.escape(p) for p in parts) + r"\Z")


def _rank(template: str) -> tuple[int, ...]:
    # More literal segments first, then literals before parameters from the left.
    flags = tuple(1 if _PARAM.search(seg) else 0 for seg in template[1:].split("/"))
    return (flags.count(1) - len(flags), *flags)


class _Index:
    """Routes indexed for lookup; built once, on first use.

    A (method, first segment)'s patterns are compiled when a path first needs them: all of them
    at once would cost the first exchange of every session 5 ms of CPU, for the few a session
    uses.
    """

    def __init__(self, routes: tuple[tuple[str, str, str, str], ...]) -> None:
        self.literal: dict[tuple[str, str], Route] = {}
        # (method, first segment) -> parameterised routes, best first; a template starting
        # with a parameter is filed under the first segment "" and tried for any path.
        self.parameterised: dict[tuple[str, str], list[Route]] = {}
        self._compiled: dict[tuple[tuple[str, str], str], list[_Candidate]] = {}
        for method, template, operation, tag in routes:
            route = Route(method, template, operation, tag)
            if not _PARAM.search(template):
                self.literal[(method, template)] = route
                continue
            first = _first_segment(template)
            key = (method, "" if _PARAM.search(first) else first)
            self.parameterised.setdefault(key, []).append(route)
        for candidates in self.parameterised.values():
            candidates.sort(key=lambda r: (_rank(r.template), r.template))

    def _candidates(self, key: tuple[str, str], param: str) -> list[_Candidate]:
        """The routes filed under `key`, their parameters matching `param`, compiled once."""
        compiled = self._compiled.get((key, param))
        if compiled is None:
            routes = self.parameterised.get(key, [])
            compiled = [(_compile(route.template, param), route) for route in routes]
            self._compiled[(key, param)] = compiled
        return compiled

    def lookup(self, method: str, path: str) -> tuple[Route, tuple[str, ...]] | None:
        """The route and the values of its path parameters."""
        route = self.literal.get((method, path))
        if route is not None:
            return route, ()
        keys = [(method, _first_segment(path)), (method, "")]
        for param in (_SEGMENT, _SPANNING):
            for key in keys:
                for pattern, candidate in self._candidates(key, param):
                    found = pattern.match(path)
                    if found is not None:
                        return candidate, found.groups()
        return None


_index: _Index | None = None


def _get_index() -> _Index:
    global _index
    if _index is None:
        _index = _Index(ROUTES)
    return _index


def match(method: str, target: str) -> Route | None:
    """The route for ``method`` and request ``target``, or None if none matches.

    ``method`` is compared case-sensitively (``"get"`` matches nothing).  The
    target may carry a ``/vX.Y`` prefix and a query string; both are ignored.
    """
    found = _get_index().lookup(method, split_version(target)[1])
    return None if found is None else found[0]


def operation_name(method: str, target: str) -> str | None:
    """The operationId for ``method`` and ``target`` (e.g. ``"ContainerCreate"``), or None."""
    route = match(method, target)
    return None if route is None else route.operation
