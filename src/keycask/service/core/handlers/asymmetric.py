"""Sign, Verify, GetPublicKey, GenerateMac, VerifyMac, DeriveSharedSecret,
GenerateDataKeyPair and GenerateDataKeyPairWithoutPlaintext.

Private keys and HMAC keys live behind the barrier like symmetric material;
only the public half ever leaves (GetPublicKey). Every result must verify or
decrypt with standard tools outside keycask: signatures are the DER or raw
forms AWS returns, and MessageType DIGEST is never hashed again.
"""

from __future__ import annotations

from keycask import crypto
from keycask.crypto import (
    DATA_KEY_PAIR_SPECS,
    InvalidPublicKey,
    KeyMaterial,
    PrivateKey,
    key_agreement_algorithms,
    mac_algorithms,
    signing_algorithms,
)
from keycask.errors import (
    DryRunOperationException,
    InvalidKeyUsageException,
    KMSInternalException,
    KMSInvalidMacException,
    KMSInvalidSignatureException,
    UnsupportedOperationException,
    ValidationException,
)
from keycask.keys.model import Key, KeyUsage
from keycask.keys.states import require_state
from keycask.keys.wire import encode_context
from keycask.service.core import hsm_keys
from keycask.service.core.azure_gate import check_gate
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.handlers.crypto import DRY_RUN, seal_for, symmetric_key_for
from keycask.service.core.offload import run_slow
from keycask.service.core.requests import (
    DeriveSharedSecretRequest,
    GenerateDataKeyPairRequest,
    GenerateMacRequest,
    GetPublicKeyRequest,
    SignRequest,
    VerifyMacRequest,
    VerifyRequest,
)
from keycask.service.core.resolve import use_key
from keycask.service.core.results import (
    DeriveSharedSecretResult,
    GenerateDataKeyPairResult,
    GenerateMacResult,
    GetPublicKeyResult,
    SignResult,
    VerifyMacResult,
    VerifyResult,
    algorithms_of,
)


async def _key(deps: Deps, call: Call, ref: str, operation: str, usage: KeyUsage) -> Key:
    key = (
        await use_key(deps.keys, call, ref, "kms:" + operation, state=operation, allow_alias=True)
    ).value
    if key.key_usage is not usage:
        raise InvalidKeyUsageException(
            f"{key.arn} key usage is {key.key_usage.value} which is not valid for {operation}."
        )
    return key


async def _private(deps: Deps, call: Call, key: Key) -> PrivateKey:
    private = await deps.keys.private_key(key)
    if private is None:
        raise KMSInternalException("key material is missing")
    call.used_keys = (*call.used_keys, key.key_id)
    return private


def _check_signing(key: Key, algorithm: str, message_type: str) -> None:
    if algorithm not in signing_algorithms(key.key_spec.value):
        raise InvalidKeyUsageException(
            f"{key.arn} supports signing algorithms "
            f"{', '.join(signing_algorithms(key.key_spec.value))}, not {algorithm}."
        )
    if message_type == "EXTERNAL_MU" and not key.key_spec.value.startswith("ML_DSA_"):
        raise ValidationException("MessageType EXTERNAL_MU is valid for ML-DSA keys only.")


async def sign(deps: Deps, call: Call, req: SignRequest) -> Outcome:
    # _key's and _private's bodies inline: one coroutine fewer each per Sign
    # (same checks, same order).
    algorithm = req.signing_algorithm
    message_type = req.message_type or "RAW"
    conditions = call.conditions
    conditions["kms:SigningAlgorithm"] = algorithm
    conditions["kms:MessageType"] = message_type
    keys = deps.keys
    key = (await use_key(keys, call, req.key_id, "kms:Sign", state="Sign", allow_alias=True)).value
    if key.key_usage is not KeyUsage.SIGN_VERIFY:
        raise InvalidKeyUsageException(
            f"{key.arn} key usage is {key.key_usage.value} which is not valid for Sign."
        )
    _check_signing(key, algorithm, message_type)
    # An Azure Key Vault version's nbf, exp and key_ops, whichever door asks.
    check_gate(key, "Sign", deps.clock.now(), await keys.azure_gate(key.key_id))
    if key.hsm_object is not None:
        signature = await hsm_keys.sign(
            deps, call, key, algorithm, req.message, message_type=message_type
        )
        if req.dry_run:
            raise DryRunOperationException(DRY_RUN)
        return Outcome(SignResult(key.arn, signature, algorithm))
    private = await keys.private_key(key)
    if private is None:
        raise KMSInternalException("key material is missing")
    call.used_keys = (*call.used_keys, key.key_id)
    try:
        signature = private.sign(algorithm, req.message, message_type)
    except ValueError as error:
        raise ValidationException(str(error)) from None
    # DryRun answers only once everything a real call checks has passed.
    if req.dry_run:
        raise DryRunOperationException(DRY_RUN)
    return Outcome(SignResult(key.arn, signature, algorithm))


async def verify(deps: Deps, call: Call, req: VerifyRequest) -> Outcome:
    call.conditions["kms:SigningAlgorithm"] = req.signing_algorithm
    call.conditions["kms:MessageType"] = req.message_type or "RAW"
    key = await _key(deps, call, req.key_id, "Verify", KeyUsage.SIGN_VERIFY)
    message_type = req.message_type or "RAW"
    _check_signing(key, req.signing_algorithm, message_type)
    check_gate(key, "Verify", deps.clock.now(), await deps.keys.azure_gate(key.key_id))
    try:
        if key.hsm_object is not None:
            request = (req.signing_algorithm, req.message, message_type, req.signature)
            valid = await hsm_keys.verify(deps, call, key, request)
        else:
            private = await _private(deps, call, key)
            valid = private.verify(req.signing_algorithm, req.message, message_type, req.signature)
    except ValueError as error:
        raise ValidationException(str(error)) from None
    if not valid:
        # AWS's answer has no message.
        raise KMSInvalidSignatureException()
    # DryRun answers only once everything a real call checks has passed.
    if req.dry_run:
        raise DryRunOperationException(DRY_RUN)
    return Outcome(VerifyResult(key.arn, True, req.signing_algorithm))


async def get_public_key(deps: Deps, call: Call, req: GetPublicKeyRequest) -> Outcome:
    key = (await use_key(deps.keys, call, req.key_id, "kms:GetPublicKey", allow_alias=True)).value
    if not key.key_spec.is_asymmetric:
        raise UnsupportedOperationException(
            f"{key.arn} is not an asymmetric key; it has no public key."
        )
    require_state("GetPublicKey", key)
    if key.hsm_object is not None:
        public = await hsm_keys.public_der(deps, key)
    else:
        private = await deps.keys.private_key(key)
        if private is None:
            raise KMSInternalException("key material is missing")
        public = private.public_der()
    return Outcome(
        GetPublicKeyResult(
            key_id=key.arn,
            public_key=public,
            customer_master_key_spec=key.key_spec.value,
            key_spec=key.key_spec.value,
            key_usage=key.key_usage.value,
            **algorithms_of(key),
        )
    )


async def _mac_key(deps: Deps, call: Call, ref: str, operation: str, algorithm: str) -> Key:
    call.conditions["kms:MacAlgorithm"] = algorithm
    key = await _key(deps, call, ref, operation, KeyUsage.GENERATE_VERIFY_MAC)
    if algorithm not in mac_algorithms(key.key_spec.value):
        raise InvalidKeyUsageException(
            f"{key.arn} supports MAC algorithm {mac_algorithms(key.key_spec.value)[0]}, "
            f"not {algorithm}."
        )
    return key


async def _mac_material(deps: Deps, call: Call, key: Key) -> KeyMaterial:
    material = await deps.keys.key_material(key, key.current_version)
    if material is None:
        raise KMSInternalException("key material is missing")
    call.used_keys = (*call.used_keys, key.key_id)
    return material


async def generate_mac(deps: Deps, call: Call, req: GenerateMacRequest) -> Outcome:
    # _mac_key's, _key's and _mac_material's bodies inline: three coroutines
    # fewer per GenerateMac (same checks, same order).
    algorithm = req.mac_algorithm
    call.conditions["kms:MacAlgorithm"] = algorithm
    keys = deps.keys
    key = (
        await use_key(
            keys, call, req.key_id, "kms:GenerateMac", state="GenerateMac", allow_alias=True
        )
    ).value
    if key.key_usage is not KeyUsage.GENERATE_VERIFY_MAC:
        raise InvalidKeyUsageException(
            f"{key.arn} key usage is {key.key_usage.value} which is not valid for GenerateMac."
        )
    spec = key.key_spec.value
    supported = mac_algorithms(spec)
    if algorithm not in supported:
        raise InvalidKeyUsageException(
            f"{key.arn} supports MAC algorithm {supported[0]}, not {algorithm}."
        )
    key_id = key.key_id
    material = await keys.key_material(key, key.current_version)
    if material is None:
        raise KMSInternalException("key material is missing")
    call.used_keys = (*call.used_keys, key_id)
    mac = crypto.generate_mac(spec, algorithm, material, req.message)
    # DryRun answers only once everything a real call checks has passed.
    if req.dry_run:
        raise DryRunOperationException(DRY_RUN)
    return Outcome(GenerateMacResult(mac, algorithm, key.arn))


async def verify_mac(deps: Deps, call: Call, req: VerifyMacRequest) -> Outcome:
    key = await _mac_key(deps, call, req.key_id, "VerifyMac", req.mac_algorithm)
    material = await _mac_material(deps, call, key)
    if not crypto.verify_mac(key.key_spec.value, req.mac_algorithm, material, req.message, req.mac):
        # AWS's answer has no message.
        raise KMSInvalidMacException()
    # DryRun answers only once everything a real call checks has passed.
    if req.dry_run:
        raise DryRunOperationException(DRY_RUN)
    return Outcome(VerifyMacResult(key.arn, True, req.mac_algorithm))


async def derive_shared_secret(deps: Deps, call: Call, req: DeriveSharedSecretRequest) -> Outcome:
    call.conditions["kms:KeyAgreementAlgorithm"] = req.key_agreement_algorithm
    key = await _key(deps, call, req.key_id, "DeriveSharedSecret", KeyUsage.KEY_AGREEMENT)
    if req.key_agreement_algorithm not in key_agreement_algorithms(key.key_spec.value):
        raise InvalidKeyUsageException(
            f"{key.arn} supports key agreement algorithm ECDH, not {req.key_agreement_algorithm}."
        )
    private = await _private(deps, call, key)
    try:
        secret = private.derive_shared_secret(req.public_key)
    except InvalidPublicKey as error:
        raise ValidationException(
            f"PublicKey is not a valid public key on the curve of {key.key_spec.value}: {error}"
        ) from None
    # DryRun answers only once everything a real call checks has passed.
    if req.dry_run:
        raise DryRunOperationException(DRY_RUN)
    return Outcome(
        DeriveSharedSecretResult(
            key_id=key.arn,
            shared_secret=secret.reveal(),
            key_agreement_algorithm=req.key_agreement_algorithm,
            key_origin=key.origin.value,
        )
    )


async def _data_key_pair(
    deps: Deps, call: Call, req: GenerateDataKeyPairRequest, operation: str
) -> tuple[GenerateDataKeyPairResult, bytes]:
    call.encryption_context = req.encryption_context
    call.conditions["kms:DataKeyPairSpec"] = req.key_pair_spec
    call.conditions["kms:EncryptionAlgorithm"] = "SYMMETRIC_DEFAULT"
    if req.key_pair_spec not in DATA_KEY_PAIR_SPECS:
        raise UnsupportedOperationException(
            f"keycask does not support KeyPairSpec {req.key_pair_spec}."
        )
    key = await symmetric_key_for(deps, call, req.key_id, operation)
    context = encode_context(req.encryption_context)
    spec = req.key_pair_spec
    pair = await run_slow(crypto.generate_data_key_pair, spec) if spec.startswith("RSA_") else None
    private, public = pair if pair is not None else crypto.generate_data_key_pair(spec)
    blob, material_id = await seal_for(deps, call, key, private.reveal(), context)
    result = GenerateDataKeyPairResult(
        private_key_ciphertext_blob=blob,
        public_key=public,
        key_id=key.arn,
        key_pair_spec=spec,
        key_material_id=material_id,
    )
    # DryRun answers only once everything a real call checks has passed.
    if req.dry_run:
        raise DryRunOperationException(DRY_RUN)
    return result, private.reveal()


async def generate_data_key_pair(
    deps: Deps, call: Call, req: GenerateDataKeyPairRequest
) -> Outcome:
    result, private = await _data_key_pair(deps, call, req, "GenerateDataKeyPair")
    return Outcome(
        GenerateDataKeyPairResult(
            private_key_ciphertext_blob=result.private_key_ciphertext_blob,
            public_key=result.public_key,
            key_id=result.key_id,
            key_pair_spec=result.key_pair_spec,
            private_key_plaintext=private,
            key_material_id=result.key_material_id,
        )
    )


async def generate_data_key_pair_without_plaintext(
    deps: Deps, call: Call, req: GenerateDataKeyPairRequest
) -> Outcome:
    result, _ = await _data_key_pair(deps, call, req, "GenerateDataKeyPairWithoutPlaintext")
    return Outcome(result)
