"""The relay's link to the recorder child: a recorder that falls behind never holds the relay up.

These tests drive a real recorder child through `RecorderLink` with synthetic tap calls, and
stop the child (SIGSTOP) to make it fall behind on purpose: the backlog must go to the spool
without pausing the relay, or, when the spool cannot take it, pause the relay until the child
catches up; either way the capture must come out whole. No Docker daemon is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from tapping import checked_capture

from docktap.events import Direction
from docktap.recording import launch, spool
from docktap.recording.link import Policy, RecorderLink, State
from docktap.recording.wire import RecordingConfig
from docktap.tap import PeerCredentials

_EXCHANGES = 500  # with the big body, several times what the pipe holds
_BIG = 5 << 20  # a body past the default 1 MiB cap


def _inspect(i: int) -> tuple[bytes, bytes]:
    body = json.dumps({"Id": f"{i:064x}", "Config": {"Tty": False}, "Pad": "x" * 3500}).encode()
    request = f"GET /v1.41/containers/{i:064x}/json HTTP/1.1\r\nHost: docker\r\n\r\n".encode()
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return request, head + body


def _big_body() -> bytes:
    return bytes(range(256)) * (_BIG // 256)


def _start(tmp_path: Path) -> RecorderLink:
    fd = os.open(tmp_path / "c.jsonl", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    config = RecordingConfig(
        fd, 1 << 20, "unix:///nowhere", None, 1_700_000_000.0, 0.0, "off", redact=False
    )
    try:
        return RecorderLink(launch.start(config, str(tmp_path)))
    finally:
        os.close(fd)


async def _traffic(link: RecorderLink) -> None:
    """Many small exchanges on one connection, then a big download on another."""
    peer = PeerCredentials(os.getpid(), os.getuid(), os.getgid())
    link.opened(1, peer, 0.001)
    for i in range(_EXCHANGES):
        request, response = _inspect(i)
        link.data(1, Direction.CLIENT, request, 0.01)
        link.data(1, Direction.DAEMON, response, 0.02)
        if i % 10 == 0:
            await link.until_flushed()  # a turn of the relay's loop: the link writes a batch
    link.eof(1, Direction.CLIENT, 0.03)
    link.eof(1, Direction.DAEMON, 0.03)
    link.closed(1, 0.03)
    link.opened(2, None, 0.04)
    link.data(
        2, Direction.CLIENT, b"GET /v1.41/images/get?names=x HTTP/1.1\r\nHost: d\r\n\r\n", 0.05
    )
    body = _big_body()
    link.data(2, Direction.DAEMON, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % _BIG, 0.06)
    for start in range(0, _BIG, 256 << 10):
        link.data(2, Direction.DAEMON, body[start : start + (256 << 10)], 0.06)
        await link.until_flushed()
    link.closed(2, 0.07)


def _check(capture_path: Path) -> None:
    capture = checked_capture(capture_path)
    inspects = [ex for ex in capture.exchanges if ex.operation == "ContainerInspect"]
    assert len(inspects) == _EXCHANGES
    assert all(ex.status == 200 and ex.response_complete for ex in inspects)
    assert [ex.target for ex in inspects] == [
        f"/v1.41/containers/{i:064x}/json" for i in range(_EXCHANGES)
    ]
    (download,) = [ex for ex in capture.exchanges if ex.operation == "ImageGetAll"]
    assert download.response_body_size == _BIG
    assert download.response_sha256 == hashlib.sha256(_big_body()).hexdigest()
    assert len(download.response_body) == 1 << 20


@pytest.fixture
def stopped() -> Iterator[list[int]]:
    """Pids to SIGCONT whatever happens, so that no recorder child is left stopped."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def test_a_recorder_that_falls_behind_does_not_pause_the_relay(
    tmp_path: Path, stopped: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    spools: list[int | None] = []
    open_spool = spool.open_spool

    def spool_kept(directory: str | None) -> int | None:
        spools.append(open_spool(directory))
        return spools[-1]

    monkeypatch.setattr(spool, "open_spool", spool_kept)

    async def main() -> None:
        link = _start(tmp_path)
        pauses: list[str] = []
        link.on_pause, link.on_resume = lambda: pauses.append("pause"), lambda: None
        await link.connect()
        os.kill(link.process.pid, signal.SIGSTOP)  # the recorder reads nothing for now
        stopped.append(link.process.pid)
        await _traffic(link)
        assert pauses == []
        (spooled,) = spools
        assert spooled is not None
        assert os.fstat(spooled).st_dev == os.stat(tmp_path).st_dev  # next to the capture
        assert os.fstat(spooled).st_size > _BIG  # the backlog went there
        os.kill(link.process.pid, signal.SIGCONT)
        assert await link.stop(0.1) == 0

    asyncio.run(main())
    _check(tmp_path / "c.jsonl")


@pytest.mark.parametrize("why", ["full disk", "spool limit"])
def test_when_the_spool_cannot_take_the_backlog_the_relay_waits_for_the_recorder(
    why: str,
    tmp_path: Path,
    stopped: list[int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if why == "full disk":  # every write to /dev/full fails with ENOSPC
        monkeypatch.setattr(spool, "open_spool", lambda _: os.open("/dev/full", os.O_RDWR))
        reason = "No space left on device"
    else:
        monkeypatch.setattr(spool, "SPOOL_LIMIT", 1 << 20)
        monkeypatch.setattr(spool, "SPOOL_CHECK", 0)
        reason = "it holds its limit of 1 MiB"

    async def main() -> None:
        link = _start(tmp_path)
        events: list[str] = []
        paused, resumed = asyncio.Event(), asyncio.Event()

        def pause() -> None:
            events.append("pause")
            paused.set()

        def resume() -> None:
            events.append("resume")
            resumed.set()

        link.on_pause, link.on_resume = pause, resume
        await link.connect()
        os.kill(link.process.pid, signal.SIGSTOP)
        stopped.append(link.process.pid)
        traffic = asyncio.create_task(_traffic(link))
        await asyncio.wait_for(paused.wait(), 60)
        os.kill(link.process.pid, signal.SIGCONT)
        await asyncio.wait_for(resumed.wait(), 60)
        await traffic
        assert await link.stop(0.1) == 0
        assert events[:2] == ["pause", "resume"]

    asyncio.run(main())
    assert f"cannot spool the recording backlog ({reason})" in capsys.readouterr().err
    _check(tmp_path / "c.jsonl")


def test_until_flushed_returns_once_the_batch_has_left(tmp_path: Path, stopped: list[int]) -> None:
    async def main() -> None:
        link = _start(tmp_path)
        await link.connect()
        os.kill(link.process.pid, signal.SIGSTOP)  # the pipe fills and stays full
        stopped.append(link.process.pid)
        await link.until_flushed()  # nothing to flush: at once
        link.opened(1, None, 0.001)
        for i in range(_EXCHANGES):  # more than the pipe holds
            request, response = _inspect(i)
            link.data(1, Direction.CLIENT, request, 0.01)
            link.data(1, Direction.DAEMON, response, 0.02)
        assert _state(link.policy) is State.DIRECT  # all still in this turn's batch
        await link.until_flushed()
        assert _state(link.policy) is State.BEHIND  # the pipe took part, the spool the rest
        link.closed(1, 0.03)
        os.kill(link.process.pid, signal.SIGCONT)
        assert await link.stop(0.1) == 0

    asyncio.run(main())
    capture = checked_capture(tmp_path / "c.jsonl")
    inspects = [ex for ex in capture.exchanges if ex.operation == "ContainerInspect"]
    assert len(inspects) == _EXCHANGES


# -- the policy: where the next batch goes, in each state ----------------------------------------


def _state(policy: Policy) -> State:
    """The state now (a call, so that the checker does not pin it from an earlier look)."""
    return policy.state


def test_the_policy_sends_to_the_pipe_only_when_nothing_waits_and_the_relay_is_calm() -> None:
    policy = Policy()
    assert _state(policy) is State.DIRECT
    assert policy.to_pipe() and policy.may_announce()
    policy.behind()
    assert _state(policy) is State.BEHIND
    assert not policy.to_pipe() and policy.may_announce()
    policy.caught_up()
    assert _state(policy) is State.DIRECT and policy.to_pipe()


def test_a_busy_relay_spools_and_keeps_the_backlog_from_the_child_unless_paused_or_stopping() -> (
    None
):
    policy = Policy()
    policy.measured(cpu=0.006, elapsed=0.1)  # 6% of a core: busy
    assert policy.busy
    assert not policy.to_pipe() and not policy.may_announce()
    policy.behind()
    policy.holding()  # the spool refused: the relay is paused, the child must catch up
    assert _state(policy) is State.HOLDING and policy.may_announce()
    policy.released()
    assert _state(policy) is State.BEHIND and not policy.may_announce()
    policy.stopping = True
    assert policy.may_announce()
    policy.stopping = False
    policy.measured(cpu=0.004, elapsed=0.1)
    assert not policy.busy and policy.may_announce()


def test_a_lost_child_stays_lost() -> None:
    policy = Policy()
    policy.behind()
    policy.lost()
    for change in (policy.behind, policy.holding, policy.released, policy.caught_up):
        change()
        assert _state(policy) is State.LOST
    assert not policy.to_pipe()
