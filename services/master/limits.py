"""Per-session limits on questions: how many per minute."""

from __future__ import annotations

from collections import deque

WINDOW_MS = 60_000


class RateLimiter:
    """At most `per_minute` questions per session in any sliding minute."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._recent: dict[str, deque[int]] = {}

    def allow(self, session_id: str, now_ms: int) -> int:
        """Record a question and return 0, or return the milliseconds to wait when over the limit."""
        recent = self._recent.setdefault(session_id, deque())
        while recent and recent[0] <= now_ms - WINDOW_MS:
            recent.popleft()
        if len(recent) >= self.per_minute:
            return recent[0] + WINDOW_MS - now_ms
        recent.append(now_ms)
        return 0

    def forget_idle(self, now_ms: int) -> None:
        """Drop sessions with no question in the last minute (keeps memory bounded)."""
        for session_id in [s for s, r in self._recent.items() if not r or r[-1] <= now_ms - WINDOW_MS]:
            del self._recent[session_id]
