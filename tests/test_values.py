"""Tests for values.py: classes with slots compared and shown by the fields they take."""

from __future__ import annotations

import pytest

from docktap import events
from docktap.capture import reader
from docktap.values import Value


class Point(Value):
    __slots__ = ("label", "x", "y")

    def __init__(self, x: int, y: int, *, label: str = "") -> None:
        self.x = x
        self.y = y
        self.label = label


class Plain(Value):
    __slots__ = ()


def test_the_fields_are_the_parameters_of_init_in_their_order() -> None:
    assert Point.field_names == ("x", "y", "label")
    assert Plain.field_names == ()


def test_values_are_equal_by_class_and_fields() -> None:
    assert Point(1, 2) == Point(1, 2, label="")
    assert Point(1, 2) != Point(1, 2, label="a")
    assert Point(1, 2) != Point(2, 1)
    assert Point(1, 2) != (1, 2, "")
    assert Plain() == Plain()


def test_a_value_shows_its_fields() -> None:
    assert repr(Point(1, 2, label="a")) == "Point(x=1, y=2, label='a')"
    assert repr(Plain()) == "Plain()"


def test_a_value_is_not_hashable_unless_its_class_says_how() -> None:
    with pytest.raises(TypeError, match="unhashable"):
        hash(Point(1, 2))
    assert hash(events.Closed(1, 0.0)) == hash(events.Closed(1, 0.0))


def _values_of(module: object) -> list[type[Value]]:
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, Value) and value.__module__ != __name__
    ]


@pytest.mark.parametrize(
    "cls", _values_of(events) + _values_of(reader), ids=lambda cls: cls.__qualname__
)
def test_every_slot_of_docktaps_values_is_a_field_or_private(cls: type[Value]) -> None:
    slots = {name for klass in cls.__mro__ for name in getattr(klass, "__slots__", ())}
    assert set(cls.field_names) <= slots
    assert all(name.startswith("_") for name in slots - set(cls.field_names))
    assert len(set(cls.field_names)) == len(cls.field_names)
    assert "__dict__" not in dir(cls)  # a value holds its slots and nothing else
