"""Experiments: drive load at a system while collecting what it does, inject faults on time, and keep the
whole as a `Run` (see lab.runs), not yet saved. Notebooks and `lab load` are thin layers over `run_open`,
`run_closed` and `run_at_utilization`.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.loadgen.arrivals import poisson
from lab.loadgen.closed_loop import closed_loop
from lab.loadgen.open_loop import open_loop
from lab.loadgen.options import LoadOptions
from lab.loadgen.result import LoadResult
from lab.loadgen.users import load_corpus
from lab.observe.collect import Collector
from lab.runs import Run, capture_environment, list_runs, new_run_id
from lab.system.ha import HaCluster
from lab.system.local import LocalCluster
from lab.system.presets import GEMINI_LIKE_LATENCY_MS, lab_cluster
from lab.system.target import Target
from services.worker.settings import WorkerSettings

SETTLE_S = 5.0  # after the last answer, how long to wait for the master to see every delivery acknowledged


def mean_service_s(work_seconds: float, model_latency_ms: float = GEMINI_LIKE_LATENCY_MS) -> float:
    """Expected seconds a worker spends on one task: the model's answer, then the simulated work."""
    return work_seconds + model_latency_ms / 1000


def rate_for_utilization(utilization: float, workers: int, service_s: float) -> float:
    """The arrival rate (per second) that keeps `utilization` of `workers` busy: rho·c / E[S]."""
    if not utilization > 0:
        raise ValueError(f"utilization must be > 0, got {utilization}")
    if workers < 1 or service_s <= 0:
        raise ValueError(f"need workers >= 1 and service_s > 0, got {workers} and {service_s}")
    return utilization * workers / service_s


# -- faults -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """Something done to the system `at_s` seconds after the first question was accepted."""

    at_s: float
    action: str
    target: str
    do: Callable[[], object]


def kill_worker(cluster: LocalCluster, at_s: float, index: int = 0) -> Fault:
    """SIGKILL the `index`-th running worker at `at_s` (the cluster starts a new one in its place)."""

    def do() -> str:
        worker_id = cluster.worker_ids[index]
        cluster.kill_worker(worker_id)
        return worker_id

    return Fault(at_s, "kill worker", f"worker #{index}", do)


def restart_master(cluster: LocalCluster, at_s: float) -> Fault:
    """SIGKILL the master at `at_s` and start it again on the same ports and journal."""

    def do() -> None:
        cluster.kill_master()
        cluster.restart_master()

    return Fault(at_s, "restart master", "master", do)


def kill_leader(cluster: HaCluster, at_s: float) -> Fault:
    """SIGKILL the master that leads at `at_s` (standby masters): another takes over, and the killed one comes back
    as a standby. Recorded: `leader_again_s`, until a master with a newer epoch answers /leader."""

    def do() -> dict[str, object]:
        name, epoch = _leader(cluster)
        killed = time.monotonic()
        cluster.kill_named_master(name)
        _, new_epoch = cluster.wait_leader(60.0, after_epoch=epoch)
        return {"target": name, "leader_again_s": round(time.monotonic() - killed, 2), "epoch": new_epoch}

    return Fault(at_s, "kill leader", "leading master", do)


def pause_leader(cluster: HaCluster, at_s: float, seconds: float) -> Fault:
    """SIGSTOP the master that leads at `at_s` for `seconds` (past its lease: it is deposed), then SIGCONT it.
    Recorded: `leader_again_s`, until a master with a newer epoch answered /leader (during the pause)."""

    def do() -> dict[str, object]:
        name, epoch = _leader(cluster)
        paused = time.monotonic()
        cluster.kill_named_master(name, signal.SIGSTOP)
        try:
            _, new_epoch = cluster.wait_leader(seconds, after_epoch=epoch)
            again: float | None = round(time.monotonic() - paused, 2)
        except TimeoutError:
            new_epoch, again = epoch, None
        time.sleep(max(0.0, paused + seconds - time.monotonic()))
        cluster.kill_named_master(name, signal.SIGCONT)
        return {"target": name, "leader_again_s": again, "epoch": new_epoch}

    return Fault(at_s, f"pause leader {seconds:g} s", "leading master", do)


def _leader(cluster: HaCluster) -> tuple[str, int]:
    found = cluster.leader()
    if found is None:
        raise RuntimeError("no master leads: nothing to fail")
    return found[0].name, found[1]


def restart_broker(cluster: LocalCluster, at_s: float) -> Fault:
    """SIGKILL Mosquitto at `at_s` and start it again with its persisted sessions."""

    def do() -> None:
        cluster.kill_broker()
        cluster.restart_broker()

    return Fault(at_s, "restart broker", "mosquitto", do)


class _FaultPlayer:
    """Plays faults on time in a thread, counting from the first accepted task, and records what it did."""

    def __init__(self, faults: Sequence[Fault], collector: Collector) -> None:
        self._faults = sorted(faults, key=lambda f: f.at_s)
        self._collector = collector
        self._stop = threading.Event()
        self.done: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._play, name="faults", daemon=True)

    def start(self) -> None:
        if self._faults:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(120)

    def _first_accepted(self) -> float | None:
        while not self._stop.is_set():
            if any(e.get("kind") == "task.accepted" for e in list(self._collector.watch.events)):
                return time.monotonic()
            self._stop.wait(0.05)
        return None

    def _play(self) -> None:
        zero = self._first_accepted()
        if zero is None:
            return
        for fault in self._faults:
            if self._stop.wait(max(0.0, zero + fault.at_s - time.monotonic())):
                return
            record: dict[str, Any] = {
                "timestamp": time.time_ns() // 1_000_000,
                "at_s": fault.at_s,
                "action": fault.action,
                "target": fault.target,
            }
            try:
                named = fault.do()
                if isinstance(named, str):
                    record["target"] = named
                elif isinstance(named, Mapping):  # the target and what the fault measured
                    record.update(named)
            except Exception as exc:  # a failed fault is a finding of the run, not a reason to lose it
                record["error"] = f"{type(exc).__name__}: {exc}"
            self.done.append(record)


# -- runs ---------------------------------------------------------------------------------------------------


def _as_target(system: LocalCluster | Target) -> Target:
    return Target.for_cluster(system) if isinstance(system, LocalCluster) else system


def _system_params(system: LocalCluster | Target) -> dict[str, Any]:
    """What is known about the system: workers now, and for a local one its work time and model latency."""
    target = _as_target(system)
    online = [w for w in target.status_report().workers if w.state in ("idle", "busy")]
    params: dict[str, Any] = {"url": target.web_url, "workers": len(online)}
    if isinstance(system, LocalCluster):
        env = system.config.extra_env  # what the workers were told beyond the cluster's own settings
        params.update(
            workers=len(system.worker_ids),
            work_seconds=system.config.work_seconds,
            model_mode=system.config.model_mode,
            model_latency_ms=WorkerSettings.read_one("offline_latency_ms", env),
            model_latency_sd_ms=WorkerSettings.read_one("offline_latency_sd_ms", env),
        )
    return params


def _settle(collector: Collector, load: LoadResult, timeout_s: float) -> None:
    """Wait until the master saw a delivery for every answer the users received (acks travel after answers)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        kinds = [e.get("kind") for e in list(collector.watch.events)]
        if kinds.count("task.delivered") >= load.answered:
            return
        time.sleep(0.1)


def _measure(
    system: LocalCluster | Target,
    label: str,
    drive: Callable[[str], LoadResult],
    faults: Sequence[Fault],
    params: Mapping[str, Any],
) -> Run:
    target = _as_target(system)
    known = {**_system_params(system), **params}
    with Collector.for_target(target) as collector:
        player = _FaultPlayer(faults, collector)
        player.start()
        try:
            load = drive(target.web_url)
        finally:
            player.stop()
        _settle(collector, load, SETTLE_S)
        tasks, events, scaling = collector.tasks(), collector.worker_events(), collector.scaling()
    known["load"] = load.summary()
    if faults:
        known["faults"] = player.done
    if collector.watch.gaps:  # the master's stream broke (a restart, a failover): what it missed is not in `tasks`
        known["watch_gaps"] = [{"from_ms": round(a * 1000), "to_ms": round(b * 1000)} for a, b in collector.watch.gaps]
    environment = capture_environment()
    return Run(new_run_id(label), known, environment, tasks, events, scaling)


# The notebooks' entry points: one keyword per knob of a run reads best in a parameters cell.
def run_open(  # noqa: PLR0913
    system: LocalCluster | Target,
    schedule: Sequence[float],
    *,
    label: str,
    users: int = 50,
    duration_s: float | None = None,
    arrival: str = "schedule",
    corpus: Sequence[str] | None = None,
    faults: Sequence[Fault] = (),
    params: Mapping[str, Any] | None = None,
    api_key: str | None = None,
    progress: bool = True,
    answer_timeout_s: float = 120.0,
) -> Run:
    """Send questions at the `schedule`'s times (open loop, see lab.loadgen.open_loop.open_loop) while collecting;
    play `faults` on time; return the Run (not yet saved: call ``run.save()``).

    Params recorded: the system's (workers, work and model time for a local one), ``arrival``, ``users``,
    ``duration_s`` (default: the last send time), ``rate_per_s`` (questions / duration), the generator's
    summary under ``load``, the faults as done, and whatever `params` adds (it wins).
    """
    if not schedule:
        raise ValueError("the schedule has no sends")
    duration = duration_s if duration_s is not None else max(float(schedule[-1]), 1e-3)
    questions = list(corpus) if corpus is not None else load_corpus()
    known: dict[str, Any] = {
        "kind": "open",
        "arrival": arrival,
        "users": users,
        "duration_s": duration,
        "questions": len(schedule),
        "rate_per_s": len(schedule) / duration,
        **(params or {}),
    }

    def drive(url: str) -> LoadResult:
        options = LoadOptions(
            api_key=api_key, progress=progress, answer_timeout_s=answer_timeout_s, operator_token=system.operator_token
        )
        return open_loop(url, schedule, users, questions, options)

    return _measure(system, label, drive, faults, known)


def run_closed(  # noqa: PLR0913 (the notebooks' keywords, as run_open)
    system: LocalCluster | Target,
    *,
    label: str,
    users: int,
    duration_s: float,
    think_time_s: float,
    corpus: Sequence[str] | None = None,
    faults: Sequence[Fault] = (),
    params: Mapping[str, Any] | None = None,
    api_key: str | None = None,
    progress: bool = True,
    seed: int = 0,
    answer_timeout_s: float = 120.0,
) -> Run:
    """Closed-loop users (ask, wait, think, ask again; see lab.loadgen.closed_loop.closed_loop) while collecting."""
    questions = list(corpus) if corpus is not None else load_corpus()
    known: dict[str, Any] = {
        "kind": "closed",
        "arrival": "closed loop",
        "users": users,
        "duration_s": duration_s,
        "think_time_s": think_time_s,
        **(params or {}),
    }

    def drive(url: str) -> LoadResult:
        options = LoadOptions(
            api_key=api_key,
            progress=progress,
            seed=seed,
            answer_timeout_s=answer_timeout_s,
            operator_token=system.operator_token,
        )
        return closed_loop(url, users, duration_s, think_time_s, questions, options)

    return _measure(system, label, drive, faults, known)


def run_at_utilization(  # noqa: PLR0913 (the notebooks' keywords, as run_open)
    workers: int,
    utilization: float,
    *,
    label: str,
    work_seconds: float,
    duration_s: float,
    users: int,
    model_latency_ms: float = GEMINI_LIKE_LATENCY_MS,
    progress: bool = False,
    overhead_s: float = 0.0,
) -> Run:
    """One point of a sweep: a new `lab_cluster` of `workers` (model latency spread half its mean) offered
    Poisson arrivals at `utilization` of its capacity for `duration_s` (seeded by the worker count); the
    Run is not saved. `overhead_s` is a task's time on a worker beyond the work and the model (messages,
    hand-off), added to the service time the rate is set from, so that the realized utilization is the
    target's (recorded as ``params["overhead_s"]``)."""
    rate = rate_for_utilization(utilization, workers, mean_service_s(work_seconds, model_latency_ms) + overhead_s)
    schedule = poisson(rate, duration_s, seed=workers)
    with lab_cluster(workers, work_seconds, model_latency_ms, model_latency_ms / 2) as cluster:
        return run_open(
            cluster,
            schedule,
            label=label,
            users=users,
            duration_s=duration_s,
            arrival="poisson",
            params={"target_utilization": utilization, "overhead_s": overhead_s},
            progress=progress,
        )


def saved_run(root: Path, label: str, settings: Mapping[str, Any]) -> Run | None:
    """The newest run saved under `root` whose id ends with `label` and whose params hold every one of
    `settings` (floats compared to 1e-9), or None: a sweep reads what it already measured instead of running
    it again."""
    for folder in reversed(list_runs(root)):
        if not folder.name.endswith(f"-{label}"):
            continue
        run = Run.load(folder)
        if all(_same(run.params.get(key), value) for key, value in settings.items()):
            return run
    return None


def _same(saved: Any, wanted: Any) -> bool:
    if isinstance(saved, (int, float)) and isinstance(wanted, (int, float)):
        return math.isclose(saved, wanted, rel_tol=1e-9)
    return bool(saved == wanted)
