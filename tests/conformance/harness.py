"""Instruments of the conformance suite, all outside the worker: an MQTT spy, the gRPC tap's process, the log
lines of every process, and the worker processes the suite starts itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from lab.paths import REPO_ROOT
from lab.system.local import LocalCluster
from lab.system.procs import ManagedProcess
from lab.system.workers import WorkerKind
from tests.waiting import wait_until

MAX_TASK_SLACK_S = 15.0


class Logs:
    """Every output line of a cluster's processes, by process name (the cluster's `log_sink`)."""

    def __init__(self) -> None:
        self._lines: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, name: str, line: str) -> None:
        with self._lock:
            self._lines.append((name, line))

    def of(self, name: str) -> list[str]:
        """The lines of one process (e.g. `mosquitto`, `worker-3`)."""
        with self._lock:
            return [line for n, line in self._lines if n == name]

    def all(self) -> list[tuple[str, str]]:
        """Every (process name, line) so far."""
        with self._lock:
            return list(self._lines)


@dataclass(frozen=True)
class Received:
    """One MQTT message as the spy got it."""

    at: float  # time.time() on arrival
    topic: str
    payload: bytes

    def json(self) -> Any:
        """The payload as JSON (None when it is not JSON)."""
        try:
            return json.loads(self.payload)
        except ValueError:
            return None


class Spy:
    """An MQTT client logged in as the master user that records everything under the topic prefix (task
    messages included); it reconnects after a broker restart."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.prefix = cluster.config.topic_prefix
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        # A persistent session: after a broker restart, what others publish before the spy is back is kept for it.
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"conformance-spy-{uuid.uuid4().hex[:8]}", clean_session=False
        )
        self.client.username_pw_set(*cluster.credentials.login("master"))
        if cluster.config.broker_tls is not None:
            self.client.tls_set(ca_certs=str(cluster.config.broker_tls.ca))
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)  # type: ignore[arg-type]  # floats work
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", cluster.mqtt_port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the spy could not subscribe"

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe(f"{self.prefix}/#", qos=1)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(time.time(), message.topic, bytes(message.payload)))

    def all(self) -> list[Received]:
        """Every message so far, in arrival order."""
        with self._lock:
            return list(self.messages)

    def on(self, suffix: str) -> list[Received]:
        """Messages on `<prefix>/<suffix>`."""
        topic = f"{self.prefix}/{suffix}"
        return [m for m in self.all() if m.topic == topic]

    def registrations(self, worker_id: str | None = None) -> list[dict[str, Any]]:
        """Register messages (of one worker), oldest first; each with the arrival time as `_at`."""
        return self._of("workers/register", worker_id)

    def statuses(self, worker_id: str) -> list[dict[str, Any]]:
        """Status messages of one worker, oldest first; each with the arrival time as `_at`."""
        return self._of("workers/status", worker_id)

    def tasks(self, worker_id: str) -> list[dict[str, Any]]:
        """Task messages sent to one worker."""
        return self._of(f"workers/{worker_id}/tasks", None)

    def task(self, task_id: str) -> dict[str, Any]:
        """The first task message with `task_id` (any worker)."""
        for m in self.all():
            data = m.json()
            if m.topic.endswith("/tasks") and isinstance(data, dict) and data.get("task_id") == task_id:
                return data
        raise AssertionError(f"no task message for {task_id}")

    def _of(self, suffix: str, worker_id: str | None) -> list[dict[str, Any]]:
        found = []
        for m in self.on(suffix):
            data = m.json()
            if isinstance(data, dict) and (worker_id is None or data.get("worker_id") == worker_id):
                found.append({**data, "_at": m.at})
        return found

    def publish(self, suffix: str, payload: bytes, retain: bool = False) -> None:
        """Publish as the master (QoS 1, retained if asked) and wait for the broker's PUBACK."""
        info = self.client.publish(f"{self.prefix}/{suffix}", payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        assert info.is_published()

    def sync(self) -> None:
        """Wait until a message published now comes back: whatever the broker had before has arrived."""
        marker = f"conformance-sync-{uuid.uuid4().hex}".encode()
        self.publish("logs", marker)
        wait_until(lambda: any(m.payload == marker for m in self.on("logs")), "the spy's own sync message", 10)

    def close(self) -> None:
        """Disconnect."""
        self.client.loop_stop()
        self.client.disconnect()


class TapProcess:
    """The gRPC tap (tests/conformance/grpc_tap.py) in its own process; its records as they come."""

    def __init__(self, port: int, upstream: str) -> None:
        self.port = port
        self.endpoint = f"127.0.0.1:{port}"
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._seq = 0
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.conformance.grpc_tap", "--port", str(port), "--upstream", upstream],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, name="grpc-tap", daemon=True)
        self._reader.start()
        wait_until(lambda: self._events("listening") or self._proc.poll() is not None, "the gRPC tap listens", 20)
        assert self._events("listening"), f"the gRPC tap exited with {self._proc.returncode}"

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            with self._lock:
                self.records.append(json.loads(line))

    def _events(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.records if r["event"] == kind]

    def set(self, **faults: object) -> None:
        """Set faults (see grpc_tap.py) and wait until the tap has them."""
        self._seq += 1
        seq = self._seq
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"seq": seq, "set": faults}) + "\n")
        self._proc.stdin.flush()
        wait_until(lambda: any(r.get("seq") == seq for r in self._events("ok")), "the tap took the faults", 10)

    def clear(self) -> None:
        """No faults."""
        self.set(stream_unimplemented=False, unavailable=0, drop_ack=0, refuse=0)

    def results(self, worker_id: str | None = None, task_id: str | None = None) -> list[dict[str, Any]]:
        """Result records (of one worker, of one task), in arrival order."""
        return [
            r
            for r in self._events("result")
            if (worker_id is None or r["result"]["worker_id"] == worker_id)
            and (task_id is None or r["result"]["task_id"] == task_id)
        ]

    def streams(self, since: float = 0.0) -> list[dict[str, Any]]:
        """StreamResults calls opened since `since` (time.time())."""
        return [r for r in self._events("stream") if r["at"] >= since]

    def close(self) -> None:
        """Close stdin (the tap ends) and wait."""
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)


@dataclass(frozen=True)
class Worker:
    """A worker the suite started in a cluster: its id, process name and heartbeat file."""

    worker_id: str
    name: str
    process: ManagedProcess
    health_file: Path


def start_worker(
    cluster: LocalCluster, language: str, env: Mapping[str, str] | None = None, wait: bool = True
) -> Worker:
    """`cluster.add_worker` that also returns the worker's process."""
    before = set(cluster.processes)
    worker_id = cluster.add_worker(wait=wait, env=env or {}, language=language)
    [name] = [n for n in cluster.processes if n not in before]
    assert cluster.state_dir is not None
    return Worker(worker_id, name, cluster.processes[name], cluster.state_dir / f"{worker_id}.health")


class OwnProcess:
    """A worker started by the suite itself (outside the cluster's bookkeeping), its output in a file."""

    def __init__(self, kind: WorkerKind, env: Mapping[str, str], output: Path, *extra: str) -> None:
        self.output = output
        self._file = output.open("wb")
        self.proc = subprocess.Popen(
            kind.command(*extra),
            cwd=REPO_ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=self._file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def text(self) -> str:
        """Everything it printed so far."""
        return self.output.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        """SIGTERM, SIGKILL after 5 s; the exit code."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._file.close()
        return self.proc.returncode


def run_command(
    kind: WorkerKind, env: Mapping[str, str], *extra: str, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    """Run the worker command to its end (e.g. `--check`, or with a bad setting)."""
    return subprocess.run(
        kind.command(*extra), cwd=REPO_ROOT, env=dict(env), capture_output=True, text=True, timeout=timeout
    )
