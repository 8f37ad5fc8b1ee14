"""Classes with slots that compare and show themselves by their fields, as dataclasses do.

The recorder imports the observer's events as it starts, after it is forked, and the live
view the capture reader's parts: as dataclasses, each class cost 0.3-0.5 ms of CPU to define
(the code of each of its methods generated and compiled), 12 ms of the recorder's start-up and
6 of the live view's; the request model's JSON values (request/gojson.py), which the recorder
imports through the redactor, 1.2 ms. A subclass of `Value` costs what a plain class does.

A subclass holds its fields in `__slots__` (its own, after those of the classes it extends)
and takes them all as the parameters of its `__init__`, in their order: `field_names`, read
from that signature as the class is made, lists them for `==` (same class, same fields) and
`repr`. Defining `__eq__` makes a value unhashable, as a dataclass that is not frozen is; a
subclass whose values never change says how to hash them (events.Event).
"""

from __future__ import annotations

from typing import ClassVar


class Value:
    """The base of classes compared and shown by their fields (see the module)."""

    __slots__ = ()
    field_names: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls) -> None:
        # object.__init__, for a class that takes no field, has no code to read.
        code = getattr(cls.__init__, "__code__", None)
        if code is not None:
            cls.field_names = code.co_varnames[1 : code.co_argcount + code.co_kwonlyargcount]

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.field_names)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Value)
        return self._values() == other._values()

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.field_names)
        return f"{type(self).__qualname__}({fields})"
