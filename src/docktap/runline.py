"""`docktap run`'s arguments read without click, as the process begins.

Importing click and the command line built on it costs about 12 ms of CPU, a sixth of what
`docktap run -q` adds to the command it wraps, and nothing of a run needs them once its
arguments are known. So the entry (entry.py) reads the common forms itself, from the table
generated from the click command (run_options.py): flags alone, values as the next argument
or after `=` (`--output=FILE`), repeats with the last one winning, then `--` and the command.
These are read here exactly as click reads them (tests/test_runline.py compares the two).
Whatever else a command line holds goes to click, which reads it, converts and checks its
values, and says what is wrong: a help request, a short option with its value attached or
short flags run together, an option that takes a number, a choice, a file or a repeat, an
unknown option, a command not after `--`.
"""

from __future__ import annotations

from collections.abc import Sequence

from docktap.run_options import FLAG, OPTIONS, VALUE, RunArguments


def read(args: Sequence[str]) -> RunArguments | None:
    """The arguments of `docktap run ARGS...`, or None where only click may read them."""
    given: dict[str, object] = {}
    at = 0
    while at < len(args):
        arg = args[at]
        if arg == "--":
            command = tuple(args[at + 1 :])
            return RunArguments(command, **given) if command else None  # type: ignore[arg-type]
        name, equals, attached = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        param, kind = OPTIONS.get(name, ("", ""))
        if kind == FLAG and not equals:
            given[param] = True
        elif kind == VALUE and equals:
            given[param] = attached
        elif kind == VALUE and at + 1 < len(args):
            at += 1
            given[param] = args[at]
        else:
            return None
        at += 1
    return None
