"""Learning a policy from captures, writing it, and checking captures against it."""

from __future__ import annotations

from pathlib import Path

import yaml
from jsonschema import Draft202012Validator
from synthetic import capture_of

from docktap.capture.reader import load
from docktap.policy.check import check
from docktap.policy.gate import MAX_BODY
from docktap.policy.learn import learn
from docktap.policy.model import Client, loads
from docktap.policy.schema import load_schema
from docktap.policy.text import dump

LIBRARY = Path(__file__).resolve().parent.parent / "captures"


def test_every_library_capture_is_allowed_by_the_policy_learned_from_it() -> None:
    validator = Draft202012Validator(load_schema())
    for path in sorted(LIBRARY.glob("*.jsonl")):
        capture = load(path)
        text = dump(learn([(path.name, capture)]))
        validator.validate(yaml.safe_load(text))
        policy = loads(text)
        assert check(policy, path.name, capture) == [], path.name


def test_rules_say_where_they_came_from() -> None:
    text = dump(learn([("run.jsonl", load(LIBRARY / "run.jsonl"))]))
    assert "  - operation: ContainerCreate  # run.jsonl #2\n" in text
    assert '      - "bb"  # run.jsonl #2\n' in text
    assert "      privileged: false  # never seen\n" in text
    assert "  - operation: ContainerStart  # run.jsonl #5\n" in text
    assert '    request: "POST /containers/{id}/start"\n' in text


def test_nothing_wider_than_observed() -> None:
    seen = capture_of(
        (
            "ContainerCreate",
            "POST",
            "/v1.41/containers/create",
            {"Image": "bb", "HostConfig": {"Binds": ["/srv/data:/d"], "CapAdd": ["net_raw"]}},
        ),
        ("ContainerStart", "POST", "/v1.41/containers/3f2a/start", None),
    )
    policy = loads(dump(learn([("seen.jsonl", seen)])))
    (entry,) = policy.clients
    assert entry.client == Client(1000, None)
    assert set(entry.rules) == {"ContainerCreate", "ContainerStart"}
    limits = entry.rules["ContainerCreate"].limits
    assert limits is not None
    assert limits.images == {"bb"} and limits.binds == ("/srv/data",)
    assert limits.capabilities == {"NET_RAW"}
    assert not limits.devices and not limits.host_namespaces and not limits.security_options
    assert not limits.privileged and not limits.docker_socket


def test_a_privileged_container_is_allowed_only_when_seen() -> None:
    seen = capture_of(
        ("ContainerCreate", "POST", "/containers/create", b'{"image":"bb","privileged":true}')
    )
    text = dump(learn([("priv.jsonl", seen)]))
    assert "      privileged: true  # priv.jsonl #1\n" in text
    assert check(loads(text), "priv.jsonl", seen) == []


def test_check_names_the_one_extra_call() -> None:
    workload = load(LIBRARY / "run.jsonl")
    policy = loads(dump(learn([("run.jsonl", workload)])))
    extra = capture_of(
        ("SystemPingHead", "HEAD", "/_ping", None),
        ("ContainerDelete", "DELETE", "/v1.41/containers/da20d04c6689?force=1", None),
        peer={"pid": 1, "uid": 0, "gid": 0},
    )
    (denied,) = check(policy, "extra.jsonl", extra)
    assert str(denied.source) == "extra.jsonl #2"
    assert denied.decision.message == (
        "docktap policy: denied DELETE /containers/da20d04c6689: "
        "ContainerDelete not allowed for uid 0"
    )


def test_an_unknown_endpoint_is_not_learned_and_is_said() -> None:
    learned = learn([("odd.jsonl", capture_of(("", "GET", "/nothing", None)))])
    assert learned.clients == {}
    assert [(str(s), why) for s, why in learned.skipped] == [
        ("odd.jsonl #1", "GET /nothing: not an Engine API operation")
    ]
    assert loads(dump(learned)).clients == ()


def test_check_denies_a_body_past_the_guards_bound_as_the_guard_does() -> None:
    # The guard reads a create's body whole before it decides, up to MAX_BODY, and denies a
    # larger one; check allowed it, so a workload checked clean failed under enforcement.
    big = {"Image": "bb", "Labels": {"pad": "x" * MAX_BODY}}
    seen = capture_of(("ContainerCreate", "POST", "/v1.41/containers/create", big))
    policy = loads(dump(learn([("big.jsonl", seen)])))
    (denied,) = check(policy, "big.jsonl", seen)
    assert denied.decision.message == (
        f"docktap policy: denied POST /containers/create: a request body over {MAX_BODY} bytes"
    )
    # An import's tarball is not read whole (it is no form): no bound applies.
    tarball = b"t" * (MAX_BODY + 1)
    imported = capture_of(("ImageCreate", "POST", "/v1.41/images/create?fromSrc=-", tarball))
    assert check(loads(dump(learn([("imp.jsonl", imported)]))), "imp.jsonl", imported) == []
