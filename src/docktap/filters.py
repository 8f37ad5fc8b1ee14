"""Which exchanges of a capture to show: the `show` options as one small, pure predicate.

`Filter.from_options` checks and parses what the user typed; `Filter.matches` answers for one
exchange. Every criterion given must hold; a criterion given several times (two `--op`
globs, `--status 4xx,5xx`) holds when any of its values does.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import NamedTuple
from urllib.parse import unquote

from docktap.capture.reader import Exchange, Incident
from docktap.routes import split_version

_NUMBER = re.compile(r"^#?([1-9][0-9]*)$")
_STATUS = re.compile(r"^([1-5])(?:([0-9])([0-9])|xx)$", re.IGNORECASE)


def parse_status(spec: str) -> tuple[tuple[int, int], ...]:
    """`4xx`, `404` or a comma-separated list of them, as inclusive ranges of codes."""
    ranges: list[tuple[int, int]] = []
    for part in spec.split(","):
        item = part.strip()
        match = _STATUS.match(item)
        if match is None:
            raise ValueError(
                f"bad status {item!r}: give a code such as 404 or a class such as 4xx, "
                "separated by commas"
            )
        if match.group(2) is None:
            low = int(match.group(1)) * 100
            ranges.append((low, low + 99))
        else:
            code = int(item)
            ranges.append((code, code))
    return tuple(ranges)


def parse_number(spec: str) -> int:
    """An exchange number as `show` prints it and replay and the audit name it: `12` or `#12`."""
    match = _NUMBER.match(spec.strip())
    if match is None:
        raise ValueError(f"bad exchange number {spec!r}: give one such as 12 or #12")
    return int(match.group(1))


# A named tuple, not a frozen dataclass: `show` and `stats` import this module, and a dataclass
# costs 0.3-0.5 ms of CPU to define (docktap/values.py).
class Filter(NamedTuple):
    """A predicate on exchanges. The default, with nothing set, lets everything through."""

    conns: frozenset[int] = frozenset()
    numbers: frozenset[int] = frozenset()  # exchange numbers
    operations: tuple[str, ...] = ()  # globs, matched without regard to case
    paths: tuple[str, ...] = ()  # globs on the path, with or without its /vX.Y prefix
    statuses: tuple[tuple[int, int], ...] = ()  # inclusive ranges
    grep: str | None = None  # text searched in the target, bodies and stream output
    since: float | None = None  # seconds from the capture start; exchanges started at or after
    until: float | None = None  # ... and at or before

    @classmethod
    def from_options(
        cls,
        conns: Iterable[int] = (),
        operations: Iterable[str] = (),
        paths: Iterable[str] = (),
        statuses: Iterable[str] = (),
        grep: str | None = None,
        since: float | None = None,
        until: float | None = None,
        numbers: Iterable[str] = (),
    ) -> Filter:
        """A filter from option values as typed; ValueError says what is wrong with one."""
        ranges: list[tuple[int, int]] = []
        for spec in statuses:
            ranges.extend(parse_status(spec))
        if since is not None and until is not None and until < since:
            raise ValueError(f"--until {until:g} is before --since {since:g}")
        return cls(
            conns=frozenset(conns),
            numbers=frozenset(parse_number(spec) for spec in numbers),
            operations=tuple(op.lower() for op in operations),
            paths=tuple(paths),
            statuses=tuple(ranges),
            grep=grep or None,
            since=since,
            until=until,
        )

    @property
    def active(self) -> bool:
        return self != Filter()

    def matches(self, ex: Exchange) -> bool:
        if self.conns and ex.conn not in self.conns:
            return False
        if self.numbers and ex.number not in self.numbers:
            return False
        if self.since is not None and ex.started_mono < self.since:
            return False
        if self.until is not None and ex.started_mono > self.until:
            return False
        if self.statuses:
            status = ex.status
            if status is None or not any(lo <= status <= hi for lo, hi in self.statuses):
                return False
        if self.operations:
            operation = (ex.operation or "").lower()
            if not any(fnmatch.fnmatchcase(operation, glob) for glob in self.operations):
                return False
        if self.paths:
            path = ex.path
            bare = split_version(path)[1]
            if not any(
                fnmatch.fnmatchcase(path, glob) or fnmatch.fnmatchcase(bare, glob)
                for glob in self.paths
            ):
                return False
        return self.grep is None or _contains(ex, self.grep)

    def matches_incident(self, incident: Incident) -> bool:
        """Whether an incident (an error record, unparsed bytes) is shown with these filters:
        by its connection and time, and `--grep` in its message. It is no exchange, so a
        filter on exchanges only (a number, operation, path or status) leaves it out."""
        if self.numbers or self.operations or self.paths or self.statuses:
            return False
        if self.conns and incident.conn not in self.conns:
            return False
        if self.since is not None and incident.mono < self.since:
            return False
        if self.until is not None and incident.mono > self.until:
            return False
        return self.grep is None or self.grep in incident.message


def _contains(ex: Exchange, text: str) -> bool:
    if text in ex.target or text in unquote(ex.target):
        return True
    needle = text.encode("utf-8")
    if needle in ex.request_body or needle in ex.response_body:
        return True
    if any(needle in data for data in ex.stream.values()):
        return True
    # Frames rejoined per stream: a match may straddle two frames of the same stream.
    return bool(ex.frames) and any(needle in ex.output(name) for name in ("stdout", "stderr"))
