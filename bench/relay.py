#!/usr/bin/env python3
"""Speed benchmark of the docktap relay against a direct connection and socat.

    python bench/relay.py                       # full run, as root (starts a private dockerd)
    python bench/relay.py --quick               # smoke run: small sizes, 2 rounds
    python bench/relay.py --only ping,rps --rounds 3 --json-out /tmp/r.json

Five paths from the client to an upstream are compared, in one run:

    direct         the client connects to the upstream socket itself
    socat          socat UNIX-LISTEN:SOCK,fork UNIX-CONNECT:UPSTREAM (skipped when missing)
    splice         bench/splicerelay.py: the kernel moves the bytes (splice(2) through a pipe,
                   a thread per direction), nothing is read into user space: the floor of
                   what any relay costs here, before it looks at a byte
    docktap        a child process running docktap.relay.Relay(upstream, tap=None): no recording
    docktap+policy the same relay with a guard enforcing a policy (docktap.policy) that allows
                   what the scenarios do: every request is decided before it is forwarded
    docktap+rec    a child process recording through docktap.recording.session.record, as
                   `docktap proxy --listen SOCK --upstream URL -o FILE` does (default body cap,
                   live rows on stderr)

against two upstreams: a private dockerd (tests/dockerd.py, vfs, nothing pulled) and
bench/fastserver.py, a precomputed-answer server that is much faster than the daemon, so that
the relay's own cost shows. Each relay is started fresh for every run (its readiness is its
"listening on" line on stderr) and stopped after it, so its VmHWM is the peak of that run.

Scenarios (each one in rounds; every round runs every path once, in a rotated order; the
figures are medians over rounds, and ratios and added latencies are medians of per-round
differences against the direct path of the same round):

    ping      N sequential GET /_ping on one keep-alive connection: p50/p99 latency (us)
    inspect   N sequential GET /containers/{id}/json on one keep-alive connection (daemon: a
              created container, 3 KB chunked; fast: 2 KB): p50/p99 latency (us)
    create    N sequential POST /containers/create (a 1.5 KB body, as the docker CLI sends)
              on one keep-alive connection (fast upstream only): p50/p99 latency (us), what
              the guard's reading of a whole body costs
    download  a big response body (daemon: GET /images/get of an imported random image;
              fast: a chunked body): MB/s
    upload    a big request body (daemon: POST /images/load of that image's saved tar,
              or PUT /containers/{id}/archive with --upload archive; fast: read and discard)
    rps       64 concurrent keep-alive clients doing inspect calls for a fixed time, from
              several load-generator processes: requests per second
    stream    a hijacked attach stream of stdout frames (fast upstream only): MB/s
    render    docktap show and docktap stats on a generated capture (bench/render.py): seconds

Recording lags behind heavy traffic (the recorder spools its backlog and catches up when the
relay is idle or stops), so each docktap run also reports how long docktap took to exit after
SIGTERM ("stop s": the recorder catching up) and the recorder child's peak RSS.

The recorder's CPU per exchange ("rec us/ex") is the recorder child's CPU seconds (user plus
system, from /proc) from the start of the run until it has caught up (its CPU time still for
0.3 s once the clients are done), divided by the exchanges it recorded: the `request` records
in the capture.

Every run also reports how many of the machine's CPUs were busy while it ran ("busy cores",
from /proc/stat: clients, upstream, relay and recorder together), and the CPU seconds the relay
and the recorder used. A direct run that already keeps every core busy leaves a relay nothing
but CPU taken from the client and the upstream.

MB is 10**6 bytes. Results go to a table on stdout and to JSON (--json-out).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import multiprocessing
import os
import platform
import select
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Barrier
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
#: The docker CLI's own container create, recorded from dockerd (see `_create_request`).
CREATE_CAPTURE = ROOT / "captures" / "run-stdin.jsonl"

PATHS = ("direct", "socat", "splice", "docktap", "docktap+policy", "docktap+rec")
LABELS = {
    "direct": "direct",
    "socat": "socat",
    "splice": "splice floor",
    "docktap": "docktap (no rec)",
    "docktap+policy": "docktap (policy, enforce)",
    "docktap+rec": "docktap (recording)",
}
SCENARIOS = ("ping", "inspect", "create", "download", "upload", "rps", "stream", "render")
UPSTREAMS = ("daemon", "fast")
SCENARIO_UPSTREAMS: dict[str, tuple[str, ...]] = {
    "ping": UPSTREAMS,
    "inspect": UPSTREAMS,
    "create": ("fast",),
    "download": UPSTREAMS,
    "upload": UPSTREAMS,
    "rps": UPSTREAMS,
    "stream": ("fast",),
    "render": (),
}
BULK = ("download", "upload", "stream")
LATENCY = ("ping", "inspect", "create")
IMAGE = "docktap-bench-bulk:latest"
API = "/v1.41"
UA = b"User-Agent: docktap-bench\r\n"
MB = 1e6


class BenchError(Exception):
    """A run or the setup failed; the message says why."""


@dataclass(frozen=True)
class Sizes:
    pings: int
    body: int
    stream: int
    rps_seconds: float
    clients: int
    exchanges: int


FULL = Sizes(5000, 300_000_000, 1_000_000_000, 3.0, 64, 100_000)
QUICK = Sizes(500, 30_000_000, 100_000_000, 1.0, 64, 10_000)


# -- processes and clean-up ----------------------------------------------------------------


class Cleanup:
    """Everything the benchmark starts or creates, torn down by close() whatever happens."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.workers: list[BaseProcess] = []
        self.dirs: list[Path] = []
        self.daemon: Any = None  # tests/dockerd.py Running

    def close(self) -> None:
        for proc in reversed(self.procs):
            _terminate(proc, 10.0)
        self.procs.clear()
        for worker in self.workers:
            if worker.is_alive():
                worker.kill()
            worker.join(5)
        self.workers.clear()
        if self.daemon is not None:
            import dockerd

            daemon, self.daemon = self.daemon, None
            dockerd.stop(daemon)
        for path in self.dirs:
            shutil.rmtree(path, ignore_errors=True)
        self.dirs.clear()


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the process group we started (pgid == pid), then SIGKILL it if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    return env


class Child:
    """A process that says `marker` on stderr once it is ready; its stderr is then drained."""

    def __init__(
        self, name: str, argv: list[str], marker: str, cleanup: Cleanup, timeout: float = 60.0
    ) -> None:
        self.name = name
        self.cleanup = cleanup
        self.lines: deque[str] = deque(maxlen=40)
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=_child_env(),
            start_new_session=True,
        )
        cleanup.procs.append(self.proc)
        assert self.proc.stderr is not None
        self.fd = self.proc.stderr.fileno()
        self._drain: threading.Thread | None = None
        try:
            self._wait_ready(marker.encode(), timeout)
        except BaseException:
            self.stop()
            raise
        self._drain = threading.Thread(target=self._read_rest, daemon=True)
        self._drain.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _wait_ready(self, marker: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        seen = b""
        while marker not in seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.name} did not say {marker.decode()!r} in {timeout:.0f}s")
            readable, _, _ = select.select([self.fd], [], [], left)
            if not readable:
                continue
            data = os.read(self.fd, 65536)
            if not data:
                code = self.proc.wait(10)
                raise BenchError(
                    f"{self.name} exited with status {code} before listening: "
                    + seen.decode(errors="replace").strip()[-2000:]
                )
            seen += data
        self.lines.extend(seen.decode(errors="replace").splitlines())

    def _read_rest(self) -> None:
        """Drain stderr until EOF, then close it: only this thread closes the pipe once it
        runs, so that its descriptor cannot be reused under a read still in progress."""
        assert self.proc.stderr is not None
        with contextlib.suppress(OSError, ValueError):
            while data := os.read(self.fd, 65536):
                self.lines.extend(data.decode(errors="replace").splitlines())
        self.proc.stderr.close()

    def stop(self, timeout: float = 30.0) -> int:
        _terminate(self.proc, timeout)
        if self._drain is not None:
            self._drain.join(10)  # EOF comes once the process group is gone
        elif self.proc.stderr is not None:
            self.proc.stderr.close()
        if self.proc in self.cleanup.procs:
            self.cleanup.procs.remove(self.proc)
        return self.proc.returncode


def _proc_status(pid: int) -> dict[str, float]:
    """VmHWM (peak) and VmRSS of a process, in MB."""
    found: dict[str, float] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                found[key] = int(value.split()[0]) * 1024 / MB
    return found


# -- the relay without recording: a child process running only docktap.relay.Relay -------------

# Run with `python -c RELAY_CHILD UPSTREAM LISTEN [POLICY]`: it imports nothing but the relay
# (and, given a policy file, the guard enforcing it), so that its memory compares with the
# recording relay's. Serves until SIGTERM or SIGINT, like the proxy.
RELAY_CHILD = """
import asyncio, signal, sys
from docktap.relay import Relay
from docktap.upstream import Endpoint

def guard(policy):
    if policy is None:
        return None
    from pathlib import Path
    from docktap.policy.guard import Guard
    from docktap.policy.model import loads
    return Guard(loads(Path(policy).read_text()))

async def serve(upstream, listen, policy):
    relay = Relay(Endpoint(path=upstream), tap=None, guard=guard(policy))
    await relay.listen(Endpoint(path=listen))
    print("relay child: listening on " + listen, file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await relay.close(grace=1.0)

asyncio.run(serve(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
"""


# Run with `python -c RECORD_CHILD UPSTREAM LISTEN CAPTURE`: the session `docktap proxy` runs,
# without the command line around it. The session returns once it serves: then it says so.
RECORD_CHILD = """
import asyncio, signal, sys
from docktap.recording.session import record
from docktap.upstream import Endpoint

async def serve(upstream, listen, capture):
    session = record(capture, Endpoint(path=listen), Endpoint(path=upstream), live="status",
                     grace=1.0)
    async with session:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        print("recording relay: listening on " + listen, file=sys.stderr, flush=True)
        await stop.wait()

asyncio.run(serve(sys.argv[1], sys.argv[2], sys.argv[3]))
"""


# What the scenarios do, as a policy for any client: the guard decides each request.
BENCH_POLICY = """docktap-policy: 1
clients:
- client: any
  allow:
  - {operation: SystemPing, request: "GET /_ping"}
  - operation: ContainerCreate
    request: "POST /containers/create"
    body: {images: ["bb"]}
  - {operation: ContainerInspect, request: "GET /containers/{id}/json"}
  - {operation: ImageGetAll, request: "GET /images/get"}
  - {operation: ImageLoad, request: "POST /images/load"}
  - {operation: PutContainerArchive, request: "PUT /containers/{id}/archive"}
  - {operation: ContainerAttach, request: "POST /containers/{id}/attach"}
"""


# -- the hops: what sits between the client and an upstream --------------------------------

# How long the recording relay may take to exit after SIGTERM: its recorder catching up.
STOP_TIMEOUT = 600.0
# The recorder has caught up once its CPU time has not moved for this long (seconds): the
# relay hands it the spooled backlog within a tenth of a second of calming down.
SETTLED = 0.3


def _cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process so far."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_ticks() -> tuple[int, int]:
    """Busy and total ticks of all CPUs, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return sum(ticks) - idle, sum(ticks)


def busy_cores(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    total = after[1] - before[1]
    if total <= 0:
        return None
    return (after[0] - before[0]) / total * len(os.sched_getaffinity(0))


def _first_child(pid: int) -> int | None:
    with contextlib.suppress(OSError, IndexError):
        return int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])
    return None


class RecorderWatch:
    """The peak RSS and CPU time of docktap's recorder child, watched until it exits (it
    outlives the relay's last /proc reading while it catches up)."""

    def __init__(self, pid: int) -> None:
        self.peak: float | None = None
        self.cpu: float | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(pid,), daemon=True)
        self._thread.start()

    def _watch(self, pid: int) -> None:
        while (hwm := _proc_status(pid).get("VmHWM")) is not None:
            self.peak = max(self.peak or 0.0, hwm)
            self.cpu = _cpu_seconds(pid) or self.cpu
            if self._done.wait(0.05):
                return

    def stop(self) -> tuple[float | None, float | None]:
        self._done.set()
        self._thread.join(5)
        return self.peak, self.cpu


@dataclass
class Hop:
    path: str
    socket: str
    child: Child | None = None
    capture: Path | None = None
    start_rss: dict[str, float] = field(default_factory=dict)
    # CPU seconds of the relay, and of its recorder child, when the run started.
    start_cpu: float | None = None
    recorder: tuple[int, float | None] | None = None

    @classmethod
    def started(cls, path: str, sock: str, child: Child, capture: Path | None = None) -> Hop:
        recorder = _first_child(child.pid) if capture is not None else None
        if capture is not None:
            # The recorder's start-up is not the recording: its CPU time is counted from the
            # capture's first record, written once it has imported what it records with.
            deadline = time.monotonic() + 60.0
            while time.monotonic() < deadline and not (capture.exists() and capture.stat().st_size):
                time.sleep(0.01)
        return cls(
            path,
            sock,
            child,
            capture,
            _proc_status(child.pid),
            _cpu_seconds(child.pid),
            None if recorder is None else (recorder, _cpu_seconds(recorder)),
        )

    def settle(self) -> dict[str, float]:
        """For a recording hop, once the clients are done: wait until the recorder has caught
        up, and give its CPU time per exchange recorded so far."""
        if self.recorder is None or self.capture is None:
            return {}
        pid, start = self.recorder
        if start is None:
            return {}
        deadline = time.monotonic() + STOP_TIMEOUT
        last = _cpu_seconds(pid)
        still_since = time.monotonic()
        while time.monotonic() - still_since < SETTLED and time.monotonic() < deadline:
            time.sleep(0.02)
            now = _cpu_seconds(pid)
            if now is None:
                return {}
            if now != last:
                last, still_since = now, time.monotonic()
        if last is None:
            return {}
        with self.capture.open("rb") as f:
            exchanges = sum(1 for line in f if line.startswith(b'{"type":"request"'))
        if not exchanges:
            return {}
        return {
            "recorded_exchanges": exchanges,
            "recorder_us_per_exchange": (last - start) / exchanges * 1e6,
        }

    def stop(self) -> dict[str, float]:
        stats: dict[str, float] = {}
        if self.child is None:
            return stats
        if self.start_cpu is not None and (cpu := _cpu_seconds(self.child.pid)) is not None:
            stats["cpu_s"] = cpu - self.start_cpu
        watch: RecorderWatch | None = None
        if self.path.startswith("docktap"):
            status = _proc_status(self.child.pid)
            if "VmHWM" in status:
                stats["rss_peak_mb"] = status["VmHWM"]
            if "VmRSS" in self.start_rss:
                stats["rss_start_mb"] = self.start_rss["VmRSS"]
            if self.recorder is not None:
                watch = RecorderWatch(self.recorder[0])
        started = time.perf_counter()
        # The recorder may have a backlog to catch up with before docktap exits.
        code = self.child.stop(STOP_TIMEOUT if self.capture is not None else 30.0)
        if self.path.startswith("docktap"):
            stats["stop_s"] = time.perf_counter() - started
        if watch is not None and self.recorder is not None:
            peak, cpu = watch.stop()
            if peak is not None:
                stats["recorder_rss_peak_mb"] = peak
            if cpu is not None and self.recorder[1] is not None:
                stats["recorder_cpu_s"] = cpu - self.recorder[1]
        if code != 0 and self.path != "socat":  # socat exits 143 on SIGTERM
            tail = " | ".join(list(self.child.lines)[-5:])
            raise BenchError(f"{self.child.name} exited with status {code}: {tail}")
        if self.capture is not None:
            with contextlib.suppress(OSError):
                stats["capture_mb"] = self.capture.stat().st_size / MB
                self.capture.unlink()
        return stats


class HopFactory:
    def __init__(self, workdir: Path, cleanup: Cleanup) -> None:
        self.workdir = workdir
        self.cleanup = cleanup
        self.count = 0

    def start(self, path: str, upstream: str) -> Hop:
        if path == "direct":
            return Hop(path, upstream)
        self.count += 1
        sock = str(self.workdir / f"hop{self.count}.sock")
        if path == "socat":
            argv = ["socat", "-d", "-d", f"UNIX-LISTEN:{sock},fork", f"UNIX-CONNECT:{upstream}"]
            return Hop(path, sock, Child("socat", argv, "listening on", self.cleanup))
        if path == "splice":
            argv = [sys.executable, str(BENCH / "splicerelay.py"), sock, upstream]
            child = Child("splice relay", argv, "listening on", self.cleanup)
            return Hop.started(path, sock, child)
        if path == "docktap":
            argv = [sys.executable, "-c", RELAY_CHILD, upstream, sock]
            child = Child("docktap relay child", argv, "listening on", self.cleanup)
            return Hop.started(path, sock, child)
        if path == "docktap+policy":
            policy = self.workdir / "policy.yaml"
            policy.write_text(BENCH_POLICY)
            argv = [sys.executable, "-c", RELAY_CHILD, upstream, sock, str(policy)]
            child = Child("docktap policy relay child", argv, "listening on", self.cleanup)
            return Hop.started(path, sock, child)
        capture = self.workdir / f"hop{self.count}.jsonl"
        argv = [sys.executable, "-c", RECORD_CHILD, upstream, sock, str(capture)]
        child = Child("docktap recording relay", argv, "listening on", self.cleanup)
        return Hop.started(path, sock, child, capture)


# -- HTTP on raw sockets -----------------------------------------------------------------------


def _connect(path: str, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


def _request(method: str, target: str, *headers: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: docker", *headers]
    return "\r\n".join(lines).encode() + b"\r\n" + UA + b"\r\n"


def _create_request() -> bytes:
    """A container create as the docker CLI sends it: the body of `docker run --rm --network
    none -i bb cat` by the docker CLI 28 (captures/run-stdin.jsonl), as Go's encoder wrote it
    (compact, a newline after it), under the bench's head."""
    from docktap.capture.reader import load

    capture = load(CREATE_CAPTURE)
    body = next(
        bytes(ex.request_body)
        for ex in capture.exchanges
        if ex.request.operation == "ContainerCreate"
    )
    head = _request(
        "POST",
        f"{API}/containers/create",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    )
    return head + body


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The response head (without the blank line) and whatever came after it."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise BenchError(f"connection closed before a response head: {buf[:200]!r}")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def _status(head: bytes) -> int:
    parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def response_length(buf: bytearray) -> int:
    """Length of the complete HTTP response at the start of `buf`, or 0 if incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return 0
    head = bytes(buf[:end]).lower()
    start = end + 4
    at = head.find(b"\r\ncontent-length:")
    if at >= 0:
        stop = head.find(b"\r\n", at + 2)
        total = start + int(head[at + 17 : stop if stop >= 0 else None])
        return total if len(buf) >= total else 0
    if b"chunked" not in head:
        return start
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return 0
        size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        pos = eol + 2 + size + 2
        if len(buf) < pos:
            return 0
        if size == 0:
            return pos


def _one_response(sock: socket.socket, request: bytes) -> bytes:
    sock.sendall(request)
    buf = bytearray()
    while not (length := response_length(buf)):
        data = sock.recv(65536)
        if not data:
            raise BenchError("connection closed in the middle of a response")
        buf += data
    if length != len(buf):
        raise BenchError("more bytes than one response")
    return bytes(buf)


# -- scenarios: one run each -------------------------------------------------------------------


def run_ping(
    sock_path: str, count: int, request: bytes | None = None, ok: bytes = b"HTTP/1.1 200"
) -> dict[str, float]:
    """Sequential pings (or `request`s, answered `ok`) on one connection, reading exactly the
    first response's length each time."""
    request = request or _request("GET", "/_ping")
    with _connect(sock_path, 30.0) as sock:
        first = _one_response(sock, request)
        if not first.startswith(ok):
            raise BenchError(f"{request[:30]!r} answered {first[:100]!r}")
        length = len(first)
        buf = bytearray(length)
        view = memoryview(buf)
        clock = time.perf_counter_ns
        send = sock.sendall
        recv_into = sock.recv_into
        samples = [0] * count
        warmup = min(200, max(20, count // 10))
        for i in range(-warmup, count):
            started = clock()
            send(request)
            got = 0
            while got < length:
                n = recv_into(view[got:])
                if not n:
                    raise BenchError("connection closed in the middle of a ping")
                got += n
            elapsed = clock() - started
            if buf[:12] != ok or buf[-2:] != first[-2:]:
                raise BenchError(f"unexpected response: {bytes(buf[:100])!r}")
            if i >= 0:
                samples[i] = elapsed
    samples.sort()
    return {
        "p50_us": samples[count // 2] / 1000,
        "p99_us": samples[min(count - 1, math.ceil(count * 0.99) - 1)] / 1000,
        "mean_us": sum(samples) / count / 1000,
    }


def _drain_body(
    sock: socket.socket, head: bytes, rest: bytes, keep: bool
) -> tuple[int, bytes, bytes]:
    """Read a body until EOF: its size, its last bytes, and (with keep) all of it."""
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    total = len(rest)
    tail = rest[-8:]
    kept = bytearray(rest) if keep else bytearray()
    while n := sock.recv_into(view):
        total += n
        tail = (tail + bytes(view[max(0, n - 8) : n]))[-8:]
        if keep:
            kept += view[:n]
    length = _header(head, b"content-length")
    if length is not None and int(length) != total:
        raise BenchError(f"body of {total} bytes, Content-Length said {int(length)}")
    if b"chunked" in (_header(head, b"transfer-encoding") or b"") and not tail.endswith(
        b"0\r\n\r\n"
    ):
        raise BenchError("chunked body cut short (no last chunk)")
    return total, tail, bytes(kept)


def run_download(sock_path: str, target: str) -> dict[str, float]:
    with _connect(sock_path, 300.0) as sock:
        started = time.perf_counter()
        sock.sendall(_request("GET", target, "Connection: close"))
        head, rest = _read_head(sock)
        if _status(head) != 200:
            raise BenchError(f"GET {target}: {head[:200]!r} {rest[:300]!r}")
        total, _, _ = _drain_body(sock, head, rest, keep=False)
        elapsed = time.perf_counter() - started
    return {"mb_s": total / elapsed / MB, "seconds": elapsed, "bytes": total}


_FILL = memoryview(os.urandom(4 << 20))


def run_upload(sock_path: str, method: str, target: str, body: Path | int) -> dict[str, float]:
    """Send a body with Content-Length (a file by sendfile, or N bytes from memory)."""
    size = body if isinstance(body, int) else body.stat().st_size
    request = _request(
        method,
        target,
        "Content-Type: application/x-tar",
        f"Content-Length: {size}",
        "Connection: close",
    )
    with _connect(sock_path, 600.0) as sock:
        started = time.perf_counter()
        sock.sendall(request)
        if isinstance(body, int):
            left = body
            while left:
                piece = _FILL[: min(left, len(_FILL))]
                sock.sendall(piece)
                left -= len(piece)
        else:
            with body.open("rb") as f:
                sock.sendfile(f)
        head, rest = _read_head(sock)
        _, _, answer = _drain_body(sock, head, rest, keep=True)
        elapsed = time.perf_counter() - started
    if _status(head) not in (200, 201, 204) or b"errorDetail" in answer:
        raise BenchError(f"{method} {target}: {head[:200]!r} {answer[:300]!r}")
    return {"mb_s": size / elapsed / MB, "seconds": elapsed, "bytes": size}


def run_stream(sock_path: str, target: str, payload: int) -> dict[str, float]:
    frames = math.ceil(payload / (64 << 10))
    expected = payload + 8 * frames
    request = _request(
        "POST", target, "Content-Type: text/plain", "Connection: Upgrade", "Upgrade: tcp"
    )
    with _connect(sock_path, 300.0) as sock:
        started = time.perf_counter()
        sock.sendall(request)
        head, rest = _read_head(sock)
        if _status(head) != 101:
            raise BenchError(f"POST {target}: {head[:200]!r}")
        total, _, _ = _drain_body(sock, b"", rest, keep=False)
        elapsed = time.perf_counter() - started
    if total != expected:
        raise BenchError(f"stream of {total} bytes, expected {expected}")
    return {"mb_s": total / elapsed / MB, "seconds": elapsed, "bytes": total}


def _rps_worker(
    sock_path: str,
    request: bytes,
    clients: int,
    seconds: float,
    barrier: Barrier,
    out: Connection,
) -> None:
    """One load-generator process: `clients` keep-alive connections on one epoll loop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    socks: list[socket.socket] = []
    try:
        for _ in range(clients):
            sock = _connect(sock_path, 30.0)
            socks.append(sock)
            reply = _one_response(sock, request)  # warm-up, and a check
            if _status(reply) != 200:
                raise BenchError(f"inspect answered {reply[:200]!r}")
        selector = selectors.DefaultSelector()
        buffers: list[bytearray] = []
        for i, sock in enumerate(socks):
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, i)
            buffers.append(bytearray())
        barrier.wait(120)
        started = time.perf_counter()
        end = started + seconds
        for sock in socks:
            sock.send(request)
        count = 0
        active = len(socks)
        while active:
            events = selector.select(30.0)
            if not events:
                raise BenchError("no response for 30 s")
            for key, _ in events:
                sock = socks[key.data]
                data = sock.recv(262144)
                if not data:
                    raise BenchError("connection closed by the server")
                buf = buffers[key.data]
                buf += data
                length = response_length(buf)
                if not length:
                    continue
                if buf[:12] != b"HTTP/1.1 200":
                    raise BenchError(f"inspect answered {bytes(buf[:200])!r}")
                del buf[:length]
                if time.perf_counter() < end:
                    count += 1
                    sock.send(request)
                else:
                    selector.unregister(sock)
                    active -= 1
        out.send(("ok", count))
    except BaseException as exc:
        barrier.abort()
        out.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        for sock in socks:
            sock.close()
        out.close()


def run_rps(
    sock_path: str, target: str, clients: int, seconds: float, workers: int, cleanup: Cleanup
) -> dict[str, float]:
    ctx = multiprocessing.get_context("fork")
    request = _request("GET", target)
    barrier = ctx.Barrier(workers + 1)
    procs: list[tuple[BaseProcess, Connection]] = []
    try:
        for w in range(workers):
            share = clients // workers + (1 if w < clients % workers else 0)
            receive, send = ctx.Pipe(duplex=False)
            proc: BaseProcess = ctx.Process(
                target=_rps_worker,
                args=(sock_path, request, share, seconds, barrier, send),
                daemon=True,
            )
            proc.start()
            send.close()
            cleanup.workers.append(proc)
            procs.append((proc, receive))
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(180)
        total = 0
        for _, receive in procs:
            if not receive.poll(seconds + 120):
                raise BenchError("a load generator did not report")
            kind, value = receive.recv()
            if kind != "ok":
                raise BenchError(f"load generator: {value}")
            total += int(value)
    finally:
        for proc, receive in procs:
            receive.close()
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
            cleanup.workers.remove(proc)
    return {"rps": total / seconds, "requests": total}


# -- setup -------------------------------------------------------------------------------------


def write_random_tar(path: Path, size: int) -> None:
    """A tar holding one file, `blob`, of `size` random bytes."""
    info = tarfile.TarInfo("blob")
    info.size = size
    info.mode = 0o644
    info.mtime = int(time.time())
    with path.open("wb") as f:
        f.write(info.tobuf(format=tarfile.GNU_FORMAT))
        left = size
        while left:
            n = min(left, 4 << 20)
            f.write(os.urandom(n))
            left -= n
        f.write(b"\0" * (-size % 512) + b"\0" * 1024)


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    lines = (out.stdout or out.stderr).decode(errors="replace").strip().splitlines()
    return lines[0] if lines else ""


def machine_info() -> dict[str, Any]:
    import docktap

    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="utf-8") as f:
        mem_kb = int(f.readline().split()[1])
    commit = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = bool(_first_line(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"]))
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "docktap_version": docktap.__version__,
        "git_commit": commit + ("+dirty-src" if dirty else ""),
        "socat": _socat_version() if shutil.which("socat") else "",
        "loadavg_start": list(os.getloadavg()),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _socat_version() -> str:
    try:
        out = subprocess.run(["socat", "-V"], capture_output=True, timeout=30, check=False)
    except OSError:
        return ""
    for line in out.stdout.decode(errors="replace").splitlines():
        if line.startswith("socat version"):
            return line.split(" on ")[0].removeprefix("socat version ").strip()
    return ""


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


# -- the benchmark -----------------------------------------------------------------------------


Runs = dict[str, dict[str, dict[str, list[dict[str, Any]]]]]


class Bench:
    def __init__(self, args: argparse.Namespace, cleanup: Cleanup, console: Console) -> None:
        self.args = args
        self.sizes: Sizes = QUICK if args.quick else FULL
        if args.pings:
            self.sizes = Sizes(
                args.pings,
                self.sizes.body,
                self.sizes.stream,
                self.sizes.rps_seconds,
                self.sizes.clients,
                self.sizes.exchanges,
            )
        self.rounds: int = args.rounds or (2 if args.quick else 5)
        self.cleanup = cleanup
        self.console = console
        self.workdir = Path(tempfile.mkdtemp(prefix="docktap-relaybench-", dir="/tmp"))
        cleanup.dirs.append(self.workdir)
        self.hops = HopFactory(self.workdir, cleanup)
        self.scenarios: list[str] = args.only
        self.upstreams: dict[str, str] = {}
        self.notes: list[str] = []
        self.paths = list(PATHS)
        self.runs: Runs = {}
        self.render: dict[str, Any] = {}
        self.setup: dict[str, Any] = {}
        self.container = ""
        self.upload_body: Path | None = None
        self.workers: int = args.workers or max(2, min(4, len(os.sched_getaffinity(0))))
        self.machine = machine_info()

    def log(self, message: str) -> None:
        self.console.print(message, highlight=False)

    # -- setup ------------------------------------------------------------------------------

    def start(self) -> None:
        if shutil.which("socat") is None:
            self.paths.remove("socat")
            self.note("socat is not installed: the socat path is skipped")
        load = os.getloadavg()[0]
        if load > 0.5 * (os.cpu_count() or 1):
            self.note(
                f"the machine is busy at the start (load average {load:.2f} on "
                f"{os.cpu_count()} CPUs): figures are noisier, ratios more reliable than absolutes"
            )
        wanted = {u for s in self.scenarios for u in SCENARIO_UPSTREAMS[s]}
        wanted &= set(self.args.upstreams)
        if "fast" in wanted:
            self.start_fast()
        if "daemon" in wanted:
            self.start_daemon()

    def note(self, message: str) -> None:
        self.notes.append(message)
        self.log(f"[yellow]note:[/yellow] {message}")

    def start_fast(self) -> None:
        sock = str(self.workdir / "fast.sock")
        argv = [sys.executable, str(BENCH / "fastserver.py"), "--socket", sock]
        Child("fastserver", argv, "listening on", self.cleanup)
        self.upstreams["fast"] = sock

    def start_daemon(self) -> None:
        import dockerd

        self.log("starting the private dockerd (tests/dockerd.py) ...")
        started = time.perf_counter()
        try:
            running = dockerd.start()
        except dockerd.DaemonUnavailable as exc:
            self.note(f"no private dockerd, the daemon upstream is skipped: {exc}")
            return
        self.cleanup.daemon = running
        daemon = running.daemon
        self.setup["dockerd_start_s"] = time.perf_counter() - started
        with _connect(str(daemon.socket), 30.0) as sock:
            answer = _one_response(sock, _request("GET", f"{API}/version"))
        version = json.loads(answer.split(b"\r\n\r\n", 1)[1] or b"{}")
        self.machine["dockerd"] = version.get("Version", "?")
        self.machine["storage_driver"] = "vfs"
        try:
            created = daemon.docker("create", "--network", "none", daemon.image, "true")
            self.container = created.stdout.decode().strip()
            if {"download", "upload"} & set(self.scenarios):
                self.make_image(daemon)
        except (OSError, subprocess.SubprocessError) as exc:
            raise BenchError(f"setting up the daemon upstream: {exc}") from exc
        self.upstreams["daemon"] = str(daemon.socket)

    def make_image(self, daemon: Any) -> None:
        size = self.sizes.body
        tar = self.workdir / "random.tar"
        self.log(f"making a {size / MB:.0f} MB image by docker import of random bytes ...")
        started = time.perf_counter()
        write_random_tar(tar, size)
        daemon.docker("import", str(tar), IMAGE, timeout=1800)
        self.setup["import_s"] = time.perf_counter() - started
        if self.args.upload == "archive":
            self.upload_body = tar
            return
        tar.unlink()
        saved = self.workdir / "saved.tar"
        started = time.perf_counter()
        daemon.docker("save", "-o", str(saved), IMAGE, timeout=1800)
        self.setup["save_s"] = time.perf_counter() - started
        self.setup["saved_tar_bytes"] = saved.stat().st_size
        self.upload_body = saved

    # -- runs ---------------------------------------------------------------------------------

    def scenario(self, name: str, upstream: str) -> Callable[[str], dict[str, float]]:
        s = self.sizes
        daemon = upstream == "daemon"
        if name == "ping":
            return lambda sock: run_ping(sock, s.pings)
        if name == "inspect":
            cid = self.container if daemon else "bench"
            inspect = _request("GET", f"{API}/containers/{cid}/json")
            return lambda sock: run_ping(sock, s.pings, inspect)
        if name == "create":
            create = _create_request()
            return lambda sock: run_ping(sock, s.pings, create, b"HTTP/1.1 201")
        if name == "download":
            target = f"{API}/images/get?names=" + (IMAGE if daemon else f"bench&bytes={s.body}")
            return lambda sock: run_download(sock, target)
        if name == "upload":
            if not daemon:
                return lambda sock: run_upload(sock, "POST", f"{API}/images/load?quiet=1", s.body)
            body = self.upload_body
            assert body is not None
            if self.args.upload == "archive":
                target = f"{API}/containers/{self.container}/archive?path=/tmp"
                return lambda sock: run_upload(sock, "PUT", target, body)
            return lambda sock: run_upload(sock, "POST", f"{API}/images/load?quiet=1", body)
        if name == "rps":
            cid = self.container if daemon else "bench"
            target = f"{API}/containers/{cid}/json"
            return lambda sock: run_rps(
                sock, target, s.clients, s.rps_seconds, self.workers, self.cleanup
            )
        target = f"{API}/containers/bench/attach?stream=1&stdout=1&bytes={s.stream}"
        return lambda sock: run_stream(sock, target, s.stream)

    def run_one(self, name: str, upstream: str, path: str, rnd: int) -> dict[str, Any]:
        fn = self.scenario(name, upstream)
        result: dict[str, Any] = {"round": rnd}
        try:
            hop = self.hops.start(path, self.upstreams[upstream])
        except BenchError as exc:
            result["error"] = str(exc)
            return result
        try:
            before = _cpu_ticks()
            result.update(fn(hop.socket))
            if (busy := busy_cores(before, _cpu_ticks())) is not None:
                result["busy_cores"] = busy
            result.update(hop.settle())
        except (OSError, BenchError) as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            try:
                result.update(hop.stop())
            except BenchError as exc:
                result.setdefault("error", str(exc))
        return result

    def run(self) -> None:
        for name in self.scenarios:
            if name == "render":
                self.run_render()
                continue
            ups = [u for u in SCENARIO_UPSTREAMS[name] if u in self.upstreams]
            if not ups:
                continue
            self.log(f"[bold]{name}[/bold]: {self.rounds} rounds x {len(self.paths)} paths")
            table = self.runs.setdefault(name, {})
            for rnd in range(self.rounds):
                order = ups if rnd % 2 == 0 else ups[::-1]
                for upstream in order:
                    k = rnd % len(self.paths)
                    for path in self.paths[k:] + self.paths[:k]:
                        result = self.run_one(name, upstream, path, rnd)
                        table.setdefault(upstream, {}).setdefault(path, []).append(result)
                        self.log(
                            f"  {name} {upstream:6} round {rnd + 1}/{self.rounds} "
                            f"{path:12} {_brief(result)}"
                        )

    def run_render(self) -> None:
        # bench/render.py's generator (imported by name: it is a script, not a typed module).
        generate: Callable[[str, int], int] = importlib.import_module("render").generate

        path = self.workdir / "render.jsonl"
        self.log(f"[bold]render[/bold]: generating a {self.sizes.exchanges}-exchange capture ...")
        started = time.perf_counter()
        count = generate(str(path), self.sizes.exchanges)
        info: dict[str, Any] = {
            "exchanges": count,
            "capture_mb": path.stat().st_size / MB,
            "generate_s": time.perf_counter() - started,
        }
        docktap = [sys.executable, "-m", "docktap"]
        commands: dict[str, list[str]] = {"show": [*docktap, "show", str(path)]}
        probe = subprocess.run(
            [*docktap, "stats", "--help"], capture_output=True, env=_child_env(), check=False
        )
        if probe.returncode == 0:
            commands["stats"] = [*docktap, "stats", str(path)]
        else:
            info["stats"] = {"missing": True}
            self.note("docktap has no `stats` command: reported as missing")
        times: dict[str, list[float]] = {name: [] for name in commands}
        names = list(commands)
        for rnd in range(self.rounds):
            k = rnd % len(names)
            for name in names[k:] + names[:k]:
                started = time.perf_counter()
                done = subprocess.run(
                    commands[name],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    env=_child_env(),
                    check=False,
                )
                elapsed = time.perf_counter() - started
                if done.returncode != 0:
                    err = done.stderr.decode(errors="replace").strip()[-300:]
                    info[name] = {"error": f"exit {done.returncode}: {err}"}
                    self.log(f"  render {name}: [red]failed[/red] {err}")
                    continue
                times[name].append(elapsed)
                self.log(f"  render {name} round {rnd + 1}/{self.rounds}: {elapsed:.2f}s")
        for name, values in times.items():
            if values:
                info[name] = {"runs_s": values, "median_s": _median(values)}
        path.unlink()
        self.render = info

    # -- summary ------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, per_up in self.runs.items():
            for upstream, per_path in per_up.items():
                for path, runs in per_path.items():
                    out.setdefault(name, {}).setdefault(upstream, {})[path] = self._summarise(
                        name, runs, per_path
                    )
        return out

    def _summarise(
        self, name: str, runs: list[dict[str, Any]], per_path: dict[str, list[dict[str, Any]]]
    ) -> dict[str, Any]:
        ok = [r for r in runs if "error" not in r]
        metrics = sorted({k for r in ok for k in r if k != "round"})
        entry: dict[str, Any] = {
            "runs": len(ok),
            "errors": [r["error"] for r in runs if "error" in r],
            "median": {m: _median([r[m] for r in ok if m in r]) for m in metrics},
        }
        for peak in ("rss_peak_mb", "recorder_rss_peak_mb"):
            if any(peak in r for r in ok):
                entry[f"{peak}_max"] = max(r[peak] for r in ok if peak in r)

        def paired(metric: str, base: str, how: str) -> float | None:
            by_round = {r["round"]: r[metric] for r in per_path.get(base, []) if "error" not in r}
            values = [
                (r[metric] - by_round[r["round"]])
                if how == "diff"
                else r[metric] / by_round[r["round"]]
                for r in ok
                if r["round"] in by_round and (how == "diff" or by_round[r["round"]])
            ]
            return _median(values)

        if name in LATENCY:
            for base in ("direct", "socat"):
                if base in per_path:
                    entry[f"added_p50_us_vs_{base}"] = paired("p50_us", base, "diff")
                    entry[f"added_p99_us_vs_{base}"] = paired("p99_us", base, "diff")
        else:
            metric = "rps" if name == "rps" else "mb_s"
            entry["ratio_to_direct"] = paired(metric, "direct", "ratio")
            for base in ("socat", "splice"):
                if base in per_path:
                    entry[f"ratio_to_{base}"] = paired(metric, base, "ratio")
        return entry

    def fast_vs_daemon(self, summary: dict[str, Any]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        checks = (
            ("ping", "p50_us", "ping p50 (us)", False),
            ("ping", "p99_us", "ping p99 (us)", False),
            ("download", "mb_s", "download (MB/s)", True),
            ("upload", "mb_s", "upload (MB/s)", True),
            ("rps", "rps", "inspect (req/s)", True),
        )
        for name, metric, label, higher in checks:
            ups = summary.get(name, {})
            try:
                d = ups["daemon"]["direct"]["median"][metric]
                f = ups["fast"]["direct"]["median"][metric]
            except KeyError:
                continue
            if d is None or f is None:
                continue
            rows.append(
                {
                    "metric": label,
                    "daemon": d,
                    "fast": f,
                    "fast_is_faster": f > d if higher else f < d,
                }
            )
        return rows

    def check_load_generator(self, summary: dict[str, Any]) -> None:
        """The fast upstream reached directly bounds what the load generator can drive."""
        fast = summary.get("rps", {}).get("fast", {})
        capacity = fast.get("direct", {}).get("median", {}).get("rps")
        relayed = [
            e["median"]["rps"]
            for path, e in fast.items()
            if path != "direct" and e["median"].get("rps") is not None
        ]
        if capacity and relayed:
            self.notes.append(
                f"load generator: {capacity:.0f} req/s against the fast upstream directly, "
                f"{capacity / max(relayed):.1f}x the best relayed path"
            )

    def report(self) -> dict[str, Any]:
        self.machine["loadavg_end"] = list(os.getloadavg())
        summary = self.summary()
        self.check_load_generator(summary)
        s = self.sizes
        return {
            "machine": self.machine,
            "config": {
                "rounds": self.rounds,
                "quick": bool(self.args.quick),
                "scenarios": self.scenarios,
                "paths": self.paths,
                "upstreams": list(self.upstreams),
                "pings": s.pings,
                "body_bytes": s.body,
                "stream_bytes": s.stream,
                "rps_clients": s.clients,
                "rps_seconds": s.rps_seconds,
                "rps_workers": self.workers,
                "render_exchanges": s.exchanges,
                "upload_daemon": (
                    "PUT /containers/{id}/archive?path=/tmp"
                    if self.args.upload == "archive"
                    else "POST /images/load"
                ),
                "docktap_proxy": "record(FILE, SOCK, UPSTREAM, live='status'), as docktap proxy",
                "socat": "socat -d -d UNIX-LISTEN:SOCK,fork UNIX-CONNECT:UPSTREAM",
            },
            "setup": self.setup,
            "notes": self.notes,
            "summary": summary,
            "fast_vs_daemon": self.fast_vs_daemon(summary),
            "render": self.render,
            "runs": self.runs,
        }


def _brief(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"[red]error[/red] {result['error']}"
    parts = []
    if "p50_us" in result:
        parts.append(f"p50 {result['p50_us']:.1f}us p99 {result['p99_us']:.1f}us")
    if "mb_s" in result:
        parts.append(f"{result['mb_s']:.0f} MB/s ({result['seconds']:.2f}s)")
    if "rps" in result:
        parts.append(f"{result['rps']:.0f} req/s")
    if result.get("busy_cores") is not None:
        parts.append(f"{result['busy_cores']:.2f} cores busy")
    if "cpu_s" in result:
        parts.append(f"relay CPU {result['cpu_s']:.2f}s")
    if "recorder_cpu_s" in result:
        parts.append(f"recorder CPU {result['recorder_cpu_s']:.2f}s")
    if "recorder_us_per_exchange" in result:
        parts.append(
            f"recorder {result['recorder_us_per_exchange']:.0f}us/exchange "
            f"({result['recorded_exchanges']})"
        )
    if "rss_peak_mb" in result:
        parts.append(f"peak RSS {result['rss_peak_mb']:.1f} MB")
    if "recorder_rss_peak_mb" in result:
        parts.append(f"recorder {result['recorder_rss_peak_mb']:.1f} MB")
    if "stop_s" in result:
        parts.append(f"stopped in {result['stop_s']:.1f}s")
    return ", ".join(parts)


# -- tables -------------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 1, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _cell(entry: dict[str, Any] | None, key: str, digits: int = 1, sign: bool = False) -> str:
    if entry is None:
        return "-"
    if entry["runs"] == 0:
        return "[red]error[/red]"
    value = entry.get(key)
    if value is None:
        value = entry["median"].get(key)
    return _f(value, digits, sign)


def _measured(entry: dict[str, Any] | None, key: str) -> bool:
    return entry is not None and key in entry["median"]


def print_tables(report: dict[str, Any], console: Console) -> None:
    summary: dict[str, Any] = report["summary"]
    config = report["config"]
    paths: list[str] = config["paths"]
    rounds = config["rounds"]
    m = report["machine"]
    console.print(
        f"\n[bold]docktap relay benchmark[/bold]  {m['cpu_model']} x{m['nproc']}, "
        f"Python {m['python']}, docktap {m['docktap_version']} ({m['git_commit']}), "
        f"dockerd {m.get('dockerd', '-')}, socat {m.get('socat') or '-'}; "
        f"load average {m['loadavg_start'][0]:.2f} -> {m['loadavg_end'][0]:.2f}; "
        f"medians of {rounds} rounds",
        highlight=False,
    )

    titles = {
        "ping": f"{config['pings']} sequential GET /_ping, one keep-alive connection (us)",
        "inspect": f"{config['pings']} sequential GET /containers/{{id}}/json, one keep-alive "
        "connection (us)",
        "create": f"{config['pings']} sequential POST /containers/create, one keep-alive "
        "connection (us)",
    }
    for latency in LATENCY:
        if latency not in summary:
            continue
        t = Table(title=titles[latency])
        for col in ("upstream", "path", "p50", "p99", "+p50 vs direct", "+p99 vs direct"):
            t.add_column(col, justify="left" if col in ("upstream", "path") else "right")
        t.add_column("+p50 vs socat", justify="right")
        t.add_column("+p99 vs socat", justify="right")
        t.add_column("rec us/ex", justify="right")
        for upstream, per_path in summary[latency].items():
            for path in paths:
                e = per_path.get(path)
                t.add_row(
                    upstream,
                    LABELS[path],
                    _cell(e, "p50_us"),
                    _cell(e, "p99_us"),
                    _cell(e, "added_p50_us_vs_direct", sign=True) if path != "direct" else "",
                    _cell(e, "added_p99_us_vs_direct", sign=True) if path != "direct" else "",
                    _cell(e, "added_p50_us_vs_socat", sign=True)
                    if path.startswith("docktap")
                    else "",
                    _cell(e, "added_p99_us_vs_socat", sign=True)
                    if path.startswith("docktap")
                    else "",
                    _cell(e, "recorder_us_per_exchange", 0) if path == "docktap+rec" else "",
                )
            t.add_section()
        console.print(t)

    sizes = {
        "download": f"{config['body_bytes'] / MB:.0f} MB response body",
        "upload": f"{config['body_bytes'] / MB:.0f} MB request body",
        "stream": f"{config['stream_bytes'] / MB:.0f} MB hijacked stream",
    }
    if any(name in summary for name in BULK):
        t = Table(
            title="Bulk transfers (MB/s; peak RSS is docktap's VmHWM, max over rounds; "
            "stop s: docktap's exit after SIGTERM)"
        )
        for col in (
            "scenario",
            "upstream",
            "path",
            "MB/s",
            "x direct",
            "x socat",
            "x splice",
            "s",
            "busy cores",
            "relay CPU s",
            "recorder CPU s",
            "peak RSS MB",
            "stop s",
        ):
            t.add_column(
                col, justify="left" if col in ("scenario", "upstream", "path") else "right"
            )
        for name in BULK:
            for upstream, per_path in summary.get(name, {}).items():
                for path in paths:
                    e = per_path.get(path)
                    t.add_row(
                        sizes[name],
                        upstream,
                        LABELS[path],
                        _cell(e, "mb_s", 0),
                        _cell(e, "ratio_to_direct", 2) if path != "direct" else "",
                        _cell(e, "ratio_to_socat", 2) if path not in ("direct", "socat") else "",
                        _cell(e, "ratio_to_splice", 2)
                        if path not in ("direct", "socat", "splice")
                        else "",
                        _cell(e, "seconds", 2),
                        _cell(e, "busy_cores", 2),
                        _cell(e, "cpu_s", 2) if _measured(e, "cpu_s") else "",
                        _cell(e, "recorder_cpu_s", 2) if path == "docktap+rec" else "",
                        _cell(e, "rss_peak_mb_max", 1) if path.startswith("docktap") else "",
                        _cell(e, "stop_s", 1) if path.startswith("docktap") else "",
                    )
                t.add_section()
        console.print(t)

    if "rps" in summary:
        t = Table(
            title=f"{config['rps_clients']} concurrent clients, inspect calls for "
            f"{config['rps_seconds']:.0f}s ({config['rps_workers']} load-generator processes)"
        )
        for col in (
            "upstream",
            "path",
            "req/s",
            "x direct",
            "x socat",
            "busy cores",
            "relay CPU s",
            "recorder CPU s",
            "rec us/ex",
            "peak RSS MB",
            "stop s",
        ):
            t.add_column(col, justify="left" if col in ("upstream", "path") else "right")
        for upstream, per_path in summary["rps"].items():
            for path in paths:
                e = per_path.get(path)
                t.add_row(
                    upstream,
                    LABELS[path],
                    _cell(e, "rps", 0),
                    _cell(e, "ratio_to_direct", 2) if path != "direct" else "",
                    _cell(e, "ratio_to_socat", 2) if path not in ("direct", "socat") else "",
                    _cell(e, "busy_cores", 2),
                    _cell(e, "cpu_s", 2) if _measured(e, "cpu_s") else "",
                    _cell(e, "recorder_cpu_s", 2) if path == "docktap+rec" else "",
                    _cell(e, "recorder_us_per_exchange", 0) if path == "docktap+rec" else "",
                    _cell(e, "rss_peak_mb_max", 1) if path.startswith("docktap") else "",
                    _cell(e, "stop_s", 1) if path.startswith("docktap") else "",
                )
            t.add_section()
        console.print(t)

    rss_rows = [
        (name, upstream, per_path)
        for name in (*BULK, "rps", "ping")
        for upstream, per_path in summary.get(name, {}).items()
    ]
    if rss_rows:
        t = Table(
            title="docktap memory: VmHWM (MB), max over rounds \\[at start]; recorder: its child"
        )
        for col in ("scenario", "upstream", "docktap (no rec)", "docktap (recording)", "recorder"):
            t.add_column(col, justify="left" if col in ("scenario", "upstream") else "right")
        for name, upstream, per_path in rss_rows:
            cells = []
            for path in ("docktap", "docktap+rec"):
                e = per_path.get(path)
                if e is None or "rss_peak_mb_max" not in e:
                    cells.append("-")
                else:
                    cells.append(
                        f"{e['rss_peak_mb_max']:.1f} [{_f(e['median'].get('rss_start_mb'))}]"
                    )
            recording = per_path.get("docktap+rec")
            cells.append(_cell(recording, "recorder_rss_peak_mb_max", 1))
            t.add_row(name, upstream, *cells)
        console.print(t)

    render = report["render"]
    if render:
        t = Table(
            title=f"Rendering a {render['exchanges']}-exchange capture "
            f"({render['capture_mb']:.0f} MB), seconds"
        )
        t.add_column("command")
        t.add_column("median s", justify="right")
        t.add_column("runs", justify="right")
        for name in ("show", "stats"):
            r = render.get(name, {})
            if r.get("missing"):
                t.add_row(f"docktap {name}", "missing", "")
            elif "error" in r:
                t.add_row(f"docktap {name}", "[red]error[/red]", r["error"][:60])
            elif r:
                t.add_row(
                    f"docktap {name}",
                    f"{r['median_s']:.2f}",
                    ", ".join(f"{v:.2f}" for v in r["runs_s"]),
                )
        console.print(t)

    if report["fast_vs_daemon"]:
        t = Table(title="Is the fast upstream faster than the daemon? (direct path)")
        for col in ("metric", "daemon", "fast", "fast faster"):
            t.add_column(col, justify="left" if col == "metric" else "right")
        for row in report["fast_vs_daemon"]:
            t.add_row(
                row["metric"],
                f"{row['daemon']:.1f}",
                f"{row['fast']:.1f}",
                "yes" if row["fast_is_faster"] else "[red]NO[/red]",
            )
        console.print(t)

    for note in report["notes"]:
        console.print(f"note: {note}", highlight=False)


# -- command line ------------------------------------------------------------------------------


def _scenarios(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in SCENARIOS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"scenarios are {', '.join(SCENARIOS)}")
    return [n for n in SCENARIOS if n in names]


def _upstreams(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or any(n not in UPSTREAMS for n in names):
        raise argparse.ArgumentTypeError("upstreams are daemon, fast")
    return names


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, help="rounds per scenario (default 5, quick 2)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 500 pings, 30 MB bodies, 100 MB stream"
    )
    parser.add_argument(
        "--only",
        type=_scenarios,
        default=list(SCENARIOS),
        metavar="SCENARIO[,...]",
        help=f"run only these scenarios: {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--upstreams",
        type=_upstreams,
        default=list(UPSTREAMS),
        metavar="daemon,fast",
        help="which upstreams to use (default both)",
    )
    parser.add_argument("--pings", type=int, help="pings per run (overrides the default)")
    parser.add_argument("--workers", type=int, help="load-generator processes for rps")
    parser.add_argument(
        "--upload",
        choices=("load", "archive"),
        default="load",
        help="daemon request body: POST /images/load of the saved image (default), "
        "or PUT /containers/{id}/archive of the random tar",
    )
    parser.add_argument(
        "--json-out", type=Path, default=BENCH / "results.json", help="default bench/results.json"
    )
    args = parser.parse_args(argv)

    for extra in (ROOT / "src", ROOT / "tests", BENCH):
        if str(extra) not in sys.path:
            sys.path.insert(0, str(extra))
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")

    console = Console(stderr=True)
    cleanup = Cleanup()
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        bench = Bench(args, cleanup, console)
        bench.start()
        if not bench.upstreams and args.only != ["render"]:
            console.print("[red]no upstream available[/red]")
        bench.run()
        report = bench.report()
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
        print_tables(report, Console(width=None if sys.stdout.isatty() else 150))
        console.print(f"results written to {args.json_out}", highlight=False)
        return 0
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: cleaning up[/yellow]")
        return 130
    except BenchError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        cleanup.close()


if __name__ == "__main__":
    sys.exit(main())
