"""A headless Chromium driven by Selenium, for the tests (and the script) that look at web pages.

The system's Chromium and chromedriver (Debian's `chromium` and `chromium-driver`) are used,
never a browser a driver would download. The browser runs with a fresh profile and with every
background service off (updates, sync, safe browsing lists...), so that whatever shows up in
its network log was asked for by the page. Its DevTools performance log is kept, so a test can
read every network request the page made.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


class BrowserUnavailable(RuntimeError):
    """No Chromium or chromedriver on this machine."""


def available() -> str | None:
    """Why no browser can be started here, or None when one can."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).is_file():
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


@contextmanager
def chromium(width: int = 1400, height: int = 900) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a fresh profile, closed (profile removed) at the end."""
    reason = available()
    if reason:
        raise BrowserUnavailable(reason)
    profile = tempfile.mkdtemp(prefix="docktap-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",  # the tests run as root, where Chromium's sandbox cannot start
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        # The window opens on Chromium's new-tab page, which loads chrome:// resources of its
        # own; leave it, and forget those, so the log holds only what pages loaded later ask.
        driver.get("about:blank")
        network_requests(driver)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def network_requests(driver: webdriver.Chrome) -> list[str]:
    """The URLs of the requests made since the last call, from the DevTools log."""
    urls: list[str] = []
    for entry in driver.get_log("performance"):  # type: ignore[no-untyped-call]
        message: dict[str, Any] = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def console_errors(driver: webdriver.Chrome) -> list[str]:
    """What the page logged at SEVERE level (script errors, blocked loads) since the last call."""
    logged = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [e["message"] for e in logged if e.get("level") == "SEVERE"]


def attribute(element: WebElement, name: str) -> str:
    """An attribute the element must have."""
    value = element.get_attribute(name)
    assert value is not None, f"no {name} on <{element.tag_name}>"
    return value
