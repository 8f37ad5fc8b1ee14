"""What docktap costs at start-up: `docker version` direct and through `docktap run -q`.

The pairs are interleaved, so that a machine whose load changes treats both alike; each
figure is the median wall time and the median CPU time (user + sys, the command and the
children it waited for, the recorder included). CPU time is the steadier of the two on a
shared machine. `docktap --version`, `--help` and `show` of a small capture are timed too.

    python bench/startup.py [--pairs 20]     # against the daemon DOCKER_HOST names
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCKTAP = [sys.executable, "-m", "docktap"]


def timed(argv: list[str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and exit status of one run."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime, status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="docktap-startup-") as workdir:
        capture = Path(workdir) / "run.jsonl"
        small = Path(workdir) / "small.jsonl"
        subprocess.run(
            [*DOCKTAP, "run", "-q", "-o", str(small), "--", "docker", "version"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        cases = {
            "docker version": ["docker", "version"],
            "docktap run -q -- docker version": [
                *DOCKTAP, "run", "-q", "-o", str(capture), "--", "docker", "version",
            ],
            "docktap --version": [*DOCKTAP, "--version"],
            "docktap --help": [*DOCKTAP, "--help"],
            "docktap show (small capture)": [*DOCKTAP, "show", str(small)],
        }  # fmt: skip
        walls: dict[str, list[float]] = {name: [] for name in cases}
        cpus: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.pairs):
            for name, argv in cases.items():
                capture.unlink(missing_ok=True)
                wall, cpu, _ = timed(argv)
                walls[name].append(wall)
                cpus[name].append(cpu)
    for name in cases:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        print(f"{name:36} wall {wall * 1000:7.1f} ms   cpu {cpu * 1000:7.1f} ms")
    added = statistics.median(walls["docktap run -q -- docker version"]) - statistics.median(
        walls["docker version"]
    )
    print(f"docktap run adds {added * 1000:.1f} ms (median wall) to docker version")
    return 0


if __name__ == "__main__":
    sys.exit(main())
