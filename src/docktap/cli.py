"""The `docktap` command: wiring of relay, recorder and renderers, nothing more.

Each subcommand parses its options, builds the pieces from the modules that do the work, and
maps their errors to one clear line on stderr and an exit status.
"""

from __future__ import annotations

import functools
import gc
import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterable
from typing import IO, TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar

import click

from docktap import __version__, running
from docktap.capture.limits import DEFAULT_MAX_BODY
from docktap.console import terminal_options
from docktap.levels import LEVELS, LIVE_LEVEL
from docktap.messages import say, show_warning
from docktap.policy.commands import make_guard, policy_options, reload_on_hangup
from docktap.policy.commands import policy as policy_commands

# Each command imports what it uses when it runs, the standard library's heavier modules
# included: a wrapped `docker version` should cost little more than the interpreter, and
# `--help` should not load asyncio, rich or the capture reader (tests/test_cli.py keeps it so).
if TYPE_CHECKING:
    import asyncio

    from docktap.capture.format import Record
    from docktap.capture.reader import Capture, Exchange, Incident
    from docktap.console import Terminal
    from docktap.recording.session import RecordSession
    from docktap.render.timeline import TimelineOptions
    from docktap.replay.session import ReplaySession
    from docktap.replay.store import Miss
    from docktap.upstream import Endpoint


T = TypeVar("T")

#: The exit status of `replay --strict` when it failed: not one a command commonly exits with,
#: so that a script can tell the replay's verdict from the command's own failure.
STRICT_FAILED = 8

#: The `version` of every --json output (show, stats, audit): within one version keys are only
#: ever added, so a script that reads them keeps working; a change of meaning bumps it.
JSON_VERSION = 1


def _run_errors(command: Callable[..., None]) -> Callable[..., None]:
    """The command, with what goes wrong in the steps of running.py said as click says it:
    a problem of the command line under the usage, any other on one line, status 1."""

    @functools.wraps(command)
    def mapped(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        except running.UsageProblem as exc:
            raise click.UsageError(str(exc)) from exc
        except running.RunError as exc:
            raise click.ClickException(str(exc)) from exc

    return mapped


def run_failed(error: running.RunError) -> NoReturn:
    """Say why a run that started without click (entry.py) failed, as `docktap run` through
    the command line would have, and exit with click's status for it."""
    context = click.Context(main, info_name="docktap")
    shown = (
        click.UsageError(str(error), click.Context(run, info_name="run", parent=context))
        if isinstance(error, running.UsageProblem)
        else click.ClickException(str(error))
    )
    shown.show()
    sys.exit(shown.exit_code)


def _load(path: str, leave_over: int | None = None) -> Capture:
    """A capture for a command that reads it once and exits (`leave_over` as for `load`)."""
    from docktap.capture import lock
    from docktap.capture.reader import CaptureError, CaptureWarning, load, loads

    writing = path != "-" and lock.being_written(path)
    if writing:
        say(
            f"note: {path} is still being written (a recorder holds it): "
            "this is what it holds so far; `show --follow` follows it"
        )
    try:
        with warnings.catch_warnings():
            if writing:
                # Its last line may be mid-write: that is not a cut-off capture.
                warnings.simplefilter("ignore", CaptureWarning)
            loaded = load(path, leave_over) if path != "-" else loads(_read_stdin(), "<stdin>")
    except CaptureError as exc:
        raise click.ClickException(str(exc)) from exc
    loaded.writing = writing and not loaded.complete  # it may have finished meanwhile
    # What was loaded stays until the command ends: the collector need not scan it again.
    gc.freeze()
    return loaded


def _read_stdin() -> bytes:
    """All of stdin: a capture piped in, as `docktap proxy -o - | docktap show -`.

    Ctrl-C at the terminal reaches the whole pipeline: the writer ends its capture on it, and
    a reader on a pipe keeps reading, so that what was recorded is shown rather than lost.
    """
    _outlive_ctrl_c()
    return sys.stdin.buffer.read()


def _outlive_ctrl_c() -> None:
    """Ignore SIGINT when stdin is a pipe: its writer ends the capture on Ctrl-C, and the
    pipe's end is where reading it ends."""
    if not sys.stdin.isatty():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="docktap")
@click.pass_context
def main(ctx: click.Context) -> None:
    """A tap on the Docker socket: relay, record and read Docker Engine API traffic."""
    # What docktap warns of reads as one line of its own, not as Python's warning with a path.
    ctx.with_resource(warnings.catch_warnings())
    warnings.showwarning = show_warning


_max_body_option = click.option(
    "--max-body",
    type=click.IntRange(min=0),
    default=DEFAULT_MAX_BODY,
    show_default=True,
    help="Bytes of each body or stream kept in the capture; past it only size and sha256. 0: all.",
)
_no_redact_option = click.option(
    "--no-redact",
    is_flag=True,
    help="Record secrets as sent: no masking of credentials, secret-looking env values, "
    "build args, secrets, join tokens.",
)
_redact_env_option = click.option(
    "--redact-env",
    "redact_env",
    multiple=True,
    metavar="NAME_PATTERN",
    help="Also mask env values whose name matches this regex or substring (any case); "
    "repeatable. DOCKTAP_REDACT_ENV adds comma-separated ones.",
)
_audit_option = click.option(
    "--audit",
    is_flag=True,
    help=f"Warn on stderr, as they happen, of risky calls ({LIVE_LEVEL} and above; "
    "see `docktap audit`).",
)


def _socket_mode(ctx: click.Context, param: click.Parameter, value: str) -> int:
    from docktap.binding import parse_socket_mode

    try:
        return parse_socket_mode(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc


_force_option = click.option(
    "-f", "--force", is_flag=True, help="Replace the file given with -o if it exists."
)
_socket_mode_option = click.option(
    "--socket-mode",
    default="600",
    show_default=True,
    callback=_socket_mode,
    help="Permissions of the listening unix socket, in octal.",
)
_ready_fd_option = click.option(
    "--ready-fd",
    type=click.IntRange(min=3),
    metavar="N",
    help="Once clients can connect, write the address and a newline to descriptor N, and close it.",
)
_upstream_option = click.option(
    "--upstream",
    metavar="URL",
    help="Daemon to relay to (unix:///path, a socket path, tcp://host:port or "
    "ssh://[user@]host[:port]), read with a scheme as the docker CLI reads -H. "
    "Default: DOCKER_HOST (as the docker CLI reads it: no scheme is tcp://), the current "
    "docker context, /var/run/docker.sock.",
)


def _tls_options(command: Callable[..., None]) -> Callable[..., None]:
    """TLS to a tcp:// daemon, with the docker CLI's names (it reads the same variables)."""
    options = [
        click.option(
            "--upstream-tls",
            is_flag=True,
            help="Speak TLS to a tcp:// daemon, without checking it unless --tlsverify "
            "(the docker CLI's --tls; DOCKER_TLS).",
        ),
        click.option(
            "--tlsverify/--no-tlsverify",
            default=None,
            help="TLS to a tcp:// daemon, checking its certificate and name against the CA "
            "(default: DOCKER_TLS_VERIFY); --no-tlsverify: encrypted, unchecked.",
        ),
        click.option(
            "--tlscacert",
            metavar="FILE",
            help="Trust certificates signed by this CA only (default: ca.pem in "
            "DOCKER_CERT_PATH, else ~/.docker).",
        ),
        click.option(
            "--tlscert",
            metavar="FILE",
            help="Client certificate to present (default: cert.pem there, if it exists).",
        ),
        click.option(
            "--tlskey",
            metavar="FILE",
            help="Key of the client certificate (default: key.pem there, if it exists).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("-o", "--output", metavar="FILE", help="Capture file (default: docktap-TIME.jsonl).")
@_force_option
@_upstream_option
@_tls_options
@_max_body_option
@_no_redact_option
@_redact_env_option
@_audit_option
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Print nothing of docktap's own on stderr but errors (no live rows of the calls).",
)
@policy_options
@terminal_options
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@_run_errors
def run(**arguments: Any) -> None:
    """Run CMD with DOCKER_HOST pointing at docktap, and record what it says to Docker.

    Each call CMD makes is shown on stderr as it completes, one timeline row (see `show`);
    CMD's own stdout is left untouched. CMD talks plain HTTP to docktap's private socket, so
    DOCKER_TLS_VERIFY, DOCKER_TLS and DOCKER_CERT_PATH are cleared for it; docktap itself
    speaks TLS to a tcp:// daemon when they (or the TLS options, or the context) ask for it.

    Example: docktap run -- docker run --rm busybox echo hi
    """
    from docktap.run_options import RunArguments

    running.run(RunArguments(**arguments))


@main.command()
@click.option(
    "--listen",
    "listen",
    required=True,
    metavar="PATH|tcp://127.0.0.1:PORT",
    help="Where clients connect (plain HTTP: TCP on loopback only).",
)
@_upstream_option
@_tls_options
@click.option("-o", "--output", metavar="FILE|-", help="Capture file, - for stdout.")
@_force_option
@_max_body_option
@_no_redact_option
@_redact_env_option
@_audit_option
@_socket_mode_option
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Print nothing of docktap's own on stderr but errors (no rows, no status line).",
)
@_ready_fd_option
@policy_options
@terminal_options
@_run_errors
def proxy(
    listen: str,
    upstream: str | None,
    upstream_tls: bool,
    tlsverify: bool | None,
    tlscacert: str | None,
    tlscert: str | None,
    tlskey: str | None,
    output: str | None,
    force: bool,
    max_body: int,
    no_redact: bool,
    redact_env: tuple[str, ...],
    audit: bool,
    socket_mode: int,
    quiet: bool,
    ready_fd: int | None,
    policy_file: str | None,
    policy_mode: str,
    colour: str,
    width: int | None,
) -> None:
    """Relay and record until SIGINT or SIGTERM.

    Each call is shown on stderr as it completes, one timeline row (see `show`); on a
    terminal a status line counts connections, requests, bytes each way and errors.
    """
    import asyncio

    from docktap.recording.session import record, redact_env_patterns
    from docktap.upstream import EndpointError, TLSOptions, parse_endpoint

    try:
        endpoint = parse_endpoint(listen)
    except EndpointError as exc:
        raise click.UsageError(str(exc)) from exc
    tls = TLSOptions(upstream_tls, tlsverify, tlscacert, tlscert, tlskey)
    target, tls_header = running.daemon(upstream, tls)
    guard = make_guard(policy_file, policy_mode)
    ready = _ready_file(ready_fd)
    with running.capture_file(output, force) as path:
        session = record(
            path,
            endpoint,
            target,
            max_body=max_body,
            redact=not no_redact,
            redact_env=redact_env_patterns(redact_env),
            live="off" if quiet else "status",
            audit=LIVE_LEVEL if audit else None,
            socket_mode=socket_mode,
            upstream_tls=tls_header,
            say=say,
            grace=0.5,  # with linger, the proxy is gone within 1 s of the signal
            guard=guard,
            linger=running.LINGER,
            colour=colour,
            width=width,
        )
        running.fork_recorder(session)
        asyncio.run(_proxy(session, quiet, ready))
    if path != "-" and not quiet:
        running.say_written(path, session.still_writing)


def _ready_file(fd: int | None) -> IO[bytes] | None:
    """The descriptor `--ready-fd` names, checked before anything starts."""
    if fd is None:
        return None
    try:
        return os.fdopen(fd, "wb", buffering=0, closefd=True)
    except OSError as exc:
        raise click.BadParameter(f"{fd}: {exc.strerror}", param_hint="--ready-fd") from exc


async def _proxy(session: RecordSession, quiet: bool, ready: IO[bytes] | None) -> None:
    async with running.started(session):
        if session.guard is not None:
            reload_on_hangup(session.guard)
        stop = _stop_on_signals()
        if not quiet:
            say(f"listening on {session.host}, relaying to {session.upstream.url}")
        if ready is not None:
            _tell_ready(ready, session.host)
        await stop.wait()


def _tell_ready(ready: IO[bytes], address: str) -> None:
    """Readiness for whoever waits on --ready-fd: the address, a newline, the end of the file.

    The end of the file is the signal, so a reader needs no parsing to wait; one that went
    away (a script that stopped waiting) is no reason to stop serving, nor to say anything.
    """
    fd = ready.fileno()
    try:
        with ready:
            ready.write(f"{address}\n".encode())
    except BrokenPipeError:
        pass
    except OSError as exc:
        say(f"--ready-fd {fd}: {exc.strerror}")


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM; a second one ends docktap at once.

    Set up before saying we listen: a signal sent as soon as we say so must end us cleanly.
    What is on disk stays: the recorder, on its own, records what it was sent and exits.
    """
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stopping(signum: int) -> None:
        if stop.is_set():
            os._exit(128 + signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping, signum)
    return stop


@main.command()
@click.argument("capture", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per exchange, and per incident."
)
@click.option("--bodies", is_flag=True, help="Bodies too: JSON pretty-printed, binary as hex.")
@click.option("--headers", is_flag=True, help="Headers too: > sent, < received, as recorded.")
@click.option("--explain", is_flag=True, help="A line explaining each operation.")
@click.option(
    "-f",
    "--follow",
    is_flag=True,
    help="Follow a capture being written, as tail -f: each exchange once it completes, until "
    "its recorder is done (or Ctrl-C).",
)
@click.option("--conn", "conns", type=int, multiple=True, metavar="N", help="On connection N.")
@click.option(
    "--exchange",
    "numbers",
    multiple=True,
    metavar="N",
    help="Exchange number N (#N in show, replay misses, audit, exports).",
)
@click.option("--op", "operations", multiple=True, metavar="GLOB", help="Operation matching GLOB.")
@click.option("--path", "paths", multiple=True, metavar="GLOB", help="Path matching GLOB.")
@click.option("--status", "statuses", multiple=True, metavar="4xx|404|2xx,5xx", help="Status.")
@click.option("--grep", metavar="TEXT", help="TEXT in the target, a body or stream output.")
@click.option("--since", type=float, metavar="SECONDS", help="Started SECONDS or more in.")
@click.option("--until", type=float, metavar="SECONDS", help="Started SECONDS or less in.")
@click.option(
    "--lines",
    "max_lines",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    metavar="N",
    help="Stream lines shown under an exchange (the first and last ones); 0: all.",
)
@terminal_options
def show(
    capture: str,
    as_json: bool,
    bodies: bool,
    headers: bool,
    explain: bool,
    follow: bool,
    conns: tuple[int, ...],
    numbers: tuple[str, ...],
    operations: tuple[str, ...],
    paths: tuple[str, ...],
    statuses: tuple[str, ...],
    grep: str | None,
    since: float | None,
    until: float | None,
    max_lines: int,
    colour: str,
    width: int | None,
) -> None:
    """Show the exchanges of a capture as a timeline, or as JSON.

    One row per exchange in time order: its number (#N, as replay misses, the audit and the
    exports name it; --exchange N shows it alone), time since the start, connection lane,
    operation, request, status, duration, bytes sent and received; under it, its streams and
    how long a long poll stayed open.

    The filters select exchanges for both views. --op and --path take shell globs (--op
    ignores case; --path matches with or without the /vX.Y prefix); times count from the
    capture start. All filters given must match; one given twice matches either value.

    With --follow, rows come as exchanges complete (their columns fixed, as in the live rows
    of `run`), and showing ends with the capture: when its recorder is done, or at the end
    of a pipe (`docktap proxy -o - | docktap show -f -`). Ctrl-C ends it with status 130.
    """

    from docktap.filters import Filter

    try:
        selected = Filter.from_options(
            conns, operations, paths, statuses, grep, since, until, numbers
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    from docktap.explain import explain as explain_operation

    note = explain_operation if explain and not as_json else None
    select = selected.matches if selected.active else None
    select_incidents = selected.matches_incident if selected.active else None
    if follow:
        options = (colour, width, bodies, headers, note, max_lines)
        rows = _JsonRows(select, select_incidents) if as_json else None
        _follow(capture, rows or _live_rows(*options, select=select))
        return
    loaded = _load(capture)
    try:
        if as_json:
            from docktap.capture.reader import in_time_order

            exchanges = [ex for ex in loaded.exchanges if select is None or select(ex)]
            incidents = [i for i in loaded.incidents if selected.matches_incident(i)]
            for item in in_time_order(exchanges, incidents):
                click.echo(_json_line(item))
            return
        _print_timeline(
            loaded, colour, width, bodies, note, max_lines, select, headers, select_incidents
        )
    except BrokenPipeError:
        _reader_gone()


def _json_line(item: Exchange | Incident) -> str:
    """An exchange, or an incident, as `show --json` prints it, on one line."""
    import json

    return json.dumps({"version": JSON_VERSION, **item.summary()})


def _reader_gone() -> None:
    """The reader of stdout went away (`| head`): stop quietly, and keep Python from
    complaining about the flush at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)


class _Rows(Protocol):
    """What `show --follow` prints records through (render.live.LiveView is one)."""

    failed: str | None

    def __call__(self, records: list[Record]) -> None: ...

    def finish(self) -> None: ...


def _live_rows(
    colour: str,
    width: int | None,
    bodies: bool,
    headers: bool,
    note: Callable[[str], str | None] | None,
    max_lines: int,
    select: Callable[[Exchange], bool] | None,
) -> _Rows:
    from docktap.console import terminal
    from docktap.render.live import LiveView

    term = terminal(sys.stdout, colour, width)
    options = _timeline_options(term, bodies, headers, note, max_lines, header=False)
    return LiveView(term.console(), options, select=select)


def _timeline_options(
    term: Terminal,
    bodies: bool,
    headers: bool,
    note: Callable[[str], str | None] | None,
    max_lines: int,
    header: bool = True,
) -> TimelineOptions:
    """What `show`'s options ask of the timeline, on this terminal; its live rows too."""
    from docktap.render.timeline import TimelineOptions

    return TimelineOptions(
        width=term.width,
        styled=term.colour,
        bodies=bodies,
        headers=headers,
        explain=note,
        max_lines=max_lines,
        header=header,
    )


class _JsonRows:
    """`show --follow --json`: the line of each exchange once it completes, and of each
    incident once it is settled (its unparsed bytes all counted): the lines of `show --json`,
    in the order they are done."""

    def __init__(
        self,
        select: Callable[[Exchange], bool] | None,
        select_incidents: Callable[[Incident], bool] | None,
    ) -> None:
        from docktap.capture.reader import Assembler

        self.assembler = Assembler(keep=False, settled=self._settled)
        self.select = select
        self.select_incidents = select_incidents
        self.failed: str | None = None

    def __call__(self, records: list[Record]) -> None:
        for record in records:
            self._print(self.assembler.feed(record))

    def finish(self) -> None:
        self._print(self.assembler.open_exchanges())
        for incident in self.assembler.open_incidents():
            self._settled(incident)

    def _print(self, exchanges: list[Exchange]) -> None:
        self._echo(ex for ex in exchanges if self.select is None or self.select(ex))

    def _settled(self, incident: Incident) -> None:
        if self.select_incidents is None or self.select_incidents(incident):
            self._echo([incident])

    def _echo(self, items: Iterable[Exchange | Incident]) -> None:
        try:
            for item in items:
                click.echo(_json_line(item))
        except BrokenPipeError:
            self.failed = "the reader went away"


def _follow(path: str, rows: _Rows) -> None:
    """Print a capture's exchanges as they are written, until the capture ends (see
    capture/follow.py); the records are assembled as they come, never read twice."""
    from docktap.capture.follow import follow
    from docktap.capture.reader import CaptureError

    if path == "-":
        _outlive_ctrl_c()
    try:
        for records in follow(path):
            rows(records)
            if rows.failed is not None:
                _reader_gone()
        rows.finish()
    except BrokenPipeError:
        _reader_gone()
    except CaptureError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        sys.exit(130)  # as a shell reports a command Ctrl-C ended
    if rows.failed is not None:
        _reader_gone()


def _print_timeline(
    loaded: Capture,
    colour: str = "auto",
    width: int | None = None,
    bodies: bool = False,
    note: Callable[[str], str | None] | None = None,
    max_lines: int = 10,
    select: Callable[[Exchange], bool] | None = None,
    headers: bool = False,
    select_incidents: Callable[[Incident], bool] | None = None,
) -> None:
    from docktap.console import print_lines, terminal
    from docktap.render import timeline

    term = terminal(sys.stdout, colour, width)
    options = _timeline_options(term, bodies, headers, note, max_lines)
    print_lines(term.console(), timeline.render(loaded, options, select, select_incidents))


@main.command("stats")
@click.argument("capture", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable statistics, one object.")
@terminal_options
def stats_command(capture: str, as_json: bool, colour: str, width: int | None) -> None:
    """Calls per operation, statuses, latency, bytes and connections of a capture.

    Columns the width cannot hold are given up, the least telling first. The --json shape is
    stable: see docs/stats-and-exports.md.
    """
    import json

    from docktap.console import terminal
    from docktap.render import stats as stats_render

    loaded = _load(capture)
    numbers = stats_render.compute(loaded)
    if as_json:
        click.echo(json.dumps({"version": JSON_VERSION, **numbers}, indent=2))
        return
    term = terminal(sys.stdout, colour, width)
    click.echo(stats_render.render(numbers, term.console()), nl=False, color=term.colour)


_EXPORT_FORMATS = ("har", "mermaid", "curl", "markdown", "html")


@main.command("export")
@click.argument("capture", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(_EXPORT_FORMATS),
    required=True,
    help="har: HTTP Archive 1.2; mermaid: sequence diagram; curl: shell script re-issuing "
    "the requests; markdown: a report; html: a self-contained web page.",
)
@click.option("-o", "--output", metavar="FILE|-", default="-", help="Where to write (default -).")
def export_command(capture: str, fmt: str, output: str) -> None:
    """Turn a capture into a HAR file, a Mermaid diagram, a curl script, a Markdown report or a
    web page."""
    import json

    from docktap.outputs import PRIVATE, PRIVATE_SCRIPT, OutputError, open_output
    from docktap.render import curl, har, markdown, mermaid

    loaded = _load(capture)
    if fmt == "har":
        text = json.dumps(har.to_har(loaded), indent=2, ensure_ascii=False) + "\n"
    elif fmt == "mermaid":
        text = mermaid.render(loaded)
    elif fmt == "curl":
        text = curl.render(loaded)
    elif fmt == "html":
        text = _page(loaded, capture)
    else:
        text = markdown.render(loaded)
    if output == "-":
        click.echo(text, nl=False)
        return
    # Exports hold what the capture holds, so they are as private as the capture.
    try:
        fd = open_output(output, replace=True, mode=PRIVATE_SCRIPT if fmt == "curl" else PRIVATE)
    except OutputError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        with open(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror}") from exc


def _page(loaded: Capture, path: str) -> str:
    from docktap.render import web

    return web.page(loaded, os.path.basename(path))


@main.command("view")
@click.argument("capture", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
def view_command(capture: str) -> None:
    """Open the capture as a web page in the browser (or print the page's path)."""
    import tempfile
    import webbrowser
    from pathlib import Path

    text = _page(_load(capture), capture)
    # mkstemp creates the file 0600 and never reuses a name: the page holds what the capture
    # holds. It is left behind on purpose, since the browser reads it after docktap exits.
    stem = os.path.splitext(os.path.basename(capture))[0]
    fd, path = tempfile.mkstemp(prefix=f"docktap-{stem}-", suffix=".html")
    with open(fd, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
    url = Path(path).as_uri()
    try:
        opened = webbrowser.open(url)
    except webbrowser.Error:
        opened = False
    if opened:
        say(f"opened {path}")
    else:
        click.echo(path)


@main.command("audit")
@click.argument("capture", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="The findings as one JSON object.")
@click.option(
    "--fail-on",
    "fail_on",
    type=click.Choice(LEVELS),
    metavar="LEVEL",
    help=f"Exit with status 1 when a finding is at LEVEL or above ({', '.join(LEVELS)}).",
)
@terminal_options
def audit_command(
    capture: str, as_json: bool, fail_on: str | None, colour: str, width: int | None
) -> None:
    """Find the risky requests in a capture, and the process that made each.

    Reads the capture only: no daemon is needed. Flags privileged containers, host paths and
    the Docker socket mounted in, added capabilities, host namespaces, host devices, disabled
    seccomp/AppArmor, execs into running containers and images without a digest, each with
    its level, the exchange, the caller's pid/uid/gid and, where one applies, the CIS Docker
    Benchmark item. A table on a terminal, else a listing. Exit status 0 unless --fail-on is
    given and met.
    """
    import json

    from docktap import audit
    from docktap.console import interactive, terminal
    from docktap.render import audit as views

    loaded = _load(capture)
    findings = audit.audit(loaded)
    term = terminal(sys.stdout, colour, width)
    if as_json:
        document = {
            "version": JSON_VERSION,
            "capture": capture,
            "counts": audit.counts(findings),
            "findings": [f.to_dict() for f in findings],
        }
        click.echo(json.dumps(document, indent=2))
    elif interactive(sys.stdout):
        term.console().print(views.table(findings, width=term.width))
    elif term.colour:
        from rich.text import Text

        listed = Text()
        for block, style in views.listing(findings, width=term.width):
            listed.append(block + "\n", style=style or None)
        term.console().print(listed, end="")
    else:
        click.echo(views.text(findings, width=term.width), nl=False)
    if fail_on is not None and audit.at_or_above(findings, fail_on):
        sys.exit(1)


class _FilesThenCommand(click.Command):
    """Arguments before `--` are this command's; everything after it is a command line.

    Click drops the `--` itself, so the split happens before it parses anything.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            args, ctx.meta["docktap.command"] = args[:cut], args[cut + 1 :]
        return super().parse_args(ctx, args)


def _repeat_methods(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from docktap.replay.store import parse_repeat

    try:
        parse_repeat(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc
    return value


@main.command("replay", cls=_FilesThenCommand)
@click.argument("captures", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--listen", metavar="PATH|tcp://127.0.0.1:PORT", help="Serve here until stopped.")
@_socket_mode_option
@click.option(
    "--speed",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Pace of streamed answers: 1 = as recorded, 2 = twice as fast, 0 = at once.",
)
@click.option(
    "--strict",
    is_flag=True,
    help=f"Exit with status {STRICT_FAILED} (whatever the command's) when a request found "
    "no recording.",
)
@click.option(
    "--report-unused",
    is_flag=True,
    help="List recordings never used when replay ends (with --strict, they fail it too).",
)
@click.option("--ignore-query", is_flag=True, help="Match requests without their query.")
@click.option("--ignore-body", is_flag=True, help="Match requests without their body.")
@click.option(
    "--ignore-json",
    "ignore_json",
    multiple=True,
    metavar="JSON_PATH",
    help="Leave this part of JSON bodies out of matching, like $.Env or $.Labels.*; repeatable.",
)
@click.option(
    "--exact-version",
    is_flag=True,
    help="Match the API version in paths too (by default /v1.41/x matches /v1.43/x).",
)
@click.option(
    "--free",
    multiple=True,
    metavar="PARAM|JSON_PATH",
    help="A field tests make up (a query parameter such as name, or a body path such as"
    " $.Labels.run): left out of matching, and the value sent stands for the recorded one in"
    " later requests; repeatable.",
)
@click.option(
    "--exact-body",
    is_flag=True,
    help="Match bodies byte for byte and queries as sent (by default, as dockerd reads them:"
    " defaults equal absent fields, tar bodies by content).",
)
@click.option(
    "--repeat",
    default="GET,HEAD",
    show_default=True,
    metavar="METHODS|all|none",
    callback=_repeat_methods,
    help="Methods whose last recorded answer is given again once all were played.",
)
@_redact_env_option
@click.option("-q", "--quiet", is_flag=True, help="Report nothing on stderr until replay ends.")
@_ready_fd_option
@terminal_options
@click.pass_context
@_run_errors
def replay_command(
    ctx: click.Context,
    captures: tuple[str, ...],
    listen: str | None,
    socket_mode: int,
    speed: float,
    strict: bool,
    report_unused: bool,
    ignore_query: bool,
    ignore_body: bool,
    ignore_json: tuple[str, ...],
    exact_version: bool,
    free: tuple[str, ...],
    exact_body: bool,
    repeat: str,
    redact_env: tuple[str, ...],
    quiet: bool,
    ready_fd: int | None,
    colour: str,
    width: int | None,
) -> None:
    """Serve captures as a Docker daemon, to real clients, with no Docker at all.

    Either `--listen` and serve until SIGINT or SIGTERM, or run the command after `--` with
    DOCKER_HOST pointing at the replay and exit with its status. Requests are answered with
    the recording of the same request (method, path without version, query, JSON body);
    a request with none gets a Docker-style error naming the closest recording.

    Example: docktap replay captures/run.jsonl -- docker run --rm bb sh -c 'echo out'
    """
    import asyncio

    from docktap.recording.session import redact_env_patterns
    from docktap.replay.match import MatchOptions, parse_json_path
    from docktap.replay.session import LEAVE_OVER, replay, source_names
    from docktap.upstream import EndpointError, parse_endpoint

    argv: list[str] = ctx.meta.get("docktap.command", [])
    if (listen is None) == (not argv):
        raise click.UsageError("give either --listen or a command after --")
    if ready_fd is not None and listen is None:
        raise click.UsageError("--ready-fd is for --listen: a command after -- runs once ready")
    ready = _ready_file(ready_fd)
    for path in ignore_json:
        try:
            parse_json_path(path)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--ignore-json") from exc
    for path in (f for f in free if f.startswith("$")):
        try:
            parse_json_path(path)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--free") from exc
    try:
        endpoint = parse_endpoint(listen) if listen is not None else None
    except EndpointError as exc:
        raise click.UsageError(str(exc)) from exc
    # What the daemon sent at length stays in the files, read as it is served.
    loaded = [
        (name, _load(path, LEAVE_OVER))
        for name, path in zip(source_names(captures), captures, strict=True)
    ]
    report = _Report(colour, width)
    if not quiet and not any(capture.exchanges for _, capture in loaded):
        say(f"warning: no exchanges in {', '.join(captures)}: every request will be a miss")

    def replaying(where: Endpoint) -> ReplaySession:
        return replay(
            loaded,
            where,
            options=MatchOptions(
                ignore_query, ignore_body, ignore_json, exact_version, exact_body, free
            ),
            repeat=repeat,
            speed=speed,
            redact_env=redact_env_patterns(redact_env),
            on_miss=None if quiet else report.miss,
            socket_mode=socket_mode,
        )

    if argv:
        with running.private_socket() as sock:
            session = replaying(sock)
            code = asyncio.run(running.command_served_by(session, argv, sock))
    else:
        assert endpoint is not None
        session = replaying(endpoint)
        asyncio.run(_replay_until_stopped(session, quiet, ready))
        code = 0
    failed = _replay_report(session, report_unused, report, captures)
    if strict and failed:
        code = STRICT_FAILED
    sys.exit(code)


class _Report:
    """What replay says on stderr, fitted to --width (broken at spaces, never in a word) and,
    with --color, a miss in yellow."""

    def __init__(self, colour: str = "auto", width: int | None = None) -> None:
        from docktap.console import terminal

        self.term = terminal(sys.stderr, colour, width)

    def say(
        self, message: str, indent: str = "docktap: ", style: str = "", whole: bool = False
    ) -> None:
        """`whole`: a command line to copy, never broken (a terminal wraps it, if need be)."""
        from docktap.render.text import wrap

        hanging = " " * (len(indent) + 2)
        lines = [indent + message] if whole else wrap(message, self.term.width, indent, hanging)
        if not self.term.colour or not style:
            click.echo("\n".join(lines), err=True)
            return
        from rich.text import Text

        self.term.console().print(Text("\n".join(lines), style=style), soft_wrap=True)

    def miss(self, miss: Miss) -> None:
        self.say(miss.message.removeprefix("docktap "), style="yellow")


async def _replay_until_stopped(
    session: ReplaySession, quiet: bool, ready: IO[bytes] | None
) -> None:
    async with running.started(session):
        stop = _stop_on_signals()
        if not quiet:
            say(f"replaying {len(session.store.recordings)} recorded exchanges on {session.host}")
        if ready is not None:
            _tell_ready(ready, session.host)
        await stop.wait()


def _replay_report(
    session: ReplaySession,
    report_unused: bool,
    report: _Report,
    captures: tuple[str, ...] = (),
) -> bool:
    """What went unmatched (and unused), on stderr; True when anything did. A miss's closest
    recording is named by its exchange number: the report says how to see it."""
    store = session.store
    for recording in session.server.truncated:
        if recording.truncated:
            kept = (
                f"with the first {recording.body_kept} of "
                f"{recording.exchange.response_body_size} body bytes"
            )
        else:
            kept = f"with the first {recording.stream_kept} bytes of its stream"
        report.say(
            f"replay: {store.label(recording)} answered {kept} "
            "(the capture kept no more; record with --max-body 0)"
        )
    if store.misses:
        report.say(f"replay: {len(store.misses)} request(s) had no recording:")
        for miss in store.misses:
            report.say(miss.message.removeprefix("docktap replay: "), "  ", "yellow")
        closest = next((m.closest for m in store.misses if m.closest is not None), None)
        if closest is not None and closest.number:
            import shlex
            from pathlib import PurePath

            named = (c for c in captures if PurePath(c).name == closest.source)
            path = next(named, closest.source)
            report.say(
                f"(`docktap show {shlex.quote(path)} --exchange {closest.number}` shows "
                f"{store.label(closest)} as recorded)",
                "  ",
                whole=True,
            )
    unused = store.unused() if report_unused else []
    if unused:
        report.say(f"replay: {len(unused)} recording(s) never used:")
        for recording in unused:
            ex = recording.exchange
            report.say(f"{store.label(recording)} {ex.method} {ex.target}", "  ")
    return bool(store.misses or unused)


@main.command()
@click.option("-o", "--output", metavar="FILE", help="Keep the capture the demo records in FILE.")
@_force_option
@click.option(
    "--no-docker", is_flag=True, help="Only show the bundled capture; do not run the docker CLI."
)
@terminal_options
@_run_errors
def demo(output: str | None, force: bool, no_docker: bool, colour: str, width: int | None) -> None:
    """See what `docker run` says to the daemon, with no Docker daemon at all.

    A bundled capture of `docker run` is served by docktap's replay daemon; the real docker
    CLI runs against it through docktap's recording relay, whose live rows show each call as
    it completes; then the recorded timeline is shown with a line explaining each call.
    Without the docker CLI, the bundled capture is shown instead.
    """
    import asyncio
    import shlex
    import shutil
    import tempfile
    from importlib.resources import as_file, files

    from docktap.explain import explain
    from docktap.recording.session import record
    from docktap.replay.session import replay
    from docktap.upstream import Endpoint

    with as_file(files("docktap") / "data" / "demo.jsonl") as bundled:
        recorded = _load(str(bundled))
    argv = list(recorded.header["command"])
    if no_docker or shutil.which("docker") is None:
        if not no_docker:
            say("the docker CLI is not installed: showing a recording of it instead")
        say(f"recorded: {shlex.join(argv)}")
        _print_timeline(recorded, colour, width, note=explain)
        return
    workdir = tempfile.mkdtemp(prefix="docktap-demo-")
    path = (
        running.claim_capture(output, force)[0] if output else os.path.join(workdir, "demo.jsonl")
    )
    daemon = Endpoint(path=os.path.join(workdir, "replay.sock"))
    replayed = replay([("demo.jsonl", recorded)], daemon, on_miss=_Report(colour, width).miss)
    say(f"a replayed daemon is answering; docktap relays and records: {shlex.join(argv)}")
    try:
        with running.private_socket() as sock:
            relay = record(
                path, sock, daemon, command=argv, live="rows", say=say, colour=colour, width=width
            )
            code = asyncio.run(_demo(replayed, relay, argv, sock))
        say(f"{argv[-1].split()[0]} exited with status {code}; what it said to the daemon:")
        _print_timeline(_load(path), colour, width, note=explain)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if output:
        say(f"capture written to {output}; see it again with: docktap show {output}")
    if replayed.store.misses:
        sys.exit(1)


async def _demo(
    replayed: ReplaySession, relay: RecordSession, argv: list[str], sock: Endpoint
) -> int:
    """The command through the recording relay, in front of the replayed daemon."""
    async with running.started(replayed):
        return await running.command_served_by(relay, argv, sock)


main.add_command(policy_commands)
