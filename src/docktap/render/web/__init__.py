"""The web page's script and style sheet, hand-written and shipped as package data.

They are kept as files of their own (page.js, page.css) so they read, diff and lint as what
they are. Reading them is the one bit of I/O the page needs; `docktap.render.html` stays pure by
taking them as an argument.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from docktap.capture.reader import Capture
from docktap.render.html import Assets, render


@cache
def assets() -> Assets:
    """The bundled script and style (read once per process)."""
    folder = files(__name__)
    return Assets(
        script=(folder / "page.js").read_text(encoding="utf-8"),
        style=(folder / "page.css").read_text(encoding="utf-8"),
    )


def page(capture: Capture, title: str) -> str:
    """The web page of a capture, with the bundled script and style."""
    return render(capture, title, assets())
