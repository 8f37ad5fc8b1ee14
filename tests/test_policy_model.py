"""The policy file: docktap's reader and the shipped JSON Schema refuse the same documents."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from docktap.policy.model import Client, PolicyError, from_document, loads
from docktap.policy.schema import load_schema

GOOD: dict[str, Any] = {
    "docktap-policy": 1,
    "clients": [
        {
            "client": {"uid": 1000, "exe": "/usr/bin/docker"},
            "allow": [
                {"operation": "SystemPingHead", "request": "HEAD /_ping"},
                {
                    "operation": "ContainerCreate",
                    "request": "POST /containers/create",
                    "body": {"images": ["bb"], "binds": ["/srv/data"], "privileged": False},
                },
            ],
        },
        {"client": "any", "allow": [{"operation": "SystemPing", "request": "GET /_ping"}]},
    ],
}


def _validator() -> Draft202012Validator:
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_a_good_policy_is_read_and_matches_the_schema() -> None:
    _validator().validate(GOOD)
    policy = loads(yaml.safe_dump(GOOD))
    first, second = policy.clients
    assert first.client == Client(1000, "/usr/bin/docker")
    assert second.client.any
    limits = first.rules["ContainerCreate"].limits
    assert limits is not None
    assert limits.images == {"bb"} and limits.binds == ("/srv/data",)
    assert not limits.privileged and not limits.docker_socket
    assert first.rules["SystemPingHead"].limits is None


def _bad(**change: Any) -> dict[str, Any]:
    rule = {"operation": "ContainerCreate", "request": "POST /containers/create", **change}
    return {"docktap-policy": 1, "clients": [{"client": "any", "allow": [rule]}]}


BAD = {
    "version 2": {"docktap-policy": 2, "clients": []},
    "no version": {"clients": []},
    "unknown top key": {"docktap-policy": 1, "clients": [], "extra": 1},
    "client empty": {"docktap-policy": 1, "clients": [{"client": {}, "allow": []}]},
    "client uid text": {"docktap-policy": 1, "clients": [{"client": {"uid": "0"}, "allow": []}]},
    "client exe relative": {
        "docktap-policy": 1,
        "clients": [{"client": {"exe": "docker"}, "allow": []}],
    },
    "unknown body key": _bad(body={"privileged": False, "Privileged": True}),
    "privileged text": _bad(body={"privileged": "yes"}),
    "relative bind": _bad(body={"binds": ["srv"]}),
    "unknown namespace": _bad(body={"host_namespaces": ["network"]}),
    "images not a list": _bad(body={"images": "bb"}),
    "no request": {
        "docktap-policy": 1,
        "clients": [{"client": "any", "allow": [{"operation": "X"}]}],
    },
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_what_the_schema_refuses_docktap_refuses(name: str) -> None:
    document = BAD[name]
    assert list(_validator().iter_errors(document)), name
    with pytest.raises(PolicyError):
        from_document(document)


@pytest.mark.parametrize(
    ("operation", "request_", "why"),
    [
        ("ContainerMake", "POST /containers/create", "not an Engine API operation"),
        ("ContainerCreate", "POST /containers/{id}/start", "is 'POST /containers/create'"),
    ],
)
def test_operations_and_templates_must_be_the_apis(operation: str, request_: str, why: str) -> None:
    document = {
        "docktap-policy": 1,
        "clients": [{"client": "any", "allow": [{"operation": operation, "request": request_}]}],
    }
    _validator().validate(document)  # the schema cannot know the API; docktap does
    with pytest.raises(PolicyError, match=why):
        from_document(document)


def test_text_that_is_not_yaml_is_refused_with_the_reason() -> None:
    with pytest.raises(PolicyError, match="not YAML"):
        loads("clients: [\n")


def test_a_rule_listed_twice_is_refused() -> None:
    rule = {"operation": "SystemPing", "request": "GET /_ping"}
    with pytest.raises(PolicyError, match="listed twice"):
        from_document({"docktap-policy": 1, "clients": [{"client": "any", "allow": [rule, rule]}]})
