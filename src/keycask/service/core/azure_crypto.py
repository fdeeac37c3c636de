"""Azure Key Vault's cryptographic operations on a key version: sign,
verify, encrypt, decrypt, wrapKey and unwrapKey, each running the AWS
door's core handler (Sign, Verify, Encrypt, Decrypt) on the version's
keycask key under its ``kms:`` action, with the AWS algorithm its Key Vault
algorithm names.

Key Vault signs a digest: every signature is MessageType DIGEST. Its ECDSA
signatures are raw r || s (JWS's form), not DER: converted both ways in
``keycask.crypto.ecdsa_sig``. Key Vault's own conditions on a version
(enabled, nbf, exp, key_ops) are checked once the caller is authorized
(``check_usable``), before the key is used.
"""

from __future__ import annotations

from datetime import datetime

from keycask.crypto.ecdsa_sig import der_to_raw, raw_to_der
from keycask.errors import (
    DisabledException,
    KMSInvalidSignatureException,
    UnsupportedOperationException,
    ValidationException,
)
from keycask.keys.model import Key, KeySpec, KeyState, KeyUsage
from keycask.service.core import requests as aws
from keycask.service.core.azure import CURVE_OF, resolve_version
from keycask.service.core.azure_requests import (
    CryptoRequest,
    CryptoResult,
    RandomRequest,
    RandomResult,
    Version,
)
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.handlers import asymmetric, crypto
from keycask.service.core.resolve import authorize_key
from keycask.service.core.results import (
    DecryptResult,
    EncryptResult,
    GenerateRandomResult,
    SignResult,
)

# Key Vault's signing algorithm -> (AWS signing algorithm, digest size,
# the EC curve it needs; None: an RSA algorithm).
SIGNING: dict[str, tuple[str, int, str | None]] = {
    "RS256": ("RSASSA_PKCS1_V1_5_SHA_256", 32, None),
    "RS384": ("RSASSA_PKCS1_V1_5_SHA_384", 48, None),
    "RS512": ("RSASSA_PKCS1_V1_5_SHA_512", 64, None),
    "PS256": ("RSASSA_PSS_SHA_256", 32, None),
    "PS384": ("RSASSA_PSS_SHA_384", 48, None),
    "PS512": ("RSASSA_PSS_SHA_512", 64, None),
    "ES256": ("ECDSA_SHA_256", 32, "P-256"),
    "ES384": ("ECDSA_SHA_384", 48, "P-384"),
    "ES512": ("ECDSA_SHA_512", 64, "P-521"),
    "ES256K": ("ECDSA_SHA_256", 32, "P-256K"),
}
ENCRYPTION = {"RSA-OAEP": "RSAES_OAEP_SHA_1", "RSA-OAEP-256": "RSAES_OAEP_SHA_256"}
_COORDINATE = {
    KeySpec.ECC_NIST_P256: 32,
    KeySpec.ECC_NIST_P384: 48,
    KeySpec.ECC_NIST_P521: 66,
    KeySpec.ECC_SECG_P256K1: 32,
}
_ACTIONS = {
    "sign": "kms:Sign",
    "verify": "kms:Verify",
    "encrypt": "kms:Encrypt",
    "wrapKey": "kms:Encrypt",
    "decrypt": "kms:Decrypt",
    "unwrapKey": "kms:Decrypt",
}


def kid(base: str, name: str, version: str) -> str:
    return f"{base}/keys/{name}/{version}"


def _aws_algorithm(operation: str, algorithm: str) -> str:
    """The AWS algorithm a Key Vault algorithm names (before the key is
    looked at: the policies may condition on it)."""
    if operation in ("sign", "verify"):
        found = SIGNING.get(algorithm)
        if found is None:
            raise ValidationException(
                f"Invalid signing algorithm {algorithm[:40]}: use {', '.join(SIGNING)}."
            )
        return found[0]
    if algorithm == "RSA1_5":
        raise UnsupportedOperationException(
            "RSA1_5 (RSAES-PKCS1-v1_5) is not supported: keycask, like AWS KMS, has no "
            "PKCS #1 v1.5 decryption (it invites padding-oracle attacks). Use RSA-OAEP-256 "
            "or RSA-OAEP."
        )
    aws_algorithm = ENCRYPTION.get(algorithm)
    if aws_algorithm is None:
        raise ValidationException(
            f"Invalid encryption algorithm {algorithm[:40]}: use RSA-OAEP-256 or RSA-OAEP."
        )
    return aws_algorithm


def _check_signing(key: Key, algorithm: str, digest: bytes) -> None:
    _, size, curve = SIGNING[algorithm]
    if key.key_spec.is_rsa != (curve is None) or (
        curve is not None and CURVE_OF.get(key.key_spec) != curve
    ):
        raise ValidationException(
            f"Algorithm {algorithm} is not valid for this key ({_kind(key)})."
        )
    if len(digest) != size:
        raise ValidationException(
            f"The digest for {algorithm} must be {size} bytes, not {len(digest)}."
        )


def _kind(key: Key) -> str:
    curve = CURVE_OF.get(key.key_spec)
    return f"EC {curve}" if curve is not None else f"RSA ({key.key_spec.value})"


async def operate(deps: Deps, call: Call, req: CryptoRequest) -> Outcome:
    """One cryptographic operation: authorized first (its ``kms:``
    action on the version's key), then Key Vault's conditions, then the
    core operation (which authorizes and checks the key state again)."""
    algorithm = _aws_algorithm(req.operation, req.algorithm)
    signs = req.operation in ("sign", "verify")
    # The condition keys the core operation sets, set before this door's
    # own authorization too, so that both decide alike.
    if signs:
        call.conditions["kms:SigningAlgorithm"] = algorithm
        call.conditions["kms:MessageType"] = "DIGEST"
    else:
        call.conditions["kms:EncryptionAlgorithm"] = algorithm
    _, _, _, entry, key = await resolve_version(deps, call, req.ref, req.version)
    await authorize_key(call, key, _ACTIONS[req.operation])
    name = kid(req.base, req.ref.name, entry.id)
    call.detail = (
        f"Azure key {req.ref.vault}/{req.ref.name} version {entry.id}: "
        f"{req.operation} {req.algorithm[:40]}"
    )
    if signs:
        digest = req.value if req.operation == "sign" else req.digest
        if key.key_usage is not KeyUsage.SIGN_VERIFY:
            raise ValidationException(
                f"Operation {req.operation} is not valid for this key: it encrypts "
                "(key_ops encrypt, decrypt, wrapKey, unwrapKey)."
            )
        _check_signing(key, req.algorithm, digest)
        check_usable(entry, key, req.operation, deps.clock.now())
        if req.operation == "sign":
            return Outcome(CryptoResult(name, await _sign(deps, call, key, algorithm, digest)))
        valid = await _verify(deps, call, key, algorithm, digest, signature=req.value)
        return Outcome(CryptoResult(name, b"", valid=valid))
    if key.key_usage is not KeyUsage.ENCRYPT_DECRYPT or not key.key_spec.is_rsa:
        raise ValidationException(
            f"Operation {req.operation} is not valid for this key: it signs (key_ops sign, verify)."
        )
    check_usable(entry, key, req.operation, deps.clock.now())
    if req.operation in ("encrypt", "wrapKey"):
        out = await crypto.encrypt(
            deps,
            call,
            aws.EncryptRequest(key_id=key.arn, plaintext=req.value, encryption_algorithm=algorithm),
        )
        sealed = out.result
        assert isinstance(sealed, EncryptResult)
        return Outcome(CryptoResult(name, sealed.ciphertext_blob))
    out = await crypto.decrypt(
        deps,
        call,
        aws.DecryptRequest(
            ciphertext_blob=req.value, key_id=key.arn, encryption_algorithm=algorithm
        ),
    )
    opened = out.result
    assert isinstance(opened, DecryptResult)
    return Outcome(CryptoResult(name, opened.plaintext))


async def _sign(deps: Deps, call: Call, key: Key, algorithm: str, digest: bytes) -> bytes:
    out = await asymmetric.sign(
        deps,
        call,
        aws.SignRequest(
            key_id=key.arn, message=digest, signing_algorithm=algorithm, message_type="DIGEST"
        ),
    )
    result = out.result
    assert isinstance(result, SignResult)
    size = _COORDINATE.get(key.key_spec)
    return result.signature if size is None else der_to_raw(result.signature, size)


async def _verify(
    deps: Deps, call: Call, key: Key, algorithm: str, digest: bytes, *, signature: bytes
) -> bool:
    """Verify; a signature that does not verify is ``value: false`` (Key
    Vault's answer), not an error."""
    size = _COORDINATE.get(key.key_spec)
    if size is not None:
        if len(signature) != 2 * size:
            return False
        signature = raw_to_der(signature)
    try:
        await asymmetric.verify(
            deps,
            call,
            aws.VerifyRequest(
                key_id=key.arn,
                message=digest,
                signature=signature,
                signing_algorithm=algorithm,
                message_type="DIGEST",
            ),
        )
    except KMSInvalidSignatureException:
        return False
    return True


class OperationNotAllowed(DisabledException):
    """A key version its attributes do not allow to be used (disabled, not
    yet valid, expired, or without the operation in its key_ops): Key
    Vault's 403 Forbidden."""


# -- usable: the checks of every cryptographic operation --


def check_usable(entry: Version, key: Key, operation: str, now: datetime) -> None:
    """Key Vault's own conditions on a version's use, after the caller is
    authorized: enabled, within nbf and exp, the operation in key_ops."""
    if key.state is KeyState.DISABLED:
        raise OperationNotAllowed(f"Operation {operation} is not allowed on a disabled key.")
    stamp = now.timestamp()
    if entry.nbf is not None and stamp < entry.nbf:
        raise OperationNotAllowed(
            f"Operation {operation} is not allowed: the key is not yet valid (nbf)."
        )
    if entry.exp is not None and stamp >= entry.exp:
        raise OperationNotAllowed(
            f"Operation {operation} is not allowed: the key has expired (exp)."
        )
    if operation not in entry.ops:
        raise OperationNotAllowed(
            f"Operation {operation} is not permitted on this key: its key_ops are "
            f"{', '.join(entry.ops)}."
        )


# -- random --


async def random_bytes(deps: Deps, call: Call, req: RandomRequest) -> Outcome:
    """GenerateRandom (kms:GenerateRandom): Key Vault's 1 to 128 bytes."""
    out = await crypto.generate_random(
        deps, call, aws.GenerateRandomRequest(number_of_bytes=req.count)
    )
    result = out.result
    assert isinstance(result, GenerateRandomResult)
    return Outcome(RandomResult(result.plaintext))
