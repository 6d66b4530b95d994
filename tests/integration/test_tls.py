"""Results travel over TLS when the master has a certificate, verified against a throwaway CA."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from lab.client import ChatClient
from services.protocol.rpc import pb, pb_grpc
from tests.conftest import ClusterFactory
from tests.tls import make_tls


async def test_results_reach_the_master_over_tls(cluster_factory: ClusterFactory, tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    cluster = cluster_factory(
        workers=1,
        work_seconds=0.0,
        extra_env={"GRPC_TLS_CERT": str(tls.cert), "GRPC_TLS_KEY": str(tls.key), "GRPC_TLS_CA": str(tls.ca)},
    )
    async with ChatClient(cluster.web_url) as user:
        asked = await user.ask("over TLS please")
        await user.wait_answers(1, timeout=20)
    assert asked.answer is not None and asked.answer["error"] == ""

    # A client that does not speak TLS gets nowhere; one that trusts the CA is heard (and refused).
    with grpc.insecure_channel(cluster.grpc_endpoint) as plain, pytest.raises(grpc.RpcError):
        pb_grpc.WorkerCallbackStub(plain).SendResult(pb.TaskResult(worker_id="x"), timeout=3)  # type: ignore[no-untyped-call]
    credentials = grpc.ssl_channel_credentials(root_certificates=tls.ca.read_bytes())
    with grpc.secure_channel(cluster.grpc_endpoint, credentials) as secure:
        ack = pb_grpc.WorkerCallbackStub(secure).SendResult(pb.TaskResult(worker_id="x"), timeout=5)  # type: ignore[no-untyped-call]
    assert not ack.success and "task_id" in ack.message
