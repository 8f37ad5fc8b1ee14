"""Whether a capture is still being written: a lock the recorder holds until it is done.

docktap may return before its recorder has written everything (the recorder finishes on its own,
so that the command's status or the proxy's exit is not held up by a backlog). The capture file
is locked (flock, exclusively) before the recorder gets it, on the open file that the recorder
then holds: the lock goes when the recorder's last copy of it closes, which is when it is done,
or dead. A reader that cannot take a shared lock knows the capture is still being written.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat


def hold(fd: int) -> None:
    """Lock a capture just opened for writing, for as long as `fd`'s open file lives.

    Only regular files: `-o /dev/null` is shared by everyone. A lock that cannot be taken (a
    file system without flock) just leaves the capture without one.
    """
    if stat.S_ISREG(os.fstat(fd).st_mode):
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def being_written(path: str | os.PathLike[str]) -> bool:
    """Whether a recorder still holds the capture at `path`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def wait_written(path: str | os.PathLike[str]) -> None:
    """Return once no recorder holds the capture at `path` any more."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        finally:
            os.close(fd)
