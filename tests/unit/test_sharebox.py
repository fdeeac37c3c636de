"""Shares sealed to operators' public keys: keys made by OpenSSL (the tool
an operator has), lines opened by an independent implementation of the
documented format (straight on `cryptography`), and the refusals."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keycask.crypto import ShareBoxError, check_public_key, open_with_private_key
from keycask.crypto import seal_to_public_key as seal_to

SHARE = b"kcs1-3-2-abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrst-0badc0de"


def _openssl_pair(tmp_path: Path, name: str, *algorithm: str) -> tuple[bytes, bytes]:
    private = tmp_path / f"{name}.key"
    public = tmp_path / f"{name}.pub"
    subprocess.run(["openssl", "genpkey", *algorithm, "-out", str(private)], check=True)
    subprocess.run(
        ["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)], check=True
    )
    return private.read_bytes(), public.read_bytes()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _independent_open(private_pem: bytes, line: str) -> bytes:
    """The format as documented in keycask/crypto/sharebox.py, opened without keycask."""
    prefix, algorithm, first, data = line.split(".")
    assert prefix == "kcse1"
    private = serialization.load_pem_private_key(private_pem, password=None)
    if algorithm == "x25519":
        assert isinstance(private, x25519.X25519PrivateKey)
        ephemeral = _unb64(first)
        shared = private.exchange(x25519.X25519PublicKey.from_public_bytes(ephemeral))
        recipient = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        key = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=ephemeral + recipient,
            info=b"keycask share box v1",
        ).derive(shared)
    else:
        assert algorithm == "rsa-oaep-sha256"
        key = private.decrypt(  # type: ignore[union-attr]
            _unb64(first),
            padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
        )
    body = _unb64(data)
    return AESGCM(key).decrypt(body[:12], body[12:], f"kcse1.{algorithm}.{first}".encode())


@pytest.mark.parametrize(
    ("name", "algorithm"),
    [
        ("x25519", ["-algorithm", "X25519"]),
        ("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
    ],
)
def test_round_trip_with_openssl_keys_and_an_independent_opener(
    tmp_path: Path, name: str, algorithm: list[str]
) -> None:
    private, public = _openssl_pair(tmp_path, name, *algorithm)
    line = seal_to(public, SHARE)
    assert "\n" not in line and SHARE.decode() not in line
    assert open_with_private_key(private, line) == SHARE
    assert _independent_open(private, line) == SHARE
    # Fresh randomness every time.
    assert seal_to(public, SHARE) != line


def test_the_wrong_key_or_an_altered_line_is_refused(tmp_path: Path) -> None:
    private, public = _openssl_pair(tmp_path, "a", "-algorithm", "X25519")
    other, _ = _openssl_pair(tmp_path, "b", "-algorithm", "X25519")
    rsa_private, _ = _openssl_pair(
        tmp_path, "r", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"
    )
    line = seal_to(public, SHARE)
    with pytest.raises(ShareBoxError, match="not sealed to this private key"):
        open_with_private_key(other, line)
    with pytest.raises(ShareBoxError, match="X25519"):
        open_with_private_key(rsa_private, line)
    head, _, data = line.rpartition(".")
    flipped = data[:-2] + ("A" if data[-2] != "A" else "B") + data[-1]
    with pytest.raises(ShareBoxError):
        open_with_private_key(private, f"{head}.{flipped}")
    with pytest.raises(ShareBoxError, match="not a keycask encrypted share"):
        open_with_private_key(private, "kcs1-3-1-abc-0000")


def test_weak_or_unsuitable_public_keys_are_refused(tmp_path: Path) -> None:
    _, small = _openssl_pair(tmp_path, "s", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024")
    _, ec = _openssl_pair(tmp_path, "e", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
    with pytest.raises(ShareBoxError, match="2048"):
        check_public_key(small)
    with pytest.raises(ShareBoxError, match="X25519 or an RSA"):
        check_public_key(ec)
    with pytest.raises(ShareBoxError, match="PEM public key"):
        check_public_key(b"not a key")
