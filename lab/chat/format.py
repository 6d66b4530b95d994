"""What the chat panel shows, as plain data and HTML: a question's outcome, its progress and metadata
lines, and the status bar. Everything from the network goes through `html.escape` here."""

from __future__ import annotations

import html
from typing import Any

from lab.loadgen.client import Exchange
from services.protocol import Events, SystemStatus, worker_language

_COLOURS = {"connecting": "#888", "connected": "#2a9d3a", "reconnecting": "#d98b00", "disconnected": "#c62828"}


def language_of(worker_id: str) -> str:
    """The worker's language, read from its id by the protocol's convention ("" when it does not follow it)."""
    return worker_language(worker_id) or ""


def text_html(text: str, style: str = "") -> str:
    """HTML that shows `text` literally: markup in it is escaped, line breaks are kept."""
    return f'<div style="white-space: pre-wrap; {style}">{html.escape(text)}</div>'


def question_record(query: str, exchange: Exchange | None, failure: str | None) -> dict[str, Any]:
    """A question's outcome as plain data (what `ChatPanel.wait` returns); `failure` is why it never became
    a task, if it did not."""
    ex = exchange
    reply = ex.answer if ex else None
    error = failure if failure is not None else reply.error if reply else ""
    worker_id = reply.workerId if reply else ex.worker_id if ex else ""
    total = ex.answered_at - ex.sent_at if ex and ex.answered_at is not None else None
    return {
        "task_id": ex.task_id if ex else "",
        "question": query,
        "worker_id": worker_id,
        "language": language_of(worker_id),
        "processing_time_ms": reply.processingTime if reply else None,
        "total_ms": round(total * 1000) if total is not None else None,
        "positions": list(ex.positions) if ex else [],
        "model": reply.model if reply else "",
        "answer": None if error or reply is None else reply.response,
        "error": error or None,
    }


def progress_text(exchange: Exchange | None, last_event: str) -> str:
    """Where an open question stands; `last_event` is the latest event the master sent for its task."""
    if exchange is None:
        return "sending…"
    if last_event == Events.TASK_ASSIGNED:
        return f"assigned to worker {exchange.worker_id}, working…"
    if exchange.positions and exchange.positions[-1] > 0:
        return f"queued, position {exchange.positions[-1]}"
    return "handing to a worker…"


def meta_text(rec: dict[str, Any]) -> str:
    """The metadata line under an answer: worker, language, times, model and queue positions."""
    processing = rec["processing_time_ms"]
    parts = [
        f"worker {rec['worker_id'] or 'unknown'}",
        f"language {rec['language'] or 'unknown'}",
        f"processing {'?' if processing is None else processing} ms",
        f"total {'?' if rec['total_ms'] is None else rec['total_ms']} ms",
    ]
    if rec["model"]:
        parts.append(f"model {rec['model']}")
    if rec["positions"]:
        parts.append("queue positions " + " → ".join(str(p) for p in rec["positions"]))
    return " · ".join(parts)


def status_html(state: str) -> str:
    """The connection state with a coloured dot; `state` is one of the panel's statuses."""
    dot = f'<span style="color: {_COLOURS[state]}">●</span>'
    return f"{dot} {html.escape(state)}"


def session_html(session_id: object) -> str:
    """The session id the master gave, as code."""
    return f"session <code>{html.escape(str(session_id))}</code>"


def system_html(status: SystemStatus) -> str:
    """The master's system status (workers, busy, queued) as one line."""
    return html.escape(f"{status.workers} workers · {status.busy} busy · {status.queued} queued")
