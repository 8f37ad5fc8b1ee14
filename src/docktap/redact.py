"""What counts as a registry secret on the Docker API, and how it is masked before disk.

Credentials travel in three places: the `X-Registry-Auth` header (base64url JSON), the
`X-Registry-Config` header on builds (base64url JSON mapping registries to credentials), and the
body of `POST /auth` and its answer. `Authorization` headers are masked too. Masking keeps the
shape (user names, server addresses, the auth scheme) so a capture still teaches what was sent,
and replaces only the secret values.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from docktap.events import Headers

MASK = "<redacted>"
_SECRET_KEYS = frozenset({"password", "auth", "identitytoken", "registrytoken"})
_REGISTRY_HEADERS = frozenset({"x-registry-auth", "x-registry-config"})
_AUTH_HEADERS = frozenset({"authorization", "proxy-authorization"})


def mask_secrets(value: Any) -> Any:
    """A copy of a JSON value with every credential-like field masked, at any depth."""
    if isinstance(value, dict):
        return {
            key: MASK if key.lower() in _SECRET_KEYS and item else mask_secrets(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(item) for item in value]
    return value


def _mask_registry_header(value: str) -> str:
    padded = value.strip() + "=" * (-len(value.strip()) % 4)
    try:
        decoded = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, binascii.Error):
        return MASK
    masked = json.dumps(mask_secrets(decoded), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(masked).decode()


def redact_headers(headers: Headers) -> Headers:
    """Headers with credentials masked; others untouched."""
    out = []
    for name, value in headers:
        lower = name.lower()
        if lower in _REGISTRY_HEADERS:
            value = _mask_registry_header(value)
        elif lower in _AUTH_HEADERS:
            scheme, _, secret = value.partition(" ")
            value = f"{scheme} {MASK}" if secret else MASK
        out.append((name, value))
    return tuple(out)


def redact_auth_body(body: bytes) -> bytes:
    """The body of `POST /auth` or its answer, with passwords and tokens masked."""
    try:
        decoded = json.loads(body)
    except ValueError:
        return MASK.encode() if body else body
    return json.dumps(mask_secrets(decoded)).encode()
