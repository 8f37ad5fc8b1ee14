"""The secret name patterns a user adds through DOCKTAP_REDACT_ENV, apart from the redactor.

Every recording command reads them before it starts; here that costs nothing to import, where
the redactor brings in the Go JSON reader.
"""

from __future__ import annotations

REDACT_ENV_VAR = "DOCKTAP_REDACT_ENV"


def patterns_from_env(value: str | None) -> list[str]:
    """The patterns of DOCKTAP_REDACT_ENV: comma-separated, blanks ignored."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]
