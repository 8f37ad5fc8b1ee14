#!/usr/bin/env python3
"""What the guard's gate costs per request in-process: warm, and with cold caches.

    python bench/gatecost.py                 # the relay bench's create and ping
    python bench/gatecost.py --count 5000

Puts bench/relay.py's container create (and its ping) through a `Gate` with the bench's
policy, and bench/fastserver.py's answer back through it, as the relay does (from_client, then
from_daemon). Warm: the CPU time (process_time) per request over a loop, median of 5 rounds.
Cold: each from_client alone, after writing one byte in every cache line of 8 MiB (twice the
L2 of the development machine), median of the requests; and each from_daemon alone after the
same write (the relay pays both, each after a wait).

The cold figure is the one the relay sees: between two requests the client and the daemon
run and the CPU idles, so the gate finds its code and data out of the caches, and what it costs
there follows the cache lines it touches more than the instructions it runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import fastserver  # noqa: E402
import relay as relaybench  # noqa: E402

from docktap.policy.gate import Gate  # noqa: E402
from docktap.policy.model import loads  # noqa: E402

_EVICT = 8 << 20
_LINE = 64


def measure(request: bytes, answer: bytes, count: int) -> tuple[float, float, float]:
    """Warm microseconds per request (both sides), and cold ones for from_client and for
    from_daemon."""
    policy = loads(relaybench.BENCH_POLICY)
    gate = Gate(lambda: policy, 1000, "/usr/bin/docker")
    for _ in range(200):
        gate.from_client(request)
        gate.from_daemon(answer)
    warm = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(count):
            gate.from_client(request)
            gate.from_daemon(answer)
        warm.append((time.process_time() - started) / count * 1e6)
    evict = bytearray(_EVICT)
    ones = b"\1" * (_EVICT // _LINE)
    clock = time.perf_counter_ns
    cold, daemon = [], []
    for _ in range(count):
        evict[::_LINE] = ones
        started = clock()
        gate.from_client(request)
        cold.append((clock() - started) / 1000)
        evict[::_LINE] = ones
        started = clock()
        gate.from_daemon(answer)
        daemon.append((clock() - started) / 1000)
    return statistics.median(warm), statistics.median(cold), statistics.median(daemon)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="requests per round")
    args = parser.parse_args()
    cases = (
        ("POST /containers/create", relaybench._create_request(), fastserver.CREATED),
        ("GET /_ping", relaybench._request("GET", "/_ping"), fastserver.PING),
    )
    for name, request, answer in cases:
        warm, cold, daemon = measure(request, answer, args.count)
        print(
            f"{name:24s} warm {warm:5.1f} us (from_client and from_daemon), "
            f"cold {cold:5.1f} us (from_daemon cold {daemon:4.1f} us)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
