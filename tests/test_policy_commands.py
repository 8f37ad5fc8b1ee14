"""`docktap policy learn` and `check` as a user runs them."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from docktap.cli import main

LIBRARY = Path(__file__).resolve().parent.parent / "captures"


def test_learn_then_check_passes_on_the_same_captures(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    runner = CliRunner()
    learned = runner.invoke(
        main, ["policy", "learn", str(LIBRARY / "run.jsonl"), "-o", str(policy)]
    )
    assert learned.exit_code == 0, learned.output
    assert "policy written to" in learned.stderr
    checked = runner.invoke(main, ["policy", "check", str(policy), str(LIBRARY / "run.jsonl")])
    assert checked.exit_code == 0, checked.output
    assert checked.stdout == f"0 of 5 exchanges denied by {policy}\n"


def test_check_lists_each_denial_and_fails(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    runner = CliRunner()
    runner.invoke(main, ["policy", "learn", str(LIBRARY / "run.jsonl"), "-o", str(policy)])
    # Wide enough for one line per denial (at the width of a terminal, they are wrapped).
    checked = runner.invoke(
        main, ["policy", "check", str(policy), str(LIBRARY / "exec-it.jsonl"), "--width", "400"]
    )
    assert checked.exit_code == 1
    assert checked.stdout.splitlines() == [
        "exec-it.jsonl #2: docktap policy: denied GET /containers/sleeper/json: "
        "ContainerInspect not allowed for uid 0",
        "exec-it.jsonl #3: docktap policy: denied POST /containers/sleeper/exec: "
        "ContainerExec not allowed for uid 0",
        "exec-it.jsonl #4: docktap policy: denied POST /exec/"
        "0cd8e1ba2d15f95b76c48fb9f1473c15790e20698a64439ecdf25639c99df2bf/start: "
        "ExecStart not allowed for uid 0",
        "exec-it.jsonl #5: docktap policy: denied GET /exec/"
        "0cd8e1ba2d15f95b76c48fb9f1473c15790e20698a64439ecdf25639c99df2bf/json: "
        "ExecInspect not allowed for uid 0",
        f"4 of 5 exchanges denied by {policy}",
    ]


def test_a_policy_that_does_not_parse_is_refused(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("docktap-policy: 7\nclients: []\n")
    checked = CliRunner().invoke(main, ["policy", "check", str(policy), str(LIBRARY / "run.jsonl")])
    assert checked.exit_code == 1
    assert "format version 7; this docktap reads version 1" in checked.stderr
