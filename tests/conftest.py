"""Shared pytest fixtures; the private Docker daemon itself lives in ``dockerd.py``."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sshd as private_sshd
from certs import Certificates, make_all
from dockerd import Daemon, DaemonUnavailable, Running, ServerTLS, start, stop

#: Set to 1 (as CI does) to turn "daemon unavailable" skips into failures.
REQUIRE_ENV = "DOCKTAP_REQUIRE_DOCKERD"


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C works in the processes the tests start, however the suite itself was started.

    A shell that starts the suite in the background without job control (`nohup pytest &` in a
    script) ignores SIGINT in it, and every process started from it inherits that: the tests
    that give docktap a Ctrl-C would find it carrying on. With Python's own handler back here,
    the processes the tests start get the default, as from a terminal.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _daemon(begin: Callable[[], Running]) -> Iterator[Daemon]:
    """A started daemon for the session; a skip (or failure, in CI) when it cannot start."""
    try:
        running = begin()
    except DaemonUnavailable as exc:
        reason = f"private dockerd unavailable: {exc}"
    else:
        reason = ""
    # Outside the except block, so the report is not an exception chain.
    if reason:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    try:
        yield running.daemon
    finally:
        stop(running)


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Daemon]:
    """One private dockerd per session, with the busybox image ``bb`` imported.

    Tests using it are skipped when the daemon cannot start, or fail when
    ``DOCKTAP_REQUIRE_DOCKERD=1``.
    """
    yield from _daemon(start)


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA, the TLS daemon's certificate, a client's, and bad ones (see certs.py)."""
    return make_all(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def tls_dockerd(certificates: Certificates) -> Iterator[Daemon]:
    """A second private dockerd that also listens on loopback TCP with --tlsverify.

    Its ``tcp_host`` takes clients presenting a certificate of ``certificates.ca``, such as
    the DOCKER_CERT_PATH directory ``certificates.client``.
    """
    server = certificates.server
    yield from _daemon(lambda: start(ServerTLS(certificates.ca.cert, server.cert, server.key)))


@pytest.fixture(scope="session")
def sshd(dockerd: Daemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[private_sshd.SSHD]:
    """A private sshd on 127.0.0.1 whose sessions' `docker` reaches the private dockerd.

    Its `env(...)` puts an ssh configured for it first on PATH (see sshd.py); skipped, or
    failed when ``DOCKTAP_REQUIRE_DOCKERD=1``, when sshd cannot start.
    """
    root = tmp_path_factory.mktemp("sshd")
    try:
        running = private_sshd.start(root, dockerd.host, Path(dockerd.env["DOCKER_CONFIG"]))
    except private_sshd.SSHDUnavailable as exc:
        reason = f"private sshd unavailable: {exc}"
    else:
        reason = ""
    if reason:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    try:
        yield running
    finally:
        private_sshd.stop(running)
