"""What counts as a secret on the Docker API, and how it is masked before disk.

Credentials travel in headers (`X-Registry-Auth`, base64url JSON; `X-Registry-Config` on builds,
base64url JSON mapping registries to credentials; `Authorization`), in the body of `POST /auth`
and its answer, in environment variables of container, exec and service specs (and of what
inspecting them returns), in build arguments of `/build`'s query string, in secret and config
contents, and in swarm join tokens and unlock keys.

Bodies are read as dockerd reads them (docktap.request.gojson): a key counts in any case Go
matches it in (`"env"`, `"pa\u017f\u017fword"`), and every copy of a repeated key is masked, not
just the one a dict would keep; whatever follows the JSON value, which dockerd never reads, is
masked whole. Masking keeps the shape (user names, server addresses, the auth scheme, variable
names, the keys as spelled, their order and repeats) so a capture still teaches what was
sent, and replaces only the secret values, each by a mask that keeps a length class and a
short hash of the value: `<redacted len~16 sha256:1a2b3c4d>`. Two captures of the same secret
show the same mask; the hash of a short or guessable secret can be brute-forced offline, so it
is no protection for weak passwords (see docs/capture-format.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote_plus

from docktap.envpatterns import REDACT_ENV_VAR as REDACT_ENV_VAR
from docktap.envpatterns import patterns_from_env as patterns_from_env
from docktap.events import Headers
from docktap.request.gojson import JSONSyntaxError, Number, Object, fold, parse

MASK_PREFIX = "<redacted"
#: Substrings (case-insensitive) of environment variable names whose values are masked.
DEFAULT_SECRET_NAMES = (
    "PASSWORD",
    "PASSWD",
    "TOKEN",
    "SECRET",
    "KEY",
    "CREDENTIAL",
    "AUTH",
    "PRIVATE",
)
#: The environment variable adding name patterns, comma-separated.
_CREDENTIAL_KEYS = frozenset({"password", "auth", "identitytoken", "registrytoken"})
_REGISTRY_HEADERS = frozenset({"x-registry-auth", "x-registry-config"})
_AUTH_HEADERS = frozenset({"authorization", "proxy-authorization"})


def mask_value(value: str | bytes) -> str:
    """`<redacted len~N sha256:XXXXXXXX>`: N is the next power of two of the length in bytes.

    The 8 hex digits are the start of the value's sha256, so the same secret masks the same way
    in two captures.
    """
    data = value.encode("utf-8") if isinstance(value, str) else value
    size = len(data)
    bucket = 1 << (size - 1).bit_length() if size > 1 else size
    return f"<redacted len~{bucket} sha256:{hashlib.sha256(data).hexdigest()[:8]}>"


def _items(value: Object | dict[str, Any]) -> list[tuple[str, Any]]:
    return list(value.pairs) if isinstance(value, Object) else list(value.items())


def _same_kind(value: Object | dict[str, Any], pairs: list[tuple[str, Any]]) -> Any:
    """An object like `value` (parsed, every key kept; or a plain dict) holding `pairs`."""
    return Object(tuple(pairs)) if isinstance(value, Object) else dict(pairs)


def _mask_all(value: Any) -> Any:
    """Every non-empty string in a JSON value masked."""
    if isinstance(value, str):
        return mask_value(value) if value else value
    if isinstance(value, Object | dict):
        return _same_kind(value, [(key, _mask_all(item)) for key, item in _items(value)])
    if isinstance(value, list):
        return [_mask_all(item) for item in value]
    return value


def _mask_keys(value: Any, keys: frozenset[str]) -> Any:
    """A copy of a JSON value with the values of `keys` (folded as Go folds field names, at any
    depth) masked."""
    if isinstance(value, Object | dict):
        return _same_kind(
            value,
            [
                (key, _mask_all(item) if fold(key) in keys and item else _mask_keys(item, keys))
                for key, item in _items(value)
            ],
        )
    if isinstance(value, list):
        return [_mask_keys(item, keys) for item in value]
    return value


def mask_secrets(value: Any) -> Any:
    """A copy of a JSON value with every credential-like field masked, at any depth."""
    return _mask_keys(value, _CREDENTIAL_KEYS)


def _dump(value: Any) -> str:
    """A parsed JSON value written back, compact, with every key as it came."""
    if isinstance(value, Object | dict):
        inner = ",".join(f"{json.dumps(key)}:{_dump(item)}" for key, item in _items(value))
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dump(item) for item in value) + "]"
    if isinstance(value, Number):
        return value.text
    return json.dumps(value)


def _mask_registry_header(value: str) -> str:
    padded = value.strip() + "=" * (-len(value.strip()) % 4)
    try:
        decoded, rest = parse(base64.urlsafe_b64decode(padded))
    except (JSONSyntaxError, binascii.Error):
        return mask_value(value)
    masked = _dump(mask_secrets(decoded)).encode() + _mask_rest(rest)
    return base64.urlsafe_b64encode(masked).decode()


def _mask_rest(rest: bytes) -> bytes:
    """What follows a JSON value: white space kept, anything else masked whole."""
    return rest if not rest.strip(b" \t\r\n") else b" " + mask_value(rest).encode()


def redact_headers(headers: Headers) -> Headers:
    """Headers with credentials masked; others untouched."""
    out = []
    for name, value in headers:
        lower = name.lower()
        if lower in _REGISTRY_HEADERS:
            value = _mask_registry_header(value)
        elif lower in _AUTH_HEADERS:
            scheme, _, secret = value.partition(" ")
            value = f"{scheme} {mask_value(secret)}" if secret else mask_value(value)
        out.append((name, value))
    return tuple(out)


def name_pattern(pattern: str) -> re.Pattern[str]:
    """A case-insensitive pattern searched in variable names: a regex, else a plain substring."""
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error:
        return re.compile(re.escape(pattern), re.IGNORECASE)


_ASSIGNMENT = re.compile(r"(?<![^\s='\"])([A-Za-z_][A-Za-z0-9_.-]*)=([^\s'\"]+)")
_BUILD_ARG_FLAGS = frozenset({"--build-arg"})
_PASSWORD_FLAGS = frozenset({"-p", "--password"})
_BUILD_ARG_WORD = re.compile(r"(--build-arg[= ]+[A-Za-z_][A-Za-z0-9_.-]*=)([^\s'\"]+)")
_PASSWORD_WORD = re.compile(r"(--password[= ]+)([^\s'\"]+)")


_RUN_ARGS = re.compile(r"\|(\d+) ")


def _mask_assignment(word: str) -> str:
    name, eq, value = word.partition("=")
    return f"{name}={mask_value(value)}" if eq and value else word


def _mask_run_args(value: Any) -> Any:
    """Build argument values in the legacy builder's `|N NAME=value... cmd` history strings."""
    if isinstance(value, str):
        found = _RUN_ARGS.match(value)
        if not found:
            return value
        words = value[found.end() :].split(" ")
        count = min(int(found[1]), len(words))
        for index in range(count):
            words[index] = _mask_assignment(words[index])
        return value[: found.end()] + " ".join(words)
    if isinstance(value, Object | dict):
        return _same_kind(value, [(key, _mask_run_args(item)) for key, item in _items(value)])
    if isinstance(value, list):
        # The same as a command: ["|1", "NAME=value", "/bin/sh", "-c", "..."].
        head = value[0] if value else None
        if isinstance(head, str) and re.fullmatch(r"\|\d+", head):
            count = int(head[1:])
            args = [
                _mask_assignment(item) if isinstance(item, str) else item
                for item in value[1 : 1 + count]
            ]
            return [head, *args, *value[1 + count :]]
        return [_mask_run_args(item) for item in value]
    return value


@dataclass(frozen=True)
class _Rule:
    env: bool = False  # mask secret-looking `Env` entries, at any depth
    keys: frozenset[str] = frozenset()  # mask the values of these keys, at any depth
    build_args: bool = False  # mask `|2 A=x B=y /bin/sh -c ...` (legacy builder history)


_ENV = _Rule(env=True)
# Per operation: the rule for the request body ("client") and for the response body ("daemon").
_RULES: dict[str, dict[str, _Rule]] = {
    "SystemAuth": {"client": _Rule(keys=_CREDENTIAL_KEYS), "daemon": _Rule(keys=_CREDENTIAL_KEYS)},
    "ContainerCreate": {"client": _ENV},
    "ContainerExec": {"client": _ENV},
    "ImageCommit": {"client": _ENV},
    "ServiceCreate": {"client": _ENV},
    "ServiceUpdate": {"client": _ENV},
    "ContainerInspect": {"daemon": _ENV},
    "ImageInspect": {"daemon": _Rule(env=True, build_args=True)},
    "ImageHistory": {"daemon": _Rule(build_args=True)},
    "ExecInspect": {"daemon": _ENV},
    "ServiceInspect": {"daemon": _ENV},
    "ServiceList": {"daemon": _ENV},
    "TaskInspect": {"daemon": _ENV},
    "TaskList": {"daemon": _ENV},
    "SecretCreate": {"client": _Rule(keys=frozenset({"data"}))},
    "ConfigCreate": {"client": _Rule(keys=frozenset({"data"}))},
    "ConfigInspect": {"daemon": _Rule(keys=frozenset({"data"}))},
    "ConfigList": {"daemon": _Rule(keys=frozenset({"data"}))},
    "SwarmInspect": {"daemon": _Rule(keys=frozenset({"jointokens"}))},
    "SwarmJoin": {"client": _Rule(keys=frozenset({"jointoken"}))},
    "SwarmUnlockkey": {"daemon": _Rule(keys=frozenset({"unlockkey"}))},
    "SwarmUnlock": {"client": _Rule(keys=frozenset({"unlockkey"}))},
}


@dataclass
class Redactor:
    """The masking rules of one capture: the default secret names plus `extra_names`."""

    extra_names: Iterable[str] = ()
    _names: list[re.Pattern[str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._names = [name_pattern(p) for p in (*DEFAULT_SECRET_NAMES, *self.extra_names)]

    def secret_name(self, name: str) -> bool:
        return any(p.search(name) for p in self._names)

    def command(self, argv: list[str] | None) -> list[str] | None:
        """The recorded command line with secret-looking `NAME=value`s and build args masked.

        `docktap run -- docker run -e DB_PASSWORD=...` would otherwise put the password in the
        capture's header. Inside an argument (`sh -c "..."`) each `NAME=value` word is checked.
        """
        if argv is None:
            return None
        out: list[str] = []
        previous = ""
        for arg in argv:
            if previous in _BUILD_ARG_FLAGS:
                arg = _ASSIGNMENT.sub(lambda m: f"{m[1]}={mask_value(m[2])}", arg, count=1)
            elif previous in _PASSWORD_FLAGS and "login" in argv:
                arg = mask_value(arg)
            else:
                arg = _BUILD_ARG_WORD.sub(lambda m: f"{m[1]}{mask_value(m[2])}", arg)
                arg = _PASSWORD_WORD.sub(lambda m: f"{m[1]}{mask_value(m[2])}", arg)
                arg = _ASSIGNMENT.sub(self._assignment, arg)
            out.append(arg)
            previous = arg
        return out

    def _assignment(self, match: re.Match[str]) -> str:
        name, value = match[1], match[2]
        if value.startswith(MASK_PREFIX) or not self.secret_name(name):
            return match[0]
        return f"{name}={mask_value(value)}"

    def holds(self, operation: str | None, direction: str) -> bool:
        """Whether a body of this operation, in this direction, is held back and masked."""
        return operation is not None and direction in _RULES.get(operation, {})

    def headers(self, headers: Headers) -> Headers:
        return redact_headers(headers)

    def target(self, operation: str | None, target: str) -> str:
        """The request target with build argument values masked (ImageBuild)."""
        if operation != "ImageBuild" or "?" not in target:
            return target
        path, _, query = target.partition("?")
        parts = query.split("&")
        for index, part in enumerate(parts):
            name, eq, raw = part.partition("=")
            if not eq or unquote_plus(name) != "buildargs":
                continue
            value = unquote_plus(raw)
            try:
                args, rest = parse(value.encode("utf-8", "surrogateescape"))
            except JSONSyntaxError:
                masked = mask_value(value)
            else:
                masked = _dump(_mask_all(args)) + _mask_rest(rest).decode()
            parts[index] = f"{name}={quote(masked, safe='')}"
        return f"{path}?{'&'.join(parts)}"

    def body(self, operation: str | None, body: bytes, direction: str | None = None) -> bytes:
        """A held-back body with its secrets masked; a body that is not JSON, masked whole.

        A body in which nothing needed masking is returned as it came.
        """
        if not body:
            return body
        rules = _RULES.get(operation or "", {})
        rule = rules.get(direction) if direction else next(iter(rules.values()), None)
        if rule is None:
            return body
        try:
            decoded, rest = parse(body)
        except JSONSyntaxError:
            return mask_value(body).encode()
        masked = decoded
        if rule.keys:
            masked = _mask_keys(masked, rule.keys)
        if rule.env:
            masked = self._mask_env(masked)
        if rule.build_args:
            masked = _mask_run_args(masked)
        tail = _mask_rest(rest)
        if masked == decoded and tail == rest:
            return body
        out = _dump(masked).encode() + tail
        return out + b"\n" if body.endswith(b"\n") and not out.endswith(b"\n") else out

    def _mask_env(self, value: Any) -> Any:
        if isinstance(value, Object | dict):
            return _same_kind(
                value,
                [
                    (key, self._env(item) if fold(key) == "env" else self._mask_env(item))
                    for key, item in _items(value)
                ],
            )
        if isinstance(value, list):
            return [self._mask_env(item) for item in value]
        return value

    def _env(self, value: Any) -> Any:
        """An Env value: a list of `NAME=value`, or one such string (which dockerd refuses,
        but which is on its way to disk all the same)."""
        if isinstance(value, list):
            return [self._env(entry) if isinstance(entry, str) else entry for entry in value]
        if isinstance(value, str):
            name, eq, secret = value.partition("=")
            if eq and secret and self.secret_name(name):
                return f"{name}={mask_value(secret)}"
            return value
        return self._mask_env(value)
