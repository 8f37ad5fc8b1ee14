"""The private daemon fixture works: the CLI reaches it and containers run."""

from __future__ import annotations

from dockerd import Daemon


def test_docker_version(dockerd: Daemon) -> None:
    proc = dockerd.docker("version", "--format", "{{.Server.Version}}")
    assert proc.stdout.strip()


def test_run_separates_streams_and_exit_code(dockerd: Daemon) -> None:
    proc = dockerd.docker(
        "run", "--rm", "--network", "none", dockerd.image,
        "sh", "-c", "echo out; echo err >&2; exit 3",
        check=False,
    )  # fmt: skip
    assert (proc.stdout, proc.stderr, proc.returncode) == (b"out\n", b"err\n", 3)
