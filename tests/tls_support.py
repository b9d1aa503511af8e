"""Certificates made on the spot for TLS tests and the TLS benchmark: a CA, a server
certificate for 127.0.0.1 and localhost, a client certificate, and broken variants (another
CA, another name, expired), written as PEM files."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_NOW = datetime.datetime.now(datetime.timezone.utc)


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    cert: Path
    key: ec.EllipticCurvePrivateKey
    name: x509.Name


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        key_path = path.with_suffix(".key")
        key_path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        key_path.chmod(0o600)


def make_ca(directory: Path, name: str = "engram test CA") -> Authority:
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_NOW - datetime.timedelta(days=1))
            .not_valid_after(_NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    path = directory / (name.replace(" ", "-") + ".pem")
    _write(path, cert, None)
    return Authority(path, key, subject)


def issue(ca: Authority, path: Path, names: tuple[str, ...] = ("127.0.0.1", "localhost"),
          client: bool = False, expired: bool = False) -> Issued:
    """A leaf certificate signed by `ca` for `names` (IP addresses and DNS names), at
    `path`, its key next to it (.key)."""
    key = _key()
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    start, end = ((_NOW - datetime.timedelta(days=10), _NOW - datetime.timedelta(days=1))
                  if expired else
                  (_NOW - datetime.timedelta(days=1), _NOW + datetime.timedelta(days=30)))
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca.name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca.key, hashes.SHA256()))
    _write(path, cert, key)
    return Issued(path, path.with_suffix(".key"))


@dataclass(frozen=True)
class Pki:
    """Everything a TLS test needs, in one directory."""

    ca: Path  # the CA that signed the server and client certificates
    other_ca: Path  # a CA that signed nothing here
    server: Issued  # for 127.0.0.1 and localhost
    client: Issued
    wrong_name: Issued  # a server certificate for another host
    expired: Issued  # a server certificate that expired yesterday
    stranger: Issued  # a client certificate from the other CA
    expired_client: Issued  # a client certificate from the right CA, expired yesterday


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca(directory)
    other = make_ca(directory, "another CA")
    return Pki(
        ca=ca.cert, other_ca=other.cert,
        server=issue(ca, directory / "server.pem"),
        client=issue(ca, directory / "client.pem", ("engram-client",), client=True),
        wrong_name=issue(ca, directory / "elsewhere.pem", ("db.example.com",)),
        expired=issue(ca, directory / "expired.pem", expired=True),
        stranger=issue(other, directory / "stranger.pem", ("intruder",), client=True),
        expired_client=issue(ca, directory / "expired-client.pem", ("engram-client",),
                             client=True, expired=True),
    )
