"""`docktap audit`: the rules on synthetic exchanges, golden output on real captures, and an
audit of what the real docker CLI asked of the private daemon."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dockerd import Daemon
from golden import CAPTURES, check_golden
from spellings import variants
from synthetic import capture_of
from tapping import DOCKTAP, Proxy, docktap, docktap_run

from docktap.audit import LEVELS, Finding, at_or_above, audit, counts
from docktap.capture.reader import Capture
from docktap.render.audit import text as render


def create(host: dict[str, Any], image: str = "bb@sha256:" + "a" * 64) -> Capture:
    body = {"Image": image, "Cmd": ["true"], "HostConfig": {"NetworkMode": "none", **host}}
    return capture_of(("ContainerCreate", "POST", "/v1.41/containers/create", body))


def rules(capture: Capture) -> list[tuple[str, str, str | None]]:
    return [(f.level, f.rule, f.cis) for f in audit(capture)]


def test_a_plain_pinned_container_has_no_findings() -> None:
    assert audit(create({})) == []
    assert render([]) == "no findings\n"


def test_privileged_is_critical_and_names_the_exchange_and_the_caller() -> None:
    [finding] = audit(create({"Privileged": True}))
    assert (finding.level, finding.rule, finding.cis) == ("critical", "privileged", "5.4")
    assert (finding.conn, finding.seq, finding.method) == (1, 1, "POST")
    assert finding.target == "/v1.41/containers/create"
    assert finding.operation == "ContainerCreate"
    assert (finding.process.pid, finding.process.uid, finding.process.gid) == (4242, 1000, 1000)
    assert finding.process.executable is None
    data = finding.to_dict()
    assert data["exchange"]["conn"] == 1
    assert data["process"] == {"pid": 4242, "uid": 1000, "gid": 1000, "executable": None}


@pytest.mark.parametrize(
    ("bind", "level", "rule"),
    [
        ("/var/run/docker.sock:/var/run/docker.sock", "critical", "docker-socket-mount"),
        ("/run/docker.sock:/tmp/d.sock:ro", "critical", "docker-socket-mount"),
        ("/tmp/x/docker.sock:/var/run/docker.sock", "critical", "docker-socket-mount"),
        ("/:/host", "critical", "host-root-mount"),
        ("/:/host:ro", "critical", "host-root-mount"),
        ("/etc:/host-etc:ro", "high", "sensitive-mount"),
        ("/root/:/r", "high", "sensitive-mount"),
        ("/proc:/hp", "high", "sensitive-mount"),
        ("/etc/ssl/certs:/certs:ro", "medium", "sensitive-mount"),
    ],
)
def test_host_paths_bound_in(bind: str, level: str, rule: str) -> None:
    found = rules(create({"Binds": [bind]}))
    cis = "5.31" if rule == "docker-socket-mount" else "5.5"
    assert found == [(level, rule, cis)]


def test_harmless_binds_and_named_volumes_are_not_flagged() -> None:
    assert audit(create({"Binds": ["/srv/app:/app", "data:/data", "/home/me/src:/src:ro"]})) == []


def test_mounts_field_is_read_like_binds() -> None:
    mounts = [
        {"Type": "bind", "Source": "/var/run/docker.sock", "Target": "/var/run/docker.sock"},
        {"Type": "bind", "Source": "/etc", "Target": "/e", "ReadOnly": True},
        {"Type": "volume", "Source": "etc", "Target": "/etc"},
        {
            "Type": "bind",
            "Source": "/srv",
            "Target": "/s",
            "BindOptions": {"Propagation": "rshared"},
        },
    ]
    assert rules(create({"Mounts": mounts})) == [
        ("critical", "docker-socket-mount", "5.31"),
        ("high", "sensitive-mount", "5.5"),
        ("medium", "shared-propagation", "5.19"),
    ]


def test_added_capabilities() -> None:
    assert rules(create({"CapAdd": ["SYS_ADMIN", "CAP_NET_BIND_SERVICE", "all"]})) == [
        ("high", "cap-add", "5.3"),
        ("high", "cap-add", "5.3"),
        ("medium", "cap-add", "5.3"),
    ]


def test_host_namespaces() -> None:
    host = {"NetworkMode": "host", "PidMode": "host", "IpcMode": "host", "UTSMode": "host"}
    assert rules(create(host)) == [
        ("high", "host-network", "5.9"),
        ("high", "host-pid", "5.15"),
        ("medium", "host-ipc", "5.16"),
        ("medium", "host-uts", "5.20"),
    ]
    assert audit(create({"PidMode": "container:abc", "IpcMode": "private"})) == []
    # dockerd stores "HOST" as given, but shares the namespace for exactly "host" only.
    assert audit(create({"PidMode": "HOST", "IpcMode": "Host", "UTSMode": "host:x"})) == []


def test_devices_and_confinement() -> None:
    device = {"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", "CgroupPermissions": "rwm"}
    host = {
        "Devices": [device],
        "SecurityOpt": ["seccomp=unconfined", "apparmor:unconfined", "no-new-privileges"],
    }
    assert rules(create(host)) == [
        ("high", "host-devices", "5.17"),
        ("high", "seccomp-unconfined", "5.21"),
        ("medium", "apparmor-unconfined", "5.1"),
    ]
    assert "/dev/sda" in audit(create(host))[0].title
    # As dockerd splits them: `=` first, names and values case-sensitive.
    exact = {"SecurityOpt": ["SECCOMP=UNCONFINED", "seccomp=Unconfined", "label:disable"]}
    assert rules(create(exact)) == [("medium", "selinux-disabled", "5.2")]


def test_privileged_host_ports() -> None:
    ports = {"80/tcp": [{"HostIp": "", "HostPort": "80"}], "8080/tcp": [{"HostPort": "8080"}]}
    assert rules(create({"PortBindings": ports})) == [("low", "privileged-port", "5.7")]


@pytest.mark.parametrize(
    ("image", "flagged"),
    [
        ("bb", True),
        ("busybox:1.36", True),
        ("busybox@sha256:" + "b" * 64, False),
        ("sha256:" + "c" * 64, False),
    ],
)
def test_create_image_without_digest(image: str, flagged: bool) -> None:
    found = rules(create({}, image=image))
    assert found == ([("low", "image-without-digest", None)] if flagged else [])


def test_pull_without_digest() -> None:
    pulls = capture_of(
        ("ImageCreate", "POST", "/v1.41/images/create?fromImage=busybox&tag=latest", None),
        ("ImageCreate", "POST", "/v1.41/images/create?fromImage=busybox&tag=sha256%3Aab", None),
        ("ImageCreate", "POST", "/v1.41/images/create?fromSrc=-&repo=imported", None),
    )
    [finding] = audit(pulls)
    assert (finding.level, finding.rule, finding.seq) == ("low", "image-without-digest", 1)
    assert "busybox:latest" in finding.title


def test_pull_named_in_a_form_body() -> None:
    # dockerd reads a form body's parameters before the query's.
    pinned = "/v1.41/images/create?fromImage=bb&tag=sha256%3Aab"
    capture = capture_of(("ImageCreate", "POST", pinned, b"fromImage=evil&tag=latest"))
    assert audit(capture) == []
    capture.exchanges[0].request.headers = [("Content-Type", "application/x-www-form-urlencoded")]
    [finding] = audit(capture)
    assert finding.title == "Image referenced without a digest: evil:latest"


def test_exec() -> None:
    target = "/v1.41/containers/box/exec"
    execs = capture_of(
        ("ContainerExec", "POST", target, {"Cmd": ["sh"], "Privileged": False}),
        ("ContainerExec", "POST", target, {"Cmd": ["id"], "Privileged": True, "User": "root"}),
    )
    assert rules(execs) == [
        ("high", "exec-privileged", "5.22"),
        ("low", "exec-as-root", "5.23"),
        ("info", "exec", None),
    ]


def test_a_body_not_recorded_in_full_is_reported_not_guessed() -> None:
    capture = create({"Privileged": True})
    capture.exchanges[0].request_complete = False
    assert rules(capture) == [("info", "body-not-audited", None)]
    (finding,) = audit(capture)
    assert "(the connection closed before it ended)" in finding.explanation


def test_a_body_past_the_inline_cap_is_not_audited_as_if_it_ended_there() -> None:
    # Past --max-body the capture holds the start of a create's body only: decoded as if it
    # ended there, it was a body dockerd could not read, yet answered 201: a high
    # "body-misread" for a create that was simply large.
    capture = create({"Privileged": True})
    ex = capture.exchanges[0]
    ex.request_body_size = len(ex.request_body) + (1 << 20)
    del ex.request_body[-10:]
    assert rules(capture) == [("info", "body-not-audited", None)]
    (finding,) = audit(capture)
    assert "(it was larger than --max-body)" in finding.explanation


def test_no_peer_credentials() -> None:
    capture = capture_of(
        ("ContainerCreate", "POST", "/containers/create", {"HostConfig": {"Privileged": True}}),
        peer=None,
    )
    [finding] = audit(capture)
    assert finding.process.pid is None
    assert "process unknown" in render([finding])


def test_levels_counts_and_thresholds() -> None:
    findings = audit(create({"Privileged": True, "IpcMode": "host"}, image="bb"))
    assert [f.level for f in findings] == ["critical", "medium", "low"]
    assert counts(findings) == {"critical": 1, "high": 0, "medium": 1, "low": 1, "info": 0}
    assert LEVELS == ("info", "low", "medium", "high", "critical")
    assert len(at_or_above(findings, "medium")) == 2
    assert at_or_above(findings[2:], "medium") == []


# Every rule, with the body spelled in each way dockerd reads the same (docktap.request).

PINNED = "bb@sha256:" + "a" * 64
RULE_CASES: dict[str, dict[str, Any]] = {
    "privileged": {"Privileged": True},
    "socket-bind": {"Binds": ["/var/run/docker.sock:/var/run/docker.sock"]},
    "root-bind": {"Binds": ["/:/host:ro"]},
    "sensitive-binds": {"Binds": ["/etc:/e", "/root:/r", "/etc/ssl:/s:ro,rshared"]},
    "mounts": {
        "Mounts": [
            {"Type": "bind", "Source": "/var/run/docker.sock", "Target": "/s"},
            {"Type": "bind", "Source": "/etc", "Target": "/e", "ReadOnly": True},
            {
                "Type": "bind",
                "Source": "/srv",
                "Target": "/p",
                "BindOptions": {"Propagation": "shared"},
            },
        ]
    },
    "caps": {"CapAdd": ["SYS_ADMIN", "NET_BIND_SERVICE"]},
    "namespaces": {
        "NetworkMode": "host",
        "PidMode": "host",
        "IpcMode": "host",
        "UTSMode": "host",
        "UsernsMode": "host",
    },
    "devices": {"Devices": [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda"}]},
    "confinement": {"SecurityOpt": ["seccomp=unconfined", "apparmor=unconfined", "label=disable"]},
    "ports": {"PortBindings": {"80/tcp": [{"HostPort": "80"}]}},
}


def create_body(host: dict[str, Any], image: str = PINNED) -> dict[str, Any]:
    return {"Image": image, "Cmd": ["true"], "HostConfig": {"NetworkMode": "none", **host}}


def raw_create(body: bytes, status: int = 201) -> Capture:
    return capture_of(("ContainerCreate", "POST", "/v1.41/containers/create", body), status=status)


@pytest.mark.parametrize("case", sorted(RULE_CASES))
def test_every_rule_reads_every_spelling_as_dockerd_does(case: str) -> None:
    body = create_body(RULE_CASES[case])
    expected = rules(create(RULE_CASES[case]))
    assert expected, case  # each case trips its rule
    for name, raw in variants(body).items():
        assert rules(raw_create(raw)) == expected, (case, name, raw)


def test_image_rule_and_exec_rules_read_every_spelling() -> None:
    for name, raw in variants({"Image": "busybox:1.36", "HostConfig": {}}).items():
        assert rules(raw_create(raw)) == [("low", "image-without-digest", None)], name
    exec_body = {"Cmd": ["id"], "Privileged": True, "User": "root"}
    expected = [("high", "exec-privileged", "5.22"), ("low", "exec-as-root", "5.23")]
    for name, raw in variants(exec_body).items():
        if name == "top-level":
            continue
        execs = capture_of(("ContainerExec", "POST", "/v1.41/containers/box/exec", raw))
        assert rules(execs) == expected, name


def test_what_a_later_duplicate_takes_back_is_not_reported() -> None:
    body = b'{"Image":"%s","HostConfig":{"Privileged":true,"privileged":false}}' % PINNED.encode()
    assert rules(raw_create(body)) == []
    body = b'{"Image":"%s","HostConfig":{"Binds":["/etc:/e"]},"HostConfig":null}' % PINNED.encode()
    assert rules(raw_create(body)) == []


def test_merged_and_remembered_values_are_reported() -> None:
    image = PINNED.encode()
    merged = b'{"Image":"%s","HostConfig":{"Privileged":true},"HostConfig":{"Memory":1}}' % image
    assert rules(raw_create(merged)) == [("critical", "privileged", "5.4")]
    stale = (
        b'{"Image":"%s","HostConfig":{"Mounts":[{"Type":"bind","Source":"/srv","Target":"/a"},'
        b'{"Type":"bind","Source":"/","Target":"/h"}]},"HostConfig":{"Mounts":[{}]},'
        b'"HostConfig":{"Mounts":[{},{"Target":"/h2"}]}}' % image
    )
    [finding] = audit(raw_create(stale))
    assert (finding.rule, finding.title) == (
        "host-root-mount",
        "The host's root file system mounted: / -> /h2",
    )
    trailing = b'{"Image":"%s","Privileged":true} and then some' % image
    assert rules(raw_create(trailing)) == [("critical", "privileged", "5.4")]


def test_a_body_dockerd_refuses_is_reported_as_refused() -> None:
    body = b'{"Image":"bb","HostConfig":{"Privileged":1}}'
    [refused] = audit(raw_create(body, status=500))
    assert (refused.level, refused.rule) == ("info", "body-refused")
    assert "cannot unmarshal number into Go struct field" in refused.title
    # Had the daemon accepted it, docktap would have misread it: that is not silent.
    [misread] = audit(raw_create(body, status=201))
    assert (misread.level, misread.rule) == ("high", "body-misread")
    assert rules(raw_create(b"", status=500)) == [("info", "body-refused", None)]


# Golden output on the shipped captures.


def _audit_text(name: str) -> tuple[list[Finding], str]:
    from docktap.capture.reader import load

    findings = audit(load(CAPTURES / f"{name}.jsonl"))
    return findings, render(findings)


def test_golden_socket_mount() -> None:
    findings, text = _audit_text("socket-mount")
    check_golden("audit-socket-mount.txt", text)
    socket = [f for f in findings if f.rule == "docker-socket-mount"]
    assert len(socket) == 1
    assert (socket[0].level, socket[0].cis) == ("critical", "5.31")
    assert socket[0].process.pid == 1105  # the docker CLI on the host, not the one inside


def test_golden_run_has_only_low_findings() -> None:
    findings, text = _audit_text("run")
    check_golden("audit-run.txt", text)
    assert {f.level for f in findings} == {"low"}


def test_cli_exit_codes_and_json() -> None:
    capture = str(CAPTURES / "socket-mount.jsonl")
    # Piped, the listing is as wide as COLUMNS says.
    plain = docktap("audit", capture, env=dict(os.environ, COLUMNS="100"))
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.decode() == _audit_text("socket-mount")[1]
    assert docktap("audit", capture, "--fail-on", "critical").returncode == 1
    run = str(CAPTURES / "run.jsonl")
    assert docktap("audit", run, "--fail-on", "medium").returncode == 0
    assert docktap("audit", run, "--fail-on", "low").returncode == 1
    as_json = docktap("audit", capture, "--json")
    document = json.loads(as_json.stdout)
    assert document["counts"]["critical"] == 1
    assert document["findings"][0]["cis"] == "5.31"
    assert document["findings"][0]["process"]["pid"] == 1105
    bad = docktap("audit", capture, "--fail-on", "severe")
    assert bad.returncode == 2
    helped = docktap("audit", "--help")
    assert b"no daemon is needed" in helped.stdout


# What the real docker CLI asked of the private daemon.


def test_audit_of_a_real_risky_run(dockerd: Daemon, tmp_path: Path) -> None:
    capture = tmp_path / "risky.jsonl"
    pidfile = tmp_path / "docker.pid"
    # `exec` keeps the shell's pid: the docker CLI that talks to docktap has the pid written.
    script = (
        f"echo $$ > {pidfile}; exec docker run --rm --name docktap-audit-risky --network none "
        "--privileged --cap-add SYS_ADMIN -v /etc:/host-etc:ro --pid host bb true"
    )
    try:
        tapped = docktap_run(dockerd, capture, "sh", "-c", script)
    finally:
        dockerd.docker("rm", "-f", "docktap-audit-risky", check=False)
    # The audit reads what was asked: a sandbox that forbids privileged containers fails the
    # start (125) after the create was recorded, and that is all the audit needs.
    assert tapped.proc.returncode in (0, 125), tapped.proc.stderr
    assert any(
        ex.operation == "ContainerCreate" and ex.status == 201 for ex in tapped.capture.exchanges
    )
    cli_pid = int(pidfile.read_text())
    findings = audit(tapped.capture)
    found = {(f.level, f.rule, f.cis) for f in findings}
    assert {
        ("critical", "privileged", "5.4"),
        ("high", "cap-add", "5.3"),
        ("high", "sensitive-mount", "5.5"),
        ("high", "host-pid", "5.15"),
        ("low", "image-without-digest", None),
    } <= found
    for finding in findings:
        assert finding.operation == "ContainerCreate"
        assert finding.process.pid == cli_pid
        assert finding.process.uid == os.getuid()
        assert finding.process.executable == os.path.realpath(shutil.which("docker") or "")
    assert docktap("audit", str(capture), "--fail-on", "critical").returncode == 1
    fail_high = docktap("audit", str(capture), "--fail-on", "high")
    assert fail_high.returncode == 1
    # A title too long for its line goes on under it, indented 12 cells.
    listed = fail_high.stdout.replace(b"\n" + b" " * 12, b" ")
    assert b"/etc -> /host-etc read-only" in listed
    assert f"pid {cli_pid}".encode() in listed
    lenient = subprocess.run(
        [*DOCKTAP, "audit", str(capture), "--json"], capture_output=True, check=True
    )
    assert json.loads(lenient.stdout)["counts"]["critical"] == 1


def test_run_audit_warns_while_the_command_runs(dockerd: Daemon, tmp_path: Path) -> None:
    capture = tmp_path / "c.jsonl"
    proc = docktap(
        *("run", "--audit", "-q", "-o", str(capture), "--upstream", dockerd.host, "--"),
        *("docker", "run", "--rm", "--network", "none", "-v", "/etc:/host-etc:ro"),
        *("--cap-add", "NET_ADMIN", "bb", "true"),
        env=dockerd.env,
    )
    assert proc.returncode == 0, proc.stderr
    warnings = proc.stderr.decode().splitlines()
    assert any(w.startswith("docktap audit: HIGH sensitive-mount (CIS 5.5)") for w in warnings)
    assert any(w.startswith("docktap audit: HIGH cap-add (CIS 5.3)") for w in warnings)
    # medium and above only: an undigested image is left to `docktap audit`
    assert not any("image-without-digest" in w for w in warnings)
    assert all(w.endswith(os.path.realpath(shutil.which("docker") or "") + "]") for w in warnings)


def _relay_raw(proxy: Proxy, data: bytes) -> bytes:
    """Send `data` on one connection through the proxy, half-close, and read every answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(30)
        client.connect(str(proxy.socket))
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := client.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("parsed", "unread", "message"),
    [
        # Garbage after a request on a keep-alive connection: the daemon answers it 400.
        (
            b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n",
            b"\x00\x01 POST /containers/create not http\r\n\r\n",
            "protocol error",
        ),
        # A request pipelined after an HTTP/1.0 one, which the connection cannot carry.
        (
            b"GET /_ping HTTP/1.0\r\n\r\n",
            b"GET /v1.41/containers/json HTTP/1.0\r\n\r\n",
            "data after the last message the connection could carry",
        ),
    ],
)
def test_traffic_the_audit_could_not_read_is_a_high_finding_everywhere(
    dockerd: Daemon, tmp_path: Path, parsed: bytes, unread: bytes, message: str
) -> None:
    proxy = Proxy(dockerd, tmp_path)
    answer = _relay_raw(proxy, parsed + unread)
    assert answer.startswith(b"HTTP/1.")
    capture = proxy.stop(allow_errors=True)
    (ex,) = capture.exchanges
    assert ex.operation == "SystemPing"
    client_bytes = sum(
        r["size"] for r in capture.records if r["type"] == "unparsed" and r["dir"] == "client"
    )
    assert client_bytes == len(unread)  # what reached the daemon unread, and nothing more
    (finding,) = [f for f in audit(capture) if f.rule == "unread-traffic"]
    assert finding.level == "high" and finding.conn == ex.conn
    said = f"traffic the audit could not read reached the daemon: connection {ex.conn}, "
    said += f"{len(unread)} bytes"
    assert finding.title == said
    if message != "protocol error":
        assert message in finding.explanation
    path = str(proxy.capture_path)
    assert docktap("audit", path, "--fail-on", "high").returncode == 1
    assert said in docktap("audit", path, "--width", "400").stdout.decode()
    assert said in docktap("show", path, "--width", "400").stdout.decode()
    for fmt in ("har", "markdown", "curl", "mermaid", "html"):
        exported = docktap("export", "-f", fmt, path)
        assert exported.returncode == 0, exported.stderr
        assert said in exported.stdout.decode(), fmt


_EVENTS_AND_PING_POLICY = (
    "docktap-policy: 1\nclients:\n- client: any\n  allow:\n"
    '  - {operation: SystemEvents, request: "GET /events"}\n'
    '  - {operation: SystemPing, request: "GET /_ping"}\n'
)
_EVENTS = b"GET /v1.41/events HTTP/1.1\r\nHost: d\r\n\r\n"
_KILL = b"POST /v1.41/containers/nobody/kill HTTP/1.1\r\nHost: d\r\n\r\n"


def _killed_after_sending(proxy: Proxy, data: bytes, answered: bool) -> None:
    """A client process that sends `data` through the proxy and is killed (SIGKILL) then, once
    the daemon's answer has begun to come if `answered`, which it leaves unread: its socket
    is reset, not ended, and docktap drops both connections at once."""
    code = (
        "import socket, sys\n"
        "client = socket.socket(socket.AF_UNIX)\n"
        "client.connect(sys.argv[1])\n"
        "client.sendall(bytes.fromhex(sys.argv[2]))\n"
        "if sys.argv[3] == '1':\n"
        "    client.recv(1, socket.MSG_PEEK)\n"
        "print('sent', flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(proxy.socket), data.hex(), "1" if answered else "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stdout.readline() == b"sent\n"
    child.kill()  # what it sent is in docktap's socket already, then its end
    child.wait(timeout=30)


@pytest.mark.parametrize(
    ("sent", "answered", "flagged"),
    [
        # A head the client never finished: the guard forwards no request before its head is
        # whole.
        (b"POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\nContent-", False, False),
        # A denial behind a long poll, waiting its turn when the client went: the capture
        # never read it, and the guard never forwarded it.
        (_EVENTS + _KILL, True, False),
        # An allowed request there instead: the guard let it through unread, and says so.
        (_EVENTS + b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n", True, True),
    ],
)
def test_a_killed_clients_bytes_the_guard_held_are_not_said_to_have_reached_the_daemon(
    dockerd: Daemon, tmp_path: Path, sent: bytes, answered: bool, flagged: bool
) -> None:
    # Under an enforced policy, a client killed in the middle of a request left its bytes
    # unparsed at the close, and the audit said a high "traffic the audit could not read
    # reached the daemon" of bytes the guard had held: only what it read whole and allowed
    # goes on.
    policy = tmp_path / "policy.yaml"
    policy.write_text(_EVENTS_AND_PING_POLICY)
    proxy = Proxy(dockerd, tmp_path, "-q", "--policy", str(policy))
    try:
        _killed_after_sending(proxy, sent, answered)
    finally:
        capture = proxy.stop(allow_errors=True)
    assert capture.header["policy"] == "enforce"
    assert any(r["type"] == "unparsed" and r["dir"] == "client" for r in capture.records)
    findings = audit(capture)
    rules = [f.rule for f in findings]
    assert rules.count("unread-traffic") == flagged, rules
    # The denial the connection closed on is still there, on no exchange.
    denied = [f for f in findings if f.rule == "policy-denied"]
    assert len(denied) == (_KILL in sent), rules
    for finding in denied:
        assert finding.level == "medium" and finding.seq == 2 and finding.number == 0
        assert "denied POST /containers/nobody/kill" in finding.title


def test_bytes_the_guard_refused_are_not_said_to_have_reached_the_daemon(
    dockerd: Daemon, tmp_path: Path
) -> None:
    # The first case of the test above, under a policy: the guard refuses what it cannot read,
    # with the observer's reading, and forwards nothing more of the connection.
    policy = tmp_path / "policy.yaml"
    policy.write_text(_EVENTS_AND_PING_POLICY)
    proxy = Proxy(dockerd, tmp_path, "-q", "--policy", str(policy))
    ping = b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n"
    answer = _relay_raw(proxy, ping + b"\x00\x01 POST /containers/create not http\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"HTTP/1.1 403 Forbidden\r\n" in answer
    capture = proxy.stop(allow_errors=True)
    assert any(r["type"] == "unparsed" and r["dir"] == "client" for r in capture.records)
    assert [f.rule for f in audit(capture) if f.rule == "unread-traffic"] == []
    (refused,) = [f for f in audit(capture) if f.rule == "policy-denied"]
    assert "a request docktap cannot parse" in refused.title and refused.seq == -1
    assert docktap("audit", str(proxy.capture_path), "--width", "400").returncode == 0
