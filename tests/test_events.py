"""Tests for the observer's events as values: fields, equality, hashing, how they show."""

from __future__ import annotations

import pytest

from docktap import events
from docktap.events import (
    BodyData,
    Closed,
    Direction,
    Event,
    Frame,
    MessageEnd,
    RequestHead,
    Stream,
    StreamData,
)

CLASSES = [
    value
    for value in vars(events).values()
    if isinstance(value, type) and issubclass(value, Event) and value is not Event
]


def slots(cls: type) -> set[str]:
    return {name for klass in cls.__mro__ for name in getattr(klass, "__slots__", ())}


def test_every_event_is_in_the_list() -> None:
    assert len(CLASSES) == 12


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_the_fields_are_the_slots_in_the_order_the_constructor_takes_them(
    cls: type[Event],
) -> None:
    assert cls.field_names[:2] == ("conn", "t")
    assert set(cls.field_names) == slots(cls)
    assert len(set(cls.field_names)) == len(cls.field_names)
    # No instance dict: an event holds its fields and nothing else.
    assert "__dict__" not in dir(cls)


def test_events_are_equal_by_class_and_fields() -> None:
    end = MessageEnd(1, 0.5, 2, Direction.CLIENT)
    assert end == MessageEnd(1, 0.5, 2, Direction.CLIENT, complete=True)
    assert end != MessageEnd(1, 0.5, 2, Direction.CLIENT, complete=False)
    assert end != MessageEnd(1, 0.5, 3, Direction.CLIENT)
    # The same fields in another class are another event.
    assert BodyData(1, 0.5, 2, Direction.DAEMON, b"x") != StreamData(
        1, 0.5, 2, Direction.DAEMON, b"x"
    )
    assert Closed(1, 0.5) != Event(1, 0.5)
    assert end != (1, 0.5, 2, Direction.CLIENT, True)


def test_equal_events_hash_alike() -> None:
    head = RequestHead(1, 0.5, 1, "GET", "/_ping", "1.1", (("Host", "x"),))
    same = RequestHead(1, 0.5, 1, "GET", "/_ping", "1.1", (("Host", "x"),))
    assert hash(head) == hash(same)
    assert len({head, same, RequestHead(1, 0.5, 2, "GET", "/_ping", "1.1", ())}) == 2


def test_an_event_shows_its_fields_in_order() -> None:
    frame = Frame(3, 1.25, 2, Direction.DAEMON, Stream.STDERR, b"oops")
    assert repr(frame) == (
        "Frame(conn=3, t=1.25, seq=2, direction=<Direction.DAEMON: 'daemon'>, "
        "stream=<Stream.STDERR: 2>, data=b'oops')"
    )
    assert repr(Closed(1, 0.0)) == "Closed(conn=1, t=0.0)"
