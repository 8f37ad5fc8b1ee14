#!/usr/bin/env python3
"""What the guard's gate costs per request in-process: warm, and with cold caches.

    python bench/gatecost.py                 # the relay bench's create and ping
    python bench/gatecost.py --count 5000
    python bench/gatecost.py --layers        # the create's from_client, layer by layer
    python bench/gatecost.py --calls         # Python calls and bytecodes per request

Puts bench/relay.py's container create (and its ping) through a `Gate` with the bench's
policy, and bench/fastserver.py's answer back through it, as the relay does (from_client, then
from_daemon). Warm: the CPU time (process_time) per request over a loop, median of 5 rounds.
Slept: each from_client alone after 200 us asleep (the CPU idles, as the relay's does between
two requests), median of the requests. Cold: each from_client alone, after writing one byte in
every cache line of 8 MiB (twice the L2 of the development machine), median of the requests;
and each from_daemon alone after the same write (the relay pays both, each after a wait).

`--layers` times the create's from_client warm and slept with everything below a layer
replaced by what it returns for this request (the decision, what the body asks, its decoded
value, the quick reading, orjson's parse and text), lowest layer last, rounds interleaved:
each line's difference to the one before is what that layer costs. `--calls` counts what a
machine shared with other work cannot blur: the Python calls and bytecode instructions each
request runs, by function (sys.settrace).

The cold figure is the one the relay sees: between two requests the client and the daemon
run and the CPU idles, so the gate finds its code and data out of the caches, and what it costs
there follows the cache lines it touches more than the instructions it runs.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import fastserver  # noqa: E402
import orjson  # noqa: E402
import relay as relaybench  # noqa: E402

from docktap.observer import head_end  # noqa: E402
from docktap.policy import asks  # noqa: E402
from docktap.policy.actions import Decided  # noqa: E402
from docktap.policy.gate import Gate  # noqa: E402
from docktap.policy.model import loads  # noqa: E402
from docktap.request import body as bodies  # noqa: E402
from docktap.request import gojson  # noqa: E402

_EVICT = 8 << 20
_LINE = 64
_SLEEP = 200e-6


def _gate() -> Gate:
    policy = loads(relaybench.BENCH_POLICY)
    return Gate(lambda: policy, 1000, "/usr/bin/docker")


def _slept(gate: Gate, request: bytes, answer: bytes, count: int) -> float:
    """The median microseconds of from_client after 200 us asleep."""
    clock = time.perf_counter_ns
    slept = []
    for _ in range(count):
        time.sleep(_SLEEP)
        started = clock()
        gate.from_client(request)
        slept.append((clock() - started) / 1000)
        gate.from_daemon(answer)
    return statistics.median(slept)


def measure(request: bytes, answer: bytes, count: int) -> tuple[float, float, float, float]:
    """Warm microseconds per request (both sides), slept ones for from_client, and cold ones
    for from_client and for from_daemon."""
    gate = _gate()
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
    slept = _slept(gate, request, answer, count // 2)
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
    return (
        statistics.median(warm),
        slept,
        statistics.median(cold),
        statistics.median(daemon),
    )


class _Parsed:
    """orjson's parse and text of one body, given back as they are: what is left of the quick
    reading without orjson."""

    JSONDecodeError = orjson.JSONDecodeError
    JSONEncodeError = orjson.JSONEncodeError

    def __init__(self, body: bytes) -> None:
        self.value = orjson.loads(body)
        self.text = orjson.dumps(self.value)

    def loads(self, data: bytes) -> Any:
        return self.value

    def dumps(self, value: Any) -> bytes:
        return self.text


_LAYERS = ("the gate", "the decision", "what it asks", "decoding", "quick reading", "orjson")


def layers(request: bytes, answer: bytes, count: int) -> None:
    """from_client of the create, warm and slept, with the layers below each replaced."""
    gate = _gate()
    body = request[head_end(request) or 0 :]
    reads = asks.READS["ContainerCreate"]
    quick = gojson.quick_decode(bodies._narrowed(bodies._WRAPPER, reads), bodies._WRAPPER, body)
    decoded = bodies.decode("ContainerCreate", body, reads)
    asked = asks.read("ContainerCreate", "POST", "/containers/create", (), body)
    decided = gate.from_client(request)[0]
    gate.from_daemon(answer)
    assert isinstance(decided, Decided)
    made = decided.decision
    real = (Gate._decide_body, asks.read, asks.decode, gojson.quick_decode, gojson.orjson)
    stubs: tuple[Any, ...] = (
        lambda self, parsed, data: made,
        lambda *_: asked,
        lambda *_: decoded,
        lambda *_: quick,
        _Parsed(body),
    )

    def down_to(layer: int) -> None:
        """Layers up to `layer` real, the ones below it replaced by their results."""
        targets: tuple[tuple[Any, str], ...] = (
            (Gate, "_decide_body"),
            (asks, "read"),  # what decide calls
            (asks, "decode"),
            (gojson, "quick_decode"),
            (gojson, "orjson"),
        )
        for at, (owner, name) in enumerate(targets):
            setattr(owner, name, real[at] if at < layer else stubs[at])

    warm: dict[int, list[float]] = collections.defaultdict(list)
    slept: dict[int, list[float]] = collections.defaultdict(list)
    try:
        for _ in range(3):
            for layer in range(len(_LAYERS)):
                down_to(layer)
                for _ in range(200):
                    gate.from_client(request)
                    gate.from_daemon(answer)
                started = time.process_time()
                for _ in range(count):
                    gate.from_client(request)
                    gate.from_daemon(answer)
                warm[layer].append((time.process_time() - started) / count * 1e6)
                slept[layer].append(_slept(gate, request, answer, count // 5))
    finally:
        down_to(len(_LAYERS))
    before = (0.0, 0.0)
    for layer, name in enumerate(_LAYERS):
        now = (min(warm[layer]), min(slept[layer]))
        print(
            f"{'+ ' if layer else ''}{name:16s} warm {now[0]:5.1f} us (+{now[0] - before[0]:4.1f}),"
            f" slept {now[1]:5.1f} us (+{now[1] - before[1]:4.1f})"
        )
        before = now


def calls(request: bytes, answer: bytes) -> None:
    """The Python calls and bytecode instructions of one request, both sides, by function."""
    gate = _gate()
    for _ in range(50):
        gate.from_client(request)
        gate.from_daemon(answer)
    opcodes: collections.Counter[str] = collections.Counter()
    entered: collections.Counter[str] = collections.Counter()

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        code = frame.f_code
        where = f"{Path(code.co_filename).name}:{code.co_name}"
        if event == "call":
            entered[where] += 1
        elif event == "opcode":
            opcodes[where] += 1
        return trace

    sys.settrace(trace)
    gate.from_client(request)
    gate.from_daemon(answer)
    sys.settrace(None)
    del entered["gatecost.py:calls"], opcodes["gatecost.py:calls"]
    print(f"  {sum(entered.values())} Python calls, {sum(opcodes.values())} bytecodes")
    for where, count in opcodes.most_common():
        print(f"  {count:5d} bytecodes in {entered[where]} call(s) of {where}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="requests per round")
    parser.add_argument("--layers", action="store_true", help="the create, layer by layer")
    parser.add_argument("--calls", action="store_true", help="calls and bytecodes per request")
    args = parser.parse_args()
    cases = (
        ("POST /containers/create", relaybench._create_request(), fastserver.CREATED),
        ("GET /_ping", relaybench._request("GET", "/_ping"), fastserver.PING),
    )
    if args.layers:
        layers(cases[0][1], cases[0][2], args.count)
        return 0
    for name, request, answer in cases:
        if args.calls:
            print(name)
            calls(request, answer)
            continue
        warm, slept, cold, daemon = measure(request, answer, args.count)
        print(
            f"{name:24s} warm {warm:5.1f} us (from_client and from_daemon), "
            f"slept {slept:5.1f} us, cold {cold:5.1f} us (from_daemon cold {daemon:4.1f} us)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
