#!/usr/bin/env python3
"""A minimal, fast stand-in for dockerd on a unix socket, for bench/relay.py.

    python bench/fastserver.py --socket /tmp/fast.sock

It answers the few calls the relay benchmark makes, with everything precomputed, so that the
server is never what limits a measurement:

    GET|HEAD /_ping                     200 "OK"
    GET /containers/{id}/json           200, a fixed ~2 KB JSON document
    GET /images/get?bytes=N             200, N body bytes, chunked in 64 KiB chunks, then close
    POST|PUT anything with a body       reads and discards the body (Content-Length or
                                        chunked), then 200 and close
    POST /containers/{id}/attach?bytes=N  with Upgrade: 101 UPGRADED, then N bytes of stdout
                                        in multiplexed frames (8-byte header + 64 KiB), then close

An optional /vX.Y prefix is ignored. Small requests are served from one epoll loop with
non-blocking sockets (no thread switch per request); a bulk request takes its connection out of
the loop and is served by a thread with blocking sendall/recv_into on preallocated buffers. It
prints "listening on PATH" on stderr once it accepts connections, and exits on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import threading
from types import FrameType
from urllib.parse import parse_qs, urlsplit

CHUNK = 64 << 10
# Bulk data is sent from blocks of this many framed chunks: one sendall per ~4 MiB.
BLOCK = 64
DEFAULT_BULK = 300_000_000

_PAYLOAD = os.urandom(CHUNK)
_CHUNKED_BLOCK = memoryview((b"%x\r\n" % CHUNK + _PAYLOAD + b"\r\n") * BLOCK)
_CHUNKED_ONE = len(_CHUNKED_BLOCK) // BLOCK
_FRAME_BLOCK = memoryview((b"\x01\0\0\0" + struct.pack(">I", CHUNK) + _PAYLOAD) * BLOCK)
_FRAME_ONE = len(_FRAME_BLOCK) // BLOCK

_COMMON = (
    b"Api-Version: 1.41\r\n"
    b"Docker-Experimental: false\r\n"
    b"Ostype: linux\r\n"
    b"Server: docktap-bench-fastserver\r\n"
)


def _response(status: bytes, headers: bytes, body: bytes, close: bool = False) -> bytes:
    connection = b"Connection: close\r\n" if close else b""
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\n"
        + _COMMON
        + headers
        + connection
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


def _inspect_body() -> bytes:
    """A container inspect document of about 2 KB, shaped like dockerd's."""
    cid = "5f" * 32
    doc: dict[str, object] = {
        "Id": cid,
        "Created": "2026-01-01T00:00:00.000000000Z",
        "Path": "sh",
        "Args": ["-c", "echo hi"],
        "State": {
            "Status": "exited",
            "Running": False,
            "Paused": False,
            "Restarting": False,
            "OOMKilled": False,
            "Dead": False,
            "Pid": 0,
            "ExitCode": 0,
            "Error": "",
            "StartedAt": "2026-01-01T00:00:01.000000000Z",
            "FinishedAt": "2026-01-01T00:00:02.000000000Z",
        },
        "Image": "sha256:" + "ab" * 32,
        "Name": "/bench",
        "RestartCount": 0,
        "Driver": "vfs",
        "Platform": "linux",
        "HostConfig": {"NetworkMode": "none", "AutoRemove": False, "Privileged": False},
        "Config": {
            "Hostname": cid[:12],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh", "-c", "echo hi"],
            "Image": "bb",
            "Labels": {},
        },
        "NetworkSettings": {"Networks": {"none": {"NetworkID": "cd" * 32}}},
        "Mounts": [],
    }
    body = json.dumps(doc).encode()
    pad = max(0, 2048 - len(body) - len(',"Padding":""') - 1)
    doc["Padding"] = "x" * pad
    return json.dumps(doc).encode() + b"\n"


_JSON = b"Content-Type: application/json\r\n"
PING = _response(b"200 OK", b"Content-Type: text/plain; charset=utf-8\r\n", b"OK")
PING_HEAD = PING[: -len(b"OK")]
INSPECT = _response(b"200 OK", _JSON, _inspect_body())
CREATED = _response(b"201 Created", _JSON, b'{"Id":"' + b"c" * 64 + b'","Warnings":[]}\n')
NOT_FOUND = _response(b"404 Not Found", _JSON, b'{"message":"page not found"}\n')
LOADED = _response(b"200 OK", _JSON, b'{"stream":"Loaded image: bench\\n"}\n', close=True)
CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    + _COMMON
    + b"Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n"
    + b"Connection: close\r\n\r\n"
)
UPGRADED_HEAD = (
    b"HTTP/1.1 101 UPGRADED\r\n"
    b"Content-Type: application/vnd.docker.multiplexed-stream\r\n"
    b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
)


class Request:
    """The parts of a request head the server looks at."""

    __slots__ = ("chunked", "close", "content_length", "method", "path", "query", "upgrade")

    def __init__(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        method, target, _ = lines[0].split(b" ", 2)
        self.method = method
        path, _, query = target.partition(b"?")
        if path.startswith(b"/v") and path.count(b"/") > 1:
            path = path[path.index(b"/", 1) :]
        self.path = path
        self.query = query
        self.content_length = 0
        self.chunked = False
        self.close = False
        self.upgrade = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                self.content_length = int(value)
            elif name == b"transfer-encoding":
                self.chunked = b"chunked" in value.lower()
            elif name == b"connection":
                self.close = b"close" in value.lower()
            elif name == b"upgrade":
                self.upgrade = True

    @property
    def has_body(self) -> bool:
        return self.chunked or self.content_length > 0

    def bulk_size(self) -> int:
        values = parse_qs(urlsplit("?" + self.query.decode("latin-1")).query).get("bytes")
        return int(values[0]) if values else DEFAULT_BULK


# -- bulk handlers: one thread each, blocking socket -------------------------------------


def _send_framed(sock: socket.socket, block: memoryview, one: int, size: int, tail: bytes) -> None:
    """Send `size` payload bytes as whole framed units from `block`, then `tail`."""
    units = size // CHUNK
    while units >= BLOCK:
        sock.sendall(block)
        units -= BLOCK
    if units:
        sock.sendall(block[: units * one])
    sock.sendall(tail)


def _serve_download(sock: socket.socket, request: Request) -> None:
    size = request.bulk_size()
    rest = size % CHUNK
    tail = (b"%x\r\n" % rest + _PAYLOAD[:rest] + b"\r\n" if rest else b"") + b"0\r\n\r\n"
    sock.sendall(CHUNKED_HEAD)
    _send_framed(sock, _CHUNKED_BLOCK, _CHUNKED_ONE, size, tail)


def _serve_stream(sock: socket.socket, request: Request) -> None:
    size = request.bulk_size()
    rest = size % CHUNK
    tail = b"\x01\0\0\0" + struct.pack(">I", rest) + _PAYLOAD[:rest] if rest else b""
    sock.sendall(UPGRADED_HEAD)
    _send_framed(sock, _FRAME_BLOCK, _FRAME_ONE, size, tail)


class _Reader:
    """Buffered reads from a blocking socket, for discarding request bodies."""

    def __init__(self, sock: socket.socket, pending: bytes) -> None:
        self.sock = sock
        self.pending = bytearray(pending)
        self.scratch = bytearray(1 << 20)
        self.view = memoryview(self.scratch)

    def line(self) -> bytes:
        while True:
            end = self.pending.find(b"\r\n")
            if end >= 0:
                line = bytes(self.pending[:end])
                del self.pending[: end + 2]
                return line
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("client closed in the middle of a chunked body")
            self.pending += data

    def discard(self, size: int) -> None:
        take = min(size, len(self.pending))
        del self.pending[:take]
        size -= take
        while size:
            got = self.sock.recv_into(self.view, min(size, len(self.scratch)))
            if not got:
                raise ConnectionError("client closed in the middle of a body")
            size -= got


def _serve_upload(sock: socket.socket, request: Request, pending: bytes) -> None:
    reader = _Reader(sock, pending)
    if request.chunked:
        while True:
            size = int(reader.line().split(b";")[0], 16)
            if size == 0:
                while reader.line():  # trailers, up to the empty line
                    pass
                break
            reader.discard(size + 2)
    else:
        reader.discard(request.content_length)
    sock.sendall(LOADED)


def _bulk(sock: socket.socket, request: Request, pending: bytes) -> None:
    try:
        sock.setblocking(True)
        if request.has_body:
            _serve_upload(sock, request, pending)
        elif request.upgrade:
            _serve_stream(sock, request)
        else:
            _serve_download(sock, request)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        sock.close()


# -- the event loop for small requests ------------------------------------------------------


class Server:
    def __init__(self, path: str) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1024)
        self.listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, None)

    def serve_forever(self) -> None:
        select = self.selector.select
        while True:
            for key, _ in select():
                if key.data is None:
                    self._accept()
                else:
                    self._readable(key.fileobj, key.data)  # type: ignore[arg-type]

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, bytearray())

    def _drop(self, sock: socket.socket) -> None:
        self.selector.unregister(sock)
        sock.close()

    def _readable(self, sock: socket.socket, buf: bytearray) -> None:
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop(sock)
            return
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            request = Request(head)
            path = request.path
            if path == b"/_ping":
                reply = PING_HEAD if request.method == b"HEAD" else PING
            elif path == b"/containers/create" and not request.chunked:
                # Small JSON bodies, answered inline: the guard's cost per create shows.
                if len(buf) < request.content_length:
                    buf[:0] = head + b"\r\n\r\n"
                    return
                del buf[: request.content_length]
                reply = CREATED
            elif path.startswith(b"/containers/") and path.endswith(b"/json"):
                reply = INSPECT
            elif request.has_body or request.upgrade or path == b"/images/get":
                self.selector.unregister(sock)
                pending = bytes(buf)
                threading.Thread(target=_bulk, args=(sock, request, pending), daemon=True).start()
                return
            else:
                reply = NOT_FOUND
            try:
                sent = sock.send(reply)
                if sent < len(reply):  # rare: the client is not reading; finish blocking
                    sock.setblocking(True)
                    sock.sendall(reply[sent:])
                    sock.setblocking(False)
            except OSError:
                self._drop(sock)
                return
            if request.close:
                self._drop(sock)
                return


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fast stand-in for dockerd (bench/relay.py).")
    parser.add_argument("--socket", required=True, help="unix socket path to listen on")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server = Server(args.socket)
    try:
        print(f"fastserver: listening on {args.socket}", file=sys.stderr, flush=True)
        server.serve_forever()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(args.socket)


if __name__ == "__main__":
    main()
