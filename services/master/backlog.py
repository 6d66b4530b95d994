"""The bound on the whole queue: a question whose predicted latency would break the latency target is refused.

The prediction is the question's wait for a worker plus one service time. Workers free up when their
current task ends (its expected remaining time: the mean service time minus how long it has run, never
below 0; an idle worker now) and then once every mean service time, so the question at queue position p
is assigned at the p-th of those moments: the position in the queue, the workers online and what each is
doing, and the service times observed (the last SERVICE_WINDOW, from assignment to accepted result).

Until a first result there is no service time to predict with, and the question is accepted (the queue is
as the original promised it; the limits per address still hold). With no worker online the question is
predicted as if the workers last seen online were back and idle, so a short absence (a rolling update, a
broker restart) queues what they would answer in time and a long one does not grow a backlog past it;
before any worker was seen online, it is accepted.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

from services.master.dispatch import Dispatcher
from services.master.registry import WorkerState

SERVICE_WINDOW = 200


class ServiceTimes:
    """The mean of the last `window` service times observed, in ms (None before the first)."""

    def __init__(self, window: int = SERVICE_WINDOW) -> None:
        self._times: deque[int] = deque(maxlen=window)
        self._sum = 0

    def observe(self, took_ms: int) -> None:
        """One task took `took_ms` from its assignment to its accepted result."""
        took_ms = max(0, took_ms)
        if len(self._times) == self._times.maxlen:
            self._sum -= self._times[0]
        self._times.append(took_ms)
        self._sum += took_ms

    @property
    def mean_ms(self) -> float | None:
        """The mean service time, None when nothing was observed yet."""
        return self._sum / len(self._times) if self._times else None


def predicted_wait_ms(position: int, residuals_ms: Sequence[float], service_ms: float) -> float:
    """When the question at queue `position` (1-based; 0: assigned at once) gets a worker, in ms from now.

    `residuals_ms` is, for each worker online, when it frees up (0: idle); after that each frees up once
    every `service_ms`. The p-th moment a worker frees up is the j-th smallest residual plus k service
    times, for p - 1 = k * workers + (j - 1) (residuals are at most one service time, so the order holds)."""
    if position <= 0 or not residuals_ms:
        return 0.0
    slots = sorted(residuals_ms)
    rounds, index = divmod(position - 1, len(slots))
    return slots[index] + rounds * service_ms


class Backlog:
    """Decides whether the queue may take one more question within `target_ms` (0: no bound)."""

    def __init__(self, target_ms: int) -> None:
        self.target_ms = target_ms
        self.service = ServiceTimes()
        self._fleet = 0  # workers online when last seen with some

    def observe(self, took_ms: int) -> None:
        """A task took `took_ms` from its assignment to its accepted result."""
        self.service.observe(took_ms)

    def predicted_latency_ms(self, dispatcher: Dispatcher, now_ms: int) -> float | None:
        """A new question's predicted latency (wait plus service), None when it cannot be told (no result
        observed yet, or no worker ever seen online)."""
        registry = dispatcher.registry
        idle, busy = registry.count(WorkerState.IDLE), registry.count(WorkerState.BUSY)
        self._fleet = idle + busy or self._fleet
        service = self.service.mean_ms
        if service is None:
            return None
        if self.takes_at_once(dispatcher):
            return service
        residuals = self._residuals(dispatcher, service, now_ms)
        if not residuals:
            return None
        return predicted_wait_ms(dispatcher.queue_length + 1, residuals, service) + service

    @staticmethod
    def takes_at_once(dispatcher: Dispatcher) -> bool:
        """Whether a new question would go to an idle worker at once (it waits in no queue)."""
        return dispatcher.registry.count(WorkerState.IDLE) > dispatcher.queue_length and not dispatcher.held

    def fair_share(self, dispatcher: Dispatcher, now_ms: int, others: int) -> int | None:
        """How many unanswered questions one address may hold while `others` other addresses hold some: an even
        share of what the system answers within the target (those in service and the queue positions answered
        in time), one share kept free for an address that has none yet; at least 1. None when it cannot be told.

        Without it, one address allowed more unanswered questions than the queue's bound would fill the queue
        alone, and everyone else would be told "too busy"."""
        service = self.service.mean_ms
        if not self.target_ms or service is None:
            return None
        residuals = self._residuals(dispatcher, service, now_ms)
        if not residuals:
            return None
        step = max(service, 1.0)
        in_time = sum(max(0, math.floor((self.target_ms - r) / step)) for r in residuals)
        return max(1, (dispatcher.in_flight + in_time) // (others + 2))

    def step_ms(self) -> int:
        """How often the queue moves on by one question: the mean service time over the workers online."""
        return round((self.service.mean_ms or 0.0) / max(1, self._fleet))

    def _residuals(self, dispatcher: Dispatcher, service: float, now_ms: int) -> list[float]:
        """When each worker online frees up (ms from now), or, with none online, the workers last seen online
        as if back and idle; empty when no worker was ever seen."""
        registry = dispatcher.registry
        if registry.count(WorkerState.IDLE) + registry.count(WorkerState.BUSY):
            times = (self._residual(w.state, w.task_id, dispatcher, service, now_ms) for w in registry)
            return [r for r in times if r is not None]
        return [0.0] * self._fleet

    def retry_after_ms(self, dispatcher: Dispatcher, now_ms: int) -> int:
        """0 when a new question is predicted to be answered within the target, else how long until it
        would be (the predicted latency over the target, in ms)."""
        if not self.target_ms:
            return 0
        latency = self.predicted_latency_ms(dispatcher, now_ms)
        if latency is None or latency <= self.target_ms:
            return 0
        return max(1, math.ceil(latency - self.target_ms))

    @staticmethod
    def _residual(
        state: WorkerState, task_id: str | None, dispatcher: Dispatcher, service: float, now_ms: int
    ) -> float | None:
        """When a worker frees up (ms from now): None for a worker that is not online."""
        if state is WorkerState.IDLE:
            return 0.0
        if state is not WorkerState.BUSY:
            return None
        task = dispatcher.task(task_id) if task_id else None
        if task is None:
            return service  # busy with work the master did not give: assume a whole task
        return max(0.0, service - (now_ms - task.assigned_ms))
