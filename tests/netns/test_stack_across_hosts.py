"""The Swarm stack as written in stack.yml, each replica on its own "host" (a network namespace): healthchecks
pass, and when one worker host dies and another is cut off mid-task, every question is answered exactly once.

The workers are one of each language (worker-python, worker-go, worker-java), the Go and Java ones run from
their local builds (`make workers`); a worker that is not built fails in CI and skips elsewhere.
`NETNS_FLEET=python=2,go=1` runs another fleet (at least 3 workers: one killed, one cut off, one survivor)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lab.loadgen.client import ChatClient, Exchange
from lab.swarm.stack import WORKER_SERVICES, WORKER_VARIABLES
from lab.system.credentials import Credentials, new_operator_token
from lab.system.workers import Fleet, fleet_size, fleet_text, parse_fleet, worker_kind
from services.protocol import worker_language
from tests.conftest import require
from tests.netns.stack_hosts import (
    CONTAINER_PATH,
    StackHosts,
    deployment_secrets,
    read_services,
    stack_config,
    unreadable_secrets,
    write_report,
)
from tests.waiting import eventually

pytestmark = pytest.mark.integration

# The workers: one of each language unless NETNS_FLEET says otherwise.
FLEET: Fleet = parse_fleet(os.environ.get("NETNS_FLEET") or "python=1,go=1,java=1")
# `docker stack config` variables: the fleet's replicas (0 for a language not in it), short simulated work,
# no Gemini.
# The master's operator token in these stacks (its /api/status needs it).
OPERATOR_TOKEN = new_operator_token()
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
STACK_VARIABLES = {
    **{variable: str(dict(FLEET).get(language, 0)) for language, variable in WORKER_VARIABLES.items()},
    "WORK_SECONDS": "2",
    "MODEL_MODE": "offline",
}
WORKERS = fleet_size(FLEET)
SESSIONS, QUESTIONS_PER_SESSION = 3, 5
TOOLS = {
    "ip": "iproute2",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "docker": "the Docker CLI (only the client: `docker stack config` needs no daemon)",
    "mosquitto": "mosquitto",
    "mosquitto_sub": "mosquitto-clients (the broker's healthcheck)",
}


def require_host() -> None:
    """Root and the tools the harness runs; CI fails without them, a laptop skips."""
    require("root", os.geteuid() == 0, "network namespaces and mounts need root: run pytest as root")
    path = f"{os.environ.get('PATH', '')}:{CONTAINER_PATH}"
    for tool, package in TOOLS.items():
        require(f"`{tool}`", shutil.which(tool, path=path) is not None, f"install {package}")
    assert WORKERS >= 3, f"NETNS_FLEET={fleet_text(FLEET)}: the fault test needs 3 workers or more"
    for language, _ in FLEET:
        problem = worker_kind(language).problem()
        require(f"the {language} worker", problem is None, problem or "")


StackFactory = Callable[..., StackHosts]


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[StackFactory]:
    """Start the stack in namespaces (`held` services wait for `start_service`); all removed afterwards."""
    require_host()
    with contextlib.ExitStack() as stacks:

        def make(held: Collection[str] = ()) -> StackHosts:
            secrets = deployment_secrets(Credentials(), operator_token=OPERATOR_TOKEN)
            return stacks.enter_context(StackHosts(STACK_VARIABLES, secrets, tmp_path, held=held))

        yield make


def test_every_service_can_read_its_secrets_as_its_image_user() -> None:
    docker = shutil.which("docker", path=f"{os.environ.get('PATH', '')}:{CONTAINER_PATH}")
    require("`docker`", docker is not None, f"install {TOOLS['docker']}")
    services = read_services(stack_config(variables=STACK_VARIABLES), deployment_secrets(Credentials()))
    assert not unreadable_secrets(services)


def languages(workers: list[dict[str, Any]]) -> dict[str, int]:
    """How many of `workers` (the master's /api/status entries) there are of each language."""
    return dict(Counter(str(w["language"]) for w in workers))


async def registered_workers(stack: StackHosts) -> list[dict[str, Any]]:
    """The workers the master lists as online."""
    async with httpx.AsyncClient(trust_env=False) as http:
        status = (await http.get(f"{stack.master_url}/api/status", timeout=10, headers=OPERATOR)).json()
    return [w for w in status["workers"] if w["state"] in ("idle", "busy")]


def worker_hosts(stack: StackHosts) -> dict[str, str]:
    """Worker id -> replica, from each worker's start-up line."""
    found = {}
    for name, replica in stack.replicas.items():
        if replica.service.name.startswith("worker"):
            match = re.search(r"worker (\S+) up", replica.log_text())
            if match:
                found[match.group(1)] = name
    return found


def busy_now(exchanges: list[Exchange], fresh: float = 1.2) -> dict[str, Exchange]:
    """Workers that took an unanswered question less than `fresh` seconds ago (far from done with it)."""
    now = time.monotonic()
    return {e.worker_id: e for e in exchanges if not e.answers and e.assignments and now - e.assignments[-1][0] < fresh}


async def test_workers_that_start_before_the_master_are_registered(stack_factory: StackFactory) -> None:
    stack = await asyncio.to_thread(stack_factory, held=["master"])  # the broker and workers first, healthy
    await asyncio.to_thread(stack.start_service, "master")
    workers = WORKERS
    online: list[dict[str, Any]] = []

    async def poll() -> bool:
        online[:] = await registered_workers(stack)
        return len(online) == workers

    for _ in range(20):  # 10 s
        if await poll():
            break
        await asyncio.sleep(0.5)
    assert len(online) == workers, f"the master knows {len(online)} of {workers} workers: {online}"
    # Every language's worker registered with its own language, as many as its service's replicas.
    assert languages(online) == dict(FLEET), online
    assert all(worker_language(w["worker_id"]) == w["language"] for w in online), online


async def test_no_question_is_lost_or_repeated_when_a_worker_host_dies_and_another_is_cut_off(
    stack_factory: StackFactory,
) -> None:
    # The workers start once the master is healthy: see the test above for why.
    began = time.monotonic()
    workers = [WORKER_SERVICES[language] for language, _ in FLEET]
    stack = await asyncio.to_thread(stack_factory, held=workers)
    for service in workers:
        await asyncio.to_thread(stack.start_service, service)
    started = time.monotonic()
    hosts: dict[str, str] = {}

    def all_workers_up() -> bool:
        hosts.update(worker_hosts(stack))
        return len(hosts) == WORKERS

    await eventually(all_workers_up, "every worker logged its id", timeout=10)
    users = [ChatClient(stack.master_url) for _ in range(SESSIONS)]
    await asyncio.gather(*(u.connect() for u in users))
    timed_out = ""
    try:
        asked = [
            await user.ask(f"session {s} question {q}")
            for q in range(QUESTIONS_PER_SESSION)
            for s, user in enumerate(users)
        ]
        accepted = [e for e in asked if e.task_id]

        def everyone_answered() -> bool:
            return len({e.answer.workerId for e in accepted if e.answer}) == len(hosts)

        # A first round shows every host working; the faults come in the second.
        await eventually(everyone_answered, "every worker answered a question", timeout=30)
        busy: dict[str, Exchange] = {}

        def two_busy() -> bool:
            busy.clear()
            busy.update(busy_now(accepted))
            return len(busy) >= 2

        await eventually(two_busy, "two workers busy at once", timeout=20)
        (killed_id, killed_task), (cut_id, cut_task) = list(busy.items())[:2]
        killed_pids = await asyncio.to_thread(stack.kill, hosts[killed_id])
        await asyncio.to_thread(stack.cut, hosts[cut_id])
        faults_at = time.monotonic()
        try:
            await asyncio.gather(*(u.wait_answers(len(u.exchanges), timeout=120) for u in users))
        except TimeoutError as e:
            timed_out = str(e)
        answered_at = time.monotonic()
        await asyncio.sleep(1.5)  # a duplicate would come right after
        async with httpx.AsyncClient(trust_env=False) as http:
            status: dict[str, Any] = (
                await http.get(f"{stack.master_url}/api/status", timeout=10, headers=OPERATOR)
            ).json()
    finally:
        await asyncio.gather(*(u.close() for u in users))

    cut_veth = stack.replicas[hosts[cut_id]].veth
    survivors = sorted(set(hosts) - {killed_id, cut_id})
    late = Counter(e.answer.workerId for e in accepted if e.answer and (e.answered_at or 0) > faults_at + 0.5)
    workers_after = {w["worker_id"]: w for w in status["workers"]}
    health_after = {name: dict(zip(("healthy", "output"), stack.check(name), strict=True)) for name in stack.replicas}
    summary = {
        **stack.describe(),
        "worker_ids": {name: wid for wid, name in hosts.items()},
        "questions": {
            "sent": len(asked),
            "accepted": len(accepted),
            "answered": sum(1 for e in accepted if e.answers),
            "lost": sum(1 for e in accepted if not e.answers),
            "duplicates": sum(1 for e in accepted if len(e.answers) > 1),
            "errors": [e.answer.error for e in accepted if e.answer and e.answer.error],
            "sessions": SESSIONS,
        },
        "killed": {"replica": hosts[killed_id], "worker_id": killed_id, "pids": killed_pids, "signal": "SIGKILL"},
        "cut": {"replica": hosts[cut_id], "worker_id": cut_id, "how": f"ip link set {cut_veth} down"},
        "tasks_in_flight_at_faults": {
            "killed": {"task": killed_task.task_id, "assignments": [w for _, w in killed_task.assignments]},
            "cut": {"task": cut_task.task_id, "assignments": [w for _, w in cut_task.assignments]},
        },
        "answers_per_worker": Counter(e.answer.workerId for e in accepted if e.answer),
        "answers_after_faults_per_worker": late,
        "fleet": fleet_text(FLEET),
        "answers_per_language": Counter(worker_language(e.answer.workerId) for e in accepted if e.answer),
        "status_after": {
            wid: {k: w[k] for k in ("language", "state", "tasks_done", "tasks_failed")}
            for wid, w in workers_after.items()
        },
        "health_after": health_after,
        "seconds": {
            "stack_up_and_healthy": round(started - began, 1),
            "questions_to_last_answer": round(answered_at - started, 1),
            "faults_to_last_answer": round(answered_at - faults_at, 1),
        },
        "timed_out": timed_out,
    }
    write_report(summary)

    assert not timed_out, timed_out
    assert len(accepted) == len(asked), [e.ack for e in asked if not e.task_id]
    assert summary["questions"]["lost"] == 0 and summary["questions"]["duplicates"] == 0
    assert not summary["questions"]["errors"]
    # The two questions in flight went to a survivor.
    for task in (killed_task, cut_task):
        assert task.answer is not None and task.answer.workerId in survivors, task.assignments
    assert set(late) <= set(survivors) and late, late
    assert workers_after.get(killed_id, {"state": "offline"})["state"] == "offline"
    assert workers_after.get(cut_id, {"state": "offline"})["state"] == "offline"
    assert all(workers_after[w]["state"] in ("idle", "busy") and workers_after[w]["tasks_done"] > 0 for w in survivors)
    # The fleet's every language had its workers up, each answered (the first round), and the master lists
    # each worker under the language its id names.
    assert Counter(worker_language(w) for w in hosts) == Counter(dict(FLEET)), hosts
    assert all(worker_language(wid) == w["language"] for wid, w in workers_after.items()), workers_after
    for name in ("mosquitto", "master", *(hosts[w] for w in survivors)):
        assert health_after[name]["healthy"], (name, health_after[name])
