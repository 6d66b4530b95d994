"""The scenarios of `lab bench failover`: questions through the proxy while a node of HaNodes crashes, is cut off or
paused; measured: how soon questions are accepted again, how soon everything accepted before is answered, and
that nothing is lost, nothing answered twice, and no old leader acknowledges anything after its lease."""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.loadgen.client import ChatClient, Exchange
from lab.system.nodes import HaNodes, Node
from services.protocol import AiResponse, Events

ACK_TIMEOUT_S = 2.0  # a try without an ack by then counts as not accepted, and the question is asked again
RETRY_S = 0.2
DIRECT_EVERY_S = 0.5


@dataclass
class Attempt:
    """One try of a question: when it was sent and acknowledged (time.monotonic()), and whether accepted."""

    sent_at: float
    acked_at: float | None = None
    accepted: bool = False
    reason: str = ""


@dataclass
class Question:
    """One question of the load: every try, and the exchange of the accepted one."""

    text: str
    attempts: list[Attempt] = field(default_factory=list)
    exchange: Exchange | None = None

    @property
    def accepted_at(self) -> float | None:
        """When the accepting ack came (None: not accepted)."""
        return next((a.acked_at for a in self.attempts if a.accepted), None)

    @property
    def answers(self) -> list[AiResponse]:
        """Every answer the client got for it."""
        return self.exchange.answers if self.exchange is not None else []


def distinct_answers(answers: Iterable[AiResponse]) -> int:
    """How many different executions `answers` are: a resend after a reconnect repeats the worker, the completion
    time and the text (the journal's copy); another attempt has another completion time or worker."""
    return len({(a.workerId, a.timestamp, a.response, a.error) for a in answers})


@dataclass
class FailoverResult:
    """One scenario's figures (seconds; `fault_at` relative to the load's start)."""

    scenario: str
    lease_s: float = 5.0
    fault_node: str = ""
    leader_before: str = ""
    leader_after: str = ""
    epoch_before: int = 0
    epoch_after: int = 0
    etcd_leader_before: str = ""
    fault_at: list[float] = field(default_factory=list)
    accepted_again_s: float | None = None  # worst over the faults
    all_answered_s: float | None = None  # worst over the faults
    accepted_again_each: list[float | None] = field(default_factory=list)
    accepted: int = 0
    answered: int = 0
    lost: int = 0
    duplicates: int = 0
    failed: int = 0  # answered with an error
    tries: int = 0
    old_leader_acks: int | None = None  # None: not measured in this scenario
    lost_tasks: list[str] = field(default_factory=list)  # their task ids, to look for in the logs
    # Answers to tasks the client never got an ack for (a try that timed out, or a commit of unknown outcome that
    # landed): the user asked again, so that question was answered twice. Not lost, not a duplicate execution.
    unacked_answered: int = 0
    notes: list[str] = field(default_factory=list)


def measure(
    result: FailoverResult, questions: list[Question], faults: list[float], start: float, direct: list[Attempt]
) -> None:
    """Fill `result` from the load's questions, the fault times and the direct client's tries (all monotonic)."""
    result.fault_at = [round(f - start, 2) for f in faults]
    result.tries = sum(len(q.attempts) for q in questions)
    accepted = [q for q in questions if q.accepted_at is not None]
    result.accepted = len(accepted)
    result.answered = sum(1 for q in accepted if q.answers)
    result.lost_tasks = [q.exchange.task_id for q in accepted if not q.answers and q.exchange is not None]
    result.lost = len(result.lost_tasks)
    result.failed = sum(1 for q in accepted if q.answers and q.answers[0].error)
    result.duplicates = sum(1 for q in accepted if distinct_answers(q.answers) > 1)
    again: list[float | None] = []
    drained: list[float | None] = []
    for fault in faults:
        # The first question *sent* after the fault that was accepted: its ack time minus the fault's.
        after = [t for q in questions for a in q.attempts if a.accepted and a.sent_at >= fault and (t := a.acked_at)]
        again.append(round(min(after) - fault, 2) if after else None)
        # Every question acknowledged before the fault answered: the last answer's time minus the fault's.
        done = [q.exchange.answered_at if q.exchange else None for q in accepted if (q.accepted_at or fault) < fault]
        drained.append(None if None in done else round(max([fault, *(d or 0 for d in done)]) - fault, 2))
    result.accepted_again_each = again
    result.accepted_again_s = None if None in again or not again else max(a for a in again if a is not None)
    result.all_answered_s = None if None in drained or not drained else max(d for d in drained if d is not None)
    if direct:
        result.old_leader_acks = old_leader_acks(direct, faults[0], faults[0] + result.lease_s)
        late = [a for a in direct if a.accepted and a.sent_at < faults[0] and (a.acked_at or 0) > faults[0]]
        if late:  # committed while it led, the ack held up by the fault: a kept promise (see old_leader_acks)
            result.notes.append(f"{len(late)} question(s) asked before the fault acknowledged after it")


def old_leader_acks(direct: list[Attempt], fault: float, lease_end: float) -> int:
    """Questions the old leader accepted (acknowledged with a task) after its lease ended, of those asked after
    the fault: one asked before may have been committed while it still led, its ack only held up by the pause."""
    return sum(1 for a in direct if a.accepted and a.sent_at >= fault and (a.acked_at or 0) > lease_end)


def result_rows(results: Iterable[FailoverResult]) -> list[dict[str, Any]]:
    """One row per scenario, for a table."""
    return [
        {
            "scenario": r.scenario,
            "node": r.fault_node,
            "accepted again s": r.accepted_again_s,
            "all answered s": r.all_answered_s,
            "accepted": r.accepted,
            "lost": r.lost,
            "duplicates": r.duplicates,
            "old-leader acks": "-" if r.old_leader_acks is None else r.old_leader_acks,
            "leader": f"{r.leader_before}/{r.epoch_before} -> {r.leader_after}/{r.epoch_after}",
        }
        for r in results
    ]


def write_results(results: list[FailoverResult], directory: Path, stem: str = "failover") -> tuple[Path, Path]:
    """Write the table as CSV and every figure as JSON under `directory`; return both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = result_rows(results)
    table, full = directory / f"{stem}.csv", directory / f"{stem}.json"
    with table.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["scenario"])
        writer.writeheader()
        writer.writerows(rows)
    full.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n", encoding="utf-8")
    return table, full


class Load:
    """Questions through the proxy at `rate` per second over `clients` users; each asked until accepted."""

    def __init__(self, url: str, rate: float, clients: int = 2, label: str = "q") -> None:
        self.rate, self.label = rate, label
        self.users = [user_of(url) for _ in range(clients)]
        self.questions: list[Question] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = False

    async def run(self) -> None:
        """Ask at the rate until `stop()`."""
        for user in self.users:
            await user.connect()
        self._running = True
        n, started = 0, time.monotonic()
        while self._running:
            question = Question(f"{self.label} {n}")
            self.questions.append(question)
            task = asyncio.create_task(self._ask(self.users[n % len(self.users)], question))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            n += 1
            await asyncio.sleep(max(0.0, started + n / self.rate - time.monotonic()))

    def unacked_answered(self) -> int:
        """How many tasks the users got an answer for without ever having got their ack."""
        return sum(
            1 for u in self.users for events in u.unclaimed.values() if any(e == Events.AI_RESPONSE for e, *_ in events)
        )

    def stop(self) -> None:
        """Ask no new question (those asked go on until accepted)."""
        self._running = False

    async def _ask(self, user: ChatClient, question: Question) -> None:
        while True:
            attempt = Attempt(time.monotonic())
            question.attempts.append(attempt)
            try:
                exchange = await user.ask(question.text, timeout=ACK_TIMEOUT_S)
            except Exception as e:  # disconnected, or no ack in time: the failover is not over
                attempt.reason = type(e).__name__
            else:
                attempt.acked_at = time.monotonic()
                attempt.accepted = bool(exchange.ack.taskId)
                attempt.reason = exchange.ack.error or ""
                if attempt.accepted:
                    question.exchange = exchange
                    return
            await asyncio.sleep(RETRY_S)

    async def settle(self, timeout: float) -> None:
        """Wait until every question is accepted and every accepted one answered (or the timeout); disconnect."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._tasks and all(q.answers for q in self.questions):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)  # a duplicate would come right after
        for task in list(self._tasks):
            task.cancel()
        for user in self.users:
            await user.close()


def user_of(url: str) -> ChatClient:
    """A user of `url` that reconnects within a second rather than with python-socketio's backoff up to 5 s, which
    would be counted in the failover (the system's, not the client's, is measured here)."""
    user = ChatClient(url)
    user.sio.reconnection_delay, user.sio.reconnection_delay_max = 0.2, 1.0
    return user


async def ask_old_leader(node: Node, tries: list[Attempt], stop: asyncio.Event, timeout: float) -> None:
    """A user connected straight to `node`'s master (not through the proxy), asking every DIRECT_EVERY_S until
    `stop`, each ack awaited for `timeout` (a late ack from a woken-up old leader must be seen)."""
    user = user_of(node.web_url)
    await user.connect()
    pending: set[asyncio.Task[None]] = set()

    async def one(n: int) -> None:
        attempt = Attempt(time.monotonic())
        tries.append(attempt)
        try:
            exchange = await user.ask(f"to the old leader {n}", timeout=timeout)
        except Exception as e:
            attempt.reason = type(e).__name__
            return
        attempt.acked_at, attempt.accepted = time.monotonic(), bool(exchange.ack.taskId)

    n = 0
    while not stop.is_set():
        task = asyncio.create_task(one(n))
        pending.add(task)
        n += 1
        await asyncio.sleep(DIRECT_EVERY_S)
    await asyncio.gather(*pending, return_exceptions=True)
    await user.close()


async def _until_accepted(load: Load, since: float, timeout: float) -> None:
    """Wait until a question sent at `since` or later is accepted (or the timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(a.accepted and a.sent_at >= since for q in load.questions for a in q.attempts):
            return
        await asyncio.sleep(0.1)


@dataclass
class Run:
    """What a scenario acts on and records into: the nodes, the load, the result, the direct client's tries."""

    nodes: HaNodes
    load: Load
    result: FailoverResult
    direct: list[Attempt] = field(default_factory=list)


Step = Callable[[Run], Awaitable[list[float]]]


async def _crash(run: Run, node: Node) -> list[float]:
    run.result.fault_node = node.name
    fault = await asyncio.to_thread(run.nodes.crash, node)
    await _until_accepted(run.load, fault, 60)
    await asyncio.sleep(3)
    return [fault]


async def leader_node(run: Run) -> list[float]:
    """Crash the leader's node."""
    leader, _ = await asyncio.to_thread(run.nodes.wait_leader, 30.0)
    return await _crash(run, leader)


async def etcd_leader_node(run: Run) -> list[float]:
    """Crash the node whose etcd member leads (saying whether the master's leader is there too)."""
    node = await asyncio.to_thread(run.nodes.etcd_leader)
    if node is None:
        raise RuntimeError("no etcd member leads")
    if node.name == run.result.leader_before:
        run.result.notes.append("the etcd leader was on the master leader's node")
    return await _crash(run, node)


async def standby_node(run: Run) -> list[float]:
    """Crash a node whose master stands by."""
    return await _crash(run, next(n for n in run.nodes.nodes if n.name != run.result.leader_before))


async def _direct_fault(
    run: Run, fault: Callable[[Node], float], undo: Callable[[Node], float], hold: float
) -> list[float]:
    """`fault` on the leader's node, `undo` after `hold` s, while a user asks the old leader directly."""
    leader, _ = await asyncio.to_thread(run.nodes.wait_leader, 30.0)
    run.result.fault_node = leader.name
    stop = asyncio.Event()
    direct = asyncio.create_task(ask_old_leader(leader, run.direct, stop, hold + 15))
    await asyncio.sleep(1.0)
    at = await asyncio.to_thread(fault, leader)
    await asyncio.sleep(hold)
    await asyncio.to_thread(undo, leader)
    await _until_accepted(run.load, at, 30)
    await asyncio.sleep(5)  # the old leader, awake again, gets its chance to (wrongly) acknowledge
    stop.set()
    await direct
    return [at]


async def partition_leader(run: Run) -> list[float]:
    """Cut the leader's node off for 15 s, its processes alive."""
    return await _direct_fault(run, run.nodes.partition, run.nodes.heal, 15.0)


async def pause_leader(run: Run) -> list[float]:
    """Pause the leader's node for twice the lease."""
    return await _direct_fault(run, run.nodes.pause, run.nodes.resume, 2.0 * run.nodes.lease_seconds)


async def rotating(run: Run, rounds: int = 10) -> list[float]:
    """Ten crashes rotating over the nodes: crash, accepted again, revive, whole again, next."""
    nodes, faults = run.nodes, []
    for i in range(rounds):
        node = nodes.nodes[i % len(nodes.nodes)]
        faults.append(at := await asyncio.to_thread(nodes.crash, node))
        await _until_accepted(run.load, at, 60)
        await asyncio.to_thread(nodes.revive, node)
        await asyncio.to_thread(nodes.wait_whole, 90.0)
    run.result.fault_node = "each in turn"
    return faults


SCENARIOS: dict[str, Step] = {
    "leader-node": leader_node,
    "etcd-leader-node": etcd_leader_node,
    "standby-node": standby_node,
    "partition-leader": partition_leader,
    "pause-leader": pause_leader,
    "rotating": rotating,
}


async def failover(
    nodes: HaNodes, scenario: str, rate: float = 2.0, *, warmup: float = 4.0, clients: int = 2, settle: float = 90.0
) -> FailoverResult:
    """Run `scenario` under a load of `rate` questions per second and measure it (see FailoverResult)."""
    step = SCENARIOS[scenario]
    result = FailoverResult(scenario, lease_s=nodes.lease_seconds)
    leader, result.epoch_before = await asyncio.to_thread(nodes.wait_leader, 30.0)
    result.leader_before = leader.name
    result.etcd_leader_before = getattr(await asyncio.to_thread(nodes.etcd_leader), "name", "")
    load = Load(nodes.web_url, rate, clients, scenario)
    run = Run(nodes, load, result)
    running = asyncio.create_task(load.run())
    start = time.monotonic()
    try:
        await asyncio.sleep(warmup)
        faults = await step(run)
    finally:
        load.stop()
        await running
    await load.settle(settle)
    after = await asyncio.to_thread(nodes.wait_leader, 30.0)
    result.leader_after, result.epoch_after = after[0].name, after[1]
    measure(result, load.questions, faults, start, run.direct)
    result.unacked_answered = load.unacked_answered()
    for node in [n for n in nodes.nodes if n.state == "crashed"]:  # the next scenario finds three nodes
        await asyncio.to_thread(nodes.revive, node)
    await asyncio.to_thread(nodes.wait_whole, 90.0)
    return result


def run_failover(nodes: HaNodes, scenario: str, rate: float = 2.0, **options: Any) -> FailoverResult:
    """`failover` for a caller without an event loop (the CLI, synchronous tests)."""
    return asyncio.run(failover(nodes, scenario, rate, **options))


def run_all(nodes: HaNodes, scenarios: Iterable[str] = SCENARIOS, rate: float = 2.0) -> list[FailoverResult]:
    """Every scenario in turn on the same nodes (`write_results` writes them)."""
    return [run_failover(nodes, s, rate) for s in scenarios]
