"""Where sockets live: parsing endpoint URLs and finding the Docker daemon the user means.

The daemon is found the way the docker CLI finds it, so that `docktap run -- docker ...` talks to
the same daemon the bare command would: an explicit URL, then DOCKER_HOST, then the endpoint of
the current docker context, then the default socket. How to speak to a `tcp://` daemon (plain
text, or TLS with which certificates) is decided as the CLI decides it too: from its options
(`--tlsverify`, `--tlscacert`, ...), DOCKER_TLS_VERIFY, DOCKER_TLS and DOCKER_CERT_PATH for a
URL or DOCKER_HOST, from the context's own TLS material for a context. An
`ssh://[user@]host[:port][/socket]` daemon is reached as the CLI reaches it, through the user's
own ssh (docktap.sshlink).

Only paths are resolved here; the certificates are read, and ssl imported, when docktap first
connects (docktap.connecting).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

# pathlib is for a bare path, a context and TLS material, urllib.parse for a URL that is more
# than `unix:///path`: a unix:// DOCKER_HOST, what `run` mostly starts with, needs none of them
# (4 ms of CPU, their imports included, not spent before the command starts).
if TYPE_CHECKING:
    from pathlib import Path
    from urllib.parse import SplitResult

DEFAULT_SOCKET = "/var/run/docker.sock"
#: The docker CLI's daemon when it is to speak TLS and is given no host (nor a context).
DEFAULT_TLS_HOST = "tcp://localhost:2376"
#: What the docker CLI puts in a tcp:// daemon URL for a host or port left out (any TLS).
_DEFAULT_TCP_HOST, _DEFAULT_TCP_PORT = "localhost", "2375"
#: What Go's strings.TrimSpace takes off both ends of a string (unicode.IsSpace), as the
#: docker CLI does to -H and DOCKER_HOST. Python's str.strip() would take U+001C..U+001F too,
#: which the CLI keeps, and then refuses as control characters in a URL.
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
# The files the docker CLI looks for in DOCKER_CERT_PATH, and in a context's TLS directory.
CA_FILE, CERT_FILE, KEY_FILE = "ca.pem", "cert.pem", "key.pem"


class EndpointError(ValueError):
    """An endpoint URL docktap cannot use."""


class UpstreamError(OSError):
    """Connecting to the daemon failed; `strerror` says why, in words for people.

    `lasting`: the daemon will answer the same way every time (it refuses our certificate).
    """

    def __init__(self, reason: str, lasting: bool = False) -> None:
        super().__init__(0, reason)
        self.lasting = lasting


class TLSSettings(NamedTuple):
    """How to speak TLS to a tcp:// daemon: whom to trust, and which certificate to present."""

    verify: bool  # check the daemon's certificate and name; False: encrypt only
    ca: str | None = None  # trusted CAs (PEM); None: the system's, when verifying
    cert: str | None = None  # the client certificate presented, with its key
    key: str | None = None


class TLSOptions(NamedTuple):
    """What was asked for on docktap's command line, named as the docker CLI names it."""

    tls: bool = False  # --upstream-tls, the CLI's --tls: TLS, verified only with tlsverify
    verify: bool | None = None  # --tlsverify / --no-tlsverify; None: DOCKER_TLS_VERIFY decides
    ca: str | None = None  # --tlscacert
    cert: str | None = None  # --tlscert
    key: str | None = None  # --tlskey

    @property
    def given(self) -> bool:
        return self.tls or self.verify is not None or any((self.ca, self.cert, self.key))


class SSHTarget(NamedTuple):
    """Where ssh logs in to reach a daemon: `ssh://[user@]host[:port][/path/to/socket]`."""

    host: str
    user: str | None = None
    port: int | None = None
    socket: str | None = None  # the remote daemon's socket; None: the remote CLI's default

    @property
    def url(self) -> str:
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        return f"ssh://{user}{host}{port}{self.socket or ''}"


class Endpoint(NamedTuple):
    """A unix socket path, a TCP host and port (for a daemon over TCP, its TLS), or ssh."""

    path: str | None = None
    host: str | None = None
    port: int | None = None
    tls: TLSSettings | None = None
    ssh: SSHTarget | None = None
    # Why docktap must not relay to it, found when it first looked (see docktap.connecting):
    # each client is answered 502 with this instead.
    unusable: str | None = None

    @property
    def url(self) -> str:
        if self.ssh is not None:
            return self.ssh.url
        if self.path is not None:
            return f"unix://{self.path}"
        return f"tcp://{_join_host_port(str(self.host), str(self.port))}"

    def __str__(self) -> str:
        return self.url


def _host_and_port(parts: SplitResult, text: str) -> tuple[str, int | None]:
    """The URL's host, which it must have, and its port, if it names one."""
    if not parts.hostname:
        raise EndpointError(f"no host in {text!r}")
    try:
        return parts.hostname, parts.port
    except ValueError as exc:
        raise EndpointError(f"bad port in {text!r}") from exc


def _ssh_target(text: str) -> SSHTarget:
    """An ssh:// URL, refused where the docker CLI refuses it (a password, a query, no host)."""
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.password is not None:
        raise EndpointError(f"no password in {text!r}: ssh asks for one, or use a key")
    if parts.query or parts.fragment:
        raise EndpointError(f"no query or fragment in an ssh URL: {text!r}")
    host, port = _host_and_port(parts, text)
    socket = parts.path if parts.path.strip("/") else None
    return SSHTarget(host, parts.username or None, port, socket)


#: How a unix:// URL with an absolute path begins.
_UNIX = "unix:///"


def _plain(url: str) -> bool:
    """Whether urlsplit reads `url` as it is written: no query or fragment to split off, no
    tab, newline or other control character to remove, no space at its end (left to
    urlsplit to read). Its path is then all after the scheme and the empty authority."""
    return url.isprintable() and not url.endswith(" ") and "?" not in url and "#" not in url


def parse_endpoint(text: str) -> Endpoint:
    """`unix:///path`, a bare path (`tap.sock` too), `tcp://host:port` (also `http://`), or
    `ssh://[user@]host`."""
    if "://" not in text:
        from pathlib import Path

        return Endpoint(path=str(Path(text).absolute()))
    if text.startswith(_UNIX) and _plain(text):
        return Endpoint(path=text[len(_UNIX) - 1 :])  # as urlsplit reads it (see _plain)
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme == "unix":
        path = parts.path or parts.netloc
        if not path:
            raise EndpointError(f"no socket path in {text!r}")
        return Endpoint(path=path)
    if parts.scheme in ("tcp", "http"):
        host, port = _host_and_port(parts, text)
        # Port 0 is meaningful to a listener (any free port); only a missing port is 2375.
        return Endpoint(host=host, port=2375 if port is None else port)
    if parts.scheme == "ssh":
        return Endpoint(ssh=_ssh_target(text))
    raise EndpointError(
        f"unsupported endpoint {text!r}: use unix:///path/to/socket, a path, tcp://host:port "
        "or ssh://[user@]host[:port]"
    )


def _docker_config_dir(env: Mapping[str, str]) -> str:
    """The docker CLI's configuration directory. A path string, not a Path: a run with no
    DOCKER_HOST reads config.json from here, and pathlib (urllib.parse and ipaddress with it)
    would cost that common start-up 3 ms of CPU before the command starts."""
    configured = env.get("DOCKER_CONFIG")
    if configured:
        return configured
    return os.path.join(os.path.expanduser(env.get("HOME", "~")), ".docker")


class _Context(NamedTuple):
    """The docker endpoint of a named context: its URL and its TLS material."""

    host: str
    skip_tls_verify: bool
    tls_dir: Path  # ca.pem, cert.pem, key.pem, when the context has any


def _current_context(env: Mapping[str, str]) -> _Context | None:
    """The docker endpoint of the current docker context, when one other than `default` is set.

    A context named but not there, or not readable, is an error, as the docker CLI makes it:
    relaying to the default socket instead would record and act on another daemon than the
    one the user chose.
    """
    name = env.get("DOCKER_CONTEXT")
    if not name:
        try:
            with open(os.path.join(_docker_config_dir(env), "config.json"), "rb") as config:
                name = json.loads(config.read()).get("currentContext")
        except (OSError, ValueError, AttributeError):
            return None
    if not name or name == "default":
        return None
    from pathlib import Path

    config_dir = Path(_docker_config_dir(env))
    # The CLI's context store names each context's directories by the digest of its name.
    import hashlib  # here: most start-ups have no context to look up

    digest = hashlib.sha256(name.encode()).hexdigest()
    contexts = config_dir / "contexts"
    meta = contexts / "meta" / digest / "meta.json"
    try:
        docker: Any = json.loads(meta.read_text())
    except OSError as exc:
        raise EndpointError(
            f'docker context "{name}" not found: cannot read {meta}: {exc.strerror}'
        ) from exc
    except ValueError as exc:
        raise EndpointError(f'docker context "{name}": {meta} is not JSON: {exc}') from exc
    try:
        docker = docker["Endpoints"]["docker"]
        host = docker["Host"]
    except (KeyError, TypeError):
        host = None
    if not isinstance(host, str):
        raise EndpointError(f'docker context "{name}" names no docker endpoint ({meta})')
    skip = docker.get("SkipTLSVerify") is True
    return _Context(host, skip, contexts / "tls" / digest / "docker")


def _existing(path: Path) -> str | None:
    return str(path) if path.is_file() else None


def _pair(cert: str | None, key: str | None) -> tuple[str | None, str | None]:
    if (cert is None) != (key is None):
        given, missing = ("certificate", "key") if key is None else ("key", "certificate")
        raise EndpointError(
            f"a TLS client {given} ({cert or key}) needs its {missing} too (--tlscert, --tlskey)"
        )
    return cert, key


def _tls_wanted(options: TLSOptions, env: Mapping[str, str]) -> bool:
    """Whether the CLI speaks TLS to a daemon named by -H or DOCKER_HOST: --tls or
    DOCKER_TLS, --tlsverify given either way, DOCKER_TLS_VERIFY set to anything."""
    return bool(
        options.tls
        or options.verify is not None
        or env.get("DOCKER_TLS_VERIFY")
        or env.get("DOCKER_TLS")
    )


def _trimmed(given: str) -> str:
    """A -H or DOCKER_HOST with the spaces around it trimmed, as the docker CLI trims it. A
    control character left in it is refused, as Go's url.Parse refuses it: urllib.parse would
    drop a tab or a newline and relay to a socket the CLI never names."""
    host = given.strip(_GO_SPACE)
    if any(c < " " or c == "\x7f" for c in host):
        raise EndpointError(f"invalid control character in daemon URL {host!r}")
    return host


def _split_host_port(hostport: str) -> tuple[str, str] | None:
    """Go's net.SplitHostPort: `host:port` or `[host]:port`; None where Go gives an error."""
    colon = hostport.rfind(":")
    if colon < 0:
        return None
    start, end = 0, 0
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0 or close + 1 != colon:
            return None
        host, start, end = hostport[1:close], 1, close + 1
    else:
        host = hostport[:colon]
        if ":" in host:
            return None
    if "[" in hostport[start:] or "]" in hostport[end:]:
        return None
    return host, hostport[colon + 1 :]


def _join_host_port(host: str, port: str) -> str:
    """Go's net.JoinHostPort."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _tcp_host(given: str) -> str:
    """The docker CLI's opts.ParseTCPAddr, against its default tcp://localhost:2375: a host or
    port left out is the default's, `tcp://` alone is the default, and the URL's path stays.
    What Go's url.Parse refuses in the port, and net.SplitHostPort in the rest, is refused."""
    if given in ("", "tcp://"):
        return f"tcp://{_DEFAULT_TCP_HOST}:{_DEFAULT_TCP_PORT}"
    addr = given.removeprefix("tcp://")
    if "://" in addr or not addr:
        raise EndpointError(f"invalid proto, expected tcp: {given}")
    if addr.endswith("]:"):
        addr += _DEFAULT_TCP_PORT
    # url.Parse("tcp://" + addr): the authority runs to the first `/` once `#...` and `?...`
    # are cut off, the host is what follows its last `@`, and the port must be digits.
    addr = addr.partition("#")[0].partition("?")[0]
    authority, slash, path = addr.partition("/")
    hostport = authority.rpartition("@")[2]
    if hostport.startswith("["):
        close = hostport.rfind("]")
        if close < 0:
            raise EndpointError(f"missing ']' in daemon URL {given!r}")
        colon_port = hostport[close + 1 :]
    else:
        colon_port = hostport[hostport.rfind(":") :] if ":" in hostport else ""
    if colon_port and (colon_port[0] != ":" or colon_port[1:].strip("0123456789")):
        raise EndpointError(f"invalid port {colon_port!r} after host in daemon URL {given!r}")
    split = _split_host_port(hostport)
    if split is None:
        split = _split_host_port(_join_host_port(hostport, _DEFAULT_TCP_PORT))
    if split is None:
        raise EndpointError(f"invalid bind address format: {given}")
    host, port = split
    joined = _join_host_port(host or _DEFAULT_TCP_HOST, port or _DEFAULT_TCP_PORT)
    return f"tcp://{joined}{slash}{path}"


def _simple_host(scheme: str, given: str, default: str) -> str:
    """The docker CLI's opts.parseSimpleProtoAddr: `unix://` alone is the default socket."""
    addr = given.removeprefix(f"{scheme}://")
    if "://" in addr:
        raise EndpointError(f"invalid proto, expected {scheme}: {addr}")
    return f"{scheme}://{addr or default}"


def _host(given: str, tls: bool) -> str:
    """The daemon's URL as the docker CLI reads a -H or DOCKER_HOST (opts.ParseHost, the same
    in 20.10 and 28): trimmed (`_trimmed`), blank meaning the default daemon, a value with no
    scheme a TCP address (`localhost:2375`, `:2375`, even `/var/run/docker.sock`, which the
    CLI reads as tcp://localhost:2375/var/run/docker.sock), a scheme with nothing after it
    the default of its kind (unix:///var/run/docker.sock, tcp://localhost:2375)."""
    host = _trimmed(given)
    if not host:
        return DEFAULT_TLS_HOST if tls else f"unix://{DEFAULT_SOCKET}"
    scheme, has_scheme, rest = host.partition("://")
    if not has_scheme:
        scheme, rest = "tcp", host
    if scheme == "tcp":
        return _tcp_host(rest)
    if scheme == "unix":
        return _simple_host("unix", rest, DEFAULT_SOCKET)
    if scheme == "ssh":
        return host
    if scheme in ("npipe", "fd"):
        raise EndpointError(f"docktap cannot relay to {host!r}: {scheme}:// is no daemon socket")
    raise EndpointError(f"invalid bind address format: {host}")


def tls_from_options(options: TLSOptions, env: Mapping[str, str]) -> TLSSettings | None:
    """TLS for a URL or DOCKER_HOST, decided as the docker CLI decides it.

    DOCKER_TLS_VERIFY and DOCKER_TLS count when set to anything at all (even "0"); --tlsverify
    given either way turns TLS on. The CA, certificate and key default to ca.pem, cert.pem and
    key.pem in DOCKER_CERT_PATH (else the docker config directory); a default certificate or
    key that does not exist is not presented, and the CA is only read when verifying.
    """
    if not _tls_wanted(options, env):
        return None
    verify = options.verify if options.verify is not None else bool(env.get("DOCKER_TLS_VERIFY"))
    configured = env.get("DOCKER_CERT_PATH")
    from pathlib import Path

    cert_path = Path(configured if configured else _docker_config_dir(env))
    cert = options.cert or _existing(cert_path / CERT_FILE)
    key = options.key or _existing(cert_path / KEY_FILE)
    ca = (options.ca or str(cert_path / CA_FILE)) if verify else None
    return TLSSettings(verify, ca, *_pair(cert, key))


def _tls_from_context(context: _Context) -> TLSSettings | None:
    """A context speaks TLS when it holds TLS material or says to skip verifying."""
    if not (context.tls_dir.is_dir() or context.skip_tls_verify):
        return None
    ca = _existing(context.tls_dir / CA_FILE)
    cert = _existing(context.tls_dir / CERT_FILE)
    key = _existing(context.tls_dir / KEY_FILE)
    # Like the CLI, a context presents a certificate only when it has both halves.
    if cert is None or key is None:
        cert = key = None
    return TLSSettings(not context.skip_tls_verify, ca, cert, key)


def _root_only(url: str, given: str) -> None:
    """Refuse a tcp:// daemon under a path: the CLI would send its requests below the path,
    docktap relays them as its clients send them, to the daemon's root."""
    if url.startswith("tcp://") and url.removeprefix("tcp://").partition("/")[2].strip("/"):
        raise EndpointError(
            f"the docker CLI reads {given!r} as {url}, a daemon under a URL path, which docktap "
            "does not relay to (a socket is unix:///path)"
        )


def resolve_upstream(
    explicit: str | None,
    env: Mapping[str, str] | None = None,
    options: TLSOptions | None = None,
) -> Endpoint:
    """The daemon to relay to: explicit URL (the CLI's -H), DOCKER_HOST, docker context, the
    default daemon: /var/run/docker.sock, or tcp://localhost:2376 when TLS is asked for.

    An explicit URL or DOCKER_HOST is read as the CLI reads -H and DOCKER_HOST (`_host`): one
    that is blank once trimmed still names the default daemon rather than leaving it to a
    context, and one with no scheme is a TCP address, but for docktap's own `--upstream`,
    where a value with no scheme is a socket path (as `--listen` reads it). A context's
    endpoint is used as written, as the CLI uses it.
    A `tcp://` daemon gets its TLS settings; options given on docktap's command line win over
    a context's. TLS options for a unix socket or ssh are an error, TLS variables are not (the
    CLI ignores them there too).
    """
    env = os.environ if env is None else env
    options = TLSOptions() if options is None else options
    if explicit is not None:
        given: str | None = _trimmed(explicit)
    else:
        # Set but empty, DOCKER_HOST leaves the daemon to the context, as the docker CLI 28
        # does (cli/command/cli.go: os.Getenv(...) != ""). The CLI 20.10 (os.LookupEnv) takes
        # it as given and uses its default socket; docktap follows the current CLI.
        given = env.get("DOCKER_HOST") or None
    context = _current_context(env) if given is None else None
    if context is not None:
        url = context.host
    elif explicit is not None and given and "://" not in given:
        url = given  # docktap's own --upstream: a bare path is a socket (parse_endpoint)
    else:
        url = _host(given or "", _tls_wanted(options, env))
        _root_only(url, given or "")
    endpoint = parse_endpoint(url)
    if endpoint.path is not None or endpoint.ssh is not None:
        if options.given:
            raise EndpointError(f"TLS options apply to tcp:// daemons, not to {endpoint.url}")
        return endpoint
    if context is not None and not options.given:
        tls = _tls_from_context(context)
    else:
        tls = tls_from_options(options, env)
    return Endpoint(host=endpoint.host, port=endpoint.port, tls=tls)
