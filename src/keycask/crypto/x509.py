"""A self-signed certificate for a TLS server's first start.

A client names the certificate file itself as its CA bundle (``boto3 ...
verify="cert.pem"``, ``aws --ca-bundle cert.pem``), with no separate CA to
manage: OpenSSL (what Python's ssl, urllib3, boto3 and the AWS CLI use) takes
a self-signed certificate found in the trust store as its own trust anchor.
It is a *leaf*: ``BasicConstraints(CA=False)``, ``keyUsage``
``digitalSignature`` only, ``extendedKeyUsage`` ``serverAuth``, and only the
node's host names and addresses in the SubjectAlternativeName (which is what
clients match; the subject CN is only a label). A CA certificate would do as
well for the handshake, but its key could then sign a certificate for any
other host name that every client trusting ``cert.pem`` would accept; a
leaf's key can sign nothing a verifier takes as a certificate.

Key: ECDSA P-256 (small, fast handshakes, accepted by every TLS stack keycask
meets). Signature: ECDSA with SHA-256. The serial is random (RFC 5280 asks for
unique serials; two first starts must not collide). ``not_valid_before`` is
backdated five minutes so a client whose clock is slightly behind does not
refuse a certificate made a moment ago.

The private key is returned as unencrypted PKCS#8 PEM; the caller writes it with
mode 0600 next to the certificate.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_BACKDATE = timedelta(minutes=5)
_DEFAULT_COMMON_NAME = "keycask"


def self_signed_certificate(
    hostnames: Sequence[str], ip_addresses: Sequence[str], *, days: int = 365
) -> tuple[bytes, bytes]:
    """Return ``(cert_pem, key_pem)`` for a certificate valid for ``days`` days.

    ``hostnames`` are DNS names (ASCII; IDNs in their ``xn--`` form) and
    ``ip_addresses`` IPv4/IPv6 literals; at least one of either is required,
    because a certificate with no SAN entry matches no client's expectation.
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    if not hostnames and not ip_addresses:
        raise ValueError("a certificate needs at least one host name or IP address")
    for host in hostnames:
        # Refuse here rather than emit a SAN no client can match.
        if not host or not host.isascii():
            raise ValueError(f"host name {host!r} must be non-empty ASCII (use the xn-- form)")
    addresses = [ipaddress.ip_address(address) for address in ip_addresses]

    key = ec.generate_private_key(ec.SECP256R1())
    public_key = key.public_key()
    common_name = hostnames[0] if hostnames else _DEFAULT_COMMON_NAME
    # Self-issued: subject and issuer are the same name.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    alt_names.extend(x509.IPAddress(a) for a in addresses)

    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        # Not a CA: the key must never vouch for another certificate.
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        # Strict verifiers (OpenSSL's X509_STRICT, Python 3.13's default
        # context) look for key identifiers.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert_pem, key_pem


def is_pem_certificate(text: str) -> bool:
    """Whether ``text`` is exactly one PEM X.509 certificate (a custom key
    store's trust anchor: keycask keeps it, as AWS keeps a cluster's)."""
    try:
        certificates = x509.load_pem_x509_certificates(text.encode("utf-8"))
    except (ValueError, UnicodeEncodeError):
        return False
    return len(certificates) == 1


def certificate_problem(
    cert_pem: bytes,
    key_pem: bytes,
    hostnames: Sequence[str],
    ip_addresses: Sequence[str],
    *,
    now: datetime,
    margin: timedelta = timedelta(0),
) -> str | None:
    """Why a certificate and key pair will not do for a server at
    ``hostnames`` and ``ip_addresses`` at ``now`` (or within ``margin`` of
    it), or None if it will: not one PEM certificate, a key that is not its
    own, expired or not yet valid, or a name or address its
    SubjectAlternativeName lacks. The reason never quotes the key."""
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return "the certificate file is not a PEM certificate"
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return "the key file is not an unencrypted PEM private key"
    public = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if (
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        != public
    ):
        return "the key file does not hold the certificate's key"
    if certificate.not_valid_before_utc > now:
        return "the certificate is not valid yet"
    if certificate.not_valid_after_utc <= now + margin:
        return (
            "the certificate has expired"
            if certificate.not_valid_after_utc <= now
            else ("the certificate expires soon")
        )
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "the certificate names no host"
    names = set(san.get_values_for_type(x509.DNSName))
    addresses = set(san.get_values_for_type(x509.IPAddress))
    for host in hostnames:
        if host not in names:
            return f"the certificate does not name {host}"
    for address in ip_addresses:
        if ipaddress.ip_address(address) not in addresses:
            return f"the certificate does not name {address}"
    return None
