"""docktap: a tap on the Docker socket.

Relay Docker API traffic, record it to JSONL captures, and read captures back. The public API is
small on purpose: load a capture and walk its exchanges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from docktap.capture.reader import Capture, CaptureError, Exchange, load

__version__ = "0.1.0"

__all__ = ["Capture", "CaptureError", "Exchange", "__version__", "load"]


def __getattr__(name: str) -> Any:
    # The reader is imported on first use: every command imports this package, and most
    # (`run`, `proxy`, `--version`) never read a capture.
    if name in __all__ and name != "__version__":
        from docktap.capture import reader

        return getattr(reader, name)
    raise AttributeError(f"module 'docktap' has no attribute {name!r}")
