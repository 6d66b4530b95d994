"""What aiomqtt does not do for us on the MQTT socket."""

from __future__ import annotations

import socket

import aiomqtt


def disable_nagle(client: aiomqtt.Client) -> None:
    """Send small MQTT packets at once: paho leaves Nagle's algorithm on, which with delayed ACKs
    holds a task or status message back for up to 40 ms."""
    sock = client._client.socket()  # aiomqtt exposes the paho client only privately
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
