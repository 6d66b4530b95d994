"""HaCluster: a local system in the shape of the highly available stack: standby masters on etcd behind HAProxy."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from lab.system.broker import find_mosquitto, write_config
from lab.system.etcd import EtcdCluster
from lab.system.haproxy import Backend, Haproxy
from lab.system.leaders import newest_leader, wait_leader
from lab.system.local import LocalCluster
from lab.system.ports import accepts_tcp, free_port
from lab.system.procs import ManagedProcess
from lab.system.spec import ClusterOptions, ClusterSpec
from services.envconfig import ServiceSettings
from services.master.settings import MasterSettings

if TYPE_CHECKING:
    from typing_extensions import Unpack

DEFAULT_MASTERS = 3
# The lab's lease: the stack's default (5 s), so that the failovers measured here are the stack's.
LEASE_SECONDS = 5
ETCD_PREFIX = "/swarm-ai-lab"
_LEADER_TIMEOUT_S = 1.0


class HaCluster(LocalCluster):
    """LocalCluster with `masters` standby masters (JOURNAL_BACKEND=etcd) on an etcd cluster of `etcd_members`,
    behind HAProxy, which sends browsers and workers' results to the one that leads; a context manager.

    `web_url` and `grpc_endpoint` are HAProxy's (on the cluster's web and gRPC ports); each master listens on
    ports of its own (`backends`). Masters are named master-1, master-2, ...; with `restart`, one that exits
    (deposed, or killed) is started again, as a standby. `kill_master` kills the one that leads.
    `brokers` Mosquittos, as the stack's one per node: the masters connect to each, the workers spread over them.
    """

    def __init__(
        self,
        spec: ClusterSpec | None = None,
        /,
        masters: int = DEFAULT_MASTERS,
        etcd_members: int = 3,
        brokers: int = 3,
        lease_seconds: int = LEASE_SECONDS,
        **options: Unpack[ClusterOptions],
    ) -> None:
        """As LocalCluster, with `masters` masters (at least 2), `etcd_members` etcd members (1, 3 or 5) and
        `brokers` Mosquittos (one per node in the stack: the masters connect to all of them, MQTT_BROKERS, and
        the workers are spread over them)."""
        super().__init__(spec, **options)
        if masters < 2:
            raise ValueError(f"an HaCluster has at least 2 masters, got {masters}")
        if etcd_members not in (1, 3, 5):
            raise ValueError(f"etcd_members must be 1, 3 or 5, got {etcd_members}")
        host = self.config.host
        self.backends = [Backend(f"master-{i}", host, free_port(host), free_port(host)) for i in range(1, masters + 1)]
        if brokers < 1:
            raise ValueError(f"an HaCluster needs at least one broker, got {brokers}")
        self.broker_ports = [self.config.mqtt_port, *(free_port(host) for _ in range(brokers - 1))]
        self._next_broker = 0
        self.etcd_members = etcd_members
        self.lease_seconds = lease_seconds
        self.etcd: EtcdCluster | None = None
        self.proxy: Haproxy | None = None

    @property
    def processes(self) -> dict[str, ManagedProcess]:
        """As LocalCluster's, with the etcd members (etcd-e0, ...) and HAProxy (haproxy): a benchmark that
        counts the system's CPU counts theirs too."""
        procs = super().processes
        for member in self.etcd.members if self.etcd is not None else []:
            if member.process is not None:
                procs[f"etcd-{member.name}"] = member.process
        if self.proxy is not None and self.proxy.process is not None:
            procs["haproxy"] = self.proxy.process
        return procs

    # -- who leads --------------------------------------------------------------------------------------------

    def leader_info(self, backend: Backend) -> dict[str, object] | None:
        """What `backend`'s `/leader` says (None: nothing answers there, or not in time)."""
        url = f"http://{backend.host}:{backend.web_port}/leader"
        try:
            with urllib.request.urlopen(url, timeout=_LEADER_TIMEOUT_S) as response:
                body = response.read()
        except urllib.error.HTTPError as e:
            body = e.read()
        except OSError:
            return None
        info = json.loads(body)
        return info if isinstance(info, dict) else None

    def leader(self) -> tuple[Backend, int] | None:
        """The master that says it leads now, and its epoch (None: none does, e.g. during a failover)."""
        return newest_leader((backend, self.leader_info(backend)) for backend in self.backends)

    def wait_leader(self, timeout: float = 30.0, after_epoch: int = 0) -> tuple[Backend, int]:
        """Wait until a master leads with an epoch above `after_epoch`; return it and its epoch."""
        return wait_leader(self.leader, timeout, after_epoch)

    def master_process(self, name: str) -> ManagedProcess:
        """The current process of master `name` (master-1, ...), or of any process the cluster keeps by name."""
        return self._table.essential(name)

    def kill_master(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the master that leads, as a fault (see `kill_named_master`)."""
        leader, _ = self.wait_leader(self.spec.startup_timeout)
        self.kill_named_master(leader.name, sig)

    def kill_named_master(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to master `name` (its whole group: the core and its web front) as a fault; after SIGKILL,
        wait until it is gone. With `restart` it is started again, as a standby."""
        self.kill_named(name, sig)

    def kill_named(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the process `name` (master-2, mosquitto-3, ...) as a fault; after SIGKILL, wait until it
        is gone. With `restart` it is started again under its name."""
        self._send_fault(self.master_process(name), sig)

    def restart_master(self, wait: bool = True) -> None:
        """Stop the master that leads on purpose (it resigns, so a standby takes over at once) and start it again
        as a standby; with `wait`, return once a master leads."""
        leader, epoch = self.wait_leader(self.spec.startup_timeout)
        self._restart_essential(leader.name)
        if wait:
            self.wait_leader(self.spec.startup_timeout, after_epoch=epoch)

    # -- starting and stopping ----------------------------------------------------------------------------------

    def _start_masters(self, state: Path, watched: list[ManagedProcess], deadline: float) -> list[ManagedProcess]:
        """Start etcd, the masters and HAProxy; wait until one master leads and answers through the proxy."""
        watched = [*watched, *self._start_more_brokers(state, deadline)]
        spawner = self._spawner
        self.etcd = EtcdCluster(state / "etcd", self.etcd_members, token=f"lab-{os.getpid()}", spawner=spawner)
        self.etcd.start(timeout=max(1.0, deadline - time.monotonic()))
        masters = [self._start_master(backend, state) for backend in self.backends]
        self.proxy = Haproxy(
            self.backends,
            state / "haproxy",
            host=self.config.host,
            web_port=self.config.web_port,
            grpc_port=self.config.grpc_port,
            sink=self.spec.log_sink,
            spawner=spawner,
        )
        self.proxy.start()
        self._wait("a master to lead, through the proxy", self._master.healthy, [*watched, *masters], deadline)
        return masters

    def _start_more_brokers(self, state: Path, deadline: float) -> list[ManagedProcess]:
        """The brokers past the first (LocalCluster's): stateless, as in the stack (nothing the master cannot
        rebuild), each kept running under its name (mosquitto-2, ...)."""
        cfg, started = self.config, []
        for i, port in enumerate(self.broker_ports[1:], start=2):
            directory = state / f"broker-{i}"
            directory.mkdir(mode=0o700, exist_ok=True)
            credentials = cfg.credentials if cfg.auth else None
            conf = write_config(
                directory,
                port,
                cfg.host,
                topic_prefix=cfg.topic_prefix,
                credentials=credentials,
                tls=cfg.broker_tls,
                baseline=cfg.baseline,
            )
            name = f"mosquitto-{i}"
            self._table.supervise(name)
            started.append(self._spawn(name, [str(find_mosquitto()), "-c", str(conf)], cfg.broker_env(os.environ)))
        for proc, port in zip(started, self.broker_ports[1:], strict=True):
            ready = lambda port=port: accepts_tcp(cfg.host, port)  # noqa: E731
            self._wait(f"{proc.name} to accept connections", ready, [proc], deadline)
        return started

    def _spawn_worker(self, env: Mapping[str, str], language: str) -> str:
        """As LocalCluster's, on the next broker in turn (unless `env` names one): workers spread over the nodes."""
        port = self.broker_ports[self._next_broker % len(self.broker_ports)]
        self._next_broker += 1
        return super()._spawn_worker({**ServiceSettings.env_of(mqtt_port=port), **env}, language)

    def _start_master(self, backend: Backend, state: Path) -> ManagedProcess:
        assert self.etcd is not None
        env = self.config.master_env(os.environ, journal_path=state / f"{backend.name}.unused.sqlite3")
        env.update(
            MasterSettings.env_of(
                journal_backend="etcd",
                etcd_endpoints=tuple(self.etcd.endpoints),
                etcd_prefix=ETCD_PREFIX,
                etcd_lease_seconds=self.lease_seconds,
                master_name=backend.name,
                mqtt_brokers=tuple(f"{self.config.host}:{port}" for port in self.broker_ports),
                web_port=backend.web_port,
                grpc_port=backend.grpc_port,
                trusted_proxy_hops=1,  # HAProxy appends the client's address to X-Forwarded-For
            )
        )
        self._table.supervise(backend.name)
        return self._spawn(backend.name, [sys.executable, "-m", "services.master"], env)

    def _stop_others(self) -> None:
        """HAProxy, then etcd (the masters, stopped before, resigned through it)."""
        if self.proxy is not None:
            self.proxy.stop()
        if self.etcd is not None:
            self.etcd.stop()
