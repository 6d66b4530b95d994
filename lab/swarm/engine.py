"""The Docker engine of `lab swarm local` on this machine: dockerd and a registry started by hand (no systemd
needed), a snapshot of the host's network taken before, and the cleanup that puts the network back.

What dockerd leaves behind when stopped (measured, /work/shared/notes/docker-engine.md): the docker0 and
docker_gwbridge links, its iptables rules (nft tables `ip filter`, `ip nat`...), `net.ipv4.ip_forward=1`, and
the `netns/default` mount of its runtime directory. `restore_network` removes what was not there before.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab.swarm.docker import Docker, DockerError

STATE_DIR = Path("/run/lab-swarm-local")
REGISTRY_ADDR = "127.0.0.1:5000"
SYSCTLS = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding")
# Links an engine makes in the host's namespace; only new ones of these are ever deleted.
ENGINE_LINKS = ("docker0", "docker_gwbridge", "veth", "br-", "vx-")
DOCKERD_RUNTIME = (Path("/run/docker"), Path("/run/containerd"))
REGISTRY_CONFIG = """\
# Written by `lab swarm local up`: Debian's docker-registry without its default htpasswd auth, on loopback.
version: 0.1
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: {addr}
"""


class Host:
    """Runs (or, dry, prints) commands on the host other than docker, each printed first."""

    def __init__(self, *, dry_run: bool = False, out: Callable[[str], None] | None = None) -> None:
        self.dry_run = dry_run
        self.out = out or (lambda line: print(line, flush=True))

    def run(self, *args: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str] | None:
        """Run a command, capturing its output; None in a dry run. Raises DockerError on failure when `check`."""
        if not quiet:
            self.out(f"$ {shlex.join(args)}")
        if self.dry_run:
            return None
        done = subprocess.run(list(args), capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            raise DockerError(f"`{shlex.join(args[:3])}` failed (exit {done.returncode}): {done.stderr.strip()[:400]}")
        return done

    def shell(self, line: str) -> None:
        """A pipeline (printed as is); raises DockerError on failure."""
        self.out(f"$ {line}")
        if not self.dry_run:
            done = subprocess.run(["sh", "-c", line], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise DockerError(f"`{line[:80]}` failed (exit {done.returncode}): {done.stderr.strip()[:400]}")


@dataclass
class NetworkSnapshot:
    """What of the host's network an engine changes: links, nft tables and the forwarding sysctls."""

    links: list[str] = field(default_factory=list)
    nft_tables: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)

    def differences(self, now: NetworkSnapshot) -> list[str]:
        """What `now` has that this snapshot had not (or has changed)."""
        found = [f"link {name} is new" for name in sorted(set(now.links) - set(self.links))]
        found += [f"nft {table} is new" for table in sorted(set(now.nft_tables) - set(self.nft_tables))]
        found += [
            f"{name} is {value} (was {self.sysctls[name]})"
            for name, value in sorted(now.sysctls.items())
            if name in self.sysctls and value != self.sysctls[name]
        ]
        return found


def _lines(args: Sequence[str]) -> list[str]:
    if shutil.which(args[0]) is None:
        return []
    done = subprocess.run(list(args), capture_output=True, text=True, check=False)
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def snapshot() -> NetworkSnapshot:
    """The host's links (names), nft tables ('table ip filter') and forwarding sysctls now."""
    links = [line.split(":", 2)[1].strip().split("@")[0] for line in _lines(["ip", "-o", "link", "show"])]
    sysctls = {}
    for name in SYSCTLS:
        path = Path("/proc/sys") / name
        if path.exists():
            sysctls[name] = path.read_text().strip()
    return NetworkSnapshot(links, _lines(["nft", "list", "tables"]), sysctls)


@dataclass
class EngineState:
    """What `lab swarm local up` made, so that `down` removes exactly that (kept in STATE_DIR/state.json)."""

    network: NetworkSnapshot
    stack: str = "ai-system"
    dockerd_pid: int | None = None
    registry_pid: int | None = None
    swarm_created: bool = False
    labels_added: list[str] = field(default_factory=list)
    secrets_created: list[str] = field(default_factory=list)
    volumes_before: list[str] = field(default_factory=list)

    def save(self, directory: Path = STATE_DIR) -> None:
        """Write the state file."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "state.json").write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path = STATE_DIR) -> EngineState | None:
        """The state file's content, or None when `up` left none."""
        path = directory / "state.json"
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        data["network"] = NetworkSnapshot(**data["network"])
        return cls(**data)


def daemon_answers(docker: Docker) -> bool:
    """Whether `docker info` reaches a daemon."""
    done = docker.query("info", "--format", "{{.ServerVersion}}", echo=False)
    return done is not None and done.returncode == 0


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise DockerError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.5)


def _spawn(args: list[str], log: Path, out: Callable[[str], None]) -> int:
    out(f"$ {shlex.join(args)} > {log} 2>&1 &")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        process = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    return process.pid


def start_dockerd(docker: Docker, directory: Path = STATE_DIR) -> int:
    """Start dockerd with its defaults (it starts its own containerd); return its PID once it answers."""
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise DockerError("dockerd is not installed: `apt-get install docker.io containerd runc tini iptables`")
    pid = _spawn([dockerd], directory / "dockerd.log", docker.out)
    try:
        _wait(lambda: daemon_answers(docker), 60, f"dockerd answering (log: {directory / 'dockerd.log'})")
    except DockerError:
        stop_process(pid, "dockerd", docker.out)
        raise
    return pid


def registry_answers(addr: str = REGISTRY_ADDR) -> bool:
    """Whether a registry answers on `addr` (GET /v2/)."""
    try:
        # No proxy: a proxy from the environment would answer for it.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://{addr}/v2/", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_registry(out: Callable[[str], None], directory: Path = STATE_DIR) -> int:
    """Start Debian's docker-registry on 127.0.0.1:5000 with a config of its own; return its PID."""
    program = shutil.which("docker-registry") or shutil.which("registry")
    if program is None:
        raise DockerError("no registry to push to: `apt-get install docker-registry` (or run one on 127.0.0.1:5000)")
    config = directory / "registry.yml"
    directory.mkdir(parents=True, exist_ok=True)
    config.write_text(REGISTRY_CONFIG.format(root=directory / "registry", addr=REGISTRY_ADDR))
    out(f"# {config}: storage in {directory / 'registry'}, no auth, listening on {REGISTRY_ADDR} only")
    pid = _spawn([program, "serve", str(config)], directory / "registry.log", out)
    try:
        _wait(registry_answers, 30, f"the registry answering (log: {directory / 'registry.log'})")
    except DockerError:
        stop_process(pid, "docker-registry", out)
        raise
    return pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie of ours (when this process started it) is gone for our purpose: reap it.
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return Path(f"/proc/{pid}").exists() and "zombie" not in _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].split("\n", 1)[0].lower()
    except (OSError, IndexError):
        return ""


def stop_process(pid: int, name: str, out: Callable[[str], None], timeout: float = 30.0) -> None:
    """SIGTERM `pid` (a process `up` started), then SIGKILL if it is still there after `timeout`."""
    if not _alive(pid):
        return
    out(f"$ kill {pid}  # {name}")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        out(f"$ kill -KILL {pid}  # {name} did not stop within {timeout:g} s")
        os.kill(pid, signal.SIGKILL)


def clean_runtime(host: Host) -> None:
    """Unmount what dockerd left mounted in its runtime directories and remove them."""
    mounts = Path("/proc/self/mounts").read_text().splitlines() if not host.dry_run else []
    for runtime in DOCKERD_RUNTIME:
        inside = [m.split()[1] for m in mounts if m.split()[1].startswith(f"{runtime}/")]
        for mount in sorted(inside, key=len, reverse=True):
            host.run("umount", mount, check=False)
        if runtime.exists():
            host.out(f"$ rm -rf {runtime}")
            if not host.dry_run:
                shutil.rmtree(runtime, ignore_errors=True)


def restore_network(host: Host, before: NetworkSnapshot) -> list[str]:
    """Delete the engine's new links and nft tables, put the sysctls back; return what still differs."""
    now = snapshot()
    for name in sorted(set(now.links) - set(before.links)):
        if name.startswith(ENGINE_LINKS):
            host.run("ip", "link", "del", name, check=False)
    for table in sorted(set(now.nft_tables) - set(before.nft_tables)):
        host.run("nft", "delete", *table.split(), check=False)
    for name, value in before.sysctls.items():
        if now.sysctls.get(name) != value:
            host.run("sysctl", "-q", "-w", f"{name.replace('/', '.')}={value}", check=False)
    return before.differences(snapshot())
