"""Captures made up in memory, for tests of what reads them (the audit, mostly)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import orjson

from docktap.capture.format import FORMAT, VERSION, RecordEncoder, dumps
from docktap.capture.reader import Capture, loads
from docktap.events import (
    Closed,
    Direction,
    Hijacked,
    MessageEnd,
    RequestHead,
    ResponseHead,
    StreamData,
)

PEER = {"pid": 4242, "uid": 1000, "gid": 1000}


def capture_of(
    *requests: tuple[str, str, str, Any],
    peer: dict[str, int] | None = PEER,
    status: int = 201,
    answer_headers: tuple[tuple[str, str], ...] = (),
) -> Capture:
    """A capture of one connection carrying each (operation, method, target, body) in turn;
    a body given as bytes is sent as written. Each is answered `status`, with
    `answer_headers` and no body."""
    records: list[dict[str, Any]] = [
        {"type": "capture", "format": FORMAT, "version": VERSION, "t": 1.0, "mono": 0.0},
        {"type": "open", "conn": 1, "peer": peer, "t": 1.0, "mono": 0.0},
    ]
    for seq, (operation, method, target, body) in enumerate(requests, 1):
        data = (
            body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
        )
        records += [
            {
                "type": "request",
                "conn": 1,
                "seq": seq,
                "method": method,
                "target": target,
                "operation": operation,
                "headers": [],
                "t": 1.0 + seq,
                "mono": float(seq),
            },
            {"type": "body", "conn": 1, "seq": seq, "dir": "client", "text": data.decode()},
            {"type": "end", "conn": 1, "seq": seq, "dir": "client", "size": len(data)},
            {
                "type": "response",
                "conn": 1,
                "seq": seq,
                "status": status,
                "headers": [list(header) for header in answer_headers],
            },
            {"type": "end", "conn": 1, "seq": seq, "dir": "daemon", "size": 0},
        ]
    records.append({"type": "close", "conn": 1, "t": 9.0, "mono": 9.0})
    return loads("\n".join(dumps(r) for r in records) + "\n")


#: What dockerd answers a ContainerWait whose client went away (its context was canceled).
CANCELED = b'{"Error":{"Message":"context canceled"},"StatusCode":-1}\n'


def given_up_wait(container: str = "c0ffee") -> Capture:
    """A ContainerWait the client gave up on after the head: it half-closed, and only then did
    dockerd write its "context canceled" body (as a client timeout records)."""
    target = f"/v1.41/containers/{container}/wait"
    head = [["Content-Type", "application/json"], ["Transfer-Encoding", "chunked"]]
    records: list[dict[str, Any]] = [
        {"type": "capture", "format": FORMAT, "version": VERSION, "t": 1.0, "mono": 0.0},
        {"type": "open", "conn": 1, "peer": PEER, "t": 1.0, "mono": 0.0},
        {"type": "request", "conn": 1, "seq": 1, "method": "POST", "target": target,
         "operation": "ContainerWait", "headers": [["Content-Length", "0"]], "t": 1.1,
         "mono": 0.1},
        {"type": "end", "conn": 1, "seq": 1, "dir": "client", "size": 0, "mono": 0.1},
        {"type": "response", "conn": 1, "seq": 1, "status": 200, "headers": head, "mono": 0.2},
        {"type": "halfclose", "conn": 1, "dir": "client", "mono": 5.0},
        {"type": "body", "conn": 1, "seq": 1, "dir": "daemon", "size": len(CANCELED),
         "text": CANCELED.decode(), "mono": 5.001},
        {"type": "end", "conn": 1, "seq": 1, "dir": "daemon", "complete": True,
         "size": len(CANCELED), "mono": 5.001},
        {"type": "halfclose", "conn": 1, "dir": "daemon", "mono": 5.002},
        {"type": "close", "conn": 1, "mono": 5.003},
    ]  # fmt: skip
    return loads("\n".join(dumps(r) for r in records) + "\n")


def large_download(path: Path, size: int, chunk: int = 32 << 10) -> bytes:
    """Write a capture of one GET whose answer is `size` bytes (binary: `b64` records of
    `chunk` bytes, as a recording of `docker cp` or `docker save` has), a line at a time so
    that writing it costs no more memory than a chunk; the sha256 of the body."""
    digest = hashlib.sha256()
    piece = bytes(range(256)) * (chunk // 256)
    head = [["Content-Type", "application/x-tar"], ["Content-Length", str(size)]]
    with path.open("wb") as out:

        def write(record: dict[str, Any]) -> None:
            out.write(orjson.dumps(record) + b"\n")

        write({"type": "capture", "format": FORMAT, "version": VERSION, "t": 1.0, "mono": 0.0})
        write({"type": "open", "conn": 1, "peer": PEER, "t": 1.0, "mono": 0.0})
        write(
            {"type": "request", "conn": 1, "seq": 1, "method": "GET", "t": 1.0, "mono": 0.1,
             "target": "/v1.41/containers/box/archive?path=/big", "operation": "ContainerArchive",
             "headers": []}
        )  # fmt: skip
        write({"type": "end", "conn": 1, "seq": 1, "dir": "client", "size": 0, "mono": 0.1})
        write({"type": "response", "conn": 1, "seq": 1, "status": 200, "headers": head})
        sent = 0
        while sent < size:
            data = piece[: size - sent]
            digest.update(data)
            sent += len(data)
            b64 = base64.b64encode(data).decode()
            write({"type": "body", "conn": 1, "seq": 1, "dir": "daemon", "size": len(data),
                   "b64": b64, "t": 1.2, "mono": 0.2})  # fmt: skip
        write({"type": "end", "conn": 1, "seq": 1, "dir": "daemon", "complete": True,
               "size": size, "mono": 0.3})  # fmt: skip
        write({"type": "close", "conn": 1, "mono": 0.4})
    return digest.digest()


def attach_of(stdin: bytes, stdout: bytes) -> Capture:
    """A capture of one TTY attach: the client sent `stdin`, the container wrote `stdout`."""
    encoder = RecordEncoder(1.0, 0.0, 1 << 20)
    target = "/v1.41/containers/c/attach?stdin=1&stdout=1&stream=1"
    events = [
        RequestHead(1, 0.1, 1, "POST", target, "1.1", ()),
        MessageEnd(1, 0.1, 1, Direction.CLIENT),
        ResponseHead(1, 0.2, 1, 101, "UPGRADED", "1.1", (("Upgrade", "tcp"),), True),
        Hijacked(1, 0.2, 1, "tcp"),
        StreamData(1, 0.3, 1, Direction.CLIENT, stdin),
        StreamData(1, 0.4, 1, Direction.DAEMON, stdout),
        Closed(1, 0.5),
    ]
    records = [encoder.header("unix:///d.sock", None, "0"), encoder.opened(1, None, 0.0)]
    for event in events:
        records += encoder.encode(event)
    records.append(encoder.footer(0.6, len(records) + 1))
    return loads("".join(dumps(r) + "\n" for r in records))
