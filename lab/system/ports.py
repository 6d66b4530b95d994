"""TCP port helpers: pick a free port, tell whether one is taken or accepts connections."""

from __future__ import annotations

import socket


class PortInUseError(RuntimeError):
    """A port the lab wants to listen on is already taken by another program."""

    def __init__(self, role: str, host: str, port: int) -> None:
        super().__init__(f"port {port} ({role}) on {host} is already in use")
        self.role = role
        self.host = host
        self.port = port


def free_port(host: str = "127.0.0.1") -> int:
    """A port on `host` that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(host: str, port: int) -> bool:
    """Whether a server could not bind `host:port` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the servers we start (uvicorn, gRPC, Mosquitto), so a port merely in TIME_WAIT counts as free.
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
