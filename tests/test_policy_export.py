"""Exports of a policy for other socket proxies: golden files, the tools' own names, and what
each says it cannot express."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from golden import CAPTURES, check_golden

from docktap.capture.reader import load
from docktap.cli import main
from docktap.policy.export import FORMATS, export
from docktap.policy.learn import learn
from docktap.policy.model import Policy, loads
from docktap.policy.text import dump

# The section variables Tecnativa's haproxy.cfg reads, and its write switch.
TECNATIVA = {
    "AUTH", "BUILD", "COMMIT", "CONFIGS", "CONTAINERS", "DISTRIBUTION", "EVENTS", "EXEC",
    "GRPC", "IMAGES", "INFO", "NETWORKS", "NODES", "PING", "PLUGINS", "SECRETS", "SERVICES",
    "SESSION", "SWARM", "SYSTEM", "TASKS", "VERSION", "VOLUMES", "POST",
}  # fmt: skip
# wollomatic/socket-proxy's documented variables: one allowlist per HTTP method, bind mounts.
WOLLOMATIC = re.compile(
    r"SP_ALLOW_(GET|HEAD|POST|PUT|PATCH|DELETE|CONNECT|TRACE|OPTIONS)(_[0-9]+)?|"
    r"SP_ALLOWBINDMOUNTFROM"
)


def policy() -> Policy:
    captures = [(name, load(CAPTURES / name)) for name in ("run.jsonl", "socket-mount.jsonl")]
    return loads(dump(learn(captures)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_export_has_a_golden_file(fmt: str) -> None:
    made = export(policy(), fmt, "policy.yaml")
    check_golden(f"policy-export.{fmt}", made.text)
    assert made.notes and made.wider


def _variables(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")
    return dict(pairs)


def test_tecnativa_uses_its_section_variables() -> None:
    variables = _variables(export(policy(), "tecnativa", "p").text)
    assert set(variables) <= TECNATIVA
    assert variables == {"CONTAINERS": "1", "PING": "1", "POST": "1"}


def test_wollomatic_uses_its_variables_and_regexps_match_the_calls() -> None:
    variables = _variables(export(policy(), "wollomatic", "p").text)
    assert all(WOLLOMATIC.fullmatch(name) for name in variables), variables
    post = re.compile(yaml.safe_load(variables["SP_ALLOW_POST"]))
    # socket-proxy anchors every pattern itself (^...$)
    assert post.fullmatch("/v1.41/containers/3f2a/start")
    assert post.fullmatch("/containers/create")
    assert not post.fullmatch("/v1.41/containers/3f2a/exec")
    assert not post.fullmatch("/v1.41/containers/3f2a/start/x")
    assert variables["SP_ALLOWBINDMOUNTFROM"].split(",") == [
        "/tmp/docktap-3vsi0j0x/docker.sock",
        "/usr/local/bin/docker",
    ]


def test_sockguard_is_yaml_with_its_rules_and_body_limits() -> None:
    config = yaml.safe_load(export(policy(), "sockguard", "p").text)
    create = config["request_body"]["container_create"]
    assert create["allow_privileged"] is False and create["allow_host_pid"] is False
    assert create["allowed_bind_mounts"] == [
        "/tmp/docktap-3vsi0j0x/docker.sock",
        "/usr/local/bin/docker",
    ]
    assert config["rules"][-1] == {
        "match": {"method": "*", "path": "/**"},
        "action": "deny",
        "reason": "not in the docktap policy p",
    }
    assert {
        "match": {"method": "POST", "path": "/containers/*/start"},
        "action": "allow",
    } in config["rules"]


def _balanced(text: str) -> bool:
    """Brackets balance outside strings and raw strings (no OPA is shipped by a registry this
    project uses, so the module is checked this lightly, and by its shape below)."""
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for token in re.findall(r'"(?:[^"\\]|\\.)*"|`[^`]*`|#[^\n]*|[()\[\]{}]', text):
        if token[0] in '"`#':
            continue
        if token in "([{":
            stack.append(token)
        elif not stack or stack.pop() != pairs[token]:
            return False
    return not stack


def test_rego_is_a_docker_authz_module_of_well_formed_rules() -> None:
    text = export(policy(), "rego", "p").text
    code = [line for line in text.splitlines() if not line.startswith("#")]
    assert code[0] == "package docker.authz"
    assert "import rego.v1" in code and "default allow := false" in code
    assert _balanced(text)
    heads = [line for line in code if line and not line[0].isspace() and line != "}"]
    for head in heads[3:]:
        assert re.match(r"[a-z_]+(\([a-z_, ]+\))? (:=|if|contains)", head), head
    assert '\ttrue in fields(h, "Privileged")' in code
    assert "\tregex.match(`^/containers/[^/]+/start$`, path)" in code


def test_the_command_says_on_stderr_what_it_cannot_express(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(dump(learn([("run.jsonl", load(CAPTURES / "run.jsonl"))])))
    done = CliRunner().invoke(main, ["policy", "export", str(path), "--format", "tecnativa"])
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("# Tecnativa docker-socket-proxy")
    assert f"docktap: tecnativa export is wider than {path}:" in done.stderr
    assert "no request body is looked at" in done.stderr
