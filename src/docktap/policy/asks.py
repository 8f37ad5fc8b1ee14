"""What a request asks the daemon for, read as dockerd reads it.

The guard never reads a body or a query itself: bodies go through `docktap.request.body.decode`
(Go's encoding/json into the API types: any key case, the last duplicate wins, no coercion),
query and form parameters through `docktap.request.query.Query`, and bind mounts, sockets and
security options through the audit's own definitions, so that the guard, the audit and dockerd
agree on what a request means.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from docktap.audit import bind_mounts, host_path, is_docker_socket, pulled_image, security_opt
from docktap.policy.model import LIMIT_KEYS, NAMESPACE_FIELDS
from docktap.request.body import decode
from docktap.request.query import Query, form_in_body

#: Operations whose privileges are in the body (or a form body): decided only once it is whole.
#: Those with limits (`LIMITED`) are checked against them; the rest are allowed or denied as a
#: whole, but their body is still read first, so that what reaches the daemon was decided.
BODY_OPERATIONS = frozenset(
    {
        "ContainerCreate",
        "ContainerUpdate",
        "ContainerExec",
        "ExecStart",
        "ImageCreate",
        "ServiceCreate",
        "ServiceUpdate",
        "PluginPull",
        "PluginUpgrade",
        "PluginSet",
        "SwarmInit",
        "SwarmJoin",
        "SwarmUpdate",
        "SecretCreate",
        "ConfigCreate",
        "VolumeCreate",
        "NetworkCreate",
        "NetworkConnect",
    }
)


def body_needed(operation: str | None, method: str, headers: Sequence[tuple[str, str]]) -> bool:
    """Whether a request's body must be read whole before it is decided.

    A pull says what it pulls in its query or a form body; any other body of ImageCreate is the
    tarball of an import (`docker import`, `fromSrc=-`), of any size, which dockerd reads no
    parameter from: it is decided on its head and streams on, as an archive upload does."""
    if operation not in BODY_OPERATIONS:
        return False
    return operation != "ImageCreate" or form_in_body(method, headers)


#: Operations whose bodies (or form bodies) the policy limits, and the limits that apply.
LIMITS = {
    "ContainerCreate": LIMIT_KEYS,
    "ContainerExec": ("privileged",),
    "ImageCreate": ("images",),
}
LIMITED = frozenset(LIMITS)
#: The fields of each decoded body that `read` looks at, and all it decodes of the body.
#:
#: Decoding the rest would cost the guard most of its time on a create, for one thing it
#: could add: a type error in a field not read, which makes dockerd refuse the body. Such a
#: body is forwarded, and dockerd answers it with its own error: it decodes the whole body
#: before it acts on any of it (runconfig's DecodeConfig, httputils.ReadJSON), so nothing is
#: created, and what each field read holds is what dockerd holds, a failed body or not (Go
#: skips a value of the wrong type and goes on). A type error in a field read is still seen,
#: and denied with dockerd's own message. `policy check` and `learn` read captures the same
#: way, so they judge such a body as the guard does.
READS = {
    "ContainerCreate": frozenset(
        {
            "Image",
            *(
                f"HostConfig.{name}"
                for name in (
                    "Binds",
                    "Mounts",
                    "CapAdd",
                    "Capabilities",
                    "Devices",
                    "SecurityOpt",
                    "Privileged",
                    *NAMESPACE_FIELDS,
                )
            ),
        }
    ),
    "ContainerExec": frozenset({"Privileged"}),
}


class Asks(NamedTuple):
    """The privileges one request asks for; `error` when dockerd would refuse its body.

    A named tuple: one is built per request, in a fraction of the time of a frozen dataclass."""

    images: tuple[str, ...] = ()
    binds: tuple[str, ...] = ()  # normalized host paths
    capabilities: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    security_options: tuple[str, ...] = ()
    host_namespaces: tuple[str, ...] = ()
    privileged: bool = False
    docker_sockets: tuple[str, ...] = ()  # bind mounts of a Docker socket, source or target
    error: str | None = None
    privileged_field: str = "HostConfig.Privileged"


def capability(name: Any) -> str:
    """A capability as dockerd compares them: upper case, without `CAP_`."""
    return str(name).upper().removeprefix("CAP_")


def read(
    operation: str | None, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes
) -> Asks:
    """What a request to `operation` asks for."""
    if operation == "ImageCreate":
        image = pulled_image(Query.of_request(method, target, headers, body))
        return Asks(images=(image,) if image else ())
    if operation not in ("ContainerCreate", "ContainerExec"):
        return Asks()
    decoded = decode(operation, body, READS[operation])
    if decoded.error is not None:  # rejected
        return Asks(error=decoded.error)
    value = decoded.value if isinstance(decoded.value, dict) else {}
    if operation == "ContainerExec":
        return Asks(privileged=value.get("Privileged") is True, privileged_field="Privileged")
    return _create(value)


def _create(body: dict[str, Any]) -> Asks:
    host = body.get("HostConfig")
    if not isinstance(host, dict):
        host = {}
    image = body.get("Image")
    get = host.get
    # Each privilege is read once, here; most creates ask for none of those a list or "host"
    # holds, and each of those then costs a look-up (and the Asks is built positionally, the
    # quickest named tuple).
    binds: tuple[str, ...] = ()
    sockets: tuple[str, ...] = ()
    if get("Binds") or get("Mounts"):
        paths, found = [], []
        for source, target, _, _ in bind_mounts(host):
            path = host_path(source)
            if path is None:
                continue
            paths.append(path)
            if is_docker_socket(path) or is_docker_socket(target):
                found.append(path)
        binds, sockets = tuple(paths), tuple(found)
    added, capabilities = get("CapAdd"), get("Capabilities")
    caps = (
        tuple([capability(c) for c in (*(added or ()), *(capabilities or ()))])
        if added or capabilities
        else ()
    )
    devices = get("Devices")
    options = get("SecurityOpt")
    return Asks(
        (image,) if isinstance(image, str) and image else (),
        binds,
        caps,
        tuple([str(d.get("PathOnHost", "")) for d in devices if isinstance(d, dict)])
        if devices
        else (),
        tuple([security_opt(o) for o in options]) if options else (),
        # dockerd shares a namespace for exactly "host" (IsHost).
        tuple([f for f in NAMESPACE_FIELDS if get(f) == "host"]) if "host" in host.values() else (),
        get("Privileged") is True,
        sockets,
    )
