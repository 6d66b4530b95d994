"""How the lab reads what the master sends (acks, task events, the system and REST status) through the
protocol's models, and the one environment that lifts the master's per-session limits (no processes)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from lab.bench.common import tasks_per_worker_bars
from lab.bench.sim_workers import ID_PREFIX, worker_ids
from lab.chat.format import language_of, question_record, system_html
from lab.loadgen.client import ChatClient, Exchange
from lab.system.config import ClusterConfig
from lab.system.presets import LIFTED_LIMIT, UNLIMITED_SESSIONS, sessions_unlimited
from services.master.settings import MasterSettings
from services.protocol import (
    AiResponse,
    Events,
    QueryAck,
    SystemStatus,
    TaskAssigned,
    TaskQueued,
    make_worker_id,
    worker_language,
)
from services.worker.settings import WorkerSettings

TASK = "task-1"


def reply(**changes: Any) -> dict[str, Any]:
    answer = AiResponse(
        taskId=TASK, query="q", response="an answer", workerId="go-worker-ab12cd", processingTime=12, timestamp=1
    )
    return {**answer.dump(), **changes}


class FakeSio:
    """Just enough of socketio.AsyncClient for ChatClient: handlers by event, and an ack to give."""

    def __init__(self, ack: object) -> None:
        self.ack = ack
        self.handlers: dict[str, Any] = {}

    def on(self, event: str, handler: Any) -> None:
        self.handlers[event] = handler

    async def call(self, event: str, payload: object, timeout: float) -> object:
        assert event == Events.USER_QUERY
        self.sent = payload
        return self.ack


def client(ack: object) -> tuple[ChatClient, FakeSio]:
    user = ChatClient("http://unused")
    sio = FakeSio(ack)
    user.sio = sio
    for event in (Events.TASK_QUEUED, Events.TASK_ASSIGNED, Events.AI_RESPONSE):
        sio.on(event, user._handler(event))
    return user, sio


def emit(sio: FakeSio, event: str, data: object) -> bool:
    acked: bool = asyncio.run(sio.handlers[event](data))
    return acked


# -- the chat client ------------------------------------------------------------------------------------------


def test_events_before_the_ack_are_claimed_by_it_and_read_into_models() -> None:
    user, sio = client(QueryAck.accept(TASK, 2).dump())
    assert emit(sio, Events.TASK_QUEUED, TaskQueued(taskId=TASK, position=2).dump())
    assert user.unclaimed[TASK]
    exchange = asyncio.run(user.ask("q", api_key="k"))
    assert sio.sent == {"query": "q", "apiKey": "k"}
    assert exchange.ack.accepted and exchange.task_id == TASK and exchange.positions == [2]
    emit(sio, Events.TASK_QUEUED, TaskQueued(taskId=TASK, position=1).dump())
    emit(sio, Events.TASK_ASSIGNED, TaskAssigned(taskId=TASK, workerId="go-worker-ab12cd").dump())
    emit(sio, Events.AI_RESPONSE, reply())
    assert exchange.positions == [2, 1] and exchange.worker_id == "go-worker-ab12cd"
    assert exchange.answer == AiResponse.model_validate(reply()) and user.answered_count == 1


def test_a_question_without_a_key_sends_none() -> None:
    user, sio = client(QueryAck.accept(TASK, 0).dump())
    exchange = asyncio.run(user.ask("q"))
    assert sio.sent == {"query": "q"} and exchange.positions == []


@pytest.mark.parametrize("ack", ["ok", None, {"taskId": TASK}, {"position": 1}])
def test_a_malformed_ack_is_a_refusal_that_names_it(ack: object) -> None:
    user, _ = client(ack)
    exchange = asyncio.run(user.ask("q"))
    assert not exchange.ack.accepted and exchange.task_id == ""
    assert exchange.ack.error == f"unexpected ack {ack!r}"


def test_a_refusal_keeps_the_masters_reason() -> None:
    user, _ = client(QueryAck.refuse("too many questions").dump())
    exchange = asyncio.run(user.ask("q"))
    assert exchange.ack.error == "too many questions" and not user.exchanges


@pytest.mark.parametrize("data", ["text", None, [1], {"taskId": TASK}, reply(processingTime="slow")])
def test_malformed_events_are_acknowledged_and_dropped(data: object) -> None:
    user, sio = client(QueryAck.accept(TASK, 0).dump())
    exchange = asyncio.run(user.ask("q"))
    assert emit(sio, Events.AI_RESPONSE, data)
    assert exchange.answers == [] and not user.unclaimed


# -- the chat panel's text --------------------------------------------------------------------------------------


def test_question_record_reads_the_answer_model() -> None:
    exchange = Exchange(query="q", sent_at=1.0, task_id=TASK, answered_at=1.5, positions=[1])
    exchange.answers.append(AiResponse.model_validate(reply(model="m")))
    record = question_record("q", exchange, None)
    assert record["worker_id"] == "go-worker-ab12cd" and record["language"] == "go"
    assert (record["processing_time_ms"], record["total_ms"], record["model"]) == (12, 500, "m")
    assert record["answer"] == "an answer" and record["error"] is None
    exchange.answers[0] = AiResponse.model_validate(reply(error="the model is down", response="the model is down"))
    failed = question_record("q", exchange, None)
    assert failed["answer"] is None and failed["error"] == "the model is down"


def test_question_record_of_a_refused_question() -> None:
    record = question_record("q", None, "too many questions")
    assert record["error"] == "too many questions" and record["worker_id"] == "" and record["language"] == ""


def test_system_html_shows_the_status_escaped() -> None:
    assert system_html(SystemStatus(workers=3, idle=1, busy=2, queued=4)) == "3 workers · 2 busy · 4 queued"


@pytest.mark.parametrize(
    ("worker_id", "language"),
    [("python-worker-3f9a1c", "python"), ("go-worker-x", "go"), ("worker-1", ""), ("-worker-x", "")],
)
def test_language_of_follows_the_protocols_convention(worker_id: str, language: str) -> None:
    assert language_of(worker_id) == language == (worker_language(worker_id) or "")


# -- worker ids in the benchmarks ----------------------------------------------------------------------------


def test_simulated_worker_ids_follow_the_convention() -> None:
    ids = worker_ids(3)
    assert len(set(ids)) == 3 and all(i.startswith(ID_PREFIX) for i in ids)
    assert {worker_language(i) for i in ids} == {"python"}


def test_tasks_per_worker_bars_label_the_ids_end() -> None:
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    wid = make_worker_id("python")
    tasks_per_worker_bars(ax, {wid: 3, "odd-id": 1})
    assert [t.get_text() for t in ax.get_xticklabels()] == [wid.rsplit("-", 1)[1], "odd-id"]


# -- environments ---------------------------------------------------------------------------------------------


def test_sessions_unlimited_lifts_both_limits_through_the_masters_settings() -> None:
    env = sessions_unlimited()
    settings = MasterSettings.from_env(env)
    assert settings.rate_per_minute == settings.max_in_flight_per_session == LIFTED_LIMIT
    assert set(env) == {
        MasterSettings.env_name("rate_per_minute"),
        MasterSettings.env_name("max_in_flight_per_session"),
    }
    assert env == UNLIMITED_SESSIONS


def test_sessions_unlimited_allows_more_when_asked() -> None:
    settings = MasterSettings.from_env(sessions_unlimited(3 * LIFTED_LIMIT))
    assert settings.rate_per_minute == settings.max_in_flight_per_session == 3 * LIFTED_LIMIT
    assert sessions_unlimited(5) == sessions_unlimited()


def test_a_worker_gets_its_own_health_file_after_extra_env(tmp_path: Path) -> None:
    config = ClusterConfig(web_port=1, grpc_port=2, mqtt_port=3, extra_env={"HEALTH_FILE": "/shared"})
    assert config.worker_env("w", {})["HEALTH_FILE"] == "/shared"
    env = config.worker_env("w", {}, health_file=tmp_path / "w.health")
    assert WorkerSettings.from_env(env).health_file == str(tmp_path / "w.health")


def test_service_environments_read_back_as_the_clusters_settings() -> None:
    config = ClusterConfig(web_port=1, grpc_port=2, mqtt_port=3, work_seconds=0.5, model_mode="offline")
    master = MasterSettings.from_env(config.master_env({}))
    worker = WorkerSettings.from_env(config.worker_env("python-worker-abc123", {}))
    assert (master.web_port, master.grpc_port, master.mqtt_port) == (1, 2, 3)
    assert master.grpc_endpoint == config.grpc_endpoint and master.mqtt_username == "master"
    assert (worker.worker_id, worker.work_seconds, worker.model_mode) == ("python-worker-abc123", 0.5, "offline")
    assert worker.mqtt_username == "worker" and worker.mqtt_password == config.credentials.worker
