"""docktap: a tap on the Docker socket.

Relay Docker API traffic, record it to JSONL captures, and read captures back. The public API is
small on purpose: load a capture and walk its exchanges.
"""

from __future__ import annotations

from docktap.capture.reader import Capture, CaptureError, Exchange, load

__version__ = "0.1.0"

__all__ = ["Capture", "CaptureError", "Exchange", "__version__", "load"]
