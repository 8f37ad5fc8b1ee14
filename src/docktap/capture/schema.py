"""The JSON Schema of capture records, shipped with the package for tools that check captures.

docktap itself never validates at run time (that would need a schema library as a dependency);
tests and external tools load the schema from here and validate with a library of their choice.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from docktap.capture.format import VERSION

SCHEMA_RESOURCE = f"schema/capture-v{VERSION}.json"


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) one record of the current capture format must match."""
    text = resources.files("docktap").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
