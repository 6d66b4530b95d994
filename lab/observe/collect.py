"""Collectors: follow a running system through the master's gRPC Watch stream and the MQTT topics, and
turn what they saw into pandas DataFrames (one row per task, one row per worker state change)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import paho.mqtt.client as mqtt
import pandas as pd
from google.protobuf.json_format import MessageToDict
from paho.mqtt.enums import CallbackAPIVersion

from lab.runs.schema import SCALING_COLUMNS, TASK_COLUMNS, WORKER_COLUMNS
from lab.system.local import LocalCluster
from lab.system.target import Target
from services.protocol import Topics
from services.protocol.rpc import pb, pb_grpc

RECONNECT_S = 0.2  # how soon the Watch stream is opened again after it broke


@dataclass
class MqttTap:
    """Records register, status, logs, results and presence messages (as the read-only observer)."""

    host: str
    port: int
    topics: Topics
    login: tuple[str, str] | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)

    def start(self) -> None:
        """Connect and subscribe; returns once subscribed."""
        ready = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"lab-tap-{time.monotonic_ns()}")
        if self.login:
            self._client.username_pw_set(*self.login)
        wanted = [
            self.topics.register,
            self.topics.status,
            self.topics.logs,
            self.topics.results,
            self.topics.master_status,
        ]

        def on_connect(client: mqtt.Client, *_: object) -> None:
            client.subscribe([(t, 1) for t in wanted])
            ready.set()

        self._client.on_connect = on_connect
        self._client.on_message = self._record
        self._client.connect(self.host, self.port)
        self._client.loop_start()
        if not ready.wait(10):
            raise TimeoutError(f"MQTT tap could not connect to {self.host}:{self.port}")

    def _record(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            payload = json.loads(message.payload)
        except ValueError:
            return  # not ours to judge: the master counts bad messages
        if isinstance(payload, dict):
            self.messages.append({"received": time.time_ns() // 1_000_000, "topic": message.topic, **payload})

    def stop(self) -> None:
        """Disconnect."""
        self._client.loop_stop()
        self._client.disconnect()


@dataclass
class WatchTap:
    """Records the master's `MasterEvents.Watch` stream in a thread; when the stream breaks (the master restarted,
    or another one took over the leadership), it opens it again, every RECONNECT_S, until stopped. What happened
    while it was away is not sent again: `gaps` says when it was away (time.time() pairs)."""

    endpoint: str
    credentials: grpc.ChannelCredentials | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[tuple[float, float]] = field(default_factory=list)

    def start(self) -> None:
        """Open the stream (with a snapshot of the workers)."""
        # Try again soon after a lost master: gRPC's default backoff grows to minutes, and a failover takes seconds.
        options = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500)]
        if self.credentials is not None:
            self._channel = grpc.secure_channel(self.endpoint, self.credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(self.endpoint, options=options)
        self._stub = pb_grpc.MasterEventsStub(self._channel)  # type: ignore[no-untyped-call]
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._call = self._stub.Watch(pb.WatchRequest(snapshot=True))
        self._thread = threading.Thread(target=self._read, name="watch-tap", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        lost: float | None = None
        while True:
            try:
                for event in self._call:
                    if lost is not None:  # the first event of a new stream: the gap is over
                        self.gaps.append((lost, time.time()))
                        lost = None
                    self.events.append(MessageToDict(event, preserving_proto_field_name=True))
            except grpc.RpcError:
                pass  # cancelled by stop(), or the master went away
            lost = lost if lost is not None else time.time()
            if self._stopped.wait(RECONNECT_S):
                return
            with self._lock:  # stop() cancels the call it finds: never one made after it
                if self._stopped.is_set():
                    return
                # wait_for_ready: the call waits for a master to listen again instead of failing at once.
                self._call = self._stub.Watch(pb.WatchRequest(snapshot=True), wait_for_ready=True)

    def stop(self) -> None:
        """Close the stream."""
        with self._lock:
            self._stopped.set()
            self._call.cancel()
        self._thread.join(5)
        self._channel.close()


class Collector:
    """Both taps together, with the DataFrames the lab works with."""

    def __init__(self, watch: WatchTap, tap: MqttTap | None) -> None:
        self.watch = watch
        self.tap = tap

    @classmethod
    def for_cluster(cls, cluster: LocalCluster) -> Collector:
        """Collect from a local system, logged in as its observer."""
        return cls.for_target(Target.for_cluster(cluster))

    @classmethod
    def for_target(cls, target: Target) -> Collector:
        """Collect from any system: Watch always, the MQTT tap when the target gives the broker."""
        watch = WatchTap(target.grpc_endpoint, target.grpc_credentials())
        tap = None
        if target.mqtt is not None:
            tap = MqttTap(target.mqtt.host, target.mqtt.port, Topics(target.topic_prefix), target.mqtt.login)
        return cls(watch, tap)

    def __enter__(self) -> Collector:
        self.watch.start()
        if self.tap is not None:
            try:
                self.tap.start()
            except BaseException:
                self.watch.stop()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.watch.stop()
        if self.tap is not None:
            self.tap.stop()

    def tasks(self) -> pd.DataFrame:
        """One row per task seen on Watch: its timestamps (ms), worker, timings, attempts and outcome."""
        rows: dict[str, dict[str, Any]] = {}
        for e in self.watch.events:
            task_id = e.get("task_id")
            kind = e.get("kind", "")
            if not task_id or not kind.startswith("task."):
                continue
            row = rows.setdefault(task_id, {"task_id": task_id})
            stamp = int(e.get("timestamp", 0))
            if kind == "task.accepted":
                row["submitted"] = int(e.get("query_timestamp", stamp))
                row["position"] = int(e.get("position", 0))
            elif kind == "task.assigned":
                row["assigned"], row["worker_id"] = stamp, e.get("worker_id", "")
                row["attempt"] = int(e.get("attempt", 1))
            elif kind in ("task.answered", "task.failed"):
                row["outcome"] = "answered" if kind == "task.answered" else "failed"
                row["error"] = e.get("reason", "")
                row["processing_time_ms"] = int(e.get("processing_time_ms", 0))
                row["started"] = int(e.get("started_timestamp", 0)) or None
                row["finished"] = int(e.get("completion_timestamp", 0)) or None
                row["worker_id"] = e.get("worker_id") or row.get("worker_id", "")
                if e.get("language"):  # a master that tells the language and model time on Watch
                    row["language"] = e["language"]
                    row["model_time_ms"] = int(e.get("model_time_ms", 0))
            elif kind == "task.delivered":
                row["delivered"] = stamp
        tap = self.tap
        for m in tap.messages if tap else []:  # the results topic (TASK_MESSAGES=true), for an older master
            if (
                tap
                and m["topic"] == tap.topics.results
                and m.get("task_id") in rows
                and "language" not in rows[m["task_id"]]
            ):
                rows[m["task_id"]].update(language=m.get("language", ""), model_time_ms=m.get("model_time_ms"))
        frame: pd.DataFrame = pd.DataFrame(list(rows.values()), columns=TASK_COLUMNS)
        return frame

    def worker_events(self) -> pd.DataFrame:
        """One row per worker state change, from Watch and from the workers' own MQTT reports."""
        rows = [
            {
                "timestamp": int(e.get("timestamp", 0)),
                "worker_id": e.get("worker_id", ""),
                "state": e["kind"].split(".", 1)[1],
                "task_id": e.get("task_id", ""),
                "source": "grpc",
            }
            for e in self.watch.events
            if e.get("kind", "").startswith("worker.")
        ]
        tap = self.tap
        for m in tap.messages if tap else []:
            if tap and m["topic"] == tap.topics.status:
                state = m.get("status", "")
            elif tap and m["topic"] == tap.topics.register:
                state = "online"
            else:
                continue
            stamp = m.get("timestamp") or m["received"]
            rows.append(
                {
                    "timestamp": int(stamp),
                    "worker_id": m.get("worker_id", ""),
                    "state": state,
                    "task_id": m.get("task_id") or "",
                    "source": "mqtt",
                }
            )
        frame: pd.DataFrame = pd.DataFrame(rows, columns=WORKER_COLUMNS)
        ordered: pd.DataFrame = frame.sort_values("timestamp", kind="stable").reset_index(drop=True)
        return ordered

    def scaling(self) -> pd.DataFrame:
        """One row per autoscaler decision the master announced on Watch (``scale.decision``)."""
        rows = []
        for e in self.watch.events:
            if e.get("kind") != "scale.decision":
                continue
            current, target = int(e.get("current_workers", 0)), int(e.get("target_workers", 0))
            rows.append(
                {
                    "timestamp": int(e.get("timestamp", 0)),
                    "current": current,
                    "target": target,
                    "direction": "up" if target > current else "down" if target < current else "hold",
                    "reason": e.get("reason", ""),
                    "queue_length": int(e.get("queue_length", 0)),
                    "busy": int(e.get("busy_workers", 0)),
                    "idle": int(e.get("idle_workers", 0)),
                }
            )
        frame: pd.DataFrame = pd.DataFrame(rows, columns=SCALING_COLUMNS)
        return frame

    def cross_check(self) -> pd.DataFrame:
        """processing_time_ms reported over gRPC against the busy time the worker showed on MQTT
        (its `busy` to its `idle` for the same task; idle comes after the master's ack)."""
        mqtt_events = self.worker_events().query("source == 'mqtt' and task_id != ''")
        busy = mqtt_events[mqtt_events.state == "busy"].groupby("task_id").timestamp.min()
        idle = mqtt_events[mqtt_events.state == "idle"].groupby("task_id").timestamp.max()
        tasks = self.tasks().set_index("task_id")
        frame: pd.DataFrame = pd.DataFrame(
            {"processing_time_ms": tasks.processing_time_ms, "busy_ms": idle - busy}
        ).dropna()
        frame["difference_ms"] = frame.busy_ms - frame.processing_time_ms
        return frame
