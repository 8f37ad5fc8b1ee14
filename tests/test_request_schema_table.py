"""The generated table of request body types: it matches the spec, and names every struct."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from docktap.request.schema_table import BODIES, QUERIES, SPEC_VERSION, STRUCTS

REPO_ROOT = Path(__file__).resolve().parent.parent
GENERATOR = REPO_ROOT / "scripts" / "gen-apischema"
SPEC = REPO_ROOT.parent / "shared" / "engine-api" / "swagger.yaml"
_SCALARS = {"string", "bool", "int64", "uint64", "uint32", "uint16", "uint8", "float64", "any"}


def _generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GENERATOR), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.skipif(not SPEC.is_file(), reason=f"Engine API spec not found at {SPEC}")
def test_committed_table_matches_spec() -> None:
    result = _generate("--check", str(SPEC))
    assert result.returncode == 0, result.stderr


def test_check_reports_a_stale_table(tmp_path: Path) -> None:
    spec = tmp_path / "swagger.yaml"
    spec.write_text(
        'swagger: "2.0"\n'
        'info: {version: "1.99"}\n'
        "definitions:\n"
        "  Thing: {type: object, properties: {Name: {type: string}}}\n"
        "paths:\n"
        "  /things:\n"
        "    post:\n"
        "      operationId: ThingCreate\n"
        "      parameters: [{in: body, name: body, schema: {$ref: '#/definitions/Thing'}}]\n",
        encoding="utf-8",
    )
    result = _generate("--check", str(spec))
    assert result.returncode == 1
    assert "out of date" in result.stderr


def _check_type(kind: str) -> None:
    kind = kind.removeprefix("*")
    if kind.startswith("[]"):
        _check_type(kind[2:])
    elif kind.startswith("map[string]"):
        _check_type(kind[len("map[string]") :])
    else:
        assert kind in _SCALARS or kind in STRUCTS, kind


def test_every_type_is_known_and_the_create_body_is_there() -> None:
    assert re.fullmatch(r"1\.[0-9]+", SPEC_VERSION)
    for kind in BODIES.values():
        _check_type(kind)
    for fields in STRUCTS.values():
        assert len({name for name, _ in fields}) == len(fields)
        for _, kind in fields:
            _check_type(kind)
    create = dict(STRUCTS[BODIES["ContainerCreate"]])
    assert create["HostConfig"] == "HostConfig"
    assert create["Env"] == "[]string"
    host = dict(STRUCTS["HostConfig"])
    assert (host["Privileged"], host["Binds"], host["Mounts"]) == ("bool", "[]string", "[]Mount")
    assert host["Memory"] == "int64"  # Resources, merged in through allOf
    assert "ImageBuild" not in BODIES  # a tar stream, not JSON


def test_query_parameters_have_types_and_defaults() -> None:
    build = dict((name, (kind, default)) for name, kind, default in QUERIES["ImageBuild"])
    assert build["rm"] == ("bool", "true")
    assert build["nocache"] == ("bool", "false")  # no default in the spec: BoolValue's false
    assert build["buildargs"] == ("string", "")
    stop = dict((name, (kind, default)) for name, kind, default in QUERIES["ContainerStop"])
    assert stop["t"] == ("int64", "")  # absent is not 0 seconds: no default
