"""How much of a body a capture keeps by default, apart from the codec that applies it.

The command line shows it in its options' help before any command runs; here it costs nothing
to import, where the codec brings in the redactor.
"""

from __future__ import annotations

DEFAULT_MAX_BODY = 1 << 20
