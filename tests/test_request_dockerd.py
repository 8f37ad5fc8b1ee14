"""docktap's reading of requests against the real daemon's: what dockerd did is what docktap says.

Each variant is a create body spelled as a client might spell it (keys in other cases,
repeated keys, nested HostConfig objects, the deprecated top-level HostConfig, Binds, Mounts,
Volumes, devices, capabilities, host namespaces, the Docker socket). It goes through
`docktap proxy` to the private daemon as raw bytes; `docker inspect` then says what the daemon
made of it. The audit (`docktap audit --json`) must report what the daemon did, exactly:
the same findings as for the container inspect shows; `show --json` must list each request
with the daemon's answer; and a secret planted in each body must be nowhere on disk.

A hypothesis test then spells real create bodies (from captures/) in random ways and checks
that docktap's decoded body is what inspect shows.
"""

from __future__ import annotations

import http.client
import json
import secrets
import socket
from pathlib import Path
from typing import Any

from dockerd import Daemon
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spellings import RENAMES, hoisted, write
from synthetic import capture_of
from tapping import Proxy, docktap
from test_secrets import assert_absent

from docktap import load
from docktap.audit import audit
from docktap.replay.match import MatchOptions, Request, request_key
from docktap.request.body import decode, without_zeros

CREATE = "/v1.41/containers/create"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("docker", timeout=60)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(self.unix_path))


def post(path: Path, body: bytes, target: str = CREATE) -> tuple[int, Any]:
    """POST `body` byte for byte; the status and the decoded answer."""
    connection = _UnixConnection(path)
    try:
        connection.request("POST", target, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def inspect(daemon: Daemon, ident: str) -> dict[str, Any]:
    """What the daemon made of a create, then the container is gone."""
    try:
        found: dict[str, Any] = json.loads(daemon.docker("inspect", ident).stdout)[0]
    finally:
        daemon.docker("rm", "-f", ident, check=False)
    return found


def as_body(info: dict[str, Any]) -> bytes:
    """The create body that would make the container inspect shows, in the API's spelling.

    dockerd adds `label=disable` itself to the security options of a container that is
    privileged or shares the host's pid or IPC namespace (those findings say as much); no
    variant asks for it, so it is taken out again.
    """
    host = dict(info["HostConfig"])
    if host.get("Privileged") is True or "host" in (host.get("PidMode"), host.get("IpcMode")):
        host["SecurityOpt"] = [o for o in host.get("SecurityOpt") or [] if o != "label=disable"]
    return json.dumps({**info["Config"], "HostConfig": host}).encode()


def findings_of(body: bytes) -> list[tuple[str, str, str]]:
    capture = capture_of(("ContainerCreate", "POST", CREATE, body))
    return [(f.level, f.rule, f.title) for f in audit(capture)]


def _variants(sock: str) -> list[tuple[str, str, set[str]]]:
    """(name, body with @@ where a secret is planted, the rules it trips besides the
    image's digest); all use --network none."""
    return [
        (
            "lower-case keys",
            '{"image":"bb","env":["DB_PASSWORD=@@"],'
            '"hostconfig":{"privileged":true,"networkmode":"none"}}',
            {"privileged"},
        ),
        (
            "mixed-case keys",
            '{"iMaGe":"bb","ENV":["API_TOKEN=@@"],'
            '"HoStCoNfIg":{"bInDs":["/etc:/host-etc:ro"],"NeTwOrKmOdE":"none"}}',
            {"sensitive-mount"},
        ),
        (
            "kelvin sign and long s",
            '{"Image":"bb","Env":["DB_PASSWORD=@@"],'
            '"HostConfig":{"Bind\u017f":["/root:/r"],"Networ\u212aMode":"none"}}',
            {"sensitive-mount"},
        ),
        (
            "duplicate keys, the last wins",
            '{"Image":"bb","Env":["DB_PASSWORD=@@"],"Env":["PLAIN=1"],'
            '"HostConfig":{"Privileged":false,"Privileged":true,"NetworkMode":"none"}}',
            {"privileged"},
        ),
        (
            "duplicate keys, a later one takes back",
            '{"Image":"bb","Env":["PLAIN=1"],"env":["DB_PASSWORD=@@"],'
            '"HostConfig":{"CapAdd":["SYS_ADMIN"],"NetworkMode":"none","capadd":[]}}',
            set(),
        ),
        (
            "nested HostConfig objects merge",
            '{"Image":"bb","HostConfig":{"Privileged":true},'
            '"HostConfig":{"Memory":8000000,"NetworkMode":"none","Env":["X_SECRET=@@"]}}',
            {"privileged"},
        ),
        (
            "slice elements come back from the backing array",
            '{"Image":"bb","Env":["P_SECRET=@@"],"HostConfig":{"NetworkMode":"none",'
            '"Mounts":[{"Type":"bind","Source":"/srv","Target":"/a"},'
            '{"Type":"bind","Source":"/etc","Target":"/h"}]},'
            '"HostConfig":{"Mounts":[{}]},"HostConfig":{"Mounts":[{},{"Target":"/h2"}]}}',
            {"sensitive-mount"},
        ),
        (
            "deprecated top-level HostConfig",
            '{"Image":"bb","Privileged":true,"NetworkMode":"none","pidmode":"host",'
            '"Env":["DB_PASSWORD=@@"]}',
            {"privileged", "host-pid"},
        ),
        (
            "Binds with the Docker socket",
            '{"Image":"bb","HostConfig":{"NetworkMode":"none",'
            f'"binds":["{sock}:/var/run/docker.sock"]}},"Env":["TOKEN=@@"]}}',
            {"docker-socket-mount"},
        ),
        (
            "Mounts with the Docker socket",
            '{"Image":"bb","HostConfig":{"NetworkMode":"none","mounts":[{"type":"bind",'
            f'"source":"{sock}","target":"/var/run/docker.sock","readonly":true}}]}},'
            '"Env":["TOKEN=@@"]}',
            {"docker-socket-mount"},
        ),
        (
            "Volumes: an anonymous volume, no host path",
            '{"Image":"bb","volumes":{"/data":{}},"HostConfig":{"NetworkMode":"none"},'
            '"Env":["TOKEN=@@"]}',
            set(),
        ),
        (
            "devices, capabilities and host namespaces",
            '{"Image":"bb","Env":["TOKEN=@@"],"hostconfig":{"networkmode":"none",'
            '"devices":[{"pathonhost":"/dev/null","pathincontainer":"/dev/xnull",'
            '"cgrouppermissions":"rwm"}],"capadd":["sys_admin","cap_net_admin"],'
            '"pidmode":"host","ipcmode":"host","utsmode":"host","usernsmode":"host",'
            '"securityopt":["seccomp:unconfined"]}}',
            {
                "host-devices",
                "cap-add",
                "host-pid",
                "host-ipc",
                "host-uts",
                "host-userns",
                "seccomp-unconfined",
            },
        ),
        (
            "HOST in capitals is no host namespace",
            '{"Image":"bb","Env":["TOKEN=@@"],'
            '"HostConfig":{"NetworkMode":"none","PidMode":"HOST"}}',
            set(),
        ),
        (
            "bytes after the JSON value are never read",
            '{"Image":"bb","HostConfig":{"Privileged":true,"NetworkMode":"none"}} '
            '{"Env":["DB_PASSWORD=@@"]}',
            {"privileged"},
        ),
        (
            "a number for a bool is refused",
            '{"Image":"bb","Env":["DB_PASSWORD=@@"],'
            '"HostConfig":{"Privileged":1,"NetworkMode":"none"}}',
            {"body-refused"},
        ),
        (
            "a string for a bool is refused",
            '{"Image":"bb","Env":["DB_PASSWORD=@@"],'
            '"HostConfig":{"Privileged":"true","NetworkMode":"none"}}',
            {"body-refused"},
        ),
        (
            "Env as one string is refused",
            '{"Image":"bb","Env":"DB_PASSWORD=@@","HostConfig":{"NetworkMode":"none"}}',
            {"body-refused"},
        ),
    ]


def test_the_audit_and_show_report_what_the_daemon_did(dockerd: Daemon, tmp_path: Path) -> None:
    proxy = Proxy(dockerd, tmp_path)
    planted: list[str] = []
    # name, body, the rules expected, the daemon's status, the body inspect gives back
    sent: list[tuple[str, bytes, set[str], int, bytes | None]] = []
    try:
        for name, template, expected in _variants(str(dockerd.socket)):
            secret = f"s{secrets.token_hex(20)}"
            planted.append(secret)
            body = template.replace("@@", secret).encode()
            status, answer = post(proxy.socket, body)
            made = as_body(inspect(dockerd, answer["Id"])) if status == 201 else None
            sent.append((name, body, expected, status, made))
        # The real docker CLI, for --mount type=bind, -v, --device, --cap-add, --privileged.
        secret = f"s{secrets.token_hex(20)}"
        planted.append(secret)
        cli = proxy.docker(
            *("create", "--network", "none", "-e", f"DB_PASSWORD={secret}"),
            *("--mount", "type=bind,source=/etc,target=/e,readonly", "-v", "/root:/r"),
            *("--device", "/dev/null:/dev/xnull", "--cap-add", "NET_ADMIN", "--privileged"),
            "bb",
        )
        assert cli.returncode == 0, cli.stderr
        cli_made = as_body(inspect(dockerd, cli.stdout.decode().strip()))
    finally:
        capture = proxy.stop()
    creates = [ex for ex in capture.exchanges if ex.operation == "ContainerCreate"]
    assert len(creates) == len(sent) + 1
    document = json.loads(docktap("audit", "--json", str(proxy.capture_path)).stdout)
    shown = [
        json.loads(line)
        for line in docktap("show", "--json", str(proxy.capture_path)).stdout.splitlines()
    ]

    def reported(ex_conn: int, ex_seq: int) -> list[tuple[str, str, str]]:
        return [
            (f["level"], f["rule"], f["title"])
            for f in document["findings"]
            if (f["exchange"]["conn"], f["exchange"]["seq"]) == (ex_conn, ex_seq)
        ]

    for (name, body, expected, status, made), ex in zip(sent, creates, strict=False):
        row = next(r for r in shown if (r["conn"], r["seq"]) == (ex.conn, ex.seq))
        assert (row["operation"], row["status"]) == ("ContainerCreate", status), name
        found = sorted(reported(ex.conn, ex.seq))
        assert {rule for _, rule, _ in found} - {"image-without-digest"} == expected, name
        if made is None:
            assert status >= 400, name
            assert decode("ContainerCreate", body).rejected, name
        else:
            assert found == sorted(findings_of(made)), name
    cli_ex = creates[-1]
    assert sorted(reported(cli_ex.conn, cli_ex.seq)) == sorted(findings_of(cli_made))
    assert {"privileged", "sensitive-mount", "host-devices", "cap-add"} <= {
        rule for _, rule, _ in reported(cli_ex.conn, cli_ex.seq)
    }
    assert_absent(proxy.capture_path, planted)


# --- random spellings of real create bodies ---------------------------------------------------


def _real_bodies() -> list[dict[str, Any]]:
    bodies = []
    for path in sorted((Path(__file__).resolve().parent.parent / "captures").glob("*.jsonl")):
        for ex in load(path).exchanges:
            if ex.operation == "ContainerCreate" and ex.status == 201:
                bodies.append(json.loads(bytes(ex.request_body)))
    return bodies


REAL_BODIES = _real_bodies()
# What dockerd changes after decoding (its defaults, not its reading): a swappiness of -1 and a
# pids limit of 0 mean "unset" and are stored as null.
_DAEMON_DEFAULTS = {("HostConfig", "MemorySwappiness"): -1, ("HostConfig", "PidsLimit"): 0}


def _with_socket(body: dict[str, Any], sock: str) -> dict[str, Any]:
    """A body whose binds of a Docker socket of the recording name this daemon's socket."""
    host = body.get("HostConfig") or {}
    binds = [
        f"{sock}:{bind.split(':', 1)[1]}" if bind.split(":")[0].endswith("docker.sock") else bind
        for bind in host.get("Binds") or []
    ]
    return {**body, "HostConfig": {**host, "Binds": binds or host.get("Binds")}}


def _compare(mine: dict[str, Any], theirs: dict[str, Any], where: str = "") -> None:
    for name, value in mine.items():
        if name == "HostConfig" and not where:
            _compare(value or {}, theirs.get(name) or {}, name)
            continue
        if _DAEMON_DEFAULTS.get((where, name)) == value and theirs.get(name) is None:
            continue
        assert theirs.get(name) == value, f"{where}.{name}: {value!r} vs {theirs.get(name)!r}"


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    body=st.sampled_from(REAL_BODIES),
    rename=st.sampled_from(sorted(RENAMES)),
    duplicate=st.booleans(),
    top_level=st.booleans(),
)
def test_decoded_bodies_are_what_inspect_shows(
    dockerd: Daemon, body: dict[str, Any], rename: str, duplicate: bool, top_level: bool
) -> None:
    body = _with_socket(body, str(dockerd.socket))
    shape = hoisted(body) if top_level else None
    raw = write(shape or body, RENAMES[rename], duplicate).encode()
    decoded = decode("ContainerCreate", raw)
    assert not decoded.rejected, decoded.error
    status, answer = post(dockerd.socket, raw)
    assert status == 201, answer
    made = decode("ContainerCreate", as_body(inspect(dockerd, answer["Id"])))
    mine = without_zeros("ContainerCreate", decoded.value)
    theirs = without_zeros("ContainerCreate", made.value)
    assert mine["HostConfig"]  # every real body sets some of HostConfig
    _compare(mine, theirs)


def test_the_spellings_are_not_all_alike() -> None:
    # The property above is worth something only if its spellings differ from the body.
    body = REAL_BODIES[0]
    spelled = {write(body, rename, dup) for rename in RENAMES.values() for dup in (False, True)}
    assert len(spelled) == 2 * len(RENAMES)
    assert all(decode("ContainerCreate", s.encode()).value for s in spelled)


def test_a_form_body_names_the_image_dockerd_pulls(dockerd: Daemon, tmp_path: Path) -> None:
    # Neither registry exists: the daemon's error says which one it tried, and nothing is pulled.
    proxy = Proxy(dockerd, tmp_path)
    try:
        connection = _UnixConnection(proxy.socket)
        connection.request(
            "POST",
            "/v1.41/images/create?fromImage=localhost:1/queried&tag=sha256:" + "a" * 64,
            b"fromImage=localhost:2/formed&tag=latest",
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        answer = connection.getresponse().read()
        connection.close()
    finally:
        proxy.stop()
    assert b"localhost:2" in answer and b"localhost:1" not in answer, answer
    document = json.loads(docktap("audit", "--json", str(proxy.capture_path)).stdout)
    [finding] = document["findings"]
    assert finding["title"] == "Image referenced without a digest: localhost:2/formed:latest"


def _listed(daemon: Daemon, query: str) -> list[str]:
    """The ids GET /containers/json?`query` lists, straight from the daemon."""
    connection = _UnixConnection(daemon.socket)
    try:
        connection.request("GET", f"/v1.41/containers/json?{query}")
        response = connection.getresponse()
        listed = json.loads(response.read())
        assert response.status == 200, listed
    finally:
        connection.close()
    return [c["Id"] for c in listed]


def test_container_lists_match_where_dockerd_lists_the_same(dockerd: Daemon) -> None:
    # limit=0 is the CLI 20.10's `ps -n 0` (and docker-py sends limit=-1), which the CLI 28
    # sends as no limit; a limit lists stopped containers too. One running, two stopped.
    made = [
        dockerd.docker("run", "-d", "--network", "none", "bb", "sleep", "600").stdout,
        dockerd.docker("create", "--network", "none", "bb", "true").stdout,
        dockerd.docker("create", "--network", "none", "bb", "true").stdout,
    ]
    queries = ["", "limit=0", "limit=-1", "all=1", "all=1&limit=0", "limit=1", "all=1&limit=1"]
    queries += ["limit=2", "all=0&limit=2", "size=0&limit=2"]
    try:
        listed = {query: _listed(dockerd, query) for query in queries}
    finally:
        dockerd.docker("rm", "-f", *(ident.decode().strip() for ident in made))
    assert len(set(map(tuple, listed.values()))) == 4  # no limit, all, 1 and 2
    target = "/v1.41/containers/json?"
    for a in queries:
        for b in queries:
            same_key = request_key(Request.of("GET", target + a, b""), MatchOptions()) == (
                request_key(Request.of("GET", target + b, b""), MatchOptions())
            )
            assert same_key == (listed[a] == listed[b]), (a, b)
