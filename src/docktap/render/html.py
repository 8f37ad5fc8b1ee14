"""A capture as one self-contained web page: lanes, a filterable list, every detail a click away.

A terminal timeline can only hint at bodies and streams; a page can hold all of them and show
each on demand, and it can be shared as a single file (a CI artifact, an attachment to an
issue). So the page fetches nothing: its script and style are inline, its data is the capture's
exchanges as JSON in a `<script type="application/json">`, and a Content-Security-Policy forbids
every load, so a body that happens to hold markup cannot make the browser reach out either.

This module is pure: a capture and the hand-written assets (`docktap.render.web`) in, the page
out. The page only shows what the capture holds, so secrets are masked exactly as there.
What the page's script expects is `page_data`'s shape, described at `page_data`.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from docktap.audit import Finding, audit, unread
from docktap.capture.reader import Capture, Exchange, FrameChunk, StreamChunk
from docktap.events import Direction
from docktap.explain import explain
from docktap.policy.decide import Decision
from docktap.render.kind import exchange_kind
from docktap.render.text import (
    format_duration,
    format_offset,
    format_size,
    hex_preview,
    is_text,
    shorten_ids,
)
from docktap.routes import split_version

#: Bumped when the shape of the embedded data changes, so a reader of an old page can tell.
DATA_VERSION = 1

#: The streams of a hijacked or framed exchange, in the order the page shows them.
STREAMS = ("stdout", "stderr", "stdin", "system-error")


@dataclass(frozen=True)
class Assets:
    """The page's hand-written script and style sheet."""

    script: str
    style: str


#: What a policy decided about each exchange, by `(conn, seq)`.
Decisions = Mapping[tuple[int, int], Sequence[Decision]]


def page_data(capture: Capture, title: str, decisions: Decisions | None = None) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready values.

    Per exchange (`exchanges`, in start order, `i` its position there, `number` the exchange
    number the other views print as `#N`):
    `t0` request, `t1` response head, `t2` end (None: never ended), in seconds since the capture
    started; `kind` is `hijack`, `stream` or `plain`; `sent` and `got` count the bytes each
    way as `docktap stats` does; bodies are `{text | b64, size, kept,
    complete, sha256}` where `kept < size` means cut at the capture's cap; `io` is the demuxed
    output and input as `[t, stream, text, offset]`; `shown` holds the numbers and the path as
    docktap's text views write them; `findings` are the audit's; `decisions` what a policy
    decided about the exchange (`docktap.policy.decide`), each `{allowed, operation, reason}`:
    empty unless the caller passes some, since a capture does not record them.
    """
    findings = _findings_by_exchange(audit(capture))
    header = capture.header
    ends = [ex.ended_mono or ex.started_mono for ex in capture.exchanges]
    closes = [c.closed_mono or 0.0 for c in capture.connections.values()]
    duration = max([capture.last_mono, *ends, *closes])
    return {
        "version": DATA_VERSION,
        "title": title,
        "capture": {
            "started": header.get("started"),
            "upstream": header.get("upstream"),
            "command": header.get("command"),
            "max_body": header.get("max_body"),
            "docktap": header.get("docktap"),
            "complete": capture.complete,
            "duration": duration,
            "shown": {
                "duration": format_duration(duration),
                "max_body": format_size(header.get("max_body") or 0),
            },
        },
        "connections": [
            {
                "conn": c.conn,
                "opened": c.opened_mono,
                "closed": c.closed_mono,
                "peer": c.peer,
            }
            for c in sorted(capture.connections.values(), key=lambda c: c.conn)
        ],
        "exchanges": [
            _exchange(
                i,
                ex,
                findings.get((ex.conn, ex.seq), []),
                (decisions or {}).get((ex.conn, ex.seq), ()),
            )
            for i, ex in enumerate(capture.exchanges)
        ],
        # Traffic the audit could not read heads the list: no exchange shows it.
        "errors": [
            *(
                {"conn": f.conn, "kind": f.rule, "message": f"{f.title}. {f.explanation}"}
                for f in unread(capture)
            ),
            *(
                {"conn": r.get("conn"), "kind": r.get("kind"), "message": r.get("message")}
                for r in capture.errors
            ),
        ],
    }


def _exchange(
    i: int, ex: Exchange, findings: list[dict[str, Any]], decisions: Sequence[Decision]
) -> dict[str, Any]:
    operation = ex.operation
    sent = ex.bytes_sent
    got = ex.bytes_received
    path = split_version(ex.target)[1]
    query = ex.target.partition("?")[2]
    return {
        "i": i,
        "number": ex.number,
        "conn": ex.conn,
        "seq": ex.seq,
        "method": ex.method,
        "target": ex.target,
        "operation": operation,
        "api_version": ex.api_version,
        "status": ex.status,
        "reason": ex.reason,
        "informational": ex.informational,
        "t0": ex.started_mono,
        "t1": ex.response_started_mono,
        "t2": ex.ended_mono,
        "kind": exchange_kind(ex),
        "sent": sent,
        "got": got,
        # Numbers and paths as docktap's text views write them, so the page reads the same.
        "shown": {
            "start": format_offset(ex.started_mono),
            "head": None
            if ex.response_started_mono is None
            else format_offset(ex.response_started_mono),
            "end": None if ex.ended_mono is None else format_offset(ex.ended_mono),
            "took": format_duration(ex.duration_s),
            "sent": format_size(sent),
            "got": format_size(got),
            "path": shorten_ids(path + ("?" + query if query else "")),
        },
        "hijacked": ex.hijacked,
        "request_headers": ex.request_headers,
        "response_headers": ex.response_headers,
        "request_body": _body(
            ex.request_body, ex.request_body_size, ex.request_complete, ex.request_sha256
        ),
        "response_body": _body(
            ex.response_body, ex.response_body_size, ex.response_complete, ex.response_sha256
        ),
        "io": [
            [t, name, text, "+" + format_duration(t - ex.started_mono)] for t, name, text in _io(ex)
        ],
        "explain": explain(operation) if operation else None,
        "findings": findings,
        "decisions": [
            {"allowed": d.allowed, "operation": d.operation, "reason": d.reason} for d in decisions
        ],
        "errors": ex.errors,
    }


def _body(
    kept: bytearray, size: int, complete: bool | None, sha256: str | None
) -> dict[str, Any] | None:
    if not size and not kept:
        return None
    out: dict[str, Any] = {"size": size, "kept": len(kept), "complete": complete, "sha256": sha256}
    try:
        out["text"] = kept.decode("utf-8")
    except UnicodeDecodeError:
        out["b64"] = base64.b64encode(kept).decode("ascii")
    return out


def _findings_by_exchange(findings: list[Finding]) -> dict[tuple[int, int], list[dict[str, Any]]]:
    out: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for finding in findings:
        entry = finding.to_dict()
        del entry["exchange"]  # the page files each finding under its exchange already
        out.setdefault((finding.conn, finding.seq), []).append(entry)
    return out


def _io(ex: Exchange) -> list[list[Any]]:
    """Each piece of container output and client input, with its time.

    Framed output counts by its frames; unframed daemon output (a TTY) is all stdout, as
    `Exchange.output` has it.
    """
    out: list[list[Any]] = []
    for part in ex.parts:
        if isinstance(part, FrameChunk):
            name = part.stream
        elif not isinstance(part, StreamChunk):
            continue
        elif part.direction is Direction.CLIENT:
            name = "stdin"
        elif ex.frames:
            continue  # its frames say the same, stream by stream
        else:
            name = "stdout"
        out.append([part.mono, name, _piece(part.data)])
    return out


def _piece(data: bytes | bytearray) -> str:
    """A stream piece as the timeline shows it: text, or the hex preview of binary."""
    if is_text(data):
        return data.decode("utf-8", errors="replace")  # only a character cut at the end
    return "\n".join(hex_preview(data))


def to_json(data: Any) -> str:
    """JSON safe to put inside a `<script>` element.

    Every `<` is written as `\\u003c`, so no body (holding `</script>` or `<!--`) can end the
    element early or change how the HTML parser reads it; JSON.parse reads the same string.
    """
    text = orjson.dumps(data).decode("utf-8")
    return text.replace("<", "\\u003c")


# What the script fills in; ids are the script's handles on it.
_SKELETON = """\
<header>
<h1><span id="title"></span> <small>docktap capture</small></h1>
<p id="facts"></p>
<p id="command"></p>
<ul id="capture-errors"></ul>
<noscript>This page draws a docktap capture with JavaScript; `docktap show` prints it as
text.</noscript>
</header>
<section id="timeline">
<div class="toolbar"><b>Connections over time</b>
<button id="zoom-out" type="button" title="zoom out">\u2212</button>
<button id="zoom-in" type="button" title="zoom in (or ctrl + wheel)">+</button>
<button id="zoom-fit" type="button" title="the whole capture">fit</button>
<span id="zoom-level"></span>
<span class="legend"><i class="k st-2xx"></i>2xx <i class="k st-101"></i>101
<i class="k st-3xx"></i>3xx <i class="k st-4xx"></i>4xx <i class="k st-5xx"></i>5xx
<i class="k st-none"></i>no answer \u00b7 the dark head of a bar: request to answer;
its light tail: streamed or hijacked</span></div>
<div id="lanes"><div class="lanes-grid">
<div class="corner"></div><svg id="axis" xmlns="http://www.w3.org/2000/svg"></svg>
<div id="lane-labels"></div><svg id="bars" xmlns="http://www.w3.org/2000/svg"></svg>
</div></div>
</section>
<main>
<section id="list">
<div class="toolbar filters">
<select id="filter-op" title="operation"></select>
<select id="filter-status" title="status">
<option value="">every status</option><option value="101">101</option>
<option value="2xx">2xx</option><option value="3xx">3xx</option>
<option value="4xx">4xx</option><option value="5xx">5xx</option>
<option value="none">no answer</option><option value="error">errors</option>
</select>
<input id="filter-text" type="search" placeholder="text in target, headers, bodies, streams">
<span id="count"></span>
</div>
<div id="list-box">
<div class="row heads"><span>start</span><span>#</span><span>operation</span>
<span>request</span><span>status</span><span>took</span><span>\u2191 sent</span>
<span>\u2193 got</span><span></span></div>
<div id="rows"></div>
</div>
</section>
<section id="details"><p class="note">Click an exchange, in the list or on its lane, to see
its heads, bodies, streams, explanation and audit findings. j / k move along the list.</p>
</section>
</main>
"""


def _source_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def render(capture: Capture, title: str, assets: Assets, decisions: Decisions | None = None) -> str:
    """The page of a capture; `title` names it (the capture's file name, say)."""
    script = assets.script
    style = assets.style
    if "</script" in script.lower() or "<!--" in script or "</style" in style.lower():
        raise ValueError("the page's script or style holds what would end its element")
    # Only the page's own script and style may run, by their hashes; nothing may be loaded.
    policy = (
        "default-src 'none'; "
        f"script-src {_source_hash(script)}; "
        f"style-src {_source_hash(style)}; "
        "base-uri 'none'; form-action 'none'"
    )
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
            f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n',
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
            '<meta name="generator" content="docktap">\n',
            f"<title>{html.escape(title)} - docktap</title>\n",
            f"<style>{style}</style>\n</head>\n<body>\n",
            _SKELETON,
            '<script type="application/json" id="docktap-data">',
            to_json(page_data(capture, title, decisions)),
            "</script>\n",
            f"<script>{script}</script>\n</body>\n</html>\n",
        ]
    )
