"""Finding the daemon the way the docker CLI does: flag, DOCKER_HOST, context, default; and TLS."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from docktap.upstream import (
    DEFAULT_SOCKET,
    Endpoint,
    EndpointError,
    SSHTarget,
    TLSOptions,
    TLSSettings,
    parse_endpoint,
    resolve_upstream,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unix:///var/run/docker.sock", Endpoint(path="/var/run/docker.sock")),
        ("/tmp/d.sock", Endpoint(path="/tmp/d.sock")),
        ("tcp://127.0.0.1:2375", Endpoint(host="127.0.0.1", port=2375)),
        ("tcp://localhost", Endpoint(host="localhost", port=2375)),
        ("http://127.0.0.1:8080", Endpoint(host="127.0.0.1", port=8080)),
        ("ssh://box", Endpoint(ssh=SSHTarget("box"))),
        ("ssh://me@box:2222", Endpoint(ssh=SSHTarget("box", "me", 2222))),
        ("ssh://me@[::1]:22/run/d.sock", Endpoint(ssh=SSHTarget("::1", "me", 22, "/run/d.sock"))),
        ("ssh://box/", Endpoint(ssh=SSHTarget("box"))),  # a bare slash is no socket path
    ],
)
def test_parse_endpoint(text: str, expected: Endpoint) -> None:
    assert parse_endpoint(text) == expected
    assert parse_endpoint(expected.url) == expected


@pytest.mark.parametrize(
    "text",
    [
        "unix:///var/run/docker.sock",
        "unix:////two/slashes.sock",
        "unix:///with space/d.sock",
        "unix:///d.sock ",
        " unix:///d.sock",
        "unix:///d\t.sock",
        "unix:///d.sock\n",
        "unix:///d.sock?query",
        "unix:///d.sock#fragment",
        "unix:///dé.sock",
        "unix:///d\u3000.sock",
        "UNIX:///d.sock",
        "unix://relative.sock",
        "unix://host/d.sock",
    ],
)
def test_a_unix_url_is_read_as_urlsplit_reads_it(text: str) -> None:
    """`unix:///path` is read without urllib.parse where it can be (upstream._plain): the
    same socket path as urlsplit's reading, whichever way it was read."""
    parts = urlsplit(text)
    assert parse_endpoint(text) == Endpoint(path=parts.path or parts.netloc)


@pytest.mark.parametrize(
    "text",
    [
        "unix://",
        "tcp://:12",
        "tcp://h:notaport",
        # As the docker CLI refuses them: no host, a password, a query, a fragment.
        "ssh://",
        "ssh://me:secret@host",
        "ssh://host?x=1",
        "ssh://host#here",
        "ssh://host:notaport",
        "wss://host",
    ],
)
def test_parse_endpoint_rejects(text: str) -> None:
    with pytest.raises(EndpointError):
        parse_endpoint(text)


def _context(config: Path, name: str, host: str) -> None:
    meta = config / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(
        json.dumps({"Name": name, "Endpoints": {"docker": {"Host": host}}})
    )


def test_resolution_order(tmp_path: Path) -> None:
    config = tmp_path / "docker-config"
    config.mkdir()
    _context(config, "remote", "unix:///from/context.sock")
    (config / "config.json").write_text(json.dumps({"currentContext": "remote"}))
    env = {"DOCKER_CONFIG": str(config)}

    assert resolve_upstream(None, env) == Endpoint(path="/from/context.sock")
    with_host = dict(env, DOCKER_HOST="unix:///from/env.sock")
    assert resolve_upstream(None, with_host) == Endpoint(path="/from/env.sock")
    assert resolve_upstream("tcp://127.0.0.1:1", with_host) == Endpoint(host="127.0.0.1", port=1)


def test_docker_context_variable_beats_the_config_file(tmp_path: Path) -> None:
    _context(tmp_path, "other", "unix:///other.sock")
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "missing"}))
    env = {"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "other"}
    assert resolve_upstream(None, env) == Endpoint(path="/other.sock")


def test_a_context_that_is_not_there_is_an_error_as_for_the_docker_cli(tmp_path: Path) -> None:
    """The CLI fails ("context not found"); falling back to the default socket would relay to
    another daemon than the one chosen."""
    with pytest.raises(EndpointError, match=r'docker context "nosuch" not found: .*meta\.json'):
        resolve_upstream(None, {"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "nosuch"})
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "gone"}))
    with pytest.raises(EndpointError, match='docker context "gone" not found'):
        resolve_upstream(None, {"DOCKER_CONFIG": str(tmp_path)})


def test_a_context_that_cannot_be_read_is_an_error(tmp_path: Path) -> None:
    meta = tmp_path / "contexts" / "meta" / hashlib.sha256(b"bad").hexdigest()
    meta.mkdir(parents=True)
    env = {"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "bad"}
    (meta / "meta.json").write_text("{bad")
    with pytest.raises(EndpointError, match=r'docker context "bad": .* is not JSON'):
        resolve_upstream(None, env)
    (meta / "meta.json").write_text(json.dumps({"Name": "bad", "Endpoints": {}}))
    with pytest.raises(EndpointError, match='docker context "bad" names no docker endpoint'):
        resolve_upstream(None, env)


def test_default_socket_when_nothing_is_configured(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "default"}))
    assert resolve_upstream(None, {"DOCKER_CONFIG": str(tmp_path)}) == Endpoint(path=DEFAULT_SOCKET)
    assert resolve_upstream(None, {"HOME": str(tmp_path / "nohome")}) == Endpoint(
        path=DEFAULT_SOCKET
    )


#: Both docker CLIs of this machine: each trims -H and DOCKER_HOST the same way.
CLIS = ("/usr/local/bin/docker", "/usr/bin/docker")
#: The spaces Go's strings.TrimSpace takes off, and one Python's str.strip() would take too.
_AROUND = [(" ", " "), ("\t", "\n"), ("\xa0", "\u3000"), ("\r\v", "\u2028\x85")]


@pytest.mark.parametrize(("before", "after"), _AROUND)
def test_docker_host_and_the_explicit_url_are_trimmed_as_the_docker_cli_trims_them(
    tmp_path: Path, before: str, after: str
) -> None:
    url = f"{before}unix:///d.sock{after}"
    env = {"DOCKER_CONFIG": str(tmp_path), "DOCKER_HOST": url}
    assert resolve_upstream(None, env) == Endpoint(path="/d.sock")
    assert resolve_upstream(url, {"DOCKER_CONFIG": str(tmp_path)}) == Endpoint(path="/d.sock")
    tcp = f"{before}{TCP}{after}"
    assert resolve_upstream(tcp, {}) == Endpoint(host="daemon.example", port=2376)


def test_a_blank_docker_host_is_the_default_daemon_not_the_context(tmp_path: Path) -> None:
    """Blank once trimmed, DOCKER_HOST (or -H) still counts as given: the CLI skips the
    current context and takes its default daemon, on TCP with TLS when TLS is asked for."""
    _context(tmp_path, "remote", "unix:///from/context.sock")
    env = {"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "remote", "DOCKER_HOST": " \t"}
    assert resolve_upstream(None, env) == Endpoint(path=DEFAULT_SOCKET)
    assert resolve_upstream("\n", {"DOCKER_CONFIG": str(tmp_path)}) == Endpoint(path=DEFAULT_SOCKET)
    tls = dict(env, DOCKER_TLS="1")
    assert resolve_upstream(None, tls) == Endpoint(
        host="localhost", port=2376, tls=TLSSettings(False)
    )
    nothing = {"DOCKER_CONFIG": str(tmp_path), "DOCKER_TLS": "1"}
    assert resolve_upstream(None, nothing) == resolve_upstream(None, tls)


@pytest.mark.parametrize("url", ["unix:///d.sock\x1c", "unix:///d\t.sock", "unix:///d.s\x7fock"])
def test_a_control_character_left_after_trimming_is_refused(url: str) -> None:
    """Go's url.Parse refuses it, where urllib.parse would drop a tab and read another path;
    U+001C is no space to Go, though str.strip() would take it off."""
    with pytest.raises(EndpointError, match="invalid control character"):
        resolve_upstream(None, {"DOCKER_HOST": url})


def _cli_daemon(cli: str, env: dict[str, str], flag: str | None = None) -> str | None:
    """The daemon URL the docker CLI names when it cannot reach it (given `flag` as -H, or
    else DOCKER_HOST), or None when it refused the URL itself."""
    proc = subprocess.run(
        [
            cli,
            *(["-H", flag] if flag is not None else []),
            "version",
            "--format",
            "{{.Server.Version}}",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode != 0, proc.stdout
    found = re.search(r"Cannot connect to the Docker daemon at (\S+?)\. ", proc.stderr)
    if found is None:
        assert _REFUSED.search(proc.stderr), proc.stderr
        return None
    return found.group(1)


#: How the CLIs refuse a daemon URL (20.10 capitalises some of these).
_REFUSED = re.compile(
    r"invalid control character|invalid bind address format|invalid proto|invalid port", re.I
)


@pytest.mark.skipif(not all(os.path.isfile(cli) for cli in CLIS), reason="needs both docker CLIs")
@pytest.mark.parametrize("cli", CLIS)
@pytest.mark.parametrize(
    "host",
    [
        "unix://{sock} ",
        " \tunix://{sock}\n",
        "\xa0unix://{sock}\u3000",
        "  ",
        "unix://{sock}\x1c",
        # A scheme with nothing after it is the default of its kind.
        "unix://",
        "tcp://",
        "tcp://:",
        # No scheme is TCP; a host or port left out is localhost's, 2375.
        "127.0.0.1:1",
        "localhost:1",
        ":1",
        "::1",
        "tcp://[::1]:",
        "tcp://:1",
        "tcp://me@127.0.0.1:1",
        "tcp://tcp://127.0.0.1:1",
        "unix://unix://{sock}",
        "{sock}",  # tcp://localhost:2375 under the socket's path
        # Refused.
        "[::1]",
        "http://127.0.0.1:1",
        "tcp://127.0.0.1:abc",
        "a://b://c",
        "://x",
        "unix://a://b",
    ],
)
def test_the_daemon_is_the_one_the_real_docker_cli_names(
    tmp_path: Path, cli: str, host: str
) -> None:
    """Each CLI, given a DOCKER_HOST or -H where no daemon listens, says which daemon it
    tried; docktap's --upstream reads a -H with a scheme the same way."""
    _context(tmp_path, "remote", "unix:///from/context.sock")
    docker_host = host.format(sock=tmp_path / "none.sock")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DOCKER_CONFIG": str(tmp_path),
        "DOCKER_CONTEXT": "remote",
        "DOCKER_HOST": docker_host,
    }
    named = _cli_daemon(cli, env)
    if named is None:
        with pytest.raises(EndpointError):
            resolve_upstream(None, env)
    elif urlsplit(named).path.strip("/") and named.startswith("tcp://"):
        # The CLI would ask for its API below that path; docktap says so and relays nowhere.
        with pytest.raises(EndpointError, match=re.escape(named)):
            resolve_upstream(None, env)
    else:
        assert resolve_upstream(None, env).url == named
    if "://" in docker_host:  # --upstream reads a -H with a scheme as the CLI does
        assert _cli_daemon(cli, env, flag=docker_host) == named
        assert _reading(docker_host, env) == _reading(None, env)


@pytest.mark.skipif(not all(os.path.isfile(cli) for cli in CLIS), reason="needs both docker CLIs")
def test_an_empty_docker_host_leaves_the_daemon_to_the_context_as_the_cli_28_does(
    tmp_path: Path,
) -> None:
    """Set but empty, DOCKER_HOST is no host to the CLI 28, which takes the context; the CLI
    20.10 takes it as given, and its default socket. docktap follows the current CLI."""
    _context(tmp_path, "remote", "unix:///from/context.sock")
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "remote"}))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    env |= {"DOCKER_CONFIG": str(tmp_path), "DOCKER_HOST": ""}
    assert _cli_daemon("/usr/bin/docker", env) == f"unix://{DEFAULT_SOCKET}"
    assert _cli_daemon("/usr/local/bin/docker", env) == "unix:///from/context.sock"
    assert resolve_upstream(None, env).url == "unix:///from/context.sock"


def test_upstream_reads_a_value_with_no_scheme_as_a_socket_path_unlike_docker_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docktap's own --upstream takes a path, as --listen does; DOCKER_HOST is the CLI's."""
    monkeypatch.chdir(tmp_path)
    env = {"DOCKER_CONFIG": str(tmp_path)}
    assert resolve_upstream("localhost:1", env) == Endpoint(path=str(tmp_path / "localhost:1"))
    assert resolve_upstream(" /d.sock\n", env) == Endpoint(path="/d.sock")
    assert resolve_upstream(None, {**env, "DOCKER_HOST": "localhost:1"}) == Endpoint(
        host="localhost", port=1
    )
    # With TLS asked for, a port left out is still 2375: only a blank host is 2376.
    tls = {**env, "DOCKER_TLS_VERIFY": "1", "DOCKER_HOST": "tcp://"}
    assert resolve_upstream(None, tls).port == 2375
    assert resolve_upstream("tcp://h", tls).port == 2375


def _reading(explicit: str | None, env: dict[str, str]) -> str:
    """The daemon docktap relays to, or that it refuses to."""
    try:
        return resolve_upstream(explicit, env).url
    except EndpointError:
        return "refused"


def test_port_zero_is_kept_for_listeners_and_a_missing_port_is_dockers() -> None:
    assert parse_endpoint("tcp://127.0.0.1:0").port == 0
    assert parse_endpoint("tcp://127.0.0.1").port == 2375


def _certs(directory: Path, *names: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_text("PEM")
    return directory


TCP = "tcp://daemon.example:2376"


@pytest.mark.parametrize("value", ["1", "0", "false", "yes"])
def test_docker_tls_verify_set_to_anything_verifies(tmp_path: Path, value: str) -> None:
    certs = _certs(tmp_path / "certs", "ca.pem", "cert.pem", "key.pem")
    env = {"DOCKER_HOST": TCP, "DOCKER_TLS_VERIFY": value, "DOCKER_CERT_PATH": str(certs)}
    assert resolve_upstream(None, env) == Endpoint(
        host="daemon.example",
        port=2376,
        tls=TLSSettings(
            True, str(certs / "ca.pem"), str(certs / "cert.pem"), str(certs / "key.pem")
        ),
    )


def test_no_tls_unless_asked(tmp_path: Path) -> None:
    env = {"DOCKER_HOST": TCP, "DOCKER_TLS_VERIFY": "", "DOCKER_CERT_PATH": str(tmp_path)}
    assert resolve_upstream(None, env).tls is None


def test_docker_tls_encrypts_without_verifying_nor_reading_the_ca(tmp_path: Path) -> None:
    config = _certs(tmp_path / "config", "ca.pem")  # no client certificate there
    env = {"DOCKER_HOST": TCP, "DOCKER_TLS": "1", "DOCKER_CONFIG": str(config)}
    assert resolve_upstream(None, env).tls == TLSSettings(False)


def test_cert_path_defaults_to_the_docker_config_directory(tmp_path: Path) -> None:
    config = _certs(tmp_path / "config", "cert.pem", "key.pem")
    env = {"DOCKER_HOST": TCP, "DOCKER_TLS_VERIFY": "1", "DOCKER_CONFIG": str(config)}
    # The CA is read when connecting, so a missing one is said then, with its path.
    assert resolve_upstream(None, env).tls == TLSSettings(
        True, str(config / "ca.pem"), str(config / "cert.pem"), str(config / "key.pem")
    )


def test_options_as_the_docker_cli_names_them(tmp_path: Path) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path), "DOCKER_TLS_VERIFY": "1"}
    given = TLSOptions(ca="/my/ca.pem", cert="/my/cert.pem", key="/my/key.pem")
    assert resolve_upstream(TCP, env, given).tls == TLSSettings(
        True, "/my/ca.pem", "/my/cert.pem", "/my/key.pem"
    )
    # --no-tlsverify turns TLS on, unchecked; --upstream-tls alone (the CLI's --tls) too.
    assert resolve_upstream(TCP, env, TLSOptions(verify=False)).tls == TLSSettings(False)
    assert resolve_upstream(TCP, {}, TLSOptions(tls=True)).tls == TLSSettings(False)
    home = {"HOME": str(tmp_path / "home")}
    assert resolve_upstream(TCP, home, TLSOptions(verify=True)).tls == TLSSettings(
        True, str(tmp_path / "home" / ".docker" / "ca.pem")
    )


def test_a_certificate_needs_its_key(tmp_path: Path) -> None:
    # As for the CLI, naming files alone does not turn TLS on.
    assert (
        resolve_upstream(TCP, {"DOCKER_CONFIG": str(tmp_path)}, TLSOptions(cert="/c")).tls is None
    )
    with pytest.raises(EndpointError, match="needs its key"):
        resolve_upstream(TCP, {"DOCKER_CONFIG": str(tmp_path)}, TLSOptions(True, cert="/c.pem"))


def test_tls_is_for_tcp_daemons_only(tmp_path: Path) -> None:
    env = {"DOCKER_HOST": "unix:///d.sock", "DOCKER_TLS_VERIFY": "1"}
    assert resolve_upstream(None, env) == Endpoint(path="/d.sock")  # as the CLI: ignored
    with pytest.raises(EndpointError, match="tcp://"):
        resolve_upstream(None, env, TLSOptions(verify=True))
    ssh = {"DOCKER_HOST": "ssh://box", "DOCKER_TLS_VERIFY": "1"}
    assert resolve_upstream(None, ssh) == Endpoint(ssh=SSHTarget("box"))
    with pytest.raises(EndpointError, match="tcp://"):
        resolve_upstream(None, ssh, TLSOptions(tls=True))


def test_a_context_with_an_ssh_endpoint(tmp_path: Path) -> None:
    _context(tmp_path, "remote", "ssh://me@box")
    env = {"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "remote", "DOCKER_TLS": "1"}
    assert resolve_upstream(None, env) == Endpoint(ssh=SSHTarget("box", "me"))


def _tls_context(config: Path, name: str, skip: bool, *files: str) -> Path:
    meta = config / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    endpoint = {"Host": TCP, "SkipTLSVerify": skip}
    (meta / "meta.json").write_text(json.dumps({"Name": name, "Endpoints": {"docker": endpoint}}))
    tls = config / "contexts" / "tls" / hashlib.sha256(name.encode()).hexdigest() / "docker"
    return _certs(tls, *files) if files else tls


def test_a_context_brings_its_own_tls_material(tmp_path: Path) -> None:
    tls = _tls_context(tmp_path, "remote", False, "ca.pem", "cert.pem", "key.pem")
    # The context's material, not DOCKER_CERT_PATH's: the CLI reads these only for DOCKER_HOST.
    env = {"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "remote", "DOCKER_TLS": "1"}
    assert resolve_upstream(None, env).tls == TLSSettings(
        True, str(tls / "ca.pem"), str(tls / "cert.pem"), str(tls / "key.pem")
    )


def test_a_context_without_a_ca_trusts_the_system_and_may_skip_verifying(tmp_path: Path) -> None:
    _tls_context(tmp_path, "public", False, "cert.pem")  # a certificate without its key
    env = {"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "public"}
    assert resolve_upstream(None, env).tls == TLSSettings(True)
    _tls_context(tmp_path, "lax", True)
    env["DOCKER_CONTEXT"] = "lax"
    assert resolve_upstream(None, env).tls == TLSSettings(False)


def test_a_context_without_tls_is_plain(tmp_path: Path) -> None:
    _context(tmp_path, "plain", TCP)
    env = {"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "plain"}
    assert resolve_upstream(None, env).tls is None


def test_a_bare_relative_path_is_a_socket_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_endpoint("tap.sock") == Endpoint(path=str(tmp_path / "tap.sock"))
    assert parse_endpoint("sub/tap.sock") == Endpoint(path=str(tmp_path / "sub" / "tap.sock"))
