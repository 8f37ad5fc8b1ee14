"""docktap in front of an `ssh://` daemon, reached through a real sshd as the docker CLI reaches it.

The daemon is the private dockerd behind a private sshd on loopback (the `sshd` fixture), and
ssh is configured as a user configures it (sshd.py): DOCKER_HOST=ssh://..., `--upstream` and a
docker context all name it. What must hold: the commands behave as they do with the docker CLI
going through ssh itself, stdin still ends with a half-close, each way ssh can fail reaches the
client as a 502 with ssh's own words, and no ssh process outlives its connection.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from pathlib import Path

import pytest
from dockerd import Daemon
from sshd import SSHD
from tapping import Proxy, Tapped, checked_capture, docktap, one, ops

from docktap import sshlink
from docktap.upstream import SSHTarget, UpstreamError, parse_endpoint

RUN = ["docker", "run", "--rm", "--network", "none", "bb"]


def ssh_env(daemon: Daemon, sshd: SSHD, host: str = "ssh://docker-host") -> dict[str, str]:
    """A client environment whose DOCKER_HOST is the daemon behind ssh."""
    return dict(sshd.env(daemon.env), DOCKER_HOST=host)


def tapped_run(
    env: dict[str, str], capture: Path, *command: str, input: bytes | None = None
) -> Tapped:
    """`docktap run` finding the daemon from the environment, as the docker CLI would."""
    proc = docktap("run", "-q", "-o", str(capture), "--", *command, env=env, input=input)
    return Tapped(proc, checked_capture(capture))


def test_the_command_line_is_the_docker_clis() -> None:
    assert sshlink.command(SSHTarget("example.org")) == [
        "ssh", "-o", "ConnectTimeout=30", "-T", "--", "example.org", "docker system dial-stdio",
    ]  # fmt: skip
    target = parse_endpoint("ssh://me@example.org:2222/run/user/1000/docker.sock").ssh
    assert target is not None
    assert sshlink.command(target) == [
        "ssh", "-l", "me", "-p", "2222", "-o", "ConnectTimeout=30", "-T", "--", "example.org",
        "docker '--host=unix:///run/user/1000/docker.sock' system dial-stdio",
    ]  # fmt: skip


def test_docker_version_through_ssh(dockerd: Daemon, sshd: SSHD, tmp_path: Path) -> None:
    env = ssh_env(dockerd, sshd)
    args = ("docker", "version", "--format", "{{.Server.APIVersion}}")
    direct = subprocess.run(args, env=env, capture_output=True, check=True, timeout=60)
    tapped = tapped_run(env, tmp_path / "c.jsonl", *args)
    assert (tapped.proc.returncode, tapped.proc.stdout) == (0, direct.stdout), tapped.proc.stderr
    assert tapped.proc.stderr == b""
    assert ops(tapped.capture) == ["SystemPingHead", "SystemVersion"]
    assert tapped.capture.header["upstream"] == "ssh://docker-host"


def test_docker_run_keeps_stdout_stderr_and_exit_code(
    dockerd: Daemon, sshd: SSHD, tmp_path: Path
) -> None:
    env = ssh_env(dockerd, sshd)
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


def test_docker_run_i_ends_stdin_with_a_half_close_through_ssh(
    dockerd: Daemon, sshd: SSHD, tmp_path: Path
) -> None:
    env = ssh_env(dockerd, sshd)
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
    # "done" is written once cat saw the end of stdin: ssh passed the half-close on.
    assert halfclose and last_stdout["mono"] >= halfclose[0]["mono"]
    assert attach.output("stdout") == b"one\ntwo\ndone\n"


def test_a_docker_context_with_an_ssh_endpoint(dockerd: Daemon, sshd: SSHD, tmp_path: Path) -> None:
    """A context made by the docker CLI itself: docktap reads its store as the CLI does."""
    env = dict(ssh_env(dockerd, sshd), DOCKER_CONFIG=str(tmp_path / "config"))
    del env["DOCKER_HOST"]
    subprocess.run(
        ["docker", "context", "create", "remote-ssh", "--docker", "host=ssh://docker-host"],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    env["DOCKER_CONTEXT"] = "remote-ssh"
    tapped = tapped_run(
        env, tmp_path / "c.jsonl", "docker", "version", "--format", "{{.Server.Os}}"
    )
    assert (tapped.proc.returncode, tapped.proc.stdout) == (0, b"linux\n"), tapped.proc.stderr
    assert tapped.capture.header["upstream"] == "ssh://docker-host"


def ssh_children(pid: int) -> set[int]:
    """The ssh processes `pid` started and has not reaped yet."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                comm = Path(f"/proc/{child}/comm").read_text().strip()
            except FileNotFoundError:
                continue
            if comm == "ssh":
                found.add(int(child))
    return found


def test_proxy_with_the_docker_cli_leaves_no_ssh_behind(
    dockerd: Daemon, sshd: SSHD, tmp_path: Path
) -> None:
    upstream = f"ssh://{sshd.user}@docker-host:{sshd.port}"
    proxy = Proxy(dockerd, tmp_path, upstream=upstream, env=sshd.env(dockerd.env))
    try:
        version = proxy.docker("version", "--format", "{{.Server.APIVersion}}")
        assert version.returncode == 0, version.stderr
        run = proxy.docker(*RUN[1:], "sh", "-c", "echo out; echo err >&2; exit 3")
        assert (run.returncode, run.stdout, run.stderr) == (3, b"out\n", b"err\n")
        stdin = proxy.docker("run", "-i", "--rm", "--network", "none", "bb", "cat", input=b"in\n")
        assert (stdin.returncode, stdin.stdout) == (0, b"in\n")
        # One connection held open: its ssh runs until docktap stops.
        with socket.socket(socket.AF_UNIX) as held:
            held.connect(str(proxy.socket))
            held.sendall(b"GET /events HTTP/1.1\r\nHost: docker\r\n\r\n")
            assert held.recv(100).startswith(b"HTTP/1.1 200 OK")
            running = ssh_children(proxy.process.pid)
            capture = proxy.stop()
    finally:
        if proxy.process.poll() is None:
            proxy.process.kill()
            proxy.process.wait()
    assert capture.header["upstream"] == upstream
    assert {"SystemVersion", "ContainerCreate", "ContainerAttach", "ContainerWait"} <= set(
        ops(capture)
    )
    assert running and not any(Path(f"/proc/{pid}").exists() for pid in running)


async def _wait_exited(pid: int) -> None:
    """Until process `pid` has exited, without polling: its pidfd becomes readable."""
    fd = os.pidfd_open(pid)
    loop = asyncio.get_running_loop()
    exited = loop.create_future()
    loop.add_reader(fd, exited.set_result, None)
    try:
        await asyncio.wait_for(exited, 10)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def _others_done() -> None:
    """Until every other task of the loop (the reapers among them) has finished."""
    others = asyncio.all_tasks() - {asyncio.current_task()}
    await asyncio.wait_for(asyncio.gather(*others, return_exceptions=True), 10)


def test_ssh_is_reaped_when_its_connection_closes(
    dockerd: Daemon, sshd: SSHD, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", sshd.env(dict(os.environ))["PATH"])

    async def main() -> int:
        transport = await sshlink.connect(asyncio.Protocol, SSHTarget("docker-host"))
        (pid,) = ssh_children(os.getpid())
        transport.close()
        await _wait_exited(pid)
        await _others_done()
        return pid

    pid = asyncio.run(main())
    assert not Path(f"/proc/{pid}").exists()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_ssh_is_killed_and_reaped_when_the_loop_ends(
    dockerd: Daemon, sshd: SSHD, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", sshd.env(dict(os.environ))["PATH"])

    async def main() -> tuple[asyncio.BaseTransport, int]:
        transport = await sshlink.connect(asyncio.Protocol, SSHTarget("docker-host"))
        (pid,) = ssh_children(os.getpid())
        return transport, pid  # left open: asyncio.run cancels the reaper

    transport, pid = asyncio.run(main())
    assert not Path(f"/proc/{pid}").exists()
    del transport


@pytest.mark.parametrize(
    ("host", "reason", "ssh_said"),
    [
        ("stranger", "ssh to stranger failed: ", "Host key verification failed."),
        ("refused", "ssh to refused failed: ", "Permission denied (publickey)."),
        (
            "docker-less",
            "`docker system dial-stdio` on docker-less exited with status 127 "
            "(is docker 18.09 or later on its PATH?): ",
            "docker: command not found",  # the remote shell's words
        ),
    ],
)
def test_what_ssh_says_when_it_fails_reaches_the_client(
    dockerd: Daemon, sshd: SSHD, tmp_path: Path, host: str, reason: str, ssh_said: str
) -> None:
    env = ssh_env(dockerd, sshd, f"ssh://{host}")
    capture = tmp_path / "c.jsonl"
    proc = docktap("run", "-q", "-o", str(capture), "--", "docker", "version", env=env)
    stderr = proc.stderr.decode()
    said = f"cannot reach the Docker daemon at {env['DOCKER_HOST']}: {reason}"
    # docktap's own line, then the docker CLI's from the 502 body; each ends with ssh's words.
    first = stderr.splitlines()[0]
    assert first.startswith(f"docktap: {said}") and first.endswith(ssh_said), stderr
    assert stderr.count(said) >= 2, stderr
    assert proc.returncode != 0
    loaded = checked_capture(capture, allow_errors=True)
    assert {ex.status for ex in loaded.exchanges} == {502}
    assert loaded.errors
    assert all(reason in e["message"] and ssh_said in e["message"] for e in loaded.errors)


def test_a_failed_login_is_an_upstream_error_and_leaves_no_process(
    dockerd: Daemon, sshd: SSHD, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", sshd.env(dict(os.environ))["PATH"])

    async def main() -> None:
        with pytest.raises(UpstreamError, match="Permission denied"):
            await sshlink.connect(asyncio.Protocol, SSHTarget("refused"))
        await _others_done()
        assert ssh_children(os.getpid()) == set()

    asyncio.run(main())
