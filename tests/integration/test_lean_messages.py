"""Per-task messages on MQTT are the lab's to ask for: by default a finished task costs one task message
and nothing else on the broker, and the Watch stream still tells everything the collectors need."""

from __future__ import annotations

import pytest

from lab.loadgen.client import ChatClient
from lab.observe.collect import Collector
from services.master.settings import MasterSettings
from tests.conftest import ClusterFactory
from tests.waiting import eventually

QUESTIONS = 4


def per_task(collector: Collector) -> dict[str, list[dict[str, object]]]:
    """What the observer saw on MQTT that is about one task: statuses naming a task, results, task log lines."""
    assert collector.tap is not None
    topics = collector.tap.topics
    seen: dict[str, list[dict[str, object]]] = {"status": [], "results": [], "logs": []}
    for m in collector.tap.messages:
        if m["topic"] == topics.status and m.get("task_id"):
            seen["status"].append(m)
        elif m["topic"] == topics.results:
            seen["results"].append(m)
        elif m["topic"] == topics.logs and str(m.get("message", "")).startswith("task "):
            seen["logs"].append(m)
    return seen


async def ask_and_collect(cluster_factory: ClusterFactory, **options: object) -> tuple[Collector, set[str]]:
    cluster = cluster_factory(workers=2, work_seconds=0.2, **options)
    with Collector.for_cluster(cluster) as collector:
        await eventually(lambda: len(collector.watch.events) >= 2, "the workers' snapshot on the Watch stream")
        async with ChatClient(cluster.web_url) as user:
            asked = {(await user.ask(f"lean {i}")).task_id for i in range(QUESTIONS)}
            await user.wait_answers(QUESTIONS, timeout=20)
        await eventually(lambda: collector.tasks().delivered.notna().sum() == QUESTIONS, "every delivery on Watch")
    return collector, asked


async def test_by_default_a_task_puts_no_status_result_or_log_line_on_mqtt(cluster_factory: ClusterFactory) -> None:
    collector, asked = await ask_and_collect(cluster_factory)
    assert per_task(collector) == {"status": [], "results": [], "logs": []}
    # The Watch stream has what the results topic had: language and model time of every task...
    tasks = collector.tasks().set_index("task_id")
    assert set(tasks.index) == asked
    assert (tasks.language == "python").all() and tasks.model_time_ms.notna().all()
    # ... and the master's own busy and idle for each of them (the workers sent neither).
    events = collector.worker_events()
    grpc = events[events.source == "grpc"]
    assert set(grpc[grpc.state == "busy"].task_id) == asked  # busy from each assignment
    last = grpc.sort_values("timestamp", kind="stable").groupby("worker_id").state.last()
    assert (last == "idle").all(), last  # idle once its last result was accepted and nothing waited
    assert events[(events.source == "mqtt") & events.state.isin(["busy", "idle"])].empty


@pytest.mark.parametrize("setting", ["true"])
async def test_task_messages_bring_back_the_workers_statuses_and_the_results_topic(
    cluster_factory: ClusterFactory, setting: str
) -> None:
    env = {MasterSettings.env_name("task_messages"): setting}
    collector, asked = await ask_and_collect(cluster_factory, extra_env=env)
    seen = per_task(collector)
    assert {m["task_id"] for m in seen["results"]} == asked
    statuses = {(m["task_id"], m["status"]) for m in seen["status"]}
    assert {(t, s) for t in asked for s in ("busy", "idle")} <= statuses
    assert seen["logs"]  # the master's and the workers' lines about each task
