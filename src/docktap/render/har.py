"""A capture as an HTTP Archive (HAR 1.2), for browser devtools and HAR viewers.

Each exchange becomes one entry. What HAR has a field for goes there: method, URL
(`http://docker` + the request target), headers, query, bodies, status, the send/wait/receive
timings, and `connection` (docktap's connection number). What HAR has no field for goes in
fields whose names start with `_`, as the HAR format asks of extensions:

- `log._docktap`: the capture header (upstream, command, start, inline cap, clean end).
- `entry.comment`: `exchange #N`, the exchange number `docktap show` prints.
- `entry._docktap`: the exchange's `number` (the same), `conn`, `seq`, `operation`,
  `api_version`, `kind` (`plain`, `stream` or `hijack`), `hijacked` (the protocol), any
  `informational` statuses, the sha256 digests and completeness of both bodies, `body_chunks`
  and `stream_chunks` (when each piece arrived, in ms from the request, which direction, how
  many bytes), `frames` (when each stdout/stderr frame arrived), the decoded `stdout`, `stderr`
  and `stdin` of hijacked or framed exchanges (each `{"size": n, "text": ...}` or `{"size": n,
  "b64": ...}`), and `errors`.
- `postData._encoding`: `"base64"` when the request body is not UTF-8 and `text` holds it in
  base64. HAR defines `encoding` only for response content; this is the same idea for requests.

Bodies hold what the capture kept. When `--max-body` cut one, `size` and `bodySize` still give
the whole length and the `comment` next to the text says how much is missing.
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from docktap import __version__
from docktap.capture.reader import (
    BodyChunk,
    Capture,
    Exchange,
    FrameChunk,
    ResponseHead,
    StreamChunk,
)
from docktap.render.audit import unread_lines
from docktap.render.kind import exchange_kind
from docktap.render.text import iso_time

BASE_URL = "http://docker"


@dataclass
class _Pieces:
    """When each piece of an exchange came, in ms from its request, for `_docktap`."""

    body_chunks: list[dict[str, Any]] = field(default_factory=list)
    stream_chunks: list[dict[str, Any]] = field(default_factory=list)
    frames: list[dict[str, Any]] = field(default_factory=list)


def _pieces(ex: Exchange) -> _Pieces:
    start = ex.started_mono
    pieces = _Pieces()
    for part in ex.parts:
        if isinstance(part, FrameChunk):
            at = _ms(part.mono - start)
            pieces.frames.append({"t_ms": at, "stream": part.stream, "size": part.size})
        elif isinstance(part, BodyChunk | StreamChunk):
            at = _ms(part.mono - start)
            chunks = pieces.body_chunks if isinstance(part, BodyChunk) else pieces.stream_chunks
            direction = part.direction.value if part.direction is not None else None
            chunks.append({"t_ms": at, "dir": direction, "size": part.size})
    return pieces


def _response_version(ex: Exchange) -> str:
    """The HTTP version of the last head the daemon sent (an informational one, if no other)."""
    heads = [part for part in ex.parts if isinstance(part, ResponseHead)]
    return heads[-1].http_version if heads else "1.1"


def _ms(seconds: float) -> float:
    return round(max(seconds, 0.0) * 1000, 3)


def _headers(headers: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in headers]


def _payload(data: bytes) -> dict[str, Any]:
    """`{"size", "text"}` when UTF-8, else `{"size", "b64"}`, as in the capture itself."""
    try:
        return {"size": len(data), "text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"size": len(data), "b64": base64.b64encode(data).decode("ascii")}


def _cut_comment(kept: int, size: int) -> str | None:
    if kept >= size:
        return None
    return f"the capture kept only the first {kept} of {size} bytes (--max-body)"


def _post_data(ex: Exchange) -> dict[str, Any] | None:
    if not ex.request_body_size and not ex.request_body:
        return None
    body = bytes(ex.request_body)
    post: dict[str, Any] = {
        "mimeType": ex.header("Content-Type", response=False) or "application/octet-stream"
    }
    try:
        post["text"] = body.decode("utf-8")
    except UnicodeDecodeError:
        post["text"] = base64.b64encode(body).decode("ascii")
        post["_encoding"] = "base64"
    comment = _cut_comment(len(body), ex.request_body_size)
    if comment:
        post["comment"] = comment
    return post


def _content(ex: Exchange) -> dict[str, Any]:
    body = bytes(ex.response_body)
    mime = ex.header("Content-Type") or ("application/octet-stream" if body else "")
    content: dict[str, Any] = {"size": ex.response_body_size, "mimeType": mime}
    if body:
        try:
            content["text"] = body.decode("utf-8")
        except UnicodeDecodeError:
            content["text"] = base64.b64encode(body).decode("ascii")
            content["encoding"] = "base64"
    comment = _cut_comment(len(body), ex.response_body_size)
    if ex.hijacked:
        comment = (
            f"the connection was hijacked ({ex.hijacked}); "
            "its raw stream is in _docktap (stdout, stderr, stdin)"
        )
    if comment:
        content["comment"] = comment
    return content


def _timings(ex: Exchange, capture_end: float) -> dict[str, float]:
    start = ex.started_mono
    end = ex.ended_mono if ex.ended_mono is not None else max(capture_end, start)
    answered = ex.response_started_mono
    sent = ex.request_ended_mono if ex.request_ended_mono is not None else start
    if answered is not None:
        sent = min(sent, answered)  # an early answer: the rest of the upload counts as waiting
    sent = min(max(sent, start), end)
    if answered is None:
        answered = end
    answered = min(max(answered, sent), end)
    return {
        "blocked": -1,
        "dns": -1,
        "connect": -1,
        "send": _ms(sent - start),
        "wait": _ms(answered - sent),
        "receive": _ms(end - answered),
        "ssl": -1,
    }


def _custom(ex: Exchange) -> dict[str, Any]:
    pieces = _pieces(ex)
    out: dict[str, Any] = {
        "number": ex.number,
        "conn": ex.conn,
        "seq": ex.seq,
        "operation": ex.operation,
        "api_version": ex.api_version,
        "kind": exchange_kind(ex),
        "hijacked": ex.hijacked,
        "informational": list(ex.informational),
        "request_sha256": ex.request_sha256,
        "request_complete": ex.request_complete,
        "response_sha256": ex.response_sha256,
        "response_complete": ex.response_complete,
        "body_chunks": pieces.body_chunks,
    }
    if ex.hijacked:
        out["stream_chunks"] = pieces.stream_chunks
    if ex.frames:
        out["frames"] = pieces.frames
    if ex.hijacked or ex.frames:
        for name in ("stdout", "stderr", "stdin"):
            out[name] = _payload(ex.output(name))
        errors = b"".join(data for name, data in ex.frames if name == "system-error")
        if errors:
            out["system_error"] = _payload(errors)
    if ex.errors:
        out["errors"] = list(ex.errors)
    return out


def _entry(ex: Exchange, capture_end: float) -> dict[str, Any]:
    timings = _timings(ex, capture_end)
    total = round(sum(v for v in timings.values() if v >= 0), 3)
    request: dict[str, Any] = {
        "method": ex.method,
        "url": BASE_URL + ex.target,
        "httpVersion": f"HTTP/{ex.request.http_version}",
        "cookies": [],
        "headers": _headers(ex.request_headers),
        "queryString": [
            {"name": k, "value": v}
            for k, v in parse_qsl(urlsplit(ex.target).query, keep_blank_values=True)
        ],
        "headersSize": -1,
        "bodySize": ex.request_body_size,
    }
    post = _post_data(ex)
    if post is not None:
        request["postData"] = post
    response: dict[str, Any] = {
        "status": ex.status if ex.status is not None else 0,
        "statusText": ex.reason or "",
        "httpVersion": f"HTTP/{_response_version(ex)}",
        "cookies": [],
        "headers": _headers(ex.response_headers),
        "content": _content(ex),
        "redirectURL": ex.header("Location") or "",
        "headersSize": -1,
        "bodySize": ex.response_body_size if ex.status is not None else -1,
    }
    if ex.status is None:
        response["comment"] = "no answer was recorded"
    return {
        "startedDateTime": iso_time(ex.started),
        "time": total,
        "request": request,
        "response": response,
        "cache": {},
        "timings": timings,
        "connection": str(ex.conn),
        "comment": f"exchange #{ex.number}",
        "_docktap": _custom(ex),
    }


def to_har(capture: Capture) -> dict[str, Any]:
    """The capture as a HAR 1.2 document (a dict ready for `json.dumps`)."""
    end = capture.last_mono
    header = capture.header
    entries = [_entry(ex, end) for ex in capture.exchanges]
    command = header.get("command")
    comment = "docktap capture" + (f" of: {shlex.join(command)}" if command else "")
    comment = " ".join([comment, *unread_lines(capture)])
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "docktap", "version": __version__},
            "entries": entries,
            "comment": comment,
            "_docktap": {
                "format_version": header.get("version"),
                "recorded_by": header.get("docktap"),
                "started": header.get("started"),
                "upstream": header.get("upstream"),
                "command": command,
                "max_body": header.get("max_body"),
                "complete": capture.complete,
            },
        }
    }
