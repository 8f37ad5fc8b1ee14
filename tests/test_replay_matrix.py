"""Record with one docker CLI, replay with the other: a capture made on a laptop with the CLI
28 replays in CI with Debian's 20.10, and the reverse.

Each scenario records a command with one CLI through `docktap run` against the private
daemon, then runs the same command with the other CLI through `docktap replay`, with the
daemon out of reach: stdout, stderr and exit status must come out as they were recorded. The
two CLIs send different requests for the same command (20.10 sends `null` where 28 sends `[]`,
adds `"KernelMemory": 0` and a dozen build parameters at their defaults, and writes other tar
headers); replay matches them as dockerd reads them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockerd import Daemon
from tapping import DOCKTAP, docktap, docktap_run, run_in_pty

CLIS = {"28": "/usr/local/bin/docker", "20.10": "/usr/bin/docker"}
PAIRS = [("28", "20.10"), ("20.10", "28")]

#: The CLI prints ages relative to now ("3 seconds ago"), which move between two runs, and
#: pads table columns to the longest one.
_AGE = re.compile(rb"(About an? \w+|Less than a second|\d+ \w+) ago")
_PADDING = re.compile(rb" {2,}")
#: What the CLI 28 says of the legacy builder, and 20.10 does not.
_LEGACY_NOTICE = re.compile(rb"DEPRECATED: The legacy builder.*?\n\n", re.S)

pytestmark = pytest.mark.skipif(
    not all(os.path.isfile(cli) for cli in CLIS.values()), reason="needs both docker CLIs"
)


def _seen(output: bytes) -> bytes:
    return _PADDING.sub(b"  ", _AGE.sub(b"AGE", _LEGACY_NOTICE.sub(b"", output)))


@pytest.fixture(params=PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def clis(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The CLI that records and the CLI that replays."""
    recorder, replayer = request.param
    return CLIS[recorder], CLIS[replayer]


def _offline_env(daemon: Daemon, tmp_path: Path) -> dict[str, str]:
    env = dict(daemon.env)
    env["DOCKER_HOST"] = f"unix://{tmp_path}/no-daemon-here.sock"
    return env


def _shell(cli: str, script: str) -> list[str]:
    """`script` run by sh with `docker` being `cli`."""
    return ["sh", "-c", f'docker() {{ "{cli}" "$@"; }}; {script}']


def _across(
    daemon: Daemon,
    tmp_path: Path,
    clis: tuple[str, str],
    script: str,
    input: bytes | None = None,
    between: str = "",
) -> subprocess.CompletedProcess[bytes]:
    """Record `script` with the first CLI, run `between` (no docker), replay with the second,
    and insist the replay looks to a user as the recording did."""
    recorder, replayer = clis
    capture = tmp_path / "recorded.jsonl"
    recorded = docktap_run(daemon, capture, *_shell(recorder, script), input=input).proc
    if between:
        subprocess.run(["sh", "-c", between], check=True, cwd=tmp_path)
    replayed = docktap(
        "replay", str(capture), "-q", "--strict", "--", *_shell(replayer, script),
        env=_offline_env(daemon, tmp_path), input=input,
    )  # fmt: skip
    assert replayed.returncode == recorded.returncode, replayed.stderr.decode()
    assert _seen(replayed.stdout) == _seen(recorded.stdout)
    assert _seen(replayed.stderr) == _seen(recorded.stderr)
    return recorded


@pytest.fixture(scope="module")
def box(dockerd: Daemon) -> Iterator[str]:
    """A running container that has written something to stdout and stderr."""
    name = "matrix-box"
    dockerd.docker("rm", "-f", name, check=False)
    started = dockerd.docker(
        "run", "-d", "--name", name, "--network", "none", "bb",
        "sh", "-c", "echo box-out; echo box-err >&2; exec sleep 600",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    for _ in range(200):
        logs = dockerd.docker("logs", name)
        if logs.stderr == b"box-err\n":
            break
    assert logs.stdout == b"box-out\n"
    yield name
    dockerd.docker("rm", "-f", name, check=False)


def test_run(dockerd: Daemon, tmp_path: Path, clis: tuple[str, str]) -> None:
    recorded = _across(
        dockerd,
        tmp_path,
        clis,
        "docker run --rm --network none bb sh -c 'echo out; echo err >&2; exit 3'",
    )
    assert (recorded.returncode, recorded.stdout, recorded.stderr) == (3, b"out\n", b"err\n")


def test_run_with_stdin(dockerd: Daemon, tmp_path: Path, clis: tuple[str, str]) -> None:
    recorded = _across(
        dockerd, tmp_path, clis, "docker run -i --rm --network none bb cat", input=b"hi\n"
    )
    assert recorded.stdout == b"hi\n"


def test_run_with_a_tty(dockerd: Daemon, tmp_path: Path, clis: tuple[str, str]) -> None:
    recorder, replayer = clis
    capture = tmp_path / "run-t.jsonl"
    script = "docker run -t --rm --network none bb sh -c 'echo in-tty'"
    recorded = run_in_pty(
        [*DOCKTAP, "run", "-q", "-o", str(capture), "--upstream", dockerd.host, "--",
         *_shell(recorder, script)],
        dockerd.env,
    )  # fmt: skip
    replayed = run_in_pty(
        [*DOCKTAP, "replay", str(capture), "-q", "--strict", "--", *_shell(replayer, script)],
        _offline_env(dockerd, tmp_path),
    )
    assert recorded[0] == 0, recorded[1]
    assert b"in-tty" in recorded[1]
    assert replayed == recorded


def test_exec_logs_ps_images(
    dockerd: Daemon, tmp_path: Path, clis: tuple[str, str], box: str
) -> None:
    script = (
        f"docker exec {box} sh -c 'echo exec-out; echo exec-err >&2'"
        f" && docker logs {box} && docker ps -a && docker images"
    )
    recorded = _across(dockerd, tmp_path, clis, script)
    assert recorded.stdout.startswith(b"exec-out\nbox-out\n")
    assert recorded.stderr == b"exec-err\nbox-err\n"
    assert box.encode() in recorded.stdout and b"REPOSITORY" in recorded.stdout


def test_cp_both_ways_after_the_file_changed_time(
    dockerd: Daemon, tmp_path: Path, clis: tuple[str, str], box: str
) -> None:
    (tmp_path / "local.txt").write_text("copied\n")
    os.utime(tmp_path / "local.txt", (1_600_000_000, 1_600_000_000))
    script = (
        f"docker cp {tmp_path}/local.txt {box}:/tmp/ && "
        f"docker cp {box}:/tmp/local.txt {tmp_path}/back.txt && cat {tmp_path}/back.txt"
    )
    recorded = _across(dockerd, tmp_path, clis, script, between="touch local.txt; rm back.txt")
    assert recorded.stdout.endswith(b"copied\n")
    assert (tmp_path / "back.txt").read_text() == "copied\n"


def test_build_after_a_touch(dockerd: Daemon, tmp_path: Path, clis: tuple[str, str]) -> None:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM bb\n")
    script = f"DOCKER_BUILDKIT=0 docker build --network none -t matrix-built {context}"
    recorded = _across(dockerd, tmp_path, clis, script, between="touch context/Dockerfile")
    assert b"Successfully tagged matrix-built:latest" in recorded.stdout


def test_build_on_the_default_network(
    dockerd: Daemon, tmp_path: Path, clis: tuple[str, str]
) -> None:
    # Without --network the CLI 20.10 asks for networkmode=default and the CLI 28 for none:
    # the same build to dockerd. A Dockerfile of FROM alone runs no container.
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM bb\n")
    script = f"DOCKER_BUILDKIT=0 docker build -t matrix-built-default {context}"
    recorded = _across(dockerd, tmp_path, clis, script)
    assert b"Successfully tagged matrix-built-default:latest" in recorded.stdout


def test_stats_of_a_container_replays_from_20_10_to_28_not_the_reverse(
    dockerd: Daemon, tmp_path: Path, box: str
) -> None:
    """The CLI 20.10's `stats` asks for the daemon's version (its OS type), 28's reads that
    from the ping: a capture made with 28 has no version answer for 20.10, and says so. The
    stats request itself is the same from both (`stats?stream=0`)."""
    script = f"docker stats --no-stream --format '{{{{.Name}}}} {{{{.PIDs}}}}' {box}"
    recorded = _across(dockerd, tmp_path, ("/usr/bin/docker", "/usr/local/bin/docker"), script)
    assert recorded.stdout == f"{box} 1\n".encode()  # exec sleep 600
    capture = tmp_path / "stats-28.jsonl"
    assert docktap_run(dockerd, capture, *_shell(CLIS["28"], script)).proc.returncode == 0
    replayed = docktap(
        "replay", str(capture), "-q", "--strict", "--", *_shell(CLIS["20.10"], script),
        env=_offline_env(dockerd, tmp_path),
    )  # fmt: skip
    assert replayed.returncode == 8
    assert (
        b"Error response from daemon: docktap replay: no recorded exchange for GET /v1.41/version:"
        b" the capture holds no SystemVersion at all: the client recorded never asked for it"
    ) in replayed.stderr


def test_events_since_until(dockerd: Daemon, tmp_path: Path, clis: tuple[str, str]) -> None:
    since = int(time.time()) - 1
    marker = f"matrix-events-{since}"
    dockerd.docker("volume", "create", marker)
    dockerd.docker("volume", "rm", marker)
    # In the past from now on, and after both events: the daemon sends what it has and ends
    # the stream (the docker CLI passes seconds.nanoseconds through as they are).
    until = f"{time.time():.9f}"
    recorded = _across(dockerd, tmp_path, clis, f"docker events --since {since} --until {until}")
    assert marker.encode() in recorded.stdout


def test_free_names_match_and_stand_for_the_recorded_ones(dockerd: Daemon, tmp_path: Path) -> None:
    """A test that names its container at random replays with another name: `--free name`
    leaves the name out of matching, and the later requests that use it find the recording."""
    capture = tmp_path / "named.jsonl"

    def script(name: str) -> list[str]:
        return ["sh", "-c", (
            f"docker create --network none --name {name} --label run={name} bb true >/dev/null"
            f" && docker inspect -f '{{{{.Name}}}}' {name} && docker rm {name}"
        )]  # fmt: skip

    dockerd.docker("rm", "-f", "test_abc123", check=False)
    recorded = docktap_run(dockerd, capture, *script("test_abc123")).proc
    assert recorded.stdout == b"/test_abc123\ntest_abc123\n", recorded.stderr
    env = _offline_env(dockerd, tmp_path)
    replay = ["replay", str(capture), "-q", "--strict"]
    strict = docktap(*replay, "--", *script("test_xyz789"), env=env)
    assert strict.returncode != 0
    assert b'query name differs: recorded "test_abc123", got "test_xyz789"' in strict.stderr
    free = ["--free", "name", "--free", "$.Labels.run"]
    replayed = docktap(*replay, *free, "--", *script("test_xyz789"), env=env)
    assert replayed.returncode == 0, replayed.stderr.decode()
    # The answers are the recorded ones: the daemon's name for it, then what rm echoes back.
    assert replayed.stdout == b"/test_abc123\ntest_xyz789\n"


DOCKER_PY_FLOW = """
import sys, docker
client = docker.from_env(version="auto")
print(client.containers.run("bb", ["sh", "-c", "echo py-out"], network_mode="none", remove=True))
box = client.containers.get(sys.argv[1])
result = box.exec_run(["sh", "-c", "echo py-exec; exit 2"])
print(result.exit_code, result.output)
print(box.logs(stdout=True, stderr=True))
print(sorted(t for i in client.images.list() for t in i.tags))
"""


@pytest.fixture(scope="session")
def docker_py_6(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The python of a venv holding docker-py 6.1.3 (the project's own has 7.x), with the
    requests of its time: 6.1.3 cannot speak to a unix socket through requests 2.32."""
    venv = tmp_path_factory.mktemp("docker-py-6") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    installed = subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "docker==6.1.3",
            "requests<2.32",
        ],
        capture_output=True,
        timeout=300,
        check=False,
    )
    if installed.returncode != 0:
        pytest.skip(f"cannot install docker-py 6.1.3: {installed.stderr.decode()[-500:]}")
    return python


@pytest.mark.parametrize("order", ["7-to-6", "6-to-7"])
def test_docker_py_7_and_6(
    dockerd: Daemon, tmp_path: Path, box: str, docker_py_6: str, order: str
) -> None:
    pythons = [sys.executable, docker_py_6]
    if order == "6-to-7":
        pythons.reverse()
    script = tmp_path / "flow.py"
    script.write_text(DOCKER_PY_FLOW)
    version = [pythons[0], "-c", "import docker; print(docker.__version__)"]
    assert subprocess.run(version, capture_output=True, check=True).stdout.startswith(
        order[0].encode()
    )
    capture = tmp_path / "py.jsonl"
    recorded = docktap_run(dockerd, capture, pythons[0], str(script), box).proc
    assert recorded.returncode == 0, recorded.stderr.decode()
    assert recorded.stdout.splitlines()[:2] == [b"b'py-out\\n'", b"2 b'py-exec\\n'"]
    replayed = docktap(
        "replay", str(capture), "-q", "--strict", "--", pythons[1], str(script), box,
        env=_offline_env(dockerd, tmp_path),
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr.decode()
    assert replayed.stdout == recorded.stdout


COMPOSE_FILE = """\
version: "3"
services:
  hello:
    image: bb
    network_mode: none
    command: ["sh", "-c", "echo compose-out"]
"""


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="no docker-compose")
def test_docker_compose_up_and_down(dockerd: Daemon, tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE)
    script = "docker-compose -p matrixc up --no-color && docker-compose -p matrixc down"
    capture = tmp_path / "compose.jsonl"
    env = dict(dockerd.env)
    recorded = docktap(
        "run", "-q", "-o", str(capture), "--upstream", dockerd.host, "--",
        "sh", "-c", f"cd {tmp_path} && {script}", env=env,
    )  # fmt: skip
    assert recorded.returncode == 0, recorded.stderr.decode()
    assert b"compose-out" in recorded.stdout
    replayed = docktap(
        "replay", str(capture), "-q", "--strict", "--", "sh", "-c", f"cd {tmp_path} && {script}",
        env=_offline_env(dockerd, tmp_path),
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr.decode()
    assert replayed.stdout == recorded.stdout
    assert replayed.stderr == recorded.stderr


def test_ps_with_a_limit_of_zero(
    dockerd: Daemon, tmp_path: Path, clis: tuple[str, str], box: str
) -> None:
    # `ps -n 0`: the CLI 20.10 asks for limit=0, the CLI 28 for no limit, the same list.
    recorded = _across(dockerd, tmp_path, clis, "docker ps -n 0 --format '{{.Names}}'")
    assert box.encode() in recorded.stdout.split()
