"""Socket.IO event names (default namespace)."""

from __future__ import annotations

from typing import Final


class Events:
    """Event names between the master and browsers or notebooks."""

    # Baseline.
    SESSION_ID: Final = "session-id"  # master -> client on connect: the session id
    USER_QUERY: Final = "user-query"  # client -> master: {query, apiKey?}; acknowledged (extension)
    TASK_QUEUED: Final = "task-queued"  # master -> client: {taskId, position}
    AI_RESPONSE: Final = "ai-response"  # master -> client: {query, response, workerId, processingTime, ...}
    # Extensions.
    TASK_ASSIGNED: Final = "task-assigned"  # master -> client: {taskId, workerId}
    STATUS: Final = "system-status"  # master -> every client, when it changes: {workers, idle, busy, queued}
    DASHBOARD: Final = "dashboard"  # master -> dashboard clients only, about once a second: DashboardSnapshot


# A client that connects with `auth: {dashboard: true}` is a dashboard, not a chat session: it gets no session
# id and no answers, only `dashboard` snapshots (a key of the connection's auth, not an event).
DASHBOARD_AUTH_KEY: Final = "dashboard"
