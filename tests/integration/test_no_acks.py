"""Clients that never acknowledge, as the original page: `user-query` without an acknowledgement, and no
acknowledgement of `ai-response`. They hear refusals as answers, and their answers are not kept."""

from __future__ import annotations

from typing import Any

import httpx
import socketio

from tests.conftest import ClusterFactory
from tests.waiting import eventually

TIMEOUT = 20.0


class NeverAcks(socketio.AsyncClient):  # type: ignore[misc]
    """A python-socketio client that handles events but never sends an acknowledgement (python-socketio
    acknowledges every event that asks; the original page acknowledges none)."""

    async def _handle_event(self, namespace: str | None, id: int | None, data: list[Any]) -> None:
        await self._trigger_event(data[0], namespace or "/", *data[1:])


class BaselineUser:
    """Connected with a `NeverAcks` client; keeps every `ai-response` it receives."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sio = NeverAcks(reconnection=False)
        self.answers: list[dict[str, Any]] = []
        self.sio.on("ai-response", self._answer)

    async def _answer(self, data: dict[str, Any]) -> None:
        self.answers.append(data)

    async def __aenter__(self) -> BaselineUser:
        await self.sio.connect(self.url, transports=["websocket"], wait_timeout=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.sio.disconnect()

    async def ask(self, query: str) -> None:
        await self.sio.emit("user-query", {"query": query, "apiKey": ""})  # no callback: no ack asked for

    async def wait_answers(self, n: int) -> list[dict[str, Any]]:
        await eventually(lambda: len(self.answers) >= n, f"{n} ai-response events", TIMEOUT)
        return self.answers


async def test_a_client_that_never_acknowledges_hears_refusals_and_its_answers_are_not_kept(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = cluster_factory(workers=1, work_seconds=0.0, extra_env={"RATE_PER_MINUTE": "2", "MAX_QUERY_CHARS": "50"})
    async with BaselineUser(cluster.web_url) as user:
        await user.ask("")
        await user.ask("x" * 51)
        refusals = await user.wait_answers(2)
        assert [r["error"] for r in refusals] == [
            "the question is empty",
            "the question is too long: 51 characters, at most 50",
        ]
        assert [r["query"] for r in refusals] == ["", "x" * 51]
        assert all(r["error"] in r["response"] and r["processingTime"] == 0 for r in refusals)
        await user.ask("one")
        await user.wait_answers(3)
        await user.ask("two")
        answers = await user.wait_answers(4)
        assert [a["query"] for a in answers[2:]] == ["one", "two"] and not any(a["error"] for a in answers[2:])
        await user.ask("three")
        (over_rate,) = (await user.wait_answers(5))[4:]
        assert over_rate["query"] == "three" and over_rate["error"].startswith("too many questions: at most 2")
        # Nothing is kept for an acknowledgement that never comes (it would be, for an hour).
        status = f"{cluster.web_url}/api/status"
        operator = cluster.operator_headers
        await eventually(lambda: httpx.get(status, headers=operator).json()["undelivered"] == 0, "no answer kept", 5.0)
