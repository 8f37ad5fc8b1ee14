"""`docktap replay`: record real clients against the private daemon, then replay them without it.

Each scenario runs a command through `docktap run` against the daemon, then the same command
through `docktap replay` with DOCKER_HOST pointing at nothing that exists (the replay sets the
command's own DOCKER_HOST to its socket): stdout, stderr and exit status must come out the same.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockerd import Daemon
from tapping import DOCKTAP, docktap, docktap_run, ready_server, run_in_pty

from docktap.cli import STRICT_FAILED

#: The CLI prints ages relative to now ("3 seconds ago"), which move between two runs, and
#: pads table columns to the longest one.
_AGE = re.compile(rb"(About an? \w+|Less than a second|\d+ \w+) ago")
_PADDING = re.compile(rb" {2,}")


def _without_ages(output: bytes) -> bytes:
    return _PADDING.sub(b"  ", _AGE.sub(b"AGE", output))


def _offline_env(daemon: Daemon, tmp_path: Path) -> dict[str, str]:
    """The client's environment with the daemon out of reach."""
    env = dict(daemon.env)
    env["DOCKER_HOST"] = f"unix://{tmp_path}/no-daemon-here.sock"
    return env


def _replay(
    daemon: Daemon,
    tmp_path: Path,
    capture: Path,
    *command: str,
    options: tuple[str, ...] = (),
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    return docktap(
        "replay",
        str(capture),
        "-q",
        "--strict",
        *options,
        "--",
        *command,
        env=_offline_env(daemon, tmp_path),
        input=input,
    )


def _same(
    daemon: Daemon,
    tmp_path: Path,
    *command: str,
    input: bytes | None = None,
    options: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[bytes]:
    """Record `command`, replay it, and insist both runs look the same to a user."""
    capture = tmp_path / "recorded.jsonl"
    recorded = docktap_run(daemon, capture, *command, input=input).proc
    replayed = _replay(daemon, tmp_path, capture, *command, input=input, options=options)
    assert replayed.returncode == recorded.returncode, replayed.stderr.decode()
    assert _without_ages(replayed.stdout) == _without_ages(recorded.stdout)
    assert replayed.stderr == recorded.stderr
    return recorded


@pytest.fixture(scope="module")
def box(dockerd: Daemon) -> Iterator[str]:
    """A running container that has written something to stdout and stderr."""
    name = "replay-box"
    dockerd.docker("rm", "-f", name, check=False)
    started = dockerd.docker(
        "run", "-d", "--name", name, "--network", "none", "bb",
        "sh", "-c", "echo box-out; echo box-err >&2; exec sleep 600",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    # `docker logs` must show both lines when the test records it.
    for _ in range(200):
        logs = dockerd.docker("logs", name)
        if logs.stderr == b"box-err\n":
            break
    assert logs.stdout == b"box-out\n"
    yield name
    dockerd.docker("rm", "-f", name, check=False)


def test_version(dockerd: Daemon, tmp_path: Path) -> None:
    recorded = _same(dockerd, tmp_path, "docker", "version")
    assert b"Server:" in recorded.stdout


def test_ps_all(dockerd: Daemon, tmp_path: Path, box: str) -> None:
    recorded = _same(dockerd, tmp_path, "docker", "ps", "-a")
    assert box.encode() in recorded.stdout


def test_images(dockerd: Daemon, tmp_path: Path) -> None:
    recorded = _same(dockerd, tmp_path, "docker", "images")
    assert b"bb" in recorded.stdout


def test_run_with_stdout_stderr_and_exit_status(dockerd: Daemon, tmp_path: Path) -> None:
    command = "echo out; echo err >&2; exit 3"
    recorded = _same(
        dockerd, tmp_path, "docker", "run", "--rm", "--network", "none", "bb", "sh", "-c", command
    )
    assert recorded.returncode == 3
    assert recorded.stdout == b"out\n"
    assert recorded.stderr == b"err\n"


def test_run_with_stdin(dockerd: Daemon, tmp_path: Path) -> None:
    recorded = _same(
        dockerd,
        tmp_path,
        "docker", "run", "-i", "--rm", "--network", "none", "bb", "cat",
        input=b"hi\n",
    )  # fmt: skip
    assert recorded.stdout == b"hi\n"


def test_output_past_the_cap_is_cut_and_the_replay_says_so(dockerd: Daemon, tmp_path: Path) -> None:
    # The attach stream of a run that wrote more than --max-body was kept only up to it: the
    # replay sends what was kept, as for a body, and says so rather than end it silently.
    capture = tmp_path / "capped.jsonl"
    command = ("docker", "run", "--rm", "--network", "none", "bb", "sh", "-c", "yes | head -c 9000")
    recorded = docktap_run(dockerd, capture, *command, options=["--max-body", "4096"]).proc
    assert recorded.stdout == b"y\n" * 4500
    replayed = _replay(dockerd, tmp_path, capture, *command)
    assert replayed.returncode == 0, replayed.stderr.decode()
    # What the CLI makes of it depends on the frames: a frame cut by the cap is dropped.
    assert recorded.stdout.startswith(replayed.stdout) and len(replayed.stdout) < 4096
    said = b" ".join(replayed.stderr.split())  # wrapped to the width
    assert b"#3 answered with the first 4096 bytes of its stream" in said
    assert b"(the capture kept no more; record with --max-body 0)" in said
    # Kept whole, it replays whole and silently.
    whole = _same(dockerd, tmp_path, *command)
    assert whole.stdout == recorded.stdout


def test_exec(dockerd: Daemon, tmp_path: Path, box: str) -> None:
    recorded = _same(
        dockerd,
        tmp_path,
        "docker", "exec", box, "sh", "-c", "echo exec-out; echo exec-err >&2; exit 4",
    )  # fmt: skip
    assert (recorded.returncode, recorded.stdout, recorded.stderr) == (
        4,
        b"exec-out\n",
        b"exec-err\n",
    )


def test_exec_with_a_tty(dockerd: Daemon, tmp_path: Path, box: str) -> None:
    capture = tmp_path / "exec-t.jsonl"
    command = ["docker", "exec", "-it", box, "sh", "-c", "echo in-tty"]
    recorded = run_in_pty(
        [*DOCKTAP, "run", "-q", "-o", str(capture), "--upstream", dockerd.host, "--", *command],
        dockerd.env,
    )
    replayed = run_in_pty(
        [*DOCKTAP, "replay", str(capture), "-q", "--strict", "--", *command],
        _offline_env(dockerd, tmp_path),
    )
    assert recorded[0] == 0, recorded[1]
    assert b"in-tty" in recorded[1]
    assert replayed == recorded


def test_logs(dockerd: Daemon, tmp_path: Path, box: str) -> None:
    recorded = _same(dockerd, tmp_path, "docker", "logs", box)
    assert recorded.stdout == b"box-out\n"
    assert recorded.stderr == b"box-err\n"


def test_events_since_until(dockerd: Daemon, tmp_path: Path) -> None:
    since = int(time.time()) - 1
    marker = f"replay-events-{since}"
    dockerd.docker("volume", "create", marker)
    dockerd.docker("volume", "rm", marker)
    # In the past from now on, and after both events: the daemon sends what it has and ends
    # the stream (the docker CLI passes seconds.nanoseconds through as they are).
    until = f"{time.time():.9f}"
    recorded = _same(dockerd, tmp_path, "docker", "events", "--since", str(since), "--until", until)
    assert marker.encode() in recorded.stdout


def test_a_different_command_is_a_miss_that_names_the_closest_recording(
    dockerd: Daemon, tmp_path: Path
) -> None:
    capture = tmp_path / "run.jsonl"
    docktap_run(dockerd, capture, "docker", "run", "--rm", "--network", "none", "bb", "true")
    replayed = docktap(
        "replay",
        str(capture),
        "--strict",
        "--",
        "docker", "run", "--rm", "--network", "none", "bb", "false",
        env=_offline_env(dockerd, tmp_path),
    )  # fmt: skip
    err = replayed.stderr.decode()
    assert replayed.returncode != 0
    # The docker CLI prints the miss as a daemon error...
    assert "Error response from daemon: docktap replay: no recorded exchange for " in err
    # ...naming the closest recording and the first difference.
    assert (
        "POST /v1.41/containers/create; closest: #2, "
        'body differs at $.Cmd[0]: recorded "true", got "false"' in err
    )
    assert "1 request(s) had no recording" in err
    # ...and how to see that recording: by the number `docktap show` prints.
    assert f"(`docktap show {capture} --exchange 2` shows #2 as recorded)" in err


DOCKER_PY_FLOW = textwrap.dedent(
    """
    import sys, docker
    client = docker.from_env(version="auto")
    print(client.containers.run("bb", ["sh", "-c", "echo py-out"], network_mode="none",
                                remove=True))
    box = client.containers.get(sys.argv[1])
    result = box.exec_run(["sh", "-c", "echo py-exec; exit 2"])
    print(result.exit_code, result.output)
    print(box.logs(stdout=True, stderr=True))
    print(sorted(t for i in client.images.list() for t in i.tags))
    print([c.name for c in client.containers.list(all=True, filters={"name": sys.argv[1]})])
    """
)


def test_docker_py_flow(dockerd: Daemon, tmp_path: Path, box: str) -> None:
    script = tmp_path / "flow.py"
    script.write_text(DOCKER_PY_FLOW)
    recorded = _same(dockerd, tmp_path, sys.executable, str(script), box)
    assert recorded.stdout.splitlines()[:2] == [b"b'py-out\\n'", b"2 b'py-exec\\n'"]


def test_listen_serves_until_stopped(dockerd: Daemon, tmp_path: Path) -> None:
    capture = tmp_path / "version.jsonl"
    version = ["docker", "version", "--format", "{{.Server.Version}}"]
    recorded = docktap_run(dockerd, capture, *version).proc
    sock = tmp_path / "replay.sock"
    process = subprocess.Popen(
        [*DOCKTAP, "replay", str(capture), "--listen", str(sock)],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_offline_env(dockerd, tmp_path),
    )
    assert process.stderr is not None
    banner = process.stderr.readline().decode()
    assert "replaying" in banner and str(sock) in banner, banner
    env = dict(dockerd.env, DOCKER_HOST=f"unix://{sock}")
    for _ in range(2):  # served again and again: GET answers repeat
        out = subprocess.run(version, env=env, capture_output=True, check=True)
        assert out.stdout == recorded.stdout
    assert oct(os.stat(sock).st_mode & 0o777) == "0o600"
    process.terminate()
    assert process.wait(timeout=30) == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_listen_removes_its_socket_when_stopped(tmp_path: Path, signum: int) -> None:
    """As `proxy` does: a socket left behind would look like a daemon to the next client."""
    sock = tmp_path / "replay.sock"
    capture = Path(__file__).parent.parent / "captures" / "version.jsonl"
    process = subprocess.Popen(
        [*DOCKTAP, "replay", str(capture), "--listen", str(sock)],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    banner = process.stderr.readline().decode()
    assert "replaying" in banner, banner
    assert sock.is_socket()
    process.send_signal(signum)
    assert process.wait(timeout=30) == 0, process.stderr.read().decode()
    process.stderr.close()
    assert not sock.exists()


def test_a_quiet_replay_says_it_is_ready_on_its_descriptor_only(tmp_path: Path) -> None:
    sock = tmp_path / "replay.sock"
    capture = Path(__file__).parent.parent / "captures" / "version.jsonl"
    process, address = ready_server(["replay", str(capture), "-q", "--listen", str(sock)])
    try:
        assert address == f"unix://{sock}"
        version = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            env={
                **{k: v for k, v in os.environ.items() if k != "DOCKER_CONTEXT"},
                "DOCKER_HOST": address,
                "DOCKER_CONFIG": str(tmp_path),
            },
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert version.returncode == 0 and version.stdout.strip(), version.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert (process.returncode, out, err) == (0, b"", b"")  # -q: nothing until it ends
    with_command = docktap("replay", str(capture), "--ready-fd", "3", "--", "true")
    assert with_command.returncode == 2
    assert "--ready-fd is for --listen" in with_command.stderr.decode()


def test_report_unused(dockerd: Daemon, tmp_path: Path) -> None:
    capture = tmp_path / "two.jsonl"
    docktap_run(dockerd, capture, "sh", "-c", "docker ps -a -q && docker images -q")
    env = _offline_env(dockerd, tmp_path)
    replay = ["replay", str(capture), "--report-unused"]
    told = docktap(*replay, "--", "docker", "ps", "-a", "-q", env=env)
    assert told.returncode == 0
    assert "1 recording(s) never used:" in told.stderr.decode()
    assert "GET /v1.41/images/json" in told.stderr.decode()
    strict = docktap(*replay, "--strict", "--", "docker", "ps", "-a", "-q", env=env)
    assert strict.returncode == STRICT_FAILED == 8


def test_the_readme_miss_is_what_docktap_prints(tmp_path: Path) -> None:
    """The README's miss example, run as written: the docker CLI prints that very line."""
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    found = re.search(r"^\$ (docktap replay .*'echo hello'.*)\n(docker: .*)$", readme, re.M)
    assert found is not None, "the README shows no miss"
    command, quoted = found.groups()
    assert 'recorded "echo out; echo err >&2; exit 3", got "echo hello"' in quoted
    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/no-daemon-here.sock")
    argv = shlex.split(command.removeprefix("docktap "))
    done = subprocess.run(
        [*DOCKTAP, *argv], cwd=root, env=env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 125
    assert quoted in done.stderr.decode().splitlines()


def test_captures_of_one_file_name_are_told_apart_by_their_paths(tmp_path: Path) -> None:
    # A test's capture in each of two folders: the miss's closest recording, and the
    # `docktap show` command that shows it, name the folder it came from.
    root = Path(__file__).resolve().parent.parent
    for folder, name in (("a", "version.jsonl"), ("b", "run.jsonl")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "recorded.jsonl").write_bytes((root / "captures" / name).read_bytes())
    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/no-daemon-here.sock")
    command = ["docker", "run", "--rm", "--network", "none", "bb", "sh", "-c", "echo hello"]
    done = subprocess.run(
        [*DOCKTAP, "replay", "a/recorded.jsonl", "b/recorded.jsonl", "--", *command],
        cwd=tmp_path, env=env, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    said = " ".join(done.stderr.decode().split())
    assert done.returncode == 125, said
    assert "closest: b/recorded.jsonl#2, body differs at $.Cmd[2]" in said
    assert "(`docktap show b/recorded.jsonl --exchange 2` shows b/recorded.jsonl#2" in said
