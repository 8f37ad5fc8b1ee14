"""Tests for masking registry credentials before they reach a capture."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import quote

import pytest
from capture_schema import validate_capture
from hypothesis import given, settings
from hypothesis import strategies as st

from docktap import redact
from docktap.capture.format import HELD_BODY_LIMIT, Record, RecordEncoder, decode_bytes, dumps
from docktap.events import (
    BodyData,
    Closed,
    Direction,
    Event,
    MessageEnd,
    RequestHead,
    ResponseHead,
)
from docktap.redact import MASK_PREFIX, Redactor

PASSWORD = "hunter2-very-secret"
#: The key of the masks' digests in these tests, given so that masks can be written out: a
#: recording's is random and never written (see test_the_digest_is_keyed_per_redactor).
KEY = b"the tests' own key"
R = Redactor(key=KEY)
TOKEN = "eyJhbGciOi-identity-token"


def is_masked(value: str) -> bool:
    return value.startswith(MASK_PREFIX) and value.endswith(">")


def redact_auth_body(body: bytes) -> bytes:
    """The body of `POST /auth` or its answer as the default redactor records it."""
    return Redactor(key=KEY).body("SystemAuth", body)


def M(value: str) -> str:
    """The mask of a value under the tests' key: the same throughout a capture, hiding it."""
    masked = R.mask(value)
    assert is_masked(masked) and value not in masked
    return masked


def b64url(value: Any, pad: bool = True) -> str:
    encoded = base64.urlsafe_b64encode(json.dumps(value).encode()).decode()
    return encoded if pad else encoded.rstrip("=")


def unb64url(value: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


def header(headers: tuple[tuple[str, str], ...], name: str) -> str:
    return next(v for k, v in headers if k.lower() == name.lower())


# --- X-Registry-Auth and X-Registry-Config ---------------------------------------------------


def test_registry_auth_masks_secrets_and_keeps_the_shape() -> None:
    auth = {
        "username": "alice",
        "password": PASSWORD,
        "serveraddress": "registry.example:5000",
        "identitytoken": TOKEN,
        "email": "",
    }
    value = b64url(auth)
    out = R.headers((("X-Registry-Auth", value),))
    [(name, masked)] = out
    assert name == "X-Registry-Auth"
    assert unb64url(masked) == {
        "username": "alice",
        "password": M(PASSWORD),
        "serveraddress": "registry.example:5000",
        "identitytoken": M(TOKEN),
        "email": "",
    }
    assert PASSWORD not in masked
    assert TOKEN not in masked


def test_registry_auth_in_url_safe_alphabet_and_unpadded() -> None:
    # Pick a payload whose base64url uses '-' or '_', which standard base64 spells '+' or '/'.
    auth = {"username": "bob>>>?", "password": "p??>>~~"}
    value = b64url(auth, pad=False)
    assert set(value) & {"-", "_"}
    assert len(value) % 4 != 0
    [(_, masked)] = R.headers((("x-registry-auth", value),))
    assert unb64url(masked) == {"username": "bob>>>?", "password": M("p??>>~~")}


def test_registry_config_masks_every_registry() -> None:
    config = {
        "registry.example:5000": {"username": "bob", "password": PASSWORD},
        "https://index.docker.io/v1/": {
            "auth": base64.b64encode(b"bob:" + PASSWORD.encode()).decode(),
            "identitytoken": TOKEN,
        },
        "empty.example": {},
    }
    [(_, masked)] = R.headers((("X-Registry-Config", b64url(config)),))
    assert unb64url(masked) == {
        "registry.example:5000": {"username": "bob", "password": M(PASSWORD)},
        "https://index.docker.io/v1/": {
            "auth": M(config["https://index.docker.io/v1/"]["auth"]),
            "identitytoken": M(TOKEN),
        },
        "empty.example": {},
    }


@pytest.mark.parametrize(
    "value",
    [
        "not base64 at all!!",
        base64.urlsafe_b64encode(b"user:password-not-json").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe\x00secret").decode(),
        "",
    ],
)
def test_undecodable_registry_header_is_masked_whole(value: str) -> None:
    [(_, masked)] = R.headers((("X-Registry-Auth", value),))
    assert masked == R.mask(value)
    assert is_masked(masked)


# --- Authorization --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("Authorization", "Basic dXNlcjpwYXNz", "Basic " + R.mask("dXNlcjpwYXNz")),
        ("authorization", "Bearer abc.def.ghi", "Bearer " + R.mask("abc.def.ghi")),
        ("Proxy-Authorization", "Basic Zm9vOmJhcg==", "Basic " + R.mask("Zm9vOmJhcg==")),
        ("Authorization", "rawtokenwithoutscheme", R.mask("rawtokenwithoutscheme")),
    ],
)
def test_authorization_keeps_only_the_scheme(name: str, value: str, expected: str) -> None:
    assert R.headers(((name, value),)) == ((name, expected),)
    assert value.split()[-1] not in expected


def test_other_headers_are_untouched_and_order_kept() -> None:
    headers = (
        ("Host", "api.moby.localhost"),
        ("Authorization", "Basic eA=="),
        ("Content-Type", "application/json"),
        ("X-Registry-Auth", b64url({"password": "p"})),
        ("User-Agent", "Docker-Client/28.2.2 (linux)"),
    )
    out = R.headers(headers)
    assert [k for k, _ in out] == [k for k, _ in headers]
    for index in (0, 2, 4):
        assert out[index] == headers[index]
    assert header(out, "authorization") == "Basic " + M("eA==")


# --- JSON values and /auth bodies -----------------------------------------------------------


def test_mask_secrets_at_any_depth_and_any_case() -> None:
    value = {
        "Password": "x",
        "nested": [{"IdentityToken": "y", "RegistryToken": "z", "keep": 1}],
        "auth": "",  # empty: nothing to hide, the shape says no credential was sent
        "other": None,
    }
    assert R.credentials(value) == {
        "Password": M("x"),
        "nested": [{"IdentityToken": M("y"), "RegistryToken": M("z"), "keep": 1}],
        "auth": "",
        "other": None,
    }
    assert value["Password"] == "x"  # a copy: the input is left alone


def test_redact_auth_body() -> None:
    body = json.dumps({"username": "u", "password": PASSWORD}).encode()
    assert json.loads(redact_auth_body(body)) == {"username": "u", "password": M(PASSWORD)}
    raw = b"password=" + PASSWORD.encode()
    assert redact_auth_body(raw) == R.mask(raw).encode()
    assert redact_auth_body(b"") == b""


# --- /auth end to end through the encoder ---------------------------------------------------

WALL = 1_750_000_000.0
MONO = 10.0


def auth_exchange(request_body: bytes, response_body: bytes, pieces: int = 4) -> list[Event]:
    """POST /auth with its body (sent in `pieces`) and the daemon's answer."""
    step = max(1, len(request_body) // pieces)
    chunks = [request_body[i : i + step] for i in range(0, len(request_body), step)]
    headers = (
        ("Host", "api.moby.localhost"),
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(request_body))),
    )
    return [
        RequestHead(1, MONO + 1, 1, "POST", "/v1.41/auth", "1.1", headers),
        *(BodyData(1, MONO + 1, 1, Direction.CLIENT, chunk) for chunk in chunks),
        MessageEnd(1, MONO + 1, 1, Direction.CLIENT),
        ResponseHead(
            1, MONO + 2, 1, 200, "OK", "1.1", (("Content-Type", "application/json"),), False
        ),
        BodyData(1, MONO + 2, 1, Direction.DAEMON, response_body[:10]),
        BodyData(1, MONO + 2, 1, Direction.DAEMON, response_body[10:]),
        MessageEnd(1, MONO + 2, 1, Direction.DAEMON),
        Closed(1, MONO + 3),
    ]


def encode_all(events: list[Event], max_body: int = 1 << 20) -> list[Record]:
    enc = RecordEncoder(WALL, MONO, max_body, redactor=Redactor(key=KEY))
    records = [enc.header("unix:///var/run/docker.sock", ["docker", "login"], "0.1.0")]
    records.append(enc.opened(1, None, MONO + 0.5))
    for event in events:
        records.extend(enc.encode(event))
    records.append(enc.footer(MONO + 4, len(records) + 1))
    return records


def bodies(records: list[Record], direction: str) -> bytes:
    return b"".join(
        decode_bytes(r) for r in records if r["type"] == "body" and r["dir"] == direction
    )


def test_auth_bodies_are_masked_end_to_end() -> None:
    login = {
        "username": "alice",
        "password": PASSWORD,
        "serveraddress": "https://index.docker.io/v1/",
    }
    answer = {"Status": "Login Succeeded", "IdentityToken": TOKEN}
    request_body = json.dumps(login).encode()
    response_body = json.dumps(answer).encode()
    records = encode_all(auth_exchange(request_body, response_body, pieces=7))
    validate_capture(records)

    lines = "\n".join(dumps(r) for r in records)
    for secret in (PASSWORD, TOKEN, PASSWORD[:8], PASSWORD[8:], TOKEN[:10]):
        assert secret not in lines
    # Nor in base64, in case a piece had been written raw.
    assert base64.b64encode(PASSWORD.encode()[:9]).decode()[:12] not in lines

    [request] = [r for r in records if r["type"] == "request"]
    assert request["operation"] == "SystemAuth"
    # The held-back body goes out whole, once, as valid JSON with only the secrets masked.
    client_bodies = [r for r in records if r["type"] == "body" and r["dir"] == "client"]
    assert len(client_bodies) == 1
    assert json.loads(bodies(records, "client")) == {**login, "password": M(PASSWORD)}
    assert json.loads(bodies(records, "daemon")) == {**answer, "IdentityToken": M(TOKEN)}
    # Size and digest describe what was written: a digest of the secret would let it be
    # guessed offline.
    ends = {r["dir"]: r for r in records if r["type"] == "end"}
    for direction in ("client", "daemon"):
        written = bodies(records, direction)
        assert ends[direction]["size"] == ends[direction]["inline"] == len(written)
        assert ends[direction]["sha256"] == hashlib.sha256(written).hexdigest()
    # The body comes out at the end of the message, just before its end record.
    types = [r["type"] for r in records]
    assert types[types.index("body") + 1] == "end"


def test_auth_body_is_masked_even_past_the_inline_cap() -> None:
    records = encode_all(
        auth_exchange(
            json.dumps({"username": "alice", "password": PASSWORD}).encode(),
            json.dumps({"Status": "Login Succeeded", "IdentityToken": TOKEN}).encode(),
        ),
        max_body=12,
    )
    validate_capture(records)
    lines = "\n".join(dumps(r) for r in records)
    assert PASSWORD not in lines
    assert TOKEN not in lines


def test_non_json_auth_body_is_masked_whole() -> None:
    request_body = b"username=alice&password=" + PASSWORD.encode()
    records = encode_all(auth_exchange(request_body, b"not json " + b"x" * 20))
    assert bodies(records, "client") == R.mask(request_body).encode()
    assert bodies(records, "daemon") == R.mask(b"not json " + b"x" * 20).encode()
    assert PASSWORD not in "\n".join(dumps(r) for r in records)


def test_oversized_auth_body_keeps_only_size_and_digest() -> None:
    padding = "x" * (HELD_BODY_LIMIT + 10)  # past what the encoder holds back
    request_body = json.dumps({"username": padding, "password": PASSWORD}).encode()
    records = encode_all(auth_exchange(request_body, b'{"Status":"Login Succeeded"}', 20))
    assert bodies(records, "client") == b""
    assert PASSWORD not in "\n".join(dumps(r) for r in records)
    [end] = [r for r in records if r["type"] == "end" and r["dir"] == "client"]
    assert end["size"] == len(request_body)
    assert end["inline"] == 0
    assert end["sha256"] == hashlib.sha256(request_body).hexdigest()
    validate_capture(records)


def test_other_bodies_are_not_held_back() -> None:
    enc = RecordEncoder(WALL, MONO)
    enc.encode(RequestHead(1, MONO, 1, "POST", "/v1.41/containers/abc/start", "1.1", ()))
    [record] = enc.encode(BodyData(1, MONO, 1, Direction.CLIENT, b'{"password":"in env"}'))
    assert decode_bytes(record) == b'{"password":"in env"}'


# --- the mask -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "bucket"),
    [("", 0), ("a", 1), ("ab", 2), ("abc", 4), ("12345678", 8), ("123456789", 16)],
)
def test_mask_keeps_a_length_class_and_a_short_keyed_digest(value: str, bucket: int) -> None:
    digest = hmac.new(KEY, value.encode(), "sha256").hexdigest()[:8]
    assert R.mask(value) == f"<redacted len~{bucket} hmac:{digest}>"
    assert R.mask(value.encode()) == R.mask(value)
    assert hashlib.sha256(value.encode()).hexdigest()[:8] not in R.mask(value)


def test_the_digest_is_keyed_per_redactor() -> None:
    """Equal secrets mask alike within one recording; two recordings' masks of the same
    secret differ, so that neither can be used to test a guess of it offline."""
    one, other = Redactor(), Redactor()
    assert one.mask(PASSWORD) == one.mask(PASSWORD.encode())
    assert one.mask(PASSWORD) != other.mask(PASSWORD)
    assert one.mask(PASSWORD) != Redactor(key=b"").mask(PASSWORD)
    assert one.mask(PASSWORD) != R.mask(PASSWORD)
    assert one.mask(PASSWORD).startswith("<redacted len~32 hmac:")
    assert one._key is not None and len(one._key) == 32


def test_masks_compare_without_their_digests() -> None:
    """How replay compares a secret masked when recorded with the same one masked now: by
    length class, the digests of two keys (or the unkeyed sha256 of older captures) left
    out, in bodies and in queries as `Redactor.target` encodes them."""
    old = "<redacted len~32 sha256:1a2b3c4d>"
    for mask in (old, R.mask(PASSWORD), Redactor().mask(PASSWORD)):
        assert redact.without_digests(f'["A={mask}"]') == '["A=<redacted len~32>"]'
        assert redact.body_without_digests(mask.encode()) == b"<redacted len~32>"
    target = R.target("ImageBuild", "/build?buildargs=" + quote(json.dumps({"A": SECRET})))
    assert redact.without_digests(target) == "/build?buildargs=" + quote(
        '{"A":"<redacted len~32>"}', safe=""
    )
    assert redact.without_digests("<redacted len~8>") == "<redacted len~8>"


# --- environment variables, build args, secrets, swarm tokens -------------------------------

SECRET = "Zq8vN3kR2pX7wL5tY9"


def held(operation: str, direction: str, body: Any, redactor: Redactor | None = None) -> Any:
    out = (redactor or Redactor(key=KEY)).body(operation, json.dumps(body).encode(), direction)
    assert SECRET not in out.decode()
    return json.loads(out)


@pytest.mark.parametrize(
    "name",
    [
        "DB_PASSWORD",
        "passwd",
        "GITHUB_TOKEN",
        "my_secret",
        "AWS_SECRET_ACCESS_KEY",
        "API_KEY",
        "GOOGLE_CREDENTIALS",
        "AUTH",
        "proxy_auth",
        "SSH_PRIVATE",
    ],
)
def test_secret_env_names(name: str) -> None:
    assert Redactor(key=KEY).secret_name(name)


@pytest.mark.parametrize("name", ["PATH", "HOME", "PLAIN", "LANG", "DATABASE_URL"])
def test_plain_env_names(name: str) -> None:
    assert not Redactor(key=KEY).secret_name(name)


def test_container_create_env_is_masked_by_name() -> None:
    body = {
        "Image": "bb",
        "Env": [f"DB_PASSWORD={SECRET}", "PLAIN=visible", "FLAG", "EMPTY_TOKEN="],
        "HostConfig": {"NetworkMode": "none"},
    }
    out = held("ContainerCreate", "client", body)
    assert out == {
        **body,
        "Env": [f"DB_PASSWORD={M(SECRET)}", "PLAIN=visible", "FLAG", "EMPTY_TOKEN="],
    }


def test_inspect_and_service_specs_mask_env_at_depth() -> None:
    inspect = {"Id": "abc", "Config": {"Env": [f"API_TOKEN={SECRET}", "PATH=/bin"]}}
    assert held("ContainerInspect", "daemon", inspect)["Config"]["Env"] == [
        f"API_TOKEN={M(SECRET)}",
        "PATH=/bin",
    ]
    spec = {"TaskTemplate": {"ContainerSpec": {"Env": [f"SECRET_X={SECRET}"]}}}
    out = held("ServiceCreate", "client", spec)
    assert out["TaskTemplate"]["ContainerSpec"]["Env"] == [f"SECRET_X={M(SECRET)}"]
    services = [{"Spec": spec}]
    assert held("ServiceList", "daemon", services)[0]["Spec"] == out
    exec_body = {"Cmd": ["true"], "Env": [f"api_key={SECRET}"]}
    assert held("ContainerExec", "client", exec_body)["Env"] == [f"api_key={M(SECRET)}"]


def test_more_env_names_by_regex_or_substring() -> None:
    body = {"Env": [f"DSN={SECRET}", f"ODD(NAME={SECRET}", "PLAIN=visible"]}
    with pytest.raises(AssertionError):
        held("ContainerCreate", "client", body)
    out = held("ContainerCreate", "client", body, Redactor(["^dsn$", "ODD("], KEY))
    assert out["Env"] == [f"DSN={M(SECRET)}", f"ODD(NAME={M(SECRET)}", "PLAIN=visible"]


def test_secret_and_config_data_and_swarm_tokens() -> None:
    data = base64.b64encode(SECRET.encode()).decode()
    for operation in ("SecretCreate", "ConfigCreate"):
        out = held(operation, "client", {"Name": "s", "Data": data})
        assert out == {"Name": "s", "Data": M(data)}
    swarm = {"ID": "x", "JoinTokens": {"Worker": SECRET, "Manager": SECRET + "m"}}
    out = held("SwarmInspect", "daemon", swarm)
    assert out["JoinTokens"] == {"Worker": M(SECRET), "Manager": M(SECRET + "m")}
    join = {"RemoteAddrs": ["10.0.0.1:2377"], "JoinToken": SECRET}
    assert held("SwarmJoin", "client", join)["JoinToken"] == M(SECRET)
    assert held("SwarmUnlockkey", "daemon", {"UnlockKey": SECRET}) == {"UnlockKey": M(SECRET)}
    assert held("SwarmUnlock", "client", {"UnlockKey": SECRET}) == {"UnlockKey": M(SECRET)}


def test_a_body_with_nothing_to_mask_is_kept_byte_for_byte() -> None:
    body = b'{"Image":"bb", "Env":["PLAIN=visible"]}\n'
    assert Redactor(key=KEY).body("ContainerCreate", body, "client") == body


def test_build_args_are_masked_in_the_target_and_it_still_parses() -> None:
    from urllib.parse import parse_qs, urlencode, urlsplit

    args = {"NPM_TOKEN": SECRET, "PLAIN": "visible-too", "NONE": None}
    query = urlencode({"t": "app:1", "buildargs": json.dumps(args), "q": "1"})
    target = Redactor(key=KEY).target("ImageBuild", f"/v1.41/build?{query}")
    assert SECRET not in target
    assert base64.b64encode(SECRET.encode()).decode()[:16] not in target
    parsed = parse_qs(urlsplit(target).query)
    assert parsed["t"] == ["app:1"]
    assert parsed["q"] == ["1"]
    assert json.loads(parsed["buildargs"][0]) == {
        "NPM_TOKEN": M(SECRET),
        "PLAIN": M("visible-too"),
        "NONE": None,
    }
    # Other operations and a target without a query are left alone.
    assert (
        Redactor(key=KEY).target("ImageCreate", f"/images/create?{query}")
        == f"/images/create?{query}"
    )
    assert Redactor(key=KEY).target("ImageBuild", "/build") == "/build"


def test_unparseable_build_args_are_masked_whole() -> None:
    target = Redactor(key=KEY).target("ImageBuild", f"/build?buildargs=NPM_TOKEN%3D{SECRET}&t=x")
    assert SECRET not in target
    assert target.endswith("&t=x")


def create_exchange(body: bytes, pieces: int = 3) -> list[Event]:
    step = max(1, len(body) // pieces)
    return [
        RequestHead(1, MONO + 1, 1, "POST", "/v1.47/containers/create", "1.1", ()),
        *(
            BodyData(1, MONO + 1, 1, Direction.CLIENT, body[i : i + step])
            for i in range(0, len(body), step)
        ),
        MessageEnd(1, MONO + 1, 1, Direction.CLIENT),
        ResponseHead(1, MONO + 2, 1, 201, "Created", "1.1", (), False),
        BodyData(1, MONO + 2, 1, Direction.DAEMON, b'{"Id":"abc","Warnings":[]}'),
        MessageEnd(1, MONO + 2, 1, Direction.DAEMON),
        Closed(1, MONO + 3),
    ]


def test_container_create_is_held_back_and_written_masked() -> None:
    body = json.dumps({"Image": "bb", "Env": [f"DB_PASSWORD={SECRET}", "PLAIN=visible"]})
    records = encode_all(create_exchange(body.encode()))
    validate_capture(records)
    assert SECRET not in "\n".join(dumps(r) for r in records)
    client = [r for r in records if r["type"] == "body" and r["dir"] == "client"]
    assert len(client) == 1
    assert json.loads(bodies(records, "client"))["Env"] == [
        f"DB_PASSWORD={M(SECRET)}",
        "PLAIN=visible",
    ]
    # The answer is not held back: it is written as it arrives.
    assert bodies(records, "daemon") == b'{"Id":"abc","Warnings":[]}'


def test_held_limit_keeps_only_size_and_digest() -> None:
    body = json.dumps({"Env": [f"DB_PASSWORD={SECRET}"], "Pad": "x" * 300}).encode()
    enc = RecordEncoder(WALL, MONO, held_limit=100)
    records = [r for event in create_exchange(body, 7) for r in enc.encode(event)]
    assert SECRET not in "\n".join(dumps(r) for r in records)
    assert bodies(records, "client") == b""
    [end] = [r for r in records if r["type"] == "end" and r["dir"] == "client"]
    assert (end["size"], end["inline"]) == (len(body), 0)


def test_held_body_past_the_limit_has_the_digest_of_the_original() -> None:
    body = json.dumps({"Env": [f"DB_PASSWORD={SECRET}"], "Pad": "x" * 300}).encode()
    for limit in (0, 100, 200, len(body) - 1):  # cut before, within and after the pieces
        enc = RecordEncoder(WALL, MONO, held_limit=limit)
        records = [r for event in create_exchange(body, 3) for r in enc.encode(event)]
        [end] = [r for r in records if r["type"] == "end" and r["dir"] == "client"]
        assert end["sha256"] == hashlib.sha256(body).hexdigest()


def test_held_bodies_in_a_row_have_the_digest_of_what_was_written() -> None:
    secret = json.dumps({"Image": "bb", "Env": [f"DB_PASSWORD={SECRET}"]}).encode()
    plain = json.dumps({"Image": "bb", "Env": ["PLAIN=visible"]}).encode()
    enc = RecordEncoder(WALL, MONO)
    # The same bodies again: the second time, the redactor hands back what it made the first.
    for body in (secret, secret, plain, plain, secret):
        records = [r for event in create_exchange(body) for r in enc.encode(event)]
        written = bodies(records, "client")
        assert (written == body) is (body == plain)
        [end] = [r for r in records if r["type"] == "end" and r["dir"] == "client"]
        assert end["sha256"] == hashlib.sha256(written).hexdigest()
        assert (end["size"], end["inline"]) == (len(written), len(written))


def test_no_redact_keeps_everything() -> None:
    body = json.dumps({"Image": "bb", "Env": [f"DB_PASSWORD={SECRET}"]}).encode()
    enc = RecordEncoder(WALL, MONO, redact=False)
    records = [r for event in create_exchange(body) for r in enc.encode(event)]
    assert bodies(records, "client") == body
    login = json.dumps({"username": "u", "password": SECRET}).encode()
    enc = RecordEncoder(WALL, MONO, redact=False)
    records = [r for event in auth_exchange(login, b"{}") for r in enc.encode(event)]
    assert bodies(records, "client") == login


def test_build_args_in_image_history_are_masked() -> None:
    history = [
        {"CreatedBy": f"|2 NPM_TOKEN={SECRET} PLAIN=x /bin/sh -c true", "Id": "sha256:1"},
        {"CreatedBy": "/bin/sh -c #(nop)  ARG NPM_TOKEN", "Id": "sha256:2"},
    ]
    out = held("ImageHistory", "daemon", history)
    assert out[0]["CreatedBy"] == f"|2 NPM_TOKEN={M(SECRET)} PLAIN={M('x')} /bin/sh -c true"
    assert out[1] == history[1]
    inspect = {"ContainerConfig": {"Cmd": ["|2", f"A={SECRET}", "B=", "/bin/sh", "-c", "true"]}}
    assert held("ImageInspect", "daemon", inspect)["ContainerConfig"]["Cmd"] == [
        "|2",
        f"A={M(SECRET)}",
        "B=",
        "/bin/sh",
        "-c",
        "true",
    ]


def test_command_line_secrets_are_masked() -> None:
    redactor = Redactor(key=KEY)
    argv = [
        "docker", "run", "-e", f"DB_PASSWORD={SECRET}", "-e", "PLAIN=visible",
        f"--env=API_TOKEN={SECRET}", "-p", "80:80", "bb",
    ]  # fmt: skip
    assert redactor.command(argv) == [
        "docker", "run", "-e", f"DB_PASSWORD={M(SECRET)}", "-e", "PLAIN=visible",
        f"--env=API_TOKEN={M(SECRET)}", "-p", "80:80", "bb",
    ]  # fmt: skip
    build = ["docker", "build", "--build-arg", f"A={SECRET}", f"--build-arg=B={SECRET}", "."]
    assert redactor.command(build) == [
        "docker", "build", "--build-arg", f"A={M(SECRET)}", f"--build-arg=B={M(SECRET)}", ".",
    ]  # fmt: skip
    script = f"docker build --build-arg A={SECRET} . && docker login --password {SECRET} && X=1"
    [_, _, masked] = redactor.command(["sh", "-c", script]) or []
    assert masked == (
        f"docker build --build-arg A={M(SECRET)} . && docker login --password {M(SECRET)} && X=1"
    )
    login = ["docker", "login", "-u", "alice", "-p", SECRET]
    assert redactor.command(login) == [*login[:-1], M(SECRET)]
    assert redactor.command(None) is None


# --- bodies read as dockerd reads them: any case, every duplicate, nothing after the value ----


@pytest.mark.parametrize(
    "body",
    [
        b'{"Image":"bb","env":["DB_PASSWORD=%s"]}',
        b'{"Image":"bb","ENV":["DB_PASSWORD=%s"]}',
        b'{"Image":"bb","Env":["DB_PASSWORD=%s"],"Env":[]}',
        b'{"Image":"bb","Env":[],"eNv":["DB_PASSWORD=%s"]}',
        b'{"Image":"bb","Env":"DB_PASSWORD=%s"}',
        b'{"Image":"bb"} {"Env":["DB_PASSWORD=%s"]}',
        b'{"Image":"bb"}\n%s',
    ],
)
def test_env_in_every_spelling_dockerd_reads_is_masked(body: bytes) -> None:
    data = body % SECRET.encode()
    out = Redactor(key=KEY).body("ContainerCreate", data, "client")
    assert SECRET.encode() not in out
    assert out.startswith(b'{"Image":"bb"')


def test_duplicates_and_spelling_are_kept_around_the_masks() -> None:
    body = b'{"Image":"bb","env":["A=1","DB_PASSWORD=%s"],"Env":["TOKEN=%s"],"n":1.50}'
    out = Redactor(key=KEY).body(
        "ContainerCreate", body % (SECRET.encode(), SECRET.encode()), "client"
    )
    assert out == (
        b'{"Image":"bb","env":["A=1","DB_PASSWORD=%s"],"Env":["TOKEN=%s"],"n":1.50}'
        % (M(SECRET).encode(), M(SECRET).encode())
    )


def test_credentials_in_every_spelling_go_folds_are_masked() -> None:
    body = '{"username":"u","pa\u017f\u017fword":"%s","AUTH":"%s","Identity\u212aey":"x"}'
    out = redact_auth_body((body % (SECRET, SECRET)).encode())
    assert SECRET.encode() not in out
    assert json.loads(out)["username"] == "u"
    twice = b'{"password":"%s","password":"decoy"}' % SECRET.encode()
    assert SECRET.encode() not in redact_auth_body(twice)
    join = b'{"JoinToken":"%s","jointo\xe2\x84\xaaen":"%s"}' % (SECRET.encode(), SECRET.encode())
    assert SECRET.encode() not in Redactor(key=KEY).body("SwarmJoin", join, "client")


def test_registry_header_with_duplicates_and_trailing_bytes() -> None:
    raw = b'{"username":"u","password":"%s","Password":"%s"} %s' % ((SECRET.encode(),) * 3)
    value = base64.urlsafe_b64encode(raw).decode()
    [(_, masked)] = R.headers((("X-Registry-Auth", value),))
    assert SECRET.encode() not in base64.urlsafe_b64decode(masked + "=" * (-len(masked) % 4))


# --- secrets known by their shape and by where they sit -------------------------------------

_SHAPED = [
    "AKIA" + "Q3ZP7XW2M4N8K6J1",
    "ghp_" + "a1B2c3D4" * 4 + "e5F6",
    "gho_" + "Z9y8X7w6" * 4 + "v5U4",
    "github_pat_" + "11ABCDEFG0" * 3 + "_" + "x" * 40,
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ",
    "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oJJw\n"
    "-----END EC PRIVATE KEY-----",
]


@pytest.mark.parametrize("secret", _SHAPED)
def test_a_secret_shape_under_an_innocent_name_is_masked(secret: str) -> None:
    body = json.dumps({"Image": "bb", "Env": [f"CI_VALUE={secret}", "PLAIN=visible"]}).encode()
    out = Redactor(key=KEY).body("ContainerCreate", body, "client")
    assert secret.encode() not in out and json.dumps(secret)[1:-1].encode() not in out
    assert f"CI_VALUE={M(secret)}".encode() in out and b"PLAIN=visible" in out


def test_only_the_password_of_a_url_is_masked() -> None:
    body = b'{"Env":["DATABASE_URL=postgres://app:hunter2@db:5432/app","SITE=https://x.org/a"]}'
    out = Redactor(key=KEY).body("ContainerCreate", body, "client")
    assert f"postgres://app:{M('hunter2')}@db:5432/app".encode() in out
    assert b"SITE=https://x.org/a" in out


@pytest.mark.parametrize("name", ["DB_PASS", "MYSQL_PWD", "SENTRY_DSN", "DSN", "PASS_FILE"])
def test_short_secret_names(name: str) -> None:
    assert Redactor(key=KEY).secret_name(name)


@pytest.mark.parametrize("name", ["PWD", "OLDPWD", "COMPASS", "BYPASS_CACHE", "DSNAME"])
def test_short_forms_only_as_whole_words(name: str) -> None:
    assert not Redactor(key=KEY).secret_name(name)


def test_passwords_in_a_command_and_labels_by_name() -> None:
    body = json.dumps(
        {
            "Image": "bb",
            "Entrypoint": ["/usr/bin/mysql"],
            "Cmd": ["--password", "pw1", "--password=pw2", "-ppw3", "-h", "db"],
            "Labels": {"api_token": "lbl", "team": "core"},
        }
    ).encode()
    out = json.loads(Redactor(key=KEY).body("ContainerCreate", body, "client"))
    masked_cmd = ["--password", M("pw1"), f"--password={M('pw2')}", f"-p{M('pw3')}", "-h", "db"]
    assert out["Cmd"] == masked_cmd
    assert out["Labels"] == {"api_token": M("lbl"), "team": "core"}
    inspect = json.dumps({"Path": "mysql", "Args": ["-ppw3"], "Config": {"Cmd": ["ls", "-pa"]}})
    masked = json.loads(Redactor(key=KEY).body("ContainerInspect", inspect.encode(), "daemon"))
    assert masked["Args"] == [f"-p{M('pw3')}"]
    assert masked["Config"]["Cmd"] == ["ls", "-pa"]  # to ls, -p is not a password


def test_p_is_a_password_only_after_a_program_that_takes_it() -> None:
    redactor = Redactor(key=KEY)
    argv = ["docker", "run", "-p8080:80", "-p", "80:80", "bb", "mysql", "-ppw", "db"]
    assert redactor.command(argv) == [*argv[:7], f"-p{M('pw')}", "db"]
    assert redactor.command(["docker", "login", "-u", "a", "-ppw", "r"]) == [
        *["docker", "login", "-u", "a"],
        f"-p{M('pw')}",
        "r",
    ]
    [_, _, script] = redactor.command(["sh", "-c", "docker login -u a -ppw r && mysql -ppw2"]) or []
    assert script == f"docker login -u a -p{M('pw')} r && mysql -p{M('pw2')}"


def test_build_output_history_and_commit_changes() -> None:
    redactor = Redactor(key=KEY)
    stream = (
        b'{"stream":"Step 2/3 : ENV API_TOKEN=tok1\\n"}\r\n'
        b'{"stream":"Step 3/3 : ENV DB_PASSWORD tok2 \\n"}\r\n'
        b'{"stream":" ---\\u003e 1a2b\\n"}\r\n'
    )
    out = redactor.body("ImageBuild", stream, "daemon")
    assert out.count(b"\r\n") == 3  # one message a line, as dockerd wrote them
    assert f"ENV API_TOKEN={M('tok1')}".encode() in out
    assert f"ENV DB_PASSWORD {M('tok2')} \\n".encode() in out
    assert b"tok1" not in out and b"tok2" not in out
    plain = b'{"stream":"Step 1/3 : FROM bb\\n"}\r\n{"stream":" ---\\u003e 1a2b\\n"}\r\n'
    assert redactor.body("ImageBuild", plain, "daemon") == plain
    tail = redactor.body("ImageBuild", b'{"stream":"x"}\r\nAPI_TOKEN=tok3 not json', "daemon")
    assert b"tok3" not in tail and tail.startswith(b'{"stream":"x"}\r\n')
    history = json.dumps([{"CreatedBy": "/bin/sh -c #(nop)  ENV API_TOKEN=tok4"}]).encode()
    assert b"tok4" not in redactor.body("ImageHistory", history, "daemon")
    target = "/v1.41/commit?container=c&changes=ENV+DB_PASSWORD%3Dtok5&changes=CMD+ls&repo=x"
    masked = redactor.target("ImageCommit", target)
    assert "tok5" not in masked and "changes=CMD+ls&repo=x" in masked
    labels = redactor.target("ImageBuild", "/build?labels=%7B%22api_token%22%3A%22tok6%22%7D")
    assert "tok6" not in labels
    token = _SHAPED[1]
    assert token not in redactor.target("ContainerList", f"/containers/json?filters={token}")
    assert redactor.target("ContainerList", "/containers/json?all=1") == "/containers/json?all=1"


# --- what costs little: passes skipped, answers kept ------------------------------------------

# Pieces of everything the passes of Redactor.text look for, and of what is near it.
_TEXT_PIECES = [
    "=", "@", " ", "-", "-p", " -p", "--password ", "mysql ", "login ", "ENV ", "ARG\t",
    "LABEL ", "API_TOKEN", "DB_PASS", "PATH", "x", "1", "://", "u:", "-----BEGIN ",
    "RSA PRIVATE KEY-----", "AKIA", "A" * 16, "ghp_", "a" * 36, "eyJ", "abcd.", "xoxb-",
    "sk_live_", "AIza", "glpat-", "github_pat_", MASK_PREFIX, "\n",
]  # fmt: skip


def _every_pass(redactor: Redactor, text: str) -> str:
    """Redactor.text as its passes are, each run whatever the text holds."""
    text = redact._shapes().sub(redactor._shape, text)
    text = redact._PASSWORD_WORD.sub(redactor._flag_value, text)
    text = redact._P_WORD.sub(redactor._flag_value, text)
    text = redact._INSTRUCTION.sub(redactor._instruction, text)
    return redact._ASSIGNMENT.sub(redactor._assignment, text)


@given(st.lists(st.sampled_from(_TEXT_PIECES), max_size=12).map("".join))
@settings(max_examples=400, deadline=None)
def test_a_pass_is_skipped_only_where_it_would_find_nothing(text: str) -> None:
    redactor = Redactor(key=KEY)
    assert redactor.text(text) == _every_pass(redactor, text)


def test_a_body_masked_again_is_masked_the_same_and_by_its_own_rule() -> None:
    redactor = Redactor(["MY_.*"], KEY)
    body = b'{"Env":["MY_VAR=x1","PLAIN=y"],"Data":"c2VjcmV0"}'
    once = redactor.body("ContainerInspect", body, "daemon")
    assert b"x1" not in once and b"PLAIN=y" in once and b"c2VjcmV0" in once
    assert redactor.body("ContainerInspect", body, "daemon") == once
    # The same bytes under another rule: its own mask, not the one kept for the first.
    secret = redactor.body("SecretCreate", body, "client")
    assert b"c2VjcmV0" not in secret and b"x1" not in secret
    # Another redactor has its own names.
    assert Redactor(key=KEY).body("ContainerInspect", body, "daemon") == body


def test_headers_seen_again_are_masked_as_the_first_time() -> None:
    auth = b64url({"username": "u", "password": "hunter2"})
    headers = (("Host", "docker"), ("Authorization", "Bearer abc.def"), ("X-Registry-Auth", auth))
    first = R.headers(headers)
    assert unb64url(first[2][1])["password"] == M("hunter2")
    assert "abc.def" not in first[1][1]
    assert R.headers(headers) == first
    assert R.headers(tuple(headers)) == first == R._redact_headers(headers)
    # Kept by the redactor that masked them: another one's key masks them otherwise.
    assert Redactor().headers(headers) != first


def test_the_masked_headers_kept_are_bounded() -> None:
    redactor = Redactor(key=KEY)
    for n in range(redact._KEPT_HEADERS + 10):
        redactor.headers((("Authorization", f"Bearer token-{n}"),))
    assert len(redactor._masked_headers) == redact._KEPT_HEADERS
    big = (("Authorization", "Bearer " + "x" * redact._KEPT_HEADERS_SIZE),)
    assert redactor.headers(big) == redactor._redact_headers(big)
    assert big not in redactor._masked_headers
