"""`python -m docktap` runs the command line, entering as the console script does."""

from __future__ import annotations

from docktap.entry import main

main()
