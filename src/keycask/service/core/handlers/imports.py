"""GetParametersForImport, ImportKeyMaterial, DeleteImportedKeyMaterial:
keys whose material the customer brings (Origin EXTERNAL).

GetParametersForImport makes an RSA wrapping key for one import and keeps its
private half behind the barrier under ``import/<key id>/<token id>``; the
import token names that entry and the key, and nothing else (it is not a
secret: without the private key it opens nothing). A token is valid for 24
hours of lifecycle time and only for the key it was made for.

Imported material keeps an identity (its KeyMaterialId, a PRF of the material
and the key id) after it is deleted or expires, so the *same* material can be
imported again and old ciphertexts decrypt once more, while different
material is refused: it would make them undecryptable.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

from keycask.crypto import (
    WRAPPING_ALGORITHMS,
    WRAPPING_KEY_SPECS,
    KeyMaterial,
    UnwrapFailed,
    WrappingKey,
    generate_wrapping_key,
    key_material_id,
    random_bytes,
    unwrap_key_material,
)
from keycask.errors import (
    ExpiredImportTokenException,
    IncorrectKeyMaterialException,
    InvalidCiphertextException,
    InvalidImportTokenException,
    KMSInvalidStateException,
    LimitExceededException,
    NotFoundException,
    UnsupportedOperationException,
    ValidationException,
)
from keycask.keys.keystore import Stored, import_token_expiry
from keycask.keys.model import (
    MAX_ON_DEMAND_ROTATIONS,
    ExpirationModel,
    Key,
    KeySpec,
    KeyVersion,
    Origin,
    RotationType,
)
from keycask.keys.states import require_state
from keycask.ports import Write
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.offload import run_slow
from keycask.service.core.requests import (
    DeleteImportedKeyMaterialRequest,
    GetParametersForImportRequest,
    ImportKeyMaterialRequest,
)
from keycask.service.core.resolve import authorize_key, use_key
from keycask.service.core.results import (
    GetParametersForImportResult,
    ImportKeyMaterialResult,
)

TOKEN_LIFETIME = timedelta(hours=24)
MAX_VALID_TO = timedelta(days=365)
# Token: format | key id (16) | token id (16) | expiry (8, epoch seconds, BE).
# The expiry is a hint for the error only: after the scheduler has swept the
# stored parameters, an old token still says "expired" rather than "invalid".
# Forging it gains nothing: every path without stored parameters refuses.
_TOKEN_FORMAT = 0x01
_TOKEN_SIZE = 1 + 16 + 16 + 8
_MATERIAL_SIZE = {KeySpec.SYMMETRIC_DEFAULT: 32}


def _require_external(key: Key) -> None:
    if key.origin is not Origin.EXTERNAL:
        raise UnsupportedOperationException(
            f"{key.arn} origin is {key.origin.value} which is not valid for this operation."
        )


# -- wrapping keys (shared with the Cloud KMS door's import jobs) --


def stage_wrapping_key(
    deps: Deps,
    owner: uuid.UUID,
    entry_id: str,
    *,
    algorithm: str,
    wrapping: WrappingKey,
    valid_to: datetime,
) -> list[Write]:
    """The writes that keep ``wrapping``'s private half behind the barrier
    at ``import/<owner>/<entry_id>`` until ``valid_to``, when the scheduler
    (its JOB_TOKENS sweep) deletes it. ``owner``: a key id (AWS import
    parameters) or a Cloud KMS import job's own id."""
    entry = orjson.dumps(
        {
            "algorithm": algorithm,
            "expires": valid_to.timestamp(),
            "private": base64.b64encode(wrapping.private_der.reveal()).decode(),
        }
    )
    return [
        deps.keys.stage_import_token(owner, entry_id, entry),
        # The scheduler deletes them when they expire.
        deps.keys.stage_token_sweep(owner, valid_to.timestamp()),
    ]


async def unwrap_with(entry: bytes, wrapped: bytes) -> KeyMaterial:
    """The material ``wrapped`` holds, opened with the private key of a
    stored wrapping entry (``stage_wrapping_key``) under its algorithm.
    Raises UnwrapFailed for anything the client sent wrong."""
    doc = orjson.loads(entry)
    private = KeyMaterial.any_size(base64.b64decode(doc["private"]))
    return await run_slow(unwrap_key_material, private, doc["algorithm"], wrapped)


# -- GetParametersForImport --


async def get_parameters_for_import(
    deps: Deps, call: Call, req: GetParametersForImportRequest
) -> Outcome:
    call.conditions["kms:WrappingAlgorithm"] = req.wrapping_algorithm
    call.conditions["kms:WrappingKeySpec"] = req.wrapping_key_spec
    stored = await use_key(deps.keys, call, req.key_id, "kms:GetParametersForImport")
    key = stored.value
    _require_external(key)
    require_state("GetParametersForImport", key)
    if req.wrapping_key_spec not in WRAPPING_KEY_SPECS:
        raise UnsupportedOperationException(
            f"WrappingKeySpec {req.wrapping_key_spec} is not supported in this region."
        )
    if req.wrapping_algorithm == "RSAES_PKCS1_V1_5":
        raise ValidationException(
            "WrappingAlgorithm RSAES_PKCS1_V1_5 is no longer supported; "
            "use RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256."
        )
    if req.wrapping_algorithm not in WRAPPING_ALGORITHMS:
        raise UnsupportedOperationException(
            f"WrappingAlgorithm {req.wrapping_algorithm} is not supported in this region."
        )
    # RSA key generation takes up to seconds at 4096 bits: not on the event loop.
    wrapping = await run_slow(generate_wrapping_key, req.wrapping_key_spec)
    now = deps.clock.now()
    valid_to = now + TOKEN_LIFETIME
    token_id = random_bytes(16)
    writes = stage_wrapping_key(
        deps,
        key.key_id,
        token_id.hex(),
        algorithm=req.wrapping_algorithm,
        wrapping=wrapping,
        valid_to=valid_to,
    )
    token = (
        bytes([_TOKEN_FORMAT])
        + key.key_id.bytes
        + token_id
        + math.ceil(valid_to.timestamp()).to_bytes(8, "big")
    )
    return Outcome(
        GetParametersForImportResult(
            key_id=key.arn,
            import_token=token,
            public_key=wrapping.public_der,
            parameters_valid_to=valid_to,
        ),
        writes,
    )


# -- ImportKeyMaterial --


def _expiration(
    req: ImportKeyMaterialRequest, now: datetime
) -> tuple[ExpirationModel, datetime | None]:
    model = ExpirationModel(req.expiration_model or ExpirationModel.KEY_MATERIAL_EXPIRES)
    if model is ExpirationModel.KEY_MATERIAL_DOES_NOT_EXPIRE:
        if req.valid_to is not None:
            raise ValidationException(
                "ValidTo must be omitted when ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE."
            )
        return model, None
    if req.valid_to is None:
        raise ValidationException(
            "ValidTo is required when ExpirationModel is KEY_MATERIAL_EXPIRES."
        )
    if req.valid_to <= now:
        raise ValidationException("ValidTo must be in the future.")
    if req.valid_to > now + MAX_VALID_TO:
        raise ValidationException("ValidTo must be at most 365 days from now.")
    return model, req.valid_to


async def _unwrap(deps: Deps, key: Key, token: bytes, wrapped: bytes, now: datetime) -> KeyMaterial:
    if len(token) != _TOKEN_SIZE or token[0] != _TOKEN_FORMAT:
        raise InvalidImportTokenException("The import token is invalid.")
    if uuid.UUID(bytes=token[1:17]) != key.key_id:
        raise InvalidImportTokenException(
            "The import token is invalid or associated with a different KMS key."
        )
    found = await deps.keys.import_token(key.key_id, token[17:33].hex())
    if found is None and int.from_bytes(token[33:], "big") <= now.timestamp():
        raise ExpiredImportTokenException(
            "The import token has expired. Use GetParametersForImport to get a new one."
        )
    if found is None:
        raise InvalidImportTokenException(
            "The import token is invalid or associated with a different KMS key."
        )
    expires = import_token_expiry(found.value)
    if int.from_bytes(token[33:], "big") != math.ceil(expires):
        raise InvalidImportTokenException("The import token is invalid.")
    if expires <= now.timestamp():
        raise ExpiredImportTokenException(
            "The import token has expired. Use GetParametersForImport to get a new one."
        )
    try:
        return await unwrap_with(found.value, wrapped)
    except UnwrapFailed:
        raise InvalidCiphertextException(
            "The key material could not be decrypted with the wrapping key of this import token."
        ) from None


async def import_key_material(deps: Deps, call: Call, req: ImportKeyMaterialRequest) -> Outcome:
    call.conditions["kms:ExpirationModel"] = (
        req.expiration_model or ExpirationModel.KEY_MATERIAL_EXPIRES.value
    )
    if req.valid_to is not None:
        call.conditions["kms:ValidTo"] = str(int(req.valid_to.timestamp()))
    stored = await use_key(deps.keys, call, req.key_id, "kms:ImportKeyMaterial")
    key = stored.value
    _require_external(key)
    require_state("ImportKeyMaterial", key)
    now = deps.clock.now()
    model, valid_to = _expiration(req, now)
    material = await _unwrap(deps, key, req.import_token, req.encrypted_key_material, now)
    outcome, _ = await add_key_material(
        deps,
        call,
        stored,
        material,
        Imported(
            import_type=req.import_type,
            model=model,
            valid_to=valid_to,
            key_material_id=req.key_material_id,
            description=req.key_material_description,
        ),
    )
    return outcome


@dataclass(frozen=True, slots=True)
class Imported:
    """How unwrapped material joins its key (ImportKeyMaterial's fields).
    ``promote``: new material joins a key that has some as its current
    version at once (a rotation to it, kms:RotateKeyOnDemand, as Cloud KMS's
    import makes an ENABLED version), instead of waiting for
    RotateKeyOnDemand (PENDING_ROTATION, AWS's way)."""

    import_type: str | None = None
    model: ExpirationModel = ExpirationModel.KEY_MATERIAL_DOES_NOT_EXPIRE
    valid_to: datetime | None = None
    key_material_id: str | None = None
    description: str | None = None
    promote: bool = False


async def add_key_material(
    deps: Deps, call: Call, stored: Stored[Key], material: KeyMaterial, how: Imported
) -> tuple[Outcome, Key]:
    """Unwrapped material into its key, already authorized
    (kms:ImportKeyMaterial) and checked to be EXTERNAL: ImportKeyMaterial's
    core, shared by the AWS door and the Cloud KMS door's
    cryptoKeyVersions.import (``core/gcp_imports.py``). Returns the outcome
    and the key as it will be once its writes commit."""
    key = stored.value
    size = _MATERIAL_SIZE.get(key.key_spec)
    if size is None or len(material) != size:
        raise IncorrectKeyMaterialException(
            f"Key material for a {key.key_spec.value} key must be {size} bytes (256 bits)."
        )
    material = KeyMaterial(material.reveal())
    material_id = key_material_id(material, key.material_owner)
    import_type = how.import_type or (
        "EXISTING_KEY_MATERIAL" if key.versions else "NEW_KEY_MATERIAL"
    )
    if how.key_material_id is not None:
        if import_type == "NEW_KEY_MATERIAL":
            raise ValidationException(
                "KeyMaterialId cannot be given with ImportType NEW_KEY_MATERIAL."
            )
        if how.key_material_id != material_id:
            raise IncorrectKeyMaterialException(
                "The key material does not match the KeyMaterialId in the request."
            )
    existing = next((v for v in key.versions if v.material_id == material_id), None)
    if import_type == "EXISTING_KEY_MATERIAL":
        if existing is None:
            raise IncorrectKeyMaterialException(
                "The key material is not the key material previously imported into this key."
            )
        return _reimport(deps, stored, existing, material=material, how=how)
    if existing is not None:
        raise IncorrectKeyMaterialException(
            "This key material is already associated with the key; import it with "
            "ImportType EXISTING_KEY_MATERIAL."
        )
    if key.pending_rotation is not None:
        raise KMSInvalidStateException(
            f"{key.arn} already has key material pending rotation; rotate to it or delete it first."
        )
    number = key.next_version()
    version = KeyVersion(
        version=number,
        material_id=material_id,
        imported=True,
        expiration_model=how.model,
        valid_to=how.valid_to,
        description=how.description,
    )
    if not key.versions:
        # The first material becomes current at once; later ones wait for
        # RotateKeyOnDemand (state PENDING_ROTATION), unless promoted.
        new = key.replace(
            current_version=number, versions=(version,), last_version=number
        ).settled()
    elif how.promote:
        new = await _promoted(deps, call, key, version)
    else:
        new = key.replace(versions=(*key.versions, version), last_version=number)
    call.detail = f"imported key material {material_id}"
    writes = deps.keys.stage_update(stored, new)
    writes.append(deps.keys.stage_key_material(key, number, material))
    result = ImportKeyMaterialResult(key_id=key.arn, key_material_id=material_id)
    return Outcome(result, writes), new


async def _promoted(deps: Deps, call: Call, key: Key, version: KeyVersion) -> Key:
    """``key`` with new imported material as its current version: what
    ImportKeyMaterial then RotateKeyOnDemand make, authorized and bounded
    as that rotation is (kms:RotateKeyOnDemand, AWS's 25 per key)."""
    await authorize_key(call, key, "kms:RotateKeyOnDemand")
    if key.on_demand_rotations >= MAX_ON_DEMAND_ROTATIONS:
        raise LimitExceededException(
            f"{key.arn} has reached the limit of {MAX_ON_DEMAND_ROTATIONS} on-demand rotations."
        )
    current = dataclasses.replace(
        version, rotated=deps.clock.now(), rotation_type=RotationType.ON_DEMAND
    )
    return key.replace(
        current_version=version.version,
        versions=(*key.versions, current),
        last_version=version.version,
        on_demand_rotations=key.on_demand_rotations + 1,
    ).settled()


def _reimport(
    deps: Deps,
    stored: Stored[Key],
    existing: KeyVersion,
    *,
    material: KeyMaterial,
    how: Imported,
) -> tuple[Outcome, Key]:
    key = stored.value
    updated = KeyVersion(
        version=existing.version,
        material_id=existing.material_id,
        rotated=existing.rotated,
        rotation_type=existing.rotation_type,
        imported=True,
        expiration_model=how.model,
        valid_to=how.valid_to,
        description=how.description or existing.description,
    )
    versions = tuple(updated if v.version == existing.version else v for v in key.versions)
    new = key.replace(versions=versions).settled()
    writes = deps.keys.stage_update(stored, new)
    if not existing.imported:
        writes.append(deps.keys.stage_key_material(key, existing.version, material))
    result = ImportKeyMaterialResult(key_id=key.arn, key_material_id=existing.material_id)
    return Outcome(result, writes), new


# -- DeleteImportedKeyMaterial --


async def delete_imported_key_material(
    deps: Deps, call: Call, req: DeleteImportedKeyMaterialRequest
) -> Outcome:
    stored = await use_key(
        deps.keys,
        call,
        req.key_id,
        "kms:DeleteImportedKeyMaterial",
        state="DeleteImportedKeyMaterial",
    )
    key = stored.value
    _require_external(key)
    if req.key_material_id is not None:
        target = next((v for v in key.versions if v.material_id == req.key_material_id), None)
        if target is None:
            raise NotFoundException(
                f"Key material {req.key_material_id} is not associated with {key.arn}."
            )
    else:
        target = key.current
    pending = target is not None and target.version > key.current_version
    if target is None or (not target.imported and not pending):
        # Nothing to delete (PendingImport): no effect, as in AWS.
        return Outcome(
            ImportKeyMaterialResult(
                key_id=key.arn, key_material_id=None if target is None else target.material_id
            )
        )
    if pending:
        # Material waiting for rotation was never used: forget it entirely,
        # also once it expired, so that other material can take its place.
        versions = tuple(v for v in key.versions if v.version != target.version)
        new = key.replace(versions=versions)
    else:
        gone = KeyVersion(
            version=target.version,
            material_id=target.material_id,
            rotated=target.rotated,
            rotation_type=target.rotation_type,
            imported=False,
            expiration_model=target.expiration_model,
            valid_to=None,
            description=target.description,
        )
        versions = tuple(gone if v.version == target.version else v for v in key.versions)
        new = key.replace(versions=versions).settled()
    call.detail = f"deleted key material {target.material_id}"
    writes = deps.keys.stage_update(stored, new)
    if target.imported:
        writes.append(deps.keys.stage_delete_key_material(key, target.version))
    return Outcome(
        ImportKeyMaterialResult(key_id=key.arn, key_material_id=target.material_id), writes
    )
