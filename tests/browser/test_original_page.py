"""The original system's page against our master, in a real Chromium: a drop-in for the original.

The page below is a minimal baseline client, as the original page is: it loads the Socket.IO client from
the master's `/socket.io/socket.io.js`, connects with the client's default transports (long-polling
first, then the upgrade to a WebSocket), listens only to `session-id`, `task-queued` and `ai-response`,
and emits `user-query {query, apiKey}` without an acknowledgement. It is served from a temporary
directory by a tiny HTTP server of its own, so the master runs with that origin in `CORS_ORIGINS`.
(Playwright's request interception cannot stand in for it: Chromium's local network access checks then
block the page's WebSocket to the loopback master, and the upgrade never happens.)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Request, Response, WebSocket

from lab.system.local import LocalCluster
from services.master.settings import MasterSettings
from tests.conftest import ClusterFactory

pytestmark = pytest.mark.browser

WORK_SECONDS = 1.0
CONNECT_TIMEOUT_MS = 15_000
ANSWER_TIMEOUT_MS = 60_000
UNDELIVERED_SECONDS = 5.0
# Leading and trailing spaces and a tab: the answer must echo each question exactly as it was sent.
FIRST = " \tWho answers first?  "
SECOND = "  What is MQTT?\t "

# `?transports=polling` restricts the client to long-polling; without it, the client's defaults.
ORIGINAL_PAGE = """<!doctype html>
<html>
<head><meta charset="utf-8"><title>AI chat (baseline)</title></head>
<body>
<ul id="messages"></ul>
<script src="__MASTER__/socket.io/socket.io.js"></script>
<script>
  const only = new URLSearchParams(location.search).get("transports");
  const socket = only ? io("__MASTER__", { transports: only.split(",") }) : io("__MASTER__");
  window.socket = socket;
  window.events = [];
  const show = (text) => {
    const li = document.createElement("li");
    li.textContent = text;
    document.getElementById("messages").appendChild(li);
  };
  socket.on("session-id", (id) => { window.events.push(["session-id", id]); show("session " + id); });
  socket.on("task-queued", (data) => { window.events.push(["task-queued", data]); show("queued " + data.position); });
  socket.on("ai-response", (data) => { window.events.push(["ai-response", data]); show(data.response); });
  window.ask = (query) => socket.emit("user-query", { query: query, apiKey: "" });
</script>
</body>
</html>
"""


@dataclass
class Traffic:
    """What the page asked the master for: Engine.IO requests, WebSockets, the client script's response."""

    engine_requests: list[str] = field(default_factory=list)
    websockets: list[str] = field(default_factory=list)
    client_script: list[Response] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves the page's directory without a line per request on stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass(frozen=True)
class Original:
    """A system with one worker and 1 s of work (the second of two questions has to wait), and the
    baseline page on an origin of its own, which the master lets connect."""

    cluster: LocalCluster
    master: str  # the master's base URL
    page_url: str


@pytest.fixture
def original(cluster_factory: ClusterFactory, tmp_path: Path) -> Iterator[Original]:
    site = tmp_path / "site"
    site.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, name="original-page", daemon=True)
    thread.start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        cors = MasterSettings.env_of(cors_origins=(origin,))
        cluster = cluster_factory(workers=1, work_seconds=WORK_SECONDS, extra_env=cors)
        master = cluster.web_url.rstrip("/")
        (site / "index.html").write_text(ORIGINAL_PAGE.replace("__MASTER__", master), encoding="utf-8")
        yield Original(cluster, master, f"{origin}/index.html")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def original_page(browser: Browser, original: Original, transports: str | None) -> Iterator[tuple[Page, Traffic]]:
    """The baseline page, loaded, with its session id; fails on script errors."""
    context = browser.new_context()
    page = context.new_page()
    traffic = Traffic()

    def on_request(request: Request) -> None:
        if "/socket.io/?" in request.url:
            traffic.engine_requests.append(request.url)

    def on_response(response: Response) -> None:
        if response.url == f"{original.master}/socket.io/socket.io.js":
            traffic.client_script.append(response)

    def on_websocket(ws: WebSocket) -> None:
        traffic.websockets.append(ws.url)

    page.on("pageerror", lambda exc: traffic.errors.append(str(exc)))
    page.on("request", on_request)
    page.on("response", on_response)
    page.on("websocket", on_websocket)
    try:
        page.goto(original.page_url + (f"?transports={transports}" if transports else ""))
        page.wait_for_function(
            "() => window.events.some(([name]) => name === 'session-id')", timeout=CONNECT_TIMEOUT_MS
        )
        yield page, traffic
        assert traffic.errors == [], f"script errors on the page: {traffic.errors}"
    finally:
        context.close()


def events(page: Page) -> list[tuple[str, Any]]:
    """The events the page received, in order: (name, payload)."""
    return [(name, data) for name, data in page.evaluate("() => window.events")]


def transport(page: Page) -> str:
    """The Engine.IO transport the page's connection uses now."""
    return str(page.evaluate("() => window.socket.io.engine.transport.name"))


def ask_both_and_check_answers(page: Page, cluster: LocalCluster) -> None:
    """Ask two questions of the one worker: the second waits (`task-queued`); both are answered, each
    echoing its question exactly, with the worker, its processing time and a timestamp."""
    (worker_id,) = cluster.worker_ids
    before_ms = int(time.time() * 1000)
    page.evaluate("(q) => window.ask(q)", FIRST)  # takes the only worker
    page.evaluate("(q) => window.ask(q)", SECOND)  # so this one waits in the queue
    page.wait_for_function(
        "() => window.events.filter(([name]) => name === 'ai-response').length >= 2", timeout=ANSWER_TIMEOUT_MS
    )
    after_ms = int(time.time() * 1000)
    got = events(page)
    names = [name for name, _ in got]
    assert names[0] == "session-id" and isinstance(got[0][1], str) and got[0][1]
    queued = [data for name, data in got if name == "task-queued"]
    assert len(queued) == 1 and queued[0]["position"] == 1, got
    answers = {data["query"]: (i, data) for i, (name, data) in enumerate(got) if name == "ai-response"}
    assert set(answers) == {FIRST, SECOND}, [data["query"] for name, data in got if name == "ai-response"]
    assert names.index("task-queued") < answers[SECOND][0], "task-queued comes before the answer"
    for _, answer in answers.values():
        assert isinstance(answer["response"], str) and answer["response"].strip()
        assert answer["workerId"] == worker_id
        assert isinstance(answer["processingTime"], int) and answer["processingTime"] >= WORK_SECONDS * 1000 * 0.9
        assert isinstance(answer["timestamp"], int) and before_ms - 5_000 <= answer["timestamp"] <= after_ms + 5_000
    no_answer_kept(page, cluster.web_url.rstrip("/"), cluster.operator_headers)


def no_answer_kept(page: Page, master: str, operator: dict[str, str]) -> None:
    """The page never acknowledges an answer: the master does not keep its answers once they went out
    (it would keep them an hour for an acknowledgement that never comes)."""
    deadline = time.monotonic() + UNDELIVERED_SECONDS
    while True:
        undelivered = page.request.get(f"{master}/api/status", headers=operator).json()["undelivered"]
        if undelivered == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert undelivered == 0, f"the master still keeps {undelivered} answers the page already got"


def test_the_client_script_is_served_where_socket_io_serves_it(browser: Browser, original: Original) -> None:
    base = original.master
    with original_page(browser, original, None) as (page, traffic):
        assert page.evaluate("() => typeof io") == "function"
        (script,) = traffic.client_script
        assert script.status == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert script.headers.get("etag") and script.headers.get("last-modified")  # as the page's other assets
        source_map = page.request.get(f"{base}/socket.io/socket.io.min.js.map")
        assert source_map.status == 200 and source_map.headers["content-type"].startswith("application/json")
        assert source_map.json()["version"] == 3
        # The Engine.IO endpoint under the same path is still Socket.IO's.
        handshake = page.request.get(f"{base}/socket.io/?EIO=4&transport=polling")
        assert handshake.status == 200 and handshake.text().startswith("0{")  # Engine.IO's open packet
        assert json.loads(handshake.text()[1:])["upgrades"] == ["websocket"]


def test_the_original_page_connects_by_polling_upgrades_to_a_websocket_and_gets_exact_answers(
    browser: Browser, original: Original
) -> None:
    with original_page(browser, original, None) as (page, traffic):
        assert any("transport=polling" in url for url in traffic.engine_requests), traffic.engine_requests
        page.wait_for_function(
            "() => window.socket.io.engine.transport.name === 'websocket'", timeout=CONNECT_TIMEOUT_MS
        )
        assert any("transport=websocket" in url for url in traffic.websockets), traffic.websockets
        ask_both_and_check_answers(page, original.cluster)
        assert transport(page) == "websocket"


def test_the_original_page_works_over_long_polling_alone(browser: Browser, original: Original) -> None:
    with original_page(browser, original, "polling") as (page, traffic):
        assert transport(page) == "polling"
        ask_both_and_check_answers(page, original.cluster)
        assert transport(page) == "polling"
        assert traffic.websockets == []
        assert sum("transport=polling" in url for url in traffic.engine_requests) > 2  # it polled throughout


def test_the_original_page_shows_why_a_question_was_refused(browser: Browser, original: Original) -> None:
    """The page asks for no acknowledgement, so a refusal comes as an `ai-response` it shows, with `error`."""
    longest = MasterSettings().max_query_chars
    too_long = "x" * (longest + 1)
    with original_page(browser, original, None) as (page, _):
        page.evaluate("(q) => window.ask(q)", "")
        page.evaluate("(q) => window.ask(q)", too_long)
        page.wait_for_function(
            "() => window.events.filter(([name]) => name === 'ai-response').length >= 2", timeout=CONNECT_TIMEOUT_MS
        )
        refusals = {data["query"]: data for name, data in events(page) if name == "ai-response"}
        assert set(refusals) == {"", too_long}
        assert refusals[""]["error"] == "the question is empty"
        assert refusals[too_long]["error"].startswith(f"the question is too long: {longest + 1} characters")
        for refusal in refusals.values():
            assert refusal["error"] in refusal["response"] and refusal["processingTime"] == 0
            assert isinstance(refusal["timestamp"], int) and refusal["timestamp"] > 0
        shown = page.locator("#messages li").all_inner_texts()
        assert all(any(r["response"] == text for text in shown) for r in refusals.values()), shown
        assert not any(name == "task-queued" for name, _ in events(page))
        # The page goes on as before; a refusal was never kept as an answer waiting for it.
        page.evaluate("(q) => window.ask(q)", SECOND)
        page.wait_for_function(
            "() => window.events.filter(([name]) => name === 'ai-response').length >= 3", timeout=ANSWER_TIMEOUT_MS
        )
        answer = events(page)[-1][1]
        assert answer["query"] == SECOND and not answer.get("error") and answer["response"].strip()
        no_answer_kept(page, original.master, original.cluster.operator_headers)
