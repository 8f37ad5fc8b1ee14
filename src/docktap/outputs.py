"""The files docktap writes for its user (captures, exports), opened so that no one can turn
them against that user.

docktap often runs as root, since the Docker socket is root's, and what it writes holds what
clients said to Docker. The path given to `-o` may lie in a directory that other users can
write to, where they can plant a link or a file of their own before docktap starts. So an
output is never reached through a symbolic link that another user made, its own name is never
a link, it is never a file that another user owns (writing into it would hand them the data),
a new one is created exclusively, and a regular file ends up private to its owner. Every
refusal raises OutputError with a message that names the path and says why.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat

# Captures and exports hold what clients sent, secrets that escaped redaction included.
PRIVATE = 0o600
# A curl script is also run by its owner.
PRIVATE_SCRIPT = 0o700

# As many links as the kernel follows in one lookup (ELOOP beyond).
_MAX_LINKS = 40
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class OutputError(Exception):
    """An output cannot be written, or writing it would be unsafe; `reason` says why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot write {path}: {reason}")
        self.path = path
        self.reason = reason


class OutputExists(OutputError):
    """The output exists already, and replacing it was not asked for."""


def open_output(path: str, *, replace: bool, mode: int = PRIVATE) -> int:
    """A file descriptor open for writing `path`, with permissions `mode` if it is a regular file.

    A file that exists already is written over only if `replace` (else OutputExists); a
    character device or a FIFO (`/dev/null`, a pipe of one's own) is written into as it is.
    """
    directory, name = os.path.split(path)
    if name in ("", ".", ".."):
        raise OutputError(path, "it is a directory")
    try:
        parent = _open_directory(path, directory)
        try:
            return _open_in(parent, path, name, replace, mode)
        finally:
            os.close(parent)
    except OSError as exc:
        raise OutputError(path, exc.strerror or str(exc)) from exc


def _open_in(parent: int, path: str, name: str, replace: bool, mode: int) -> int:
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(name, flags | os.O_CREAT | os.O_EXCL, mode, dir_fd=parent)
    except FileExistsError:
        pass
    else:
        _set_mode(fd, mode)  # the umask may have taken bits that were asked for
        return fd
    if not replace:
        raise OutputExists(path, "it exists; not replacing it")
    # Checked before opening too, so that another user's FIFO does not block us in open().
    _check_existing(os.lstat(name, dir_fd=parent), path)
    try:
        fd = os.open(name, flags, dir_fd=parent)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a link since
            raise OutputError(path, _LINK_REFUSED) from exc
        raise
    try:
        # What counts is the file actually opened: the name may have been swapped meanwhile.
        info = os.fstat(fd)
        _check_existing(info, path)
        if stat.S_ISREG(info.st_mode):
            os.ftruncate(fd, 0)
            _set_mode(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


_LINK_REFUSED = "it is a symbolic link, and docktap does not follow links for what it writes"


def _check_existing(info: os.stat_result, path: str) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise OutputError(path, _LINK_REFUSED)
    regular = stat.S_ISREG(info.st_mode)
    # Root can read any file anyway, so a device or FIFO of root's (/dev/null) is no leak.
    owners = {os.geteuid()} if regular else {os.geteuid(), 0}
    if info.st_uid not in owners:
        raise OutputError(
            path,
            f"it belongs to {_user(info.st_uid)}, who could read what "
            "docktap writes there; remove it or choose another path",
        )
    if regular and info.st_nlink > 1:
        raise OutputError(
            path,
            f"it has {info.st_nlink} hard links, and writing it would "
            "change the file under its other names too",
        )


def _set_mode(fd: int, mode: int) -> None:
    if stat.S_ISREG(os.fstat(fd).st_mode):
        os.fchmod(fd, mode)


def _open_directory(path: str, directory: str) -> int:
    """The directory `directory`, reached without following a link that another user made.

    Such a link could send a file meant for /tmp/x to /etc. Each step is opened relative to the
    previous one, so nothing can be swapped between a check and its use.
    """
    current = os.open("/" if directory.startswith("/") else ".", _DIRECTORY)
    steps = _steps(directory)
    links = 0
    try:
        while steps:
            step = steps.pop()
            try:
                following = os.open(step, _DIRECTORY | os.O_NOFOLLOW, dir_fd=current)
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP)) from exc
                target = _trusted_link(current, step, path)
                steps.extend(_steps(target))
                if not target.startswith("/"):
                    continue  # the walk goes on from the link's own directory
                following = os.open("/", _DIRECTORY)
            os.close(current)
            current = following
    except BaseException:
        os.close(current)
        raise
    return current


def _steps(directory: str) -> list[str]:
    """The names to walk through, last first (a stack)."""
    return [step for step in reversed(directory.split("/")) if step not in ("", ".")]


def _trusted_link(directory: int, name: str, path: str) -> str:
    """Where the link `name` points, if it is a link made by us or by root."""
    link = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
    try:
        info = os.fstat(link)
        if not stat.S_ISLNK(info.st_mode):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        if info.st_uid not in (os.geteuid(), 0):
            raise OutputError(
                path,
                f"the way to it goes through {name}, a symbolic link "
                f"made by {_user(info.st_uid)}, who could point it anywhere",
            )
        # Read from the link that was checked, not from whatever the name holds by now.
        return os.readlink("", dir_fd=link)
    finally:
        os.close(link)


def _user(uid: int) -> str:
    try:
        return f"user {pwd.getpwuid(uid).pw_name} ({uid})"
    except KeyError:
        return f"user {uid}"
