"""Where sockets live: parsing endpoint URLs and finding the Docker daemon the user means.

The daemon is found the way the docker CLI finds it, so that `docktap run -- docker ...` talks to
the same daemon the bare command would: an explicit URL, then DOCKER_HOST, then the endpoint of
the current docker context, then the default socket.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_SOCKET = "/var/run/docker.sock"


class EndpointError(ValueError):
    """An endpoint URL docktap cannot use."""


@dataclass(frozen=True)
class Endpoint:
    """A unix socket path or a TCP host and port."""

    path: str | None = None
    host: str | None = None
    port: int | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.path}" if self.path is not None else f"tcp://{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.url


def parse_endpoint(text: str) -> Endpoint:
    """`unix:///path`, a bare path, or `tcp://host:port` (also `http://`)."""
    if text.startswith("/") or text.startswith("."):
        return Endpoint(path=str(Path(text).absolute()))
    parts = urlsplit(text)
    if parts.scheme == "unix":
        path = parts.path or parts.netloc
        if not path:
            raise EndpointError(f"no socket path in {text!r}")
        return Endpoint(path=path)
    if parts.scheme in ("tcp", "http"):
        if not parts.hostname:
            raise EndpointError(f"no host in {text!r}")
        try:
            port = parts.port
        except ValueError as exc:
            raise EndpointError(f"bad port in {text!r}") from exc
        # Port 0 is meaningful to a listener (any free port); only a missing port is 2375.
        return Endpoint(host=parts.hostname, port=2375 if port is None else port)
    raise EndpointError(
        f"unsupported endpoint {text!r}: use unix:///path/to/socket, a path, or tcp://host:port"
    )


def _docker_config_dir(env: Mapping[str, str]) -> Path:
    configured = env.get("DOCKER_CONFIG")
    return Path(configured) if configured else Path(env.get("HOME", "~")).expanduser() / ".docker"


def context_endpoint(env: Mapping[str, str]) -> str | None:
    """The daemon URL of the current docker context, when one other than `default` is set."""
    config_dir = _docker_config_dir(env)
    name = env.get("DOCKER_CONTEXT")
    if not name:
        try:
            name = json.loads((config_dir / "config.json").read_text()).get("currentContext")
        except (OSError, ValueError, AttributeError):
            return None
    if not name or name == "default":
        return None
    digest = hashlib.sha256(name.encode()).hexdigest()
    try:
        meta = json.loads((config_dir / "contexts" / "meta" / digest / "meta.json").read_text())
        host = meta["Endpoints"]["docker"]["Host"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return host if isinstance(host, str) else None


def resolve_upstream(explicit: str | None, env: Mapping[str, str] | None = None) -> Endpoint:
    """The daemon to relay to: explicit URL, DOCKER_HOST, docker context, default socket."""
    env = os.environ if env is None else env
    for candidate in (explicit, env.get("DOCKER_HOST"), context_endpoint(env)):
        if candidate:
            return parse_endpoint(candidate)
    return Endpoint(path=DEFAULT_SOCKET)
