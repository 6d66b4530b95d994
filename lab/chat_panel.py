"""A chat with the master as ipywidgets, for notebooks: what the chat page shows, plus a blocking API.

The Socket.IO client lives on an asyncio loop in a background thread owned by the panel, so the panel
works the same in a Jupyter kernel (whose main thread already runs a loop) and in a plain process.
Widget callbacks only hand work to that loop; everything from the network is shown as escaped text.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

import ipywidgets as widgets
import socketio

from lab.client import ChatClient, Exchange
from services.protocol import Events

log = logging.getLogger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT_S = 10.0
ACK_TIMEOUT_S = 30.0  # as the chat page: no acknowledgement after this, the question is marked failed
CLOSE_TIMEOUT_S = 5.0
_COLOURS = {"connecting": "#888", "connected": "#2a9d3a", "reconnecting": "#d98b00", "disconnected": "#c62828"}


class QuestionRefused(ValueError):
    """The master refused a question (empty, too long, too many...); the message says why."""


def language_of(worker_id: str) -> str:
    """The worker's language, read from its id (`<language>-worker-<random>`, docs/PROTOCOL.md)."""
    language, sep, _ = worker_id.partition("-worker-")
    return language if sep else ""


def text_html(text: str, style: str = "") -> str:
    """HTML that shows `text` literally: markup in it is escaped, line breaks are kept."""
    return f'<div style="white-space: pre-wrap; {style}">{html.escape(text)}</div>'


class _NotifyingClient(ChatClient):
    """A ChatClient that tells the panel about every event once it has recorded it."""

    def __init__(self, url: str, notify: Callable[[str, Any], None]) -> None:
        self._notify = notify  # set first: the base constructor registers the handlers below
        super().__init__(url)

    async def _on_session(self, session_id: str) -> None:
        await super()._on_session(session_id)
        self._notify(Events.SESSION_ID, session_id)

    def _handler(self, event: str) -> Any:
        record = super()._handler(event)

        async def handle(data: Any) -> bool:
            acked: bool = await record(data)
            self._notify(event, data)
            return acked

        return handle


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
        ex = self.exchange
        reply = ex.answer if ex else None
        error = self.failure if self.failure is not None else str(reply.get("error") or "") if reply else ""
        worker_id = str(reply.get("workerId") or "") if reply else ex.worker_id if ex else ""
        total = ex.answered_at - ex.sent_at if ex and ex.answered_at is not None else None
        processing = reply.get("processingTime") if reply else None
        return {
            "task_id": self.task_id,
            "question": self.query,
            "worker_id": worker_id,
            "language": language_of(worker_id),
            "processing_time_ms": int(processing) if isinstance(processing, (int, float)) else None,
            "total_ms": round(total * 1000) if total is not None else None,
            "positions": list(ex.positions) if ex else [],
            "model": str(reply.get("model") or "") if reply else "",
            "answer": None if error or reply is None else str(reply.get("response", "")),
            "error": error or None,
        }

    def render(self, last_event: str) -> None:
        """Show the current state; `last_event` is the latest event the master sent for the task."""
        ex = self.exchange
        rec = self.record()
        if self.done:
            self._show(answer=rec["answer"] or "", error=rec["error"] or "", meta=self._meta(rec) if ex else "")
        elif ex is None:
            self._show(progress="sending…")
        elif last_event == Events.TASK_ASSIGNED:
            self._show(progress=f"assigned to worker {ex.worker_id}, working…")
        elif ex.positions and ex.positions[-1] > 0:
            self._show(progress=f"queued, position {ex.positions[-1]}")
        else:
            self._show(progress="handing to a worker…")

    @staticmethod
    def _meta(rec: dict[str, Any]) -> str:
        processing = rec["processing_time_ms"]
        parts = [
            f"worker {rec['worker_id'] or 'unknown'}",
            f"language {rec['language'] or 'unknown'}",
            f"processing {'?' if processing is None else processing} ms",
            f"total {'?' if rec['total_ms'] is None else rec['total_ms']} ms",
        ]
        if rec["model"]:
            parts.append(f"model {rec['model']}")
        if rec["positions"]:
            parts.append("queue positions " + " → ".join(str(p) for p in rec["positions"]))
        return " · ".join(parts)

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
        self._client: _NotifyingClient | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="chat-panel", daemon=True)
        self._build_widgets(have_key=self._api_key is not None)
        self._thread.start()
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
        return self._client.session_id if self._client else None

    @property
    def questions(self) -> list[QuestionView]:
        """Every question asked so far, oldest first."""
        with self._lock:
            return list(self._questions)

    def connect(self, timeout: float = CONNECT_TIMEOUT_S) -> None:
        """Connect to the master and wait for the session id; raise ConnectionError if that fails."""
        if self._closed:
            raise RuntimeError("the panel is closed")
        if self._client is not None and self._client.sio.connected:
            return
        self._set_status("connecting")
        try:
            self._call(self._connect(timeout), timeout + CLOSE_TIMEOUT_S)
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
        self._not_on_loop()
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

    def close(self) -> None:
        """Disconnect and stop the background thread (safe to call again)."""
        if self._closed:
            return
        self._closed = True
        self.send_button.disabled = self.text.disabled = True
        if self._client is not None and self._thread.is_alive():
            try:
                self._call(self._client.close(), CLOSE_TIMEOUT_S)
            except Exception as e:  # the thread is stopped below anyway
                log.debug("disconnect failed: %r", e)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CLOSE_TIMEOUT_S)
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
            ]
        )
        self._set_status("disconnected")

    def _set_status(self, state: str) -> None:
        self._status = state
        dot = f'<span style="color: {_COLOURS[state]}">●</span>'
        self.status_html.value = f"{dot} {html.escape(state)}"

    def _on_send(self, _: object = None) -> None:
        if self._closed:
            return
        query = str(self.text.value).strip()
        self.text.value = ""
        # An empty question is sent too: the master says what is wrong, and the panel shows it.
        self._submit(query, ACK_TIMEOUT_S)

    def _on_text_msg(self, _widget: object, content: dict[str, Any], _buffers: object) -> None:
        if isinstance(content, dict) and content.get("event") == "submit":
            self._on_send()

    # ---------- the loop thread ----------
    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            # Stopped by close(): end what the Socket.IO client left running, then the loop itself.
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def _not_on_loop(self) -> None:
        if threading.current_thread() is self._thread:
            raise RuntimeError("blocking ChatPanel call from the panel's own event loop")

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        self._not_on_loop()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _submit(self, text: str, timeout: float) -> concurrent.futures.Future[str]:
        if self._closed:
            raise RuntimeError("the panel is closed")
        api_key = str(self.api_key_field.value).strip() or self._api_key
        view = QuestionView(text)
        with self._lock:
            self._questions.append(view)
            self.conversation.children = (*self.conversation.children, view.box)
            view.render("")
        return asyncio.run_coroutine_threadsafe(self._send(view, api_key, timeout), self._loop)

    async def _connect(self, timeout: float) -> None:
        if self._client is None:
            self._client = _NotifyingClient(self.url, self._on_event)
            sio = self._client.sio
            sio.on("connect", lambda: self._set_status("connected"))
            sio.on("disconnect", self._on_disconnect)
            sio.on(Events.STATUS, self._on_system_status)
        try:
            await self._client.connect(timeout)
        except BaseException:
            await self._client.close()  # connected but no session id: do not leave it reconnecting
            raise

    async def _send(self, view: QuestionView, api_key: str | None, timeout: float) -> str:
        try:
            if self._client is None:
                raise ConnectionError("never connected")
            exchange = await self._client.ask(view.query, api_key=api_key, timeout=timeout)
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
        self._fail(view, str(exchange.ack.get("error") or f"unexpected acknowledgement {exchange.ack!r}"))
        raise QuestionRefused(f"the master refused the question: {view.failure}")

    def _fail(self, view: QuestionView, message: str) -> None:
        with self._lock:
            view.failure = message
            view.render("")
            self._lock.notify_all()

    def _on_event(self, event: str, data: Any) -> None:
        if event == Events.SESSION_ID:
            self.session_html.value = f"session <code>{html.escape(str(data))}</code>"
            return
        if not isinstance(data, dict):
            return
        task_id = str(data.get("taskId", ""))
        with self._lock:
            self._last_event[task_id] = event
            view = self._by_task.get(task_id)
            if view is not None:
                view.render(event)
            self._lock.notify_all()

    def _on_disconnect(self, reason: object = None) -> None:
        # The client retries by itself unless we closed it or the server sent us away.
        assert self._client is not None
        reasons = self._client.sio.reason
        final = self._closed or reason in (reasons.CLIENT_DISCONNECT, reasons.SERVER_DISCONNECT)
        self._set_status("disconnected" if final else "reconnecting")

    def _on_system_status(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        parts = [f"{data[k]} {k}" for k in ("workers", "busy", "queued") if k in data]
        self.system_html.value = html.escape(" · ".join(parts))
