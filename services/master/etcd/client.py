"""`EtcdClient`: etcd's KV, Lease and Watch over one grpc.aio channel to every member."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

from services.master.etcd.errors import (
    EtcdError,
    EtcdTimeout,
    EtcdTooManyOps,
    EtcdUnavailable,
    call_cancelled,
    from_rpc_error,
)
from services.master.etcd.gen import rpc_pb2, rpc_service_pb2_grpc
from services.master.etcd.lease import KeepAlive, LostCallback
from services.master.etcd.ops import Compare, Key, KeyValue, Op, TxnResult, as_bytes, prefix_end
from services.master.etcd.watch import WatchEvent, watch_events

T = TypeVar("T")
log = logging.getLogger(__name__)
DEFAULT_MAX_TXN_OPS = 128  # etcd's --max-txn-ops default
ROTATE_AT_MOST_S = 1.0  # a second between two moves to the next member: calls failing together move once


@dataclass(frozen=True)
class EtcdTls:
    """PEM files for TLS to etcd: the CA that signed the members' certificates, and ours for mutual TLS."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = None  # the name the members' certificates carry, if not the address dialled

    def credentials(self) -> grpc.ChannelCredentials:
        """gRPC's credentials from the files."""
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs its key, and a key its certificate")
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key.read_bytes() if self.key else None,
            certificate_chain=self.cert.read_bytes() if self.cert else None,
        )


@dataclass(frozen=True)
class Snapshot:
    """The keys a range read found, and the store's revision when it read them (to watch from revision + 1)."""

    kvs: tuple[KeyValue, ...]
    revision: int


def channel_target(endpoints: Sequence[str]) -> str:
    """gRPC's target for the members: `ipv4:a:p,b:p,...`, so that one channel fails over between them.

    Host names are resolved once, here: gRPC's `dns:` target takes one name only.
    """
    if not endpoints:
        raise ValueError("no etcd endpoint given")
    addresses = []
    for endpoint in endpoints:
        host, sep, port = endpoint.split("://")[-1].rstrip("/").rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"etcd endpoint {endpoint!r} is not host:port")
        addresses.append(f"{_ipv4(host)}:{port}")
    return "ipv4:" + ",".join(addresses)


def _ipv4(host: str) -> str:
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        return str(socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0])


class EtcdClient:
    """An asyncio client of an etcd cluster: put, get, delete, fenced transactions, leases, watches.

    One channel holds every member's address (`ipv4:` list, gRPC's pick_first): calls and streams go to one
    member, and when its connection breaks gRPC connects to the next. One channel rather than one per member
    with failover of our own because a member's loss is a connection's loss, which gRPC sees first, and every
    stream (keepalive, watches) then moves together. Its limit: a member that is alive but cut off from the
    quorum keeps the channel and answers `EtcdUnavailable` or `EtcdTimeout` until it is back or dead.

    Every call has a deadline (`timeout`, or the call's own). Reads are retried on unavailability and timeouts
    (`read_attempts`); writes never are, since a write whose reply was lost may have been applied.
    Create it inside a running event loop; `close()` it (or use `async with`).
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        tls: EtcdTls | None = None,
        timeout: float = 2.0,
        read_attempts: int = 3,
        max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
    ) -> None:
        self.endpoints = list(endpoints)
        self.target = channel_target(self.endpoints)
        self.timeout = timeout
        self.read_attempts = max(1, read_attempts)
        self.max_txn_ops = max_txn_ops
        self.rotations = 0
        self._tls = tls
        self._first = 0  # the member the channel tries first
        self._last_rotation = float("-inf")
        self._retired: set[asyncio.Task[None]] = set()
        self._open_channel()

    def _open_channel(self) -> None:
        """A channel to the members, trying `endpoints[_first]` first, and the stubs on it."""
        order = self.endpoints[self._first :] + self.endpoints[: self._first]
        options: list[tuple[str, Any]] = [
            # Notice a dead member within seconds even on an idle channel (streams only, no calls); not more often than
            # every 5 s, etcd's --grpc-keepalive-min-time, or it ends the connection ("too_many_pings").
            ("grpc.keepalive_time_ms", 6000),
            ("grpc.keepalive_timeout_ms", 2000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            # Reconnect quickly when the member we were on comes back.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        tls = self._tls
        if tls is None:
            self._channel = grpc.aio.insecure_channel(channel_target(order), options=options)
        else:
            if tls.server_name:
                options.append(("grpc.ssl_target_name_override", tls.server_name))
            self._channel = grpc.aio.secure_channel(channel_target(order), tls.credentials(), options=options)
        self._kv = rpc_service_pb2_grpc.KVStub(self._channel)  # type: ignore[no-untyped-call]
        self._lease = rpc_service_pb2_grpc.LeaseStub(self._channel)  # type: ignore[no-untyped-call]
        self._watch = rpc_service_pb2_grpc.WatchStub(self._channel)  # type: ignore[no-untyped-call]

    def rotate(self, why: str) -> bool:
        """Move to the next member after a call timed out or found its member unavailable: a member whose machine
        died without closing its connections (a pulled cable, a crash) keeps the channel until gRPC's keepalive
        gives up, seconds after the leader's lease would have. Calls and streams in flight on the old channel end
        (streams reopen on the new one); at most once a second, and only with several members. Whether it did."""
        now = asyncio.get_running_loop().time()
        if len(self.endpoints) < 2 or now - self._last_rotation < ROTATE_AT_MOST_S:
            return False
        self._last_rotation = now
        self._first = (self._first + 1) % len(self.endpoints)
        old = self._channel
        self._open_channel()
        self.rotations += 1
        log.warning("etcd: %s; trying %s first now", why, self.endpoints[self._first])
        closing = asyncio.ensure_future(old.close(grace=None))
        self._retired.add(closing)
        closing.add_done_callback(self._retired.discard)
        return True

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel; streams and calls in flight end with it."""
        await self._channel.close()
        await asyncio.gather(*self._retired, return_exceptions=True)

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except asyncio.CancelledError:
            if not call_cancelled():
                raise
            # Its channel was closed under it (moved to another member): an outcome unknown, as a timeout's.
            raise EtcdUnavailable(f"etcd {what}: cancelled when the client moved to another member") from None
        except grpc.RpcError as error:
            failure = from_rpc_error(error, what)
            if isinstance(failure, (EtcdTimeout, EtcdUnavailable)):
                self.rotate(str(failure))
            raise failure from error

    async def _read(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(self.read_attempts):
            try:
                return await self._call(what, call)
            except (EtcdUnavailable, EtcdTimeout):
                if attempt + 1 == self.read_attempts:
                    raise
                await asyncio.sleep(0.1 * 2**attempt)
        raise AssertionError("unreachable")

    def _deadline(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout

    async def put(self, key: Key, value: Key, *, lease: int = 0, timeout: float | None = None) -> int:
        """Set `key` to `value` (on `lease`, if not 0) and return the revision it was written at. Not retried."""
        request = rpc_pb2.PutRequest(key=as_bytes(key), value=as_bytes(value), lease=lease)
        response = await self._call(f"put {key!r}", lambda: self._kv.Put(request, timeout=self._deadline(timeout)))
        return int(response.header.revision)

    async def get(self, key: Key, *, timeout: float | None = None) -> KeyValue | None:
        """The key (linearizable read), or None where it does not exist. Retried."""
        request = rpc_pb2.RangeRequest(key=as_bytes(key))
        response = await self._read(f"get {key!r}", lambda: self._kv.Range(request, timeout=self._deadline(timeout)))
        return KeyValue.from_pb(response.kvs[0]) if response.kvs else None

    async def get_prefix(self, prefix: Key, *, timeout: float | None = None) -> Snapshot:
        """Every key under `prefix`, in key order, and the revision they were read at. Retried."""
        start = as_bytes(prefix)
        request = rpc_pb2.RangeRequest(key=start, range_end=prefix_end(start))
        response = await self._read(
            f"get prefix {prefix!r}", lambda: self._kv.Range(request, timeout=self._deadline(timeout))
        )
        return Snapshot(tuple(KeyValue.from_pb(kv) for kv in response.kvs), int(response.header.revision))

    async def get_prefix_paged(self, prefix: Key, *, page: int = 256, timeout: float | None = None) -> Snapshot:
        """Every key under `prefix` as `get_prefix`, read `page` keys per call (a large prefix would pass gRPC's
        4 MiB per message), every page at the revision of the first. Each page is retried; `EtcdCompacted` when
        that revision is compacted before the last page (read again)."""
        start, end = as_bytes(prefix), prefix_end(as_bytes(prefix))
        kvs: list[KeyValue] = []
        revision = 0
        while True:
            request = rpc_pb2.RangeRequest(key=start, range_end=end, limit=page, revision=revision)
            response = await self._read(f"get prefix {prefix!r}", self._range_call(request, timeout))
            revision = revision or int(response.header.revision)
            kvs.extend(KeyValue.from_pb(kv) for kv in response.kvs)
            if not response.more or not response.kvs:
                return Snapshot(tuple(kvs), revision)
            start = kvs[-1].key + b"\x00"  # the next key after the last one read

    def _range_call(self, request: Any, timeout: float | None) -> Callable[[], Awaitable[Any]]:
        return lambda: self._kv.Range(request, timeout=self._deadline(timeout))

    async def delete(self, key: Key, *, prefix: bool = False, timeout: float | None = None) -> int:
        """Delete `key` (or every key under it) and return how many keys went. Not retried."""
        start = as_bytes(key)
        request = rpc_pb2.DeleteRangeRequest(key=start, range_end=prefix_end(start) if prefix else b"")
        response = await self._call(
            f"delete {key!r}", lambda: self._kv.DeleteRange(request, timeout=self._deadline(timeout))
        )
        return int(response.deleted)

    def txn_request(self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()) -> Any:
        """The wire's TxnRequest, refused here if a part has more operations than etcd takes."""
        for name, part in (("compares", compares), ("success ops", success), ("failure ops", failure)):
            if len(part) > self.max_txn_ops:
                raise EtcdTooManyOps(
                    f"a txn with {len(part)} {name}: etcd takes at most {self.max_txn_ops} (--max-txn-ops); "
                    "split it into several transactions"
                )
        return rpc_pb2.TxnRequest(
            compare=[c.to_pb() for c in compares],
            success=[op.to_pb() for op in success],
            failure=[op.to_pb() for op in failure],
        )

    async def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Op],
        failure: Sequence[Op] = (),
        *,
        timeout: float | None = None,
    ) -> TxnResult:
        """If every compare holds, apply `success`, else `failure`, atomically; `succeeded` says which.

        Never retried: a transaction whose reply was lost (`EtcdTimeout`, `EtcdUnavailable`) may have been
        applied, and applying it again could apply it twice, or answer "compare failed" for a change that was
        ours. After such an error the outcome is unknown: read back (for a fenced write, whether the fence
        still holds) before deciding, or step down.
        """
        request = self.txn_request(compares, success, failure)
        response = await self._call("txn", lambda: self._kv.Txn(request, timeout=self._deadline(timeout)))
        return TxnResult.from_pb(response)

    async def lease_grant(self, ttl: int, *, timeout: float | None = None) -> int:
        """A new lease of `ttl` seconds; its id. Keys put on it go when it expires or is revoked."""
        request = rpc_pb2.LeaseGrantRequest(TTL=ttl)
        response = await self._call(
            f"lease grant of {ttl} s", lambda: self._lease.LeaseGrant(request, timeout=self._deadline(timeout))
        )
        if response.error:
            raise EtcdError(f"etcd lease grant of {ttl} s: {response.error}")
        return int(response.ID)

    async def lease_revoke(self, lease: int, *, timeout: float | None = None) -> None:
        """End the lease now, deleting its keys (`EtcdLeaseNotFound` where it had already ended)."""
        request = rpc_pb2.LeaseRevokeRequest(ID=lease)
        await self._call(
            f"lease revoke of {lease:x}", lambda: self._lease.LeaseRevoke(request, timeout=self._deadline(timeout))
        )

    async def lease_ttl(self, lease: int, *, timeout: float | None = None) -> int:
        """Seconds the lease has left (-1 where it has ended). Retried."""
        request = rpc_pb2.LeaseTimeToLiveRequest(ID=lease)
        response = await self._read(
            f"lease ttl of {lease:x}", lambda: self._lease.LeaseTimeToLive(request, timeout=self._deadline(timeout))
        )
        return int(response.TTL)

    def lease_keepalive(self, lease: int, ttl: int, on_lost: LostCallback | None = None) -> KeepAlive:
        """Keep `lease` alive on one stream (a renewal every ttl/3) until `stop()`; see `KeepAlive`."""
        keepalive = KeepAlive(lambda: self._lease, lease, ttl, on_lost, timeout=self.timeout, on_broken=self.rotate)
        keepalive.start()
        return keepalive

    def watch(self, key: Key, *, prefix: bool = False, start_revision: int = 0) -> AsyncIterator[WatchEvent]:
        """Changes of `key` (or of every key under it) from `start_revision` (0: from now), across broken
        streams; see `watch_events`."""
        return watch_events(lambda: self._watch, as_bytes(key), prefix=prefix, start_revision=start_revision)
