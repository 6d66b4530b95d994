"""`Leadership`: one leader at a time on a leased key, known by its epoch, and fenced by it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from services.master.etcd.client import EtcdClient
from services.master.etcd.errors import EtcdCompacted, EtcdError, EtcdTimeout, EtcdUnavailable
from services.master.etcd.lease import KeepAlive
from services.master.etcd.ops import Compare, Key, as_bytes, create_revision_is, get, put

log = logging.getLogger(__name__)


class NotLeader(EtcdError):
    """This campaigner does not lead (not yet, or not any more): it must not write."""


class Leadership:
    """Campaign for `key` on a lease of `ttl` seconds: at most one holder at a time.

    The key is created only if absent, on the campaigner's lease, holding its `name`; the **epoch** is the
    key's create_revision, which no later holder can share. A standby waits (watching for the key's deletion)
    while another holds it. The leader keeps its lease alive; when the lease is lost (no renewal for `ttl`, or
    etcd says it ended) or the key goes (revoked, deleted), `lost` is set and `on_lost(reason)` called once.
    Every write of the leader carries `fence()`, so that a deposed leader that does not know it yet (paused,
    partitioned) can never write: etcd refuses the compare.
    """

    def __init__(
        self, client: EtcdClient, key: Key, name: Key, ttl: int = 5, on_lost: Callable[[str], None] | None = None
    ) -> None:
        self.client = client
        self.key = as_bytes(key)
        self.name = as_bytes(name)
        self.ttl = ttl
        self.epoch: int | None = None
        self.lease: int | None = None
        self.keepalive: KeepAlive | None = None
        self.lost = asyncio.Event()
        self.reason: str | None = None
        self._on_lost = on_lost
        self._monitor: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        """Whether this campaigner won and has not lost since (as far as it knows: the fence is the proof)."""
        return self.epoch is not None and not self.lost.is_set()

    def surely_leading(self) -> bool:
        """Whether the lease surely still holds by this process's clock (not only not known lost): false once a
        renewal is overdue, even before the keepalive notices, e.g. right after this process was paused."""
        if not self.leading or self.keepalive is None:
            return False
        return asyncio.get_running_loop().time() < self.keepalive.expires

    def fence(self) -> Compare:
        """The compare every write of the leader must carry: the key is still the one this leader created."""
        if self.epoch is None:
            raise NotLeader(f"no epoch: {self.name!r} has not won {self.key!r}")
        return create_revision_is(self.key, self.epoch)

    async def campaign(self) -> int:
        """Wait until this campaigner holds the key, and return its epoch."""
        if self.epoch is not None:
            raise NotLeader("a Leadership campaigns once: make a new one to campaign again")
        while True:
            lease = await self.client.lease_grant(self.ttl)
            epoch, holder_revision = await self._try(lease)
            if epoch is not None:
                self._lead(lease, epoch)
                return epoch
            with contextlib.suppress(EtcdError):
                await self.client.lease_revoke(lease)
            if holder_revision is not None:
                await self._wait_for_deletion(holder_revision + 1)

    async def _try(self, lease: int) -> tuple[int | None, int | None]:
        """(our epoch, None) if we won; (None, revision to watch from) if another holds it; (None, None) to retry.

        A campaign transaction whose reply was lost is not retried (it may have won): the key tells.
        """
        try:
            result = await self.client.txn(
                [create_revision_is(self.key, 0)], [put(self.key, self.name, lease)], [get(self.key)]
            )
        except (EtcdTimeout, EtcdUnavailable) as error:
            log.info("campaign for %r: outcome unknown (%s); reading the key", self.key, error)
            holder = await self.client.get(self.key)
            if holder is not None and holder.lease == lease:
                return holder.create_revision, None
            return None, (holder.mod_revision if holder else None)
        if result.succeeded:
            return result.revision, None
        holders = result.results[0].kvs
        return None, (result.revision if holders else None)

    async def _wait_for_deletion(self, revision: int) -> None:
        log.info("%r waits as a standby for %r from revision %d", self.name, self.key, revision)
        try:
            async for event in self.client.watch(self.key, start_revision=revision):
                if event.type == "delete":
                    return
        except EtcdCompacted:
            return  # campaign again: the transaction says who holds it now

    def _lead(self, lease: int, epoch: int) -> None:
        self.lease, self.epoch = lease, epoch
        self.keepalive = self.client.lease_keepalive(lease, self.ttl, on_lost=self._lose)
        self._monitor = asyncio.create_task(self._watch_key(epoch), name=f"leadership-{self.key!r}")
        log.info("%r leads %r with epoch %d", self.name, self.key, epoch)

    async def _watch_key(self, epoch: int) -> None:
        revision = epoch + 1
        while True:
            try:
                async for event in self.client.watch(self.key, start_revision=revision):
                    if event.type == "delete" or event.kv.create_revision != epoch:
                        self._lose(f"the key {self.key!r} went at revision {event.revision}")
                        return
                    revision = event.revision + 1
            except EtcdCompacted:
                holder = await self.client.get(self.key)
                if holder is None or holder.create_revision != epoch:
                    self._lose(f"the key {self.key!r} went (found after a compaction)")
                    return
                revision = holder.mod_revision + 1

    def _lose(self, reason: str) -> None:
        if self.lost.is_set():
            return
        self.reason = reason
        self.lost.set()
        # Whichever noticed first, the other watcher has nothing left to guard.
        if self.keepalive is not None:
            self.keepalive.cancel()
        if self._monitor is not None and self._monitor is not asyncio.current_task():
            self._monitor.cancel()
        log.warning("%r lost the leadership of %r (epoch %s): %s", self.name, self.key, self.epoch, reason)
        if self._on_lost is not None:
            self._on_lost(reason)

    async def close(self) -> None:
        """Stop keeping the lease and watching the key, without giving them up: the lease lapses in `ttl`."""
        if self._monitor is not None and self._monitor is not asyncio.current_task():
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)
        if self.keepalive is not None:
            await self.keepalive.stop()

    async def resign(self) -> None:
        """Give the leadership up now: revoke the lease, which deletes the key, so a standby takes over."""
        await self.close()
        if self.lease is not None:
            with contextlib.suppress(EtcdError):
                await self.client.lease_revoke(self.lease)
        self._lose("resigned")
