"""Checks before `lab swarm deploy` of what `docker stack deploy` would silently get wrong: node labels that
no node carries (services stuck Pending) and an existing network whose encryption differs from the one asked."""

from __future__ import annotations

import json
import sys

from lab.swarm.docker import Docker, DockerError
from lab.swarm.stack import NETWORK, NODE_FORMAT, NODE_LABELS, missing_labels, parse_nodes


def warn(text: str) -> None:
    """A warning on stderr: the deploy goes on, but something will not work until it is fixed."""
    print(f"WARNING: {text}", file=sys.stderr, flush=True)


def check_labels(docker: Docker) -> None:
    """Warn when no node carries a label that a service's placement needs (it would stay Pending)."""
    listed = docker.query("node", "ls", "--format", "{{.ID}} {{.Hostname}} {{.Self}}")
    if listed is None:
        docker.out("# dry run: node labels not checked: " + " and ".join(f"{k}=true" for k in NODE_LABELS))
        return
    rows = [line.split(" ") for line in listed.lines()]
    here = next((row[1] for row in rows if len(row) == 3 and row[2] == "true"), "NODE")
    inspected = docker.query("node", "inspect", "--format", NODE_FORMAT, *(row[0] for row in rows))
    if inspected is None or inspected.returncode != 0:
        raise DockerError(f"`docker node inspect` failed: {inspected.stderr.strip() if inspected else ''}")
    for label in missing_labels(parse_nodes(inspected.stdout)):
        warn(
            f"no node has the label {label}=true, so {NODE_LABELS[label]} will stay Pending. Label the node "
            f"that should keep its volume (this one is {here}):\n  docker node update --label-add {label}=true {here}"
        )


def check_network(docker: Docker, stack: str, encrypt: bool) -> None:
    """Refuse --encrypt on an existing unencrypted network: `docker stack deploy` never changes a network."""
    network = f"{stack}_{NETWORK}"
    found = docker.query("network", "inspect", "--format", "{{json .Options}}", network)
    if found is None:
        docker.out(f"# dry run: not checked whether {network} exists with other encryption")
        return
    if found.returncode != 0:
        return  # no such network yet: the deploy creates it as asked
    encrypted = "encrypted" in (json.loads(found.stdout.strip() or "null") or {})
    if encrypt and not encrypted:
        raise DockerError(
            f"the network {network} exists unencrypted, and `docker stack deploy` never changes an existing "
            f"network: `lab swarm stop --stack {stack}`, wait until `docker network ls` no longer lists "
            f"{network}, then `lab swarm deploy --encrypt`"
        )
    if encrypted and not encrypt:
        warn(f"{network} exists encrypted and stays so (without --encrypt, until `lab swarm stop` removes it)")
