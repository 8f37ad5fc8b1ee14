"""`replay(...)`: serving once entered, masking requests the way their captures were masked."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from dockerd import Daemon
from tapping import docktap, docktap_run

from docktap.binding import ListenError
from docktap.capture.reader import load
from docktap.recording.session import record
from docktap.replay.session import redactor_for, replay
from docktap.replay.store import DEFAULT_REPEAT, Miss
from docktap.upstream import Endpoint

CAPTURES = Path(__file__).resolve().parent.parent / "captures"


def test_no_header_fields_means_the_default_masking() -> None:
    redactor = redactor_for([{"type": "capture"}])
    assert redactor is not None
    assert redactor.secret_name("DB_PASSWORD") and not redactor.secret_name("MYAPP_CODE")


def test_the_masking_is_what_the_captures_used_together() -> None:
    redactor = redactor_for(
        [
            {"redact": True, "redact_env": ["MYAPP_"]},
            {"redact": True, "redact_env": ["OTHER", "MYAPP_"]},
        ],
        ["EXTRA"],
    )
    assert redactor is not None
    assert list(redactor.extra_names) == ["MYAPP_", "OTHER", "EXTRA"]
    assert redactor.secret_name("MYAPP_CODE") and redactor.secret_name("EXTRA_1")


def test_captures_recorded_unmasked_are_compared_unmasked() -> None:
    assert redactor_for([{"redact": False, "redact_env": []}], ["EXTRA"]) is None


def _get(path: str, target: str) -> tuple[int, bytes]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_with_returns_serving_and_misses_go_to_on_miss(tmp_path: Path) -> None:
    sock = str(tmp_path / "d.sock")
    misses: list[Miss] = []
    session = replay([CAPTURES / "version.jsonl"], Endpoint(path=sock), on_miss=misses.append)
    assert session.store.recordings[0].source == "version.jsonl"
    with session:
        status, body = _get(sock, "/v1.41/version")
        assert status == 200 and json.loads(body)["ApiVersion"]
        assert _get(sock, "/v1.41/info")[0] == 500
    assert len(misses) == 1 and session.store.misses == misses


def test_captures_of_one_file_name_are_named_by_their_paths(tmp_path: Path) -> None:
    # Named by the file name alone, a miss's closest `#2` and the `docktap show` hint could
    # be either capture's.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = tmp_path / "a" / "run.jsonl", tmp_path / "b" / "run.jsonl"
    first.write_bytes((CAPTURES / "run.jsonl").read_bytes())
    second.write_bytes((CAPTURES / "version.jsonl").read_bytes())
    session = replay([first, second, CAPTURES / "ps-a.jsonl"], Endpoint(path="unused.sock"))
    sources = {r.source for r in session.store.recordings}
    assert sources == {str(first), str(second), "ps-a.jsonl"}
    version = next(r for r in session.store.recordings if r.exchange.operation == "SystemVersion")
    assert session.store.label(version) == f"{second}#{version.number}"


def test_async_with_on_a_tcp_port_and_loaded_captures(tmp_path: Path) -> None:
    capture = load(CAPTURES / "version.jsonl")

    async def main() -> None:
        async with replay([("v.jsonl", capture)], Endpoint(host="127.0.0.1", port=0)) as s:
            assert s.endpoint.port not in (None, 0)
            reader, writer = await asyncio.open_connection("127.0.0.1", s.endpoint.port)
            writer.write(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
            assert (await reader.read()).startswith(b"HTTP/1.1 200 OK\r\n")
            writer.close()

    asyncio.run(main())


def test_repeat_is_taken_as_the_option_gives_it(tmp_path: Path) -> None:
    sock = Endpoint(path=str(tmp_path / "d.sock"))
    assert replay([CAPTURES / "version.jsonl"], sock).store.repeat == DEFAULT_REPEAT
    assert replay([CAPTURES / "version.jsonl"], sock, repeat="default").store.repeat == (
        DEFAULT_REPEAT
    )
    assert replay([CAPTURES / "version.jsonl"], sock, repeat=["all"]).store.repeat is None


def test_a_socket_that_cannot_be_bound_is_a_listen_error(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("")
    with (
        pytest.raises(ListenError, match="not a socket"),
        replay([CAPTURES / "version.jsonl"], Endpoint(path=str(taken))),
    ):
        pass


def _give_up_on_a_wait(
    path: str, target: str, waiting: Callable[[socket.socket], None]
) -> tuple[bytes, bytes]:
    """A client with a timeout on ContainerWait: it reads the head, waits (`waiting`), then
    gives up (half-closes) and reads what comes to the end. What came before it gave up (with
    the head), and after."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        sock.sendall(f"POST {target} HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n".encode())
        before = b""
        while b"\r\n\r\n" not in before:
            before += sock.recv(65536)
        waiting(sock)
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            before += sock.recv(65536)
        sock.setblocking(True)
        sock.shutdown(socket.SHUT_WR)
        after = b""
        while chunk := sock.recv(65536):
            after += chunk
    return before, after


def test_a_wait_the_client_gave_up_on_is_answered_when_it_gives_up(
    dockerd: Daemon, tmp_path: Path
) -> None:
    """Recorded for real: dockerd says "context canceled" only once the client has given up;
    the replay holds that answer until its client gives up too, so a timeout fires as it did."""
    started = dockerd.docker("run", "-d", "--network", "none", dockerd.image, "sleep", "60")
    container = started.stdout.decode().strip()
    target = f"/v1.41/containers/{container}/wait"
    capture = tmp_path / "wait.jsonl"
    relay = tmp_path / "relay.sock"
    try:
        with record(capture, Endpoint(path=str(relay)), Endpoint(path=str(dockerd.socket))):
            _, recorded = _give_up_on_a_wait(str(relay), target, lambda _: None)
    finally:
        dockerd.docker("rm", "-f", container)
    assert b"context canceled" in recorded

    sock = str(tmp_path / "d.sock")

    def round_trip(_: socket.socket) -> None:
        # On another connection: the replay has had every chance to answer by then.
        assert _get(sock, "/_ping")[0] == 200

    with replay([capture], Endpoint(path=sock)) as session:
        before, after = _give_up_on_a_wait(sock, target, round_trip)
    head, _, early = before.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and early == b""  # only the head, at once
    assert after == recorded
    assert session.store.misses == []


def _two_tests(first: str) -> list[str]:
    """Two tests run one after the other against one daemon: each creates its container (its
    set-up), then lists containers; a test whose set-up fails lists nothing."""
    listing = "docker ps -a --format '{{.Names}}'"
    tests = [f"docker create --name {n} --network none bb true >/dev/null" for n in (first, "two")]
    return ["sh", "-c", "; ".join(f"{test} && {listing}" for test in tests)]


def test_a_test_whose_set_up_missed_leaves_no_answer_to_the_next(
    dockerd: Daemon, tmp_path: Path
) -> None:
    capture = tmp_path / "tests.jsonl"
    try:
        recorded = docktap_run(dockerd, capture, *_two_tests("one")).proc
    finally:
        dockerd.docker("rm", "-f", "one", "two", check=False)
    assert recorded.stdout == b"one\ntwo\none\n"
    env = dict(dockerd.env, DOCKER_HOST=f"unix://{tmp_path}/no-daemon-here.sock")
    replayed = docktap("replay", str(capture), "-q", "--", *_two_tests("other"), env=env)
    assert b"no recorded exchange for POST /v1.41/containers/create" in replayed.stderr
    # The second test lists what it listed when recorded, not what the first one had.
    assert replayed.stdout == b"two\none\n", replayed.stderr.decode()


def test_a_body_left_in_the_capture_is_served_as_recorded(tmp_path: Path) -> None:
    capture = load(CAPTURES / "cp.jsonl")
    (download,) = (ex for ex in capture.exchanges if ex.operation == "ContainerArchive")
    sock = str(tmp_path / "d.sock")
    with replay([CAPTURES / "cp.jsonl"], Endpoint(path=sock)) as session:
        (recording,) = (r for r in session.store.recordings if r.exchange.target == download.target)
        assert any(p.left is not None for p in recording.pieces)  # read as it is served
        status, body = _get(sock, download.target)
    assert (status, body) == (200, bytes(download.response_body))
