"""The chat page's edges in a real Chromium against a real master: refused and empty questions, the character
counter near the master's length limit, answers in Markdown rendered safely, and the link to the dashboard.

Hostile and Markdown answers come from a hand-driven worker (`lone_raw_worker`): the test writes the answer.
The page's CSP would block inline scripts and handlers anyway, so these tests look at the DOM itself: what
must not be there is not there, whatever the CSP would have done with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, Dialog, Locator, Page, expect

from lab.system.local import LocalCluster
from services.master.settings import MasterSettings
from services.protocol import now_ms
from tests.browser.test_chat_page import (
    ANSWER_TIMEOUT_MS,
    CONNECT_TIMEOUT_MS,
    System,
    ask,
    chat_page,
    check_answered,
)
from tests.conftest import ClusterFactory
from tests.peers import RawWorker, send_result

pytestmark = pytest.mark.browser

LIMIT = MasterSettings().max_query_chars  # the master's default; the page falls back to the same number
COUNTER_FROM = int(LIMIT * 0.9)  # the page's counter shows from 90 % of the limit on


@pytest.fixture
def outgoing() -> list[str]:
    """Everything the page sends over Socket.IO (filled by `chat_page`)."""
    return []


@pytest.fixture
def page(browser: Browser, system: System, outgoing: list[str]) -> Iterator[Page]:
    """The chat on the module's shared system (two workers, offline model, about 1 s of work)."""
    with chat_page(browser, system.web_url, outgoing) as page:
        yield page


@dataclass
class HandAnswered:
    """A chat page whose only worker is driven by the test, and what the page did meanwhile."""

    page: Page
    peer: RawWorker
    dialogs: list[str]
    requests: list[str]

    def answer(self, question: str, response: str = "", error: str = "") -> Locator:
        """Ask `question` in the page, answer it by hand with `response` (or fail it with `error`); return the
        exchange once the page shows the outcome."""
        count = self.page.get_by_test_id("exchange").count()
        ask(self.page, question, with_enter=True)
        task = self.peer.next_task(timeout=CONNECT_TIMEOUT_MS / 1000)
        assert task.query == question
        ack = send_result(
            task.grpc_endpoint,
            worker_id=self.peer.worker_id,
            session_id=task.session_id,
            original_query=task.query,
            ai_response=response,
            error=error,
            processing_time_ms=5,
            query_timestamp=task.timestamp,
            completion_timestamp=now_ms(),
            task_id=task.task_id,
            attempt=task.attempt,
            token=task.token,
            model="by-hand",
        )
        assert ack.success, ack.message
        exchange = self.page.get_by_test_id("exchange").nth(count)
        expect(exchange).to_have_attribute("data-state", "failed" if error else "answered", timeout=ANSWER_TIMEOUT_MS)
        return exchange


@pytest.fixture
def by_hand(
    browser: Browser, lone_raw_worker: tuple[LocalCluster, RawWorker], outgoing: list[str]
) -> Iterator[HandAnswered]:
    """The chat on a system whose only worker answers what the test says; dialogs and requests are recorded."""
    cluster, peer = lone_raw_worker
    with chat_page(browser, cluster.web_url, outgoing) as page:
        dialogs: list[str] = []
        requests: list[str] = []

        def on_dialog(dialog: Dialog) -> None:
            dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("request", lambda request: requests.append(request.url))
        yield HandAnswered(page, peer, dialogs, requests)


def attributes_in(element: Locator) -> set[str]:
    """Every attribute name on the element's descendants."""
    names: list[str] = element.evaluate(
        "el => [...el.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name))"
    )
    return set(names)


# ---------------------------------------------------------------------------------------------- refusals


def test_a_question_too_long_is_refused_and_stays_in_the_box(page: Page) -> None:
    box = page.get_by_test_id("query-input")
    counter = page.get_by_test_id("char-counter")
    notice = page.get_by_test_id("composer-notice")
    draft = "Is this too long? " + "z" * (LIMIT + 1 - len("Is this too long? "))
    box.fill(draft)
    expect(counter).to_be_visible()
    expect(counter).to_have_attribute("data-state", "over")
    expect(counter).to_have_text(f"{LIMIT + 1} / {LIMIT} characters · 1 too many")
    expect(box).to_have_attribute("aria-invalid", "true")

    box.press("Enter")  # the page sends it anyway: the master decides, and says why
    refused = page.get_by_test_id("exchange").nth(0)
    expect(refused).to_have_attribute("data-state", "refused", timeout=CONNECT_TIMEOUT_MS)
    error = refused.get_by_test_id("error")
    expect(error).to_be_visible()
    expect(error).to_have_text(f"Not sent: the question is too long: {LIMIT + 1} characters, at most {LIMIT}")
    assert error.locator("*").count() == 0, "the refusal is plain text"
    expect(box).to_have_value(draft)  # the draft is back, to be edited
    expect(notice).to_be_visible()
    expect(notice).to_have_attribute("data-kind", "refused")
    expect(notice).to_contain_text("the question is too long")
    expect(notice).to_contain_text("back in the box")
    expect(box).to_be_focused()

    box.press("End")
    box.press("Backspace")  # one character less: exactly at the limit, accepted
    expect(counter).to_have_text(f"{LIMIT} / {LIMIT} characters · 0 left")
    expect(counter).to_have_attribute("data-state", "near")
    expect(box).not_to_have_attribute("aria-invalid", "true")
    box.press("Enter")
    expect(box).to_have_value("")
    expect(notice).to_be_hidden()
    expect(counter).to_be_hidden()
    check_answered(page.get_by_test_id("exchange").nth(1))
    expect(refused).to_have_attribute("data-state", "refused")  # the refusal stays in the conversation


def test_a_question_over_the_rate_is_refused_and_stays_in_the_box(
    browser: Browser, cluster_factory: ClusterFactory, outgoing: list[str]
) -> None:
    cluster = cluster_factory(workers=1, extra_env={"RATE_PER_MINUTE": "1"})
    with chat_page(browser, cluster.web_url, outgoing) as page:
        box = page.get_by_test_id("query-input")
        ask(page, "The only question this minute", with_enter=True)
        second = "  One question too many, with spaces around  "
        box.fill(second)
        box.press("Enter")
        refused = page.get_by_test_id("exchange").nth(1)
        expect(refused).to_have_attribute("data-state", "refused", timeout=CONNECT_TIMEOUT_MS)
        expect(refused.get_by_test_id("error")).to_contain_text("Not sent: too many questions: at most 1 per minute")
        expect(box).to_have_value(second)  # as typed, spaces included
        notice = page.get_by_test_id("composer-notice")
        expect(notice).to_contain_text("too many questions")
        expect(notice).to_have_attribute("role", "alert")
        check_answered(page.get_by_test_id("exchange").nth(0))


def test_an_empty_question_says_why_nothing_was_sent(page: Page, outgoing: list[str]) -> None:
    box = page.get_by_test_id("query-input")
    notice = page.get_by_test_id("composer-notice")
    expect(notice).to_be_hidden()

    page.get_by_test_id("send-button").click()
    expect(notice).to_be_visible()
    expect(notice).to_have_text("Nothing sent: the question is empty.")
    expect(notice).to_have_attribute("data-kind", "empty")

    box.fill("  \n\t  ")
    expect(notice).to_be_hidden()  # typing clears it
    box.press("Enter")
    expect(notice).to_have_text("Nothing sent: the question is only spaces.")
    expect(box).to_have_value("  \n\t  ")  # nothing taken away, nothing added

    box.press_sequentially("Q")
    expect(notice).to_be_hidden()
    expect(page.get_by_test_id("exchange")).to_have_count(0)
    assert not any("user-query" in sent for sent in outgoing), "an empty question never leaves the page"


# ----------------------------------------------------------------------------------------------- counter


def test_the_counter_shows_near_the_limit_and_counts_as_the_master_does(page: Page) -> None:
    box = page.get_by_test_id("query-input")
    counter = page.get_by_test_id("char-counter")
    expect(counter).to_be_hidden()

    box.fill("a" * (COUNTER_FROM - 1))
    expect(counter).to_be_hidden()
    box.fill("a" * COUNTER_FROM)
    expect(counter).to_be_visible()
    expect(counter).to_have_attribute("data-state", "near")
    expect(counter).to_have_text(f"{COUNTER_FROM} / {LIMIT} characters · {LIMIT - COUNTER_FROM} left")

    # Spaces around the question are not sent, so they are not counted.
    box.fill("   " + "a" * (COUNTER_FROM - 1) + "\n  ")
    expect(counter).to_be_hidden()

    # An emoji is one character for the master (two UTF-16 units in JavaScript): a question of LIMIT emoji fits.
    emoji = "\U0001f41d" * LIMIT
    box.fill(emoji)
    expect(counter).to_have_text(f"{LIMIT} / {LIMIT} characters · 0 left")
    box.press("Enter")
    expect(box).to_have_value("")
    expect(counter).to_be_hidden()
    check_answered(page.get_by_test_id("exchange").nth(0))


# ------------------------------------------------------------------------------------------------ Markdown

HOSTILE = "\n".join(
    [
        "Hostile answer",
        "",
        "<script>window.__xss = 'script'; alert('script')</script>",
        "",
        "<img src=x onerror=\"window.__xss = 'img'; alert('img')\">",
        "",
        "[js link](javascript:alert('link'))",
        "[mixed case js link](JaVaScRiPt:alert('case'))",
        "[encoded js link](&#106;avascript:alert('encoded'))",
        "[data link](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "",
        "<iframe src=\"javascript:alert('iframe')\"></iframe>",
        "",
        '<a href="https://example.com/" onclick="window.__xss = \'onclick\'">inline anchor</a>',
        "",
        '<svg onload="alert(\'svg\')"><circle r="5"/></svg>',
        "",
        "![tracking pixel](https://tracker.invalid/pixel.png)",
        "",
        "**<span onmouseover=\"alert('span')\">bold span</span>**",
        "",
        "<style>body { display: none }</style>",
        "",
        '<form action="https://evil.invalid/"><input name="q"><button>go</button></form>',
        "",
        "<details open ontoggle=\"alert('toggle')\"><summary>s</summary></details>",
    ]
)

NORMAL = """## A heading

Some **bold** and *italic* text with `inline code`.

- first item
- second item

3. three
4. four

```python
print("hello <world>")
```

> a quote

| name | value |
|:-----|------:|
| a    | 1     |

See [the docs](https://example.com/docs) or <https://example.org/>.
"""

ALLOWED_ATTRIBUTES = {"href", "title", "target", "rel", "start", "align"}


def test_hostile_markup_in_an_answer_runs_nothing_and_loads_nothing(by_hand: HandAnswered) -> None:
    page = by_hand.page
    question = "Please *answer* with <b>markup</b>"
    exchange = by_hand.answer(question, HOSTILE)
    answer = exchange.get_by_test_id("answer")
    expect(answer).to_have_attribute("data-format", "markdown")

    # Nothing ran, nothing dangerous is in the DOM.
    page.wait_for_timeout(300)  # on purpose: a handler or an image error would fire right after insertion
    assert by_hand.dialogs == [], f"dialogs opened: {by_hand.dialogs}"
    assert page.evaluate("() => window.__xss") is None
    dangerous = "script, iframe, img, svg, style, form, input, button, object, embed, details, span"
    assert answer.locator(dangerous).count() == 0, answer.inner_html()
    attributes = attributes_in(answer)
    assert attributes <= ALLOWED_ATTRIBUTES, f"unexpected attributes: {attributes - ALLOWED_ATTRIBUTES}"
    handlers = page.locator("[data-testid=exchange] *").evaluate_all(
        "els => els.filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length"
    )
    assert handlers == 0, "no event handler attribute anywhere in the conversation"

    # Raw HTML is shown as the text it is.
    text = answer.inner_text()
    for literal in ("<script>", "<img src=x onerror=", "<iframe", 'onclick="', "<style>", "<form"):
        assert literal in text, f"{literal!r} is shown as text: {text!r}"

    # Links: only http(s), opened in a new tab without opener or referrer; refused URLs leave their words.
    links = answer.locator("a")
    hrefs = [links.nth(i).get_attribute("href") or "" for i in range(links.count())]
    assert hrefs == ["https://tracker.invalid/pixel.png"], hrefs
    for i in range(links.count()):
        expect(links.nth(i)).to_have_attribute("target", "_blank")
        expect(links.nth(i)).to_have_attribute("rel", "noopener noreferrer")
    for words in ("js link", "mixed case js link", "encoded js link", "data link"):
        assert words in text
    # The image became a link to open on purpose, and nothing was fetched from its host.
    expect(links.nth(0)).to_have_text("image: tracking pixel")
    assert not [url for url in by_hand.requests if "tracker.invalid" in url], by_hand.requests

    # The question is plain text, as typed.
    shown = exchange.get_by_test_id("question")
    expect(shown).to_have_text(question)
    assert shown.locator("*").count() == 0


def test_markdown_in_an_answer_renders_as_html(by_hand: HandAnswered) -> None:
    exchange = by_hand.answer("Show me some Markdown", NORMAL)
    answer = exchange.get_by_test_id("answer")
    expect(answer).to_have_attribute("data-format", "markdown")
    expect(answer.locator("h2")).to_have_text("A heading")
    expect(answer.locator("strong")).to_have_text("bold")
    expect(answer.locator("em")).to_have_text("italic")
    expect(answer.locator("p > code")).to_have_text("inline code")
    expect(answer.locator("ul > li")).to_have_text(["first item", "second item"])
    expect(answer.locator("ol > li")).to_have_text(["three", "four"])
    expect(answer.locator("ol")).to_have_attribute("start", "3")
    expect(answer.locator("pre > code")).to_have_text('print("hello <world>")')
    expect(answer.locator("blockquote")).to_have_text("a quote")
    expect(answer.locator("td")).to_have_text(["a", "1"])
    expect(answer.locator("td").nth(1)).to_have_attribute("align", "right")
    docs = answer.get_by_role("link", name="the docs")
    expect(docs).to_have_attribute("href", "https://example.com/docs")
    expect(docs).to_have_attribute("target", "_blank")
    expect(docs).to_have_attribute("rel", "noopener noreferrer")
    expect(answer.get_by_role("link", name="https://example.org/")).to_have_attribute("rel", "noopener noreferrer")
    assert attributes_in(answer) <= ALLOWED_ATTRIBUTES
    assert by_hand.dialogs == []


def test_a_failed_answer_is_plain_text(by_hand: HandAnswered) -> None:
    exchange = by_hand.answer("Fail me", error="<b>model</b> **failed**")
    error = exchange.get_by_test_id("error")
    expect(error).to_have_text("<b>model</b> **failed**")
    assert error.locator("*").count() == 0
    expect(exchange.get_by_test_id("answer")).to_be_hidden()


# ------------------------------------------------------------------------------------------------ header


def test_the_header_links_to_the_dashboard(page: Page) -> None:
    link = page.locator("header").get_by_role("link", name="Dashboard")
    expect(link).to_be_visible()
    expect(link).to_have_attribute("href", "/dashboard")
    expect(link).to_have_attribute("data-testid", "dashboard-link")


def test_the_counter_uses_the_limit_the_master_states(
    browser: Browser, cluster_factory: ClusterFactory, outgoing: list[str]
) -> None:
    cluster = cluster_factory(workers=1, extra_env={"MAX_QUERY_CHARS": "100"})
    with chat_page(browser, cluster.web_url, outgoing) as page:
        box = page.get_by_test_id("query-input")
        counter = page.get_by_test_id("char-counter")
        box.fill("a" * 89)
        expect(counter).to_be_hidden()
        box.fill("a" * 90)  # the public /api/limits says 100 (no token needed): the counter shows from 90 on
        expect(counter).to_have_text("90 / 100 characters · 10 left")
        box.fill("a" * 101)
        expect(counter).to_have_attribute("data-state", "over")
