"""What the lab measures: a system it started (LocalCluster) or one already running elsewhere, attached by URL.

A `Target` holds the addresses the lab needs: the master's web URL (chat, /api/status), its gRPC endpoint
(the Watch stream of task and worker events) and, optionally, the broker with the read-only observer login
(the MQTT tap). Without the broker the lab still sees every task through Watch; it only loses the workers'
own reports (the MQTT side of the busy-time cross-check).

`attach` needs only the web URL: the master's /api/status names its gRPC endpoint (`grpc_endpoint`, the
one it advertises to workers), and an address that cannot be reached fails with the setting that fixes it
(`Fixes`: a notebook's parameters, or `lab load`'s flags).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import grpc
import httpx

from lab.system.local import LocalCluster
from lab.system.readiness import operator_headers
from services.protocol import DecodeError, StatusReport, validate
from services.protocol.rpc import pb, pb_grpc
from services.protocol.topics import DEFAULT_PREFIX

DEFAULT_GRPC_PORT = 50051
DEFAULT_MQTT_PORT = 1883
_CHECK_TIMEOUT_S = 5.0
# Where attach() finds the operator token when it is not given (as `lab load --token` does).
TOKEN_VARIABLE = "OPERATOR_TOKEN"


class AttachError(RuntimeError):
    """The system at the given addresses cannot be reached or does not speak the protocol."""


@dataclass(frozen=True)
class Fixes:
    """How the caller gives each address, for the error that says which one to fix: attach()'s arguments
    (a notebook's parameters of the same names) by default, the command line's flags in CLI_FLAGS."""

    url: str = "url='http://HOST:8888'"
    grpc: str = "grpc_endpoint='HOST:PORT'"
    mqtt: str = "mqtt='mqtt://observer:PASSWORD@HOST:1883'"
    token: str = f"token='...' (or {TOKEN_VARIABLE} in the environment)"


CLI_FLAGS = Fixes(
    "--url http://HOST:8888",
    "--grpc HOST:PORT",
    "--mqtt mqtt://observer:PASSWORD@HOST:1883",
    f"--token TOKEN (or {TOKEN_VARIABLE} in the environment)",
)


class OperatorTokenError(AttachError):
    """The master refused /api/status: no operator token, or not its own (the message says which)."""


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
    operator_token: str | None = field(default=None, repr=False)
    """The master's OPERATOR_TOKEN, for /api/status (never shown by repr)."""

    @classmethod
    def for_cluster(cls, cluster: LocalCluster) -> Target:
        """The addresses of a LocalCluster, with its observer login."""
        login = cluster.credentials.login("observer") if cluster.config.auth else None
        return cls(
            web_url=cluster.web_url,
            grpc_endpoint=cluster.grpc_endpoint,
            mqtt=MqttAccess(cluster.config.host, cluster.mqtt_port, login),
            topic_prefix=cluster.config.topic_prefix,
            operator_token=cluster.operator_token,
        )

    def grpc_credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials for the Watch stream when the master's gRPC port uses TLS."""
        if self.grpc_tls_ca is None:
            return None
        return grpc.ssl_channel_credentials(root_certificates=self.grpc_tls_ca.read_bytes())

    def status(self) -> dict[str, Any]:
        """The master's GET /api/status."""
        url = f"{self.web_url}/api/status"
        try:
            response = httpx.get(url, timeout=_CHECK_TIMEOUT_S, headers=operator_headers(self.operator_token))
            if response.status_code in (401, 403):
                raise OperatorTokenError(f"{url} refused: {refusal(response)}")
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

    def check(self, fixes: Fixes = Fixes()) -> dict[str, Any]:
        """Check that the master answers on the web URL, that its Watch stream opens and that the broker (if
        given) takes the login; return the status. AttachError names the setting to fix (`fixes`)."""
        status = self.status_for(fixes)
        if not self.watch_opens(self.grpc_endpoint):
            raise AttachError(
                f"the master's gRPC endpoint {self.grpc_endpoint} does not answer; give {fixes.grpc} "
                "(the GRPC_PORT published by the stack)"
            )
        if self.mqtt is not None:
            check_broker(self.mqtt, fixes)
        return status

    def status_for(self, fixes: Fixes) -> dict[str, Any]:
        """GET /api/status, failing with the setting of the web URL to fix."""
        try:
            return self.status()
        except OperatorTokenError as exc:
            raise OperatorTokenError(f"{exc}; give the operator token: {fixes.token}") from exc
        except AttachError as exc:
            raise AttachError(f"{exc}; is the master's chat there? Check {fixes.url}") from exc

    def watch_opens(self, endpoint: str) -> bool:
        """Whether the master's Watch stream opens at `endpoint` within the check's timeout."""
        credentials = self.grpc_credentials()
        channel = grpc.secure_channel(endpoint, credentials) if credentials else grpc.insecure_channel(endpoint)
        try:
            grpc.channel_ready_future(channel).result(timeout=_CHECK_TIMEOUT_S)
            stub = pb_grpc.MasterEventsStub(channel)  # type: ignore[no-untyped-call]
            call = stub.Watch(pb.WatchRequest(snapshot=False))
            call.cancel()
        except grpc.FutureTimeoutError:
            return False
        finally:
            channel.close()
        return True


def check_broker(access: MqttAccess, fixes: Fixes = Fixes()) -> None:
    """Connect to the broker with the observer's login and disconnect; AttachError naming `fixes.mqtt` when it
    cannot be reached or refuses the login."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    where = f"the broker at {access.host}:{access.port}"
    answered = threading.Event()
    codes: list[Any] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"lab-attach-{time.monotonic_ns()}")
    if access.login:
        client.username_pw_set(*access.login)

    def on_connect(client: mqtt.Client, userdata: object, flags: object, code: Any, properties: object) -> None:
        codes.append(code)
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(access.host, access.port, keepalive=10)
    except (OSError, ValueError) as exc:  # refused, unreachable, no such host
        raise AttachError(f"cannot reach {where}: {exc}; check {fixes.mqtt}") from exc
    client.loop_start()
    try:
        if not answered.wait(_CHECK_TIMEOUT_S):
            raise AttachError(f"{where} does not answer an MQTT connect; check {fixes.mqtt}")
        if codes[0].is_failure:
            raise AttachError(f"{where} refused the login ({codes[0]}); check the observer's password in {fixes.mqtt}")
    finally:
        client.disconnect()
        client.loop_stop()


def refusal(response: httpx.Response) -> str:
    """What the master said when it refused (its JSON `detail`), else the status line."""
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    return detail if isinstance(detail, str) else f"HTTP {response.status_code}"


def _host_port(host: str, port: int | str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def grpc_candidates(url_host: str, advertised: str) -> list[str]:
    """Where to look for the master's gRPC endpoint, most likely first, from the host of its web URL and the
    endpoint it advertises (its /api/status `grpc_endpoint`; "" from a master that does not say).

    The advertised host is often a name only the stack resolves (`master:50051`) while the port is published
    as is, so the URL's host with the advertised port comes first, then the advertised endpoint itself.
    Without one: the URL's host on port 50051, as before masters said.
    """
    host, _, port = advertised.rpartition(":")
    if not host or not port.isdigit():
        return [_host_port(url_host, DEFAULT_GRPC_PORT)]
    candidates = [_host_port(url_host, port), advertised]
    return list(dict.fromkeys(candidates))


def attach(
    url: str,
    grpc_endpoint: str | None = None,
    mqtt: str | None = None,
    *,
    topic_prefix: str = DEFAULT_PREFIX,
    grpc_tls_ca: str | Path | None = None,
    token: str | None = None,
    check: bool = True,
    fixes: Fixes = Fixes(),
) -> Target:
    """The system whose master serves the chat at `url` (e.g. a Swarm deployment's http://node:8888).

    `grpc_endpoint` by default is found from the master's /api/status (see grpc_candidates; without `check`,
    and from a master that does not say, the URL's host on port 50051); `mqtt`
    (``mqtt://observer:PASSWORD@host:1883``) adds the MQTT tap. With `check`, fail now with AttachError,
    naming the setting to fix (`fixes`), if the master, its gRPC endpoint or the broker cannot be reached.
    `token` is the master's operator token (/api/status needs it; default: $OPERATOR_TOKEN).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"the master's URL looks like http://host:8888, got {url!r}")
    target = Target(
        web_url=url.rstrip("/"),
        grpc_endpoint=grpc_endpoint or _host_port(parts.hostname, DEFAULT_GRPC_PORT),
        mqtt=MqttAccess.parse(mqtt) if mqtt else None,
        topic_prefix=topic_prefix,
        grpc_tls_ca=Path(grpc_tls_ca) if grpc_tls_ca else None,
        operator_token=token or os.environ.get(TOKEN_VARIABLE) or None,
    )
    if not check:
        return target
    if grpc_endpoint:
        target.check(fixes)
        return target
    advertised = str(target.status_for(fixes).get("grpc_endpoint") or "")
    candidates = grpc_candidates(parts.hostname, advertised)
    found = next((c for c in candidates if target.watch_opens(c)), None)
    if found is None:
        said = f" (its /api/status says {advertised})" if advertised else ""
        raise AttachError(
            f"the master's gRPC endpoint does not answer at {' or '.join(candidates)}{said}; "
            f"give {fixes.grpc} (the GRPC_PORT published by the stack)"
        )
    if target.mqtt is not None:
        check_broker(target.mqtt, fixes)
    return replace(target, grpc_endpoint=found)
