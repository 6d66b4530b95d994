"""Which of several standby masters leads, from what their `GET /leader` answered: shared by the local HA shape
(lab.system.ha) and the namespace nodes (lab.system.nodes)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def leading_epoch(info: object) -> int | None:
    """The epoch a `/leader` body says its master leads with (None: it does not lead, or said nothing)."""
    if isinstance(info, dict) and info.get("leading") is True and isinstance(epoch := info.get("epoch"), int):
        return epoch
    return None


def newest_leader(answers: Iterable[tuple[T, object]]) -> tuple[T, int] | None:
    """Of (master, its `/leader` body) pairs, the one that leads with the highest epoch (two may say so for a
    moment: a deposed one that does not know it yet)."""
    leading = [(master, epoch) for master, info in answers if (epoch := leading_epoch(info)) is not None]
    return max(leading, key=lambda found: found[1]) if leading else None


def wait_leader(
    find: Callable[[], tuple[T, int] | None], timeout: float, after_epoch: int = 0, poll: float = 0.05
) -> tuple[T, int]:
    """Poll `find` until a master leads with an epoch above `after_epoch`; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find()
        if found is not None and found[1] > after_epoch:
            return found
        time.sleep(poll)
    raise TimeoutError(f"no master led with an epoch above {after_epoch} within {timeout:g} s")
