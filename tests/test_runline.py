"""`docktap run`'s arguments read without click: the same as click's reading, or none.

The table the reading uses is generated from the click command (scripts/gen-run-options);
the committed one must be what the generator makes of cli.py today. Every command line the
reading accepts must give exactly the arguments click gives; the ones it declines go to click.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docktap.cli import run
from docktap.run_options import FLAG, OPTIONS, OTHER, VALUE, RunArguments
from docktap.runline import read

GENERATOR = Path(__file__).resolve().parent.parent / "scripts" / "gen-run-options"


def _click(args: list[str]) -> RunArguments | None:
    """What click makes of `docktap run ARGS...`: the arguments, or None where it refuses
    them or prints help instead."""
    try:
        context = run.make_context("run", list(args))
    except (click.ClickException, click.exceptions.Exit):
        return None
    return RunArguments(**context.params)


def test_the_committed_table_is_the_click_commands() -> None:
    done = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_the_table_covers_every_option_of_run() -> None:
    declared = {
        opt for p in run.params for opt in (*p.opts, *p.secondary_opts) if p.opts[0][0] == "-"
    }
    assert set(OPTIONS) == declared
    assert set(RunArguments._fields) == {p.name for p in run.params}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--", "docker", "ps"], RunArguments(("docker", "ps"))),
        (["-q", "--", "true"], RunArguments(("true",), quiet=True)),
        (
            ["-o", "cap.jsonl", "-f", "--", "docker", "-v"],
            RunArguments(("docker", "-v"), output="cap.jsonl", force=True),
        ),
        (["--output=a=b", "--", "x"], RunArguments(("x",), output="a=b")),
        (["-o", "a", "-o", "b", "--", "x"], RunArguments(("x",), output="b")),
        # A value is the next argument, whatever it looks like, as click takes it.
        (["-o", "--", "--", "x"], RunArguments(("x",), output="--")),
        (["-o", "-q", "--", "x"], RunArguments(("x",), output="-q")),
        (
            ["--upstream", "tcp://h:1", "--", "x", "--", "y"],
            RunArguments(("x", "--", "y"), upstream="tcp://h:1"),
        ),
    ],
)
def test_the_usual_command_lines_are_read_as_click_reads_them(
    args: list[str], expected: RunArguments
) -> None:
    assert read(args) == expected
    assert _click(args) == expected


@pytest.mark.parametrize(
    "args",
    [
        ["docker", "ps"],  # a command without `--`
        ["--"],  # no command
        [],
        ["-h"],
        ["--help", "--", "x"],
        ["-qf", "--", "x"],  # short flags run together
        ["-ocap", "--", "x"],  # a short option's value attached
        ["-o=cap", "--", "x"],
        ["-o"],
        ["--quiet=1", "--", "x"],
        ["--max-body", "10", "--", "x"],  # a number: click converts it
        ["--color", "never", "--", "x"],  # a choice
        ["--policy", "p.yaml", "--", "x"],  # a file that must exist
        ["--redact-env", "DB_", "--", "x"],  # a repeat
        ["--no-tlsverify", "--", "x"],  # a paired flag
        ["--outpu", "cap", "--", "x"],  # click does not complete option names
        ["--bogus", "--", "x"],
    ],
)
def test_the_other_command_lines_are_left_to_click(args: list[str]) -> None:
    assert read(args) is None


_WORDS = st.sampled_from(
    [*OPTIONS, "--", "-", "-qf", "-ocap", "--output=", "--output=x", "--quiet=1", "--bogus",
     "-h", "--help", "docker", "ps", "a value", "tcp://h:2375", "10", "never", ""]
)  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(st.lists(_WORDS, max_size=8))
def test_any_command_line_is_read_as_click_reads_it_or_left_to_click(args: list[str]) -> None:
    read_here = read(args)
    if read_here is not None:
        assert _click(args) == read_here


def test_every_kind_in_the_table_is_one_the_reading_knows() -> None:
    assert {kind for _, kind in OPTIONS.values()} <= {FLAG, VALUE, OTHER}
