"""The link between the master's core and its web front: messages in order, a turn's messages in one write,
and a clear end when the other process is gone."""

from __future__ import annotations

import asyncio
import socket

import pytest

from services.master.link import Link, LinkClosed
from services.protocol import QueryAck


async def pair() -> tuple[Link, Link, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return await Link.open(a), await Link.open(b), b


async def test_messages_arrive_in_order_with_the_protocol_models_intact() -> None:
    core, front, _ = await pair()
    sent = [("emit", "ai-response", {"taskId": "t1"}, "session", 7), ("reply", 1, QueryAck.accept("t2", 3))]
    for message in sent:
        core.send(message)
    received = []
    async for message in front.messages():
        received.append(message)
        if len(received) == len(sent):
            break
    assert received == sent
    await core.close()
    await front.close()


async def test_what_one_turn_sends_leaves_in_one_write() -> None:
    core, front, _ = await pair()
    writes: list[int] = []
    transport_write = core._writer.write

    def counted(data: bytes | bytearray | memoryview) -> None:
        writes.append(len(data))
        transport_write(data)

    core._writer.write = counted  # type: ignore[method-assign]
    for n in range(100):
        core.send(("opened", f"session-{n}"))
    assert writes == []  # nothing yet: the turn is not over
    await asyncio.sleep(0)
    assert len(writes) == 1
    await core.close()
    await front.close()


async def test_the_other_end_closing_ends_the_messages_with_link_closed() -> None:
    core, front, _ = await pair()
    await core.close()
    with pytest.raises(LinkClosed):
        async for _ in front.messages():
            pass
    await front.close()
