"""Watching keys across broken streams: resume after the last event seen, never skip one silently."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

import grpc

from services.master.etcd.errors import (
    EtcdCompacted,
    EtcdError,
    EtcdTimeout,
    EtcdUnavailable,
    call_cancelled,
    from_rpc_error,
)
from services.master.etcd.gen import kv_pb2, rpc_pb2
from services.master.etcd.lease import REQUIRE_LEADER
from services.master.etcd.ops import KeyValue, prefix_end

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchEvent:
    """A key put or deleted at `revision` (a deletion's `kv` has the key and the revision, no value)."""

    type: Literal["put", "delete"]
    kv: KeyValue

    @property
    def revision(self) -> int:
        """The revision of the change."""
        return self.kv.mod_revision


def event_from_pb(event: kv_pb2.Event) -> WatchEvent:
    """Ours from the wire's."""
    kind: Literal["put", "delete"] = "delete" if event.type == kv_pb2.Event.DELETE else "put"
    return WatchEvent(kind, KeyValue.from_pb(event.kv))


async def watch_events(
    stub: Callable[[], Any], key: bytes, *, prefix: bool = False, start_revision: int = 0, retry_delay: float = 0.2
) -> AsyncIterator[WatchEvent]:
    """Every change of `key` (or under it) from `start_revision` (0: from the watch's creation), in order.

    A broken stream (member gone, no leader) is reopened from the revision after the last event seen, so no
    event is lost or repeated. If that revision was compacted meanwhile, `EtcdCompacted` ends the iteration:
    the caller must re-read the current state and watch from there.
    """
    next_revision = start_revision
    range_end = prefix_end(key) if prefix else b""
    while True:
        call = stub().Watch(metadata=REQUIRE_LEADER)  # on the client's current channel
        try:
            create = rpc_pb2.WatchCreateRequest(
                key=key, range_end=range_end, start_revision=next_revision, progress_notify=True
            )
            await call.write(rpc_pb2.WatchRequest(create_request=create))
            async for response in call:
                if response.compact_revision:
                    raise EtcdCompacted(
                        f"etcd watch of {key!r} from revision {next_revision}: compacted up to "
                        f"{response.compact_revision}",
                        response.compact_revision,
                    )
                if response.canceled:
                    raise EtcdError(f"etcd cancelled the watch of {key!r}: {response.cancel_reason}")
                if response.created:
                    next_revision = next_revision or response.header.revision + 1
                elif not response.events:  # a progress notification: nothing below it is still to come
                    next_revision = max(next_revision, response.header.revision + 1)
                for event in response.events:
                    next_revision = event.kv.mod_revision + 1
                    yield event_from_pb(event)
            reason = "the stream ended"
        except asyncio.CancelledError:
            if not call_cancelled():
                raise
            reason = "its stream was cancelled: the client moved to another member"
        except grpc.RpcError as error:
            mapped = from_rpc_error(error, f"watch of {key!r}")
            if not isinstance(mapped, (EtcdUnavailable, EtcdTimeout)):
                raise mapped from error
            reason = str(mapped)
        finally:
            call.cancel()
        log.info("etcd watch of %r broke (%s); resuming at revision %d", key, reason, next_revision)
        await asyncio.sleep(retry_delay)
