"""Real etcd clusters for tests: the lab's cluster (lab/system/etcd.py), whether etcd is installed, and TLS files
for it."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.system.etcd import EtcdCluster, EtcdTlsFiles, Member
from tests.conftest import require

ETCD = "etcd"
ETCDCTL = "etcdctl"
# The cluster lives in the lab (`lab up --ha` runs one too); the tests' imports stay as they were.
__all__ = ["EtcdCluster", "EtcdTlsFiles", "Member", "make_etcd_tls", "require_etcd"]


def require_etcd() -> None:
    """Real etcd must be installed (a missing one fails in CI, skips locally)."""
    found = shutil.which(ETCD) is not None and shutil.which(ETCDCTL) is not None
    require("etcd", found, "`sudo apt-get install etcd-server etcd-client` (Debian's 3.4)")


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
