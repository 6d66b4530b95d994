"""Simulated workers for scale benchmarks: many real workers in one asyncio process.

Each simulated worker is the real `services.worker.runner.WorkerRunner`, so it speaks the protocol by the
same code as `python -m services.worker`: its own MQTT connection with client id = worker id (the broker's
ACL lets it read only its own task topic), a Last Will saying offline, register on every connection and on
every new master presence, busy/idle with task id and attempt, one task at a time, the result on its own
gRPC result stream with the task's id, attempt and token, and offline before a clean shutdown. What is
lighter: one process holds `--count` of them (gRPC carries their streams on one connection), and the model
is the offline one (zero latency unless OFFLINE_LATENCY_MS says otherwise) with WORK_SECONDS of work.

`python -m lab.bench.sim_workers --count 100 --records FILE` reads the broker, its login and the work time
from the environment like the real worker (MQTT_HOST, MQTT_PORT, MQTT_USERNAME, MQTT_PASSWORD, TOPIC_PREFIX,
WORK_SECONDS, ...) and on SIGTERM says goodbye and writes one JSON line per task it took (`TaskRecord`).
`SimFleet` starts such processes against a `LocalCluster`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from lab.paths import REPO_ROOT
from lab.system.local import LocalCluster
from lab.system.procs import ManagedProcess
from services.loop import run as run_loop
from services.protocol import TaskMessage
from services.protocol.rpc import pb
from services.protocol.worker_ids import SEPARATOR
from services.worker.callback import ResultSender
from services.worker.models import OfflineModel
from services.worker.runner import WorkerRunner
from services.worker.settings import LANGUAGE, WorkerSettings

log = logging.getLogger(__name__)

# The protocol's convention with a mark of our own: `python-worker-sim-<8 hex>` (see `worker_ids`).
ID_PREFIX = f"{LANGUAGE}{SEPARATOR}sim"
STOP_GRACE_S = 15.0  # goodbyes and the records file of a hundred workers take well under a second


@dataclass(frozen=True)
class TaskRecord:
    """One task a simulated worker took; times are wall-clock ns (time.time_ns), comparable across processes."""

    task_id: str
    worker_id: str
    attempt: int
    received_ns: int  # the worker started on it (the task message had just arrived: one task at a time)
    sent_ns: int  # it sent the result (0: it never did)
    acked_ns: int  # the ack came (or sending failed)
    accepted: bool  # the master accepted the result

    def to_json(self) -> str:
        """One JSON line."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, line: str) -> TaskRecord:
        """Read a line written by to_json."""
        return cls(**json.loads(line))


class TimedSender(ResultSender):
    """The worker's own gRPC sender, noting when each result left."""

    def __init__(self, settings: WorkerSettings) -> None:
        super().__init__(retries=settings.grpc_retries, tls_ca=settings.grpc_tls_ca, stream=settings.result_stream)
        self.sent_ns: dict[str, int] = {}

    async def send(self, endpoint: str, result: pb.TaskResult) -> pb.ResultAck:
        """Note the time, then deliver as the real worker does."""
        self.sent_ns[result.task_id] = time.time_ns()
        return await super().send(endpoint, result)


class SimWorker(WorkerRunner):
    """A real worker runner that records each task it processes."""

    def __init__(
        self, settings: WorkerSettings, model: OfflineModel, sender: TimedSender, records: list[TaskRecord]
    ) -> None:
        super().__init__(settings, model, sender)
        self._timed = sender
        self._records = records

    async def process(self, task: TaskMessage) -> pb.ResultAck | None:
        """Process as the real worker does, and record when it started, sent and was acknowledged."""
        received = time.time_ns()
        ack = await super().process(task)
        task_id = task.task_id or ""
        self._records.append(
            TaskRecord(
                task_id=task_id,
                worker_id=self.worker_id,
                attempt=task.attempt or 0,
                received_ns=received,
                sent_ns=self._timed.sent_ns.pop(task_id, 0),
                acked_ns=time.time_ns(),
                accepted=ack is not None and ack.success,
            )
        )
        return ack


def worker_ids(count: int, prefix: str = ID_PREFIX) -> list[str]:
    """`count` distinct worker ids `<prefix>-<8 hex>`."""
    ids: set[str] = set()
    while len(ids) < count:
        ids.add(f"{prefix}-{secrets.token_hex(4)}")
    return sorted(ids)


async def run_workers(settings: WorkerSettings, count: int, stop: asyncio.Event) -> list[TaskRecord]:
    """Run `count` simulated workers until `stop` is set; return the records of the tasks they took."""
    model = OfflineModel(settings.offline_latency_ms, settings.offline_latency_sd_ms)
    records: list[TaskRecord] = []
    workers = [
        SimWorker(dataclasses.replace(settings, worker_id=wid), model, TimedSender(settings), records)
        for wid in worker_ids(count)
    ]
    runs = [asyncio.create_task(w.run(), name=w.worker_id) for w in workers]
    try:
        await stop.wait()
        await asyncio.gather(*(w.announce_offline() for w in workers))
    finally:
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
    return records


def read_records(path: Path) -> list[TaskRecord]:
    """The records a simulated worker process wrote (none if it wrote no file)."""
    if not path.is_file():
        return []
    return [TaskRecord.from_json(line) for line in path.read_text().splitlines() if line.strip()]


class SimFleet:
    """`processes` processes of simulated workers, `workers` in all, against a running LocalCluster;
    a context manager that stops them (goodbye, records) even on error."""

    def __init__(self, cluster: LocalCluster, workers: int, processes: int, records_dir: Path) -> None:
        if workers < 1 or processes < 1:
            raise ValueError(f"need workers >= 1 and processes >= 1, got {workers} and {processes}")
        self.cluster = cluster
        self.workers = workers
        self.processes = min(processes, workers)
        self.records_dir = records_dir
        self.procs: list[ManagedProcess] = []
        self.started_ns = 0
        self._stopped = False

    def _counts(self) -> Iterator[int]:
        base, extra = divmod(self.workers, self.processes)
        for i in range(self.processes):
            yield base + (1 if i < extra else 0)

    def start(self) -> None:
        """Start the processes (they connect and register by themselves)."""
        env = self.cluster.config.worker_env("unused", os.environ)
        env.pop(WorkerSettings.env_name("worker_id"), None)  # each simulated worker gets an id of its own
        self.records_dir.mkdir(parents=True, exist_ok=True)
        self.started_ns = time.time_ns()
        for i, count in enumerate(self._counts()):
            records = str(self._path(i))
            argv = [sys.executable, "-m", "lab.bench.sim_workers", "--count", str(count), "--records", records]
            self.procs.append(ManagedProcess(f"sim-{i + 1}", argv, env=env, cwd=REPO_ROOT, sink=lambda n, s: None))

    def _path(self, index: int) -> Path:
        return self.records_dir / f"sim-{index + 1}.jsonl"

    def online(self) -> int:
        """How many simulated workers the master lists as idle or busy."""
        workers = self.cluster.status_report().workers
        return sum(1 for w in workers if w.worker_id.startswith(ID_PREFIX) and w.state in ("idle", "busy"))

    def wait_online(self, timeout: float = 60.0) -> float:
        """Wait until every simulated worker is registered; seconds since start()."""
        deadline = time.monotonic() + timeout
        while self.online() < self.workers:
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.online()} of {self.workers} simulated workers registered after {timeout} s")
            time.sleep(0.2)
        return (time.time_ns() - self.started_ns) / 1e9

    def check_alive(self) -> None:
        """Raise RuntimeError with its last lines if a process exited."""
        for proc in self.procs:
            if proc.returncode is not None:
                tail = "\n".join(proc.tail(20))
                raise RuntimeError(f"{proc.name} exited with code {proc.returncode}:\n{tail}")

    def stop(self) -> list[TaskRecord]:
        """Stop every process (SIGTERM: goodbye and records; SIGKILL after a grace) and return the records."""
        if not self._stopped:
            self._stopped = True
            for proc in self.procs:
                proc.terminate()
            deadline = time.monotonic() + STOP_GRACE_S
            for proc in self.procs:
                proc.finish(deadline)
        return [r for i in range(len(self.procs)) for r in read_records(self._path(i))]

    def __enter__(self) -> SimFleet:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def _serve(settings: WorkerSettings, count: int) -> list[TaskRecord]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await run_workers(settings, count, stop)


def main(argv: list[str] | None = None) -> int:
    """Entry point: settings from the environment, workers until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m lab.bench.sim_workers", description=__doc__)
    parser.add_argument("--count", type=int, default=100, help="simulated workers in this process")
    parser.add_argument("--records", type=Path, default=None, help="write one JSON line per task here at exit")
    parser.add_argument("--work-seconds", type=float, default=None, help="work per task (default: WORK_SECONDS)")
    args = parser.parse_args(argv)
    try:
        settings = WorkerSettings.from_env()
    except ValueError as e:
        print(f"sim_workers: bad setting: {e}", file=sys.stderr)
        return 2
    if args.work_seconds is not None:
        settings = dataclasses.replace(settings, work_seconds=args.work_seconds)
    # The runner logs every task at INFO; a hundred workers would drown the output.
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    records: list[TaskRecord] = []
    with contextlib.suppress(KeyboardInterrupt):
        records = run_loop(_serve(settings, args.count), settings.event_loop)  # the loop a worker runs on
    if args.records is not None:
        args.records.write_text("".join(r.to_json() + "\n" for r in records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
