"""Where a run's live stats are shown and what keeps them fresh: the view chosen for where the output goes
(a Jupyter kernel, a terminal, a log), and the monitor that every few seconds reads the master's queue and
hands a snapshot to the view.

The queue length comes from the master's GET /api/status, read with the snapshot: it is the master's own
count (every session's questions, not only this run's), it needs no collector (the loops run without one in
tests and benchmarks), and one small request every 2 s costs the master nothing. The positions in the users'
`task-queued` events only tell where this run's questions stand, and the Watch stream belongs to the
collector of lab.observe, which this layer cannot use."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from lab.loadgen.live import LiveSnapshot, LiveStats
from services.protocol import DecodeError, StatusReport, validate

if TYPE_CHECKING:
    import httpx

__all__ = ["LiveMonitor", "LiveView", "choose_view", "in_notebook", "live_view"]

log = logging.getLogger(__name__)

STATUS_TIMEOUT_S = 1.5  # a master too busy to answer in time: the queue shows its last value


class LiveView(Protocol):
    """Shows snapshots as they come (called from the monitor's thread), then is closed by whoever made it."""

    every_s: float

    def update(self, snapshot: LiveSnapshot) -> None:
        """Show `snapshot`."""

    def close(self) -> None:
        """The run is over: leave the last numbers visible."""


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (papermill's included)."""
    if "IPython" not in sys.modules:  # not imported: certainly no kernel, and no need to import it
        return False
    from IPython import get_ipython

    return getattr(get_ipython(), "kernel", None) is not None


def choose_view() -> LiveView:
    """A widget in Jupyter, a live table on a terminal, plain lines into a file or a pipe (stderr, as
    progress goes)."""
    if in_notebook():
        from lab.loadgen.live_notebook import NotebookView

        return NotebookView()
    from lab.loadgen.live_text import PlainView, TerminalView

    return TerminalView() if sys.stderr.isatty() else PlainView()


@contextlib.contextmanager
def live_view(enabled: bool) -> Iterator[LiveView | None]:
    """The view of one run (None when not `enabled`), made in the calling thread and closed at the end."""
    view = choose_view() if enabled else None
    try:
        yield view
    finally:
        if view is not None:
            view.close()


class LiveMonitor:
    """Every `view.every_s`, reads the master's queue into `stats` and shows a snapshot; once more at exit.

    Without a `view`, `make_view` makes one for the run (choose_view; closed at exit), else it does nothing.
    The view is updated in a thread of its own so that drawing (a chart, a slow terminal) never holds up
    the event loop that sends the questions.
    """

    def __init__(
        self,
        stats: LiveStats,
        view: LiveView | None,
        url: str,
        make_view: bool = False,
        operator_token: str | None = None,
    ) -> None:
        self.stats = stats
        # /api/status is an operator view: without the master's operator token the queue shows as unknown.
        self._headers = {"Authorization": f"Bearer {operator_token}"} if operator_token else {}
        self.view = view
        self.url = url.rstrip("/")
        self._own = make_view and view is None
        self._task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    async def __aenter__(self) -> LiveMonitor:
        if self._own:
            self.view = choose_view()
        if self.view is not None:
            import httpx

            self._http = httpx.AsyncClient(timeout=STATUS_TIMEOUT_S, headers=self._headers)
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-view")
            self._task = asyncio.get_running_loop().create_task(self._run(self.view.every_s))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        try:
            if exc_type is None:
                await self.tick()  # the final numbers
        finally:
            if self._http is not None:
                await self._http.aclose()
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            if self._own and self.view is not None:
                self.view.close()

    async def _run(self, every_s: float) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:  # at once, so the view shows that sending started, then every every_s on the clock
            await self.tick()
            due = max(due + every_s, loop.time())  # a slow tick (the first chart imports matplotlib) is not made up
            await asyncio.sleep(due - loop.time())

    async def tick(self) -> None:
        """Read the master's status, take a snapshot, show it."""
        self.stats.on_status(await self.status())
        snapshot = self.stats.snapshot(time.monotonic())
        if self.view is not None and self._pool is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(self._pool, self.view.update, snapshot)
            except Exception:  # a view that fails must not fail the run: it stops being updated
                log.exception("live view failed; the run goes on without it")
                self.view = None

    async def status(self) -> StatusReport | None:
        """The master's /api/status; None when it did not answer in time, or oddly."""
        import httpx

        if self._http is None:
            return None
        try:
            response = await self._http.get(f"{self.url}/api/status")
            return validate(StatusReport, response.json())
        except (httpx.HTTPError, ValueError, DecodeError):  # ValueError: not JSON
            return None
