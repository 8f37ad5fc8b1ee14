"""The `show` filters as a pure predicate, over the real captures."""

from __future__ import annotations

from pathlib import Path

import pytest

from docktap import Capture, load
from docktap.filters import Filter, parse_status

CAPTURES = Path(__file__).parent.parent / "captures"


def capture(name: str) -> Capture:
    return load(CAPTURES / f"{name}.jsonl")


def selected(name: str, flt: Filter) -> list[str | None]:
    return [ex.operation for ex in capture(name) if flt.matches(ex)]


@pytest.mark.parametrize(
    ("spec", "ranges"),
    [
        ("4xx", ((400, 499),)),
        ("404", ((404, 404),)),
        ("2xx,5xx", ((200, 299), (500, 599))),
        (" 101 , 3XX ", ((101, 101), (300, 399))),
    ],
)
def test_status_specs(spec: str, ranges: tuple[tuple[int, int], ...]) -> None:
    assert parse_status(spec) == ranges


@pytest.mark.parametrize("spec", ["", "4", "6xx", "20", "2000", "4xx;5xx", "ok", "4x"])
def test_bad_status_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="bad status"):
        parse_status(spec)


def test_nothing_set_lets_everything_through() -> None:
    flt = Filter.from_options()
    assert not flt.active
    assert len(selected("run", flt)) == 5


def test_connections() -> None:
    assert selected("run", Filter.from_options(conns=[2])) == ["ContainerAttach"]
    assert selected("run", Filter.from_options(conns=[2, 3])) == [
        "ContainerAttach",
        "ContainerStart",
    ]


def test_operation_globs_ignore_case() -> None:
    assert selected("run", Filter.from_options(operations=["container*"])) == [
        "ContainerCreate",
        "ContainerAttach",
        "ContainerWait",
        "ContainerStart",
    ]
    assert selected("run", Filter.from_options(operations=["*Wait", "SystemPing*"])) == [
        "SystemPingHead",
        "ContainerWait",
    ]


def test_path_globs_with_or_without_the_version() -> None:
    bare = Filter.from_options(paths=["/containers/*/wait"])
    versioned = Filter.from_options(paths=["/v1.41/containers/*/wait"])
    assert selected("run", bare) == selected("run", versioned) == ["ContainerWait"]
    assert selected("run", Filter.from_options(paths=["/_ping"])) == ["SystemPingHead"]
    # The query string is not part of the path.
    assert selected("run", Filter.from_options(paths=["*condition*"])) == []


def test_statuses() -> None:
    assert selected("run", Filter.from_options(statuses=["101"])) == ["ContainerAttach"]
    assert selected("run", Filter.from_options(statuses=["2xx"])) == [
        "SystemPingHead",
        "ContainerCreate",
        "ContainerWait",
        "ContainerStart",
    ]
    assert selected("pull-error", Filter.from_options(statuses=["4xx,5xx"])) == ["ImageCreate"]
    assert selected("run", Filter.from_options(statuses=["4xx", "1xx"])) == ["ContainerAttach"]


def test_an_unanswered_exchange_has_no_status_to_match() -> None:
    run = capture("run")
    wait = next(ex for ex in run if ex.operation == "ContainerWait")
    wait.response = None  # as if no answer had been recorded
    assert not Filter.from_options(statuses=["2xx"]).matches(wait)


def test_grep_searches_target_bodies_and_output() -> None:
    assert selected("run", Filter.from_options(grep="condition=removed")) == ["ContainerWait"]
    # in a request body (the create config), and the answers that carry the id
    assert selected("run", Filter.from_options(grep="echo err")) == ["ContainerCreate"]
    # stderr frames of the attach stream
    assert selected("run", Filter.from_options(grep="err\n")) == ["ContainerAttach"]
    # what the client sent on stdin
    assert selected("run-stdin", Filter.from_options(grep="hello from stdin")) == [
        "ContainerAttach"
    ]
    # a TTY stream, unframed; the command line itself is in the exec's bodies
    assert selected("exec-it", Filter.from_options(grep="in-exec\r\n")) == ["ExecStart"]
    assert selected("exec-it", Filter.from_options(grep="in-exec")) == [
        "ContainerExec",
        "ExecStart",
        "ExecInspect",
    ]
    # a response body, and the URL-decoded target
    assert selected("events", Filter.from_options(grep='"Action":"die"')) == ["SystemEvents"]
    assert selected("events", Filter.from_options(grep='{"type":{"container"')) == ["SystemEvents"]
    assert selected("run", Filter.from_options(grep="no such text")) == []


def test_grep_matches_across_frames_of_one_stream() -> None:
    logs = next(ex for ex in capture("logs-follow") if ex.operation == "ContainerLogs")
    assert Filter.from_options(grep="line1\nline2").matches(logs)
    assert not Filter.from_options(grep="line1\nwarn1").matches(logs)  # different streams


def test_since_and_until_are_start_times_from_the_capture_start() -> None:
    assert selected("run", Filter.from_options(since=0.376)) == ["ContainerWait", "ContainerStart"]
    assert selected("run", Filter.from_options(until=0.062)) == [
        "SystemPingHead",
        "ContainerCreate",
    ]
    assert selected("run", Filter.from_options(since=0.3, until=0.376)) == ["ContainerAttach"]


def test_until_before_since_is_refused() -> None:
    with pytest.raises(ValueError, match="before --since"):
        Filter.from_options(since=2, until=1)


def test_criteria_combine() -> None:
    flt = Filter.from_options(conns=[1], operations=["Container*"], statuses=["2xx"])
    assert flt.active
    assert selected("run", flt) == ["ContainerCreate", "ContainerWait"]
