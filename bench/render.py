#!/usr/bin/env python3
"""Generate a large synthetic capture and time `docktap show` on it.

    python bench/render.py                      # 100,000 exchanges, in a temp dir
    python bench/render.py -n 20000 --keep cap.jsonl

The capture is made the way docktap makes one: observer-style events encoded by RecordEncoder
and written by CaptureWriter. It repeats the traffic of `docker run` (ping, create, a hijacked
attach with stdout/stderr frames beside a ContainerWait long poll, start), with a container
listing and, now and then, an events stream and a pull with JSON progress, so every kind of row
the timeline draws is exercised.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from docktap.capture.format import RecordEncoder
from docktap.capture.reader import load
from docktap.capture.writer import CaptureWriter
from docktap.events import (
    BodyData,
    Closed,
    Direction,
    Event,
    Frame,
    Hijacked,
    MessageEnd,
    RequestHead,
    ResponseHead,
    Stream,
    StreamData,
)
from docktap.render.timeline import TimelineOptions, render

CLIENT = Direction.CLIENT
DAEMON = Direction.DAEMON
UA = (("Host", "api.moby.localhost"), ("User-Agent", "Docker-Client/28.2.2 (linux)"))
JSON_HEAD = (("Api-Version", "1.41"), ("Content-Type", "application/json"))


class _Gen:
    def __init__(self, path: str) -> None:
        self.enc = RecordEncoder(1_800_000_000.0, 0.0, 1 << 20)
        self.writer = CaptureWriter.create(path)
        self.writer.write([self.enc.header("unix:///var/run/docker.sock", ["bench"], "bench")])
        self.t = 0.0
        self.conn = 0
        self.exchanges = 0
        self.batch: list[dict[str, object]] = []

    def tick(self, dt: float = 0.0004) -> float:
        self.t += dt
        return self.t

    def emit(self, *events: Event) -> None:
        for event in events:
            self.batch.extend(self.enc.encode(event))
        if len(self.batch) > 5000:
            self.flush()

    def flush(self) -> None:
        self.writer.write(self.batch)
        self.batch = []

    def open(self) -> int:
        self.conn += 1
        self.batch.append(self.enc.opened(self.conn, {"pid": 4242, "uid": 0, "gid": 0}, self.t))
        return self.conn

    def close(self, conn: int) -> None:
        self.emit(Closed(conn, self.tick()))

    def call(
        self,
        conn: int,
        seq: int,
        method: str,
        target: str,
        status: int,
        request: bytes = b"",
        response: list[bytes] | None = None,
        end: bool = True,
    ) -> None:
        self.exchanges += 1
        head = RequestHead(conn, self.tick(), seq, method, target, "1.1", UA)
        self.emit(head)
        if request:
            self.emit(BodyData(conn, self.tick(), seq, CLIENT, request))
        self.emit(MessageEnd(conn, self.tick(), seq, CLIENT))
        reason = "OK" if status < 300 else "Error"
        self.emit(ResponseHead(conn, self.tick(), seq, status, reason, "1.1", JSON_HEAD, False))
        for piece in response or []:
            self.emit(BodyData(conn, self.tick(), seq, DAEMON, piece))
        if end:
            self.emit(MessageEnd(conn, self.tick(), seq, DAEMON))


def _docker_run(gen: _Gen, n: int) -> None:
    cid = f"{n:012x}" + "ab" * 26
    a = gen.open()
    gen.call(a, 1, "HEAD", "/_ping", 200)
    create = json.dumps({"Image": "bb", "Cmd": ["sh", "-c", f"echo out{n}"], "Tty": False})
    gen.call(
        a,
        2,
        "POST",
        "/v1.41/containers/create",
        201,
        create.encode(),
        [b'{"Id":"%s"}\n' % cid.encode()],
    )
    b = gen.open()
    seq = 1
    gen.exchanges += 1
    gen.emit(
        RequestHead(
            b,
            gen.tick(),
            seq,
            "POST",
            f"/v1.41/containers/{cid}/attach?stderr=1&stdout=1&stream=1",
            "1.1",
            UA,
        )
    )
    gen.emit(MessageEnd(b, gen.tick(), seq, CLIENT))
    gen.emit(ResponseHead(b, gen.tick(), seq, 101, "UPGRADED", "1.1", (("Upgrade", "tcp"),), True))
    gen.emit(Hijacked(b, gen.t, seq, "tcp"))
    gen.call(a, 3, "POST", f"/v1.41/containers/{cid}/wait?condition=removed", 200, end=False)
    c = gen.open()
    gen.call(c, 1, "POST", f"/v1.41/containers/{cid}/start", 204)
    out = f"out{n}\n".encode()
    gen.emit(StreamData(b, gen.tick(), seq, DAEMON, b"\x01\0\0\0\0\0\0" + bytes([len(out)]) + out))
    gen.emit(Frame(b, gen.t, seq, DAEMON, Stream.STDOUT, out))
    gen.emit(Frame(b, gen.t, seq, DAEMON, Stream.STDERR, b"warning: bench\n"))
    gen.close(b)
    gen.close(c)
    gen.emit(BodyData(a, gen.tick(), 3, DAEMON, b'{"Error":null,"StatusCode":0}\n'))
    gen.emit(MessageEnd(a, gen.tick(), 3, DAEMON))
    listing = json.dumps([{"Id": cid, "Names": [f"/c{n}"], "Image": "bb", "State": "exited"}] * 4)
    gen.call(a, 4, "GET", "/v1.41/containers/json?all=1", 200, response=[listing.encode()])
    gen.close(a)


def _events(gen: _Gen, n: int) -> None:
    a = gen.open()
    pieces = []
    for i in range(20):
        message = {"Type": "container", "Action": "start", "Actor": {"ID": f"{n + i:064x}"}}
        pieces.append(json.dumps(message).encode() + b"\n")
    gen.call(a, 1, "GET", "/v1.41/events?since=1", 200, response=pieces)
    progress = [b'{"status":"Pulling from library/bb","id":"latest"}\r\n']
    progress += [b'{"status":"Downloading","id":"abc","progress":"[=> ]"}\r\n'] * 10
    progress += [b'{"error":"boom","errorDetail":{"message":"boom"}}\r\n']
    gen.call(a, 2, "POST", "/v1.41/images/create?fromImage=bb&tag=latest", 200, response=progress)
    gen.close(a)


def generate(path: str, exchanges: int = 100_000) -> int:
    """Write a capture of about `exchanges` exchanges to `path`; return how many it has."""
    gen = _Gen(path)
    n = 0
    while gen.exchanges < exchanges:
        if n % 50 == 49:
            _events(gen, n)
        else:
            _docker_run(gen, n)
        n += 1
    gen.flush()
    gen.writer.write([gen.enc.footer(gen.tick(), gen.writer.records + 1)])
    gen.writer.close()
    return gen.exchanges


def _time(argv: list[str], out: str) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run of argv, stdout to a file."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with open(out, "wb") as sink:
        subprocess.run(argv, stdout=sink, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--exchanges", type=int, default=100_000)
    parser.add_argument("--keep", metavar="FILE", help="write the capture here and keep it")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="docktap-bench-")
    path = args.keep or os.path.join(workdir, "bench.jsonl")
    started = time.perf_counter()
    count = generate(path, args.exchanges)
    size = Path(path).stat().st_size
    print(
        f"generated {count} exchanges, {size / 1e6:.1f} MB in {time.perf_counter() - started:.2f}s"
    )
    docktap = [sys.executable, "-m", "docktap", "show"]
    commands = {
        "show --width 120": [*docktap, path, "--width", "120"],
        "show --json": [*docktap, path, "--json"],
        "show --op ContainerWait": [*docktap, path, "--op", "ContainerWait"],
    }
    out = os.path.join(workdir, "out.txt")
    print(f"{'command':28} {'wall':>6} {'cpu':>6}  (best of {args.repeat}; cpu = user + sys)")
    for name, argv in commands.items():
        runs = [_time(argv, out) for _ in range(args.repeat)]
        with open(out, encoding="utf-8") as handle:
            lines = sum(1 for _ in handle)
        wall = min(w for w, _ in runs)
        cpu = min(c for _, c in runs)
        print(f"{name:28} {wall:5.2f}s {cpu:5.2f}s  {lines} lines out")
    # Where the time goes, in this process: reading the capture, then drawing it.
    gc.disable()
    started = time.process_time()
    capture = load(path)
    loaded = time.process_time() - started
    gc.enable()
    gc.freeze()
    started = time.process_time()
    options = TimelineOptions(width=120, styled=False)
    count = sum(1 for _ in render(capture, options))
    drawn = time.process_time() - started
    started = time.process_time()
    sum(1 for _ in render(capture, TimelineOptions(width=120, styled=True)))
    styled = time.process_time() - started
    print(f"in process: load() {loaded:.2f}s cpu, render {drawn:.2f}s cpu ({count} texts),")
    print(f"            render with styles {styled:.2f}s cpu")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
