"""The command line as a new user meets it: capture names, refusals, messages and exit codes.

Each test types what a user would, in a shell or as a subprocess, and reads what they see.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO

from dockerd import Daemon
from tapping import DOCKTAP, checked_capture, docktap, ready_server

from docktap import load
from docktap.capture import lock
from docktap.cli import STRICT_FAILED


def test_runs_in_a_shell_loop_each_keep_a_capture(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    loop = 'for i in 1 2 3; do docktap run -- echo "$i"; done'
    proc = subprocess.run(
        ["bash", "-c", loop], cwd=tmp_path, env=env, capture_output=True, timeout=120, check=True
    )
    assert proc.stdout == b"1\n2\n3\n"
    captures = sorted(tmp_path.glob("docktap-*.jsonl"))
    assert len(captures) == 3, proc.stderr.decode()
    commands = {tuple(checked_capture(path).header["command"]) for path in captures}
    assert commands == {("echo", "1"), ("echo", "2"), ("echo", "3")}
    for path in captures:
        assert f"capture written to {path.name}" in proc.stderr.decode()


def test_output_to_an_existing_file_needs_force(tmp_path: Path) -> None:
    capture = tmp_path / "c.jsonl"
    capture.write_text("keep me")
    refused = docktap("run", "-o", str(capture), "--", "true")
    assert refused.returncode == 1
    assert refused.stderr.decode() == (
        f"Error: capture {capture} exists: give --force to replace it, or another -o\n"
    )
    assert capture.read_text() == "keep me"
    forced = docktap("run", "-q", "--force", "-o", str(capture), "--", "true")
    assert forced.returncode == 0, forced.stderr
    assert checked_capture(capture).header["command"] == ["true"]


def test_output_to_a_device_needs_no_force(tmp_path: Path) -> None:
    proc = docktap("run", "-q", "-o", os.devnull, "--", "true")
    assert (proc.returncode, proc.stderr) == (0, b"")


def test_a_failed_proxy_start_leaves_no_capture(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("a file, not a socket")
    capture = tmp_path / "c.jsonl"
    proc = docktap("proxy", "--listen", str(taken), "-o", str(capture))
    assert proc.returncode == 1
    assert f"{taken} exists and is not a socket" in proc.stderr.decode()
    assert not capture.exists()
    assert list(tmp_path.iterdir()) == [taken]


def test_a_failed_proxy_start_with_a_default_name_leaves_no_capture(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    proc = subprocess.run(
        [*DOCKTAP, "proxy", "--listen", "taken"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "taken exists and is not a socket" in proc.stderr.decode()
    assert [path.name for path in tmp_path.iterdir()] == ["taken"]


def test_proxy_listens_on_a_bare_relative_path(tmp_path: Path) -> None:
    proxy, address = ready_server(
        ["proxy", "-q", "--listen", "tap.sock", "-o", "c.jsonl"], cwd=tmp_path
    )
    try:
        assert address == f"unix://{tmp_path / 'tap.sock'}"
        ping = subprocess.run(
            ["curl", "-s", "--unix-socket", "tap.sock", "http://docker/_ping"],
            cwd=tmp_path,
            capture_output=True,
            timeout=30,
            check=False,
        )
    finally:
        proxy.send_signal(signal.SIGTERM)
        out, _ = proxy.communicate(timeout=30)
    assert (proxy.returncode, out) == (0, b"")
    assert ping.returncode == 0
    assert [ex.target for ex in load(tmp_path / "c.jsonl").exchanges] == ["/_ping"]


def test_quiet_proxy_says_it_is_ready_on_its_descriptor_only(tmp_path: Path) -> None:
    """-q prints only errors; --ready-fd is how a script knows the proxy accepts clients."""
    argv = ["proxy", "-q", "--listen", "tcp://127.0.0.1:0", "-o", "c.jsonl"]
    proxy, said = ready_server(
        [*argv, "--upstream", "unix:///nonexistent/docker.sock"], cwd=tmp_path
    )
    try:
        # The one place a port asked as 0 is told, when nothing is said on stderr.
        assert said.startswith("tcp://127.0.0.1:"), said
        port = int(said.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
            answer = client.makefile("rb").read()
        assert answer.startswith(b"HTTP/1.1 502 "), answer  # no daemon there, but served
    finally:
        proxy.send_signal(signal.SIGTERM)
        out, err = proxy.communicate(timeout=30)
    assert (proxy.returncode, out, err) == (0, b"", b"")
    assert [ex.status for ex in load(tmp_path / "c.jsonl").exchanges] == [502]


def test_the_readme_script_waits_for_a_quiet_proxy(dockerd: Daemon, tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    script = next(
        block
        for block in readme.split("```sh\n")[1:]
        if "--ready-fd 3 3>ready" in block.split("```")[0]
    ).split("```")[0]
    sock = tmp_path / "tap.sock"
    done = subprocess.run(
        ["bash", "-e", "-c", script.replace("/tmp/tap.sock", str(sock)) + 'kill "$!"; wait "$!"'],
        cwd=tmp_path,
        env=dockerd.env,  # DOCKER_HOST: the daemon, for docktap; the script points docker at it
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, b""), done.stderr
    assert done.stdout.startswith(b"CONTAINER ID")
    lock.wait_written(tmp_path / "session.jsonl")  # -q: the recorder may finish in the background
    assert [ex.operation for ex in checked_capture(tmp_path / "session.jsonl").exchanges] == [
        "SystemPingHead",
        "ContainerList",
    ]


def test_ready_fd_must_be_an_open_descriptor_of_its_own(tmp_path: Path) -> None:
    low = docktap("proxy", "--listen", str(tmp_path / "s"), "--ready-fd", "1")
    assert low.returncode == 2 and b"--ready-fd" in low.stderr
    closed = docktap("proxy", "--listen", str(tmp_path / "s"), "--ready-fd", "99")
    assert closed.returncode == 2
    assert "Invalid value for --ready-fd: 99: Bad file descriptor" in closed.stderr.decode()
    assert not (tmp_path / "s").exists()


def test_run_refuses_stdout_for_the_capture_and_says_what_to_do() -> None:
    proc = docktap("run", "-o", "-", "--", "true")
    assert proc.returncode == 2
    message = proc.stderr.decode().splitlines()[-1]
    assert message == (
        "Error: run cannot write the capture to stdout (-o -): stdout is the command's own; "
        "give -o a file name, or use `docktap proxy -o -`"
    )


def test_a_cut_off_capture_is_one_warning_line(tmp_path: Path) -> None:
    whole = (Path(__file__).parents[1] / "src/docktap/data/demo.jsonl").read_bytes()
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(whole[:-30])
    proc = docktap("show", str(cut))
    assert proc.returncode == 0
    assert proc.stderr.decode() == (
        f"docktap: warning: {cut}: last line is cut off (docktap was stopped while writing); "
        "it was skipped\n"
    )


def test_the_version_is_dash_v() -> None:
    from docktap import __version__

    proc = docktap("-V")
    assert (proc.returncode, proc.stdout) == (0, f"docktap, version {__version__}\n".encode())


DEMO = Path(__file__).parents[1] / "src/docktap/data/demo.jsonl"
CAPTURES = Path(__file__).parents[1] / "captures"


def test_repeat_takes_http_methods_only() -> None:
    proc = docktap("replay", str(DEMO), "--repeat", "bogus", "--", "true")
    assert proc.returncode == 2
    assert "Invalid value for '--repeat': not an HTTP method: BOGUS" in proc.stderr.decode()
    assert docktap("replay", str(DEMO), "-q", "--repeat", "get,Head", "--", "true").returncode == 0


def test_a_strict_failure_has_an_exit_status_of_its_own() -> None:
    # The command itself succeeds; the replay fails it, with a status of its own.
    ask = 'curl -s --unix-socket "${DOCKER_HOST#unix://}" http://docker/v1.41/nothing; exit 0'
    failed = docktap("replay", str(DEMO), "-q", "--strict", "--", "sh", "-c", ask)
    assert failed.returncode == STRICT_FAILED == 8
    assert b"no recorded exchange for GET /v1.41/nothing" in failed.stdout
    assert docktap("replay", str(DEMO), "-q", "--", "sh", "-c", ask).returncode == 0
    exiting = docktap("replay", str(DEMO), "-q", "--", "sh", "-c", "exit 3")
    assert exiting.returncode == 3


def test_replaying_a_capture_without_exchanges_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    header, *_ = DEMO.read_text().splitlines()
    end = '{"type":"end-of-capture","records":1,"t":1795818064.5,"mono":0.5}'
    empty.write_text(f"{header}\n{end}\n")
    assert load(empty).exchanges == []
    proc = docktap("replay", str(empty), "--", "true")
    assert proc.returncode == 0
    assert proc.stderr.decode() == (
        f"docktap: warning: no exchanges in {empty}: every request will be a miss\n"
    )
    quiet = docktap("replay", str(empty), "-q", "--", "true")
    assert (quiet.returncode, quiet.stderr) == (0, b"")  # -q: only the misses, at the end


def test_show_reads_a_capture_piped_from_proxy(tmp_path: Path) -> None:
    """`docktap proxy -o - | docktap show -`, ended as a terminal's Ctrl-C ends a pipeline."""
    sock = tmp_path / "p.sock"
    # The pipe holds one page, and the call below is recorded in more: the recorder's write of
    # it returns only once show reads, which it does after it has said it will outlive Ctrl-C
    # (SIGINT ignored); the proxy prints the call's row after that write.
    read, write = os.pipe()
    fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, 1)  # the kernel rounds it up to a page
    capacity = fcntl.fcntl(write, fcntl.F_GETPIPE_SZ)
    try:
        proxy = subprocess.Popen(
            [*DOCKTAP, "proxy", "--listen", str(sock), "-o", "-", "--upstream", "unix:///nowhere"],
            bufsize=0,  # no buffer hides a line from select
            stdin=subprocess.DEVNULL,
            stdout=write,
            stderr=subprocess.PIPE,
        )
        show = subprocess.Popen(
            [*DOCKTAP, "show", "-", "--width", "100"],
            stdin=read,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(read)  # show holds the pipe's reading end now, and the proxy its writing end
        os.close(write)
    assert "listening on" in _line(proxy.stderr)
    ping = subprocess.run(
        [
            *("curl", "-s", "--unix-socket", str(sock), "http://docker/_ping"),
            *("-H", f"X-Pad: {'a' * capacity}"),
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert ping.returncode == 0
    assert "GET /_ping" in _row(proxy.stderr)  # recorded: show is reading
    # Ctrl-C reaches both ends of the pipeline, once show has said it will outlive it.
    show.send_signal(signal.SIGINT)
    proxy.send_signal(signal.SIGINT)
    out, err = show.communicate(timeout=60)
    proxy.communicate(timeout=60)
    assert show.returncode == 0, err.decode()
    rows = out.decode().splitlines()
    assert any("SystemPing" in row and "GET /_ping" in row and " 502 " in row for row in rows)
    assert rows[-1].startswith("1 exchange on 1 connection")


def test_shell_completion_is_clicks_as_the_readme_says() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert 'eval "$(_DOCKTAP_COMPLETE=bash_source docktap)"' in readme
    script = docktap(env=dict(os.environ, _DOCKTAP_COMPLETE="bash_source"))
    assert script.returncode == 0
    assert b"complete -o nosort -F _docktap_completion docktap" in script.stdout
    words = docktap(
        env=dict(
            os.environ, _DOCKTAP_COMPLETE="bash_complete", COMP_WORDS="docktap sh", COMP_CWORD="1"
        )
    )
    assert b"plain,show" in words.stdout


def test_every_json_output_has_a_version() -> None:
    shown = docktap("show", "--json", str(DEMO)).stdout.splitlines()
    assert shown and all(json.loads(line)["version"] == 1 for line in shown)
    assert json.loads(docktap("stats", "--json", str(DEMO)).stdout)["version"] == 1
    assert json.loads(docktap("audit", "--json", str(DEMO)).stdout)["version"] == 1
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert "Every `--json` output has a `version`" in readme


def _proxy_recording(tmp_path: Path, *options: str) -> tuple[subprocess.Popen[bytes], Path]:
    """`docktap proxy -o tmp_path/live.jsonl`, listening (its daemon is nowhere: every call is
    answered 502 by docktap itself); its socket is tmp_path/p.sock."""
    argv = ["proxy", "--listen", "p.sock", "-o", "live.jsonl", "--upstream", "unix:///x"]
    proxy = subprocess.Popen(
        [*DOCKTAP, *argv, *options],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proxy.stderr is not None
    assert b"listening on" in proxy.stderr.readline()
    return proxy, tmp_path / "live.jsonl"


def _ping(tmp_path: Path) -> None:
    subprocess.run(
        ["curl", "-s", "--unix-socket", "p.sock", "http://docker/_ping"],
        cwd=tmp_path,
        capture_output=True,
        timeout=30,
        check=True,
    )


def _stop_proxy(proxy: subprocess.Popen[bytes]) -> None:
    proxy.send_signal(signal.SIGTERM)
    proxy.communicate(timeout=30)
    assert proxy.returncode == 0


def test_a_capture_still_being_written_says_so_not_that_it_is_cut_off(tmp_path: Path) -> None:
    proxy, capture = _proxy_recording(tmp_path)
    try:
        _ping(tmp_path)
        assert proxy.stderr is not None
        # The live row comes once the recorder has written the exchange into the capture.
        assert b"/_ping" in proxy.stderr.readline()
        note = (
            f"docktap: note: {capture} is still being written (a recorder holds it): this is "
            "what it holds so far; `show --follow` follows it\n"
        )
        shown = docktap("show", str(capture))
        assert (shown.returncode, shown.stderr.decode()) == (0, note)
        assert shown.stdout.decode().splitlines()[-1].endswith("; still being written")
        assert "incomplete" not in shown.stdout.decode()
        stats = docktap("stats", str(capture))
        assert stats.stderr.decode() == note
        assert "(still being written)" in stats.stdout.decode()
        assert "cut short" not in stats.stdout.decode()
        assert json.loads(docktap("stats", "--json", str(capture)).stdout)["capture"]["writing"]
        audit = docktap("audit", str(capture))
        assert (audit.returncode, audit.stderr.decode()) == (0, note)
    finally:
        _stop_proxy(proxy)
    done = docktap("show", str(capture))
    assert done.stderr == b""
    assert "still being written" not in done.stdout.decode()
    assert not json.loads(docktap("stats", "--json", str(capture)).stdout)["capture"]["writing"]


def test_one_exchange_has_one_number_in_every_view(tmp_path: Path) -> None:
    # socket-mount.jsonl: a `docker run` mounting the socket; its create is the capture's
    # second request. Every view names it #2, and `show --exchange 2` finds it again.
    capture = CAPTURES / "socket-mount.jsonl"
    create = load(capture).exchanges[1]
    assert (create.operation, create.number, create.conn, create.seq) == (
        "ContainerCreate",
        2,
        1,
        2,
    )
    shown = docktap("show", str(capture), "--width", "80", "--color", "never")
    rows = [line for line in shown.stdout.decode().splitlines() if "ContainerCreate" in line]
    assert [row.split()[0] for row in rows] == ["#2", "#7"]
    alone = docktap("show", str(capture), "--exchange", "#2", "--color", "never")
    assert [line.split()[0] for line in alone.stdout.decode().splitlines()[2:-1]] == ["#2"]
    as_json = docktap("show", str(capture), "--json", "--exchange", "2").stdout.decode()
    assert [json.loads(line)["exchange"] for line in as_json.splitlines()] == [2]

    # A replay miss names the recording closest to it by that number.
    body = json.loads(bytes(create.request_body))
    body["Cmd"][-1] = "from-elsewhere"
    (tmp_path / "body.json").write_text(json.dumps(body))
    post = (
        'curl -s --unix-socket "${DOCKER_HOST#unix://}" -H "Content-Type: application/json" '
        "--data-binary @body.json http://docker/v1.41/containers/create"
    )
    replayed = subprocess.run(
        [*DOCKTAP, "replay", str(capture), "--", "sh", "-c", post],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    answer = json.loads(replayed.stdout)["message"]
    assert "no recorded exchange for POST /v1.41/containers/create; closest: #2, " in answer
    hint = f"(`docktap show {capture} --exchange 2` shows #2 as recorded)"
    assert hint in replayed.stderr.decode()

    # The audit finding, the learned policy's provenance and the exports.
    audited = docktap("audit", str(capture), "--json").stdout
    socket = [f for f in json.loads(audited)["findings"] if f["rule"] == "docker-socket-mount"]
    assert [f["exchange"]["number"] for f in socket] == [2]
    listing = docktap("audit", str(capture)).stdout.decode()
    assert "#2 on conn 1 at 0.050s  ContainerCreate" in listing
    policy = tmp_path / "policy.yaml"
    assert docktap("policy", "learn", str(capture), "-o", str(policy)).returncode == 0
    assert "  - operation: ContainerCreate  # socket-mount.jsonl #2" in policy.read_text()
    numbers = json.loads(docktap("stats", str(capture), "--json").stdout)
    assert numbers["connections"][0]["numbers"] == [1, 2, 4]
    assert "   #1 #2 #4   " in docktap("stats", str(capture)).stdout.decode()
    script = docktap("export", str(capture), "--format", "curl").stdout.decode()
    assert "# exchange #2: ContainerCreate\n" in script
    assert "check 2 'ContainerCreate' '201' $?\n" in script
    report = docktap("export", str(capture), "--format", "markdown").stdout.decode()
    assert "| #2 | 0.050s | 1 | ContainerCreate |" in report
    assert "- **#2 ContainerCreate** " in report


#: A timeline row: its exchange number, then the time it started.
_ROW = re.compile(r"\s*#\d+\s+\d+\.\d+s ")


def _line(out: IO[bytes] | None) -> str:
    """The next line of an unbuffered pipe, within 60 s (a follower that hangs fails)."""
    assert out is not None
    ready, _, _ = select.select([out], [], [], 60)
    assert ready, "nothing printed within 60 s"
    line = out.readline().decode()  # written whole, in one write
    assert line, "the follower ended"
    return line


def _row(out: IO[bytes] | None) -> str:
    """The next timeline row a follower prints (the lines under a row skipped)."""
    while not _ROW.match(line := _line(out)):
        pass
    return line


def _follower(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*DOCKTAP, "show", "--follow", "--width", "100", *args],
        bufsize=0,  # no buffer hides a line from select
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_show_follow_prints_each_exchange_as_it_completes_until_the_recorder_is_done(
    tmp_path: Path,
) -> None:
    proxy, capture = _proxy_recording(tmp_path)
    follower = _follower(str(capture), cwd=tmp_path)
    assert follower.stdout is not None
    try:
        _ping(tmp_path)
        first = _row(follower.stdout)
        assert "GET /_ping" in first and " 502 " in first
        _ping(tmp_path)
        assert "GET /_ping" in _row(follower.stdout)
        assert follower.poll() is None  # still following: the recorder is at work
    finally:
        _stop_proxy(proxy)
    out, err = follower.communicate(timeout=30)  # it ends with the capture
    assert (follower.returncode, err) == (0, b"")
    assert not any(_ROW.match(line) for line in out.decode().splitlines())  # no row at the end
    assert len(load(capture).exchanges) == 2


def test_show_follow_ends_when_the_recorder_dies_and_on_ctrl_c(tmp_path: Path) -> None:
    proxy, capture = _proxy_recording(tmp_path)
    follower = _follower(str(capture), cwd=tmp_path)
    interrupted = _follower(str(capture), "--json", cwd=tmp_path)
    assert follower.stdout is not None and interrupted.stdout is not None
    try:
        _ping(tmp_path)
        assert "GET /_ping" in _row(follower.stdout)
        assert json.loads(_line(interrupted.stdout))["target"] == "/_ping"
        interrupted.send_signal(signal.SIGINT)
        assert interrupted.wait(timeout=30) == 130
        recorder = int(Path(f"/proc/{proxy.pid}/task/{proxy.pid}/children").read_text())
        os.kill(recorder, signal.SIGKILL)  # no end-of-capture record; the lock goes with it
    finally:
        proxy.kill()
        proxy.communicate(timeout=30)
    _, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    assert not load(capture).complete


def test_show_follow_json_prints_an_incident_once_its_connection_is_closed(
    tmp_path: Path,
) -> None:
    """The daemon is nowhere: a call gets docktap's 502 and an `upstream` error record."""
    proxy, capture = _proxy_recording(tmp_path)
    follower = _follower(str(capture), "--json", cwd=tmp_path)
    try:
        _ping(tmp_path)  # curl has hung up once it returns
        exchange = json.loads(_line(follower.stdout))
        assert (exchange["target"], exchange["status"]) == ("/_ping", 502)
        incident = json.loads(_line(follower.stdout))
        assert (incident["incident"], incident["conn"]) == ("upstream", exchange["conn"])
        assert follower.poll() is None  # while the proxy runs: the connection is what ended
    finally:
        _stop_proxy(proxy)
    out, err = follower.communicate(timeout=30)
    assert (follower.returncode, out, err) == (0, b"", b"")
    # What show --json prints of the finished capture, line for line.
    shown = docktap("show", "--json", str(capture)).stdout.decode().splitlines()
    assert shown == [json.dumps(exchange), json.dumps(incident)]


def test_show_follow_reads_a_pipe_from_proxy_as_it_comes(tmp_path: Path) -> None:
    """`docktap proxy -o - | docktap show --follow -`: rows before the proxy is stopped."""
    proxy = subprocess.Popen(
        [*DOCKTAP, "proxy", "--listen", "p.sock", "-o", "-", "--upstream", "unix:///x"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proxy.stdout is not None and proxy.stderr is not None
    show = subprocess.Popen(
        [*DOCKTAP, "show", "--follow", "-", "--width", "100"],
        bufsize=0,
        stdin=proxy.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proxy.stdout.close()  # show holds the pipe's reading end now
    assert show.stdout is not None
    try:
        assert b"listening on" in proxy.stderr.readline()
        _ping(tmp_path)
        row = _row(show.stdout)
        assert "GET /_ping" in row and " 502 " in row
        # Ctrl-C reaches both ends of the pipeline; show reads on to the end of the capture.
        # Its row says show ignores SIGINT already: it does so before it follows the pipe.
        show.send_signal(signal.SIGINT)
    finally:
        proxy.send_signal(signal.SIGINT)
        proxy.communicate(timeout=60)
    out, err = show.communicate(timeout=60)
    assert show.returncode == 0, err.decode()
    assert "GET /_ping" not in out.decode()  # the row came before, not at the end


def test_replay_listens_on_a_bare_relative_path_and_refuses_a_regular_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "taken").write_text("a file, not a socket")
    refused = subprocess.run(
        [*DOCKTAP, "replay", str(DEMO), "--listen", "taken"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1
    assert "taken exists and is not a socket" in refused.stderr.decode()
    assert (tmp_path / "taken").read_text() == "a file, not a socket"
    replay = subprocess.Popen(
        [*DOCKTAP, "replay", str(DEMO), "--listen", "tap.sock"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert replay.stderr is not None
    try:
        banner = replay.stderr.readline().decode()
        assert banner.endswith(f"recorded exchanges on unix://{tmp_path / 'tap.sock'}\n")
        ping = subprocess.run(
            ["curl", "-sI", "--unix-socket", "tap.sock", "http://docker/_ping"],
            cwd=tmp_path,
            capture_output=True,
            timeout=30,
            check=False,
        )
    finally:
        replay.send_signal(signal.SIGTERM)
        replay.communicate(timeout=30)
    assert ping.returncode == 0
    assert ping.stdout.startswith(b"HTTP/1.1 200 OK\r\n")  # the recorded HEAD /_ping
    assert replay.returncode == 0


# `docktap run` through the command line: click reads the arguments, as for any other command.
_THROUGH_CLICK = "import sys; from docktap.cli import main; main(prog_name='docktap')"


def test_a_run_read_without_click_fails_as_one_read_by_click(tmp_path: Path) -> None:
    """The entry reads the usual run command lines itself (runline.py); what it then says of
    a run that cannot start, and its status, are click's own."""
    existing = tmp_path / "exists.jsonl"
    existing.write_text("keep me")
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"}
    for args in (
        ["run", "-o", "-", "--", "true"],
        ["run", "--upstream", "bogus://x", "--", "true"],
        ["run", "--upstream", str(tmp_path / "s.sock"), "--tlscert", "c.pem", "--", "true"],
        ["run", "-q", "--", "no-such-command-here"],
        ["run", "-o", str(existing), "--", "true"],
        ["run", "-o", str(tmp_path / "no" / "dir.jsonl"), "--", "true"],
    ):
        fast = docktap(*args, env=env)
        through_click = subprocess.run(
            [sys.executable, "-c", _THROUGH_CLICK, *args],
            capture_output=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
        )
        assert fast.returncode in (1, 2), args
        assert (fast.returncode, fast.stderr) == (through_click.returncode, through_click.stderr)
    assert existing.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.jsonl"]


def _interrupted_while_the_daemon_is_looked_at(
    prefix: list[str], tmp_path: Path, *options: str
) -> tuple[int, bytes]:
    """`docktap run OPTIONS ... -- touch started` given Ctrl-C before its command starts: its
    status and what it said.

    The upstream is a TCP listener of the test's that takes docktap's first look at the daemon
    (a /_ping) and never answers: once the ping has come, docktap is waiting for it, the
    command not started yet. Ctrl-C reaches the whole foreground group, as from a terminal.
    """
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        argv = [*prefix, "run", *options, "-o", "c.jsonl"]
        process = subprocess.Popen(
            [*argv, "--upstream", f"tcp://127.0.0.1:{port}", "--", "touch", "started"],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        silent.settimeout(60)
        looking, _ = silent.accept()
        with looking:
            asked = b""
            while b"\r\n\r\n" not in asked:
                chunk = looking.recv(4096)
                assert chunk, "docktap hung up before asking the daemon anything"
                asked += chunk
            assert asked.startswith(b"GET /_ping ")
            os.killpg(process.pid, signal.SIGINT)
            _, err = process.communicate(timeout=60)
    assert not (tmp_path / "started").exists()  # it was before the command, indeed
    assert not (tmp_path / "c.jsonl").exists()  # and before the capture was claimed
    return process.returncode, err


def test_ctrl_c_before_the_command_starts_is_status_130_quietly_read_with_click_or_not(
    tmp_path: Path,
) -> None:
    """As a shell reports a command that Ctrl-C ended, whichever way the line was read: by the
    entry (`-q`), by click through the entry (`-qf`: short flags together), or by click alone."""
    assert _interrupted_while_the_daemon_is_looked_at(DOCKTAP, tmp_path, "-q") == (130, b"")
    assert _interrupted_while_the_daemon_is_looked_at(DOCKTAP, tmp_path, "-qf") == (130, b"")
    through_click = [sys.executable, "-c", _THROUGH_CLICK]
    assert _interrupted_while_the_daemon_is_looked_at(through_click, tmp_path, "-q") == (130, b"")


def test_a_command_that_cannot_be_run_leaves_a_forced_capture_as_it_was(tmp_path: Path) -> None:
    capture = tmp_path / "c.jsonl"
    capture.write_text("keep me")
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    for command, said in (
        (str(script), f"Error: cannot run {script}: Permission denied\n"),
        (str(tmp_path), f"Error: cannot run {tmp_path}: Permission denied\n"),
        (str(tmp_path / "missing"), f"Error: command not found: {tmp_path / 'missing'}\n"),
    ):
        refused = docktap("run", "-o", str(capture), "--force", "--", command)
        assert (refused.returncode, refused.stderr.decode()) == (1, said)
        assert capture.read_text() == "keep me"
