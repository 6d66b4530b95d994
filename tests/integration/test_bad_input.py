"""Bad input gets a clear error, changes nothing else, and the master keeps serving."""

from __future__ import annotations

import re

import httpx
import pytest

from lab.loadgen.client import ChatClient
from lab.system.local import LocalCluster
from tests.peers import peer_for, raw_json
from tests.waiting import wait_until


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (None, "expected a JSON object"),
        ("just a string", "expected a JSON object"),
        ([1, 2], "expected a JSON object"),
        (42, "expected a JSON object"),
        ({}, "query"),
        ({"query": 7}, "query"),
        ({"query": ""}, "empty"),
        ({"query": "   \n\t "}, "empty"),
        ({"query": "x" * 8001}, "too long: 8001 characters, at most 8000"),
        ({"query": "fine", "apiKey": ["not", "a", "string"]}, "apiKey"),
    ],
)
async def test_bad_user_query_gets_a_clear_error(system: LocalCluster, payload: object, expected: str) -> None:
    async with ChatClient(system.web_url) as user:
        bad = await user.send_raw(payload)
        assert bad.ack.error is not None and expected in bad.ack.error, bad.ack
        assert bad.ack.taskId is None and not bad.ack.accepted
        good = await user.ask("still there?")
        assert good.task_id
        await user.wait_answers(1, timeout=20)


def test_bad_payloads_on_every_master_topic_are_ignored(system: LocalCluster) -> None:
    before = httpx.get(f"{system.web_url}/api/status", headers=system.operator_headers).json()
    peer = peer_for(system, "go-worker-prober")
    garbage = [
        b"",
        b"null",
        b"not json",
        b"\xff\xfe",
        b"[1,2,3]",
        b'"a string"',
        raw_json({"worker_id": 5}),
        raw_json({"worker_id": "a/b/#", "language": "go"}),
        raw_json({"worker_id": "", "language": "go"}),
        raw_json({"worker_id": "go-worker-x", "status": "sleeping"}),
        raw_json({"language": "go"}),
        b"{" * 100_000,
    ]
    try:
        for topic in (peer.topics.register, peer.topics.status):
            for payload in garbage:
                peer.publish(topic, payload)
    finally:
        peer.close()

    def counted() -> int:
        found = re.search(
            r'swarm_bad_messages_total\{source="mqtt"\} (\d+)',
            httpx.get(f"{system.web_url}/metrics", headers=system.operator_headers).text,
        )
        return int(found.group(1)) if found else 0

    wait_until(lambda: counted() >= 2 * len(garbage), "the master counted every bad message")
    after = httpx.get(f"{system.web_url}/api/status", headers=system.operator_headers).json()
    assert {w["worker_id"] for w in after["workers"]} == {w["worker_id"] for w in before["workers"]}
    metrics = httpx.get(f"{system.web_url}/metrics", headers=system.operator_headers).text
    found = re.search(r'swarm_bad_messages_total\{source="mqtt"\} (\d+)', metrics)
    assert found and int(found.group(1)) == 2 * len(garbage)
    assert httpx.get(f"{system.web_url}/healthz").status_code == 200
