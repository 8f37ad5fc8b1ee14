#!/usr/bin/env python3
"""Where a relayed request's latency goes: each hop of it, and which hops cross CPUs.

    python bench/wakeups.py                       # as root: perf records syscall tracepoints
    python bench/wakeups.py --pings 3000 --rounds 3 --request ping

bench/relay.py says how much latency a relay adds; this says where it goes. It runs the
relay bench's create (or ping) against bench/fastserver.py through docktap without a policy
and with the bench's policy (the same relay child and policy as bench/relay.py), a fresh
relay per round, the two interleaved, while `perf record` follows the three processes'
sendto and recvfrom. Each request is cut into the seven hops between those calls:

    wake relay   the client's sendto to the relay's recvfrom returning (its wake-up, and
                 the event loop's way to the read)
    relay in     the relay's recvfrom to its sendto: what it does with the request before
                 forwarding it (with a policy, the gate's decision)
    wake daemon  to fastserver's recvfrom returning
    daemon       fastserver's own time
    wake relay   fastserver's sendto to the relay's recvfrom returning
    relay out    the relay's recvfrom to its sendto of the answer
    wake client  to the client's recvfrom returning

and each of the four wake-ups is marked `x` when the process woken runs on another CPU than
the one that woke it, `.` when on the same (`.xx.`: the client and the relay share a CPU, the
daemon is on the other). A process woken on an idle CPU of a virtual machine waits for the
host to run that CPU again: here that costs tens of microseconds, more than the relay's own
work. Each round runs the direct path too, untraced, in the order bench/relay.py rotates
the paths in. The report gives, per path, the share of requests in each pattern and the median hops
of each, so that what the relay does (relay in, relay out) stands apart from where the
scheduler put the processes. Tracing costs a microsecond or two per system call: the totals
are a little above bench/relay.py's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import relay as relaybench  # noqa: E402

EVENTS = ("syscalls:sys_enter_sendto", "syscalls:sys_exit_recvfrom")
HOPS = (
    "wake relay",
    "relay in",
    "wake daemon",
    "daemon",
    "wake relay ",
    "relay out",
    "wake client",
)
# A line of `perf script -F pid,tid,cpu,time,event`: pid/tid [cpu] seconds: event:
_LINE = re.compile(rb"(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):")

Point = tuple[float, int]  # microseconds, CPU


def trace(out: Path, pids: list[int]) -> subprocess.Popen[bytes]:
    argv = ["perf", "record", "-q", "-o", str(out), "-p", ",".join(map(str, pids))]
    for event in EVENTS:
        argv += ["-e", event]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # perf attaches to the processes before the requests start
    if proc.poll() is not None:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise relaybench.BenchError(f"perf record failed: {err.strip()[-300:]}")
    return proc


def events(data: Path) -> list[tuple[float, int, int, str]]:
    """(microseconds, thread, CPU, event) of a recording, in time order."""
    text = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "pid,tid,cpu,time,event"],
        capture_output=True,
        check=True,
    ).stdout
    found = []
    for line in text.splitlines():
        m = _LINE.search(line)
        if m:
            found.append((float(m[4]) * 1e6, int(m[2]), int(m[3]), m[5].decode()))
    found.sort()
    return found


def requests(
    found: list[tuple[float, int, int, str]], client: int, relay: int, daemon: int
) -> list[tuple[str, list[float]]]:
    """Each request's crossing pattern and hops, from the client's sendto to its recvfrom."""
    calls = {
        (relay, "syscalls:sys_exit_recvfrom"): "relay read",
        (relay, "syscalls:sys_enter_sendto"): "relay write",
        (daemon, "syscalls:sys_exit_recvfrom"): "daemon read",
        (daemon, "syscalls:sys_enter_sendto"): "daemon write",
        (client, "syscalls:sys_exit_recvfrom"): "client read",
    }
    spans: list[dict[str, list[Point]]] = []
    for at, tid, cpu, event in found:
        if tid == client and event == "syscalls:sys_enter_sendto":
            spans.append({"client write": [(at, cpu)]})
        elif spans and (name := calls.get((tid, event))) is not None:
            spans[-1].setdefault(name, []).append((at, cpu))
    out = []
    for span in spans:
        try:
            points = [
                span["client write"][0],
                span["relay read"][0],
                span["relay write"][0],
                span["daemon read"][0],
                span["daemon write"][0],
                span["relay read"][1],
                span["relay write"][1],
                span["client read"][-1],
            ]
        except (KeyError, IndexError):
            continue  # cut short by the end of the recording
        pattern = "".join("x" if points[i][1] != points[i + 1][1] else "." for i in (0, 2, 4, 6))
        out.append((pattern, [points[i + 1][0] - points[i][0] for i in range(7)]))
    return out


def summary(runs: list[list[tuple[str, list[float]]]]) -> dict[str, Any]:
    every = [r for run in runs for r in run]
    if not every:
        return {"requests": 0}
    by: dict[str, list[list[float]]] = defaultdict(list)
    for pattern, hops in every:
        by[pattern].append(hops)
    patterns = {}
    for pattern, rows in sorted(by.items(), key=lambda kv: -len(kv[1])):
        patterns[pattern] = {
            "share": len(rows) / len(every),
            "total_us": statistics.median(sum(h) for h in rows),
            "hops_us": {n: statistics.median(h[i] for h in rows) for i, n in enumerate(HOPS)},
        }
    return {
        "requests": len(every),
        "total_p50_us": statistics.median(sum(h) for _, h in every),
        "relay_in_p50_us": statistics.median(h[1] for _, h in every),
        "relay_out_p50_us": statistics.median(h[5] for _, h in every),
        "same_cpu_share": len(by.get("....", [])) / len(every),
        "patterns": patterns,
    }


def run(args: argparse.Namespace, workdir: Path, cleanup: relaybench.Cleanup) -> dict[str, Any]:
    if args.request == "create":
        request = relaybench._create_request()
    else:
        request = relaybench._request("GET", "/_ping")
    ok = b"HTTP/1.1 201" if args.request == "create" else b"HTTP/1.1 200"
    fast = str(workdir / "fast.sock")
    server = relaybench.Child(
        "fastserver",
        [sys.executable, str(BENCH / "fastserver.py"), "--socket", fast],
        "listening on",
        cleanup,
    )
    hops = relaybench.HopFactory(workdir, cleanup)
    paths = ("docktap", "docktap+policy")
    runs: dict[str, list[list[tuple[str, list[float]]]]] = {p: [] for p in paths}
    cpu: dict[str, list[float]] = {p: [] for p in paths}
    # Rounds as bench/relay.py runs them: the direct path too, in a rotated order, since where
    # the processes of one run were left is where the next one's start.
    order = ("direct", *paths)
    for rnd in range(args.rounds):
        k = rnd % len(order)
        for path in order[k:] + order[:k]:
            if path == "direct":
                direct = relaybench.run_ping(fast, args.pings, request, ok)["p50_us"]
                print(
                    f"round {rnd + 1}/{args.rounds} direct          p50 {direct:6.1f} us",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            hop = hops.start(path, fast)
            assert hop.child is not None
            relaybench.run_ping(hop.socket, 300, request, ok)  # warm, as bench/relay.py does
            data = workdir / f"{path}-{rnd}.data"
            perf = trace(data, [os.getpid(), hop.child.pid, server.pid])
            before = relaybench._cpu_seconds(hop.child.pid)
            relaybench.run_ping(hop.socket, args.pings, request, ok)
            after = relaybench._cpu_seconds(hop.child.pid)
            perf.send_signal(signal.SIGINT)
            perf.wait(60)
            if before is not None and after is not None:
                cpu[path].append((after - before) / args.pings * 1e6)
            hop.stop()
            found = requests(events(data), os.getpid(), hop.child.pid, server.pid)
            runs[path].append(found)
            data.unlink()
            brief = summary([found])
            print(
                f"round {rnd + 1}/{args.rounds} {path:15s} p50 {brief['total_p50_us']:6.1f} us, "
                f"relay in {brief['relay_in_p50_us']:5.1f} us, "
                f"all on one CPU {brief['same_cpu_share'] * 100:4.1f} %",
                file=sys.stderr,
                flush=True,
            )
    report: dict[str, Any] = {"request": args.request, "pings": args.pings, "paths": {}}
    for path in paths:
        entry = summary(runs[path])
        entry["relay_cpu_us_per_request"] = statistics.median(cpu[path]) if cpu[path] else None
        report["paths"][path] = entry
    return report


def print_report(report: dict[str, Any]) -> None:
    for path, entry in report["paths"].items():
        if not entry["requests"]:
            continue
        print(
            f"\n{path}: {entry['requests']} {report['request']} requests, p50 "
            f"{entry['total_p50_us']:.1f} us; relay in {entry['relay_in_p50_us']:.1f} us, "
            f"relay out {entry['relay_out_p50_us']:.1f} us (p50); relay CPU "
            f"{entry['relay_cpu_us_per_request'] or 0:.1f} us per request"
        )
        print(f"  {'pattern':8s} {'share':>6s} {'p50':>6s}  " + " ".join(f"{h:>11s}" for h in HOPS))
        for pattern, p in list(entry["patterns"].items())[:6]:
            hops = " ".join(f"{v:11.1f}" for v in p["hops_us"].values())
            print(f"  {pattern:8s} {p['share'] * 100:5.1f}% {p['total_us']:6.1f}  {hops}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds per path (default 2)")
    parser.add_argument("--pings", type=int, default=3000, help="requests per round")
    parser.add_argument("--request", choices=("create", "ping"), default="create")
    parser.add_argument("--json-out", type=Path, help="also write the report as JSON")
    args = parser.parse_args(argv)
    cleanup = relaybench.Cleanup()
    workdir = Path(tempfile.mkdtemp(prefix="docktap-wakeups-"))
    cleanup.dirs.append(workdir)
    try:
        report = run(args, workdir, cleanup)
    except relaybench.BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        cleanup.close()
    print_report(report)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
