"""The dashboard (`/dashboard`) in a real Chromium against a real master with real workers (offline model).

A user asks through a real Socket.IO chat client (`ChatClient`, on an event loop of its own in a thread, as
Playwright's sync API holds the test's thread); the page must show the worker busy with that task, then the
answer counted and drawn, and never the question, the user's session id or key: neither on the page nor in
what the master sent it. Chromium: the `browser` fixture (tests/browser/conftest.py); the systems:
`cluster_factory` (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, Locator, Page, Response, WebSocket, expect

from lab.loadgen.client import ChatClient
from tests.conftest import ClusterFactory

pytestmark = pytest.mark.browser

CONNECT_TIMEOUT_MS = 15_000
ANSWER_TIMEOUT_MS = 60_000
WORK_SECONDS = 4.0  # long enough to see the worker busy, and its task's time run
QUESTION = "Which secret question must never show on the dashboard?"
SECRET_KEY = "AIza-dashboard-test-SECRET-5d1e8a"
SECONDS = re.compile(r"^\d+(\.\d)? s$")

T = TypeVar("T")


@dataclass
class Traffic:
    """What the master sent the page over Socket.IO (WebSocket frames and long-polling responses), and script
    errors on it."""

    frames: list[str] = field(default_factory=list)
    polls: list[Response] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def received(self) -> str:
        """Everything received so far, as one text."""
        return "\n".join([*self.frames, *(r.text() for r in self.polls if r.ok)])


@contextmanager
def dashboard_page(browser: Browser, web_url: str, token: str) -> Iterator[tuple[Page, Traffic]]:
    """A fresh page on `web_url`'s dashboard, opened as `lab up` prints it (the operator token in the fragment),
    live (connected); fails on any script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    traffic = Traffic()
    page.on("pageerror", lambda exc: traffic.errors.append(str(exc)))

    def on_response(response: Response) -> None:
        if "/socket.io/?" in response.url and response.request.method == "GET":
            traffic.polls.append(response)

    def on_websocket(ws: WebSocket) -> None:
        ws.on("framereceived", lambda payload: traffic.frames.append(payload if isinstance(payload, str) else ""))

    page.on("response", on_response)
    page.on("websocket", on_websocket)
    try:
        page.goto(web_url.rstrip("/") + f"/dashboard#token={token}")
        expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected", timeout=CONNECT_TIMEOUT_MS)
        assert token not in page.url, "the page strips the token from the address bar"
        yield page, traffic
        assert traffic.errors == [], f"script errors on the page: {traffic.errors}"
    finally:
        context.close()


class LoopThread:
    """An asyncio event loop in a thread of its own, for the chat client beside Playwright's sync API."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="chat-client", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run `coroutine` on the loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@contextmanager
def chat_user(web_url: str) -> Iterator[tuple[ChatClient, LoopThread]]:
    """A connected chat user (its own session) and the loop it runs on."""
    loop = LoopThread()
    user = ChatClient(web_url)
    try:
        loop.run(user.connect())
        yield user, loop
    finally:
        loop.run(user.close())
        loop.close()


def worker_row(page: Page, worker_id: str) -> Locator:
    return page.locator(f'[data-testid="worker-row"][data-worker-id="{worker_id}"]')


def test_the_dashboard_follows_a_question_without_showing_it_its_session_or_key(
    browser: Browser, cluster_factory: ClusterFactory
) -> None:
    cluster = cluster_factory(workers=2, work_seconds=WORK_SECONDS)
    with dashboard_page(browser, cluster.web_url, cluster.operator_token) as (page, traffic):
        # Every worker, with its language and state.
        expect(page.get_by_test_id("worker-row")).to_have_count(2, timeout=CONNECT_TIMEOUT_MS)
        for worker_id in cluster.worker_ids:
            row = worker_row(page, worker_id)
            expect(row.get_by_test_id("worker-language")).to_have_text("python")
            expect(row).to_have_attribute("data-state", "idle")
            expect(row.get_by_test_id("worker-state")).to_have_text("idle")
            expect(row.get_by_test_id("worker-done")).to_have_text("0")
        expect(page.get_by_test_id("workers-online")).to_have_text("2")
        expect(page.get_by_test_id("no-workers")).to_be_hidden()

        with chat_user(cluster.web_url) as (user, loop):
            session_id = user.session_id or ""
            exchange = loop.run(user.ask(QUESTION, api_key=SECRET_KEY))
            assert exchange.task_id, exchange.ack

            # The worker that took it is busy with that task, which has been running for a while.
            busy = page.locator('[data-testid="worker-row"][data-state="busy"]')
            expect(busy).to_have_count(1, timeout=CONNECT_TIMEOUT_MS)
            expect(busy.get_by_test_id("worker-task")).to_have_text(exchange.task_id)
            expect(busy.get_by_test_id("worker-state")).to_have_text("busy")
            expect(busy.get_by_test_id("worker-task-time")).to_have_text(SECONDS)
            expect(page.get_by_test_id("in-flight")).to_have_text("1")
            expect(page.get_by_test_id("queue-length")).to_have_text("0")
            worker_id = busy.get_attribute("data-worker-id") or ""
            assert worker_id in cluster.worker_ids

            loop.run(user.wait_answers(1, timeout=ANSWER_TIMEOUT_MS / 1000), timeout=ANSWER_TIMEOUT_MS / 1000 + 5)
            answer = exchange.answer
            assert answer is not None and answer.workerId == worker_id and not answer.error

        # The answer is counted: the worker idle again with one task done, and the charts have a point.
        row = worker_row(page, worker_id)
        expect(row).to_have_attribute("data-state", "idle", timeout=CONNECT_TIMEOUT_MS)
        expect(row.get_by_test_id("worker-done")).to_have_text("1")
        expect(row.get_by_test_id("worker-task")).to_have_text("")
        expect(page.get_by_test_id("in-flight")).to_have_text("0")
        expect(page.get_by_test_id("throughput-chart")).to_have_attribute("data-answers", "1", timeout=5_000)
        expect(page.get_by_test_id("latency-chart")).to_have_attribute("data-points", "1")
        expect(page.get_by_test_id("answers-total")).to_have_text("1")
        drawn = page.evaluate(
            """() => ({
                throughput: Chart.getChart("throughput-chart").data.datasets[0].data.filter((p) => p.y > 0).length,
                p50: Chart.getChart("latency-chart").data.datasets[0].data.map((p) => p.y),
                p95: Chart.getChart("latency-chart").data.datasets[1].data.map((p) => p.y),
            })"""
        )
        assert drawn["throughput"] >= 1, drawn
        # One answer: its latency (seconds) is both percentiles, and covers the worker's simulated work.
        assert len(drawn["p50"]) == 1 and drawn["p50"] == drawn["p95"] and drawn["p50"][0] >= WORK_SECONDS, drawn
        expect(page.get_by_test_id("latency-p50")).to_have_text(SECONDS)

        # Nothing of the user's: not on the page, not in anything the master sent it.
        shown = page.locator("body").inner_text() + page.content()
        received = traffic.received()
        assert '"dashboard"' in received, "the snapshots were captured"
        for secret, what in ((QUESTION, "question"), (session_id, "session id"), (SECRET_KEY, "API key")):
            assert secret and secret not in shown, f"the {what} is on the dashboard"
            assert secret not in received, f"the {what} was sent to the dashboard"
        assert "session-id" not in received and "ai-response" not in received


def test_a_worker_killed_while_the_dashboard_is_open_shows_as_offline(
    browser: Browser, cluster_factory: ClusterFactory
) -> None:
    cluster = cluster_factory(workers=2, work_seconds=0.2)
    with dashboard_page(browser, cluster.web_url, cluster.operator_token) as (page, _):
        expect(page.get_by_test_id("worker-row")).to_have_count(2, timeout=CONNECT_TIMEOUT_MS)
        victim, survivor = cluster.worker_ids
        expect(worker_row(page, victim)).to_have_attribute("data-state", "idle")

        cluster.kill_worker(victim)

        row = worker_row(page, victim)
        expect(row).to_have_attribute("data-state", "offline", timeout=CONNECT_TIMEOUT_MS)
        expect(row.get_by_test_id("worker-state")).to_have_text("offline")
        expect(worker_row(page, survivor)).to_have_attribute("data-state", "idle")
        expect(page.get_by_test_id("workers-gone-line")).to_be_visible()
        # Its replacement (the local runner restarts what dies) comes in as a new worker.
        expect(page.locator('[data-testid="worker-row"][data-state="idle"]')).to_have_count(2, timeout=30_000)


def test_the_chat_page_still_loads_its_scripts_and_the_status_names_the_grpc_endpoint(
    browser: Browser, cluster_factory: ClusterFactory
) -> None:
    cluster = cluster_factory(workers=1)
    context = browser.new_context()
    page = context.new_page()
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    try:
        page.goto(cluster.web_url.rstrip("/") + "/")
        expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected", timeout=CONNECT_TIMEOUT_MS)
        expect(page.get_by_test_id("session-id")).not_to_be_empty()
        status = page.context.request.get(cluster.web_url + "/api/status", headers=cluster.operator_headers)
        assert status.ok and status.json()["grpc_endpoint"] == cluster.grpc_endpoint
        for name in ("socket.io.min.js", "chart.umd.min.js", "marked.umd.js", "purify.min.js"):
            assert page.context.request.get(f"{cluster.web_url.rstrip('/')}/vendor/{name}").ok, name
        assert failed == [], "every file the chat page asked for was there"
    finally:
        context.close()


def test_the_dashboard_without_the_right_token_is_refused_and_says_how_to_open_it(
    browser: Browser, cluster_factory: ClusterFactory
) -> None:
    cluster = cluster_factory(workers=1, work_seconds=0.2)
    for fragment in ("", "#token=not-the-token"):
        context = browser.new_context()
        page = context.new_page()
        try:
            page.goto(cluster.web_url + "/dashboard" + fragment)
            notice = page.get_by_test_id("operator-notice")
            expect(notice).to_contain_text("open the URL `lab up` printed", timeout=CONNECT_TIMEOUT_MS)
            expect(notice).to_contain_text("operator token refused" if fragment else "operator token required")
            expect(page.get_by_test_id("status")).to_have_attribute("data-state", "disconnected")
            expect(page.get_by_test_id("worker-row")).to_have_count(0)
            assert "not-the-token" not in page.url
        finally:
            context.close()


def test_the_dashboard_keeps_its_token_across_a_reload_and_the_chat_page_needs_none(
    browser: Browser, cluster_factory: ClusterFactory
) -> None:
    cluster = cluster_factory(workers=1, work_seconds=0.2)
    with dashboard_page(browser, cluster.web_url, cluster.operator_token) as (page, _):
        assert page.url == cluster.web_url + "/dashboard"
        page.reload()
        expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected", timeout=CONNECT_TIMEOUT_MS)
        expect(page.get_by_test_id("worker-row")).to_have_count(1, timeout=CONNECT_TIMEOUT_MS)
        # The operator views refuse the page's own requests (it has no token in a header)...
        assert page.context.request.get(cluster.web_url + "/api/status").status == 401
        assert page.context.request.get(cluster.web_url + "/metrics").status == 401
        # ...while the chat page and its counts stay public.
        page.goto(cluster.web_url + "/")
        expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected", timeout=CONNECT_TIMEOUT_MS)
        expect(page.get_by_test_id("system-status")).to_contain_text("1 worker", timeout=CONNECT_TIMEOUT_MS)
