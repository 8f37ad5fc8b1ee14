"""Security audit of a capture: which calls asked the daemon for risky things, and who asked.

Anyone who can talk to the Docker socket can get root on the host: a container started with
the right options sees the host's files, processes or devices. A capture records each such
request together with the process that made it (its pid, uid and gid, from the socket's peer
credentials), so reading it back tells what was asked and by whom, without a daemon.

Bodies and query strings are read as dockerd reads them (docktap.request): a field spelled
`"hostconfig"` or given twice counts as dockerd counts it, and a body dockerd refuses is said
to be refused rather than read in its own way.

This module is pure: `audit` turns a loaded capture into findings; `docktap.render.audit` says
them (a listing, a terminal table, a live warning), and `docktap audit` prints them. Where a
rule matches an item of the CIS Docker Benchmark, the finding names the item number; the
explanations are ours.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from docktap.capture.format import Kind, Record
from docktap.capture.reader import Capture, Exchange
from docktap.levels import LEVELS as LEVELS
from docktap.levels import LIVE_LEVEL as LIVE_LEVEL
from docktap.request.body import Decoded, decode
from docktap.request.query import Query


def rank(level: str) -> int:
    """The position of a level in LEVELS (ValueError for an unknown one)."""
    return LEVELS.index(level)


# Named tuples, not frozen dataclasses: `show` and `run --audit` import this module, and a
# dataclass costs 0.3-0.5 ms of CPU to define (docktap/values.py).
class Process(NamedTuple):
    """The process on the client end of a connection, from its peer credentials."""

    pid: int | None = None
    uid: int | None = None
    gid: int | None = None
    executable: str | None = None

    def describe(self) -> str:
        if self.pid is None and self.uid is None:
            return "process unknown"
        parts = [f"pid {self.pid}", f"uid {self.uid}", f"gid {self.gid}"]
        if self.executable:
            parts.append(self.executable)
        return " ".join(parts)


class Finding(NamedTuple):
    level: str
    rule: str
    title: str
    explanation: str
    cis: str | None  # CIS Docker Benchmark item number, where one applies
    conn: int
    seq: int
    method: str
    target: str
    operation: str | None
    started_mono: float
    process: Process
    number: int = 0  # the exchange number, as `docktap show` prints it; 0: on no exchange

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "rule": self.rule,
            "title": self.title,
            "explanation": self.explanation,
            "cis": self.cis,
            "exchange": {
                "number": self.number,
                "conn": self.conn,
                "seq": self.seq,
                "method": self.method,
                "target": self.target,
                "operation": self.operation,
                "started_mono": self.started_mono,
            },
            "process": {
                "pid": self.process.pid,
                "uid": self.process.uid,
                "gid": self.process.gid,
                "executable": self.process.executable,
            },
        }


class _Hit(NamedTuple):
    """What a rule found, before it is tied to its exchange and process."""

    level: str
    rule: str
    title: str
    explanation: str
    cis: str | None = None


# Host paths whose bind mount exposes the host; `/` is handled on its own (critical).
_SENSITIVE_DIRS = {
    "/etc": "the host's configuration, password hashes (/etc/shadow) and sudoers included",
    "/root": "root's home on the host: SSH keys, shell history, credentials",
    "/boot": "the host's kernels and boot loader",
    "/dev": "the host's device nodes, disks included",
    "/proc": "the host's process table and kernel tunables",
    "/sys": "the host's kernel and device settings",
    "/lib": "the host's shared libraries, which every host program loads",
    "/usr": "the host's programs and libraries",
    "/var/lib/docker": "the daemon's own storage: every image, container and volume",
}
# Under these, even a sub-path is worth a look (a file of /etc, a folder of /root).
_SENSITIVE_PREFIXES = ("/etc/", "/root/", "/boot/", "/proc/", "/sys/", "/var/lib/docker/")

# Capabilities that amount to (or come close to) full control of the host.
_STRONG_CAPS = frozenset(
    {
        "ALL",
        "SYS_ADMIN",
        "SYS_MODULE",
        "SYS_PTRACE",
        "SYS_RAWIO",
        "SYS_BOOT",
        "SYS_TIME",
        "NET_ADMIN",
        "DAC_READ_SEARCH",
        "DAC_OVERRIDE",
        "BPF",
        "PERFMON",
        "MAC_ADMIN",
        "MAC_OVERRIDE",
    }
)

_NAMESPACES = (
    # field, rule, name, level, CIS item, what sharing it gives away
    (
        "NetworkMode",
        "host-network",
        "network",
        "high",
        "5.9",
        "The container uses the host's network stack: it can listen on any host port, reach "
        "services bound to the host's loopback, and see all its interfaces.",
    ),
    (
        "PidMode",
        "host-pid",
        "process",
        "high",
        "5.15",
        "The container sees every process of the host and, as root, can signal or trace them "
        "and read their environment and memory through /proc.",
    ),
    (
        "IpcMode",
        "host-ipc",
        "IPC",
        "medium",
        "5.16",
        "The container shares the host's shared memory and semaphores, so it can read or "
        "disturb the data host processes exchange that way.",
    ),
    (
        "UTSMode",
        "host-uts",
        "UTS",
        "medium",
        "5.20",
        "The container shares the host's hostname and domain name, and can change them for "
        "the whole host.",
    ),
    (
        "UsernsMode",
        "host-userns",
        "user",
        "medium",
        "5.30",
        "The container opts out of user namespace remapping, so its root is the host's root.",
    ),
)


def audit(capture: Capture) -> list[Finding]:
    """Every finding of the capture, the most serious first, then in the order of the calls."""
    findings: list[Finding] = []
    for ex in capture.exchanges:
        connection = capture.connections.get(ex.conn)
        findings.extend(audit_exchange(ex, connection.peer if connection else None))
    findings.extend(unread(capture))
    findings.extend(denied_unrecorded(capture))
    # Exchanges come in start order; the sort is stable, so each level keeps that order.
    findings.sort(key=lambda f: -rank(f.level))
    return findings


def audit_exchange(ex: Exchange, peer: dict[str, Any] | None) -> list[Finding]:
    """The findings of one exchange; `peer` is its connection's peer credentials record."""
    hits = list(_check(ex))
    if not hits:
        return []
    process = _process(peer)
    return [
        Finding(
            level=hit.level,
            rule=hit.rule,
            title=hit.title,
            explanation=hit.explanation,
            cis=hit.cis,
            conn=ex.conn,
            seq=ex.seq,
            method=ex.method,
            target=ex.target,
            operation=ex.operation,
            started_mono=ex.started_mono,
            process=process,
            number=ex.number,
        )
        for hit in hits
    ]


UNREAD_TITLE = "traffic the audit could not read reached the daemon"


def unread(capture: Capture) -> list[Finding]:
    """One finding per connection whose client sent bytes docktap relayed but could not parse.

    The observer gives up on a connection at a protocol error and records what follows as
    `unparsed` bytes; the daemon got them all the same, and no rule read them. The finding
    sits with the exchange the error names (none before the first one: seq -1), and says how
    many bytes of the client's went through unread and why parsing stopped.

    Under an enforced policy the daemon gets only what the guard read whole, with the
    observer's own reading, and allowed. Where the observer stopped on the client's bytes
    (bytes it cannot read, which the guard refused too; a head the client never finished, or
    requests still waiting their turn when the connection went) none of them reached the
    daemon, unless the guard allowed a request the capture never read, which it says.
    """
    sizes: dict[int, int] = {}
    reasons: dict[int, Record] = {}
    exchanges = {(ex.conn, ex.seq): ex for ex in capture.exchanges}
    decided: set[int] = set()  # connections a policy decided for
    forwarded: set[int] = set()  # ... in warn mode, or letting through what was never read
    for record in capture.records:
        kind = record.get("type")
        conn = record.get("conn")
        if not isinstance(conn, int):
            continue
        if kind == Kind.UNPARSED and record.get("dir") == "client":
            sizes[conn] = sizes.get(conn, 0) + int(record.get("size") or 0)
        elif kind == Kind.ERROR and record.get("kind") == "protocol":
            reasons.setdefault(conn, record)
        elif kind == Kind.DECISION:
            decided.add(conn)
            if not record.get("enforced") or (
                record.get("allowed") and (conn, record.get("seq")) not in exchanges
            ):
                forwarded.add(conn)
    if capture.header.get("policy") == "enforce":
        decided.update(sizes)  # a connection the guard decided nothing on too
    findings: list[Finding] = []
    for conn, size in sizes.items():
        if not size:
            continue
        reason = reasons.get(conn, {})
        if reason.get("dir") == "client" and conn in decided and conn not in forwarded:
            continue  # held or refused by the guard: it never reached the daemon
        seq = reason.get("seq")
        ex = exchanges.get((conn, seq)) if isinstance(seq, int) else None
        connection = capture.connections.get(conn)
        message = reason.get("message") or "no protocol error recorded"
        findings.append(
            Finding(
                level="high",
                rule="unread-traffic",
                title=f"{UNREAD_TITLE}: connection {conn}, {size} bytes",
                explanation=f"docktap stopped parsing connection {conn} ({message}) and relayed "
                f"the {size} bytes the client sent after that to the daemon unread: whatever "
                "they asked for was neither audited nor masked by name.",
                cis=None,
                conn=conn,
                seq=ex.seq if ex is not None else -1,
                method=ex.method if ex is not None else "-",
                target=ex.target if ex is not None else "(unparsed bytes)",
                operation=ex.operation if ex is not None else None,
                started_mono=ex.started_mono if ex is not None else float(reason.get("mono") or 0),
                process=_process(connection.peer if connection else None),
                number=ex.number if ex is not None else 0,
            )
        )
    return findings


def at_or_above(findings: Iterable[Finding], level: str) -> list[Finding]:
    """The findings at `level` or more serious."""
    floor = rank(level)
    return [f for f in findings if rank(f.level) >= floor]


def counts(findings: Iterable[Finding]) -> dict[str, int]:
    """Findings per level, every level present, the most serious first."""
    numbers = dict.fromkeys(reversed(LEVELS), 0)
    for finding in findings:
        numbers[finding.level] += 1
    return numbers


def _process(peer: dict[str, Any] | None) -> Process:
    if not peer:
        return Process()
    exe = peer.get("exe")
    return Process(
        pid=peer.get("pid"),
        uid=peer.get("uid"),
        gid=peer.get("gid"),
        executable=exe if isinstance(exe, str) else None,
    )


def _denial(message: str, enforced: bool) -> _Hit:
    """The guard's denial of a request: enforced, nothing happened; in warn mode, it did."""
    if enforced:
        return _Hit(
            "medium",
            "policy-denied",
            message,
            "docktap's policy denied this request: it never reached the daemon, and the "
            "client was answered 403. A client asking for more than its policy gives is "
            "worth a look.",
        )
    return _Hit(
        "high",
        "policy-warned",
        f"{message} (warn mode: forwarded)",
        "The policy denies this request, but docktap ran in warn mode and forwarded it: "
        "the daemon did what it asked.",
    )


def denied_unrecorded(capture: Capture) -> list[Finding]:
    """The guard's denials of requests the capture has no exchange for: bytes that were no
    request (refused, and the connection closed), or a request the connection closed on
    while it waited its turn behind another. On no exchange, as an unread-traffic finding."""
    exchanges = {(ex.conn, ex.seq) for ex in capture.exchanges}
    findings: list[Finding] = []
    for record in capture.records:
        conn, seq = record.get("conn"), record.get("seq")
        if (
            record.get("type") != Kind.DECISION
            or record.get("allowed")
            or not isinstance(conn, int)
            or (conn, seq) in exchanges
        ):
            continue
        hit = _denial(str(record.get("message", "")), bool(record.get("enforced")))
        connection = capture.connections.get(conn)
        operation = record.get("operation")
        findings.append(
            Finding(
                level=hit.level,
                rule=hit.rule,
                title=hit.title,
                explanation=hit.explanation,
                cis=None,
                conn=conn,
                seq=seq if isinstance(seq, int) else -1,
                method="-",
                target="(no request recorded)",
                operation=operation if isinstance(operation, str) else None,
                started_mono=float(record.get("mono") or 0),
                process=_process(connection.peer if connection else None),
            )
        )
    return findings


def _check(ex: Exchange) -> Iterator[_Hit]:
    for decision in ex.decisions:
        if decision.allowed:
            continue
        yield _denial(decision.message, decision.enforced)
        if decision.enforced:
            return  # nothing was done: what the request asked for did not happen
    operation = ex.operation
    if operation in ("ContainerCreate", "ContainerExec"):
        if ex.request_complete is False or len(ex.request_body) < ex.request_body_size:
            yield _unreadable(ex)
            return
        decoded = decode(operation, bytes(ex.request_body))
        if decoded.rejected:
            yield _refused(ex, decoded)
            return
        body = decoded.value if isinstance(decoded.value, dict) else {}
        yield from _check_create(body) if operation == "ContainerCreate" else _check_exec(body)
    elif operation == "ImageCreate":
        yield from _check_pull(ex)


def _unreadable(ex: Exchange) -> _Hit:
    """A body the capture does not hold in full: cut short by the connection's end, or past
    --max-body (read as a body cut there, it was a decoding error dockerd never had)."""
    if ex.request_complete is False:
        why = "the connection closed before it ended"
    else:
        why = "it was larger than --max-body"
    return _Hit(
        "info",
        "body-not-audited",
        f"{ex.operation} body not audited",
        f"The request body is not in the capture in full ({why}), so its options could not "
        "be checked.",
    )


def _refused(ex: Exchange, decoded: Decoded) -> _Hit:
    """A body dockerd's JSON decoding refuses: nothing happened, unless the daemon said yes."""
    if ex.status is not None and 200 <= ex.status < 300:
        return _Hit(
            "high",
            "body-misread",
            f"{ex.operation} accepted by the daemon, but its body is unreadable to docktap",
            "docktap reads bodies as dockerd's Go JSON decoding does, and by that reading this "
            f"one fails ({decoded.error}); yet the daemon answered {ex.status}. Whatever it "
            "did was not audited.",
        )
    return _Hit(
        "info",
        "body-refused",
        f"{ex.operation} refused by the daemon: {decoded.error}",
        "dockerd cannot decode this body into its API types (a value of the wrong type, or "
        "not JSON), so it refuses the request and nothing is created.",
    )


def _check_create(body: dict[str, Any]) -> Iterator[_Hit]:
    host = body.get("HostConfig")
    if not isinstance(host, dict):
        host = {}
    if host.get("Privileged") is True:
        yield _Hit(
            "critical",
            "privileged",
            "Privileged container",
            "The container gets every capability, all host devices, and no seccomp or AppArmor "
            "confinement: its root can take over the host (mount the host's disks, load kernel "
            "modules).",
            "5.4",
        )
    yield from _check_mounts(host)
    yield from _check_caps(host)
    for field, rule, name, level, cis, why in _NAMESPACES:
        # dockerd shares a namespace for exactly "host" (IsHost); "HOST" it stores, unshared.
        if host.get(field) == "host":
            yield _Hit(level, rule, f"Host {name} namespace shared ({field}=host)", why, cis)
    devices = host.get("Devices")
    if isinstance(devices, list) and devices:
        paths = ", ".join(
            str(d.get("PathOnHost", "?")) if isinstance(d, dict) else str(d) for d in devices
        )
        yield _Hit(
            "high",
            "host-devices",
            f"Host devices passed in: {paths}",
            "The container can read and write these host devices directly; a disk device "
            "gives it the host's whole file system.",
            "5.17",
        )
    yield from _check_security_opts(host)
    yield from _check_ports(host)
    yield from _check_image(body.get("Image"))


def bind_mounts(host: dict[str, Any]) -> Iterator[tuple[str, str, bool, str]]:
    """(host source, container target, read-only, propagation) of each bind mount."""
    binds = host.get("Binds")
    if isinstance(binds, list):
        for bind in binds:
            if not isinstance(bind, str):
                continue
            parts = bind.split(":")
            source = parts[0]
            target = parts[1] if len(parts) > 1 else source
            options = parts[2].split(",") if len(parts) > 2 else []
            propagation = next((o for o in options if o.endswith(("shared", "slave"))), "")
            yield source, target, "ro" in options, propagation
    mounts = host.get("Mounts")
    if isinstance(mounts, list):
        for mount in mounts:
            if not isinstance(mount, dict) or mount.get("Type", "bind") != "bind":
                continue
            bind_options = mount.get("BindOptions")
            propagation = (
                bind_options.get("Propagation", "") if isinstance(bind_options, dict) else ""
            )
            yield (
                str(mount.get("Source", "")),
                str(mount.get("Target", "")),
                mount.get("ReadOnly") is True,
                str(propagation or ""),
            )


def host_path(source: str) -> str | None:
    """The host path a bind mount's source names, normalized; None for a named volume."""
    if not source.startswith("/"):
        return None
    path = posixpath.normpath(source)
    return "/" + path.lstrip("/") if path.startswith("//") else path


def is_docker_socket(path: str) -> bool:
    name = posixpath.basename(path)
    return name.endswith(".sock") and "docker" in name


def _check_mounts(host: dict[str, Any]) -> Iterator[_Hit]:
    for source, target, read_only, propagation in bind_mounts(host):
        path = host_path(source)
        if path is None:
            continue
        mode = " read-only" if read_only else ""
        where = f"{source} -> {target}{mode}"
        if is_docker_socket(path) or is_docker_socket(target):
            yield _Hit(
                "critical",
                "docker-socket-mount",
                f"Docker socket mounted into the container: {where}",
                "Whatever runs in the container can drive the Docker daemon, and so start a "
                "privileged container of its own: this is root on the host. Read-only does not "
                "help: connecting to a socket is not writing to a file.",
                "5.31",
            )
        elif path == "/":
            yield _Hit(
                "critical",
                "host-root-mount",
                f"The host's root file system mounted: {where}",
                "The container sees every file of the host"
                + ("" if read_only else " and can change any of them")
                + ": secrets, keys, the daemon's state.",
                "5.5",
            )
        elif path in _SENSITIVE_DIRS:
            yield _Hit(
                "high",
                "sensitive-mount",
                f"Sensitive host directory mounted: {where}",
                f"The container sees {_SENSITIVE_DIRS[path]}"
                + (
                    "."
                    if read_only
                    else ", and can change it, which can give it control of the host."
                ),
                "5.5",
            )
        elif path.startswith(_SENSITIVE_PREFIXES):
            yield _Hit(
                "medium",
                "sensitive-mount",
                f"Part of a sensitive host directory mounted: {where}",
                "The path lies inside a host directory that holds configuration, credentials or "
                "kernel state; check that the container needs it"
                + (" and that it need not write to it." if not read_only else "."),
                "5.5",
            )
        if propagation in ("shared", "rshared"):
            yield _Hit(
                "medium",
                "shared-propagation",
                f"Bind mount with {propagation} propagation: {where}",
                "Mounts the container makes under this path show up on the host too, and the "
                "other way round.",
                "5.19",
            )


def _check_caps(host: dict[str, Any]) -> Iterator[_Hit]:
    caps = host.get("CapAdd")
    if not isinstance(caps, list):
        return
    for cap in caps:
        name = str(cap).upper().removeprefix("CAP_")
        strong = name in _STRONG_CAPS
        yield _Hit(
            "high" if strong else "medium",
            "cap-add",
            f"Capability added: {name}",
            (
                "This capability lets the container's root act on the host kernel well beyond "
                "its own container (mounts, tracing, kernel modules, raw devices or networking)."
                if strong
                else "The container gets a Linux capability beyond Docker's default set; "
                "check that it needs it."
            ),
            "5.3",
        )


def _check_security_opts(host: dict[str, Any]) -> Iterator[_Hit]:
    opts = host.get("SecurityOpt")
    if not isinstance(opts, list):
        return
    for opt in opts:
        text = security_opt(opt)
        if text == "seccomp=unconfined":
            yield _Hit(
                "high",
                "seccomp-unconfined",
                "Seccomp disabled (seccomp=unconfined)",
                "The container may make every system call, including the rarely needed ones "
                "Docker's default profile blocks because kernel flaws in them lead out of "
                "containers.",
                "5.21",
            )
        elif text == "apparmor=unconfined":
            yield _Hit(
                "medium",
                "apparmor-unconfined",
                "AppArmor disabled (apparmor=unconfined)",
                "The container runs without the AppArmor profile that would restrict what it "
                "can mount and which parts of /proc and /sys it can write.",
                "5.1",
            )
        elif text == "label=disable":
            yield _Hit(
                "medium",
                "selinux-disabled",
                "SELinux labels disabled (label=disable)",
                "The container runs without SELinux separation from the host and from other "
                "containers.",
                "5.2",
            )


def security_opt(opt: Any) -> str:
    """A security option as dockerd splits it: at the first `=`, else at the first `:`; names
    and values are case-sensitive (`SECCOMP=UNCONFINED` is refused, `seccomp=UNCONFINED` is a
    profile file's name)."""
    text = str(opt)
    name, eq, value = text.partition("=")
    if not eq:
        name, _, value = text.partition(":")
    return f"{name}={value}"


def _check_ports(host: dict[str, Any]) -> Iterator[_Hit]:
    ports = host.get("PortBindings")
    if not isinstance(ports, dict):
        return
    for container_port, bindings in ports.items():
        if not isinstance(bindings, list):
            continue
        for binding in bindings:
            host_port = str(binding.get("HostPort", "")) if isinstance(binding, dict) else ""
            if host_port.isdigit() and 0 < int(host_port) < 1024:
                yield _Hit(
                    "low",
                    "privileged-port",
                    f"Privileged host port {host_port} mapped to {container_port}",
                    "Host ports below 1024 are normally reserved to root-owned services; a "
                    "container taking one can pose as such a service.",
                    "5.7",
                )


def _has_digest(reference: str) -> bool:
    return "@sha256:" in reference or reference.startswith("sha256:")


def _check_image(image: Any) -> Iterator[_Hit]:
    if not isinstance(image, str) or not image or _has_digest(image):
        return
    yield _Hit(
        "low",
        "image-without-digest",
        f"Image referenced without a digest: {image}",
        "A name or tag can be moved to other content at any time, so what runs may not be "
        "what was reviewed; a reference ending in @sha256:... pins the exact image (see the "
        "CIS Docker Benchmark, section 4, on images).",
    )


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128}")


def pulled_image(query: Query) -> str:
    """The reference a pull asks dockerd for, built as dockerd's PullImage builds it ("" for
    no pull: an import has no `fromImage`).

    `fromImage` names the repository; a `tag` parameter replaces its tag, or, when it is a
    digest (the docker CLI sends a pinned pull's digest there), pins it. Without one, the
    reference is `fromImage` as it is (a trailing `:`, which `pull -a` may send, dropped): a
    name alone with no tag pulls every tag of it."""
    image = query.get("fromImage").removesuffix(":")
    tag = query.get("tag")
    if not image or not tag:
        return image
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    if name.rfind(":") > slash:
        name = name[: name.rfind(":")]
    if _DIGEST.fullmatch(tag):
        return f"{name}@{tag}"
    return f"{name}:{tag}" + (f"@{digest}" if digest else "")


def _check_pull(ex: Exchange) -> Iterator[_Hit]:
    query = Query.of_request(ex.method, ex.target, ex.request_headers, bytes(ex.request_body))
    image = pulled_image(query)
    if not image:
        return  # an import from a tarball or URL, not a pull
    if query.get("tag").startswith("sha256:"):
        return  # the docker CLI sends a pinned pull's digest as the tag
    yield from _check_image(image)


def _check_exec(body: dict[str, Any]) -> Iterator[_Hit]:
    cmd = body.get("Cmd")
    shown = " ".join(str(c) for c in cmd) if isinstance(cmd, list) else "?"
    if body.get("Privileged") is True:
        yield _Hit(
            "high",
            "exec-privileged",
            f"Privileged exec in a running container: {shown}",
            "The command runs with every capability and no confinement, even if the container "
            "itself was started without them.",
            "5.22",
        )
    else:
        yield _Hit(
            "info",
            "exec",
            f"Exec in a running container: {shown}",
            "A command was run inside an existing container, outside of what its image "
            "defines; worth knowing who did it and why.",
        )
    if str(body.get("User") or "").split(":")[0] in ("root", "0"):
        yield _Hit(
            "low",
            "exec-as-root",
            "Exec as root",
            "The command was asked to run as root inside the container.",
            "5.23",
        )
