"""Starting the recording child, and waiting for it to exit.

A fresh interpreter (`python -m docktap.recording.child`) imports everything again: about 60 ms
of CPU on every `docktap run`, on top of the relay's own start-up, and the capture is complete
only once the child is through it. A fork of docktap already holds the standard library, the
wire and the spool, and imports only the engine: a third of that. But a fork is safe only
before any thread or event loop exists (a thread may hold a lock the child then waits on for
ever; a loop's descriptors would be shared). So the command line forks, before its event loop
starts (`fork=True`), and every other caller, the pytest plugin or a `with record(...)` on a
thread of its own, gets the fresh interpreter.

Starting it opens the spool its backlog goes to (spool.py) too, for the link (link.py) to
write: the child must be given it. Nothing here needs asyncio, so that `docktap run` can start
the recorder right after binding its socket, before the command and the relay's imports.

`docktap run` forks earlier still: a `Standby` is forked as the process begins (`stand_by`,
from entry.py, before click and the command line are imported), before its settings exist, and
imports the engine (30 ms of CPU) on the other core while the command line is imported, parses
the arguments, resolves the daemon, claims the capture and binds; `start` then hands it its
settings and its descriptors over a socket pair (SCM_RIGHTS). Called otherwise (click's test
runner), `run` forks its standby itself. A standby that is gone by then is replaced by a
fork made there; one never handed over (the command line failed first) exits, silent.

Either way the child gets the pipe as its stdin, the capture and the spool descriptors and
nothing else, stdout only when the capture goes there, and a session of its own (Ctrl-C at the
terminal is for the relay and the command). Its exit is watched through a pidfd, on the relay's
event loop: no thread waits for it (but where pidfds are missing: there the child is a fresh
interpreter, whose Popen waits on a thread).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import signal
import socket
import stat
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from docktap.exiting import leave
from docktap.recording import child
from docktap.recording import spool as spooling
from docktap.recording.wire import RecordingConfig

# subprocess (threading and locale with it, 2 ms of CPU) is for a fresh interpreter only: `run`
# forks its recorder before importing it, and the recorder never uses it.
if TYPE_CHECKING:
    import subprocess

# glibc raises its mmap threshold to the size of each big block freed, up to 32 MiB; after that
# the child's big buffers (heads held, reads) come from the heap, whose holes are not given
# back: a budget of 16 MiB of heads still grew the child by 0.8 MB a connection. A fixed
# threshold keeps big blocks mapped, so freeing one gives its memory back.
MMAP_THRESHOLD = 128 << 10
# Below it, what a batch of records makes and drops (payloads, records, their lines: about a MB
# for 300 inspect exchanges) is at the top of the heap, which glibc gives back once 128 KiB of it
# is free, to take it again for the next batch, each page a fault: 8 faults an inspect exchange,
# a fifth of the recorder's CPU. Kept up to this much, the next batch reuses it.
TRIM_THRESHOLD = 4 << 20
_M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_PIPE_SIZE = 1 << 20  # Linux's default upper limit for an unprivileged pipe


class RecorderProcess:
    """The recording child as the relay sees it: its pid, the pipe into it, the spool it reads
    its backlog from, and its exit."""

    def __init__(
        self,
        pid: int,
        pipe: int,
        spool: int | None = None,
        popen: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.pid = pid
        self.pipe = pipe  # the write end of the child's stdin
        self.spool = spool  # the spool's descriptor, None if none could be made
        self._popen = popen  # a fresh interpreter's Popen, which reaps it; None for a fork
        # A fork is made only where pidfds are to be had (see start); a fresh interpreter
        # without one is waited for by its Popen, on a thread.
        self._pidfd = _pidfd(pid) if popen is None else _pidfd(pid, missing_ok=True)
        self.returncode: int | None = None

    def close_pipe(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.pipe)

    async def exited(self, timeout: float | None = None) -> int | None:
        """The child's exit status once it has exited, or None if `timeout` seconds pass first."""
        import asyncio

        if self.returncode is not None:
            return self.returncode
        loop = asyncio.get_running_loop()
        pidfd = self._pidfd
        if pidfd is None:
            assert self._popen is not None
            import subprocess  # loaded already: the Popen is its

            try:
                self.returncode = await loop.run_in_executor(None, self._popen.wait, timeout)
            except subprocess.TimeoutExpired:
                return None
            return self.returncode
        done: asyncio.Future[None] = loop.create_future()

        def gone() -> None:
            loop.remove_reader(pidfd)  # a pidfd stays readable: once is enough
            done.set_result(None)

        loop.add_reader(pidfd, gone)
        try:
            await asyncio.wait_for(done, timeout)
        except TimeoutError:
            return None
        finally:
            loop.remove_reader(pidfd)
        if self._popen is not None:
            self.returncode = self._popen.wait()
        else:
            self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        os.close(pidfd)
        return self.returncode


def _pidfd(pid: int, missing_ok: bool = False) -> int | None:
    """A pidfd for `pid`; None with `missing_ok` where there are none (a kernel before 5.3, a
    seccomp filter that refuses them)."""
    try:
        return os.pidfd_open(pid)
    except OSError:
        if missing_ok:
            return None
        raise


def _pidfds() -> bool:
    """Whether this process may watch a child through a pidfd."""
    fd = _pidfd(os.getpid(), missing_ok=True)
    if fd is None:
        return False
    os.close(fd)
    return True


class Standby:
    """A recorder forked before its settings exist: it imports the engine meanwhile, then
    waits for them on `control` (see `standby`)."""

    def __init__(self, pid: int, control: socket.socket) -> None:
        self.pid = pid
        self.control = control

    def hand_over(self, config: RecordingConfig) -> int | None:
        """Give the child `config` and its descriptors, the read end of its pipe first; the
        write end, or None if the child is gone (it is reaped)."""
        read, write = os.pipe()
        fds = [read, *_kept(config)]
        try:
            with self.control:
                socket.send_fds(self.control, [b"\0"], fds)
                self.control.sendall(config.to_json().encode())
        except OSError:
            os.close(write)
            os.waitpid(self.pid, 0)
            return None
        finally:
            os.close(read)
        return write


#: The standby `stand_by` forked as the process began, until `standby` takes it.
_ahead: Standby | None = None


def stand_by() -> None:
    """Fork a standby now, at the very start of a process that is to run a recording, for
    `standby` to take: its imports then overlap the command line's own (see entry.py)."""
    global _ahead
    _ahead = _fork_standby()


def standby() -> Standby | None:
    """The standby `stand_by` forked, if it did, or a recorder forked ahead of its settings
    now, where a fork may be made (see `start`)."""
    global _ahead
    ahead, _ahead = _ahead, None
    return ahead if ahead is not None else _fork_standby()


def _may_fork() -> bool:
    """Whether a recorder may be forked now: while this process has one thread (another may
    hold a lock the child would then wait on for ever) and pidfds to watch the child's exit."""
    threading = sys.modules.get("threading")
    return (threading is None or threading.active_count() == 1) and _pidfds()


def _fork() -> int:
    # What is buffered would be written twice, once by each process.
    sys.stdout.flush()
    sys.stderr.flush()
    return os.fork()


def _fork_standby() -> Standby | None:
    if not _may_fork():
        return None
    mine, theirs = socket.socketpair()
    pid = _fork()
    if pid == 0:
        mine.close()
        _standing_by(theirs)
    theirs.close()
    return Standby(pid, mine)


def start(
    config: RecordingConfig,
    spool_dir: str | None = None,
    fork: bool = False,
    standing_by: Standby | None = None,
) -> RecorderProcess:
    """Start the child with `config`: `standing_by`, forked from this process, or a fresh
    interpreter.

    Its spool goes in `spool_dir` (the capture's directory: the disk chosen for big files), or
    in $TMPDIR when that is not possible. `fork` is a wish: with another thread running (an
    ssh:// upstream's watcher, say), or where a fork's exit could not be watched without one
    (no pidfds), the child is a fresh interpreter all the same.
    """
    capture = config.capture_fd
    if capture is not None and not stat.S_ISREG(os.fstat(capture).st_mode):
        spool_dir = None  # not /dev for `-o /dev/null`
    spool = spooling.open_spool(spool_dir)
    config = config._replace(spool_fd=spool)
    handed = standing_by.hand_over(config) if standing_by is not None else None
    if standing_by is not None and handed is not None:
        process = RecorderProcess(standing_by.pid, handed, spool)
    elif not fork or not _may_fork():
        process = _spawn(config)
    else:
        read, write = os.pipe()
        pid = _fork()
        if pid == 0:
            os.close(write)
            _as_child(lambda: _record(config, read))
        os.close(read)
        process = RecorderProcess(pid, write, spool)
    # A pipe holds 64 KiB by default: bulk transfers would cost a write and a read per 64 KiB.
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(process.pipe, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    return process


def _spawn(config: RecordingConfig) -> RecorderProcess:
    import subprocess

    env = {
        "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
        "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
        **os.environ,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "docktap.recording.child", config.to_json()],
        stdin=subprocess.PIPE,
        # Stdout is the command's, or the capture's (`-o -`): a recorder finishing a backlog
        # after docktap has exited must not hold up `docktap run ... | grep`.
        stdout=subprocess.DEVNULL if config.capture_fd is not None else None,
        env=env,
        pass_fds=_kept(config),
        start_new_session=True,
    )
    assert process.stdin is not None
    # The pipe is the link's to write and close; the Popen only reaps the child.
    pipe = os.dup(process.stdin.fileno())
    process.stdin.close()
    return RecorderProcess(process.pid, pipe, config.spool_fd, process)


def _kept(config: RecordingConfig) -> list[int]:
    """The descriptors a child is given besides its pipe: the capture's and the spool's."""
    return [fd for fd in (config.capture_fd, config.spool_fd) if fd is not None]


def _standing_by(control: socket.socket) -> NoReturn:
    """The standby child: the engine imported, then its settings and descriptors awaited; a
    recording as a fork's, or nothing if the command line never hands them over."""

    def awaited() -> int:
        gc.freeze()  # the parent's objects, as in _record
        from docktap.recording import engine  # noqa: F401  (what child.run imports)

        marker, fds, _, _ = socket.recv_fds(control, 1, 3)
        if not marker:
            return 0  # the command line failed before it got to record: nothing to do
        chunks = iter(lambda: control.recv(1 << 16), b"")
        config = RecordingConfig.from_json(b"".join(chunks).decode())
        control.close()
        read, *held = fds
        config = config._replace(
            capture_fd=held.pop(0) if config.capture_fd is not None else None,
            spool_fd=held.pop(0) if config.spool_fd is not None else None,
        )
        return _record(config, read)

    _as_child(awaited)


def _as_child(work: Callable[[], int]) -> NoReturn:
    """A forked child's life: a session of its own at once (Ctrl-C at the terminal is for the
    relay and the command), then `work`, and out with its status; it never returns into the
    caller's code."""
    code = 1  # what an exception that escapes the recording leaves with
    try:
        os.setsid()
        code = work()
    except BaseException:  # nothing may return into the parent's code
        import traceback  # here: the relay's start-up, which forks, has no use for it

        traceback.print_exc()
    finally:
        leave(code)


def _record(config: RecordingConfig, read: int) -> int:
    """In a forked child: the descriptors and settings a fresh one would have, then the
    recording; its exit status."""
    # `run` has the command's signal handlers in place already (they would send a TERM
    # aimed at the recorder on to the command): a fresh interpreter's, instead.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.dup2(read, 0)
    if config.capture_fd is not None:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
    # Every other descriptor goes: a copy of a client's socket held here would keep it
    # open after the relay closed it, and the listening socket would outlive docktap.
    low = 3
    for fd in sorted(_kept(config)):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))
    import ctypes  # here: the relay's process has no use for it

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    # What the parent had loaded stays as it is: the collector need not scan it, nor
    # touch (and so copy) its pages. The parent may have had it off for its start-up.
    gc.freeze()
    gc.enable()
    return child.run(config, 0)
