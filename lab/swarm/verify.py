"""`lab swarm verify`: the stack converged, its tasks run and are healthy, the master answers one question.

Swarm reports a task Running only once its container's healthcheck has passed (until then it is Starting),
and replaces a container that turns unhealthy; `docker inspect` adds the current health of the containers
on this node, the only ones this node's daemon can see.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lab.swarm.docker import Docker, Result, gist
from lab.swarm.stack import OPERATOR_TOKEN_PATH, SERVICES, WORKER_SERVICES, json_lines, replicas, stack_service

QUESTION = "lab swarm verify: please answer with one short sentence."
POLL_S = 5.0
HEALTH_FORMAT = (
    '{{index .Config.Labels "com.docker.swarm.task.name"}} '
    "{{if .State.Health}}{{.State.Health.Status}}{{else}}no healthcheck{{end}}"
)


@dataclass(frozen=True)
class Check:
    """One verdict of `lab swarm verify`."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        """'PASS name: detail' or 'FAIL name: detail'."""
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def services_check(stack: str, rows: list[dict[str, Any]]) -> Check:
    """Every service of the stack exists and runs as many replicas as it should."""
    if not rows:
        return Check("services converged", False, f"stack {stack!r} has no services: `lab swarm deploy` first")
    by_name = {str(row.get("Name")): str(row.get("Replicas", "")) for row in rows}
    parts, ok = [], True
    for service in SERVICES:
        shown = by_name.get(stack_service(stack, service))
        counts = replicas(shown) if shown is not None else None
        if counts is None:
            parts.append(f"{service} missing")
            ok = False
            continue
        running, desired = counts
        ok = ok and running == desired
        parts.append(f"{service} {running}/{desired}")
    return Check("services converged", ok, ", ".join(parts))


def tasks_check(rows: list[dict[str, Any]]) -> Check:
    """Every task that should run does run (`docker stack ps --filter desired-state=running`)."""
    if not rows:
        return Check("tasks running", False, "no task of the stack should be running")
    stuck = [row for row in rows if not str(row.get("CurrentState", "")).startswith("Running")]
    if not stuck:
        return Check("tasks running", True, f"{len(rows)} tasks running (each passed its healthcheck to get there)")
    details = []
    for row in stuck:
        error = f" ({row['Error']})" if row.get("Error") else ""
        details.append(f"{row.get('Name')} on {row.get('Node') or 'no node yet'}: {row.get('CurrentState')}{error}")
    return Check("tasks running", False, "; ".join(details))


def health_check(text: str | None) -> Check:
    """The containers of the stack on this node are healthy (`docker inspect` of each)."""
    if text is None:
        return Check("health here", True, "no task of the stack runs on this node")
    lines = [line.split(" ", 1) for line in text.splitlines() if line.strip()]
    unhealthy = [f"{name} {status}" for name, status in lines if status != "healthy"]
    if unhealthy:
        return Check("health here", False, "; ".join(unhealthy))
    return Check("health here", True, f"{len(lines)} containers on this node healthy")


def desired_workers(stack: str, rows: list[dict[str, Any]]) -> int | None:
    """The workers the stack should run: the desired replicas of every worker service, all languages
    (`docker stack services` rows); None when it lists none of them."""
    wanted = [
        counts[1]
        for row in rows
        for service in WORKER_SERVICES.values()
        if row.get("Name") == stack_service(stack, service) and (counts := replicas(str(row.get("Replicas"))))
    ]
    return sum(wanted) if wanted else None


def operator_token(docker: Docker, stack: str, echo: bool = True) -> str | None:
    """The master's operator token, for /api/status: $OPERATOR_TOKEN, else the secret as the master's container on
    this node has it (`docker exec`; the value is captured, never printed); None when neither says."""
    given = docker.environ.get("OPERATOR_TOKEN", "").strip()
    if given:
        return given
    master = stack_service(stack, "master")
    here = docker.query("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={master}", echo=echo)
    if here is None or here.returncode != 0 or not here.lines():
        return None
    read = docker.query("exec", here.lines()[0], "cat", OPERATOR_TOKEN_PATH, echo=echo)
    return read.stdout.strip() or None if read is not None and read.returncode == 0 else None


def web_check(url: str, desired_workers: int | None, token: str | None = None) -> Check:
    """The master's /healthz says ok and /api/status (with the operator token) lists the workers online (of every
    language)."""
    import httpx  # here, not at the top: the `lab` command's parser must not load it

    from services.protocol import StatusReport, validate

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        health = httpx.get(f"{url}/healthz", timeout=5.0)
        status = httpx.get(f"{url}/api/status", timeout=5.0, headers=headers)
        if status.status_code in (401, 403):
            return Check(
                "master web",
                False,
                f"{url}/api/status {status.status_code}: set OPERATOR_TOKEN (the master's operator token; it is "
                "read from the master's container when that runs on this node: DEPLOY.md, section 6)",
            )
        status.raise_for_status()
    except httpx.HTTPError as exc:
        return Check("master web", False, f"{url}: {exc} (published port unreachable? see DEPLOY.md)")
    try:
        report = validate(StatusReport, status.json())
    except ValueError as exc:  # not JSON, or not a status (DecodeError)
        return Check("master web", False, f"{url}/api/status: {exc}")
    languages = Counter(w.language or "?" for w in report.workers if w.state in ("idle", "busy"))
    online = sum(languages.values())
    wanted = desired_workers if desired_workers is not None else 1
    ok = health.status_code == 200 and online >= max(wanted, 1)
    detail = f"/healthz {health.status_code} {health.text.strip()}; {online} workers online"
    detail += f" of {wanted}" if desired_workers is not None else ""
    if languages:
        detail += " (" + ", ".join(f"{n} {language}" for language, n in sorted(languages.items())) + ")"
    return Check("master web", ok, detail)


async def _ask(url: str, timeout: float) -> Check:
    from lab.loadgen.client import ChatClient  # Socket.IO: only needed here

    async with ChatClient(url) as user:
        exchange = await user.ask(QUESTION, timeout=timeout)
        if not exchange.task_id:
            return Check("question answered", False, f"refused: {exchange.ack.error}")
        await user.wait_answers(1, timeout)
    answer = exchange.answer
    if answer is None:  # wait_answers raises first; kept for the type
        return Check("question answered", False, f"task {exchange.task_id} got no answer")
    if answer.failed:
        return Check("question answered", False, f"task {exchange.task_id} failed: {answer.error}")
    text = " ".join(answer.response.split())
    return Check(
        "question answered",
        True,
        f"by {answer.workerId} ({answer.model}) in {answer.processingTime} ms: {text[:80]!r}",
    )


def question_check(url: str, timeout: float) -> Check:
    """One question through the master's Socket.IO, answered without error within `timeout`."""
    try:
        return asyncio.run(_ask(url, timeout))
    except Exception as exc:  # connection refused, timeouts, protocol errors: all mean "not answered"
        return Check("question answered", False, f"{type(exc).__name__}: {exc}")


def _swarm_checks(docker: Docker, stack: str, echo: bool) -> tuple[list[Check], int | None] | None:
    services = docker.query("stack", "services", stack, "--format", "{{json .}}", echo=echo)
    tasks = docker.query("stack", "ps", stack, "--filter", "desired-state=running", "--format", "{{json .}}", echo=echo)
    here = docker.query("ps", "-q", "--filter", f"label=com.docker.stack.namespace={stack}", echo=echo)
    if services is None or tasks is None or here is None:
        return None
    if services.returncode != 0:
        return [Check("services converged", False, f"`docker stack services` failed: {gist(services.stderr)}")], None
    service_rows = json_lines(services.stdout)
    if not service_rows:
        return [services_check(stack, [])], None
    inspected: Result | None = None
    if here.lines():
        inspected = docker.query("inspect", "--format", HEALTH_FORMAT, *here.lines(), echo=echo)
    tasks_verdict = (
        tasks_check(json_lines(tasks.stdout))
        if tasks.returncode == 0
        else Check("tasks running", False, f"`docker stack ps` failed: {gist(tasks.stderr)}")
    )
    checks = [
        services_check(stack, service_rows),
        tasks_verdict,
        # A container that went away between `ps` and `inspect` fails the inspect: read what it did print.
        health_check(inspected.stdout if inspected is not None else None),
    ]
    return checks, desired_workers(stack, service_rows)


def converged(docker: Docker, stack: str) -> tuple[list[Check], int | None] | None:
    """The swarm's checks now, without printing the commands (services, tasks, health here) and the desired
    workers; None in a dry run."""
    return _swarm_checks(docker, stack, echo=False)


def verify(
    docker: Docker,
    stack: str,
    url: str,
    timeout: float,
    ask: Callable[[str, float], Check] = question_check,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[Check]:
    """Poll the swarm until converged or `timeout`, then check the master's web side and ask one question."""
    deadline = clock() + timeout
    outcome = _swarm_checks(docker, stack, echo=True)
    if outcome is None:
        docker.out(f"# dry run: would poll these every {POLL_S:g} s for up to {timeout:g} s until converged,")
        docker.out(
            f"# then GET {url}/healthz and {url}/api/status (with the operator token: $OPERATOR_TOKEN, else "
            f"{OPERATOR_TOKEN_PATH} of the master's container here) and ask one question through {url} (Socket.IO)"
        )
        return []
    if not all(c.ok for c in outcome[0]):
        docker.out(f"# waiting for the stack to converge: the same commands every {POLL_S:g} s, up to {timeout:g} s")
    while not all(c.ok for c in outcome[0]) and clock() < deadline:
        sleep(POLL_S)
        outcome = _swarm_checks(docker, stack, echo=False) or outcome
    checks, workers = outcome
    token = operator_token(docker, stack)
    web = web_check(url, workers, token)
    while not web.ok and clock() < deadline:
        sleep(POLL_S)
        token = token or operator_token(docker, stack, echo=False)  # its container may have started meanwhile
        web = web_check(url, workers, token)
    return [*checks, web, ask(url, max(deadline - clock(), 30.0))]
