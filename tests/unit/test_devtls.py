"""``--dev --tls-self-signed``'s certificate (cli/devtls.py and the flag's
checks in config.load): made once, kept while it will do, replaced for each
reason it will not. The server end to end: tests/e2e/test_dev_tls_self_signed.py."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from keycask import config
from keycask.cli import devtls
from keycask.crypto import certificate_problem, self_signed_certificate


def _settings(tmp_path: Path, listen: str = "127.0.0.1:9567") -> config.Settings:
    return config.load(
        dev=True, tls_self_signed=True, data_dir=str(tmp_path / "data"), listen=listen, env={}
    )


def test_settings_name_the_data_dirs_files(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    tls = (tmp_path / "data" / "tls").resolve()
    assert settings.tls_cert == tls / "cert.pem" and settings.tls_key == tls / "key.pem"
    assert settings.tls_self_signed and settings.endpoint_url.startswith("https://")
    assert not config.load(dev=True, data_dir=str(tmp_path), env={}).tls_self_signed


def test_refused_without_dev_or_with_a_certificate(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    with pytest.raises(config.ConfigError, match="is for --dev"):
        config.load(dev=False, tls_self_signed=True, data_dir=data, env={})
    with pytest.raises(config.ConfigError, match="cannot be used together"):
        config.load(
            dev=True, tls_self_signed=True, data_dir=data, tls_cert="c", tls_key="k", env={}
        )
    with pytest.raises(config.ConfigError, match="cannot be used together"):
        config.load(
            dev=True,
            tls_self_signed=True,
            data_dir=data,
            env={"KEYCASK_TLS_CERT": "c", "KEYCASK_TLS_KEY": "k"},
        )


def test_made_once_then_kept(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert settings.tls_cert is not None and settings.tls_key is not None
    said = devtls.ensure(settings)
    assert said == (
        f"TLS: made a self-signed certificate {settings.tls_cert} for localhost, 127.0.0.1, ::1"
    )
    cert, key = settings.tls_cert.read_bytes(), settings.tls_key.read_bytes()
    assert settings.tls_key.stat().st_mode & 0o777 == 0o600
    assert settings.tls_cert.parent.stat().st_mode & 0o777 == 0o700
    assert "PRIVATE" not in said
    assert devtls.ensure(settings).endswith("is kept")
    assert settings.tls_cert.read_bytes() == cert and settings.tls_key.read_bytes() == key
    assert (
        certificate_problem(cert, key, ["localhost"], ["127.0.0.1", "::1"], now=datetime.now(UTC))
        is None
    )
    # Good for a year, less the margin at which it is replaced.
    later = datetime.now(UTC) + timedelta(days=devtls.DAYS - 2)
    assert certificate_problem(cert, key, ["localhost"], ["127.0.0.1"], now=later) is None


def _pair(days: tuple[float, float], names: list[x509.GeneralName]) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + timedelta(days=days[0]))
        .not_valid_after(now + timedelta(days=days[1]))
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


ALL = [
    x509.DNSName("localhost"),
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    x509.IPAddress(ipaddress.ip_address("::1")),
]


def _other_key_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("expired", "the certificate has expired"),
        ("expiring", "the certificate expires soon"),
        ("not yet valid", "the certificate is not valid yet"),
        ("no ::1", "the certificate does not name ::1"),
        ("no localhost", "the certificate does not name localhost"),
        ("no names", "the certificate names no host"),
        ("other key", "the key file does not hold the certificate's key"),
        ("key readable", "the key file was not a file only its owner may read"),
        ("key missing", "a file was missing or unreadable"),
        ("cert missing", "a file was missing or unreadable"),
        ("cert garbage", "the certificate file is not a PEM certificate"),
        ("key garbage", "the key file is not an unencrypted PEM private key"),
    ],
)
def test_replaced_when_it_will_not_do(tmp_path: Path, case: str, reason: str) -> None:
    settings = _settings(tmp_path)
    assert settings.tls_cert is not None and settings.tls_key is not None
    cert, key = {
        "expired": lambda: _pair((-30, -1), ALL),
        "expiring": lambda: _pair((-30, 0.5), ALL),
        "not yet valid": lambda: _pair((1, 30), ALL),
        "no ::1": lambda: _pair((-1, 30), ALL[:2]),
        "no localhost": lambda: _pair((-1, 30), ALL[1:]),
        "no names": lambda: _pair((-1, 30), []),
    }.get(case, lambda: _pair((-1, 30), ALL))()
    if case == "other key":
        key = _other_key_pem()
    if case == "cert garbage":
        cert = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    if case == "key garbage":
        key = b"not a key"
    tls = settings.tls_cert.parent
    tls.mkdir(parents=True, mode=0o700)
    if case != "cert missing":
        settings.tls_cert.write_bytes(cert)
    if case != "key missing":
        settings.tls_key.write_bytes(key)
        settings.tls_key.chmod(0o644 if case == "key readable" else 0o600)
    said = devtls.ensure(settings)
    assert said.startswith(f"TLS: made a new self-signed certificate {settings.tls_cert}")
    assert f"({reason})" in said and "clients given the old cert.pem need the new one" in said
    new_cert, new_key = settings.tls_cert.read_bytes(), settings.tls_key.read_bytes()
    assert new_cert != cert and new_key != key
    assert settings.tls_key.stat().st_mode & 0o777 == 0o600
    assert (
        certificate_problem(
            new_cert, new_key, ["localhost"], ["127.0.0.1", "::1"], now=datetime.now(UTC)
        )
        is None
    )
    assert devtls.ensure(settings).endswith("is kept")


def test_the_listen_host_is_named_too(tmp_path: Path) -> None:
    assert devtls.names("0.0.0.0") == (["localhost"], ["127.0.0.1", "::1"])
    assert devtls.names("::") == (["localhost"], ["127.0.0.1", "::1"])
    assert devtls.names("127.0.0.1") == (["localhost"], ["127.0.0.1", "::1"])
    assert devtls.names("0:0::1") == (["localhost"], ["127.0.0.1", "::1"])
    assert devtls.names("localhost") == (["localhost"], ["127.0.0.1", "::1"])
    assert devtls.names("10.1.2.3") == (["localhost"], ["127.0.0.1", "::1", "10.1.2.3"])
    assert devtls.names("kms.test") == (["localhost", "kms.test"], ["127.0.0.1", "::1"])

    first = _settings(tmp_path)
    devtls.ensure(first)
    assert first.tls_cert is not None
    cert = first.tls_cert.read_bytes()
    # Listening on another address: the certificate must name it, so it is made anew.
    moved = _settings(tmp_path, listen="127.0.0.5:9567")
    said = devtls.ensure(moved)
    assert "(the certificate does not name 127.0.0.5)" in said
    assert first.tls_cert.read_bytes() != cert
    assert devtls.ensure(_settings(tmp_path)).endswith("is kept")  # covers the default too


def test_a_name_no_certificate_can_hold_is_a_config_error(tmp_path: Path) -> None:
    settings = _settings(tmp_path, listen="h\u00e9te:9567")
    with pytest.raises(config.ConfigError, match="--tls-self-signed: host name"):
        devtls.ensure(settings)


def test_made_like_operator_init(tmp_path: Path) -> None:
    # The same maker as `operator init --tls-self-signed` (a leaf, ECDSA P-256).
    settings = _settings(tmp_path)
    devtls.ensure(settings)
    assert settings.tls_cert is not None
    cert = x509.load_pem_x509_certificate(settings.tls_cert.read_bytes())
    reference = x509.load_pem_x509_certificate(self_signed_certificate(["localhost"], [])[0])
    assert cert.signature_hash_algorithm is not None
    assert type(cert.public_key()) is type(reference.public_key())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
