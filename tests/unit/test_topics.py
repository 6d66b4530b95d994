"""Tests of the names on the wire: MQTT topics (baseline and ours) under a prefix, and Socket.IO events."""

from __future__ import annotations

import pytest

from services.protocol import Events, Topics
from services.protocol.topics import DEFAULT_PREFIX

WORKER = "python-worker-3f9a1c"


def test_default_prefix_is_upb() -> None:
    assert DEFAULT_PREFIX == "upb"
    assert Topics().prefix == "upb"


def test_baseline_topics_are_byte_for_byte_the_original_ones() -> None:
    topics = Topics()
    assert topics.register == "upb/workers/register"
    assert topics.status == "upb/workers/status"
    assert topics.tasks(WORKER) == "upb/workers/python-worker-3f9a1c/tasks"
    assert topics.logs == "upb/logs"


def test_extension_topics_live_under_the_same_prefix() -> None:
    topics = Topics()
    assert topics.results == "upb/results"
    assert topics.master_status == "upb/master/status"


def test_every_topic_follows_a_custom_prefix() -> None:
    topics = Topics("lab/run-7")
    assert [topics.register, topics.status, topics.tasks("w1"), topics.logs, topics.results, topics.master_status] == [
        "lab/run-7/workers/register",
        "lab/run-7/workers/status",
        "lab/run-7/workers/w1/tasks",
        "lab/run-7/logs",
        "lab/run-7/results",
        "lab/run-7/master/status",
    ]


def test_topics_of_one_prefix_are_all_different() -> None:
    topics = Topics()
    names = [
        topics.register,
        topics.status,
        topics.tasks("register"),
        topics.logs,
        topics.results,
        topics.master_status,
    ]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("prefix", ["", "upb/", "a/+", "up#b", "#", "+"])
def test_invalid_prefix_is_rejected(prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid topic prefix"):
        Topics(prefix)


def test_worker_id_is_read_back_from_its_task_topic() -> None:
    topics = Topics()
    assert topics.worker_id_from_tasks(topics.tasks(WORKER)) == WORKER


def test_worker_id_is_read_back_under_a_custom_prefix() -> None:
    topics = Topics("lab/x")
    assert topics.worker_id_from_tasks("lab/x/workers/go-worker-1/tasks") == "go-worker-1"


@pytest.mark.parametrize(
    "topic",
    [
        "upb/workers/register",
        "upb/workers/status",
        "upb/logs",
        "upb/workers//tasks",
        "upb/workers/tasks",
        "upb/workers/a/b/tasks",
        "other/workers/w1/tasks",
        "upb/workers/w1/tasks/extra",
    ],
)
def test_topics_that_are_not_a_task_topic_give_no_worker_id(topic: str) -> None:
    assert Topics().worker_id_from_tasks(topic) is None


def test_baseline_socketio_event_names_are_the_original_ones() -> None:
    assert (Events.SESSION_ID, Events.USER_QUERY, Events.TASK_QUEUED, Events.AI_RESPONSE) == (
        "session-id",
        "user-query",
        "task-queued",
        "ai-response",
    )
