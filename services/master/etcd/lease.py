"""`KeepAlive`: one lease kept alive on one long-lived stream, and its loss reported."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import grpc

from services.master.etcd.errors import EtcdError, EtcdUnavailable, call_cancelled, from_rpc_error
from services.master.etcd.gen import rpc_pb2

log = logging.getLogger(__name__)

LostCallback = Callable[[str], None]
# Ask the member to end the stream when it has no leader (etcd's WithRequireLeader), rather than to sit on it.
REQUIRE_LEADER = (("hasleader", "true"),)
_BROKEN = (grpc.RpcError, asyncio.TimeoutError, asyncio.InvalidStateError, EtcdError)


class KeepAlive:
    """Renews a lease every ttl/3 on one LeaseKeepAlive stream, reopening the stream when it breaks.

    The lease counts as lost (`lost` is set, `reason` says why, `on_lost` is called once) when etcd answers
    that it has ended, or when no renewal got through for `ttl` seconds after the last one that did: from
    then on the holder must act as if its keys were gone, whether or not etcd has deleted them yet.
    """

    def __init__(
        self,
        stub: Callable[[], Any],
        lease: int,
        ttl: int,
        on_lost: LostCallback | None = None,
        *,
        timeout: float = 2.0,
        on_broken: Callable[[str], object] | None = None,
    ) -> None:
        """`stub`: gives the Lease stub to open a stream on (the client's current channel); `on_broken(why)` is
        called when a stream broke or timed out (the client moves to another member)."""
        self.lease = lease
        self.ttl = ttl
        self.timeout = timeout
        self.lost = asyncio.Event()
        self.reason: str | None = None
        self.renewals = 0
        self._stub = stub
        self._on_broken = on_broken
        self._on_lost = on_lost
        self._expires = asyncio.get_running_loop().time() + ttl  # granted just before, at the latest
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start renewing (the first renewal goes at once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"etcd-keepalive-{self.lease:x}")

    async def stop(self) -> None:
        """Stop renewing, without revoking: the lease then lapses after its TTL (revoke it to end it now)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def cancel(self) -> None:
        """Stop renewing without waiting (for synchronous callers; `stop()` also waits for the task)."""
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    @property
    def expires(self) -> float:
        """When, on the loop's clock, the lease ends unless renewed: the last renewal's send time plus its TTL (etcd
        counts from when it got the renewal, later: so up to then the lease surely holds)."""
        return self._expires

    @property
    def running(self) -> bool:
        """Whether renewals are still being sent."""
        return self._task is not None and not self._task.done()

    def _lose(self, reason: str) -> None:
        if self.lost.is_set():
            return
        self.reason = reason
        self.lost.set()
        log.warning("etcd lease %x lost: %s", self.lease, reason)
        if self._on_lost is not None:
            self._on_lost(reason)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_error = "no renewal yet"
        while True:
            try:
                try:
                    await self._stream(loop)
                    return  # etcd said the lease has ended
                except asyncio.CancelledError:
                    if not call_cancelled():
                        raise
                    raise EtcdUnavailable("its stream was cancelled: the client moved to another member") from None
            except _BROKEN as error:
                if isinstance(error, grpc.RpcError):
                    error = from_rpc_error(error, f"lease keepalive of {self.lease:x}")
                last_error = str(error) or type(error).__name__
                if self._on_broken is not None:
                    self._on_broken(f"the keepalive of lease {self.lease:x} broke ({last_error})")
            left = self._expires - loop.time()
            if left <= 0:
                self._lose(f"no renewal got through for its {self.ttl} s ({last_error})")
                return
            log.info("etcd keepalive of lease %x broke (%s); %.1f s left, retrying", self.lease, last_error, left)
            await asyncio.sleep(min(0.25, left))

    async def _stream(self, loop: asyncio.AbstractEventLoop) -> None:
        call = self._stub().LeaseKeepAlive(metadata=REQUIRE_LEADER)
        try:
            while True:
                sent = loop.time()
                await call.write(rpc_pb2.LeaseKeepAliveRequest(ID=self.lease))
                response = await asyncio.wait_for(call.read(), self.timeout)
                if response is grpc.aio.EOF:
                    raise EtcdUnavailable("etcd ended the keepalive stream")
                if response.TTL <= 0:
                    self._lose("etcd says the lease has ended (expired or revoked)")
                    return
                self._expires = sent + response.TTL
                self.renewals += 1
                await asyncio.sleep(self.ttl / 3)
        finally:
            call.cancel()
