"""What docktap costs at start-up: `docker version` direct and through `docktap run -q`.

The pairs are interleaved, so that a machine whose load changes treats both alike; each
figure is the median wall time and the median CPU time (user + sys, the command and the
children it waited for, the recorder included). CPU time is the steadier of the two on a
shared machine. `docktap run` with its live rows (the default), `docktap --version`, `--help`
and `show` of a small capture are timed too, in the same rounds. The table printed is the one
README.md quotes, with issue 17's targets.

docktap's modules are compiled to bytecode first, as installing a wheel does: a checkout run
with PYTHONDONTWRITEBYTECODE would otherwise compile every module it imports, every time. The
`docktap` timed is the console script next to the interpreter, as users run it.

    python bench/startup.py [--pairs 20]     # against the daemon DOCKER_HOST names
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docktap

#: What users run: the console script installed next to the interpreter (`python -m docktap`
#: would time runpy too, 1 ms), or the module where it is not installed.
_SCRIPT = Path(sys.executable).with_name("docktap")
DOCKTAP = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "docktap"]
RUN = "docktap run -q -- docker version"
#: The same with its live rows (to /dev/null here), as `docktap run` shows them by default.
ROWS = "docktap run -- docker version"
#: Issue 17's start-up targets, in ms of median wall time (the run's: added to docker's).
TARGETS = {
    RUN: "adds ≤ 40",
    "docktap --version": "< 60",
    "docktap --help": "< 60",
    "docktap show (small capture)": "< 150",
}


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
    compileall.compile_dir(os.path.dirname(docktap.__file__), quiet=1)
    load = os.getloadavg()[0]
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
            RUN: [
                *DOCKTAP, "run", "-q", "-o", str(capture), "--", "docker", "version",
            ],
            ROWS: [*DOCKTAP, "run", "-o", str(capture), "--", "docker", "version"],
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
    after = os.getloadavg()[0]
    print(f"{args.pairs} interleaved rounds, medians; load average {load:.2f}, then {after:.2f}\n")
    print("| command | wall | CPU (user + sys) | target |")
    print("| --- | --- | --- | --- |")
    for name in cases:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        print(
            f"| `{name}` | {wall * 1000:.1f} ms | {cpu * 1000:.1f} ms | {TARGETS.get(name, '')} |"
        )
    added = statistics.median(walls[RUN]) - statistics.median(walls["docker version"])
    cpu_added = statistics.median(cpus[RUN]) - statistics.median(cpus["docker version"])
    print(
        f"\n`docktap run -q` adds {added * 1000:.1f} ms of wall time and {cpu_added * 1000:.1f} ms "
        "of CPU to `docker version` (difference of the medians)."
    )
    rows = statistics.median(walls[ROWS]) - statistics.median(walls["docker version"])
    print(f"With its live rows, `docktap run` adds {rows * 1000:.1f} ms of wall time.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
