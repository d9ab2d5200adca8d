"""TLS for a vQPU served off loopback: a self-signed certificate made at start.

Clients do not verify a chain (there is none): they pin the certificate by the SHA-256
fingerprint the service writes into its 0600 event file, and check it before sending
any byte, so the bearer token never crosses the network in clear and never reaches a
server that is not this one. The private key lives only in this process: it is handed
to OpenSSL through an anonymous in-memory file (``memfd``) that is closed right after,
never written to a file system.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import socket
import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerCertificate:
    context: ssl.SSLContext
    sha256: str  # hex digest of the DER certificate: what clients pin


def self_signed(name: str, hosts: list[str], days: int = 365) -> ServerCertificate:
    """A fresh key and certificate for ``hosts`` (names the certificate carries, for humans)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"vqpu {name}"[:64])])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))  # tolerate clock skew between nodes
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in dict.fromkeys(hosts) if h]), critical=False)
        .sign(key, hashes.SHA256())
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    pem = certificate.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_from_memory(context, pem)
    return ServerCertificate(context, hashlib.sha256(der).hexdigest())


def node_names() -> list[str]:
    return [socket.gethostname(), socket.getfqdn()]


def _load_from_memory(context: ssl.SSLContext, pem: bytes) -> None:
    """``load_cert_chain`` wants a path: give it one to a file that exists only in memory."""
    fd = os.memfd_create("vqpu-tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, pem)
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
