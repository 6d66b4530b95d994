"""LocalCluster: a real local system (Mosquitto, master, N Python workers) as child processes."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from lab import broker
from lab.cluster_config import (
    DEFAULT_GRPC_PORT,
    DEFAULT_MODEL_MODE,
    DEFAULT_MQTT_PORT,
    DEFAULT_WEB_PORT,
    DEFAULT_WORK_SECONDS,
    ClusterConfig,
    new_worker_id,
)
from lab.ports import PortInUseError, accepts_tcp, port_in_use
from lab.procs import LogSink, ManagedProcess, Spawner
from services.protocol.topics import DEFAULT_PREFIX

REPO_ROOT = Path(__file__).resolve().parents[1]
_STOP_GRACE_SECONDS = 5.0
_TAIL_IN_ERRORS = 20


class ClusterStartError(RuntimeError):
    """The cluster did not become ready; the message carries the failing process's last log lines."""


class LocalCluster:
    """Mosquitto, the master and N Python workers as processes on this machine; a context manager."""

    def __init__(
        self,
        workers: int = 2,
        work_seconds: float = DEFAULT_WORK_SECONDS,
        web_port: int = DEFAULT_WEB_PORT,
        grpc_port: int = DEFAULT_GRPC_PORT,
        mqtt_port: int = DEFAULT_MQTT_PORT,
        host: str = "127.0.0.1",
        topic_prefix: str = DEFAULT_PREFIX,
        model_mode: str = DEFAULT_MODEL_MODE,
        extra_env: Mapping[str, str] | None = None,
        log_sink: LogSink | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        """Configure (ports given as 0 get a free port now); nothing starts before start() or `with`."""
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.config = ClusterConfig.resolve(
            web_port=web_port,
            grpc_port=grpc_port,
            mqtt_port=mqtt_port,
            host=host,
            topic_prefix=topic_prefix,
            work_seconds=work_seconds,
            model_mode=model_mode,
            extra_env=extra_env,
        )
        self._initial_workers = workers
        self._sink = log_sink
        self._startup_timeout = startup_timeout
        self._procs: dict[str, ManagedProcess] = {}
        self._worker_names: dict[str, str] = {}  # worker id -> process name
        self._worker_count = 0
        self._lock = threading.RLock()
        self._tmpdir: Path | None = None
        self._spawner: Spawner | None = None
        self._http: httpx.Client | None = None
        self._started = False
        self._stopped = False

    # -- public surface -------------------------------------------------------------------------------

    @property
    def web_url(self) -> str:
        """The master's HTTP base URL, e.g. http://127.0.0.1:8888 (the chat page is there)."""
        return self.config.web_url

    @property
    def grpc_endpoint(self) -> str:
        """host:port of the master's gRPC result server."""
        return self.config.grpc_endpoint

    @property
    def mqtt_port(self) -> int:
        """The broker's port on `config.host`."""
        return self.config.mqtt_port

    @property
    def processes(self) -> dict[str, ManagedProcess]:
        """Every process started so far by name (mosquitto, master, worker-1, ...), including exited ones."""
        with self._lock:
            return dict(self._procs)

    @property
    def worker_ids(self) -> list[str]:
        """Ids of the workers started and not signalled by kill_worker, in start order."""
        with self._lock:
            return [wid for wid, name in self._worker_names.items() if not self._procs[name].stopped_on_purpose]

    def __enter__(self) -> LocalCluster:
        """Start and wait until ready."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop everything."""
        self.stop()

    def start(self) -> None:
        """Start broker, master and workers; return once all workers are registered and not offline."""
        with self._lock:
            if self._started:
                raise RuntimeError("this LocalCluster was already started; create a new one")
            self._started = True
        deadline = time.monotonic() + self._startup_timeout
        self.check_ports()
        mosquitto = broker.find_mosquitto()
        atexit.register(self.stop)
        try:
            self._start_all(mosquitto, deadline)
        except BaseException:
            self.stop()
            raise

    def check_ports(self) -> None:
        """Raise PortInUseError naming the first port another program already listens on."""
        # Checked before anything starts, so the error names the port instead of a process dying of it.
        for role, port in self.config.ports().items():
            if port_in_use(self.config.host, port):
                raise PortInUseError(role, self.config.host, port)

    def status(self) -> dict[str, Any]:
        """The master's GET /api/status as a dict."""
        response = self._client().get("/api/status")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def add_worker(self, wait: bool = True) -> str:
        """Start one more worker and return its worker id; with `wait`, until it shows up not offline."""
        worker_id = self._spawn_worker()
        if wait:
            self._wait_workers([worker_id], time.monotonic() + self._startup_timeout)
        return worker_id

    def kill_worker(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to a worker (by worker id or process name); after SIGKILL, wait until it is gone."""
        with self._lock:
            proc = self._procs.get(self._worker_names.get(name, name))
        if proc is None or not proc.name.startswith("worker-"):
            raise KeyError(f"no worker named {name!r}; known: {', '.join(self._worker_names)}")
        proc.send_signal(sig)
        if sig == signal.SIGKILL:
            proc.wait(_STOP_GRACE_SECONDS)

    def exited(self) -> dict[str, int]:
        """Processes that exited although the lab did not stop them: name -> exit code."""
        with self._lock:
            procs = list(self._procs.values())
        codes = {p.name: p.returncode for p in procs if not p.stopped_on_purpose}
        return {name: code for name, code in codes.items() if code is not None}

    def stop(self) -> None:
        """Stop every process (SIGTERM to its group, SIGKILL after 5 s) and clean up; safe to call again."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            spawner = self._spawner
        atexit.unregister(self.stop)
        if spawner is not None:
            # No new spawns are accepted now; wait for one in flight so it is stopped with the rest.
            spawner.call(lambda: None)
        with self._lock:
            procs = list(self._procs.values())
        # Services first, the broker last, so they can still say goodbye over MQTT while stopping.
        services = [p for p in procs if p.name != "mosquitto"]
        self._stop_group(services)
        self._stop_group([p for p in procs if p.name == "mosquitto"])
        if self._http is not None:
            self._http.close()
        if spawner is not None:
            spawner.close()
        self._remove_tmpdir()

    # -- starting -------------------------------------------------------------------------------------

    def _start_all(self, mosquitto: Path, deadline: float) -> None:
        """Start the parts in dependency order, each once the previous one is ready."""
        cfg = self.config
        self._tmpdir = Path(tempfile.mkdtemp(prefix="lab-cluster-"))
        conf = broker.write_config(self._tmpdir, cfg.mqtt_port, cfg.host)
        mq = self._spawn("mosquitto", [str(mosquitto), "-c", str(conf)], cfg.broker_env(os.environ))
        self._wait("Mosquitto to accept connections", lambda: accepts_tcp(cfg.host, cfg.mqtt_port), [mq], deadline)
        # Read once at startup (we never send SIGHUP), so it can go now: a SIGKILLed lab leaves no files.
        self._remove_tmpdir()

        master = self._spawn("master", [sys.executable, "-m", "services.master"], cfg.master_env(os.environ))
        self._wait("the master's /healthz", self._healthy, [mq, master], deadline)

        # Workers only after the master listens, so their registration is not published into the void.
        ids = [self._spawn_worker() for _ in range(self._initial_workers)]
        self._wait_workers(ids, deadline)

    def _spawn(self, name: str, argv: list[str], env: Mapping[str, str]) -> ManagedProcess:
        """Start one process on the spawner thread and return it (it is recorded there)."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("the cluster was stopped")
            if self._spawner is None:
                self._spawner = Spawner()
            spawner = self._spawner
        return spawner.call(lambda: self._start_process(name, argv, env))

    def _start_process(self, name: str, argv: list[str], env: Mapping[str, str]) -> ManagedProcess:
        """On the spawner thread: start and record a process, even if the caller was interrupted meanwhile."""
        proc = ManagedProcess(name, argv, env=env, cwd=REPO_ROOT, sink=self._sink)
        with self._lock:
            self._procs[name] = proc
        return proc

    def _spawn_worker(self) -> str:
        """Start one worker with a fresh id and return the id."""
        with self._lock:
            self._worker_count += 1
            name = f"worker-{self._worker_count}"
        worker_id = new_worker_id()
        self._spawn(name, [sys.executable, "-m", "services.worker"], self.config.worker_env(worker_id, os.environ))
        with self._lock:
            self._worker_names[worker_id] = name
        return worker_id

    def _client(self) -> httpx.Client:
        """The HTTP client for the master, created on first use."""
        with self._lock:
            if self._http is None:
                self._http = httpx.Client(base_url=self.web_url, timeout=5.0)
            return self._http

    def _healthy(self) -> bool:
        """Whether the master answers /healthz with 200."""
        try:
            return self._client().get("/healthz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _missing_workers(self, worker_ids: Iterable[str]) -> list[str]:
        """Those of `worker_ids` that /api/status does not list as idle or busy (all, if it cannot tell)."""
        wanted = list(worker_ids)
        try:
            listed = self.status().get("workers", [])
        except (httpx.HTTPError, ValueError):
            return wanted
        present = {w.get("worker_id") for w in listed if w.get("state") not in (None, "offline")}
        return [wid for wid in wanted if wid not in present]

    def _wait_workers(self, worker_ids: list[str], deadline: float) -> None:
        """Wait until every one of `worker_ids` is listed and not offline."""
        with self._lock:
            watched = [self._procs[n] for n in ("mosquitto", "master") if n in self._procs]
            watched += [self._procs[self._worker_names[wid]] for wid in worker_ids]

        def explain() -> str:
            missing = self._missing_workers(worker_ids)
            names = [self._worker_names[wid] for wid in missing]
            # Two workers' logs usually show the common cause; the master's shows what it saw of them.
            tails = [self._tail_text(self._procs[n]) for n in [*names[:2], "master"]]
            return "\n".join([f"not registered: {', '.join(missing) or '(none)'}", *tails])

        self._wait("the workers to register", lambda: not self._missing_workers(worker_ids), watched, deadline, explain)

    def _wait(
        self,
        what: str,
        ready: Callable[[], bool],
        watched: list[ManagedProcess],
        deadline: float,
        explain: Callable[[], str] | None = None,
    ) -> None:
        """Poll `ready` until true; fail early if a watched process exits, or at the deadline."""
        while True:
            for proc in watched:
                code = proc.returncode
                if code is not None:
                    raise ClusterStartError(
                        f"{proc.name} exited with code {code} while waiting for {what}\n{self._tail_text(proc)}"
                    )
            if ready():
                return
            if time.monotonic() >= deadline:
                detail = explain() if explain else self._tail_text(watched[-1])
                raise ClusterStartError(f"timed out after {self._startup_timeout:g} s waiting for {what}\n{detail}")
            time.sleep(0.1)

    @staticmethod
    def _tail_text(proc: ManagedProcess) -> str:
        """The last log lines of `proc`, formatted for an error message."""
        lines = proc.tail(_TAIL_IN_ERRORS)
        if not lines:
            return f"({proc.name} wrote no output)"
        head = f"last {len(lines)} lines of {proc.name}:" if len(lines) > 1 else f"last line of {proc.name}:"
        return head + "\n" + "\n".join(f"  {proc.name} | {x}" for x in lines)

    def _remove_tmpdir(self) -> None:
        """Delete the directory holding the broker's effective config, if any."""
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    # -- stopping -------------------------------------------------------------------------------------

    @staticmethod
    def _stop_group(procs: list[ManagedProcess]) -> None:
        """SIGTERM all of `procs` at once, then give them one shared grace period."""
        for proc in procs:
            proc.terminate()
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        for proc in procs:
            proc.finish(deadline)
