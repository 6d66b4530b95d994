"""Unit tests of `Master` taking questions in: acceptance, queue positions, assignment and limits."""

from __future__ import annotations

from typing import Any

import pytest

from services.master.app import WebEdge
from services.master.journal import Journal
from services.protocol import AiResponse, Events, TaskQueued, UserQuery
from tests.unit.master_fakes import OTHER_SESSION, SESSION, TOPICS, Clock, Rig, rig, started


async def test_an_accepted_question_is_journaled_before_the_user_hears_of_it() -> None:
    r = await started()
    journaled_when_told: list[list[str]] = []
    r.sender.on_send = lambda sent: journaled_when_told.append([t.task_id for t in r.journal.open_tasks()])
    ack = await r.master.submit(SESSION, UserQuery(query="  What is MQTT?  ", apiKey=" k "))
    assert ack.accepted and ack.taskId
    assert journaled_when_told == [[ack.taskId]]  # the task-queued event already found it journaled
    (task,) = r.journal.open_tasks()
    assert (task.session_id, task.query, task.api_key) == (SESSION, "  What is MQTT?  ", "k")


async def test_without_an_idle_worker_questions_are_queued_in_order() -> None:
    r = await started()
    acks = [await r.master.submit(SESSION, UserQuery(query=f"q{n}")) for n in (1, 2, 3)]
    assert [a.position for a in acks] == [1, 2, 3]
    assert [(q.taskId, q.position) for q in r.sender.queued(SESSION)] == [(a.taskId, a.position) for a in acks]
    assert r.publisher.tasks() == []
    assert r.master.status_summary().queued == 3


async def test_positions_move_up_when_a_worker_takes_the_head_of_the_queue() -> None:
    r = await started()
    first, second, third = [await r.ask(f"q{n}") for n in (1, 2, 3)]
    r.sender.sent.clear()
    r.master.positions_changed.clear()
    await r.worker("go-worker-a")
    assert r.last_task("go-worker-a").task_id == first
    assert r.master.positions_changed.is_set()
    await r.master.send_positions()
    assert [(q.taskId, q.position) for q in r.sender.queued()] == [(second, 1), (third, 2)]
    await r.master.send_positions()  # nothing moved since: nobody is told again
    assert len(r.sender.queued()) == 2


async def test_a_question_goes_at_once_to_the_idle_worker_with_its_token_and_attempt() -> None:
    r = await started()
    await r.worker("go-worker-a")
    ack = await r.master.submit(SESSION, UserQuery(query="What is gRPC?", apiKey="user-key", model="m1"))
    assert ack.position == 0
    (published,) = [p for p in r.publisher.published if TOPICS.worker_id_from_tasks(p.topic)]
    assert (published.topic, published.qos) == (TOPICS.tasks("go-worker-a"), 1)
    task = r.last_task("go-worker-a")
    assert (task.task_id, task.attempt, task.query, task.api_key, task.model) == (
        ack.taskId,
        1,
        "What is gRPC?",
        "user-key",
        "m1",
    )
    assert task.session_id == ack.taskId  # the user's session id is a secret: never published
    assert task.token and len(task.token) >= 16
    assert [(a.taskId, a.workerId) for a in r.sender.assigned(SESSION)] == [(ack.taskId, "go-worker-a")]
    assert r.sender.queued() == []
    assert all(SESSION.encode() not in p.payload for p in r.publisher.published)


async def test_nothing_is_assigned_until_mqtt_is_up_and_while_it_is_down() -> None:
    r = rig()
    await r.worker("go-worker-a")
    assert (await r.master.submit(SESSION, UserQuery(query="q1"))).position == 1
    await r.master.mqtt_up()
    assert len(r.publisher.tasks()) == 1
    await r.answer(r.last_task())
    r.master.mqtt_down()
    assert (await r.master.submit(SESSION, UserQuery(query="q2"))).position == 1
    assert len(r.publisher.tasks()) == 1
    assert r.master.status().mqtt_connected is False
    await r.master.mqtt_up()
    assert len(r.publisher.tasks()) == 2


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "the question is empty"),
        ("   \n ", "the question is empty"),
        ("\t\u2003\r\n\u00a0", "the question is empty"),
        ("x" * 101, "the question is too long: 101 characters, at most 100"),
        (" " + "x" * 100, "the question is too long: 101 characters, at most 100"),
    ],
    ids=["empty", "blank", "unicode blank", "too long", "too long with its whitespace"],
)
async def test_a_bad_question_is_refused_and_changes_nothing(text: str, error: str) -> None:
    r = await started(max_query_chars=100)
    await r.worker("go-worker-a")
    ack = await r.master.submit(SESSION, UserQuery(query=text))
    assert ack.dump() == {"error": error}
    assert r.journal.open_tasks() == [] and r.sender.sent == [] and r.publisher.tasks() == []
    assert b'swarm_tasks_total{outcome="rejected"} 1.0' in r.master.metrics.render()


async def test_a_question_of_exactly_the_longest_length_is_accepted() -> None:
    r = await started(max_query_chars=100)
    assert (await r.master.submit(SESSION, UserQuery(query="x" * 100))).accepted


PADDED = " \tWhat is MQTT?\t \n"  # leading and trailing whitespace, a tab and a newline


async def test_the_answer_echoes_the_question_exactly_as_it_was_sent() -> None:
    r = await started()
    await r.worker("go-worker-a")
    task_id = await r.ask(PADDED)
    task = r.last_task("go-worker-a")
    assert task.query == PADDED  # the worker gets it as sent, too
    assert await r.answer(task) == (True, "accepted")
    (answer,) = r.sender.answers(SESSION)
    assert (answer.taskId, answer.query, answer.response) == (task_id, PADDED, "42")


async def test_a_failed_question_echoes_it_exactly_too() -> None:
    r = await started(max_attempts=1)
    await r.worker("go-worker-a")
    await r.ask(PADDED)
    await r.status("go-worker-a", "offline")  # its only attempt is lost
    (answer,) = r.sender.answers(SESSION)
    assert answer.failed and answer.query == PADDED


async def test_a_restarted_master_echoes_the_exact_question_of_restored_tasks_and_answers() -> None:
    journal, clock = Journal(":memory:"), Clock()
    before = await started(journal, clock)
    await before.worker("go-worker-a")
    answered = await before.ask(PADDED)
    await before.answer(before.last_task("go-worker-a"))  # not acknowledged by the page: kept
    await before.status("go-worker-a", "offline")
    queued = await before.ask("\tqueued  ")  # no worker: it waits in the queue

    after = await started(journal, clock)
    await after.master.session_connected(SESSION)  # the user comes back to the new master
    assert [(a.taskId, a.query) for a in after.sender.answers()] == [(answered, PADDED)]
    await after.worker("go-worker-b")
    restored = after.last_task("go-worker-b")
    assert (restored.task_id, restored.query) == (queued, "\tqueued  ")
    await after.answer(restored)
    assert [(a.taskId, a.query) for a in after.sender.answers()][-1] == (queued, "\tqueued  ")


async def test_a_session_may_not_have_more_questions_in_flight_than_the_limit() -> None:
    r = await started(max_in_flight_per_session=2)
    await r.ask("q1")
    await r.ask("q2")
    ack = await r.master.submit(SESSION, UserQuery(query="q3"))
    assert ack.error == "too many questions in flight: at most 2 at once; wait for an answer"
    assert (await r.master.submit(OTHER_SESSION, UserQuery(query="q3"))).accepted  # another session may
    await r.worker("go-worker-a")
    await r.answer(r.last_task("go-worker-a"))
    assert (await r.master.submit(SESSION, UserQuery(query="q3"))).accepted  # one answered: room again


async def test_a_session_may_not_ask_more_than_the_rate_per_minute() -> None:
    r = await started(rate_per_minute=2, max_in_flight_per_session=10)
    await r.ask("q1")
    r.clock.advance(10_000)
    await r.ask("q2")
    r.clock.advance(20_000)
    ack = await r.master.submit(SESSION, UserQuery(query="q3"))
    assert ack.error == "too many questions: at most 2 per minute; try again in 30 s"
    r.clock.advance(30_000)  # the first question is a minute old
    assert (await r.master.submit(SESSION, UserQuery(query="q3"))).accepted


async def test_a_client_joining_a_session_hears_where_its_open_questions_are() -> None:
    r = await started()
    await r.worker("go-worker-a")
    running = await r.ask("q1")
    waiting = await r.ask("q2")
    await r.ask("q3", session_id=OTHER_SESSION)
    await r.master.send_positions()
    r.sender.sent.clear()
    r.master.positions_changed.clear()
    await r.master.session_connected(SESSION)
    assert [(a.taskId, a.workerId) for a in r.sender.assigned()] == [(running, "go-worker-a")]
    assert r.master.positions_changed.is_set()
    await r.master.send_positions()
    queued = [(s.session_id, s.payload) for s in r.sender.sent if s.event == Events.TASK_QUEUED]
    assert queued == [(SESSION, TaskQueued(taskId=waiting, position=1))]


async def client_sends_user_query(
    data: object, ack_id: int | None, connected: bool = True, max_query_chars: int = 100
) -> tuple[list[tuple[str, object]], list[object], Rig]:
    """A client's `user-query` packet through the web edge's Socket.IO server (with `ack_id` when the client
    asked for the acknowledgement); returns the events emitted to it, the acknowledgements sent, the rig."""
    r = await started(max_query_chars=max_query_chars)
    await r.worker("go-worker-a")
    edge = WebEdge(lambda: SESSION, lambda: True)
    edge.bind(r.master)
    if connected:
        edge._sessions["sid-1"] = SESSION
    emitted: list[tuple[str, object]] = []
    acks: list[object] = []

    async def emit(event: str, data: object = None, to: str | None = None, **kwargs: Any) -> None:
        assert to == "sid-1"
        emitted.append((event, data))

    async def send_packet(eio_sid: str, pkt: Any) -> None:
        acks.append(pkt.data)

    edge.sio.emit = emit
    edge.sio._send_packet = send_packet
    await edge.sio._handle_event_internal(edge.sio, "sid-1", "eio-1", [Events.USER_QUERY, data], "/", ack_id)
    return emitted, acks, r


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"query": ""}, "the question is empty"),
        ({"query": "x" * 101}, "the question is too long: 101 characters, at most 100"),
        ({"query": 42}, None),
    ],
    ids=["empty", "too long", "not a string"],
)
async def test_a_refusal_reaches_a_client_that_asked_for_no_acknowledgement_as_an_answer(
    data: dict[str, object], error: str | None
) -> None:
    emitted, acks, r = await client_sends_user_query(data, ack_id=None)
    assert acks == []
    assert [event for event, _ in emitted] == [Events.AI_RESPONSE]
    shown = AiResponse.model_validate(emitted[0][1])
    assert shown.query == (data["query"] if isinstance(data["query"], str) else "")
    assert shown.error and shown.error in shown.response and (error is None or shown.error == error)
    assert (shown.processingTime, shown.workerId, shown.taskId) == (0, "", "")
    assert shown.timestamp > 0
    assert r.journal.open_tasks() == [] and r.master.status().undelivered == 0


async def test_a_client_that_asked_for_the_acknowledgement_gets_the_refusal_there_only() -> None:
    emitted, acks, _ = await client_sends_user_query({"query": ""}, ack_id=7)
    assert emitted == [] and acks == [[{"error": "the question is empty"}]]


async def test_a_refusal_for_too_many_questions_in_flight_reaches_a_baseline_client_too() -> None:
    emitted, _, r = await client_sends_user_query({"query": "q1"}, ack_id=None)
    assert emitted == [] and r.master.dispatcher.unfinished(SESSION) == 1  # accepted: no event from the edge
    edge = WebEdge(lambda: SESSION, lambda: True)
    edge.bind(r.master)
    edge._sessions["sid-1"] = SESSION
    shown: list[object] = []

    async def emit(event: str, data: object = None, to: str | None = None, **kwargs: Any) -> None:
        shown.append(data)

    edge.sio.emit = emit
    packet = [Events.USER_QUERY, {"query": "q"}]
    for _ in range(r.master.settings.max_in_flight_per_session):
        await edge.sio._handle_event_internal(edge.sio, "sid-1", "eio-1", packet, "/", None)
    refusals = [AiResponse.model_validate(d) for d in shown]
    assert [a.query for a in refusals] == ["q"] and refusals[0].error.startswith("too many questions in flight")


async def test_a_question_without_a_session_is_refused_as_an_answer_too() -> None:
    emitted, acks, _ = await client_sends_user_query({"query": "hello"}, ack_id=None, connected=False)
    assert acks == [] and AiResponse.model_validate(emitted[0][1]).error.startswith("no session")


async def test_only_a_client_that_asked_for_the_acknowledgement_marks_its_session_as_acknowledging() -> None:
    _, _, baseline = await client_sends_user_query({"query": "q"}, ack_id=None)
    _, _, chat = await client_sends_user_query({"query": "q"}, ack_id=1)
    assert not baseline.master.deliveries.acknowledges(SESSION)
    assert chat.master.deliveries.acknowledges(SESSION)
