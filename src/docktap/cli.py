"""The `docktap` command: wiring of relay, recorder and renderers, nothing more.

Each subcommand parses its options, builds the pieces from the modules that do the work, and
maps their errors to one clear line on stderr and an exit status.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence

import click

from docktap import __version__
from docktap.capture.format import DEFAULT_MAX_BODY, RecordEncoder
from docktap.capture.reader import CaptureError, Exchange, load
from docktap.capture.writer import CaptureWriter
from docktap.recorder import Recorder
from docktap.relay import Relay, RelayError
from docktap.upstream import Endpoint, EndpointError, parse_endpoint, resolve_upstream


def _say(message: str) -> None:
    click.echo(f"docktap: {message}", err=True)


def _default_capture_name() -> str:
    return time.strftime("docktap-%Y%m%d-%H%M%S.jsonl")


def _upstream(explicit: str | None) -> Endpoint:
    try:
        return resolve_upstream(explicit)
    except EndpointError as exc:
        raise click.UsageError(str(exc)) from exc


def _open_recorder(
    output: str, max_body: int, upstream: Endpoint, command: list[str] | None
) -> Recorder:
    try:
        writer = CaptureWriter.create(output, on_error=_say)
    except OSError as exc:
        raise click.ClickException(f"cannot write capture {output}: {exc.strerror}") from exc
    recorder = Recorder(writer, RecordEncoder(time.time(), time.monotonic(), max_body))
    recorder.start(upstream.url, command)
    return recorder


_LONG_ID = re.compile(r"\b([0-9a-f]{12})[0-9a-f]{52}\b")


def call_line(ex: Exchange) -> str:
    """One line per API call, as `docktap run` prints when the command ends."""
    status = str(ex.status) if ex.status is not None else "---"
    duration = f"{ex.duration_s * 1000:.1f}ms" if ex.duration_s is not None else "open"
    operation = ex.operation or "?"
    hijack = f" [{ex.hijacked}]" if ex.hijacked else ""
    target = _LONG_ID.sub(r"\1", ex.target)
    return (
        f"{ex.started_mono:8.3f}s  conn {ex.conn:<3} {status}  {operation:<24} "
        f"{ex.method} {target}  {duration}{hijack}"
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="docktap")
def main() -> None:
    """A tap on the Docker socket: relay, record and read Docker Engine API traffic."""


_max_body_option = click.option(
    "--max-body",
    type=click.IntRange(min=0),
    default=DEFAULT_MAX_BODY,
    show_default=True,
    help="Bytes of each body or stream kept in the capture; past it only size and sha256. 0: all.",
)
_upstream_option = click.option(
    "--upstream",
    metavar="URL",
    help="Daemon to relay to (unix:///path or tcp://host:port). "
    "Default: DOCKER_HOST, the current docker context, /var/run/docker.sock.",
)


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("-o", "--output", metavar="FILE", help="Capture file (default: docktap-TIME.jsonl).")
@_upstream_option
@_max_body_option
@click.option(
    "-q", "--quiet", is_flag=True, help="Print nothing of docktap's own on stderr but errors."
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(
    output: str | None, upstream: str | None, max_body: int, quiet: bool, command: Sequence[str]
) -> None:
    """Run CMD with DOCKER_HOST pointing at docktap, and record what it says to Docker.

    Example: docktap run -- docker run --rm busybox echo hi
    """
    argv = list(command)
    if output == "-":
        raise click.UsageError("run cannot write the capture to stdout: that is the command's")
    if shutil.which(argv[0]) is None and not os.path.exists(argv[0]):
        raise click.ClickException(f"command not found: {argv[0]}")
    target = _upstream(upstream)
    path = output or _default_capture_name()
    recorder = _open_recorder(path, max_body, target, argv)
    code = asyncio.run(_run(argv, target, recorder))
    if path != "-" and not quiet:
        _print_calls(path)
        _say(f"capture written to {path}")
    sys.exit(code)


def _print_calls(path: str) -> None:
    try:
        capture = load(path)
    except (OSError, CaptureError) as exc:
        _say(f"cannot read back the capture: {exc}")
        return
    for ex in capture.exchanges:
        click.echo(call_line(ex), err=True)


async def _run(argv: list[str], upstream: Endpoint, recorder: Recorder) -> int:
    workdir = tempfile.mkdtemp(prefix="docktap-")
    sock = os.path.join(workdir, "docker.sock")
    relay = Relay(upstream, recorder)
    try:
        await relay.listen(Endpoint(path=sock))
    except RelayError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise click.ClickException(str(exc)) from exc
    env = dict(os.environ)
    env["DOCKER_HOST"] = f"unix://{sock}"
    env.pop("DOCKER_CONTEXT", None)
    loop = asyncio.get_running_loop()
    try:
        process = await asyncio.create_subprocess_exec(*argv, env=env)
    except OSError as exc:
        await relay.close(grace=0)
        recorder.close(time.monotonic())
        shutil.rmtree(workdir, ignore_errors=True)
        raise click.ClickException(f"cannot run {argv[0]}: {exc.strerror}") from exc
    # Ctrl-C reaches the whole foreground group, the command included: let the command decide
    # what it means and keep relaying until it exits. A TERM aimed at docktap goes to the command.
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    loop.add_signal_handler(signal.SIGTERM, process.send_signal, signal.SIGTERM)
    try:
        code = await process.wait()
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
        await relay.close(grace=2.0)
        recorder.close(time.monotonic())
        shutil.rmtree(workdir, ignore_errors=True)
    return code if code >= 0 else 128 - code


@main.command()
@click.option(
    "--listen",
    "listen",
    required=True,
    metavar="PATH|tcp://127.0.0.1:PORT",
    help="Where clients connect.",
)
@_upstream_option
@click.option("-o", "--output", metavar="FILE|-", help="Capture file, - for stdout.")
@_max_body_option
@click.option(
    "--socket-mode",
    default="600",
    show_default=True,
    help="Permissions of the listening unix socket, in octal.",
)
def proxy(
    listen: str, upstream: str | None, output: str | None, max_body: int, socket_mode: str
) -> None:
    """Relay and record until SIGINT or SIGTERM."""
    try:
        endpoint = parse_endpoint(listen)
        mode = int(socket_mode, 8)
    except (EndpointError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    target = _upstream(upstream)
    path = output or _default_capture_name()
    recorder = _open_recorder(path, max_body, target, None)
    asyncio.run(_proxy(endpoint, mode, target, recorder))
    if path != "-":
        _say(f"capture written to {path}")


async def _proxy(endpoint: Endpoint, mode: int, upstream: Endpoint, recorder: Recorder) -> None:
    relay = Relay(upstream, recorder)
    try:
        await relay.listen(endpoint, socket_mode=mode)
    except RelayError as exc:
        recorder.close(time.monotonic())
        raise click.ClickException(str(exc)) from exc
    where = (
        endpoint.url if relay.bound_port is None else f"tcp://{endpoint.host}:{relay.bound_port}"
    )
    _say(f"listening on {where}, relaying to {upstream.url}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await relay.close(grace=1.0)
    recorder.close(time.monotonic())


@main.command()
@click.argument("capture", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per exchange.")
def show(capture: str, as_json: bool) -> None:
    """Show the exchanges in a capture."""
    try:
        loaded = load(capture)
    except CaptureError as exc:
        raise click.ClickException(str(exc)) from exc
    for ex in loaded.exchanges:
        if as_json:
            click.echo(json.dumps(ex.summary()))
        else:
            click.echo(call_line(ex))
