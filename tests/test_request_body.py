"""Request bodies decoded into the API types as dockerd 20.10 decodes them.

Each expectation here was first observed on the real daemon (the differential tests in
test_request_differential.py send such bodies to it and compare with `docker inspect`).
"""

from __future__ import annotations

from typing import Any

import pytest
from golden import CAPTURES

from docktap.capture.reader import load
from docktap.policy import asks
from docktap.request import gojson
from docktap.request.body import decode, typed, without_zeros


def create(body: str | bytes) -> Any:
    data = body.encode() if isinstance(body, str) else body
    decoded = decode("ContainerCreate", data)
    assert decoded.typed
    assert decoded.error is None, decoded.error
    return decoded.value


def host(body: str | bytes) -> Any:
    return create(body).get("HostConfig")


def test_keys_in_any_case_land_in_the_api_spelling() -> None:
    assert create('{"image":"bb","hostconfig":{"privileged":true,"bInDs":["/etc:/h"]}}') == {
        "Image": "bb",
        "HostConfig": {"Privileged": True, "Binds": ["/etc:/h"]},
    }
    assert host('{"HostConfig":{"Bind\u017f":["/etc:/x"],"Networ\u212aMode":"host"}}') == {
        "Binds": ["/etc:/x"],
        "NetworkMode": "host",
    }


def test_duplicate_host_configs_merge() -> None:
    body = '{"HostConfig":{"Privileged":true},"HostConfig":{"Memory":8000000}}'
    assert host(body) == {"Privileged": True, "Memory": 8000000}
    assert host('{"HostConfig":{"Privileged":false,"Privileged":true}}') == {"Privileged": True}
    assert host('{"HostConfig":{"Privileged":true,"Privileged":null}}') == {"Privileged": True}
    assert host('{"HostConfig":{"Binds":["/etc:/x"]},"HostConfig":null}') is None


def test_slices_keep_their_backing_array() -> None:
    assert host('{"HostConfig":{"Binds":["/etc:/x"]},"HostConfig":{"Binds":[null]}}') == {
        "Binds": ["/etc:/x"]
    }
    body = (
        '{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/srv","Target":"/a"},'
        '{"Type":"bind","Source":"/etc","Target":"/h"}]},"HostConfig":{"Mounts":[{}]},'
        '"HostConfig":{"Mounts":[{},{"Target":"/h2"}]}}'
    )
    assert host(body)["Mounts"] == [
        {"Type": "bind", "Source": "/srv", "Target": "/a"},
        {"Type": "bind", "Source": "/etc", "Target": "/h2"},
    ]


def test_strslice_fields_take_a_string_and_never_merge() -> None:
    assert create('{"Cmd":"echo hi","Entrypoint":["sh","-c"]}') == {
        "Cmd": ["echo hi"],
        "Entrypoint": ["sh", "-c"],
    }
    assert host('{"HostConfig":{"CapAdd":["SYS_ADMIN"]},"HostConfig":{"CapAdd":[null]}}') == {
        "CapAdd": [""]
    }


def test_the_deprecated_top_level_host_config() -> None:
    assert host('{"Image":"bb","Privileged":true}') == {"Privileged": True}
    assert host('{"Privileged":true,"HostConfig":null}') == {"Privileged": True}
    # With an inner HostConfig, only four resource fields carry over from the top level.
    assert host('{"Privileged":true,"HostConfig":{"Memory":8000000}}') == {"Memory": 8000000}
    assert host('{"Memory":9000000,"HostConfig":{"Privileged":true}}') == {
        "Privileged": True,
        "Memory": 9000000,
    }
    assert host('{"Cpuset":"0","HostConfig":{}}') == {"CpusetCpus": "0"}
    assert "Cpuset" not in create('{"Cpuset":"0"}')
    assert host('{"Privileged":null}') == {}


def test_console_size_is_a_go_array_of_two() -> None:
    assert host('{"HostConfig":{"ConsoleSize":[1,2,3]}}') == {"ConsoleSize": [1, 2]}
    assert host('{"HostConfig":{"ConsoleSize":[5]}}') == {"ConsoleSize": [5, 0]}
    assert host('{"HostConfig":{"ConsoleSize":[1,2,"x"]}}') == {"ConsoleSize": [1, 2]}
    assert host('{"HostConfig":{"ConsoleSize":[7,8],"ConsoleSize":null}}') == {
        "ConsoleSize": [7, 8]
    }
    assert host('{"HostConfig":{"ConsoleSize":[7,8],"ConsoleSize":[9]}}') == {"ConsoleSize": [9, 0]}
    refused = decode("ContainerCreate", b'{"HostConfig":{"ConsoleSize":[-1,0]}}')
    assert refused.error == (
        "json: cannot unmarshal number -1 into Go struct field "
        "HostConfig.HostConfig.ConsoleSize of type uint"
    )
    zeros = create('{"HostConfig":{"ConsoleSize":[0,0],"Privileged":true}}')
    assert without_zeros("ContainerCreate", zeros) == {"HostConfig": {"Privileged": True}}


def test_map_keys_are_data_not_fields() -> None:
    body = '{"Labels":{"a":"1"},"Labels":{"b":"2"},"Labels":{"a":null},"labels":{"A":"3"}}'
    assert create(body) == {"Labels": {"a": "", "b": "2", "A": "3"}}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            '{"HostConfig":{"Privileged":1}}',
            "json: cannot unmarshal number into Go struct field "
            "HostConfig.HostConfig.Privileged of type bool",
        ),
        (
            '{"HostConfig":{"Privileged":"true"}}',
            "json: cannot unmarshal string into Go struct field "
            "HostConfig.HostConfig.Privileged of type bool",
        ),
        (
            '{"HostConfig":{"Memory":1e7}}',
            "json: cannot unmarshal number 1e7 into Go struct field "
            "HostConfig.HostConfig.Memory of type int64",
        ),
        (
            '{"HostConfig":{"BlkioWeight":70000}}',
            "json: cannot unmarshal number 70000 into Go struct field "
            "HostConfig.HostConfig.BlkioWeight of type uint16",
        ),
        (
            '{"HostConfig":{"Binds":"/etc:/x"}}',
            "json: cannot unmarshal string into Go struct field "
            "HostConfig.HostConfig.Binds of type []string",
        ),
        (
            '{"Cmd":["a",1]}',
            "json: cannot unmarshal array into Go struct field "
            "ContainerConfigWrapper.Cmd of type string",
        ),
        ("[]", "json: cannot unmarshal array into Go value of type ContainerConfigWrapper"),
        ("", "EOF"),
    ],
)
def test_what_dockerd_refuses(body: str, error: str) -> None:
    decoded = decode("ContainerCreate", body.encode())
    assert decoded.rejected
    assert decoded.value is None
    assert decoded.error == error


def test_what_follows_the_json_value_is_never_read() -> None:
    decoded = decode("ContainerCreate", b'{"HostConfig":{"Privileged":true}} {"x":')
    assert decoded.value == {"HostConfig": {"Privileged": True}}


def test_exec_auth_and_secrets_through_their_types() -> None:
    assert decode("ContainerExec", b'{"cmd":["id"],"PRIVILEGED":true,"user":"0"}').value == {
        "Cmd": ["id"],
        "Privileged": True,
        "User": "0",
    }
    auth = decode("SystemAuth", '{"USERNAME":"u","pa\u017f\u017fword":"p","Auth":"x"}'.encode())
    assert auth.value == {"username": "u", "password": "p", "auth": "x"}
    assert decode("SecretCreate", b'{"data":"c2VjcmV0"}').value == {"Data": "c2VjcmV0"}


def test_operations_without_a_json_type_are_plain_json() -> None:
    assert not typed("ContainerList")
    decoded = decode("ContainerList", b'{"a":1,"a":2}')
    assert (decoded.value, decoded.typed, decoded.error) == ({"a": 2}, False, None)
    assert decode("ContainerList", b"").value is None
    assert decode(None, b"not json").rejected


# Fields read of a create body: a resource field that carries over from the deprecated
# top-level HostConfig, and the Cpuset that becomes CpusetCpus, as well as privileges.
READS = frozenset(
    {"Image", "HostConfig.Privileged", "HostConfig.Binds", "HostConfig.Mounts"}
    | {"HostConfig.CapAdd", "HostConfig.Memory", "HostConfig.CpusetCpus"}
)


def project(value: Any, paths: frozenset[str]) -> Any:
    """The part of a decoded body at `paths`."""
    out = {}
    for head in {path.partition(".")[0] for path in paths}:
        if head not in value:
            continue
        rest = frozenset(p.partition(".")[2] for p in paths if p.startswith(head + "."))
        inner = value[head]
        out[head] = project(inner, rest) if rest and isinstance(inner, dict) else inner
    return out


@pytest.mark.parametrize(
    "body",
    [
        '{"image":"bb","hostconfig":{"privileged":true,"bInDs":["/etc:/h"],"Dns":["x"]}}',
        '{"HostConfig":{"Bind\u017f":["/etc:/x"],"Networ\u212aMode":"host"}}',
        '{"HostConfig":{"Privileged":true},"HostConfig":{"Memory":8000000}}',
        '{"HostConfig":{"Privileged":false,"Privileged":true},"Hostname":"a","Hostname":"b"}',
        '{"HostConfig":{"Binds":["/etc:/x"]},"HostConfig":{"Binds":[null]}}',
        '{"HostConfig":{"CapAdd":["SYS_ADMIN"]},"HostConfig":{"CapAdd":"NET_RAW"}}',
        '{"Image":"bb","Privileged":true,"Labels":{"a":"b"}}',
        '{"Privileged":true,"HostConfig":{"Memory":8000000}}',
        '{"Memory":9000000,"HostConfig":{"Privileged":true,"CpuShares":2}}',
        '{"Cpuset":"0","HostConfig":{}}',
        '{"Dns":["1.1.1.1"],"Privileged":null}',
        '{"Image":"bb","Env":["A=b"],"HostConfig":{"Mounts":[{"Type":"bind","Source":"/"}]}}',
        '{"Image":"bb","HostConfig":null}',
        '{"Image":"b\\u0062","HostConfig":{"Privileged":true,"Privileged":false,"Dns":[]}}',
    ],
)
def test_a_reading_of_some_fields_holds_what_the_whole_reading_holds_there(body: str) -> None:
    whole = decode("ContainerCreate", body.encode())
    some = decode("ContainerCreate", body.encode(), READS)
    assert whole.error is None and some.error is None
    assert some.value == project(whole.value, READS)


def test_a_reading_of_some_fields_sees_type_errors_only_in_those() -> None:
    unread = b'{"Image":"bb","Hostname":1,"HostConfig":{"Memory":"1","Dns":"x"}}'
    assert decode("ContainerCreate", unread).rejected
    assert decode("ContainerCreate", unread, frozenset({"Image"})).value == {"Image": "bb"}
    read = b'{"Image":"bb","HostConfig":{"Privileged":1}}'
    assert decode("ContainerCreate", read, READS).error == decode("ContainerCreate", read).error
    assert decode("ContainerCreate", b"[]", READS).error == (
        "json: cannot unmarshal array into Go value of type ContainerConfigWrapper"
    )


def _captured_creates() -> list[bytes]:
    return [
        bytes(ex.request_body)
        for path in sorted(CAPTURES.glob("*.jsonl"))
        for ex in load(path).exchanges
        if ex.request.operation == "ContainerCreate"
    ]


@pytest.mark.parametrize("body", _captured_creates())
def test_the_docker_clis_creates_are_read_quickly_as_the_full_reading_reads_them(
    body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the guard reads them: only its fields. The CLI's `sh -c 'a > b'` (run.jsonl) is
    # written with Go's \u003e escapes, which the quick reading takes too.
    reads = asks.READS["ContainerCreate"]
    quick = decode("ContainerCreate", body, reads)
    answered: list[object] = []
    real = gojson.quick_decode

    def only_full(types: gojson.Types, kind: str, data: bytes) -> None:
        answered.append(real(types, kind, data))

    monkeypatch.setattr(gojson, "quick_decode", only_full)
    assert decode("ContainerCreate", body, reads) == quick
    assert answered and answered[0] is not None
