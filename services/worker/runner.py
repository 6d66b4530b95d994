"""The worker's life: stay connected, register, take tasks one at a time, answer, report."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Literal

import aiomqtt

from services.mqtt_link import MqttLink, connection_options
from services.protocol import (
    DecodeError,
    LogMessage,
    MasterPresence,
    RegisterMessage,
    StatusMessage,
    TaskMessage,
    Topics,
    decode,
    encode,
    now_ms,
)
from services.protocol.rpc import pb
from services.worker.callback import CallbackError, ResultSender
from services.worker.models import Model, ModelError
from services.worker.settings import LANGUAGE, WorkerSettings

log = logging.getLogger(__name__)


async def sleep_at_least(seconds: float) -> None:
    """Sleep `seconds` by the monotonic clock, never less.

    uvloop's timers count whole milliseconds of libuv's clock, so a plain sleep may end up to a millisecond
    early (2 % of 50 ms sleeps here): a task of WORK_SECONDS=1 then reported processing_time_ms 999.
    """
    deadline = time.monotonic() + seconds
    left = seconds
    while left > 0:
        await asyncio.sleep(left)
        left = deadline - time.monotonic()


class WorkerRunner:
    """Connects to MQTT and processes the tasks addressed to this worker, in arrival order."""

    def __init__(self, settings: WorkerSettings, model: Model, sender: ResultSender | None = None) -> None:
        self.settings = settings
        self.worker_id = settings.worker_id
        self.topics = Topics(settings.topic_prefix)
        self._model = model
        self._sender = sender or ResultSender(
            retries=settings.grpc_retries, tls_ca=settings.grpc_tls_ca, stream=settings.result_stream
        )
        self._tasks: asyncio.Queue[TaskMessage] = asyncio.Queue()
        self._busy = False
        self._master_started: int | None = None  # timestamp of the master presence we last saw
        # The highest epoch of a master presence seen (standby masters): a presence with a lower one is ignored.
        self._master_epoch: int | None = None
        # The master's presence said it needs no per-task messages (busy, idle, log lines): leave them out.
        self._lean = False
        self.mqtt = MqttLink(self._new_client, self._connected, self._on_message)
        # The longest a task may take here: the master sizes its lease on it.
        self._max_task_ms = round((settings.work_seconds + settings.gemini_timeout_seconds) * 1000)
        self._current: TaskMessage | None = None  # the task being worked on, or the last one finished
        self._worker: asyncio.Task[None] | None = None  # the loop that takes tasks, while run() runs

    # -- MQTT -------------------------------------------------------------------------------
    async def run(self) -> None:
        """Forever: keep the MQTT connection up and work through tasks."""
        self._worker = asyncio.create_task(self._work(), name="work")
        try:
            await self.mqtt.run()
        finally:
            self._worker.cancel()
            await self._sender.close()

    async def announce_offline(self, timeout: float = 2.0) -> None:
        """Say goodbye before a clean shutdown: a clean disconnect does not fire the Last Will."""
        client = self.mqtt.client
        if client is None:
            return
        # Stop working first, then send the last status, then the goodbye. A task still in progress would
        # otherwise report "idle" after the goodbye, which brings this worker back to life in the master;
        # the master would hand it a task no one takes (until its lease ran out). Stopped mid-task, the
        # worker reports "idle" without a result, and the master gives the task to another worker at once.
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        message = encode(StatusMessage(worker_id=self.worker_id, status="offline", timestamp=now_ms()))
        try:
            await self.mqtt.flush(timeout / 2)
            await asyncio.wait_for(client.publish(self.topics.status, message, qos=1), timeout / 2)
        except (aiomqtt.MqttError, asyncio.TimeoutError) as e:
            log.warning("could not announce going offline: %s", e)

    def _new_client(self) -> aiomqtt.Client:
        s = self.settings
        offline = encode(StatusMessage(worker_id=self.worker_id, status="offline"))
        return aiomqtt.Client(
            s.mqtt_host,
            s.mqtt_port,
            identifier=self.worker_id,  # the broker's ACL lets a worker read only its own task topic
            keepalive=s.mqtt_keepalive,
            clean_session=False,  # the broker keeps our task messages while we reconnect
            will=aiomqtt.Will(self.topics.status, offline, qos=1),
            **connection_options(s.mqtt_username, s.mqtt_password, s.mqtt_tls_ca),
        )

    async def _connected(self, client: aiomqtt.Client) -> None:
        await client.subscribe([(self.topics.tasks(self.worker_id), 1), (self.topics.master_status, 1)])
        await self._register(client)

    async def _register(self, client: aiomqtt.Client) -> None:
        """Announce this worker; a worker in the middle of a task says so right after."""
        register = RegisterMessage(
            worker_id=self.worker_id,
            language=LANGUAGE,
            timestamp=now_ms(),
            max_task_ms=self._max_task_ms,
            task_messages=False if self._lean else None,
        )
        await client.publish(self.topics.register, encode(register), qos=1)
        if self._busy:
            self._publish_status("busy", self._current)
        log.info("registered as %s", self.worker_id)

    async def _on_message(self, topic: str, payload: bytes) -> None:
        try:
            if topic == self.topics.master_status:
                presence = decode(MasterPresence, payload)
                if self._deposed(presence):
                    return
                if presence.status == "online" and presence.timestamp != self._master_started:
                    self._master_started = presence.timestamp
                    self._lean = presence.task_messages is False
                    # Every master we see for the first time learns about us at once: a restarted one, and
                    # also the first, when we started before it and our registration reached nobody (in a
                    # Swarm, services start in no order). Registering again is harmless: the master keeps
                    # the worker's task, if it has one.
                    if self.mqtt.client is not None:
                        await self._register(self.mqtt.client)
                return
            task = decode(TaskMessage, payload)
        except DecodeError as e:
            log.warning("ignored a bad message on %s: %s", topic, e)
            return
        if task.worker_id != self.worker_id:
            log.warning("ignored a task addressed to %s", task.worker_id)
            return
        self._tasks.put_nowait(task)

    def _deposed(self, presence: MasterPresence) -> bool:
        """Whether a presence comes from a leader older than one already seen (a deposed leader's, or its Last
        Will): it is ignored entirely. Otherwise its epoch, if it has one, is the highest seen so far. A presence
        without an epoch (a single master) says nothing about leaders: it is read as always."""
        if presence.epoch is None:
            return False
        if self._master_epoch is not None and presence.epoch < self._master_epoch:
            log.info(
                "ignored the %s presence of a deposed master (epoch %d < %d)",
                presence.status,
                presence.epoch,
                self._master_epoch,
            )
            return True
        self._master_epoch = presence.epoch
        return False

    def _publish_status(self, status: Literal["idle", "busy"], task: TaskMessage | None) -> None:
        message = StatusMessage(
            worker_id=self.worker_id,
            status=status,
            timestamp=now_ms(),
            task_id=task.task_id if task else None,
            attempt=task.attempt if task else None,
        )
        self.mqtt.publish(self.topics.status, encode(message), qos=1)

    def _log(self, text: str, per_task: bool = False) -> None:
        """Log locally and on the log topic; a routine line about one task only when the master wants those."""
        log.info("%s", text)
        if not (per_task and self._lean):
            self.mqtt.publish(self.topics.logs, encode(LogMessage(source=self.worker_id, message=text)), qos=0)

    # -- work -------------------------------------------------------------------------------
    async def _work(self) -> None:
        """Take tasks one at a time; the model and the simulated work run here, not in the MQTT loop."""
        while True:
            task = await self._tasks.get()
            self._busy = True
            self._current = task
            lean = self._lean  # for the whole task: a presence arriving meanwhile changes the next one
            if not lean:
                self._publish_status("busy", task)
            accepted = False
            try:
                ack = await self.process(task)
                accepted = ack is not None and ack.success
            except Exception:
                log.exception("unexpected error on task %s", (task.task_id or "?")[:8])
            finally:
                self._busy = False
                # Even with the next task already here: "idle with task X" says X is finished (the master
                # ignores it when it has given us a newer task; collectors time the work). A lean master
                # knows that from the accepted result, and needs it only when the result did not get through.
                if not (lean and accepted):
                    self._publish_status("idle", task)

    async def process(self, task: TaskMessage) -> pb.ResultAck | None:
        """Answer one task and report it; returns the master's acknowledgement, if any."""
        label = (task.task_id or task.session_id)[:8]
        self._log(f"task {label} started (attempt {task.attempt or 1})", per_task=True)
        started_wall, started = now_ms(), time.monotonic()
        self._sender.prepare(task.grpc_endpoint)
        text, error, model_name, model_ms = "", "", "", 0
        try:
            answer = await self._model.answer(task.query, api_key=task.api_key or None, model=task.model)
            text, model_name, model_ms = answer.text, answer.model, answer.elapsed_ms
            await sleep_at_least(self.settings.work_seconds)  # the simulated long processing
        except ModelError as e:
            error = e.user_message
        processing_ms = round((time.monotonic() - started) * 1000)
        result = pb.TaskResult(
            worker_id=self.worker_id,
            session_id=task.session_id,
            original_query=task.query,
            ai_response=text,
            api_key="",
            processing_time_ms=processing_ms,
            query_timestamp=task.timestamp,
            completion_timestamp=now_ms(),
            task_id=task.task_id or "",
            attempt=task.attempt or 0,
            token=task.token or "",
            error=error,
            model=model_name,
            started_timestamp=started_wall,
            model_time_ms=model_ms,
        )
        try:
            ack = await self._sender.send(task.grpc_endpoint, result)
        except CallbackError as e:
            self._log(f"task {label}: {e}")
            return None
        if ack.success:
            self._log(f"task {label} {'failed' if error else 'done'} in {processing_ms} ms", per_task=True)
        else:
            self._log(f"task {label} result refused by the master: {ack.message}")
        return ack
