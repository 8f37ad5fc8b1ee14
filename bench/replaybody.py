#!/usr/bin/env python3
"""What a large recorded body costs the replay: start-up, peak RSS and CPU.

    python bench/replaybody.py              # 300 MiB (as root: it starts a private dockerd)
    python bench/replaybody.py --mib 100 --keep /tmp/big.jsonl

Records, through `docktap run --max-body 0` against a private dockerd (tests/dockerd.py), a
`docker cp box:/big -` of a file of random bytes: one GET /containers/box/archive whose answer
is the file's tar. Then replays it with `docktap replay --listen` under /usr/bin/time -v, lets
the docker CLI read the body again (its sha256 must be the recorded one), and reports the
time from launch to the socket accepting, the replay's peak RSS and its CPU time (user +
system). Wall-clock start-up is noisy on a shared machine; the CPU time is not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import dockerd  # noqa: E402

DOCKTAP = [sys.executable, "-m", "docktap"]


def record(daemon: dockerd.Daemon, capture: Path, mib: int) -> str:
    """The capture of `docker cp box:/big -` of `mib` MiB; the sha256 of the recorded body."""
    daemon.docker("run", "-d", "--name", "box", "--network", "none", daemon.image, "sleep", "600")
    try:
        daemon.docker(
            "exec", "box", "sh", "-c", f"head -c {mib << 20} /dev/urandom > /big", timeout=600
        )
        subprocess.run(
            [*DOCKTAP, "run", "-q", "--max-body", "0", "-o", str(capture),
             "--upstream", daemon.host, "--", daemon.cli, "cp", "box:/big", "-"],
            env=daemon.env, stdout=subprocess.DEVNULL, check=True, timeout=900,
        )  # fmt: skip
    finally:
        daemon.docker("rm", "-f", "box")
    for line in capture.open("rb"):
        if b'"type":"end"' in line and b'"dir":"daemon"' in line:
            end = json.loads(line)
            if end["size"] >= mib << 20:
                return str(end["sha256"])
    raise RuntimeError("no recorded body of that size")


def replay(capture: Path, cli: str, workdir: Path) -> dict[str, float | str]:
    """Replay `capture` under time -v while `cli` reads the body; what it cost."""
    sock = workdir / "replay.sock"
    began = time.monotonic()
    timed = subprocess.Popen(
        ["/usr/bin/time", "-v", *DOCKTAP, "replay", str(capture), "-q", "--listen", str(sock)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    while True:
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(str(sock))
            break
        except OSError:
            time.sleep(0.01)
    ready = time.monotonic() - began
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(workdir))
    client = subprocess.Popen([cli, "cp", "box:/big", "-"], env=env, stdout=subprocess.PIPE)
    assert client.stdout is not None
    digest = hashlib.sha256()
    while chunk := client.stdout.read(1 << 20):
        digest.update(chunk)
    if client.wait() != 0:
        raise RuntimeError("docker cp failed against the replay")
    # time(1) ignores SIGINT itself: the replay under it must get it.
    (child,) = Path(f"/proc/{timed.pid}/task/{timed.pid}/children").read_text().split()
    os.kill(int(child), signal.SIGINT)
    _, err = timed.communicate(timeout=60)
    report = err.decode()

    def field(name: str) -> float:
        found = re.search(rf"{re.escape(name)}: ([\d.]+)", report)
        assert found is not None, report
        return float(found.group(1))

    return {
        "start-up s": round(ready, 2),
        "peak RSS MiB": round(field("Maximum resident set size (kbytes)") / 1024),
        "CPU s": round(field("User time (seconds)") + field("System time (seconds)"), 2),
        "sha256": digest.hexdigest(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=300, help="size of the body (default 300)")
    parser.add_argument("--keep", type=Path, help="write the capture here, and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="docktap-bench-") as tmp:
        workdir = Path(tmp)
        capture = args.keep or workdir / "big.jsonl"
        running = dockerd.start()
        try:
            recorded = record(running.daemon, capture, args.mib)
            cli = running.daemon.cli
        finally:
            dockerd.stop(running)
        size = capture.stat().st_size >> 20
        print(f"capture {capture}: {size} MiB, a {args.mib} MiB body; the daemon is stopped")
        figures = replay(capture, cli, workdir)
        same = figures.pop("sha256") == recorded
        print(", ".join(f"{name} {value}" for name, value in figures.items()), end="")
        print(f"; the body read back is {'the recorded one' if same else 'NOT the recorded one'}")


if __name__ == "__main__":
    main()
