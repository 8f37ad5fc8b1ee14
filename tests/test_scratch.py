"""Scratch space without tempfile: private directories and files with no name."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from docktap.scratch import private_directory, temporary_directory, unnamed_file


def test_a_private_directory_is_new_and_its_owners_alone(tmp_path: Path) -> None:
    first = private_directory("dt-", str(tmp_path))
    second = private_directory("dt-", str(tmp_path))
    assert first != second
    for made in (first, second):
        assert os.path.isabs(made)
        assert Path(made).parent == tmp_path
        name = os.path.basename(made)
        assert name.startswith("dt-") and len(name) == len("dt-") + 8
        info = os.lstat(made)
        assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
        assert info.st_uid == os.geteuid()


def test_a_private_directory_goes_in_the_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert temporary_directory() == str(tmp_path)
    assert Path(private_directory("dt-")).parent == tmp_path


def test_a_temporary_directory_that_is_not_there_is_left_to_tempfile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "gone"))
    monkeypatch.setenv("TEMP", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # what tempfile found earlier, forgotten
    made = private_directory("dt-")
    # tempfile passes over $TMPDIR, which is not there, to $TEMP.
    assert Path(made).parent == tmp_path
    assert stat.S_IMODE(os.lstat(made).st_mode) == 0o700


def test_a_private_directory_in_a_parent_that_is_not_there_fails(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        private_directory("dt-", str(tmp_path / "gone"))


def _assert_private_and_nameless(fd: int, directory: Path) -> None:
    info = os.fstat(fd)
    assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_nlink == 0  # no name: nobody else can open it
    assert info.st_dev == os.stat(directory).st_dev  # on the disk asked for
    assert not os.get_inheritable(fd)
    os.write(fd, b"held")
    assert os.pread(fd, 4, 0) == b"held"
    assert os.listdir(directory) == []


def test_an_unnamed_file_is_private_and_has_no_name(tmp_path: Path) -> None:
    fd = unnamed_file(str(tmp_path))
    try:
        _assert_private_and_nameless(fd, tmp_path)
    finally:
        os.close(fd)


# A kernel before 3.11 reads O_TMPFILE as O_DIRECTORY, and opening a directory to write then
# fails: tempfile makes the file instead. Run apart, since tempfile remembers what it found.
_WITHOUT_O_TMPFILE = """
import json, os, sys
os.O_TMPFILE = os.O_DIRECTORY
from docktap.scratch import unnamed_file
fd = unnamed_file(sys.argv[1])
info = os.fstat(fd)
os.write(fd, b"held")
print(json.dumps([info.st_mode, info.st_nlink, info.st_dev, os.get_inheritable(fd),
                  os.pread(fd, 4, 0).decode(), os.listdir(sys.argv[1])]))
"""


def test_where_o_tmpfile_is_refused_tempfile_makes_the_unnamed_file(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_O_TMPFILE, str(tmp_path)],
        capture_output=True,
        check=True,
        timeout=30,
    )
    mode, links, device, inheritable, held, listed = json.loads(done.stdout)
    assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0o600
    assert links == 0 and device == os.stat(tmp_path).st_dev
    assert not inheritable and held == "held" and listed == []
