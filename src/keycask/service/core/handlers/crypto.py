"""Encrypt, Decrypt, ReEncrypt, GenerateDataKey(WithoutPlaintext), GenerateRandom.

Why one module of ~500 lines: every operation here that opens a ciphertext
goes through one ``_open`` (the blob's header, the key's region and state,
the transit floor, multi-Region sets, HSM-backed keys, external key store
keys), and every one that makes one through one sealing path; split, the
checks would drift apart
between Decrypt and ReEncrypt, which must refuse exactly alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

from keycask.crypto import DecryptFailed, PrivateKey, encryption_algorithms, random_bytes
from keycask.errors import (
    AccessDeniedException,
    DryRunOperationException,
    IncorrectKeyException,
    InvalidCiphertextException,
    InvalidKeyUsageException,
    KMSInternalException,
    ValidationException,
)
from keycask.keys.ids import record_id
from keycask.keys.model import SYMMETRIC_DEFAULT_ALGORITHM, Key, KeySpec, KeyUsage
from keycask.keys.states import require_state
from keycask.keys.wire import (
    BLOB_FORMAT_HSM,
    BLOB_FORMAT_V2,
    BLOB_FORMAT_XKS,
    AnyBlobHeader,
    BlobHeader,
    MrkBlobHeader,
    blob_header,
    encode_context,
    mrk_blob_header,
    open_blob,
    parse_hsm_blob,
    parse_xks_blob,
    seal_blob,
)
from keycask.service.core import hsm_keys, xks_keys
from keycask.service.core.azure_gate import check_gate
from keycask.service.core.call import Call, Outcome
from keycask.service.core.custom_store_types import random_from_store
from keycask.service.core.deps import Deps
from keycask.service.core.gcp_requests import chosen_primary
from keycask.service.core.requests import (
    DecryptRequest,
    EncryptRequest,
    GenerateDataKeyRequest,
    GenerateRandomRequest,
    ReEncryptRequest,
)
from keycask.service.core.resolve import authorize_key, resolve_key, use_key
from keycask.service.core.results import (
    DecryptResult,
    EncryptResult,
    GenerateDataKeyResult,
    GenerateRandomResult,
    ReEncryptResult,
)
from keycask.service.core.transit_requests import Settings
from keycask.service.core.version_gate import check_transit_floors, check_version_state

_DATA_KEY_SPECS = {"AES_256": 32, "AES_128": 16}
DRY_RUN = "The request would have succeeded, but the DryRun option is set."
# One answer for every way a ciphertext can fail, so none tells which it was:
# AWS's, which has no message at all.
_INVALID_CIPHERTEXT = ""
_BELOW_FLOOR = (
    "The ciphertext's key version is below the key's min_decryption_version "
    "(set through the Vault Transit door), so it is no longer decrypted."
)
# The first byte of a multi-Region key's ciphertext (blob format v2), and
# of an HSM-backed key's (v3).
_V2 = bytes((BLOB_FORMAT_V2,))
_V3 = bytes((BLOB_FORMAT_HSM,))
_V4 = bytes((BLOB_FORMAT_XKS,))


# Encryption context keys that only keycask's own operations bind (the XKS
# proxy's binds its AAD's digest as xks:aad-sha256, service/core/xks.py): a
# caller's request naming one is refused, so that no door makes a ciphertext
# another takes for its own, nor opens one of its. The operation that binds
# such keys says so on the call (Call.context_prefix).
RESERVED_CONTEXT_PREFIXES = ("xks:", "azure-keyvault:")


def _context_bytes(call: Call, context: Mapping[str, str] | None) -> bytes:
    """``encode_context`` of a request's context, once its reserved keys are
    checked."""
    if context:
        for name in context:
            for prefix in RESERVED_CONTEXT_PREFIXES:
                if name.startswith(prefix) and call.context_prefix != prefix:
                    raise ValidationException(
                        f"Encryption context keys that begin with {prefix} are reserved "
                        "for keycask's own use."
                    )
    return encode_context(context)


def _algorithm(algorithm: str | None) -> str:
    return algorithm or SYMMETRIC_DEFAULT_ALGORITHM


def _check_algorithm(algorithm: str | None, key: Key) -> None:
    """Symmetric keys take SYMMETRIC_DEFAULT (the default); RSA keys must be
    told which OAEP variant, as AWS requires."""
    if key.key_spec is KeySpec.SYMMETRIC_DEFAULT:
        if algorithm is not None and algorithm != SYMMETRIC_DEFAULT_ALGORITHM:
            raise InvalidKeyUsageException(
                f"{key.arn} key usage is ENCRYPT_DECRYPT; it supports only SYMMETRIC_DEFAULT"
            )
        return
    supported = encryption_algorithms(key.key_spec.value)
    if algorithm not in supported:
        raise InvalidKeyUsageException(
            f"{key.arn} supports encryption algorithms {', '.join(supported)}, "
            f"not {algorithm or SYMMETRIC_DEFAULT_ALGORITHM}."
        )


def _require_usage(key: Key, operation: str, *, symmetric: bool) -> None:
    if key.key_usage is not KeyUsage.ENCRYPT_DECRYPT or (
        symmetric and key.key_spec is not KeySpec.SYMMETRIC_DEFAULT
    ):
        what = "a symmetric encryption key" if symmetric else "an encryption key"
        raise InvalidKeyUsageException(
            f"{key.arn} ({key.key_spec.value}, {key.key_usage.value}) is not {what}; "
            f"{operation} cannot use it."
        )


async def symmetric_key_for(deps: Deps, call: Call, ref: str, operation: str) -> Key:
    """A symmetric encryption key the caller may use for ``operation``
    (GenerateDataKey*, GenerateDataKeyPair*)."""
    stored = await use_key(
        deps.keys, call, ref, "kms:" + operation, state=operation, allow_alias=True
    )
    _require_usage(stored.value, operation, symmetric=True)
    return stored.value


async def seal_for(
    deps: Deps,
    call: Call,
    key: Key,
    plaintext: bytes,
    context: bytes,
    *,
    version: int | None = None,
) -> tuple[bytes, str | None]:
    """A ciphertext blob under the key's primary version (or ``version``, one
    that has been current: Vault Transit's ``key_version``), and that
    version's KeyMaterialId. The primary is the newest version unless the
    Cloud KMS door chose another (``KeySettings.primary``): only a key
    with a Cloud KMS settings document looks, in the document the state
    check reads anyway, and parses it only when it holds a choice."""
    key_id = key.key_id
    stored = await deps.keys.gcp_key(key_id)
    if version is None:
        version = key.current_version
        if stored.revision:
            chosen = chosen_primary(stored.value)
            if chosen is not None and chosen < version:
                await check_transit_floors(deps.keys, key, chosen)
                version = chosen
    # The version's Cloud KMS state first, for every kind of key (an HSM- or
    # XKS-backed key's too), and before its material is looked for: a
    # DESTROYED version has none, and is answered as not enabled.
    check_version_state(key, version, stored)
    if key.xks_key_id is not None:
        # A key of an external key store: keycask's material, then the
        # external key at its XKS proxy (blob v4).
        blob = await xks_keys.seal(deps, call, key, plaintext, context)
        entry = key.version(version)
        return blob, None if entry is None else entry.material_id
    if key.hsm_object is not None:
        # A key held in an HSM: AES-GCM inside its token (blob v3).
        blob = await hsm_keys.seal(deps, call, key, plaintext, context)
        entry = key.version(version)
        return blob, None if entry is None else entry.material_id
    if key.mrk is None:
        material = await deps.keys.material(key_id, version)
        header: AnyBlobHeader = BlobHeader(key_id, version)
    else:
        # A multi-Region key's blob names the set, not this region's copy,
        # so every region holding a copy opens it (format v2).
        material = await deps.keys.key_material(key, version)
        header = MrkBlobHeader(key.mrk, version)
    if material is None:
        raise KMSInternalException("key material is missing")
    blob = seal_blob(material, header, plaintext, context)
    call.used_keys = (*call.used_keys, key_id)
    entry = key.version(version)
    return blob, None if entry is None else entry.material_id


async def _private(deps: Deps, call: Call, key: Key) -> PrivateKey:
    private = await deps.keys.private_key(key)
    if private is None:
        raise KMSInternalException("key material is missing")
    call.used_keys = (*call.used_keys, key.key_id)
    return private


def _no_context(context: Mapping[str, str] | None) -> None:
    if context:
        raise ValidationException("EncryptionContext is not supported with asymmetric keys.")


async def _encrypt_with(
    deps: Deps,
    call: Call,
    key: Key,
    plaintext: bytes,
    *,
    context: Mapping[str, str] | None,
    algorithm: str | None,
) -> tuple[bytes, str | None]:
    """The ciphertext, and the KeyMaterialId of the version that sealed it
    (None for an RSA key, which has no versions)."""
    _check_algorithm(algorithm, key)
    if key.key_spec is KeySpec.SYMMETRIC_DEFAULT:
        return await seal_for(deps, call, key, plaintext, _context_bytes(call, context))
    _no_context(context)
    assert algorithm is not None
    # An Azure Key Vault version's nbf, exp and key_ops, whichever door asks.
    check_gate(key, "Encrypt", deps.clock.now(), await deps.keys.azure_gate(key.key_id))
    try:
        if key.hsm_object is not None:
            return await hsm_keys.encrypt(deps, call, key, algorithm, plaintext), None
        private = await _private(deps, call, key)
        # AWS's RSA ciphertext is the bare RSAES-OAEP output, no envelope.
        return private.encrypt(algorithm, plaintext), None
    except ValueError as error:
        raise ValidationException(str(error)) from None


# What _open gives: the key, the version that sealed the ciphertext (None
# for an RSA ciphertext, which has no versions), and the plaintext. A tuple,
# not a dataclass: a frozen dataclass costs ~0.35 us more to make (thread_time),
# and Decrypt makes one per call.
_Opened = tuple[Key, int | None, bytes]


async def _open_rsa(
    deps: Deps,
    call: Call,
    key: Key,
    blob: bytes,
    context: Mapping[str, str] | None,
    *,
    algorithm: str | None,
    action: str,
    operation: str,
) -> _Opened:
    await authorize_key(call, key, action, state=operation)
    _require_usage(key, operation, symmetric=False)
    _check_algorithm(algorithm, key)
    _no_context(context)
    check_gate(key, "Decrypt", deps.clock.now(), await deps.keys.azure_gate(key.key_id))
    if key.hsm_object is not None:
        return key, None, await hsm_keys.decrypt(deps, call, key, algorithm or "", blob)
    private = await _private(deps, call, key)
    try:
        plaintext = private.decrypt(algorithm or "", blob)
    except DecryptFailed:
        raise InvalidCiphertextException(_INVALID_CIPHERTEXT) from None
    return key, None, plaintext.reveal()


async def _open(
    deps: Deps,
    call: Call,
    blob: bytes,
    context: Mapping[str, str] | None,
    key_ref: str | None,
    *,
    algorithm: str | None,
    action: str,
    operation: str,
) -> _Opened:
    """Open a ciphertext the caller may decrypt with what it says of it (its
    context, the key it expects, the algorithm). The lookup of the key the
    ciphertext names and authorize_key's body are inline: Decrypt comes
    here, and each saved a coroutine (same checks, same order)."""
    keys = deps.keys
    expected = None
    if key_ref is not None:
        expected = (await resolve_key(keys, call, key_ref, allow_alias=True)).value
        if expected.key_spec.is_asymmetric:
            return await _open_rsa(
                deps,
                call,
                expected,
                blob,
                context,
                algorithm=algorithm,
                action=action,
                operation=operation,
            )
    caller = call.caller
    assert caller is not None
    mrk: bytes | None = None
    hsm = blob[:1] == _V3
    xks = blob[:1] == _V4
    if xks:
        # A key of an external key store (blob v4): its header is v1's shape.
        parts = parse_xks_blob(blob)
        key_id, version = parts.key_id, parts.version
    elif hsm:
        # A key held in an HSM (blob v3): it has one version.
        key_id, version = parse_hsm_blob(blob)[0], 1
    elif blob[:1] == _V2:
        # A multi-Region ciphertext opens in any region holding a copy of
        # its set: the copy here is found by its record id for this region.
        mrk, version = mrk_blob_header(blob)
        key_id = record_id(mrk, caller.region)
    else:
        key_id, version = blob_header(blob)
    stored = await keys.get(key_id)
    if stored is not None and stored.value.region != caller.region:
        stored = None  # the key a ciphertext names must be in the caller's region
    if expected is not None and expected.key_id != key_id:
        call.key_arn = expected.arn
        if mrk is not None and stored is None and not await keys.mrk_existed(mrk):
            # A v2 blob of a set that never existed is not a ciphertext of
            # ours at all, whatever key the caller expected.
            raise InvalidCiphertextException(_INVALID_CIPHERTEXT)
        raise IncorrectKeyException(
            "The key ID in the request does not identify a KMS key that can perform this operation."
        )
    if stored is None:
        # A ciphertext whose key was deleted, or lives in another region: AWS
        # answers AccessDenied with this message. A key id keycask never had
        # means the bytes are not a ciphertext of ours at all.
        if mrk is not None:
            known = await keys.mrk_existed(mrk)
        else:
            known = await keys.was_deleted(key_id) or await keys.get(key_id) is not None
        if not known:
            raise InvalidCiphertextException(_INVALID_CIPHERTEXT)
        raise AccessDeniedException(
            "The ciphertext refers to a customer master key that does not exist, "
            "does not exist in this region, or you are not allowed to access."
        )
    key = stored.value
    call.key_arn = key.arn
    await call.authorize(action, key)
    require_state(operation, key)
    _require_usage(key, operation, symmetric=True)
    _check_algorithm(algorithm, key)
    encoded = _context_bytes(call, context)
    # Only versions that have been current can have ciphertexts: material
    # waiting for a rotation (or never issued) opens nothing.
    if version > key.current_version:
        raise InvalidCiphertextException(_INVALID_CIPHERTEXT)
    # A floor set through the Vault Transit door (min_decryption_version)
    # is the key's, not the door's: a transit ciphertext's blob must not
    # open through this door once transit refuses its version.
    settings = await keys.transit_settings(key_id)
    if settings.revision and version < Settings.from_doc(settings.value).min_decryption_version:
        raise InvalidCiphertextException(_BELOW_FLOOR)
    # So is a version's state set through the Cloud KMS door (disabled,
    # scheduled for destruction, destroyed).
    check_version_state(key, version, await keys.gcp_key(key_id))
    if xks or key.xks_key_id is not None:
        # Only a v4 blob opens under an external key store's key, and a v4
        # blob under no other key (xks_keys.open_blob checks the key).
        if not xks:
            raise InvalidCiphertextException(_INVALID_CIPHERTEXT)
        plaintext = await xks_keys.open_blob(deps, call, key, blob, encoded)
        return key, version, plaintext
    if hsm:
        plaintext = await hsm_keys.open_blob(deps, call, key, blob, encoded)
        return key, version, plaintext
    material = (
        await keys.material(key_id, version)
        if mrk is None
        else await keys.key_material(key, version)
    )
    if material is None:
        raise InvalidCiphertextException(_INVALID_CIPHERTEXT)
    plaintext = open_blob(material, blob, encoded)
    call.used_keys = (*call.used_keys, key_id)
    return key, version, plaintext


async def encrypt(deps: Deps, call: Call, req: EncryptRequest) -> Outcome:
    algorithm = req.encryption_algorithm
    context = req.encryption_context
    call.encryption_context = context
    call.conditions["kms:EncryptionAlgorithm"] = algorithm or SYMMETRIC_DEFAULT_ALGORITHM
    key = (
        await use_key(deps.keys, call, req.key_id, "kms:Encrypt", state="Encrypt", allow_alias=True)
    ).value
    _require_usage(key, "Encrypt", symmetric=False)
    _check_algorithm(algorithm, key)
    if key.key_spec is KeySpec.SYMMETRIC_DEFAULT:
        # _encrypt_with's symmetric branch, inline: the algorithm is checked
        # and the context encoded (an unencodable one refused) once, and one
        # coroutine fewer runs per Encrypt.
        blob, _ = await seal_for(deps, call, key, req.plaintext, _context_bytes(call, context))
    else:
        blob, _ = await _encrypt_with(
            deps, call, key, req.plaintext, context=context, algorithm=algorithm
        )
    # DryRun answers only once everything a real call checks has passed.
    if req.dry_run:
        raise DryRunOperationException(DRY_RUN)
    return Outcome(
        EncryptResult(
            ciphertext_blob=blob,
            key_id=key.arn,
            encryption_algorithm=algorithm or SYMMETRIC_DEFAULT_ALGORITHM,
        )
    )


async def decrypt(deps: Deps, call: Call, req: DecryptRequest) -> Outcome:
    algorithm = req.encryption_algorithm or SYMMETRIC_DEFAULT_ALGORITHM
    context = req.encryption_context
    call.encryption_context = context
    call.conditions["kms:EncryptionAlgorithm"] = algorithm
    key, version, plaintext = await _open(
        deps,
        call,
        req.ciphertext_blob,
        context,
        req.key_id,
        algorithm=req.encryption_algorithm,
        action="kms:Decrypt",
        operation="Decrypt",
    )
    entry = None if version is None else key.version(version)
    # DryRun answers only once everything a real call checks has passed.
    if req.dry_run:
        raise DryRunOperationException(DRY_RUN)
    return Outcome(
        DecryptResult(
            key_id=key.arn,
            plaintext=plaintext,
            encryption_algorithm=algorithm,
            key_material_id=None if entry is None else entry.material_id,
        )
    )


async def re_encrypt(deps: Deps, call: Call, req: ReEncryptRequest) -> Outcome:
    call.encryption_context = req.source_encryption_context
    call.conditions["kms:EncryptionAlgorithm"] = _algorithm(req.source_encryption_algorithm)
    source, version, plaintext = await _open(
        deps,
        call,
        req.ciphertext_blob,
        req.source_encryption_context,
        req.source_key_id,
        algorithm=req.source_encryption_algorithm,
        action="kms:ReEncryptFrom",
        operation="ReEncrypt",
    )
    source_version = None if version is None else source.version(version)
    call.detail = f"re-encrypted from {source.arn}"
    # The destination is authorized under its own algorithm and context.
    call.conditions["kms:EncryptionAlgorithm"] = _algorithm(req.destination_encryption_algorithm)
    call.conditions.pop("kms:RequestAlias", None)
    call.encryption_context = req.destination_encryption_context
    # Known only once the destination is resolved; set before it is authorized.
    named = await resolve_key(deps.keys, call, req.destination_key_id, allow_alias=True)
    call.conditions["kms:ReEncryptOnSameKey"] = named.value.key_id == source.key_id
    dest = (
        await use_key(
            deps.keys,
            call,
            req.destination_key_id,
            "kms:ReEncryptTo",
            state="ReEncrypt",
            allow_alias=True,
        )
    ).value
    _require_usage(dest, "ReEncrypt", symmetric=False)
    call.encryption_context = req.source_encryption_context  # the audit record keeps the source's
    _check_algorithm(req.destination_encryption_algorithm, dest)
    if dest.key_spec is KeySpec.SYMMETRIC_DEFAULT:
        _context_bytes(call, req.destination_encryption_context)
    blob, destination_material_id = await _encrypt_with(
        deps,
        call,
        dest,
        plaintext,
        context=req.destination_encryption_context,
        algorithm=req.destination_encryption_algorithm,
    )
    # DryRun answers only once everything a real call checks has passed.
    if req.dry_run:
        raise DryRunOperationException(DRY_RUN)
    return Outcome(
        ReEncryptResult(
            ciphertext_blob=blob,
            source_key_id=source.arn,
            key_id=dest.arn,
            source_encryption_algorithm=req.source_encryption_algorithm
            or SYMMETRIC_DEFAULT_ALGORITHM,
            destination_encryption_algorithm=req.destination_encryption_algorithm
            or SYMMETRIC_DEFAULT_ALGORITHM,
            # Present only for symmetric keys, as in AWS.
            source_key_material_id=None if source_version is None else source_version.material_id,
            destination_key_material_id=destination_material_id,
        )
    )


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
    operation: str, with_plaintext: bool, deps: Deps, call: Call, req: GenerateDataKeyRequest
) -> Outcome:
    """GenerateDataKey (``with_plaintext``) or GenerateDataKeyWithoutPlaintext.
    symmetric_key_for's body is inline, and each operation is this coroutine
    with its first two arguments bound (below), not a coroutine awaiting it:
    two coroutines fewer per call, same checks in the same order."""
    context = req.encryption_context
    call.encryption_context = context
    call.conditions["kms:EncryptionAlgorithm"] = SYMMETRIC_DEFAULT_ALGORITHM
    size = _data_key_size(req)
    key = (
        await use_key(
            deps.keys, call, req.key_id, "kms:" + operation, state=operation, allow_alias=True
        )
    ).value
    _require_usage(key, operation, symmetric=True)
    encoded = _context_bytes(call, context)
    plaintext = random_bytes(size)
    blob, material_id = await seal_for(deps, call, key, plaintext, encoded)
    # DryRun answers only once everything a real call checks has passed.
    if req.dry_run:
        raise DryRunOperationException(DRY_RUN)
    return Outcome(
        GenerateDataKeyResult(
            ciphertext_blob=blob,
            key_id=key.arn,
            plaintext=plaintext if with_plaintext else None,
            key_material_id=material_id,
        )
    )


# Handlers as operations.py calls them, (deps, call, request): the KMS door's
# own partial(handler, deps) flattens into one partial of _generate_data_key.
generate_data_key = partial(_generate_data_key, "GenerateDataKey", True)
generate_data_key_without_plaintext = partial(
    _generate_data_key, "GenerateDataKeyWithoutPlaintext", False
)


async def generate_random(deps: Deps, call: Call, req: GenerateRandomRequest) -> Outcome:
    if req.number_of_bytes is None:
        raise ValidationException("NumberOfBytes is required.")
    await call.authorize("kms:GenerateRandom")
    if req.custom_key_store_id is not None:
        # From the HSM of an AWS_CLOUDHSM key store, as AWS takes it from
        # the store's CloudHSM cluster.
        plaintext = await random_from_store(
            deps, call, req.custom_key_store_id, req.number_of_bytes
        )
        return Outcome(GenerateRandomResult(plaintext=plaintext))
    return Outcome(GenerateRandomResult(plaintext=random_bytes(req.number_of_bytes)))
