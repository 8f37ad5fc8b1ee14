"""Go's encoding/json rules, on small struct tables written for each rule."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docktap.request.gojson import (
    Decoder,
    JSONSyntaxError,
    Number,
    Object,
    Types,
    finish,
    fold,
    parse,
    quick_decode,
    without_zeros,
)

STRUCTS = {
    "Top": (
        ("Name", "string"),
        ("name", "string"),
        ("Flag", "bool"),
        ("Ptr", "*bool"),
        ("Size", "int64"),
        ("Small", "uint16"),
        ("Ratio", "float64"),
        ("Inner", "Inner"),
        ("Items", "[]Inner"),
        ("Words", "[]string"),
        ("Labels", "map[string]string"),
        ("Anything", "any"),
        ("Mask", "string"),
        ("Key", "string"),
    ),
    "Inner": (("A", "string"), ("B", "string")),
}


def decoded(body: bytes, kind: str = "Top") -> tuple[Any, list[str]]:
    decoder = Decoder(Types(STRUCTS))
    value, _ = parse(body)
    result = finish(decoder.decode(kind, value))
    return result, decoder.errors


def test_fold_is_ascii_case_plus_kelvin_and_long_s() -> None:
    assert fold("HostConfig") == fold("hostconfig") == fold("HOSTCONFIG") == "hostconfig"
    assert fold("\u212aey") == "key"
    assert fold("Ma\u017fk") == "mask"
    assert fold("\u00c9") == "\u00c9"  # other letters keep their case: É does not fold to e
    assert fold("\u0130") == "\u0130"  # nor does the dotted capital I to i


def test_exact_name_first_then_the_first_field_that_folds_equal() -> None:
    assert decoded(b'{"name":"x"}')[0] == {"name": "x"}
    assert decoded(b'{"Name":"x"}')[0] == {"Name": "x"}
    assert decoded(b'{"NAME":"x"}')[0] == {"Name": "x"}
    assert decoded('{"\u212aEY":"k","MA\u017fK":"s"}'.encode())[0] == {"Key": "k", "Mask": "s"}
    assert decoded('{"K\u0065y":"x"}'.encode())[0] == {"Key": "x"}
    assert decoded('{"\u00cbey":"x","Kéy":"y"}'.encode())[0] == {}


def test_unknown_fields_are_ignored() -> None:
    assert decoded(b'{"Nope":1,"Flag":true,"Inner":{"C":[1,2]}}') == (
        {"Flag": True, "Inner": {}},
        [],
    )


def test_the_last_scalar_wins_and_structs_merge() -> None:
    body = b'{"Flag":true,"flag":false,"Inner":{"A":"1"},"inner":{"B":"2"},"Inner":{"A":"3"}}'
    assert decoded(body)[0] == {"Flag": False, "Inner": {"A": "3", "B": "2"}}


def test_null_resets_slices_maps_pointers_and_leaves_the_rest() -> None:
    body = (
        b'{"Flag":true,"Flag":null,"Ptr":true,"Ptr":null,"Words":["a"],"Words":null,'
        b'"Labels":{"a":"1"},"Labels":null,"Inner":{"A":"1"},"Inner":null,"Size":null}'
    )
    assert decoded(body)[0] == {
        "Flag": True,
        "Ptr": None,
        "Words": None,
        "Labels": None,
        "Inner": {"A": "1"},
    }


def test_maps_merge_keys_with_fresh_values() -> None:
    body = b'{"Labels":{"a":"1","A":"2"},"Labels":{"b":"3"},"Labels":{"a":null}}'
    assert decoded(body)[0] == {"Labels": {"a": "", "A": "2", "b": "3"}}


def test_array_elements_are_decoded_into_and_the_backing_array_remembers() -> None:
    body = (
        b'{"Items":[{"A":"a0","B":"b0"},{"A":"a1","B":"b1"}],"Items":[{"A":"x"}],'
        b'"Items":[{},{"B":"y"}],"Words":["w0","w1"],"Words":[null],"Words":[null,null]}'
    )
    assert decoded(body)[0] == {
        "Items": [{"A": "x", "B": "b0"}, {"A": "a1", "B": "y"}],
        "Words": ["w0", "w1"],
    }
    # An empty array (or null) drops what the backing array held.
    assert decoded(b'{"Words":["w0"],"Words":[],"Words":[null]}')[0] == {"Words": [""]}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"Flag":1}', "cannot unmarshal number into Go struct field Top.Flag of type bool"),
        (b'{"Flag":"true"}', "cannot unmarshal string into Go struct field Top.Flag of type bool"),
        (b'{"Size":"1"}', "cannot unmarshal string into Go struct field Top.Size of type int64"),
        (b'{"Size":1.0}', "cannot unmarshal number 1.0 into Go struct field Top.Size"),
        (b'{"Size":1e3}', "cannot unmarshal number 1e3 into Go struct field Top.Size"),
        (b'{"Size":9223372036854775808}', "number 9223372036854775808 into"),
        (
            b'{"Small":-1}',
            "cannot unmarshal number -1 into Go struct field Top.Small of type uint16",
        ),
        (b'{"Small":65536}', "number 65536 into Go struct field Top.Small of type uint16"),
        (b'{"Ratio":1e999}', "number 1e999 into Go struct field Top.Ratio of type float64"),
        (
            b'{"Words":"a"}',
            "cannot unmarshal string into Go struct field Top.Words of type []string",
        ),
        (b'{"Inner":{"A":false}}', "cannot unmarshal bool into Go struct field Inner.Inner.A"),
        (b'{"Labels":[]}', "cannot unmarshal array into Go struct field Top.Labels"),
        (b"[1]", "cannot unmarshal array into Go value of type Top"),
    ],
)
def test_no_type_is_coerced(body: bytes, error: str) -> None:
    _, errors = decoded(body)
    assert errors and error in errors[0], errors


def test_numbers_and_anything() -> None:
    body = b'{"Size":-0,"Small":65535,"Ratio":2,"Anything":{"a":1,"a":[1.5,null]}}'
    assert decoded(body) == (
        {"Size": 0, "Small": 65535, "Ratio": 2.0, "Anything": {"a": [1.5, None]}},
        [],
    )


def test_parse_keeps_what_was_written_and_what_follows() -> None:
    value, rest = parse(b' {"a":1,"a":2.50} trailing {"b":')
    assert value == Object((("a", Number("1")), ("a", Number("2.50"))))
    assert rest == b' trailing {"b":'


@pytest.mark.parametrize(
    "body", [b"", b"  \n", b"NaN", b'{"a":Infinity}', b"\xef\xbb\xbf{}", b'{"a":1', b"{'a':1}"]
)
def test_what_go_refuses_to_parse(body: bytes) -> None:
    with pytest.raises(JSONSyntaxError):
        parse(body)


def test_strings_as_go_holds_them() -> None:
    value, _ = parse(b'["a\xffb", "\\ud800", "\\ud83d\\ude00", "\xe2\x82"]')
    assert value == ["a\ufffdb", "\ufffd", "\U0001f600", "\ufffd\ufffd"]


def test_without_zeros_drops_what_go_cannot_tell_from_absent() -> None:
    structs = {**STRUCTS, "Top": (*STRUCTS["Top"], ("Opt", "*bool"), ("Sub", "*Inner"))}
    value = {
        "Name": "",
        "Flag": False,
        "Size": 0,
        "Words": [],
        "Labels": {"a": ""},
        "Inner": {"A": ""},
        "Items": [{"A": "", "B": "b"}, {}],
        "Opt": False,
        "Sub": {},
        "Anything": 0,
    }
    assert without_zeros(structs, "Top", value) == {
        "Labels": {"a": ""},  # map keys are data
        "Items": [{"B": "b"}, {}],  # an element is still an element
        "Opt": False,  # a pointer's explicit false is not nil
    }


# Bodies orjson reads as Go does: the quick reading answers, with the full reading's value.
QUICK = [
    b'{"Name": "a", "Flag": true, "Ptr": null, "Size": -3, "Small": 65535, "Ratio": 2}',
    b'{"NAME": "folded", "Inner": {"a": "x"}, "Items": [{"B": "y"}, null], "Words": []}',
    b'{"Labels": {"k": "v:w", "Name": null}, "Anything": {"a": [1, 1.0, 1e3, "s"]}}',
    b'{"Unknown": {"x": 1, "y": {"z": ":"}}, "Mask": ":::", "Ratio": 1.5, "Inner": null}',
    b'{"Name": "a", "name": "b"}',  # two fields, each spelled exactly
    b' {"Size": 0, "Flag": null, "Words": null, "Items": [], "Key": "a\\"b:"} ',
]
# Bodies only the full reading can judge: duplicates (even folded, even where Go ignores
# them), escapes, type errors, what follows the value, invalid UTF-8, numbers past 64 bits.
FULL = [
    b'{"Name": "a", "Name": "b"}',
    b'{"Inner": {"A": "x"}, "Inner": {"B": "y"}}',
    b'{"Unknown": {"x": 1, "x": 2}}',
    b'{"Labels": {"k": "a:b", "k": "c"}}',
    b'{"Mask": "a:b", "Anything": {"k": 1, "k": 2}}',
    b'{"Size": 1, "SIZE": 2}',
    b'{"Na\\u006de": "escaped"}',
    b'{"Size": "1"}',
    b'{"Size": 1.0}',
    b'{"Small": 65536}',
    b'{"Flag": 1}',
    b'{"Ratio": true}',
    b'{"Words": ["a", 1]}',
    b'{"Name": "a"} trailing',
    b'{"Name": "\xff"}',
    b'{"Size": 100000000000000000000}',
    b"null",
]


@pytest.mark.parametrize("body", QUICK)
def test_the_quick_reading_agrees_with_the_full_one(body: bytes) -> None:
    quick = quick_decode(Types(STRUCTS), "Top", body)
    assert quick is not None
    assert (quick[0], []) == decoded(body)


@pytest.mark.parametrize("body", FULL)
def test_the_quick_reading_leaves_what_it_cannot_be_sure_of(body: bytes) -> None:
    assert quick_decode(Types(STRUCTS), "Top", body) is None


def test_narrowed_types_read_only_the_fields_kept() -> None:
    types = Types(STRUCTS).narrowed({"Top": frozenset({"Name", "Inner"})})
    # "name" folds equal to "Name": kept, so that a key goes where the whole struct sends it
    assert [name for name, _ in types.structs["Top"]] == ["Name", "name", "Inner"]
    body = b'{"NAME": "n", "name": "m", "Size": "not a number", "Inner": {"A": "a"}, "Flag": 1}'
    quick = quick_decode(types, "Top", body)
    assert quick is not None
    for reading in (quick[0], Decoder(types).decode("Top", parse(body)[0])):
        assert finish(reading) == {"Name": "n", "name": "m", "Inner": {"A": "a"}}
    decoder = Decoder(types)
    decoder.decode("Top", parse(b'{"Inner": {"A": 1}, "Size": 1.5}')[0])
    assert decoder.errors == [
        "json: cannot unmarshal number into Go struct field Inner.Inner.A of type string"
    ]
    # a duplicate is still seen where it is skipped: orjson's reading lost a key
    assert quick_decode(types, "Top", b'{"Name": "a", "Size": 1, "Size": 2}') is None


def test_keys_read_once_per_sequence_still_fold_in_another() -> None:
    types = Types(STRUCTS).narrowed({"Top": frozenset({"Name", "Inner"})})
    exact = b'{"Name": "n", "Size": 1, "Inner": {"A": "a"}}'
    folded = b'{"NAME": "n", "Size": 1, "inner": {"A": "b"}}'
    for _ in range(2):  # the second time from what the first worked out of the same keys
        for body in (exact, folded, exact):
            quick = quick_decode(types, "Top", body)
            assert quick is not None
            assert quick[0] == finish(Decoder(types).decode("Top", parse(body)[0])), body
    assert quick_decode(types, "Top", folded) == (
        {"Name": "n", "Inner": {"A": "b"}},
        {"NAME": "n", "Size": 1, "inner": {"A": "b"}},
    )


# Keys of Top as a client may spell them: exact, in another case, folding, unknown, and the
# two fields that differ only in case.
_KEYS = st.sampled_from(
    [
        "Name",
        "name",
        "NAME",
        "Flag",
        "flag",
        "Ptr",
        "Size",
        "SIZE",
        "Small",
        "Ratio",
        "Inner",
        "inner",
        "Items",
        "Words",
        "words",
        "Labels",
        "Anything",
        "Mask",
        "Ma\u017fk",
        "Key",
        "Unknown",
        "\u212aey",
    ]
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(1 << 65), max_value=1 << 65),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.sampled_from('ab:"\\ \u00e9\u212a\n'), max_size=6),
)
_INNER = st.lists(st.tuples(st.sampled_from(["A", "a", "B", "C"]), _SCALARS), max_size=3)
_TEXT = st.text(alphabet=st.sampled_from('ab:"\\ \u00e9\u212a\n'), max_size=6)
_STRINGS = st.lists(st.tuples(st.sampled_from(["A", "a", "B"]), _TEXT), min_size=1, max_size=3)
# Values of each field's type, most of what a client sends, which the quick reading must take.
_TYPED = {
    "Name": _TEXT,
    "Flag": st.booleans(),
    "Ptr": st.none() | st.booleans(),
    "Size": st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    "Small": st.integers(min_value=0, max_value=65535),
    "Ratio": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-9, 9),
    "Inner": st.none() | _STRINGS,
    "Items": st.none() | st.lists(st.none() | _STRINGS, max_size=2),
    "Words": st.none() | st.lists(_TEXT, max_size=3),
    "Labels": st.none() | st.lists(st.tuples(_TEXT, _TEXT), min_size=1, max_size=2),
    "Anything": _SCALARS,
    "Mask": _TEXT,
    "Key": _TEXT,
    "Unknown": _SCALARS,
}
_TYPED_PAIRS = st.sampled_from(sorted(_TYPED)).flatmap(
    lambda name: st.tuples(st.sampled_from([name, name.lower(), name.upper()]), _TYPED[name])
)


def _write(pairs: list[tuple[str, Any]], compact: bool) -> str:
    """A JSON object with `pairs` in order, duplicates kept, as orjson or as json.dumps
    writes its separators."""
    comma, colon = (",", ":") if compact else (", ", ": ")
    items = (json.dumps(key) + colon + _value(value, compact) for key, value in pairs)
    return "{" + comma.join(items) + "}"


def _value(value: Any, compact: bool) -> str:
    if isinstance(value, list) and value and all(isinstance(p, tuple) for p in value):
        return _write(value, compact)  # an object, as pairs
    if isinstance(value, list):
        comma = "," if compact else ", "
        return "[" + comma.join(_value(item, compact) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)


@settings(max_examples=400, deadline=None)
@given(
    pairs=st.lists(
        _TYPED_PAIRS  # three times in four
        | _TYPED_PAIRS
        | _TYPED_PAIRS
        | st.tuples(
            _KEYS,
            st.one_of(
                _SCALARS,
                _INNER,
                st.lists(st.one_of(_SCALARS, _INNER), max_size=3),
            ),
        ),
        max_size=6,
    ),
    compact=st.booleans(),
    after=st.sampled_from(["", "\n", " ", "\r\n\t"]),
    narrowed=st.booleans(),
)
def test_the_quick_reading_agrees_with_the_full_one_on_any_body(
    pairs: list[tuple[str, Any]], compact: bool, after: str, narrowed: bool
) -> None:
    # The quick reading answers only where it is sure; where it answers, it is the full one.
    types = Types(STRUCTS)
    if narrowed:
        types = types.narrowed({"Top": frozenset({"Name", "Inner", "Items", "Words", "Ptr"})})
    body = (_write(pairs, compact) + after).encode()
    quick = quick_decode(types, "Top", body)
    decoder = Decoder(types)
    full = finish(decoder.decode("Top", parse(body)[0]))
    if quick is not None:
        assert decoder.errors == [], body
        assert quick[0] == full, body
        assert quick[1] == json.loads(body), body


@pytest.mark.parametrize(
    "number", [b"-9223372036854775809", b"18446744073709551616", b"-1" + b"0" * 30]
)
def test_an_integer_past_64_bits_is_left_to_the_full_reading(number: bytes) -> None:
    # orjson reads it as a float, where Go's interface{} (and the full reading) keep it whole.
    for types in (Types(STRUCTS), Types(STRUCTS).narrowed({"Top": frozenset({"Name"})})):
        for body in (b'{"Anything":%s}' % number, b'{"Name":"a", "Anything": [%s]}\n' % number):
            assert quick_decode(types, "Top", body) is None, body
    assert decoded(b'{"Anything":%s}' % number) == ({"Anything": int(number)}, [])


# Go's encoder writes <, >, & and the line separators as escapes (its HTML-safe output).
_GO_HTML = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)
_HTML_TEXT = st.text(alphabet=st.sampled_from('a<>&\u2028\u2029\\":u0'), max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(
            st.sampled_from(["Name", "name", "Mask", "Key", "Words", "Unknown"]),
            _HTML_TEXT | st.lists(_HTML_TEXT, max_size=3),
        ),
        max_size=5,
    ),
    compact=st.booleans(),
    narrowed=st.booleans(),
)
def test_the_escapes_go_writes_for_html_leave_the_quick_reading_as_it_was(
    pairs: list[tuple[str, Any]], compact: bool, narrowed: bool
) -> None:
    types = Types(STRUCTS)
    if narrowed:
        types = types.narrowed({"Top": frozenset({"Name", "Words"})})
    plain = _write(pairs, compact) + "\n"
    body = plain.translate(_GO_HTML).encode()
    quick = quick_decode(types, "Top", body)
    assert (quick is None) == (quick_decode(types, "Top", plain.encode()) is None), body
    if quick is not None:
        decoder = Decoder(types)
        assert quick[0] == finish(decoder.decode("Top", parse(body)[0])), body
        assert decoder.errors == [] and quick[1] == json.loads(body), body


@pytest.mark.parametrize(
    "body",
    [
        b'{"Name":"\\u0041"}',  # a letter
        b'{"N\\u0061me":"a"}',  # a letter of a key, which folds
        b'{"Name":"\\ud800"}',  # a lone surrogate
        b'{"Name":"\\\\\\ud800 \\u003c"}',  # one after an escaped backslash
        b'{"Name":"\\u003C"}',  # not as Go writes it: left to the full reading too
        b'{"\\u212aey":"a"}',  # the Kelvin sign, which folds to k
    ],
)
def test_any_other_escape_is_left_to_the_full_reading(body: bytes) -> None:
    assert quick_decode(Types(STRUCTS), "Top", body) is None


def test_a_body_as_orjson_writes_it_is_read_quickly_unless_a_key_is_lost() -> None:
    # Go's encoder writes a body as orjson does, with a newline after it: no colon is counted.
    types = Types(STRUCTS)
    body = b'{"Name":"a","Inner":{"A":"x:y"},"Items":[],"Words":["w"],"Ptr":null}\n'
    quick = quick_decode(types, "Top", body)
    assert quick is not None
    assert quick[0] == {
        "Name": "a",
        "Inner": {"A": "x:y"},
        "Items": [],
        "Words": ["w"],
        "Ptr": None,
    }
    for lost in (b'{"Name":"a","Name":"a"}', b'{"Inner":{"A":"x"},"Inner":{"A":"x"}}\n'):
        assert quick_decode(types, "Top", lost) is None, lost
