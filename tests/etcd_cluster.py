"""Real etcd clusters for tests: 1 or 3 members as processes on free ports, in temporary data directories."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.system.ports import free_port
from tests.conftest import require

ETCD = "etcd"
ETCDCTL = "etcdctl"


def require_etcd() -> None:
    """Real etcd must be installed (a missing one fails in CI, skips locally)."""
    found = shutil.which(ETCD) is not None and shutil.which(ETCDCTL) is not None
    require("etcd", found, "`sudo apt-get install etcd-server etcd-client` (Debian's 3.4)")


@dataclass(frozen=True)
class EtcdTlsFiles:
    """PEM files for mutual TLS: a CA, the members' certificate and key, a client's certificate and key."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_etcd_tls(directory: Path, client_name: str = "master") -> EtcdTlsFiles:
    """Write a fresh CA, a server certificate for 127.0.0.1 and a client certificate with CN `client_name`."""
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def certificate(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer_key: ec.EllipticCurvePrivateKey
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name("etcd test CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = (
        certificate("etcd test CA", ca_key, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        certificate("127.0.0.1", server_key, ca_key)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    client = (
        certificate(client_name, client_key, ca_key)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    files = EtcdTlsFiles(*(directory / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")))
    for path, cert in ((files.ca, ca), (files.server_cert, server), (files.client_cert, client)):
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    for path, key in ((files.server_key, server_key), (files.client_key, client_key)):
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        path.chmod(0o600)
    return files


@dataclass
class Member:
    """One etcd member: its name, ports, data directory and process."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        """host:port of its client API."""
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        """URL of its peer API."""
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def alive(self) -> bool:
        """Whether its process runs."""
        return self.process is not None and self.process.poll() is None


class EtcdCluster:
    """`size` members started as processes; `stop()` kills them all (SIGKILL: a graceful stop takes ~8 s)."""

    def __init__(self, root: Path, size: int = 1, token: str = "sal-tests", tls: EtcdTlsFiles | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.token = token
        self.tls = tls
        self.scheme = "https" if tls else "http"
        self.members = [
            Member(f"e{i}", free_port(), free_port(), root / f"e{i}.data", root / f"e{i}.log") for i in range(size)
        ]
        self.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> list[str]:
        """Every member's host:port."""
        return [m.endpoint for m in self.members]

    def __enter__(self) -> EtcdCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 20.0) -> None:
        """Start every member and wait until each answers healthy."""
        try:
            for member in self.members:
                self._spawn(member, "new")
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()  # `with` runs no __exit__ when __enter__ fails: no member may outlive the test
            raise

    def _spawn(self, member: Member, state: str) -> None:
        args = [
            ETCD,
            f"--name={member.name}",
            f"--data-dir={member.data_dir}",
            f"--listen-client-urls={self.scheme}://{member.endpoint}",
            f"--advertise-client-urls={self.scheme}://{member.endpoint}",
            f"--listen-peer-urls={member.peer_url}",
            f"--initial-advertise-peer-urls={member.peer_url}",
            f"--initial-cluster={self.initial_cluster}",
            f"--initial-cluster-token={self.token}",
            f"--initial-cluster-state={state}",
            "--logger=zap",
            f"--log-outputs={member.log}",
        ]
        if self.tls is not None:  # mutual TLS on the client port (peers stay on plain HTTP here)
            args += [
                f"--cert-file={self.tls.server_cert}",
                f"--key-file={self.tls.server_key}",
                f"--trusted-ca-file={self.tls.ca}",
                "--client-cert-auth",
            ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        member.process = subprocess.Popen(
            args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _ask(self, member: Member, path: str, body: bytes | None = None) -> dict[str, object] | None:
        """The member's JSON answer on its client port (etcd's HTTP gateway), or None where it does not answer."""
        context = None
        if self.tls is not None:
            context = ssl.create_default_context(cafile=str(self.tls.ca))
            context.load_cert_chain(self.tls.client_cert, self.tls.client_key)
        request = urllib.request.Request(f"{self.scheme}://{member.endpoint}{path}", data=body)
        try:
            with urllib.request.urlopen(request, timeout=0.5, context=context) as response:
                answer = json.loads(response.read())
                return answer if isinstance(answer, dict) else None
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def healthy(self, member: Member) -> bool:
        """Whether the member answers /health with a leader."""
        answer = self._ask(member, "/health")
        return answer is not None and answer.get("health") == "true"

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Wait until every running member is healthy (it has a leader)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [m for m in self.members if m.alive]
            if not running:
                raise RuntimeError(f"every etcd member exited: see their logs under {self.root}")
            if all(self.healthy(m) for m in running):
                return
            time.sleep(0.05)
        raise TimeoutError(f"etcd not healthy within {timeout} s: see the logs under {self.root}")

    def leader(self, timeout: float = 10.0) -> Member:
        """The member that is etcd's Raft leader now (waiting for an election if there is none)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for member in self.members:
                status = self._ask(member, "/v3/maintenance/status", b"{}") if member.alive else None
                if status is None:
                    continue
                header = status.get("header")
                leader = status.get("leader")
                if isinstance(header, dict) and leader and header.get("member_id") == leader:
                    return member
            time.sleep(0.05)
        raise TimeoutError(f"no etcd leader within {timeout} s")

    def kill(self, member: Member) -> None:
        """kill -9 the member and reap it (its data directory stays, for `restart`)."""
        if member.process is not None and member.alive:
            member.process.send_signal(signal.SIGKILL)
        if member.process is not None:
            member.process.wait(10)

    def restart(self, member: Member, timeout: float = 20.0) -> None:
        """Start a killed member again with its data directory, and wait until it is healthy."""
        self.kill(member)
        self._spawn(member, "existing")
        self.wait_healthy(timeout)

    def stop(self) -> None:
        """Kill every member (SIGKILL) and wait for each."""
        for member in self.members:
            if member.alive and member.process is not None:
                member.process.send_signal(signal.SIGKILL)
        for member in self.members:
            if member.process is not None:
                member.process.wait(10)
