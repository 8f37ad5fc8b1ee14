"""How docktap reaches the daemon: a unix socket, TCP, TCP with TLS, or ssh, and why it could not.

The relay calls `connect` for each client connection. Failures come back as UpstreamError, an
OSError whose text a person can act on ("the daemon's certificate has expired", "the daemon
answered in plain text"), which the relay puts into its 502 answer; OpenSSL's own words stay
at the end of it, for the searchable detail.

`check` looks at the daemon once when docktap starts: what certificate it presents (for the
capture's header) and whether it speaks what was asked for. A daemon that speaks TLS where plain
text was asked for cannot be told from its silence on each connection, only from its answer to
a first request, so that answer is read here, once.

asyncio imports ssl anyway; what stays off the path of a plain upstream is building a context
and reading certificates (the system's CA store alone takes ~20 ms), done once per settings.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from docktap.upstream import Endpoint, TLSSettings, UpstreamError

if TYPE_CHECKING:
    import ssl

CHECK_TIMEOUT = 10.0
_PING = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
# OpenSSL's reasons for a first record that is not TLS at all: plain HTTP, most likely.
_NOT_TLS = {
    "WRONG_VERSION_NUMBER",
    "RECORD_LAYER_FAILURE",
    "PACKET_LENGTH_TOO_LONG",
    "HTTP_REQUEST",
}


@functools.cache
def client_context(settings: TLSSettings) -> ssl.SSLContext:
    """The client side of TLS as the docker CLI sets it up (TLS 1.2 at least).

    Verifying: the CA given (else the system's), and the daemon's name against its certificate.
    Not verifying: encrypted, nothing checked. The client certificate is presented either way.
    """
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.verify:
        try:
            if settings.ca is None:
                context.load_default_certs()
            else:
                context.load_verify_locations(cafile=settings.ca)
        except OSError as exc:  # ssl.SSLError included
            raise UpstreamError(
                f"cannot use the TLS CA certificate {settings.ca}: {_text(exc)}"
            ) from exc
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.cert is not None:
        try:
            context.load_cert_chain(settings.cert, settings.key)
        except OSError as exc:
            raise UpstreamError(
                f"cannot use the TLS client certificate {settings.cert} with key {settings.key}: "
                f"{_text(exc)}"
            ) from exc
    return context


def _text(exc: OSError) -> str:
    """OpenSSL's reason in lower case (`certificate verify failed`), else the OS's words."""
    reason = getattr(exc, "reason", None)
    if reason:
        return str(reason).lower().replace("_", " ")
    return exc.strerror or str(exc)


def tls_error(exc: ssl.SSLError) -> UpstreamError:
    """What went wrong in a TLS handshake, for someone who knows what a certificate is."""
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        return UpstreamError(f"TLS: the daemon's certificate is not trusted: {exc.verify_message}")
    reason = str(exc.reason or "")
    if reason in _NOT_TLS:
        return UpstreamError(
            f"TLS was asked for, but the daemon does not speak TLS ({_text(exc)}: "
            "it answered in plain text)"
        )
    if "ALERT" in reason and ("CERTIFICATE" in reason or "UNKNOWN_CA" in reason):
        return UpstreamError(
            f"TLS: the daemon refused docktap's client certificate ({_text(exc)})", lasting=True
        )
    return UpstreamError(f"TLS: {_text(exc)}")


async def connect(
    factory: Callable[[], asyncio.BaseProtocol], upstream: Endpoint
) -> asyncio.BaseTransport:
    """Connect a protocol to the daemon; OSError (UpstreamError for TLS, ssh) when it fails."""
    loop = asyncio.get_running_loop()
    if upstream.path is not None:
        transport, _ = await loop.create_unix_connection(factory, upstream.path)
        return transport
    if upstream.unusable is not None:
        raise UpstreamError(upstream.unusable)
    if upstream.ssh is not None:
        from docktap import sshlink

        return await sshlink.connect(factory, upstream.ssh)
    host, port = upstream.host or "localhost", upstream.port or 0
    if upstream.tls is None:
        transport, _ = await loop.create_connection(factory, host, port)
        return transport
    import ssl

    from docktap.tlslink import TLSLink

    link = TLSLink(client_context(upstream.tls), host)
    tcp, _ = await loop.create_connection(lambda: link, host, port)
    try:
        await link.handshake
    except ssl.SSLError as exc:
        tcp.abort()
        raise tls_error(exc) from exc
    except BaseException:
        tcp.abort()
        raise
    link.attach(factory())
    return link.transport


def peer_certificate(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    """The daemon's certificate as the capture header keeps it: subject and sha256 of its DER.

    The subject is only known when it was verified: Python decodes no other certificate.
    """
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    import hashlib  # here: a certificate is seen only over TLS, and not at every start-up

    der = ssl_object.getpeercert(binary_form=True)
    decoded = ssl_object.getpeercert() or {}
    subject = ", ".join(
        f"{name}={value}" for rdn in decoded.get("subject", ()) for name, value in rdn
    )
    return {
        "subject": subject or None,
        "sha256": hashlib.sha256(der).hexdigest() if der else None,
    }


class Checked(NamedTuple):
    """What docktap found when it first looked at the daemon."""

    upstream: Endpoint  # the endpoint to relay to (unusable set when it must not be)
    certificate: dict[str, Any] | None = None  # the daemon's, over TLS
    problem: str | None = None  # why clients will get a 502, if they will

    def tls_header(self) -> dict[str, Any] | None:
        """The capture header's `tls`: checked or not, and the certificate if one was seen."""
        tls = self.upstream.tls
        if tls is None:
            return None
        certificate = self.certificate or {"subject": None, "sha256": None}
        return {"verify": tls.verify, **certificate}


class _Ping(asyncio.Protocol):
    """Sends one /_ping and keeps the answer, until the daemon closes."""

    def __init__(self) -> None:
        self.answer = b""
        self.done: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.answer += data

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(exc)


async def _ping(upstream: Endpoint) -> tuple[bytes, dict[str, Any] | None]:
    ping = _Ping()
    transport = await connect(lambda: ping, upstream)
    try:
        certificate = peer_certificate(transport)
        if upstream.tls is not None and upstream.tls.cert is not None:
            from docktap.tlslink import TLSTransport

            assert isinstance(transport, TLSTransport)
            # Let the daemon judge our certificate first: a refusal that crossed our request
            # could come back as a bare reset.
            await transport.verdict()
        assert isinstance(transport, asyncio.Transport)
        transport.write(_PING)
        lost = await ping.done
    finally:
        transport.close()
    if lost is not None:
        import ssl

        if isinstance(lost, ssl.SSLError):
            raise tls_error(lost) from lost
        raise lost
    return ping.answer, certificate


def _status(answer: bytes) -> bytes | None:
    words = answer.split(b"\r\n", 1)[0].split()
    return words[1] if len(words) >= 2 and words[0].startswith(b"HTTP/1.") else None


async def _speaks_tls(upstream: Endpoint) -> bool:
    """Whether the daemon answers a TLS handshake in TLS, even to refuse it."""
    import ssl

    try:
        transport = await connect(asyncio.Protocol, upstream._replace(tls=TLSSettings(False)))
    except UpstreamError as exc:
        cause = exc.__cause__  # an alert (refusing us, say) is TLS too; plain text is not
        return isinstance(cause, ssl.SSLError) and str(cause.reason) not in _NOT_TLS
    except (OSError, TimeoutError):
        return False
    transport.close()
    return True


async def check(upstream: Endpoint) -> Checked:
    """Ask a tcp:// or ssh:// daemon for /_ping once: its certificate, whether it speaks as asked.

    A daemon that is unreachable now may be up later: only a certificate the daemon refuses
    and a daemon speaking TLS to plain text make the endpoint unusable, for they will not
    change while docktap runs.
    """
    if upstream.path is not None:
        return Checked(upstream)
    try:
        if upstream.ssh is not None:  # connecting through ssh asks for /_ping itself
            transport = await asyncio.wait_for(connect(asyncio.Protocol, upstream), CHECK_TIMEOUT)
            transport.close()
            return Checked(upstream)
        answer, certificate = await asyncio.wait_for(_ping(upstream), CHECK_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "timed out"
        if isinstance(exc, UpstreamError) and exc.lasting:
            return Checked(upstream._replace(unusable=reason), problem=reason)
        return Checked(upstream, problem=reason)
    if (
        upstream.tls is None
        and _status(answer) != b"200"
        and (await asyncio.wait_for(_speaks_tls(upstream), CHECK_TIMEOUT))
    ):
        reason = (
            "the daemon speaks TLS, but plain text was asked for "
            "(set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH, or give --tlsverify)"
        )
        return Checked(upstream._replace(unusable=reason), problem=reason)
    return Checked(upstream, certificate)
