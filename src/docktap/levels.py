"""The audit's levels by name, apart from its rules.

The command line names them in its options before it knows whether a command audits at all;
kept here, they cost nothing to import, where the rules bring in the capture and request models.
"""

from __future__ import annotations

#: Levels from the least to the most serious.
LEVELS = ("info", "low", "medium", "high", "critical")
#: The floor of warnings while a command runs (`--audit`): below it is what nearly every
#: session does (exec, undigested images), left to `docktap audit`.
LIVE_LEVEL = "medium"
