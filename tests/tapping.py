"""Drive real Docker clients through the real `docktap` command, and check what it recorded.

Integration tests use these helpers so that every capture they make is checked the same way:
it validates against the JSON Schema, it was closed cleanly, and it holds no error records.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from capture_schema import validate_capture
from dockerd import Daemon

from docktap import Capture, Exchange, load

DOCKTAP = [sys.executable, "-m", "docktap"]


def checked_capture(path: Path, allow_errors: bool = False) -> Capture:
    """Load a capture docktap wrote, insisting it is valid, complete and error-free."""
    validate_capture(path)
    capture = load(path)
    assert capture.complete, f"{path} has no end-of-capture record"
    if not allow_errors:
        assert capture.errors == [], capture.errors
        for ex in capture.exchanges:
            assert ex.status is not None, f"no response recorded for {ex.method} {ex.target}"
    return capture


def ops(capture: Capture) -> list[str | None]:
    return [ex.operation for ex in capture.exchanges]


def one(capture: Capture, operation: str) -> Exchange:
    found = [ex for ex in capture.exchanges if ex.operation == operation]
    assert len(found) == 1, f"{operation}: {len(found)} exchanges in {ops(capture)}"
    return found[0]


@dataclass
class Tapped:
    proc: subprocess.CompletedProcess[bytes]
    capture: Capture


def docktap(
    *args: str,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[bytes]:
    """The real `docktap` command, as a user would type it."""
    return subprocess.run(
        [*DOCKTAP, *args],
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def docktap_run(
    daemon: Daemon,
    capture: Path,
    *command: str,
    input: bytes | None = None,
    options: Sequence[str] = (),
) -> Tapped:
    """`docktap run -q -o CAPTURE [OPTIONS] -- COMMAND` with the daemon as upstream."""
    args = ["run", "-q", "-o", str(capture), "--upstream", daemon.host, *options, "--", *command]
    proc = docktap(*args, env=daemon.env, input=input)
    return Tapped(proc, checked_capture(capture))


def run_in_pty(argv: Sequence[str], env: dict[str, str], timeout: float = 60) -> tuple[int, bytes]:
    """Run argv with a pseudo-terminal as its stdin/stdout/stderr; return (exit code, output)."""
    pid, master = pty.fork()
    if pid == 0:  # the child: become the command
        os.execvpe(argv[0], list(argv), env)
    output = bytearray()
    try:
        while True:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise TimeoutError(f"{argv} produced nothing for {timeout}s")
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child side closed
                break
            if not chunk:
                break
            output.extend(chunk)
    finally:
        os.close(master)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), bytes(output)


class Proxy:
    """`docktap proxy` in a subprocess, listening on a unix socket under a temp dir."""

    def __init__(
        self,
        daemon: Daemon,
        workdir: Path,
        *extra: str,
        upstream: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """`upstream` (default: the daemon's socket) and `env` are docktap's, not the client's."""
        self.socket = workdir / "proxy.sock"
        self.capture_path = workdir / "proxy.jsonl"
        self.env = dict(daemon.env)
        self.env["DOCKER_HOST"] = f"unix://{self.socket}"
        self.process = subprocess.Popen(
            [
                *DOCKTAP,
                "proxy",
                "--listen",
                str(self.socket),
                "--upstream",
                upstream or daemon.host,
                "-o",
                str(self.capture_path),
                *extra,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=daemon.env if env is None else env,
        )
        assert self.process.stderr is not None
        # The proxy says it listens only once the socket accepts: no polling, no sleeping.
        self.banner = self.process.stderr.readline().decode()
        assert "listening on" in self.banner, self.banner + self._rest()

    def _rest(self) -> str:
        self.process.kill()
        _, err = self.process.communicate(timeout=10)
        return err.decode(errors="replace")

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def docker(
        self, *args: str, input: bytes | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["docker", *args],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )

    def stop(self, allow_errors: bool = False) -> Capture:
        """SIGTERM, as a service manager would; the capture must come out whole."""
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=30)
        assert self.process.returncode == 0, err.decode(errors="replace")
        self.stdout = out
        self.stderr = err.decode(errors="replace")
        return checked_capture(self.capture_path, allow_errors)
