"""What the task journals share, whichever holds them (SQLite: journal.py, etcd: etcd_journal.py): their errors,
the sealing of users' API keys with the journal key, and what a restarted (or newly elected) master reads back."""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.master.dispatch import Task, TaskState
from services.protocol import AiResponse

OPEN_STATES = ("queued", "assigned")
FINISHED_STATES = ("answered", "failed")
# The tasks.api_key column holds NULL (the user gave no key), SEALED + base64(nonce, ciphertext and tag), or
# NOT_KEPT: the user gave a key that was kept in memory only (no journal key), so a restart loses it.
SEALED = "gcm1:"
NOT_KEPT = "not-kept"
KEY_BYTES = 32
NONCE_BYTES = 12


class JournalError(RuntimeError):
    """A write could not be made durable (the disk is full or failing): what awaited it was not promised."""


class ResultNotRecorded(JournalError):
    """A worker's result could not be committed (or its commit's outcome is unknown): the worker should send it
    again, to the master that restores from the journal after this one stops."""


class JournalKeyError(ValueError):
    """The journal key is malformed, or does not open the users' keys the journal holds."""


def parse_journal_key(text: str, variable: str = "JOURNAL_KEY") -> bytes:
    """The 32 bytes of a journal key given as base64 (`openssl rand -base64 32`); a JournalKeyError that names
    `variable`, never the key, when it is not that."""
    try:
        key = base64.b64decode(text.strip().replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise JournalKeyError(
            f"{variable} must be the base64 of {KEY_BYTES} random bytes (make one with `openssl rand -base64 32`); "
            "the one given is not (it is not shown)"
        )
    return key


class KeySealer:
    """Seals users' API keys for the journal with the current journal key, and opens them with it or a previous
    one (rotation); without a current key it seals nothing."""

    def __init__(self, key: bytes | None, previous: Sequence[bytes] = ()) -> None:
        self._current = AESGCM(key) if key is not None else None
        self._all = [a for a in (self._current, *(AESGCM(k) for k in previous)) if a is not None]

    @property
    def keeps(self) -> bool:
        """Whether users' keys are written at all (sealed)."""
        return self._current is not None

    def seal(self, task_id: str, api_key: str) -> str:
        """What the api_key column holds for `api_key` of `task_id`."""
        if self._current is None:
            return NOT_KEPT
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._current.encrypt(nonce, api_key.encode("utf-8"), task_id.encode("utf-8"))
        return SEALED + base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, task_id: str, stored: str) -> tuple[str, bool]:
        """The API key in a sealed column value, and whether the current key opened it; JournalKeyError when no
        key given opens it (another key, or another task's value)."""
        try:
            raw = base64.b64decode(stored[len(SEALED) :], validate=True)
        except binascii.Error:
            raw = b""
        for aead in self._all if len(raw) > NONCE_BYTES else ():  # a damaged value: no key opens it
            try:
                api_key = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], task_id.encode("utf-8"))
            except InvalidTag:
                continue
            return api_key.decode("utf-8"), aead is self._current
        raise JournalKeyError(f"no journal key given opens the API key of task {task_id[:8]}")


@dataclass(frozen=True)
class PendingAnswer:
    """An answer (or failure) that has not reached its user yet."""

    task_id: str
    session_id: str
    payload: AiResponse
    finished_ms: int


@dataclass(frozen=True)
class KnownWorker:
    """A baseline worker online when last heard of: its MQTT client id, if the broker said, and the longest
    a task of it took."""

    worker_id: str
    language: str
    client_id: str | None
    longest_task_ms: int


def reveal_key(keys: KeySealer, carried: dict[str, str], task_id: str, stored: str | None) -> str:
    """The user's key of a task from what the journal holds for it ("" when there is none, or it was not kept:
    then this run's copy in memory, `carried`, if it has one)."""
    if stored is None:
        return ""
    if stored == NOT_KEPT:
        return carried.get(task_id, "")
    return keys.open(task_id, stored)[0]


@dataclass
class TaskRecord:
    """One task as a journal holds it: its user's key as sealed (or NOT_KEPT, or None), its answer as JSON."""

    task_id: str
    session_id: str
    query: str
    api_key: str | None
    model: str | None
    submitted_ms: int
    state: str = "queued"
    attempt: int = 0
    token: str | None = None
    worker_id: str | None = None
    assigned_ms: int = 0
    answer: str | None = None
    finished_ms: int | None = None

    def to_task(self, api_key: str) -> Task:
        """The dispatcher's task for an open record, with its user's key opened (`reveal_key`)."""
        return Task(
            task_id=self.task_id,
            session_id=self.session_id,
            query=self.query,
            api_key=api_key,
            model=self.model,
            submitted_ms=self.submitted_ms,
            state=TaskState(self.state),
            attempt=self.attempt,
            token=self.token or "",
            worker_id=self.worker_id,
            assigned_ms=self.assigned_ms,
        )

    def to_pending(self) -> PendingAnswer:
        """The undelivered answer of a finished record."""
        return PendingAnswer(
            self.task_id, self.session_id, AiResponse.model_validate_json(self.answer or "{}"), self.finished_ms or 0
        )


class TaskJournal(Protocol):
    """What the master calls on a journal, whichever holds it: `Journal` (SQLite) or `EtcdJournal`. The writes
    are synchronous (grouped into the next commit); `durable` waits for the commit that holds them."""

    def accepted(self, task: Task) -> None: ...
    def assigned(self, task: Task) -> None: ...
    def requeued(self, task: Task) -> None: ...
    def finished(self, task: Task, payload: AiResponse, failed: bool, now_ms: int) -> None: ...
    def delivered(self, task_id: str, now_ms: int) -> None: ...
    def purge(self, older_than_ms: int) -> int: ...
    def worker_known(self, worker_id: str, language: str, client_id: str | None) -> None: ...
    def worker_longest(self, worker_id: str, longest_task_ms: int) -> None: ...
    def worker_gone(self, worker_id: str) -> None: ...
    async def durable(self) -> None: ...
    def checkpoint(self) -> bool: ...
    def open_tasks(self) -> list[Task]: ...
    def keys_not_kept(self) -> set[str]: ...
    def pending_answers(self) -> list[PendingAnswer]: ...
    def known_workers(self) -> list[KnownWorker]: ...
