"""What a transaction is made of, without I/O: compares, operations, and the key-values that come back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from services.master.etcd.gen import kv_pb2, rpc_pb2

Key = bytes | str
Operator = Literal["==", "!=", "<", ">"]

_RESULTS = {
    "==": rpc_pb2.Compare.EQUAL,
    "!=": rpc_pb2.Compare.NOT_EQUAL,
    "<": rpc_pb2.Compare.LESS,
    ">": rpc_pb2.Compare.GREATER,
}


def as_bytes(key: Key) -> bytes:
    """A key or value as etcd stores it: str is UTF-8."""
    return key.encode() if isinstance(key, str) else key


def prefix_end(prefix: bytes) -> bytes:
    """The range end that makes [prefix, end) every key starting with `prefix` (etcd's own rule)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\x00"  # every key
    return stripped[:-1] + bytes([stripped[-1] + 1])


@dataclass(frozen=True)
class KeyValue:
    """A key as etcd holds it: its value, the revisions that created and last changed it, and its lease."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @classmethod
    def from_pb(cls, kv: kv_pb2.KeyValue) -> KeyValue:
        """Ours from the wire's."""
        return cls(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


@dataclass(frozen=True)
class Compare:
    """One condition of a transaction: a key's revision, version or value against an operand."""

    key: bytes
    target: Literal["create_revision", "mod_revision", "version", "value"]
    op: Operator
    operand: int | bytes

    def __post_init__(self) -> None:
        if self.op not in _RESULTS:
            raise ValueError(f"unknown comparison {self.op!r}: use one of {', '.join(_RESULTS)}")
        wants_bytes = self.target == "value"
        if wants_bytes != isinstance(self.operand, bytes):
            kind = "bytes" if wants_bytes else "an int"
            raise ValueError(f"a compare on {self.target} of {self.key!r} needs {kind}, not {self.operand!r}")

    def to_pb(self) -> rpc_pb2.Compare:
        """The wire's compare."""
        targets = {
            "create_revision": rpc_pb2.Compare.CREATE,
            "mod_revision": rpc_pb2.Compare.MOD,
            "version": rpc_pb2.Compare.VERSION,
            "value": rpc_pb2.Compare.VALUE,
        }
        compare = rpc_pb2.Compare(key=self.key, target=targets[self.target], result=_RESULTS[self.op])
        setattr(compare, self.target, self.operand)
        return compare


def create_revision_is(key: Key, revision: int, op: Operator = "==") -> Compare:
    """The key was created at `revision` (0: the key does not exist)."""
    return Compare(as_bytes(key), "create_revision", op, revision)


def mod_revision_is(key: Key, revision: int, op: Operator = "==") -> Compare:
    """The key was last changed at `revision` (0: the key does not exist)."""
    return Compare(as_bytes(key), "mod_revision", op, revision)


def version_is(key: Key, version: int, op: Operator = "==") -> Compare:
    """The key was written `version` times since its creation (0: it does not exist)."""
    return Compare(as_bytes(key), "version", op, version)


def value_is(key: Key, value: Key, op: Operator = "==") -> Compare:
    """The key holds `value` (a missing key fails every value compare)."""
    return Compare(as_bytes(key), "value", op, as_bytes(value))


@dataclass(frozen=True)
class Put:
    """Set a key, on a lease or not (0)."""

    key: bytes
    value: bytes
    lease: int = 0

    def to_pb(self) -> rpc_pb2.RequestOp:
        """The wire's operation."""
        return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=self.key, value=self.value, lease=self.lease))


@dataclass(frozen=True)
class Delete:
    """Delete a key, or every key under a prefix."""

    key: bytes
    prefix: bool = False

    def to_pb(self) -> rpc_pb2.RequestOp:
        """The wire's operation."""
        end = prefix_end(self.key) if self.prefix else b""
        return rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=self.key, range_end=end))


@dataclass(frozen=True)
class Get:
    """Read a key, or every key under a prefix (in a failure branch: what the compare found)."""

    key: bytes
    prefix: bool = False

    def to_pb(self) -> rpc_pb2.RequestOp:
        """The wire's operation."""
        end = prefix_end(self.key) if self.prefix else b""
        return rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=self.key, range_end=end))


Op = Put | Delete | Get


def put(key: Key, value: Key, lease: int = 0) -> Put:
    """A put of `value` at `key`."""
    return Put(as_bytes(key), as_bytes(value), lease)


def delete(key: Key, prefix: bool = False) -> Delete:
    """A delete of `key` (or of its prefix)."""
    return Delete(as_bytes(key), prefix)


def get(key: Key, prefix: bool = False) -> Get:
    """A read of `key` (or of its prefix)."""
    return Get(as_bytes(key), prefix)


@dataclass(frozen=True)
class OpResult:
    """What one operation of a transaction gave: the keys a Get read, or how many keys a Delete removed."""

    kvs: tuple[KeyValue, ...] = ()
    deleted: int = 0

    @classmethod
    def from_pb(cls, response: rpc_pb2.ResponseOp) -> OpResult:
        """Ours from the wire's."""
        kind = response.WhichOneof("response")
        if kind == "response_range":
            return cls(kvs=tuple(KeyValue.from_pb(kv) for kv in response.response_range.kvs))
        if kind == "response_delete_range":
            return cls(deleted=response.response_delete_range.deleted)
        return cls()


@dataclass(frozen=True)
class TxnResult:
    """Whether every compare held, the revision the transaction was applied at, and each operation's result."""

    succeeded: bool
    revision: int
    results: tuple[OpResult, ...]

    @classmethod
    def from_pb(cls, response: rpc_pb2.TxnResponse) -> TxnResult:
        """Ours from the wire's."""
        results = tuple(OpResult.from_pb(r) for r in response.responses)
        return cls(response.succeeded, response.header.revision, results)
