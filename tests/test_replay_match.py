"""Matching requests for replay: what counts as the same request, and what a miss reports."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from spellings import variants

from docktap import load
from docktap.replay.match import (
    Key,
    MatchOptions,
    Request,
    closeness,
    differences,
    first_difference,
    normalize_path,
    parse_json_path,
    parse_query,
    request_key,
    split_target,
)

CAPTURES = Path(__file__).parent.parent / "captures"
PLAIN = MatchOptions()

_names = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.text(max_size=12)
)
_json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_json_objects = st.dictionaries(st.text(max_size=8), _json_values, min_size=2, max_size=6)


def key(method: str, target: str, body: bytes = b"", options: MatchOptions = PLAIN) -> Key:
    return request_key(Request.of(method, target, body), options)


def reordered(value: Any, rnd: random.Random) -> Any:
    """The same JSON value with the keys of every object in another order."""
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {name: reordered(item, rnd) for name, item in items}
    if isinstance(value, list):
        return [reordered(item, rnd) for item in value]
    return value


def create_body() -> dict[str, Any]:
    """The ContainerCreate body `docker run` sent in captures/run.jsonl, decoded."""
    ex = load(CAPTURES / "run.jsonl").exchanges[1]
    assert ex.operation == "ContainerCreate"
    body: dict[str, Any] = orjson.loads(bytes(ex.request_body))
    return body


# --- paths ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("/v1.41/containers/json", "/containers/json"),
        ("/v1.43/containers/json", "/containers/json"),
        ("/v1/version", "/version"),
        ("/v1.41/_ping", "/_ping"),
        ("/_ping", "/_ping"),
        ("/containers/json", "/containers/json"),
        ("/v1.41", "/v1.41"),  # a version with nothing after it is no prefix
        ("/vx.y/containers/json", "/vx.y/containers/json"),
        ("/containers/v1.41/json", "/containers/v1.41/json"),  # only a leading prefix goes
    ],
)
def test_normalize_path_drops_the_version_prefix(path: str, normal: str) -> None:
    assert normalize_path(path) == normal
    assert normalize_path(path, exact_version=True) == path


def test_split_target() -> None:
    assert split_target("/v1.41/containers/json?all=1&a=b") == (
        "/v1.41/containers/json",
        "all=1&a=b",
    )
    assert split_target("/_ping") == ("/_ping", "")


def test_api_version_does_not_count_unless_exact() -> None:
    assert key("GET", "/v1.41/containers/json") == key("GET", "/v1.43/containers/json")
    assert key("GET", "/v1.41/containers/json") == key("GET", "/containers/json")
    exact = MatchOptions(exact_version=True)
    assert key("GET", "/v1.41/containers/json", options=exact) != key(
        "GET", "/v1.43/containers/json", options=exact
    )
    assert key("GET", "/v1.41/x", options=exact) == key("GET", "/v1.41/x", options=exact)


def test_method_and_path_count() -> None:
    assert key("GET", "/v1.41/containers/json") != key("POST", "/v1.41/containers/json")
    assert key("GET", "/v1.41/containers/json") != key("GET", "/v1.41/images/json")


# --- queries ----------------------------------------------------------------------------


def test_query_order_does_not_count_but_values_do() -> None:
    assert key("GET", "/containers/json?all=1&limit=5") == key(
        "GET", "/containers/json?limit=5&all=1"
    )
    assert key("GET", "/containers/json?all=1") != key("GET", "/containers/json?all=0")
    assert key("GET", "/containers/json?all=1") != key("GET", "/containers/json")
    # A parameter the spec does not give the operation is compared with all its values...
    assert key("GET", "/containers/json?x=1") != key("GET", "/containers/json?x=1&x=1")
    # ...one it gives, as dockerd reads it: the first value only.
    assert key("GET", "/containers/json?all=1") == key("GET", "/containers/json?all=1&all=0")
    # Percent-encoding is undone before comparing.
    assert key("GET", "/x?name=a%20b") == key("GET", "/x?name=a+b")


@given(
    st.lists(st.tuples(_names, st.text(max_size=10)), min_size=1, max_size=6),
    st.randoms(use_true_random=False),
)
def test_any_order_of_query_params_gives_the_same_key(
    params: list[tuple[str, str]], rnd: random.Random
) -> None:
    shuffled = list(params)
    rnd.shuffle(shuffled)
    assert key("GET", "/x?" + urlencode(params)) == key("GET", "/x?" + urlencode(shuffled))


def test_parse_query_decodes_json_values() -> None:
    query = urlencode({"filters": '{"label":["a=1"],"status":["exited"]}', "all": "1"})
    assert parse_query(query) == {
        "filters": [{"label": ["a=1"], "status": ["exited"]}],
        "all": ["1"],
    }
    assert parse_query("x={not json&y=[1,2]&y=") == {"x": ["{not json"], "y": [[1, 2], ""]}


def test_json_query_values_compare_as_json() -> None:
    one = urlencode({"filters": json.dumps({"a": ["x"], "b": {"y": True}})})
    other = urlencode({"filters": json.dumps({"b": {"y": True}, "a": ["x"]}, indent=1)})
    changed = urlencode({"filters": json.dumps({"a": ["z"], "b": {"y": True}})})
    assert one != other
    assert key("GET", "/containers/json?" + one) == key("GET", "/containers/json?" + other)
    assert key("GET", "/containers/json?" + one) != key("GET", "/containers/json?" + changed)
    # A JSON list keeps its order.
    assert key("GET", '/x?f={"a":["x","y"]}') != key("GET", '/x?f={"a":["y","x"]}')


@given(_json_objects, st.randoms(use_true_random=False))
def test_json_query_values_match_whatever_their_key_order(
    value: dict[str, Any], rnd: random.Random
) -> None:
    one = urlencode({"filters": json.dumps(value), "all": "1"})
    other = urlencode({"all": "1", "filters": json.dumps(reordered(value, rnd))})
    assert key("GET", "/events?" + one) == key("GET", "/events?" + other)


def test_ignore_query() -> None:
    options = MatchOptions(ignore_query=True)
    assert key("GET", "/x?all=1", options=options) == key("GET", "/x?all=0&b=2", options=options)
    assert key("GET", "/x?all=1", options=options) == key("GET", "/x", options=options)
    assert key("GET", "/x?all=1", options=options) != key("GET", "/y?all=1", options=options)


# --- bodies -----------------------------------------------------------------------------


def test_json_bodies_with_keys_in_another_order_match() -> None:
    body = create_body()
    assert list(body)[:2] == ["Hostname", "Domainname"]
    again = dict(reversed(list(body.items())))
    again["HostConfig"] = dict(reversed(list(body["HostConfig"].items())))
    target = "/v1.41/containers/create"
    assert key("POST", target, orjson.dumps(body)) == key(
        "POST", target, json.dumps(again).encode()
    )
    changed = {**body, "Image": "other"}
    assert key("POST", target, orjson.dumps(body)) != key("POST", target, orjson.dumps(changed))


@given(_json_objects, st.randoms(use_true_random=False))
def test_json_bodies_match_whatever_their_key_order_and_spacing(
    value: dict[str, Any], rnd: random.Random
) -> None:
    one = json.dumps(value).encode()
    other = json.dumps(reordered(value, rnd), indent=2, ensure_ascii=False).encode()
    assert key("POST", "/containers/create", one) == key("POST", "/containers/create", other)


def test_json_bodies_with_other_values_differ() -> None:
    assert key("POST", "/x", b'{"a":1}') != key("POST", "/x", b'{"a":2}')
    assert key("POST", "/x", b"[1,2]") != key("POST", "/x", b"[2,1]")
    assert key("POST", "/x", b"{}") != key("POST", "/x", b"")
    assert key("POST", "/x", b'{"a":1}') != key("POST", "/x", b'{"a":1,"b":null}')


def test_other_bodies_compare_by_digest() -> None:
    tar = b"file.txt\x00" + bytes(range(256))
    assert key("PUT", "/containers/c/archive", tar) == key("PUT", "/containers/c/archive", tar)
    assert key("PUT", "/containers/c/archive", tar) != key("PUT", "/containers/c/archive", tar[:-1])
    # Not JSON although it starts like it: every byte counts.
    assert key("POST", "/x", b"{not json") != key("POST", "/x", b"{not  json")
    # Only objects and arrays are compared as JSON; a bare scalar is compared byte for byte.
    assert key("POST", "/x", b'{"a": 1}') == key("POST", "/x", b'{"a":1}')
    assert key("POST", "/x", b'"text"') != key("POST", "/x", b' "text"')


def test_a_body_too_large_to_keep_stands_by_its_digest() -> None:
    data = b"\x1f\x8b" + b"layer" * 100
    digest = hashlib.sha256(data).hexdigest()
    too_large = Request("POST", "/images/load", None, digest)
    assert request_key(too_large, PLAIN) == key("POST", "/images/load", data)
    assert request_key(too_large, PLAIN) != key("POST", "/images/load", data + b"!")
    same = Request("POST", "/images/load", None, digest)
    other = Request("POST", "/images/load", None, hashlib.sha256(b"other").hexdigest())
    assert request_key(too_large, PLAIN) == request_key(same, PLAIN)
    assert request_key(too_large, PLAIN) != request_key(other, PLAIN)
    # A JSON body cut off cannot be compared as JSON: ignored paths do not apply to it.
    json_body = b'{"Env":["A=1"]}'
    cut = Request("POST", "/x", None, hashlib.sha256(json_body).hexdigest())
    cut_other = Request("POST", "/x", None, hashlib.sha256(b'{"Env":["A=2"]}').hexdigest())
    options = MatchOptions(ignore_paths=("$.Env",))
    assert request_key(cut, options) != request_key(cut_other, options)


def test_ignore_body() -> None:
    options = MatchOptions(ignore_body=True)
    assert key("POST", "/x", b'{"a":1}', options) == key("POST", "/x", b"tar bytes", options)
    assert key("POST", "/x", b'{"a":1}', options) == key("POST", "/x", b"", options)
    assert key("POST", "/x", b"", options) != key("PUT", "/x", b"", options)


def _create_key(body: dict[str, Any], *ignore: str) -> Key:
    return key(
        "POST", "/v1.41/containers/create", orjson.dumps(body), MatchOptions(ignore_paths=ignore)
    )


def test_ignore_paths_env_binds_labels() -> None:
    body = create_body()
    env = {**body, "Env": ["HOME=/root", "RUN_ID=42"]}
    assert _create_key(body, "$.Env") == _create_key(env, "$.Env")
    assert _create_key(body) != _create_key(env)
    assert _create_key(body, "$.Env") != _create_key({**env, "Image": "other"}, "$.Env")
    # Ignored whether it is there or not.
    assert _create_key(body, "$.Env") == _create_key(
        {k: v for k, v in body.items() if k != "Env"}, "$.Env"
    )

    binds = {**body, "HostConfig": {**body["HostConfig"], "Binds": ["/tmp/run-8:/data"]}}
    assert _create_key(body, "$.HostConfig.Binds") == _create_key(binds, "$.HostConfig.Binds")
    assert _create_key(body, "$.Binds") != _create_key(
        binds, "$.Binds"
    )  # at the top: no such thing
    memory = {**binds, "HostConfig": {**binds["HostConfig"], "Memory": 1 << 20}}
    assert _create_key(body, "$.HostConfig.Binds") != _create_key(memory, "$.HostConfig.Binds")

    labelled = {**body, "Labels": {"run": "42", "ci.job": "7"}}
    relabelled = {**body, "Labels": {"run": "43"}}
    assert _create_key(labelled, "$.Labels.*") == _create_key(relabelled, "$.Labels.*")
    assert _create_key(labelled, "$.Labels.*") == _create_key(body, "$.Labels.*")
    assert _create_key(labelled, "$.Labels.run") != _create_key(relabelled, "$.Labels.run")
    assert _create_key(labelled, "$.Labels.ci.job") != _create_key(relabelled, "$.Labels.ci.job")


def test_ignore_paths_list_items() -> None:
    body = create_body()
    assert body["Cmd"][:2] == ["sh", "-c"]
    bash = {**body, "Cmd": ["bash", *body["Cmd"][1:]]}
    other_script = {**body, "Cmd": ["sh", "-c", "exit 0"]}
    assert _create_key(body, "$.Cmd[0]") == _create_key(bash, "$.Cmd[0]")
    assert _create_key(body, "$.Cmd[0]") != _create_key(other_script, "$.Cmd[0]")
    assert _create_key(body, "$.Cmd[2]") == _create_key(other_script, "$.Cmd[2]")
    assert _create_key(body, "$.Cmd[7]") != _create_key(other_script, "$.Cmd[7]")  # past its end
    assert _create_key(body, "$.Cmd[*]") == _create_key({**body, "Cmd": ["true"]}, "$.Cmd[*]")

    mounts = [{"Source": "/tmp/a1", "Target": "/data"}, {"Source": "/tmp/b1", "Target": "/cache"}]
    moved = [{"Source": "/tmp/a2", "Target": "/data"}, {"Source": "/tmp/b2", "Target": "/cache"}]
    retargeted = [
        {"Source": "/tmp/a1", "Target": "/other"},
        {"Source": "/tmp/b1", "Target": "/cache"},
    ]
    ignore = "$.HostConfig.Mounts[*].Source"
    one = {**body, "HostConfig": {**body["HostConfig"], "Mounts": mounts}}
    two = {**body, "HostConfig": {**body["HostConfig"], "Mounts": moved}}
    three = {**body, "HostConfig": {**body["HostConfig"], "Mounts": retargeted}}
    assert _create_key(one, ignore) == _create_key(two, ignore)
    assert _create_key(one, ignore) != _create_key(three, ignore)


def test_ignore_every_top_level_member() -> None:
    options = MatchOptions(ignore_paths=("$.*",))
    assert key("POST", "/x", b'{"a":1,"b":[2]}', options) == key("POST", "/x", b'{"c":3}', options)
    assert key("POST", "/x", b"[1,2]", options) == key("POST", "/x", b"[3]", options)
    assert key("POST", "/x", b'{"a":1}', options) != key("POST", "/x", b"[1]", options)
    assert key("POST", "/x", b'{"a":1}', options) != key("POST", "/y", b'{"a":1}', options)
    assert key("POST", "/x", b"abc", options) != key("POST", "/x", b"abd", options)


# --- JSON paths -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("$.Env", ["Env"]),
        ("$.HostConfig.Binds", ["HostConfig", "Binds"]),
        ("$.HostConfig.Binds[0]", ["HostConfig", "Binds", 0]),
        ("$.Labels.*", ["Labels", "*"]),
        ("$.Cmd[12]", ["Cmd", 12]),
        ("$.Mounts[*].Source", ["Mounts", "*", "Source"]),
        ("$[0].a", [0, "a"]),
        ("$.*", ["*"]),
        ("$.com-example_label9", ["com-example_label9"]),
    ],
)
def test_parse_json_path(path: str, steps: list[str | int]) -> None:
    assert parse_json_path(path) == steps


@pytest.mark.parametrize("path", ["Env", ".Env", "", "HostConfig.Binds"])
def test_a_json_path_starts_with_dollar(path: str) -> None:
    with pytest.raises(ValueError, match=r"a JSON path starts with \$"):
        parse_json_path(path)


@pytest.mark.parametrize(
    "path", ["$Env", "$.", "$.a..b", "$.a[x]", "$.a[-1]", "$.a b", "$.a[0", "$.a.", "$['a']"]
)
def test_parse_json_path_rejects_what_it_does_not_understand(path: str) -> None:
    with pytest.raises(ValueError, match="not a JSON path docktap understands"):
        parse_json_path(path)


def test_the_whole_body_is_no_json_path_to_ignore() -> None:
    """`$` alone names no part of a body: it is refused, as the CLI refuses any bad path."""
    with pytest.raises(ValueError, match="ignore the body"):
        parse_json_path("$")
    with pytest.raises(ValueError):
        key("POST", "/x", b'{"a":1}', MatchOptions(ignore_paths=("$",)))


# --- first differences ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recorded", "incoming", "where"),
    [
        ({"Env": ["A=1"]}, {"Env": ["A=2"]}, "$.Env[0]"),
        ({"a": {"b": 1}}, {"a": {"b": 2}}, "$.a.b"),
        ({"a": {"b": 1}}, {"a": {}}, "$.a.b"),
        ({"a": {}}, {"a": {"b": 1}}, "$.a.b"),
        ({"a": 1}, {"a": 1, "z": 2}, "$.z"),
        ({"a": 1, "b": 1}, {"b": 2, "a": 2}, "$.a"),  # in the recorded order
        ({"Cmd": ["sh", "-c", "x"]}, {"Cmd": ["sh", "-c", "y"]}, "$.Cmd[2]"),
        ({"Cmd": ["sh", "-c"]}, {"Cmd": ["sh", "-c", "x"]}, "$.Cmd[2]"),
        ({"Cmd": ["sh", "-c", "x"]}, {"Cmd": ["sh"]}, "$.Cmd[1]"),
        ({"Cmd": ["a"]}, {"Cmd": []}, "$.Cmd[0]"),
        ([1, 2], [1, 2, 3], "$[2]"),
        ([[1, 2]], [[1, 3]], "$[0][1]"),
        ({"a": [1]}, {"a": {"0": 1}}, "$.a"),
        ({"a": None}, {"a": 0}, "$.a"),
        (1, 2, "$"),
        ({"a": 1, "b": [1, {"c": 2}]}, {"b": [1, {"c": 2}], "a": 1}, None),
        ([], [], None),
    ],
)
def test_first_difference(recorded: Any, incoming: Any, where: str | None) -> None:
    assert first_difference(recorded, incoming) == where


@given(_json_values, st.randoms(use_true_random=False))
def test_no_difference_between_a_value_and_itself_reordered(value: Any, rnd: random.Random) -> None:
    assert first_difference(value, reordered(value, rnd)) is None


# --- differences ------------------------------------------------------------------------


def _differences(recorded: Request, incoming: Request, options: MatchOptions = PLAIN) -> list[str]:
    return list(differences(recorded, incoming, options))


def test_differences_name_method_and_path() -> None:
    recorded = Request.of("POST", "/v1.41/containers/c1/start", b"")
    assert _differences(recorded, Request.of("POST", "/v1.43/containers/c1/start", b"")) == []
    assert _differences(recorded, Request.of("GET", "/v1.41/containers/c1/start", b"")) == [
        "method differs (POST)"
    ]
    assert _differences(recorded, Request.of("POST", "/v1.41/containers/c2/start", b"")) == [
        "path differs (/v1.41/containers/c1/start)"
    ]
    exact = MatchOptions(exact_version=True)
    assert _differences(recorded, Request.of("POST", "/v1.43/containers/c1/start", b""), exact) == [
        "path differs (/v1.41/containers/c1/start)"
    ]


def test_differences_in_the_query() -> None:
    recorded = Request.of("GET", "/v1.41/containers/json?all=1&size=0", b"")

    def now(target: str) -> list[str]:
        return _differences(recorded, Request.of("GET", target, b""))

    assert now("/v1.41/containers/json?size=0&all=1") == []
    assert now("/v1.41/containers/json?size=0") == ['query all differs: recorded "1", got absent']
    assert now("/v1.41/containers/json?all=1&size=0&limit=3") == [
        'query limit differs: recorded absent, got "3"'
    ]
    assert now("/v1.41/containers/json?all=0&size=0") == [
        'query all differs: recorded "1", got "0"'
    ]
    # size=0 is size's default: leaving it out changes nothing; under a limit all is true.
    assert now("/v1.41/containers/json?limit=3") == [
        'query limit differs: recorded absent, got "3"',
    ]
    assert now("/v1.41/containers/json?limit=0") == ['query all differs: recorded "1", got absent']
    assert now("/v1.41/containers/json?all=1&all=0") == []  # dockerd reads the first
    assert now("/v1.41/containers/json?all=true") == []  # 1 and true are both true
    assert (
        _differences(
            recorded,
            Request.of("GET", "/v1.41/containers/json", b""),
            MatchOptions(ignore_query=True),
        )
        == []
    )


def test_differences_in_json_query_values() -> None:
    recorded = Request.of("GET", '/events?filters={"type":["container"],"label":["a=1"]}', b"")
    incoming = Request.of("GET", '/events?filters={"label":["a=2"],"type":["container"]}', b"")
    assert _differences(recorded, incoming) == [
        'query filters differs at $.label[0]: recorded "a=1", got "a=2"'
    ]
    reordered_only = Request.of(
        "GET", '/events?filters={"label":["a=1"],"type":["container"]}', b""
    )
    assert _differences(recorded, reordered_only) == []
    text = Request.of("GET", "/events?filters=container", b"")
    assert _differences(recorded, text) == [
        'query filters differs: recorded {"label":["a=1"],"type":["container"]}, got "container"'
    ]


def test_differences_in_the_body() -> None:
    body = create_body()
    target = "/v1.41/containers/create"
    recorded = Request.of("POST", target, orjson.dumps(body))
    changed = {**body, "Cmd": [*body["Cmd"][:2], "echo other"]}
    incoming = Request.of("POST", target, orjson.dumps(changed))
    assert _differences(recorded, incoming) == [
        'body differs at $.Cmd[2]: recorded "echo out; echo err >&2; exit 3", got "echo other"'
    ]
    assert _differences(recorded, incoming, MatchOptions(ignore_body=True)) == []
    assert _differences(recorded, incoming, MatchOptions(ignore_paths=("$.Cmd",))) == []
    assert _differences(recorded, Request.of("POST", target, b"")) == ["body differs"]
    assert _differences(Request.of("PUT", "/a", b"tar1"), Request.of("PUT", "/a", b"tar2")) == [
        "body differs"
    ]
    assert _differences(Request.of("PUT", "/a", b"tar1"), Request.of("PUT", "/a", b"tar1")) == []


def test_differences_come_most_telling_first() -> None:
    recorded = Request.of("POST", "/v1.41/containers/create?name=web", b'{"Image":"bb"}')
    incoming = Request.of("PUT", "/v1.41/containers/make?name=db", b'{"Image":"bb2"}')
    assert _differences(recorded, incoming) == [
        "method differs (POST)",
        "path differs (/v1.41/containers/create)",
        'query name differs: recorded "web", got "db"',
        'body differs at $.Image: recorded "bb", got "bb2"',
    ]


# --- closeness --------------------------------------------------------------------------


def _closest(recorded: list[Request], incoming: Request, options: MatchOptions = PLAIN) -> Request:
    return max(recorded, key=lambda r: closeness(r, incoming, options))


def test_same_method_and_path_beats_fewer_differences() -> None:
    incoming = Request.of("POST", "/v1.41/x/a?p=1&q=1&r=1", b'{"a":1}')
    same_path = Request.of("POST", "/v1.41/x/a?p=2&q=2&r=2", b'{"a":2}')  # four differences
    other_path = Request.of("POST", "/v1.41/x/b?p=1&q=1&r=1", b'{"a":1}')  # one difference
    other_method = Request.of("GET", "/v1.41/x/a?p=1&q=1&r=1", b'{"a":1}')  # one difference
    for order in ([same_path, other_path, other_method], [other_method, other_path, same_path]):
        assert _closest(order, incoming) is same_path
    # Then the same method, whatever the path.
    assert _closest([other_method, other_path], incoming) is other_path
    # Then the longest shared path, then the fewest differences.
    near = Request.of("GET", "/v1.41/x/c", b"")
    far = Request.of("GET", "/v1.41/y/a?p=1&q=1&r=1", b'{"a":1}')
    assert _closest([far, near], Request.of("GET", "/v1.41/x/a", b"")) is near
    fewer = Request.of("POST", "/v1.41/x/a?p=1&q=1&r=2", b'{"a":1}')
    assert _closest([same_path, fewer], incoming) is fewer


def test_closeness_on_a_real_capture() -> None:
    capture = load(CAPTURES / "run.jsonl")
    recorded = [Request.of(ex.method, ex.target, bytes(ex.request_body)) for ex in capture]
    by_operation = {ex.operation: request for ex, request in zip(capture, recorded, strict=True)}
    body = create_body()
    changed = {**body, "Cmd": ["sh", "-c", "echo other"]}
    create = Request.of("POST", "/v1.43/containers/create", orjson.dumps(changed))
    assert _closest(recorded, create) is by_operation["ContainerCreate"]
    container = by_operation["ContainerStart"].target.rsplit("/", 1)[0]
    stop = Request.of("POST", f"{container}/stop", b"")
    assert _closest(recorded, stop) is by_operation["ContainerStart"]  # only its path differs
    wait = Request.of("POST", f"{container}/wait?condition=next-exit", b"")
    assert _closest(recorded, wait) is by_operation["ContainerWait"]


@given(
    st.sampled_from(["GET", "POST"]),
    st.lists(_names, min_size=1, max_size=4),
    st.dictionaries(_names, st.text(max_size=5), max_size=3),
)
def test_a_request_is_closest_to_itself(
    method: str, segments: list[str], query: dict[str, str]
) -> None:
    path = "/v1.41/" + "/".join(segments)
    itself = Request.of(method, path + ("?" + urlencode(query) if query else ""), b"")
    rank = closeness(itself, itself, PLAIN)
    assert rank == (1, 1, len(segments) + 1, 0)
    assert closeness(Request.of(method, path + "/more", b""), itself, PLAIN) < rank
    assert closeness(Request.of(method, path + "?extra=1", b""), itself, PLAIN) < rank


def test_json_true_and_one_differ() -> None:
    assert first_difference({"a": True}, {"a": 1}) == "$.a"


def test_an_empty_body_is_not_a_json_body_that_looks_like_a_marker() -> None:
    options = MatchOptions()
    empty = Request.of("POST", "/x", b"")
    for lookalike in (b'["empty"]', b'[""]', b'"bytes:"'):
        assert request_key(empty, options) != request_key(
            Request.of("POST", "/x", lookalike), options
        )


# --- bodies compared as dockerd decodes them ------------------------------------------------


def test_create_bodies_in_every_spelling_dockerd_reads_alike_match() -> None:
    body = create_body()
    target = "/v1.41/containers/create"
    expected = key("POST", target, orjson.dumps(body))
    for name, raw in variants(body).items():
        assert key("POST", target, raw) == expected, name
    assert key("POST", target, orjson.dumps({**body, "Image": "other"})) != expected


def test_fields_left_at_zero_unknown_fields_and_trailing_bytes_make_no_difference() -> None:
    body = create_body()
    target = "/v1.41/containers/create"
    expected = key("POST", target, orjson.dumps(body))
    host = {**body["HostConfig"], "KernelMemory": 0, "BlkioDeviceReadBps": None, "Dns": []}
    assert key("POST", target, orjson.dumps({**body, "HostConfig": host})) == expected
    assert key("POST", target, orjson.dumps({**body, "Unheard": [1]})) == expected
    assert key("POST", target, orjson.dumps(body) + b" trailing") == expected
    # A pointer's explicit false is not the daemon's default.
    init = {**body["HostConfig"], "Init": False}
    assert key("POST", target, orjson.dumps({**body, "HostConfig": init})) != expected
    # Outside the API's types (or refused by dockerd), a body is compared as plain JSON.
    assert key("POST", "/x", b'{"a":1,"b":0}') != key("POST", "/x", b'{"a":1}')
    refused = {**body, "Tty": 1}
    assert key("POST", target, orjson.dumps(refused)) != key(
        "POST", target, orjson.dumps({**refused, "Tty": 2})
    )


def test_a_miss_names_the_field_in_the_api_spelling() -> None:
    target = "/v1.41/containers/create"
    recorded = Request.of("POST", target, b'{"Image":"bb","Cmd":["a","b"]}')
    incoming = Request.of("POST", target, b'{"image":"bb","cmd":["a","c"]}')
    assert list(differences(recorded, incoming, PLAIN)) == [
        'body differs at $.Cmd[1]: recorded "b", got "c"'
    ]


def test_a_build_query_of_the_cli_20_matches_the_cli_28() -> None:
    cli28 = "/v1.41/build?dockerfile=Dockerfile&networkmode=none&t=built&version=1"
    cli20 = (
        "/v1.41/build?buildargs=%7B%7D&cachefrom=%5B%5D&cgroupparent=&cpuperiod=0&cpuquota=0"
        "&cpusetcpus=&cpusetmems=&cpushares=0&dockerfile=Dockerfile&labels=%7B%7D&memory=0"
        "&memswap=0&networkmode=none&rm=1&shmsize=0&t=built&target=&ulimits=null&version=1"
    )
    assert key("POST", cli28) == key("POST", cli20)
    assert key("POST", cli28) != key("POST", cli20.replace("rm=1", "rm=0"))
    assert key("POST", cli28) != key("POST", cli20.replace("memory=0", "memory=5"))
    # rm defaults to true: rm=true, rm=1 and none at all are the same build.
    assert key("POST", cli28 + "&rm=true") == key("POST", cli28 + "&rm=1") == key("POST", cli28)
    exact = MatchOptions(exact_body=True)
    assert request_key(Request.of("POST", cli28, b""), exact) != request_key(
        Request.of("POST", cli20, b""), exact
    )


def test_a_build_on_the_default_network_is_the_same_with_each_cli() -> None:
    # `docker build` without --network: the CLI 20.10 sends networkmode=default, the CLI 28
    # nothing, and dockerd gives each container the build runs the default network either way.
    cli28 = "/v1.41/build?dockerfile=Dockerfile&t=built&version=1"
    assert key("POST", cli28 + "&networkmode=default") == key("POST", cli28)
    assert key("POST", cli28 + "&networkmode=") == key("POST", cli28)
    assert key("POST", cli28 + "&networkmode=none") != key("POST", cli28)
    assert key("POST", cli28 + "&networkmode=host") != key("POST", cli28)


def test_a_stop_timeout_of_zero_is_not_an_absent_one() -> None:
    # dockerd reads an absent t as the container's own timeout: the spec gives no default.
    assert key("POST", "/containers/c/stop?t=0") != key("POST", "/containers/c/stop")
    assert key("POST", "/containers/c/stop?t=") == key("POST", "/containers/c/stop")


def test_a_container_list_limit_counts_only_above_zero() -> None:
    # `docker ps -n 0` (and -n -5): the CLI 20.10 sends limit=0 (limit=-5), the CLI 28 no
    # limit; dockerd applies a limit only above 0, so each is the list of no limit at all.
    plain = "/v1.41/containers/json"
    for limit in ("0", "-5", "%2B0", "-9223372036854775808"):
        assert key("GET", f"{plain}?limit={limit}") == key("GET", plain), limit
    assert key("GET", f"{plain}?limit=0&all=1") == key("GET", f"{plain}?all=1")
    assert key("GET", f"{plain}?limit=1") != key("GET", plain)
    assert key("GET", f"{plain}?limit=1") == key("GET", f"{plain}?limit=%2B1")
    assert key("GET", f"{plain}?limit=1") != key("GET", f"{plain}?limit=2")
    # One dockerd refuses is compared as written.
    assert key("GET", f"{plain}?limit=x") != key("GET", plain)
    assert key("GET", f"{plain}?limit=x") != key("GET", f"{plain}?limit=y")


def test_under_a_limit_all_is_moot() -> None:
    # A limit above 0 lists stopped containers too: `ps -a -n 3` is `ps -n 3`.
    plain = "/v1.41/containers/json"
    assert key("GET", f"{plain}?all=1&limit=3") == key("GET", f"{plain}?limit=3")
    assert key("GET", f"{plain}?all=1&limit=0") != key("GET", f"{plain}?limit=0")
    assert key("GET", f"{plain}?all=1&limit=x") != key("GET", f"{plain}?limit=x")
    assert key("GET", f"{plain}?all=1") != key("GET", plain)
    ignoring_all = MatchOptions(free=("all",))
    assert key("GET", f"{plain}?limit=3", options=ignoring_all) == key(
        "GET", f"{plain}?all=0&limit=3", options=ignoring_all
    )
    # Elsewhere `all` is read as it is.
    images = "/v1.41/images/json"
    assert key("GET", f"{images}?all=1&limit=3") != key("GET", f"{images}?limit=3")
