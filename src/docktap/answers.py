"""The answers docktap itself gives a Docker client, when it cannot pass a request on.

They take the shape of the daemon's own errors, a JSON object with a `message`, so that the
docker CLI and the SDKs print the message as they would the daemon's; and the message names
who failed, so that no one blames the daemon for docktap's trouble, or docktap for the
daemon's.
"""

from __future__ import annotations

import json

from docktap.upstream import Endpoint


def _error(status: str, message: str, request: bytes, close: bool = True) -> bytes:
    """`request` is the start of what the client sent: an answer to HEAD must have no body."""
    body = json.dumps({"message": message}).encode() + b"\n"
    head = (
        f"HTTP/1.1 {status}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    ).encode()
    return head if request.startswith(b"HEAD ") else head + body


def bad_gateway(upstream: Endpoint, reason: str, request: bytes) -> tuple[str, bytes]:
    """The message and the response a client gets when the daemon is unreachable."""
    message = f"docktap: cannot reach the Docker daemon at {upstream.url}: {reason}"
    return message, _error("502 Bad Gateway", message, request)


def out_of_descriptors(reason: str, request: bytes) -> tuple[str, bytes]:
    """The message and the response a client gets when docktap has no file descriptor left."""
    message = (
        f"docktap is out of file descriptors ({reason}) and cannot serve this connection; "
        "the Docker daemon was not asked. Retry once fewer connections are open"
    )
    return message, _error("503 Service Unavailable", message, request)


def forbidden(message: str, request: bytes, close: bool) -> bytes:
    """The answer to a request docktap's policy denies; the connection stays usable unless
    `close`."""
    return _error("403 Forbidden", message, request, close)
