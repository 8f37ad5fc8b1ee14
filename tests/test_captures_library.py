"""The shipped captures in captures/ stay valid and replay: none of them may rot.

Each must match the schema, hold no error records and be closed cleanly; and replaying it to
the client command that recorded it must give that command what it got from the daemon.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from tapping import DOCKTAP, checked_capture, run_in_pty

from docktap import Capture, load

CAPTURES = sorted((Path(__file__).resolve().parent.parent / "captures").glob("*.jsonl"))


def test_the_library_is_there() -> None:
    assert len(CAPTURES) >= 15


@pytest.mark.parametrize("path", CAPTURES, ids=[p.stem for p in CAPTURES])
def test_capture_is_valid(path: Path) -> None:
    capture = checked_capture(path)
    assert capture.exchanges
    assert all(ex.operation for ex in capture.exchanges), [ex.target for ex in capture]


@dataclass(frozen=True)
class Replayed:
    """How to replay a capture with the client command that made it, and what must come out."""

    expect: bytes
    code: int = 0
    options: tuple[str, ...] = ()
    pty: bool = False
    stdin: bool = False  # feed the client what it sent on the recorded stream


# Tar bodies (cp, build) match by content, so the files made anew here (new mtimes) still
# match; the socket mount names the replay's own socket: that part is left out of matching.
REPLAYS = {
    "version": Replayed(b"Server:"),
    "ps-a": Replayed(b"CONTAINER ID"),
    "images": Replayed(b"bb "),
    "run": Replayed(b"out\n", code=3),
    "run-stdin": Replayed(b"hello from stdin", stdin=True),
    "run-tty": Replayed(b"tty", pty=True),
    "exec-it": Replayed(b"in-exec", pty=True),
    "logs-follow": Replayed(b"line1"),
    "events": Replayed(b"container"),
    "cp": Replayed(b""),
    "build": Replayed(b"Successfully tagged built:latest"),
    "pull-error": Replayed(b"", code=1),
    "volume-network": Replayed(b"net1"),
    "docker-py": Replayed(b"from docker-py"),
    "socket-mount": Replayed(b"from-a-sibling", options=("--ignore-json", "$.HostConfig.Binds")),
}


def _client_command(capture: Capture) -> str:
    """The recorded shell command, made to run here: same Python, same `--until` instant."""
    shell: str = capture.header["command"][2]
    shell = re.sub(r"^\S*python3?(?= )", sys.executable, shell)
    events = next((ex for ex in capture if ex.operation == "SystemEvents"), None)
    if events is not None:
        until = parse_qs(events.target.partition("?")[2])["until"][0]
        shell = shell.replace("$(date +%s)", until)
    return shell


def test_every_capture_has_a_replay() -> None:
    assert sorted(REPLAYS) == sorted(p.stem for p in CAPTURES)


#: The docker CLIs every capture must replay to: the one that recorded them (28) and Debian's.
CLIS = {"cli28": Path("/usr/local/bin/docker"), "cli20": Path("/usr/bin/docker")}


@pytest.fixture(params=sorted(CLIS))
def cli_path(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A PATH whose `docker` is the CLI of this run."""
    docker = CLIS[request.param]
    if not docker.is_file():
        pytest.skip(f"no docker CLI at {docker}")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").symlink_to(docker)
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.mark.parametrize("path", CAPTURES, ids=[p.stem for p in CAPTURES])
def test_capture_replays_with_its_client(path: Path, tmp_path: Path, cli_path: str) -> None:
    scenario = REPLAYS[path.stem]
    capture = load(path)
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM bb\nRUN echo built > /built\n")
    env = dict(os.environ, BUILD_CONTEXT=str(context), PATH=cli_path)
    env["DOCKER_HOST"] = f"unix://{tmp_path}/no-daemon-here.sock"
    argv = [*DOCKTAP, "replay", str(path), "-q", "--strict", *scenario.options, "--"]
    argv += ["sh", "-c", _client_command(capture)]
    if scenario.pty:
        code, out = run_in_pty(argv, env)
        err = b""
    else:
        feed = b""
        if scenario.stdin:
            feed = next(ex.output("stdin") for ex in capture if ex.hijacked)
        proc = subprocess.run(argv, input=feed, capture_output=True, env=env, timeout=60)
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    assert code == scenario.code, err.decode(errors="replace")
    assert scenario.expect in out
    assert b"had no recording" not in err


def test_exact_body_keeps_byte_matching(tmp_path: Path) -> None:
    """The cp capture replays with a file made anew (above); --exact-body refuses its tar."""
    path = next(p for p in CAPTURES if p.stem == "cp")
    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/no-daemon-here.sock")
    argv = [*DOCKTAP, "replay", str(path), "--strict", "--exact-body", "--"]
    argv += ["sh", "-c", _client_command(load(path))]
    proc = subprocess.run(argv, capture_output=True, env=env, timeout=60)
    assert proc.returncode != 0
    assert b"no recorded exchange for PUT /v1.41/containers/box/archive" in proc.stderr
    assert b"body differs" in proc.stderr
