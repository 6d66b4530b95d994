"""MQTT topic names: the baseline ones and our extensions, under a configurable prefix."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "upb"


@dataclass(frozen=True)
class Topics:
    """Every MQTT topic the system uses, derived from one prefix (`TOPIC_PREFIX`)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix or any(c in self.prefix for c in "+#") or self.prefix.endswith("/"):
            raise ValueError(f"invalid topic prefix {self.prefix!r}")

    # Baseline.
    @property
    def register(self) -> str:
        """Workers announce themselves here (worker -> master)."""
        return f"{self.prefix}/workers/register"

    @property
    def status(self) -> str:
        """Workers report idle/busy here, and their Last Will says offline (worker -> master)."""
        return f"{self.prefix}/workers/status"

    def tasks(self, worker_id: str) -> str:
        """The task topic of one worker (master -> that worker)."""
        return f"{self.prefix}/workers/{worker_id}/tasks"

    @property
    def logs(self) -> str:
        """Human-readable log lines from everyone."""
        return f"{self.prefix}/logs"

    # Extensions.
    @property
    def results(self) -> str:
        """A summary of every finished task, published by the master (no text, no key)."""
        return f"{self.prefix}/results"

    @property
    def master_status(self) -> str:
        """The master's retained presence, online or (by Last Will) offline."""
        return f"{self.prefix}/master/status"

    def worker_id_from_tasks(self, topic: str) -> str | None:
        """The worker id in a task topic, or None when `topic` is not one."""
        head, tail = f"{self.prefix}/workers/", "/tasks"
        if topic.startswith(head) and topic.endswith(tail):
            middle = topic[len(head) : -len(tail)]
            return middle if middle and "/" not in middle else None
        return None
