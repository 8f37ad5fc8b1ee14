"""`docktap policy learn|check|export`, and the `--policy` of `run` and `proxy`.

Wiring only: files are read and written here, signals handled, decisions reported; the work
is done by the pure modules beside it.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from docktap.console import terminal_options
from docktap.messages import say
from docktap.policy.formats import FORMATS

# The group is built with every `docktap` start-up; what its commands use is imported when
# one of them runs (see cli.py).
if TYPE_CHECKING:
    from docktap.capture.reader import Capture
    from docktap.policy.guard import Guard
    from docktap.policy.model import Policy


def load_policy(path: str) -> Policy:
    """The policy in a file; a ClickException naming the file and the fault otherwise."""
    from pathlib import Path

    from docktap.policy.model import PolicyError, loads

    try:
        return loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read policy {path}: {exc}") from exc
    except PolicyError as exc:
        raise click.ClickException(f"policy {path}: {exc}") from exc


def _captures(paths: tuple[str, ...]) -> list[tuple[str, Capture]]:
    from pathlib import Path

    from docktap.capture.reader import CaptureError, load

    loaded = []
    for path in paths:
        try:
            loaded.append((Path(path).name, load(path)))
        except CaptureError as exc:
            raise click.ClickException(str(exc)) from exc
    return loaded


def _write(output: str, content: str) -> None:
    if output == "-":
        click.echo(content, nl=False)
        return
    from docktap.outputs import PRIVATE, OutputError, open_output

    try:
        fd = open_output(output, replace=True, mode=PRIVATE)
    except OutputError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.reason}") from exc
    with open(fd, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(content)


@click.group("policy")
def policy() -> None:
    """Learn a least-privilege policy from captures, check captures against it, export it."""


@policy.command("learn")
@click.argument("captures", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", metavar="POLICY|-", default="-", help="Where to write (default -).")
def learn_command(captures: tuple[str, ...], output: str) -> None:
    """Write the narrowest policy that allows what the CAPTURES' clients did."""
    from docktap.policy import learn as learning
    from docktap.policy import text

    learned = learning.learn(_captures(captures))
    for source, why in learned.skipped:
        say(f"not learned: {source}: {why}")
    _write(output, text.dump(learned))
    if output != "-":
        rules = sum(len(c.rules) for c in learned.clients.values())
        clients = len(learned.clients)
        say(
            f"policy written to {output}: {rules} rules for {clients} "
            + ("client" if clients == 1 else "clients")
        )


@policy.command("check")
@click.argument("policy_file", metavar="POLICY", type=click.Path(exists=True, dir_okay=False))
@click.argument("captures", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@terminal_options
def check_command(
    policy_file: str, captures: tuple[str, ...], colour: str, width: int | None
) -> None:
    """List every exchange of the CAPTURES that POLICY would deny; exit 1 if there is any."""
    from docktap.console import terminal
    from docktap.policy import check as checking
    from docktap.render.text import wrap

    policy_ = load_policy(policy_file)
    term = terminal(sys.stdout, colour, width)
    console = term.console() if term.colour else None
    total = denied = 0
    for name, capture in _captures(captures):
        total += len(capture.exchanges)
        for found in checking.check(policy_, name, capture):
            denied += 1
            # Broken at spaces to the width, what goes on indented under the exchange.
            lines = "\n".join(
                wrap(f"{found.source}: {found.decision.message}", term.width, "", "    ")
            )
            if console is None:
                click.echo(lines)
            else:
                console.print(lines, style="red", soft_wrap=True)
    said = f"{denied} of {total} exchanges denied by {policy_file}"
    click.echo("\n".join(wrap(said, term.width, "", "    ")))
    if denied:
        sys.exit(1)


@policy.command("export")
@click.argument("policy_file", metavar="POLICY", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    required=True,
    help="tecnativa: docker-socket-proxy variables; wollomatic: socket-proxy SP_ALLOW_* "
    "variables; sockguard: its YAML rules and body limits; rego: an opa-docker-authz module.",
)
@click.option("-o", "--output", metavar="FILE|-", default="-", help="Where to write (default -).")
def export_command(policy_file: str, fmt: str, output: str) -> None:
    """The nearest configuration of another socket proxy; stderr says how it differs."""
    from pathlib import Path

    from docktap.policy.export import export

    made = export(load_policy(policy_file), fmt, Path(policy_file).name)
    say(f"{fmt} export is {'wider' if made.wider else 'narrower'} than {policy_file}:")
    for note in made.notes:
        click.echo(f"  - {note}", err=True)
    _write(output, made.text)


# -- enforcing: the options `run` and `proxy` take, and the live guard they build ---------------


def policy_options(command: Callable[..., None]) -> Callable[..., None]:
    """`--policy POLICY` and `--policy-mode enforce|warn`."""
    command = click.option(
        "--policy-mode",
        type=click.Choice(["enforce", "warn"]),
        default="enforce",
        show_default=True,
        help="enforce: a denied request gets 403 and never reaches the daemon; warn: it is "
        "forwarded and reported.",
    )(command)
    return click.option(
        "--policy",
        "policy_file",
        metavar="POLICY",
        type=click.Path(exists=True, dir_okay=False),
        help="Decide every request by this policy (docs/policy.md); SIGHUP reloads it.",
    )(command)


def make_guard(path: str | None, mode: str) -> Guard | None:
    """The guard for `--policy`, or None; a policy that does not parse stops docktap here,
    before anything starts."""
    if path is None:
        return None
    from docktap.policy.guard import Guard

    return Guard(load_policy(path), mode == "enforce", source=path)


def reload_on_hangup(guard: Guard) -> None:
    """SIGHUP reads the policy again; one that does not parse leaves the old one in force."""
    import asyncio
    from pathlib import Path

    from docktap.policy.model import PolicyError, loads

    path = guard.source
    if path is None:
        return

    def reload() -> None:
        try:
            policy_ = loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, PolicyError) as exc:
            say(f"policy {path} not reloaded, the one in force stays: {exc}")
            return
        guard.replace(policy_)
        say(f"policy {path} reloaded")

    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)
