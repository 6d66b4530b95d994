"""LocalCluster: a real local system (Mosquitto, master, N Python workers) as child processes."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
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
from lab.credentials import Credentials
from lab.ports import PortInUseError, accepts_tcp, port_in_use
from lab.procs import LogSink, ManagedProcess, Spawner, print_line
from lab.statedir import make_temp_state_dir
from lab.supervision import Restart, RestartPolicy, Supervisor
from services.protocol.topics import DEFAULT_PREFIX

REPO_ROOT = Path(__file__).resolve().parents[1]
_STOP_GRACE_SECONDS = 5.0
_TAIL_IN_ERRORS = 20
_PAUSE_SIGNALS = (signal.SIGSTOP, signal.SIGTSTP, signal.SIGCONT)
JOURNAL_NAME = "journal.sqlite3"


class ClusterStartError(RuntimeError):
    """The cluster did not become ready; the message carries the failing process's last log lines."""


class LocalCluster:
    """Mosquitto, the master and N Python workers as processes on this machine; a context manager.

    With `restart` (the default), a process that dies without the lab stopping it is started again, like
    Swarm's restart policy: the broker and the master on the same ports (the master with the same journal),
    a worker as a new worker with a new id. With `auth`, the broker admits only the cluster's users
    (`credentials`: master, worker, observer) and limits each by the ACL in services/mosquitto. The broker
    keeps its sessions and queued messages in the cluster's state directory across restart_broker().
    With `broker_tls`, the broker listens with TLS only and every service gets MQTT_TLS_CA.
    """

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
        *,
        auth: bool = True,
        broker_tls: broker.BrokerTls | None = None,
        restart: bool = True,
        restart_policy: RestartPolicy | None = None,
        on_event: Callable[[str], None] | None = None,
        state_dir: Path | None = None,
    ) -> None:
        """Configure (ports given as 0 get a free port now); nothing starts before start() or `with`.

        `on_event` receives the lab's own messages (what it restarted); by default they go to the log sink
        as process `lab`. `state_dir` holds the broker's files and the master's journal; by default a new
        temporary directory, removed by stop() (a given one is kept).
        """
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
            auth=auth,
            broker_tls=broker_tls,
        )
        self._initial_workers = workers
        self._sink = log_sink
        self._on_event = on_event
        self._startup_timeout = startup_timeout
        self._restart = restart
        self._restart_policy = restart_policy
        self._given_state_dir = state_dir
        self._procs: dict[str, ManagedProcess] = {}
        self._commands: dict[str, tuple[list[str], Mapping[str, str]]] = {}  # name -> (argv, env) it started with
        self._worker_names: dict[str, str] = {}  # worker id -> process name
        self._worker_env: dict[str, Mapping[str, str]] = {}  # process name -> its own extra variables
        self._retired: set[str] = set()  # workers replaced after they died, or stopped on purpose
        self._injected: set[ManagedProcess] = set()  # killed by kill_worker/kill_master: a fault, not a crash
        self._worker_count = 0
        self._lock = threading.RLock()
        # Held by the supervisor while it restarts something and by whoever stops or restarts on purpose.
        self._supervision_lock = threading.Lock()
        self._supervisor: Supervisor | None = None
        self._state_dir: Path | None = None
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
    def credentials(self) -> Credentials:
        """The passwords of the broker's users (master, worker, observer); required by the broker with `auth`."""
        return self.config.credentials

    @property
    def state_dir(self) -> Path | None:
        """The directory with the broker's config, password file, ACL and data, and the journal (once started)."""
        return self._state_dir

    @property
    def journal_path(self) -> Path | None:
        """The master's JOURNAL_PATH (once started); it stays the same across master restarts."""
        return None if self._state_dir is None else self._state_dir / JOURNAL_NAME

    @property
    def processes(self) -> dict[str, ManagedProcess]:
        """Every process started so far by name (mosquitto, master, worker-1, ...), including exited workers.

        A restarted broker or master replaces its entry; a restarted worker is a new entry (worker-3, ...).
        """
        with self._lock:
            return dict(self._procs)

    @property
    def worker_ids(self) -> list[str]:
        """Ids of the workers running now (a paused one included), in start order."""
        with self._lock:
            return [wid for wid, name in self._worker_names.items() if self._is_running_worker(name)]

    @property
    def restarts(self) -> list[Restart]:
        """What the supervisor restarted so far, oldest first (empty without `restart`)."""
        return [] if self._supervisor is None else self._supervisor.restarts

    @property
    def given_up(self) -> dict[str, int]:
        """Processes the supervisor left down because they kept crashing: name -> last exit code."""
        return {} if self._supervisor is None else self._supervisor.given_up

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
            if self._restart:
                self._start_supervisor()
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

    def add_worker(self, wait: bool = True, env: Mapping[str, str] | None = None) -> str:
        """Start one more worker and return its worker id; with `wait`, until it shows up not offline.

        `env` adds or overrides variables of this worker only (and of its replacements), e.g. a wrong
        MQTT_PASSWORD; wait=False then, as such a worker never registers.
        """
        worker_id = self._spawn_worker(env or {})
        if wait:
            self._wait_workers([worker_id], time.monotonic() + self._startup_timeout)
        return worker_id

    def kill_worker(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to a worker (by worker id or process name) as a fault; after SIGKILL, wait until it is
        gone. With `restart`, a new worker takes its place; the supervisor does not count this as a crash."""
        proc = self._worker_process(name)
        if sig not in _PAUSE_SIGNALS:
            with self._lock:
                self._injected.add(proc)
        proc.send_signal(sig)
        if sig == signal.SIGKILL:
            proc.wait(_STOP_GRACE_SECONDS)

    def signal_worker(self, name: str, sig: int) -> None:
        """Send `sig` to a worker (by worker id or process name) and nothing else, e.g. SIGSTOP to hang it
        and SIGCONT to let it go on. A worker that exits of it is restarted as if it had crashed."""
        self._worker_process(name).send_signal(sig)

    def stop_worker(self, name: str) -> None:
        """Stop a worker for good (SIGTERM, SIGKILL after 5 s): it says goodbye and is not replaced."""
        proc = self._worker_process(name)
        with self._supervision_lock:
            with self._lock:
                self._retired.add(proc.name)
            proc.stop(_STOP_GRACE_SECONDS)

    def kill_master(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the master as a fault; after SIGKILL, wait until it is gone. With `restart` it is
        started again on the same ports with the same journal; without, restart_master() does that."""
        self._kill_essential("master", sig)

    def kill_broker(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to Mosquitto as a fault, like kill_master (restart_broker() starts it again)."""
        self._kill_essential("mosquitto", sig)

    def restart_master(self, wait: bool = True) -> None:
        """Stop the master (if it still runs) and start it again on the same ports with the same
        JOURNAL_PATH; with `wait`, return once /healthz says 200."""
        proc = self._restart_essential("master")
        if wait:
            self._wait("the master's /healthz", self._healthy, [proc], time.monotonic() + self._startup_timeout)

    def restart_broker(self, wait: bool = True) -> None:
        """Stop Mosquitto (a clean stop saves its sessions and queued messages) and start it again on the
        same port; with `wait`, return once it accepts connections. Master and workers reconnect by
        themselves."""
        proc = self._restart_essential("mosquitto")
        if wait:
            cfg = self.config
            ready = lambda: accepts_tcp(cfg.host, cfg.mqtt_port)  # noqa: E731
            self._wait("Mosquitto to accept connections", ready, [proc], time.monotonic() + self._startup_timeout)

    def exited(self) -> dict[str, int]:
        """Processes that exited although the lab neither stopped nor killed them: name -> exit code.

        A crashed broker or master that the supervisor already restarted is no longer listed (its entry
        is the new process); a crashed worker stays listed.
        """
        with self._lock:
            procs = [p for p in self._procs.values() if p not in self._injected]
        codes = {p.name: p.returncode for p in procs if not p.stopped_on_purpose}
        return {name: code for name, code in codes.items() if code is not None}

    def stop(self) -> None:
        """Stop every process (SIGTERM to its group, SIGKILL after 5 s) and clean up; safe to call again."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            spawner = self._spawner
            supervisor = self._supervisor
        atexit.unregister(self.stop)
        if supervisor is not None:
            supervisor.stop()  # waits for a restart in progress; none starts after this
        if spawner is not None:
            # No new spawns are accepted now; wait for one in flight so it is stopped with the rest.
            spawner.call(lambda: None)
        with self._supervision_lock:  # a restart_master() or restart_broker() in another thread
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
        self._remove_state_dir()

    # -- starting -------------------------------------------------------------------------------------

    def _start_all(self, mosquitto: Path, deadline: float) -> None:
        """Start the parts in dependency order, each once the previous one is ready."""
        cfg = self.config
        state = self._make_state_dir()
        broker_dir = state / "broker"
        broker_dir.mkdir(mode=0o700, exist_ok=True)
        credentials = cfg.credentials if cfg.auth else None
        conf = broker.write_config(
            broker_dir,
            cfg.mqtt_port,
            cfg.host,
            topic_prefix=cfg.topic_prefix,
            credentials=credentials,
            persistence=True,
            tls=cfg.broker_tls,
        )
        mq = self._spawn("mosquitto", [str(mosquitto), "-c", str(conf)], cfg.broker_env(os.environ))
        self._wait("Mosquitto to accept connections", lambda: accepts_tcp(cfg.host, cfg.mqtt_port), [mq], deadline)

        master_env = cfg.master_env(os.environ, journal_path=state / JOURNAL_NAME)
        master = self._spawn("master", [sys.executable, "-m", "services.master"], master_env)
        self._wait("the master's /healthz", self._healthy, [mq, master], deadline)

        # Workers only after the master listens, so their registration is not published into the void.
        ids = [self._spawn_worker({}) for _ in range(self._initial_workers)]
        self._wait_workers(ids, deadline)

    def _make_state_dir(self) -> Path:
        """Create (or take) the directory of this cluster's files."""
        if self._given_state_dir is not None:
            self._given_state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._state_dir = self._given_state_dir
        else:
            self._state_dir = make_temp_state_dir()
        return self._state_dir

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
            self._commands[name] = (argv, env)
        return proc

    def _spawn_worker(self, env: Mapping[str, str]) -> str:
        """Start one worker with a fresh id and its own extra `env`; return the id."""
        with self._lock:
            self._worker_count += 1
            name = f"worker-{self._worker_count}"
            self._worker_env[name] = dict(env)
        worker_id = new_worker_id()
        full_env = {**self.config.worker_env(worker_id, os.environ), **env}
        if self._state_dir is not None and "HEALTH_FILE" not in env:
            # Workers here share one filesystem: each keeps its own heartbeat for `--check`.
            full_env["HEALTH_FILE"] = str(self._state_dir / f"{worker_id}.health")
        self._spawn(name, [sys.executable, "-m", "services.worker"], full_env)
        with self._lock:
            self._worker_names[worker_id] = name
        return worker_id

    # -- faults, restarts and supervision ---------------------------------------------------------------

    def _worker_process(self, name: str) -> ManagedProcess:
        """The process of a worker given by worker id or process name."""
        with self._lock:
            proc = self._procs.get(self._worker_names.get(name, name))
        if proc is None or not proc.name.startswith("worker-"):
            raise KeyError(f"no worker named {name!r}; known: {', '.join(self._worker_names)}")
        return proc

    def _is_running_worker(self, name: str) -> bool:
        """Whether worker process `name` runs and was neither stopped, killed nor replaced (under _lock)."""
        proc = self._procs[name]
        gone = name in self._retired or proc in self._injected or proc.stopped_on_purpose
        return not gone and not proc.has_exited()

    def _essential(self, name: str) -> ManagedProcess:
        """The current broker or master process."""
        with self._lock:
            proc = self._procs.get(name)
        if proc is None:
            raise RuntimeError(f"{name} was not started")
        return proc

    def _kill_essential(self, name: str, sig: int) -> None:
        """Send `sig` to the broker or the master as a fault."""
        proc = self._essential(name)
        if sig not in _PAUSE_SIGNALS:
            with self._lock:
                self._injected.add(proc)
        proc.send_signal(sig)
        if sig == signal.SIGKILL:
            proc.wait(_STOP_GRACE_SECONDS)

    def _restart_essential(self, name: str) -> ManagedProcess:
        """Stop the broker or the master on purpose and start it again with the same command."""
        with self._supervision_lock:
            self._essential(name).stop(_STOP_GRACE_SECONDS)
            return self._respawn(name)

    def _respawn(self, name: str) -> ManagedProcess:
        """Start `name` again with the command it was first started with."""
        with self._lock:
            argv, env = self._commands[name]
        return self._spawn(name, argv, env)

    def _start_supervisor(self) -> None:
        """Start restarting what dies from now on."""
        supervisor = Supervisor(
            self._supervised,
            self._was_injected,
            self._replace,
            self._supervision_lock,
            self._report,
            self._restart_policy,
        )
        with self._lock:
            self._supervisor = supervisor
        supervisor.start()

    def _supervised(self) -> list[ManagedProcess]:
        """What the supervisor keeps running: the broker, the master and every worker not stopped or replaced."""
        with self._lock:
            names = ["mosquitto", "master", *(n for n in self._worker_names.values() if n not in self._retired)]
            return [self._procs[n] for n in names if n in self._procs]

    def _was_injected(self, proc: ManagedProcess) -> bool:
        """Whether `proc` was killed by kill_worker, kill_master or kill_broker."""
        with self._lock:
            return proc in self._injected

    def _replace(self, proc: ManagedProcess) -> tuple[str, str]:
        """Called by the supervisor: start what replaces `proc`; (its name, how)."""
        if not proc.name.startswith("worker-"):
            self._respawn(proc.name)
            where = f"on port {self.config.mqtt_port}" if proc.name == "mosquitto" else "on the same ports"
            return proc.name, where
        with self._lock:
            self._retired.add(proc.name)
            env = self._worker_env.get(proc.name, {})
        worker_id = self._spawn_worker(env)
        name = self._worker_names[worker_id]
        return name, f"as {name} ({worker_id})"

    def _report(self, text: str) -> None:
        """Say something of the lab itself (never a password)."""
        if self._on_event is not None:
            self._on_event(text)
        else:
            (self._sink or print_line)("lab", text)

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

    def _remove_state_dir(self) -> None:
        """Delete the state directory if the cluster made it (a given one is kept for inspection)."""
        if self._state_dir is not None and self._given_state_dir is None:
            shutil.rmtree(self._state_dir, ignore_errors=True)
        self._state_dir = None

    # -- stopping -------------------------------------------------------------------------------------

    @staticmethod
    def _stop_group(procs: list[ManagedProcess]) -> None:
        """SIGTERM all of `procs` at once, then give them one shared grace period."""
        for proc in procs:
            proc.terminate()
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        for proc in procs:
            proc.finish(deadline)
