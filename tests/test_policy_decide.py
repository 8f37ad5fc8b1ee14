"""One request through a policy, the body read as dockerd reads it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from docktap.policy.asks import Asks
from docktap.policy.decide import Request, _beyond, decide
from docktap.policy.model import Client, ClientRules, Limits, Policy, Rule

CREATE = Rule(
    "ContainerCreate",
    "POST",
    "/containers/create",
    Limits(images=frozenset({"bb"}), binds=("/srv/data",), capabilities=frozenset({"NET_RAW"})),
)
POLICY = Policy(
    (
        ClientRules(
            Client(1000, "/usr/bin/docker"),
            {
                "ContainerCreate": CREATE,
                "SystemPingHead": Rule("SystemPingHead", "HEAD", "/_ping"),
                "ContainerExec": Rule("ContainerExec", "POST", "/containers/{id}/exec", Limits()),
            },
        ),
        ClientRules(Client(), {"SystemPing": Rule("SystemPing", "GET", "/_ping")}),
    )
)
USER: dict[str, Any] = {"uid": 1000, "exe": "/usr/bin/docker"}


def create(body: bytes | dict[str, Any], **who: Any) -> Request:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Request("POST", "/v1.41/containers/create", (), data, True, **(who or USER))


def test_what_was_allowed_passes() -> None:
    decision = decide(POLICY, create({"Image": "bb", "HostConfig": {"Binds": ["/srv/data/x:/x"]}}))
    assert decision.allowed, decision.reason
    assert decide(POLICY, Request("HEAD", "/_ping", **USER)).allowed


def test_the_denial_names_the_rule_and_the_client() -> None:
    decision = decide(POLICY, create({"Image": "bb", "HostConfig": {"Privileged": True}}))
    assert not decision.allowed
    assert decision.message == (
        "docktap policy: denied POST /containers/create: "
        "HostConfig.Privileged not allowed for uid 1000 (/usr/bin/docker)"
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"Image": "bb", "HostConfig": {"Privileged": True}}, "HostConfig.Privileged"),
        (b'{"Image":"bb","hostconfig":{"privileged":true}}', "HostConfig.Privileged"),
        # the deprecated top-level HostConfig of a create body
        (b'{"Image":"bb","Privileged":true}', "HostConfig.Privileged"),
        # Go decodes a repeated key into what the first left: the two merge
        (
            b'{"Image":"bb","HostConfig":{"Privileged":true},"HostConfig":{"Memory":1}}',
            "HostConfig.Privileged",
        ),
        (b'{"Image":"bb","HostConfig":{"Privileged":false,"PRIVILEGED":true}}', "Privileged"),
        ({"Image": "bb", "HostConfig": {"Binds": ["/:/host"]}}, "Binds source / not allowed"),
        ({"Image": "bb", "HostConfig": {"bInDs": ["/etc:/h"]}}, "Binds source /etc not allowed"),
        ({"Image": "bb", "HostConfig": {"Binds": ["/srv/database:/d"]}}, "/srv/database"),
        ({"Image": "bb", "HostConfig": {"Binds": ["/srv/data/../../etc:/d"]}}, "source /etc"),
        (
            {
                "Image": "bb",
                "HostConfig": {"Mounts": [{"Type": "bind", "Source": "/", "Target": "/h"}]},
            },
            "Binds source / not allowed",
        ),
        (
            {"Image": "bb", "HostConfig": {"Binds": ["/var/run/docker.sock:/var/run/docker.sock"]}},
            "the Docker socket mounted (/var/run/docker.sock) not allowed",
        ),
        ({"Image": "bb", "HostConfig": {"PidMode": "host"}}, "HostConfig.PidMode=host"),
        ({"Image": "bb", "HostConfig": {"networkmode": "host"}}, "HostConfig.NetworkMode=host"),
        ({"Image": "bb", "HostConfig": {"CapAdd": ["SYS_ADMIN"]}}, "CapAdd SYS_ADMIN"),
        ({"Image": "bb", "HostConfig": {"CapAdd": "cap_sys_admin"}}, "CapAdd SYS_ADMIN"),
        (
            {"Image": "bb", "HostConfig": {"Devices": [{"PathOnHost": "/dev/null"}]}},
            "HostConfig.Devices /dev/null",
        ),
        (
            {"Image": "bb", "HostConfig": {"SecurityOpt": ["seccomp=unconfined"]}},
            "SecurityOpt seccomp=unconfined",
        ),
        ({"Image": "alpine"}, "image alpine not allowed"),
        (b'{"Image":"bb","Image":"alpine"}', "image alpine not allowed"),
        (b'{"Image":"bb","HostConfig":{"Privileged":1}}', "a body dockerd cannot decode"),
        (b"not json", "a body dockerd cannot decode"),
    ],
)
def test_what_the_body_asks_beyond_the_limits_is_denied(
    body: bytes | dict[str, Any], reason: str
) -> None:
    decision = decide(POLICY, create(body))
    assert not decision.allowed
    assert reason in decision.reason, decision.reason


def test_a_type_error_where_the_guard_does_not_read_is_left_to_dockerd() -> None:
    # dockerd refuses the whole body with its own 400 (tests/test_policy_dockerd.py)
    assert decide(POLICY, create(b'{"Image":"bb","Hostname":1,"HostConfig":{"Dns":"x"}}')).allowed
    denied = decide(POLICY, create(b'{"Image":"bb","Hostname":1,"HostConfig":{"CapAdd":[1]}}'))
    assert not denied.allowed and "a body dockerd cannot decode" in denied.reason


def test_allowed_capabilities_in_any_spelling_pass() -> None:
    assert decide(
        POLICY, create({"Image": "bb", "HostConfig": {"CapAdd": ["cap_net_raw"]}})
    ).allowed


def test_an_operation_not_learned_is_denied() -> None:
    decision = decide(POLICY, Request("DELETE", "/v1.41/containers/abc?force=1", **USER))
    assert decision.message == (
        "docktap policy: denied DELETE /containers/abc: "
        "ContainerDelete not allowed for uid 1000 (/usr/bin/docker)"
    )


def test_a_path_that_is_no_operation_is_denied() -> None:
    decision = decide(POLICY, Request("GET", "/nothing/here", **USER))
    assert not decision.allowed and decision.reason == "not an Engine API operation"


def test_clients_are_told_apart_by_uid_and_executable() -> None:
    body = {"Image": "bb"}
    assert not decide(POLICY, create(body, uid=1001, exe="/usr/bin/docker")).allowed
    assert not decide(POLICY, create(body, uid=1000, exe="/usr/bin/python3")).allowed
    other = decide(POLICY, create(body, uid=0, exe=None))
    assert other.reason == "ContainerCreate not allowed for uid 0"
    # the rules for any client apply to everyone
    assert decide(POLICY, Request("GET", "/_ping", uid=5)).allowed
    assert decide(POLICY, Request("GET", "/_ping")).allowed


def test_a_body_not_read_in_full_is_denied() -> None:
    partial = Request("POST", "/containers/create", (), b'{"Image":"bb"', False, **USER)
    decision = decide(POLICY, partial)
    assert not decision.allowed and "not read in full" in decision.reason


def test_a_privileged_exec_is_denied() -> None:
    request = Request("POST", "/containers/c/exec", (), b'{"Cmd":["id"],"privileged":true}', **USER)
    decision = decide(POLICY, request)
    assert decision.reason == "Privileged not allowed for uid 1000 (/usr/bin/docker)"
    plain = Request("POST", "/containers/c/exec", (), b'{"Cmd":["id"]}', **USER)
    assert decide(POLICY, plain).allowed


def test_a_pull_names_its_image_in_the_query_or_a_form_body() -> None:
    pulls = Policy(
        (
            ClientRules(
                Client(),
                {
                    "ImageCreate": Rule(
                        "ImageCreate", "POST", "/images/create", Limits(images=frozenset({"bb"}))
                    )
                },
            ),
        )
    )
    assert decide(pulls, Request("POST", "/images/create?fromImage=bb")).allowed
    form = [("Content-Type", "application/x-www-form-urlencoded")]
    sneaky = Request("POST", "/images/create?fromImage=bb", form, b"fromImage=alpine")
    assert "image alpine not allowed" in decide(pulls, sneaky).reason


def test_a_pull_is_allowed_the_tag_or_digest_it_names_and_no_other() -> None:
    # The tag parameter is the tag dockerd pulls: allowing bb:1.0 allowed every tag of bb, and
    # `docker pull -a bb` (no tag: all of them), since only fromImage was compared.
    digest = "sha256:" + "a" * 64
    pulls = Policy(
        (
            ClientRules(
                Client(),
                {
                    "ImageCreate": Rule(
                        "ImageCreate",
                        "POST",
                        "/images/create",
                        Limits(images=frozenset({"bb:1.0", f"bb@{digest}", "localhost:5000/x:2"})),
                    )
                },
            ),
        )
    )
    allowed = {
        "fromImage=bb&tag=1.0": True,
        "fromImage=bb:1.0": True,
        "fromImage=bb:0.9&tag=1.0": True,  # dockerd replaces the tag
        f"fromImage=bb&tag={digest.replace(':', '%3A')}": True,
        "fromImage=localhost:5000/x&tag=2": True,
        "fromImage=bb&tag=evil": False,
        "fromImage=bb:1.0&tag=evil": False,
        "fromImage=bb": False,  # every tag of bb
        "fromImage=bb:": False,  # so is this: `pull -a` may send the colon
        "fromImage=localhost:5000/x": False,
    }
    for query, expected in allowed.items():
        decision = decide(pulls, Request("POST", f"/v1.41/images/create?{query}"))
        assert decision.allowed is expected, (query, decision.reason)
    denied = decide(pulls, Request("POST", "/v1.41/images/create?fromImage=bb&tag=evil"))
    assert denied.reason == "image bb:evil not allowed for a client of unknown uid"


def test_every_privilege_an_asks_holds_beside_its_image_is_checked() -> None:
    # _beyond skips the limits other than the images for an Asks that holds nothing else: a
    # field added to Asks must not fall outside what it compares.
    fields = Asks._fields
    for name in fields[fields.index("images") + 1 : fields.index("error")]:
        values: list[Any] = list(Asks(images=("bb",)))
        values[fields.index(name)] = True if name == "privileged" else ("/x",)
        asked = Asks(*values)
        assert _beyond(Limits(images=frozenset({"bb"})), asked) is not None, name
    assert _beyond(Limits(images=frozenset({"bb"})), Asks(images=("bb",))) is None
