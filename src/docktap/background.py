"""A session's event loop on a thread of its own, for callers that are not async.

`record(...)` and `replay(...)` are async context managers at heart. A synchronous caller (the
pytest plugin, a script) enters them with a plain `with`: the session then runs on an event
loop in a daemon thread, entered and exited there, and `with` returns once it is serving.

asyncio is imported only once a loop is started: a session is built (and `docktap run` forks
its recorder) before asyncio is loaded, see recording/session.py.
"""

from __future__ import annotations

import threading
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, cast

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")
R = TypeVar("R")


class Background(Generic[T]):
    """Enters and exits an async context manager on a loop running in another thread."""

    def __init__(self, manager: AbstractAsyncContextManager[T], name: str) -> None:
        self._manager = manager
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _run(self, coroutine: Coroutine[Any, Any, R]) -> R:
        import asyncio

        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def enter(self) -> T:
        import asyncio

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=self._name, daemon=True)
        self._thread.start()
        try:
            return self._run(self._manager.__aenter__())
        except BaseException:
            self._stop()
            raise

    def exit(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> bool | None:
        try:
            return self._run(self._manager.__aexit__(kind, error, trace))
        finally:
            self._stop()

    def _stop(self) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._loop = self._thread = None


class Synchronous:
    """A plain `with` for an async context manager: it is entered on a Background loop.

    Sessions inherit from it and name their thread in `thread_name`.
    """

    thread_name = "docktap-session"
    _background: Background[Any] | None = None

    def __enter__(self) -> Self:
        manager = cast("AbstractAsyncContextManager[Self]", self)
        self._background = Background(manager, self.thread_name)
        entered: Self = self._background.enter()
        return entered

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        assert self._background is not None
        self._background.exit(kind, error, trace)
        self._background = None
