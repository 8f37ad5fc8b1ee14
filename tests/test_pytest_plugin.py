"""The pytest plugin, used by a real test suite: record against the daemon, replay without it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from dockerd import Daemon
from tapping import one

from docktap.capture.reader import load

pytest_plugins = ["pytester"]

SUITE = textwrap.dedent(
    """
    import subprocess

    import pytest


    def docker(*args):
        return subprocess.run(["docker", *args], capture_output=True, timeout=60)


    def test_cli(docktap):
        out = docker("run", "--rm", "--network", "none", "bb", "sh", "-c", "echo CLI-OUT; exit 3")
        assert (out.returncode, out.stdout) == (3, b"CLI-OUT\\n")


    def test_docker_py(docktap):
        client = docktap.client()
        assert client.containers.run("bb", ["echo", "PY-OUT"], network_mode="none",
                                     remove=True) == b"PY-OUT\\n"
        assert "bb:latest" in [t for image in client.images.list() for t in image.tags]


    @pytest.mark.docktap("shared/listing.jsonl", strict=True)
    def test_named_capture(docktap):
        assert docker("ps", "-a").returncode == 0
        assert docker("volume", "ls").returncode == 0


    def test_environment(docktap):
        import os
        assert os.environ["DOCKER_HOST"] == docktap.host
        assert os.environ["TESTCONTAINERS_RYUK_DISABLED"] == "true"
    """
)


@pytest.fixture
def suite(pytester: pytest.Pytester, dockerd: Daemon, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The suite, with the docker CLI's config from the private daemon's environment."""
    for key, value in dockerd.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CI", raising=False)
    return pytester.makepyfile(test_flow=SUITE)


def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon-here.sock")


def test_record_then_replay_without_a_daemon(
    pytester: pytest.Pytester,
    suite: Path,
    dockerd: Daemon,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    recorded = pytester.runpytest_subprocess("--docktap-record-mode=once", "-p", "no:cacheprovider")
    recorded.assert_outcomes(passed=4)
    captures = pytester.path / "captures" / "test_flow"
    assert sorted(p.name for p in captures.rglob("*.jsonl")) == [
        "listing.jsonl",
        "test_cli.jsonl",
        "test_docker_py.jsonl",
        "test_environment.jsonl",
    ]
    assert any(ex.operation == "ContainerCreate" for ex in load(captures / "test_cli.jsonl"))

    _offline(monkeypatch, tmp_path)
    replayed = pytester.runpytest_subprocess("--docktap-record-mode=none")
    replayed.assert_outcomes(passed=4)

    # CI=true means `none` without being told.
    monkeypatch.setenv("CI", "true")
    pytester.runpytest_subprocess().assert_outcomes(passed=4)


def test_a_changed_request_fails_with_the_closest_recording(
    pytester: pytest.Pytester,
    suite: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    pytester.runpytest_subprocess("--docktap-record-mode=once", "-k", "test_cli").assert_outcomes(
        passed=1
    )
    suite.write_text(SUITE.replace("echo CLI-OUT; exit 3", "echo CHANGED; exit 3"))
    _offline(monkeypatch, tmp_path)
    result = pytester.runpytest_subprocess("--docktap-record-mode=none", "-k", "test_cli")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*DocktapReplayMiss: replaying *test_cli.jsonl:*",
            "*docktap replay: no recorded exchange for POST /v1.*/containers/create; "
            "closest: #2, body differs at $.Cmd[[]2]*",
            "*  #2 was: POST /v1.*/containers/create "
            "(`docktap show *test_cli.jsonl --exchange 2`)*",
        ]
    )


def test_strict_fails_on_recordings_never_used(
    pytester: pytest.Pytester,
    suite: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    pytester.runpytest_subprocess("--docktap-record-mode=once", "-k", "named").assert_outcomes(
        passed=1
    )
    suite.write_text(SUITE.replace('    assert docker("volume", "ls").returncode == 0\n', ""))
    _offline(monkeypatch, tmp_path)
    result = pytester.runpytest_subprocess("--docktap-record-mode=none", "-k", "named")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*recording #* never used: GET /v1.*/volumes*"])


def test_none_mode_without_a_capture_fails_clearly(
    pytester: pytest.Pytester, suite: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _offline(monkeypatch, tmp_path)
    result = pytester.runpytest_subprocess("--docktap-record-mode=none", "-k", "test_cli")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*docktap: no capture *test_cli.jsonl to replay (record mode none)*"]
    )


def test_new_episodes_replay_the_old_and_record_the_new(
    pytester: pytest.Pytester, suite: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    captures = pytester.path / "captures" / "test_flow"
    once = pytester.runpytest_subprocess("--docktap-record-mode=once", "-k", "test_cli")
    once.assert_outcomes(passed=1)
    # Nothing new: everything is replayed, no episode is left behind.
    same = pytester.runpytest_subprocess("--docktap-record-mode=new_episodes", "-k", "test_cli")
    same.assert_outcomes(passed=1)
    assert [p.name for p in captures.glob("test_cli*")] == ["test_cli.jsonl"]
    # A new call: it goes to the daemon and into an episode; the old ones are replayed.
    suite.write_text(
        SUITE.replace(
            '    assert (out.returncode, out.stdout) == (3, b"CLI-OUT\\n")\n',
            '    assert (out.returncode, out.stdout) == (3, b"CLI-OUT\\n")\n'
            '    assert docker("volume", "ls").returncode == 0\n',
        )
    )
    new = pytester.runpytest_subprocess("--docktap-record-mode=new_episodes", "-k", "test_cli")
    new.assert_outcomes(passed=1)
    episode = load(captures / "test_cli.2.jsonl")
    assert [ex.operation for ex in episode] == ["VolumeList"]
    # Both together replay the whole test with no daemon.
    _offline(monkeypatch, tmp_path)
    pytester.runpytest_subprocess("--docktap-record-mode=none", "-k", "test_cli").assert_outcomes(
        passed=1
    )


def test_rewrite_starts_over(pytester: pytest.Pytester, suite: Path) -> None:
    captures = pytester.path / "captures" / "test_flow"
    captures.mkdir(parents=True)
    (captures / "test_cli.2.jsonl").write_text("stale")
    pytester.runpytest_subprocess("--docktap-record-mode=rewrite", "-k", "test_cli")
    assert [p.name for p in captures.glob("test_cli*")] == ["test_cli.jsonl"]
    assert any(ex.operation == "ContainerWait" for ex in load(captures / "test_cli.jsonl"))


def _readme_example() -> str:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = readme.index("```python\n# tests/test_hello.py\n") + len("```python\n")
    return readme[start : readme.index("```", start)]


def test_the_readme_example_records_then_replays(
    pytester: pytest.Pytester,
    dockerd: Daemon,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    for key, value in dockerd.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CI", raising=False)
    # The private daemon's busybox image is called bb.
    pytester.makepyfile(test_hello=_readme_example().replace('"busybox"', '"bb"'))
    pytester.runpytest_subprocess().assert_outcomes(passed=3)
    assert (pytester.path / "captures" / "test_hello" / "shared" / "listing.jsonl").exists()
    _offline(monkeypatch, tmp_path)
    monkeypatch.setenv("CI", "true")
    pytester.runpytest_subprocess().assert_outcomes(passed=3)


def test_episodes_are_numbered_after_the_capture_even_with_dots_in_its_name(
    tmp_path: Path,
) -> None:
    from docktap.pytest_plugin import _record_target, episodes

    capture = tmp_path / "test_a_1.5.jsonl"
    for name in (
        "test_a_1.5.jsonl",
        "test_a_1.5.10.jsonl",
        "test_a_1.5.2.jsonl",
        "test_a_1.5.x.jsonl",
    ):
        (tmp_path / name).write_text("")
    assert [p.name for p in episodes(capture)] == [
        "test_a_1.5.jsonl",
        "test_a_1.5.2.jsonl",
        "test_a_1.5.10.jsonl",
    ]
    assert _record_target(capture, "new_episodes").name == "test_a_1.5.11.jsonl"


REDACTED_SUITE = textwrap.dedent(
    """
    import subprocess


    def test_env(docktap):
        out = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", "-e", "MYAPP_CODE=hunter2", "bb",
             "sh", "-c", "echo ran"],
            capture_output=True, timeout=60,
        )
        assert (out.returncode, out.stdout) == (0, b"ran\\n"), out.stderr
    """
)


def test_what_docktap_redact_env_masked_on_record_is_masked_alike_on_replay(
    pytester: pytest.Pytester, dockerd: Daemon, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The capture says which names it masked: replay masks requests the same way, unasked."""
    for key, value in dockerd.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("DOCKTAP_REDACT_ENV", "MYAPP_")
    pytester.makepyfile(test_secret=REDACTED_SUITE)
    pytester.runpytest_subprocess("--docktap-record-mode=once").assert_outcomes(passed=1)
    capture_file = pytester.path / "captures" / "test_secret" / "test_env.jsonl"
    assert b"hunter2" not in capture_file.read_bytes()
    create = one(load(capture_file), "ContainerCreate")
    (env,) = json.loads(bytes(create.request_body))["Env"]
    assert env.startswith("MYAPP_CODE=<redacted")
    assert load(capture_file).header["redact_env"] == ["MYAPP_"]

    _offline(monkeypatch, tmp_path)
    monkeypatch.delenv("DOCKTAP_REDACT_ENV")
    monkeypatch.setenv("CI", "true")
    replayed = pytester.runpytest_subprocess()
    replayed.assert_outcomes(passed=1)


def test_the_readme_example_in_new_episodes_mode_then_under_ci(
    pytester: pytest.Pytester,
    dockerd: Daemon,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A `docker run` the capture lacks goes to the daemon whole (its wait too) and into an
    episode; then the capture and the episode replay it with no daemon."""
    for key, value in dockerd.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CI", raising=False)
    example = _readme_example().replace('"busybox"', '"bb"')
    pytester.makepyfile(test_hello=example)
    episodes_mode = ("--docktap-record-mode=new_episodes", "-k", "test_docker_cli")
    pytester.runpytest_subprocess(*episodes_mode).assert_outcomes(passed=1)
    again = '    assert out.stdout == b"hello\\n"\n'
    assert again in example
    second_run = again + (
        "    out = subprocess.run(\n"
        '        ["docker", "run", "--rm", "--network", "none", "bb",\n'
        '         "sh", "-c", "echo new; exit 3"],\n'
        "        capture_output=True,\n"
        "    )\n"
        '    assert (out.returncode, out.stdout, out.stderr) == (3, b"new\\n", b""), out.stderr\n'
    )
    pytester.makepyfile(test_hello=example.replace(again, second_run, 1))
    pytester.runpytest_subprocess(*episodes_mode).assert_outcomes(passed=1)
    captures = pytester.path / "captures" / "test_hello"
    episode = load(captures / "test_docker_cli.2.jsonl")
    assert "ContainerWait" in [ex.operation for ex in episode]
    _offline(monkeypatch, tmp_path)
    monkeypatch.setenv("CI", "true")
    pytester.runpytest_subprocess("-k", "test_docker_cli").assert_outcomes(passed=1)
