"""`docktap run` and `docktap proxy` with the real docker CLI against the private daemon.

Each test checks two things: the command behaves exactly as it does without docktap (output,
exit code, TTY), and the capture holds the exchanges the command really made.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dockerd import Daemon
from tapping import (
    DOCKTAP,
    Proxy,
    Terminal,
    checked_capture,
    docktap,
    docktap_run,
    one,
    ops,
    run_in_pty,
)

from docktap import load

RUN = ["docker", "run", "--rm", "--network", "none"]


@pytest.fixture
def sleeper(dockerd: Daemon) -> Iterator[str]:
    """A running container to exec into."""
    cid = dockerd.docker("run", "-d", "--network", "none", "bb", "sleep", "300").stdout
    name = cid.decode().strip()
    yield name
    dockerd.docker("rm", "-f", name, check=False)


def test_run_docker_version(dockerd: Daemon, tmp_path: Path) -> None:
    direct = dockerd.docker("version", "--format", "{{.Server.APIVersion}}")
    tapped = docktap_run(
        dockerd, tmp_path / "c.jsonl", "docker", "version", "--format", "{{.Server.APIVersion}}"
    )
    assert tapped.proc.returncode == 0
    assert tapped.proc.stdout == direct.stdout
    assert ops(tapped.capture) == ["SystemPingHead", "SystemVersion"]
    version = one(tapped.capture, "SystemVersion")
    assert json.loads(version.response_body)["ApiVersion"] == direct.stdout.decode().strip()


def test_run_ps_a(dockerd: Daemon, tmp_path: Path) -> None:
    tapped = docktap_run(dockerd, tmp_path / "c.jsonl", "docker", "ps", "-a")
    assert tapped.proc.returncode == 0
    assert tapped.proc.stdout.startswith(b"CONTAINER ID")
    listing = one(tapped.capture, "ContainerList")
    assert "all=1" in listing.target
    assert isinstance(json.loads(listing.response_body), list)


def test_run_keeps_stdout_stderr_and_exit_code(dockerd: Daemon, tmp_path: Path) -> None:
    tapped = docktap_run(
        dockerd, tmp_path / "c.jsonl", *RUN, "bb", "sh", "-c", "echo out; echo err >&2; exit 3"
    )
    assert tapped.proc.returncode == 3
    assert tapped.proc.stdout == b"out\n"
    assert tapped.proc.stderr == b"err\n"
    capture = tapped.capture
    for operation in ("ContainerCreate", "ContainerWait", "ContainerAttach", "ContainerStart"):
        assert operation in ops(capture)
    attach = one(capture, "ContainerAttach")
    assert attach.status == 101
    assert attach.hijacked == "tcp"
    assert attach.output("stdout") == b"out\n"
    assert attach.output("stderr") == b"err\n"
    wait = one(capture, "ContainerWait")
    assert json.loads(wait.response_body)["StatusCode"] == 3
    assert attach.conn != wait.conn  # the long poll has its own connection


def test_run_lists_the_calls_and_names_the_capture(dockerd: Daemon, tmp_path: Path) -> None:
    capture = tmp_path / "c.jsonl"
    proc = docktap(
        "run",
        "-o",
        str(capture),
        "--upstream",
        dockerd.host,
        "--",
        "docker",
        "info",
        env=dockerd.env,
    )
    assert proc.returncode == 0
    lines = proc.stderr.decode().splitlines()
    assert any("SystemInfo" in line and "GET /v1.41/info" in line for line in lines), lines
    assert lines[-1] == f"docktap: capture written to {capture}"
    checked_capture(capture)


def test_run_with_stdin_half_closes_and_keeps_output(dockerd: Daemon, tmp_path: Path) -> None:
    tapped = docktap_run(
        dockerd, tmp_path / "c.jsonl", *RUN, "-i", "bb", "cat", input=b"hi\nthere\n"
    )
    assert tapped.proc.returncode == 0
    assert tapped.proc.stdout == b"hi\nthere\n"
    attach = one(tapped.capture, "ContainerAttach")
    assert attach.output("stdin") == b"hi\nthere\n"
    assert attach.output("stdout") == b"hi\nthere\n"
    halfclose = [
        r
        for r in tapped.capture.records
        if r["type"] == "halfclose" and r["conn"] == attach.conn and r["dir"] == "client"
    ]
    stdout_frames = [
        r
        for r in tapped.capture.records
        if r["type"] == "frame" and r["conn"] == attach.conn and r["stream"] == "stdout"
    ]
    # cat only writes after reading, and the client half-closed when its stdin ended: at least
    # the last output came after the half-close, through the still-open direction.
    assert halfclose and stdout_frames
    assert stdout_frames[-1]["mono"] >= halfclose[0]["mono"]


def test_run_tty_passes_through_a_pty(dockerd: Daemon, tmp_path: Path) -> None:
    capture = tmp_path / "c.jsonl"
    argv = [*DOCKTAP, "run", "-q", "--force", "-o", str(capture), "--upstream", dockerd.host, "--"]
    command = [*RUN, "-t", "bb", "sh", "-c", "echo hi; exit 4"]
    assert run_in_pty(command, dockerd.env) == run_in_pty([*argv, *command], dockerd.env)
    code, output = run_in_pty([*argv, *command], dockerd.env)
    assert code == 4
    assert b"hi\r" in output
    attach = one(checked_capture(capture), "ContainerAttach")
    assert attach.frames == []  # a TTY stream has no frames
    assert b"hi\r\n" in attach.output("stdout")


#: A live row on the screen: it starts at the left edge with its number and its time.
ROW = re.compile(r"^ *#\d+ +\d+\.\d{3}s ")


def _answered(records: bytes, operation: str) -> bool:
    """Whether the capture so far holds the whole answer to a call of `operation`."""
    lines = [json.loads(line) for line in records.splitlines(keepends=True) if line.endswith(b"\n")]
    asked = {(r["conn"], r["seq"]) for r in lines if r.get("operation") == operation}
    return any(
        r["type"] == "end" and r["dir"] == "daemon" and (r["conn"], r["seq"]) in asked
        for r in lines
    )


def test_run_holds_live_rows_while_the_command_has_the_terminal_raw(
    dockerd: Daemon, tmp_path: Path
) -> None:
    # The capture goes to a FIFO the test reads: it knows when the recorder has written the
    # resize call (its row is due then) without polling the file.
    fifo = tmp_path / "capture"
    os.mkfifo(fifo)
    follow = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    argv = [*DOCKTAP, "run", "--force", "-o", str(fifo), "--upstream", dockerd.host, "--"]
    term = Terminal([*argv, *RUN, "-it", "bb", "sh"], dockerd.env, follow=follow)
    try:
        term.expect(b"/ # ")  # the shell's prompt: the docker CLI has put the terminal raw
        term.expect_followed(lambda records: _answered(records, "ContainerResize"))
        term.type(b"echo hi; exit\r")
        assert term.wait() == 0
    finally:
        os.close(follow)
    lines = term.lines()
    prompt = next(n for n, line in enumerate(lines) if line.startswith("/ # "))
    # Nothing of docktap's in the shell's session: its prompt, the echoed line, the output.
    assert lines[prompt : prompt + 2] == ["/ # echo hi; exit", "hi"], term.text()
    # The calls made while the shell had the terminal are printed once it gave the terminal
    # back, each row at the left edge (a row written in raw mode staircases: no carriage
    # return), and docktap's last word is on a line of its own.
    rows = [line for line in lines[prompt + 2 :] if "POST /" in line]
    assert any("ContainerResize" in row for row in rows), term.text()
    assert any("ContainerWait" in row for row in rows), term.text()
    assert all(ROW.match(row) for row in rows), term.text()
    assert lines[-1] == f"docktap: capture written to {fifo}", term.text()
    capture = tmp_path / "c.jsonl"
    capture.write_bytes(term.followed)
    assert "ContainerResize" in ops(checked_capture(capture))


def test_run_says_when_the_command_never_reached_docktap(dockerd: Daemon, tmp_path: Path) -> None:
    capture = tmp_path / "c.jsonl"
    argv = ["run", "-o", str(capture), "--upstream", dockerd.host, "--"]
    # -H: straight to the daemon, past the DOCKER_HOST docktap set
    around = docktap(*argv, "docker", "-H", dockerd.host, "version", env=dockerd.env)
    assert around.returncode == 0 and b"Server:" in around.stdout
    assert around.stderr.decode().splitlines() == [
        "docktap: warning: docker never connected to docktap, so no call was recorded; if it "
        "used Docker, it reached it another way (docker -H or --context, a DOCKER_HOST of its "
        "own)",
        f"docktap: capture written to {capture}",
    ]
    assert checked_capture(capture).exchanges == []
    replayed = docktap("replay", str(capture), "--", "true")  # and so does its replay
    assert replayed.stderr.decode() == (
        f"docktap: warning: no exchanges in {capture}: every request will be a miss\n"
    )
    quiet = docktap(*argv[:1], "-q", "--force", *argv[1:], "true", env=dockerd.env)
    assert (quiet.returncode, quiet.stderr) == (0, b"")  # -q: errors only
    through = docktap("run", "--force", *argv[1:], "docker", "version", env=dockerd.env)
    assert through.returncode == 0
    assert b"warning" not in through.stderr and b"SystemVersion" in through.stderr


def test_exec_without_and_with_tty(dockerd: Daemon, sleeper: str, tmp_path: Path) -> None:
    tapped = docktap_run(
        dockerd, tmp_path / "a.jsonl", "docker", "exec", sleeper, "sh", "-c", "echo a; echo b >&2"
    )
    assert (tapped.proc.returncode, tapped.proc.stdout, tapped.proc.stderr) == (0, b"a\n", b"b\n")
    start = one(tapped.capture, "ExecStart")
    assert start.hijacked == "tcp"
    assert (start.output("stdout"), start.output("stderr")) == (b"a\n", b"b\n")
    assert "ContainerExec" in ops(tapped.capture)

    capture = tmp_path / "t.jsonl"
    argv = [*DOCKTAP, "run", "-q", "--force", "-o", str(capture), "--upstream", dockerd.host, "--"]
    command = ["docker", "exec", "-t", sleeper, "echo", "tty"]
    assert run_in_pty([*argv, *command], dockerd.env) == run_in_pty(command, dockerd.env)
    start = one(checked_capture(capture), "ExecStart")
    assert start.frames == []
    assert b"tty\r\n" in start.output("stdout")


def test_logs_follow_on_a_running_container(dockerd: Daemon, tmp_path: Path) -> None:
    script = "for i in 1 2 3; do echo line$i; echo warn$i >&2; sleep 0.3; done"
    cid = dockerd.docker("run", "-d", "--network", "none", "bb", "sh", "-c", script)
    name = cid.stdout.decode().strip()
    try:
        tapped = docktap_run(dockerd, tmp_path / "c.jsonl", "docker", "logs", "-f", name)
    finally:
        dockerd.docker("rm", "-f", name, check=False)
    assert tapped.proc.stdout == b"line1\nline2\nline3\n"
    assert tapped.proc.stderr == b"warn1\nwarn2\nwarn3\n"
    logs = one(tapped.capture, "ContainerLogs")
    assert "follow=1" in logs.target
    assert logs.output("stdout") == b"line1\nline2\nline3\n"
    assert logs.output("stderr") == b"warn1\nwarn2\nwarn3\n"
    assert logs.header("Transfer-Encoding") == "chunked"


def test_events_since_until(dockerd: Daemon, tmp_path: Path) -> None:
    since = str(int(time.time()) - 1)
    dockerd.docker("run", "--rm", "--network", "none", "bb", "true")
    until = str(int(time.time()) + 1)
    fmt = "{{.Type}} {{.Action}}"
    direct = dockerd.docker("events", "--since", since, "--until", until, "--format", fmt)
    tapped = docktap_run(
        dockerd,
        tmp_path / "c.jsonl",
        *("docker", "events", "--since", since, "--until", until, "--format", fmt),
    )
    assert tapped.proc.returncode == 0
    assert tapped.proc.stdout == direct.stdout
    assert b"container start" in tapped.proc.stdout
    events = one(tapped.capture, "SystemEvents")
    lines = bytes(events.response_body).splitlines()
    assert lines and all(json.loads(line)["Type"] for line in lines)
    assert len(lines) == len(direct.stdout.splitlines())


def test_cp_both_ways(dockerd: Daemon, sleeper: str, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_bytes(b"copied through docktap\n" * 100)
    tapped_in = docktap_run(
        dockerd, tmp_path / "in.jsonl", "docker", "cp", str(source), f"{sleeper}:/tmp/in.txt"
    )
    assert tapped_in.proc.returncode == 0, tapped_in.proc.stderr
    assert "PutContainerArchive" in ops(tapped_in.capture)
    back = tmp_path / "back.txt"
    tapped_out = docktap_run(
        dockerd, tmp_path / "out.jsonl", "docker", "cp", f"{sleeper}:/tmp/in.txt", str(back)
    )
    assert tapped_out.proc.returncode == 0, tapped_out.proc.stderr
    assert back.read_bytes() == source.read_bytes()
    archive = one(tapped_out.capture, "ContainerArchive")
    assert archive.header("Content-Type") == "application/x-tar"
    assert "ContainerArchiveInfo" in ops(tapped_in.capture) + ops(tapped_out.capture)


def test_save_and_load_are_byte_identical(dockerd: Daemon, tmp_path: Path) -> None:
    direct = tmp_path / "direct.tar"
    dockerd.docker("save", "-o", str(direct), "bb")
    tapped_tar = tmp_path / "tapped.tar"
    # A small inline cap: the body is 1+ MB, so the capture keeps only its size and digest.
    save_command = ("docker", "save", "-o", str(tapped_tar), "bb")
    tapped_save = docktap_run(
        dockerd, tmp_path / "save.jsonl", *save_command, options=["--max-body", "4096"]
    )
    assert tapped_save.proc.returncode == 0, tapped_save.proc.stderr
    data = tapped_tar.read_bytes()
    assert data == direct.read_bytes()
    save = one(tapped_save.capture, "ImageGetAll")
    assert save.response_body_size == len(data)
    assert save.response_sha256 == hashlib.sha256(data).hexdigest()
    assert len(save.response_body) == 4096
    assert (tmp_path / "save.jsonl").stat().st_size < 64 << 10

    dockerd.docker("rmi", "bb")
    try:
        tapped = docktap_run(dockerd, tmp_path / "load.jsonl", "docker", "load", "-i", str(direct))
    finally:
        if dockerd.docker("image", "inspect", "bb", check=False).returncode != 0:
            dockerd.docker("load", "-i", str(direct))
    assert tapped.proc.returncode == 0, tapped.proc.stderr
    load = one(tapped.capture, "ImageLoad")
    assert load.request_body_size == len(data)
    assert load.request_sha256 == hashlib.sha256(data).hexdigest()
    again = tmp_path / "again.tar"
    dockerd.docker("save", "-o", str(again), "bb")
    assert again.read_bytes() == data


def test_unreachable_upstream_is_reported_by_the_docker_cli(tmp_path: Path) -> None:
    missing = tmp_path / "no-daemon.sock"
    capture = tmp_path / "c.jsonl"
    upstream = f"unix://{missing}"
    proc = docktap(
        *("run", "-q", "-o", str(capture), "--upstream", upstream, "--"),
        *("docker", "version", "--format", "{{.Server.Version}}"),
    )
    assert proc.returncode != 0
    assert f"cannot reach the Docker daemon at unix://{missing}" in proc.stderr.decode()
    loaded = checked_capture(capture, allow_errors=True)
    assert {e["kind"] for e in loaded.errors} == {"upstream"}
    assert {ex.status for ex in loaded.exchanges} == {502}


def test_proxy_relays_the_docker_cli_and_closes_the_capture_on_sigterm(
    dockerd: Daemon, tmp_path: Path
) -> None:
    proxy = Proxy(dockerd, tmp_path)
    version = proxy.docker("version", "--format", "{{.Server.APIVersion}}")
    ps = proxy.docker("ps", "-a")
    run = proxy.docker(*RUN[1:], "bb", "sh", "-c", "echo out; echo err >&2; exit 3")
    capture = proxy.stop()
    assert version.returncode == 0 and version.stdout.strip() == b"1.41"
    assert ps.returncode == 0
    assert (run.returncode, run.stdout, run.stderr) == (3, b"out\n", b"err\n")
    assert f"capture written to {proxy.capture_path}" in proxy.stderr
    seen = ops(capture)
    for operation in ("SystemVersion", "ContainerList", "ContainerCreate", "ContainerAttach"):
        assert operation in seen
    peers = {c.peer["pid"] for c in capture.connections.values() if c.peer}
    assert len(peers) == 3  # one docker CLI process per command, each seen by SO_PEERCRED


def test_proxy_writes_the_capture_to_stdout(dockerd: Daemon, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            *DOCKTAP,
            "proxy",
            "--listen",
            str(tmp_path / "p.sock"),
            "--upstream",
            dockerd.host,
            "-o",
            "-",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None and b"listening on" in proc.stderr.readline()
    env = dict(dockerd.env, DOCKER_HOST=f"unix://{tmp_path / 'p.sock'}")
    subprocess.run(["docker", "version"], env=env, capture_output=True, timeout=60, check=True)
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    (tmp_path / "out.jsonl").write_bytes(out)
    assert "SystemVersion" in ops(checked_capture(tmp_path / "out.jsonl"))


def test_proxy_refuses_to_replace_a_file(tmp_path: Path) -> None:
    victim = tmp_path / "important"
    victim.write_text("keep me")
    proc = docktap(
        *("proxy", "--listen", str(victim), "-o", str(tmp_path / "c.jsonl")),
        *("--upstream", "unix:///nonexistent.sock"),
    )
    assert proc.returncode == 1
    assert b"is not a socket" in proc.stderr
    assert victim.read_text() == "keep me"


def _read_fifo(fd: int, got: bytearray, done: Callable[[bytes], bool]) -> bool:
    """Read the FIFO `fd` into `got` until `done(got)` or its end (every writer closed it):
    whether it ended. The deadline only keeps a hung docktap from hanging the suite."""
    deadline = time.monotonic() + 60
    while not done(bytes(got)):
        assert select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0], bytes(got)
        chunk = os.read(fd, 65536)
        if not chunk:
            return True
        got.extend(chunk)
    return False


def _event_recorded(records: bytes) -> bool:
    """Whether the capture so far holds a whole body record of a container's event."""
    return any(
        line.startswith(b'{"type":"body"') and b"container" in line
        for line in records.splitlines(keepends=True)
        if line.endswith(b"\n")
    )


def test_a_killed_proxy_leaves_a_readable_capture(dockerd: Daemon, tmp_path: Path) -> None:
    # The capture goes to a FIFO the test reads: it sees the event's record come, and the
    # capture's end once the recorder, left alone by the kill, has written all it was sent.
    fifo = tmp_path / "proxy.jsonl"
    os.mkfifo(fifo)
    follow = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # first: docktap's open then goes through
    got = bytearray()
    try:
        proxy = Proxy(dockerd, tmp_path, capture=fifo)
        os.set_blocking(follow, True)
        name = f"killed-proxy-{os.getpid()}"
        since = str(int(time.time()) - 1)  # replayed from the start: no race with the run
        events = subprocess.Popen(
            [
                *("docker", "events", "--since", since, "--filter", f"container={name}"),
                *("--format", "{{.Type}} {{.Action}}"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env=proxy.env,
        )
        try:
            dockerd.docker("run", "--rm", "--name", name, "--network", "none", "bb", "true")
            assert events.stdout is not None
            assert events.stdout.readline() == b"container create\n"
            # The client has the event, so docktap forwarded it; the recorder writes it soon.
            assert not _read_fifo(follow, got, _event_recorded), "the capture ended first"
            proxy.process.kill()
            proxy.process.wait()
        finally:
            events.kill()
            events.wait()
        assert _read_fifo(follow, got, lambda _: False)
    finally:
        os.close(follow)
    kept = tmp_path / "kept.jsonl"
    kept.write_bytes(got)
    capture = load(kept)
    assert not capture.complete
    stream = one(capture, "SystemEvents")
    assert stream.status == 200
    assert json.loads(bytes(stream.response_body).splitlines()[0])["Action"] == "create"


# What a command imports at start-up is what a wrapped `docker version` pays for each time:
# these are the modules it has no use for.
NOT_AT_START = (
    "rich",
    "yaml",
    "h11",
    "docktap.render",
    "docktap.request",
    "docktap.audit",
    "docktap.replay",
    "docktap.observer",
    "docktap.policy.gate",
)
NOT_FOR_HELP = (
    *NOT_AT_START,
    "asyncio",
    "ssl",
    "docktap.capture.reader",
    "docktap.recording",
    "docktap.upstream",
    # What a command that uses them imports (cli.py), not the command line as such.
    "json",
    "pathlib",
    "tempfile",
)
#: What only the recorder child uses: the relay process of `run` has no use for it.
RECORDER_ONLY = (
    "docktap.recording.engine",
    "docktap.capture.format",
    "docktap.capture.writer",
    "docktap.redact",
    "docktap.routes",
    "ctypes",  # the spool's reader and the fork's malloc setting
)

# Runs docktap with the arguments after OUT and writes to OUT the modules the process has
# loaded when it exits, whether through os._exit (as `run` and the recorder, a fork of it, both
# leave) or not; only the process started here, the relay, writes. A module kept out (None in
# sys.modules) is not loaded.
_MODULES_AT_EXIT = """
import atexit, os, runpy, sys
out, relay, leave = sys.argv.pop(1), os.getpid(), os._exit

def listing():
    if os.getpid() == relay:
        with open(out, "w") as listed:
            listed.write("\\n".join(sorted(m for m, loaded in sys.modules.items() if loaded)))

def leaving(code):
    listing()
    leave(code)

os._exit = leaving
atexit.register(listing)
sys.argv[0] = "docktap"
runpy.run_module("docktap", run_name="__main__", alter_sys=True)
"""


def _python(
    argv: list[str], tmp_path: Path, docker: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """The interpreter docktap runs on, with `argv`, in `tmp_path`, against a daemon socket
    that is not there (or the daemon that the variables `docker` name); it must exit 0."""
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
    env.update({"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"} if docker is None else docker)
    done = subprocess.run(
        [*DOCKTAP[:1], *argv], capture_output=True, env=env, cwd=tmp_path, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    return done


def _run_true_under(
    script: str, tmp_path: Path, *script_args: str, docker: dict[str, str] | None = None
) -> Path:
    """`docktap run -q -- true` run by `python -c SCRIPT SCRIPT_ARGS... run ...` (a script that
    watches the run, then runs docktap with the rest of argv); the capture it wrote."""
    capture = tmp_path / "cap.jsonl"
    argv = ["-c", script, *script_args, "run", "-q", "-o", str(capture), "--", "true"]
    _python(argv, tmp_path, docker)
    return capture


def _imported(args: list[str], tmp_path: Path) -> set[str]:
    """The modules `docktap ARGS` imports, as `python -X importtime` lists them."""
    done = _python(["-X", "importtime", *DOCKTAP[1:], *args], tmp_path)
    lines = done.stderr.decode().splitlines()
    return {line.rpartition("|")[2].strip() for line in lines if line.startswith("import time:")}


def _loaded(modules: set[str], roots: tuple[str, ...]) -> set[str]:
    return {m for m in modules if any(m == r or m.startswith(r + ".") for r in roots)}


def test_help_and_version_import_no_more_than_the_command_line(tmp_path: Path) -> None:
    for args in (["--version"], ["--help"], ["show", "--help"]):
        modules = _imported(args, tmp_path)
        assert "click" in modules  # the listing is read as it must be
        assert _loaded(modules, NOT_FOR_HELP) == set(), args


@pytest.mark.parametrize("daemon", ["DOCKER_HOST", "no context"])
def test_run_quiet_imports_no_renderer_reader_request_model_nor_ssl(
    tmp_path: Path, daemon: str
) -> None:
    """What `run -q` imports, for a daemon named by a unix:// DOCKER_HOST and for the default
    one (no DOCKER_HOST, and a config.json that names no context: most users' case)."""
    docker = None
    if daemon == "no context":
        (tmp_path / "config").mkdir()
        (tmp_path / "config" / "config.json").write_text('{"auths": {}}')
        docker = {"DOCKER_CONFIG": str(tmp_path / "config")}
    listed = tmp_path / "modules.txt"
    capture = _run_true_under(_MODULES_AT_EXIT, tmp_path, str(listed), docker=docker)
    modules = set(listed.read_text().split("\n"))
    assert "docktap.relay" in modules  # the listing is the relay's, read as it must be
    assert _loaded(modules, (*NOT_AT_START, *RECORDER_ONLY, "docktap.capture.reader")) == set()
    # Nor the command line: the entry read the arguments (runline.py), click was not needed.
    assert _loaded(modules, ("click", "docktap.cli", "rich")) == set()
    # asyncio without ssl: the relay to a unix socket has no use for TLS (running._without_ssl).
    assert "asyncio" in modules
    assert "ssl" not in modules
    # Nor pathlib: neither a unix:// DOCKER_HOST nor a config.json without a context needs a
    # context file nor TLS material, nor urllib.parse to be read (upstream.py).
    assert _loaded(modules, ("pathlib", "urllib")) == set()
    # Nor tempfile and shutil: the socket's directory and the spool are made without them
    # (scratch.py), and the command is found as exec finds it (running._found).
    assert _loaded(modules, ("tempfile", "shutil")) == set()
    # Nor anything of the policy's: there is none (relay.py).
    assert _loaded(modules, ("docktap.policy",)) == set()
    assert load(capture).header["command"] == ["true"]  # and the recorder did its work


# Runs docktap with the arguments after OUT; its recorder (a fork of it, which leaves through
# os._exit) writes to OUT as it leaves the modules it has loaded, on one line, and on the next
# the classes of docktap's that are dataclasses.
_RECORDER_AT_EXIT = """
import os, runpy, sys
out, relay, leave = sys.argv.pop(1), os.getpid(), os._exit

def leaving(code):
    if os.getpid() != relay:
        modules = {name: module for name, module in list(sys.modules.items()) if module}
        classes = [
            f"{name}.{key}"
            for name, module in modules.items() if name.startswith("docktap.")
            for key, value in vars(module).items()
            if isinstance(value, type) and value.__module__ == name
            and "__dataclass_fields__" in vars(value)
        ]
        with open(out, "w") as listed:
            listed.write(" ".join(sorted(modules)) + "\\n" + " ".join(sorted(classes)) + "\\n")
    leave(code)

os._exit = leaving
sys.argv[0] = "docktap"
runpy.run_module("docktap", run_name="__main__", alter_sys=True)
"""
#: What the recorder imports only once a recording needs it (a query to mask, bytes that are
#: not text, a body to hash, a secret to mask with its keyed digest), not as it starts: it is
#: the last of a run's processes to finish, and its imports take CPU from the command's and the
#: relay's on a machine of two cores.
RECORDER_LATER = ("urllib", "ipaddress", "base64", "hashlib", "_hashlib", "hmac", "random")


def test_the_recorder_starts_without_what_only_some_recordings_need(tmp_path: Path) -> None:
    """A recording of no exchanges (`run -q -- true`) imports the engine and no more: not what
    masking a query or writing bytes that are not text takes, nor any dataclass: not the
    observer's, the encoder's, the routes' nor the request model's JSON values, which the
    redactor reads held bodies with (0.3 ms of CPU each to define; named tuples and classes
    with slots instead)."""
    listed = tmp_path / "recorder.txt"
    capture = _run_true_under(_RECORDER_AT_EXIT, tmp_path, str(listed))
    modules_line, classes_line, _ = listed.read_text().split("\n")
    modules = set(modules_line.split())
    assert "docktap.recording.engine" in modules  # the listing is the recorder's
    assert "h11" in modules and "orjson" in modules  # the engine's, read as it must be
    assert _loaded(modules, RECORDER_LATER) == set()
    assert classes_line.split() == []
    assert load(capture).header["command"] == ["true"]  # and it recorded


# Runs docktap with the arguments after OUT and writes to OUT, as each of its processes
# leaves (the relay and its recorder, both through os._exit), whether its collector is on.
_COLLECTING_AT_EXIT = """
import gc, os, runpy, sys
out, relay, leave = sys.argv.pop(1), os.getpid(), os._exit

def leaving(code):
    with open(out, "a") as listed:
        role = "relay" if os.getpid() == relay else "recorder"
        listed.write(f"{role} {gc.isenabled()}\\n")
    leave(code)

os._exit = leaving
sys.argv[0] = "docktap"
runpy.run_module("docktap", run_name="__main__", alter_sys=True)
"""


def test_run_collects_garbage_again_once_it_serves(tmp_path: Path) -> None:
    """The collector is off for run's start-up only: a long command's relay and recorder
    collect as any process does."""
    listed = tmp_path / "collecting.txt"
    _run_true_under(_COLLECTING_AT_EXIT, tmp_path, str(listed))
    assert sorted(listed.read_text().splitlines()) == ["recorder True", "relay True"]


# Runs `docktap` after `subprocess.Popen` is made to write down, as the first command starts,
# which of the modules named in argv[2] the process has loaded by then, and how many children
# it has already.
_LOADED_AT_POPEN = """
import os, runpy, subprocess, sys
out, watched, start = sys.argv.pop(1), sys.argv.pop(1).split(","), subprocess.Popen.__init__

def starting(self, *args, **kwargs):
    with open(f"/proc/self/task/{os.getpid()}/children") as children:
        born = len(children.read().split())
    with open(out, "a") as listed:
        listed.write(" ".join(m for m in watched if m in sys.modules) + f" children={born}\\n")
    start(self, *args, **kwargs)

subprocess.Popen.__init__ = starting
sys.argv[0] = "docktap"
runpy.run_module("docktap", run_name="__main__", alter_sys=True)
"""


def test_run_forks_the_recorder_and_starts_the_command_before_it_imports_asyncio(
    tmp_path: Path,
) -> None:
    listed = tmp_path / "loaded.txt"
    watched = [
        "click",
        "docktap.binding",
        "docktap.recording.launch",
        "asyncio",
        "ssl",
        "docktap.relay",
        "docktap.recording.link",
        "docktap.listening",
        *RECORDER_ONLY,
    ]
    _run_true_under(_LOADED_AT_POPEN, tmp_path, str(listed), ",".join(watched))
    # The first Popen is the command's (the recorder is a fork, running already): by then the
    # socket is bound, and neither asyncio nor the relay is loaded, nor the recorder's engine.
    first = listed.read_text().splitlines()[0]
    assert first == "docktap.binding docktap.recording.launch children=1"


# A sitecustomize that has every os.fork's child write down its parent and whether click was
# loaded when it was forked (subprocess starts commands without os.fork's hooks).
_FORKS_SEEN = """
import os, sys

def forked():
    with open(os.environ["FORKS_SEEN"], "a") as seen:
        seen.write(f"{os.getppid()} {'click' in sys.modules}\\n")

os.register_at_fork(after_in_child=forked)
"""


def test_the_console_script_forks_the_recorder_before_it_imports_click(tmp_path: Path) -> None:
    """`docktap run`, as users start it, forks its standby recorder as the process begins
    (docktap.entry), so that the engine's import overlaps the command line's; `run` takes that
    standby, and forks no other."""
    script = Path(sys.executable).with_name("docktap")
    assert script.is_file()  # the console script the package installs, next to the interpreter
    # A venv installed before the entry point moved to docktap.entry still has the old script.
    assert "docktap.entry" in script.read_text(), f"{script} is stale: pip install -e ."
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(_FORKS_SEEN)
    seen, capture = tmp_path / "forks.txt", tmp_path / "cap.jsonl"
    env = {
        **os.environ,
        "DOCKER_HOST": f"unix://{tmp_path}/nothing.sock",
        "PYTHONPATH": str(tmp_path / "site"),
        "FORKS_SEEN": str(seen),
    }
    process = subprocess.Popen(
        [str(script), "run", "-q", "-o", str(capture), "--", "true"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()
    assert seen.read_text().splitlines() == [f"{process.pid} False"]
    assert load(capture).header["command"] == ["true"]  # that standby recorded


# Runs docktap with the arguments after OUT; its recorder (a fork) as it has lowered its
# priority, and the relay as it leaves (through os._exit), each write to OUT their role,
# scheduling policy and autogroup (`/autogroup-ID nice N`). At the end of the run the relay
# gives the recorder its priority back (link._hurry): what it has left holds up the capture.
# So the command run ends only once the recorder has looked: it reads the FIFO after OUT, which
# the recorder opens then (at idle priority on a busy machine, the recorder could otherwise be
# hurried between its lowering and its look).
_PRIORITY_AT_EXIT = """
import os, runpy, signal, sys
import docktap.recording.child as child
out, looked = sys.argv.pop(1), sys.argv.pop(1)
relay, leave, lower = os.getpid(), os._exit, child._lower_priority

def write(role):
    with open("/proc/self/autogroup") as group:
        where = group.read().strip()
    with open(out, "a") as listed:
        listed.write(f"{role} {os.sched_getscheduler(0)} {where}\\n")

def lowered():
    lower()
    write("recorder")
    signal.alarm(60)  # a command that never opens the FIFO leaves no recorder behind
    with open(looked, "w"):
        pass
    signal.alarm(0)

def leaving(code):
    if os.getpid() == relay:
        write("relay")
    leave(code)

child._lower_priority = lowered
os._exit = leaving
sys.argv[0] = "docktap"
runpy.run_module("docktap", run_name="__main__", alter_sys=True)
"""


def _autogroup(line: str) -> str:
    """The group named by an autogroup line, `/autogroup-ID`; empty for the tasks the kernel
    keeps in no group of their own: a session never left since boot, so in the root group."""
    return line.partition(" nice ")[0]


def test_the_recorder_runs_at_idle_priority_in_a_group_of_its_own(tmp_path: Path) -> None:
    """The recorder's session is a scheduling group of its own (autogroup): its own policy,
    SCHED_IDLE, counts only inside it, so the group's nice is lowered too, and the relay's
    group, which the command shares, is left as it was."""
    new_session = subprocess.run(
        ["cat", "/proc/self/autogroup"], capture_output=True, start_new_session=True
    )
    if new_session.returncode != 0 or not new_session.stdout.strip():
        pytest.skip("the kernel groups no tasks by session (autogroup off, or a cpu cgroup)")
    listed, looked = tmp_path / "priority.txt", tmp_path / "looked"
    os.mkfifo(looked)
    command = ["sh", "-c", f"cat {looked} >/dev/null"]  # until the recorder has looked
    argv = ["-c", _PRIORITY_AT_EXIT, str(listed), str(looked), "run", "-q", "-o"]
    _python([*argv, str(tmp_path / "cap.jsonl"), "--", *command], tmp_path)
    seen = dict(line.split(" ", 1) for line in listed.read_text().splitlines())
    recorder_policy, recorder_group = seen["recorder"].split(" ", 1)
    relay_policy, relay_group = seen["relay"].split(" ", 1)
    assert int(recorder_policy) == os.SCHED_IDLE
    assert recorder_group.endswith(" nice 19")
    assert _autogroup(recorder_group) != _autogroup(relay_group)  # a group of its own
    assert int(relay_policy) == os.sched_getscheduler(0)
    assert relay_group == Path("/proc/self/autogroup").read_text().strip()  # the test's own
