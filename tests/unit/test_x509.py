"""The first-start self-signed certificate: its contents, and that Python's ssl
module (what boto3 and the AWS CLI use) accepts it as its own CA bundle."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from keycask.crypto import self_signed_certificate

HOSTS = ["localhost"]
IPS = ["127.0.0.1", "::1"]


@pytest.fixture(scope="module")
def pair() -> tuple[bytes, bytes]:
    return self_signed_certificate(HOSTS, IPS)


def test_loads_and_matches_key(pair: tuple[bytes, bytes]) -> None:
    cert_pem, key_pem = pair
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert cert.public_key() == key.public_key()
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)


def test_san_holds_names_and_addresses(pair: tuple[bytes, bytes]) -> None:
    cert = x509.load_pem_x509_certificate(pair[0])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == HOSTS
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(a) for a in IPS]


def test_self_issued_leaf_for_server_auth(pair: tuple[bytes, bytes]) -> None:
    cert = x509.load_pem_x509_certificate(pair[0])
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)  # raises if the signature does not check
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    # A leaf: its key must not be able to mint certificates clients accept.
    assert basic.critical and not basic.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign and not usage.crl_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_validity(pair: tuple[bytes, bytes]) -> None:
    cert = x509.load_pem_x509_certificate(pair[0])
    now = datetime.now(UTC)
    assert now - timedelta(minutes=6) < cert.not_valid_before_utc <= now - timedelta(minutes=4)
    assert (
        now + timedelta(days=364) < cert.not_valid_after_utc <= now + timedelta(days=365, hours=1)
    )
    short = x509.load_pem_x509_certificate(self_signed_certificate(HOSTS, [], days=2)[0])
    assert short.not_valid_after_utc < now + timedelta(days=3)


def test_serials_are_random() -> None:
    a = x509.load_pem_x509_certificate(self_signed_certificate(HOSTS, [])[0])
    b = x509.load_pem_x509_certificate(self_signed_certificate(HOSTS, [])[0])
    assert a.serial_number != b.serial_number


@pytest.mark.parametrize(
    ("hosts", "ips", "days"),
    [([], [], 365), (["localhost"], [], 0), (["bücher.example"], [], 365), ([], ["nope"], 365)],
)
def test_refuses_bad_input(hosts: list[str], ips: list[str], days: int) -> None:
    with pytest.raises(ValueError):
        self_signed_certificate(hosts, ips, days=days)


def _handshake(cert: Path, key: Path, client: ssl.SSLContext, host: str, address: str) -> str:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family) as listener:
        listener.bind((address, 0))
        listener.listen(1)
        errors: list[BaseException] = []

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                with server.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(tls.recv(16))
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with (
                socket.create_connection(listener.getsockname()[:2], timeout=5) as raw,
                client.wrap_socket(raw, server_hostname=host) as tls,
            ):
                tls.sendall(b"ping")
                assert tls.recv(16) == b"ping"
                version = tls.version()
        finally:
            thread.join(5)
        assert not errors, errors
        assert version is not None
        return version


@pytest.fixture
def files(tmp_path: Path, pair: tuple[bytes, bytes]) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(pair[0])
    key.write_bytes(pair[1])
    return cert, key


@pytest.mark.parametrize(
    ("host", "address"), [("localhost", "127.0.0.1"), ("127.0.0.1", "127.0.0.1")]
)
def test_ssl_accepts_it_as_its_own_ca(files: tuple[Path, Path], host: str, address: str) -> None:
    cert, key = files
    # The default client context: hostname checking and verification on, as in
    # boto3 with verify=cert.pem.
    client = ssl.create_default_context(cafile=str(cert))
    assert _handshake(cert, key, client, host, address).startswith("TLS")


def test_ssl_strict_verification(files: tuple[Path, Path]) -> None:
    cert, key = files
    client = ssl.create_default_context(cafile=str(cert))
    # What Python 3.13+ turns on by default; the certificate must pass it too.
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    _handshake(cert, key, client, "localhost", "127.0.0.1")


def test_ssl_refuses_other_hostname(files: tuple[Path, Path]) -> None:
    cert, key = files
    client = ssl.create_default_context(cafile=str(cert))
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(cert, key, client, "not-localhost.example", "127.0.0.1")


def test_its_key_cannot_mint_a_certificate_clients_accept(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    """Whoever has key.pem (a copied data dir, a backup of tls/) signs a
    certificate for another host name with it; a client that trusts cert.pem,
    as the docs say, must refuse it."""
    cert_path, key_path = files
    anchor = x509.load_pem_x509_certificate(cert_path.read_bytes())
    signer = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    victim_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    forged = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "bank.example")]))
        .issuer_name(anchor.subject)
        .public_key(victim_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
        .sign(signer, hashes.SHA256())
    )
    forged_cert, forged_key = tmp_path / "forged.pem", tmp_path / "forged-key.pem"
    forged_cert.write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    forged_key.write_bytes(
        victim_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    client = ssl.create_default_context(cafile=str(cert_path))
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(forged_cert, forged_key, client, "localhost", "127.0.0.1")
