"""The live event stream of the master (`MasterEvents.Watch`): one bounded queue per watcher."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable

import grpc

from services.protocol.rpc import pb, pb_grpc

log = logging.getLogger(__name__)

# A watcher that falls this far behind is cut off (it may reconnect) rather than slow the master.
QUEUE_LIMIT = 50_000


class EventHub:
    """Fans events out to watchers; costs nothing while nobody watches."""

    def __init__(self) -> None:
        self._watchers: set[asyncio.Queue[pb.Event | None]] = set()

    @property
    def active(self) -> bool:
        """Whether anyone watches (callers skip building events otherwise)."""
        return bool(self._watchers)

    def publish(self, event: pb.Event) -> None:
        """Hand an event to every watcher; one that cannot keep up is disconnected."""
        for queue in list(self._watchers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("a watcher fell %d events behind: disconnected", QUEUE_LIMIT)
                self._watchers.discard(queue)
                queue.get_nowait()  # make room for the end marker
                queue.put_nowait(None)

    async def stream(self, snapshot: Iterable[pb.Event]) -> AsyncIterator[pb.Event]:
        """Events from now on, after the snapshot; ends when the watcher is cut off."""
        queue: asyncio.Queue[pb.Event | None] = asyncio.Queue(QUEUE_LIMIT)
        for first in snapshot:
            queue.put_nowait(first)
        self._watchers.add(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._watchers.discard(queue)


class WatchService(pb_grpc.MasterEventsServicer):
    """Serves `Watch` from the hub; `snapshot` gives the current state of every worker."""

    def __init__(self, hub: EventHub, snapshot: Callable[[], list[pb.Event]]) -> None:
        self._hub = hub
        self._snapshot = snapshot

    async def Watch(self, request: pb.WatchRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.Event]:
        """Stream events until the client goes away or falls too far behind."""
        first = self._snapshot() if request.snapshot else []
        async for event in self._hub.stream(first):
            yield event
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "fell too far behind; watch again")
