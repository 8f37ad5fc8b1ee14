"""The guard against the real daemon, with real clients: learn, enforce, deny.

A small workload is recorded through `docktap run`, a policy is learned from it, and the
workload runs again under the policy with the same output. Then every request that asks for
more (a privileged container, host mounts, the Docker socket, a host namespace, a capability,
a device, an exec or a removal never learned, and the raw spellings dockerd reads as privileged)
is denied by `docktap proxy --policy`: the client is told why, and the daemon's own container
list shows that nothing reached it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from dockerd import Daemon
from tapping import Proxy, docktap, docktap_run

from docktap import load

WORKLOAD = (
    "docker run --rm --network none bb echo hi && "
    "docker ps -a --filter name=pol-logs --format '{{.Names}} {{.Image}}' && "
    "docker logs pol-logs"
)
PRIVILEGED = b'{"Image":"bb","Cmd":["true"],"HostConfig":{"NetworkMode":"none","Privileged":true}}'


def containers(daemon: Daemon) -> list[str]:
    """Every container the daemon has, asked of it directly."""
    out = daemon.docker("ps", "-a", "--no-trunc", "--format", "{{.ID}}").stdout.decode()
    return sorted(out.split())


@pytest.fixture(scope="module")
def learned(dockerd: Daemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A policy learned from the workload, with the container `docker logs` reads."""
    where = tmp_path_factory.mktemp("policy")
    dockerd.docker("rm", "-f", "pol-logs", check=False)
    dockerd.docker("run", "--name", "pol-logs", "--network", "none", "bb", "echo", "logged")
    capture = where / "workload.jsonl"
    tapped = docktap_run(dockerd, capture, "sh", "-c", WORKLOAD)
    assert tapped.proc.returncode == 0, tapped.proc.stderr.decode()
    (where / "workload.out").write_bytes(tapped.proc.stdout)
    policy = where / "policy.yaml"
    done = docktap("policy", "learn", str(capture), "-o", str(policy))
    assert done.returncode == 0, done.stderr.decode()
    yield policy
    dockerd.docker("rm", "-f", "pol-logs", check=False)


def test_the_workload_runs_the_same_under_its_policy(
    dockerd: Daemon, learned: Path, tmp_path: Path
) -> None:
    text = learned.read_text()
    docker_cli = os.path.realpath(shutil.which("docker") or "docker")
    assert f'- client: {{uid: 0, exe: "{docker_cli}"}}' in text
    assert "  - operation: ContainerCreate  # workload.jsonl #2" in text
    assert "ContainerDelete" not in text and "ContainerExec" not in text
    before = (learned.parent / "workload.out").read_bytes()
    assert before == b"hi\npol-logs bb\nlogged\n"
    tapped = docktap_run(
        dockerd, tmp_path / "again.jsonl", "sh", "-c", WORKLOAD, options=["--policy", str(learned)]
    )
    assert tapped.proc.returncode == 0, tapped.proc.stderr.decode()
    assert tapped.proc.stdout == before
    decisions = [d for ex in tapped.capture.exchanges for d in ex.decisions]
    assert decisions and all(d.allowed and d.enforced for d in decisions)
    assert len(decisions) == len(tapped.capture.exchanges)


DENIED = {
    "privileged": (["--privileged"], "HostConfig.Privileged not allowed"),
    "host root": (["-v", "/:/host"], "HostConfig.Binds source / not allowed"),
    "docker socket": (
        ["-v", "/var/run/docker.sock:/var/run/docker.sock"],
        "the Docker socket mounted (/var/run/docker.sock) not allowed",
    ),
    "host pid": (["--pid", "host"], "HostConfig.PidMode=host not allowed"),
    "cap SYS_ADMIN": (["--cap-add", "SYS_ADMIN"], "HostConfig.CapAdd SYS_ADMIN not allowed"),
    "device": (["--device", "/dev/null"], "HostConfig.Devices /dev/null not allowed"),
}


def test_what_asks_for_more_is_denied_and_never_reaches_the_daemon(
    dockerd: Daemon, learned: Path, tmp_path: Path
) -> None:
    docker_cli = os.path.realpath(shutil.which("docker") or "docker")
    who = f"for uid 0 ({docker_cli})"
    proxy = Proxy(dockerd, tmp_path, "-q", "--policy", str(learned))
    before = containers(dockerd)
    try:
        for name, (options, reason) in DENIED.items():
            done = proxy.docker("run", "--rm", "--network", "none", *options, "bb", "true")
            assert done.returncode != 0, name
            expected = f"docktap policy: denied POST /containers/create: {reason} {who}"
            assert expected in done.stderr.decode(), (name, done.stderr)
        done = proxy.docker("exec", "pol-logs", "true")
        assert (
            f"docktap policy: denied POST /containers/pol-logs/exec: "
            f"ContainerExec not allowed {who}" in done.stderr.decode()
        ), done.stderr
        done = proxy.docker("rm", "pol-logs")
        assert f"ContainerDelete not allowed {who}" in done.stderr.decode(), done.stderr
        assert containers(dockerd) == before
        assert "pol-logs" in dockerd.docker("ps", "-a", "--format", "{{.Names}}").stdout.decode()
    finally:
        capture = proxy.stop()
    denied = [(ex, d) for ex in capture.exchanges for d in ex.decisions if not d.allowed]
    assert len(denied) == len(DENIED) + 2
    for ex, decision in denied:
        assert decision.enforced and ex.status == 403
    audit = json.loads(docktap("audit", "--json", str(proxy.capture_path)).stdout)
    rules = [f["rule"] for f in audit["findings"]]
    assert rules.count("policy-denied") == len(DENIED) + 2
    shown = docktap("show", str(proxy.capture_path)).stdout.decode()
    assert "denied by policy: HostConfig.Privileged not allowed" in shown


def _raw_policy(learned: Path, where: Path) -> Path:
    """The learned policy for any process of uid 0: raw clients here are this Python."""
    policy = where / "raw.yaml"
    lines = learned.read_text().splitlines()
    policy.write_text(
        "\n".join("- client: {uid: 0}" if line.startswith("- client:") else line for line in lines)
        + "\n"
    )
    return policy


def _exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send a request, read one whole answer (heads with Content-Length, as docktap's 403)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _create(body: bytes, version: bytes = b"1.1", chunked: bool = False) -> bytes:
    head = b"POST /v1.41/containers/create HTTP/" + version + b"\r\nHost: docker\r\n"
    head += b"Content-Type: application/json\r\n"
    if chunked:
        half = len(body) // 2
        return (
            head
            + b"Transfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:]))
            + b"0\r\n\r\n"
        )
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


RAW = {
    "lower-case keys": _create(
        b'{"image":"bb","cmd":["true"],"hostconfig":{"networkmode":"none","privileged":true}}'
    ),
    "duplicate keys": _create(
        b'{"Image":"bb","Cmd":["true"],"HostConfig":{"NetworkMode":"none","Privileged":false,'
        b'"Privileged":true}}'
    ),
    "HTTP/1.0": _create(PRIVILEGED, b"1.0"),
    "chunked body": _create(PRIVILEGED, chunked=True),
    "top-level HostConfig": _create(b'{"Image":"bb","Cmd":["true"],"Privileged":true}'),
}


def test_raw_spellings_dockerd_reads_as_privileged_are_denied(
    dockerd: Daemon, learned: Path, tmp_path: Path
) -> None:
    policy = _raw_policy(learned, tmp_path)
    proxy = Proxy(dockerd, tmp_path, "-q", "--policy", str(policy))
    before = containers(dockerd)
    try:
        for name, request in RAW.items():
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(proxy.socket))
                answer = _exchange(sock, request)
                assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n"), (name, answer)
                assert b"Content-Type: application/json" in answer
                message = json.loads(answer.partition(b"\r\n\r\n")[2])["message"]
                assert message == (
                    "docktap policy: denied POST /containers/create: "
                    "HostConfig.Privileged not allowed for uid 0 "
                    f"({os.path.realpath(sys.executable)})"
                ), name
                if b"HTTP/1.0" not in request:  # keep-alive: the connection goes on
                    ping = _exchange(sock, b"HEAD /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
                    assert ping.startswith(b"HTTP/1.1 200 OK"), (name, ping)
        assert containers(dockerd) == before
    finally:
        proxy.stop()


def test_a_type_error_in_a_field_the_guard_does_not_read_is_refused_by_dockerd(
    dockerd: Daemon, learned: Path, tmp_path: Path
) -> None:
    """The guard decodes only the fields it decides on: a body that is wrong elsewhere goes on
    to dockerd, which refuses all of it and creates nothing; one that also asks for a
    privilege is denied by the guard."""
    policy = _raw_policy(learned, tmp_path)
    proxy = Proxy(dockerd, tmp_path, "-q", "--policy", str(policy))
    before = containers(dockerd)
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(proxy.socket))
            body = b'{"Image":"bb","Cmd":["true"],"Hostname":1,"HostConfig":{"NetworkMode":"none"'
            answer = _exchange(sock, _create(body + b"}}"))
            # dockerd's own refusal (20.10 answers a decoding error with a 500)
            assert int(answer.split(b" ", 2)[1]) in (400, 500), answer
            message = json.loads(answer.partition(b"\r\n\r\n")[2])["message"]
            assert "cannot unmarshal number into Go struct field" in message
            assert "Hostname of type string" in message
            answer = _exchange(sock, _create(body + b',"Privileged":true}}'))
            assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n"), answer
            assert b"HostConfig.Privileged not allowed" in answer
        assert containers(dockerd) == before
    finally:
        proxy.stop()


def test_docker_py_is_held_to_its_policy(dockerd: Daemon, tmp_path: Path) -> None:
    script = (
        "import docker, sys\n"
        "client = docker.DockerClient(base_url=sys.argv[1], version='1.41')\n"
        "print(client.containers.run('bb', ['echo', 'from docker-py'], network_mode='none',"
        " remove=True).decode(), end='')\n"
        "print(len(client.containers.list(filters={'name': 'pol-nothing'})))\n"
    )
    capture = tmp_path / "py.jsonl"
    workload = [sys.executable, "-c", script]
    tapped = docktap_run(dockerd, capture, "sh", "-c", 'exec "$@" "$DOCKER_HOST"', "sh", *workload)
    assert tapped.proc.returncode == 0, tapped.proc.stderr.decode()
    assert tapped.proc.stdout == b"from docker-py\n0\n"
    policy = tmp_path / "py.yaml"
    assert docktap("policy", "learn", str(capture), "-o", str(policy)).returncode == 0
    again = docktap_run(
        dockerd,
        tmp_path / "py-again.jsonl",
        "sh",
        "-c",
        'exec "$@" "$DOCKER_HOST"',
        "sh",
        *workload,
        options=["--policy", str(policy)],
    )
    assert again.proc.stdout == tapped.proc.stdout, again.proc.stderr.decode()
    proxy = Proxy(dockerd, tmp_path, "-q", "--policy", str(policy))
    before = containers(dockerd)
    asks: dict[str, dict[str, Any]] = {
        "HostConfig.Privileged": {"privileged": True},
        "HostConfig.Binds source /": {"volumes": {"/": {"bind": "/host", "mode": "ro"}}},
        "HostConfig.CapAdd SYS_ADMIN": {"cap_add": ["SYS_ADMIN"]},
        "HostConfig.Devices /dev/null": {"devices": ["/dev/null:/dev/null:rwm"]},
        "HostConfig.PidMode=host": {"pid_mode": "host"},
    }
    try:
        for reason, options in asks.items():
            # docker-py runs in this very process here: the peer is this Python.
            client = docker.DockerClient(base_url=proxy.host, version="1.41")
            with pytest.raises(docker.errors.APIError) as caught:
                client.containers.run("bb", ["true"], network_mode="none", remove=True, **options)
            assert caught.value.status_code == 403
            assert f"{reason} not allowed for uid 0" in str(caught.value.explanation)
            client.close()
        assert containers(dockerd) == before
    finally:
        proxy.stop()


def test_an_import_learned_is_allowed_however_large_its_tarball(
    dockerd: Daemon, tmp_path: Path
) -> None:
    # The tarball `docker import -` sends (the busybox binary, some 2 MB) is the body of an
    # ImageCreate; the gate held it to the 1 MiB bound of the bodies it reads, and denied it.
    dockerd.docker("rm", "-f", "pol-export", check=False)
    dockerd.docker("create", "--name", "pol-export", "--network", "none", "bb", "true")
    command = (
        "docker export pol-export | docker import - pol-imp:1 >/dev/null && "
        "docker run --rm --network none pol-imp:1 echo imported && docker rmi pol-imp:1 >/dev/null"
    )
    try:
        capture = tmp_path / "import.jsonl"
        tapped = docktap_run(dockerd, capture, "sh", "-c", command)
        assert tapped.proc.returncode == 0, tapped.proc.stderr.decode()
        imports = [ex for ex in tapped.capture.exchanges if ex.operation == "ImageCreate"]
        assert len(imports) == 1 and imports[0].request_body_size > 1 << 20
        policy = tmp_path / "import.yaml"
        assert docktap("policy", "learn", str(capture), "-o", str(policy)).returncode == 0
        checked = docktap("policy", "check", str(policy), str(capture))
        assert checked.returncode == 0, checked.stdout.decode()
        again = docktap_run(
            dockerd,
            tmp_path / "again.jsonl",
            "sh",
            "-c",
            command,
            options=["--policy", str(policy)],
        )
        assert again.proc.returncode == 0, again.proc.stderr.decode()
        assert again.proc.stdout == tapped.proc.stdout == b"imported\n"
    finally:
        dockerd.docker("rm", "-f", "pol-export", check=False)
        dockerd.docker("rmi", "pol-imp:1", check=False)


def test_a_pull_learned_allows_its_tag_and_no_other(dockerd: Daemon, tmp_path: Path) -> None:
    # No registry listens on localhost:1: dockerd's error says a pull reached it. Only
    # fromImage was compared, so a policy learned from bb:1.0 let every tag of bb through.
    capture = tmp_path / "pull.jsonl"
    tapped = docktap_run(dockerd, capture, "docker", "pull", "localhost:1/bb:1.0")
    assert b"connection refused" in tapped.proc.stderr, tapped.proc.stderr
    policy = tmp_path / "pull.yaml"
    assert docktap("policy", "learn", str(capture), "-o", str(policy)).returncode == 0
    assert '- "localhost:1/bb:1.0"  # pull.jsonl #' in policy.read_text()
    proxy = Proxy(dockerd, tmp_path, "-q", "--policy", str(policy))
    try:
        same = proxy.docker("pull", "localhost:1/bb:1.0")
        assert b"connection refused" in same.stderr, same.stderr
        for other in ("localhost:1/bb:2.0", "localhost:1/bb@sha256:" + "a" * 64):
            done = proxy.docker("pull", other)
            assert done.returncode != 0
            assert b"connection refused" not in done.stderr, (other, done.stderr)
            assert f"image {other} not allowed for uid 0".encode() in done.stderr, done.stderr
        everything = proxy.docker("pull", "--all-tags", "localhost:1/bb")
        assert b"image localhost:1/bb not allowed for uid 0" in everything.stderr
    finally:
        proxy.stop()


def test_check_names_the_one_extra_call(dockerd: Daemon, learned: Path, tmp_path: Path) -> None:
    capture = tmp_path / "extra.jsonl"
    command = WORKLOAD + " && docker images -q >/dev/null"
    tapped = docktap_run(dockerd, capture, "sh", "-c", command)
    assert tapped.proc.returncode == 0
    checked = docktap("policy", "check", str(learned), str(capture), "--width", "400")
    assert checked.returncode == 1
    lines = checked.stdout.decode().splitlines()
    assert len(lines) == 2, lines
    images = next(ex for ex in load(capture).exchanges if ex.operation == "ImageList")
    assert lines[0].startswith(f"extra.jsonl #{images.number}: ")
    assert lines[0].endswith(
        "docktap policy: denied GET /images/json: "
        f"ImageList not allowed for uid 0 "
        f"({os.path.realpath(shutil.which('docker') or 'docker')})"
    )
    assert lines[1] == f"1 of {len(load(capture).exchanges)} exchanges denied by {learned}"


def test_sighup_reloads_and_a_bad_policy_is_kept_out(
    dockerd: Daemon, learned: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "live.yaml"
    policy.write_text(learned.read_text())
    # -q: the recorder's rows of the calls would come on stderr whenever it gets to them,
    # before or after the reload's line; what docktap says of the reload comes all the same.
    proxy = Proxy(dockerd, tmp_path, "--policy", str(policy), "-q")
    try:
        assert proxy.docker("ps", "-a", "--filter", "name=pol-logs").returncode == 0
        policy.write_text("docktap-policy: 1\nclients: [\n")
        proxy.process.send_signal(signal.SIGHUP)
        assert proxy.process.stderr is not None
        line = proxy.process.stderr.readline().decode()
        assert "not reloaded, the one in force stays" in line, line
        assert proxy.docker("ps", "-a", "--filter", "name=pol-logs").returncode == 0
        policy.write_text("docktap-policy: 1\nclients: []\n")
        proxy.process.send_signal(signal.SIGHUP)
        line = proxy.process.stderr.readline().decode()
        assert f"policy {policy} reloaded" in line, line
        done = proxy.docker("ps", "-a")
        assert "ContainerList not allowed" not in done.stderr.decode()
        assert "no rule for uid 0" in done.stderr.decode(), done.stderr
    finally:
        proxy.stop()


def test_a_policy_that_does_not_parse_is_refused_at_start(dockerd: Daemon, tmp_path: Path) -> None:
    policy = tmp_path / "bad.yaml"
    policy.write_text("docktap-policy: 1\nclients: {}\n")
    done = subprocess.run(
        [sys.executable, "-m", "docktap", "proxy", "--listen", str(tmp_path / "s.sock"),
         "--upstream", dockerd.host, "-o", str(tmp_path / "c.jsonl"), "--policy", str(policy)],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "clients: must be a list" in done.stderr.decode()
    assert not (tmp_path / "s.sock").exists()


def test_a_client_sending_behind_a_denial_behind_a_long_poll_is_paused_not_buffered(
    dockerd: Daemon, tmp_path: Path
) -> None:
    # A raw client pipelines `logs?follow=1` (an answer that lasts as long as the container), a
    # denied removal, then keeps sending: the 403 waits for the logs' end, and so does the
    # rest. docktap read it all into memory; now it stops reading the client, whose writes
    # block, until the daemon's answer ends.
    name = "pol-follow"
    dockerd.docker("rm", "-f", name, check=False)
    dockerd.docker(
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "none",
        "bb",
        "sh",
        "-c",
        "echo up; exec sleep 600",
    )
    policy = tmp_path / "follow.yaml"
    policy.write_text(
        "docktap-policy: 1\nclients:\n- client: any\n  allow:\n"
        '  - {operation: SystemPing, request: "GET /_ping"}\n'
        '  - {operation: ContainerLogs, request: "GET /containers/{id}/logs"}\n'
    )
    ping = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nX-Pad: %s\r\n\r\n" % (b"p" * 8000)
    pings = (2 << 20) // len(ping)
    filler = ping * pings
    proxy = Proxy(dockerd, tmp_path, "-q", "--policy", str(policy))
    try:
        with socket.socket(socket.AF_UNIX) as client, socket.socket(socket.AF_UNIX) as other:
            client.settimeout(60)
            client.connect(str(proxy.socket))
            other.settimeout(60)
            other.connect(str(proxy.socket))
            follow = f"GET /v1.41/containers/{name}/logs?follow=1&stdout=1 HTTP/1.1\r\n"
            client.sendall(follow.encode() + b"Host: docker\r\n\r\n")
            received = b""
            while b"up\n" not in received:  # the logs' answer has begun
                received += client.recv(65536)
            client.sendall(
                b"DELETE /v1.41/containers/%s HTTP/1.1\r\nHost: docker\r\n\r\n" % name.encode()
            )
            client.setblocking(False)
            sent, stalled = 0, False
            while sent < len(filler) and not stalled:
                try:
                    sent += client.send(filler[sent : sent + 65536])
                except BlockingIOError:
                    # A request on another connection, answered through docktap: its loop has
                    # run, and read this client if it could.
                    assert _exchange(other, ping).startswith(b"HTTP/1.1 200 OK\r\n")
                    try:
                        sent += client.send(filler[sent : sent + 65536])
                    except BlockingIOError:
                        stalled = True
            assert stalled, f"docktap read all {sent} bytes sent after the denial"
            # Held: at most docktap's bound and one read (256 KiB each); the rest waits in the
            # client's own socket buffer.
            assert sent <= (512 << 10) + client.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            client.settimeout(60)
            dockerd.docker("kill", name)  # the logs end, and the 403 is due

            def send_rest() -> None:
                client.sendall(filler[sent:])
                client.shutdown(socket.SHUT_WR)

            sender = threading.Thread(target=send_rest)
            sender.start()
            while chunk := client.recv(1 << 20):
                received += chunk
            sender.join()
        logs, forbidden, rest = received.partition(b"HTTP/1.1 403 Forbidden\r\n")
        assert forbidden and logs.endswith(b"0\r\n\r\n"), received[-300:]
        assert b"docktap policy: denied DELETE /containers/pol-follow" in rest
        # Then every ping, decided and answered as before.
        assert rest.count(b"HTTP/1.1 200 OK\r\n") == pings
        assert dockerd.docker("ps", "-a", "-q", "--filter", f"name={name}").stdout.strip()
    finally:
        proxy.stop()
        dockerd.docker("rm", "-f", name, check=False)


def test_a_clients_half_close_reaches_the_daemon_before_the_denial_behind_a_long_poll(
    dockerd: Daemon, tmp_path: Path
) -> None:
    # A raw client pipelines `GET /events`, which dockerd ends when its client's input ends,
    # and a denied kill, then half-closes, as curl and `docker run -i` end their input. The
    # half-close waited for the 403, which waited for the events' end, which waited for the
    # half-close: the client hung. Nothing after the poll is owed to the daemon, so the
    # half-close goes on at once: the events end, then the 403 comes, then the close.
    policy = tmp_path / "events.yaml"
    policy.write_text(
        "docktap-policy: 1\nclients:\n- client: any\n  allow:\n"
        '  - {operation: SystemEvents, request: "GET /events"}\n'
    )
    proxy = Proxy(dockerd, tmp_path, "-q", "--policy", str(policy))
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(60)
            client.connect(str(proxy.socket))
            client.sendall(
                b"GET /v1.41/events HTTP/1.1\r\nHost: docker\r\n\r\n"
                b"POST /v1.41/containers/nobody/kill HTTP/1.1\r\nHost: docker\r\n\r\n"
            )
            received = client.recv(65536)
            assert received.startswith(b"HTTP/1.1 200 OK\r\n"), received  # the poll is on
            client.shutdown(socket.SHUT_WR)
            while chunk := client.recv(65536):
                received += chunk
    finally:
        capture = proxy.stop()
    events, forbidden, denial = received.partition(b"HTTP/1.1 403 Forbidden\r\n")
    assert forbidden and events.endswith(b"\r\n0\r\n\r\n"), received
    assert b"docktap policy: denied POST /containers/nobody/kill" in denial
    (polled, killed) = capture.exchanges
    assert polled.operation == "SystemEvents" and polled.response_complete
    assert killed.status == 403 and not killed.decisions[0].allowed
    # Its decision is recorded after its request: the request waited for the poll's end.
    order = [(r["type"], r.get("seq")) for r in capture.records if r.get("conn") == killed.conn]
    assert order.index(("request", 2)) < order.index(("decision", 2))
