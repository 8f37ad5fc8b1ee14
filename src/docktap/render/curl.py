"""A capture as a POSIX shell script that sends its requests again with curl.

The script is for seeing an API call work outside the client that made it, and for doing it
again against another daemon. Each exchange becomes one `curl --unix-socket` command. The
socket is `$DOCKER_SOCK`, by default `/var/run/docker.sock`; `$DOCKTAP_MAX_TIME` (default
60 s) bounds each request, so a `logs -f` or an event stream ends.

What the script prints, one line per exchange, is meant to be compared with the capture:

    #N OPERATION RECORDED NOW

`#N` is the exchange number, as `docktap show` prints it.

`RECORDED` is the status in the capture (`---` when there was none) and `NOW` the status curl
got (`000` when it could not talk to the daemon), or `skipped` for a request the script cannot
send again; a comment above it says why: a hijacked connection (attach, exec start, BuildKit
sessions) needs a client that speaks the raw stream, a body cut by `--max-body` is no longer
whole, and masked `/auth` credentials would only be refused. What the client sent on a
hijacked stream (`docker run -i`'s stdin) is not sent either, nor its end: the script says so
on stderr as it skips it, for a container reading its stdin then waits for it. The script stops
with status 1 at the first request whose status differs from the recorded one, or whose answer
curl did not get whole where the daemon ended it in the capture (a ContainerWait cut by
`DOCKTAP_MAX_TIME`, whose head alone came; not a stream the client ended, as `logs -f`'s
and the event stream's are). Bodies are passed on stdin: JSON and other plain text in a
here-document, anything else as base64 through `base64 -d`.
Hop-by-hop and framing headers (Host, Connection, Upgrade, Content-Length, Transfer-Encoding,
...) are left to curl; masked credentials stay masked.

The ids the daemon made up (`ID_KEYS`: containers, execs, networks, anonymous volumes, built
and committed images) are different on every daemon, so the script reads each from its answer
into a shell variable, `ID_N` (N the exchange number), and later targets and text bodies use
the variable where the capture has the recorded id. The rule, the same here and in the script's
`sed`: the id is the last `"KEY":"VALUE"` on the first line of the answer that has one, and
only a value that looks like an id (64 hex digits, `sha256:` allowed) counts; a name the client
chose is the same on any daemon. Only the whole id is replaced, not a prefix of it.

Requests run in the order they started. One whose answer was still coming when a later request
started (a ContainerWait while the client starts the container) runs in the background: the
script goes on once its response head arrived, if it had in the capture, and collects its
status before the first request that started after its answer ended.
"""

from __future__ import annotations

import base64
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

from docktap.capture.reader import BodyEnd, Capture, Close, Exchange, HalfClose
from docktap.events import Direction
from docktap.render.audit import unread_lines
from docktap.render.har import BASE_URL
from docktap.render.text import iso_time

SOCKET = '"${DOCKER_SOCK:-/var/run/docker.sock}"'
ANSWERS = '"$answers"'  # the script's directory of statuses, heads and bodies
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
#: The answer field holding the id the daemon made up, per operation that makes one.
ID_KEYS = {
    "ContainerCreate": "Id",
    "ContainerExec": "Id",
    "NetworkCreate": "Id",
    "VolumeCreate": "Name",
    "ImageCommit": "Id",
    "ImageBuild": "ID",
}
_ID = re.compile(r"(?:sha256:)?[0-9a-f]{64}")
_HEREDOC_SPECIAL = re.compile(r"[\\$`]")


def quote(text: str) -> str:
    """`text` as one shell word, in single quotes."""
    return "'" + text.replace("'", "'\\''") + "'"


def _comment(text: str) -> str:
    return _COMMENT_UNSAFE.sub(" ", text)


def _recorded(ex: Exchange) -> str:
    return str(ex.status) if ex.status is not None else "---"


def _label(ex: Exchange) -> str:
    return f"#{ex.number} {ex.operation or 'unknown'} {_recorded(ex)}"


def _name(ex: Exchange) -> str:
    """The exchange number: names its files in `$answers` and, with `#`, its line."""
    return str(ex.number)


def _variable(ex: Exchange) -> str:
    return f"ID_{ex.number}"


def _pid(ex: Exchange) -> str:
    return f"pid_{ex.number}"


def returned_id(ex: Exchange) -> str | None:
    """The id the daemon made up in this exchange's answer, or None."""
    key = ID_KEYS.get(ex.operation or "")
    if key is None or ex.status is None or not 200 <= ex.status < 300:
        return None
    field = re.compile(f'"{key}" *: *"([^"]*)"')
    for line in bytes(ex.response_body).decode("utf-8", "replace").split("\n"):
        found = field.findall(line)
        if found:
            return found[-1] if _ID.fullmatch(found[-1]) else None
    return None


def _extract(ex: Exchange, key: str) -> list[str]:
    """The lines that read the id from the saved answer, as returned_id() does."""
    variable, name = _variable(ex), _name(ex)
    sed = f's/.*"{key}" *: *"\\([^"]*\\)".*/\\1/p'
    return [
        f"{variable}=$(sed -n {quote(sed)} {ANSWERS}/{name}.body | head -n 1)",
        f'[ -n "${variable}" ] || fail {quote(f"#{name} {ex.operation}: no {key} in the answer")}',
    ]


Ids = dict[str, str]  # a recorded id -> the shell expansion that holds it now


def _pieces(text: str, ids: Ids) -> Iterator[tuple[str, bool]]:
    """`text` cut at the recorded ids: (literal text, False) and (expansion, True)."""
    at = 0
    if ids:
        found = re.compile("|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True)))
        for match in found.finditer(text):
            yield text[at : match.start()], False
            yield ids[match.group()], True
            at = match.end()
    yield text[at:], False


def _word(text: str, ids: Ids) -> str:
    """`text` as one shell word, the recorded ids expanded from their variables."""
    parts = [f'"{t}"' if expansion else quote(t) for t, expansion in _pieces(text, ids) if t]
    return "".join(parts) or "''"


def _heredoc_text(text: str, ids: Ids) -> str | None:
    """`text` for an unquoted here-document when it holds a recorded id, else None."""
    pieces = list(_pieces(text, ids))
    if len(pieces) == 1:
        return None
    return "".join(
        t if expansion else _HEREDOC_SPECIAL.sub(r"\\\g<0>", t) for t, expansion in pieces
    )


def _stdin(ex: Exchange) -> int:
    """How many bytes the client sent on the exchange's hijacked stream (its stdin)."""
    return len(ex.output("stdin"))


def _client_ended(ex: Exchange) -> bool:
    """Whether the answer ended because the client left (`logs -f`, the event stream), or
    never ended in the capture, rather than because the daemon ended it: sent again, only
    DOCKTAP_MAX_TIME ends it."""
    if ex.response_complete is not True:
        return True
    for part in ex.parts:
        if isinstance(part, BodyEnd) and part.direction is Direction.DAEMON:
            return False
        if isinstance(part, Close) or (
            isinstance(part, HalfClose) and part.direction is Direction.CLIENT
        ):
            return True
    return False


def skip_reason(ex: Exchange) -> str | None:
    """Why the script cannot send this request again, or None when it can."""
    if ex.hijacked:
        reason = (
            f"the daemon hijacked this connection ({ex.hijacked}) for a raw stream, "
            "which curl cannot carry"
        )
        if _stdin(ex):
            reason += f"; {_stdin_note(ex)}"
        return reason
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


def _stdin_note(ex: Exchange) -> str:
    return (
        f"the {_stdin(ex)} bytes the client sent on it (stdin) are not sent, nor their end: "
        "a container reading its stdin waits for them until DOCKTAP_MAX_TIME ends what waits "
        "for the container"
    )


def _body_input(body: bytes, ids: Ids) -> tuple[str, str, list[str]]:
    """How the body reaches curl's stdin: a pipe in front of curl, a redirection after it,
    and the here-document's lines (its delimiter last). Ids are replaced in text bodies only."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.endswith("\n") and not _UNSAFE_TEXT.search(text):
        expanded = _heredoc_text(text, ids)
        lines = (text if expanded is None else expanded)[:-1].split("\n")
        delimiter, n = _DELIMITER, 1
        while delimiter in lines:
            n += 1
            delimiter = f"{_DELIMITER}_{n}"
        quoted = f"'{delimiter}'" if expanded is None else delimiter
        return "", f" <<{quoted}", [*lines, delimiter]
    encoded = base64.encodebytes(body).decode("ascii").rstrip("\n").split("\n")
    return f"base64 -d <<'{_DELIMITER}' | ", "", [*encoded, _DELIMITER]


@dataclass(frozen=True)
class _Step:
    """How the script sends one exchange."""

    ex: Exchange
    background: bool  # its answer was still coming when a later request started
    wait_for_head: bool  # and its head had come before that request started


def command(ex: Exchange, ids: Ids, step: _Step | None = None) -> list[str]:
    """The lines of the curl command for one exchange (one skip_reason() accepts), writing
    its status to `$answers/N` (and the answer to `.body` when it holds an id)."""
    name = _name(ex)
    args = [
        "curl -sS --globoff --path-as-is",
        f"--unix-socket {SOCKET}",
        f"--max-time {MAX_TIME}",
        f"-o {ANSWERS}/{name}.body" if returned_id(ex) is not None else "-o /dev/null",
        "-w '%{http_code}'",
    ]
    if step is not None and step.wait_for_head:
        args.append(f"-D {ANSWERS}/{name}.head")
    args.append("-I" if ex.method == "HEAD" else f"-X {quote(ex.method)}")
    has_type = False
    for header, value in ex.request_headers:
        lower = header.lower()
        if lower in _LEFT_TO_CURL:
            continue
        has_type = has_type or lower == "content-type"
        args.append("-H " + quote(f"{header}: {value}"))
    body = bytes(ex.request_body)
    pipe, redirect, heredoc = "", "", list[str]()
    if body:
        if not has_type:
            args.append("-H " + quote("Content-Type:"))  # not curl's form-encoded default
        args.append("--data-binary @-")
        pipe, redirect, heredoc = _body_input(body, ids)
    background = " &" if step is not None and step.background else ""
    lines = [pipe + args[0] + " \\"]
    lines += [f"  {arg} \\" for arg in args[1:]]
    lines.append(f"  {_word(BASE_URL + ex.target, ids)}{redirect} >{ANSWERS}/{name}{background}")
    return lines + heredoc


def _plan(exchanges: list[Exchange]) -> tuple[list[_Step], dict[int, list[Exchange]]]:
    """The steps, and the background exchanges to collect before step N (N = len: at the end)."""
    sent = [ex for ex in exchanges if skip_reason(ex) is None]
    steps, joins = list[_Step](), dict[int, list[Exchange]]()
    for i, ex in enumerate(sent):
        ended = ex.ended_mono if ex.ended_mono is not None else float("inf")
        later = sent[i + 1 :]
        background = any(other.started_mono < ended for other in later)
        head = ex.response_started_mono
        wait_for_head = background and head is not None and later[0].started_mono >= head
        steps.append(_Step(ex, background, wait_for_head))
        if background:
            join = next((j for j, o in enumerate(later, i + 1) if o.started_mono >= ended), None)
            joins.setdefault(len(sent) if join is None else join, []).append(ex)
    return steps, joins


def _collect(ex: Exchange, ids: Ids) -> list[str]:
    """The lines after an exchange's curl ended (`$?` its exit status): its status checked,
    its id read."""
    check = f"check {_name(ex)} {quote(ex.operation or 'unknown')} {quote(_recorded(ex))} $?"
    lines = [check + (" endless" if _client_ended(ex) else "")]
    recorded = returned_id(ex)
    key = ID_KEYS.get(ex.operation or "")
    if recorded is not None and key is not None:
        lines += _extract(ex, key)
        variable = _variable(ex)
        ids[recorded] = f"${{{variable}}}"
        if recorded.startswith("sha256:"):
            ids[recorded.removeprefix("sha256:")] = f"${{{variable}#sha256:}}"
    return lines


_FUNCTIONS = [
    "# The directory for the statuses curl got, and the answers the ids are read from.",
    "answers=$(mktemp -d) || exit 1",
    "trap 'rm -rf \"$answers\"' EXIT",
    'fail() { echo "$1" >&2; exit 1; }',
    "# check N OPERATION RECORDED EXIT [endless]: print the status line; stop unless the",
    "# status is the recorded one (--- when the capture has none) and curl (its EXIT status)",
    "# got the whole answer, or only DOCKTAP_MAX_TIME ended it (28) and the client had ended",
    "# it in the capture (endless)",
    "check() {",
    '  now=$(cat "$answers/$1" 2>/dev/null)',
    '  echo "#$1 $2 $3 ${now:-000}"',
    '  [ "$3" = --- ] || [ "${now:-000}" = "$3" ] ||',
    '    fail "#$1 $2: the daemon answered ${now:-000} where the capture has $3"',
    '  case "$4.$5" in',
    "  0.* | 28.endless) ;;",
    '  28.*) fail "#$1 $2: the answer did not end within DOCKTAP_MAX_TIME'
    + "'s "
    + '${DOCKTAP_MAX_TIME:-60} s, where the daemon ended it in the capture" ;;',
    '  *) fail "#$1 $2: curl failed (exit status $4) before the answer ended" ;;',
    "  esac",
    "}",
    "# head N PID: wait for the head of the answer to exchange N, or for its curl to end",
    "head_of() {",
    '  while [ ! -s "$answers/$1.head" ] && kill -0 "$2" 2>/dev/null; do sleep 0.1; done',
    "}",
    "",
]


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
        "# Each request prints one line: #N OPERATION RECORDED-STATUS STATUS-NOW, where #N is",
        "# the exchange number `docktap show` prints (STATUS-NOW is 000 when curl could not",
        "# reach the daemon, 'skipped' when the request cannot be sent again: the comment above",
        "# it says why). The script stops with status 1 at the first status other than the",
        "# recorded one. DOCKTAP_MAX_TIME (default 60) caps the seconds each request may take.",
        "# Ids the daemon made up are read from its answers into ID_N variables. This changes",
        "# the daemon's state the way the recorded client did.",
        "",
    ]
    lines += [f"# {_comment(line)}" for line in unread_lines(capture)]
    lines += _FUNCTIONS
    steps, joins = _plan(capture.exchanges)
    by_exchange = {id(step.ex): (n, step) for n, step in enumerate(steps)}
    ids: Ids = {}
    for ex in capture.exchanges:
        n, step = by_exchange.get(id(ex), (None, None))
        for done in joins.get(n, []) if n is not None else []:
            lines.append(f'wait "${_pid(done)}"')
            lines += _collect(done, ids)
        lines.append(f"# exchange #{ex.number}: {ex.operation or 'unknown operation'}")
        if step is None:
            lines.append(f"# skipped: {_comment(skip_reason(ex) or '')}")
            lines.append(f"#   {_comment(ex.method + ' ' + ex.target)}")
            lines.append(f"echo {quote(_label(ex) + ' skipped')}")
            if ex.hijacked and _stdin(ex):
                note = f"#{ex.number} {ex.operation}: {_stdin_note(ex)}"
                lines.append(f"echo {quote(note)} >&2")
        else:
            for name, _ in ex.request_headers:
                if name.lower() in _MASKED:
                    lines.append(
                        f"# {name} holds credentials docktap masked: put real ones in to "
                        "authenticate"
                    )
            lines += command(ex, ids, step)
            if step.background:
                lines.append(f"{_pid(ex)}=$!")
                if step.wait_for_head:
                    lines.append(f'head_of {_name(ex)} "${_pid(ex)}"')
            else:
                lines += _collect(ex, ids)
        lines.append("")
    for done in joins.get(len(steps), []):
        lines.append(f'wait "${_pid(done)}"')
        lines += _collect(done, ids)
    if joins.get(len(steps)):
        lines.append("")
    return "\n".join(lines)
