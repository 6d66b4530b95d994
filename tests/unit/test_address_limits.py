"""Unit tests of the limits per client address, on connections and on the queue: the address rule (socket peer,
X-Forwarded-For behind trusted proxies), the counters, and the queue's bound from the latency target."""

from __future__ import annotations

import itertools
import resource
from typing import Any

import pytest
import socketio

from lab.system.presets import LIFTED_CONNECTIONS, LIFTED_LIMIT, addresses_unlimited, limits_lifted
from services.master import addresses
from services.master.addresses import Connections, address_key, client_address, connection_cap, forwarded_client
from services.master.app import WebEdge
from services.master.backlog import Backlog, predicted_wait_ms
from services.master.dispatch import Dispatcher, Task
from services.master.limits import InFlight, RateLimiter
from services.master.settings import MasterSettings
from services.protocol import UserQuery
from tests.unit.master_fakes import OTHER_SESSION, SESSION, Rig, started

ALICE, BOB = "198.51.100.7", "203.0.113.9"


def refusals(r: Rig) -> dict[str, float]:
    """`swarm_refusals_total` by reason, from the exposition."""
    found: dict[str, float] = {}
    for line in r.master.metrics.render().decode().splitlines():
        if line.startswith('swarm_refusals_total{reason="'):
            reason = line.split('"')[1]
            found[reason] = float(line.rsplit(" ", 1)[1])
    return found


# -- the address rule --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("peer", "forwarded", "hops", "client"),
    [
        ("10.0.0.5", None, 0, "10.0.0.5"),
        ("10.0.0.5", "1.1.1.1", 0, "10.0.0.5"),  # not behind a proxy: the header is the client's own word
        ("10.0.0.5", "1.1.1.1", 1, "1.1.1.1"),
        ("10.0.0.5", "6.6.6.6, 1.1.1.1", 1, "1.1.1.1"),  # 6.6.6.6 is what the client claimed: ignored
        ("10.0.0.5", "6.6.6.6, 1.1.1.1, 10.0.0.9", 2, "1.1.1.1"),  # two proxies: second from the right
        ("10.0.0.5", "6.6.6.6,1.1.1.1,10.0.0.9", 2, "1.1.1.1"),
        ("10.0.0.5", "1.1.1.1", 2, "10.0.0.5"),  # fewer entries than proxies: it did not come through them
        ("10.0.0.5", "", 1, "10.0.0.5"),
        ("10.0.0.5", "unknown", 1, "10.0.0.5"),  # not an address: the peer
        ("10.0.0.5", "1.1.1.1:4711", 1, "1.1.1.1"),  # a port is dropped
        ("10.0.0.5", "[2001:db8::1]:4711", 1, "2001:db8::/64"),
        (None, None, 0, "unknown"),
    ],
)
def test_the_client_is_the_peer_or_the_nth_forwarded_address_from_the_right(
    peer: str | None, forwarded: str | None, hops: int, client: str
) -> None:
    assert forwarded_client(peer, forwarded, hops) == client


def test_ipv6_addresses_count_by_their_64_network_and_mapped_ipv4_as_ipv4() -> None:
    assert address_key("2001:db8:0:1::1") == address_key("2001:db8:0:1:ffff::2") == "2001:db8:0:1::/64"
    assert address_key("2001:db8:0:2::1") != address_key("2001:db8:0:1::1")
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key("not an address") is None


def test_the_peer_comes_from_the_asgi_scope_not_engineios_fixed_remote_addr() -> None:
    environ: dict[str, Any] = {"REMOTE_ADDR": "127.0.0.1", "asgi.scope": {"client": (ALICE, 5555)}}
    assert client_address(environ, 0) == ALICE
    environ["HTTP_X_FORWARDED_FOR"] = f"6.6.6.6,{BOB}"  # two headers, joined by python-engineio
    assert client_address(environ, 0) == ALICE
    assert client_address(environ, 1) == BOB


# -- counters ------------------------------------------------------------------------------------------------------
def test_connections_are_limited_in_all_and_per_address() -> None:
    c = Connections(most=3, most_per_address=2)
    for sid in ("a1", "a2"):
        assert c.refusal(ALICE) is None
        c.opened(sid, ALICE)
    refused = c.refusal(ALICE)
    assert refused is not None and refused[0] == "address_connections" and "at most 2" in refused[1]
    assert c.refusal(BOB) is None
    c.opened("b1", BOB)
    refused = c.refusal(BOB)
    assert refused is not None and refused[0] == "connections"
    c.closed("a1")
    c.closed("a1")  # twice changes nothing
    assert c.refusal(ALICE) is None and (len(c), c.of(ALICE), c.address("b1")) == (2, 1, BOB)


def test_the_connection_cap_raises_the_open_files_limit_or_fits_under_it(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = {"now": (1024, 65536)}
    monkeypatch.setattr(resource, "getrlimit", lambda _: limits["now"])
    monkeypatch.setattr(resource, "setrlimit", lambda _, new: limits.update(now=new))
    assert connection_cap(2000) == 2000 and limits["now"] == (2000 + addresses.RESERVED_FILES, 65536)
    limits["now"] = (1024, 1024)  # the hard limit: no more files may be opened
    assert connection_cap(2000) == 1024 - addresses.RESERVED_FILES


def test_a_connection_refused_after_it_was_counted_holds_no_place() -> None:
    open_sids = {"a1"}
    c = Connections(most=10, most_per_address=2, is_open=lambda sid: sid in open_sids)
    c.opened("a1", ALICE)
    c.opened("a2", ALICE)  # refused later in its connect: never closed, and not open
    assert c.refusal(ALICE) is None and c.of(ALICE) == 1


def test_a_rate_refusal_records_nothing_and_says_how_long_to_wait() -> None:
    rates = RateLimiter(per_minute=2)
    assert rates.wait_ms(ALICE, 0) == 0
    rates.record(ALICE, 0)
    rates.record(ALICE, 10_000)
    assert rates.wait_ms(ALICE, 20_000) == 40_000
    assert rates.wait_ms(ALICE, 20_000) == 40_000  # asking again did not count
    assert rates.wait_ms(ALICE, 60_000) == 0 and rates.wait_ms(BOB, 20_000) == 0


def test_in_flight_counts_tasks_until_they_are_done() -> None:
    flight = InFlight()
    flight.add("t1", ALICE)
    flight.add("t2", ALICE)
    flight.done("t1")
    flight.done("unknown")
    assert (flight.of(ALICE), flight.of(BOB), len(flight)) == (1, 0, 1)


# -- per address, through the master -----------------------------------------------------------------------------
async def test_an_address_may_not_ask_more_than_its_rate_across_sessions() -> None:
    r = await started(rate_per_minute_per_address=3)
    for session in (SESSION, OTHER_SESSION, SESSION):
        assert (await r.master.submit(session, UserQuery(query="q"), ALICE)).accepted
    ack = await r.master.submit(OTHER_SESSION, UserQuery(query="q"), ALICE)
    assert ack.error == "too many questions from your address: at most 3 per minute; try again in 60 s"
    assert (await r.master.submit(OTHER_SESSION, UserQuery(query="q"), BOB)).accepted
    assert len(r.journal.open_tasks()) == 4 and r.master.dispatcher.unfinished(OTHER_SESSION) == 2
    r.clock.advance(60_000)
    assert (await r.master.submit(OTHER_SESSION, UserQuery(query="q"), ALICE)).accepted
    assert refusals(r) == {"address_rate": 1.0}


async def test_an_address_may_not_have_more_questions_in_flight_than_its_limit_across_sessions() -> None:
    r = await started(max_in_flight_per_address=2)
    await r.worker("go-worker-a")
    for session in (SESSION, OTHER_SESSION):
        assert (await r.master.submit(session, UserQuery(query="q"), ALICE)).accepted
    ack = await r.master.submit("session-cccccccccccccccc", UserQuery(query="q"), ALICE)
    assert ack.error is not None and ack.error.startswith("too many questions in flight from your address: at most 2")
    assert (await r.master.submit(SESSION, UserQuery(query="q"), BOB)).accepted
    await r.answer(r.last_task("go-worker-a"))  # ALICE's first: one fewer in flight
    assert (await r.master.submit(SESSION, UserQuery(query="q"), ALICE)).accepted
    assert refusals(r) == {"address_in_flight": 1.0}


async def test_a_refused_question_counts_nowhere_and_changes_nothing() -> None:
    r = await started(rate_per_minute=1, rate_per_minute_per_address=5)
    assert (await r.master.submit(SESSION, UserQuery(query="q"), ALICE)).accepted
    for _ in range(10):
        assert not (await r.master.submit(SESSION, UserQuery(query="q"), ALICE)).accepted  # the session's rate
    for n in range(4):  # ALICE's refused questions did not use up her address' rate
        assert (await r.master.submit(f"session-{n}aaaaaaaaaaaaaaaa", UserQuery(query="q"), ALICE)).accepted
    assert len(r.journal.open_tasks()) == 5 and refusals(r) == {"session_rate": 10.0}
    assert b'swarm_tasks_total{outcome="rejected"} 10.0' in r.master.metrics.render()


async def test_bad_questions_are_counted_by_reason() -> None:
    r = await started(max_query_chars=5)
    await r.master.submit(SESSION, UserQuery(query=" "), ALICE)
    await r.master.submit(SESSION, UserQuery(query="x" * 6), ALICE)
    r.master.refuse("not an object")
    assert refusals(r) == {"empty": 1.0, "too_long": 1.0, "bad_request": 1.0}


# -- the queue's bound ---------------------------------------------------------------------------------------------
def test_the_pth_question_waits_for_the_pth_moment_a_worker_frees_up() -> None:
    residuals = [4_000.0, 1_000.0]  # two busy workers, free in 4 s and 1 s; a task takes 10 s
    assert predicted_wait_ms(0, residuals, 10_000) == 0
    assert [predicted_wait_ms(p, residuals, 10_000) for p in (1, 2, 3, 4, 5)] == [1_000, 4_000, 11_000, 14_000, 21_000]
    assert predicted_wait_ms(3, [], 10_000) == 0


SESSIONS = itertools.count()


async def ask_from(r: Rig, address: str) -> str | None:
    """A question from `address`, in a new session; its error, None when accepted."""
    return (await r.master.submit(f"session-{next(SESSIONS):016d}", UserQuery(query="q"), address)).error


async def test_a_question_that_cannot_be_answered_within_the_target_is_refused_with_when_to_retry() -> None:
    r = await started(latency_target_seconds=15.0)
    await r.worker("go-worker-a", max_task_ms=20_000)
    await r.worker("go-worker-b", max_task_ms=20_000)
    await r.ask("warm-up")
    r.clock.advance(10_000)
    await r.answer(r.last_task())  # one task of 10 s observed: the mean service time
    assert r.master.intake.backlog.service.mean_ms == 10_000
    assert [await ask_from(r, f"10.0.0.{n}") for n in (1, 2)] == [None, None]  # both workers busy, for 10 s
    r.clock.advance(6_000)  # free in 4 s: a question now waits 4 s, then takes 10: 14 s
    assert await ask_from(r, "10.0.0.3") is None
    ack = await r.master.submit(SESSION, UserQuery(query="q"), "10.0.0.4")  # waits 4 s too (the other worker)
    assert ack.accepted and ack.position == 2
    assert await ask_from(r, "10.0.0.5") == "too busy: try again in 9 s"  # waits 14 s: answered in 24 s
    assert refusals(r) == {"too_busy": 1.0} and r.master.status_summary().queued == 2
    r.clock.advance(4_000)  # both answer in time; the queued two start
    first, second = r.last_task("go-worker-a"), r.last_task("go-worker-b")
    await r.answer(first)
    await r.answer(second)
    assert await ask_from(r, "10.0.0.5") == "too busy: try again in 5 s"
    r.clock.advance(5_000)  # 9 s after it was told: answered in 5 + 10 s
    assert await ask_from(r, "10.0.0.5") is None


async def test_one_address_may_hold_only_its_share_of_the_queue_so_others_still_get_in() -> None:
    r = await started(latency_target_seconds=15.0, max_in_flight_per_address=1000)
    await r.worker("go-worker-a", max_task_ms=5_000)
    await r.worker("go-worker-b", max_task_ms=5_000)
    await r.ask("warm-up")
    r.clock.advance(1_000)
    await r.answer(r.last_task())  # 1 s a task: 2 workers answer 30 questions within 15 s
    flood = [await ask_from(r, ALICE) for _ in range(40)]
    accepted = flood.count(None)
    assert accepted == 15  # half of what is answered in time; the other half kept for others
    assert (
        flood[accepted] == f"too busy: your address has its share of the queue ({accepted} in flight); try again in 1 s"
    )
    assert await ask_from(r, BOB) is None
    assert r.master.dispatcher.queue_length == 14 and refusals(r) == {"address_share": 25.0}


async def test_a_question_an_idle_worker_takes_at_once_is_never_refused_for_the_share() -> None:
    r = await started(latency_target_seconds=15.0)
    await r.worker("go-worker-a", max_task_ms=20_000)
    await r.worker("go-worker-b", max_task_ms=20_000)
    await r.ask("warm-up")
    r.clock.advance(10_000)
    await r.answer(r.last_task())  # 10 s a task: nothing may wait
    assert [await ask_from(r, ALICE) for _ in range(3)] == [None, None, "too busy: try again in 5 s"]


async def test_with_no_worker_online_the_queue_holds_what_the_last_workers_would_answer_in_time() -> None:
    r = await started(latency_target_seconds=15.0)
    await r.worker("go-worker-a", max_task_ms=20_000)
    await r.ask()
    r.clock.advance(5_000)
    await r.answer(r.last_task())  # 5 s a task
    await r.status("go-worker-a", "offline")
    assert r.master.status_summary().workers == 0
    answers = [await ask_from(r, f"10.0.0.{n}") for n in range(4)]
    assert answers == [None, None, None, "too busy: try again in 5 s"]  # answered in 5, 10, 15 s once it is back


async def test_before_any_answer_and_with_the_bound_off_questions_queue_as_before() -> None:
    cold = await started(latency_target_seconds=15.0)
    assert [await ask_from(cold, ALICE) for _ in range(8)] == [None] * 8
    off = await started(latency_target_seconds=0.0)
    await off.worker("go-worker-a")
    await off.ask()
    off.clock.advance(60_000)
    await off.answer(off.last_task())
    assert [await ask_from(off, ALICE) for _ in range(8)] == [None] * 8


def test_a_backlog_without_a_target_or_without_any_worker_seen_never_refuses() -> None:
    dispatcher = Dispatcher()
    dispatcher.submit(Task(task_id="t1", session_id=SESSION, query="q", submitted_ms=0), 0)
    for target_ms in (0, 15_000):
        backlog = Backlog(target_ms)
        backlog.observe(10**9)
        assert backlog.service.mean_ms == 10**9 and backlog.retry_after_ms(dispatcher, 0) == 0


# -- connections, through the web edge ----------------------------------------------------------------------------
async def test_connections_over_the_limits_are_refused_with_a_reason_the_client_sees() -> None:
    r = await started(max_connections=3, max_connections_per_address=2)
    edge = WebEdge(lambda: SESSION, lambda: True)
    edge.bind(r.master)
    sent: list[Any] = []

    async def send_packet(eio_sid: str, pkt: Any) -> None:
        sent.append((eio_sid, pkt.packet_type, pkt.data))

    edge.sio._send_packet = send_packet

    async def connect(eio_sid: str, peer: str) -> None:
        edge.sio.environ[eio_sid] = {"asgi.scope": {"client": (peer, 1)}}
        await edge.sio._handle_connect(eio_sid, "/", None)

    for n, peer in enumerate((ALICE, ALICE, ALICE, BOB, BOB)):
        await connect(f"e{n}", peer)
    errors = [(eio, data) for eio, kind, data in sent if kind == socketio.packet.CONNECT_ERROR]
    assert errors == [
        ("e2", {"message": "too many connections from your address: at most 2"}),
        ("e4", {"message": "the server is full: too many connections; try again later"}),
    ]
    assert refusals(r) == {"address_connections": 1.0, "connections": 1.0}
    assert (len(edge.connections), edge.connections.of(ALICE), edge.connections.of(BOB)) == (3, 2, 1)
    (first,) = [sid for sid in edge._sessions if edge.connections.address(sid) == BOB]
    await edge.sio._trigger_event("disconnect", "/", first, "client disconnect")
    assert len(edge.connections) == 2


async def test_a_connection_refused_by_a_later_check_does_not_hold_its_addresses_place() -> None:
    r = await started(max_connections_per_address=1, operator_token="operator-secret")
    edge = WebEdge(lambda: SESSION, lambda: True)
    edge.bind(r.master)
    kinds: list[int] = []

    async def send_packet(eio_sid: str, pkt: Any) -> None:
        kinds.append(pkt.packet_type)

    edge.sio._send_packet = send_packet
    for eio_sid, auth in (("e1", {"dashboard": True, "token": "wrong"}), ("e2", None)):
        edge.sio.environ[eio_sid] = {"asgi.scope": {"client": (ALICE, 1)}}
        await edge.sio._handle_connect(eio_sid, "/", auth)
    assert kinds[0] == socketio.packet.CONNECT_ERROR and socketio.packet.CONNECT in kinds[1:]
    assert edge.connections.of(ALICE) == 1 and "address_connections" not in refusals(r)


def test_the_lab_presets_lift_every_limit_a_load_generator_would_hit() -> None:
    settings = MasterSettings.from_env(limits_lifted())
    lifted = (
        settings.rate_per_minute,
        settings.max_in_flight_per_session,
        settings.rate_per_minute_per_address,
        settings.max_in_flight_per_address,
    )
    assert min(lifted) >= LIFTED_LIMIT and settings.latency_target_seconds == 0
    assert settings.max_connections == settings.max_connections_per_address == LIFTED_CONNECTIONS
    assert MasterSettings.from_env(addresses_unlimited(3 * LIFTED_LIMIT)).max_in_flight_per_address == 3 * LIFTED_LIMIT
    defaults = MasterSettings()
    assert defaults.latency_target_seconds == 15 and defaults.max_connections_per_address == 100
