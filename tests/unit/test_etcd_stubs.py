"""The committed etcd stubs are what proto/etcd/ generates, talk etcd's method paths, and clash with no one."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import descriptor_pool

from services.master.etcd.gen import kv_pb2, rpc_pb2, rpc_service_pb2_grpc
from services.master.etcd.generate import ROOT, VIRTUAL, generate
from services.master.etcd.vendor_protos import split_services, strip

COMMITTED = ROOT / VIRTUAL


def test_committed_stubs_are_byte_identical_to_freshly_generated_ones(tmp_path: Path) -> None:
    written = generate(tmp_path)
    assert {p.name for p in written} == {p.name for p in COMMITTED.iterdir() if p.is_file()}
    for fresh in written:
        assert fresh.read_bytes() == (COMMITTED / fresh.name).read_bytes(), (
            f"{VIRTUAL}/{fresh.name} is stale: run `python -m services.master.etcd.generate`"
        )


def test_the_stubs_call_etcds_own_method_paths() -> None:
    source = Path(rpc_service_pb2_grpc.__file__).read_text()
    for path in ("/etcdserverpb.KV/Txn", "/etcdserverpb.Lease/LeaseKeepAlive", "/etcdserverpb.Watch/Watch"):
        assert f"'{path}'" in source


def test_the_messages_live_under_sal_etcd_so_other_etcd_stubs_can_load_beside_them() -> None:
    assert rpc_pb2.TxnRequest.DESCRIPTOR.full_name == "sal.etcd.etcdserverpb.TxnRequest"
    assert kv_pb2.KeyValue.DESCRIPTOR.full_name == "sal.etcd.mvccpb.KeyValue"
    pool = descriptor_pool.Default()
    for taken_by_others in ("mvccpb.KeyValue", "etcdserverpb.TxnRequest"):
        with pytest.raises(KeyError):
            pool.FindMessageTypeByName(taken_by_others)
    with pytest.raises(KeyError):
        pool.FindServiceByName("etcdserverpb.KV")


def test_vendoring_drops_go_and_gateway_options_and_keeps_the_wire() -> None:
    upstream = """syntax = "proto3";
package etcdserverpb;

import "gogoproto/gogo.proto";
import "etcd/api/mvccpb/kv.proto";

// for grpc-gateway
import "google/api/annotations.proto";

option (gogoproto.marshaler_all) = true;

service KV {
  // Range gets the keys.
  rpc Range(RangeRequest) returns (RangeResponse) {
      option (google.api.http) = {
        post: "/v3/kv/range"
        body: "*"
    };
  }
  rpc Watch(stream WatchRequest) returns (stream WatchResponse) {
      option (google.api.http) = {
        post: "/v3/watch"
        body: "*"
        additional_bindings {
          post: "/v3beta/watch"
        }
    };
  }
}

message RangeRequest {
  bytes key = 1 [(gogoproto.nullable) = false];
  mvccpb.KeyValue kv = 2;
}
"""
    messages, services = split_services(strip(upstream))
    assert "gogoproto" not in messages + services and "google" not in messages + services
    assert 'import "services/master/etcd/gen/kv.proto";' in messages
    assert "bytes key = 1;" in messages and "service KV" not in messages
    assert "package etcdserverpb;" in services
    assert "rpc Range(.sal.etcd.etcdserverpb.RangeRequest) returns (.sal.etcd.etcdserverpb.RangeResponse) {}" in (
        services
    )
    assert "rpc Watch(stream .sal.etcd.etcdserverpb.WatchRequest) returns (stream " in services
