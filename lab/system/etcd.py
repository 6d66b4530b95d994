"""A local etcd cluster: 1 or 3 members as child processes on free ports, their data and logs under one directory
(standby masters campaign for leadership in it; the tests run the etcd client against it)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from lab.system.ports import free_port
from lab.system.procs import ManagedProcess, Spawner

ETCD = "etcd"
STOP_GRACE_S = 2.0
_POLL_S = 0.05


class EtcdNotFoundError(RuntimeError):
    """The etcd binary is not installed."""

    def __init__(self) -> None:
        super().__init__(f"{ETCD} not found: install it with `sudo apt-get install etcd-server` (Debian's 3.4)")


def find_etcd() -> Path:
    """The path of the etcd binary; raises EtcdNotFoundError when there is none."""
    found = shutil.which(ETCD)
    if found is None:
        raise EtcdNotFoundError()
    return Path(found)


@dataclass(frozen=True)
class EtcdTlsFiles:
    """PEM files for mutual TLS: a CA, the members' certificate and key, a client's certificate and key."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@dataclass
class Member:
    """One etcd member: its name, ports, data directory, log file and process."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path
    host: str = "127.0.0.1"
    process: ManagedProcess | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        """host:port of its client API."""
        return f"{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        """URL of its peer API."""
        return f"http://{self.host}:{self.peer_port}"

    @property
    def alive(self) -> bool:
        """Whether its process runs."""
        return self.process is not None and self.process.alive


class EtcdCluster:
    """`size` members started as processes, each with its data directory and log file under `root`.

    Peers talk plain HTTP; with `tls`, the client port wants mutual TLS. Members are started on `spawner`'s
    thread, or on one of the cluster's own until `stop()`: a member gets SIGTERM when the thread that started it
    ends, and the caller's may be short-lived (asyncio.to_thread's ends with its event loop).
    """

    def __init__(
        self,
        root: Path,
        size: int = 1,
        token: str = "sal-tests",
        tls: EtcdTlsFiles | None = None,
        *,
        host: str = "127.0.0.1",
        spawner: Spawner | None = None,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.token = token
        self.tls = tls
        self.scheme = "https" if tls else "http"
        self.members = [
            Member(f"e{i}", free_port(host), free_port(host), root / f"e{i}.data", root / f"e{i}.log", host)
            for i in range(size)
        ]
        self.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        self._spawner = spawner
        self._own_spawner: Spawner | None = None

    @property
    def endpoints(self) -> list[str]:
        """Every member's host:port."""
        return [m.endpoint for m in self.members]

    def __enter__(self) -> EtcdCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 20.0) -> None:
        """Start every member and wait until each answers healthy."""
        binary = find_etcd()
        try:
            for member in self.members:
                self._spawn(binary, member, "new")
            self.wait_healthy(timeout, require_all=True)
        except BaseException:
            self.stop()  # `with` runs no __exit__ when __enter__ fails: no member may outlive its caller
            raise

    def _spawn(self, binary: Path, member: Member, state: str) -> None:
        args = [
            str(binary),
            f"--name={member.name}",
            f"--data-dir={member.data_dir}",
            f"--listen-client-urls={self.scheme}://{member.endpoint}",
            f"--advertise-client-urls={self.scheme}://{member.endpoint}",
            f"--listen-peer-urls={member.peer_url}",
            f"--initial-advertise-peer-urls={member.peer_url}",
            f"--initial-cluster={self.initial_cluster}",
            f"--initial-cluster-token={self.token}",
            f"--initial-cluster-state={state}",
            "--pre-vote=true",  # as the stack: a member back from a partition does not depose the leader
            "--logger=zap",
            "--log-outputs=stderr",  # into the log file through the pipe below, so a start-up failure lands there too
        ]
        if self.tls is not None:
            args += [
                f"--cert-file={self.tls.server_cert}",
                f"--key-file={self.tls.server_key}",
                f"--trusted-ca-file={self.tls.ca}",
                "--client-cert-auth",
            ]
        # etcd takes any ETCD_* variable as a flag: one left in the caller's environment would clash with these.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        log = member.log

        def to_file(name: str, line: str) -> None:
            with log.open("a", encoding="utf-8") as f:
                f.write(line + "\n")

        def spawn() -> ManagedProcess:
            return ManagedProcess(f"etcd-{member.name}", args, env=env, cwd=self.root, sink=to_file)

        if self._spawner is None:
            self._spawner = self._own_spawner = Spawner()
        member.process = self._spawner.call(spawn)

    def _ask(self, member: Member, path: str, body: bytes | None = None) -> dict[str, object] | None:
        """The member's JSON answer on its client port (etcd's HTTP gateway), or None where it does not answer."""
        context = None
        if self.tls is not None:
            context = ssl.create_default_context(cafile=str(self.tls.ca))
            context.load_cert_chain(self.tls.client_cert, self.tls.client_key)
        request = urllib.request.Request(f"{self.scheme}://{member.endpoint}{path}", data=body)
        try:
            with urllib.request.urlopen(request, timeout=0.5, context=context) as response:
                answer = json.loads(response.read())
                return answer if isinstance(answer, dict) else None
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def healthy(self, member: Member) -> bool:
        """Whether the member answers /health with a leader."""
        answer = self._ask(member, "/health")
        return answer is not None and answer.get("health") == "true"

    def wait_healthy(self, timeout: float = 20.0, *, require_all: bool = False) -> None:
        """Wait until every running member is healthy (it has a leader); with `require_all`, a member that
        exited fails at once (at start, where none was stopped on purpose)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [m for m in self.members if m.alive]
            if require_all and len(running) < len(self.members):
                dead = next(m for m in self.members if not m.alive)
                tail = "\n".join(f"  {line}" for line in dead.process.tail()) if dead.process else ""
                raise RuntimeError(f"etcd member {dead.name} exited: see {dead.log}\n{tail}")
            if not running:
                raise RuntimeError(f"every etcd member exited: see their logs under {self.root}")
            if all(self.healthy(m) for m in running):
                return
            time.sleep(_POLL_S)
        raise TimeoutError(f"etcd not healthy within {timeout} s: see the logs under {self.root}")

    def leader(self, timeout: float = 10.0) -> Member:
        """The member that is etcd's Raft leader now (waiting for an election if there is none), from the
        maintenance Status RPC through the HTTP gateway."""
        deadline = time.monotonic() + timeout
        while True:
            for member in self.members:
                status = self._ask(member, "/v3/maintenance/status", b"{}") if member.alive else None
                if status is None:
                    continue
                header = status.get("header")
                leader = status.get("leader")
                # The member that answers leads when its own id is the leader's.
                if isinstance(header, dict) and leader and header.get("member_id") == leader:
                    return member
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no etcd leader within {timeout} s")
            time.sleep(_POLL_S)

    def kill(self, member: Member) -> None:
        """kill -9 the member and reap it (its data directory stays, for `restart`)."""
        if member.process is not None:
            member.process.send_signal(signal.SIGKILL)
            member.process.reap()

    def stop_member(self, member: Member, grace: float = STOP_GRACE_S) -> None:
        """Stop the member cleanly (SIGTERM, SIGKILL after `grace` seconds) and reap it; its data stays."""
        if member.process is not None:
            member.process.stop(grace)

    def restart(self, member: Member, timeout: float = 20.0) -> None:
        """Start a killed or stopped member again with its data directory (killing it first if it runs), and
        wait until the running members are healthy."""
        self.kill(member)  # also reaps: a process still shutting down would hold the ports
        self._spawn(find_etcd(), member, "existing")
        self.wait_healthy(timeout)

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Stop every member, one at a time, the leader last; SIGKILL any that takes longer than `grace`."""
        # SIGTERM to all at once takes ~7 s: a stopping leader tries to hand leadership to followers that are
        # stopping too. Followers first, each alone, takes 0.05 s in all (measured on 3 members): a stopping
        # follower hands over nothing, and the leader, alone at last, has no one to hand over to.
        running = [m for m in self.members if m.alive]
        leader = self._leader_now(running)
        for member in [m for m in self.members if m is not leader] + ([leader] if leader else []):
            self.stop_member(member, grace)
        if self._own_spawner is not None:
            self._own_spawner.close()
            self._spawner = self._own_spawner = None

    def _leader_now(self, running: list[Member]) -> Member | None:
        """The leader if one answers at once (a cluster without quorum has none; the order then matters little)."""
        if len(running) < 2:
            return None
        try:
            return self.leader(timeout=0)
        except TimeoutError:
            return None
