"""The bookkeeping of a local cluster's processes: by name, how each was started, and what the lab did to
them (killed as a fault, retired, replaced). Thread-safe; starts and stops nothing itself."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from lab.system.procs import ManagedProcess

__all__ = ["ProcessTable"]

ESSENTIALS = ("mosquitto", "master")
AUTOSCALER = "autoscaler"
SUPERVISED = (*ESSENTIALS, AUTOSCALER)  # started again under their own names; a worker's replacement has a new one


class ProcessTable:
    """Processes by name (mosquitto, master, worker-1, ...) and workers by worker id."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._procs: dict[str, ManagedProcess] = {}
        self._commands: dict[str, tuple[list[str], Mapping[str, str]]] = {}  # name -> (argv, env) it started with
        self._worker_names: dict[str, str] = {}  # worker id -> process name
        self._worker_env: dict[str, Mapping[str, str]] = {}  # process name -> its own extra variables
        self._worker_language: dict[str, str] = {}  # process name -> the worker's language
        self._retired: set[str] = set()  # workers replaced after they died, or stopped on purpose
        self._injected: set[ManagedProcess] = set()  # killed by kill_worker/kill_master: a fault, not a crash
        self._worker_count = 0
        self._also_supervised: list[str] = []  # more processes kept running under their own names (masters)

    def record(self, name: str, proc: ManagedProcess, argv: list[str], env: Mapping[str, str]) -> None:
        """Keep `proc` as `name` (replacing an earlier one) with the command it was started with."""
        with self.lock:
            self._procs[name] = proc
            self._commands[name] = (argv, env)

    def command(self, name: str) -> tuple[list[str], Mapping[str, str]]:
        """The argv and environment `name` was first started with."""
        with self.lock:
            return self._commands[name]

    def all(self) -> dict[str, ManagedProcess]:
        """Every process recorded so far by name."""
        with self.lock:
            return dict(self._procs)

    def new_worker_name(self, env: Mapping[str, str], language: str = "python") -> str:
        """The process name of the next worker (worker-N), remembering its own extra `env` and language."""
        with self.lock:
            self._worker_count += 1
            name = f"worker-{self._worker_count}"
            self._worker_env[name] = dict(env)
            self._worker_language[name] = language
            return name

    def worker_language(self, name: str) -> str:
        """The language of worker process `name` (its replacement has the same)."""
        with self.lock:
            return self._worker_language.get(name, "python")

    def name_worker(self, worker_id: str, name: str) -> None:
        """Note that worker `worker_id` runs as process `name`."""
        with self.lock:
            self._worker_names[worker_id] = name

    def worker_name(self, worker_id: str) -> str:
        """The process name of worker `worker_id`."""
        with self.lock:
            return self._worker_names[worker_id]

    def worker_env(self, name: str) -> Mapping[str, str]:
        """The extra variables worker process `name` was started with."""
        with self.lock:
            return self._worker_env.get(name, {})

    def worker_process(self, name: str) -> ManagedProcess:
        """The process of a worker given by worker id or process name."""
        with self.lock:
            proc = self._procs.get(self._worker_names.get(name, name))
            if proc is None or not proc.name.startswith("worker-"):
                raise KeyError(f"no worker named {name!r}; known: {', '.join(self._worker_names)}")
            return proc

    def running_worker_ids(self) -> list[str]:
        """Ids of the workers neither stopped, killed, replaced nor exited, in start order."""
        with self.lock:
            return [wid for wid, name in self._worker_names.items() if self._is_running_worker(name)]

    def _is_running_worker(self, name: str) -> bool:
        proc = self._procs[name]
        gone = name in self._retired or proc in self._injected or proc.stopped_on_purpose
        return not gone and not proc.has_exited()

    def essential(self, name: str) -> ManagedProcess:
        """The current broker or master process."""
        with self.lock:
            proc = self._procs.get(name)
        if proc is None:
            raise RuntimeError(f"{name} was not started")
        return proc

    def supervise(self, name: str) -> None:
        """Keep `name` running too, started again under its own name (one of several masters)."""
        with self.lock:
            self._also_supervised.append(name)

    def inject(self, proc: ManagedProcess) -> None:
        """Note that the lab kills `proc` as a fault (not a crash)."""
        with self.lock:
            self._injected.add(proc)

    def was_injected(self, proc: ManagedProcess) -> bool:
        """Whether `proc` was killed as a fault."""
        with self.lock:
            return proc in self._injected

    def retire(self, name: str) -> None:
        """Note that worker process `name` is gone for good (stopped on purpose, or replaced)."""
        with self.lock:
            self._retired.add(name)

    def supervised(self) -> list[ManagedProcess]:
        """What a supervisor keeps running: the broker, the master, the autoscaler (if there is one) and every
        worker not stopped or replaced."""
        with self.lock:
            workers = [n for n in self._worker_names.values() if n not in self._retired]
            names = [*SUPERVISED, *self._also_supervised, *workers]
            return [self._procs[n] for n in names if n in self._procs]

    def exited(self) -> dict[str, int]:
        """Processes that exited although the lab neither stopped nor killed them: name -> exit code."""
        with self.lock:
            procs = [p for p in self._procs.values() if p not in self._injected]
        codes = {p.name: p.returncode for p in procs if not p.stopped_on_purpose}
        return {name: code for name, code in codes.items() if code is not None}
