"""What goes wrong reading a capture, apart from the reader that finds it.

Sessions and commands catch it without having read a capture; here it costs nothing to import,
where the reader brings in the codec and the routes.
"""

from __future__ import annotations


class CaptureError(ValueError):
    """The file is not a docktap capture docktap can read."""
