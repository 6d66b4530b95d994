"""The notebook chat panel against real processes: what its widgets show, and its blocking API."""

from __future__ import annotations

import html
import json
import logging
import re
import threading
from collections.abc import Iterator
from typing import Any, cast

import pytest
from IPython.core.events import EventManager, available_events
from jupyter_client.manager import start_new_kernel

from lab.chat import kernel
from lab.chat.panel import BUSY_TEXT, ChatPanel, QuestionRefused, QuestionView
from lab.paths import REPO_ROOT
from tests.conftest import ClusterFactory
from tests.fakes.gemini import ANSWER_PREFIX, FakeGeminiThread
from tests.waiting import wait_until

KEY = "fake-ok-PANELKEY-5d2e81"
CODE_KEY = "fake-ok-CODEKEY-93b0c4"
MARKUP = "<script>alert(1)</script> is <b>bold</b> & ok?"


until = wait_until  # the shared poll of tests/waiting.py


def shown(widget: object) -> str:
    """The text a widget shows, as a reader sees it (tags removed, entities decoded)."""
    value = str(getattr(widget, "value", ""))
    return html.unescape(re.sub(r"<[^>]*>", "", value))


def every_widget(root: object) -> Iterator[object]:
    """The widget and all widgets inside it."""
    yield root
    for child in getattr(root, "children", ()):
        yield from every_widget(child)


def panel_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "chat-panel"]


@pytest.fixture
def panels() -> Iterator[list[ChatPanel]]:
    """Panels a test opens; every one is closed when it ends."""
    opened: list[ChatPanel] = []
    yield opened
    for panel in opened:
        panel.close()


def test_two_questions_sent_with_the_button_are_answered_with_their_metadata(
    cluster_factory: ClusterFactory, panels: list[ChatPanel]
) -> None:
    cluster = cluster_factory(workers=2, work_seconds=0.2)
    panel = ChatPanel(cluster.web_url)
    panels.append(panel)
    assert panel.status == "connected" and "connected" in shown(panel.status_html)
    assert panel.session_id and panel.session_id in shown(panel.session_html)
    assert "application/vnd.jupyter.widget-view+json" in panel._repr_mimebundle_()
    for question in ("what is MQTT?", "what is gRPC?"):
        panel.text.value = question
        panel.send_button.click()
        assert panel.text.value == ""  # cleared for the next question, as the page does
    records = panel.wait(timeout=20)
    assert [r["question"] for r in records] == ["what is MQTT?", "what is gRPC?"]
    for record, view in zip(records, panel.questions, strict=True):
        assert record["task_id"] and record["error"] is None and record["answer"]
        assert record["worker_id"] in cluster.worker_ids and record["language"] == "python"
        assert record["processing_time_ms"] > 0 and record["total_ms"] >= record["processing_time_ms"]
        assert shown(view.question) == record["question"]
        assert shown(view.answer) == record["answer"]
        meta = shown(view.meta)
        assert f"worker {record['worker_id']}" in meta and "language python" in meta
        assert f"processing {record['processing_time_ms']} ms" in meta and f"total {record['total_ms']} ms" in meta
        assert view.progress.layout.display == "none" and view.error.layout.display == "none"
    assert len(panel.conversation.children) == 2


def test_enter_in_the_text_box_sends_the_question(cluster_factory: ClusterFactory, panels: list[ChatPanel]) -> None:
    cluster = cluster_factory(workers=1, work_seconds=0.1)
    panel = ChatPanel(cluster.web_url)
    panels.append(panel)
    panel.text.value = "sent with Enter"
    # What the browser's text box sends when Enter is pressed.
    panel.text._handle_custom_msg({"event": "submit"}, [])
    [record] = panel.wait(timeout=20)
    assert record["question"] == "sent with Enter" and record["answer"]


def test_markup_in_a_question_is_shown_as_text(cluster_factory: ClusterFactory, panels: list[ChatPanel]) -> None:
    cluster = cluster_factory(workers=1, work_seconds=0.1)
    panel = ChatPanel(cluster.web_url)
    panels.append(panel)
    panel.ask(MARKUP)
    [record] = panel.wait(timeout=20)
    [view] = panel.questions
    assert shown(view.question) == MARKUP
    assert "&lt;script&gt;" in view.question.value and "&lt;b&gt;" in view.question.value
    for widget in every_widget(panel.widget):
        value = str(getattr(widget, "value", ""))
        assert "<script" not in value and "<b>bold" not in value, value
    assert record["answer"] and shown(view.answer) == record["answer"]


def test_the_key_typed_in_the_password_field_reaches_the_worker_and_is_shown_nowhere(
    cluster_factory: ClusterFactory, panels: list[ChatPanel], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeGeminiThread() as base_url:
        cluster = cluster_factory(
            workers=1,
            work_seconds=0.1,
            model_mode="auto",
            extra_env={"GEMINI_BASE_URL": base_url, "NO_PROXY": "127.0.0.1,localhost"},
        )
        typed = ChatPanel(cluster.web_url)
        in_code = ChatPanel(cluster.web_url, api_key=CODE_KEY)
        panels.extend([typed, in_code])
        typed.api_key_field.value = KEY
        typed.text.value = "keep my key safe"
        typed.send_button.click()
        in_code.ask("and mine")
        [answered] = typed.wait(timeout=20)
        [answered_too] = in_code.wait(timeout=20)
    assert answered["answer"] == ANSWER_PREFIX + "keep my key safe"
    assert answered_too["answer"] == ANSWER_PREFIX + "and mine"
    for panel, key in ((typed, KEY), (in_code, CODE_KEY)):
        others = [w for w in every_widget(panel.widget) if w is not panel.api_key_field]
        assert not [w for w in others if key in str(getattr(w, "value", ""))]
        assert not [w for w in others if key in str(getattr(w, "placeholder", ""))]
        assert key not in repr(panel.widget) and key not in str(panel.wait(timeout=1))
    assert in_code.api_key_field.value == ""  # a key given in code never goes into a widget
    assert "PANELKEY" not in caplog.text and "CODEKEY" not in caplog.text


def test_an_empty_question_shows_the_masters_error(cluster_factory: ClusterFactory, panels: list[ChatPanel]) -> None:
    cluster = cluster_factory(workers=1, work_seconds=0.1)
    panel = ChatPanel(cluster.web_url)
    panels.append(panel)
    with pytest.raises(QuestionRefused, match="the question is empty"):
        panel.ask("")
    panel.text.value = "   "
    panel.send_button.click()
    records = panel.wait(timeout=10)
    assert [(r["task_id"], r["error"], r["answer"]) for r in records] == [("", "the question is empty", None)] * 2
    for view in panel.questions:
        assert shown(view.error) == "the question is empty" and view.error.layout.display == ""
        assert view.answer.layout.display == "none"
    panel.ask("still fine after that")
    assert panel.wait(timeout=20)[-1]["answer"]


def test_waiting_questions_show_their_queue_position(cluster_factory: ClusterFactory, panels: list[ChatPanel]) -> None:
    cluster = cluster_factory(workers=1, work_seconds=1.0)
    panel = ChatPanel(cluster.web_url)
    panels.append(panel)
    for question in ("first", "second", "third"):
        panel.ask(question)
    first, second, third = panel.questions
    # The acknowledgements came in milliseconds; the first answer takes a second.
    assert "queued" not in first.progress_text
    assert shown(second.progress) == "queued, position 1"
    assert shown(third.progress) == "queued, position 2"
    until(lambda: shown(third.progress) == "queued, position 1", "the third question moved up")
    until(lambda: shown(third.progress).startswith("assigned to worker "), "the third question was assigned")
    records = panel.wait(timeout=20)
    assert [r["positions"] for r in records] == [[], [1], [2, 1]]
    assert all(r["worker_id"] == cluster.worker_ids[0] for r in records)
    assert "queue positions 2 → 1" in shown(third.meta)


def test_status_follows_the_connection_and_the_session_survives_a_master_restart(
    cluster_factory: ClusterFactory, panels: list[ChatPanel]
) -> None:
    cluster = cluster_factory(workers=1, work_seconds=0.1)
    panel = ChatPanel(cluster.web_url)
    panels.append(panel)
    session = panel.session_id
    cluster.kill_master()
    until(lambda: panel.status == "reconnecting", "the panel noticed the master was gone")
    assert "reconnecting" in shown(panel.status_html)
    cluster.restart_master()
    until(lambda: panel.status == "connected", "the panel reconnected", timeout=30)
    assert panel.session_id == session
    panel.ask("after the restart")
    assert panel.wait(timeout=20)[0]["answer"]


def test_close_stops_the_background_thread(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=1, work_seconds=0.1)
    before = len(panel_threads())
    with ChatPanel(cluster.web_url) as panel:
        assert len(panel_threads()) == before + 1
        panel.ask("one before closing")
        panel.wait(timeout=20)
    assert len(panel_threads()) == before
    assert panel.status == "disconnected" and panel.send_button.disabled
    with pytest.raises(RuntimeError, match="closed"):
        panel.ask("too late")
    panel.close()  # again: nothing happens


def test_an_unreachable_master_raises_and_leaves_no_thread() -> None:
    before = len(panel_threads())
    with pytest.raises(ConnectionError, match="cannot connect"):
        ChatPanel("http://127.0.0.1:9", connect=True)
    assert len(panel_threads()) == before


def test_questions_not_sent_show_why(panels: list[ChatPanel]) -> None:
    panel = ChatPanel("http://127.0.0.1:9", connect=False)
    panels.append(panel)
    assert panel.status == "disconnected"
    panel.text.value = "nobody listens"
    panel.send_button.click()
    [record] = panel.wait(timeout=5)
    assert record["error"] and record["error"].startswith("not sent")
    [view] = panel.questions
    assert isinstance(view, QuestionView) and shown(view.error) == record["error"]


def test_a_question_that_arrives_after_close_is_shown_as_not_sent() -> None:
    # In a notebook a click waits while a cell runs; if that cell closed the panel, the click arrives after.
    panel = ChatPanel("http://127.0.0.1:9", connect=False)
    panel.close()
    notice = shown(panel.notice)
    assert notice.startswith("The panel is closed") and "panel = ChatPanel('http://127.0.0.1:9')" in notice
    assert panel.notice.layout.display != "none"
    panel.text.value = "sent while a cell closed the panel"
    panel.send_button.click()
    [view] = panel.questions
    assert view.failure == f"not sent: {panel.closed_text}"
    assert shown(view.error) == view.failure and shown(view.question) == "sent while a cell closed the panel"
    assert panel.text.value == ""
    with pytest.raises(RuntimeError, match=r"closed; to chat again, open a new one"):
        panel.ask("from code")


class FakeShell:
    """What CellActivity uses of IPython: its events, triggered by the test as a kernel would."""

    def __init__(self) -> None:
        self.events = EventManager(cast(Any, self), available_events)


def test_the_panel_says_while_a_cell_runs_that_questions_wait_for_it(
    monkeypatch: pytest.MonkeyPatch, panels: list[ChatPanel]
) -> None:
    shell = FakeShell()
    monkeypatch.setattr(kernel, "_shell", lambda: shell)
    panel = ChatPanel("http://127.0.0.1:9", connect=False)
    panels.append(panel)
    assert panel.notice.layout.display == "none"
    shell.events.trigger("pre_run_cell", None)
    assert shown(panel.notice) == BUSY_TEXT and "sent when the kernel is free" in BUSY_TEXT
    assert panel.notice.layout.display != "none"
    shell.events.trigger("post_run_cell", None)
    assert panel.notice.layout.display == "none"
    panel.close()
    assert shell.events.callbacks["pre_run_cell"] == [] and shell.events.callbacks["post_run_cell"] == []
    shell.events.trigger("pre_run_cell", None)
    assert shown(panel.notice).startswith("The panel is closed")


class Kernel:
    """A real IPython kernel, driven as JupyterLab drives it: cells, and widget messages on the shell channel."""

    def __init__(self) -> None:
        self.manager, self.client = start_new_kernel(kernel_name="python3", cwd=str(REPO_ROOT))
        self.widget_values: list[tuple[str, object]] = []  # (comm id, value) the kernel sent, in order

    def start(self, code: str) -> str:
        """Send a cell; return its message id."""
        msg_id: str = self.client.execute(code)
        return msg_id

    def finish(self, msg_id: str, timeout: float = 30) -> str:
        """Wait for the cell to end; return what it printed (failing on an error)."""
        printed = []
        while True:
            msg = self.client.get_iopub_msg(timeout=timeout)
            content = msg["content"]
            if msg["msg_type"] == "comm_msg" and "value" in content["data"].get("state", {}):
                self.widget_values.append((content["comm_id"], content["data"]["state"]["value"]))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                printed.append(content["text"])
            elif msg["msg_type"] == "error":
                pytest.fail("\n".join(content["traceback"]))
            elif msg["msg_type"] == "status" and content["execution_state"] == "idle":
                return "".join(printed)

    def run(self, code: str) -> str:
        return self.finish(self.start(code))

    def widget_message(self, comm_id: str, data: dict[str, object]) -> None:
        """What the browser sends when the user types or clicks."""
        self.client.shell_channel.send(self.client.session.msg("comm_msg", {"comm_id": comm_id, "data": data}))

    def shutdown(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def test_a_question_sent_while_a_cell_runs_is_sent_when_the_kernel_is_free(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(workers=1, work_seconds=0.1)
    ipy = Kernel()
    try:
        ids = ipy.run(
            "import json, time\nfrom lab.chat import ChatPanel\n"
            f"panel = ChatPanel({cluster.web_url!r})\n"
            "print(panel.text.model_id, panel.send_button.model_id, panel.notice.model_id)"
        )
        text_id, button_id, notice_id = ids.split()
        busy = ipy.start("time.sleep(3)")
        # While the cell sleeps, the user types a question and clicks Send: both wait in the kernel's queue.
        ipy.widget_message(text_id, {"method": "update", "state": {"value": "asked while busy"}, "buffer_paths": []})
        ipy.widget_message(button_id, {"method": "custom", "content": {"event": "click"}})
        ipy.finish(busy)
        notices = [value for comm_id, value in ipy.widget_values if comm_id == notice_id]
        assert any("sent when the kernel is free" in str(v) for v in notices), notices
        assert notices[-1] == "", notices  # the cell ended: no more notice
        records = json.loads(ipy.run("print(json.dumps(panel.wait(timeout=20)))"))
        assert [r["question"] for r in records] == ["asked while busy"]
        assert records[0]["answer"] and records[0]["error"] is None
        ipy.run("panel.close()")
    finally:
        ipy.shutdown()
