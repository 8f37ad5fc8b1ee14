"""Tar bodies compare by what they hold: names, types, modes, data and links, not times,
owners or framing."""

from __future__ import annotations

import gzip
import io
import tarfile

from docktap.replay.match import MatchOptions, Request, request_key
from docktap.replay.tarcontent import content_digest


def _tar(
    *files: tuple[str, bytes, int],
    mtime: int = 0,
    uid: int = 0,
    fmt: int = tarfile.GNU_FORMAT,
    link: str | None = None,
) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as archive:
        for name, data, mode in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.uid = len(data), mode, mtime, uid
            archive.addfile(info, io.BytesIO(data))
        if link is not None:
            info = tarfile.TarInfo("link")
            info.type, info.linkname, info.mtime = tarfile.SYMTYPE, link, mtime
            archive.addfile(info)
    return out.getvalue()


FILE = ("a.txt", b"copied\n", 0o644)


def test_times_owners_framing_and_order_do_not_count() -> None:
    base = content_digest(_tar(FILE, ("b", b"x", 0o755)))
    assert base is not None
    assert content_digest(_tar(FILE, ("b", b"x", 0o755), mtime=1_700_000_000, uid=1000)) == base
    assert content_digest(_tar(("b", b"x", 0o755), FILE, fmt=tarfile.PAX_FORMAT)) == base
    assert content_digest(gzip.compress(_tar(FILE, ("b", b"x", 0o755)))) == base
    # The CLI 20.10 writes the file type into the mode (0o100644): extraction ignores it.
    assert content_digest(_tar(("a.txt", b"copied\n", 0o100644), ("b", b"x", 0o755))) == base


def test_names_data_modes_and_links_count() -> None:
    base = content_digest(_tar(FILE, link="/etc"))
    assert content_digest(_tar(("a.txt", b"copied!", 0o644), link="/etc")) != base
    assert content_digest(_tar(("b.txt", b"copied\n", 0o644), link="/etc")) != base
    assert content_digest(_tar(("a.txt", b"copied\n", 0o600), link="/etc")) != base
    assert content_digest(_tar(FILE, link="/tmp")) != base
    assert content_digest(_tar(FILE)) != base


def test_what_is_not_a_tar_has_no_content_digest() -> None:
    assert content_digest(b"{}") is None
    assert content_digest(_tar(FILE)[:700]) is None


def test_a_cp_body_matches_by_content_unless_exact_body() -> None:
    target = "/v1.41/containers/box/archive?path=%2Ftmp%2F"
    old = Request.of("PUT", target, _tar(FILE, mtime=1))
    new = Request.of("PUT", target, _tar(FILE, mtime=2))
    assert request_key(old, MatchOptions()) == request_key(new, MatchOptions())
    exact = MatchOptions(exact_body=True)
    assert request_key(old, exact) != request_key(new, exact)
    changed = Request.of("PUT", target, _tar(("a.txt", b"other\n", 0o644)))
    assert request_key(old, MatchOptions()) != request_key(changed, MatchOptions())
