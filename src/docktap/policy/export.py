"""A policy as the nearest configuration of the socket proxies people already run.

None of them can say all a docktap policy says, so each export comes with notes: what it cannot
express, and whether the result is wider (allows more) or narrower (allows less) than the
policy. The names used are those the tools document:

- Tecnativa docker-socket-proxy: one variable per API section (`CONTAINERS=1`, ...), which
  allows every path of that section, and `POST=1`, which allows every method but GET and HEAD
  in every allowed section.
- wollomatic/socket-proxy: `SP_ALLOW_<METHOD>` Go regexps matched against the whole path
  (`^` and `$` are added by the proxy; `SP_ALLOW_GET_2`, ... for more), and
  `SP_ALLOWBINDMOUNTFROM`, the host directories bind mounts may come from.
- sockguard: its YAML `rules` (method, path glob, action) and its
  `request_body.container_create` and `request_body.exec` limits.
- opa-docker-authz: a Rego module in package `docker.authz` whose `allow` is read, over the
  plugin's input document (`Method`, `PathPlain`, `Body`).

Pure: a policy in, text and notes out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from docktap.policy.formats import FORMATS as FORMATS
from docktap.policy.model import Limits, Policy, Rule

# Tecnativa's sections, by the first segment of the unversioned path.
_SECTIONS = {
    "_ping": "PING",
    "auth": "AUTH",
    "build": "BUILD",
    "commit": "COMMIT",
    "configs": "CONFIGS",
    "containers": "CONTAINERS",
    "distribution": "DISTRIBUTION",
    "events": "EVENTS",
    "exec": "EXEC",
    "grpc": "GRPC",
    "images": "IMAGES",
    "info": "INFO",
    "networks": "NETWORKS",
    "nodes": "NODES",
    "plugins": "PLUGINS",
    "secrets": "SECRETS",
    "services": "SERVICES",
    "session": "SESSION",
    "swarm": "SWARM",
    "system": "SYSTEM",
    "tasks": "TASKS",
    "version": "VERSION",
    "volumes": "VOLUMES",
}
_PARAM = re.compile(r"\{([^/{}]+)\}")
# Parameters that hold references with slashes (images, plugins, distribution): many segments.
_SPANNING = frozenset({"name", "remote"})
_NAMESPACE_KEYS = {
    "NetworkMode": "allow_host_network",
    "PidMode": "allow_host_pid",
    "IpcMode": "allow_host_ipc",
    "UsernsMode": "allow_host_userns",
}
_NONE_BIND = "/docktap-policy-allows-no-bind-mount"


@dataclass(frozen=True)
class Export:
    text: str
    notes: tuple[str, ...]  # what cannot be expressed, and which way the result errs
    wider: bool  # the result allows more than the policy


def export(policy: Policy, fmt: str, source: str) -> Export:
    """The configuration of `fmt` nearest to `policy` (read from the file `source`)."""
    if fmt == "tecnativa":
        return _tecnativa(policy, source)
    if fmt == "wollomatic":
        return _wollomatic(policy, source)
    if fmt == "sockguard":
        return _sockguard(policy, source)
    if fmt == "rego":
        return _rego(policy, source)
    raise ValueError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")


def _rules(policy: Policy) -> list[Rule]:
    """Every client's rules, merged (none of the tools tells Docker clients apart by uid)."""
    merged: dict[str, Rule] = {}
    for client in policy.clients:
        for operation, rule in client.rules.items():
            merged.setdefault(operation, rule)
    return sorted(merged.values(), key=lambda r: (r.path, r.method))


def _limits(policy: Policy, operation: str) -> Limits:
    """The union of every client's limits for an operation."""
    found = [c.rules[operation].limits for c in policy.clients if operation in c.rules]
    every = [limits for limits in found if limits is not None]
    return Limits(
        images=frozenset().union(*(lim.images for lim in every)),
        binds=tuple(dict.fromkeys(b for lim in every for b in lim.binds)),
        capabilities=frozenset().union(*(lim.capabilities for lim in every)),
        devices=frozenset().union(*(lim.devices for lim in every)),
        security_options=frozenset().union(*(lim.security_options for lim in every)),
        host_namespaces=frozenset().union(*(lim.host_namespaces for lim in every)),
        privileged=any(lim.privileged for lim in every),
        docker_socket=any(lim.docker_socket for lim in every),
    )


def _client_note(policy: Policy) -> list[str]:
    if len(policy.clients) > 1 or any(not c.client.any for c in policy.clients):
        who = ", ".join(c.client.describe() for c in policy.clients)
        return [f"clients ({who}) cannot be told apart: every rule applies to every client"]
    return []


def _socket_note(limits: Limits) -> list[str]:
    if limits.binds and not limits.docker_socket:
        return ["a Docker socket under an allowed bind source is not told apart from other files"]
    return []


def _header(tool: str, source: str, notes: Iterable[str], wider: bool) -> list[str]:
    lines = [f"# {tool}: the nearest configuration to the docktap policy {source}"]
    lines.append(f"# It is {'WIDER' if wider else 'NARROWER'} than the policy:")
    lines.extend(f"#   - {note}" for note in notes)
    return lines


# -- Tecnativa -------------------------------------------------------------------------------


def _tecnativa(policy: Policy, source: str) -> Export:
    rules = _rules(policy)
    sections = sorted({_SECTIONS[s] for r in rules if (s := r.path[1:].split("/")[0]) in _SECTIONS})
    writes = sorted({r.method for r in rules if r.method not in ("GET", "HEAD")})
    notes = [
        *_client_note(policy),
        "each section variable allows every path and operation of its section, not only "
        f"the {len(rules)} operations the policy allows",
        "no request body is looked at: privileged containers, host mounts, capabilities, "
        "devices and images are not limited",
    ]
    if writes:
        notes.append(f"POST=1 (for {', '.join(writes)}) allows every write in every section")
    lines = _header("Tecnativa docker-socket-proxy", source, notes, True)
    lines.extend(f"{name}=1" for name in sections)
    lines.append(f"POST={1 if writes else 0}")
    return Export("\n".join(lines) + "\n", tuple(notes), True)


# -- wollomatic ------------------------------------------------------------------------------


def _regex(template: str) -> str:
    """A path template as a Go regexp of the unversioned or versioned path."""
    out = []
    position = 0
    for match in _PARAM.finditer(template):
        out.append(re.escape(template[position : match.start()]))
        out.append(".+" if match.group(1) in _SPANNING else "[^/]+")
        position = match.end()
    out.append(re.escape(template[position:]))
    return "".join(out).replace("\\/", "/").replace("\\-", "-").replace("\\_", "_")


def _wollomatic(policy: Policy, source: str) -> Export:
    rules = _rules(policy)
    by_method: dict[str, list[str]] = {}
    for rule in rules:
        by_method.setdefault(rule.method, []).append(_regex(rule.path))
    create = _limits(policy, "ContainerCreate")
    notes = [
        *_client_note(policy),
        "only bind mount sources are checked in bodies: privileged containers, host "
        "namespaces, capabilities, devices and images are not limited",
        "regexps match the path as sent; bodies are read by socket-proxy's own JSON decoding, "
        "not dockerd's",
        *_socket_note(create),
    ]
    lines = _header("wollomatic/socket-proxy", source, notes, True)
    for method in sorted(by_method):
        pattern = "(/v[0-9.]+)?(" + "|".join(by_method[method]) + ")"
        lines.append(f"SP_ALLOW_{method}={json.dumps(pattern)}")
    if create.binds:
        lines.append(f"SP_ALLOWBINDMOUNTFROM={','.join(create.binds)}")
    else:
        lines.append("# No bind mount was seen; unset, socket-proxy would allow any: a")
        lines.append("# directory that does not exist allows none.")
        lines.append(f"SP_ALLOWBINDMOUNTFROM={_NONE_BIND}")
    return Export("\n".join(lines) + "\n", tuple(notes), True)


# -- sockguard -------------------------------------------------------------------------------


def _glob(template: str) -> str:
    return _PARAM.sub(lambda m: "**" if m.group(1) in _SPANNING else "*", template)


def _yaml_list(name: str, values: Iterable[str], indent: str) -> list[str]:
    items = sorted(values)
    if not items:
        return [f"{indent}{name}: []"]
    return [f"{indent}{name}:", *(f"{indent}  - {json.dumps(v)}" for v in items)]


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _sockguard(policy: Policy, source: str) -> Export:
    rules = _rules(policy)
    create = _limits(policy, "ContainerCreate")
    exec_ = _limits(policy, "ContainerExec")
    notes = [*_client_note(policy), *_socket_note(create)]
    if create.images:
        notes.append("the images a container may run are not limited (images: not expressible)")
    if "UTSMode" in create.host_namespaces or "CgroupnsMode" in create.host_namespaces:
        notes.append("host UTS and cgroup namespaces are not limited")
    if create.security_options - {"seccomp=unconfined", "apparmor=unconfined"}:
        notes.append("security options other than unconfined seccomp/AppArmor are not limited")
    wider = bool(notes)
    if not notes:
        notes.append("every rule and limit of the policy has its sockguard counterpart")
    lines = _header("sockguard", source, notes, wider)
    lines += [
        "upstream:",
        "  socket: /var/run/docker.sock",
        "request_body:",
        "  container_create:",
        f"    allow_privileged: {_flag(create.privileged)}",
        *(
            f"    {key}: {_flag(field in create.host_namespaces)}"
            for field, key in _NAMESPACE_KEYS.items()
        ),
        *_yaml_list("allowed_bind_mounts", create.binds, "    "),
        "    allow_all_devices: false",
        *_yaml_list("allowed_devices", create.devices, "    "),
        "    allow_all_capabilities: false",
        *_yaml_list("allowed_capabilities", create.capabilities, "    "),
        "    deny_unconfined_seccomp: "
        + _flag("seccomp=unconfined" not in create.security_options),
        "    deny_unconfined_apparmor: "
        + _flag("apparmor=unconfined" not in create.security_options),
        "  exec:",
        f"    allow_privileged: {_flag(exec_.privileged)}",
        "rules:",
    ]
    for rule in rules:
        lines.append(
            f"  - match: {{ method: {rule.method}, path: {json.dumps(_glob(rule.path))} }}"
        )
        lines.append("    action: allow")
    lines += [
        '  - match: { method: "*", path: "/**" }',
        "    action: deny",
        f"    reason: {json.dumps(f'not in the docktap policy {source}')}",
    ]
    return Export("\n".join(lines) + "\n", tuple(notes), wider)


# -- Rego for opa-docker-authz --------------------------------------------------------------


def _rego_set(values: Iterable[str]) -> str:
    items = sorted(values)
    return "{" + ", ".join(json.dumps(v) for v in items) + "}" if items else "set()"


def _rego(policy: Policy, source: str) -> Export:
    rules = _rules(policy)
    create = _limits(policy, "ContainerCreate")
    exec_ = _limits(policy, "ContainerExec")
    notes = [
        *_client_note(policy),
        "the plugin's input names the user of a TLS client certificate, not a uid or program",
        "body keys are matched case-insensitively and every copy of a repeated key is "
        "checked (narrower than dockerd, which keeps the last)",
        "pulled images (ImageCreate's fromImage) and security options are not limited",
        *_socket_note(create),
    ]
    lines = [
        f"# opa-docker-authz: the nearest Rego module to the docktap policy {source}",
        "# It is WIDER than the policy:",
        *(f"#   - {note}" for note in notes),
        "package docker.authz",
        "",
        "import rego.v1",
        "",
        "default allow := false",
        "",
        "allow if {",
        "\tallowed_request",
        "\tnot denied_body",
        "}",
        "",
        'path := regex.replace(input.PathPlain, `^/v[0-9.]+`, "")',
        "",
    ]
    for rule in rules:
        lines += [
            "allowed_request if {",
            f'\tinput.Method == "{rule.method}"',
            f"\tregex.match(`^{_regex(rule.path)}$`, path)",
            "}",
            "",
        ]
    lines += [
        "# The values of every key of `obj` that Go's encoding/json would match to `name`.",
        "fields(obj, name) := {v | some k, v in obj; lower(k) == lower(name)}",
        "",
        "create if {",
        '\tinput.Method == "POST"',
        '\tpath == "/containers/create"',
        "}",
        "",
        "# The create body's HostConfig, and the body itself (its deprecated top-level one).",
        'host_configs contains h if some h in fields(input.Body, "HostConfig")',
        "",
        "host_configs contains input.Body",
        "",
        "strings(value) := {value} if is_string(value)",
        "",
        "strings(value) := {v | some v in value} if is_array(value)",
        "",
        f"allowed_images := {_rego_set(create.images)}",
        "",
        f"allowed_binds := {_rego_set(create.binds)}",
        "",
        f"allowed_capabilities := {_rego_set(create.capabilities)}",
        "",
        f"allowed_devices := {_rego_set(create.devices)}",
        "",
        f"allowed_host_namespaces := {_rego_set(create.host_namespaces)}",
        "",
        "covered(source) if {",
        "\tsome prefix in allowed_binds",
        "\tsource == prefix",
        "}",
        "",
        "covered(source) if {",
        "\tsome prefix in allowed_binds",
        '\tstartswith(source, concat("", [trim_right(prefix, "/"), "/"]))',
        "}",
        "",
        'bind_source contains split(b, ":")[0] if {',
        "\tsome h in host_configs",
        '\tsome binds in fields(h, "Binds")',
        "\tsome b in binds",
        "}",
        "",
        "bind_source contains source if {",
        "\tsome h in host_configs",
        '\tsome mounts in fields(h, "Mounts")',
        "\tsome m in mounts",
        '\t"bind" in fields(m, "Type")',
        '\tsome source in fields(m, "Source")',
        "}",
        "",
    ]
    if not create.privileged:
        lines += [
            "denied_body if {",
            "\tcreate",
            "\tsome h in host_configs",
            '\ttrue in fields(h, "Privileged")',
            "}",
            "",
        ]
    if not exec_.privileged:
        lines += [
            "denied_body if {",
            '\tinput.Method == "POST"',
            "\tregex.match(`^/containers/[^/]+/exec$`, path)",
            '\ttrue in fields(input.Body, "Privileged")',
            "}",
            "",
        ]
    lines += [
        "denied_body if {",
        "\tcreate",
        '\tsome image in fields(input.Body, "Image")',
        "\tnot image in allowed_images",
        "}",
        "",
        "denied_body if {",
        "\tcreate",
        "\tsome source in bind_source",
        '\tstartswith(source, "/")',
        "\tnot covered(source)",
        "}",
        "",
        "denied_body if {",
        "\tcreate",
        "\tsome h in host_configs",
        '\tsome field in ["CapAdd", "Capabilities"]',
        "\tsome value in fields(h, field)",
        "\tsome cap in strings(value)",
        '\tnot trim_prefix(upper(cap), "CAP_") in allowed_capabilities',
        "}",
        "",
        "denied_body if {",
        "\tcreate",
        "\tsome h in host_configs",
        '\tsome devices in fields(h, "Devices")',
        "\tsome d in devices",
        '\tsome device in fields(d, "PathOnHost")',
        "\tnot device in allowed_devices",
        "}",
        "",
        "denied_body if {",
        "\tcreate",
        "\tsome h in host_configs",
        '\tsome field in ["NetworkMode", "PidMode", "IpcMode", "UTSMode", "UsernsMode", '
        '"CgroupnsMode"]',
        '\t"host" in fields(h, field)',
        "\tnot field in allowed_host_namespaces",
        "}",
    ]
    return Export("\n".join(lines) + "\n", tuple(notes), True)
