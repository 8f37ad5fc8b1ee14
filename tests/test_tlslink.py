"""TLS through docktap.connecting and tlslink against a real TLS server on loopback, no Docker.

The server is Python's blocking ssl, told to take a TCP end at a record boundary as the end of
input and still answer after it, as Go's TLS in dockerd does: what `docker run -i` needs from a
half-close. (OpenSSL by default takes such an end as an attack and answers with an alert.)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator

import pytest
from certs import Certificates

from docktap.connecting import connect, peer_certificate
from docktap.upstream import Endpoint, TLSSettings, UpstreamError


@contextlib.contextmanager
def tls_server(
    certificates: Certificates, answer: Callable[[bytes], bytes], client_ca: bool = False
) -> Iterator[int]:
    """Serves one connection: reads to the end of input, then writes answer(input) and closes."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates.server.cert, certificates.server.key)
    context.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
    if client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(certificates.ca.cert)
    listener = socket.create_server(("127.0.0.1", 0))
    failures: list[BaseException] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            with context.wrap_socket(conn, server_side=True) as tls:
                received = b""
                while chunk := tls.recv(1 << 16):
                    received += chunk
                tls.sendall(answer(received))
        except (OSError, ssl.SSLError) as exc:
            failures.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(timeout=30)
    assert not failures, failures


class _Collect(asyncio.Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.eof = False
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.received += data

    def eof_received(self) -> bool:
        self.eof = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


def _settings(certificates: Certificates, verify: bool = True) -> TLSSettings:
    client = certificates.client
    ca = str(client / "ca.pem") if verify else None
    return TLSSettings(verify, ca, str(client / "cert.pem"), str(client / "key.pem"))


async def _exchange(port: int, settings: TLSSettings, payload: bytes) -> tuple[bytes, bool]:
    collect: _Collect | None = None

    def factory() -> _Collect:
        nonlocal collect
        collect = _Collect()
        return collect

    transport = await connect(factory, Endpoint(host="127.0.0.1", port=port, tls=settings))
    assert isinstance(transport, asyncio.Transport) and collect is not None
    assert transport.can_write_eof()
    transport.write(payload)
    transport.write_eof()
    assert await asyncio.wait_for(collect.lost, 30) is None
    return collect.received, collect.eof


def test_the_write_side_ends_alone_and_the_answer_still_comes(certificates: Certificates) -> None:
    payload = bytes(range(256)) * (12 << 10)  # 3 MiB: many records, the TCP buffer fills up

    def digest(data: bytes) -> bytes:
        return hashlib.sha256(data).hexdigest().encode()

    with tls_server(certificates, digest, client_ca=True) as port:
        received, eof = asyncio.run(_exchange(port, _settings(certificates), payload))
    assert received == digest(payload)
    assert eof  # the server's close_notify (or its TCP end) reached the protocol as an EOF


def test_unverified_tls_still_presents_the_client_certificate(certificates: Certificates) -> None:
    with tls_server(certificates, lambda data: data.upper(), client_ca=True) as port:
        received, _ = asyncio.run(_exchange(port, _settings(certificates, verify=False), b"hi"))
    assert received == b"HI"


def test_the_peer_certificate_of_a_verified_daemon(certificates: Certificates) -> None:
    async def look(port: int) -> dict[str, object] | None:
        endpoint = Endpoint(host="127.0.0.1", port=port, tls=_settings(certificates))
        transport = await connect(asyncio.Protocol, endpoint)
        try:
            return peer_certificate(transport)
        finally:
            transport.close()

    with tls_server(certificates, lambda data: b"") as port:
        seen = asyncio.run(look(port))
    der = ssl.PEM_cert_to_DER_cert(certificates.server.cert.read_text())
    assert seen == {"subject": "commonName=daemon", "sha256": hashlib.sha256(der).hexdigest()}


def test_a_missing_ca_file_is_named() -> None:
    settings = TLSSettings(True, "/nonexistent/ca.pem")

    async def attempt() -> None:
        await connect(asyncio.Protocol, Endpoint(host="127.0.0.1", port=1, tls=settings))

    with pytest.raises(UpstreamError, match=r"CA certificate /nonexistent/ca.pem: No such file"):
        asyncio.run(attempt())


class _Buffered(asyncio.BufferedProtocol):
    """Reads into one small buffer, as the relay does, pausing now and then."""

    def __init__(self) -> None:
        self.buffer = bytearray(40_000)  # not a multiple of a TLS record
        self.received = bytearray()
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.pauses = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.received += self.buffer[:nbytes]
        if len(self.received) // (1 << 20) > self.pauses:  # each MiB: pause, resume later
            self.pauses += 1
            assert self.transport is not None
            self.transport.pause_reading()
            asyncio.get_running_loop().call_soon(self.transport.resume_reading)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


def test_a_long_answer_into_a_small_buffer_with_pauses(certificates: Certificates) -> None:
    answer = hashlib.sha256(b"seed").digest() * (160 << 10)  # 5 MiB

    async def receive(port: int) -> _Buffered:
        app = _Buffered()
        endpoint = Endpoint(host="127.0.0.1", port=port, tls=_settings(certificates))
        transport = await connect(lambda: app, endpoint)
        assert isinstance(transport, asyncio.Transport)
        transport.write_eof()
        assert await asyncio.wait_for(app.lost, 30) is None
        return app

    with tls_server(certificates, lambda data: answer, client_ca=True) as port:
        app = asyncio.run(receive(port))
    assert app.received == answer
    assert app.pauses == 5
