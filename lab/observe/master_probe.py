"""What runs beside a measurement of the master: its memory, CPU time and queue length sampled in a
thread, and its Watch events kept small, for benchmarks that cannot afford pandas rows per event."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

import grpc
import httpx

from lab.system.procs import cpu_seconds
from services.protocol.rpc import pb, pb_grpc

SAMPLE_S = 0.5


@dataclass
class Sample:
    """One look at the master: wall time, memory (kB) and, if /api/status answered in time, the queue length."""

    at: float
    rss_kb: int
    hwm_kb: int
    cpu_s: float  # user + system CPU time so far
    queue: int | None = None


def read_memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in kB; (0, 0) once it is gone."""
    values = {"VmRSS": 0, "VmHWM": 0}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in values:
                    values[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return values["VmRSS"], values["VmHWM"]


def queue_depth(metrics: str) -> int:
    """The queue length in the master's Prometheus text (its `swarm_queue_depth` gauge)."""
    for line in metrics.splitlines():
        if line.startswith("swarm_queue_depth "):
            return int(float(line.split()[1]))
    raise ValueError("no swarm_queue_depth in the metrics")


class Sampler:
    """Samples the master's memory and /api/status every SAMPLE_S in a thread."""

    def __init__(
        self,
        pid: int,
        web_url: str,
        operator_token: str | None = None,
        members: Callable[[], list[int]] | None = None,
    ) -> None:
        """Sample the master `pid` (with `members`: the pids of all its processes, e.g. its process group)."""
        self.pid = pid
        self._members = members or (lambda: [pid])
        self.samples: list[Sample] = []
        headers = {"Authorization": f"Bearer {operator_token}"} if operator_token else {}  # /api/status needs it
        self._http = httpx.Client(base_url=web_url, timeout=2.0, headers=headers)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scale-sampler", daemon=True)

    def sample(self) -> Sample:
        """Take one sample now (also recorded)."""
        # The master's processes: the core and, with WEB_PROCESS, its web front (the peak is the sum of each
        # one's peak, an upper bound of theirs together).
        members = self._members() or [self.pid]
        memory = [read_memory_kb(pid) for pid in members]
        rss, hwm = sum(m[0] for m in memory), sum(m[1] for m in memory)
        sample = Sample(time.time(), rss, hwm, sum(cpu_seconds(pid) for pid in members))
        # A master too busy to answer in time: memory alone this time. ValueError: no such gauge.
        # /metrics, not /api/status: the status lists every worker, which at 1,000 workers cost the master
        # ~13 % of its CPU at two polls a second; the queue's gauge costs the same at any fleet size.
        with contextlib.suppress(httpx.HTTPError, ValueError):
            sample.queue = queue_depth(self._http.get("/metrics").text)
        self.samples.append(sample)
        return sample

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.sample()
            self._stop.wait(max(0.0, SAMPLE_S - (time.monotonic() - started)))

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self._http.close()


@dataclass
class WatchLog:
    """The master's Watch events, kept small: (kind, ms, task id, worker id, attempt, queue length)."""

    endpoint: str
    enabled: bool = True
    events: list[tuple[str, int, str, str, int, int]] = field(default_factory=list)
    error: str = ""

    def __enter__(self) -> WatchLog:
        if self.enabled:
            self._channel = grpc.insecure_channel(self.endpoint)
            stub = pb_grpc.MasterEventsStub(self._channel)  # type: ignore[no-untyped-call]
            self._call = stub.Watch(pb.WatchRequest(snapshot=False))
            self._thread = threading.Thread(target=self._read, name="scale-watch", daemon=True)
            self._thread.start()
        return self

    def _read(self) -> None:
        try:
            for e in self._call:
                self.events.append((e.kind, e.timestamp, e.task_id, e.worker_id, e.attempt, e.queue_length))
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                self.error = f"{e.code().name}: {e.details()}"  # e.g. cut off for falling behind

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.enabled:
            self._call.cancel()
            self._thread.join(10)
            self._channel.close()
