"""The autoscaler's observer: the master's Prometheus text (from the master's own metrics registry) read into
counters, and differences between reads into the arrival rate, the mean service time and its cv2."""

from __future__ import annotations

import pytest

from services.autoscaler.client import MasterUnavailableError
from services.autoscaler.observe import Counters, Observer, Window, bucket_cv2, load_between, parse_metrics
from services.master.metrics import LATENCY_BUCKETS, Metrics
from services.protocol import StatusReport, WorkerStatus


def master_metrics() -> Metrics:
    """The master's real metrics (a registry of their own), with an empty queue and no workers."""
    return Metrics(lambda: (0, 0, {}))


def text(metrics: Metrics) -> str:
    return metrics.render().decode()


def test_a_fresh_master_has_counted_nothing() -> None:
    counters = parse_metrics(text(master_metrics()))
    assert (counters.accepted, counters.processed, counters.processing_s) == (0, 0, 0)
    assert [upper for upper, _ in counters.buckets] == [*map(float, LATENCY_BUCKETS), float("inf")]


def test_accepted_questions_and_processing_times_are_read() -> None:
    metrics = master_metrics()
    metrics.tasks.labels("accepted").inc(7)
    metrics.tasks.labels("rejected").inc(3)  # not arrivals that take a worker
    for seconds in (0.3, 0.4, 3.0):
        metrics.processing.observe(seconds)
    counters = parse_metrics(text(metrics))
    assert counters.accepted == 7
    assert counters.processed == 3
    assert counters.processing_s == pytest.approx(3.7)
    assert dict(counters.buckets)[0.5] == 2 and dict(counters.buckets)[5.0] == 3


def test_text_without_the_masters_histogram_is_refused() -> None:
    with pytest.raises(ValueError, match="swarm_processing_seconds"):
        parse_metrics("# HELP up x\n# TYPE up gauge\nup 1\n")


def test_the_load_is_the_difference_between_two_reads() -> None:
    metrics = master_metrics()
    metrics.tasks.labels("accepted").inc(10)
    for _ in range(4):
        metrics.processing.observe(20.0)  # before the window: must not count
    older = parse_metrics(text(metrics))
    metrics.tasks.labels("accepted").inc(15)
    for seconds in (1.2, 1.4, 1.6, 1.8):  # all in the (1, 2.5] bucket
        metrics.processing.observe(seconds)
    newer = parse_metrics(text(metrics))
    load = load_between(older, newer, 5.0)
    assert load.arrival_rate_per_s == pytest.approx(3.0)  # 15 accepted in 5 s
    assert load.service_time_s == pytest.approx(1.5)  # the exact mean, from the sum
    assert load.service_cv2 == 0.0  # one bucket: no spread the histogram can show


def test_cv2_counts_each_answer_at_its_bucket_midpoint() -> None:
    metrics = master_metrics()
    for seconds in (0.3, 0.3, 3.0, 3.0):  # buckets (0.25, 0.5] and (2.5, 5]
        metrics.processing.observe(seconds)
    counters = parse_metrics(text(metrics))
    mean = 1.65
    centre = (0.375 + 3.75) / 2
    expected = ((0.375 - centre) ** 2 + (3.75 - centre) ** 2) / 2 / mean**2
    assert bucket_cv2(counters.buckets, mean) == pytest.approx(expected)
    # One answer at 60 s (midpoint of (0, 120]) and one in the unbounded bucket, at its lower bound 120 s.
    assert bucket_cv2([(120.0, 1.0), (float("inf"), 2.0)], 100.0) == pytest.approx(30**2 / 100**2)


def test_without_answers_in_the_window_the_service_time_is_that_since_the_start() -> None:
    metrics = master_metrics()
    first = parse_metrics(text(metrics))
    assert load_between(first, first, 2.0).service_time_s is None  # none measured yet
    assert load_between(first, first, 2.0).service_cv2 == 1.0
    metrics.processing.observe(2.0)
    metrics.processing.observe(4.0)
    older = parse_metrics(text(metrics))
    load = load_between(older, older, 2.0)
    assert load.service_time_s == pytest.approx(3.0)
    assert load.arrival_rate_per_s == 0.0


def counters(accepted: float) -> Counters:
    return Counters(accepted, 0.0, 0.0, ((float("inf"), 0.0),))


def test_the_window_needs_two_reads_and_forgets_old_ones() -> None:
    window = Window(10.0)
    assert window.add(0.0, counters(0)) is None
    first = window.add(2.0, counters(100))  # a burst of 100 in 2 s
    assert first is not None and first.arrival_rate_per_s == pytest.approx(50.0)
    for at in range(4, 31, 2):  # then nothing more for 28 s
        load = window.add(float(at), counters(100))
    assert load is not None and load.arrival_rate_per_s == 0.0  # the burst left the window


def test_the_window_starts_again_when_the_master_restarted() -> None:
    window = Window(30.0)
    window.add(0.0, counters(500))
    assert window.add(2.0, counters(510)) is not None
    assert window.add(4.0, counters(3)) is None  # counters went back: no rate across the restart
    again = window.add(6.0, counters(9))
    assert again is not None and again.arrival_rate_per_s == pytest.approx(3.0)


class FakeMaster:
    """Answers the observer's two reads with a given status and the text of a real metrics registry."""

    def __init__(self, status: StatusReport, metrics: Metrics) -> None:
        self._status, self.metrics_registry, self.metrics_text = status, metrics, ""

    async def status(self) -> StatusReport:
        return self._status

    async def metrics(self) -> str:
        return self.metrics_text or text(self.metrics_registry)


def worker(worker_id: str, state: str) -> WorkerStatus:
    return WorkerStatus(
        worker_id=worker_id,
        language="python",
        state=state,  # type: ignore[arg-type]
        tasks_done=0,
        tasks_failed=0,
        current_task="t" if state == "busy" else None,
        last_seen=0,
    )


def status(*workers: WorkerStatus, queued: int = 0) -> StatusReport:
    count = {s: sum(w.state == s for w in workers) for s in ("idle", "busy", "offline", "lost")}
    return StatusReport(
        workers=list(workers),
        idle=count["idle"],
        busy=count["busy"],
        offline=count["offline"],
        lost=count["lost"],
        queue_length=queued,
        in_flight=count["busy"],
        undelivered=0,
        mqtt_connected=True,
    )


async def test_an_observation_counts_listed_workers_and_those_starting() -> None:
    fleet = status(worker("a", "idle"), worker("b", "busy"), worker("c", "offline"), worker("d", "idle"), queued=4)
    master = FakeMaster(fleet, master_metrics())
    clock = iter([0.0, 2.0])
    observer = Observer(master, 30.0, clock=lambda: next(clock))
    assert await observer.observe(5) is None  # one read: no rate yet
    master.metrics_registry.tasks.labels("accepted").inc(8)
    seen = await observer.observe(5)
    assert seen is not None
    obs = seen.observation
    assert (obs.workers, obs.busy, obs.queued, obs.starting) == (3, 1, 4, 2)  # 5 asked for, 3 listed
    assert obs.arrival_rate_per_s == pytest.approx(4.0)
    assert obs.service_time_s is None and obs.at_s == 2.0
    assert seen.idle_workers == ["a", "d"]


async def test_metrics_that_cannot_be_read_mean_the_master_is_not_answering_as_expected() -> None:
    master = FakeMaster(status(), master_metrics())
    master.metrics_text = "<html>a proxy's error page</html>"
    with pytest.raises(MasterUnavailableError, match="GET /metrics"):
        await Observer(master, 30.0).observe(0)
