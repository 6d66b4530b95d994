"""Users' questions on their way in: the limits a question must pass before it becomes a task."""

from __future__ import annotations

import math
import secrets
import uuid

from services.master.dispatch import Dispatcher, Task
from services.master.limits import RateLimiter
from services.master.settings import MasterSettings
from services.protocol import AiResponse, UserQuery


def admit(
    query: UserQuery,
    session_id: str,
    now_ms: int,
    settings: MasterSettings,
    dispatcher: Dispatcher,
    rates: RateLimiter,
) -> Task | str:
    """The new task a question becomes, or why it may not (a message fit for the user).

    Only an admitted question counts against the session's rate. The task keeps the question exactly as
    the user sent it (leading and trailing whitespace too): the answer echoes it, and baseline clients
    match answers by it. A question of whitespace alone is empty; the length limit counts every character."""
    text = query.query
    limit = settings.max_query_chars
    if not text.strip():
        return "the question is empty"
    if len(text) > limit:
        return f"the question is too long: {len(text)} characters, at most {limit}"
    in_flight = settings.max_in_flight_per_session
    if dispatcher.unfinished(session_id) >= in_flight:
        return f"too many questions in flight: at most {in_flight} at once; wait for an answer"
    wait_ms = rates.allow(session_id, now_ms)
    if wait_ms:
        n = settings.rate_per_minute
        return f"too many questions: at most {n} per minute; try again in {math.ceil(wait_ms / 1000)} s"
    return Task(
        task_id=str(uuid.uuid4()),
        session_id=session_id,
        query=text,
        submitted_ms=now_ms,
        api_key=(query.apiKey or "").strip(),
        model=query.model or None,
    )


def refusal(text: str, reason: str, now_ms: int) -> AiResponse:
    """A refused question told as an `ai-response`, for a client that did not ask for the `user-query`
    acknowledgement (a baseline client shows only events): `response` and `error` say why."""
    return AiResponse(
        query=text, response=f"Not accepted: {reason}", workerId="", processingTime=0, timestamp=now_ms, error=reason
    )


def new_session_id() -> str:
    """An unguessable session id (a bearer secret: never published, never logged)."""
    return secrets.token_urlsafe(24)
