"""The recording child, forked or a fresh interpreter, starts with what it needs and no more.

Each start is made in a process of its own, as the command line makes it: forking the test
process, with whatever threads the suite has running, is what launch.py says must not be done.
The capture is a pipe, so that reading the header the child writes tells, without waiting on a
clock, that it is past its start-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Starts a child with a pipe for the capture and an inheritable descriptor it must not get
# (with another thread running, for "fork-with-thread"; with no pidfds, as on a kernel before
# 5.3, for "fork-without-pidfd"), reads the header, then reports what the child holds and how
# it exits.
_START = """
import asyncio, json, os, sys, threading
from docktap.recording.launch import standby, start
from docktap.recording.wire import Batch, Kind, RecordingConfig

read, capture = os.pipe()
stray = os.open(os.devnull, os.O_RDONLY)
os.set_inheritable(stray, True)
config = RecordingConfig(capture, 1 << 20, "unix:///nowhere", ["true"], 1.7e9, 0.0, "off")
started = threading.Event()
if sys.argv[1] == "fork-with-thread":
    threading.Thread(target=started.wait).start()
if sys.argv[1] == "fork-without-pidfd":
    def refused(pid, flags=0):
        raise OSError(38, "Function not implemented")
    os.pidfd_open = refused
standing_by = standby() if sys.argv[1] == "standby" else None
child = start(config, fork=sys.argv[1].startswith("fork"), standing_by=standing_by)
started.set()
# What the child must hold besides its standard streams: the capture and the spool (a standby
# receives them under numbers of its own).
expected = sorted(os.readlink(f"/proc/self/fd/{fd}") for fd in (capture, child.spool))
os.close(capture)
with os.fdopen(read) as records:
    header = json.loads(records.readline())
    # A connection's opening, recorded: the child is in its loop, past what it loads to read
    # its pipe and its spool (a descriptor open while it loads would be counted).
    opening = Batch()
    opening.add(Kind.OPEN, 1, 0.0)
    os.write(child.pipe, b"".join(opening.pieces))
    opened = json.loads(records.readline())
    fds = sorted(int(name) for name in os.listdir(f"/proc/{child.pid}/fd"))
    report = {
        "header": header["type"],
        "opened": opened["type"],
        "capture": capture,
        "spool": child.spool,
        "fds": fds,
        "held": sorted(os.readlink(f"/proc/{child.pid}/fd/{fd}") for fd in fds if fd > 2),
        "expected": expected,
        "stdout": os.readlink(f"/proc/{child.pid}/fd/1"),
        "own_session": os.getsid(child.pid) == child.pid,
        "argv": open(f"/proc/{child.pid}/cmdline", "rb").read().decode().split("\\0")[1:3],
        "running": asyncio.run(child.exited(0)),
    }
    child.close_pipe()  # no STOP: as when docktap is killed
    report["status"] = asyncio.run(child.exited())
    report["rest"] = [json.loads(line)["type"] for line in records]
print(json.dumps(report))
"""


FORKS = ("fork", "standby")  # a standby is forked before start, and handed its settings there


@pytest.mark.parametrize(
    "how", ["fork", "spawn", "fork-with-thread", "fork-without-pidfd", "standby"]
)
def test_the_child_gets_its_pipe_and_capture_only_and_its_exit_is_seen(how: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _START, how], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    assert report["header"] == "capture"
    assert report["opened"] == "open"
    # A fork only where it is safe and watched: else (a second thread, no pidfds), a fresh
    # interpreter.
    assert (report["argv"] == ["-m", "docktap.recording.child"]) == (how not in FORKS)
    # Stdin (the pipe), stdout, stderr, the capture and the spool start opened for it: the
    # stray descriptor stayed behind.
    assert report["spool"] is not None
    assert report["fds"][:3] == [0, 1, 2]
    assert report["held"] == report["expected"]
    if how != "standby":
        assert report["fds"] == sorted([0, 1, 2, report["capture"], report["spool"]])
    assert report["stdout"] == os.devnull  # stdout is the command's, not the recorder's
    assert report["own_session"]
    assert report["running"] is None  # not exited yet: no status within no time
    assert report["status"] == 0
    assert report["rest"] == []  # the pipe closed without STOP: no end-of-capture record


# Forks a standby recorder, then closes its end of the socket pair without handing it anything,
# as a command line that fails before it records does; reports how the standby exits.
_UNUSED = """
import json, os
from docktap.recording.launch import standby

standing_by = standby()
assert standing_by is not None
standing_by.control.close()
print(json.dumps(os.waitstatus_to_exitcode(os.waitpid(standing_by.pid, 0)[1])))
"""


def test_a_standby_never_handed_its_settings_exits_quietly() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _UNUSED], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout) == 0
    assert done.stderr == b""


# Forks a standby as a process begins (stand_by, as docktap.entry does), then asks for a
# standby twice; reports the process's children after each step and the pids it was given.
_AHEAD = """
import json, os
from docktap.recording.launch import stand_by, standby

def children():
    with open(f"/proc/self/task/{os.getpid()}/children") as listed:
        return sorted(int(pid) for pid in listed.read().split())

stand_by()
ahead = children()
taken, fresh = standby(), standby()
assert taken is not None and fresh is not None
report = {"ahead": ahead, "taken": taken.pid, "fresh": fresh.pid, "then": children()}
# Both ends first: the second standby, a fork, holds a copy of the first one's.
for standing_by in (taken, fresh):
    standing_by.control.close()
for standing_by in (taken, fresh):
    os.waitpid(standing_by.pid, 0)
print(json.dumps(report))
"""


def test_the_standby_forked_ahead_is_the_one_taken_and_only_once() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _AHEAD], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    assert report["ahead"] == [report["taken"]]  # stand_by forked one, which standby gave
    assert report["fresh"] != report["taken"]  # the next call forks another
    assert report["then"] == sorted([report["taken"], report["fresh"]])
