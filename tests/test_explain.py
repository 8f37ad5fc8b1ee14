"""explain(): one line for each common operation, named exactly as in the Engine API."""

from __future__ import annotations

import pytest
from golden import ALL_CAPTURES

from docktap import load
from docktap.explain import EXPLANATIONS, explain
from docktap.routes_table import ROUTES

OPERATION_IDS = {operation for _, _, operation, _ in ROUTES}

# The operations the explanations must cover at the least.
COMMON = [
    "ContainerList",
    "ContainerCreate",
    "ContainerInspect",
    "ContainerStart",
    "ContainerStop",
    "ContainerKill",
    "ContainerWait",
    "ContainerAttach",
    "ContainerLogs",
    "ContainerDelete",
    "ContainerExec",
    "ExecStart",
    "ExecInspect",
    "ExecResize",
    "ContainerResize",
    "ContainerArchive",
    "ContainerArchiveInfo",
    "PutContainerArchive",
    "ContainerStats",
    "ContainerTop",
    "ContainerPrune",
    "ImageList",
    "ImageCreate",
    "ImageInspect",
    "ImageDelete",
    "ImageTag",
    "ImagePush",
    "ImageBuild",
    "ImageGetAll",
    "ImageGet",
    "ImageLoad",
    "ImageHistory",
    "ImagePrune",
    "SystemPing",
    "SystemPingHead",
    "SystemVersion",
    "SystemInfo",
    "SystemEvents",
    "SystemAuth",
    "SystemDataUsage",
    "VolumeCreate",
    "VolumeList",
    "VolumeDelete",
    "NetworkCreate",
    "NetworkList",
    "NetworkInspect",
    "NetworkDelete",
    "NetworkConnect",
    "Session",
]


def test_every_name_is_a_real_operation_id() -> None:
    assert set(EXPLANATIONS) <= OPERATION_IDS, set(EXPLANATIONS) - OPERATION_IDS


def test_the_common_operations_are_explained() -> None:
    assert len(COMMON) >= 40
    missing = [name for name in COMMON if explain(name) is None]
    assert missing == []


def test_every_operation_in_the_shipped_captures_is_explained() -> None:
    used = {ex.operation for path in ALL_CAPTURES for ex in load(path).exchanges}
    assert None not in used
    assert {name for name in used if name and explain(name) is None} == set()


@pytest.mark.parametrize("name", sorted(EXPLANATIONS))
def test_explanations_are_one_short_line(name: str) -> None:
    text = EXPLANATIONS[name]
    assert "\n" not in text
    assert 10 <= len(text) <= 200, text
    assert text[0].islower(), "explanations read on after the operation's name"
    assert text.endswith("."), text


def test_unknown_operation() -> None:
    assert explain("NoSuchOperation") is None
    assert explain("ContainerWait") is not None
    assert "exit code" in (explain("ContainerWait") or "")
