"""What the broker says about its clients: Mosquitto's own log lines, read from its `$SYS` log topics.

Workers of the original system set no Last Will, so nothing on the workers' topics says that one died. The
broker knows at once (the socket closes, or keepalive runs out), and with `log_dest topic` it publishes its
log on `$SYS/broker/log/<level>`. Two kinds of lines matter here (checked against Mosquitto 2.0):

- `$SYS/broker/log/M/subscribe`: `<timestamp>: <client id> <qos> <topic>` (with `log_type subscribe`): a
  client subscribed to a worker's task topic, which ties the client id to a worker id (the original's
  client ids are not their worker ids).
- `$SYS/broker/log/N`: `<timestamp>: Client <client id> closed its connection.` (the process died or
  closed the socket), `... disconnected.` (a clean MQTT disconnect), `... has exceeded timeout,
  disconnecting.` (keepalive ran out) and `Socket error on client <client id>, disconnecting.`

The timestamp prefix is required (`log_timestamp true`, the default): the text after its first ": " is
the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.protocol import Topics
from services.protocol.messages import WORKER_ID_PATTERN

NOTICE_TOPIC = "$SYS/broker/log/N"
SUBSCRIBE_TOPIC = "$SYS/broker/log/M/subscribe"
LOG_TOPICS = (NOTICE_TOPIC, SUBSCRIBE_TOPIC)

_WORKER_ID = re.compile(WORKER_ID_PATTERN)

# A client id may contain spaces: it runs up to the fixed ending of each line.
_GONE = (
    re.compile(r"Client (?P<cid>.+) closed its connection\."),
    re.compile(r"Client (?P<cid>.+) has exceeded timeout, disconnecting\."),
    re.compile(r"Socket error on client (?P<cid>.+), disconnecting\."),
    re.compile(r"Client (?P<cid>.+) disconnected\."),
)


@dataclass(frozen=True)
class Subscribed:
    """Client `client_id` subscribed to the task topic of `worker_id`."""

    client_id: str
    worker_id: str


@dataclass(frozen=True)
class Disconnected:
    """Client `client_id`'s connection is gone."""

    client_id: str


def parse(topic: str, payload: bytes, topics: Topics) -> Subscribed | Disconnected | None:
    """The event in one log message, or None when the line says nothing about a worker's connection."""
    _, sep, line = payload.decode("utf-8", "replace").partition(": ")
    if not sep:
        return None
    if topic == SUBSCRIBE_TOPIC:
        parts = line.rsplit(" ", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        worker_id = topics.worker_id_from_tasks(parts[2])  # a wildcard subscription names no worker
        return Subscribed(parts[0], worker_id) if worker_id and _WORKER_ID.fullmatch(worker_id) else None
    if topic == NOTICE_TOPIC:
        for pattern in _GONE:
            match = pattern.fullmatch(line)
            if match:
                return Disconnected(match["cid"])
    return None
