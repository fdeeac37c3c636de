"""Vault Transit's hmac, sign and verify over keycask's GenerateMac,
VerifyMac, Sign and Verify (``core/transit.py`` has the rest of transit).

Vault names a hash (sha2-256, ...) and, for RSA, a padding (pss,
pkcs1v15); keycask's signing algorithm is made of the two and the key's
type: ECDSA_SHA_<bits>, RSASSA_PSS_SHA_<bits>, RSASSA_PKCS1_V1_5_SHA_<bits>,
ED25519_SHA_512, and HMAC_SHA_<bits> for hmac keys. A pair keycask's key does
not support (an ECDSA P-384 key with sha2-256: AWS KMS pairs each curve with
one hash) is refused by the core handler, as the AWS door refuses it.
``prehashed`` is MessageType DIGEST. Signatures and HMACs are
``vault:v<N>:<base64>``, N the key version that made them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pybase64

from keycask.errors import (
    KMSError,
    KMSInvalidMacException,
    KMSInvalidSignatureException,
    ValidationException,
)
from keycask.keys.model import Key, KeySpec
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.handlers import asymmetric
from keycask.service.core.requests import (
    GenerateMacRequest,
    SignRequest,
    VerifyMacRequest,
    VerifyRequest,
)
from keycask.service.core.results import GenerateMacResult, SignResult
from keycask.service.core.transit import (
    TOO_OLD,
    alias_name,
    ciphertext,
    each_item,
    parse_ciphertext,
    resolve_transit_key,
    settings_of,
)
from keycask.service.core.transit_requests import ItemsResult

DEFAULT_HASH = "sha2-256"
# The byte length of r and s of an ECDSA signature on each curve (JWS, RFC 7518 3.4).
_COORDINATE = {KeySpec.ECC_NIST_P256: 32, KeySpec.ECC_NIST_P384: 48, KeySpec.ECC_NIST_P521: 66}
_BITS = {"sha2-256": 256, "sha2-384": 384, "sha2-512": 512}
# Vault's answer for an HMAC below min_decryption_version (signatures get TOO_OLD).
_HMAC_TOO_OLD = "cannot verify HMAC: version is too old (disallowed by policy)"


@dataclass(frozen=True, slots=True)
class SignItem:
    input: bytes = field(repr=False)
    # Verify only: the signature or hmac to check (vault:v<N>:<base64>).
    signature: str | None = None


@dataclass(frozen=True, slots=True)
class TransitSignRequest:
    """hmac, sign, or verify (of a signature, or of an hmac: ``mac``)."""

    mount: str
    name: str
    items: tuple[SignItem | KMSError, ...]
    batch: bool
    hash_algorithm: str = DEFAULT_HASH
    prehashed: bool = False
    signature_algorithm: str = "pss"
    mac: bool = False
    # JWS marshaling: an ECDSA signature as r || s (not ASN.1 DER), and every
    # signature in unpadded base64url.
    jws: bool = False


def _bits(hash_algorithm: str) -> int:
    bits = _BITS.get(hash_algorithm)
    if bits is None:
        raise ValidationException(
            f"unsupported hash algorithm {hash_algorithm[:32]!r}: keycask signs and computes "
            "HMACs with sha2-256, sha2-384 and sha2-512"
        )
    return bits


def signing_algorithm(key: Key, req: TransitSignRequest) -> str:
    spec = key.key_spec
    if spec is KeySpec.ECC_NIST_EDWARDS25519:
        return "ED25519_PH_SHA_512" if req.prehashed else "ED25519_SHA_512"
    bits = _bits(req.hash_algorithm)
    if spec.is_rsa:
        if req.signature_algorithm == "pss":
            return f"RSASSA_PSS_SHA_{bits}"
        if req.signature_algorithm == "pkcs1v15":
            return f"RSASSA_PKCS1_V1_5_SHA_{bits}"
        raise ValidationException(
            f"unsupported signature algorithm {req.signature_algorithm[:32]!r}: pss or pkcs1v15"
        )
    if spec in (KeySpec.ECC_NIST_P256, KeySpec.ECC_NIST_P384, KeySpec.ECC_NIST_P521):
        return f"ECDSA_SHA_{bits}"
    raise ValidationException(f"key type {spec.value} does not support signing")


def _mac_algorithm(req: TransitSignRequest) -> str:
    return f"HMAC_SHA_{_bits(req.hash_algorithm)}"


def _message_type(req: TransitSignRequest) -> str:
    return "DIGEST" if req.prehashed else "RAW"


async def _signed(deps: Deps, call: Call, key: Key, req: TransitSignRequest, item: SignItem) -> str:
    ref = alias_name(req.mount, req.name)
    if req.mac:
        out = await asymmetric.generate_mac(
            deps,
            call,
            GenerateMacRequest(message=item.input, key_id=ref, mac_algorithm=_mac_algorithm(req)),
        )
        assert isinstance(out.result, GenerateMacResult)
        return ciphertext(key.current_version, out.result.mac)
    signed = await asymmetric.sign(
        deps,
        call,
        SignRequest(
            key_id=ref,
            message=item.input,
            signing_algorithm=signing_algorithm(key, req),
            message_type=_message_type(req),
        ),
    )
    assert isinstance(signed.result, SignResult)
    signature = signed.result.signature
    if not req.jws:
        return ciphertext(key.current_version or 1, signature)
    size = _COORDINATE.get(key.key_spec)
    raw = signature if size is None else der_to_raw(signature, size)
    encoded = pybase64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    return f"vault:v{key.current_version or 1}:{encoded}"


async def _valid(deps: Deps, call: Call, key: Key, req: TransitSignRequest, item: SignItem) -> bool:
    ref = alias_name(req.mount, req.name)
    if not item.signature:
        raise ValidationException("missing signature or hmac to verify")
    version, raw = _parse_signature(key, req, item.signature)
    settings = await settings_of(deps, key)
    latest = key.current_version or 1
    what = "HMAC" if req.mac else "signature"
    if version > latest:
        raise ValidationException(f"invalid {what}: version is too new")
    if version < settings.min_decryption_version:
        raise ValidationException(_HMAC_TOO_OLD if req.mac else TOO_OLD)
    if version != latest:
        # Not reached today: AWS KMS (and keycask) rotate symmetric keys
        # only, so a signing or HMAC key has one version; kept so that a
        # signature is never checked with another version's material.
        raise ValidationException(f"keycask verifies with the key's latest version ({latest}) only")
    try:
        if req.mac:
            await asymmetric.verify_mac(
                deps,
                call,
                VerifyMacRequest(
                    message=item.input, key_id=ref, mac_algorithm=_mac_algorithm(req), mac=raw
                ),
            )
        else:
            await asymmetric.verify(
                deps,
                call,
                VerifyRequest(
                    key_id=ref,
                    message=item.input,
                    signature=raw,
                    signing_algorithm=signing_algorithm(key, req),
                    message_type=_message_type(req),
                ),
            )
    except (KMSInvalidSignatureException, KMSInvalidMacException):
        return False
    return True


async def _each(deps: Deps, call: Call, req: TransitSignRequest, *, verify: bool) -> Outcome:
    key = await resolve_transit_key(deps, call, req.mount, req.name)

    async def one(item: SignItem) -> dict[str, Any]:
        if verify:
            return {"valid": await _valid(deps, call, key, req, item)}
        made = await _signed(deps, call, key, req, item)
        name = "hmac" if req.mac else "signature"
        return {name: made, "key_version": key.current_version or 1}

    return await each_item(call, req.items, req.batch, one)


async def sign(deps: Deps, call: Call, req: TransitSignRequest) -> Outcome:
    """hmac (GenerateMac, kms:GenerateMac) or sign (Sign, kms:Sign)."""
    return await _each(deps, call, req, verify=False)


async def verify(deps: Deps, call: Call, req: TransitSignRequest) -> Outcome:
    """verify of an hmac (VerifyMac, kms:VerifyMac) or a signature (Verify,
    kms:Verify): a signature that does not verify is ``valid: false``."""
    return await _each(deps, call, req, verify=True)


# Vault's hash algorithms, as hashlib names them.
_HASHES = {
    "sha2-224": "sha224",
    "sha2-256": "sha256",
    "sha2-384": "sha384",
    "sha2-512": "sha512",
    "sha3-224": "sha3_224",
    "sha3-256": "sha3_256",
    "sha3-384": "sha3_384",
    "sha3-512": "sha3_512",
}


@dataclass(frozen=True, slots=True)
class HashRequest:
    mount: str
    input: bytes = field(repr=False)
    algorithm: str = DEFAULT_HASH
    format: str = "hex"


async def hash_input(deps: Deps, call: Call, req: HashRequest) -> Outcome:
    """Vault's hash: a digest of the input, with no key, so no ``kms:``
    action decides it; the caller must only hold a valid token."""
    name = _HASHES.get(req.algorithm)
    if name is None:
        raise ValidationException(f"unsupported hash algorithm {req.algorithm[:32]!r}")
    if req.format not in ("hex", "base64"):
        raise ValidationException(f"unsupported encoding format {req.format[:16]!r}")
    digest = hashlib.new(name, req.input).digest()
    shown = digest.hex() if req.format == "hex" else pybase64.b64encode_as_string(digest)
    return Outcome(ItemsResult(({"sum": shown},), False))


def _parse_signature(key: Key, req: TransitSignRequest, text: str) -> tuple[int, bytes]:
    """(version, signature as Verify takes it) of ``vault:v<N>:<...>``."""
    if not req.jws or req.mac:
        return parse_ciphertext(text, what="signature")
    head, sep, encoded = text.rpartition(":")
    version, _ = parse_ciphertext(head + ":AA==", what="signature") if sep else (0, b"")
    try:
        raw = pybase64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except ValueError:
        raise ValidationException("invalid signature: bad base64url") from None
    if not sep or not raw:
        raise ValidationException("invalid signature: no prefix")
    size = _COORDINATE.get(key.key_spec)
    if size is None:
        return version, raw
    if len(raw) != 2 * size:
        raise ValidationException("invalid signature: r || s of the wrong length")
    return version, raw_to_der(raw)


def der_to_raw(der: bytes, size: int) -> bytes:
    """An ECDSA signature's DER SEQUENCE { INTEGER r, INTEGER s } as r || s,
    each ``size`` bytes (what JWS carries)."""
    values = []
    at = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    for _ in range(2):
        if der[at] != 0x02:
            raise ValueError("not an ECDSA signature")
        length = der[at + 1]
        values.append(int.from_bytes(der[at + 2 : at + 2 + length], "big"))
        at += 2 + length
    return b"".join(v.to_bytes(size, "big") for v in values)


def _der_integer(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")  # a leading 0 keeps it positive
    return b"\x02" + _der_length(len(body)) + body


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(encoded),)) + encoded


def raw_to_der(raw: bytes) -> bytes:
    """r || s (JWS) as the DER SEQUENCE that Verify takes."""
    half = len(raw) // 2
    body = _der_integer(int.from_bytes(raw[:half], "big"))
    body += _der_integer(int.from_bytes(raw[half:], "big"))
    return b"\x30" + _der_length(len(body)) + body
