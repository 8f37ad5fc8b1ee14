"""Shared pytest fixtures; the private Docker daemon itself lives in ``dockerd.py``."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from dockerd import Daemon, DaemonUnavailable, start, stop

#: Set to 1 (as CI does) to turn "daemon unavailable" skips into failures.
REQUIRE_ENV = "DOCKTAP_REQUIRE_DOCKERD"


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Daemon]:
    """One private dockerd per session, with the busybox image ``bb`` imported.

    Tests using it are skipped when the daemon cannot start, or fail when
    ``DOCKTAP_REQUIRE_DOCKERD=1``.
    """
    try:
        running = start()
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
