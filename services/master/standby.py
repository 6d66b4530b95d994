"""Standby masters (JOURNAL_BACKEND=etcd): campaign in etcd, and lead with the journal there, fenced by the epoch.

Every master of the group runs the same: it connects to etcd and campaigns for `<ETCD_PREFIX>/leader` on a lease
of ETCD_LEASE_SECONDS. The winner opens the journal under `<ETCD_PREFIX>/journal` (every write fenced by its
epoch: the key's create revision), restores from it as a restarted master restores from SQLite, and serves; the
others wait, binding no port, so that a proxy that asks `GET /leader` sees only the leader. A leader that loses its
lease stops and exits (`Deposed`); its supervisor starts it again, as a standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.master.etcd.client import EtcdClient, EtcdTls
from services.master.etcd.election import Leadership
from services.master.etcd.errors import EtcdError
from services.master.etcd_journal import EtcdJournal
from services.master.journal import Journal
from services.master.journal_records import JournalError, KeySealer, TaskJournal
from services.master.service import Publisher
from services.master.settings import MasterSettings

log = logging.getLogger(__name__)

# How long a master that cannot reach etcd waits before it tries again (it says so each time).
RETRY_S = 2.0

LeaderInfo = dict[str, object]


class Deposed(Exception):
    """This master lost the leadership while it served: it stopped, and must start again as a standby."""


class JournalFailed(Exception):
    """A promise of this master could not be committed: it stopped, so that the next master restores from the
    journal what holds."""


def master_name(settings: MasterSettings) -> str:
    """The name this master campaigns with: MASTER_NAME, else its host name and process id."""
    return settings.master_name or f"{socket.gethostname()}-{os.getpid()}"


def etcd_tls(settings: MasterSettings) -> EtcdTls | None:
    """TLS to etcd from ETCD_CA (and ETCD_CERT/ETCD_KEY for mutual TLS), or None: plain gRPC."""
    if not settings.etcd_ca:
        return None
    return EtcdTls(
        Path(settings.etcd_ca),
        Path(settings.etcd_cert) if settings.etcd_cert else None,
        Path(settings.etcd_key) if settings.etcd_key else None,
    )


def single_master(settings: MasterSettings) -> Callable[[], LeaderInfo]:
    """What `/leader` says of a master alone (SQLite journal): it always leads, with no epoch."""
    info: LeaderInfo = {"leading": True, "epoch": None, "name": master_name(settings)}
    return lambda: info


@dataclass
class Leading:
    """A master that won the leadership: its etcd client, its leadership and its journal."""

    client: EtcdClient
    leadership: Leadership
    journal: EtcdJournal
    name: str

    @property
    def epoch(self) -> int:
        """This leader's epoch (higher than every earlier leader's)."""
        assert self.leadership.epoch is not None
        return self.leadership.epoch

    def info(self) -> LeaderInfo:
        """What `/leader` says: whether this master surely still leads, its epoch and name."""
        return {"leading": self.leadership.surely_leading(), "epoch": self.epoch, "name": self.name}

    def fenced(self, publisher: Publisher) -> Publisher:
        """`publisher`, sending only while the lease surely holds (a task from a leader that may be deposed
        would make a worker busy for a task the new leader does not know)."""
        return FencedPublisher(publisher, self.leadership.surely_leading)

    async def close(self, resign: bool) -> None:
        """Commit and close the journal, then give the leadership up (`resign`: a standby takes over at once,
        without waiting for the lease to lapse) or just stop renewing it (deposed), and close the client."""
        try:
            await self.journal.close()
        except JournalError as e:
            log.warning("the journal's last commit failed: %s", e)
        with contextlib.suppress(EtcdError):
            await (self.leadership.resign() if resign else self.leadership.close())
        await self.client.close()


class FencedPublisher:
    """A Publisher that drops messages (failing them as unsent) while `may_publish()` is false."""

    def __init__(self, publisher: Publisher, may_publish: Callable[[], bool]) -> None:
        self._publisher = publisher
        self._may_publish = may_publish

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        """Publish as the wrapped publisher, or not at all (`on_failure`, soon) when this master may be deposed."""
        if self._may_publish():
            self._publisher.publish(topic, payload, qos, retain, on_failure)
        elif on_failure is not None:
            asyncio.get_running_loop().call_soon(on_failure)

    def clear_session(self, client_id: str) -> None:
        """As the wrapped publisher."""
        self._publisher.clear_session(client_id)


async def campaign(settings: MasterSettings, keys: KeySealer) -> Leading:
    """Wait until this master leads (standby until then), and open the journal in etcd as its leader.

    etcd unreachable is waited out (logged every RETRY_S); JournalKeyError when the journal holds users' keys
    that the given journal keys do not open."""
    name = master_name(settings)
    prefix = settings.etcd_prefix.rstrip("/")
    client = EtcdClient(settings.etcd_endpoints, tls=etcd_tls(settings))
    try:
        while True:
            leadership = Leadership(client, f"{prefix}/leader", name, settings.etcd_lease_seconds)
            log.info("%s campaigns for %s/leader on etcd %s", name, prefix, ",".join(settings.etcd_endpoints))
            try:
                epoch = await leadership.campaign()
                break
            except EtcdError as e:
                log.warning("etcd did not answer the campaign (%s): trying again in %.0f s", e, RETRY_S)
                await asyncio.sleep(RETRY_S)
        try:
            floor = settings.etcd_commit_floor_ms / 1000
            journal = await EtcdJournal.open(client, leadership.fence, keys, f"{prefix}/journal", commit_floor=floor)
        except BaseException:
            with contextlib.suppress(EtcdError):
                await leadership.resign()
            raise
    except BaseException:
        await client.close()
        raise
    log.info("%s leads with epoch %d", name, epoch)
    return Leading(client, leadership, journal, name)


def standby_server(settings: MasterSettings) -> uvicorn.Server:
    """The web port of a master waiting to lead, serving `standby_app`. It binds no gRPC port."""
    config = uvicorn.Config(
        standby_app(settings), host=settings.web_host, port=settings.web_port, log_level="warning", lifespan="off"
    )
    return uvicorn.Server(config)


def standby_app(settings: MasterSettings) -> Starlette:
    """`/healthz` 200 saying `standby` (its container is healthy), `/leader` and everything else 503 (a proxy
    sends nothing here)."""
    name = master_name(settings)

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "standby", "standby": True, "mqtt": False, "name": name})

    async def not_leader(_: Request) -> JSONResponse:
        return JSONResponse({"leading": False, "epoch": None, "name": name}, status_code=503)

    async def anything_else(request: Request, _: Exception) -> JSONResponse:
        return await not_leader(request)

    return Starlette(
        routes=[Route("/healthz", healthz), Route("/leader", not_leader)],
        exception_handlers={404: anything_else, 405: anything_else},
    )


@dataclass
class Tenure:
    """The journal a master serves with: SQLite for a master alone, or etcd's with the leadership it won."""

    journal: TaskJournal
    leading: Leading | None = None
    sqlite: Journal | None = None

    @property
    def epoch(self) -> int | None:
        """The leader's epoch (None: a master alone)."""
        return self.leading.epoch if self.leading is not None else None

    @property
    def deposed(self) -> bool:
        """Whether this master lost the leadership it had."""
        return self.leading is not None and self.leading.leadership.lost.is_set()

    def publisher(self, mqtt: Publisher) -> Publisher:
        """What the master publishes through: `mqtt`, fenced for a leader."""
        return self.leading.fenced(mqtt) if self.leading is not None else mqtt

    def leader_info(self, settings: MasterSettings) -> Callable[[], LeaderInfo]:
        """What `/leader` says."""
        return self.leading.info if self.leading is not None else single_master(settings)

    def jobs(self) -> dict[str, Coroutine[Any, Any, Any]]:
        """What must keep running beside the master: for a leader, the wait for its loss (which stops it)."""
        return {"leadership": self.leading.leadership.lost.wait()} if self.leading is not None else {}

    async def end(self) -> None:
        """Close the journal; a leader that was not deposed resigns, so that a standby takes over at once rather
        than a lease later; `Deposed` when it was."""
        if self.sqlite is not None:
            self.sqlite.close()
        if self.leading is not None:
            deposed = self.deposed
            await self.leading.close(resign=not deposed)
            if deposed:
                raise Deposed(self.leading.leadership.reason or "the leadership was lost")


async def begin(settings: MasterSettings, key: bytes | None, previous_keys: tuple[bytes, ...]) -> Tenure:
    """Open the journal: SQLite at once, or, with JOURNAL_BACKEND=etcd, once this master leads (a standby until
    then, its web port answering `standby`)."""
    if not settings.standby:
        journal = Journal(settings.journal_path, key, previous_keys)
        return Tenure(journal, sqlite=journal)
    waiting = standby_server(settings)
    answering = asyncio.create_task(waiting.serve(), name="standby web")
    try:
        leading = await campaign(settings, KeySealer(key, previous_keys))
    finally:
        waiting.should_exit = True
        await answering
    return Tenure(leading.journal, leading)
