"""pytest plugin: tests that talk to Docker record once, then replay with no daemon at all.

The `docktap` fixture gives a test a DOCKER_HOST (set in the environment for the test's
duration, and on the fixture) that is either a recording relay in front of the real daemon or
the replay daemon serving the test's capture, depending on the record mode:

- `once` (the default off CI): replay the capture if it exists, else record it;
- `none` (the default when CI=true): replay only; a missing capture fails the test;
- `new_episodes`: replay the capture, and pass what it has no recording for to the daemon,
  recording that into a new episode beside it; replay then serves every episode, oldest first;
- `all`: record every run, replacing the capture (episodes are kept);
- `rewrite`: delete the capture and its episodes, then record.

Captures live beside the tests, in `captures/<test module>/<test name>.jsonl`. A request the
replay has no recording for fails the test, with the closest recording and what differs; with
`strict=True` a recording the test never used fails it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from docktap.capture.reader import load
from docktap.connecting import check
from docktap.recording.session import RecordSession, record, redact_env_patterns
from docktap.replay.match import MatchOptions
from docktap.replay.session import ReplaySession, replay
from docktap.replay.store import DEFAULT_REPEAT, Miss, Store
from docktap.upstream import Endpoint, resolve_upstream

MODES = ("once", "new_episodes", "none", "all", "rewrite")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_SESSION_KEY = pytest.StashKey["DocktapSession"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("docktap", "record and replay Docker API traffic")
    group.addoption(
        "--docktap-record-mode",
        choices=MODES,
        default=None,
        help="once (default), none (default when CI=true), new_episodes, all, rewrite.",
    )
    group.addoption(
        "--docktap-upstream",
        default=None,
        metavar="URL",
        help="Daemon to record from (default: DOCKER_HOST, docker context, default socket).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "docktap(capture=None, strict=False, ignore_query=False, ignore_body=False, "
        "ignore_json=(), exact_version=False, exact_body=False, free=(), "
        "repeat=('GET', 'HEAD'), speed=0): "
        "where the test's capture is and how its requests are matched on replay.",
    )


def record_mode(config: pytest.Config) -> str:
    chosen: str | None = config.getoption("--docktap-record-mode")
    if chosen is not None:
        return chosen
    return "none" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "once"


def capture_path(item: pytest.Item, name: str | None = None) -> Path:
    """`captures/<module>/<test>.jsonl` beside the test file, or the marker's name there."""
    module = Path(str(item.path))
    base = module.parent / "captures" / module.stem
    if name is not None:
        chosen = Path(name)
        return chosen if chosen.is_absolute() else base / chosen
    return base / f"{_UNSAFE.sub('_', item.name).strip('_')}.jsonl"


def _numbered_episodes(path: Path) -> list[tuple[int, Path]]:
    """The episodes recorded after the capture (`name.2.jsonl`, ...), by number."""
    found = []
    for candidate in path.parent.glob(f"{glob.escape(path.stem)}.*{path.suffix}"):
        number = candidate.name[len(path.stem) + 1 : -len(path.suffix)]
        if number.isdigit():
            found.append((int(number), candidate))
    return sorted(found)


def episodes(path: Path) -> list[Path]:
    """The capture and the episodes recorded after it, oldest first."""
    first = [path] if path.exists() else []
    return first + [episode for _, episode in _numbered_episodes(path)]


class DocktapReplayMiss(AssertionError):
    """The test sent requests its capture has no recording for (or left some unused)."""


@dataclass
class DocktapSession:
    """What the `docktap` fixture gives a test."""

    mode: str  # "record" or "replay"
    capture: Path
    host: str
    env: dict[str, str] = field(default_factory=dict)
    misses: list[Miss] = field(default_factory=list, repr=False)
    store: Store | None = field(default=None, repr=False)
    strict: bool = False

    def client(self, **kwargs: Any) -> Any:
        """A docker-py DockerClient talking to docktap (version negotiated, as with a daemon)."""
        import docker

        kwargs.setdefault("version", "auto")
        return docker.DockerClient(base_url=self.host, **kwargs)

    def failures(self) -> str | None:
        """Why the replay fails the test, readable; None when it does not."""
        lines = [miss.message for miss in self.misses]
        for miss in self.misses:
            if miss.closest is not None:
                ex = miss.closest.exchange
                # Named by the number `docktap show` prints, in the episode it came from.
                shown = f"docktap show {self.capture.with_name(miss.closest.source)}"
                lines.append(
                    f"  {miss.label} was: {ex.method} {ex.target} "
                    f"(`{shown} --exchange {miss.closest.number}`)"
                )
        if self.strict and self.store is not None:
            lines.extend(
                f"docktap replay: recording {self.store.label(r)} never used: "
                f"{r.exchange.method} {r.exchange.target}"
                for r in self.store.unused()
            )
        if not lines:
            return None
        return "\n".join([f"replaying {self.capture}:", *lines])


def _replay(
    paths: list[Path],
    listen: Endpoint,
    marker: pytest.Mark | None,
    on_miss: Callable[[Miss], None],
    fallback: Endpoint | None,
) -> ReplaySession:
    """The replay of the test's captures, matched as its marker says."""
    kwargs = dict(marker.kwargs) if marker is not None else {}
    options = MatchOptions(
        ignore_query=bool(kwargs.get("ignore_query", False)),
        ignore_body=bool(kwargs.get("ignore_body", False)),
        ignore_paths=tuple(kwargs.get("ignore_json", ())),
        exact_version=bool(kwargs.get("exact_version", False)),
        exact_body=bool(kwargs.get("exact_body", False)),
        free=tuple(kwargs.get("free", ())),
    )
    return replay(
        paths,
        listen,
        options=options,
        repeat=kwargs.get("repeat", DEFAULT_REPEAT),
        speed=float(kwargs.get("speed", 0.0)),
        on_miss=on_miss,
        fallback=fallback,
    )


def _record(listen: Endpoint, request: pytest.FixtureRequest, output: Path) -> RecordSession:
    """A recording relay in front of the real daemon, writing the test's capture.

    It masks what `docktap proxy` would: the default secrets and DOCKTAP_REDACT_ENV's.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    upstream, tls = _upstream(request)
    return record(output, listen, upstream, redact_env=redact_env_patterns(), upstream_tls=tls)


def _enter_recording(stack: contextlib.ExitStack, session: RecordSession) -> None:
    """Record until the stack unwinds; then fail if the recorder did not finish well."""

    def finished() -> None:
        if session.recorder_status != 0:
            raise RuntimeError(
                f"docktap recording failed: the recorder exited with {session.recorder_status}"
            )

    stack.callback(finished)  # before entering: it runs once the session is left
    stack.enter_context(session)


def _forget_if_empty(episode: Path) -> None:
    if not load(episode).exchanges:
        episode.unlink()  # nothing new happened: no episode


def _upstream(request: pytest.FixtureRequest) -> tuple[Endpoint, dict[str, Any] | None]:
    """The daemon to record from and, when it is spoken to in TLS, the header's `tls`.

    Resolved here, not passed on as a URL: a context's TLS material is not in its URL."""
    target = resolve_upstream(request.config.getoption("--docktap-upstream"))
    if target.path is not None:
        return target, None
    checked = asyncio.run(check(target))
    return checked.upstream, checked.tls_header()


def _record_target(path: Path, mode: str) -> Path:
    """Where this run's recording goes."""
    if mode == "new_episodes" and path.exists():
        last = max((number for number, _ in _numbered_episodes(path)), default=1)
        return path.with_name(f"{path.stem}.{last + 1}{path.suffix}")
    if mode == "rewrite":
        for old in episodes(path):
            old.unlink()
    return path


@pytest.fixture
def docktap(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A DOCKER_HOST for the test, recording from the daemon or replaying its capture."""
    marker = request.node.get_closest_marker("docktap")
    name = marker.kwargs.get("capture") if marker is not None else None
    if marker is not None and marker.args:
        name = marker.args[0]
    path = capture_path(request.node, name)
    mode = record_mode(request.config)
    replaying = mode == "none" or (mode == "once" and path.exists())
    if mode == "none" and not path.exists():
        pytest.fail(f"docktap: no capture {path} to replay (record mode none)", pytrace=False)
    recorded = episodes(path)  # before a new episode starts
    with contextlib.ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="docktap-"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        sock = Endpoint(path=str(workdir / "docker.sock"))
        fallback: Endpoint | None = None
        if mode == "new_episodes" and path.exists():
            # Replay what was recorded; what was not goes to the daemon and into a new episode.
            episode = _record_target(path, mode)
            fallback = Endpoint(path=str(workdir / "record.sock"))
            stack.callback(_forget_if_empty, episode)  # once its recording has ended
            _enter_recording(stack, _record(fallback, request, episode))
            replaying = True
        if replaying:
            misses: list[Miss] = []
            replayed = _replay(recorded, sock, marker, misses.append, fallback)
            session = DocktapSession("replay", path, sock.url, misses=misses, store=replayed.store)
            session.strict = bool(marker.kwargs.get("strict", False)) if marker else False
            stack.enter_context(replayed)
        else:
            _enter_recording(stack, _record(sock, request, _record_target(path, mode)))
            session = DocktapSession("record", path, sock.url)
        session.env = {"DOCKER_HOST": session.host, "TESTCONTAINERS_RYUK_DISABLED": "true"}
        for key, value in session.env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
        request.node.stash[_SESSION_KEY] = session
        yield session


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A replay miss fails the test itself, with its explanation, not as a teardown error."""
    __tracebackhide__ = True
    session = item.stash.get(_SESSION_KEY, None)
    try:
        result = yield
    except BaseException as failure:
        # The client usually fails on the miss's error answer: say what the miss was.
        explanation = session.failures() if session is not None else None
        if explanation is None:
            raise
        raise DocktapReplayMiss(explanation) from failure
    explanation = session.failures() if session is not None else None
    if explanation is not None:
        raise DocktapReplayMiss(explanation)
    return result
