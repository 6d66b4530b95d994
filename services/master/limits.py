"""Limits on questions, per session and per client address: how many per minute, how many unanswered."""

from __future__ import annotations

from collections import Counter, deque

WINDOW_MS = 60_000


class RateLimiter:
    """At most `per_minute` questions per key (a session, an address) in any sliding minute."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._recent: dict[str, deque[int]] = {}

    def wait_ms(self, key: str, now_ms: int) -> int:
        """0 when `key` may ask now, else the milliseconds until it may (nothing is recorded)."""
        recent = self._recent.get(key)
        if recent is None:
            return 0
        while recent and recent[0] <= now_ms - WINDOW_MS:
            recent.popleft()
        if len(recent) >= self.per_minute:
            return max(1, recent[0] + WINDOW_MS - now_ms)
        return 0

    def record(self, key: str, now_ms: int) -> None:
        """Count a question of `key` asked at `now_ms`."""
        self._recent.setdefault(key, deque()).append(now_ms)

    def allow(self, key: str, now_ms: int) -> int:
        """Record a question and return 0, or return the milliseconds to wait when over the limit."""
        wait = self.wait_ms(key, now_ms)
        if not wait:
            self.record(key, now_ms)
        return wait

    def forget_idle(self, now_ms: int) -> None:
        """Drop keys with no question in the last minute (keeps memory bounded)."""
        for key in [k for k, r in self._recent.items() if not r or r[-1] <= now_ms - WINDOW_MS]:
            del self._recent[key]


class InFlight:
    """Unanswered questions by key (a client address): counted from acceptance until answered or failed."""

    def __init__(self) -> None:
        self._key: dict[str, str] = {}  # task id -> key
        self._count: Counter[str] = Counter()

    def of(self, key: str) -> int:
        """How many questions of `key` are unanswered."""
        return self._count[key]

    def add(self, task_id: str, key: str) -> None:
        """Count task `task_id` against `key`."""
        self._key[task_id] = key
        self._count[key] += 1

    def done(self, task_id: str) -> None:
        """Task `task_id` was answered or failed (nothing happens for one not counted, e.g. restored)."""
        key = self._key.pop(task_id, None)
        if key is None:
            return
        self._count[key] -= 1
        if self._count[key] <= 0:
            del self._count[key]

    def __len__(self) -> int:
        return len(self._key)

    @property
    def keys(self) -> int:
        """How many keys have unanswered questions."""
        return len(self._count)
