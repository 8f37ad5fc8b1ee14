"""docktap in front of a daemon that only speaks TLS, configured as Docker documents it.

The daemon is a second private dockerd with `--tlsverify` on loopback TCP (the `tls_dockerd`
fixture); clients find it as the docker CLI does, through DOCKER_HOST, DOCKER_TLS_VERIFY and
DOCKER_CERT_PATH. What must hold: the commands behave as they do straight against the daemon,
the capture is the plain HTTP inside the TLS stream, and each way TLS can go wrong reaches the
client as a 502 that says which.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from certs import Certificates, Pair
from dockerd import Daemon
from tapping import Proxy, Tapped, checked_capture, docktap, one, ops

RUN = ["docker", "run", "--rm", "--network", "none", "bb"]


def tls_env(daemon: Daemon, cert_path: Path, host: str | None = None) -> dict[str, str]:
    """The client settings Docker's documentation gives for a TLS daemon."""
    env = dict(daemon.env)
    env["DOCKER_HOST"] = host or str(daemon.tcp_host)
    env["DOCKER_TLS_VERIFY"] = "1"
    env["DOCKER_CERT_PATH"] = str(cert_path)
    return env


def tapped_run(
    env: dict[str, str], capture: Path, *command: str, input: bytes | None = None
) -> Tapped:
    """`docktap run` finding the daemon from the environment, as the docker CLI would."""
    proc = docktap("run", "-q", "-o", str(capture), "--", *command, env=env, input=input)
    return Tapped(proc, checked_capture(capture))


def fingerprint(pair: Pair) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pair.cert.read_text())).hexdigest()


def test_docker_version_over_tls(
    tls_dockerd: Daemon, certificates: Certificates, tmp_path: Path
) -> None:
    env = tls_env(tls_dockerd, certificates.client)
    args = ("docker", "version", "--format", "{{.Server.APIVersion}}")
    direct = subprocess.run(args, env=env, capture_output=True, check=True, timeout=60)
    tapped = tapped_run(env, tmp_path / "c.jsonl", *args)
    assert (tapped.proc.returncode, tapped.proc.stdout) == (0, direct.stdout)
    assert ops(tapped.capture) == ["SystemPingHead", "SystemVersion"]
    header = tapped.capture.header
    assert header["upstream"] == tls_dockerd.tcp_host
    assert header["tls"] == {
        "verify": True,
        "subject": "commonName=daemon",
        "sha256": fingerprint(certificates.server),
    }


def test_the_command_talks_plain_text_to_a_private_socket(
    tls_dockerd: Daemon, certificates: Certificates, tmp_path: Path
) -> None:
    env = tls_env(tls_dockerd, certificates.client)
    env["DOCKER_TLS"] = "1"
    script = (
        "import os, stat; e = os.environ; s = e['DOCKER_HOST'].removeprefix('unix://');"
        "print([e.get(k) for k in ('DOCKER_TLS_VERIFY', 'DOCKER_TLS', 'DOCKER_CERT_PATH')],"
        " oct(stat.S_IMODE(os.stat(s).st_mode)), stat.S_ISSOCK(os.stat(s).st_mode))"
    )
    tapped = tapped_run(env, tmp_path / "c.jsonl", sys.executable, "-c", script)
    assert tapped.proc.stdout == b"[None, None, None] 0o600 True\n"


def test_docker_run_keeps_stdout_stderr_and_exit_code(
    tls_dockerd: Daemon, certificates: Certificates, tmp_path: Path
) -> None:
    env = tls_env(tls_dockerd, certificates.client)
    tapped = tapped_run(
        env, tmp_path / "c.jsonl", *RUN, "sh", "-c", "echo out; echo err >&2; exit 3"
    )
    assert (tapped.proc.returncode, tapped.proc.stdout, tapped.proc.stderr) == (
        3,
        b"out\n",
        b"err\n",
    )
    attach = one(tapped.capture, "ContainerAttach")
    assert (attach.output("stdout"), attach.output("stderr")) == (b"out\n", b"err\n")
    assert b'"StatusCode":3' in one(tapped.capture, "ContainerWait").response_body


def test_docker_run_i_ends_stdin_with_a_half_close_over_tls(
    tls_dockerd: Daemon, certificates: Certificates, tmp_path: Path
) -> None:
    env = tls_env(tls_dockerd, certificates.client)
    tapped = tapped_run(
        env, tmp_path / "c.jsonl", "docker", "run", "-i", "--rm", "--network", "none", "bb",
        "sh", "-c", "cat; echo done",
        input=b"one\ntwo\n",
    )  # fmt: skip
    assert (tapped.proc.returncode, tapped.proc.stdout) == (0, b"one\ntwo\ndone\n")
    attach = one(tapped.capture, "ContainerAttach")
    assert attach.output("stdin") == b"one\ntwo\n"
    halfclose = [
        r
        for r in tapped.capture.records
        if r["type"] == "halfclose" and r["conn"] == attach.conn and r["dir"] == "client"
    ]
    last_stdout = [
        r
        for r in tapped.capture.records
        if r["type"] == "frame" and r["conn"] == attach.conn and r["stream"] == "stdout"
    ][-1]
    # "done" is written once cat saw the end of stdin: it crossed TLS after the half-close.
    assert halfclose and last_stdout["mono"] >= halfclose[0]["mono"]
    assert attach.output("stdout") == b"one\ntwo\ndone\n"


def test_docker_logs_follow(
    tls_dockerd: Daemon, certificates: Certificates, tmp_path: Path
) -> None:
    script = "for i in 1 2 3; do echo line$i; echo warn$i >&2; sleep 0.3; done"
    cid = tls_dockerd.docker("run", "-d", "--network", "none", "bb", "sh", "-c", script)
    name = cid.stdout.decode().strip()
    env = tls_env(tls_dockerd, certificates.client)
    try:
        tapped = tapped_run(env, tmp_path / "c.jsonl", "docker", "logs", "-f", name)
    finally:
        tls_dockerd.docker("rm", "-f", name, check=False)
    assert tapped.proc.stdout == b"line1\nline2\nline3\n"
    assert tapped.proc.stderr == b"warn1\nwarn2\nwarn3\n"
    logs = one(tapped.capture, "ContainerLogs")
    assert logs.output("stdout") == b"line1\nline2\nline3\n"
    assert logs.output("stderr") == b"warn1\nwarn2\nwarn3\n"


def test_a_docker_context_with_tls_material(
    tls_dockerd: Daemon, certificates: Certificates, tmp_path: Path
) -> None:
    """A context made by the docker CLI itself: docktap reads its store as the CLI does."""
    env = dict(tls_dockerd.env, DOCKER_CONFIG=str(tmp_path / "config"))
    del env["DOCKER_HOST"]
    client = certificates.client
    docker_endpoint = (
        f"host={tls_dockerd.tcp_host},ca={client / 'ca.pem'},"
        f"cert={client / 'cert.pem'},key={client / 'key.pem'}"
    )
    subprocess.run(
        ["docker", "context", "create", "remote-tls", "--docker", docker_endpoint],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    env["DOCKER_CONTEXT"] = "remote-tls"
    tapped = tapped_run(
        env, tmp_path / "c.jsonl", "docker", "version", "--format", "{{.Server.Os}}"
    )
    assert (tapped.proc.returncode, tapped.proc.stdout) == (0, b"linux\n"), tapped.proc.stderr
    assert tapped.capture.header["upstream"] == tls_dockerd.tcp_host
    assert tapped.capture.header["tls"]["sha256"] == fingerprint(certificates.server)


def test_tls_without_verifying(
    tls_dockerd: Daemon, certificates: Certificates, tmp_path: Path
) -> None:
    """--no-tlsverify, as the CLI's --tlsverify=false: encrypted, the CA not even read."""
    env = tls_env(tls_dockerd, certificates.client)
    del env["DOCKER_TLS_VERIFY"]
    capture = tmp_path / "c.jsonl"
    proc = docktap(
        "run", "-q", "-o", str(capture), "--no-tlsverify", "--tlscacert", "/nonexistent/ca.pem",
        "--", "docker", "version", "--format", "{{.Server.Os}}",
        env=env,
    )  # fmt: skip
    assert (proc.returncode, proc.stdout) == (0, b"linux\n"), proc.stderr
    header = checked_capture(capture).header
    # Python decodes no certificate it did not verify: the fingerprint only.
    assert header["tls"] == {
        "verify": False,
        "subject": None,
        "sha256": fingerprint(certificates.server),
    }


@pytest.fixture
def tls_proxy(tls_dockerd: Daemon, certificates: Certificates, tmp_path: Path) -> Iterator[Proxy]:
    """`docktap proxy` with the TLS daemon as upstream, given by docktap's own TLS options."""
    client = certificates.client
    proxy = Proxy(
        tls_dockerd,
        tmp_path,
        "--tlsverify",
        *("--tlscacert", str(client / "ca.pem")),
        *("--tlscert", str(client / "cert.pem")),
        *("--tlskey", str(client / "key.pem")),
        upstream=tls_dockerd.tcp_host,
    )
    yield proxy
    if proxy.process.poll() is None:
        proxy.process.kill()
        proxy.process.wait()


def test_proxy_with_the_docker_cli(tls_proxy: Proxy) -> None:
    version = tls_proxy.docker("version", "--format", "{{.Server.APIVersion}}")
    assert version.returncode == 0, version.stderr
    run = tls_proxy.docker(*RUN[1:], "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (run.returncode, run.stdout, run.stderr) == (3, b"out\n", b"err\n")
    stdin = tls_proxy.docker("run", "-i", "--rm", "--network", "none", "bb", "cat", input=b"in\n")
    assert (stdin.returncode, stdin.stdout) == (0, b"in\n")
    capture = tls_proxy.stop()
    assert capture.header["tls"]["verify"] is True
    assert {"SystemVersion", "ContainerCreate", "ContainerAttach", "ContainerWait"} <= set(
        ops(capture)
    )


def test_docker_py_through_the_proxy_as_with_its_tls_config(
    tls_proxy: Proxy,
    tls_dockerd: Daemon,
    certificates: Certificates,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # requests lets these override the CA that TLSConfig gives it.
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    client = certificates.client
    tls = docker.tls.TLSConfig(
        client_cert=(str(client / "cert.pem"), str(client / "key.pem")),
        ca_cert=str(client / "ca.pem"),
        verify=True,
    )
    https = str(tls_dockerd.tcp_host).replace("tcp://", "https://")
    command = ["sh", "-c", "echo out; echo err >&2"]
    outputs = []
    for base_url, tls_config in ((https, tls), (tls_proxy.host, False)):
        api = docker.DockerClient(base_url=base_url, tls=tls_config, version="auto")
        try:
            outputs.append(
                api.containers.run("bb", command, network_mode="none", remove=True, stderr=True)
            )
        finally:
            api.close()
    # The two streams interleave as they come: the same lines, in any order.
    assert [sorted(output.splitlines()) for output in outputs] == [[b"err", b"out"]] * 2
    capture = tls_proxy.stop()
    assert {"ContainerCreate", "ContainerStart", "ContainerWait", "ContainerLogs"} <= set(
        ops(capture)
    )


# --- what goes wrong ----------------------------------------------------------------------


@contextlib.contextmanager
def tls_server(pair: Pair) -> Iterator[str]:
    """A loopback TLS server presenting `pair`; it only ever shakes hands."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pair.cert, pair.key)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                context.wrap_socket(conn, server_side=True).close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(timeout=10)


def assert_bad_gateway(env: dict[str, str], tmp_path: Path, reason: str) -> None:
    """docker version through docktap run: a 502 naming the daemon and the reason, twice said."""
    capture = tmp_path / "c.jsonl"
    proc = docktap("run", "-q", "-o", str(capture), "--", "docker", "version", env=env)
    stderr = proc.stderr.decode()
    said = f"cannot reach the Docker daemon at {env['DOCKER_HOST']}: "
    # docktap's own line, then the docker CLI's from the 502 body.
    assert f"docktap: {said}" in stderr.splitlines()[0], stderr
    assert stderr.count(said) >= 2 and reason in stderr, stderr
    assert proc.returncode != 0
    loaded = checked_capture(capture, allow_errors=True)
    assert {ex.status for ex in loaded.exchanges} == {502}
    assert all(reason in e["message"] for e in loaded.errors) and loaded.errors


@pytest.mark.parametrize(
    ("which", "reason"),
    [
        ("server_of_other_ca", "not trusted: unable to get local issuer certificate"),
        ("expired_server", "not trusted: certificate has expired"),
        ("server_for_another_name", "not trusted: IP address mismatch"),
    ],
)
def test_a_certificate_docktap_does_not_trust(
    dockerd: Daemon, certificates: Certificates, tmp_path: Path, which: str, reason: str
) -> None:
    with tls_server(getattr(certificates, which)) as host:
        assert_bad_gateway(tls_env(dockerd, certificates.client, host), tmp_path, reason)


def test_a_client_certificate_the_daemon_refuses(
    tls_dockerd: Daemon, certificates: Certificates, tmp_path: Path
) -> None:
    env = tls_env(tls_dockerd, certificates.client_of_other_ca)
    assert_bad_gateway(env, tmp_path, "the daemon refused docktap's client certificate")


@pytest.fixture
def plain_tcp(dockerd: Daemon) -> Iterator[str]:
    """The ordinary private daemon, in plain text on a loopback port (through socat)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    socat = subprocess.Popen(
        [
            "socat", "-d", "-d",
            f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
            f"UNIX-CONNECT:{dockerd.socket}",
        ],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert socat.stderr is not None
    try:
        line = socat.stderr.readline().decode()
        assert "listening on" in line, line
        yield f"tcp://127.0.0.1:{port}"
    finally:
        socat.kill()
        socat.wait()


def test_a_plain_daemon_where_tls_was_asked_for(
    dockerd: Daemon, certificates: Certificates, plain_tcp: str, tmp_path: Path
) -> None:
    env = tls_env(dockerd, certificates.client, plain_tcp)
    assert_bad_gateway(env, tmp_path, "TLS was asked for, but the daemon does not speak TLS")


def test_a_tls_daemon_where_plain_text_was_asked_for(tls_dockerd: Daemon, tmp_path: Path) -> None:
    env = dict(tls_dockerd.env, DOCKER_HOST=str(tls_dockerd.tcp_host))
    assert_bad_gateway(env, tmp_path, "the daemon speaks TLS, but plain text was asked for")


def test_plain_upstreams_need_no_ssl_module(tmp_path: Path) -> None:
    """asyncio takes ssl when it can; docktap's plain path must not reach for it at all."""
    with socket.socket() as s:  # a port with nobody behind it
        s.bind(("127.0.0.1", 0))
        upstream = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    client = (
        "import os, socket; s = socket.socket(socket.AF_UNIX);"
        "s.connect(os.environ['DOCKER_HOST'].removeprefix('unix://'));"
        "s.sendall(b'GET /_ping HTTP/1.0\\r\\n\\r\\n'); print(s.recv(100).split(b'\\r\\n')[0])"
    )
    docktap_without_ssl = (
        "import sys; sys.modules['ssl'] = None; from docktap.cli import main; main()"
    )
    capture = tmp_path / "c.jsonl"
    argv = ["run", "-q", "-o", str(capture), "--upstream", upstream, "--"]
    proc = subprocess.run(
        [sys.executable, "-c", docktap_without_ssl, *argv, sys.executable, "-c", client],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.stdout == b"b'HTTP/1.1 502 Bad Gateway'\n", proc.stderr
    assert f"cannot reach the Docker daemon at {upstream}" in proc.stderr.decode()
    assert "tls" not in checked_capture(capture, allow_errors=True).header
