"""Encapsulate and Decapsulate: ML-KEM (FIPS 203) with ENCAPSULATE_DECAPSULATE
keys (ML_KEM_512, ML_KEM_768, ML_KEM_1024).

Encapsulate answers a fresh 32-byte shared secret and its ciphertext, the raw
ML-KEM ciphertext with no keycask framing, so anyone holding the public key
(GetPublicKey) can make one too. Decapsulate refuses only a ciphertext whose
length does not fit the key spec (InvalidCiphertextException); any other
ciphertext, changed or made for another key, gives a pseudo-random secret,
never an error (implicit rejection, as AWS documents it). The shared secret
is a sensitive member (the model's PlaintextType): the codec never quotes it
and the audit record has no field that could hold it.
"""

from __future__ import annotations

from keycask.crypto import CiphertextLengthInvalid, PrivateKey, encapsulation_algorithms
from keycask.errors import (
    DryRunOperationException,
    InvalidCiphertextException,
    InvalidKeyUsageException,
    KMSInternalException,
)
from keycask.keys.model import Key, KeyUsage
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.handlers.crypto import DRY_RUN
from keycask.service.core.requests import DecapsulateRequest, EncapsulateRequest
from keycask.service.core.resolve import use_key
from keycask.service.core.results import DecapsulateResult, EncapsulateResult


async def _kem_key(
    deps: Deps, call: Call, ref: str, operation: str, algorithm: str
) -> tuple[Key, PrivateKey]:
    key = (
        await use_key(deps.keys, call, ref, "kms:" + operation, state=operation, allow_alias=True)
    ).value
    if key.key_usage is not KeyUsage.ENCAPSULATE_DECAPSULATE:
        raise InvalidKeyUsageException(
            f"{key.arn} key usage is {key.key_usage.value} which is not valid for {operation}."
        )
    supported = encapsulation_algorithms(key.key_spec.value)
    if algorithm not in supported:
        raise InvalidKeyUsageException(
            f"{key.arn} supports encapsulation algorithm {', '.join(supported)}, not {algorithm}."
        )
    private = await deps.keys.private_key(key)
    if private is None:
        raise KMSInternalException("key material is missing")
    call.used_keys = (*call.used_keys, key.key_id)
    return key, private


async def encapsulate(deps: Deps, call: Call, req: EncapsulateRequest) -> Outcome:
    algorithm = req.encapsulation_algorithm
    key, private = await _kem_key(deps, call, req.key_id, "Encapsulate", algorithm)
    # DryRun answers only once everything a real call checks has passed.
    if req.dry_run:
        raise DryRunOperationException(DRY_RUN)
    secret, ciphertext = private.encapsulate()
    return Outcome(
        EncapsulateResult(
            key_id=key.arn,
            shared_secret=secret.reveal(),
            shared_secret_ciphertext_blob=ciphertext,
            encapsulation_algorithm=algorithm,
        )
    )


async def decapsulate(deps: Deps, call: Call, req: DecapsulateRequest) -> Outcome:
    algorithm = req.encapsulation_algorithm
    key, private = await _kem_key(deps, call, req.key_id, "Decapsulate", algorithm)
    try:
        secret = private.decapsulate(req.shared_secret_ciphertext_blob)
    except CiphertextLengthInvalid as error:
        raise InvalidCiphertextException(
            f"The SharedSecretCiphertextBlob is not valid for {key.key_spec.value}: {error}."
        ) from None
    # DryRun answers only once everything a real call checks has passed.
    if req.dry_run:
        raise DryRunOperationException(DRY_RUN)
    return Outcome(
        DecapsulateResult(
            key_id=key.arn, shared_secret=secret.reveal(), encapsulation_algorithm=algorithm
        )
    )
