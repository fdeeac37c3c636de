"""Cloud KMS import jobs and cryptoKeyVersions.import, over the AWS door's
import (``handlers/imports.py``).

An import job ``projects/P/locations/L/keyRings/R/importJobs/J`` is an RSA
wrapping key made for a key ring, as GetParametersForImport makes one for a
key. Its public half and its times are a document behind the barrier at
``gcp/job/<account>/P/L/R/J``; its private half is an entry at
``import/<job id>/job`` (the job's own random id), kept as AWS import
parameters are, so the scheduler's sweep of expired import parameters
(JOB_TOKENS) deletes it when the job expires, 3 days after it was made (as
Cloud KMS's jobs do), judged on keycask's clock. An expired job's document
stays (state EXPIRED, as Cloud KMS keeps it), without its public key. An
account makes at most ``MAX_JOBS`` import jobs in a region: like key rings,
they cannot be deleted.

Each import method is an AWS wrapping algorithm and key spec: the
``RSA_OAEP_*_AES_256`` methods are RSA_AES_KEY_WRAP_SHA_1/256 (RSA-OAEP of
an ephemeral AES-256 key, then AES-KWP of the key, CKM_RSA_AES_KEY_WRAP),
``RSA_OAEP_*_SHA256`` RSAES_OAEP_SHA_256.

cryptoKeyVersions.import unwraps with the job's private key and adds the
material to the crypto key's keycask key through ImportKeyMaterial's core
(``imports.add_key_material``): kms:ImportKeyMaterial on the key, and, for
a key that has versions already, kms:RotateKeyOnDemand too, since the new
version becomes the primary at once (Cloud KMS's imported version is
ENABLED; keycask encrypts under its newest version). keycask imports
symmetric material only (32 bytes, GOOGLE_SYMMETRIC_ENCRYPTION), into a
crypto key created importOnly (its keycask key's Origin is EXTERNAL).
"""

from __future__ import annotations

import base64
import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

import orjson

from keycask.crypto import UnwrapFailed, WrappingKey, generate_wrapping_key
from keycask.errors import (
    AlreadyExistsException,
    KMSInvalidStateException,
    LimitExceededException,
    NotFoundException,
    ValidationException,
)
from keycask.keys.model import ExpirationModel, Key, KeySpec, KeyState, Origin
from keycask.keys.states import require_state
from keycask.service.core import requests as aws
from keycask.service.core.call import Call, Outcome
from keycask.service.core.deps import Deps
from keycask.service.core.gcp_requests import (
    SYMMETRIC,
    KeyName,
    KeySettings,
    RingName,
    VersionResult,
)
from keycask.service.core.handlers import imports
from keycask.service.core.offload import run_slow
from keycask.service.core.resolve import use_key

# Cloud KMS import method -> (AWS wrapping key spec, AWS wrapping algorithm).
METHODS: Final = {
    "RSA_OAEP_3072_SHA1_AES_256": ("RSA_3072", "RSA_AES_KEY_WRAP_SHA_1"),
    "RSA_OAEP_4096_SHA1_AES_256": ("RSA_4096", "RSA_AES_KEY_WRAP_SHA_1"),
    "RSA_OAEP_3072_SHA256_AES_256": ("RSA_3072", "RSA_AES_KEY_WRAP_SHA_256"),
    "RSA_OAEP_4096_SHA256_AES_256": ("RSA_4096", "RSA_AES_KEY_WRAP_SHA_256"),
    "RSA_OAEP_3072_SHA256": ("RSA_3072", "RSAES_OAEP_SHA_256"),
    "RSA_OAEP_4096_SHA256": ("RSA_4096", "RSAES_OAEP_SHA_256"),
}
_MODULUS_BYTES: Final = {"RSA_3072": 384, "RSA_4096": 512}
# A 32-byte key wrapped with AES-KWP (RFC 5649): 40 bytes.
_KWP_32: Final = 40
_SYMMETRIC_SIZE: Final = 32
JOB_LIFETIME: Final = timedelta(days=3)
# Import jobs per account and region, over all its projects (they cannot be
# deleted, as key rings cannot: gcp.MAX_RINGS).
MAX_JOBS: Final = 1000
# The entry under ``import/<job id>/`` that holds the job's private key.
_ENTRY: Final = "job"
_PAGE_MAX: Final = 1000
ACTIVE: Final = "ACTIVE"
EXPIRED: Final = "EXPIRED"


@dataclass(frozen=True, slots=True)
class JobName:
    project: str
    location: str
    ring: str
    job: str

    @property
    def parent(self) -> RingName:
        return RingName(self.project, self.location, self.ring)

    @property
    def name(self) -> str:
        return f"{self.parent.name}/importJobs/{self.job}"


@dataclass(frozen=True, slots=True)
class CreateJobRequest:
    parent: RingName
    job_id: str
    method: str
    protection_level: str


@dataclass(frozen=True, slots=True)
class JobRequest:
    name: JobName


@dataclass(frozen=True, slots=True)
class ListJobsRequest:
    parent: RingName
    page_size: int
    after: str = ""


@dataclass(frozen=True, slots=True)
class ImportVersionRequest:
    name: KeyName
    algorithm: str
    job: JobName
    wrapped: bytes = field(repr=False)
    # cryptoKeyVersion: re-import into this version (None: a new version).
    version: int | None = None


@dataclass(frozen=True, slots=True)
class JobResult:
    name: JobName
    method: str
    protection_level: str
    created: datetime
    expires: datetime
    public_der: bytes
    state: str


@dataclass(frozen=True, slots=True)
class JobsResult:
    items: tuple[JobResult, ...]
    next_after: str | None
    whole: bool = False


def _job_doc(job_id: uuid.UUID, req: CreateJobRequest, public: bytes, now: datetime) -> bytes:
    return orjson.dumps(
        {
            "id": str(job_id),
            "method": req.method,
            "protection_level": req.protection_level,
            "create_time": now.timestamp(),
            "expire_time": (now + JOB_LIFETIME).timestamp(),
            "public": base64.b64encode(public).decode(),
        }
    )


def _job_result(name: JobName, raw: bytes, now: datetime) -> JobResult:
    doc = orjson.loads(raw)
    expires = datetime.fromtimestamp(float(doc["expire_time"]), UTC)
    return JobResult(
        name,
        doc["method"],
        doc["protection_level"],
        datetime.fromtimestamp(float(doc["create_time"]), UTC),
        expires,
        base64.b64decode(doc["public"]),
        ACTIVE if now < expires else EXPIRED,
    )


async def _ring_exists(deps: Deps, call: Call, ring: RingName) -> None:
    stored = await deps.keys.gcp_ring(call.account, ring.project, ring.location, ring.ring)
    if not stored.revision:
        raise NotFoundException(f"KeyRing {ring.name} not found.")


def _authorize_create(call: Call, req: CreateJobRequest) -> tuple[str, str]:
    """The method's AWS key spec and algorithm, set as the conditions
    GetParametersForImport's authorization sees."""
    spec, algorithm = METHODS[req.method]
    call.conditions["kms:WrappingAlgorithm"] = algorithm
    call.conditions["kms:WrappingKeySpec"] = spec
    return spec, algorithm


async def prepare_job(deps: Deps, call: Call, req: CreateJobRequest) -> None:
    """The job's RSA key, made before the write lock is taken (3072 and
    4096 bits take up to seconds), once the caller may make it."""
    if req.protection_level != "SOFTWARE":
        return
    spec, _ = _authorize_create(call, req)
    await call.authorize("kms:GetParametersForImport")
    call.prepared = (req.method, await run_slow(generate_wrapping_key, spec))


async def _wrapping_key(call: Call, req: CreateJobRequest, spec: str) -> WrappingKey:
    prepared, call.prepared = call.prepared, None
    if isinstance(prepared, tuple) and prepared[0] == req.method:
        made = prepared[1]
        assert isinstance(made, WrappingKey)
        return made
    return await run_slow(generate_wrapping_key, spec)


async def create_job(deps: Deps, call: Call, req: CreateJobRequest) -> Outcome:
    """An import job: authorized as ``kms:GetParametersForImport`` (on
    ``*``, as key rings are made under kms:CreateKey on ``*``): it makes
    what GetParametersForImport makes, a wrapping key, for a key ring."""
    spec, algorithm = _authorize_create(call, req)
    await call.authorize("kms:GetParametersForImport")
    if req.protection_level != "SOFTWARE":
        raise KMSInvalidStateException(
            f"protection level {req.protection_level} is not available for import jobs: "
            "keycask's Cloud KMS door makes SOFTWARE keys, and imports into them (HSM keys "
            "need the server's PKCS#11 key store, which this door does not reach yet)"
        )
    parent = req.parent
    name = JobName(parent.project, parent.location, parent.ring, req.job_id)
    await _ring_exists(deps, call, parent)
    found = await deps.keys.gcp_job(
        call.account, parent.project, parent.location, parent.ring, req.job_id
    )
    if found.revision:
        raise AlreadyExistsException(f"ImportJob {name.name} already exists.")
    counted = await deps.keys.gcp_job_count(call.account, call.region)
    count = int(orjson.loads(counted.value)) if counted.revision else 0
    if count >= MAX_JOBS:
        raise LimitExceededException(
            f"This account has {count} import jobs in {call.region}, the limit: import jobs "
            "cannot be deleted."
        )
    wrapping = await _wrapping_key(call, req, spec)
    now = deps.clock.now()
    job_id = uuid.uuid4()
    raw = _job_doc(job_id, req, wrapping.public_der, now)
    writes = [
        deps.keys.stage_gcp_job(
            call.account, parent.project, parent.location, parent.ring, req.job_id, value=raw
        ),
        deps.keys.stage_gcp_job_count(
            call.account, call.region, orjson.dumps(count + 1), expect=counted.revision
        ),
        *imports.stage_wrapping_key(
            deps,
            job_id,
            _ENTRY,
            algorithm=algorithm,
            wrapping=wrapping,
            valid_to=now + JOB_LIFETIME,
        ),
    ]
    call.detail = f"import job {name.name} ({req.method}), expires {now + JOB_LIFETIME:%FT%TZ}"
    return Outcome(_job_result(name, raw, now), writes)


async def get_job(deps: Deps, call: Call, req: JobRequest) -> Outcome:
    """Authorized as ``kms:ListKeys`` (on ``*``), as a key ring is read: a
    job shows only its method, times and public key."""
    await call.authorize("kms:ListKeys")
    name = req.name
    found = await deps.keys.gcp_job(call.account, name.project, name.location, name.ring, name.job)
    if not found.revision:
        raise NotFoundException(f"ImportJob {name.name} not found.")
    return Outcome(_job_result(name, found.value, deps.clock.now()))


async def list_jobs(deps: Deps, call: Call, req: ListJobsRequest) -> Outcome:
    await call.authorize("kms:ListKeys")
    parent = req.parent
    await _ring_exists(deps, call, parent)
    size = min(req.page_size or _PAGE_MAX, _PAGE_MAX)
    rows = await deps.keys.list_gcp_jobs(
        call.account, parent.project, parent.location, parent.ring, after=req.after, limit=size + 1
    )
    now = deps.clock.now()
    items = tuple(
        _job_result(JobName(parent.project, parent.location, parent.ring, job), raw, now)
        for job, raw in rows[:size]
    )
    more = len(rows) > size
    return Outcome(
        JobsResult(items, rows[size - 1][0] if more else None, not req.after and not more)
    )


# -- cryptoKeyVersions.import --


def import_only(
    request: aws.CreateKeyRequest, spec: KeySpec, algorithm: str
) -> aws.CreateKeyRequest:
    """An importOnly crypto key's CreateKey (cryptoKeys.create): Origin
    EXTERNAL, for what keycask can import, symmetric material."""
    if spec is not KeySpec.SYMMETRIC_DEFAULT:
        raise KMSInvalidStateException(
            f"keycask imports symmetric key material only: an import_only crypto key must be "
            f"ENCRYPT_DECRYPT with {SYMMETRIC}, not {algorithm} (asymmetric and HMAC key "
            "material cannot be imported)"
        )
    return dataclasses.replace(request, origin=Origin.EXTERNAL.value)


def awaiting_import(key: Key) -> Key:
    """An importOnly crypto key as its create answers it: no version yet."""
    return key.replace(
        state=KeyState.PENDING_IMPORT, origin=Origin.EXTERNAL, current_version=0, versions=()
    )


def _check_algorithm(req: ImportVersionRequest, settings: KeySettings) -> None:
    if req.algorithm == SYMMETRIC:
        return
    if settings.purpose == "ENCRYPT_DECRYPT":
        raise ValidationException(
            f"Algorithm {req.algorithm} is not valid for CryptoKey {req.name.name} with "
            f"purpose ENCRYPT_DECRYPT: import {SYMMETRIC} key material."
        )
    raise KMSInvalidStateException(
        f"keycask imports symmetric key material only ({SYMMETRIC}, 32 bytes): "
        f"{req.algorithm} key material (asymmetric or HMAC) cannot be imported."
    )


async def _job_entry(deps: Deps, call: Call, req: ImportVersionRequest) -> tuple[str, bytes]:
    """The job's AWS key spec and its stored private key entry, once the
    job is found to be this key ring's and ACTIVE."""
    job = req.job
    if job.parent != req.name.parent:
        raise ValidationException(
            f"ImportJob {job.name} is not in the key ring of CryptoKey {req.name.name}: use "
            f"an import job of {req.name.parent.name}."
        )
    found = await deps.keys.gcp_job(call.account, job.project, job.location, job.ring, job.job)
    if not found.revision:
        raise NotFoundException(f"ImportJob {job.name} not found.")
    doc = orjson.loads(found.value)
    expired = KMSInvalidStateException(
        f"ImportJob {job.name} is EXPIRED (import jobs live 3 days): create a new one."
    )
    if deps.clock.now().timestamp() >= float(doc["expire_time"]):
        raise expired
    entry = await deps.keys.import_token(uuid.UUID(doc["id"]), _ENTRY)
    if entry is None:
        raise expired
    return METHODS[doc["method"]][0], entry.value


def _check_size(method_spec: str, algorithm: str, wrapped: bytes, job: JobName) -> None:
    modulus = _MODULUS_BYTES[method_spec]
    kwp = algorithm.startswith("RSA_AES_KEY_WRAP")
    expected = modulus + _KWP_32 if kwp else modulus
    if len(wrapped) != expected:
        raise ValidationException(
            f"The wrapped_key must be {expected} bytes for ImportJob {job.name} and 32 bytes "
            f"of {SYMMETRIC} key material, got {len(wrapped)}."
        )


async def import_version(deps: Deps, call: Call, req: ImportVersionRequest) -> Outcome:
    """cryptoKeyVersions.import: ImportKeyMaterial (kms:ImportKeyMaterial on
    the crypto key's keycask key) of the material the job's key unwraps; a
    new version (NEW_KEY_MATERIAL), or, with ``cryptoKeyVersion``, the
    same material again into a version whose material was deleted
    (EXISTING_KEY_MATERIAL)."""
    call.conditions["kms:ExpirationModel"] = ExpirationModel.KEY_MATERIAL_DOES_NOT_EXPIRE.value
    try:
        stored = await use_key(
            deps.keys, call, req.name.alias, "kms:ImportKeyMaterial", allow_alias=True
        )
    except NotFoundException:
        raise NotFoundException(f"CryptoKey {req.name.name} not found.") from None
    key = stored.value
    settings_stored = await deps.keys.gcp_key(key.key_id)
    settings = KeySettings.from_doc(settings_stored.value, req.name.name)
    _check_algorithm(req, settings)
    if key.origin is not Origin.EXTERNAL:
        raise KMSInvalidStateException(
            f"CryptoKey {req.name.name} is not import_only: keycask imports key material only "
            "into a crypto key created with import_only and skip_initial_version_creation."
        )
    require_state("ImportKeyMaterial", key)
    how = imports.Imported(
        import_type="NEW_KEY_MATERIAL",
        description=f"Cloud KMS import job {req.job.name}",
        promote=True,
    )
    if req.version is not None:
        target = key.version(req.version)
        if target is None:
            raise NotFoundException(
                f"CryptoKeyVersion {req.name.version_name(req.version)} not found."
            )
        if target.imported:
            raise KMSInvalidStateException(
                f"CryptoKeyVersion {req.name.version_name(req.version)} has its key material: "
                "only a DESTROYED version (its imported material deleted) can be imported into."
            )
        how = dataclasses.replace(
            how, import_type="EXISTING_KEY_MATERIAL", key_material_id=target.material_id
        )
    spec, entry = await _job_entry(deps, call, req)
    _check_size(spec, str(orjson.loads(entry)["algorithm"]), req.wrapped, req.job)
    try:
        material = await imports.unwrap_with(entry, req.wrapped)
    except UnwrapFailed:
        raise ValidationException(
            f"The wrapped_key could not be unwrapped with the key of ImportJob {req.job.name} "
            "(another job's key, another import method, or bytes changed on the way)."
        ) from None
    if len(material) != _SYMMETRIC_SIZE:
        raise ValidationException(
            f"{SYMMETRIC} key material must be 32 bytes, got {len(material)}."
        )
    outcome, new = await imports.add_key_material(deps, call, stored, material, how)
    number = req.version if req.version is not None else new.current_version
    now = deps.clock.now()
    shown = dataclasses.replace(
        settings, imports={**settings.imports, number: (req.job.name, now.timestamp())}
    )
    writes = [
        *outcome.writes,
        deps.keys.stage_gcp_key(key.key_id, shown.to_doc(), settings_stored.revision),
    ]
    call.detail = f"{call.detail}: {req.name.version_name(number)} from {req.job.name}"
    return Outcome(VersionResult(req.name, new, number, shown), writes)
