#!/usr/bin/env python3
"""The recorder's CPU per exchange, in-process: wire messages fed to the engine as the child does.

    python bench/recorder.py                      # ping and inspect, 20,000 exchanges each
    python bench/recorder.py --heads distinct     # every head differs from the ones before
    python bench/recorder.py --profile inspect    # cProfile of the inspect run: top functions
    python bench/recorder.py --live rows          # with the live rows docktap proxy prints

bench/relay.py measures the recording child of a real `docktap proxy` (recorder CPU seconds
over the exchanges in the capture); on a shared machine that figure is noisy. This drives the
same code without the relay, the pipe or the scheduler: the messages the relay would send for N
keep-alive exchanges on one connection (a request's bytes, then the daemon's answer, as one
read each) are packed with recording.wire, read back in 1 MiB runs as the child reads its
spool, and dispatched by recording.child's loop to a Recorder writing a capture file with the
default body cap and redaction. It reports the process CPU time (user + system) per exchange,
best of --repeat runs.

The daemon's answers are dockerd 20.10's, recorded (bench/dockerd-answers.json): a `GET
/_ping` and a `GET /containers/{id}/json` of a created container (3 KB, chunked, redacted as
every ContainerInspect answer is).

Clients repeat their heads byte for byte, and so does dockerd but for the Date, and the
observer reads a head once per distinct bytes: by default each scenario is run twice, with
every exchange the same (`repeated`) and with every head different from the ones before
(`distinct`: the inspect of a different id, or a ping with a different User-Agent, answered
with a different Date), which is what a head the observer has not seen yet costs. The inspect's
body stays the same: a body never seen before also costs its redaction (redact.py keeps the
last ones masked).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import re
import sys
import tempfile
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from docktap.capture.format import RecordEncoder  # noqa: E402
from docktap.capture.writer import CaptureWriter  # noqa: E402
from docktap.recording import child  # noqa: E402
from docktap.recording.engine import Recorder  # noqa: E402
from docktap.recording.wire import Batch, Kind, parse  # noqa: E402
from docktap.redact import Redactor  # noqa: E402

ANSWERS = json.loads((Path(__file__).parent / "dockerd-answers.json").read_text())
_READ = 1 << 20  # what the child reads of its spool at a time


_DATE = re.compile(r"Date: [^\r]*")


def exchange(scenario: str, n: int | None = None) -> tuple[bytes, bytes]:
    """The request and the daemon's answer of one exchange, as they cross the socket: the same
    for every exchange, or (`n`) heads of their own for the n-th."""
    if scenario == "ping":
        agent = "docktap-bench" if n is None else f"docktap-bench/{n}"
        ping = f"GET /_ping HTTP/1.1\r\nHost: docker\r\nUser-Agent: {agent}\r\n\r\n"
        return ping.encode(), _dated(ANSWERS["ping_response"], n).encode("latin-1")
    inspect: dict[str, Any] = ANSWERS["inspect"]
    ident = inspect["Id"] if n is None else f"{n:064x}"
    # The body is the recorded one whatever the id: what is measured is the heads.
    body = json.dumps(inspect, separators=(",", ":")).encode() + b"\n"
    request = (
        f"GET /v1.41/containers/{ident}/json HTTP/1.1\r\n"
        "Host: docker\r\nUser-Agent: docktap-bench\r\n\r\n"
    ).encode()
    head = _dated(ANSWERS["inspect_head"], n).encode("latin-1")
    answer = head + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    return request, answer


def _dated(head: str, n: int | None) -> str:
    """A recorded answer's head, with the Date of a second of its own for the n-th."""
    if n is None:
        return head
    return _DATE.sub(formatdate(1.7e9 + n, usegmt=True).join(("Date: ", "")), head, count=1)


def wire(scenario: str, count: int, distinct: bool = False) -> bytes:
    """The wire messages of `count` exchanges on one connection, opened and closed."""
    same = exchange(scenario)
    batch = Batch()
    t = 1000.0
    batch.add(Kind.OPEN, 1, t)
    for n in range(count):
        request, answer = exchange(scenario, n) if distinct else same
        t += 0.0001
        batch.add(Kind.DATA_CLIENT, 1, t, request)
        t += 0.0001
        batch.add(Kind.DATA_DAEMON, 1, t, answer)
    batch.add(Kind.EOF_CLIENT, 1, t)
    batch.add(Kind.EOF_DAEMON, 1, t)
    batch.add(Kind.CLOSE, 1, t)
    return b"".join(batch.pieces)


def run(data: bytes, live: str, capture: str) -> float:
    """Record `data` into `capture`; the CPU seconds it took."""
    encoder = RecordEncoder(1.7e9, 1000.0, redactor=Redactor())
    writer = CaptureWriter.from_fd(os.open(capture, os.O_WRONLY | os.O_CREAT | os.O_TRUNC))
    recorder = Recorder(writer, encoder)
    if live != "off":
        from docktap.console import make_console
        from docktap.render.live import LiveView
        from docktap.render.timeline import TimelineOptions

        # As the child makes it for stderr that is not a terminal: no colour, no status line,
        # held as the child holds rows for this stderr.
        console = make_console(io.StringIO(), False, 100)
        options = TimelineOptions(width=100, styled=False, header=False)
        held = child.live_output()
        recorder.listeners.append(LiveView(console, options, held=held))
    started = time.process_time()
    recorder.start("unix:///var/run/docker.sock", None)
    rest = b""
    for pos in range(0, len(data), _READ):
        messages, rest = parse(rest + data[pos : pos + _READ])
        child._feed(recorder, messages, None)
    recorder.close(1e6)
    return time.process_time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("scenarios", nargs="*", default=["ping", "inspect"])
    parser.add_argument("--exchanges", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario (best kept)")
    parser.add_argument("--live", choices=("off", "rows"), default="off")
    parser.add_argument("--heads", choices=("repeated", "distinct", "both"), default="both")
    parser.add_argument("--profile", action="store_true", help="cProfile one run, top 25")
    args = parser.parse_args()
    child.collect_less()  # as the child does before it records
    with tempfile.TemporaryDirectory() as tmp:
        capture = os.path.join(tmp, "capture.jsonl")
        variants = ("repeated", "distinct") if args.heads == "both" else (args.heads,)
        for scenario, heads in ((s, h) for s in args.scenarios for h in variants):
            data = wire(scenario, args.exchanges, heads == "distinct")
            if args.profile:
                print(f"-- {scenario}, {heads} heads")
                profile = cProfile.Profile()
                profile.enable()
                run(data, args.live, capture)
                profile.disable()
                stats = pstats.Stats(profile, stream=sys.stdout)
                stats.sort_stats("tottime").print_stats(25)
                continue
            best = min(run(data, args.live, capture) for _ in range(args.repeat))
            size = os.path.getsize(capture)
            print(
                f"{scenario:8} {heads:8} heads {best / args.exchanges * 1e6:7.1f} us/exchange "
                f"({args.exchanges} exchanges, live {args.live}, capture {size / 1e6:.1f} MB)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
