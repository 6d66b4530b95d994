"""The lab starts processes while its own gRPC channels are busy (the Watch stream, the results tap): those
children must start cleanly. A fork() would run gRPC's atfork handlers in them, which crashed some before they
could exec (a worker that "exited -6" or "-11" at start); ManagedProcess starts them without a preexec step,
so Python uses vfork() and no handler runs."""

from __future__ import annotations

from concurrent import futures
from pathlib import Path

import grpc

from lab.system.procs import ManagedProcess


def test_children_start_cleanly_while_grpc_threads_are_busy(tmp_path: Path) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    # A connectivity subscription keeps one of gRPC's own threads polling the channel: as the lab's
    # collectors do, some thread is inside gRPC whenever a child starts.
    channel.subscribe(lambda state: None, try_to_connect=True)
    try:
        codes = []
        for i in range(150):
            proc = ManagedProcess(
                f"child-{i}", ["true"], env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path, sink=lambda name, line: None
            )
            proc.wait(10)
            codes.append(proc.returncode)
    finally:
        channel.close()
        server.stop(None)
    assert [c for c in codes if c != 0] == [], (
        f"{sum(c != 0 for c in codes)} of {len(codes)} children died: {set(codes)}"
    )
