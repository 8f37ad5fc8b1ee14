"""`record(...)`: serving once entered, async or not, and a whole capture once left.

The daemon behind the relay is the replay daemon serving a recorded `docker version`, so no
Docker daemon is needed.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from pathlib import Path

import pytest
from tapping import checked_capture

from docktap.binding import ListenError
from docktap.recording.session import RecordError, record, redact_env_patterns
from docktap.replay.session import replay
from docktap.upstream import Endpoint

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
PING = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"


def _ping(path: str) -> bytes:
    """A ping on a fresh connection; the socket must accept at once (no retry, no wait)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        sock.sendall(PING)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_with_returns_serving_and_leaving_writes_the_whole_capture(tmp_path: Path) -> None:
    daemon = Endpoint(path=str(tmp_path / "daemon.sock"))
    relay = Endpoint(path=str(tmp_path / "relay.sock"))
    output = tmp_path / "c.jsonl"
    with (
        replay([CAPTURES / "version.jsonl"], daemon),
        record(output, relay, daemon, command=["docker", "version"]) as session,
    ):
        assert session.host == f"unix://{relay.path}"
        assert _ping(str(relay.path)).startswith(b"HTTP/1.1 200 OK\r\n")
    assert session.recorder_status == 0
    assert not os.path.exists(str(relay.path))  # the socket goes with the session
    capture = checked_capture(output)
    assert [ex.operation for ex in capture.exchanges] == ["SystemPing"]
    assert capture.header["command"] == ["docker", "version"]
    assert capture.header["upstream"] == daemon.url


def test_async_with_and_a_tcp_port_chosen_by_the_system(tmp_path: Path) -> None:
    daemon = Endpoint(path=str(tmp_path / "daemon.sock"))
    output = tmp_path / "c.jsonl"

    async def main() -> None:
        async with (
            replay([CAPTURES / "version.jsonl"], daemon),
            record(output, Endpoint(host="127.0.0.1", port=0), daemon) as session,
        ):
            assert session.endpoint.port not in (None, 0)
            assert session.host == f"tcp://127.0.0.1:{session.endpoint.port}"
            reader, writer = await asyncio.open_connection("127.0.0.1", session.endpoint.port)
            writer.write(PING)
            assert (await reader.read()).startswith(b"HTTP/1.1 200 OK\r\n")
            writer.close()

    asyncio.run(main())
    assert [ex.operation for ex in checked_capture(output).exchanges] == ["SystemPing"]


def test_a_capture_that_cannot_be_written_fails_before_anything_starts(tmp_path: Path) -> None:
    relay = tmp_path / "relay.sock"
    session = record(tmp_path / "no" / "c.jsonl", Endpoint(path=str(relay)), Endpoint(path="/x"))
    with pytest.raises(RecordError, match=r"cannot write capture .*c\.jsonl: No such file"):
        session.__enter__()
    assert not relay.exists()


def test_a_socket_that_cannot_be_bound_stops_the_recorder(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("not a socket")
    output = tmp_path / "c.jsonl"
    with (
        pytest.raises(ListenError, match="exists and is not a socket"),
        record(output, Endpoint(path=str(taken)), Endpoint(path="/x")),
    ):
        pass
    # The child was told to stop, and wrote what it had: the header and the footer.
    assert [r["type"] for r in checked_capture(output).records] == ["capture", "end-of-capture"]
    # And the loop thread the `with` started is gone with it.
    assert not [t for t in threading.enumerate() if t.name == "docktap-record"]


def test_the_environment_adds_redaction_patterns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKTAP_REDACT_ENV", "A_, ,B_")
    assert redact_env_patterns(["C_"]) == ["A_", "B_", "C_"]
    monkeypatch.delenv("DOCKTAP_REDACT_ENV")
    assert redact_env_patterns() == []
