"""Tests for the files docktap writes: what another user plants in advance is never written.

"Another user" is nobody (65534): the suite runs as root, which chowns what it plants to them,
as an attacker in a world-writable directory would have made it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from tapping import docktap

from docktap.cli import main
from docktap.outputs import PRIVATE_SCRIPT, OutputError, open_output

NOBODY = 65534
CAPTURE = Path(__file__).resolve().parent.parent / "captures" / "run.jsonl"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="plants files as another user: needs root")


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A world-writable directory without the sticky bit, where anyone can plant anything."""
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o777)
    return directory


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[Path]:
    """A file of root's that an attacker would like overwritten or opened to all."""
    path = tmp_path / "victim"
    path.write_text("root's own\n")
    path.chmod(0o644)
    yield path
    assert path.read_text() == "root's own\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def _planted_link(where: Path, target: Path, owner: int = NOBODY) -> Path:
    where.symlink_to(target)
    os.lchown(where, owner, owner)
    return where


def _write(fd: int, text: str) -> None:
    with open(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def test_a_new_file_is_created_private_whatever_the_umask(tmp_path: Path) -> None:
    old_umask = os.umask(0)
    try:
        _write(open_output(str(tmp_path / "c.jsonl"), replace=False), "x\n")
        _write(open_output(str(tmp_path / "s.sh"), replace=False, mode=PRIVATE_SCRIPT), "x\n")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "c.jsonl").stat().st_mode) == 0o600
    # a umask that takes the owner's x bit does not make the script unrunnable
    os.umask(0o177)
    try:
        _write(open_output(str(tmp_path / "t.sh"), replace=False, mode=PRIVATE_SCRIPT), "x\n")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "s.sh").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "t.sh").stat().st_mode) == 0o700


def test_an_own_file_is_replaced_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text("old contents\n" * 10)
    path.chmod(0o644)
    with pytest.raises(OutputError, match="it exists; not replacing it"):
        open_output(str(path), replace=False)
    assert path.read_text() == "old contents\n" * 10
    _write(open_output(str(path), replace=True), "new\n")
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("owner", [0, NOBODY], ids=["own-link", "planted-link"])
def test_a_symlink_is_never_followed(shared: Path, victim: Path, owner: int) -> None:
    link = _planted_link(shared / "cap.jsonl", victim, owner)
    with pytest.raises(OutputError) as refused:
        open_output(str(link), replace=True)
    assert str(refused.value) == (
        f"cannot write {link}: it is a symbolic link, and docktap does not follow links for "
        "what it writes"
    )


def test_a_dangling_symlink_creates_nothing_where_it_points(shared: Path, tmp_path: Path) -> None:
    target = tmp_path / "created-by-the-link"
    link = _planted_link(shared / "cap.jsonl", target)
    with pytest.raises(OutputError, match="symbolic link"):
        open_output(str(link), replace=True)
    assert not target.exists()


@as_root
def test_another_users_file_is_not_written_into(shared: Path) -> None:
    planted = shared / "cap.jsonl"
    planted.write_text("theirs\n")
    planted.chmod(0o666)
    os.chown(planted, NOBODY, NOBODY)
    with pytest.raises(OutputError) as refused:
        open_output(str(planted), replace=True)
    assert str(refused.value) == (
        f"cannot write {planted}: it belongs to user nobody ({NOBODY}), who could read what "
        "docktap writes there; remove it or choose another path"
    )
    assert planted.read_text() == "theirs\n"
    assert planted.stat().st_uid == NOBODY


@as_root
def test_another_users_fifo_is_refused_without_blocking(shared: Path) -> None:
    fifo = shared / "cap.jsonl"
    os.mkfifo(fifo)
    os.chown(fifo, NOBODY, NOBODY)
    with pytest.raises(OutputError, match="belongs to user nobody"):
        open_output(str(fifo), replace=True)


def test_a_hard_link_to_another_file_is_refused(shared: Path, victim: Path) -> None:
    os.link(victim, shared / "cap.jsonl")
    with pytest.raises(OutputError, match="it has 2 hard links"):
        open_output(str(shared / "cap.jsonl"), replace=True)


@as_root
def test_a_directory_link_made_by_another_user_is_not_followed(shared: Path, victim: Path) -> None:
    link = _planted_link(shared / "x", victim.parent)
    with pytest.raises(OutputError) as refused:
        open_output(str(link / victim.name), replace=True)
    assert "goes through x, a symbolic link made by user nobody (65534)" in str(refused.value)
    with pytest.raises(OutputError, match="symbolic link made by user nobody"):
        open_output(str(link / "new.jsonl"), replace=True)
    assert not (victim.parent / "new.jsonl").exists()


def test_directory_links_of_ones_own_are_followed(tmp_path: Path) -> None:
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "abs").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "rel").symlink_to("sub")
    _write(open_output(str(tmp_path / "abs" / "rel" / "c.jsonl"), replace=True), "x\n")
    _write(open_output(str(tmp_path / "abs" / ".." / "real" / "d.jsonl"), replace=True), "y\n")
    assert (tmp_path / "real" / "sub" / "c.jsonl").read_text() == "x\n"
    assert (tmp_path / "real" / "d.jsonl").read_text() == "y\n"


def test_a_relative_path_and_a_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write(open_output("c.jsonl", replace=True), "x\n")
    assert (tmp_path / "c.jsonl").read_text() == "x\n"
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(OutputError, match="Too many levels of symbolic links"):
        open_output("loop/c.jsonl", replace=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="Not a directory"):
        open_output("file/c.jsonl", replace=True)


def test_dev_null_is_written_and_keeps_its_mode() -> None:
    before = os.stat("/dev/null")
    os.close(open_output("/dev/null", replace=True))
    assert os.stat("/dev/null").st_mode == before.st_mode


def test_export_refuses_a_planted_link_and_says_why(shared: Path, victim: Path) -> None:
    link = _planted_link(shared / "run.har", victim)
    result = CliRunner().invoke(main, ["export", str(CAPTURE), "-f", "har", "-o", str(link)])
    assert result.exit_code == 1
    assert f"Error: cannot write {link}: it is a symbolic link" in result.output


@as_root
def test_proxy_refuses_a_planted_capture_and_starts_nothing(shared: Path, victim: Path) -> None:
    link = _planted_link(shared / "cap.jsonl", victim)
    listen = shared / "p.sock"
    proxy = docktap("proxy", "--listen", str(listen), "-o", str(link), timeout=30)
    assert proxy.returncode == 1
    assert f"cannot write capture {link}: it is a symbolic link" in proxy.stderr.decode()
    assert not listen.exists()
