"""What `lab swarm` knows of stack.yml: names, images, secrets, labels, and the pure functions that build the
docker commands and read their output (kept free of processes so that unit tests can check them)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.paths import REPO_ROOT
from lab.system.credentials import Credentials, User, new_operator_token, password_file

DEFAULT_STACK = "ai-system"
DEFAULT_REGISTRY = "localhost:5000"
DEFAULT_TAG = "latest"
DEFAULT_WEB_PORT = "8888"
STACK_FILE = "stack.yml"
ENCRYPTED_FILE = "stack.encrypted.yml"
BASELINE_FILE = "stack.baseline.yml"

# The workers: one service per language (lab.system.workers.LANGUAGES), each with its stack variable.
WORKER_SERVICES = {"python": "worker-python", "go": "worker-go", "java": "worker-java"}
WORKER_VARIABLES = {"python": "WORKERS", "go": "WORKERS_GO", "java": "WORKERS_JAVA"}
SERVICES = ("mosquitto", "master", *WORKER_SERVICES.values(), "autoscaler")
# At most 1 replica: services whose state (the journal, the broker's sessions) lives in a volume on one node,
# and the autoscaler (two would fight over the workers' replicas).
SINGLETONS = ("mosquitto", "master", "autoscaler")
# Services built from this repository -> their image's name under swarm-ai-lab/ (mosquitto's is pinned).
IMAGES = {
    "master": "master",
    "worker-python": "worker",
    "worker-go": "worker-go",
    "worker-java": "worker-java",
    "autoscaler": "autoscaler",
}
# Image name -> its Dockerfile (built from the repository's root, the build context).
DOCKERFILES = {
    "master": "services/master/Dockerfile",
    "worker": "services/worker/Dockerfile",
    "worker-go": "services/worker-go/Dockerfile",
    "worker-java": "services/worker-java/Dockerfile",
    "autoscaler": "services/autoscaler/Dockerfile",
    # stack.ha.yml's own (DEPLOY.md, section 15): HAProxy and the etcd members, Debian's packages on a Debian base.
    "proxy": "services/proxy/Dockerfile",
    "etcd": "services/etcd/Dockerfile",
}
# stack.ha.yml: the standby masters' stack (DEPLOY.md, section 15), and its services built from this repository
# beyond IMAGES' -> their image's name (`lab swarm build` and `update` know IMAGES' alone: build these with
# `build_commands(..., images=HA_IMAGES.values())` or the docker commands of section 15).
HA_STACK_FILE = "stack.ha.yml"
HA_TLS_FILE = "stack.ha.tls.yml"
HA_IMAGES = {"proxy": "proxy", "etcd-1": "etcd", "etcd-2": "etcd", "etcd-3": "etcd"}
# Node label -> the etcd member its placement constraint pins there (one member per node).
HA_NODE_LABELS = {f"ai-system.etcd-{n}": f"etcd-{n}" for n in (1, 2, 3)}
# What an etcd member of stack.ha.yml reads of its environment: etcd takes each flag from ETCD_<FLAG>, its health
# check's etcdctl from ETCDCTL_<FLAG>. Those stack.ha.yml and stack.ha.tls.yml set (add a flag used anew).
_ETCD_FLAGS = (
    "NAME DATA_DIR INITIAL_CLUSTER INITIAL_CLUSTER_TOKEN INITIAL_CLUSTER_STATE INITIAL_ADVERTISE_PEER_URLS "
    "LISTEN_PEER_URLS LISTEN_CLIENT_URLS ADVERTISE_CLIENT_URLS AUTO_COMPACTION_MODE AUTO_COMPACTION_RETENTION "
    "QUOTA_BACKEND_BYTES PRE_VOTE CERT_FILE KEY_FILE TRUSTED_CA_FILE CLIENT_CERT_AUTH"
)
HA_ETCD_VARIABLES = frozenset(
    [f"ETCD_{flag}" for flag in _ETCD_FLAGS.split()] + [f"ETCDCTL_{f}" for f in ("ENDPOINTS", "CACERT", "CERT", "KEY")]
)
VOLUMES = ("master_journal", "mosquitto_data")
NETWORK = "ai-network"
# The files behind the stack's configs: a change in any of them needs new config names (CONFIG_VERSION).
MOSQUITTO_FILES = (
    "services/mosquitto/mosquitto.conf",
    "services/mosquitto/swarm.conf",
    "services/mosquitto/acl.template",
    "services/mosquitto/swarm.baseline.conf",
    "services/mosquitto/acl.baseline.template",
)

GEMINI_SECRET = "ai-system-gemini-api-key"
PASSWORD_SECRETS: dict[User, str] = {
    "master": "ai-system-mqtt-master-password",
    "worker": "ai-system-mqtt-worker-password",
    "observer": "ai-system-mqtt-observer-password",
}
PASSWD_SECRET = "ai-system-mqtt-passwd"
# One set: the password file holds hashes of the three passwords, and Docker never gives a secret back.
MQTT_SECRETS = (*PASSWORD_SECRETS.values(), PASSWD_SECRET)
# The master's: the token of its operator views (/metrics, /api/status, the dashboard), and the key of users'
# API keys at rest in its journal (base64 of 32 random bytes, AES-256-GCM).
OPERATOR_SECRET = "ai-system-operator-token"
JOURNAL_KEY_SECRET = "ai-system-journal-key"
JOURNAL_KEY_BYTES = 32
SECRETS = (GEMINI_SECRET, *MQTT_SECRETS, OPERATOR_SECRET, JOURNAL_KEY_SECRET)
ROTATIONS = {
    "all": SECRETS,
    "mqtt": MQTT_SECRETS,
    "gemini": (GEMINI_SECRET,),
    "operator": (OPERATOR_SECRET,),
    "journal": (JOURNAL_KEY_SECRET,),
}
# Where the master's container has the operator token (stack.yml's secret target).
OPERATOR_TOKEN_PATH = "/run/secrets/operator_token"
# Swarm refuses an empty secret; the services strip what they read, so a newline reads as "no key".
EMPTY_KEY = "\n"

# Node label -> the service its placement constraint pins there.
NODE_LABELS = {"ai-system.master": "master", "ai-system.broker": "mosquitto"}
# The variables stack.yml reads: passed on from the caller's environment and shown with the deploy command.
STACK_VARIABLES = (
    "REGISTRY",
    "TAG",
    "WEB_PUBLISHED_PORT",
    "GRPC_PUBLISHED_PORT",
    "WORKERS",
    "WORKERS_GO",
    "WORKERS_JAVA",
    "WORK_SECONDS",
    "AUTOSCALER",
    "AUTOSCALE_MIN",
    "AUTOSCALE_MAX",
    "MODEL_MODE",
    "GEMINI_MODEL",
    "TOPIC_PREFIX",
    "LOG_LEVEL",
    "CONFIG_VERSION",
)
_REPLICAS = re.compile(r"^\s*(\d+)/(\d+)")


class UsageError(ValueError):
    """Arguments that cannot work (exit code 2)."""


class SecretPlanError(RuntimeError):
    """The existing secrets cannot be completed without replacing some of them."""


def image(registry: str, tag: str, name: str) -> str:
    """The reference of one of the lab's images, e.g. localhost:5000/swarm-ai-lab/master:latest."""
    return f"{registry}/swarm-ai-lab/{name}:{tag}"


def service_image(service: str, registry: str, tag: str) -> str:
    """The image of a service built from this repository."""
    return image(registry, tag, IMAGES[service])


def stack_service(stack: str, service: str) -> str:
    """The Swarm service of a stack's service, e.g. ai-system_worker-python."""
    return f"{stack}_{service}"


def dockerfile_args(path: Path) -> set[str]:
    """The build arguments a Dockerfile declares before its first FROM (those a FROM can use: the base
    images); empty when the file is missing."""
    if not path.is_file():
        return set()
    declared: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0].upper() == "FROM":
            break
        if words[0].upper() == "ARG" and len(words) > 1:
            declared.add(words[1].split("=", 1)[0])
    return declared


def build_args(dockerfile: Path, values: Mapping[str, str]) -> list[str]:
    """`--build-arg NAME=VALUE` for each of `values` that the Dockerfile declares (others would only warn)."""
    declared = dockerfile_args(dockerfile)
    return [arg for name, value in values.items() if name in declared for arg in ("--build-arg", f"{name}={value}")]


def build_commands(
    registry: str,
    tag: str,
    push: bool,
    images: Iterable[str] | None = None,
    base_args: Mapping[str, str] | None = None,
    extra_ca: Path | None = None,
    root: Path = REPO_ROOT,
) -> list[list[str]]:
    """The docker arguments that build the images (default: all of DOCKERFILES) from the repository's root,
    and push them: each gets the `base_args` its Dockerfile declares, and `extra_ca` as the build secret."""
    names = [name for name in DOCKERFILES if images is None or name in set(images)]
    commands: list[list[str]] = []
    for name in names:
        dockerfile = DOCKERFILES[name]
        args = ["build", "-f", dockerfile, *build_args(root / dockerfile, base_args or {})]
        if extra_ca is not None:
            args += ["--secret", f"id=extra_ca,src={extra_ca}"]
        commands.append([*args, "-t", image(registry, tag, name), "."])
    if push:
        commands.extend(["push", image(registry, tag, name)] for name in names)
    return commands


def config_version(root: Path = REPO_ROOT) -> str:
    """A short hash of the Mosquitto files (baseline mode's too): the same files give the same config names."""
    digest = hashlib.sha256()
    for name in MOSQUITTO_FILES:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def deploy_command(stack: str, encrypt: bool, baseline: bool = False) -> list[str]:
    """`docker stack deploy` with the stack files (with `baseline`, stack.baseline.yml: the original
    system's workers may join); --prune removes services no longer in them."""
    files = ["-c", STACK_FILE] + (["-c", ENCRYPTED_FILE] if encrypt else [])
    files += ["-c", BASELINE_FILE] if baseline else []
    return ["stack", "deploy", *files, "--with-registry-auth", "--prune", stack]


def worker_variables(workers: Iterable[tuple[str, int]]) -> dict[str, str]:
    """The replicas of every worker service for a fleet ((language, count), ...): WORKERS, WORKERS_GO and
    WORKERS_JAVA. The fleet is the whole set of workers: a language it does not name gets 0."""
    counts = dict(workers)
    unknown = sorted(set(counts) - set(WORKER_VARIABLES))
    if unknown:
        raise UsageError(f"no worker service for {', '.join(unknown)}: known are {', '.join(WORKER_VARIABLES)}")
    return {variable: str(counts.get(language, 0)) for language, variable in WORKER_VARIABLES.items()}


def deploy_env(
    environ: Mapping[str, str],
    *,
    registry: str,
    tag: str,
    version: str,
    workers: Iterable[tuple[str, int]] | None,
) -> dict[str, str]:
    """The stack's variables for the deploy: the caller's, with the options and CONFIG_VERSION on top
    (`workers`, a fleet, sets the replicas of all three worker services)."""
    env = {name: environ[name] for name in STACK_VARIABLES if environ.get(name)}
    env.update(REGISTRY=registry, TAG=tag, CONFIG_VERSION=version)
    if workers is not None:
        env.update(worker_variables(workers))
    return env


def json_lines(text: str) -> list[dict[str, Any]]:
    """The objects printed by `--format '{{json .}}'`, one a line."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def replicas(text: str) -> tuple[int, int] | None:
    """(running, desired) from `docker stack services`' Replicas ('2/2', '1/1 (max 1 per node)')."""
    match = _REPLICAS.match(text)
    return (int(match[1]), int(match[2])) if match else None


@dataclass(frozen=True)
class Node:
    """A swarm node as `docker node inspect` shows it."""

    node_id: str
    hostname: str
    labels: dict[str, str] = field(default_factory=dict)


NODE_FORMAT = "{{.ID}} {{.Description.Hostname}} {{json .Spec.Labels}}"


def parse_nodes(text: str) -> list[Node]:
    """Nodes from `docker node inspect --format NODE_FORMAT ...`."""
    nodes = []
    for line in text.splitlines():
        if not line.strip():
            continue
        node_id, hostname, labels = line.split(" ", 2)
        parsed = json.loads(labels) if labels.strip() not in ("", "null") else {}
        nodes.append(Node(node_id, hostname, {str(k): str(v) for k, v in parsed.items()}))
    return nodes


def missing_labels(nodes: Iterable[Node]) -> list[str]:
    """The node labels (ai-system.master, ai-system.broker) that no node carries with the value true."""
    nodes = list(nodes)
    return [label for label in NODE_LABELS if not any(n.labels.get(label) == "true" for n in nodes)]


def secrets_to_create(existing: set[str] | None, rotate: str | None = None) -> list[str]:
    """The secrets to create: the missing ones, or those of a rotation (`all`, `mqtt`, `gemini`).

    `existing` None means unknown (a dry run): all of them. A partial MQTT set is refused (SecretPlanError),
    since the password file cannot be rebuilt for passwords that Docker will not give back.
    """
    if rotate is not None:
        return list(ROTATIONS[rotate])
    if existing is None:
        return list(SECRETS)
    missing = [name for name in SECRETS if name not in existing]
    mqtt_missing = [name for name in MQTT_SECRETS if name in missing]
    if mqtt_missing and len(mqtt_missing) < len(MQTT_SECRETS):
        raise SecretPlanError(
            f"{', '.join(mqtt_missing)} missing while the other MQTT secrets exist: the four belong together "
            "(the password file holds hashes of the three passwords, and Docker never gives a secret's value "
            "back), so recreate all four with `lab swarm secrets --rotate mqtt` (with the stack stopped)"
        )
    return missing


def secret_values(names: Iterable[str], gemini_key: str, credentials: Credentials | None = None) -> dict[str, str]:
    """The value of each secret to create: fresh random MQTT passwords, their password file, the Gemini key, a
    random operator token and journal key."""
    credentials = credentials or Credentials()
    by_name = {secret: credentials.password(user) for user, secret in PASSWORD_SECRETS.items()}
    by_name[PASSWD_SECRET] = password_file(credentials)
    by_name[GEMINI_SECRET] = gemini_key.strip() or EMPTY_KEY
    by_name[OPERATOR_SECRET] = new_operator_token()
    by_name[JOURNAL_KEY_SECRET] = base64.b64encode(secrets.token_bytes(JOURNAL_KEY_BYTES)).decode("ascii")
    return {name: by_name[name] for name in names}


def describe_secret(name: str, gemini_source: str) -> str:
    """What goes into a secret, for the printed command (never the value)."""
    if name == GEMINI_SECRET:
        return f"value on stdin: the Gemini API key ({gemini_source})"
    if name == PASSWD_SECRET:
        return "value on stdin: Mosquitto password file of master, worker, observer"
    if name == OPERATOR_SECRET:
        return "value on stdin: a random operator token (DEPLOY.md, section 6: how to read it)"
    if name == JOURNAL_KEY_SECRET:
        return "value on stdin: a random journal key (32 bytes, base64)"
    return "value on stdin: a random password"
