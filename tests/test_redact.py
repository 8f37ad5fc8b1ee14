"""Tests for masking registry credentials before they reach a capture."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from capture_schema import validate_capture

from docktap.capture.format import Record, RecordEncoder, decode_bytes, dumps
from docktap.events import (
    BodyData,
    Closed,
    Direction,
    Event,
    MessageEnd,
    RequestHead,
    ResponseHead,
)
from docktap.redact import MASK, mask_secrets, redact_auth_body, redact_headers

PASSWORD = "hunter2-very-secret"
TOKEN = "eyJhbGciOi-identity-token"


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
    out = redact_headers((("X-Registry-Auth", value),))
    [(name, masked)] = out
    assert name == "X-Registry-Auth"
    assert unb64url(masked) == {
        "username": "alice",
        "password": MASK,
        "serveraddress": "registry.example:5000",
        "identitytoken": MASK,
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
    [(_, masked)] = redact_headers((("x-registry-auth", value),))
    assert unb64url(masked) == {"username": "bob>>>?", "password": MASK}


def test_registry_config_masks_every_registry() -> None:
    config = {
        "registry.example:5000": {"username": "bob", "password": PASSWORD},
        "https://index.docker.io/v1/": {
            "auth": base64.b64encode(b"bob:" + PASSWORD.encode()).decode(),
            "identitytoken": TOKEN,
        },
        "empty.example": {},
    }
    [(_, masked)] = redact_headers((("X-Registry-Config", b64url(config)),))
    assert unb64url(masked) == {
        "registry.example:5000": {"username": "bob", "password": MASK},
        "https://index.docker.io/v1/": {"auth": MASK, "identitytoken": MASK},
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
    [(_, masked)] = redact_headers((("X-Registry-Auth", value),))
    assert masked == MASK


# --- Authorization --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("Authorization", "Basic dXNlcjpwYXNz", "Basic <redacted>"),
        ("authorization", "Bearer abc.def.ghi", "Bearer <redacted>"),
        ("Proxy-Authorization", "Basic Zm9vOmJhcg==", "Basic <redacted>"),
        ("Authorization", "rawtokenwithoutscheme", "<redacted>"),
    ],
)
def test_authorization_keeps_only_the_scheme(name: str, value: str, expected: str) -> None:
    assert redact_headers(((name, value),)) == ((name, expected),)


def test_other_headers_are_untouched_and_order_kept() -> None:
    headers = (
        ("Host", "api.moby.localhost"),
        ("Authorization", "Basic eA=="),
        ("Content-Type", "application/json"),
        ("X-Registry-Auth", b64url({"password": "p"})),
        ("User-Agent", "Docker-Client/28.2.2 (linux)"),
    )
    out = redact_headers(headers)
    assert [k for k, _ in out] == [k for k, _ in headers]
    for index in (0, 2, 4):
        assert out[index] == headers[index]
    assert header(out, "authorization") == "Basic <redacted>"


# --- JSON values and /auth bodies -----------------------------------------------------------


def test_mask_secrets_at_any_depth_and_any_case() -> None:
    value = {
        "Password": "x",
        "nested": [{"IdentityToken": "y", "RegistryToken": "z", "keep": 1}],
        "auth": "",  # empty: nothing to hide, the shape says no credential was sent
        "other": None,
    }
    assert mask_secrets(value) == {
        "Password": MASK,
        "nested": [{"IdentityToken": MASK, "RegistryToken": MASK, "keep": 1}],
        "auth": "",
        "other": None,
    }
    assert value["Password"] == "x"  # a copy: the input is left alone


def test_redact_auth_body() -> None:
    body = json.dumps({"username": "u", "password": PASSWORD}).encode()
    assert json.loads(redact_auth_body(body)) == {"username": "u", "password": MASK}
    assert redact_auth_body(b"password=" + PASSWORD.encode()) == MASK.encode()
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
    enc = RecordEncoder(WALL, MONO, max_body)
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
    assert json.loads(bodies(records, "client")) == {**login, "password": MASK}
    assert json.loads(bodies(records, "daemon")) == {**answer, "IdentityToken": MASK}
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
    records = encode_all(
        auth_exchange(b"username=alice&password=" + PASSWORD.encode(), b"not json " + b"x" * 20)
    )
    assert bodies(records, "client") == MASK.encode()
    assert bodies(records, "daemon") == MASK.encode()
    assert PASSWORD not in "\n".join(dumps(r) for r in records)


def test_oversized_auth_body_is_masked_whole() -> None:
    padding = "x" * (70 << 10)  # past the 64 KiB the encoder holds back
    request_body = json.dumps({"username": padding, "password": PASSWORD}).encode()
    records = encode_all(auth_exchange(request_body, b'{"Status":"Login Succeeded"}', 20))
    assert bodies(records, "client") == MASK.encode()
    assert PASSWORD not in "\n".join(dumps(r) for r in records)


def test_other_bodies_are_not_held_back() -> None:
    enc = RecordEncoder(WALL, MONO)
    enc.encode(RequestHead(1, MONO, 1, "POST", "/v1.41/containers/create", "1.1", ()))
    [record] = enc.encode(BodyData(1, MONO, 1, Direction.CLIENT, b'{"password":"in env"}'))
    assert decode_bytes(record) == b'{"password":"in env"}'
