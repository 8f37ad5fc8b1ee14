"""The socket proxies a policy can be exported to, by name, apart from the export itself.

`docktap policy export --format` lists them in its help before any command runs; here that costs
nothing to import, where the export brings in the policy model and its YAML reader.
"""

from __future__ import annotations

FORMATS = ("tecnativa", "wollomatic", "sockguard", "rego")
