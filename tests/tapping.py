"""Drive real Docker clients through the real `docktap` command, and check what it recorded.

Integration tests use these helpers so that every capture they make is checked the same way:
it validates against the JSON Schema, it was closed cleanly, and it holds no error records.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyte
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


class Terminal:
    """A command on a pseudo-terminal of a set size, its screen read through a terminal emulator.

    pyte plays the bytes as a VT100-style terminal would, so a test reads what a person would
    see (where each line starts, what overwrote what), not the bytes. `follow` is another
    descriptor read along with the terminal (a FIFO the command writes its capture to), so a
    test can wait for what the command recorded too. Waiting is for expected output, read with
    select against a deadline: never a sleep.
    """

    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        columns: int = 120,
        lines: int = 50,
        follow: int | None = None,
    ) -> None:
        self.screen = pyte.Screen(columns, lines)
        self.stream = pyte.ByteStream(self.screen)
        self.output = bytearray()
        self.followed = bytearray()
        self.follow = follow
        self.pid, self.master = pty.fork()
        if self.pid == 0:  # the child: become the command, on a terminal of the screen's size
            fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
            os.execvpe(argv[0], list(argv), env)
        self.open = True  # the terminal: until the command and its children all closed it

    def _read(self, deadline: float) -> None:
        """One read of what is ready on the terminal or the followed descriptor."""
        fds = [fd for fd in (self.master if self.open else None, self.follow) if fd is not None]
        ready, _, _ = select.select(fds, [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            self.kill()
            raise TimeoutError(f"waited in vain; the screen:\n{self.text()}")
        if self.master in ready:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every copy of the terminal's other side is closed
                chunk = b""
            self.output.extend(chunk)
            self.stream.feed(chunk)
            self.open = bool(chunk)
        if self.follow is not None and self.follow in ready:
            chunk = os.read(self.follow, 65536)
            self.followed.extend(chunk)
            if not chunk:
                self.follow = None

    def expect(self, wanted: bytes, timeout: float = 60) -> None:
        """Read until `wanted` has been written on the terminal (counting from the start)."""
        deadline = time.monotonic() + timeout
        while wanted not in self.output:
            if not self.open:
                raise AssertionError(f"ended without {wanted!r}; the screen:\n{self.text()}")
            self._read(deadline)

    def expect_followed(self, done: Callable[[bytes], bool], timeout: float = 60) -> None:
        """Read until what came on the followed descriptor is `done`."""
        deadline = time.monotonic() + timeout
        while not done(bytes(self.followed)):
            if self.follow is None:
                raise AssertionError(f"the followed descriptor ended; the screen:\n{self.text()}")
            self._read(deadline)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait(self, timeout: float = 60) -> int:
        """Read both to their end and reap the command; its exit code."""
        deadline = time.monotonic() + timeout
        while self.open or self.follow is not None:
            self._read(deadline)
        os.close(self.master)
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)

    def lines(self) -> list[str]:
        """The screen's lines, trailing blanks cut, blank lines at the bottom left out."""
        rows = [line.rstrip() for line in self.screen.display]
        while rows and not rows[-1]:
            rows.pop()
        return rows

    def text(self) -> str:
        return "\n".join(self.lines())


def ready_server(
    args: Sequence[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    start_new_session: bool = False,
    preexec_fn: Callable[[], object] | None = None,
    timeout: float = 60,
) -> tuple[subprocess.Popen[bytes], str]:
    """`docktap ARGS` (`proxy`, or `replay --listen`) once it accepts clients, and the address
    it says it listens on.

    It is told `--ready-fd`: the address comes on a pipe, which then ends; read with select
    against a deadline, so no polling, no sleeping, and quiet (-q) or not alike. Its stdout
    and stderr are pipes, left for the test to read.
    """
    read, write = os.pipe()
    try:
        process = subprocess.Popen(
            [*DOCKTAP, *args, "--ready-fd", str(write)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=start_new_session,
            preexec_fn=preexec_fn,
            pass_fds=(write,),
        )
    finally:
        os.close(write)
    said = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if not select.select([read], [], [], max(0.0, left))[0]:
                process.kill()
                raise TimeoutError(f"docktap {args[0]} not ready in {timeout}s")
            chunk = os.read(read, 4096)
            if not chunk:
                break
            said.extend(chunk)
    finally:
        os.close(read)
    if not said.endswith(b"\n"):  # the end without a whole line: it never listened
        process.kill()
        _, err = process.communicate(timeout=10)
        raise AssertionError(f"docktap {args[0]} did not start: {err.decode(errors='replace')}")
    return process, said.decode().removesuffix("\n")


class Proxy:
    """`docktap proxy` in a subprocess, listening on a unix socket under a temp dir."""

    def __init__(
        self,
        daemon: Daemon,
        workdir: Path,
        *extra: str,
        upstream: str | None = None,
        env: dict[str, str] | None = None,
        capture: Path | None = None,
    ) -> None:
        """`upstream` (default: the daemon's socket) and `env` are docktap's, not the client's;
        `capture` is `-o` (default: proxy.jsonl in `workdir`)."""
        self.socket = workdir / "proxy.sock"
        self.capture_path = capture or workdir / "proxy.jsonl"
        self.env = dict(daemon.env)
        self.env["DOCKER_HOST"] = f"unix://{self.socket}"
        argv = ["proxy", "--listen", str(self.socket), "--upstream", upstream or daemon.host]
        self.process, address = ready_server(
            [*argv, "-o", str(self.capture_path), *extra],
            env=daemon.env if env is None else env,
        )
        assert address == self.host
        if not {"-q", "--quiet"} & set(extra):
            # Said before it told the pipe it was ready: already there, and read out of the way.
            assert self.process.stderr is not None
            self.banner = self.process.stderr.readline().decode()
            assert self.banner.startswith(f"docktap: listening on {self.host},"), self.banner

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
