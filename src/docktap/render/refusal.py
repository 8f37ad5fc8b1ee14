"""What the daemon said went wrong: the message of an error answer, or of an error in a stream.

Docker refuses a call with a 4xx or 5xx status and a JSON body `{"message": "..."}`. A pull,
push or build that fails once it has started answers 200, and reports the failure as one
message of its JSON stream: `{"error": "...", "errorDetail": {"message": "..."}}`. The
timeline and the Markdown report both show these; they read them here, the same way.
"""

from __future__ import annotations

import json
from typing import Any

from docktap.capture.reader import Exchange


def refusal(ex: Exchange) -> str | None:
    """The message of a 4xx or 5xx answer: Docker's JSON `message`, else the body as text.

    None for any other answer, an empty body, or JSON without a `message`.
    """
    if ex.status is None or ex.status < 400 or not ex.response_body:
        return None
    try:
        value = json.loads(ex.response_body)
    except ValueError:
        return bytes(ex.response_body).decode("utf-8", errors="replace").strip() or None
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        return str(value["message"])
    return None


def stream_error(message: Any) -> str | None:
    """The failure one decoded message of a JSON progress stream reports, or None."""
    if not isinstance(message, dict):
        return None
    error = message.get("error")
    detail = message.get("errorDetail")
    if not (error or detail):
        return None
    if isinstance(detail, dict) and detail.get("message"):
        return str(detail["message"])
    return str(error)
