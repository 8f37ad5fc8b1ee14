"""What a tar body holds, apart from how and when it was packed.

`docker cp` into a container and `docker build` send tar archives of local files. The same
files give different bytes from one checkout, machine or client to the next: modification
times, owners, PAX headers, padding, compression. dockerd makes the same container file (or
build) of them whatever those are, so replay compares such a body by its content: each
entry's name, type, mode, link target and the digest of its data, in name order.

This is a module of its own because the standard library's tarfile imports os (for the
archives it could open on disk, which this never does): the pure matcher imports this one
function rather than the module.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import tarfile
import zlib

import orjson

_UNREADABLE = (tarfile.TarError, EOFError, OSError, ValueError, zlib.error, lzma.LZMAError)


def content_digest(body: bytes) -> str | None:
    """A digest of the archive's entries (not their times, owners or framing), or None when
    the body is not a tar archive (plain or compressed) that reads to its end."""
    entries = []
    try:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as archive:
            for member in archive:
                data = b""
                if member.isfile():
                    extracted = archive.extractfile(member)
                    data = extracted.read() if extracted is not None else b""
                name = member.name.removeprefix("./").rstrip("/") or "."
                kind = member.type.decode("latin-1")
                digest = hashlib.sha256(data).hexdigest()
                # Permission bits only: the CLI 20.10 writes the file type into the mode too
                # (0o100644), 28 does not, and extraction reads only these.
                mode = member.mode & 0o7777
                entries.append((name, kind, mode, member.linkname, digest))
    except _UNREADABLE:
        return None
    return hashlib.sha256(orjson.dumps(sorted(entries))).hexdigest()
