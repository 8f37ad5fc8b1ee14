"""Secrets sent by real clients never reach a capture, nor anything made from it.

Each test plants long random secrets in what real clients send to the private daemon (an
environment variable of `docker run` and `docker exec`, the answer of `docker inspect`, a build
argument, a `docker login` password sent with docker-py), then searches every byte of the
capture, of each export and of `show` for the secrets, raw, in hex and in base64 at every
alignment. A variable with a plain name must stay readable, and `--no-redact` must keep all.
"""

from __future__ import annotations

import base64
import json
import secrets
import string
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import docker
import pytest
from dockerd import Daemon
from tapping import Proxy, checked_capture, docktap, docktap_run, one

from docktap import Capture

PLAIN = "visible"


def planted(tag: str) -> str:
    return f"{tag}{secrets.token_hex(20)}"


def forms(secret: str) -> list[bytes]:
    """The secret as bytes, JSON-escaped, URL-encoded, hex, and base64 (standard and url-safe)
    at each alignment."""
    raw = secret.encode()
    out = [raw, raw.hex().encode(), json.dumps(secret)[1:-1].encode()]
    out += [quote(secret, safe="").encode(), quote_plus(secret).encode()]
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        inner = encoded[4 if shift else 0 : -4]
        out += [inner, inner.replace(b"+", b"-").replace(b"/", b"_")]
    return out


def outputs(capture: Path) -> dict[str, bytes]:
    """The capture and everything docktap makes from it."""
    made = {"capture": capture.read_bytes()}
    for fmt in ("har", "mermaid", "curl", "markdown", "html"):
        proc = docktap("export", "--format", fmt, str(capture))
        assert proc.returncode == 0, proc.stderr.decode()
        made[fmt] = proc.stdout
    for name, args in {
        "show --bodies --json": ("--bodies", "--json"),
        "show --bodies": ("--bodies", "--lines", "0", "--width", "400"),
    }.items():
        proc = docktap("show", *args, str(capture))
        assert proc.returncode == 0, proc.stderr.decode()
        made[name] = proc.stdout
    return made


def assert_absent(capture: Path, hidden: list[str]) -> dict[str, bytes]:
    made = outputs(capture)
    for where, data in made.items():
        for secret in hidden:
            for form in forms(secret):
                assert form not in data, f"{secret} ({form[:12]!r}...) in {where}"
    return made


def assert_present(made: dict[str, bytes], shown: list[str]) -> None:
    for secret in shown:
        assert secret.encode() in made["capture"], secret


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM bb\nARG NPM_TOKEN\nRUN true\n")
    return ctx


def script(name: str, hidden: list[str], context: Path) -> str:
    """Run, exec into, inspect and remove a container; build an image with a build arg."""
    db_password, api_token, npm_token = hidden
    return (
        f"set -e; docker run -d --name {name} --network none -e DB_PASSWORD={db_password} "
        f"-e PLAIN={PLAIN} bb sleep 300 >/dev/null; "
        f"docker exec -e API_TOKEN={api_token} {name} true; "
        f"docker inspect {name} >/dev/null; "
        f"DOCKER_BUILDKIT=0 docker build -q --network none --build-arg NPM_TOKEN={npm_token} "
        f"-t {name}-img {context} >/dev/null; "
        f"docker history --no-trunc {name}-img >/dev/null; "
        f"docker image inspect {name}-img >/dev/null; "
        f"docker rm -f {name} >/dev/null; docker rmi {name}-img >/dev/null"
    )


def check_operations(capture: Capture) -> None:
    seen = [ex.operation for ex in capture.exchanges]
    for operation in (
        "ContainerCreate",
        "ContainerExec",
        "ContainerInspect",
        "ImageBuild",
        "ImageHistory",
        "ImageInspect",
    ):
        assert operation in seen, seen
    create = one(capture, "ContainerCreate")
    assert b"PLAIN=visible" in create.request_body
    assert b"DB_PASSWORD=<redacted len~64 hmac:" in create.request_body
    assert "buildargs=" in one(capture, "ImageBuild").target
    # The legacy builder keeps the build args of a RUN step in the image's history.
    assert b"NPM_TOKEN=<redacted len~64 hmac:" in one(capture, "ImageHistory").response_body


def test_run_masks_env_exec_inspect_and_build_args(
    dockerd: Daemon, tmp_path: Path, context: Path
) -> None:
    hidden = [planted("dbpw"), planted("apitok"), planted("npmtok")]
    path = tmp_path / "run.jsonl"
    tapped = docktap_run(dockerd, path, "sh", "-c", script("sec-run", hidden, context))
    assert tapped.proc.returncode == 0, tapped.proc.stderr.decode()
    check_operations(tapped.capture)
    # `docker exec` inspects the container too; each answer has Config.Env, masked.
    inspects = [ex for ex in tapped.capture.exchanges if ex.operation == "ContainerInspect"]
    for inspect in inspects:
        assert b"DB_PASSWORD=<redacted len~64 hmac:" in inspect.response_body
        assert b"PLAIN=visible" in inspect.response_body
    made = assert_absent(path, hidden)
    assert_present(made, [f"PLAIN={PLAIN}"])


def test_no_redact_keeps_the_secrets(dockerd: Daemon, tmp_path: Path, context: Path) -> None:
    kept = [planted("dbpw"), planted("apitok"), planted("npmtok")]
    path = tmp_path / "raw.jsonl"
    command = script("sec-raw", kept, context)
    tapped = docktap_run(dockerd, path, "sh", "-c", command, options=["--no-redact"])
    assert tapped.proc.returncode == 0, tapped.proc.stderr.decode()
    made = outputs(path)
    assert_present(made, [*kept, f"PLAIN={PLAIN}"])
    assert b"<redacted" not in made["capture"]


def test_more_names_by_option_and_environment(dockerd: Daemon, tmp_path: Path) -> None:
    dsn, extra, plain = planted("dsn"), planted("extra"), planted("plain")
    path = tmp_path / "names.jsonl"
    env = dict(dockerd.env, DOCKTAP_REDACT_ENV="CONN_,^EXTRA$")
    command = (
        f"docker run --rm --network none -e DATABASE_DSN={dsn} -e CONN_X=1 -e EXTRA={extra} "
        f"-e OTHER={plain} bb true"
    )
    proc = docktap(
        "run", "-q", "-o", str(path), "--upstream", dockerd.host,
        "--redact-env", "dsn", "--", "sh", "-c", command,
        env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    made = assert_absent(path, [dsn, extra])
    assert_present(made, [f"OTHER={plain}"])
    assert b"CONN_X=<redacted len~1 hmac:" in made["capture"]


@pytest.fixture
def proxy(dockerd: Daemon, tmp_path: Path) -> Iterator[Proxy]:
    running = Proxy(dockerd, tmp_path, "-q")
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def test_proxy_masks_everything_and_login_passwords(
    dockerd: Daemon, proxy: Proxy, tmp_path: Path, context: Path
) -> None:
    hidden = [planted("dbpw"), planted("apitok"), planted("npmtok")]
    password = planted("loginpw")
    done = subprocess.run(
        ["sh", "-c", script("sec-proxy", hidden, context)],
        env=proxy.env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    client = docker.DockerClient(base_url=proxy.host, version="auto", timeout=30)
    try:
        # Nothing listens on port 9: the daemon fails fast, after the password went by.
        with pytest.raises(docker.errors.APIError):
            client.login("alice", password=password, registry="127.0.0.1:9", reauth=True)
    finally:
        client.close()
    capture = proxy.stop()
    check_operations(capture)
    login = one(capture, "SystemAuth")
    assert b'"username":"alice"' in login.request_body.replace(b" ", b"")
    assert b"<redacted len~64 hmac:" in login.request_body
    assert_absent(proxy.capture_path, [*hidden, password])


def test_swarm_tokens_secrets_and_unlock_keys(dockerd: Daemon, tmp_path: Path) -> None:
    """Swarm mode, briefly, on the private daemon: join tokens, secret data, the unlock key."""
    data = planted("SECRETDATA")
    capture = tmp_path / "swarm.jsonl"
    steps = (
        "docker swarm init --advertise-addr 127.0.0.1 >/dev/null"
        " && docker swarm join-token -q worker"
        " && docker swarm join-token -q manager"
        ' && printf %s "$SECRET_VALUE" | docker secret create docktap-s1 - >/dev/null'
        " && docker swarm update --autolock=true >/dev/null"
        " && docker swarm unlock-key -q"
    )
    # The secret comes from the environment: on the command line it would be in the capture's
    # header as the user typed it, which no rule can recognise.
    env = dict(dockerd.env, SECRET_VALUE=data)
    try:
        proc = docktap(
            *("run", "-q", "-o", str(capture), "--upstream", dockerd.host, "--"),
            *("sh", "-c", steps),
            env=env,
        )
    finally:
        dockerd.docker("swarm", "leave", "--force", check=False)
    assert proc.returncode == 0, proc.stderr
    worker, manager, unlock_key = proc.stdout.decode().split()
    assert worker.startswith("SWMTKN-") and unlock_key.startswith("SWMKEY-")
    operations = [ex.operation for ex in checked_capture(capture).exchanges]
    for operation in ("SwarmInit", "SwarmInspect", "SecretCreate", "SwarmUnlockkey"):
        assert operation in operations
    assert_absent(capture, [worker, manager, unlock_key, data])


def _random(alphabet: str, size: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(size))


_ALNUM = string.ascii_letters + string.digits
_B64URL = _ALNUM + "-_"


def shaped() -> dict[str, str]:
    """Secrets known only by what they look like, each random (no name gives them away)."""

    def b64url(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    claims = json.dumps({"sub": secrets.token_hex(12), "iat": 1700000000}).encode()
    return {
        "aws": "AKIA" + _random(string.ascii_uppercase + string.digits, 16),
        "ghp": "ghp_" + _random(_ALNUM, 36),
        "gho": "gho_" + _random(_ALNUM, 36),
        "ghs": "ghs_" + _random(_ALNUM, 36),
        "pat": "github_pat_" + _random(_ALNUM, 22) + "_" + _random(_ALNUM, 59),
        "jwt": ".".join([b64url(b'{"alg":"HS256","typ":"JWT"}'), b64url(claims)])
        + "."
        + _random(_B64URL, 43),
    }


def pem_key() -> tuple[str, list[str]]:
    """A PEM private key with random content, and its lines, each a secret of its own."""
    lines = [base64.b64encode(secrets.token_bytes(48)).decode() for _ in range(4)]
    body = "\n".join(["-----BEGIN PRIVATE KEY-----", *lines, "-----END PRIVATE KEY-----"])
    return body, lines


def test_secrets_known_by_their_shape_are_masked_everywhere_they_travel(
    dockerd: Daemon, tmp_path: Path
) -> None:
    """Values under innocent names, short secret names, passwords on a command line, labels,
    `docker commit --change`, a build's ENV in its output, history and inspect, and
    `docker login -p`: through the real CLI, then nowhere in the capture nor what comes of it."""
    tokens = shaped()
    pem, pem_lines = pem_key()
    url_pw, db_pass, mysql_pwd, dsn = (planted(t) for t in ("urlpw", "dbpass", "mypwd", "dsn"))
    cmd_pw1, cmd_pw2, cmd_pw3, label, change = (
        planted(t) for t in ("cmdpwa", "cmdpwb", "cmdpwc", "lbl", "chg")
    )
    login_pw = planted("loginpw")
    build_token = "ghp_" + _random(_ALNUM, 36)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    # The token comes in as a build argument: written in the Dockerfile, it would travel in the
    # build context, which docktap records as sent (see the README's Security section).
    (ctx / "Dockerfile").write_text(
        "FROM bb\nARG TOK\nENV API_TOKEN=$TOK\n"
        'RUN echo "API_TOKEN=$API_TOKEN" && echo "token: $API_TOKEN"\n'
    )
    envs = " ".join(f"-e INNOCENT_{name.upper()}={value}" for name, value in tokens.items())
    steps = [
        "set -e",
        f"docker create --name sec-shape --network none {envs} -e CERTS "
        f"-e DATABASE_URL=postgres://app:{url_pw}@db:5432/app -e DB_PASS={db_pass} "
        f"-e MYSQL_PWD={mysql_pwd} -e APP_DSN={dsn} -e PLAIN={PLAIN} -l api_token={label} "
        f"bb mysql --password={cmd_pw1} --password {cmd_pw2} -p{cmd_pw3} -h db >/dev/null",
        "docker inspect sec-shape >/dev/null",
        "docker ps -a --no-trunc >/dev/null",
        f'docker commit --change "ENV DB_PASSWORD={change}" sec-shape sec-shape-img >/dev/null',
        "docker image inspect sec-shape-img >/dev/null",
        "docker history --no-trunc sec-shape-img >/dev/null",
        "docker rm sec-shape >/dev/null",
        "docker rmi sec-shape-img >/dev/null",
        f"DOCKER_BUILDKIT=0 docker build --network none --build-arg TOK={build_token} "
        f"-t sec-build {ctx} >/dev/null",
        "docker history --no-trunc sec-build >/dev/null",
        "docker image inspect sec-build >/dev/null",
        "docker rmi sec-build >/dev/null",
        # Nothing listens on port 9: the login fails fast, after the command line was recorded.
        f"! docker login -u alice -p{login_pw} 127.0.0.1:9 >/dev/null 2>&1",
    ]
    path = tmp_path / "shapes.jsonl"
    env = dict(dockerd.env, CERTS=pem)
    proc = docktap(
        *("run", "-q", "-o", str(path), "--upstream", dockerd.host, "--"),
        *("sh", "-c", "; ".join(steps)),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    capture = checked_capture(path, allow_errors=True)
    seen = [ex.operation for ex in capture.exchanges]
    for operation in (
        "ContainerCreate",
        "ContainerInspect",
        "ContainerList",
        "ImageCommit",
        "ImageInspect",
        "ImageHistory",
        "ImageBuild",
        "SystemAuth",
    ):
        assert operation in seen, seen
    # The daemon really saw them: the build echoed the token, history and inspect keep it.
    build = one(capture, "ImageBuild")
    assert b"API_TOKEN=<redacted len~64 hmac:" in build.response_body
    assert b"token: <redacted len~64 hmac:" in build.response_body
    assert "changes=ENV%20DB_PASSWORD%3D%3Credacted" in one(capture, "ImageCommit").target
    create = one(capture, "ContainerCreate")
    assert b"postgres://app:<redacted len~64 hmac:" in create.request_body
    assert b'"api_token":"<redacted len~64 hmac:' in create.request_body
    hidden = [
        *tokens.values(),
        *pem_lines,
        url_pw,
        db_pass,
        mysql_pwd,
        dsn,
        cmd_pw1,
        cmd_pw2,
        cmd_pw3,
        label,
        change,
        login_pw,
        build_token,
    ]
    made = assert_absent(path, hidden)
    # What is not a secret stays readable, where it went.
    assert_present(made, [f"PLAIN={PLAIN}", "INNOCENT_AWS=", "-h", "db:5432/app", "alice"])
