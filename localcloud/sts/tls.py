"""A local certificate authority, so the local STS can speak HTTPS as the real one does.

The credential providers of ``alibabacloud-credentials`` call STS over ``https`` and nothing else (the
protocol is fixed in their code), verifying the certificate. Offline, the stack makes a CA once per
state folder, a certificate for 127.0.0.1 signed by it, and a bundle (certifi's roots plus this CA)
that clients trust through ``SSL_CERT_FILE``: Tea's TLS contexts start from
``ssl.create_default_context()``, which reads that variable. Nothing is installed system-wide.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from localcloud.files import write_private

_VALID_DAYS = 825


@dataclass(frozen=True)
class LocalTls:
    """Files of the local CA under ``folder``: the server's certificate and key, and the client bundle."""

    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.folder / "server-key.pem"

    @property
    def bundle(self) -> Path:
        """certifi's roots and the local CA: the value for ``SSL_CERT_FILE``."""
        return self.folder / "bundle.pem"

    def ensure(self) -> LocalTls:
        """Create the CA, the 127.0.0.1 certificate and the bundle if any is missing or expiring."""
        if not all(p.exists() for p in (self.ca_cert, self.server_cert, self.server_key, self.bundle)) or self._expiring():
            self._make()
        return self

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.server_cert, self.server_key)
        return context

    def _expiring(self) -> bool:
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(self.server_cert.read_bytes())
        return cert.not_valid_after_utc < dt.datetime.now(dt.UTC) + dt.timedelta(days=7)

    def _make(self) -> None:
        import certifi
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        self.folder.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localcloud CA (offline stack only)")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.DNSName("localhost"),
            ]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
        _write(self.ca_cert, ca_pem)
        _write(self.server_cert, cert.public_bytes(serialization.Encoding.PEM))
        _write(self.server_key, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ), private=True)
        _write(self.bundle, Path(certifi.where()).read_bytes() + b"\n" + ca_pem)


def _write(path: Path, data: bytes, private: bool = False) -> None:
    write_private(path, data, 0o600 if private else 0o644)
