"""The web page of a capture: what it embeds, and what a real browser makes of it.

The first tests read the page as text and its embedded data as JSON. The others load it in a
headless Chromium (tests/browser.py) and read the DOM after the page's script ran: lanes and
rows against the capture's exchanges, the details a click opens, the streams kept apart, the
network log (the page must ask for nothing), and the time a 10,000-exchange capture takes.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import suppress
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from browser import attribute, chromium, console_errors, network_requests
from browser import available as browser_missing
from selenium.common.exceptions import TimeoutException
from selenium.webdriver import Chrome as WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait
from tapping import docktap

from docktap import Capture, load
from docktap.capture.format import RecordEncoder, dumps
from docktap.capture.reader import loads
from docktap.events import (
    BodyData,
    Closed,
    Direction,
    Event,
    Frame,
    Hijacked,
    MessageEnd,
    RequestHead,
    ResponseHead,
    Stream,
    StreamData,
)
from docktap.policy.decide import Decision
from docktap.render import html as page
from docktap.render import web
from docktap.render.kind import exchange_kind
from docktap.render.text import format_duration, hex_preview

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = sorted((ROOT / "captures").glob("*.jsonl"))
#: Set to 1 (as CI does) to turn "no browser" skips into failures.
REQUIRE_ENV = "DOCKTAP_REQUIRE_BROWSER"

BREAKOUT = '</script><script>document.title="broken out"</script><!--<script>'


def render(capture: Capture, title: str = "test.jsonl") -> str:
    return page.render(capture, title, web.assets())


class _Scripts(HTMLParser):
    """The scripts of a page as the HTML parser sees them: attributes and text."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._open: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self._open = dict(attrs)
            self.scripts.append((self._open, ""))

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._open = None


def scripts(text: str) -> list[tuple[dict[str, str | None], str]]:
    parser = _Scripts()
    parser.feed(text)
    return parser.scripts


def embedded(text: str) -> Any:
    found = [body for attrs, body in scripts(text) if attrs.get("id") == "docktap-data"]
    assert len(found) == 1
    return json.loads(found[0])


# --- captures made through the real capture encoder ---------------------------------------------


def encoded(events: list[Event], max_body: int = 1 << 20, conns: int = 1) -> Capture:
    """A capture of `events`, written by docktap's own record encoder and read back."""
    encoder = RecordEncoder(started_wall=1_800_000_000.0, started_mono=0.0, max_body=max_body)
    records = [encoder.header("unix:///test/docker.sock", ["docker", "test"], "test")]
    for conn in range(1, conns + 1):
        records.append(encoder.opened(conn, {"pid": 40 + conn, "uid": 0, "gid": 0}, 0.0))
    for event in events:
        records.extend(encoder.encode(event))
    last = max((event.t for event in events), default=0.0)
    records.append(encoder.footer(last, len(records) + 1))
    return loads("".join(dumps(record) + "\n" for record in records))


JSON_HEAD = (("Content-Type", "application/json"),)


def plain_exchange(
    conn: int,
    seq: int,
    t: float,
    method: str = "GET",
    target: str = "/v1.41/containers/json",
    request: bytes = b"",
    status: int = 200,
    answer: bytes = b"[]\n",
) -> list[Event]:
    head = (("Content-Length", str(len(request))), *JSON_HEAD)
    out: list[Event] = [RequestHead(conn, t, seq, method, target, "1.1", head)]
    if request:
        out.append(BodyData(conn, t, seq, Direction.CLIENT, request))
    out.append(MessageEnd(conn, t, seq, Direction.CLIENT))
    reply = (("Content-Length", str(len(answer))), *JSON_HEAD)
    out.append(ResponseHead(conn, t + 0.002, seq, status, "OK", "1.1", reply, False))
    out.append(BodyData(conn, t + 0.002, seq, Direction.DAEMON, answer))
    out.append(MessageEnd(conn, t + 0.003, seq, Direction.DAEMON))
    return out


def attach_exchange(conn: int, seq: int, t: float) -> list[Event]:
    target = "/v1.41/containers/abc/attach?stderr=1&stdin=1&stdout=1&stream=1"
    upgrade = (("Connection", "Upgrade"), ("Upgrade", "tcp"))
    return [
        RequestHead(conn, t, seq, "POST", target, "1.1", upgrade),
        MessageEnd(conn, t, seq, Direction.CLIENT),
        ResponseHead(conn, t + 0.001, seq, 101, "UPGRADED", "1.1", upgrade, True),
        Hijacked(conn, t + 0.001, seq, "tcp"),
        StreamData(conn, t + 0.010, seq, Direction.CLIENT, b"typed in\n"),
        StreamData(
            conn, t + 0.020, seq, Direction.DAEMON, b"\x01\x00\x00\x00\x00\x00\x00\x04out\n"
        ),
        Frame(conn, t + 0.020, seq, Direction.DAEMON, Stream.STDOUT, b"out\n"),
        StreamData(
            conn, t + 0.030, seq, Direction.DAEMON, b"\x02\x00\x00\x00\x00\x00\x00\x04err\n"
        ),
        Frame(conn, t + 0.030, seq, Direction.DAEMON, Stream.STDERR, b"err\n"),
        Closed(conn, t + 0.040),
    ]


def large_capture(exchanges: int = 10_000, per_conn: int = 5) -> Capture:
    """Many exchanges of every kind: listings, creates with bodies, 404s, hijacked attaches."""
    events: list[Event] = []
    conns = exchanges // per_conn
    create = json.dumps({"Image": "bb", "Cmd": ["sh", "-c", "echo out"], "Env": ["A=1"]}).encode()
    for conn in range(1, conns + 1):
        t = conn * 0.01
        events += plain_exchange(conn, 1, t, "HEAD", "/_ping", answer=b"")
        events += plain_exchange(conn, 2, t + 0.004, "POST", "/v1.41/containers/create", create)
        events += plain_exchange(
            conn, 3, t + 0.008, target="/v1.41/containers/nope/json", status=404,
            answer=b'{"message":"No such container: nope"}\n',
        )  # fmt: skip
        events += plain_exchange(conn, 4, t + 0.012)
        events += attach_exchange(conn, 5, t + 0.016)
    return encoded(events, conns=conns)


# --- the page as text -----------------------------------------------------------------------


@pytest.mark.parametrize("path", CAPTURES, ids=[p.stem for p in CAPTURES])
def test_every_capture_has_a_page_with_its_exchanges(path: Path) -> None:
    capture = load(path)
    data = embedded(render(capture, path.name))
    assert data["title"] == path.name
    assert [(x["conn"], x["seq"], x["operation"]) for x in data["exchanges"]] == [
        (ex.conn, ex.seq, ex.operation) for ex in capture.exchanges
    ]
    assert [c["conn"] for c in data["connections"]] == sorted(capture.connections)
    for x, ex in zip(data["exchanges"], capture.exchanges, strict=True):
        assert x["status"] == ex.status
        assert x["t0"] == ex.started_mono and x["t2"] == ex.ended_mono
        body = x["request_body"]
        if ex.request_body_size:
            assert body["size"] == ex.request_body_size
            kept = body["text"].encode() if "text" in body else base64.b64decode(body["b64"])
            assert kept == bytes(ex.request_body)
        stdout = "".join(text for _, name, text, _ in x["io"] if name == "stdout")
        assert stdout == ex.output("stdout").decode("utf-8", errors="replace")
        assert x["decisions"] == []
        assert (x["sent"], x["got"]) == (ex.bytes_sent, ex.bytes_received)


def test_the_page_loads_nothing_and_runs_only_its_own_code() -> None:
    text = render(load(ROOT / "captures" / "run.jsonl"))
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text)
    assert policy
    rules = dict(rule.strip().split(" ", 1) for rule in policy.group(1).split(";"))
    assert rules["default-src"] == "'none'"
    assert rules["script-src"].startswith("'sha256-") and "unsafe" not in policy.group(1)
    runnable = [body for attrs, body in scripts(text) if "type" not in attrs]
    assert len(runnable) == 1 and page._source_hash(runnable[0]) == rules["script-src"]
    assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", text)


def test_a_body_holding_markup_stays_data() -> None:
    capture = encoded(plain_exchange(1, 1, 0.01, target="/v1.41/version", answer=BREAKOUT.encode()))
    text = render(capture)
    # The HTML parser sees the same two scripts, and the data script holds the body whole.
    found = scripts(text)
    assert [attrs.get("type") for attrs, _ in found] == ["application/json", None]
    assert embedded(text)["exchanges"][0]["response_body"]["text"] == BREAKOUT
    assert "</script><script>" not in text.split('id="docktap-data">', 1)[1].split("</script>")[0]


def test_a_title_is_escaped() -> None:
    # The title is the one piece of capture-derived text in the page's own markup.
    name = "<b>a&b</b>.jsonl"
    text = render(load(ROOT / "captures" / "version.jsonl"), name)
    title = re.search(r"<title>(.*) - docktap</title>", text)
    assert title and "<" not in title.group(1) and html.unescape(title.group(1)) == name


def test_assets_that_would_end_their_element_are_refused() -> None:
    capture = load(ROOT / "captures" / "version.jsonl")
    with pytest.raises(ValueError):
        page.render(capture, "x", page.Assets(script="let a = '</script>';", style=""))
    with pytest.raises(ValueError):
        page.render(capture, "x", page.Assets(script="", style="a{} </style>"))


def test_a_body_cut_at_the_cap_says_how_much_was_kept() -> None:
    answer = json.dumps([{"Id": "x" * 64, "Names": ["/n"]}] * 20).encode()
    capture = encoded(plain_exchange(1, 1, 0.01, answer=answer), max_body=100)
    body = embedded(render(capture))["exchanges"][0]["response_body"]
    assert body["size"] == len(answer) and body["kept"] == 100
    assert body["text"] == answer[:100].decode()


def test_findings_are_filed_under_their_exchange() -> None:
    capture = load(ROOT / "captures" / "socket-mount.jsonl")
    data = embedded(render(capture))
    flagged = {(x["conn"], x["seq"]): x["findings"] for x in data["exchanges"] if x["findings"]}
    assert any(f["rule"] == "docker-socket-mount" for fs in flagged.values() for f in fs)
    from docktap.audit import audit

    assert sum(len(fs) for fs in flagged.values()) == len(audit(capture))


# --- the CLI -------------------------------------------------------------------------------


def test_export_html_works_on_every_capture(tmp_path: Path) -> None:
    for capture in CAPTURES:
        out = tmp_path / f"{capture.stem}.html"
        proc = docktap("export", "--format", "html", "-o", str(out), str(capture))
        assert proc.returncode == 0, f"{capture.name}: {proc.stderr.decode()}"
        assert out.read_text() == render(load(capture), capture.name)


def test_export_html_writes_a_private_page(tmp_path: Path) -> None:
    out = tmp_path / "run.html"
    proc = docktap(
        "export", "--format", "html", "-o", str(out), str(ROOT / "captures" / "run.jsonl")
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert out.stat().st_mode & 0o777 == 0o600
    assert out.read_text() == render(load(ROOT / "captures" / "run.jsonl"), "run.jsonl")


def fake_browser(tmp_path: Path, status: int) -> dict[str, str]:
    """An environment whose browser (Python's webbrowser honours BROWSER) notes the URL it got."""
    script = tmp_path / "browser"
    script.write_text(f'#!/bin/sh\necho "$1" > {tmp_path}/opened\nexit {status}\n')
    script.chmod(0o700)
    return {**os.environ, "BROWSER": f"{script} %s", "TMPDIR": str(tmp_path)}


def test_view_opens_a_private_temporary_page(tmp_path: Path) -> None:
    capture = ROOT / "captures" / "run.jsonl"
    proc = docktap("view", str(capture), env=fake_browser(tmp_path, 0))
    assert proc.returncode == 0, proc.stderr.decode()
    url = (tmp_path / "opened").read_text().strip()
    assert url.startswith("file://") and url.endswith(".html")
    opened = Path(url.removeprefix("file://"))
    assert opened.parent == tmp_path
    assert opened.stat().st_mode & 0o777 == 0o600
    assert opened.read_text() == render(load(capture), "run.jsonl")
    assert proc.stdout == b""


def test_view_prints_the_path_without_a_browser(tmp_path: Path) -> None:
    proc = docktap("view", str(ROOT / "captures" / "run.jsonl"), env=fake_browser(tmp_path, 1))
    assert proc.returncode == 0, proc.stderr.decode()
    printed = Path(proc.stdout.decode().strip())
    assert printed.parent == tmp_path and printed.suffix == ".html"
    assert printed.stat().st_mode & 0o777 == 0o600


# --- in a real browser ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    reason = browser_missing()
    if reason:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    with chromium() as driver:
        yield driver


def open_page(browser: WebDriver, tmp_path: Path, capture: Capture, name: str) -> list[str]:
    """Load the page of `capture`; the URLs it asked for other than itself."""
    path = tmp_path / (name.removesuffix(".jsonl") + ".html")
    path.write_text(render(capture, name), encoding="utf-8")
    network_requests(browser)  # forget what the browser did before
    console_errors(browser)
    browser.get(path.as_uri())
    assert browser.execute_script("return document.documentElement.dataset.ready")
    assert console_errors(browser) == []
    return [url for url in network_requests(browser) if url != path.as_uri()]


def rows(browser: WebDriver) -> list[WebElement]:
    return browser.find_elements(By.CSS_SELECTOR, "#rows .row")


def row_numbers(browser: WebDriver) -> list[str]:
    """The rows' exchange numbers, read in one go: the list may be redrawn between two reads."""
    numbers = browser.execute_script(
        "return Array.from(document.querySelectorAll('#rows .row'), r => r.dataset.i)"
    )
    return [str(n) for n in numbers]


def settled_rows(browser: WebDriver, wanted: list[str]) -> list[str]:
    """The rows once they show `wanted`, or as they are after 5 s: typing redraws the list."""
    with suppress(TimeoutException):
        WebDriverWait(browser, 5).until(lambda b: row_numbers(b) == wanted)
    return row_numbers(browser)


def details_text(browser: WebDriver, selector: str) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, "#details " + selector).text)


BROWSED = ["run", "run-stdin", "run-tty", "events", "logs-follow", "build", "cp", "socket-mount"]


@pytest.mark.parametrize("name", BROWSED)
def test_lanes_and_rows_match_the_exchanges(browser: WebDriver, tmp_path: Path, name: str) -> None:
    capture = load(ROOT / "captures" / f"{name}.jsonl")
    assert open_page(browser, tmp_path, capture, f"{name}.jsonl") == []
    found = [(attribute(r, "data-conn"), attribute(r, "data-seq")) for r in rows(browser)]
    assert found == [(str(ex.conn), str(ex.seq)) for ex in capture.exchanges]
    ops = [r.find_element(By.CSS_SELECTOR, ".op").text for r in rows(browser)]
    assert ops == [ex.operation or "" for ex in capture.exchanges]
    # Numbers read as in `docktap show`.
    took = [r.find_elements(By.CSS_SELECTOR, ".num")[1].text for r in rows(browser)]
    assert took == [format_duration(ex.duration_s) for ex in capture.exchanges]
    lanes = browser.find_elements(By.CSS_SELECTOR, "#lane-labels .lane-label")
    assert [int(attribute(lane, "data-conn")) for lane in lanes] == sorted(capture.connections)
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars g.bar")
    assert len(bars) == len(capture.exchanges)
    lane_of = {conn: i for i, conn in enumerate(sorted(capture.connections))}
    for bar in bars:
        ex = capture.exchanges[int(attribute(bar, "data-i"))]
        top = float(attribute(bar.find_element(By.CSS_SELECTOR, "rect"), "y"))
        assert int(top // 22) == lane_of[ex.conn]
        assert f"k-{exchange_kind(ex)}" in attribute(bar, "class").split()
    # Clicking each row opens that exchange.
    for row, ex in zip(rows(browser), capture.exchanges, strict=True):
        row.click()
        assert details_text(browser, "h2").startswith(f"#{ex.number} ")
        assert ex.method + " " + ex.target in details_text(browser, ".request pre.head")


def test_a_click_on_the_attach_shows_stdout_and_stderr_apart(
    browser: WebDriver, tmp_path: Path
) -> None:
    capture = load(ROOT / "captures" / "run.jsonl")
    open_page(browser, tmp_path, capture, "run.jsonl")
    attach = next(ex for ex in capture.exchanges if ex.operation == "ContainerAttach")
    index = capture.exchanges.index(attach)
    browser.find_element(By.CSS_SELECTOR, f'#bars g.bar[data-i="{index}"] rect').click()
    assert details_text(browser, "h2").startswith(f"#{attach.number} ContainerAttach")
    assert "hooks the client up" in details_text(browser, ".explain")
    assert details_text(browser, ".io-stdout pre .data") == "out"
    assert details_text(browser, ".io-stderr pre .data") == "err"
    assert details_text(browser, ".io-stderr .at").startswith("+")
    assert "101 UPGRADED" in details_text(browser, ".response pre.head")
    # The wait's answer is JSON, pretty-printed.
    wait = capture.exchanges.index(
        next(ex for ex in capture.exchanges if ex.operation == "ContainerWait")
    )
    rows(browser)[wait].click()
    assert (
        details_text(browser, ".response pre.json") == '{\n  "Error": null,\n  "StatusCode": 3\n}'
    )


def test_stdin_is_shown_apart_from_the_output(browser: WebDriver, tmp_path: Path) -> None:
    capture = encoded(attach_exchange(1, 1, 0.01))
    open_page(browser, tmp_path, capture, "attach.jsonl")
    rows(browser)[0].click()
    assert details_text(browser, ".io-stdin pre .data") == "typed in"
    assert details_text(browser, ".io-stdout pre .data") == "out"
    assert details_text(browser, ".io-stderr pre .data") == "err"


def test_binary_stdin_is_a_hex_preview_as_in_the_timeline() -> None:
    sent = b"\x1f\x8b\x08\x00" + bytes(range(20))
    events = [
        StreamData(e.conn, e.t, e.seq, e.direction, sent)
        if isinstance(e, StreamData) and e.direction is Direction.CLIENT
        else e
        for e in attach_exchange(1, 1, 0.01)
    ]
    (x,) = embedded(render(encoded(events)))["exchanges"]
    stdin = [text for _, name, text, _ in x["io"] if name == "stdin"]
    assert stdin == ["\n".join(hex_preview(sent))]
    assert stdin[0].startswith("00000000  1f 8b 08 00 00 01 02 03")
    assert "\ufffd" not in stdin[0]
    out = [text for _, name, text, _ in x["io"] if name == "stdout"]
    assert out == ["out\n"]  # text stays text


def test_a_json_stream_shows_one_message_per_line(browser: WebDriver, tmp_path: Path) -> None:
    capture = load(ROOT / "captures" / "events.jsonl")
    open_page(browser, tmp_path, capture, "events.jsonl")
    events = next(ex for ex in capture.exchanges if ex.operation == "SystemEvents")
    rows(browser)[capture.exchanges.index(events)].click()
    lines = [line for line in bytes(events.response_body).decode().split("\n") if line.strip()]
    shown = browser.find_elements(By.CSS_SELECTOR, "#details .response .messages li")
    assert [json.loads(li.text) for li in shown] == [json.loads(line) for line in lines]


def test_filters_narrow_the_list_and_dim_the_bars(browser: WebDriver, tmp_path: Path) -> None:
    capture = load(ROOT / "captures" / "docker-py.jsonl")
    open_page(browser, tmp_path, capture, "docker-py.jsonl")
    ops = Select(browser.find_element(By.ID, "filter-op"))
    ops.select_by_value("ContainerCreate")
    wanted = [str(i) for i, ex in enumerate(capture.exchanges) if ex.operation == "ContainerCreate"]
    assert wanted and [attribute(r, "data-i") for r in rows(browser)] == wanted
    dim = browser.find_elements(By.CSS_SELECTOR, "#bars g.bar.dim")
    assert len(dim) == len(capture.exchanges) - len(wanted)
    ops.select_by_value("")
    status = Select(browser.find_element(By.ID, "filter-status"))
    status.select_by_value("2xx")
    wanted = [str(i) for i, ex in enumerate(capture.exchanges) if 200 <= (ex.status or 0) < 300]
    assert [attribute(r, "data-i") for r in rows(browser)] == wanted
    status.select_by_value("")
    box = browser.find_element(By.ID, "filter-text")
    box.send_keys("exec-out")  # only in a stream, not in any target
    wanted = [
        str(i)
        for i, ex in enumerate(capture.exchanges)
        if b"exec-out" in ex.output("stdout") + bytes(ex.response_body) + bytes(ex.request_body)
    ]
    assert wanted and settled_rows(browser, wanted) == wanted
    assert browser.find_element(By.ID, "count").text == f"{len(wanted)} of {len(capture)} exchanges"


def test_markup_in_a_body_is_shown_not_run(browser: WebDriver, tmp_path: Path) -> None:
    capture = encoded(plain_exchange(1, 1, 0.01, target="/v1.41/version", answer=BREAKOUT.encode()))
    open_page(browser, tmp_path, capture, "breakout.jsonl")
    assert browser.title == "breakout.jsonl - docktap"
    rows(browser)[0].click()
    assert details_text(browser, ".response pre.body") == BREAKOUT
    assert browser.title == "breakout.jsonl - docktap"


def test_a_cut_body_says_so_on_the_page(browser: WebDriver, tmp_path: Path) -> None:
    answer = json.dumps([{"Id": "x" * 64}] * 20).encode()
    capture = encoded(plain_exchange(1, 1, 0.01, answer=answer), max_body=100)
    open_page(browser, tmp_path, capture, "cut.jsonl")
    assert "cut" in rows(browser)[0].find_element(By.CSS_SELECTOR, ".marks").text
    rows(browser)[0].click()
    note = details_text(browser, ".response .body-note.cut")
    assert f"100 of {len(answer)} bytes kept" in note
    assert details_text(browser, ".response pre.text") == answer[:100].decode()


def test_masked_secrets_show_as_masked(browser: WebDriver, tmp_path: Path) -> None:
    # The capture holds the mask; the page shows exactly that, and nothing else of the value.
    body = json.dumps({"Image": "bb", "Env": ["DB_PASSWORD=hunter2-secret", "PLAIN=visible"]})
    events = plain_exchange(1, 1, 0.01, "POST", "/v1.41/containers/create", body.encode())
    capture = encoded(events)
    masked = json.loads(bytes(capture.exchanges[0].request_body))["Env"][0]
    assert masked.startswith("DB_PASSWORD=<redacted len~")
    text = render(capture)
    assert "hunter2" not in text
    open_page(browser, tmp_path, capture, "secret.jsonl")
    rows(browser)[0].click()
    shown = json.loads(details_text(browser, ".request pre.json"))
    assert shown["Env"] == [masked, "PLAIN=visible"]


def test_the_findings_and_the_explanation_are_shown(browser: WebDriver, tmp_path: Path) -> None:
    capture = load(ROOT / "captures" / "socket-mount.jsonl")
    open_page(browser, tmp_path, capture, "socket-mount.jsonl")
    from docktap.audit import audit

    finding = next(f for f in audit(capture) if f.rule == "docker-socket-mount")
    index = next(
        i
        for i, ex in enumerate(capture.exchanges)
        if (ex.conn, ex.seq) == (finding.conn, finding.seq)
    )
    rows(browser)[index].click()
    shown = browser.find_elements(By.CSS_SELECTOR, "#details .findings .finding")
    assert any(
        "CRITICAL" in item.text
        and "docker-socket-mount" in item.text
        and finding.title in item.text
        for item in shown
    )
    assert "creates a container" in details_text(browser, ".explain")


def test_a_link_to_an_exchange_opens_it(browser: WebDriver, tmp_path: Path) -> None:
    capture = load(ROOT / "captures" / "run.jsonl")
    open_page(browser, tmp_path, capture, "run.jsonl")
    start = next(ex for ex in capture.exchanges if ex.operation == "ContainerStart")
    browser.get((tmp_path / "run.html").as_uri() + f"#x-{start.number}")
    browser.refresh()
    assert details_text(browser, "h2").startswith(f"#{start.number} ContainerStart")
    # A click names the exchange clicked in the address, by the same number.
    attach = next(ex for ex in capture.exchanges if ex.operation == "ContainerAttach")
    browser.find_element(
        By.CSS_SELECTOR, f'#rows .row[data-i="{capture.exchanges.index(attach)}"]'
    ).click()
    assert browser.execute_script("return location.hash") == f"#x-{attach.number}"


def test_zoom_changes_the_scale_and_keeps_every_bar(browser: WebDriver, tmp_path: Path) -> None:
    capture = load(ROOT / "captures" / "run.jsonl")
    open_page(browser, tmp_path, capture, "run.jsonl")
    width = float(attribute(browser.find_element(By.ID, "bars"), "width"))
    browser.find_element(By.ID, "zoom-in").click()
    browser.find_element(By.ID, "zoom-in").click()
    zoomed = float(attribute(browser.find_element(By.ID, "bars"), "width"))
    assert zoomed > 3 * (width - 40)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#bars g.bar")) == len(capture)
    browser.find_element(By.ID, "zoom-fit").click()
    assert float(attribute(browser.find_element(By.ID, "bars"), "width")) == width


def test_ten_thousand_exchanges_open_in_under_two_seconds(
    browser: WebDriver, tmp_path: Path
) -> None:
    capture = large_capture()
    assert len(capture) == 10_000
    path = tmp_path / "large.html"
    path.write_text(render(capture, "large.jsonl"), encoding="utf-8")
    network_requests(browser)
    started = time.monotonic()
    browser.get(path.as_uri())
    shown = WebDriverWait(browser, 10, poll_frequency=0.02).until(
        lambda driver: driver.execute_script("return document.documentElement.dataset.shown")
    )
    took = time.monotonic() - started
    # From the start of the navigation to the first frame drawn after the page's script ran.
    assert int(shown) < 2000, f"first frame at {shown} ms"
    assert took < 2, f"page opened in {took:.2f} s"
    assert browser.find_element(By.ID, "count").text == "10000 exchanges"
    assert console_errors(browser) == []
    assert network_requests(browser) == [path.as_uri()]
    # Only what is in view is in the document, the first rows and lanes first...
    in_doc = [int(attribute(r, "data-i")) for r in rows(browser)]
    assert in_doc == list(range(len(in_doc))) and 40 < len(in_doc) < 1000
    drawn = [
        int(attribute(g, "data-i")) for g in browser.find_elements(By.CSS_SELECTOR, "#bars g.bar")
    ]
    assert 0 in drawn and 50 < len(drawn) < 2000
    # ...and scrolling to the end brings the last in, quickly usable: a click opens its details.
    started = time.monotonic()
    for box in ("list-box", "lanes"):
        browser.execute_script(
            f"const b = document.getElementById('{box}'); b.scrollTop = b.scrollHeight"
        )
    last = WebDriverWait(browser, 5, poll_frequency=0.02).until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, '#rows .row[data-i="9999"]')
    )
    WebDriverWait(browser, 5, poll_frequency=0.02).until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, '#bars g.bar[data-i="9999"]')
    )
    last[0].click()
    assert details_text(browser, "h2").startswith("#10000 ContainerAttach")
    assert details_text(browser, ".io-stderr pre .data") == "err"
    assert time.monotonic() - started < 1
    # Filters work on all of them, not only on the rows in the document.
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("4xx")
    assert browser.find_element(By.ID, "count").text == "2000 of 10000 exchanges"
    shown_rows = rows(browser)
    assert shown_rows and all(
        r.find_element(By.CSS_SELECTOR, ".status").text == "404" for r in shown_rows
    )


def test_a_screenshot_of_the_page_is_readable(browser: WebDriver, tmp_path: Path) -> None:
    capture = load(ROOT / "captures" / "run.jsonl")
    open_page(browser, tmp_path, capture, "run.jsonl")
    rows(browser)[2].click()
    shot = tmp_path / "run.png"
    assert browser.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000


def test_the_page_works_inside_an_iframe(browser: WebDriver, tmp_path: Path) -> None:
    # As the notebooks embed it: the whole page in the srcdoc of an iframe.
    capture = load(ROOT / "captures" / "run.jsonl")
    outer = tmp_path / "outer.html"
    outer.write_text(f'<iframe srcdoc="{html.escape(render(capture, "run.jsonl"))}"></iframe>')
    network_requests(browser)
    browser.get(outer.as_uri())
    browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
    try:
        WebDriverWait(browser, 5, poll_frequency=0.02).until(
            lambda driver: len(rows(driver)) == len(capture)
        )
        assert console_errors(browser) == []
    finally:
        browser.switch_to.default_content()
    assert network_requests(browser) == [outer.as_uri()]


def test_a_tar_body_is_shown_in_hex(browser: WebDriver, tmp_path: Path) -> None:
    capture = load(ROOT / "captures" / "cp.jsonl")
    open_page(browser, tmp_path, capture, "cp.jsonl")
    put = next(ex for ex in capture.exchanges if ex.operation == "PutContainerArchive")
    rows(browser)[capture.exchanges.index(put)].click()
    first = details_text(browser, ".request pre.hex").split("\n")[0]
    head = bytes(put.request_body[:16])
    assert first.startswith("00000000  " + head.hex(" "))
    assert first.endswith("docktap-cp.txt..")


def test_policy_decisions_are_shown_on_their_exchange(browser: WebDriver, tmp_path: Path) -> None:
    capture = load(ROOT / "captures" / "socket-mount.jsonl")
    create = next(ex for ex in capture.exchanges if ex.operation == "ContainerCreate")
    denied = Decision(False, "ContainerCreate", "binds the docker socket", "POST", create.path)
    text = page.render(
        capture, "decided.jsonl", web.assets(), {(create.conn, create.seq): [denied]}
    )
    decided = [x for x in embedded(text)["exchanges"] if x["decisions"]]
    assert [(x["conn"], x["seq"]) for x in decided] == [(create.conn, create.seq)]
    path = tmp_path / "decided.html"
    path.write_text(text, encoding="utf-8")
    browser.get(path.as_uri())
    assert console_errors(browser) == []
    rows(browser)[capture.exchanges.index(create)].click()
    assert details_text(browser, ".decisions .decision.denied") == "denied: binds the docker socket"
    rows(browser)[0].click()
    assert not browser.find_elements(By.CSS_SELECTOR, "#details .decisions")


def test_an_exchange_that_never_ended_is_open(browser: WebDriver, tmp_path: Path) -> None:
    # `docker events` still streaming when docktap was stopped: no end, no close, no footer.
    head = (("Content-Type", "application/json"), ("Transfer-Encoding", "chunked"))
    message = b'{"status":"start","id":"abc","time":1800000000,"timeNano":1800000000123456789}\n'
    events: list[Event] = [
        RequestHead(1, 0.01, 1, "GET", "/v1.41/events", "1.1", ()),
        MessageEnd(1, 0.01, 1, Direction.CLIENT),
        ResponseHead(1, 0.02, 1, 200, "OK", "1.1", head, False),
        BodyData(1, 0.5, 1, Direction.DAEMON, message),
    ]
    encoder = RecordEncoder(started_wall=1_800_000_000.0, started_mono=0.0)
    records = [encoder.header("unix:///test/docker.sock", None, "test")]
    records.append(encoder.opened(1, None, 0.0))
    for event in events:
        records.extend(encoder.encode(event))
    capture = loads("".join(dumps(record) + "\n" for record in records))
    assert not capture.complete and capture.exchanges[0].ended_mono is None
    open_page(browser, tmp_path, capture, "cut.jsonl")
    assert "incomplete" in browser.find_element(By.ID, "facts").text
    assert "open" in attribute(browser.find_element(By.CSS_SELECTOR, "#bars g.bar"), "class")
    row = rows(browser)[0]
    assert row.find_elements(By.CSS_SELECTOR, ".num")[1].text == "open"
    row.click()
    assert "never ended" in details_text(browser, ".timing")
    # One message, shown as sent: its 19-digit timeNano is not rounded by JavaScript.
    assert "1800000000123456789" in details_text(browser, ".response pre.json")


def test_errors_of_the_capture_are_shown(browser: WebDriver, tmp_path: Path) -> None:
    encoder = RecordEncoder(started_wall=1_800_000_000.0, started_mono=0.0)
    records = [
        encoder.header("unix:///nowhere.sock", ["docker", "ps"], "test"),
        encoder.opened(1, None, 0.0),
        encoder.failure(
            1, "upstream", "cannot reach the Docker daemon at unix:///nowhere.sock", 0.1
        ),
        encoder.footer(0.2, 4),
    ]
    capture = loads("".join(dumps(record) + "\n" for record in records))
    open_page(browser, tmp_path, capture, "unreachable.jsonl")
    shown = browser.find_element(By.CSS_SELECTOR, "#capture-errors li").text
    assert shown == "conn 1: upstream: cannot reach the Docker daemon at unix:///nowhere.sock"


def test_j_and_k_move_along_the_list(browser: WebDriver, tmp_path: Path) -> None:
    capture = load(ROOT / "captures" / "docker-py.jsonl")
    open_page(browser, tmp_path, capture, "docker-py.jsonl")
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("2xx")
    wanted = [ex for ex in capture.exchanges if 200 <= (ex.status or 0) < 300]
    assert len(wanted) < len(capture)  # the keys skip what the filters hide
    body = browser.find_element(By.TAG_NAME, "body")
    for key, ex in zip("jjjk", [wanted[0], wanted[1], wanted[2], wanted[1]], strict=True):
        body.send_keys(key)
        assert details_text(browser, "h2").startswith(f"#{ex.number} ")
