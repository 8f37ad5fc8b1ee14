"""TLS over an asyncio TCP connection, with a write side that can be shut down on its own.

asyncio's own TLS transport cannot half-close (its write_eof raises NotImplementedError), and
Docker needs it: `docker run -i` ends stdin by shutting down its write side and then reads the
output. Over TLS the docker client does this as Go's TLS cannot either, on the TCP connection
underneath (moby's client, hijack.go: tlsClientCon.CloseWrite), and dockerd's TLS reader takes
a TCP end at a record boundary as the end of input. This module does the same: the encrypted
bytes go through ssl.MemoryBIO and an SSLObject onto a plain TCP transport, and write_eof
shuts the TCP write side down once every encrypted byte before it is out.

TLSLink is the TCP connection's protocol; TLSTransport is what the application protocol (the
relay's daemon side, a BufferedProtocol, or a plain Protocol) sees. ssl is imported by whoever
builds the context; this module only uses the objects it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

_READ_SIZE = 256 << 10
_VERDICT_WAIT = 1.0


class TLSLink(asyncio.Protocol):
    """The TCP side: feeds what arrives to the SSLObject and writes what it produces."""

    def __init__(self, context: ssl.SSLContext, server_hostname: str) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=server_hostname)
        loop = asyncio.get_running_loop()
        self.handshake: asyncio.Future[None] = loop.create_future()
        # The daemon's first word after the handshake (or its end). In TLS 1.3 that is its
        # verdict on our certificate: session tickets, or an alert.
        self.heard: asyncio.Future[None] = loop.create_future()
        self.tcp: asyncio.Transport | None = None
        self.app: asyncio.BaseProtocol | None = None
        self.transport = TLSTransport(self)
        self.error: Exception | None = None  # a TLS failure after the handshake
        self.reading = True
        self.tcp_eof = False
        self.app_eof = False  # the application was told the daemon will send no more
        self.write_shut = False  # the TCP write side is shut down

    # --- the TCP connection -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.tcp = transport
        self._shake()

    def data_received(self, data: bytes) -> None:
        self.incoming.write(data)
        if not self.handshake.done():
            self._shake()
        else:
            self._read()
            self._heard()

    def eof_received(self) -> bool:
        self.tcp_eof = True
        self.incoming.write_eof()
        if not self.handshake.done():
            self.handshake.set_exception(
                ConnectionResetError(
                    0, "the daemon hung up in the TLS handshake: does it speak TLS?"
                )
            )
            return False
        self._read()
        return True  # our write side stays open: the daemon may still be reading

    def _heard(self) -> None:
        if not self.heard.done():
            self.heard.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._heard()
        if not self.handshake.done():
            self.handshake.set_exception(exc or ConnectionResetError(0, "connection closed"))
        elif self.app is not None:
            self.app.connection_lost(self.error or exc)

    def pause_writing(self) -> None:
        if self.app is not None:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self.app is not None:
            self.app.resume_writing()

    # --- TLS ----------------------------------------------------------------------------
    def flush(self) -> None:
        """Write out what the SSLObject has produced."""
        if self.write_shut:  # after write_eof, nothing more goes out (no close_notify either)
            self.outgoing.read()
        elif self.outgoing.pending and self.tcp is not None and not self.tcp.is_closing():
            self.tcp.write(self.outgoing.read())

    def _shake(self) -> None:
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            self.flush()
            return
        except ssl.SSLError as exc:
            self.flush()  # the alert telling the daemon why
            self.handshake.set_exception(exc)
            return
        self.flush()
        self.handshake.set_result(None)

    def attach(self, app: asyncio.BaseProtocol) -> None:
        """Hand the connection, handshake done, to the application protocol."""
        self.app = app
        app.connection_made(self.transport)
        self._read()

    def _read(self) -> None:
        """Decrypt what has arrived for the application, while it reads."""
        app = self.app
        if app is None:
            return
        ended = False  # close_notify, or the TCP end at a record boundary
        try:
            while self.reading and not self.app_eof and not ended:
                if isinstance(app, asyncio.BufferedProtocol):
                    ended = self._fill(app)
                else:
                    data = self.tls.read(_READ_SIZE)
                    ended = not data
                    if data:
                        assert isinstance(app, asyncio.Protocol)
                        app.data_received(data)
        except ssl.SSLWantReadError:
            ended = self.tcp_eof
        except ssl.SSLEOFError:  # the TCP end came without close_notify, as Go's clients do
            ended = True
        except ssl.SSLError as exc:
            self.error = exc
            if self.tcp is not None:
                self.tcp.abort()
        if ended:
            self._eof(app)
        self.flush()  # what reading may have produced (a key update's answer)

    def _fill(self, app: asyncio.BufferedProtocol) -> bool:
        """Decrypt records into the application's buffer until it is full; True at the end.

        One read gives one TLS record (16 KiB at most): handing each over on its own would
        cost the relay a forward and a tap call per record, so they are gathered first.
        """
        buffer = memoryview(app.get_buffer(-1))
        filled = 0
        try:
            while filled < len(buffer):
                n = int(self.tls.read(len(buffer) - filled, buffer[filled:]))
                if not n:
                    return True
                filled += n
        finally:
            if filled:
                app.buffer_updated(filled)
        return False

    def _eof(self, app: asyncio.BaseProtocol) -> None:
        if self.app_eof:
            return
        self.app_eof = True
        keep_open = isinstance(app, asyncio.Protocol | asyncio.BufferedProtocol) and bool(
            app.eof_received()
        )
        if not keep_open:
            self.transport.close()


class TLSTransport(asyncio.Transport):
    """The application's side of a TLSLink."""

    def __init__(self, link: TLSLink) -> None:
        super().__init__()
        self.link = link
        self.closing = False

    def _tcp(self) -> asyncio.Transport:
        assert self.link.tcp is not None
        return self.link.tcp

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closing or self.link.write_shut:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[self.link.tls.write(view) :]
        except ssl.SSLError as exc:
            self.link.error = exc
            self.abort()
            return
        self.link.flush()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Shut down the TCP write side, after every encrypted byte, as the docker client does."""
        self.link.flush()
        self.link.write_shut = True
        self._tcp().write_eof()

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        # A close_notify first, as Go sends on Close; the daemon's answer is not waited for.
        with contextlib.suppress(ssl.SSLError):
            self.link.tls.unwrap()
        self.link.flush()
        self._tcp().close()

    def abort(self) -> None:
        self.closing = True
        self._tcp().abort()

    def is_closing(self) -> bool:
        return self.closing or self._tcp().is_closing()

    def pause_reading(self) -> None:
        self.link.reading = False
        self._tcp().pause_reading()

    def resume_reading(self) -> None:
        if self.link.reading:
            return
        self.link.reading = True
        self._tcp().resume_reading()
        self.link._read()

    def is_reading(self) -> bool:
        return self.link.reading

    def get_write_buffer_size(self) -> int:
        return self._tcp().get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._tcp().set_write_buffer_limits(high, low)

    async def verdict(self) -> None:
        """Wait for the daemon's judgement of our certificate, when it comes after the handshake.

        In TLS 1.3 the client's handshake is over before the server has checked the client's
        certificate; the server's next word says what it thought (session tickets, or an alert).
        In TLS 1.2 the handshake itself carried it. A server that sends no tickets says nothing
        when it accepts: after _VERDICT_WAIT seconds of silence, take it as accepted.
        """
        if self.link.tls.version() == "TLSv1.3":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.link.heard), _VERDICT_WAIT)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self.link.tls
        return self._tcp().get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.link.app = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.link.app is not None
        return self.link.app
