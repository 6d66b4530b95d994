"""What the lab measures: a system it started (LocalCluster) or one already running elsewhere, attached by URL.

A `Target` holds the addresses the lab needs: the master's web URL (chat, /api/status), its gRPC endpoint
(the Watch stream of task and worker events) and, optionally, the broker with the read-only observer login
(the MQTT tap). Without the broker the lab still sees every task through Watch; it only loses the workers'
own reports (the MQTT side of the busy-time cross-check).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import grpc
import httpx

from lab.system.local import LocalCluster
from services.protocol import DecodeError, StatusReport, validate
from services.protocol.rpc import pb, pb_grpc
from services.protocol.topics import DEFAULT_PREFIX

DEFAULT_GRPC_PORT = 50051
DEFAULT_MQTT_PORT = 1883
_CHECK_TIMEOUT_S = 5.0


class AttachError(RuntimeError):
    """The system at the given addresses cannot be reached or does not speak the protocol."""


@dataclass(frozen=True)
class MqttAccess:
    """The broker and the observer's login (None: anonymous, as a broker without auth allows)."""

    host: str
    port: int = DEFAULT_MQTT_PORT
    login: tuple[str, str] | None = None

    @classmethod
    def parse(cls, url: str) -> MqttAccess:
        """From ``mqtt://[user:password@]host[:port]``."""
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme != "mqtt" or not parts.hostname:
            raise ValueError(f"an MQTT address looks like mqtt://observer:PASSWORD@host:1883, got {url!r}")
        login = None
        if parts.username is not None:
            login = (unquote(parts.username), unquote(parts.password or ""))
        return cls(parts.hostname, parts.port or DEFAULT_MQTT_PORT, login)

    def __repr__(self) -> str:
        # The password must never reach a log or a notebook output.
        user = f"{self.login[0]}:***@" if self.login else ""
        return f"MqttAccess(mqtt://{user}{self.host}:{self.port})"


@dataclass(frozen=True)
class Target:
    """The addresses of one running system."""

    web_url: str
    grpc_endpoint: str
    mqtt: MqttAccess | None = None
    topic_prefix: str = DEFAULT_PREFIX
    grpc_tls_ca: Path | None = None

    @classmethod
    def for_cluster(cls, cluster: LocalCluster) -> Target:
        """The addresses of a LocalCluster, with its observer login."""
        login = cluster.credentials.login("observer") if cluster.config.auth else None
        return cls(
            web_url=cluster.web_url,
            grpc_endpoint=cluster.grpc_endpoint,
            mqtt=MqttAccess(cluster.config.host, cluster.mqtt_port, login),
            topic_prefix=cluster.config.topic_prefix,
        )

    def grpc_credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials for the Watch stream when the master's gRPC port uses TLS."""
        if self.grpc_tls_ca is None:
            return None
        return grpc.ssl_channel_credentials(root_certificates=self.grpc_tls_ca.read_bytes())

    def status(self) -> dict[str, Any]:
        """The master's GET /api/status."""
        try:
            response = httpx.get(f"{self.web_url}/api/status", timeout=_CHECK_TIMEOUT_S)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise AttachError(f"cannot read {self.web_url}/api/status: {exc}") from exc
        body: dict[str, Any] = response.json()
        return body

    def status_report(self) -> StatusReport:
        """The master's GET /api/status, read into the protocol's model (AttachError when it is not one)."""
        body = self.status()
        try:
            return validate(StatusReport, body)
        except DecodeError as exc:
            raise AttachError(f"{self.web_url}/api/status is not the master's status: {exc}") from exc

    def check(self) -> dict[str, Any]:
        """Check that the master answers on the web URL and that its Watch stream opens; return the status."""
        status = self.status()
        credentials = self.grpc_credentials()
        channel = (
            grpc.secure_channel(self.grpc_endpoint, credentials)
            if credentials
            else grpc.insecure_channel(self.grpc_endpoint)
        )
        try:
            grpc.channel_ready_future(channel).result(timeout=_CHECK_TIMEOUT_S)
            stub = pb_grpc.MasterEventsStub(channel)  # type: ignore[no-untyped-call]
            call = stub.Watch(pb.WatchRequest(snapshot=False))
            call.cancel()
        except grpc.FutureTimeoutError as exc:
            raise AttachError(
                f"the master's gRPC endpoint {self.grpc_endpoint} does not answer; "
                "pass grpc='host:port' (the GRPC_PORT published by the stack)"
            ) from exc
        finally:
            channel.close()
        return status


def attach(
    url: str,
    grpc_endpoint: str | None = None,
    mqtt: str | None = None,
    *,
    topic_prefix: str = DEFAULT_PREFIX,
    grpc_tls_ca: str | Path | None = None,
    check: bool = True,
) -> Target:
    """The system whose master serves the chat at `url` (e.g. a Swarm deployment's http://node:8888).

    `grpc_endpoint` defaults to the URL's host on port 50051; `mqtt` (``mqtt://observer:PASSWORD@host:1883``)
    adds the MQTT tap. With `check`, fail now with AttachError if the master cannot be reached.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"the master's URL looks like http://host:8888, got {url!r}")
    target = Target(
        web_url=url.rstrip("/"),
        grpc_endpoint=grpc_endpoint or f"{parts.hostname}:{DEFAULT_GRPC_PORT}",
        mqtt=MqttAccess.parse(mqtt) if mqtt else None,
        topic_prefix=topic_prefix,
        grpc_tls_ca=Path(grpc_tls_ca) if grpc_tls_ca else None,
    )
    if check:
        target.check()
    return target
