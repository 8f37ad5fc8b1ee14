"""`docktap demo`: a newcomer's first command, on a machine with no Docker daemon."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tapping import DOCKTAP

from docktap import load

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "src" / "docktap" / "data" / "demo.jsonl"


def _demo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DOCKTAP, "demo", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


def _no_daemon(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/nothing.sock", COLUMNS="120")


def test_the_bundled_capture_is_the_library_one() -> None:
    assert BUNDLED.read_bytes() == (ROOT / "captures" / "run.jsonl").read_bytes()


@pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not installed")
def test_demo_runs_the_docker_cli_through_a_relay_to_a_replayed_daemon(tmp_path: Path) -> None:
    capture = tmp_path / "demo.jsonl"
    result = _demo("-o", str(capture), env=_no_daemon(tmp_path))
    assert result.returncode == 0, result.stderr
    # The docker CLI's own output came through: stdout and stderr of the container.
    assert result.stdout.startswith("out\n")
    assert "err\n" in result.stderr
    # Live rows on stderr as the calls completed, then the explained timeline on stdout.
    assert "ContainerAttach" in result.stderr
    assert "docker exited with status 3" in result.stderr
    assert "# creates a container from an image" in result.stdout
    assert "exit status 3" in result.stdout
    # What the relay recorded is the same conversation as the bundled one.
    recorded, bundled = load(capture), load(BUNDLED)
    assert [(ex.method, ex.target, ex.status) for ex in recorded] == [
        (ex.method, ex.target, ex.status) for ex in bundled
    ]
    assert recorded.exchanges[2].output("stdout") == b"out\n"


def test_demo_without_the_docker_cli_shows_the_recording(tmp_path: Path) -> None:
    env = _no_daemon(tmp_path)
    env["PATH"] = str(tmp_path)  # no docker here; the interpreter is run by absolute path
    result = _demo(env=env)
    assert result.returncode == 0, result.stderr
    assert "the docker CLI is not installed" in result.stderr
    assert "ContainerWait" in result.stdout
    assert "# waits until the container" in result.stdout


def test_no_docker_option(tmp_path: Path) -> None:
    result = _demo("--no-docker", env=_no_daemon(tmp_path))
    assert result.returncode == 0
    assert "not installed" not in result.stderr
    assert "ContainerStart" in result.stdout
