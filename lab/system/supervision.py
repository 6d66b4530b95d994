"""Restarting processes that die, like Swarm's restart policy: a short backoff, and a crash loop stops it."""

from __future__ import annotations

import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from lab.system.procs import ManagedProcess


def describe_exit(code: int) -> str:
    """`exited with code 1`, `killed by SIGKILL`."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart a process that exited on its own, and when to give up on it.

    An exit within `window` seconds of starting is a rapid failure; after `max_rapid` of them in a row the
    process is crash-looping and is left down. The n-th rapid failure in a row waits
    `base_delay * 2**(n-1)` (at most `max_delay`) before the restart; an exit after a longer run, or one the
    lab caused on purpose (kill_worker, kill_master), is restarted after `base_delay` and resets the count.
    """

    base_delay: float = 0.5
    max_delay: float = 8.0
    window: float = 10.0
    max_rapid: int = 5

    def __post_init__(self) -> None:
        if self.base_delay < 0 or self.max_delay < self.base_delay or self.window < 0 or self.max_rapid < 1:
            raise ValueError(f"invalid restart policy {self}")

    def after_exit(self, rapid_so_far: int, ran_for: float, injected: bool) -> tuple[int, float | None]:
        """(rapid failures in a row now, delay before the restart or None to give up)."""
        if injected or ran_for >= self.window:
            return 0, self.base_delay
        rapid = rapid_so_far + 1
        if rapid >= self.max_rapid:
            return rapid, None
        return rapid, min(self.max_delay, self.base_delay * 2 ** (rapid - 1))


@dataclass(frozen=True)
class Restart:
    """One restart the supervisor did."""

    name: str
    """The process that exited (mosquitto, master, worker-2)."""
    returncode: int
    replacement: str
    """The process started in its place (the same name, or worker-5 for a worker)."""
    detail: str
    """How it was restarted: `on the same ports`, `as worker-5 (python-worker-1a2b3c)`."""
    at: float
    """time.time() of the restart."""

    def __str__(self) -> str:
        return f"restarted {self.name} ({describe_exit(self.returncode)}) {self.detail}"


Replace = Callable[[ManagedProcess], tuple[str, str]]
"""Starts what replaces an exited process; returns (the new process's name, how it was restarted)."""


@dataclass
class _Pending:
    proc: ManagedProcess
    code: int
    rapid: int
    due: float


class Supervisor:
    """A thread that restarts the cluster's processes when they exit without the lab stopping them.

    It acts only while holding `lock`; whoever stops or restarts a process on purpose holds it too, and marks
    the process as stopped on purpose (ManagedProcess.terminate), so the two never fight.
    """

    def __init__(
        self,
        watched: Callable[[], list[ManagedProcess]],
        injected: Callable[[ManagedProcess], bool],
        replace: Replace,
        lock: threading.Lock,
        report: Callable[[str], None],
        policy: RestartPolicy | None = None,
        poll_seconds: float = 0.1,
    ) -> None:
        self._watched = watched  # the processes to keep running now (exited ones included until replaced)
        self._injected = injected  # whether the lab killed it as an experiment (a fault, not a crash)
        self._replace = replace
        self._lock = lock
        self._report = report
        self._policy = policy or RestartPolicy()
        self._poll = poll_seconds
        self._halt = threading.Event()
        self._pending: dict[ManagedProcess, _Pending] = {}
        self._rapid: dict[str, int] = {}  # process name -> rapid failures in a row of it and its predecessors
        self._results_lock = threading.Lock()
        self._restarts: list[Restart] = []
        self._given_up: dict[str, int] = {}
        self._abandoned: set[ManagedProcess] = set()
        self._thread = threading.Thread(target=self._run, name="lab-supervisor", daemon=True)

    @property
    def restarts(self) -> list[Restart]:
        """Every restart so far, oldest first."""
        with self._results_lock:
            return list(self._restarts)

    @property
    def given_up(self) -> dict[str, int]:
        """Processes left down because they kept crashing: name -> last exit code."""
        with self._results_lock:
            return dict(self._given_up)

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and wait for a restart in progress to finish."""
        self._halt.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        while not self._halt.wait(self._poll):
            with self._lock:
                if self._halt.is_set():
                    return
                try:
                    self._tick(time.monotonic())
                except Exception:
                    if self._halt.is_set():
                        return  # the cluster is stopping: a refused spawn is expected
                    traceback.print_exc()

    def _tick(self, now: float) -> None:
        """Notice new exits, then restart those whose delay has passed."""
        current = self._watched()
        for proc in current:
            if proc in self._pending or proc in self._abandoned:
                continue
            if proc.stopped_on_purpose or not proc.has_exited():
                continue
            self._exited(proc, now)
        for proc, pending in list(self._pending.items()):
            if pending.due > now:
                continue
            del self._pending[proc]
            if proc not in current or proc.stopped_on_purpose:
                continue  # stopped or restarted on purpose meanwhile
            self._restart(pending)

    def _exited(self, proc: ManagedProcess, now: float) -> None:
        """Decide about a process that just exited."""
        code = proc.reap()
        rapid, delay = self._policy.after_exit(
            self._rapid.pop(proc.name, 0), now - proc.started_at, self._injected(proc)
        )
        if delay is None:
            self._abandoned.add(proc)
            with self._results_lock:
                self._given_up[proc.name] = code
            self._report(
                f"{proc.name} exited {rapid} times in a row within {self._policy.window:g} s of starting "
                f"(last: {describe_exit(code)}); not restarting it again"
            )
            return
        self._pending[proc] = _Pending(proc, code, rapid, now + delay)

    def _restart(self, pending: _Pending) -> None:
        """Start the replacement of an exited process and say so."""
        name, detail = self._replace(pending.proc)
        self._rapid[name] = pending.rapid
        restart = Restart(pending.proc.name, pending.code, name, detail, time.time())
        with self._results_lock:
            self._restarts.append(restart)
        self._report(str(restart))
