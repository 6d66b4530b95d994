"""The real stack.yml on a real Docker engine: `lab swarm local up` builds the images, pushes them to a local
registry and deploys the stack on a one-node Swarm of this machine; then every operation of DEPLOY.md is done
to it while users ask questions through the published chat port, and every question is answered exactly once.

The fleet is one worker of each language (Python, Go, Java), so the Go and Java images are built on their
stand-ins and run too. Step by step (one module, in order): all services healthy; questions answered by every
worker; a Python worker scale-up (`docker service scale`); a rolling update to a changed image; an update
whose health check fails, rolled back by Swarm; a worker task killed by the engine (SIGKILL), replaced; the
master task killed, back with its journal volume, and the questions it had accepted answered. `down` (always)
must leave the host's links, nft tables and forwarding sysctls as they were, and no engine process.

What this proves on one node: the four images build from the Dockerfiles (on stand-in bases, behind the
proxy's CA), the stack file's secrets, configs, volumes, health checks, placement labels, update and restart policies
and the overlay network work on a real engine. What it does not prove, and only a multi-node Swarm with IPVS
shows (the static checks of tests/integration/test_stack_file.py and the multi-host test of tests/netns stay for
those): service virtual IPs and the ingress routing mesh (replaced here by stack.no-ipvs.yml: dnsrr and
host-mode ports), VXLAN and encrypted overlay traffic between nodes, node loss and rescheduling onto another
node, and the exact upstream base images (Docker Hub is unreachable here: Debian stand-ins are used).

The figures (build times cold and warm, image sizes, deploy to healthy, scale-up, update, rollback, questions
per step) go to $SWARM_LOCAL_FIGURES, or to the test's temporary directory.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from lab.loadgen.client import ChatClient, Exchange
from lab.swarm import verify as swarm_verify
from lab.swarm.docker import Docker
from lab.swarm.engine import Host, daemon_answers
from lab.swarm.local import LocalOptions, build_images, down, extra_ca_bundle, local_docker, up
from lab.swarm.stack import DEFAULT_REGISTRY, image
from lab.swarm.standins import IMAGE_BUILD_ARGS
from tests.conftest import require

pytestmark = pytest.mark.timeout(1500)

STACK, TAG = "ai-system", "ci"
# One worker of each language; the steps scale, update and kill the Python workers.
FLEET = {"python": 1, "go": 1, "java": 1}
PYTHON_WORKERS, WORKERS = FLEET["python"], sum(FLEET.values())
IMAGES = ["master", "worker", "worker-go", "worker-java"]
URL = "http://127.0.0.1:8888"
QUESTION_GAP_S = 2.0  # one question every 2 s while a step runs (a session may ask 30 a minute)
BURST_GAP_S = 0.2  # a burst keeps every worker busy (a session may have 10 questions in flight)
MIN_QUESTIONS = 4
ANSWER_TIMEOUT_S = 180.0
TOOLS = {
    "dockerd": "docker.io containerd runc tini iptables",
    "debootstrap": "debootstrap",
    "docker-registry": "docker-registry",
    "nft": "nftables (down removes dockerd's nft tables with it)",
}


@dataclass
class Deployment:
    """The deployed stack and the figures of every step."""

    docker: Docker
    state_dir: Path
    figures: dict[str, Any]
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)

    def service(self, name: str) -> str:
        return f"{STACK}_{name}"

    def inspect(self, service: str, template: str) -> str:
        done = self.docker.query("service", "inspect", "--format", template, self.service(service), echo=False)
        assert done is not None and done.returncode == 0, done
        return done.stdout.strip()

    def containers(self, service: str) -> list[str]:
        label = f"label=com.docker.swarm.service.name={self.service(service)}"
        done = self.docker.query("ps", "-q", "--filter", label)
        assert done is not None
        return done.lines()


def require_engine() -> None:
    """Root and the engine's packages: CI fails without them, a laptop skips."""
    require("root", os.geteuid() == 0, "dockerd, debootstrap and the network cleanup need root: run pytest as root")
    for tool, package in TOOLS.items():
        require(f"`{tool}`", shutil.which(tool) is not None, f"apt-get install {package}")


def figures_path(tmp: Path) -> Path:
    return Path(os.environ.get("SWARM_LOCAL_FIGURES") or tmp / "swarm-local.json")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """`lab swarm local up` (starting dockerd), and always `down`, which must restore the host's network."""
    require_engine()
    tmp = tmp_path_factory.mktemp("swarm-local")
    docker = local_docker()
    fleet = ",".join(f"{language}={count}" for language, count in FLEET.items())
    options = LocalOptions(stack=STACK, tag=TAG, workers=fleet, start_engine=True, state_dir=tmp / "state")
    host = Host(out=docker.out)
    deployed = Deployment(docker, options.state_dir, options.figures)
    engine_was_running = daemon_answers(docker)
    try:
        up(docker, host, options)
        yield deployed
    finally:
        remaining = down(docker, host, options.state_dir)
        deployed.figures["steps"] = deployed.steps
        figures_path(tmp).write_text(json.dumps(deployed.figures, indent=2) + "\n")
        print(json.dumps(deployed.figures, indent=2))
    assert remaining == [], f"the host's network differs from before `up`: {remaining}"
    if not engine_was_running:
        assert not daemon_answers(docker), "a Docker daemon still answers after `down`"
        # One name a call: pgrep matches a process name of at most 15 characters, and refuses longer patterns.
        for name in ("dockerd", "containerd", "docker-registry"):
            wait_for(functools.partial(none_running, name), 15, f"no {name} process left")


def none_running(name: str) -> bool:
    """No process of that exact name (`pgrep -x NAME` finds none)."""
    return subprocess.run(["pgrep", "-x", name], capture_output=True, check=False).returncode == 1


@dataclass
class Step:
    """The questions asked while one step ran, and how long the step took."""

    exchanges: list[Exchange]
    seconds: float
    outcome: Any = None

    def figures(self) -> dict[str, Any]:
        answers = [a for e in self.exchanges for a in e.answers]
        return {
            "seconds": round(self.seconds, 1),
            "questions": len(self.exchanges),
            "answered": sum(bool(e.answers) for e in self.exchanges),
            "answers": len(answers),
            "failed": sum(a.failed for a in answers),
            "workers": sorted({a.workerId for a in answers}),
        }


def assert_each_answered_once(step: Step) -> None:
    refused = [e.ack.error for e in step.exchanges if not e.task_id]
    assert not refused, f"questions refused: {refused}"
    counts = {e.task_id[:8]: len(e.answers) for e in step.exchanges}
    assert all(n == 1 for n in counts.values()), f"answers per question (want 1 each): {counts}"
    failed = [e.answers[0].error for e in step.exchanges if e.answers[0].failed]
    assert not failed, f"questions that failed: {failed}"


async def _ask_during(name: str, action: Callable[[], Any] | None, minimum: int, burst: int) -> Step:
    async with ChatClient(URL) as user:
        started = time.monotonic()
        running = asyncio.ensure_future(asyncio.to_thread(action)) if action is not None else None
        exchanges: list[Exchange] = []
        while len(exchanges) < minimum or (running is not None and not running.done()):
            exchanges.append(await user.ask(f"{name}: question {len(exchanges) + 1}", timeout=30))
            await asyncio.sleep(BURST_GAP_S if len(exchanges) < burst else QUESTION_GAP_S)
        outcome = await running if running is not None else None
        seconds = time.monotonic() - started
        await user.wait_answers(len(exchanges), ANSWER_TIMEOUT_S)
        await asyncio.sleep(2.0)  # a duplicate answer would come now
    return Step(exchanges, seconds, outcome)


def ask_during(
    deployment: Deployment, name: str, action: Callable[[], Any] | None, minimum: int = MIN_QUESTIONS, burst: int = 0
) -> Step:
    """Ask questions while `action` runs (the first `burst` at once, then one every QUESTION_GAP_S; at least
    `minimum`), then wait for every answer."""
    step = asyncio.run(_ask_during(name, action, minimum, burst))
    deployment.steps[name] = step.figures()
    return step


def online_workers(deployment: Deployment) -> int:
    # /api/status is an operator view: the token as the master's container has it (its secret), read here.
    token = swarm_verify.operator_token(deployment.docker, STACK, echo=False)
    assert token, "the master's operator token could not be read from its container"
    status = httpx.get(f"{URL}/api/status", timeout=5.0, headers={"Authorization": f"Bearer {token}"}).json()
    return sum(w["state"] in ("idle", "busy") for w in status["workers"])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        time.sleep(1.0)
    return time.monotonic() - started


def converged(deployment: Deployment) -> bool:
    outcome = swarm_verify.converged(deployment.docker, STACK)
    return outcome is not None and all(c.ok for c in outcome[0])


def test_every_service_runs_healthy_from_the_images_built_here(deployment: Deployment) -> None:
    outcome = swarm_verify.converged(deployment.docker, STACK)
    assert outcome is not None and all(c.ok for c in outcome[0]), outcome
    assert deployment.inspect("master", "{{.Spec.TaskTemplate.ContainerSpec.Image}}").startswith(
        image(DEFAULT_REGISTRY, TAG, "master")
    )
    for language, count in FLEET.items():
        service = f"worker-{language}"
        assert deployment.inspect(service, "{{.Spec.Mode.Replicated.Replicas}}") == str(count)
        assert deployment.inspect(service, "{{.Spec.TaskTemplate.ContainerSpec.Image}}").startswith(
            image(DEFAULT_REGISTRY, TAG, "worker" if language == "python" else service)
        )
    assert deployment.figures["deploy_to_healthy_s"] > 0
    assert list(deployment.figures["images"]) == IMAGES


def test_questions_through_the_published_port_are_answered_by_the_workers(deployment: Deployment) -> None:
    step = ask_during(deployment, "answers", None, minimum=6)
    assert_each_answered_once(step)
    answered_by = {e.answers[0].workerId for e in step.exchanges}
    assert len(answered_by) == WORKERS, f"not every worker answered: {answered_by}"
    assert {worker.split("-worker-")[0] for worker in answered_by} == set(FLEET), answered_by


def test_scale_up_adds_a_worker_and_loses_no_question(deployment: Deployment) -> None:
    def scale() -> None:
        deployment.docker.run("service", "scale", f"{deployment.service('worker-python')}={PYTHON_WORKERS + 1}")

    step = ask_during(deployment, "scale-up", scale)
    assert_each_answered_once(step)
    wait_for(lambda: online_workers(deployment) == WORKERS + 1, 60, "the master lists the new worker")


def test_rolling_update_to_a_changed_image_loses_no_question(deployment: Deployment) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        extra_ca = extra_ca_bundle(LocalOptions(), Path(tmp) / "ca.pem", deployment.docker.out)
        rebuilt = build_images(
            deployment.docker, f"{TAG}-2", extra_ca, IMAGE_BUILD_ARGS, label="lab.swarm.revision=2", images=IMAGES
        )
    deployment.figures["images_rebuilt"] = rebuilt
    new = image(DEFAULT_REGISTRY, f"{TAG}-2", "worker")

    def update() -> None:
        deployment.docker.run("service", "update", "--image", new, deployment.service("worker-python"))

    step = ask_during(deployment, "rolling-update", update)
    assert_each_answered_once(step)
    assert deployment.inspect("worker-python", "{{.Spec.TaskTemplate.ContainerSpec.Image}}").startswith(new)
    assert deployment.inspect("worker-python", "{{.UpdateStatus.State}}") == "completed"


def test_an_update_whose_health_check_fails_is_rolled_back(deployment: Deployment) -> None:
    before = deployment.inspect("worker-python", "{{.Spec.TaskTemplate.ContainerSpec.Image}}")
    broken = image(DEFAULT_REGISTRY, TAG, "worker")

    def failing_update() -> Any:
        return deployment.docker.run(
            "service", "update", "--image", broken, "--health-cmd", "exit 1", "--health-interval", "2s",
            "--health-retries", "1", "--health-start-period", "0s", deployment.service("worker-python"),
            check=False, capture=True,
        )  # fmt: skip

    step = ask_during(deployment, "rollback", failing_update)
    deployment.steps["rollback"]["update_exit"] = step.outcome.returncode if step.outcome else None
    assert_each_answered_once(step)
    assert deployment.inspect("worker-python", "{{.UpdateStatus.State}}") == "rollback_completed"
    assert deployment.inspect("worker-python", "{{.Spec.TaskTemplate.ContainerSpec.Image}}") == before
    assert "exit 1" not in deployment.inspect("worker-python", "{{json .Spec.TaskTemplate.ContainerSpec.Healthcheck}}")
    wait_for(lambda: converged(deployment), 120, "the rolled back service converges")


def test_a_worker_killed_by_the_engine_is_replaced_and_its_question_answered(deployment: Deployment) -> None:
    victim = deployment.containers("worker-python")[0]

    def replaced() -> bool:
        running = deployment.containers("worker-python")
        return victim not in running and len(running) == PYTHON_WORKERS + 1 and converged(deployment)

    def kill() -> float:
        time.sleep(1.5)  # the burst's questions are being worked on, on every worker
        deployment.docker.run("kill", "--signal", "KILL", victim)
        return wait_for(replaced, 120, "Swarm runs a healthy replacement")

    step = ask_during(deployment, "worker-killed", kill, minimum=6, burst=6)
    deployment.steps["worker-killed"]["replaced_s"] = round(step.outcome, 1)
    assert_each_answered_once(step)
    assert victim not in deployment.containers("worker-python")
    wait_for(lambda: online_workers(deployment) == WORKERS + 1, 60, "the replacement registers")


def test_the_master_killed_comes_back_with_its_journal(deployment: Deployment) -> None:
    victim = deployment.containers("master")
    assert len(victim) == 1

    def master_replaced() -> bool:
        running = deployment.containers("master")
        return len(running) == 1 and running != victim and converged(deployment)

    async def scenario() -> Step:
        async with ChatClient(URL) as user:
            exchanges = [await user.ask(f"master-killed: question {i + 1}", timeout=30) for i in range(8)]
            started = time.monotonic()
            await asyncio.to_thread(deployment.docker.run, "kill", "--signal", "KILL", victim[0])
            back = await asyncio.to_thread(wait_for, master_replaced, 180, "a new master task, healthy")
            await user.wait_answers(len(exchanges), ANSWER_TIMEOUT_S)
            await asyncio.sleep(2.0)
        return Step(exchanges, time.monotonic() - started, back)

    step = asyncio.run(scenario())
    deployment.steps["master-killed"] = {**step.figures(), "master_back_s": round(step.outcome, 1)}
    assert_each_answered_once(step)
    assert deployment.containers("master") != victim
