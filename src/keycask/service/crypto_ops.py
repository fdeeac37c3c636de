"""Encrypt, Decrypt, ReEncrypt, GenerateDataKey(WithoutPlaintext), GenerateRandom."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from keycask.crypto import random_bytes
from keycask.errors import (
    AccessDeniedException,
    DryRunOperationException,
    IncorrectKeyException,
    InvalidCiphertextException,
    InvalidKeyUsageException,
    KMSInternalException,
    ValidationException,
)
from keycask.keys.keystore import Stored
from keycask.keys.model import SYMMETRIC_DEFAULT_ALGORITHM, Key
from keycask.keys.states import require_state
from keycask.keys.wire import BlobHeader, encode_context, open_blob, parse_blob, seal_blob
from keycask.service.call import Call, Outcome
from keycask.service.deps import Deps
from keycask.service.requests import (
    DecryptRequest,
    EncryptRequest,
    GenerateDataKeyRequest,
    GenerateRandomRequest,
    ReEncryptRequest,
)
from keycask.service.resolve import key_by_id, resolve_key
from keycask.service.results import (
    DecryptResult,
    EncryptResult,
    GenerateDataKeyResult,
    GenerateRandomResult,
    ReEncryptResult,
)

_DATA_KEY_SPECS = {"AES_256": 32, "AES_128": 16}
_DRY_RUN = "The request would have succeeded, but the DryRun option is set."
# One message for every way a ciphertext can fail: no oracle on which it was.
_INVALID_CIPHERTEXT = (
    "The ciphertext is invalid, was altered, or does not match the encryption context."
)


def _check_algorithm(algorithm: str | None, key: Key) -> None:
    if algorithm is not None and algorithm != SYMMETRIC_DEFAULT_ALGORITHM:
        raise InvalidKeyUsageException(
            f"{key.arn} key usage is ENCRYPT_DECRYPT; it supports only SYMMETRIC_DEFAULT"
        )


async def _use_key(deps: Deps, call: Call, ref: str, action: str, operation: str) -> Stored[Key]:
    stored = await resolve_key(deps.keys, call, ref, allow_alias=True)
    key = stored.value
    call.key_arn = key.arn
    call.authorize(action, key.arn, key.account)
    require_state(operation, key)
    return stored


async def _seal(deps: Deps, call: Call, key: Key, plaintext: bytes, context: bytes) -> bytes:
    material = await deps.keys.material(key.key_id, key.current_version)
    if material is None:
        raise KMSInternalException("key material is missing")
    blob = seal_blob(material, BlobHeader(key.key_id, key.current_version), plaintext, context)
    call.used_keys = (*call.used_keys, key.key_id)
    return blob


@dataclass(frozen=True, slots=True)
class _Sealed:
    """A ciphertext to open, with what the caller says about it."""

    blob: bytes
    context: Mapping[str, str] | None
    key_ref: str | None
    algorithm: str | None


async def _open(
    deps: Deps, call: Call, sealed: _Sealed, action: str, operation: str
) -> tuple[Key, int, bytes]:
    """The key, the key version the blob names, and the plaintext."""
    header, _ = parse_blob(sealed.blob)
    expected = None
    if sealed.key_ref is not None:
        expected = (await resolve_key(deps.keys, call, sealed.key_ref, allow_alias=True)).value
    stored = await key_by_id(deps.keys, call, header.key_id)
    if expected is not None and expected.key_id != header.key_id:
        call.key_arn = expected.arn
        raise IncorrectKeyException(
            "The key ID in the request does not identify a KMS key that can perform this operation."
        )
    if stored is None:
        # A well-formed ciphertext whose key is gone (deleted) or elsewhere:
        # AWS answers AccessDenied with this message, not InvalidCiphertext.
        raise AccessDeniedException(
            "The ciphertext refers to a customer master key that does not exist, "
            "does not exist in this region, or you are not allowed to access."
        )
    key = stored.value
    call.key_arn = key.arn
    call.authorize(action, key.arn, key.account)
    require_state(operation, key)
    _check_algorithm(sealed.algorithm, key)
    encoded = encode_context(sealed.context)
    # Only versions that have been current can have ciphertexts: material
    # waiting for a rotation (or never issued) opens nothing.
    if header.version > key.current_version:
        raise InvalidCiphertextException(_INVALID_CIPHERTEXT)
    material = await deps.keys.material(key.key_id, header.version)
    if material is None:
        raise InvalidCiphertextException(_INVALID_CIPHERTEXT)
    plaintext = open_blob(material, sealed.blob, encoded)
    call.used_keys = (*call.used_keys, key.key_id)
    return key, header.version, plaintext


async def encrypt(deps: Deps, call: Call, req: EncryptRequest) -> Outcome:
    call.encryption_context = req.encryption_context
    key = (await _use_key(deps, call, req.key_id, "kms:Encrypt", "Encrypt")).value
    _check_algorithm(req.encryption_algorithm, key)
    context = encode_context(req.encryption_context)
    if req.dry_run:
        raise DryRunOperationException(_DRY_RUN)
    blob = await _seal(deps, call, key, req.plaintext, context)
    return Outcome(EncryptResult(ciphertext_blob=blob, key_id=key.arn))


async def decrypt(deps: Deps, call: Call, req: DecryptRequest) -> Outcome:
    call.encryption_context = req.encryption_context
    sealed = _Sealed(
        req.ciphertext_blob, req.encryption_context, req.key_id, req.encryption_algorithm
    )
    key, version, plaintext = await _open(deps, call, sealed, "kms:Decrypt", "Decrypt")
    if req.dry_run:
        raise DryRunOperationException(_DRY_RUN)
    entry = key.version(version)
    return Outcome(
        DecryptResult(
            key_id=key.arn,
            plaintext=plaintext,
            key_material_id=None if entry is None else entry.material_id,
        )
    )


async def re_encrypt(deps: Deps, call: Call, req: ReEncryptRequest) -> Outcome:
    call.encryption_context = req.source_encryption_context
    sealed = _Sealed(
        req.ciphertext_blob,
        req.source_encryption_context,
        req.source_key_id,
        req.source_encryption_algorithm,
    )
    source, _, plaintext = await _open(deps, call, sealed, "kms:ReEncryptFrom", "ReEncrypt")
    call.detail = f"re-encrypted from {source.arn}"
    dest = (
        await _use_key(deps, call, req.destination_key_id, "kms:ReEncryptTo", "ReEncrypt")
    ).value
    _check_algorithm(req.destination_encryption_algorithm, dest)
    context = encode_context(req.destination_encryption_context)
    if req.dry_run:
        raise DryRunOperationException(_DRY_RUN)
    blob = await _seal(deps, call, dest, plaintext, context)
    return Outcome(ReEncryptResult(ciphertext_blob=blob, source_key_id=source.arn, key_id=dest.arn))


def _data_key_size(req: GenerateDataKeyRequest) -> int:
    if req.key_spec is not None and req.number_of_bytes is not None:
        raise ValidationException("Please specify either number of bytes or key spec.")
    if req.key_spec is not None:
        size = _DATA_KEY_SPECS.get(req.key_spec)
        if size is None:
            raise ValidationException(f"KeySpec {req.key_spec} is not valid for a data key.")
        return size
    if req.number_of_bytes is None:
        raise ValidationException("Please specify either number of bytes or key spec.")
    return req.number_of_bytes


async def _generate_data_key(
    deps: Deps, call: Call, req: GenerateDataKeyRequest, operation: str
) -> tuple[Key, bytes, bytes]:
    call.encryption_context = req.encryption_context
    size = _data_key_size(req)
    key = (await _use_key(deps, call, req.key_id, "kms:" + operation, operation)).value
    context = encode_context(req.encryption_context)
    if req.dry_run:
        raise DryRunOperationException(_DRY_RUN)
    plaintext = random_bytes(size)
    blob = await _seal(deps, call, key, plaintext, context)
    return key, plaintext, blob


async def generate_data_key(deps: Deps, call: Call, req: GenerateDataKeyRequest) -> Outcome:
    key, plaintext, blob = await _generate_data_key(deps, call, req, "GenerateDataKey")
    return Outcome(
        GenerateDataKeyResult(
            ciphertext_blob=blob,
            key_id=key.arn,
            plaintext=plaintext,
            key_material_id=_current_material_id(key),
        )
    )


async def generate_data_key_without_plaintext(
    deps: Deps, call: Call, req: GenerateDataKeyRequest
) -> Outcome:
    key, _, blob = await _generate_data_key(deps, call, req, "GenerateDataKeyWithoutPlaintext")
    return Outcome(
        GenerateDataKeyResult(
            ciphertext_blob=blob, key_id=key.arn, key_material_id=_current_material_id(key)
        )
    )


def _current_material_id(key: Key) -> str | None:
    current = key.current
    return None if current is None else current.material_id


async def generate_random(deps: Deps, call: Call, req: GenerateRandomRequest) -> Outcome:
    if req.number_of_bytes is None:
        raise ValidationException("NumberOfBytes is required.")
    call.authorize("kms:GenerateRandom", "*", None)
    return Outcome(GenerateRandomResult(plaintext=random_bytes(req.number_of_bytes)))
