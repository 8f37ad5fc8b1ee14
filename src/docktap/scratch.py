"""Scratch space of docktap's own: a private directory, a file with no name.

`docktap run` makes a directory for the socket its command connects to, and a file for the
recorder's backlog, before the command starts. tempfile makes both, but importing it brings
shutil, random, bz2 and lzma: 3 ms of CPU before the recorder is forked, which every run waits
for. The system calls tempfile would make are made here; tempfile is imported only where they
fail (no O_TMPFILE in the kernel or the file system, a temporary directory that is not there),
to do what it does there.
"""

from __future__ import annotations

import os

# tempfile.mkdtemp's number of tries too: a name taken is passed over, never reused.
_ATTEMPTS = 10000


def temporary_directory() -> str:
    """Where temporary files go: the first of $TMPDIR, $TEMP and $TMP that is set, as tempfile
    looks first, else /tmp."""
    for name in ("TMPDIR", "TEMP", "TMP"):
        if where := os.environ.get(name):
            return where
    return "/tmp"


def private_directory(prefix: str, parent: str | None = None) -> str:
    """A new directory in `parent` (the temporary directory if None), made exclusively, that
    only its owner may enter (mode 0700): what tempfile.mkdtemp makes; its absolute path.

    Its name is `prefix` and 8 random characters, as long as mkdtemp's: the socket paths made
    in it are held to 107 bytes.
    """
    where = temporary_directory() if parent is None else parent
    for _ in range(_ATTEMPTS):
        path = os.path.join(where, prefix + os.urandom(4).hex())
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        except OSError:
            if parent is not None:
                raise  # mkdtemp would fail the same way
            break  # the temporary directory is unusable: tempfile looks further
        return os.path.abspath(path)
    import tempfile

    return tempfile.mkdtemp(prefix=prefix, dir=parent)


def unnamed_file(directory: str | None = None) -> int:
    """A new file in `directory` (the temporary directory if None) that its owner alone may
    read and write, and that has no name, so that no one else can open it: what
    tempfile.TemporaryFile makes; its descriptor, not inherited by commands started.

    Where O_TMPFILE is refused, tempfile makes it (with a name it removes at once).
    """
    where = temporary_directory() if directory is None else directory
    try:
        return os.open(where, os.O_RDWR | os.O_TMPFILE | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError:
        import tempfile

        with tempfile.TemporaryFile(dir=directory) as made:
            return os.dup(made.fileno())
