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
    python bench/startup.py --marks 20       # when each step of `run -q` happens
    python bench/startup.py --floors         # the floors too (bench/startupfloor.py)

`--marks` times the steps of `docktap run -q -o CAP -- docker version` instead (README.md's
timeline): docktap is run by `python -c` with a few functions wrapped to note when they are
called (the recorder's fork, the socket's listen, the command's start and reaping, the relay's
first accept, the recorder's wait for its settings, each process's exit), and the medians are
printed, in ms from the start of the interpreter's process.

`--floors` adds, to the same rounds, `docker version` through the least a Python relay can be
(bench/startupfloor.py): asyncio's streams, a select loop, each with and without a fork that
imports the recorder's engine. What `run -q` adds beyond the floor is docktap's own.
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


# What `--marks` runs docktap with: each step noted in $DOCKTAP_MARKS as "SECONDS STEP", once
# per process, by the relay's process and by its recorder (a fork, which inherits the wrapping).
_MARKING = r"""
import os, sys, time

out, relay, seen = os.environ["DOCKTAP_MARKS"], os.getpid(), set()

def mark(step):
    if (step, os.getpid()) not in seen:
        seen.add((step, os.getpid()))
        with open(out, "a") as marks:
            marks.write(f"{time.time()} {step}\n")

def noted(owner, name, before=None, after=None):
    call = getattr(owner, name)
    def wrapper(*args, **kwargs):
        if before:
            mark(before)
        result = call(*args, **kwargs)
        if after:
            mark(after)
        return result
    setattr(owner, name, wrapper)

def leaving(code, leave=os._exit):
    mark("docktap exited" if os.getpid() == relay else "the recorder done, the capture written")
    leave(code)

def watching(event, args):
    if event == "import" and args[0] == "docktap.relay":
        mark("asyncio imported, the relay's module next")
    elif event == "subprocess.Popen" and "the command started" not in {s for s, _ in seen}:
        # subprocess is imported as the command starts, after the fork: wrapped only then.
        mark("the command started")
        noted(sys.modules["subprocess"].Popen, "wait", after="the command exited (reaped)")

mark("the interpreter started")
import runpy, socket  # docktap's entry imports socket before it forks
os.register_at_fork(after_in_child=lambda: mark("the recorder forked"))
os._exit = leaving
sys.addaudithook(watching)
noted(socket.socket, "listen", after="the socket bound")
noted(socket.socket, "accept", after="the relay's first connection accepted")
noted(socket, "recv_fds", before="the recorder's imports done")
sys.argv[0] = "docktap"
runpy.run_module("docktap", run_name="__main__", alter_sys=True)
"""


def marks(rounds: int) -> int:
    """The steps of `docktap run -q -- docker version`: their median times, in ms."""
    steps: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="docktap-marks-") as workdir:
        capture, noted = Path(workdir) / "run.jsonl", Path(workdir) / "marks"
        argv = [sys.executable, "-c", _MARKING, "run", "-q", "-o", str(capture)]
        for _ in range(rounds):
            capture.unlink(missing_ok=True)
            noted.unlink(missing_ok=True)
            start = time.time()
            subprocess.run(
                [*argv, "--", "docker", "version"],
                stdout=subprocess.DEVNULL,
                env={**os.environ, "DOCKTAP_MARKS": str(noted)},
                check=True,
            )
            for line in noted.read_text().splitlines():
                when, _, step = line.partition(" ")
                steps.setdefault(step, []).append((float(when) - start) * 1000)
    print(f"{rounds} runs of `docktap run -q -- docker version`, medians\n")
    print("| step | ms |")
    print("| --- | --- |")
    for step, times in sorted(steps.items(), key=lambda item: statistics.median(item[1])):
        print(f"| {step} | {statistics.median(times):.1f} |")
    return 0


def timed(argv: list[str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and exit status of one run."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime, status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--marks", type=int, metavar="RUNS", help="time the steps of a run")
    parser.add_argument("--floors", action="store_true", help="time bare relays too")
    args = parser.parse_args()
    compileall.compile_dir(os.path.dirname(docktap.__file__), quiet=1)
    if args.marks:
        return marks(args.marks)
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
        if args.floors:
            floor = [sys.executable, str(Path(__file__).with_name("startupfloor.py"))]
            for loop in ("asyncio", "selectors"):
                for recorder in ("--no-recorder", "--recorder"):
                    name = f"floor: {loop} relay" + (
                        ", recorder's imports" if recorder == "--recorder" else ""
                    )
                    cases[name] = [*floor, loop, recorder, "--", "docker", "version"]
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
    for name in cases:
        if name.startswith("floor: "):
            floor_added = statistics.median(walls[name]) - statistics.median(
                walls["docker version"]
            )
            print(f"The {name[7:]} adds {floor_added * 1000:.1f} ms.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
