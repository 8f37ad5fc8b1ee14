"""What `docktap run` does once its arguments are known, with no use for click.

`docktap run` is put in front of commands that take a few tens of ms, so its start-up is what
users feel most. The entry (entry.py) reads the usual command lines without click
(runline.py) and comes straight here; the command line (cli.py) comes here with what click
read from the others. The steps `run` shares with `proxy`, `replay` and `demo` are here too,
for cli.py: claiming the capture, finding the daemon, the private socket, entering a session,
waiting for a command.

What goes wrong is a `RunError`, one line for people, and a `UsageProblem` when the command
line asked for something that cannot be (cli.py shows it under the usage).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from docktap.levels import LIVE_LEVEL
from docktap.messages import say

# Imported where they are used: `run` starts its command before asyncio and the relay are
# loaded (see run), and the recorder's engine is the recorder's alone.
if TYPE_CHECKING:
    import socket
    import subprocess

    from docktap.policy.guard import Guard
    from docktap.recording.launch import Standby
    from docktap.recording.session import RecordSession
    from docktap.run_options import RunArguments
    from docktap.upstream import Endpoint, TLSOptions

T = TypeVar("T")

#: How long `run` and `proxy` wait for the recorder once the command or the proxy is done: past
#: it, the recorder finishes the capture on its own, and the status or the exit is not held up.
LINGER = 0.5


class RunError(Exception):
    """Why a command could not be run, relayed or recorded: one line for people."""


class UsageProblem(RunError):
    """A command line that asks for what cannot be done."""


def claim_capture(output: str | None, force: bool) -> tuple[str, bool]:
    """The capture's path, and whether this call created it (empty, private to us).

    A default name is the time to the microsecond, created exclusively: two runs started at
    once (a shell loop) each get a file of their own, with `-2`, `-3`… on a tie. A regular
    file given with `-o` is replaced only with `force`; a device or FIFO is written into.
    """
    import stat

    from docktap.outputs import OutputError, OutputExists, open_output

    if output == "-":
        return output, False
    if output is None:
        return _new_default_capture(), True
    try:
        os.close(open_output(output, replace=False))
    except OutputExists:
        if not force and stat.S_ISREG(os.lstat(output).st_mode):
            raise RunError(
                f"capture {output} exists: give --force to replace it, or another -o"
            ) from None
        return output, False
    except OutputError as exc:
        raise RunError(f"cannot write capture {output}: {exc.reason}") from exc
    return output, True


def _new_default_capture() -> str:
    import datetime

    from docktap.outputs import OutputError, OutputExists, open_output

    stem = datetime.datetime.now().strftime("docktap-%Y%m%d-%H%M%S-%f")
    name, count = f"{stem}.jsonl", 1
    while True:
        try:
            os.close(open_output(name, replace=False))
        except OutputExists:
            count += 1
            name = f"{stem}-{count}.jsonl"
            continue
        except OutputError as exc:
            raise RunError(f"cannot write capture {name}: {exc.reason}") from exc
        return name


@contextlib.contextmanager
def capture_file(output: str | None, force: bool) -> Iterator[str]:
    """The capture's path (see claim_capture); one this created goes if the command fails
    to start, so that a failed start leaves no empty capture behind."""
    path, created = claim_capture(output, force)
    try:
        yield path
    except RunError:
        if created:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        raise


def daemon(explicit: str | None, tls: TLSOptions) -> tuple[Endpoint, dict[str, Any] | None]:
    """The daemon to relay to, looked at once if it is on TCP, and the header's `tls` for it.

    What makes every client get a 502 (a certificate the daemon refuses, TLS where plain text
    was asked for, a certificate docktap does not trust) is said here once, on stderr.
    """
    from docktap.upstream import EndpointError, resolve_upstream

    try:
        target = resolve_upstream(explicit, options=tls)
    except EndpointError as exc:
        raise UsageProblem(str(exc)) from exc
    if target.path is not None:
        return target, None
    import asyncio

    from docktap.connecting import check

    checked = asyncio.run(check(target))
    if checked.problem is not None:
        say(f"cannot reach the Docker daemon at {target.url}: {checked.problem}")
    return checked.upstream, checked.tls_header()


def run(arguments: RunArguments) -> NoReturn:
    """Run the command with DOCKER_HOST pointing at docktap, recording what it says to
    Docker, and exit with its status (see `docktap run --help`).

    Ctrl-C before the command starts (later it is the command's to act on, see
    _start_command) ends docktap with status 130 and nothing said, whoever read the command
    line: the status a shell gives a command that Ctrl-C ended, so that a script tells an
    interrupted run from one that failed (1) or was misused (2), as it would for the command.
    """
    try:
        _run(arguments)
    except KeyboardInterrupt:
        sys.exit(130)


def _run(arguments: RunArguments) -> NoReturn:
    # Start-up makes next to no garbage, but the modules it imports make the collector run
    # dozens of times, a few ms of CPU: it waits until the relay serves (_serving_while), as
    # gc.freeze's recipe for a process that forks (here, the recorder) has it.
    gc.disable()
    argv = list(arguments.command)
    if arguments.output == "-":
        raise UsageProblem(
            "run cannot write the capture to stdout (-o -): stdout is the command's own; "
            "give -o a file name, or use `docktap proxy -o -`"
        )
    from docktap.recording import launch

    # The recorder is forked first (by the entry, as the process began, when it came through
    # it), to import its engine on the other core while the daemon is found, the capture
    # claimed and the socket bound; it gets its settings once they are.
    standing_by = launch.standby()
    if not _found(argv[0]):
        # Said now, as exec would say it, before the capture is claimed: a capture given with
        # --force is then left as it was, rather than replaced by a run that never started.
        if os.sep in argv[0] and os.path.exists(argv[0]):
            raise RunError(f"cannot run {argv[0]}: {os.strerror(errno.EACCES)}")
        raise RunError(f"command not found: {argv[0]}")
    from docktap.upstream import TLSOptions

    tls = TLSOptions(
        arguments.upstream_tls,
        arguments.tlsverify,
        arguments.tlscacert,
        arguments.tlscert,
        arguments.tlskey,
    )
    target, tls_header = daemon(arguments.upstream, tls)
    guard = _guard(arguments)
    with capture_file(arguments.output, arguments.force) as path, private_socket() as sock:
        # The socket is bound, the recorder forked and the command started before asyncio and
        # the relay are imported: the recorder's imports and the command's own start-up overlap
        # docktap's, the command's first connections waiting in the socket's backlog.
        bound = _bound(sock)
        from docktap.recording.session import record, redact_env_patterns

        session = record(
            path,
            sock,
            target,
            command=argv,
            max_body=arguments.max_body,
            redact=not arguments.no_redact,
            redact_env=redact_env_patterns(arguments.redact_env),
            live="off" if arguments.quiet else "rows",
            audit=LIVE_LEVEL if arguments.audit else None,
            upstream_tls=tls_header,
            say=say,
            grace=2.0,
            guard=guard,
            linger=LINGER,
            bound=bound,
            colour=arguments.colour,
            width=arguments.width,
        )
        fork_recorder(session, standing_by)
        process = _start_command(argv, sock)
        try:
            if target.path is not None:
                _without_ssl()
            import asyncio

            code = asyncio.run(_serving_while(session, process, guard))
        except BaseException:
            # Nothing serves it any more: it goes rather than wait on a backlog nobody reads.
            if process.poll() is None:
                process.kill()
                process.wait()
            raise
    if not arguments.quiet:
        if session.connections == 0:
            say(
                f"warning: {os.path.basename(argv[0])} never connected to docktap, so no call "
                "was recorded; if it used Docker, it reached it another way "
                "(docker -H or --context, a DOCKER_HOST of its own)"
            )
        say_written(path, session.still_writing)
    # All is done: the capture written or left to the recorder, the socket's directory gone.
    from docktap.exiting import leave

    leave(code)


def _found(command: str) -> bool:
    """Whether exec will find `command`: the file it names if it names a directory, else the
    first in $PATH, searched as exec searches it (os.get_exec_path). Not shutil.which: shutil
    brings bz2, lzma and fnmatch, 2 ms of CPU before the command starts."""
    if os.sep in command:
        candidates = [command]
    else:
        candidates = [os.path.join(directory, command) for directory in os.get_exec_path()]
    return any(os.access(path, os.X_OK) and not os.path.isdir(path) for path in candidates)


def _guard(arguments: RunArguments) -> Guard | None:
    """The guard for --policy, or None. Only click reads --policy (it checks the file is
    there), so a run with one comes from the command line, click loaded already."""
    if arguments.policy_file is None:
        return None
    from docktap.policy.commands import make_guard

    return make_guard(arguments.policy_file, arguments.policy_mode)


def _without_ssl() -> None:
    """Keep ssl out of this process: asyncio, imported next, takes it for its TLS transports.

    A relay to a unix socket never speaks TLS, and ssl, OpenSSL loaded, is a third of asyncio's
    import: 6 ms of CPU on the way to the command's first connection. A None in sys.modules
    makes any import of ssl fail (the import system's documented way to keep a module out);
    asyncio then loads as on an interpreter built without ssl. The recorder, forked already,
    is not concerned.
    """
    sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]


def fork_recorder(session: RecordSession, standing_by: Standby | None = None) -> None:
    """Start the recorder before the event loop does: a fork, cheaper than a new interpreter
    (`standing_by`, if one was forked earlier still)."""
    from docktap.recording.session import RecordError

    try:
        session.fork_recorder(standing_by)
    except RecordError as exc:
        raise RunError(str(exc)) from exc


def say_written(path: str, still_writing: bool) -> None:
    if still_writing:
        say(f"capture {path} is still being written by the recorder, in the background")
    else:
        say(f"capture written to {path}")


@contextlib.contextmanager
def private_socket() -> Iterator[Endpoint]:
    """A socket path in a directory of our own, for a command to reach docktap through."""
    from docktap.scratch import private_directory
    from docktap.upstream import Endpoint

    workdir = private_directory("docktap-")
    path = os.path.join(workdir, "docker.sock")
    try:
        yield Endpoint(path=path)
    finally:
        # The socket is all it holds (the relay may have removed it already): shutil.rmtree
        # only if something else is there, so that a run's end does not import shutil.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        try:
            os.rmdir(workdir)
        except OSError:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)


def _bound(sock: Endpoint) -> list[socket.socket]:
    """The listening socket at `sock`, bound before the event loop exists (see binding.py)."""
    from docktap.binding import ListenError, bind

    try:
        return bind(sock)
    except ListenError as exc:
        raise RunError(str(exc)) from exc


def _start_command(argv: list[str], sock: Endpoint) -> subprocess.Popen[bytes]:
    """Start a command with DOCKER_HOST set to `sock`, without asyncio (see `run`).

    Until the event loop takes over the signals (see command_waited), Ctrl-C is the command's
    to act on and a TERM aimed at docktap goes to the command, as they will be then.
    """
    import subprocess

    env = dict(os.environ)
    env["DOCKER_HOST"] = f"unix://{sock.path}"
    # The socket is private and plain: the command's TLS settings are for the daemon behind us.
    for name in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_TLS", "DOCKER_CERT_PATH"):
        env.pop(name, None)
    try:
        process = subprocess.Popen(argv, env=env)
    except OSError as exc:
        raise RunError(f"cannot run {argv[0]}: {exc.strerror}") from exc
    signal.signal(signal.SIGINT, lambda number, frame: None)
    signal.signal(signal.SIGTERM, lambda number, frame: process.send_signal(signal.SIGTERM))
    return process


async def _serving_while(
    session: AbstractAsyncContextManager[object],
    process: subprocess.Popen[bytes],
    guard: Guard | None = None,
) -> int:
    """Enter a session serving the socket a command started on, and wait for the command."""
    async with started(session):
        # Start-up is over (see run): what it loaded stays, and the collector need not scan it.
        gc.freeze()
        gc.enable()
        if guard is not None:
            from docktap.policy.commands import reload_on_hangup

            reload_on_hangup(guard)
        return await command_waited(process)


async def command_served_by(
    session: AbstractAsyncContextManager[object], argv: list[str], sock: Endpoint
) -> int:
    """Enter a session serving on `sock`, and run the command against it."""
    async with started(session):
        return await command_waited(_start_command(argv, sock))


@contextlib.asynccontextmanager
async def started(session: AbstractAsyncContextManager[T]) -> AsyncIterator[T]:
    """Enter a session; why it could not start is a RunError."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            entered = await stack.enter_async_context(session)
        except Exception as exc:
            # Imported only now: a session that starts has no use for them.
            from docktap.binding import ListenError
            from docktap.capture.errors import CaptureError
            from docktap.recording.session import RecordError

            if isinstance(exc, (ListenError, RecordError, CaptureError)):
                raise RunError(str(exc)) from exc
            raise
        yield entered


async def command_waited(process: subprocess.Popen[bytes]) -> int:
    """The command's exit status, shell-style, once it has exited; watched through a pidfd on
    the loop (where there are none, its Popen waits on a thread)."""
    import asyncio

    loop = asyncio.get_running_loop()
    # Ctrl-C reaches the whole foreground group, the command included: let the command decide
    # what it means and keep serving until it exits. A TERM aimed at docktap goes to the command.
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    loop.add_signal_handler(signal.SIGTERM, process.send_signal, signal.SIGTERM)
    try:
        try:
            pidfd = os.pidfd_open(process.pid)
        except OSError:
            code = await loop.run_in_executor(None, process.wait)
        else:
            try:
                exited: asyncio.Future[None] = loop.create_future()
                loop.add_reader(pidfd, exited.set_result, None)
                try:
                    await exited
                finally:
                    loop.remove_reader(pidfd)
            finally:
                os.close(pidfd)
            code = process.wait()
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
    return code if code >= 0 else 128 - code
