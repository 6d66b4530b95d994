"""A message channel between the master's core and its web front: two processes of one master.

Messages are tuples of plain values (and the protocol's models), pickled, each framed by its length. The
channel is a socket pair made by the core before it starts the front, inherited by the front as a file
descriptor: nothing else can connect to it, so what arrives comes from the other half of this master
(that is what makes pickle fit here). Writes are coalesced: what is sent during one turn of the event loop
goes out in one write at the start of the next, so a busy master pays one system call per turn, not one
per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

HEADER = struct.Struct("!I")
MAX_FRAME = 64 * 1024 * 1024  # a frame larger than this is a bug, not a message
READ_LIMIT = 1 << 20

Message = tuple[Any, ...]


class LinkClosed(ConnectionError):
    """The other process closed its end (it exited or was killed)."""


class Link:
    """One end of the channel: `send` without waiting, `messages` to read."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._buffer = bytearray()
        self._flush_scheduled = False

    @classmethod
    async def open(cls, sock: socket.socket) -> Link:
        """The link over a connected socket (one end of `socket.socketpair()`)."""
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=READ_LIMIT)
        return cls(reader, writer)

    def send(self, message: Message) -> None:
        """Queue `message`; it leaves with the others of this turn of the loop."""
        frame = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._buffer += HEADER.pack(len(frame))
        self._buffer += frame
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._buffer and not self._writer.is_closing():
            self._writer.write(bytes(self._buffer))
        self._buffer.clear()

    async def messages(self) -> AsyncIterator[Message]:
        """The messages from the other end, in order, until it closes (then LinkClosed)."""
        while True:
            try:
                header = await self._reader.readexactly(HEADER.size)
                (size,) = HEADER.unpack(header)
                if size > MAX_FRAME:
                    raise LinkClosed(f"a frame of {size} bytes: the other end is not a master process")
                frame = await self._reader.readexactly(size)
            except (asyncio.IncompleteReadError, ConnectionError) as e:
                raise LinkClosed("the other process of the master closed the link") from e
            yield pickle.loads(frame)  # the other end is this master's own process: see above

    async def close(self) -> None:
        """Send what is queued and close."""
        self._flush()
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
