"""Finding the daemon the way the docker CLI does: flag, DOCKER_HOST, context, default."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from docktap.upstream import (
    DEFAULT_SOCKET,
    Endpoint,
    EndpointError,
    parse_endpoint,
    resolve_upstream,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unix:///var/run/docker.sock", Endpoint(path="/var/run/docker.sock")),
        ("/tmp/d.sock", Endpoint(path="/tmp/d.sock")),
        ("tcp://127.0.0.1:2375", Endpoint(host="127.0.0.1", port=2375)),
        ("tcp://localhost", Endpoint(host="localhost", port=2375)),
        ("http://127.0.0.1:8080", Endpoint(host="127.0.0.1", port=8080)),
    ],
)
def test_parse_endpoint(text: str, expected: Endpoint) -> None:
    assert parse_endpoint(text) == expected
    assert parse_endpoint(expected.url) == expected


@pytest.mark.parametrize("text", ["ssh://host", "unix://", "tcp://:12", "tcp://h:notaport"])
def test_parse_endpoint_rejects(text: str) -> None:
    with pytest.raises(EndpointError):
        parse_endpoint(text)


def _context(config: Path, name: str, host: str) -> None:
    meta = config / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(
        json.dumps({"Name": name, "Endpoints": {"docker": {"Host": host}}})
    )


def test_resolution_order(tmp_path: Path) -> None:
    config = tmp_path / "docker-config"
    config.mkdir()
    _context(config, "remote", "unix:///from/context.sock")
    (config / "config.json").write_text(json.dumps({"currentContext": "remote"}))
    env = {"DOCKER_CONFIG": str(config)}

    assert resolve_upstream(None, env) == Endpoint(path="/from/context.sock")
    with_host = dict(env, DOCKER_HOST="unix:///from/env.sock")
    assert resolve_upstream(None, with_host) == Endpoint(path="/from/env.sock")
    assert resolve_upstream("tcp://127.0.0.1:1", with_host) == Endpoint(host="127.0.0.1", port=1)


def test_docker_context_variable_beats_the_config_file(tmp_path: Path) -> None:
    _context(tmp_path, "other", "unix:///other.sock")
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "missing"}))
    env = {"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "other"}
    assert resolve_upstream(None, env) == Endpoint(path="/other.sock")


def test_default_socket_when_nothing_is_configured(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "default"}))
    assert resolve_upstream(None, {"DOCKER_CONFIG": str(tmp_path)}) == Endpoint(path=DEFAULT_SOCKET)
    assert resolve_upstream(None, {"HOME": str(tmp_path / "nohome")}) == Endpoint(
        path=DEFAULT_SOCKET
    )


def test_port_zero_is_kept_for_listeners_and_a_missing_port_is_dockers() -> None:
    assert parse_endpoint("tcp://127.0.0.1:0").port == 0
    assert parse_endpoint("tcp://127.0.0.1").port == 2375
