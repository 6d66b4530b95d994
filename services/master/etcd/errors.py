"""Errors of the etcd client: gRPC's status codes and etcd's messages mapped to our own exceptions."""

from __future__ import annotations

import asyncio

import grpc


class EtcdError(Exception):
    """Something etcd refused, or could not be asked."""


class EtcdUnavailable(EtcdError):
    """No member answered, or the member has no leader or timed out inside etcd. A write's outcome is unknown."""


class EtcdTimeout(EtcdError):
    """The call's deadline passed. A write's outcome is unknown: it may have been applied."""


class EtcdCompacted(EtcdError):
    """The revision asked for was compacted away: re-read the current state instead of resuming."""

    def __init__(self, message: str, compact_revision: int = 0) -> None:
        super().__init__(message)
        self.compact_revision = compact_revision


class EtcdTooManyOps(EtcdError):
    """A transaction has more operations than the cluster allows (`--max-txn-ops`, 128 by default)."""


class EtcdLeaseNotFound(EtcdError):
    """The lease expired or was revoked."""


class EtcdPermissionDenied(EtcdError):
    """Authentication failed, or the user may not touch that key."""


def call_cancelled() -> bool:
    """Inside `except asyncio.CancelledError`: whether it was the gRPC call that was cancelled (its channel closed:
    the client moved to another member), not the task running it. grpc.aio raises CancelledError for both; a call's
    cancellation is a broken call, to be handled as one, while a task's must go on up."""
    task = asyncio.current_task()
    # Task.cancelling() is Python 3.11's; on 3.10 a cancelled task cannot be told from a cancelled call, and both
    # are taken for the task's (as before 3.11: the stream ends, and its owner notices).
    cancelling = getattr(task, "cancelling", None)
    return task is not None and cancelling is not None and cancelling() == 0


def from_rpc_error(error: grpc.RpcError, what: str) -> EtcdError:
    """Our exception for a failed call `what` (e.g. "txn on /sal/leader"), with etcd's message in it."""
    code = error.code() if hasattr(error, "code") else None
    details = (error.details() if hasattr(error, "details") else None) or ""
    message = f"etcd {what}: {details or code}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return EtcdTimeout(message)
    if "too many operations in txn" in details:
        return EtcdTooManyOps(message)
    if "required revision has been compacted" in details or code == grpc.StatusCode.OUT_OF_RANGE:
        return EtcdCompacted(message)
    if "lease not found" in details:
        return EtcdLeaseNotFound(message)
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return EtcdPermissionDenied(message)
    if code == grpc.StatusCode.UNAVAILABLE:
        return EtcdUnavailable(message)
    return EtcdError(message)
