"""The chat page in a real Chromium against a real master with two real workers (offline model).

Needs the `system` fixture (tests/conftest.py): an object whose `web_url` is the master's HTTP address;
the tests that leave the page while a question is in flight start their own slower system (`cluster_factory`).
Chromium: the `browser` fixture (tests/browser/conftest.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import pytest
from playwright.sync_api import Browser, Locator, Page, Request, WebSocket, expect

from lab.system.local import LocalCluster
from tests.conftest import ClusterFactory

pytestmark = pytest.mark.browser

CONNECT_TIMEOUT_MS = 15_000
ANSWER_TIMEOUT_MS = 60_000  # two workers, WORK_SECONDS about 1: generous for a slow CI machine
INTEGER = re.compile(r"^\d+$")
SLOW_WORK_SECONDS = 3.0  # `slow_page`: long enough to reload or leave while the worker is busy


class System(Protocol):
    """What these tests need from the `system` fixture."""

    @property
    def web_url(self) -> str: ...


@pytest.fixture
def outgoing() -> list[str]:
    """Everything the page sends to the server over Socket.IO (polling bodies and WebSocket frames)."""
    return []


@contextmanager
def chat_page(browser: Browser, web_url: str, outgoing: list[str]) -> Iterator[Page]:
    """A fresh page (own storage) on the chat at `web_url`, connected, with a session id.

    Fails on any script error.
    """
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_request(request: Request) -> None:
        if "/socket.io/" in request.url and request.post_data:
            outgoing.append(request.post_data)

    def on_websocket(ws: WebSocket) -> None:
        ws.on("framesent", lambda payload: outgoing.append(payload if isinstance(payload, str) else ""))

    page.on("request", on_request)
    page.on("websocket", on_websocket)
    try:
        page.goto(web_url.rstrip("/") + "/")
        wait_connected(page)
        yield page
        assert errors == [], f"script errors on the page: {errors}"
    finally:
        context.close()


def wait_connected(page: Page) -> str:
    """Wait until the page is connected and shows a session id; return that id."""
    status = page.get_by_test_id("status")
    expect(status).to_have_attribute("data-state", "connected", timeout=CONNECT_TIMEOUT_MS)
    expect(status).to_contain_text("Connected")
    session = page.get_by_test_id("session-id")
    expect(session).not_to_be_empty(timeout=CONNECT_TIMEOUT_MS)
    return session.inner_text().strip()


@pytest.fixture
def page(browser: Browser, system: System, outgoing: list[str]) -> Iterator[Page]:
    """The chat on the module's shared system (two workers, about 1 s of work)."""
    with chat_page(browser, system.web_url, outgoing) as page:
        yield page


@pytest.fixture
def slow_cluster(cluster_factory: ClusterFactory) -> LocalCluster:
    """A system with one worker and 3 s of work: time to leave before the answer."""
    return cluster_factory(workers=1, work_seconds=SLOW_WORK_SECONDS)


@pytest.fixture
def slow_page(browser: Browser, slow_cluster: LocalCluster, outgoing: list[str]) -> Iterator[Page]:
    """The chat on `slow_cluster`."""
    with chat_page(browser, slow_cluster.web_url, outgoing) as page:
        yield page


def ask(page: Page, question: str, *, with_enter: bool) -> None:
    """Type a question and send it with Enter or the button; the input must be free again at once."""
    box = page.get_by_test_id("query-input")
    box.fill(question)
    if with_enter:
        box.press("Enter")
    else:
        page.get_by_test_id("send-button").click()
    expect(box).to_have_value("")
    expect(box).to_be_editable()


def check_answered(exchange: Locator) -> tuple[str, int, int]:
    """Wait for an exchange to be answered; return (answer text, processing ms, total ms)."""
    expect(exchange).to_have_attribute("data-state", "answered", timeout=ANSWER_TIMEOUT_MS)
    assert exchange.get_attribute("data-task-id"), "an answered exchange carries its task id"
    answer = exchange.get_by_test_id("answer").inner_text()
    assert answer.strip(), "the answer is not empty"
    assert exchange.get_by_test_id("answer-worker").inner_text().strip(), "the worker id is shown"
    processing = exchange.get_by_test_id("answer-processing-ms").inner_text().strip()
    total = exchange.get_by_test_id("answer-total-ms").inner_text().strip()
    assert INTEGER.match(processing), f"processing time is an integer of ms: {processing!r}"
    assert INTEGER.match(total), f"total time is an integer of ms: {total!r}"
    expect(exchange.get_by_test_id("error")).to_be_hidden()
    return answer, int(processing), int(total)


def test_two_questions_in_flight_are_both_answered_as_plain_text(page: Page) -> None:
    markup = '<b id="injected-b">bold</b> <img id="injected-img" src="x" onerror="window.__xss = 1">'
    questions = ["What is MQTT used for?", f"Is this markup shown as text? {markup}"]

    ask(page, questions[0], with_enter=True)
    ask(page, questions[1], with_enter=False)  # sent while the first is still waiting

    exchanges = page.get_by_test_id("exchange")
    expect(exchanges).to_have_count(2)
    for exchange in (exchanges.nth(0), exchanges.nth(1)):
        expect(exchange).to_have_attribute("data-task-id", re.compile(r".+"), timeout=CONNECT_TIMEOUT_MS)
    ids = [exchanges.nth(i).get_attribute("data-task-id") for i in range(2)]
    assert ids[0] != ids[1], f"each question has its own task: {ids}"

    for i, question in enumerate(questions):
        exchange = exchanges.nth(i)
        assert exchange.get_by_test_id("question").inner_text() == question
        answer, processing, total = check_answered(exchange)
        # The total is measured in the page from sending to the answer, so it covers the worker's time
        # (a few ms of slack for clocks that round differently).
        assert total + 50 >= processing, f"total {total} ms < processing {processing} ms"
        expect(exchange.get_by_test_id("queue-position")).to_be_hidden()

    # The offline model echoes the question: the markup must come back as literal text, not as elements.
    answer = exchanges.nth(1).get_by_test_id("answer").inner_text()
    assert "<b" in answer and "<img" in answer, f"the markup is echoed as text: {answer!r}"
    assert page.locator("#injected-b, #injected-img").count() == 0
    assert page.locator("[data-testid=exchange] b, [data-testid=exchange] img").count() == 0
    assert page.evaluate("() => window.__xss") is None


def test_api_key_is_sent_but_never_shown_or_stored(page: Page, outgoing: list[str]) -> None:
    secret = "AIza-browser-test-SECRET-7f3c9e1d"
    sent = outgoing

    # No key typed: no apiKey in the message.
    ask(page, "A question without a key", with_enter=True)
    check_answered(page.get_by_test_id("exchange").nth(0))
    assert any("A question without a key" in s for s in sent), "the question went over a captured transport"
    assert not any('"apiKey"' in s for s in sent), "an empty key is not sent"

    key_box = page.get_by_test_id("api-key")
    expect(key_box).to_have_attribute("type", "password")
    page.get_by_test_id("api-key-toggle").click()
    key_box.fill(secret)
    ask(page, "A question with a key", with_enter=True)
    check_answered(page.get_by_test_id("exchange").nth(1))
    assert any(secret in s and '"apiKey"' in s for s in sent), "the key travels with the question"

    # Kept in the page for the next question, but never displayed, never in the DOM, never stored.
    expect(key_box).to_have_value(secret)
    assert secret not in page.locator("body").inner_text()
    assert secret not in page.content()
    stored = page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}, document.cookie])")
    assert secret not in stored


def test_a_third_question_waits_in_the_queue_then_is_worked_on(page: Page) -> None:
    # Two workers, about 1 s of work each: the third question sent at once must wait for one of them.
    for n in range(3):
        ask(page, f"Queued question number {n}", with_enter=True)
    third = page.get_by_test_id("exchange").nth(2)
    position = third.get_by_test_id("queue-position")

    expect(third).to_have_attribute("data-state", "queued", timeout=CONNECT_TIMEOUT_MS)
    expect(position).to_contain_text("position 1")
    expect(third).to_have_attribute("data-state", "working", timeout=ANSWER_TIMEOUT_MS)
    expect(position).to_contain_text("is working")
    worker = position.inner_text().split()[0]

    answered = [check_answered(page.get_by_test_id("exchange").nth(n)) for n in range(3)]
    assert third.get_by_test_id("answer-worker").inner_text() == worker, "the announced worker answered"
    _, processing, total = answered[2]
    assert total > processing, "the queued question's total includes its wait in the queue"


def start_slow_question(page: Page, question: str) -> tuple[str, str]:
    """Ask one question and wait until a worker is on it; return (task id, worker id)."""
    ask(page, question, with_enter=True)
    exchange = page.get_by_test_id("exchange").nth(0)
    expect(exchange).to_have_attribute("data-state", "working", timeout=CONNECT_TIMEOUT_MS)
    task_id = exchange.get_attribute("data-task-id")
    assert task_id, "a question being worked on carries its task id"
    worker = exchange.get_by_test_id("queue-position").inner_text().split()[0]
    return task_id, worker


def check_resumed(page: Page, question: str, task_id: str, worker: str) -> None:
    """The page shows the answer to a question asked before it was loaded, once, by the worker that took it."""
    exchanges = page.get_by_test_id("exchange")
    expect(exchanges).to_have_count(1, timeout=ANSWER_TIMEOUT_MS)
    resumed = exchanges.nth(0)
    check_answered(resumed)
    expect(resumed).to_have_attribute("data-resumed", "true")
    expect(resumed).to_have_attribute("data-task-id", task_id)
    expect(resumed.get_by_test_id("question")).to_have_text(question)
    expect(resumed.get_by_test_id("answer-worker")).to_have_text(worker)
    assert question in resumed.get_by_test_id("answer").inner_text(), "the offline model echoes the question"
    expect(exchanges).to_have_count(1)  # shown once, not once per resend


def wait_for_master(
    page: Page, cluster: LocalCluster, condition: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Poll the master's /api/status (an operator view: with the cluster's token, which the page itself never
    has) until `condition` holds; return that status."""
    deadline = time.monotonic() + ANSWER_TIMEOUT_MS / 1000
    while True:
        response = page.context.request.get(cluster.web_url + "/api/status", headers=cluster.operator_headers)
        assert response.ok, f"/api/status answered {response.status}"
        status: dict[str, Any] = response.json()
        if condition(status):
            return status
        assert time.monotonic() < deadline, f"{what}: not within {ANSWER_TIMEOUT_MS} ms; last status {status}"
        time.sleep(0.1)


def test_a_reload_while_a_question_is_in_flight_loses_nothing(slow_page: Page, slow_cluster: LocalCluster) -> None:
    page = slow_page
    session = page.get_by_test_id("session-id").inner_text().strip()
    question = "Is this answer kept across a reload?"
    task_id, worker = start_slow_question(page, question)

    page.reload()
    assert wait_connected(page) == session, "the reloaded page resumes its session"
    back = wait_for_master(page, slow_cluster, lambda s: True, "the master's status")
    assert back["in_flight"] == 1, f"the reloaded page is back before the answer was made: {back}"
    expect(page.get_by_test_id("exchange")).to_have_count(0)  # the old page's exchanges are gone

    check_resumed(page, question, task_id, worker)
    expect(page.get_by_test_id("session-id")).to_have_text(session)


def test_an_answer_that_arrives_while_the_page_is_closed_is_shown_when_it_returns(
    slow_page: Page, slow_cluster: LocalCluster
) -> None:
    page = slow_page
    url = page.url
    session = page.get_by_test_id("session-id").inner_text().strip()
    question = "Is an answer made while I am away kept for me?"
    task_id, worker = start_slow_question(page, question)

    page.goto("about:blank")  # same tab: its sessionStorage for the chat's origin survives
    away = wait_for_master(
        page,
        slow_cluster,
        lambda s: s["in_flight"] == 0 and sum(w["tasks_done"] for w in s["workers"]) == 1,
        "the worker finishes while the page is away",
    )
    assert away["undelivered"] == 1, f"the master keeps the answer for the absent page: {away}"

    page.goto(url)
    assert wait_connected(page) == session, "the returning page resumes its session"
    check_resumed(page, question, task_id, worker)
    wait_for_master(page, slow_cluster, lambda s: s["undelivered"] == 0, "the returned page acknowledges the answer")
