"""The JSON Schema of the policy file, shipped with the package for editors, CI and tests.

docktap's own reader (`model.from_document`) refuses what the schema refuses without needing a
schema library at run time; tests hold the two to each other.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from docktap.policy.model import VERSION

SCHEMA_RESOURCE = f"schema/policy-v{VERSION}.json"


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) a policy document must match."""
    text = resources.files("docktap").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
