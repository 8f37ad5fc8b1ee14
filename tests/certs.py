"""Certificates for the TLS tests, made with the openssl CLI as Docker's documentation does.

A CA signs the daemon's certificate (for 127.0.0.1 and localhost) and a client certificate;
the client's files are laid out as DOCKER_CERT_PATH expects them (ca.pem, cert.pem, key.pem).
The bad ones each differ from a good one in one way: another CA, a validity that ended before
it began, another name.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")


@dataclass(frozen=True)
class Pair:
    """A certificate and its private key, PEM files."""

    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> Pair:
    pair = Pair(directory / f"{name}.pem", directory / f"{name}-key.pem")
    _openssl(
        "req", "-x509", *_KEY, "-keyout", str(pair.key), "-out", str(pair.cert),
        "-days", "30", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return pair


def issue(
    ca: Pair,
    directory: Path,
    name: str,
    *,
    client: bool = False,
    names: str = "IP:127.0.0.1,DNS:localhost",
    days: int = 30,
) -> Pair:
    """A leaf certificate signed by `ca`; `days=-1` makes one that has already expired."""
    pair = Pair(directory / f"{name}.pem", directory / f"{name}-key.pem")
    csr = directory / f"{name}.csr"
    extensions = directory / f"{name}.ext"
    usage = "clientAuth" if client else f"serverAuth\nsubjectAltName={names}"
    extensions.write_text(f"basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n")
    _openssl(
        "req", "-new", *_KEY, "-keyout", str(pair.key), "-out", str(csr), "-subj", f"/CN={name}"
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-set_serial", str(secrets.randbits(62) + 1), "-days", str(days),
        "-extfile", str(extensions), "-out", str(pair.cert),
    )  # fmt: skip
    return pair


@dataclass(frozen=True)
class Certificates:
    """Everything the TLS tests use; `client` is a DOCKER_CERT_PATH directory."""

    ca: Pair
    server: Pair
    client: Path
    other_ca: Pair
    server_of_other_ca: Pair
    expired_server: Pair
    server_for_another_name: Pair
    client_of_other_ca: Path


def _cert_path(directory: Path, ca: Pair, pair: Pair) -> Path:
    directory.mkdir()
    (directory / "ca.pem").write_bytes(ca.cert.read_bytes())
    (directory / "cert.pem").write_bytes(pair.cert.read_bytes())
    (directory / "key.pem").write_bytes(pair.key.read_bytes())
    return directory


def make_all(directory: Path) -> Certificates:
    ca = make_ca(directory, "docktap-test-ca")
    other = make_ca(directory, "another-ca")
    return Certificates(
        ca=ca,
        server=issue(ca, directory, "daemon"),
        client=_cert_path(directory / "client", ca, issue(ca, directory, "client", client=True)),
        other_ca=other,
        server_of_other_ca=issue(other, directory, "daemon-of-another-ca"),
        expired_server=issue(ca, directory, "expired-daemon", days=-1),
        server_for_another_name=issue(
            ca, directory, "daemon-elsewhere", names="DNS:elsewhere.example,IP:192.0.2.1"
        ),
        client_of_other_ca=_cert_path(
            directory / "stranger", ca, issue(other, directory, "stranger", client=True)
        ),
    )
