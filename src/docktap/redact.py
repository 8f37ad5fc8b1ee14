"""What counts as a secret on the Docker API, and how it is masked before disk.

Credentials travel in headers (`X-Registry-Auth`, base64url JSON; `X-Registry-Config` on builds,
base64url JSON mapping registries to credentials; `Authorization`), in the body of `POST /auth`
and its answer, in environment variables of container, exec and service specs (and of what
inspecting them returns), in build arguments of `/build`'s query string, in secret and config
contents, and in swarm join tokens and unlock keys. Names are not enough: a token is often
kept under an innocent name (`CI=ghp_…`), so secrets are also known by their shape (cloud and
forge tokens, JWTs, PEM keys, a URL's password) and by where they sit (`--password X`,
`mysql -pX`, a label `api_token=…`, `ENV API_TOKEN=…` in build output, history and
`docker commit --change`), in every string of a held body, not just in `Env`.

Bodies are read as dockerd reads them (docktap.request.gojson): a key counts in any case Go
matches it in (`"env"`, `"pa\u017f\u017fword"`), and every copy of a repeated key is masked, not
just the one a dict would keep; whatever follows the JSON value, which dockerd never reads, is
masked whole. Masking keeps the shape (user names, server addresses, the auth scheme, variable
names, the keys as spelled, their order and repeats) so a capture still teaches what was
sent, and replaces only the secret values, each by a mask that keeps a length class and a
short keyed digest of the value: `<redacted len~16 hmac:1a2b3c4d>`. The key is random, made
for each Redactor (one per recording) when it first masks a secret, and never written: the same
secret masks the same way throughout a capture, but a capture cannot be used to test a guess
of a secret offline, nor compared with another (see docs/capture-format.md). Replay compares
masks by their length class alone (`without_digests`), in captures made before the key
(`sha256:`, unkeyed) too.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

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
    # Short forms, as whole words of the name only: `DB_PASS`, `MYSQL_PWD`, `SENTRY_DSN`, but
    # neither `PWD` (the working directory) nor `COMPASS`.
    r"(?:^|_)PASS(?:_|$)",
    r"_PWD(?:_|$)",
    r"(?:^|_)DSN(?:_|$)",
)
#: The environment variable adding name patterns, comma-separated.
_CREDENTIAL_KEYS = frozenset({"password", "auth", "identitytoken", "registrytoken"})
_REGISTRY_HEADERS = frozenset({"x-registry-auth", "x-registry-config"})
_AUTH_HEADERS = frozenset({"authorization", "proxy-authorization"})


# A mask's digest, as a body or a header holds it (`<redacted len~8 hmac:1a2b3c4d>`) and as a
# query does (`%3Credacted%20len~8%20hmac%3A1a2b3c4d%3E`, see `Redactor.target`); `sha256:` in
# captures made before masks were keyed.
_DIGEST = r"((?:<|%3C)redacted(?: |%20)len~[0-9]+)(?: |%20)(?:hmac|sha256)(?::|%3A)[0-9a-f]{8}"


@functools.cache
def _digests(text: type[str] | type[bytes]) -> re.Pattern[Any]:
    return re.compile(_DIGEST if text is str else _DIGEST.encode())


def without_digests(text: str) -> str:
    """`text` with each mask's digest left out (`<redacted len~8>`): the key of the capture
    that masked a secret is not known to whoever masks the same secret again (a replay), so
    two masks of it compare by their length class only."""
    return _digests(str).sub(r"\1", text) if "redacted" in text else text


def body_without_digests(body: bytes) -> bytes:
    """`without_digests` for a body."""
    return _digests(bytes).sub(rb"\1", body) if b"redacted" in body else body


def _new_key() -> bytes:
    """A random key, the system's randomness: here, as random (and the os it imports) is
    needed only once a secret is masked."""
    import random

    return random.SystemRandom().randbytes(32)


def _items(value: Object | dict[str, Any]) -> list[tuple[str, Any]]:
    return list(value.pairs) if isinstance(value, Object) else list(value.items())


def _same_kind(value: Object | dict[str, Any], pairs: list[tuple[str, Any]]) -> Any:
    """An object like `value` (parsed, every key kept; or a plain dict) holding `pairs`."""
    return Object(tuple(pairs)) if isinstance(value, Object) else dict(pairs)


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


def name_pattern(pattern: str) -> re.Pattern[str]:
    """A case-insensitive pattern searched in variable names: a regex, else a plain substring."""
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error:
        return re.compile(re.escape(pattern), re.IGNORECASE)


# Secrets known by their shape, whatever name they go by: cloud and forge tokens with a fixed
# prefix, JWTs, PEM private keys (to their end, or to the end of the text when cut), and the
# password of a URL (`postgres://app:PW@db`), of which only the password is masked.
_AWS_KEY = r"[A-Z0-9]{16}(?![A-Za-z0-9])"
# Tokens by their fixed prefix, and what follows it. Each prefix starts with a literal stem
# (what comes before any `[`): a text without the stem cannot hold the token.
_TOKENS = (
    *(
        (prefix, _AWS_KEY)
        for prefix in (
            "AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "APKA", "AROA"
        )
    ),
    ("gh[pousr]_", r"[A-Za-z0-9]{36,}"),
    ("github_pat_", r"[A-Za-z0-9_]{22,}"),
    ("glpat-", r"[A-Za-z0-9_-]{20,}"),
    ("xox[abposr]-", r"[A-Za-z0-9-]{10,}"),
    ("sk_live_", r"[A-Za-z0-9]{16,}"),
    ("rk_live_", r"[A-Za-z0-9]{16,}"),
    ("AIza", r"[A-Za-z0-9_-]{35}"),
    ("eyJ", r"[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
)  # fmt: skip
_PEM_BEGIN = "-----BEGIN"


@functools.cache
def _shapes() -> re.Pattern[str]:
    """Every shape in one pattern, compiled once a text may hold one (see `_SHAPE_HINTS`): at
    import it would cost every recording 2 ms of CPU, and most never see a secret's shape."""
    return re.compile(
        rf"(?P<pem>{_PEM_BEGIN} (?:[A-Z0-9]+ )*PRIVATE KEY-----"
        r"(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|.*))"
        r"|(?P<url>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*:)(?P<password>[^\s/@]+)@"
        r"|(?<![A-Za-z0-9])(?:" + "|".join(prefix + rest for prefix, rest in _TOKENS) + ")",
        re.DOTALL,
    )


# What a shape needs: the start of a PEM key, the `@` after a URL's password, a token's
# prefix. Every alternative starts with a literal, so that the search skips to where one can
# start rather than trying each at every character.
_SHAPE_HINTS = re.compile("|".join([_PEM_BEGIN, "@", *(prefix for prefix, _ in _TOKENS)]))


_ASSIGNMENT = re.compile(r"(?<![^\s='\"])([A-Za-z_][A-Za-z0-9_.-]*)=([^\s'\"]+)")
_BUILD_ARG_FLAGS = frozenset({"--build-arg"})
_BUILD_ARG_WORD = re.compile(r"(--build-arg[= ]+[A-Za-z_][A-Za-z0-9_.-]*=)([^\s'\"]+)")
_PASSWORD_WORD = re.compile(r"(--password[= ]+)([^\s'\"]+)")
# `-pSECRET` is a password only to some programs (to `docker run` it publishes a port).
_P_PROGRAMS = frozenset({"mysql", "mysqldump", "mysqladmin", "mysqlimport", "mariadb", "login"})
_P_WORD = re.compile(
    r"(\b(?:mysql|mysqldump|mysqladmin|mysqlimport|mariadb|login)\b[^\n;&|]*?\s-p ?)"
    r"([^\s'\"<-][^\s'\"]*)"
)
# A Dockerfile's `ENV NAME value` (and ARG, LABEL), as build output and history echo it.
_INSTRUCTION = re.compile(
    r"(\b(?:ENV|ARG|LABEL)\s+)([A-Za-z_][A-Za-z0-9_.-]*)([ \t]+)([^\s=][^\n]*)"
)
_INSTRUCTION_HINT = re.compile(r"ENV\s|ARG\s|LABEL\s")


_RUN_ARGS = re.compile(r"\|(\d+) ")


class _Rule(NamedTuple):
    """What a held body needs beyond what every one gets (`Redactor._scrub`: Env, Labels,
    commands and free text, at any depth)."""

    keys: frozenset[str] = frozenset()  # mask the values of these keys, at any depth
    build_args: bool = False  # mask `|2 A=x B=y /bin/sh -c ...` (legacy builder history)
    stream: bool = False  # a stream of JSON values (build output), not one


_ENV = _Rule()
# Per operation: the rule for the request body ("client") and for the response body ("daemon").
_RULES: dict[str, dict[str, _Rule]] = {
    "SystemAuth": {"client": _Rule(keys=_CREDENTIAL_KEYS), "daemon": _Rule(keys=_CREDENTIAL_KEYS)},
    "ContainerCreate": {"client": _ENV},
    "ContainerExec": {"client": _ENV},
    "ImageCommit": {"client": _ENV},
    "ServiceCreate": {"client": _ENV},
    "ServiceUpdate": {"client": _ENV},
    "ContainerInspect": {"daemon": _ENV},
    "ImageInspect": {"daemon": _Rule(build_args=True)},
    "ImageBuild": {"daemon": _Rule(stream=True)},
    "ContainerList": {"daemon": _ENV},
    "ContainerTop": {"daemon": _ENV},
    "ImageList": {"daemon": _ENV},
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


# Masked bodies kept, of at most _KEPT_BODY bytes each (a few MiB at most); names looked up
# in the secret name patterns kept, of at most _KEPT_NAME characters.
_KEPT_BODIES = 16
_KEPT_BODY = 64 << 10
_KEPT_NAME = 256

# Keys holding a command's words.
_COMMAND_KEYS = frozenset({"cmd", "entrypoint", "path", "args", "arguments"})
# The kinds of JSON value that may hold a string (everything else is a number, bool or null).
_CONTAINERS = frozenset({str, list, Object, dict})


# Bodies of one kind repeat the same few dozen keys: folding each once saves a third of the
# walk. The bound keeps keys a client makes up from growing it.
@functools.lru_cache(maxsize=4096)
def _folded(key: str) -> str:
    return fold(key)


def _names_p_program(value: Any) -> bool:
    words = value if isinstance(value, list) else [value]
    return any(isinstance(w, str) and w.rpartition("/")[2] in _P_PROGRAMS for w in words)


# Heads repeat byte for byte (pings, polls, dockerd's answers but for their Date), and masking
# them is a function of the headers and the key: the last few small sets are kept, each with
# its masked copy. Looked up before anything is counted, so that a set seen again costs a hash.
_KEPT_HEADERS = 256
_KEPT_HEADERS_SIZE = 4096


class Redactor:
    """The masking rules of one capture: the default secret names plus `extra_names`, and the
    key of its masks' digests (`key`; by default a random one, made when a secret is first
    masked, and never written anywhere).

    A plain class, and `_Rule` a named tuple: as dataclasses, the two cost the recorder 0.7 ms
    to define as it starts.
    """

    def __init__(self, extra_names: Iterable[str] = (), key: bytes | None = None) -> None:
        self.extra_names = extra_names
        self._key = key
        self._masked_headers: dict[Headers, Headers] = {}
        self._names = [name_pattern(p) for p in (*DEFAULT_SECRET_NAMES, *extra_names)]
        # Clients poll: the same container inspected until it is up, the same list again.
        # Masking is a function of the rule and the bytes, so the last few answers are kept.
        self._masked_recently: Callable[[_Rule, bytes], bytes] = functools.lru_cache(
            maxsize=_KEPT_BODIES
        )(self._masked)
        # The same few variable and label names come back in every body.
        self._secret_name: Callable[[str], bool] = functools.lru_cache(maxsize=4096)(
            self._matches_name
        )

    def mask(self, value: str | bytes) -> str:
        """`<redacted len~N hmac:XXXXXXXX>`: N is the next power of two of the length in bytes,
        the 8 hex digits the start of the value's HMAC-SHA-256 under this Redactor's key."""
        # Here: most recordings mask no secret, and hmac (with hashlib) costs 3 ms to import.
        import hmac

        if self._key is None:
            self._key = _new_key()
        data = value.encode("utf-8") if isinstance(value, str) else value
        size = len(data)
        bucket = 1 << (size - 1).bit_length() if size > 1 else size
        return f"<redacted len~{bucket} hmac:{hmac.digest(self._key, data, 'sha256').hex()[:8]}>"

    def _mask_all(self, value: Any) -> Any:
        """Every non-empty string in a JSON value masked."""
        if isinstance(value, str):
            return self.mask(value) if value else value
        if isinstance(value, Object | dict):
            return _same_kind(value, [(key, self._mask_all(item)) for key, item in _items(value)])
        if isinstance(value, list):
            return [self._mask_all(item) for item in value]
        return value

    def _mask_keys(self, value: Any, keys: frozenset[str]) -> Any:
        """A copy of a JSON value with the values of `keys` (folded as Go folds field names,
        at any depth) masked."""
        if isinstance(value, Object | dict):
            return _same_kind(
                value,
                [
                    (
                        key,
                        self._mask_all(item)
                        if fold(key) in keys and item
                        else self._mask_keys(item, keys),
                    )
                    for key, item in _items(value)
                ],
            )
        if isinstance(value, list):
            return [self._mask_keys(item, keys) for item in value]
        return value

    def credentials(self, value: Any) -> Any:
        """A copy of a JSON value with every credential-like field masked, at any depth."""
        return self._mask_keys(value, _CREDENTIAL_KEYS)

    def _mask_registry_header(self, value: str) -> str:
        # Here, as urllib.parse in `target`: most recordings never need them, and the recorder
        # imports this module as it starts.
        import base64
        import binascii

        padded = value.strip() + "=" * (-len(value.strip()) % 4)
        try:
            decoded, rest = parse(base64.urlsafe_b64decode(padded))
        except (JSONSyntaxError, binascii.Error):
            return self.mask(value)
        masked = _dump(self.credentials(decoded)).encode() + self._mask_rest(rest)
        return base64.urlsafe_b64encode(masked).decode()

    def _mask_rest(self, rest: bytes) -> bytes:
        """What follows a JSON value: white space kept, anything else masked whole."""
        return rest if not rest.strip(b" \t\r\n") else b" " + self.mask(rest).encode()

    def headers(self, headers: Headers) -> Headers:
        """Headers with credentials masked; others untouched."""
        kept = self._masked_headers
        masked = kept.get(headers)
        if masked is None:
            masked = self._redact_headers(headers)
            if sum(len(name) + len(value) for name, value in headers) <= _KEPT_HEADERS_SIZE:
                if len(kept) >= _KEPT_HEADERS:
                    del kept[next(iter(kept))]  # the oldest
                kept[headers] = masked
        return masked

    def _redact_headers(self, headers: Headers) -> Headers:
        out = []
        for name, value in headers:
            lower = name.lower()
            if lower in _REGISTRY_HEADERS:
                value = self._mask_registry_header(value)
            elif lower in _AUTH_HEADERS:
                scheme, _, secret = value.partition(" ")
                value = f"{scheme} {self.mask(secret)}" if secret else self.mask(value)
            out.append((name, value))
        return tuple(out)

    def _shape(self, match: re.Match[str]) -> str:
        password = match["password"]
        if password is not None:
            if password.startswith(MASK_PREFIX):
                return match[0]
            return f"{match['url']}{self.mask(password)}@"
        return self.mask(match[0])

    def shapes(self, text: str) -> str:
        """`text` with every secret recognised by its shape masked (see `_shapes`)."""
        return _shapes().sub(self._shape, text) if _SHAPE_HINTS.search(text) else text

    def _flag_value(self, match: re.Match[str]) -> str:
        value = match[2]
        return match[0] if value.startswith(MASK_PREFIX) else f"{match[1]}{self.mask(value)}"

    def _mask_assignment(self, word: str) -> str:
        name, eq, value = word.partition("=")
        return f"{name}={self.mask(value)}" if eq and value else word

    def _mask_run_args(self, value: Any) -> Any:
        """Build argument values in the legacy builder's `|N NAME=value... cmd` history
        strings."""
        if isinstance(value, str):
            found = _RUN_ARGS.match(value)
            if not found:
                return value
            words = value[found.end() :].split(" ")
            count = min(int(found[1]), len(words))
            for index in range(count):
                words[index] = self._mask_assignment(words[index])
            return value[: found.end()] + " ".join(words)
        if isinstance(value, Object | dict):
            return _same_kind(
                value, [(key, self._mask_run_args(item)) for key, item in _items(value)]
            )
        if isinstance(value, list):
            # The same as a command: ["|1", "NAME=value", "/bin/sh", "-c", "..."].
            head = value[0] if value else None
            if isinstance(head, str) and re.fullmatch(r"\|\d+", head):
                count = int(head[1:])
                args = [
                    self._mask_assignment(item) if isinstance(item, str) else item
                    for item in value[1 : 1 + count]
                ]
                return [head, *args, *value[1 + count :]]
            return [self._mask_run_args(item) for item in value]
        return value

    def secret_name(self, name: str) -> bool:
        return self._secret_name(name) if len(name) <= _KEPT_NAME else self._matches_name(name)

    def _matches_name(self, name: str) -> bool:
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
                arg = _ASSIGNMENT.sub(lambda m: f"{m[1]}={self.mask(m[2])}", arg, count=1)
            else:
                arg = _BUILD_ARG_WORD.sub(lambda m: f"{m[1]}{self.mask(m[2])}", arg)
                arg = self.text(arg)
            out.append(arg)
            previous = arg
        return self.argv(out)

    def argv(self, argv: list[str], takes_p: bool = False) -> list[str]:
        """A command's words with the values of `--password X` masked, and of `-pX` (or, to
        `docker login`, `-p X`) after a word naming a program for which -p is a password, or
        anywhere when `takes_p` says the program is one (`docker run -p 80:80 bb mysql -pX`
        publishes a port, then passes a password)."""
        out = list(argv)
        for index, word in enumerate(out):
            if not isinstance(word, str) or word.startswith(MASK_PREFIX):
                continue
            previous = out[index - 1] if index else ""
            if previous == "--password" or (previous == "-p" and "login" in out[:index]):
                out[index] = self.mask(word)
            elif takes_p and word.startswith("-p") and word[2:3] not in ("", "-", "<"):
                out[index] = "-p" + self.mask(word[2:])
            takes_p = takes_p or word.rpartition("/")[2] in _P_PROGRAMS
        return out

    def text(self, text: str) -> str:
        """Free text (a shell command, a build step, a history line) with what looks like a
        secret masked: secrets by shape, `NAME=value` and `ENV NAME value` under secret
        names, and the values of `--password` and `mysql -pX`."""
        # Each pass needs a word of its own to match (`--password`, ` -p`, an instruction,
        # `=`); most texts hold none of them, and skip the pass.
        text = self.shapes(text)
        if "--password" in text:
            text = _PASSWORD_WORD.sub(self._flag_value, text)
        if "-p" in text:
            text = _P_WORD.sub(self._flag_value, text)
        if _INSTRUCTION_HINT.search(text):
            text = _INSTRUCTION.sub(self._instruction, text)
        return _ASSIGNMENT.sub(self._assignment, text) if "=" in text else text

    def _instruction(self, match: re.Match[str]) -> str:
        value = match[4]
        if value.startswith(MASK_PREFIX) or not self.secret_name(match[2]):
            return match[0]
        secret = value.rstrip()
        return f"{match[1]}{match[2]}{match[3]}{self.mask(secret)}{value[len(secret) :]}"

    def _assignment(self, match: re.Match[str]) -> str:
        name, value = match[1], match[2]
        if value.startswith(MASK_PREFIX) or not self.secret_name(name):
            return match[0]
        return f"{name}={self.mask(value)}"

    def holds(self, operation: str | None, direction: str) -> bool:
        """Whether a body of this operation, in this direction, is held back and masked."""
        return operation is not None and direction in _RULES.get(operation, {})

    def target(self, operation: str | None, target: str) -> str:
        """The request target with secrets in its query masked: build argument values and
        labels under secret names (ImageBuild), `docker commit --change` instructions
        (ImageCommit), and anything shaped like a secret in any parameter."""
        if "?" not in target:
            return target
        from urllib.parse import quote, unquote_plus

        path, _, query = target.partition("?")
        parts = query.split("&")
        for index, part in enumerate(parts):
            name, eq, raw = part.partition("=")
            if not eq or not raw:
                continue
            key, value = unquote_plus(name), unquote_plus(raw)
            if operation == "ImageBuild" and key in ("buildargs", "labels"):
                masked = self._query_json(value, key == "buildargs")
            elif operation == "ImageCommit" and key == "changes":
                masked = self.text(value)
            else:
                masked = self.shapes(value)
            if masked != value:
                parts[index] = f"{name}={quote(masked, safe='')}"
        return f"{path}?{'&'.join(parts)}"

    def _query_json(self, value: str, every: bool) -> str:
        """A JSON map of a query: every value masked (build args), or those under secret names
        (labels); one that is not JSON, masked whole."""
        try:
            decoded, rest = parse(value.encode("utf-8", "surrogateescape"))
        except JSONSyntaxError:
            return self.mask(value)
        masked = self._mask_all(decoded) if every else self._labels(decoded)
        if masked is decoded and not every and not rest.strip():
            return value
        return _dump(masked) + self._mask_rest(rest).decode()

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
        if len(body) <= _KEPT_BODY:
            return self._masked_recently(rule, body)
        return self._masked(rule, body)

    def _masked(self, rule: _Rule, body: bytes) -> bytes:
        try:
            decoded, rest = parse(body)
        except JSONSyntaxError:
            return self.mask(body).encode()
        # (value, the white space after it) for each value; one unless the body is a stream.
        values: list[tuple[Any, Any, bytes]] = []
        while True:
            after = rest.lstrip(b" \t\r\n")
            if not rule.stream or not after:
                values.append((decoded, self._mask(rule, decoded), b""))
                break
            values.append((decoded, self._mask(rule, decoded), rest[: len(rest) - len(after)]))
            try:
                decoded, rest = parse(after)
            except JSONSyntaxError:
                rest = after
                break
        tail = self._mask_rest(rest)
        if tail == rest and all(masked is value for value, masked, _ in values):
            return body
        out = b"".join(_dump(masked).encode() + space for _, masked, space in values) + tail
        return out + b"\n" if body.endswith(b"\n") and not out.endswith(b"\n") else out

    def _mask(self, rule: _Rule, value: Any) -> Any:
        if rule.keys:
            value = self._mask_keys(value, rule.keys)
        if rule.build_args:
            value = self._mask_run_args(value)
        return self._scrub(value)

    def _scrub(self, value: Any) -> Any:
        """Env, Labels and commands by what they mean, any other string as free text, at any
        depth (keys folded as Go folds field names). What needs no mask comes back itself."""
        kind = type(value)
        if kind is str:
            if not value or value.startswith(MASK_PREFIX):
                return value
            scrubbed = self.text(value)
            return value if scrubbed == value else scrubbed
        if kind is list:
            items = [self._scrub(item) for item in value]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        if kind is not Object and kind is not dict:
            return value  # numbers, booleans, null
        pairs = [(key, _folded(key), item) for key, item in _items(value)]
        # `Path` and `Args` of an inspected container, `Entrypoint` and `Cmd` of a config:
        # whether -p is a password depends on the program, which may sit next to its words.
        takes_p = any(name in _COMMAND_KEYS and _names_p_program(item) for _, name, item in pairs)
        out = []
        changed = False
        masked: Any
        for key, name, item in pairs:
            if type(item) not in _CONTAINERS:
                masked = item
            elif name == "env":
                masked = self._env(item)
            elif name == "labels":
                masked = self._labels(item)
            elif name in _COMMAND_KEYS and type(item) is list:
                masked = self._scrub(item)
                words = self.argv(masked, takes_p)
                masked = masked if words == masked else words
            else:
                masked = self._scrub(item)
            changed = changed or masked is not item
            out.append((key, masked))
        return _same_kind(value, out) if changed else value

    def _labels(self, value: Any) -> Any:
        """Labels: values under secret names masked whole, the others read as free text."""
        if not isinstance(value, Object | dict):
            return self._scrub(value)
        out = []
        changed = False
        for key, item in _items(value):
            masked = item
            if isinstance(item, str) and item and not item.startswith(MASK_PREFIX):
                masked = self.mask(item) if self.secret_name(key) else self._scrub(item)
            changed = changed or masked is not item
            out.append((key, masked))
        return _same_kind(value, out) if changed else value

    def _env(self, value: Any) -> Any:
        """An Env value: a list of `NAME=value`, or one such string (which dockerd refuses,
        but which is on its way to disk all the same). Unchanged, it comes back itself."""
        if isinstance(value, list):
            items = [self._env(entry) if isinstance(entry, str) else entry for entry in value]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        if isinstance(value, str):
            name, eq, secret = value.partition("=")
            if not eq or not secret or secret.startswith(MASK_PREFIX):
                return value
            if self.secret_name(name):
                return f"{name}={self.mask(secret)}"
            masked = self.text(secret)
            return value if masked == secret else f"{name}={masked}"
        return self._scrub(value)
