"""A share sealed to one operator's public key (as Vault's PGP option does),
so that whoever runs ``operator init`` or ``operator rekey`` hands each share
to its operator without being able to read it.

Hybrid encryption, one line of text:

``kcse1.x25519.<b64url ephemeral public key (32)>.<b64url nonce (12) | AES-256-GCM ciphertext+tag>``
    X25519 with a fresh ephemeral key; the AES key is HKDF-SHA256 of the
    shared secret, salt = ephemeral public || recipient public, info =
    ``keycask share box v1``.

``kcse1.rsa-oaep-sha256.<b64url RSA-OAEP-SHA256(AES key)>.<b64url nonce | ciphertext+tag>``
    a fresh AES-256 key under RSA-OAEP with SHA-256 (MGF1 SHA-256, no
    label); RSA keys of 2048 bits or more.

The AAD of the AES-GCM part is ``kcse1.<algorithm>.<first field>``: the
algorithm and the key wrapping cannot be swapped between lines. Public keys
are SubjectPublicKeyInfo PEM (``openssl pkey -pubout``); private keys PKCS#8
or traditional PEM, optionally with a password.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keycask.crypto.material import random_bytes

PREFIX = "kcse1"
X25519 = "x25519"
RSA_OAEP = "rsa-oaep-sha256"
_INFO = b"keycask share box v1"
_MIN_RSA_BITS = 2048


class ShareBoxError(ValueError):
    """A key that is not usable, or a sealed line that does not open; the
    message says which without revealing anything secret."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ShareBoxError("not a keycask encrypted share (bad base64)") from None


def _public_raw(key: x25519.X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _x25519_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=_INFO
    ).derive(shared)


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def check_public_key(pem: bytes) -> str:
    """The algorithm a PEM public key is used with; ``ShareBoxError`` if it
    is not an X25519 or an RSA (>= 2048 bits) public key."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise ShareBoxError("not a PEM public key (SubjectPublicKeyInfo)") from None
    if isinstance(key, x25519.X25519PublicKey):
        return X25519
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise ShareBoxError(f"an RSA key for a share needs at least {_MIN_RSA_BITS} bits")
        return RSA_OAEP
    raise ShareBoxError("a share key must be an X25519 or an RSA public key")


def seal_to_public_key(pem: bytes, plaintext: bytes) -> str:
    """``plaintext`` sealed to the public key in ``pem``: one line of text."""
    algorithm = check_public_key(pem)
    key = serialization.load_pem_public_key(pem)
    if isinstance(key, x25519.X25519PublicKey):
        ephemeral = x25519.X25519PrivateKey.generate()
        ephemeral_public = _public_raw(ephemeral.public_key())
        aes = _x25519_key(ephemeral.exchange(key), ephemeral_public, _public_raw(key))
        first = _b64(ephemeral_public)
    else:
        assert isinstance(key, rsa.RSAPublicKey)
        aes = random_bytes(32)
        first = _b64(key.encrypt(aes, _oaep()))
    nonce = random_bytes(12)
    aad = f"{PREFIX}.{algorithm}.{first}".encode("ascii")
    body = nonce + AESGCM(aes).encrypt(nonce, plaintext, aad)
    return f"{PREFIX}.{algorithm}.{first}.{_b64(body)}"


def open_with_private_key(private_pem: bytes, sealed: str, password: bytes | None = None) -> bytes:
    """Inverse of ``seal_to_public_key`` with the matching private key."""
    parts = sealed.strip().split(".")
    if len(parts) != 4 or parts[0] != PREFIX or parts[1] not in (X25519, RSA_OAEP):
        raise ShareBoxError("not a keycask encrypted share (kcse1.<algorithm>.<key>.<data>)")
    _, algorithm, first, data = parts
    try:
        private = serialization.load_pem_private_key(private_pem, password=password)
    except TypeError:
        raise ShareBoxError("the private key is encrypted: give its password") from None
    except ValueError:
        raise ShareBoxError("not a PEM private key, or a wrong password") from None
    failed = ShareBoxError("this share was not sealed to this private key, or it was altered")
    if algorithm == X25519:
        if not isinstance(private, x25519.X25519PrivateKey):
            raise ShareBoxError("this share was sealed to an X25519 key; give that private key")
        ephemeral = _unb64(first)
        try:
            shared = private.exchange(x25519.X25519PublicKey.from_public_bytes(ephemeral))
        except ValueError:
            raise failed from None
        aes = _x25519_key(shared, ephemeral, _public_raw(private.public_key()))
    else:
        if not isinstance(private, rsa.RSAPrivateKey):
            raise ShareBoxError("this share was sealed to an RSA key; give that private key")
        try:
            aes = private.decrypt(_unb64(first), _oaep())
        except ValueError:
            raise failed from None
        if len(aes) != 32:
            raise failed
    body = _unb64(data)
    aad = f"{PREFIX}.{algorithm}.{first}".encode("ascii")
    try:
        return AESGCM(aes).decrypt(body[:12], body[12:], aad)
    except (InvalidTag, ValueError):
        raise failed from None
