"""`docktap export --format curl`: a shell script that sends a capture's requests again."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from dockerd import Daemon
from golden import ALL_CAPTURES, CAPTURES, GOLDEN_CAPTURES, check_golden
from tapping import docktap_run

from docktap import __version__, load
from docktap.capture.format import RecordEncoder
from docktap.capture.reader import Capture, loads
from docktap.cli import main
from docktap.events import (
    BodyData,
    Direction,
    HalfClosed,
    MessageEnd,
    RequestHead,
    ResponseHead,
)
from docktap.render import curl

CLIENT, DAEMON = Direction.CLIENT, Direction.DAEMON


def _capture(
    *exchanges: tuple[str, str, tuple[tuple[str, str], ...], bytes],
    answers: dict[int, bytes] | None = None,
    max_body: int = 64,
) -> Capture:
    """Answered exchanges on one connection, each (method, target, headers, body); `answers`
    gives the response body of exchange SEQ."""
    encoder = RecordEncoder(1_800_000_000.0, 0.0, max_body=max_body)
    records = [encoder.header("unix:///x.sock", None, __version__), encoder.opened(1, None, 0.0)]
    for seq, (method, target, headers, body) in enumerate(exchanges, 1):
        t = float(seq)
        records += encoder.encode(RequestHead(1, t, seq, method, target, "1.1", headers))
        if body:
            records += encoder.encode(BodyData(1, t, seq, CLIENT, body))
        records += encoder.encode(MessageEnd(1, t, seq, CLIENT))
        records += encoder.encode(ResponseHead(1, t, seq, 200, "OK", "1.1", (), False))
        if answers and seq in answers:
            records += encoder.encode(BodyData(1, t, seq, DAEMON, answers[seq]))
        records += encoder.encode(MessageEnd(1, t, seq, DAEMON))
    return loads("".join(json.dumps(r) + "\n" for r in records))


def check_syntax(script: str, tmp_path: Path) -> None:
    path = tmp_path / "replay.sh"
    path.write_text(script)
    result = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", ALL_CAPTURES, ids=[p.stem for p in ALL_CAPTURES])
def test_every_capture_gives_a_valid_script(path: Path, tmp_path: Path) -> None:
    capture = load(path)
    script = curl.render(capture)
    assert script.startswith("#!/bin/sh\n")
    check_syntax(script, tmp_path)
    # One status line per exchange: a check of what curl got, or an echo for a skipped request.
    assert script.count("\ncheck ") + script.count(" skipped'\n") == len(capture)
    for ex in capture:
        if ex.hijacked:
            assert f"echo '#{ex.number} {ex.operation} {ex.status} skipped'" in script
    for hop in ("Host:", "Connection:", "Upgrade:", "Content-Length:", "Transfer-Encoding:"):
        assert f"-H '{hop}" not in script


@pytest.mark.parametrize("name", GOLDEN_CAPTURES)
def test_golden(name: str) -> None:
    check_golden(f"curl-{name}.sh", curl.render(load(CAPTURES / f"{name}.jsonl")))


def test_quoting_and_bodies(tmp_path: Path) -> None:
    capture = _capture(
        ("POST", "/v1.41/x?q=it's", (("X-Note", "it's $HOME `x`"),), b'{"a":"b"}\n'),
        ("POST", "/v1.41/y", (("Content-Type", "application/x-tar"),), b"\x00\xffbin"),
        ("POST", "/v1.41/z", (), b"DOCKTAP_BODY\n"),
        ("POST", "/v1.41/w", (), b"no newline at the end"),
        ("HEAD", "/_ping", (), b""),
    )
    script = curl.render(capture)
    check_syntax(script, tmp_path)
    assert "'http://docker/v1.41/x?q=it'\\''s' <<'DOCKTAP_BODY' >\"$answers\"/1\n" in script
    assert "-H 'X-Note: it'\\''s $HOME `x`'" in script
    assert "base64 -d <<'DOCKTAP_BODY' | curl" in script
    assert "<<'DOCKTAP_BODY_2' >\"$answers\"/3\nDOCKTAP_BODY\nDOCKTAP_BODY_2\n" in script
    assert "-H 'Content-Type:'" in script  # no form-encoded default from curl
    assert "  -I \\\n" in script


def test_what_cannot_be_sent_again_is_skipped() -> None:
    capture = _capture(
        ("POST", "/v1.41/images/load", (), b"x" * 100),  # over the 64-byte cap
        ("POST", "/v1.41/auth", (), b'{"username":"u","password":"<redacted>"}'),
    )
    script = curl.render(capture)
    assert "# skipped: the capture kept only 64 of the 100 bytes" in script
    assert "# skipped: the credentials in the body were masked" in script
    assert "\ncurl " not in script


def test_cli_writes_an_executable_script(tmp_path: Path) -> None:
    out = tmp_path / "replay.sh"
    path = str(CAPTURES / "ps-a.jsonl")
    result = CliRunner().invoke(main, ["export", path, "-f", "curl", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_mode & 0o777 == 0o700
    assert out.read_text() == curl.render(load(path))


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl")
def test_script_gets_the_same_statuses_from_the_daemon(dockerd: Daemon, tmp_path: Path) -> None:
    """Record real docker commands, then send the requests again with the script."""
    payload = tmp_path / "payload.txt"
    payload.write_text("replayed\n")
    commands = " && ".join(
        [
            "docker version",
            "docker ps -a",
            "docker images",
            "docker volume create dt-replay",
            "docker volume inspect dt-replay",
            "{ docker volume inspect dt-nosuch || true; }",
            "docker volume rm dt-replay",
            "docker create --network none --name dt-replay bb",
            f"docker cp {payload} dt-replay:/tmp/",
            "docker rm dt-replay",
        ]
    )
    tapped = docktap_run(dockerd, tmp_path / "c.jsonl", "sh", "-c", commands)
    assert tapped.proc.returncode == 0, tapped.proc.stderr
    capture = tapped.capture
    operations = {ex.operation for ex in capture}
    assert {"VolumeCreate", "VolumeInspect", "PutContainerArchive", "ContainerDelete"} <= operations
    script = tmp_path / "replay.sh"
    script.write_text(curl.render(capture))
    env = dict(dockerd.env)
    env["DOCKER_SOCK"] = str(dockerd.socket)
    result = subprocess.run(
        ["sh", str(script)], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(capture), result.stdout
    for line, ex in zip(lines, capture, strict=True):
        label, operation, recorded, now = line.split(" ")
        assert (label, operation) == (f"#{ex.number}", ex.operation)
        assert recorded == now == str(ex.status), line
    assert "404" in {line.split(" ")[3] for line in lines}


CONTAINER = "c0ffee" * 10 + "abcd"
IMAGE_ID = "sha256:" + "ab" * 32


def test_ids_the_daemon_made_up_are_read_from_its_answers(tmp_path: Path) -> None:
    capture = _capture(
        ("POST", "/v1.41/containers/create", (), b'{"Image":"bb"}\n'),
        ("POST", f"/v1.41/containers/{CONTAINER}/start", (), b""),
        (
            "POST",
            "/v1.41/networks/n/connect",
            (),
            b'{"Container":"%s","x":"$HOME `a` \\\\"}\n' % CONTAINER.encode(),
        ),
        ("POST", f"/v1.41/commit?container={CONTAINER}", (), b""),
        ("DELETE", f"/v1.41/images/{IMAGE_ID.removeprefix('sha256:')}", (), b""),
        ("POST", "/v1.41/volumes/create", (), b'{"Name":"named"}\n'),
        answers={
            1: b'{"Id":"%s","Warnings":[]}\n' % CONTAINER.encode(),
            4: b'{"Id":"%s"}\n' % IMAGE_ID.encode(),
            6: b'{"Name":"named","Driver":"local"}\n',
        },
        max_body=4096,
    )
    script = curl.render(capture)
    check_syntax(script, tmp_path)
    assert CONTAINER not in script
    assert '"Id" *: *' in script and '"$answers"/1.body | head -n 1)\n' in script
    assert "'http://docker/v1.41/containers/'\"${ID_1}\"'/start'" in script
    # A text body with an id goes in an unquoted here-document, the rest of it escaped.
    assert (
        ' <<DOCKTAP_BODY >"$answers"/3\n'
        '{"Container":"${ID_1}","x":"\\$HOME \\`a\\` \\\\\\\\"}\n' in script
    )
    assert '?container=\'"${ID_1}"' in script
    assert "'http://docker/v1.41/images/'\"${ID_4#sha256:}\"" in script
    assert "ID_6" not in script  # a name the client chose is the same on any daemon
    # The here-document gives curl the body as recorded, with the id that came back now.
    body = script.split(' <<DOCKTAP_BODY >"$answers"/3\n')[1].split("\nDOCKTAP_BODY\n")[0]
    shown = subprocess.run(
        ["sh", "-c", f"ID_1=new; cat <<DOCKTAP_BODY\n{body}\nDOCKTAP_BODY\n"],
        capture_output=True,
        check=True,
    )
    assert shown.stdout == b'{"Container":"new","x":"$HOME `a` \\\\"}\n'


def _run_script(
    dockerd: Daemon, capture: Capture, tmp_path: Path, max_time: int = 60
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "replay.sh"
    script.write_text(curl.render(capture))
    env = dict(dockerd.env)
    env["DOCKER_SOCK"] = str(dockerd.socket)
    env["DOCKTAP_MAX_TIME"] = str(max_time)
    return subprocess.run(
        ["sh", str(script)], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def _containers(dockerd: Daemon, label: str) -> list[str]:
    listed = dockerd.docker("ps", "-aq", "--no-trunc", "--filter", f"label={label}")
    return listed.stdout.decode().split()


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl")
def test_script_runs_a_recorded_docker_run_again(dockerd: Daemon, tmp_path: Path) -> None:
    """The ids in the script are the ones the daemon gives now, not the recorded ones."""
    cmd = "echo out; echo err >&2; exit 3"
    commands = (
        f"docker run --rm --network none --label dt.curl=rm bb sh -c {shlex.quote(cmd)}; "
        f"docker run --network none --label dt.curl=kept bb sh -c {shlex.quote(cmd)}; "
        "exit 0"
    )
    tapped = docktap_run(dockerd, tmp_path / "c.jsonl", "sh", "-c", commands)
    assert tapped.proc.returncode == 0, tapped.proc.stderr
    assert b"out" in tapped.proc.stdout and b"err" in tapped.proc.stderr
    (recorded,) = _containers(dockerd, "dt.curl=kept")
    assert _containers(dockerd, "dt.curl=rm") == []
    dockerd.docker("rm", recorded)
    capture = tapped.capture
    assert [ex.operation for ex in capture].count("ContainerWait") == 2

    result = _run_script(dockerd, capture, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(capture), result.stdout
    for line in lines:
        _, operation, status, now = line.split(" ")
        assert now == (status if operation != "ContainerAttach" else "skipped"), line
    assert _containers(dockerd, "dt.curl=rm") == []  # created, waited for, removed
    (again,) = _containers(dockerd, "dt.curl=kept")
    assert again != recorded
    inspect = json.loads(dockerd.docker("inspect", again).stdout)[0]
    assert inspect["Config"]["Cmd"] == ["sh", "-c", cmd]
    assert inspect["HostConfig"]["NetworkMode"] == "none"
    assert inspect["State"]["Status"] == "exited" and inspect["State"]["ExitCode"] == 3
    dockerd.docker("rm", again)


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl")
def test_script_stops_at_the_first_unexpected_status(dockerd: Daemon, tmp_path: Path) -> None:
    commands = (
        "docker create --network none --name dt-curl-twice bb && docker inspect dt-curl-twice"
    )
    tapped = docktap_run(dockerd, tmp_path / "c.jsonl", "sh", "-c", commands)
    assert tapped.proc.returncode == 0, tapped.proc.stderr
    try:
        # The container is still there, so creating it again is a conflict.
        result = _run_script(dockerd, tapped.capture, tmp_path)
    finally:
        dockerd.docker("rm", "dt-curl-twice")
    assert result.returncode == 1, result.stdout
    assert result.stdout.splitlines()[-1].endswith(" ContainerCreate 201 409"), result.stdout
    assert "ContainerInspect" not in result.stdout
    assert "ContainerCreate: the daemon answered 409 where the capture has 201" in result.stderr


def _stream_capture() -> Capture:
    """A ContainerWait the daemon answered whole, and an event stream the client left."""
    encoder = RecordEncoder(1_800_000_000.0, 0.0)
    records = [encoder.header("unix:///x.sock", None, __version__), encoder.opened(1, None, 0.0)]
    records.append(encoder.opened(2, None, 0.0))
    for conn, method, target in ((1, "POST", "/v1.41/containers/c/wait"), (2, "GET", "/events")):
        t = float(conn)
        records += encoder.encode(RequestHead(conn, t, 1, method, target, "1.1", ()))
        records += encoder.encode(MessageEnd(conn, t, 1, CLIENT))
        records += encoder.encode(ResponseHead(conn, t, 1, 200, "OK", "1.1", (), False))
        records += encoder.encode(BodyData(conn, t, 1, DAEMON, b'{"StatusCode":0}\n'))
        if conn == 2:
            records += encoder.encode(HalfClosed(conn, t, CLIENT))  # the client had enough
        records += encoder.encode(MessageEnd(conn, t + 0.5, 1, DAEMON))
    return loads("".join(json.dumps(r) + "\n" for r in records))


@pytest.mark.parametrize(
    ("number", "exit_status", "failure"),
    [
        (1, 0, None),
        (1, 28, "#1 ContainerWait: the answer did not end within DOCKTAP_MAX_TIME's 7 s, where "
         "the daemon ended it in the capture"),
        (1, 18, "#1 ContainerWait: curl failed (exit status 18) before the answer ended"),
        (2, 28, None),
        (2, 7, "#2 SystemEvents: curl failed (exit status 7) before the answer ended"),
    ],
)  # fmt: skip
def test_an_answer_curl_did_not_get_whole_fails_unless_the_client_had_ended_it(
    tmp_path: Path, number: int, exit_status: int, failure: str | None
) -> None:
    """curl's -w prints the status once the head came: a ContainerWait cut by the time limit
    printed 200 and passed. The script's own check, run by sh on what curl would leave."""
    script = curl.render(_stream_capture())
    line = next(ln for ln in script.splitlines() if ln.startswith(f"check {number} "))
    assert line.endswith(" $? endless" if number == 2 else " $?")
    functions = script[: script.index("# exchange #1")]
    call = line.replace("$?", str(exit_status))
    body = f'{functions}echo 200 >"$answers/{number}"\n{call}\necho checked\n'
    (tmp_path / "check.sh").write_text(body)
    result = subprocess.run(
        ["sh", str(tmp_path / "check.sh")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "DOCKTAP_MAX_TIME": "7"},
        check=False,
    )
    operation = "ContainerWait" if number == 1 else "SystemEvents"
    assert result.stdout.splitlines()[0] == f"#{number} {operation} 200 200"
    if failure is None:
        assert (result.returncode, result.stdout.splitlines()[-1]) == (0, "checked")
    else:
        assert result.returncode == 1
        assert result.stderr.strip() == failure


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl")
def test_a_run_with_stdin_says_its_stdin_cannot_be_sent_and_fails_as_the_wait_never_ends(
    dockerd: Daemon, tmp_path: Path
) -> None:
    """`docker run -i ... cat`: curl cannot carry the attach, so the container never gets its
    stdin nor its end, and waits; the script says so, and fails when the wait is cut short
    rather than taking the head of its answer for the whole."""
    label = "dt.curl=stdin"
    command = f"docker run -i --rm --network none --label {label} bb cat"
    tapped = docktap_run(dockerd, tmp_path / "c.jsonl", "sh", "-c", command, input=b"hi\n")
    assert (tapped.proc.returncode, tapped.proc.stdout) == (0, b"hi\n"), tapped.proc.stderr
    attach = next(ex for ex in tapped.capture if ex.operation == "ContainerAttach")
    try:
        result = _run_script(dockerd, tapped.capture, tmp_path, max_time=3)
        assert [line.split(" ")[3] for line in result.stdout.splitlines()][-2:] == [
            "204",
            "200",
        ], result.stdout
        assert _containers(dockerd, label) != []  # cat still waits for its stdin
    finally:
        for left in _containers(dockerd, label):
            dockerd.docker("rm", "-f", left)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"#{attach.number} ContainerAttach: the 3 bytes the client sent on it (stdin) are not "
        "sent, nor their end"
    ) in result.stderr
    assert "ContainerWait: the answer did not end within DOCKTAP_MAX_TIME's 3 s" in result.stderr
