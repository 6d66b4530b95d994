"""What changes the fleet: the `Actuator` protocol, and `LocalActuator`, which runs workers as child processes.

A scale-down takes only an idle worker the master has retired (it assigns a retired worker nothing more): the
master answers whether the worker is idle at that moment, and only then does the worker get SIGTERM. A worker
that took a task just before it was retired keeps it, and is stopped once it is idle again. On SIGTERM a worker
gives back or finishes its task, as it does for any stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import logging
import os
import secrets
import shlex
import shutil
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from services.autoscaler.client import MasterUnavailableError
from services.autoscaler.settings import AutoscalerSettings
from services.worker.settings import WorkerSettings

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
STOP_MARGIN_S = 5.0  # beyond the longest task, for the worker to say goodbye and exit
_PR_SET_PDEATHSIG = 1


class Actuator(Protocol):
    """Starts and stops workers."""

    async def current(self) -> int:
        """Workers it runs or has asked for (not those it is stopping)."""
        ...

    async def scale_to(self, target: int, idle_workers: list[str]) -> None:
        """Move towards `target` workers; a scale-down takes only workers of `idle_workers` (ids the master
        listed as idle)."""
        ...

    async def close(self) -> None:
        """Release what it holds (the local actuator stops its workers; a Swarm service keeps running)."""
        ...


class Retirer(Protocol):
    """The master's retire endpoint (MasterClient.retire)."""

    async def retire(self, worker_id: str) -> bool | None:
        """True: retired and idle; False: retired but still working; None: unknown to the master."""
        ...


def worker_command(language: str, command: str | None = None) -> list[str]:
    """The command that starts a worker of `language` (`command`, shell-quoted, when given); ValueError naming
    what to build when the Go or Java worker is not built."""
    if command:
        argv = shlex.split(command)
        if not argv or shutil.which(argv[0]) is None:
            raise ValueError(f"WORKER_COMMAND: {argv[0] if argv else command!r} is not a program that can be run here")
        return argv
    if language == "python":
        return [sys.executable, "-m", "services.worker"]
    if language == "go":
        binary, needs = REPO_ROOT / "services" / "worker-go" / "bin" / "worker-go", None
    else:
        home = REPO_ROOT / "services" / "worker-java"
        binary, needs = home / "worker-java", home / "target" / "worker-java.jar"
    missing = needs or binary
    if not missing.exists():
        raise ValueError(f"the {language} worker is not built ({missing} is missing): run `make workers`")
    return [str(binary)]


def stop_grace_s(env: Mapping[str, str]) -> float:
    """How long a stopping worker may take: its work time plus the model's timeout (unless it answers offline),
    plus a margin."""
    work = WorkerSettings.read_one("work_seconds", env)
    offline = WorkerSettings.read_one("model_mode", env) == "offline"
    model = 0.0 if offline else WorkerSettings.read_one("gemini_timeout_seconds", env)
    return float(work) + float(model) + STOP_MARGIN_S


def _with_parent_death_signal(argv: list[str]) -> tuple[list[str], Callable[[], None] | None]:
    """`argv` and a preexec function such that the worker gets SIGTERM when the autoscaler dies (killed
    without its close()): util-linux's setpriv where there is one, else prctl in the child."""
    if not sys.platform.startswith("linux"):
        return argv, None
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        return [setpriv, "--pdeathsig", "TERM", "--", *argv], None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl
            os._exit(1)

    return argv, preexec


@dataclass
class _Worker:
    """One worker process this actuator started."""

    worker_id: str
    process: asyncio.subprocess.Process
    retired: bool = False
    """The master assigns it nothing more; it is stopped once idle."""
    stopping: asyncio.Task[None] | None = None


class LocalActuator:
    """Workers as child processes of the autoscaler, each with its own id (`python-worker-auto3-1f2e`) and the
    autoscaler's environment (`env`); its `master` retires a worker before it is stopped."""

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        master: Retirer,
        language: str = "python",
        grace_s: float | None = None,
    ) -> None:
        self._command = list(command)
        self._env = dict(env)
        self._master = master
        self._language = language
        self._grace_s = stop_grace_s(env) if grace_s is None else grace_s
        self._numbers = itertools.count(1)
        self._workers: dict[str, _Worker] = {}
        # The heartbeat file each worker keeps for `--check`: beside the one the environment names, one each.
        health = env.get(WorkerSettings.env_name("health_file"))
        self._health_dir = Path(health).parent if health else None

    @property
    def worker_ids(self) -> list[str]:
        """Ids of the workers running now, stopping ones included, in start order."""
        return [w.worker_id for w in self._workers.values() if w.process.returncode is None]

    async def current(self) -> int:
        """Workers running and not on their way out (retired or stopping)."""
        self._reap()
        return len(self._active())

    async def scale_to(self, target: int, idle_workers: list[str]) -> None:
        """Start workers up to `target`, or retire and stop idle ones down to it; stop retired workers that
        finished their task."""
        self._reap()
        idle = set(idle_workers)
        try:
            for worker in [w for w in self._workers.values() if w.retired and w.stopping is None]:
                if worker.worker_id in idle:
                    await self._retire(worker)
            active = self._active()
            for _ in range(target - len(active)):
                await self._start()
            excess = len(active) - target
            # The newest first: the oldest have the warmest caches and the longest-lived connections.
            for worker in reversed([w for w in active if w.worker_id in idle]):
                if excess <= 0:
                    break
                if await self._retire(worker) is not None:
                    excess -= 1
        except MasterUnavailableError as e:
            log.warning("not scaling down further this round: %s", e)

    async def close(self) -> None:
        """Stop every worker it started (SIGTERM; SIGKILL after the grace period) and wait for them."""
        for worker in self._workers.values():
            if worker.stopping is None and worker.process.returncode is None:
                worker.stopping = asyncio.create_task(self._stop(worker))
        stopping = [w.stopping for w in self._workers.values() if w.stopping is not None]
        await asyncio.gather(*stopping, return_exceptions=True)
        self._workers.clear()

    def _active(self) -> list[_Worker]:
        return [w for w in self._workers.values() if not w.retired and w.stopping is None]

    def _reap(self) -> None:
        """Forget workers that exited; one that exited without being told to is logged."""
        for worker_id, worker in list(self._workers.items()):
            code = worker.process.returncode
            if code is None:
                continue
            if worker.stopping is None:
                log.warning("worker %s exited unexpectedly (code %s); no longer counted", worker_id, code)
                del self._workers[worker_id]
            elif worker.stopping.done():
                del self._workers[worker_id]

    async def _start(self) -> None:
        """Start one worker with a new id."""
        worker_id = f"{self._language}-worker-auto{next(self._numbers)}-{secrets.token_hex(2)}"
        env = {**self._env, WorkerSettings.env_name("worker_id"): worker_id}
        if self._health_dir is not None:
            env[WorkerSettings.env_name("health_file")] = str(self._health_dir / f"{worker_id}.health")
        argv, preexec = _with_parent_death_signal(self._command)
        process = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            # Its own process group: a Ctrl-C or a SIGTERM to the autoscaler's group reaches only the
            # autoscaler, which then stops its workers through close().
            start_new_session=True,
            preexec_fn=preexec,
        )
        self._workers[worker_id] = _Worker(worker_id, process)
        log.info("started worker %s (pid %s)", worker_id, process.pid)

    async def _retire(self, worker: _Worker) -> bool | None:
        """Retire `worker` at the master and stop it if it is idle; the master's answer (None: unknown to it)."""
        idle = await self._master.retire(worker.worker_id)
        if idle is None:
            log.info("worker %s is not known to the master yet; not stopping it", worker.worker_id)
            return None
        worker.retired = True
        if idle:
            log.info("stopping idle worker %s", worker.worker_id)
            worker.stopping = asyncio.create_task(self._stop(worker))
        else:
            log.info("worker %s took a task before it was retired: stopping it once the task is done", worker.worker_id)
        return idle

    async def _stop(self, worker: _Worker) -> None:
        """SIGTERM the worker's group, SIGKILL it after the grace period, and reap it."""
        process = worker.process
        _signal_group(process, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self._grace_s)
        except asyncio.TimeoutError:
            log.warning("worker %s did not stop within %.0f s: killing it", worker.worker_id, self._grace_s)
            _signal_group(process, signal.SIGKILL)
            await process.wait()


def _signal_group(process: asyncio.subprocess.Process, sig: int) -> None:
    """Send `sig` to the process group of `process` (its own: it was started in a new session)."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)


def local_actuator(settings: AutoscalerSettings, master: Retirer, environ: Mapping[str, str]) -> LocalActuator:
    """The local actuator `settings` describe, its workers given `environ` without the operator token (theirs
    to not know); ValueError when the worker cannot be started here."""
    command = worker_command(settings.worker_language, settings.worker_command)
    token = settings.env_name("operator_token")
    env = {k: v for k, v in environ.items() if k not in (token, f"{token}_FILE")}
    return LocalActuator(command, env, master, settings.worker_language)
