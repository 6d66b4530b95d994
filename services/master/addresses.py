"""Who a client is, for the limits per client address: its address, and the connections counted by address.

The address is the socket peer's, or, behind TRUSTED_PROXY_HOPS proxies, the one the outermost of them saw:
each proxy appends the address it was connected from to X-Forwarded-For, so with N trusted proxies the
client is the N-th entry from the right. Entries further left came from the client itself and prove
nothing. A header with fewer entries than that did not come through the proxies: the peer is the client.
IPv6 addresses count by their /64 network (one subscriber gets a whole /64 and can pick any address in it).
"""

from __future__ import annotations

import ipaddress
import logging
import resource
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

FORWARDED_FOR = "HTTP_X_FORWARDED_FOR"
# Open files kept for everything but the users' connections: the journal, MQTT, the workers' gRPC streams (one
# per worker), page and REST requests.
RESERVED_FILES = 512
IPV6_PREFIX = 64
UNKNOWN = "unknown"


def address_key(text: str) -> str | None:
    """The key an address is limited under: an IPv4 address as it is, an IPv6 one's /64 network (an IPv4
    address mapped into IPv6 as the IPv4 address); a port (`1.2.3.4:5`, `[::1]:5`) is dropped. None when
    `text` is no IP address."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]  # IPv4 with a port
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


def forwarded_client(peer: str | None, forwarded_for: str | None, trusted_hops: int) -> str:
    """The client's address key: the `trusted_hops`-th entry from the right of X-Forwarded-For (several
    headers joined by commas, in order), else the peer's; `unknown` when neither is an address."""
    if trusted_hops > 0 and forwarded_for:
        entries = [e.strip() for e in forwarded_for.split(",") if e.strip()]
        if len(entries) >= trusted_hops:
            key = address_key(entries[-trusted_hops])
            if key is not None:
                return key
    return (address_key(peer) if peer else None) or UNKNOWN


def client_address(environ: Mapping[str, Any], trusted_hops: int) -> str:
    """The address key of a Socket.IO client from its connect `environ` (python-engineio's ASGI environ, whose
    REMOTE_ADDR is fixed: the peer is the ASGI scope's `client`)."""
    scope = environ.get("asgi.scope")
    client = scope.get("client") if isinstance(scope, dict) else None
    peer = client[0] if client else environ.get("REMOTE_ADDR")
    return forwarded_client(peer if isinstance(peer, str) else None, environ.get(FORWARDED_FOR), trusted_hops)


def connection_cap(most: int) -> int:
    """MAX_CONNECTIONS as this process can hold it: the soft limit on open files is raised (up to the hard
    one) to fit `most` connections and RESERVED_FILES more; where it cannot be, fewer connections are allowed
    (and a warning says so), since a master out of file descriptors can accept neither users nor workers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = most + RESERVED_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < wanted:
        fitted = max(1, soft - RESERVED_FILES)
        log.warning("MAX_CONNECTIONS %d lowered to %d: this process may open %d files (ulimit -n)", most, fitted, soft)
        return fitted
    return most


class Connections:
    """Open Socket.IO connections, counted in all and by address, against both limits.

    A connection is counted from `opened` to `closed`. A connect refused after `opened` (by a later check)
    never gets a disconnect: `is_open` (is the connection still open?) lets the count drop such entries
    before it refuses anyone, so a refused connect can never hold a place."""

    def __init__(self, most: int, most_per_address: int, is_open: Callable[[str], bool] = lambda sid: True) -> None:
        self.most = most
        self.most_per_address = most_per_address
        self._is_open = is_open
        self._address: dict[str, str] = {}  # connection (sid) -> address key
        self._per_address: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._address)

    def of(self, address: str) -> int:
        """How many connections `address` has open."""
        return self._per_address[address]

    def address(self, sid: str) -> str:
        """The address key of connection `sid` (`""` for one not counted)."""
        return self._address.get(sid, "")

    def refusal(self, address: str) -> tuple[str, str] | None:
        """Why a new connection from `address` may not open (a reason for the metrics, a message for the
        client), or None when it may."""
        if len(self._address) >= self.most:
            self._drop_stale(None)
        if len(self._address) >= self.most:
            return "connections", "the server is full: too many connections; try again later"
        if self._per_address[address] >= self.most_per_address:
            self._drop_stale(address)
        if self._per_address[address] >= self.most_per_address:
            n = self.most_per_address
            return "address_connections", f"too many connections from your address: at most {n}"
        return None

    def opened(self, sid: str, address: str) -> None:
        """Count connection `sid` from `address`."""
        self.closed(sid)
        self._address[sid] = address
        self._per_address[address] += 1

    def closed(self, sid: str) -> None:
        """Stop counting connection `sid` (nothing happens for one not counted)."""
        address = self._address.pop(sid, None)
        if address is None:
            return
        self._per_address[address] -= 1
        if self._per_address[address] <= 0:
            del self._per_address[address]

    def _drop_stale(self, address: str | None) -> None:
        """Stop counting connections (of `address`, or all) that are not open: refused after `opened`."""
        for sid in [s for s, a in self._address.items() if address in (None, a) and not self._is_open(s)]:
            self.closed(sid)
