"""Tests for the Engine API operation table and the request-target matcher."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from docktap.routes import (
    VERSION_PREFIX,
    Identity,
    Route,
    Subject,
    identify,
    match,
    operation_name,
    split_version,
    subject,
)
from docktap.routes_table import ROUTES, SPEC_VERSION

REPO_ROOT = Path(__file__).resolve().parent.parent
GEN_ROUTES = REPO_ROOT / "scripts" / "gen-routes"
SPEC = REPO_ROOT.parent / "shared" / "engine-api" / "swagger.yaml"


def _gen_routes(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GEN_ROUTES), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


# --- the generated table ---------------------------------------------------


@pytest.mark.skipif(not SPEC.is_file(), reason=f"Engine API spec not found at {SPEC}")
def test_committed_table_matches_spec() -> None:
    result = _gen_routes("--check", str(SPEC))
    assert result.returncode == 0, result.stderr


def test_check_reports_a_stale_table(tmp_path: Path) -> None:
    spec = tmp_path / "swagger.yaml"
    spec.write_text(
        'swagger: "2.0"\n'
        'info: {version: "1.99"}\n'
        "paths:\n"
        "  /_ping:\n"
        "    get: {operationId: SystemPing, tags: [System]}\n",
        encoding="utf-8",
    )
    result = _gen_routes("--check", str(spec))
    assert result.returncode == 1
    assert "out of date" in result.stderr


def test_table_shape() -> None:
    assert re.fullmatch(r"1\.[0-9]+", SPEC_VERSION)
    assert list(ROUTES) == sorted(ROUTES, key=lambda r: (r[1], r[0]))
    assert len({(m, t) for m, t, _, _ in ROUTES}) == len(ROUTES)
    assert len({op for _, _, op, _ in ROUTES}) == len(ROUTES)
    for method, template, operation, tag in ROUTES:
        assert method.isupper()
        assert template.startswith("/")
        assert operation
        assert tag
    assert ("POST", "/containers/{id}/attach", "ContainerAttach", "Container") in ROUTES


# --- split_version -----------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/v1.41/containers/abc/json?all=1", ("1.41", "/containers/abc/json")),
        ("/v1.41/_ping", ("1.41", "/_ping")),
        ("/_ping", (None, "/_ping")),
        ("/version", (None, "/version")),
        ("/volumes?filters=x", (None, "/volumes")),
        # A version with nothing after it is no prefix: the daemon routes none such.
        ("/v1.41", (None, "/v1.41")),
        ("/v1.41/", ("1.41", "/")),
        ("/v1/version", ("1", "/version")),  # the daemon takes a version without a minor
        ("/v10.5/info?path=/v1.2/x", ("10.5", "/info")),
        ("/v1.41x/info", (None, "/v1.41x/info")),
    ],
)
def test_split_version(target: str, expected: tuple[str | None, str]) -> None:
    assert split_version(target) == expected


def test_one_version_rule_for_every_reader() -> None:
    """Replay matching and `show --path` strip exactly the prefix split_version takes."""
    from docktap.replay.match import normalize_path

    for target in ("/v1.41/containers/json", "/v1/version", "/v1.41", "/vx.y/a", "/a/v1.41/b"):
        assert normalize_path(target) == split_version(target)[1]
        assert bool(VERSION_PREFIX.match(target)) == (split_version(target)[0] is not None)


# --- subjects --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/v1.41/containers/da20d04c/attach?stream=1", ("containers", "da20d04c")),
        ("/containers/da20d04c/wait", ("containers", "da20d04c")),
        ("/v1.41/containers/sleeper", ("containers", "sleeper")),
        ("/v1.41/exec/0cd8e1ba/start", ("exec", "0cd8e1ba")),
        # A container may be named like a collection; with more path, it is a container.
        ("/v1.41/containers/create/attach", ("containers", "create")),
        ("/v1.41/containers/json", None),
        ("/v1.41/containers/create?name=x", None),
        ("/containers/prune", None),
        ("/containers/", None),
        ("/v1.41/images/bb/json", None),
        ("/v1.41/images/containers/x/json", None),  # an image name, not a container
        ("/_ping", None),
    ],
)
def test_subject(target: str, expected: tuple[str, str] | None) -> None:
    found = subject(target)
    assert (None if found is None else (found.kind, found.ref)) == expected
    if found is not None:
        assert str(found) == "/".join(expected or ())


# --- real targets, as sent by the docker CLI --------------------------------

CLI_TARGETS = [
    ("HEAD", "/_ping", "SystemPingHead"),
    ("GET", "/_ping", "SystemPing"),
    ("GET", "/v1.41/version", "SystemVersion"),
    ("GET", "/v1.41/info", "SystemInfo"),
    ("POST", "/v1.41/auth", "SystemAuth"),
    ("GET", "/v1.41/events?since=1", "SystemEvents"),
    ("POST", "/session", "Session"),
    ("POST", "/v1.41/build", "ImageBuild"),
    ("GET", "/v1.41/containers/json?all=1", "ContainerList"),
    ("POST", "/v1.41/containers/create?name=x", "ContainerCreate"),
    ("POST", "/v1.41/containers/3f2a/attach?stderr=1&stdin=1&stdout=1&stream=1", "ContainerAttach"),
    ("POST", "/v1.41/containers/3f2a/wait?condition=next-exit", "ContainerWait"),
    ("POST", "/v1.41/containers/3f2a/start", "ContainerStart"),
    ("POST", "/v1.41/containers/3f2a/resize?h=24&w=80", "ContainerResize"),
    ("GET", "/v1.41/containers/3f2a/logs?follow=1&stdout=1", "ContainerLogs"),
    ("GET", "/v1.41/containers/3f2a/stats?stream=0", "ContainerStats"),
    ("DELETE", "/v1.41/containers/3f2a?force=1&v=1", "ContainerDelete"),
    ("POST", "/v1.41/containers/prune?filters=%7B%7D", "ContainerPrune"),
    ("HEAD", "/v1.41/containers/x/archive?path=/tmp", "ContainerArchiveInfo"),
    ("GET", "/v1.41/containers/x/archive?path=/tmp", "ContainerArchive"),
    ("PUT", "/v1.41/containers/x/archive?path=/tmp", "PutContainerArchive"),
    ("POST", "/v1.41/containers/3f2a/exec", "ContainerExec"),
    ("POST", "/v1.41/exec/ab12/start", "ExecStart"),
    ("GET", "/v1.41/exec/ab12/json", "ExecInspect"),
    ("GET", "/v1.41/images/json", "ImageList"),
    ("POST", "/v1.41/images/create?fromImage=busybox&tag=latest", "ImageCreate"),
    ("GET", "/v1.41/images/search?term=bb", "ImageSearch"),
    ("GET", "/v1.41/images/busybox:latest/json", "ImageInspect"),
    ("GET", "/v1.41/images/registry:5000/a/b:1/json", "ImageInspect"),
    ("GET", "/v1.41/images/get?names=bb", "ImageGetAll"),
    ("GET", "/v1.41/images/bb/get", "ImageGet"),
    ("POST", "/v1.41/images/load?quiet=1", "ImageLoad"),
    ("POST", "/v1.41/images/bb/tag?repo=localhost:5000/bb&tag=1", "ImageTag"),
    ("POST", "/v1.41/images/foo/bar/tag?repo=x", "ImageTag"),
    ("POST", "/v1.41/images/localhost:5000/bb/push?tag=1", "ImagePush"),
    ("DELETE", "/v1.41/images/localhost:5000/bb:1?force=0", "ImageDelete"),
    ("GET", "/v1.41/distribution/docker.io/library/bb/json", "DistributionInspect"),
    ("POST", "/v1.41/plugins/vieux/sshfs:latest/enable?timeout=0", "PluginEnable"),
    ("GET", "/v1.41/plugins/privileges?remote=vieux/sshfs", "GetPluginPrivileges"),
    ("GET", "/v1.41/containers/json/json", "ContainerInspect"),  # a container named "json"
]


@pytest.mark.parametrize(("method", "target", "operation"), CLI_TARGETS)
def test_cli_targets(method: str, target: str, operation: str) -> None:
    assert operation_name(method, target) == operation
    route = match(method, target)
    assert isinstance(route, Route)
    assert route.method == method
    assert route.operation == operation
    expected_version = "1.41" if target.startswith("/v1.41/") else None
    assert split_version(target)[0] == expected_version


def test_match_returns_the_table_row() -> None:
    route = match("POST", "/v1.41/containers/3f2a/attach?stream=1")
    assert route == Route("POST", "/containers/{id}/attach", "ContainerAttach", "Container")


# --- every table entry maps back to itself ----------------------------------

_PARAM = re.compile(r"\{[^/{}]+\}")
# One-segment values, and values with slashes (image / plugin references).
SAMPLE_VALUES = ["p1", "3f2a9c", "busybox:latest", "reg:5000/ns/repo:tag", "docker.io/library/bb"]


@pytest.mark.parametrize("value", SAMPLE_VALUES)
@pytest.mark.parametrize("prefix", ["", "/v1.41"])
def test_every_route_maps_back_to_itself(value: str, prefix: str) -> None:
    wrong = []
    for method, template, operation, _ in ROUTES:
        target = prefix + _PARAM.sub(value, template) + "?q=1"
        got = operation_name(method, target)
        if got != operation:
            wrong.append(f"{method} {target}: expected {operation}, got {got}")
    assert not wrong, "\n".join(wrong)


# --- no match ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/v1.41/nope"),
        ("GET", "/nope/x/json"),
        ("get", "/_ping"),
        ("Get", "/v1.41/version"),
        ("PATCH", "/v1.41/containers/x/json"),
        ("GET", "/v1.41/containers/create"),
        ("POST", "/v1.41/containers/json"),
        ("GET", "/"),
        ("GET", ""),
        ("DELETE", "/v1.41/images/"),
        ("GET", "/v1.41/containers//json"),
        ("GET", "/v1.41/containers/x/json/extra"),
    ],
)
def test_unknown_targets(method: str, target: str) -> None:
    assert match(method, target) is None
    assert operation_name(method, target) is None


# --- what a request is -------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "expected"),
    [
        (
            "POST",
            "/v1.41/containers/3f2a/attach?stream=1",
            Identity("ContainerAttach", "1.41", Subject("containers", "3f2a")),
        ),
        (
            "POST",
            "/containers/sleeper/exec",
            Identity("ContainerExec", None, Subject("containers", "sleeper")),
        ),
        (
            "DELETE",
            "/v1.41/containers/s",
            Identity("ContainerDelete", "1.41", Subject("containers", "s")),
        ),
        (
            "POST",
            "/v1.41/exec/0cd8e1ba/start",
            Identity("ExecStart", "1.41", Subject("exec", "0cd8e1ba")),
        ),
        (
            "GET",
            "/v1.43/images/registry:5000/library/busybox:latest/json",
            Identity("ImageInspect", "1.43", image="registry:5000/library/busybox:latest"),
        ),
        ("DELETE", "/images/bb", Identity("ImageDelete", None, image="bb")),
        ("GET", "/v1.41/images/json", Identity("ImageList", "1.41")),
        ("GET", "/v1.41/containers/json?all=1", Identity("ContainerList", "1.41")),
        ("POST", "/v1.41/containers/create?name=x", Identity("ContainerCreate", "1.41")),
        ("POST", "/v1.41/containers/prune", Identity("ContainerPrune", "1.41")),
        ("GET", "/v1.41/networks/n1", Identity("NetworkInspect", "1.41")),
        ("HEAD", "/_ping", Identity("SystemPingHead", None)),
        ("GET", "/v1.41/nope", Identity(None, "1.41")),
        # No route, but the path still names a container.
        (
            "GET",
            "/v1.41/containers/x/json/extra",
            Identity(None, "1.41", Subject("containers", "x")),
        ),
    ],
)
def test_identify(method: str, target: str, expected: Identity) -> None:
    assert identify(method, target) == expected


@pytest.mark.parametrize("prefix", ["", "/v1.24", "/v1.41"])
def test_identify_agrees_with_the_other_rules_on_every_route(prefix: str) -> None:
    for method, template, operation, _ in ROUTES:
        target = prefix + _PARAM.sub("ref", template) + "?q=1"
        found = identify(method, target)
        assert (found.operation, found.api_version) == (operation, split_version(target)[0])
        assert found.subject == subject(target)
        named = template.startswith("/images/{")
        assert found.image == ("ref" if named else None), (method, template)


# --- speed -------------------------------------------------------------------
