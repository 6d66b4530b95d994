"""A worker of the original system, on the wire: to try baseline mode without the original's code, and for
the `baseline` benchmark and the tests.

It does what the original's workers do: an ANONYMOUS MQTT client whose client id is not its worker id, clean
session, QoS 0, no Last Will, never reading the master's presence; it registers once per connection, reports
busy when it starts a task and idle when it is done, and answers after `work_seconds` with `SendResult`
fields 1-8 only (no task id, no token), echoing the API key as the original does. A result the master does
not take (or cannot be reached for) is dropped, and the worker goes on.

`python -m lab.bench.baseline_worker --port 1883 --worker-id python-worker-0a1b2c [--work-seconds 10]`
runs one until it is killed; it prints `ready` once registered. `BaselineProcess` starts it as a process
of its own (for kill -9).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sys
import threading
import time
from typing import Any

import grpc
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from lab.paths import REPO_ROOT
from lab.system.procs import ManagedProcess
from services.protocol import TaskMessage, Topics, decode
from services.protocol.rpc import pb, pb_grpc


class BaselineWorker:
    """The original's worker in this process: MQTT on paho's thread, tasks one at a time on its own."""

    def __init__(
        self, port: int, worker_id: str, prefix: str = "upb", work_seconds: float = 0.2, host: str = "127.0.0.1"
    ) -> None:
        self.topics = Topics(prefix)
        self.worker_id = worker_id
        self.work_seconds = work_seconds
        self.acks: queue.Queue[pb.ResultAck] = queue.Queue()
        self._connected = threading.Event()
        self._tasks: queue.Queue[TaskMessage | None] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"original-{worker_id}", clean_session=True, protocol=mqtt.MQTTv311
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._answering = threading.Thread(target=self._answer_tasks, name=f"baseline {worker_id}", daemon=True)
        self._answering.start()
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(10):
            self.close()
            raise TimeoutError("baseline worker could not connect")

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, rc: Any, props: object) -> None:
        if rc.is_failure:
            return
        client.subscribe(self.topics.tasks(self.worker_id), qos=0)
        self._publish(self.topics.register, {"worker_id": self.worker_id, "language": "python", "status": "idle"})
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self._tasks.put(decode(TaskMessage, bytes(message.payload)))

    def _publish(self, topic: str, fields: dict[str, Any]) -> None:
        """Publish baseline fields only, at QoS 0."""
        self.client.publish(topic, json.dumps({**fields, "timestamp": int(time.time() * 1000)}), qos=0)

    def _status(self, status: str) -> None:
        self._publish(self.topics.status, {"worker_id": self.worker_id, "status": status})

    def _answer_tasks(self) -> None:
        while (task := self._tasks.get()) is not None:
            started = time.monotonic()
            self._status("busy")
            time.sleep(self.work_seconds)
            answer = pb.TaskResult(
                worker_id=self.worker_id,
                session_id=task.session_id,
                original_query=task.query,
                ai_response=f"baseline answer to: {task.query}",
                api_key=task.api_key,
                processing_time_ms=int((time.monotonic() - started) * 1000),
                query_timestamp=task.timestamp,
                completion_timestamp=int(time.time() * 1000),
            )
            try:
                with grpc.insecure_channel(task.grpc_endpoint) as channel:
                    stub = pb_grpc.WorkerCallbackStub(channel)  # type: ignore[no-untyped-call]
                    self.acks.put(stub.SendResult(answer, timeout=10))
            except grpc.RpcError as e:  # the master is away: the original logs it and goes on
                self.acks.put(pb.ResultAck(success=False, message=f"not sent: {e.code()}"))
            self._status("idle")

    def close(self) -> None:
        """Disconnect (no Will: the original says nothing more) and stop answering."""
        self._tasks.put(None)
        self.client.loop_stop()
        self.client.disconnect()
        self._answering.join(5)


class BaselineProcess:
    """`python -m lab.bench.baseline_worker` as a child process, registered when the constructor returns."""

    def __init__(self, port: int, worker_id: str, prefix: str = "upb", work_seconds: float = 0.2) -> None:
        self.worker_id = worker_id
        self._ready = threading.Event()
        argv = [sys.executable, "-m", "lab.bench.baseline_worker", "--port", str(port), "--worker-id", worker_id]
        argv += ["--prefix", prefix, "--work-seconds", str(work_seconds)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = ManagedProcess(f"baseline {worker_id}", argv, env=env, cwd=REPO_ROOT, sink=self._line)
        if not self._ready.wait(20):
            self.proc.stop()
            raise TimeoutError(f"baseline worker {worker_id} did not start: {self.proc.tail()}")

    def _line(self, name: str, line: str) -> None:
        if line.strip() == "ready":
            self._ready.set()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` (kill -9 by default: the socket closes, nothing is said)."""
        self.proc.send_signal(sig)

    def stop(self) -> None:
        """End the process (whatever state it is in)."""
        self.proc.send_signal(signal.SIGCONT)
        self.proc.stop(grace=1.0)


def main(argv: list[str] | None = None) -> None:
    """Run one baseline worker until killed."""
    parser = argparse.ArgumentParser(prog="python -m lab.bench.baseline_worker", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="the broker's port on --host")
    parser.add_argument("--host", default="127.0.0.1", help="the broker's host")
    parser.add_argument("--worker-id", required=True, help="e.g. python-worker-0a1b2c")
    parser.add_argument("--prefix", default="upb", help="the topic prefix")
    parser.add_argument("--work-seconds", type=float, default=10.0, help="simulated work per task")
    args = parser.parse_args(argv)
    BaselineWorker(args.port, args.worker_id, args.prefix, args.work_seconds, args.host)
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})  # for sigwait, in every thread
    main()
