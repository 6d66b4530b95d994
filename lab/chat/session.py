"""The chat panel's connection: a Socket.IO chat client on an asyncio loop in a background thread.

The loop is owned by the session, not borrowed from the caller, so it works the same in a Jupyter kernel
(whose main thread already runs a loop) and in a plain process. Blocking calls wait on the loop from the
caller's thread; what the master sends is handed to callbacks, which run on the loop thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from lab.loadgen.client import ChatClient, Exchange, TaskEvent
from services.protocol import DecodeError, Events, SystemStatus, validate

log = logging.getLogger(__name__)

T = TypeVar("T")

CLOSE_TIMEOUT_S = 5.0


class _NotifyingClient(ChatClient):
    """A ChatClient that tells the panel about every event once it has recorded it: the session id (a str), or
    the task event read into its model."""

    def __init__(self, url: str, notify: Callable[[str, TaskEvent | str], None]) -> None:
        self._notify = notify  # set first: the base constructor registers the handlers below
        super().__init__(url)

    async def _on_session(self, session_id: str) -> None:
        await super()._on_session(session_id)
        self._notify(Events.SESSION_ID, session_id)

    def _received(self, event: str, message: TaskEvent) -> None:
        super()._received(event, message)
        self._notify(event, message)


class ChatSession:
    """One chat connection to the master on a loop thread of its own, with blocking and future-based calls.

    `on_event(event, data)` gets the session id and every task event (read), `on_status(state)` the connection
    state ("connected", "reconnecting", "disconnected"), `on_system_status(status)` the master's status (a
    malformed one is dropped).
    """

    def __init__(
        self,
        url: str,
        on_event: Callable[[str, TaskEvent | str], None],
        on_status: Callable[[str], None],
        on_system_status: Callable[[SystemStatus], None],
    ) -> None:
        self.url = url
        self._on_event = on_event
        self._on_status = on_status
        self._on_system_status = on_system_status
        self._closed = False
        self._client: _NotifyingClient | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="chat-panel", daemon=True)

    def start(self) -> None:
        """Start the loop thread."""
        self._thread.start()

    @property
    def session_id(self) -> str | None:
        """The session id the master gave (None before it did)."""
        return self._client.session_id if self._client else None

    @property
    def connected(self) -> bool:
        """True while the Socket.IO connection is up."""
        return self._client is not None and bool(self._client.sio.connected)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run `coro` on the loop and wait up to `timeout` seconds for its result."""
        self.not_on_loop()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run `coro` on the loop without waiting; its result comes in the returned future."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def not_on_loop(self) -> None:
        """Raise RuntimeError on the loop thread, where a blocking call would wait for itself."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("blocking ChatPanel call from the panel's own event loop")

    async def connect(self, timeout: float) -> None:
        """Connect (on the loop) and wait for the session id."""
        if self._client is None:
            self._client = _NotifyingClient(self.url, self._on_event)
            sio = self._client.sio
            sio.on("connect", lambda: self._on_status("connected"))
            sio.on("disconnect", self._on_disconnect)
            sio.on(Events.STATUS, self._on_status_event)
        try:
            await self._client.connect(timeout)
        except BaseException:
            await self._client.close()  # connected but no session id: do not leave it reconnecting
            raise

    async def ask(self, query: str, api_key: str | None, timeout: float) -> Exchange:
        """Send a question (on the loop) and return its exchange once the master acknowledged it."""
        if self._client is None:
            raise ConnectionError("never connected")
        return await self._client.ask(query, api_key=api_key, timeout=timeout)

    def close(self) -> None:
        """Disconnect and stop the loop thread (safe to call again)."""
        self._closed = True
        if self._client is not None and self._thread.is_alive():
            try:
                self.call(self._client.close(), CLOSE_TIMEOUT_S)
            except Exception as e:  # the thread is stopped below anyway
                log.debug("disconnect failed: %r", e)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CLOSE_TIMEOUT_S)

    def _on_status_event(self, data: object) -> None:
        try:
            status = validate(SystemStatus, data)
        except DecodeError:
            return  # as before: a status that is not one shows nothing
        self._on_system_status(status)

    def _on_disconnect(self, reason: object = None) -> None:
        # The client retries by itself unless we closed it or the server sent us away.
        assert self._client is not None
        reasons = self._client.sio.reason
        final = self._closed or reason in (reasons.CLIENT_DISCONNECT, reasons.SERVER_DISCONNECT)
        self._on_status("disconnected" if final else "reconnecting")

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
