"""A chat with the master as ipywidgets, for notebooks: what the chat page shows, plus a blocking API.

The Socket.IO client lives on an asyncio loop in a background thread owned by the panel (`lab.chat.session`),
so the panel works the same in a Jupyter kernel and in a plain process. Widget callbacks only hand work to
that loop; everything from the network is shown as escaped text (`lab.chat.format`).

Widget callbacks run on the kernel's own thread, between cells: a question sent while a cell runs waits for
it, and the panel says so while a cell runs (`lab.chat.kernel`). No question is dropped without a word: one
that arrives after the panel was closed is shown as not sent, with how to open a new panel.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from types import TracebackType
from typing import Any

import ipywidgets as widgets
import socketio

from lab.chat.format import (
    language_of,
    meta_text,
    progress_text,
    question_record,
    session_html,
    status_html,
    system_html,
    text_html,
)
from lab.chat.kernel import CellActivity
from lab.chat.session import CLOSE_TIMEOUT_S, ChatSession
from lab.loadgen.client import Exchange, TaskEvent
from services.protocol import SystemStatus

__all__ = [
    "ACK_TIMEOUT_S",
    "CLOSE_TIMEOUT_S",
    "CONNECT_TIMEOUT_S",
    "ChatPanel",
    "QuestionRefused",
    "QuestionView",
    "language_of",
    "text_html",
]

CONNECT_TIMEOUT_S = 10.0
ACK_TIMEOUT_S = 30.0  # as the chat page: no acknowledgement after this, the question is marked failed
BUSY_TEXT = "A cell is running: what you send now waits, and is sent when the kernel is free."


class QuestionRefused(ValueError):
    """The master refused a question (empty, too long, too many...); the message says why."""


class QuestionView:
    """One question in the panel: its widgets and what the master said about it."""

    def __init__(self, query: str) -> None:
        self.query = query
        self.exchange: Exchange | None = None
        self.failure: str | None = None  # never became a task: refused, not sent, not acknowledged
        self.question = widgets.HTML(text_html(query, "font-weight: 600"))
        self.progress = widgets.HTML()
        self.answer = widgets.HTML()
        self.error = widgets.HTML()
        self.meta = widgets.HTML()
        self.box = widgets.VBox(
            [self.question, self.progress, self.answer, self.error, self.meta],
            layout=widgets.Layout(border="1px solid #ddd", padding="4px", margin="2px 0"),
        )
        self.progress_text = ""

    @property
    def task_id(self) -> str:
        """The master's task id ("" until acknowledged, or when refused)."""
        return self.exchange.task_id if self.exchange else ""

    @property
    def done(self) -> bool:
        """True once the question has its answer or an error."""
        return self.failure is not None or (self.exchange is not None and self.exchange.answer is not None)

    def record(self) -> dict[str, Any]:
        """The question's outcome as plain data (what `ChatPanel.wait` returns)."""
        return question_record(self.query, self.exchange, self.failure)

    def render(self, last_event: str) -> None:
        """Show the current state; `last_event` is the latest event the master sent for the task."""
        rec = self.record()
        if self.done:
            self._show(
                answer=rec["answer"] or "", error=rec["error"] or "", meta=meta_text(rec) if self.exchange else ""
            )
        else:
            self._show(progress=progress_text(self.exchange, last_event))

    def _show(self, progress: str = "", answer: str = "", error: str = "", meta: str = "") -> None:
        self.progress_text = progress
        for widget, text, style in (
            (self.progress, progress, "color: #888; font-style: italic"),
            (self.answer, answer, ""),
            (self.error, error, "color: #c62828"),
            (self.meta, meta, "color: #888; font-size: small"),
        ):
            widget.value = text_html(text, style) if text else ""
            widget.layout.display = "" if text else "none"


class ChatPanel:
    """A chat with the master as ipywidgets: status, session, API key, questions and their answers."""

    def __init__(self, url: str, api_key: str | None = None, *, connect: bool = True) -> None:
        self.url = url
        # A key given in code stays out of the widgets, so it never reaches the browser or the notebook file.
        self._api_key = api_key or None
        self._lock = threading.Condition()
        self._questions: list[QuestionView] = []
        self._by_task: dict[str, QuestionView] = {}
        self._last_event: dict[str, str] = {}  # task id -> latest event, also for events before the ack
        self._status = "disconnected"
        self._closed = False
        self._session = ChatSession(url, self._on_event, self._set_status, self._on_system_status)
        self._build_widgets(have_key=self._api_key is not None)
        self._cells = CellActivity(self._kernel_busy)
        self._session.start()
        if connect:
            try:
                self.connect()
            except BaseException:
                self.close()
                raise

    # ---------- public API ----------
    @property
    def status(self) -> str:
        """One of "connecting", "connected", "reconnecting", "disconnected"."""
        return self._status

    @property
    def session_id(self) -> str | None:
        """The session id the master gave this panel (None before it did)."""
        return self._session.session_id

    @property
    def questions(self) -> list[QuestionView]:
        """Every question asked so far, oldest first."""
        with self._lock:
            return list(self._questions)

    def connect(self, timeout: float = CONNECT_TIMEOUT_S) -> None:
        """Connect to the master and wait for the session id; raise ConnectionError if that fails."""
        if self._closed:
            raise RuntimeError(self.closed_text)
        if self._session.connected:
            return
        self._set_status("connecting")
        try:
            self._session.call(self._session.connect(timeout), timeout + CLOSE_TIMEOUT_S)
        except Exception as e:
            self._set_status("disconnected")
            raise ConnectionError(f"cannot connect to the master at {self.url}: {e!r}") from e

    def ask(self, text: str, timeout: float = ACK_TIMEOUT_S) -> str:
        """Send a question; return its task id once the master acknowledged it.

        Raises QuestionRefused with the master's message for refused input, TimeoutError without an
        acknowledgement, ConnectionError when not connected."""
        return self._submit(text, timeout).result(timeout + CLOSE_TIMEOUT_S)

    def wait(self, timeout: float = 60) -> list[dict[str, Any]]:
        """Block until every question has an answer or an error; return one record per question."""
        self._session.not_on_loop()
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                still_open = [q for q in self._questions if not q.done]
                if not still_open:
                    return [q.record() for q in self._questions]
                left = deadline - time.monotonic()
                if left <= 0:
                    what = "; ".join(f"{q.query!r} ({q.progress_text or 'open'})" for q in still_open)
                    raise TimeoutError(
                        f"{len(still_open)} of {len(self._questions)} still open after {timeout} s: {what}"
                    )
                self._lock.wait(left)

    @property
    def closed_text(self) -> str:
        """What a closed panel says: that it is closed, and how to open a new one."""
        return f"the panel is closed; to chat again, open a new one: panel = ChatPanel({self.url!r})"

    def close(self) -> None:
        """Disconnect and stop the background thread (safe to call again)."""
        if self._closed:
            return
        self._closed = True
        self.send_button.disabled = self.text.disabled = True
        self._cells.close()
        self._show_notice(self.closed_text[0].upper() + self.closed_text[1:])
        self._session.close()
        with self._lock:
            for q in self._questions:
                if not q.done:
                    q.failure = "the panel was closed before an answer arrived"
                    q.render("")
            self._lock.notify_all()
        self._set_status("disconnected")

    def __enter__(self) -> ChatPanel:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        # A bare `panel` at the end of a cell shows the widgets.
        return self.widget._repr_mimebundle_(**kwargs)

    # ---------- widgets ----------
    def _build_widgets(self, have_key: bool) -> None:
        self.status_html = widgets.HTML()
        self.session_html = widgets.HTML()
        self.system_html = widgets.HTML()
        self.conversation = widgets.VBox(layout=widgets.Layout(max_height="480px", overflow="auto"))
        hint = "a key was given in code; type one to use another" if have_key else "optional"
        self.api_key_field = widgets.Password(
            description="Gemini key",
            placeholder=f"{hint}; sent with each question, never shown",
            layout=widgets.Layout(width="100%"),
        )
        self.text = widgets.Text(placeholder="Ask a question… (Enter sends)", layout=widgets.Layout(flex="1"))
        self.notice = widgets.HTML()  # a cell is running, or the panel is closed
        self.send_button = widgets.Button(description="Send", button_style="primary", icon="paper-plane")
        self.send_button.on_click(self._on_send)
        self.text.on_msg(self._on_text_msg)  # the text box sends {"event": "submit"} on Enter
        title = widgets.HTML("<b>Swarm AI Lab · chat</b>", layout=widgets.Layout(flex="1"))
        self.widget = widgets.VBox(
            [
                widgets.HBox([title, self.status_html, self.session_html]),
                self.system_html,
                self.conversation,
                self.api_key_field,
                widgets.HBox([self.text, self.send_button]),
                self.notice,
            ]
        )
        self._set_status("disconnected")
        self._show_notice("")

    def _show_notice(self, text: str) -> None:
        self.notice.value = text_html(text, "color: #b26a00") if text else ""
        self.notice.layout.display = "" if text else "none"

    def _kernel_busy(self, busy: bool) -> None:
        if not self._closed:
            self._show_notice(BUSY_TEXT if busy else "")

    def _set_status(self, state: str) -> None:
        self._status = state
        self.status_html.value = status_html(state)

    def _on_send(self, _: object = None) -> None:
        query = str(self.text.value).strip()
        self.text.value = ""
        if self._closed:
            # Sent before the panel was closed, handled after (it waited for a cell): say so, do not drop it.
            self._refuse(query, f"not sent: {self.closed_text}")
            return
        # An empty question is sent too: the master says what is wrong, and the panel shows it.
        self._submit(query, ACK_TIMEOUT_S)

    def _on_text_msg(self, _widget: object, content: dict[str, Any], _buffers: object) -> None:
        if isinstance(content, dict) and content.get("event") == "submit":
            self._on_send()

    # ---------- questions ----------
    def _refuse(self, text: str, reason: str) -> None:
        """Show a question that was not sent, with why."""
        view = QuestionView(text)
        view.failure = reason
        with self._lock:
            self._questions.append(view)
            self.conversation.children = (*self.conversation.children, view.box)
            view.render("")
            self._lock.notify_all()

    def _submit(self, text: str, timeout: float) -> concurrent.futures.Future[str]:
        if self._closed:
            raise RuntimeError(self.closed_text)
        api_key = str(self.api_key_field.value).strip() or self._api_key
        view = QuestionView(text)
        with self._lock:
            self._questions.append(view)
            self.conversation.children = (*self.conversation.children, view.box)
            view.render("")
        return self._session.submit(self._send(view, api_key, timeout))

    async def _send(self, view: QuestionView, api_key: str | None, timeout: float) -> str:
        try:
            exchange = await self._session.ask(view.query, api_key, timeout)
        except socketio.exceptions.TimeoutError as e:
            self._fail(view, f"no acknowledgement from the master within {timeout} s")
            raise TimeoutError(view.failure) from e
        except (socketio.exceptions.SocketIOError, ConnectionError) as e:
            self._fail(view, f"not sent: not connected to the master ({e})")
            raise ConnectionError(view.failure) from e
        with self._lock:
            if exchange.task_id:
                view.exchange = exchange
                self._by_task[exchange.task_id] = view
                view.render(self._last_event.get(exchange.task_id, ""))
                self._lock.notify_all()
                return exchange.task_id
        self._fail(view, exchange.ack.error or f"unexpected acknowledgement {exchange.ack.dump()!r}")
        raise QuestionRefused(f"the master refused the question: {view.failure}")

    def _fail(self, view: QuestionView, message: str) -> None:
        with self._lock:
            view.failure = message
            view.render("")
            self._lock.notify_all()

    def _on_event(self, event: str, data: TaskEvent | str) -> None:
        if isinstance(data, str):  # the session id
            self.session_html.value = session_html(data)
            return
        task_id = data.taskId
        with self._lock:
            self._last_event[task_id] = event
            view = self._by_task.get(task_id)
            if view is not None:
                view.render(event)
            self._lock.notify_all()

    def _on_system_status(self, status: SystemStatus) -> None:
        self.system_html.value = system_html(status)
