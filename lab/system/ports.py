"""TCP port helpers: pick a free port, tell whether one is taken or accepts connections."""

from __future__ import annotations

import random
import socket
from pathlib import Path


class PortInUseError(RuntimeError):
    """A port the lab wants to listen on is already taken by another program."""

    def __init__(self, role: str, host: str, port: int) -> None:
        super().__init__(f"port {port} ({role}) on {host} is already in use")
        self.role = role
        self.host = host
        self.port = port


# Below the kernel's ephemeral range: a port picked there can be taken, between the pick and the server's bind,
# as the local port of any outgoing connection (a worker's MQTT link, say), and held for that connection's life.
# That happened: a master's web front could not bind its port for the whole 30 s start-up.
_LOWEST = 10000
_handed_out: set[tuple[str, int]] = set()


def ephemeral_low(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> int:
    """The first port the kernel hands out to outgoing connections (32768 where it cannot be read)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A port on `host` that nothing listens on right now, outside the range of outgoing connections' ports,
    and not handed out before by this process (so that several picks before their binds differ)."""
    high = ephemeral_low()
    if high - _LOWEST < 1000:  # a system that gives almost every port to outgoing connections
        return _kernel_port(host)
    for _ in range(200):
        port = random.randrange(_LOWEST, high)
        if (host, port) not in _handed_out and not port_in_use(host, port, reuse=False):
            _handed_out.add((host, port))
            return port
    return _kernel_port(host)


def _kernel_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(host: str, port: int, reuse: bool = True) -> bool:
    """Whether a server could not bind `host:port` now. With `reuse` (like the servers we start: uvicorn, gRPC,
    Mosquitto) a port merely in TIME_WAIT counts as free; without, any socket on it counts."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def accepts_tcp(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on `host:port`."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
