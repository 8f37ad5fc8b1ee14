"""A private sshd on loopback in front of the private dockerd, and an ssh configured for it.

An `ssh://` upstream is only honestly tested through a real ssh login that runs the real
`docker system dial-stdio`. This module starts one OpenSSH server per session, as root may
run it without touching the system's: its own config file, host key and authorized key, on a
free port of 127.0.0.1 only. sshd's `SetEnv` gives every session DOCKER_HOST, so that the
remote `docker` reaches the private daemon (the same machine).

The client side is configured as a user would configure it, never through docktap: ssh reads
`~/.ssh/config` from the password database, not $HOME, so the session's config file comes in
through an `ssh` on PATH that runs the real one with `-F` (with -F ssh reads no other config
and creates no ~/.ssh). Host aliases name the cases: `docker-host` logs in, `stranger` has a
host key ssh does not know, `refused` offers a key the server does not take, and `docker-less`
logs in on a second port whose sessions find no `docker` on their PATH.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT = 30.0
SSHD_BINARY = Path("/usr/sbin/sshd")
# The privilege separation directory compiled into Debian's sshd (the service creates it).
PRIVSEP_DIR = Path("/run/sshd")


class SSHDUnavailable(Exception):
    """The private sshd could not be started; the message says why."""


@dataclass(frozen=True)
class SSHD:
    """A running private sshd and the client configuration that reaches it."""

    port: int
    #: Directory holding the `ssh` that uses :attr:`config`; put it first on PATH.
    bin: Path
    config: Path
    user: str
    process: subprocess.Popen[bytes]
    #: What sshd said on stderr (-e), for failure messages.
    log: list[str]

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """`base` with this session's ssh first on PATH."""
        return dict(base, PATH=f"{self.bin}{os.pathsep}{base.get('PATH', os.defpath)}")


def _keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return path.with_suffix(".pub").read_text().strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(root: Path, docker_host: str, docker_config: Path) -> SSHD:
    """Start sshd under `root`; its sessions get DOCKER_HOST=`docker_host`."""
    ssh = shutil.which("ssh")
    if not SSHD_BINARY.is_file() or ssh is None or shutil.which("ssh-keygen") is None:
        raise SSHDUnavailable("openssh-server and openssh-client are not installed")
    host_key, client_key, other_key = root / "host_key", root / "client_key", root / "other_key"
    host_public = _keygen(host_key)
    (root / "authorized_keys").write_text(_keygen(client_key) + "\n")
    _keygen(other_key)
    port = bare_port = _free_port()
    while bare_port == port:
        bare_port = _free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\n"
        "ListenAddress 127.0.0.1\n"
        f"HostKey {host_key}\n"
        "PidFile none\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\n"
        "StrictModes no\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        f"Port {bare_port}\n"
        f"Match LocalPort {port}\n"
        f"  SetEnv DOCKER_HOST={docker_host} DOCKER_CONFIG={docker_config}\n"
        # A host where docker is not installed, as far as its PATH says.
        f"Match LocalPort {bare_port}\n"
        "  SetEnv PATH=/nonexistent\n"
    )
    (root / "known_hosts").write_text(f"[127.0.0.1]:{port},[127.0.0.1]:{bare_port} {host_public}\n")
    config = root / "ssh_config"
    user = getpass.getuser()
    config.write_text(
        "Host stranger\n"
        "  UserKnownHostsFile /dev/null\n"
        "Host refused\n"
        f"  IdentityFile {other_key}\n"
        "Host docker-less\n"
        f"  Port {bare_port}\n"
        "Host * !refused\n"
        f"  IdentityFile {client_key}\n"
        "Host *\n"
        "  HostName 127.0.0.1\n"
        f"  Port {port}\n"
        f"  User {user}\n"
        "  IdentitiesOnly yes\n"
        "  IdentityAgent none\n"
        f"  UserKnownHostsFile {root / 'known_hosts'}\n"
        "  GlobalKnownHostsFile /dev/null\n"
        "  StrictHostKeyChecking yes\n"
        "  UpdateHostKeys no\n"
        "  BatchMode yes\n"
        "  LogLevel ERROR\n"
    )
    bin_dir = root / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec {ssh} -F {config} "$@"\n')
    wrapper.chmod(0o755)
    if os.geteuid() == 0:
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    process = subprocess.Popen(
        [str(SSHD_BINARY), "-D", "-e", "-f", str(root / "sshd_config")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    log: list[str] = []
    listening = threading.Event()

    def drain() -> None:  # sshd blocks once a full pipe stops its logging
        assert process.stderr is not None
        for raw in process.stderr:
            line = raw.decode(errors="replace").rstrip()
            log.append(line)
            if "Server listening on" in line:
                listening.set()
        listening.set()  # sshd exited: stop waiting

    threading.Thread(target=drain, daemon=True).start()
    if not listening.wait(START_TIMEOUT) or process.poll() is not None:
        process.kill()
        process.wait()
        raise SSHDUnavailable("sshd did not start: " + "\n".join(log[-20:]))
    return SSHD(port, bin_dir, config, user, process, log)


def stop(sshd: SSHD) -> None:
    sshd.process.terminate()
    try:
        sshd.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        sshd.process.kill()
        sshd.process.wait()
