"""docker-py through `docktap proxy`: the Python client's streams and hijacks, recorded.

docker-py reads hijacked sockets itself and parses multiplexed frames with its own code, so it
is a second, independent witness that docktap forwards streams byte for byte.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from dockerd import Daemon
from tapping import Proxy, one, ops


@pytest.fixture
def proxy(dockerd: Daemon, tmp_path: Path) -> Iterator[Proxy]:
    proxy = Proxy(dockerd, tmp_path)
    yield proxy
    if proxy.process.poll() is None:
        proxy.process.kill()
        proxy.process.wait()


@pytest.fixture
def client(proxy: Proxy) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=proxy.host, version="auto", timeout=60)
    yield client
    client.close()


def _recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_containers_run(client: docker.DockerClient, proxy: Proxy) -> None:
    output = client.containers.run(
        "bb", ["sh", "-c", "echo out; echo err >&2"], network_mode="none", remove=True, stderr=True
    )
    assert sorted(output.splitlines()) == [b"err", b"out"]
    capture = proxy.stop()
    assert {"ContainerCreate", "ContainerStart", "ContainerWait", "ContainerLogs"} <= set(
        ops(capture)
    )
    logs = one(capture, "ContainerLogs")
    assert logs.output("stdout") == b"out\n"
    assert logs.output("stderr") == b"err\n"


def test_attach_socket_with_stdin(client: docker.DockerClient, proxy: Proxy) -> None:
    container = client.containers.create("bb", ["cat"], stdin_open=True, network_mode="none")
    try:
        hijacked = client.api.attach_socket(
            container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        )
        # docker-py hands out a file-like object (socket.SocketIO here), which cannot
        # half-close: its descriptor, a public part of it, makes a socket of the test's own on
        # the same connection.
        raw = socket.fromfd(hijacked.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)
        raw.settimeout(60)  # a relay that hangs fails the test rather than hanging it
        container.start()
        raw.sendall(b"through the hijack\n")
        raw.shutdown(socket.SHUT_WR)
        received = _recv_all(raw)
        raw.close()
        hijacked.close()
        assert container.wait(timeout=30)["StatusCode"] == 0
    finally:
        container.remove(force=True)
    # Non-TTY output is framed: stream 1 (stdout), three zero bytes, then the size.
    payload = b"through the hijack\n"
    assert received == b"\x01\x00\x00\x00" + len(payload).to_bytes(4, "big") + payload
    attach = one(proxy.stop(), "ContainerAttach")
    assert attach.hijacked == "tcp"
    assert attach.output("stdin") == payload
    assert attach.output("stdout") == payload


def test_exec_run_stream(client: docker.DockerClient, proxy: Proxy) -> None:
    container = client.containers.run("bb", ["sleep", "300"], detach=True, network_mode="none")
    try:
        # docker-py reads the 101 head through a buffered reader, then reads the bare socket:
        # output already sitting behind the head in one read is lost, with or without docktap.
        # So the exec prints only once docker-py has the head: when the FIFO is opened to write.
        assert container.exec_run(["mkfifo", "/tmp/go"]).exit_code == 0
        script = "cat /tmp/go; echo one; echo two >&2"
        result = container.exec_run(["sh", "-c", script], stream=True, demux=True)
        assert container.exec_run(["sh", "-c", ": > /tmp/go"]).exit_code == 0
        pieces = list(result.output)
    finally:
        container.remove(force=True)
    stdout = b"".join(out for out, _ in pieces if out)
    stderr = b"".join(err for _, err in pieces if err)
    assert (stdout, stderr) == (b"one\n", b"two\n")
    starts = [ex for ex in proxy.stop().exchanges if ex.operation == "ExecStart"]
    # The mkfifo, the script, the FIFO opened to write: only the script prints.
    assert [(ex.output("stdout"), ex.output("stderr")) for ex in starts] == [
        (b"", b""),
        (b"one\n", b"two\n"),
        (b"", b""),
    ]


def test_logs_stream(client: docker.DockerClient, proxy: Proxy) -> None:
    script = "for i in 1 2 3; do echo tick$i; sleep 0.2; done"
    container = client.containers.run("bb", ["sh", "-c", script], detach=True, network_mode="none")
    try:
        streamed = b"".join(container.logs(stream=True, follow=True))
    finally:
        container.remove(force=True)
    assert streamed == b"tick1\ntick2\ntick3\n"
    logs = one(proxy.stop(), "ContainerLogs")
    assert logs.output("stdout") == streamed


def test_events_decode(client: docker.DockerClient, proxy: Proxy) -> None:
    since = int(time.time()) - 1
    client.containers.run("bb", ["true"], network_mode="none", remove=True)
    until = int(time.time()) + 1
    events = list(client.events(since=since, until=until, decode=True))
    actions = [e.get("Action") for e in events if e.get("Type") == "container"]
    assert "start" in actions and "die" in actions
    recorded = one(proxy.stop(), "SystemEvents")
    assert len(bytes(recorded.response_body).splitlines()) == len(events)


def _attach_then_output(client: docker.APIClient) -> bytes:
    """docker-py's attach, streaming, to a container that prints only when told to, once
    docker-py has read the `101` head: what the stream brought.

    docker-py reads the head through http.client's buffer and the stream from the bare socket,
    so stream bytes that reach it with the head are lost (its own test_attach_no_stream, on the
    logs of an exited container, is flaky for that reason, directly as much as through a
    relay). Here there is no output until the head is read, and the daemon attaches to the
    container before it answers: whatever the stream lacks, the relay lost.
    """
    # The FIFO may not be made yet when the exec writes: then the exec makes a plain file,
    # mkfifo fails and cat prints the file. Either way `hello` comes once, after the exec.
    command = ["sh", "-c", "mkfifo /tmp/go; cat /tmp/go"]
    container = client.create_container(
        "bb", command, host_config=client.create_host_config(network_mode="none")
    )
    try:
        client.start(container)
        stream = client.attach(container, stream=True, logs=False)
        told = client.exec_create(container, ["sh", "-c", "echo hello > /tmp/go"])
        client.exec_start(told)
        received = b"".join(stream)  # to the end: cat, and so the container, exits
        assert client.wait(container, timeout=30)["StatusCode"] == 0
        return received
    finally:
        client.remove_container(container, force=True)


ATTACH_RUNS = 30


def test_attach_gets_the_stream_that_follows_the_head(dockerd: Daemon, proxy: Proxy) -> None:
    """Every time, through docktap as directly (the runs alternate: both see the same load)."""
    direct = docker.APIClient(base_url=dockerd.host, version="auto", timeout=60)
    tapped = docker.APIClient(base_url=proxy.host, version="auto", timeout=60)
    try:
        for _ in range(ATTACH_RUNS):
            assert _attach_then_output(direct) == b"hello\n"
            assert _attach_then_output(tapped) == b"hello\n"
    finally:
        direct.close()
        tapped.close()
    capture = proxy.stop()
    attaches = [ex for ex in capture.exchanges if ex.operation == "ContainerAttach"]
    assert len(attaches) == ATTACH_RUNS
    assert all(ex.status == 101 and ex.hijacked == "tcp" for ex in attaches)
    assert all(ex.output("stdout") == b"hello\n" for ex in attaches)
