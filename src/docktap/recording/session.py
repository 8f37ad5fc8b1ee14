"""`record(...)`: a recording relay as a context manager, serving once it is entered.

Entering opens the capture (so that a bad path fails before anything starts), starts the
recording child (unless `fork_recorder()` already did, before any event loop), and binds the
listening socket; `async with` (or `with`, on a thread of its own) returns only once clients
can connect. It prints nothing: what to say, and where, is the caller's. Leaving stops
accepting, gives open connections `grace` seconds, and waits until the child has written the
whole capture.

Building a session and forking its recorder import neither asyncio nor the relay: `docktap
run` does both right after binding its socket, so that the recorder's imports overlap the
command's start-up and the relay's own imports, which come only when the session is entered.

The command line (`run`, `proxy`, `demo`), the pytest plugin and the benchmark all record
through here.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from docktap.background import Synchronous
from docktap.capture import lock as capture_lock
from docktap.capture.limits import DEFAULT_MAX_BODY
from docktap.envpatterns import REDACT_ENV_VAR, patterns_from_env
from docktap.outputs import OutputError, open_output
from docktap.recording import launch
from docktap.recording.wire import RecordingConfig
from docktap.upstream import Endpoint

if TYPE_CHECKING:
    from docktap.policy.actions import Decided
    from docktap.policy.guard import Guard
    from docktap.recording.launch import RecorderProcess
    from docktap.recording.link import RecorderLink
    from docktap.relay import Relay


class RecordError(Exception):
    """The recording cannot start (the capture cannot be written); the message says why."""


def redact_env_patterns(extra: Iterable[str] = ()) -> list[str]:
    """The secret name patterns of this environment (DOCKTAP_REDACT_ENV), then `extra`."""
    return [*patterns_from_env(os.environ.get(REDACT_ENV_VAR)), *extra]


class RecordSession(Synchronous):
    """A relay to `upstream`, listening on `listen`, recording into `output` (`-`: stdout):
    `async with record(...) as session` (or `with`) serves on `listen`.

    `redact_env` are the secret name patterns beyond the default ones (`redact_env_patterns()`
    gives those of the environment); `live` is "off", "rows" or "status" (rows on stderr, and a
    status line on a terminal); `audit` a level of findings to warn of on stderr; `command`
    the command line the capture header names; `upstream_tls` the header's `tls`, for a daemon
    spoken to in TLS (see `connecting.check`); `say` is given what the relay reports while it
    runs (clients refused for want of file descriptors); `guard` decides every request by
    its policy before it is forwarded (docktap.policy); `linger` how long leaving waits for
    the recorder at most (none: until it has written everything), after which it finishes on
    its own, the capture locked until it is done (`still_writing`, see capture/lock.py).
    `head_budget` is what the recorder may hold, over all connections, of heads not yet whole
    (64 MiB unless given); past it the oldest is recorded as cut. `bound` are `listen`'s
    sockets if they were bound already (binding.bind). `colour` and `width` are the
    --color and --width of the live rows and warnings (docktap.console). RecordError or
    ListenError say why it could not start.
    """

    thread_name = "docktap-record"

    def __init__(
        self,
        output: str | os.PathLike[str],
        listen: Endpoint,
        upstream: Endpoint,
        *,
        command: Sequence[str] | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        redact: bool = True,
        redact_env: Sequence[str] = (),
        live: str = "off",
        audit: str | None = None,
        socket_mode: int = 0o600,
        grace: float = 2.0,
        upstream_tls: dict[str, Any] | None = None,
        say: Callable[[str], None] | None = None,
        guard: Guard | None = None,
        linger: float | None = None,
        head_budget: int | None = None,
        bound: list[socket.socket] | None = None,
        colour: str = "auto",
        width: int | None = None,
    ) -> None:
        self.output = os.fspath(output)
        self.guard = guard
        self.listen = listen
        self.upstream = upstream
        self.command = list(command) if command is not None else None
        self.max_body = max_body
        self.redact = redact
        self.redact_env = list(redact_env)
        self.live = live
        self.audit = audit
        self.socket_mode = socket_mode
        self.grace = grace
        self.upstream_tls = upstream_tls
        self.say = say
        self.linger = linger
        self.head_budget = head_budget
        self.bound = bound
        self.colour = colour
        self.width = width
        self.endpoint = listen  # where clients connect, with the port bound for tcp://…:0
        self.recorder_status: int | None = None  # the child's exit status, once left
        self.still_writing = False  # left: the recorder was still writing after `linger`
        self._link: RecorderLink | None = None
        self._forked: RecorderProcess | None = None  # started by fork_recorder, not yet entered
        self._relay: Relay | None = None

    @property
    def host(self) -> str:
        """The DOCKER_HOST of this relay."""
        return self.endpoint.url

    @property
    def connections(self) -> int:
        """How many clients have connected so far: none means nothing was recorded."""
        return 0 if self._relay is None else self._relay.connections

    def fork_recorder(self, standing_by: launch.Standby | None = None) -> None:
        """Start the recorder now, as a fork of this process rather than a fresh interpreter:
        it has most of what it imports already (see recording/launch.py); `standing_by` if
        given, a fork made earlier, which gets its settings now. Only while no other thread
        and no event loop exists: the command line calls it before its loop starts.
        RecordError says why it could not start."""
        self._forked = self._spawn(fork=True, standing_by=standing_by)

    def _spawn(
        self, fork: bool = False, standing_by: launch.Standby | None = None
    ) -> RecorderProcess:
        fd = None
        if self.output != "-":
            try:
                # Opened before anything starts, so that a bad path is reported at once.
                fd = open_output(self.output, replace=True)
            except OutputError as exc:
                raise RecordError(f"cannot write capture {self.output}: {exc.reason}") from exc
            capture_lock.hold(fd)
        config = RecordingConfig(
            fd,
            self.max_body,
            self.upstream.url,
            self.command,
            time.time(),
            time.monotonic(),
            self.live,
            self.redact,
            tuple(self.redact_env),
            self.audit,
            upstream_tls=self.upstream_tls,
            head_budget=self.head_budget,
            colour=self.colour,
            width=self.width,
            policy=None if self.guard is None else "enforce" if self.guard.enforce else "warn",
        )
        # A recording backlog, if any, is spooled on the capture's disk.
        spool_dir = os.path.dirname(os.path.abspath(self.output)) if fd is not None else None
        try:
            return launch.start(config, spool_dir, fork, standing_by)
        finally:
            if fd is not None:
                os.close(fd)

    async def __aenter__(self) -> RecordSession:
        # Only now (see the module's docstring): these import asyncio.
        from docktap.listening import DescriptorShortage
        from docktap.recording.link import RecorderLink
        from docktap.relay import Relay

        process, self._forked = self._forked or self._spawn(), None
        link = RecorderLink(process)
        relay = Relay(self.upstream, link, DescriptorShortage(self.say), self.guard)
        if self.guard is not None:
            self.guard.report = _decisions_to(link)
        link.on_pause, link.on_resume = relay.pause_reading, relay.resume_reading
        await link.connect()
        try:
            await relay.listen(self.listen, self.socket_mode, self.bound)
        except BaseException:
            await link.stop(time.monotonic())
            raise
        self._link, self._relay = link, relay
        if relay.bound_port is not None:
            self.endpoint = Endpoint(host=self.listen.host, port=relay.bound_port)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        assert self._link is not None and self._relay is not None
        try:
            await self._relay.close(grace=self.grace)
        finally:
            self.recorder_status = await self._link.stop(time.monotonic(), self.linger)
            self.still_writing = self.recorder_status is None


#: A recording relay, the session's public name: `async with record(...) as session`.
record = RecordSession


def _decisions_to(link: RecorderLink) -> Callable[[int, Decided], None]:
    """The guard's decisions go into the capture; its denials, enforced or not, to stderr."""

    def report(conn: int, decided: Decided) -> None:
        decision = decided.decision
        link.decided(
            conn,
            {
                "seq": decided.seq,
                "allowed": decision.allowed,
                "enforced": decided.enforced,
                "operation": decision.operation,
                "reason": decision.reason,
                "message": decision.message,
            },
            time.monotonic(),
        )
        if not decision.allowed:
            tail = "" if decided.enforced else " (warn mode: forwarded)"
            print(f"{decision.message}{tail}", file=sys.stderr)

    return report
