"""`python -m docktap` runs the command line."""

from __future__ import annotations

from docktap.cli import main

main(prog_name="docktap")
