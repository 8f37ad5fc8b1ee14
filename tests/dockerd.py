"""A private, throw-away Docker daemon for the test suite.

docktap sits between a Docker client and the Engine API, so the only honest
end-to-end test is one against a real daemon.  Using the developer's own daemon
would be unsafe (tests create and remove containers) and unreproducible (its
images, settings and version vary), and no registry is reachable in CI, so
nothing may be pulled.  This module therefore starts one ``dockerd`` per test
session in a fresh temporary directory (its own socket, data-root, exec-root
and managed containerd, vfs storage, no bridge and no iptables rules) and
imports a tiny image, ``bb``, built locally from the host's static busybox.

``conftest.py`` wraps :func:`start` / :func:`stop` in the session fixture
``dockerd``; when the daemon cannot be started, :class:`DaemonUnavailable`
carries the reason, which the fixture turns into a skip (or a failure when
``DOCKTAP_REQUIRE_DOCKERD=1``).
"""

from __future__ import annotations

import io
import os
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import tarfile
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

#: Image tag of the locally built busybox image.
IMAGE = "bb"

#: Where Debian's ``busybox-static`` package installs its binary.
BUSYBOX = Path("/bin/busybox")

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
_LOG_TAIL_BYTES = 4000
# Extra directories searched for dockerd, containerd, runc and docker-init:
# they live in sbin directories that a non-login PATH may lack.
_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


class DaemonUnavailable(Exception):
    """The private daemon could not be provided; the message says why."""


class DockerCommandError(subprocess.CalledProcessError):
    """A ``docker`` CLI call failed; unlike the base class, str() shows stderr."""

    def __str__(self) -> str:
        err = self.stderr.decode(errors="replace").strip() if self.stderr else ""
        return f"{super().__str__()}\nstderr: {err}" if err else super().__str__()


@dataclass(frozen=True)
class Daemon:
    """A running private daemon, as handed to tests by the ``dockerd`` fixture."""

    #: Unix socket the daemon listens on.
    socket: Path
    #: ``unix://`` URL of :attr:`socket`, suitable for ``DOCKER_HOST``.
    host: str
    #: Environment for client processes: ``os.environ`` with ``DOCKER_HOST``
    #: set to :attr:`host`, ``DOCKER_CONTEXT`` removed and ``DOCKER_CONFIG``
    #: pointing at a private empty directory.
    env: dict[str, str]
    #: The temporary directory holding everything (``dockerd.log`` included).
    root: Path
    #: Path of the docker CLI used by :meth:`docker`.
    cli: str
    #: Tag of the busybox image available in this daemon.
    image: str = IMAGE
    #: ``tcp://127.0.0.1:PORT`` where the daemon also listens, with TLS, when
    #: started with :class:`ServerTLS`.
    tcp_host: str | None = None

    def docker(
        self,
        *args: str,
        input: bytes | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run the real docker CLI against this daemon and capture its output."""
        argv = [self.cli, *args]
        proc = subprocess.run(
            argv,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise DockerCommandError(proc.returncode, argv, proc.stdout, proc.stderr)
        return proc

    def log_tail(self) -> str:
        """The end of the daemon's log, for failure messages."""
        return _tail(self.root / "dockerd.log")


@dataclass(frozen=True)
class ServerTLS:
    """The daemon's TLS material: it listens on loopback TCP with ``--tlsverify`` too.

    Clients must present a certificate signed by :attr:`ca`.
    """

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class Running:
    """What :func:`stop` needs: the daemon and its process."""

    daemon: Daemon
    process: subprocess.Popen[bytes]


def _which(name: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    return shutil.which(name, path=path)


def _is_static_elf(path: Path) -> bool:
    """True for an ELF executable without a PT_INTERP (dynamic loader) header."""
    try:
        with path.open("rb") as f:
            ident = f.read(64)
            if len(ident) < 64 or ident[:4] != b"\x7fELF":
                return False
            is64 = ident[4] == 2
            order = "<" if ident[5] == 1 else ">"
            if is64:
                phoff, phentsize, phnum = (
                    struct.unpack_from(order + "Q", ident, 32)[0],
                    *struct.unpack_from(order + "HH", ident, 54),
                )
            else:
                phoff, phentsize, phnum = (
                    struct.unpack_from(order + "I", ident, 28)[0],
                    *struct.unpack_from(order + "HH", ident, 42),
                )
            for i in range(phnum):
                f.seek(phoff + i * phentsize)
                header = f.read(4)
                if len(header) < 4:
                    return False
                if struct.unpack(order + "I", header)[0] == 3:  # PT_INTERP
                    return False
            return True
    except OSError:
        return False


def _tail(path: Path, limit: int = _LOG_TAIL_BYTES) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"(no log: {exc})"
    return data[-limit:].decode(errors="replace") if data else "(log is empty)"


def preflight() -> tuple[str, str, Path]:
    """Check the prerequisites; returns the dockerd and docker paths and busybox."""
    if os.geteuid() != 0:
        raise DaemonUnavailable("a private dockerd needs root (tests run as non-root)")
    dockerd = _which("dockerd")
    if dockerd is None:
        raise DaemonUnavailable("no dockerd binary (apt-get install docker.io)")
    cli = _which("docker")
    if cli is None:
        raise DaemonUnavailable("no docker CLI on PATH")
    if not _is_static_elf(BUSYBOX):
        raise DaemonUnavailable(
            f"{BUSYBOX} is missing or not statically linked (apt-get install busybox-static)"
        )
    return dockerd, cli, BUSYBOX


def _ping(sock_path: Path) -> bool:
    """One real ``GET /_ping`` round trip over the daemon's unix socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2.0)
        try:
            s.connect(str(sock_path))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = b""
            while b"\r\n" not in reply:
                chunk = s.recv(1024)
                if not chunk:
                    break
                reply += chunk
        except OSError:
            return False
    status = reply.split(b"\r\n", 1)[0].split()
    return len(status) >= 2 and status[0].startswith(b"HTTP/1.") and status[1] == b"200"


def _client_env(host: str, config_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DOCKER_CONTEXT", None)
    # Settings of the user's client that would change what the CLI talks to.
    for key in ("DOCKER_TLS_VERIFY", "DOCKER_TLS", "DOCKER_CERT_PATH", "DOCKER_API_VERSION"):
        env.pop(key, None)
    env["DOCKER_HOST"] = host
    env["DOCKER_CONFIG"] = str(config_dir)
    return env


def _busybox_tar(busybox: Path) -> bytes:
    """A root filesystem: bin/busybox, a symlink per applet, and an empty tmp/."""
    listing = subprocess.run(
        [str(busybox), "--list"], capture_output=True, check=True, timeout=30
    ).stdout.decode()
    # The list names "busybox" itself: linking it would replace the binary.
    applets = sorted(({a for a in listing.split() if "/" not in a} | {"sh"}) - {"busybox"})
    now = int(time.time())

    def entry(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = kind, mode, now
        return info

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(entry("bin", tarfile.DIRTYPE, 0o755))
        tar.addfile(entry("tmp", tarfile.DIRTYPE, 0o1777))
        binary = entry("bin/busybox", tarfile.REGTYPE, 0o755)
        binary.size = busybox.stat().st_size
        with busybox.open("rb") as f:
            tar.addfile(binary, f)
        for applet in applets:
            link = entry(f"bin/{applet}", tarfile.SYMTYPE, 0o777)
            link.linkname = "busybox"
            tar.addfile(link)
    return buf.getvalue()


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root).rstrip("/") + "/"
    found: list[str] = []
    with suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4:
                point = fields[4].replace("\\040", " ")
                if point.startswith(prefix) or point == prefix.rstrip("/"):
                    found.append(point)
    return found


def _kill_leftovers(root: Path) -> None:
    """SIGKILL processes still tied to ``root`` once dockerd is gone.

    A clean shutdown leaves none.  After a SIGKILL, the managed containerd
    (``--config ROOT/...``) and the runc shims (``-address ROOT/...``) may
    survive, and with them the containers, whose init processes are the shims'
    children: killing a container's init ends its whole PID namespace.
    """
    marker = str(root).encode() + b"/"
    owned: set[int] = set()
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError, ValueError, IndexError):
            if marker in (entry / "cmdline").read_bytes():
                owned.add(int(entry.name))
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    children = {pid for pid, ppid in parents.items() if ppid in owned} - owned
    for pid in [*children, *owned]:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _remove_root(root: Path) -> None:
    """Remove the temp dir, first detaching anything still mounted below it.

    After an unclean stop, shm tmpfs or netns bind mounts can remain under the
    data- and exec-root; rmtree must neither trip on them nor walk into one.
    """
    for point in sorted(_mounts_under(root), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False, timeout=30)
    shutil.rmtree(root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(tls: ServerTLS | None = None) -> Running:
    """Start the daemon, wait for ``/_ping`` and import the busybox image.

    With ``tls``, the daemon also listens on a free loopback port with ``--tlsverify``;
    its unix socket stays (plain, as dockerd keeps unix sockets) for the fixture's own use.
    Each daemon has its own directory for data-root, exec-root, pidfile and managed
    containerd, so several can run at once.
    """
    dockerd, cli, busybox = preflight()
    root = Path(tempfile.mkdtemp(prefix="dt-", dir="/tmp"))
    sock = root / "docker.sock"
    config = root / "config"
    config.mkdir()
    tcp_host = None if tls is None else f"tcp://127.0.0.1:{_free_port()}"
    daemon = Daemon(
        socket=sock,
        host=f"unix://{sock}",
        env=_client_env(f"unix://{sock}", config),
        root=root,
        cli=cli,
        tcp_host=tcp_host,
    )
    # Not root.name: mkdtemp names may end in "_", which containerd rejects.
    namespace = f"docktap-{os.getpid()}-{secrets.token_hex(4)}"
    argv = [
        dockerd,
        "--host", daemon.host,
        "--data-root", str(root / "data"),
        "--exec-root", str(root / "exec"),
        "--pidfile", str(root / "pid"),
        "--storage-driver", "vfs",
        "--iptables=false",
        "--bridge=none",
        # dockerd starts its own containerd (under exec-root), but uses the
        # system one instead when /run/containerd/containerd.sock exists; a
        # namespace of its own then keeps its containers apart from the user's.
        "--containerd-namespace", namespace,
        "--containerd-plugins-namespace", f"{namespace}-plugins",
    ]  # fmt: skip
    if tls is not None:
        argv += [
            "--host", str(tcp_host),
            "--tlsverify",
            "--tlscacert", str(tls.ca),
            "--tlscert", str(tls.cert),
            "--tlskey", str(tls.key),
        ]  # fmt: skip
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([env.get("PATH", ""), *_SBIN])
    # dockerd tells systemd it serves its API by sd_notify: it tells us the same way.
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        notify.bind(str(root / "notify.sock"))
        env["NOTIFY_SOCKET"] = str(root / "notify.sock")
        try:
            with (root / "dockerd.log").open("wb") as log:
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
        except OSError as exc:
            _remove_root(root)
            raise DaemonUnavailable(f"cannot run {dockerd}: {exc}") from exc
        running = Running(daemon, process)
        try:
            _wait_ready(running, notify)
            _import_image(daemon, busybox)
        except BaseException:
            stop(running)
            raise
    finally:
        notify.close()
    return running


def _wait_ready(running: Running, notify: socket.socket) -> None:
    """Until dockerd says READY=1 on `notify` (its sd_notify socket), once its API is served.

    dockerd exiting first (its pidfd becomes readable) is a failure at once; the timeout only
    keeps a daemon that hangs in its start-up from hanging the suite.
    """
    exited = os.pidfd_open(running.process.pid)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([notify.fileno(), exited], [], [], max(0.0, left))
            if exited in ready:
                raise DaemonUnavailable(
                    f"dockerd exited with status {running.process.wait()} during start-up; "
                    "log tail:\n" + running.daemon.log_tail()
                )
            if not ready:
                raise DaemonUnavailable(
                    f"dockerd did not say it was ready within {START_TIMEOUT:.0f}s; log tail:\n"
                    + running.daemon.log_tail()
                )
            if b"READY=1" in notify.recv(4096).split(b"\n"):
                break
    finally:
        os.close(exited)
    # Its listeners were open before it said so: one request is answered, or it is broken.
    if not _ping(running.daemon.socket):
        raise DaemonUnavailable(
            "dockerd said it was ready but did not answer /_ping; log tail:\n"
            + running.daemon.log_tail()
        )


def _import_image(daemon: Daemon, busybox: Path) -> None:
    tar_path = daemon.root / "bb.tar"
    tar_path.write_bytes(_busybox_tar(busybox))
    try:
        daemon.docker("import", "--change", 'CMD ["/bin/sh"]', str(tar_path), daemon.image)
    except (DockerCommandError, subprocess.TimeoutExpired) as exc:
        raise DaemonUnavailable(
            f"cannot import the busybox image: {exc}\ndaemon log tail:\n" + daemon.log_tail()
        ) from exc
    finally:
        tar_path.unlink(missing_ok=True)


def _kill_containers(daemon: Daemon) -> None:
    """Remove running containers with SIGKILL, so that shutting down is quick.

    Otherwise dockerd's shutdown gives each one its stop timeout (10 s).
    """
    with suppress(subprocess.SubprocessError, OSError):
        ids = daemon.docker("ps", "-q", timeout=20).stdout.split()
        if ids:
            daemon.docker("rm", "-f", *(i.decode() for i in ids), check=False, timeout=30)


def stop(running: Running) -> None:
    """SIGTERM the daemon, SIGKILL its process group if it lingers, remove the dir."""
    process = running.process
    if process.poll() is None:
        _kill_containers(running.daemon)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            # dockerd leads its own process group (start_new_session).
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_TIMEOUT)
    _kill_leftovers(running.daemon.root)
    _remove_root(running.daemon.root)
