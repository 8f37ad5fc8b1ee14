"""`replay(...)`: the replay daemon as a context manager, serving once it is entered.

The captures are loaded and their recordings stored when the session is made, with the large
payloads the daemon sent left in their files (the server reads them as it sends them, so a
replay's memory does not grow with the bodies it serves); entering binds
the socket, and `async with` (or `with`, on a thread of its own) returns once clients can
connect. Incoming requests are masked the way the captures' requests were before they are
compared, with the redaction settings each capture's header names. It prints nothing: misses
go to `on_miss`, and what is left unmatched or unused is on the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import PurePath
from types import TracebackType

from docktap.background import Synchronous
from docktap.capture.format import Record
from docktap.capture.reader import Capture, load
from docktap.redact import Redactor
from docktap.replay.match import MatchOptions
from docktap.replay.script import scripts
from docktap.replay.server import STALL_TIMEOUT, ReplayServer
from docktap.replay.store import DEFAULT_REPEAT, Miss, Store, build_store, parse_repeat
from docktap.upstream import Endpoint

#: Payloads the daemon sent of more than this many bytes are left in the capture file until
#: they are served; a smaller one costs about as much in its record as in its bytes.
LEAVE_OVER = 1 << 10


def redactor_for(headers: Iterable[Record], extra: Iterable[str] = ()) -> Redactor | None:
    """The masking that makes requests comparable with those recorded under these headers.

    None when no capture was masked (`--no-redact`); else the default rules with every extra
    name pattern any capture used, and `extra`. A header without the fields (docktap 0.1.0)
    was masked with the default rules.
    """
    names: list[str] = []
    masked = False
    for header in headers:
        if header.get("redact", True):
            masked = True
            names.extend(n for n in header.get("redact_env", []) if n not in names)
    names.extend(n for n in extra if n not in names)
    return Redactor(names) if masked else None


class ReplaySession(Synchronous):
    """The replay daemon serving `store` on `listen`."""

    thread_name = "docktap-replay"

    def __init__(
        self,
        store: Store,
        listen: Endpoint,
        redactor: Redactor | None,
        speed: float,
        on_miss: Callable[[Miss], None] | None,
        fallback: Endpoint | None,
        socket_mode: int,
        stall_timeout: float,
    ) -> None:
        self.store = store
        self.listen = listen
        self.redactor = redactor
        self.speed = speed
        self.on_miss = on_miss
        self.fallback = fallback
        self.socket_mode = socket_mode
        self.stall_timeout = stall_timeout
        self.endpoint = listen  # where clients connect, with the port bound for tcp://…:0
        self._server: ReplayServer | None = None

    @property
    def host(self) -> str:
        """The DOCKER_HOST of this replay."""
        return self.endpoint.url

    @property
    def server(self) -> ReplayServer:
        """The daemon, once the session was entered (what it answered with only in part)."""
        assert self._server is not None, "the session was not entered"
        return self._server

    async def __aenter__(self) -> ReplaySession:
        server = ReplayServer(
            self.store,
            self.speed,
            self.redactor,
            self.on_miss,
            self.fallback,
            stall_timeout=self.stall_timeout,
        )
        await server.listen(self.listen, socket_mode=self.socket_mode)
        self._server = server
        if server.bound_port is not None:
            self.endpoint = Endpoint(host=self.listen.host, port=server.bound_port)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.server.close()


def source_names(paths: Sequence[str | PurePath]) -> list[str]:
    """What each capture is called in the replay's labels (`run.jsonl#2`): its file name, or,
    when captures from other folders share it (a test's capture in each of two modules), its
    path as given, since the file name would name none of them."""
    names = [PurePath(path).name for path in paths]
    return [
        name if names.count(name) == 1 else str(path)
        for name, path in zip(names, paths, strict=True)
    ]


def replay(
    captures: Sequence[str | PurePath | tuple[str, Capture]],
    listen: Endpoint,
    *,
    options: MatchOptions | None = None,
    repeat: str | Iterable[str] = DEFAULT_REPEAT,
    speed: float = 0.0,
    redact_env: Sequence[str] = (),
    on_miss: Callable[[Miss], None] | None = None,
    fallback: Endpoint | None = None,
    socket_mode: int = 0o600,
    stall_timeout: float = STALL_TIMEOUT,
) -> ReplaySession:
    """The replay daemon: `async with replay(...) as session` (or `with`) serves on `listen`.

    `captures` are paths, or (name, capture) pairs already loaded; each recording is named
    after its capture's file. `repeat` is as `--repeat` takes it (see `parse_repeat`);
    `redact_env` adds secret name patterns to those the captures' headers name; `fallback`
    is a daemon that misses are passed to (the plugin's new episodes); `stall_timeout` as
    for ReplayServer. CaptureError says a capture cannot be read, ListenError that `listen`
    cannot be listened on.
    """
    paths = [entry for entry in captures if not isinstance(entry, tuple)]
    named = dict(zip(map(str, paths), source_names(paths), strict=True))
    loaded = [
        entry if isinstance(entry, tuple) else (named[str(entry)], load(entry, LEAVE_OVER))
        for entry in captures
    ]
    recordings = [r for name, capture in loaded for r in scripts(capture, name)]
    store = build_store(recordings, options, parse_repeat(repeat))
    redactor = redactor_for((capture.header for _, capture in loaded), redact_env)
    return ReplaySession(
        store, listen, redactor, speed, on_miss, fallback, socket_mode, stall_timeout
    )
