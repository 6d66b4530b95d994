"""Run the master: `python -m services.master` (settings from the environment);
`python -m services.master --check` asks the master running here whether it is healthy (exit 0 or 1)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from services.envconfig import file_variable
from services.health import check_master, run_check
from services.loop import runner
from services.master.settings import MasterSettings

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("services.master")

# The exit status of a master that lost the leadership while it served (its supervisor starts it again).
DEPOSED_EXIT = 3


async def serve(
    settings: MasterSettings, journal_key: bytes | None = None, previous_keys: tuple[bytes, ...] = ()
) -> None:
    """Wire the edges to the master and run until SIGINT/SIGTERM (users' keys in the journal sealed with
    `journal_key`, or not written; `previous_keys` open what a key before a rotation sealed)."""
    # Imported here, not at the top, so that `--check` (a health check every few seconds) starts fast.
    from services.master.app import WebEdge
    from services.master.brokers import BrokerFleet
    from services.master.fronts import FrontLink, run_front
    from services.master.grpc_edge import start_grpc
    from services.master.intake import new_session_id
    from services.master.loops import background
    from services.master.mqtt_edge import MqttEdge
    from services.master.service import Master
    from services.master.standby import JournalFailed, begin
    from services.master.watch import WatchService
    from services.master.web_server import web_server

    tenure = await begin(settings, journal_key, previous_keys)  # a standby waits here until it leads
    journal = tenure.journal
    # The edges first: the master sends through them, and once bound they hand it what arrives.
    # MQTT_BROKERS: a connection to every broker (one per node, issue 20); else the one at MQTT_HOST:MQTT_PORT.
    mqtt = BrokerFleet(settings, tenure.epoch) if settings.mqtt_brokers else MqttEdge(settings, tenure.epoch)
    publisher = tenure.publisher(mqtt)
    jobs: dict[str, Coroutine[Any, Any, Any]] = {"mqtt": mqtt.run(), **tenure.jobs()}
    http: uvicorn.Server | None = None
    if settings.web_process:  # Socket.IO and HTTP in a process of their own (services.master.front)
        front = FrontLink()
        master = Master(settings, publisher, front.send, journal)
        jobs |= background(master, front.broadcast)
        jobs["front"] = run_front(front, master, mqtt.connected.is_set)
    else:
        web = WebEdge(new_session_id, mqtt.connected.is_set, settings.cors_origins)
        master = Master(settings, publisher, web.send, journal)
        web.bind(master)
        http = web_server(web.app, settings)
        jobs |= background(master, web.broadcast)
        jobs["http"] = http.serve()
    master.leader_info = tenure.leader_info(settings)
    jobs["journal"] = master.journal_failed.wait()
    master.restore()
    mqtt.bind(master)
    grpc_server = await start_grpc(settings, master.on_result, WatchService(master.events, master.worker_snapshot))
    tasks = [asyncio.create_task(job, name=name) for name, job in jobs.items()]
    log.info(
        "master up: chat on http://%s:%s%s, gRPC on %s:%s, MQTT %s",
        settings.web_host,
        settings.web_port,
        " (in a process of its own)" if settings.web_process else "",
        settings.grpc_host,
        settings.grpc_port,
        ",".join(settings.mqtt_brokers) or f"{settings.mqtt_host}:{settings.mqtt_port}",
    )
    await until_stopped(tasks)
    log.info("master stopping%s", " (deposed: it no longer leads)" if tenure.deposed else "")
    if http is not None:
        http.should_exit = True
    await grpc_server.stop(grace=1.0)
    await mqtt.drain()
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
    await tenure.end()
    if master.journal_failure is not None:
        raise JournalFailed(master.journal_failure)


async def until_stopped(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for SIGINT/SIGTERM or for one of `tasks` to end (logged when it failed)."""
    # uvicorn takes SIGINT/SIGTERM while it serves and raises them again when it is done,
    # so they reach these handlers either way.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopped = asyncio.create_task(stop.wait())
    finished, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for t in finished:
        if t is not stopped and t.exception() is not None:
            log.error("%s stopped: %s", t.get_name(), t.exception())
    stopped.cancel()


def journal_key_variable(settings: MasterSettings, field: str = "journal_key") -> str:
    """Where a journal key was given: JOURNAL_KEY, or JOURNAL_KEY_FILE (a Docker secret); likewise for
    `field` journal_key_previous."""
    name = settings.env_name(field)
    return file_variable(name) if getattr(settings, f"{field}_file") else name


def read_journal_key(settings: MasterSettings, field: str = "journal_key") -> bytes | None:
    """A journal key's 32 bytes (None: none given); a ValueError naming its variable, not the key, when it is
    malformed."""
    from services.master.journal import parse_journal_key

    text = getattr(settings, field)
    if text is None:
        return None
    return parse_journal_key(text, journal_key_variable(settings, field))


def main(argv: list[str] | None = None) -> int:
    """Entry point: read settings, configure logging, serve (or, with --check, check and exit)."""
    parser = argparse.ArgumentParser(prog="python -m services.master", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="check the master running here: exit 0 if healthy, 1 if not"
    )
    args = parser.parse_args(argv)
    try:
        settings = MasterSettings.from_env()
    except ValueError as e:
        print(f"master: bad setting: {e}", file=sys.stderr)
        return 1 if args.check else 2
    if args.check:
        return run_check(
            lambda: check_master(settings.web_host, settings.web_port, settings.grpc_host, settings.grpc_port)
        )
    try:
        run_loop = runner(settings.event_loop)
        journal_key = read_journal_key(settings)
        previous = read_journal_key(settings, "journal_key_previous")
    except ValueError as e:
        print(f"master: bad setting: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from services.master.journal import JournalKeyError
    from services.master.standby import Deposed, JournalFailed

    try:
        run_loop(serve(settings, journal_key, (previous,) if previous else ()))
    except JournalKeyError as e:
        log.error("%s: %s", journal_key_variable(settings), e)
        return 2
    except Deposed as e:
        log.error("deposed: %s; exiting, to start again as a standby", e)
        return DEPOSED_EXIT
    except JournalFailed as e:
        log.error("stopped: the journal failed (%s); a restarted master restores from it", e)
        return DEPOSED_EXIT if settings.standby else 1
    except OSError as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
