"""Asking the master questions as a user does (Socket.IO), for the conformance cases."""

from __future__ import annotations

from typing import Any

from lab.loadgen.client import ChatClient, Exchange
from services.protocol import AiResponse
from tests.waiting import eventually

# Traces and internals a user must never see in an error message, whatever the worker's language.
TRACE_MARKERS = (
    "Traceback",
    "goroutine ",
    "panic:",
    "\tat ",
    ".java:",
    ".go:",
    '.py"',
    "Exception",
    "http://",
    "https://",
)


async def ask(user: ChatClient, query: str, api_key: str | None = None, model: str | None = None) -> Exchange:
    """Send one question (with a key and a model, if given) and return it once the master took it."""
    payload: dict[str, Any] = {"query": query}
    if api_key is not None:
        payload["apiKey"] = api_key
    if model is not None:
        payload["model"] = model
    exchange = await user.send_raw(payload, query=query)
    assert exchange.task_id, f"the master did not take {query!r}: {exchange.ack}"
    return exchange


async def answer_of(exchange: Exchange, timeout: float = 15.0) -> AiResponse:
    """Wait for the answer to `exchange`."""
    await eventually(lambda: exchange.answers, f"an answer to {exchange.query[:40]!r}", timeout)
    return exchange.answers[0]
