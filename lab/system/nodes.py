"""HaNodes: the highly available system on three "machines" (network namespaces on one bridge) and a client.

Each node runs an etcd member, a Mosquitto (the masters get MQTT_BROKERS), a standby master and a Python worker;
the host's side is the client: HAProxy and the users. Faults: crash/revive, partition/heal, pause/resume of a
whole node. Needs root, iproute2, etcd, Mosquitto and HAProxy."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lab.system.broker import find_mosquitto, write_config
from lab.system.config import ClusterConfig, new_worker_id
from lab.system.etcd import find_etcd
from lab.system.haproxy import Backend, Haproxy
from lab.system.leaders import newest_leader, wait_leader
from lab.system.netns import Network, run, signal_netns
from lab.system.ports import accepts_tcp, free_port
from lab.system.procs import ManagedProcess, Spawner, stop_group
from services.master.settings import MasterSettings
from services.worker.settings import WorkerSettings

PREFIX = "salha"  # every namespace, link and record of this harness starts with it (the reaper's key)
WEB_PORT, GRPC_PORT, MQTT_PORT, ETCD_CLIENT, ETCD_PEER = 8888, 50051, 1883, 2379, 2380
LEASE_SECONDS = 5
# The load comes from one address at a steady rate: the per-user and per-address limits and the latency target
# must not refuse it (a refusal would read as a failover that is not over).
UNLIMITED: dict[str, Any] = {"rate_per_minute": 10**5, "rate_per_minute_per_address": 10**5}
UNLIMITED |= {"max_in_flight_per_session": 10**4, "max_in_flight_per_address": 10**4, "latency_target_seconds": 0}
_ASK_TIMEOUT_S = 0.5  # what a node that does not answer in this time (paused, cut off) says: nothing


def _to_file(path: Path) -> Callable[[str, str], None]:
    """A log sink appending each line to `path`."""

    def sink(_: str, line: str) -> None:
        with path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")

    return sink


@dataclass
class Node:
    """One machine: its namespace, host-side veth, address, data directory and processes (by role)."""

    name: str
    netns: str
    veth: str
    ip: str
    directory: Path
    worker_id: str
    procs: dict[str, ManagedProcess] = field(default_factory=dict, repr=False)
    state: str = "up"  # up, crashed, partitioned, paused

    @property
    def web_url(self) -> str:
        """Its master's web address, reached directly (not through the proxy)."""
        return f"http://{self.ip}:{WEB_PORT}"


class HaNodes:
    """Three nodes and a client as network namespaces on a private bridge; a context manager (root only).

    `work_seconds`: each worker's simulated work; `broker_per_node=False`: one broker on the host's side of the
    bridge for every node instead; `extra_env` goes to every master and worker. Logs: `run_dir`/logs/<process>.log.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        work_seconds: float = 0.5,
        lease_seconds: int = LEASE_SECONDS,
        broker_per_node: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.logs = run_dir / "logs"
        self.work_seconds = work_seconds
        self.lease_seconds = lease_seconds
        self.broker_per_node = broker_per_node
        self.extra_env = dict(extra_env or {})
        self.network = Network(PREFIX)
        self.nodes: list[Node] = []
        self.proxy: Haproxy | None = None
        self.config: ClusterConfig | None = None
        self.restarts: list[tuple[float, str, int | None]] = []  # (monotonic, process, exit code) by the watchdog
        self._host_procs: list[ManagedProcess] = []
        self._spawner: Spawner | None = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    def __enter__(self) -> HaNodes:
        try:
            self._build()
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=5)
        for node in self.nodes:
            signal_netns(node.netns, signal.SIGCONT)  # a paused node would hold SIGTERM until SIGKILL
        # Masters resign through etcd, so etcd goes last.
        stop_group([p for n in self.nodes for r, p in n.procs.items() if r != "etcd"], 3.0)
        if self.proxy is not None:
            self.proxy.stop()
        stop_group([p for n in self.nodes for r, p in n.procs.items() if r == "etcd"] + self._host_procs, 2.0)
        self.network.close()
        if self._spawner is not None:
            self._spawner.close()

    def _build(self) -> None:
        """Reap leftovers, make the bridge and one namespace with a veth into it per node."""
        self.logs.mkdir(parents=True, exist_ok=True)
        self.network.open()
        for i in range(1, 4):
            netns, veth, ip = self.network.add(i)
            node = Node(f"node-{i}", netns, veth, ip, self.run_dir / f"node-{i}", new_worker_id())
            node.directory.mkdir(parents=True, exist_ok=True)
            self.nodes.append(node)

    def _start(self, timeout: float = 60.0) -> None:
        """Start the broker(s), etcd, masters, workers and HAProxy; wait until the whole system serves."""
        self._spawner = Spawner()
        proxy_web, proxy_grpc = free_port(self.network.host_ip), free_port(self.network.host_ip)
        mqtt_port = MQTT_PORT if self.broker_per_node else free_port(self.network.host_ip)
        # The lab's config: its MQTT logins (the broker(s) with auth), operator token and journal key.
        config = ClusterConfig(proxy_web, proxy_grpc, mqtt_port, self.network.host_ip, work_seconds=self.work_seconds)
        self.config = config = replace(config, model_mode="offline", extra_env=self.extra_env)
        if not self.broker_per_node:
            conf = self.config.write_broker_config(self.run_dir)
            self._host_procs.append(self._spawn("mosquitto", [str(find_mosquitto()), "-c", str(conf)], None))
        for node in self.nodes:
            self._start_node(node)
        backends = [Backend(n.name, n.ip, WEB_PORT, GRPC_PORT) for n in self.nodes]
        sink = _to_file(self.logs / "haproxy.log")
        ports = {"web_port": proxy_web, "grpc_port": proxy_grpc}  # where ClusterConfig sends users and results
        self.proxy = Haproxy(
            backends, self.run_dir / "haproxy", host=self.network.host_ip, sink=sink, spawner=self._spawner, **ports
        )
        self.proxy.start()
        self.wait_whole(timeout)
        self._watchdog = threading.Thread(target=self._watch, name="ha-nodes-watchdog", daemon=True)
        self._watchdog.start()

    def _spawn(
        self, name: str, argv: list[str], node: Node | None, env: dict[str, str] | None = None
    ) -> ManagedProcess:
        """Start `argv` (in `node`'s namespace, else on the host) on the spawner's thread, logging to a file."""
        assert self._spawner is not None
        sink = _to_file(self.logs / f"{name}.log")
        sink(name, f"--- started at {time.strftime('%H:%M:%S')}")
        command = ["ip", "netns", "exec", node.netns, *argv] if node is not None else argv  # ip execs: same pid
        # etcd takes any ETCD_* variable as a flag; the masters get theirs explicitly.
        base = env if env is not None else {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        cwd = Path(__file__).resolve().parents[2]

        def spawn() -> ManagedProcess:
            return ManagedProcess(name, command, env=base, cwd=cwd, sink=sink)

        return self._spawner.call(spawn)

    def _start_node(self, node: Node) -> None:
        """Start the node's processes: etcd (with its data when it ran before), broker, master, worker."""
        assert self.config is not None
        peers = ",".join(f"e{i}=http://{n.ip}:{ETCD_PEER}" for i, n in enumerate(self.nodes, 1))
        client, peer, data = f"http://{node.ip}:{ETCD_CLIENT}", f"http://{node.ip}:{ETCD_PEER}", node.directory / "etcd"
        flags = {
            "name": f"e{self.nodes.index(node) + 1}",
            "data-dir": data,
            "listen-client-urls": client,
            "advertise-client-urls": client,
            "listen-peer-urls": peer,
            "initial-advertise-peer-urls": peer,
            "initial-cluster": peers,
            "initial-cluster-token": f"{PREFIX}-{self.network.tag}",
            "initial-cluster-state": "existing" if data.exists() else "new",  # a revived member rejoins with its data
            "pre-vote": "true",  # as the stack: a member back from a partition does not depose etcd's leader
            "logger": "zap",
            "log-outputs": "stderr",
        }
        etcd = [str(find_etcd()), *(f"--{k}={v}" for k, v in flags.items())]
        with self._lock:
            node.procs["etcd"] = self._spawn(f"{node.name}-etcd", etcd, node)
            if self.broker_per_node:
                conf = write_config(node.directory, MQTT_PORT, node.ip, credentials=self.config.credentials)
                mosquitto = [str(find_mosquitto()), "-c", str(conf)]
                node.procs["mosquitto"] = self._spawn(f"{node.name}-mosquitto", mosquitto, node)
            node.procs["master"] = self._spawn_master(node)
            node.procs["worker"] = self._spawn_worker(node)

    def master_env(self, node: Node) -> dict[str, str]:
        """A node's master environment: the lab's (ClusterConfig.master_env) with the node's addresses, etcd."""
        assert self.config is not None
        env = self.config.master_env(os.environ, journal_path=node.directory / "unused.sqlite3")
        env = {k: v for k, v in env.items() if not k.startswith("ETCD") or k in self.extra_env}
        env.update(
            MasterSettings.env_of(
                web_host=node.ip,
                web_port=WEB_PORT,
                grpc_host=node.ip,
                grpc_port=GRPC_PORT,
                grpc_endpoint=self.config.grpc_endpoint,  # the proxy's gRPC frontend: workers reach the leader
                journal_backend="etcd",
                etcd_endpoints=tuple(f"{n.ip}:{ETCD_CLIENT}" for n in self.nodes),
                etcd_lease_seconds=self.lease_seconds,
                master_name=node.name,
                trusted_proxy_hops=1,
                **UNLIMITED,
            )
        )
        if self.broker_per_node:
            env.update(MasterSettings.env_of(mqtt_brokers=tuple(f"{n.ip}:{MQTT_PORT}" for n in self.nodes)))
        env.update(self.extra_env)
        return env

    def _spawn_master(self, node: Node) -> ManagedProcess:
        argv = [sys.executable, "-m", "services.master"]
        return self._spawn(f"{node.name}-master", argv, node, self.master_env(node))

    def _spawn_worker(self, node: Node) -> ManagedProcess:
        assert self.config is not None
        env = self.config.worker_env(node.worker_id, os.environ, health_file=node.directory / "worker.health")
        if self.broker_per_node:
            env.update(WorkerSettings.env_of(mqtt_host=node.ip, mqtt_port=MQTT_PORT))
        return self._spawn(f"{node.name}-worker", [sys.executable, "-m", "services.worker"], node, env)

    def _watch(self) -> None:
        """Start a node's master or worker again when it exits while its node runs (a deposed leader exits 3 and
        comes back as a standby, as its Swarm task would)."""
        while not self._stop.wait(0.25):
            with self._lock:
                for node in self.nodes:
                    if node.state == "crashed":
                        continue
                    for role, spawn in (("master", self._spawn_master), ("worker", self._spawn_worker)):
                        proc = node.procs.get(role)
                        if proc is not None and not proc.alive and not proc.stopped_on_purpose:
                            self.restarts.append((time.monotonic(), proc.name, proc.reap()))
                            node.procs[role] = spawn(node)

    def node(self, name: str | Node) -> Node:
        """The node called `name` (node-1, ...)."""
        return name if isinstance(name, Node) else next(n for n in self.nodes if n.name == name)

    def crash(self, name: str | Node) -> float:
        """A dead machine: its cable out first (so no FIN or RST escapes), then SIGKILL every process in it.
        Returns when it was cut off (time.monotonic()), as the other fault methods do."""
        node = self.node(name)
        with self._lock:
            node.state = "crashed"
            run("ip", "link", "set", node.veth, "down")
            at = time.monotonic()
            signal_netns(node.netns, signal.SIGKILL)  # a paused process dies of it too
            for proc in node.procs.values():
                proc.reap()
        return at

    def revive(self, name: str | Node) -> None:
        """The machine back: cable in, its processes started again (etcd rejoins with its data; the master
        comes back as a standby)."""
        node = self.node(name)
        with self._lock:
            run("ip", "link", "set", node.veth, "up")
            self._start_node(node)
            node.state = "up"

    def partition(self, name: str | Node) -> float:
        """Cut the node off (its cable out), its processes alive."""
        return self._cable(self.node(name), "down", "partitioned")

    def heal(self, name: str | Node) -> float:
        """Plug the partitioned node's cable back in."""
        return self._cable(self.node(name), "up", "up")

    @staticmethod
    def _cable(node: Node, link: str, state: str) -> float:
        run("ip", "link", "set", node.veth, link)
        node.state = state
        return time.monotonic()

    def pause(self, name: str | Node) -> float:
        """SIGSTOP every process of the node (a frozen VM)."""
        node = self.node(name)
        with self._lock:  # not while the watchdog restarts one of them
            node.state = "paused"
            signal_netns(node.netns, signal.SIGSTOP)
            return time.monotonic()

    def resume(self, name: str | Node) -> float:
        """SIGCONT every process of the node."""
        signal_netns(self.node(name).netns, signal.SIGCONT)
        self.node(name).state = "up"
        return time.monotonic()

    @property
    def web_url(self) -> str:
        """The proxy's web frontend (users)."""
        assert self.proxy is not None
        return self.proxy.web_url

    @staticmethod
    def _get(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
        request = urllib.request.Request(url, data=body, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=_ASK_TIMEOUT_S) as response:
                answer = response.read()
        except urllib.error.HTTPError as e:  # a standby's 503 still says who it is
            answer = e.read()
        except OSError:
            return None
        with contextlib.suppress(ValueError):
            return json.loads(answer)
        return None

    def _each(self, ask: Callable[[Node], Any]) -> list[Any]:
        with ThreadPoolExecutor(len(self.nodes)) as pool:  # one slow (paused) node must not delay the others
            return list(pool.map(ask, self.nodes))

    def leader(self) -> tuple[Node, int] | None:
        """The node whose master says it leads, and its epoch (None: none says so now)."""
        infos = self._each(lambda n: self._get(f"{n.web_url}/leader"))
        return newest_leader(zip(self.nodes, infos, strict=True))

    def wait_leader(self, timeout: float = 30.0, after_epoch: int = 0) -> tuple[Node, int]:
        """Wait until a master leads with an epoch above `after_epoch`."""
        return wait_leader(self.leader, timeout, after_epoch, poll=0.1)

    def etcd_leader(self) -> Node | None:
        """The node whose etcd member is Raft's leader (maintenance Status through etcd's HTTP gateway)."""
        statuses = self._each(lambda n: self._get(f"http://{n.ip}:{ETCD_CLIENT}/v3/maintenance/status", b"{}"))
        for node, status in zip(self.nodes, statuses, strict=True):
            leader = status.get("leader") if isinstance(status, dict) else None
            if leader and status["header"].get("member_id") == leader:  # it answers that it leads itself
                return node
        return None

    def etcd_healthy(self) -> list[bool]:
        """Whether each node's etcd member answers /health with a leader."""
        answers = self._each(lambda n: self._get(f"http://{n.ip}:{ETCD_CLIENT}/health"))
        return [isinstance(a, dict) and a.get("health") == "true" for a in answers]

    def online_workers(self) -> int:
        """How many workers the leader lists as idle or busy (its /api/status, through the proxy)."""
        assert self.config is not None
        token = {"Authorization": f"Bearer {self.config.operator_token}"}
        status = self._get(f"{self.web_url}/api/status", headers=token)
        return sum(1 for w in (status or {}).get("workers", []) if w.get("state") in ("idle", "busy"))

    def whole(self) -> bool:
        """Every node up: each etcd member healthy, each master answering, a leader, every worker online."""
        masters = self._each(lambda n: self._get(f"{n.web_url}/healthz") is not None)
        proxy = accepts_tcp(self.network.host_ip, self.config.web_port if self.config else 0)
        return all(masters) and all(self.etcd_healthy()) and proxy and self.online_workers() >= len(self.nodes)

    def wait_whole(self, timeout: float = 60.0) -> float:
        """Wait until `whole()`; return how long it took."""
        started = time.monotonic()
        while not self.whole():
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"the nodes were not whole within {timeout:g} s: see {self.logs}")
            time.sleep(0.2)
        return time.monotonic() - started

    def describe(self) -> dict[str, Any]:
        """The topology, for a report."""
        broker = (
            "one per node (MQTT_BROKERS)" if self.broker_per_node else f"{self.network.host_ip} (host side, for all)"
        )
        nodes = [{"name": n.name, "netns": n.netns, "ip": n.ip, "worker": n.worker_id} for n in self.nodes]
        return {"bridge": self.network.bridge, "client": self.network.host_ip, "broker": broker, "nodes": nodes}
