"""LocalCluster: a real local system (Mosquitto, master, workers in any mix of languages) as child processes."""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.paths import REPO_ROOT
from lab.system import broker
from lab.system.autoscaling import AUTOSCALER, Autoscale, autoscaler_argv, autoscaler_env, autoscaler_grace_s
from lab.system.credentials import Credentials
from lab.system.ports import PortInUseError, accepts_tcp, port_in_use
from lab.system.process_table import ESSENTIALS, ProcessTable
from lab.system.procs import ManagedProcess, Spawner, print_line, stop_group
from lab.system.readiness import MasterHttp, OperatorAccess, tail_text, wait_ready
from lab.system.spec import ClusterOptions, ClusterSpec
from lab.system.statedir import close_state_dir, open_state_dir
from lab.system.supervision import Restart, Supervisor
from lab.system.workers import spawn_order, worker_kind
from services.protocol import StatusReport

if TYPE_CHECKING:
    from typing_extensions import Unpack

_STOP_GRACE_SECONDS = 5.0
_PAUSE_SIGNALS = (signal.SIGSTOP, signal.SIGTSTP, signal.SIGCONT)
JOURNAL_NAME = "journal.sqlite3"


class LocalCluster(OperatorAccess):
    """Mosquitto, the master and a fleet of workers (Python, Go, Java in any mix) as processes on this
    machine (see `ClusterSpec` for what can be asked of them); a context manager.

    With `restart` (the default), a process that dies without the lab stopping it is started again, like
    Swarm's restart policy: the broker and the master on the same ports (the master with the same journal),
    a worker as a new worker with a new id. With `auth`, the broker admits only the cluster's users
    (`credentials`: master, worker, observer) and limits each by the ACL in services/mosquitto. The broker
    keeps its sessions and queued messages in the cluster's state directory across restart_broker().
    With `broker_tls`, the broker listens with TLS only and every service gets MQTT_TLS_CA.
    """

    def __init__(self, spec: ClusterSpec | None = None, /, **options: Unpack[ClusterOptions]) -> None:
        """Configure from `spec`, or from `ClusterSpec`'s fields as keyword arguments (they override the
        spec's); ports given as 0 get a free port now. Nothing starts before start() or `with`."""
        self.spec = replace(spec or ClusterSpec(), **options)
        self.config = self.spec.resolve()
        self._master = MasterHttp(self.config.web_url, self.operator_token)
        self._table = ProcessTable()
        self._lock = self._table.lock
        # Held by the supervisor while it restarts something and by whoever stops or restarts on purpose.
        self._supervision_lock = threading.Lock()
        self._supervisor: Supervisor | None = None
        self._state_dir: Path | None = None
        self._spawner: Spawner | None = None
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
        return self._table.all()

    @property
    def worker_ids(self) -> list[str]:
        """Ids of the workers running now (a paused one included), in start order; not the autoscaler's."""
        return self._table.running_worker_ids()

    @property
    def restarts(self) -> list[Restart]:
        """What the supervisor restarted so far, oldest first (empty without `restart`)."""
        return [] if self._supervisor is None else self._supervisor.restarts

    @property
    def given_up(self) -> dict[str, int]:
        """Processes the supervisor left down because they kept crashing: name -> last exit code."""
        return {} if self._supervisor is None else self._supervisor.given_up

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start broker, master and workers; return once all workers are registered and not offline."""
        with self._lock:
            if self._started:
                raise RuntimeError("this LocalCluster was already started; create a new one")
            self._started = True
        deadline = time.monotonic() + self.spec.startup_timeout
        self.check_ports()
        autoscaled = [self.spec.autoscale_language] if self.spec.autoscale else []
        for language in autoscaled or [language for language, _ in self.spec.fleet]:
            worker_kind(language).require()  # a worker that is not built fails now, with how to build it
        mosquitto = broker.find_mosquitto()
        atexit.register(self.stop)
        try:
            self._start_all(mosquitto, deadline)
            if self.spec.restart:
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
        return self._master.status()

    def status_report(self) -> StatusReport:
        """The master's GET /api/status, read into the protocol's model."""
        return self._master.status_report()

    def add_worker(self, wait: bool = True, env: Mapping[str, str] | None = None, language: str = "python") -> str:
        """Start one more worker of `language` and return its worker id; with `wait`, until it shows up not
        offline.

        `env` adds or overrides variables of this worker only (and of its replacements), e.g. a wrong
        MQTT_PASSWORD; wait=False then, as such a worker never registers.
        """
        worker_id = self._spawn_worker(env or {}, language)
        if wait:
            self._wait_workers([worker_id], time.monotonic() + self.spec.startup_timeout)
        return worker_id

    def kill_worker(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to a worker (by worker id or process name) as a fault; after SIGKILL, wait until it is
        gone. With `restart`, a new worker takes its place; the supervisor does not count this as a crash."""
        self._send_fault(self._table.worker_process(name), sig)

    def signal_worker(self, name: str, sig: int) -> None:
        """Send `sig` to a worker (by worker id or process name) and nothing else, e.g. SIGSTOP to hang it
        and SIGCONT to let it go on. A worker that exits of it is restarted as if it had crashed."""
        self._table.worker_process(name).send_signal(sig)

    def stop_worker(self, name: str) -> None:
        """Stop a worker for good (SIGTERM, SIGKILL after 5 s): it says goodbye and is not replaced."""
        proc = self._table.worker_process(name)
        with self._supervision_lock:
            self._table.retire(proc.name)
            proc.stop(_STOP_GRACE_SECONDS)

    def kill_master(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the master as a fault; after SIGKILL, wait until it is gone. With `restart` it is
        started again on the same ports with the same journal; without, restart_master() does that."""
        self._send_fault(self._table.essential("master"), sig)

    def kill_broker(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to Mosquitto as a fault, like kill_master (restart_broker() starts it again)."""
        self._send_fault(self._table.essential("mosquitto"), sig)

    def restart_master(self, wait: bool = True) -> None:
        """Stop the master (if it still runs) and start it again on the same ports with the same
        JOURNAL_PATH; with `wait`, return once /healthz says 200."""
        proc = self._restart_essential("master")
        if wait:
            self._wait("the master's /healthz", self._master.healthy, [proc])

    def restart_broker(self, wait: bool = True) -> None:
        """Stop Mosquitto (a clean stop saves its sessions and queued messages) and start it again on the
        same port; with `wait`, return once it accepts connections. Master and workers reconnect by
        themselves."""
        proc = self._restart_essential("mosquitto")
        if wait:
            cfg = self.config
            ready = lambda: accepts_tcp(cfg.host, cfg.mqtt_port)  # noqa: E731
            self._wait("Mosquitto to accept connections", ready, [proc])

    def exited(self) -> dict[str, int]:
        """Processes that exited although the lab neither stopped nor killed them: name -> exit code.

        A crashed broker or master that the supervisor already restarted is no longer listed (its entry
        is the new process); a crashed worker stays listed.
        """
        return self._table.exited()

    def stop(self) -> None:
        """Stop every process (SIGTERM to its group, SIGKILL after 5 s) and clean up; safe to call again."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            spawner, supervisor = self._spawner, self._supervisor
        atexit.unregister(self.stop)
        if supervisor is not None:
            supervisor.stop()  # waits for a restart in progress; none starts after this
        if spawner is not None:
            # No new spawns are accepted now; wait for one in flight so it is stopped with the rest.
            spawner.call(lambda: None)
        with self._supervision_lock:  # a restart_master() or restart_broker() in another thread
            procs = list(self._table.all().values())
            # The autoscaler first: it stops its workers, and they say goodbye while the master still listens.
            if scaler := [p for p in procs if p.name == AUTOSCALER]:
                stop_group(scaler, autoscaler_grace_s(self._table.command(AUTOSCALER)[1]))
            # Services first, the broker last, so they can still say goodbye over MQTT while stopping.
            stop_group([p for p in procs if p.name != "mosquitto"], _STOP_GRACE_SECONDS)
            stop_group([p for p in procs if p.name == "mosquitto"], _STOP_GRACE_SECONDS)
        self._stop_others()
        self._master.close()
        if spawner is not None:
            spawner.close()
        close_state_dir(self._state_dir, self.spec.state_dir)
        self._state_dir = None

    # -- starting -------------------------------------------------------------------------------------

    def _start_all(self, mosquitto: Path, deadline: float) -> None:
        """Start the parts in dependency order, each once the previous one is ready."""
        cfg = self.config
        state = self._state_dir = open_state_dir(self.spec.state_dir)
        conf = cfg.write_broker_config(state)
        mq = self._spawn("mosquitto", [str(mosquitto), "-c", str(conf)], cfg.broker_env(os.environ))
        self._wait("Mosquitto to accept connections", lambda: accepts_tcp(cfg.host, cfg.mqtt_port), [mq], deadline)
        masters = self._start_masters(state, [mq], deadline)

        # Workers only after the master listens, so their registration is not published into the void.
        if self.spec.autoscale is not None:
            self._start_autoscaler(self.spec.autoscale, state, [mq, *masters], deadline)
            return
        ids = [self._spawn_worker({}, language) for language in spawn_order(self.spec.fleet)]
        self._wait_workers(ids, deadline)

    def _start_masters(self, state: Path, watched: list[ManagedProcess], deadline: float) -> list[ManagedProcess]:
        """Start the master (with its journal in `state`) and wait until it is healthy; return its process."""
        master_env = self.config.master_env(os.environ, journal_path=state / JOURNAL_NAME)
        master = self._spawn("master", [sys.executable, "-m", "services.master"], master_env)
        self._wait("the master's /healthz", self._master.healthy, [*watched, master], deadline)
        return [master]

    def _stop_others(self) -> None:
        """Stop what the process table does not hold (nothing here), before the state directory goes."""

    def _start_autoscaler(self, bounds: Autoscale, state: Path, watched: list[ManagedProcess], deadline: float) -> None:
        """Start the autoscaler, which starts the workers; wait until its minimum has registered."""
        env = autoscaler_env(self.config, bounds, self.spec.autoscale_language, self.operator_token, state, os.environ)
        scaler = self._spawn(AUTOSCALER, autoscaler_argv(), env)
        listed = lambda: self._master.listed_workers() >= bounds[0]  # noqa: E731
        self._wait(f"the autoscaler's first {bounds[0]} workers to register", listed, [*watched, scaler], deadline)

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
        proc = ManagedProcess(name, argv, env=env, cwd=REPO_ROOT, sink=self.spec.log_sink)
        self._table.record(name, proc, argv, env)
        return proc

    def _spawn_worker(self, env: Mapping[str, str], language: str) -> str:
        """Start one worker of `language` with a fresh id and its own extra `env`; return the id."""
        kind = worker_kind(language)
        kind.require()
        name = self._table.new_worker_name(env, language)
        worker_id = kind.new_id()
        # Workers here share one filesystem: each keeps its own heartbeat for `--check`.
        health = None if self._state_dir is None else self._state_dir / f"{worker_id}.health"
        full_env = {**self.config.worker_env(worker_id, os.environ, health_file=health), **env}
        self._spawn(name, kind.command(), full_env)
        self._table.name_worker(worker_id, name)
        return worker_id

    # -- faults, restarts and supervision ---------------------------------------------------------------

    def _send_fault(self, proc: ManagedProcess, sig: int) -> None:
        """Send `sig` to `proc` as a fault; after SIGKILL, wait until it is gone."""
        if sig not in _PAUSE_SIGNALS:
            self._table.inject(proc)
        proc.send_signal(sig)
        if sig == signal.SIGKILL:
            proc.wait(_STOP_GRACE_SECONDS)

    def _restart_essential(self, name: str) -> ManagedProcess:
        """Stop the broker or the master on purpose and start it again with the same command."""
        with self._supervision_lock:
            self._table.essential(name).stop(_STOP_GRACE_SECONDS)
            return self._respawn(name)

    def _respawn(self, name: str) -> ManagedProcess:
        """Start `name` again with the command it was first started with."""
        return self._spawn(name, *self._table.command(name))

    def _start_supervisor(self) -> None:
        """Start restarting what dies from now on."""
        supervisor = Supervisor(
            self._table.supervised,
            self._table.was_injected,
            self._replace,
            self._supervision_lock,
            self._report,
            self.spec.restart_policy,
        )
        with self._lock:
            self._supervisor = supervisor
        supervisor.start()

    def _replace(self, proc: ManagedProcess) -> tuple[str, str]:
        """Called by the supervisor: start what replaces `proc`; (its name, how)."""
        if not proc.name.startswith("worker-"):
            self._respawn(proc.name)
            where = {"mosquitto": f"on port {self.config.mqtt_port}", AUTOSCALER: "(its workers start anew)"}
            return proc.name, where.get(proc.name, "on the same ports")
        self._table.retire(proc.name)
        worker_id = self._spawn_worker(self._table.worker_env(proc.name), self._table.worker_language(proc.name))
        name = self._table.worker_name(worker_id)
        return name, f"as {name} ({worker_id})"

    def _report(self, text: str) -> None:
        """Say something of the lab itself (never a password)."""
        if self.spec.on_event is not None:
            self.spec.on_event(text)
        else:
            (self.spec.log_sink or print_line)("lab", text)

    def _wait_workers(self, worker_ids: list[str], deadline: float) -> None:
        """Wait until every one of `worker_ids` is listed and not offline."""
        procs = self._table.all()
        watched = [procs[n] for n in ESSENTIALS if n in procs]
        watched += [procs[self._table.worker_name(wid)] for wid in worker_ids]

        def explain() -> str:
            missing = self._master.missing_workers(worker_ids)
            names = [self._table.worker_name(wid) for wid in missing]
            # Two workers' logs usually show the common cause; the master's shows what it saw of them.
            procs = self._table.all()
            tails = [tail_text(procs[n]) for n in [*names[:2], "master"]]
            return "\n".join([f"not registered: {', '.join(missing) or '(none)'}", *tails])

        self._wait(
            "the workers to register", lambda: not self._master.missing_workers(worker_ids), watched, deadline, explain
        )

    def _wait(
        self,
        what: str,
        ready: Callable[[], bool],
        watched: list[ManagedProcess],
        deadline: float | None = None,
        explain: Callable[[], str] | None = None,
    ) -> None:
        """Poll `ready` until true; fail early if a watched process exits, or at the deadline (by default the
        startup timeout from now)."""
        timeout = self.spec.startup_timeout
        wait_ready(what, ready, watched, time.monotonic() + timeout if deadline is None else deadline, timeout, explain)
