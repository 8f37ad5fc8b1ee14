"""A capture as a POSIX shell script that sends its requests again with curl.

The script is for seeing an API call work outside the client that made it, and for trying it
again against another daemon. Each exchange becomes one self-contained `curl --unix-socket`
command that can be copied out on its own. The socket is `$DOCKER_SOCK`, by default
`/var/run/docker.sock`; `$DOCKTAP_MAX_TIME` (default 60 s) bounds each request, so a
`logs -f` or an event stream ends. Requests run one after another in the order they started,
so calls that overlapped in the capture (an attach while a wait is pending) do not overlap.

What the script prints, one line per exchange, is meant to be compared with the capture:

    CONN.SEQ OPERATION RECORDED NOW

`RECORDED` is the status in the capture (`---` when there was none) and `NOW` the status curl
got (`000` when it could not talk to the daemon), or `skipped` for a request the script cannot
send again; a comment above it says why: a hijacked connection (attach, exec start, BuildKit
sessions) needs a client that speaks the raw stream, a body cut by `--max-body` is no longer
whole, and masked `/auth` credentials would only be refused. Bodies are passed on stdin: JSON
and other plain text in a here-document, anything else as base64 through `base64 -d`.
Hop-by-hop and framing headers (Host, Connection, Upgrade, Content-Length, Transfer-Encoding,
...) are left to curl. The script changes the daemon's state just as the recorded client did.
"""

from __future__ import annotations

import base64
import re
import shlex

from docktap.capture.reader import Capture, Exchange
from docktap.render.audit import unread_lines
from docktap.render.har import BASE_URL
from docktap.render.text import iso_time

SOCKET = '"${DOCKER_SOCK:-/var/run/docker.sock}"'
MAX_TIME = '"${DOCKTAP_MAX_TIME:-60}"'
_DELIMITER = "DOCKTAP_BODY"
# Headers that describe one hop or the framing of one message; curl writes its own.
_LEFT_TO_CURL = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)
_MASKED = frozenset({"x-registry-auth", "x-registry-config", "authorization"})
_UNSAFE_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_COMMENT_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def quote(text: str) -> str:
    """`text` as one shell word, in single quotes."""
    return "'" + text.replace("'", "'\\''") + "'"


def _comment(text: str) -> str:
    return _COMMENT_UNSAFE.sub(" ", text)


def _label(ex: Exchange) -> str:
    recorded = str(ex.status) if ex.status is not None else "---"
    return f"{ex.conn}.{ex.seq} {ex.operation or 'unknown'} {recorded}"


def skip_reason(ex: Exchange) -> str | None:
    """Why the script cannot send this request again, or None when it can."""
    if ex.hijacked:
        return (
            f"the daemon hijacked this connection ({ex.hijacked}) for a raw stream, "
            "which curl cannot carry"
        )
    if ex.request_complete is False:
        return "the client never finished sending the request body"
    if len(ex.request_body) < ex.request_body_size:
        return (
            f"the capture kept only {len(ex.request_body)} of the {ex.request_body_size} "
            "bytes of the request body (--max-body)"
        )
    if ex.operation == "SystemAuth":
        return "the credentials in the body were masked in the capture"
    return None


def _body_input(body: bytes) -> tuple[str, str, list[str]]:
    """How the body reaches curl's stdin: a pipe in front of curl, a redirection after it,
    and the here-document's lines (its delimiter last)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.endswith("\n") and not _UNSAFE_TEXT.search(text):
        lines = text[:-1].split("\n")
        delimiter, n = _DELIMITER, 1
        while delimiter in lines:
            n += 1
            delimiter = f"{_DELIMITER}_{n}"
        return "", f" <<'{delimiter}'", [*lines, delimiter]
    encoded = base64.encodebytes(body).decode("ascii").rstrip("\n").split("\n")
    return f"base64 -d <<'{_DELIMITER}' | ", "", [*encoded, _DELIMITER]


def command(ex: Exchange) -> list[str]:
    """The lines of the curl command for one exchange (one skip_reason() accepts)."""
    write_out = _label(ex).replace("%", "%%") + " %{http_code}\\n"
    args = [
        "curl -sS --globoff --path-as-is",
        f"--unix-socket {SOCKET}",
        f"--max-time {MAX_TIME}",
        "-o /dev/null",
        f"-w {quote(write_out)}",
        "-I" if ex.method == "HEAD" else f"-X {quote(ex.method)}",
    ]
    has_type = False
    for name, value in ex.request_headers:
        lower = name.lower()
        if lower in _LEFT_TO_CURL:
            continue
        has_type = has_type or lower == "content-type"
        args.append("-H " + quote(f"{name}: {value}"))
    body = bytes(ex.request_body)
    pipe, redirect, heredoc = "", "", list[str]()
    if body:
        if not has_type:
            args.append("-H " + quote("Content-Type:"))  # not curl's form-encoded default
        args.append("--data-binary @-")
        pipe, redirect, heredoc = _body_input(body)
    lines = [pipe + args[0] + " \\"]
    lines += [f"  {arg} \\" for arg in args[1:]]
    lines.append("  " + quote(BASE_URL + ex.target) + redirect)
    return lines + heredoc


def render(capture: Capture) -> str:
    """The shell script, ending with a newline."""
    header = capture.header
    argv = header.get("command")
    lines = [
        "#!/bin/sh",
        f"# {len(capture.exchanges)} Docker Engine API requests re-issued with curl "
        "(docktap export --format curl).",
    ]
    if argv:
        lines.append(f"# Recorded from: {_comment(shlex.join(argv))}")
    started = header.get("started")
    if isinstance(started, int | float):
        lines.append(
            f"# Recorded at {iso_time(started)} against {_comment(str(header.get('upstream')))}"
        )
    lines += [
        "#",
        "# Usage: DOCKER_SOCK=/var/run/docker.sock sh THIS-SCRIPT",
        "# Each request prints one line: CONN.SEQ OPERATION RECORDED-STATUS STATUS-NOW",
        "# (STATUS-NOW is 000 when curl could not reach the daemon, 'skipped' when the request",
        "# cannot be sent again: the comment above it says why). DOCKTAP_MAX_TIME (default 60)",
        "# caps the seconds each request may take. This changes the daemon's state the way the",
        "# recorded client did.",
        "",
    ]
    lines += [f"# {_comment(line)}" for line in unread_lines(capture)]
    for ex in capture.exchanges:
        lines.append(f"# {ex.conn}.{ex.seq} {ex.operation or 'unknown operation'}")
        reason = skip_reason(ex)
        if reason is not None:
            lines.append(f"# skipped: {_comment(reason)}")
            lines.append(f"#   {_comment(ex.method + ' ' + ex.target)}")
            lines.append(f"echo {quote(_label(ex) + ' skipped')}")
        else:
            for name, _ in ex.request_headers:
                if name.lower() in _MASKED:
                    lines.append(
                        f"# {name} holds credentials docktap masked: put real ones in to "
                        "authenticate"
                    )
            lines += command(ex)
        lines.append("")
    return "\n".join(lines)
