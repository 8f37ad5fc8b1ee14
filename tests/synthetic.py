"""Captures made up in memory, for tests of what reads them (the audit, mostly)."""

from __future__ import annotations

import json
from typing import Any

from docktap.capture.format import FORMAT, VERSION, dumps
from docktap.capture.reader import Capture, loads

PEER = {"pid": 4242, "uid": 1000, "gid": 1000}


def capture_of(
    *requests: tuple[str, str, str, Any],
    peer: dict[str, int] | None = PEER,
    status: int = 201,
) -> Capture:
    """A capture of one connection carrying each (operation, method, target, body) in turn;
    a body given as bytes is sent as written."""
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
            {"type": "response", "conn": 1, "seq": seq, "status": status, "headers": []},
            {"type": "end", "conn": 1, "seq": seq, "dir": "daemon", "size": 0},
        ]
    records.append({"type": "close", "conn": 1, "t": 9.0, "mono": 9.0})
    return loads("\n".join(dumps(r) for r in records) + "\n")
