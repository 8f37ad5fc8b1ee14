"""What a request asks for, read from only the fields the guard decides on."""

from __future__ import annotations

import json

import pytest

from docktap.policy import asks
from docktap.policy.model import NAMESPACE_FIELDS

HOST: dict[str, object] = {
    "Privileged": True,
    "Binds": ["/var/run/docker.sock:/s", "/srv:/srv", "vol:/v"],
    "Mounts": [{"Type": "bind", "Source": "/etc", "Target": "/e"}],
    "CapAdd": ["cap_sys_admin"],
    "Capabilities": ["NET_RAW"],
    "Devices": [{"PathOnHost": "/dev/kmsg", "PathInContainer": "/dev/kmsg"}],
    "SecurityOpt": ["seccomp=unconfined", "apparmor:unconfined"],
    **{name: "host" for name in NAMESPACE_FIELDS},
    "Memory": 1 << 20,
    "Dns": ["1.1.1.1"],
}
EVERYTHING = {
    "Image": "bb",
    "Hostname": "h",
    "Cmd": ["sh"],
    "Labels": {"a": "b"},
    "HostConfig": HOST,
}


@pytest.mark.parametrize(
    "body",
    [
        EVERYTHING,
        {key: value for key, value in HOST.items() if key != "Mounts"}
        | {"Image": "bb"},  # the deprecated top-level HostConfig
    ],
)
def test_the_fields_read_are_all_that_decides(
    body: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = json.dumps(body).encode()
    target = "/v1.41/containers/create"
    asked = asks.read("ContainerCreate", "POST", target, (), data)
    monkeypatch.setitem(asks.READS, "ContainerCreate", frozenset({"Image", "HostConfig"}))
    assert asks.read("ContainerCreate", "POST", target, (), data) == asked
    assert asked.privileged and asked.docker_sockets and asked.devices == ("/dev/kmsg",)
    assert asked.host_namespaces == NAMESPACE_FIELDS
