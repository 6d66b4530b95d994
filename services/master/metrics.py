"""Prometheus metrics of the master, in a registry of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Seconds; a task is at least the simulated work (10 s by default) so the buckets reach far.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 12.5, 15, 20, 30, 60, 120)
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class _StateCollector(Collector):
    """Queue depth and workers by state, read from the live state at scrape time."""

    def __init__(self, read: Callable[[], tuple[int, int, dict[str, int]]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        queue, in_flight, workers = self._read()
        yield GaugeMetricFamily("swarm_queue_depth", "Tasks waiting for a worker", value=queue)
        yield GaugeMetricFamily("swarm_tasks_in_flight", "Tasks assigned and not answered", value=in_flight)
        family = GaugeMetricFamily("swarm_workers", "Workers by state", labels=["state"])
        for state, n in sorted(workers.items()):
            family.add_metric([state], n)
        yield family


class _ScalingCollector(Collector):
    """The autoscaler's last decision: the workers it wants and those it had. Absent until it made one, so that a
    master without an autoscaler shows no target of 0."""

    def __init__(self) -> None:
        self.last: tuple[int, int] | None = None  # (target, current)

    def collect(self) -> Iterable[Metric]:
        if self.last is None:
            return
        target, current = self.last
        yield GaugeMetricFamily("autoscaler_target_workers", "Workers the autoscaler's last decision wants", target)
        yield GaugeMetricFamily(
            "autoscaler_current_workers", "Workers running or starting at the autoscaler's last decision", current
        )


class Metrics:
    """The master's counters and histograms."""

    def __init__(self, read_state: Callable[[], tuple[int, int, dict[str, int]]]) -> None:
        self.registry = CollectorRegistry()
        self.tasks = Counter(
            "swarm_tasks",
            "Tasks by outcome (accepted, rejected, answered, failed, requeued)",
            ["outcome"],
            registry=self.registry,
        )
        self.results = Counter(
            "swarm_results",
            "Worker results by verdict (accepted, refused)",
            ["verdict"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "swarm_refusals",
            "Questions and connections refused, by reason (empty, too_long, bad_request, no_session, session_rate, "
            "session_in_flight, address_rate, address_in_flight, address_share, too_busy, connections, "
            "address_connections)",
            ["reason"],
            registry=self.registry,
        )
        self.bad_messages = Counter(
            "swarm_bad_messages",
            "Payloads that could not be read, by source",
            ["source"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "swarm_task_latency_seconds",
            "From the user's question to the answer sent back",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.wait = Histogram(
            "swarm_queue_wait_seconds",
            "From the user's question to its assignment to a worker",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.processing = Histogram(
            "swarm_processing_seconds",
            "Worker processing time (processing_time_ms)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.overhead = Histogram(
            "swarm_overhead_seconds",
            "End-to-end latency minus processing time",
            buckets=OVERHEAD_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "autoscaler_decisions",
            "Decisions the autoscaler reported, by direction (up, down, hold)",
            ["direction"],
            registry=self.registry,
        )
        self._scaling = _ScalingCollector()
        self.registry.register(_StateCollector(read_state))
        self.registry.register(self._scaling)

    def scaling(self, target: int, current: int, direction: str) -> None:
        """Count one decision of the autoscaler and keep its target and current workers."""
        self.decisions.labels(direction).inc()
        self._scaling.last = (target, current)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
