"""The shipped captures in captures/ stay valid and replay: none of them may rot.

Each must match the schema, hold no error records and be closed cleanly; and replaying it to
the client command that recorded it must give that command what it got from the daemon.
"""

from __future__ import annotations

import os
import re
import shutil
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


# Bodies that hold a tar of local files (cp, build) carry their modification times, and the
# socket mount names the replay's own socket: those parts are left out of matching.
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
    "cp": Replayed(b"", options=("--ignore-body",)),
    "build": Replayed(b"Successfully tagged built:latest", options=("--ignore-body",)),
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


@pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not installed")
@pytest.mark.parametrize("path", CAPTURES, ids=[p.stem for p in CAPTURES])
def test_capture_replays_with_its_client(path: Path, tmp_path: Path) -> None:
    scenario = REPLAYS[path.stem]
    capture = load(path)
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM bb\nRUN echo built > /built\n")
    env = dict(os.environ, BUILD_CONTEXT=str(context))
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
