"""The etcd client's parts that need no etcd: compares and ops on the wire, results, errors, targets, retries."""

from __future__ import annotations

import grpc
import pytest

from services.master.etcd.client import EtcdClient, channel_target
from services.master.etcd.election import Leadership, NotLeader
from services.master.etcd.errors import (
    EtcdCompacted,
    EtcdError,
    EtcdLeaseNotFound,
    EtcdPermissionDenied,
    EtcdTimeout,
    EtcdTooManyOps,
    EtcdUnavailable,
    from_rpc_error,
)
from services.master.etcd.gen import kv_pb2, rpc_pb2
from services.master.etcd.ops import (
    Compare,
    TxnResult,
    create_revision_is,
    delete,
    get,
    mod_revision_is,
    prefix_end,
    put,
    value_is,
    version_is,
)
from services.master.etcd.watch import event_from_pb


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def test_a_fence_compares_the_keys_create_revision_for_equality() -> None:
    compare = create_revision_is("/sal/leader", 42).to_pb()
    assert (compare.key, compare.target, compare.result, compare.create_revision) == (
        b"/sal/leader",
        rpc_pb2.Compare.CREATE,
        rpc_pb2.Compare.EQUAL,
        42,
    )


def test_compares_on_mod_revision_version_and_value_set_their_own_field() -> None:
    mod = mod_revision_is(b"k", 7, ">").to_pb()
    assert (mod.target, mod.result, mod.mod_revision) == (rpc_pb2.Compare.MOD, rpc_pb2.Compare.GREATER, 7)
    version = version_is("k", 0, "!=").to_pb()
    assert (version.target, version.result, version.version) == (rpc_pb2.Compare.VERSION, rpc_pb2.Compare.NOT_EQUAL, 0)
    value = value_is("k", "v", "<").to_pb()
    assert (value.target, value.result, value.value) == (rpc_pb2.Compare.VALUE, rpc_pb2.Compare.LESS, b"v")


def test_a_compare_refuses_an_operand_of_the_wrong_kind_or_an_unknown_operator() -> None:
    with pytest.raises(ValueError, match="needs an int"):
        Compare(b"k", "mod_revision", "==", b"7")
    with pytest.raises(ValueError, match="needs bytes"):
        Compare(b"k", "value", "==", 7)
    with pytest.raises(ValueError, match="unknown comparison"):
        Compare(b"k", "version", ">=", 1)  # type: ignore[arg-type]


def test_ops_become_their_request_ops_with_prefix_ranges() -> None:
    assert put("k", "v", lease=9).to_pb().request_put == rpc_pb2.PutRequest(key=b"k", value=b"v", lease=9)
    assert delete("/a/", prefix=True).to_pb().request_delete_range.range_end == b"/a0"
    assert delete("/a/").to_pb().request_delete_range.range_end == b""
    assert get(b"/a/", prefix=True).to_pb().request_range == rpc_pb2.RangeRequest(key=b"/a/", range_end=b"/a0")


def test_prefix_end_is_the_first_key_past_the_prefix() -> None:
    assert prefix_end(b"/sal/") == b"/sal0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\x00"  # every key


def test_a_txn_response_gives_whether_it_succeeded_its_revision_and_each_result() -> None:
    kv = kv_pb2.KeyValue(key=b"/l", value=b"a", create_revision=5, mod_revision=6, version=2, lease=3)
    response = rpc_pb2.TxnResponse(
        header=rpc_pb2.ResponseHeader(revision=11),
        succeeded=False,
        responses=[
            rpc_pb2.ResponseOp(response_range=rpc_pb2.RangeResponse(kvs=[kv])),
            rpc_pb2.ResponseOp(response_delete_range=rpc_pb2.DeleteRangeResponse(deleted=2)),
            rpc_pb2.ResponseOp(response_put=rpc_pb2.PutResponse()),
        ],
    )
    result = TxnResult.from_pb(response)
    assert (result.succeeded, result.revision) == (False, 11)
    assert result.results[0].kvs[0].create_revision == 5 and result.results[0].kvs[0].lease == 3
    assert result.results[1].deleted == 2
    assert result.results[2].kvs == () and result.results[2].deleted == 0


def test_a_watch_event_says_put_or_delete_and_its_revision() -> None:
    event = event_from_pb(kv_pb2.Event(type=kv_pb2.Event.DELETE, kv=kv_pb2.KeyValue(key=b"k", mod_revision=8)))
    assert (event.type, event.kv.key, event.revision) == ("delete", b"k", 8)
    assert event_from_pb(kv_pb2.Event(type=kv_pb2.Event.PUT)).type == "put"


@pytest.mark.parametrize(
    ("code", "details", "expected"),
    [
        (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses", EtcdUnavailable),
        (grpc.StatusCode.UNAVAILABLE, "etcdserver: request timed out", EtcdUnavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", EtcdTimeout),
        (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: too many operations in txn request", EtcdTooManyOps),
        (grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted", EtcdCompacted),
        (grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found", EtcdLeaseNotFound),
        (grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied", EtcdPermissionDenied),
        (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided", EtcdError),
    ],
)
def test_grpc_errors_become_our_own_with_etcds_message(
    code: grpc.StatusCode, details: str, expected: type[EtcdError]
) -> None:
    error = from_rpc_error(rpc_error(code, details), "txn")
    assert type(error) is expected
    assert str(error) == f"etcd txn: {details}"


def test_the_channel_target_lists_every_member_for_pick_first_failover() -> None:
    target = channel_target(["127.0.0.1:2379", "http://127.0.0.2:2379/", "https://10.0.0.3:2379"])
    assert target == "ipv4:127.0.0.1:2379,127.0.0.2:2379,10.0.0.3:2379"
    assert channel_target(["localhost:2379"]) == "ipv4:127.0.0.1:2379"
    with pytest.raises(ValueError, match="not host:port"):
        channel_target(["127.0.0.1"])
    with pytest.raises(ValueError, match="no etcd endpoint"):
        channel_target([])


async def test_a_txn_with_more_ops_than_etcd_takes_is_refused_before_it_is_sent() -> None:
    async with EtcdClient(["127.0.0.1:1"]) as client:
        client.txn_request([], [put(str(i), "x") for i in range(128)])
        with pytest.raises(EtcdTooManyOps, match="129 success ops: etcd takes at most 128"):
            client.txn_request([], [put(str(i), "x") for i in range(129)])
        with pytest.raises(EtcdTooManyOps, match="failure ops"):
            client.txn_request([], [], [get(str(i)) for i in range(129)])


async def test_reads_are_retried_on_unavailability_and_give_up_after_their_attempts() -> None:
    async with EtcdClient(["127.0.0.1:1"], read_attempts=3) as client:
        calls: list[int] = []

        async def flaky() -> str:
            calls.append(1)
            if len(calls) < 3:
                raise rpc_error(grpc.StatusCode.UNAVAILABLE, "etcdserver: leader changed")
            return "read"

        assert await client._read("get", flaky) == "read" and len(calls) == 3

        async def down() -> str:
            raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

        with pytest.raises(EtcdTimeout):
            await client._read("get", down)

        async def refused() -> str:
            calls.append(1)
            raise rpc_error(grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")

        calls.clear()
        with pytest.raises(EtcdPermissionDenied):
            await client._read("get", refused)
        assert len(calls) == 1  # only unavailability and timeouts are worth another try


async def test_a_campaigner_that_has_not_won_has_no_fence() -> None:
    async with EtcdClient(["127.0.0.1:1"]) as client:
        leadership = Leadership(client, "/sal/leader", "a")
        assert not leadership.leading
        with pytest.raises(NotLeader):
            leadership.fence()
