"""Query parameters as dockerd reads them (Go's url.ParseQuery, httputils.BoolValue & co.)."""

from __future__ import annotations

import pytest

from docktap.request.query import Query


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("True", True),
        ("yes", True),
        ("2", True),
        ("off", True),
        ("", False),
        ("0", False),
        ("no", False),
        ("false", False),
        ("FALSE", False),
        ("None", False),
        (" 0 ", False),
        ("%20false%09", False),
        ("+no+", False),
    ],
)
def test_bool_value(value: str, expected: bool) -> None:
    assert Query.parse(f"all={value}").bool_value("all") is expected


def test_an_empty_value_is_false_and_present() -> None:
    # What BoolValueOrDefault builds on: an empty value is there, and false.
    assert not Query.parse("").has("stream")
    assert Query.parse("stream=").has("stream")
    assert Query.parse("stream=").bool_value("stream") is False
    assert Query.parse("stream=1").bool_value("stream") is True


def test_first_value_wins_and_go_drops_bad_pairs() -> None:
    query = Query.parse("a=1&a=2&b=x;y&c=%zz&d=%41+b&&e")
    assert query.get("a") == "1"
    assert query.values["a"] == ["1", "2"]
    assert not query.has("b")  # a pair with a semicolon is dropped
    assert not query.has("c")  # and one with a bad escape
    assert query.get("d") == "A b"
    assert query.has("e") and query.get("e") == ""
    assert Query.of_target("/v1.41/images/create?fromImage=busybox&tag=1").get("tag") == "1"


def test_int64_values() -> None:
    query = Query.parse("n=42&neg=-3&bad=4x&big=9223372036854775808&empty=")
    assert query.int64_value_or_default("n", 0) == 42
    assert query.int64_value_or_default("neg", 7) == -3
    assert query.int64_value_or_default("empty", 7) == 7
    assert query.int64_value_or_default("missing", 7) == 7
    with pytest.raises(ValueError, match="invalid syntax"):
        query.int64_value_or_default("bad", 0)
    with pytest.raises(ValueError, match="invalid syntax"):
        query.int64_value_or_default("big", 0)  # past int64


def test_a_form_body_comes_first_for_post_put_and_patch() -> None:
    form = [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")]
    target = "/v1.41/images/create?fromImage=a&tag=1"
    query = Query.of_request("POST", target, form, b"fromImage=b&x=%zz")
    assert query.get("fromImage") == "b"
    assert query.values["fromImage"] == ["b", "a"]
    assert query.get("tag") == "1"
    assert not query.has("x")
    upper = [("content-type", "Application/X-WWW-Form-Urlencoded")]
    assert Query.of_request("PUT", target, upper, b"fromImage=b").get("fromImage") == "b"
    # Not for other methods, nor for other content types.
    assert Query.of_request("GET", target, form, b"fromImage=b").get("fromImage") == "a"
    json_type = [("Content-Type", "application/json")]
    assert Query.of_request("POST", target, json_type, b"fromImage=b").get("fromImage") == "a"
