#!/usr/bin/env python3
"""How fast the replay daemon answers: sequential requests on one keep-alive connection.

Serves captures/ps-a.jsonl with a replay session (`docktap.replay.session.replay`, what
`docktap replay --listen` runs) in a child process, and times N `GET /containers/json` (a GET
repeats its recorded answer). No Docker daemon is needed.

Usage: python bench/replay.py [-n 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUEST = b"GET /v1.41/containers/json?all=1 HTTP/1.1\r\nHost: docker\r\n\r\n"
# A process of its own, so that the client here does not share an interpreter (and its lock)
# with the daemon it measures. The session returns once it serves: then it says so.
REPLAY_CHILD = """
import asyncio, signal, sys
from docktap.replay.session import replay
from docktap.upstream import Endpoint

async def serve(capture, sock):
    async with replay([capture], Endpoint(path=sock)):
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print("serving", flush=True)
        await stop.wait()

asyncio.run(serve(sys.argv[1], sys.argv[2]))
"""


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError("no Content-Length in the answer")


def _round(path: str, count: int) -> float:
    """Seconds per request, over `count` requests on one connection."""
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(path)
        buffered = b""
        began = time.perf_counter()
        for _ in range(count):
            conn.sendall(REQUEST)
            while True:
                head, sep, rest = buffered.partition(b"\r\n\r\n")
                if sep and len(rest) >= (length := _content_length(head)):
                    buffered = rest[length:]
                    break
                buffered += conn.recv(65536)
        return (time.perf_counter() - began) / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        sock = f"{workdir}/replay.sock"
        capture = str(ROOT / "captures" / "ps-a.jsonl")
        server = subprocess.Popen(
            [sys.executable, "-c", REPLAY_CHILD, capture, sock], stdout=subprocess.PIPE
        )
        assert server.stdout is not None
        server.stdout.readline()  # it says so once the session serves
        try:
            each = [_round(sock, args.n) for _ in range(args.rounds)]
        finally:
            server.terminate()
            server.wait()
    median = statistics.median(each)
    print(f"replay: {args.n} sequential GET /containers/json, {args.rounds} rounds")
    print(f"  median {median * 1e6:.0f} µs per request, {1 / median:,.0f} requests/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
