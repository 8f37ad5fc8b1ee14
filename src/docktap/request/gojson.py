"""JSON read the way Go's encoding/json reads it into typed structs (the Go 1.19 dockerd 20.10).

A JSON text means what the program that decodes it makes of it. dockerd decodes request bodies
with Go's encoding/json into its API structs, and that reading differs from a Python dict:

- A key finds its struct field by exact name first, else case-insensitively, the way
  `bytes.EqualFold` compares: ASCII letters in either case, and two non-ASCII letters that fold
  to ASCII ones, the Kelvin sign (U+212A, to k) and the long s (U+017F, to s).
  `"hostconfig"` and `"HOSTCONFIG"` both fill `HostConfig`, and so does `"Ho\u017ftConfig"`.
- A key that matches no field is ignored.
- When a key comes again, its value is decoded into what the first one left: a scalar is
  replaced, but a struct, a map or the elements of an array are decoded into, so their fields
  merge: `{"HostConfig":{"Privileged":true},"HostConfig":{"Memory":1}}` is privileged. Array
  elements past the new length stay in the slice's backing array and come back when a later
  array is longer; `[]` and `null` drop them.
- `null` resets a slice, a map or a pointer, and leaves anything else as it was.
- No type is coerced: `1` is not a bool, `"1"` not a number, `1.0` or `1e3` not an integer.
  Such a mismatch makes the request fail (decoding goes on, and the first error is reported).
- Strings have invalid UTF-8 and lone surrogates replaced by U+FFFD; NaN and Infinity are not
  JSON; bytes after the first JSON value are never read (dockerd uses a json.Decoder).

Types are Go notation strings, as the generated schema table gives them (see
scripts/gen-apischema). `decode` returns plain Python values with the struct fields spelled as
the struct spells them, holding only what the body set: this is the body as dockerd sees it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, cast

import orjson

from docktap.values import Value

#: A struct: its fields, each with its JSON name and Go type string.
Structs = Mapping[str, tuple[tuple[str, str], ...]]

_SURROGATES = re.compile("[\ud800-\udfff]")
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_RANGES = {
    "int64": (-(1 << 63), (1 << 63) - 1),
    "uint64": (0, (1 << 64) - 1),
    "uint": (0, (1 << 64) - 1),
    "uint32": (0, (1 << 32) - 1),
    "uint16": (0, (1 << 16) - 1),
    "uint8": (0, (1 << 8) - 1),
}
_MAX_FLOAT = 1.7976931348623157e308
_FOLD = {
    **{code: code + 32 for code in range(ord("A"), ord("Z") + 1)},
    0x212A: ord("k"),
    0x017F: ord("s"),
}


def fold(name: str) -> str:
    """The form in which two names are equal when encoding/json matches them to a field.

    ASCII letters in lower case, the Kelvin sign as k and the long s as s; every other
    character as it is (no other character folds to an ASCII letter).
    """
    return name.translate(_FOLD)


class Number(Value):
    """A JSON number as written: Go reads the text, and `1`, `1.0` and `1e0` differ to it."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __hash__(self) -> int:
        return hash(self.text)


class Object(Value):
    """A JSON object as written: every key in order, duplicates kept."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: tuple[tuple[str, Any], ...]) -> None:
        self.pairs = pairs

    def __hash__(self) -> int:
        return hash(self.pairs)


class JSONSyntaxError(ValueError):
    """The bytes do not begin with a JSON value (dockerd answers with a decoding error)."""


def parse(body: bytes) -> tuple[Any, bytes]:
    """The first JSON value of `body`, as written (Object, Number, str, list, bool, None), and
    the bytes after it, which Go's json.Decoder never reads."""
    # surrogateescape keeps each invalid byte as one lone surrogate, which then becomes one
    # U+FFFD, as Go replaces each invalid byte.
    text = body.decode("utf-8", "surrogateescape")
    start = len(text) - len(text.lstrip(" \t\r\n"))
    if start == len(text):
        raise JSONSyntaxError("EOF")
    decoder = json.JSONDecoder(
        object_pairs_hook=_object,
        parse_int=Number,
        parse_float=Number,
        parse_constant=_not_json,
    )
    try:
        value, end = decoder.raw_decode(text, start)
    except RecursionError as exc:
        raise JSONSyntaxError("nested too deeply for docktap to read") from exc
    except ValueError as exc:
        raise JSONSyntaxError(str(exc)) from exc
    if _SURROGATES.search(text, start, end):
        value = _clean(value)
    return value, text[end:].encode("utf-8", "surrogateescape")


def _object(pairs: list[tuple[str, Any]]) -> Object:
    return Object(tuple(pairs))


def _not_json(constant: str) -> Any:
    raise ValueError(f"invalid character {constant[0]!r} looking for beginning of value")


def _clean(value: Any) -> Any:
    """Strings as Go holds them: lone surrogates (escaped or from invalid bytes) as U+FFFD."""
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", value)
    if isinstance(value, Object):
        return Object(tuple((_clean(k), _clean(v)) for k, v in value.pairs))
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value


def plain(value: Any) -> Any:
    """A parsed value as Go's `interface{}` holds it: the last of duplicate keys, numbers as
    numbers (integers kept exact)."""
    if isinstance(value, Object):
        return {key: plain(item) for key, item in value.pairs}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, Number):
        return int(value.text) if _INTEGER.fullmatch(value.text) else float(value.text)
    return value


def kind_of(value: Any) -> str:
    """How Go names a JSON value's kind in its error messages."""
    if isinstance(value, Object):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Number):
        return "number"
    if isinstance(value, bool):
        return "bool"
    return "string" if isinstance(value, str) else "null"


# While decoding, structs and slices keep what a later duplicate decodes into.
class _Struct:
    __slots__ = ("fields",)

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}


class _Slice:
    __slots__ = ("backing", "length")

    def __init__(self, backing: list[Any], length: int) -> None:
        self.backing = backing
        self.length = length


_ABSENT = object()
_SHAPES = 256  # sequences of keys whose reading `Types.read_keys` keeps
_CUSTOM = object()
#: Go types whose values orjson gives exactly as Go decodes them, when of this Python type.
_SAME = {"string": str, "bool": bool}


class _NoItem:
    """The item type of a slice whose items QuickDecoder always decodes: only `[]` is taken."""


class _Field(NamedTuple):
    """A struct field as QuickDecoder reads it: a value of type `same` (an int within
    `low`..`high`) is taken as it is, a list of `items` (a slice) is copied, and null gives
    `null` (_CUSTOM: the type decides)."""

    name: str
    kind: str
    same: type | None
    low: int
    high: int
    null: Any
    items: type | None = None
    struct: str | None = None  # the struct a (pointer to a) struct is decoded as


#: What `Types.read_keys` gives: each key of a field kept, with the types of value taken at
#: once and the field; then those of the fields that may hold an array or an object.
_ReadKeys = tuple[tuple[tuple[str, frozenset[type], _Field], ...], tuple[tuple[str, _Field], ...]]
_NOT_CONTAINERS: frozenset[type] = frozenset()
_LIST_OR_DICT = frozenset({list, dict})


def _containers(found: _Field) -> frozenset[type]:
    """The container types a field may be given: none for a string, bool or number."""
    if found.same is not None or found.kind == "float64":
        return _NOT_CONTAINERS
    return _LIST_OR_DICT


#: A Go type with its own UnmarshalJSON: (decoder, value, what is there now, where) -> new value.
Custom = Callable[["Decoder", Any, Any, str], Any]


class Types:
    """The Go types a body is decoded into: structs by name, and types with their own
    UnmarshalJSON. Built once; the index of field names it builds is shared by all decodes."""

    def __init__(
        self,
        structs: Structs,
        custom: Mapping[str, Custom] | None = None,
        skipped: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        self.structs = structs
        self.custom = dict(custom or {})
        # Fields left out of a struct by `narrowed`: by exact name, known to match no field.
        self.skipped = dict(skipped or {})
        self._exact: dict[str, dict[str, tuple[str, str]]] = {}
        self._folded: dict[str, dict[str, tuple[str, str]]] = {}
        self._as_is: dict[str, dict[str, _Field]] = {}
        self._unchanged: dict[str, dict[str, frozenset[type]]] = {}
        self._named: dict[str, frozenset[str]] = {}
        # The shapes `read_keys` worked out, by struct and sequence of keys.
        self.shapes: dict[str, dict[tuple[str, ...], _ReadKeys | None]] = {}
        # Holds nothing of a body: one per set of types, not one per body.
        self.quick = QuickDecoder(self)

    def narrowed(self, keep: Mapping[str, frozenset[str]]) -> Types:
        """These types with only the `keep` fields of the structs it names (each other struct
        whole): a key of a field left out is skipped unread, as Go skips a key of no field.

        A left-out field never takes a key from a kept one: Go gives a key to the field of
        its exact name first, else to the first that folds equal to it, so every field that
        folds equal to a kept one is kept too.
        """
        structs = dict(self.structs)
        skipped = {}
        for name, wanted in keep.items():
            folds = {fold(f) for f, _ in self.structs[name] if f in wanted}
            kept = tuple((f, kind) for f, kind in self.structs[name] if fold(f) in folds)
            structs[name] = kept
            skipped[name] = frozenset(f for f, _ in self.structs[name]) - {f for f, _ in kept}
        return Types(structs, self.custom, skipped)

    def field(self, struct: str, key: str) -> tuple[str, str] | None:
        """The (name, type) of the struct field a JSON key lands in, or None."""
        if struct not in self._exact:
            fields = self.structs[struct]
            folded: dict[str, tuple[str, str]] = {}
            for name, kind in fields:
                folded.setdefault(fold(name), (name, kind))  # the first field wins
            self._folded[struct] = folded
            self._exact[struct] = {name: (name, kind) for name, kind in fields}
        return self._exact[struct].get(key) or self._folded[struct].get(fold(key))

    def read_keys(self, struct: str, keys: tuple[str, ...]) -> _ReadKeys | None:
        """Of the keys of an object, in order, those of fields kept, each with the types of
        values taken at once and the field (`as_is`), and of those the fields that may hold
        an array or an object, when each key is the exact name of a field of `struct` (kept
        or left out by `narrowed`); None when one is not.

        The types taken at once are those `unchanged` takes as they are and, for a field
        that may hold one, a list and a dict, which QuickDecoder then decodes in place.

        It depends on the keys alone, and clients send the same keys again and again (the
        docker CLI every field of a create, in one order): it is worked out once per struct
        and sequence of keys, the last _SHAPES of them kept."""
        shapes = self.shapes.get(struct)
        if shapes is None:
            shapes = self.shapes[struct] = {}
        found = shapes.get(keys)
        if found is None and keys not in shapes:
            if len(shapes) >= _SHAPES:
                shapes.clear()
            found = shapes[keys] = (
                self._read_keys(struct, keys) if self.named(struct).issuperset(keys) else None
            )
        return found

    def _read_keys(self, struct: str, keys: tuple[str, ...]) -> _ReadKeys:
        unchanged = self.unchanged(struct)
        fields = self.as_is(struct)
        read = tuple(
            (k, unchanged[k] | _containers(fields[k]), fields[k]) for k in keys if k in unchanged
        )
        return read, tuple((k, field) for k, _, field in read if _containers(field))

    def named(self, struct: str) -> frozenset[str]:
        """The exact names of a struct's fields, those `narrowed` left out included."""
        names = self._named.get(struct)
        if names is None:
            names = frozenset(f for f, _ in self.structs[struct]) | self.skipped.get(struct, set())
            self._named[struct] = names
        return names

    def as_is(self, struct: str) -> dict[str, _Field]:
        """A struct's fields by exact JSON name, with what QuickDecoder needs to take most
        values without dispatching on the type."""
        fields = self._as_is.get(struct)
        if fields is None:
            fields = {name: self._quick_field(name, kind) for name, kind in self.structs[struct]}
            self._as_is[struct] = fields
        return fields

    def unchanged(self, struct: str) -> dict[str, frozenset[type]]:
        """A struct's fields by exact JSON name, each with the Python types of orjson's values
        that Go decodes into a fresh field as they are: a string into a string, a bool into a
        bool, null into a pointer, slice, map or interface (or a custom type that makes nil of
        it). A number never is: it must be checked against the field's range."""
        types = self._unchanged.get(struct)
        if types is None:
            types = {}
            for name, found in self.as_is(struct).items():
                kinds: set[type] = {found.same} if found.same in (str, bool) else set()
                if found.null is None:
                    kinds.add(type(None))
                types[name] = frozenset(kinds)
            self._unchanged[struct] = types
        return types

    def _quick_field(self, name: str, kind: str) -> _Field:
        base = kind.removeprefix("*")
        if base in self.custom:
            null: Any = self._custom_null(base)
        elif base is not kind or base == "any" or base.startswith(("[]", "map[")):
            null = None
        else:
            null = _ABSENT
        if kind in _RANGES:
            return _Field(name, kind, int, *_RANGES[kind], null)
        items = _SAME.get(kind[2:], _NoItem) if kind.startswith("[]") else None
        struct = base if base in self.structs and base not in self.custom else None
        return _Field(name, kind, _SAME.get(kind), 0, 0, null, items, struct)

    def _custom_null(self, base: str) -> Any:
        """What a type with its own UnmarshalJSON makes of null in a fresh field, which
        does not change from one body to the next; _CUSTOM when it cannot be said once."""
        decoder = Decoder(self)
        made = self.custom[base](decoder, None, _ABSENT, "")
        return _CUSTOM if decoder.errors else finish(made)


class Decoder:
    """Decodes parsed JSON into Go types, as encoding/json does; errors are collected."""

    def __init__(self, types: Types) -> None:
        self.types = types
        self.structs = types.structs
        self.custom = types.custom
        self.field = types.field
        self.errors: list[str] = []

    def fail(self, value: Any, kind: str, where: str) -> None:
        """Record Go's error for a value of the wrong type; `where` is "Struct.field.path"."""
        what = kind_of(value)
        if isinstance(value, Number) and kind not in ("bool", "string"):
            what += " " + value.text
        place = f"Go struct field {where}" if where else "Go value"
        self.errors.append(f"json: cannot unmarshal {what} into {place} of type {kind}")

    def decode(self, kind: str, value: Any, now: Any = _ABSENT, where: str = "") -> Any:
        """`value` decoded into a Go value of type `kind` that holds `now`."""
        pointer = kind.startswith("*")
        base = kind.removeprefix("*")
        if base in self.custom:
            return self.custom[base](self, value, now, where)
        if value is None:
            if pointer or base == "any" or base.startswith(("[]", "map[")):
                return None
            return now  # null leaves a plain value as it was
        if base == "any":
            return plain(value)
        if base.startswith("[]"):
            return self._slice(base[2:], value, now, where)
        if base.startswith("["):
            size, _, item = base[1:].partition("]")
            return self._array(int(size), item, value, now, where)
        if base.startswith("map[string]"):
            return self._map(base[len("map[string]") :], value, now, where)
        if base in self.structs:
            return self._struct(base, value, now, where)
        return self._scalar(base, value, now, where)

    def _scalar(self, kind: str, value: Any, now: Any, where: str) -> Any:
        if kind == "string" and isinstance(value, str):
            return value
        if kind == "bool" and isinstance(value, bool):
            return value
        if isinstance(value, Number):
            if kind == "float64":
                number = float(value.text)
                if abs(number) <= _MAX_FLOAT:
                    return number
            elif kind in _RANGES and _INTEGER.fullmatch(value.text):
                low, high = _RANGES[kind]
                if low <= int(value.text) <= high:
                    return int(value.text)
        self.fail(value, kind, where)
        return now

    def _struct(self, name: str, value: Any, now: Any, where: str) -> Any:
        if not isinstance(value, Object):
            self.fail(value, name, where)
            return now
        into = now if isinstance(now, _Struct) else _Struct()
        # Go names the innermost struct, then the JSON path of fields from the top.
        path = where.partition(".")[2]
        for key, item in value.pairs:
            found = self.field(name, key)
            if found is None:
                continue  # unknown fields are ignored
            field_name, kind = found
            at = f"{name}.{path}.{field_name}" if path else f"{name}.{field_name}"
            into.fields[field_name] = self.decode(
                kind, item, into.fields.get(field_name, _ABSENT), at
            )
        return into

    def _slice(self, kind: str, value: Any, now: Any, where: str) -> Any:
        if not isinstance(value, list):
            self.fail(value, "[]" + kind, where)
            return now
        if not value:
            return _Slice([], 0)  # a new empty slice: the old backing array is gone
        backing = list(now.backing) if isinstance(now, _Slice) else []
        for index, item in enumerate(value):
            if index < len(backing):
                backing[index] = self.decode(kind, item, backing[index], where)
            else:
                backing.append(self.decode(kind, item, self.zero(kind), where))
        return _Slice(backing, len(value))

    def _array(self, size: int, kind: str, value: Any, now: Any, where: str) -> Any:
        """A Go array: a fixed length; items past it are skipped unread, missing ones zeroed."""
        if not isinstance(value, list):
            self.fail(value, f"[{size}]{kind}", where)
            return now
        into = list(now) if isinstance(now, list) else [self.zero(kind)] * size
        for index in range(size):
            if index < len(value):
                into[index] = self.decode(kind, value[index], into[index], where)
            else:
                into[index] = self.zero(kind)
        return into

    def _map(self, kind: str, value: Any, now: Any, where: str) -> Any:
        if not isinstance(value, Object):
            self.fail(value, "map[string]" + kind, where)
            return now
        into = dict(now) if isinstance(now, dict) else {}
        for key, item in value.pairs:
            into[key] = self.decode(kind, item, self.zero(kind), where)  # a fresh value per key
        return into

    def zero(self, kind: str) -> Any:
        """Go's zero value of a type, as `finish` shows it."""
        if kind.startswith(("*", "[]", "map[")) or kind == "any":
            return None
        if kind in self.structs:
            return _Struct()
        if kind.startswith("["):
            size, _, item = kind[1:].partition("]")
            return [self.zero(item)] * int(size)
        return {"string": "", "bool": False, "float64": 0.0}.get(kind, 0)


def finish(value: Any) -> Any:
    """A decoded value as plain Python values: structs as dicts of the fields the body set."""
    if isinstance(value, _Struct):
        return {name: finish(item) for name, item in value.fields.items() if item is not _ABSENT}
    if isinstance(value, _Slice):
        return [finish(item) for item in value.backing[: value.length]]
    if isinstance(value, dict):
        return {key: finish(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finish(item) for item in value]
    return value


def without_zeros(structs: Structs, kind: str, value: Any) -> Any:
    """A decoded value without the struct fields that hold their zero value, which to Go are
    the same as fields the body left out (`false`, `0`, `""`, `[]`, `{}`, `null`). A pointer
    to a scalar keeps an explicit zero: `"Init": false` is not `Init` left to the daemon."""
    base = kind.removeprefix("*")
    if base.startswith("[]") and isinstance(value, list):
        return [without_zeros(structs, base[2:], item) for item in value]
    if base.startswith("map[string]") and isinstance(value, dict):
        inner = base[len("map[string]") :]
        return {key: without_zeros(structs, inner, item) for key, item in value.items()}
    if base in structs and isinstance(value, dict):
        kinds = dict(structs[base])
        out = {}
        for name, item in value.items():
            sub = kinds.get(name, "any")
            item = without_zeros(structs, sub, item)
            zero = not item or (sub.startswith("[") and not sub.startswith("[]") and not any(item))
            if item is None or item == {} or (not sub.startswith("*") and zero):
                continue
            out[name] = item
        return out
    return value


def as_slice(items: list[Any]) -> Any:
    """A decoded slice holding `items` (for custom decoders)."""
    return _Slice(list(items), len(items))


class _Unsure(Exception):
    """The quick reading cannot say what Go makes of a body: the full one must."""


class QuickDecoder:
    """Decodes a body that orjson reads as Go would, straight into what `finish` gives.

    It costs a fraction of `parse` and `Decoder`, and answers only where it cannot differ from
    them; anywhere it might (`_Unsure`), `quick_decode` says None and the full reading decides:

    - orjson reads one JSON value and rejects what Go rejects at parse time, but also bytes
      after the value and invalid UTF-8, which Go handles: unsure. An integer past 64 bits it
      reads as a float, which it writes back with an exponent (`e+`, as every float of 1e16
      or more): a body whose text has an `e+` is unsure too, unless it is that text.
    - A `\\u` escape can spell a lone surrogate or a folding letter of a key: unsure, but for
      the escapes Go's encoder writes for `<`, `>`, `&`, U+2028 and U+2029 (in the docker
      CLI's `sh -c 'a > b'`), which spell neither. When every `\\u` of the body, an escape or
      not, starts one of those, every escape is one of them.
    - orjson keeps the last of duplicate keys silently. Without other `\\u` escapes every
      colon of a JSON text is a key's or one inside a string, as written (no escape spells a
      colon otherwise). orjson writes what it read back with every key and string it kept, so its
      text has as many colons as the body exactly when no key (and with it its colon) was
      lost. That is counted in C, whatever part of the body is decoded; a body that is
      orjson's text itself (and whitespace after it) has the same colons without counting.
    - Two keys that fold into one field merge in Go: unsure. Without duplicates nothing merges,
      so each field is decoded into its zero value, as the full reading would.
    - A type mismatch is an error dockerd reports: unsure, the full reading gives its message.
      So a body is answered here only when Go decodes it without error, and then the value is
      the same: the guard never allows on a reading dockerd does not share.
    """

    def __init__(self, types: Types) -> None:
        self.types = types

    def decode(self, kind: str, value: Any) -> Any:
        """`value` (orjson's) as Go decodes it into a zero `kind`, finished; _ABSENT when Go
        leaves the field as it was (null into a plain value)."""
        base = kind.removeprefix("*")
        if base in self.types.custom:
            return self._custom(base, value)
        if value is None:
            if base is not kind or base == "any" or base.startswith(("[]", "map[")):
                return None
            return _ABSENT
        if base == "any":
            return value
        if base.startswith("[]"):
            return self._slice(base[2:], value)
        if base.startswith("["):
            size, _, item = base[1:].partition("]")
            return self._array(int(size), item, value)
        if base.startswith("map[string]"):
            return self._map(base[len("map[string]") :], value)
        if base in self.types.structs:
            return self._struct(base, value)
        return self._scalar(base, value)

    def _item(self, kind: str, value: Any) -> Any:
        """An element of a slice, array or map: decoded into a fresh zero value."""
        if value is None and kind.removeprefix("*") not in self.types.custom:
            return finish(Decoder(self.types).zero(kind))
        return self.decode(kind, value)

    def _custom(self, base: str, value: Any) -> Any:
        # Custom decoders take `parse`'s values; orjson's are the same where no object or
        # number is in them.
        if isinstance(value, list):
            if not all(item is None or isinstance(item, str) for item in value):
                raise _Unsure
        elif value is not None and not isinstance(value, str):
            raise _Unsure
        decoder = Decoder(self.types)
        result = self.types.custom[base](decoder, value, _ABSENT, "")
        if decoder.errors:
            raise _Unsure
        return finish(result)

    def _scalar(self, kind: str, value: Any) -> Any:
        if type(value) is _SAME.get(kind):
            return value
        if isinstance(value, bool):
            raise _Unsure
        if kind == "float64" and isinstance(value, (int, float)) and abs(value) <= _MAX_FLOAT:
            return float(value)
        if kind in _RANGES and type(value) is int:
            low, high = _RANGES[kind]
            if low <= value <= high:
                return value
        raise _Unsure

    def _struct(self, name: str, value: Any) -> Any:
        if type(value) is not dict:
            raise _Unsure
        types = self.types
        skipped = types.skipped.get(name)
        shape = None
        if skipped is not None:
            keys = tuple(value)
            shapes = types.shapes.get(name)
            # A shape seen before is one look-up; read_keys works out the others.
            shape = shapes.get(keys) if shapes is not None else None
            if shape is None:
                shape = types.read_keys(name, keys)
        if shape is not None:
            # Each key is the exact name of a field (read or skipped): none folds, none merges,
            # so only the keys of fields read are walked. Most values are taken at once, and
            # the arrays and objects among them then decoded in place.
            # (A loop, not a comprehension: in Python 3.11 that is a function call of its own.)
            read, containers = shape
            into = {}
            for key, kinds, _ in read:
                item = value[key]
                if type(item) not in kinds:
                    break
                into[key] = item
            else:
                for key, found in containers:
                    item = into[key]
                    if item is None:
                        continue
                    struct = found.struct  # a struct's object is read at once
                    into[key] = (
                        self._field(found, item) if struct is None else self._struct(struct, item)
                    )
                return into
            into = {}
            pairs = [(found, value[key]) for key, _, found in read]
        else:
            into = {}
            pairs = self._pairs(name, types.as_is(name), skipped or frozenset(), value)
        for found, item in pairs:
            decoded = self._field(found, item)
            if decoded is not _ABSENT:
                into[found.name] = decoded
        return into

    def _field(self, found: _Field, item: Any) -> Any:
        """`item` decoded into a fresh `found`; _ABSENT when Go leaves the field as it was."""
        same, items = found.same, found.items
        if item is None and found.null is not _CUSTOM:
            return found.null
        if type(item) is same and (same is not int or found.low <= cast(int, item) <= found.high):
            return item
        if (
            type(item) is list
            and items is not None
            and (not item or all(type(i) is items for i in item))
        ):
            return item[:]  # strings or bools, as Go reads them into a fresh slice
        if found.struct is not None:
            return self._struct(found.struct, item)
        return self.decode(found.kind, item)

    def _pairs(
        self, name: str, fields: dict[str, _Field], skipped: frozenset[str], value: dict[str, Any]
    ) -> list[tuple[_Field, Any]]:
        """The fields the keys of `value` land in, each with its value, as Go matches them."""
        pairs = []
        taken = set()
        for key, item in value.items():
            found = fields.get(key)
            if found is None:
                if key in skipped:
                    continue
                folded = self.types.field(name, key)
                if folded is None:
                    continue  # Go ignores it
                found = fields[folded[0]]
            if found.name in taken:
                raise _Unsure
            taken.add(found.name)
            pairs.append((found, item))
        return pairs

    def _slice(self, kind: str, value: Any) -> Any:
        if type(value) is not list:
            raise _Unsure
        return [self._item(kind, item) for item in value]

    def _array(self, size: int, kind: str, value: Any) -> Any:
        if type(value) is not list:
            raise _Unsure
        zero = finish(Decoder(self.types).zero(kind))
        return [self._item(kind, value[i]) if i < len(value) else zero for i in range(size)]

    def _map(self, kind: str, value: Any) -> Any:
        if type(value) is not dict:
            raise _Unsure
        return {key: self._item(kind, item) for key, item in value.items()}


#: The `\\u` escapes Go's encoder writes by default (its HTML-safe output): no surrogate, no letter.
_GO_ESCAPES = (b"\\u003c", b"\\u003e", b"\\u0026", b"\\u2028", b"\\u2029")


def _unsure_escapes(body: bytes) -> bool:
    """Whether a `\\u` of the body starts anything but one of _GO_ESCAPES (which all start
    with it and differ after it, so they count each `\\u` once at most)."""
    return body.count(b"\\u") != sum([body.count(escape) for escape in _GO_ESCAPES])


def quick_decode(types: Types, kind: str, body: bytes) -> tuple[Any, Any] | None:
    """The body decoded into `kind` as `Decoder` would, finished, and orjson's reading of it;
    None when only the full reading can say (see QuickDecoder)."""
    if b"\\" in body and b"\\u" in body and _unsure_escapes(body):  # memchr for one byte
        return None
    try:
        loaded = orjson.loads(body)
        text = orjson.dumps(loaded)
        # A body written as orjson writes it (as Go's encoder does, but for a newline after
        # it) is its text, so it lost no colon and held no integer orjson made a float: that
        # is a compare, not two counts and a search.
        if not (body.startswith(text) and not body[len(text) :].strip()) and (
            text.count(b":") != body.count(b":")  # a duplicate key was lost
            or (b"+" in text and b"e+" in text)  # perhaps an integer past 64 bits (memchr first)
        ):
            return None
        quick = types.quick
        struct = kind in types.structs and kind not in types.custom
        value = quick._struct(kind, loaded) if struct else quick.decode(kind, loaded)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, _Unsure, RecursionError):
        return None
    return None if value is _ABSENT else (value, loaded)
