"""The Swarm stack (stack.yml) run "across hosts" without Docker: one network namespace per replica.

`StackHosts` reads the stack as Docker does (`docker stack config`), gives every replica a network namespace
with a veth into one private bridge, its own IP, hostname, /etc/hosts (the service names, as Swarm's DNS
resolves them), /tmp, /run/secrets (the stack's secrets, modes and owners), configs and volumes (per-replica
directories that outlive a restart), then starts each service's command with exactly the stack's environment
and runs the stack's healthchecks inside the namespace. Everything it makes on the host is removed on exit.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import ipaddress
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from lab.system.credentials import Credentials, password_file
from lab.system.workers import worker_kind

REPO_ROOT = Path(__file__).resolve().parents[2]


def _kept_under_tmp() -> list[Path]:
    """What the services need from the host's /tmp, which each namespace covers with its own: the
    repository (their code) and the interpreter's environment, when a checkout lives there (a CI clone)."""
    wanted = {REPO_ROOT, Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parent}
    under = sorted(p.resolve() for p in wanted if Path("/tmp") in p.resolve().parents)
    return [p for p in under if not any(q in p.parents for q in under)]


STACK_FILE = REPO_ROOT / "stack.yml"
# The PATH Docker gives a container whose image sets none.
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Our images, by repository name (registry and tag stripped), and their Dockerfiles.
DOCKERFILES = {
    "swarm-ai-lab/master": REPO_ROOT / "services/master/Dockerfile",
    "swarm-ai-lab/worker": REPO_ROOT / "services/worker/Dockerfile",
    "swarm-ai-lab/worker-go": REPO_ROOT / "services/worker-go/Dockerfile",
    "swarm-ai-lab/worker-java": REPO_ROOT / "services/worker-java/Dockerfile",
}
# Images whose program is a binary built here rather than the repository's Python: the worker of that
# language as `lab.system.workers` starts it (services/worker-go/bin/worker-go, services/worker-java/worker-java).
# The stack's command and health check name the program's path in the image; here it is the local build's.
LOCAL_PROGRAMS = {"swarm-ai-lab/worker-go": "go", "swarm-ai-lab/worker-java": "java"}
# External images: the user that owns their data. eclipse-mosquitto's entrypoint chowns /mosquitto to its
# user (uid 1883 in the image, which the stack's secret owners name); here that is the host's `mosquitto`.
IMAGE_USERS = {"eclipse-mosquitto": "mosquitto"}
IMAGE_UIDS = {1883: "mosquitto"}
# Host paths that several runs may share (/etc/netns, mount points such as /run/secrets or /mosquitto):
# created when missing, removed by the last run out. `ip netns` and `mount` make /run/netns and /run/mount.
SHARED_STATE = Path("/run/sal-stack-hosts.json")
TOOL_PATHS = (Path("/run/mount"), Path("/run/netns"))  # removed in reverse: umount makes /run/mount
NETNS_ETC = Path("/etc/netns")
SECRETS_DIR = PurePosixPath("/run/secrets")
HEALTH_POLL_SECONDS = 1.0  # faster than the stack's interval: the test waits for every service


def stack_config(stack_file: Path = STACK_FILE, variables: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The stack as `docker stack config` renders it (interpolated, `$$` -> `$`) with only `variables` set."""
    env = {"PATH": os.environ.get("PATH", CONTAINER_PATH), "HOME": os.environ.get("HOME", "/root")}
    done = subprocess.run(
        ["docker", "stack", "config", "-c", str(stack_file)],
        env={**env, **(variables or {})},
        cwd=stack_file.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"docker stack config failed: {done.stderr.strip()}")
    data = yaml.safe_load(done.stdout)
    if not isinstance(data, dict):
        raise RuntimeError("docker stack config printed no mapping")
    return data


def deployment_secrets(credentials: Credentials, gemini_api_key: str = "", operator_token: str = "") -> dict[str, str]:
    """The stack's external secrets as `lab swarm secrets` makes them (an empty key: the offline model; a random
    journal key; `operator_token`, or a random one)."""
    return {
        "mqtt_master_password": credentials.master,
        "mqtt_worker_password": credentials.worker,
        "mqtt_observer_password": credentials.observer,
        "mqtt_passwd": password_file(credentials),
        "gemini_api_key": gemini_api_key,
        "operator_token": operator_token or secrets.token_urlsafe(32),
        "journal_key": base64.b64encode(secrets.token_bytes(32)).decode("ascii"),
    }


@dataclass
class ImageConfig:
    """What a Dockerfile's final stage runs: exec-form ENTRYPOINT and CMD, its ENV and USER."""

    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    user: str = ""


def _instructions(text: str) -> Iterator[tuple[str, str]]:
    logical = ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue  # Docker drops comment lines, even inside a continued instruction
        if line.rstrip().endswith("\\"):
            logical += line.rstrip()[:-1] + " "
            continue
        logical += line
        word, _, rest = logical.strip().partition(" ")
        logical = ""
        yield word.upper(), rest.strip()


def _exec_form(args: str) -> list[str]:
    if args.startswith("["):
        return [str(a) for a in json.loads(args)]
    return ["/bin/sh", "-c", args]


def image_config(dockerfile: Path) -> ImageConfig:
    """The final stage's ENTRYPOINT/CMD/ENV/USER, following `FROM <earlier stage>` (a new ENTRYPOINT resets CMD)."""
    stages: dict[str, ImageConfig] = {}
    current = ImageConfig()
    for word, args in _instructions(dockerfile.read_text(encoding="utf-8")):
        if word == "FROM":
            parts = [p for p in args.split() if not p.startswith("--")]
            base = stages.get(parts[0].lower(), ImageConfig())
            current = replace(base, env=dict(base.env))
            if len(parts) >= 3 and parts[1].lower() == "as":
                stages[parts[2].lower()] = current
        elif word == "ENTRYPOINT":
            current.entrypoint, current.cmd = _exec_form(args), []
        elif word == "CMD":
            current.cmd = _exec_form(args)
        elif word == "ENV":
            tokens = shlex.split(args)
            pairs = [t.partition("=") for t in tokens] if "=" in tokens[0] else [(tokens[0], "=", " ".join(tokens[1:]))]
            current.env.update({k: v for k, _, v in pairs})
        elif word == "USER":
            current.user = args
    return current


def image_name(image: str) -> str:
    """`localhost:5000/swarm-ai-lab/master:latest` -> `swarm-ai-lab/master`; `eclipse-mosquitto:2` -> itself."""
    parts = image.split("@")[0].split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]  # the registry
    return "/".join([*parts[:-1], parts[-1].split(":")[0]])


def _python(argv: list[str]) -> list[str]:
    """A container's `python` is this repo's interpreter."""
    return [sys.executable, *argv[1:]] if argv and argv[0] in ("python", "python3") else argv


def _local_program(language: str, args: list[str]) -> list[str]:
    """The local build of a worker image's program, with `args` (e.g. `--check`)."""
    return worker_kind(language).command(*args)


def _uid(value: object, default: int = 0) -> int:
    if value is None or value == "":
        return default
    number = int(str(value))
    return pwd.getpwnam(IMAGE_UIDS[number]).pw_uid if number in IMAGE_UIDS else number


@dataclass(frozen=True)
class FileMount:
    """A secret or config: its content, where it goes, its mode and owner."""

    target: PurePosixPath
    content: bytes
    mode: int
    uid: int
    gid: int


@dataclass
class Service:
    """One service of the stack, as it will run here."""

    name: str
    image: str
    replicas: int
    command: list[str]
    environment: dict[str, str]
    files: list[FileMount]
    volumes: list[tuple[str, PurePosixPath]]
    healthcheck: list[str] | None
    health_timeout: float
    health_deadline: float
    user: tuple[int, int] | None = None  # the image's numeric USER, when its Dockerfile sets one


def _seconds(value: object, default: float) -> float:
    text = str(value or "")
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    found = re.findall(r"([\d.]+)(ms|s|m|h)", text)
    return sum(float(n) * units[u] for n, u in found) if found else default


def read_services(config: Mapping[str, Any], secret_values: Mapping[str, str]) -> list[Service]:
    """Every service of a rendered stack with its command, environment, files, volumes and healthcheck."""
    services = []
    for name, spec in config["services"].items():
        # The autoscaler drives a Docker engine through its socket, and these namespaces have none (its own
        # tests: tests/unit/test_swarm_actuator.py and the stack's static checks).
        if any(isinstance(v, dict) and v.get("source") == "/var/run/docker.sock" for v in spec.get("volumes", [])):
            continue
        image = str(spec["image"])
        built = ImageConfig()
        language = LOCAL_PROGRAMS.get(image_name(image))
        if image_name(image) in DOCKERFILES:
            dockerfile = DOCKERFILES[image_name(image)]
            if dockerfile.exists():
                built = image_config(dockerfile)
            elif language is None:  # a local program needs no Dockerfile to run here (only its USER is read)
                raise FileNotFoundError(f"{dockerfile} (image {image}) is missing")
        command = [str(c) for c in spec.get("command") or []] or built.entrypoint + built.cmd
        if language is not None:
            command = _local_program(language, command[1:] if command else [])
        if not command:
            raise ValueError(f"{name}: no command and no Dockerfile for {image}")
        # The image's PATH and PYTHONPATH name the image's directories, not ours (we run from the repo).
        image_env = {k: v for k, v in built.env.items() if k not in ("PATH", "PYTHONPATH")}
        user = re.fullmatch(r"(\d+)(?::(\d+))?", built.user)
        files = [
            FileMount(
                SECRETS_DIR / str(s.get("target", s["source"])),
                secret_values[s["source"]].encode(),
                int(s.get("mode", 0o444)),
                _uid(s.get("uid")),
                _uid(s.get("gid")),
            )
            for s in spec.get("secrets", [])
        ]
        for c in spec.get("configs", []):
            source = Path(config["configs"][c["source"]]["file"])
            target = PurePosixPath(str(c.get("target", f"/{c['source']}")))
            files.append(FileMount(target, source.read_bytes(), int(c.get("mode", 0o444)), _uid(c.get("uid")), 0))
        volumes = [(str(v["source"]), PurePosixPath(str(v["target"]))) for v in spec.get("volumes", [])]
        check = spec.get("healthcheck", {})
        test = [str(t) for t in check.get("test", [])]
        healthcheck = _python(test[1:]) if test[:1] == ["CMD"] else ["/bin/sh", "-c", test[1]] if test else None
        if language is not None and test[:1] == ["CMD"]:
            healthcheck = _local_program(language, test[2:])  # the image's program, with its arguments
        interval, retries = _seconds(check.get("interval"), 30.0), int(check.get("retries", 3))
        services.append(
            Service(
                name=name,
                image=image,
                replicas=int(spec.get("deploy", {}).get("replicas", 1)),
                command=_python(command),
                environment={**image_env, **{k: str(v) for k, v in (spec.get("environment") or {}).items()}},
                files=files,
                volumes=volumes,
                healthcheck=healthcheck,
                health_timeout=_seconds(check.get("timeout"), 30.0),
                health_deadline=_seconds(check.get("start_period"), 0.0) + interval * retries,
                user=(int(user[1]), int(user[2] or user[1])) if user else None,
            )
        )
    return services


def unreadable_secrets(services: list[Service]) -> list[str]:
    """Secrets that a service's image USER may not read (Swarm's default owner is root, mode 0444)."""
    problems = []
    for s in services:
        for f in s.files:
            if s.user is None or SECRETS_DIR not in f.target.parents:
                continue
            uid, gid = s.user
            if not (f.mode & 0o004 or (f.uid == uid and f.mode & 0o400) or (f.gid == gid and f.mode & 0o040)):
                problems.append(
                    f"{s.name}: {f.target} has mode {f.mode:04o} and owner {f.uid}:{f.gid}, "
                    f"but the image runs as {uid}:{gid} (USER in its Dockerfile)"
                )
    return problems


@dataclass
class Replica:
    """One task of a service: its namespace, address, process and log."""

    name: str
    service: Service
    netns: str
    hostname: str
    ip: str
    veth: str
    log: Path
    process: subprocess.Popen[bytes] | None = None
    health: dict[str, Any] = field(default_factory=dict)

    def log_text(self) -> str:
        """Everything the replica has printed so far (all its starts)."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def _first_missing(path: PurePosixPath, ours: set[str]) -> PurePosixPath | None:
    """The first component of `path` missing on the host; a harness-made (empty) directory counts as missing."""
    for p in [*reversed(path.parents), path]:
        if str(p) in ours or not os.path.lexists(p):
            return p
    return None


@contextlib.contextmanager
def _shared_state() -> Iterator[dict[str, Any]]:
    """The shared host paths' state, under an exclusive lock on /run (so no lock file is left behind).

    `users` are the [pid, prefix] of running harnesses; what a dead one left (it was killed) is removed, and
    when no user is left, so are the paths in `created`."""
    fd = os.open("/run", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        state: dict[str, Any] = {"users": [], "created": []}
        if SHARED_STATE.exists():
            state = json.loads(SHARED_STATE.read_text())
        for pid, prefix in state["users"]:
            if not _alive(pid):
                _reap(prefix)
        state["users"] = [[pid, prefix] for pid, prefix in state["users"] if _alive(pid)]
        try:
            yield state
        finally:
            if state["users"]:
                SHARED_STATE.write_text(json.dumps(state))
            else:
                _remove_shared(state["created"])
                SHARED_STATE.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _reap(prefix: str) -> None:
    """Remove what a killed harness left: its processes, namespaces, links, hosts files and temp files."""
    for line in _run("ip", "netns", "list").splitlines():
        netns = line.split()[0]
        if netns.startswith(f"{prefix}-"):
            for pid in _run("ip", "netns", "pids", netns).split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
    for line in _run("ip", "-o", "link", "show").splitlines():
        link = line.split(":")[1].strip().split("@")[0]
        if link.startswith(f"{prefix}-"):
            subprocess.run(["ip", "link", "del", link], capture_output=True)
    for path in [*NETNS_ETC.glob(f"{prefix}-*"), *Path(tempfile.gettempdir()).glob(f"{prefix}-*")]:
        shutil.rmtree(path, ignore_errors=True)


def _remove_shared(created: list[str]) -> None:
    for name in reversed(created):
        path = Path(name)
        if path == Path("/run/netns") and path.is_dir() and not any(path.iterdir()):
            subprocess.run(["umount", str(path)], capture_output=True)  # `ip netns` mounted it on itself
        with contextlib.suppress(OSError):
            if path.is_dir():
                path.rmdir()  # only when empty
            elif path.exists() and path.stat().st_size == 0:
                path.unlink()


class StackHosts:
    """The stack's replicas in network namespaces on a private bridge; a context manager that removes all."""

    def __init__(
        self,
        variables: Mapping[str, str],
        secret_values: Mapping[str, str],
        log_dir: Path,
        test_env: Mapping[str, Mapping[str, str]] | None = None,
        held: Collection[str] = (),
        stack_file: Path = STACK_FILE,
    ) -> None:
        """`test_env`: extra environment per service, a test override on top of the stack's. Services
        in `held` are not started on entry (`start_service` does); the others start at once, as in Swarm."""
        self.variables = dict(variables)
        self.held = set(held)
        self.test_env = {k: dict(v) for k, v in (test_env or {}).items()}
        self.services = read_services(stack_config(stack_file, variables), secret_values)
        self.log_dir = log_dir
        self.prefix = f"sal{secrets.token_hex(2)}"
        self.bridge = f"{self.prefix}-br"
        self.subnet = ""
        self.host_ip = ""
        self.replicas: dict[str, Replica] = {}
        self._work = Path()  # made on entry
        self._made: list[tuple[str, str]] = []  # (kind, name) to undo, in order
        self._tmpfs: list[PurePosixPath] = []
        # Outside /tmp, where each namespace holds what it keeps of the host's /tmp (see _mount_script).
        self._keep = Path("/run") / f"{self.prefix}-keep"

    # -- set-up and tear-down -------------------------------------------------------------------------
    def __enter__(self) -> StackHosts:
        try:
            self._build()
            started = [r.name for r in self.replicas.values() if r.service.name not in self.held]
            for name in started:
                self.start(name)
            self.wait_healthy(started)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(*self.replicas)
        for kind, name in reversed(self._made):
            with contextlib.suppress(Exception):
                if kind == "netns":
                    _run("ip", "netns", "del", name)
                elif kind == "link":
                    _run("ip", "link", "del", name)
                elif kind == "dir":
                    shutil.rmtree(name)
        if self._work != Path():
            shutil.rmtree(self._work, ignore_errors=True)
        with _shared_state() as state:
            state["users"] = [u for u in state["users"] if u != [os.getpid(), self.prefix]]

    def _targets(self) -> list[PurePosixPath]:
        """Directories that must exist in every namespace: /etc/netns, /run/secrets, configs' and volumes'."""
        targets = [PurePosixPath(NETNS_ETC), SECRETS_DIR] + [f.target.parent for s in self.services for f in s.files]
        return targets + [t for s in self.services for _, t in s.volumes]

    def _build(self) -> None:
        self._work = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self._keep.mkdir()
        self._made.append(("dir", str(self._keep)))
        with _shared_state() as state:
            state["users"].append([os.getpid(), self.prefix])
            ours = set(state["created"])
            # A missing first component becomes an empty host directory (a mount point) and, in each
            # namespace, a tmpfs: nothing a service writes there reaches the host.
            anchors = {a for a in (_first_missing(t, ours) for t in self._targets()) if a is not None}
            self._tmpfs = sorted((anchors - {PurePosixPath(NETNS_ETC)}) | {SECRETS_DIR})
            for path in [*TOOL_PATHS, *sorted(map(Path, anchors))]:
                if not os.path.lexists(path):
                    state["created"].append(str(path))
                    if path not in TOOL_PATHS:
                        path.mkdir(mode=0o755)
            # Under the lock: two runs never take the same subnet.
            used = _run("ip", "-4", "-o", "addr", "show") + _run("ip", "-4", "route", "show")
            free = [n for n in range(256) if f"10.213.{n}." not in used]
            net = ipaddress.ip_network(f"10.213.{secrets.choice(free)}.0/24")
            self.subnet, self.host_ip = str(net), str(net[1])
            _run("ip", "link", "add", self.bridge, "type", "bridge")
            self._made.append(("link", self.bridge))
            _run("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
            _run("ip", "link", "set", self.bridge, "up")
        index = 0
        for service in self.services:
            for slot in range(1, service.replicas + 1):
                name = service.name if service.replicas == 1 else f"{service.name}.{slot}"
                ip = str(net[10 + index])
                replica = Replica(
                    name,
                    service,
                    f"{self.prefix}-{name}",
                    name.replace(".", "-"),
                    ip,
                    f"{self.prefix}-v{index}",
                    self.log_dir / f"{name}.log",
                )
                self.replicas[name] = replica
                self._plumb(replica)
                index += 1
        for replica in self.replicas.values():
            self._write_hosts(replica)

    def _plumb(self, r: Replica) -> None:
        _run("ip", "netns", "add", r.netns)
        self._made.append(("netns", r.netns))
        _run("ip", "link", "add", r.veth, "type", "veth", "peer", "name", "eth0", "netns", r.netns)
        self._made.append(("link", r.veth))
        _run("ip", "link", "set", r.veth, "master", self.bridge, "up")
        _run("ip", "-n", r.netns, "addr", "add", f"{r.ip}/24", "dev", "eth0")
        _run("ip", "-n", r.netns, "link", "set", "eth0", "up")
        _run("ip", "-n", r.netns, "link", "set", "lo", "up")
        for volume, _ in r.service.volumes:
            path = self._work / "volumes" / r.name / volume
            path.mkdir(parents=True)
            user = IMAGE_USERS.get(image_name(r.service.image))
            if user:
                shutil.chown(path, user, user)

    def _write_hosts(self, r: Replica) -> None:
        """What Swarm's DNS answers, as a hosts file: the service names (all replicas) and our own name."""
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", f"{r.ip}\t{r.hostname}"]
        lines += [f"{o.ip}\t{o.service.name}" for o in self.replicas.values() if o.service.name != r.hostname]
        etc = NETNS_ETC / r.netns
        etc.mkdir()
        self._made.append(("dir", str(etc)))
        (etc / "hosts").write_text("\n".join(lines) + "\n")

    # -- processes --------------------------------------------------------------------------------------
    def environment(self, r: Replica) -> dict[str, str]:
        """The replica's environment: Docker's own variables, the stack's, then any test override."""
        own = {"PATH": CONTAINER_PATH, "HOSTNAME": r.hostname, "HOME": "/root"}
        return {**own, **r.service.environment, **self.test_env.get(r.service.name, {})}

    def _mount_script(self, r: Replica) -> str:
        """Shell lines that give the replica's private mount namespace its secrets, configs, volumes, /tmp."""
        staged = self._work / "files" / r.name
        staged.mkdir(parents=True, exist_ok=True)
        tmpfs = self._tmpfs
        lines = ["set -e", f"hostname {shlex.quote(r.hostname)}"]
        lines += [f"mount -t tmpfs -o mode=0755,size=16m sal {shlex.quote(str(d))}" for d in tmpfs]

        def inside_tmpfs(p: PurePosixPath) -> bool:
            return any(d == p or d in p.parents for d in tmpfs)

        for i, f in enumerate(r.service.files):
            source = staged / str(i)
            source.write_bytes(f.content)
            os.chown(source, f.uid, f.gid)
            source.chmod(f.mode)
            path = shlex.quote(str(f.target))
            if inside_tmpfs(f.target):
                lines += [f"mkdir -p {shlex.quote(str(f.target.parent))}", f"cp -p {source} {path}"]
            else:  # the file exists on the host: cover it
                lines.append(f"mount --bind {source} {path}")
        for volume, target in r.service.volumes:
            if inside_tmpfs(target):
                lines.append(f"mkdir -p {shlex.quote(str(target))}")
            lines.append(f"mount --bind {self._work / 'volumes' / r.name / volume} {shlex.quote(str(target))}")
        # Last: the staged files and volumes may live under the host's /tmp. What must stay visible there
        # (the code, when the checkout is under /tmp) is held at a place outside it and put back on top.
        kept = [(shlex.quote(str(p)), shlex.quote(str(self._keep / str(i)))) for i, p in enumerate(_kept_under_tmp())]
        lines += [f"mkdir -p {hold} && mount --bind {path} {hold}" for path, hold in kept]
        lines.append("mount -t tmpfs -o mode=1777 sal /tmp")
        lines += [f"mkdir -p {path} && mount --bind {hold} {path}" for path, hold in kept]
        return "\n".join([*lines, 'exec "$@"'])

    def start(self, name: str) -> None:
        """Start (or restart) a replica's command in its namespace; its volumes are the same as before."""
        r = self.replicas[name]
        wrapper = ["ip", "netns", "exec", r.netns, "unshare", "--mount", "--uts", "--propagation", "private"]
        argv = [*wrapper, "/bin/sh", "-c", self._mount_script(r), "sal-launch", *r.service.command]
        with r.log.open("ab") as log:
            # ip and unshare exec, not fork: the Popen's pid is the service's own.
            r.process = subprocess.Popen(
                argv,
                env=self.environment(r),
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_service(self, service: str) -> list[str]:
        """Start every replica of `service` and wait until they are healthy; return their names."""
        names = [r.name for r in self.replicas.values() if r.service.name == service]
        for name in names:
            self.start(name)
        self.wait_healthy(names)
        return names

    def pids(self, name: str) -> list[int]:
        """Every process in the replica's network namespace."""
        return [int(p) for p in _run("ip", "netns", "pids", self.replicas[name].netns).split()]

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> list[int]:
        """Send `sig` to every process in the replica's namespace (a host that dies); return their pids."""
        pids = self.pids(name)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return pids

    def stop(self, *names: str, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds, as `docker stop` does (all `names` at once)."""
        running = [self.replicas[n] for n in names if self.replicas[n].process is not None]
        for r in running:
            with contextlib.suppress(RuntimeError):
                self.kill(r.name, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for r in running:
            assert r.process is not None
            try:
                r.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(RuntimeError):
                    self.kill(r.name, signal.SIGKILL)
                r.process.kill()
                r.process.wait(5)
            r.process = None

    def cut(self, name: str) -> None:
        """Unplug the replica's cable: its host-side veth goes down."""
        _run("ip", "link", "set", self.replicas[name].veth, "down")

    def reconnect(self, name: str) -> None:
        """Plug the cable back in."""
        _run("ip", "link", "set", self.replicas[name].veth, "up")

    # -- health ---------------------------------------------------------------------------------------
    def check(self, name: str) -> tuple[bool, str]:
        """Run the replica's stack healthcheck once inside its namespaces: (healthy, output)."""
        r = self.replicas[name]
        if r.service.healthcheck is None:
            return True, "no healthcheck"
        if r.process is None or r.process.poll() is not None:
            return False, "not running"
        enter = ["nsenter", f"--target={r.process.pid}", "--mount", "--uts", "--net", f"--wd={REPO_ROOT}"]
        try:
            done = subprocess.run(
                [*enter, *r.service.healthcheck],
                env=self.environment(r),
                capture_output=True,
                text=True,
                timeout=r.service.health_timeout,
            )
        except subprocess.TimeoutExpired:
            return False, f"timed out after {r.service.health_timeout:g} s"
        return done.returncode == 0, (done.stdout + done.stderr).strip()[-500:]

    def wait_healthy(self, names: list[str] | None = None) -> None:
        """Wait until every replica's healthcheck passes; fail with its output and log after the stack's
        start_period + interval x retries."""

        def wait(name: str) -> str | None:
            r, started = self.replicas[name], time.monotonic()
            deadline, checks, output = started + r.service.health_deadline, 0, ""
            while time.monotonic() < deadline and r.process is not None and r.process.poll() is None:
                checks += 1
                healthy, output = self.check(name)
                if healthy:
                    r.health = {"healthy": True, "checks": checks, "seconds": round(time.monotonic() - started, 1)}
                    return None
                time.sleep(HEALTH_POLL_SECONDS)
            if r.process is None or r.process.poll() is not None:
                output = f"exited with {r.process.poll() if r.process else None}; last check: {output or '-'}"
            r.health = {"healthy": False, "checks": checks, "output": output}
            return f"{name} unhealthy after {checks} checks: {output}\n--- its log:\n{r.log_text()[-3000:]}"

        with ThreadPoolExecutor() as pool:
            failures = [f for f in pool.map(wait, list(self.replicas) if names is None else names) if f]
        if failures:
            raise RuntimeError("\n".join(failures))

    # -- reporting ------------------------------------------------------------------------------------
    @property
    def master_url(self) -> str:
        """The master's web port, reached at its namespace's address (the stack publishes the same port)."""
        return f"http://{self.replicas['master'].ip}:{self.services_by_name['master'].environment['WEB_PORT']}"

    @property
    def services_by_name(self) -> dict[str, Service]:
        """The services by name."""
        return {s.name: s for s in self.services}

    def describe(self) -> dict[str, Any]:
        """The topology for a report: bridge, subnet, and every replica's namespace, IP, command and health."""
        return {
            "stack_variables": self.variables,
            "test_env_overrides": self.test_env,
            "secret_problems": unreadable_secrets(self.services),
            "bridge": self.bridge,
            "subnet": self.subnet,
            "host_ip": self.host_ip,
            "hosts": [
                {
                    "replica": r.name,
                    "netns": r.netns,
                    "hostname": r.hostname,
                    "ip": r.ip,
                    "veth": r.veth,
                    "command": " ".join(r.service.command),
                    "health": r.health,
                }
                for r in self.replicas.values()
            ],
        }


def write_report(summary: Mapping[str, Any]) -> None:
    """Print the summary and, if NETNS_REPORT names a path, write it there as JSON."""
    text = json.dumps(summary, indent=2, default=str)
    print(f"\n=== stack across hosts ===\n{text}")
    path = os.environ.get("NETNS_REPORT")
    if path:
        Path(path).write_text(text + "\n", encoding="utf-8")
